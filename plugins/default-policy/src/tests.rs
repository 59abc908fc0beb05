use super::*;
use rollgate_plugin::{PauseRecord, parse_config};
use serde_json::json;

fn metric(name: &str, status: MetricStatus) -> MetricSummary {
    MetricSummary {
        name: name.into(),
        status,
        dry_run: false,
        measurements: 3,
        passes: 0,
        failures: 3,
        inconclusives: 0,
        no_data: 0,
        errors: 0,
        consecutive_errors: 0,
        last_verdict: None,
        last_value: Some(0.071),
        message: format!("{name} message"),
    }
}

fn input(phase: &str, metrics: Vec<MetricSummary>, pauses: usize) -> PolicyInput {
    PolicyInput {
        rollout: "checkout".into(),
        phase: phase.into(),
        phase_index: 1,
        phase_count: 4,
        weight: 20.0,
        now_ms: 0,
        phase_complete: false,
        metrics,
        pauses: (0..pauses)
            .map(|i| PauseRecord {
                phase: phase.into(),
                reason: format!("pause {i}"),
                at_ms: i as i64,
            })
            .collect(),
        attempt: 1,
    }
}

fn complete(mut input: PolicyInput) -> PolicyInput {
    input.phase_complete = true;
    input
}

fn config(v: serde_json::Value) -> Config {
    parse_config(&v.to_string()).expect("config parses")
}

/// A short name for a decision, to compare in tables.
fn kind(d: &Decision) -> String {
    match d {
        Decision::Continue => "continue".into(),
        Decision::Promote => "promote".into(),
        Decision::PromoteFull => "promote-full".into(),
        Decision::Pause(p) => match p.duration_ms {
            Some(ms) => format!("pause {ms}ms"),
            None => "pause".into(),
        },
        Decision::Rollback(_) => "rollback".into(),
        Decision::Abort(_) => "abort".into(),
    }
}

#[test]
fn decisions() {
    use MetricStatus::*;
    let cases: Vec<(&str, serde_json::Value, PolicyInput, &str)> = vec![
        (
            "all healthy",
            json!({}),
            input("p", vec![metric("a", Successful), metric("b", Running)], 0),
            "continue",
        ),
        ("nothing yet", json!({}), input("p", vec![], 0), "continue"),
        (
            "default failed",
            json!({}),
            input("p", vec![metric("a", Failed)], 0),
            "rollback",
        ),
        (
            "default error",
            json!({}),
            input("p", vec![metric("a", Error)], 0),
            "pause",
        ),
        (
            "default inconclusive",
            json!({}),
            input("p", vec![metric("a", Inconclusive)], 0),
            "pause",
        ),
        (
            "default no-data",
            json!({}),
            input("p", vec![metric("a", NoData)], 0),
            "pause",
        ),
        (
            "terminated does not decide",
            json!({}),
            input("p", vec![metric("a", Terminated)], 0),
            "continue",
        ),
        (
            "worst wins",
            json!({}),
            input("p", vec![metric("a", Error), metric("b", Failed)], 0),
            "rollback",
        ),
        (
            "rollout mapping",
            json!({"error": "rollback"}),
            input("p", vec![metric("a", Error)], 0),
            "rollback",
        ),
        (
            "phase override",
            json!({"error": "pause", "phases": {"p": {"error": "abort"}}}),
            input("p", vec![metric("a", Error)], 0),
            "abort",
        ),
        (
            "other phase untouched",
            json!({"phases": {"q": {"error": "abort"}}}),
            input("p", vec![metric("a", Error)], 0),
            "pause",
        ),
        (
            "metric beats phase",
            json!({"phases": {"p": {"noData": "rollback"}}, "metrics": {"a": {"noData": "continue"}}}),
            input("p", vec![metric("a", NoData)], 0),
            "continue",
        ),
        (
            "optimistic promote",
            json!({"inconclusive": "promote"}),
            complete(input("p", vec![metric("a", Inconclusive)], 0)),
            "promote",
        ),
        (
            "no promote while metrics still measure",
            json!({"inconclusive": "promote"}),
            input(
                "p",
                vec![metric("a", Inconclusive), metric("b", Running)],
                0,
            ),
            "continue",
        ),
        (
            "pause beats promote",
            json!({"inconclusive": "promote"}),
            input("p", vec![metric("a", Inconclusive), metric("b", Error)], 0),
            "pause",
        ),
        (
            "timed pause",
            json!({"error": {"action": "pause", "duration": "10m"}}),
            input("p", vec![metric("a", Error)], 0),
            "pause 600000ms",
        ),
        (
            "longest timed pause",
            json!({"metrics": {"a": {"error": {"action": "pause", "duration": "5m"}}, "b": {"noData": {"action": "pause", "duration": "1m"}}}}),
            input("p", vec![metric("a", Error), metric("b", NoData)], 0),
            "pause 300000ms",
        ),
        (
            "an untimed pause waits for an operator",
            json!({"metrics": {"a": {"error": {"action": "pause", "duration": "1m"}}}}),
            input("p", vec![metric("a", Error), metric("b", NoData)], 0),
            "pause",
        ),
        (
            "maxPauses not reached",
            json!({"maxPauses": 2}),
            input("p", vec![metric("a", Error)], 1),
            "pause",
        ),
        (
            "maxPauses escalates",
            json!({"maxPauses": 2}),
            input("p", vec![metric("a", Error)], 2),
            "rollback",
        ),
    ];
    for (name, cfg, input, expect) in cases {
        let d = decide(&config(cfg), &input).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(kind(&d), expect, "{name}: {d:?}");
    }
}

#[test]
fn dry_run_metrics_never_decide() {
    let mut m = metric("a", MetricStatus::Failed);
    m.dry_run = true;
    let d = decide(&Config::default(), &input("p", vec![m], 0)).unwrap();
    assert_eq!(kind(&d), "continue");
}

#[test]
fn reasons_explain() {
    let cfg = config(json!({"phases": {"p": {"error": "rollback"}}}));
    let d = decide(
        &cfg,
        &input(
            "p",
            vec![
                metric("error-rate", MetricStatus::Failed),
                metric("latency", MetricStatus::Error),
            ],
            0,
        ),
    )
    .unwrap();
    let Decision::Rollback(reason) = d else {
        panic!("expected rollback, got {d:?}")
    };
    assert_eq!(
        reason,
        "metric \"error-rate\" failed: error-rate message (default policy: failed → rollback); \
         metric \"latency\" errored: latency message (phase policy: error → rollback)"
    );
    let d = decide(
        &config(json!({"maxPauses": 1})),
        &input("p", vec![metric("a", MetricStatus::Error)], 1),
    )
    .unwrap();
    let Decision::Rollback(reason) = d else {
        panic!("expected rollback, got {d:?}")
    };
    assert!(
        reason.ends_with("already paused 1 time(s), maxPauses 1 reached"),
        "{reason}"
    );
}

#[test]
fn validation() {
    let bad = [
        (
            json!({"failed": "explode"}),
            "/failed",
            "unknown action \"explode\": use rollback",
        ),
        (json!({"failed": 3}), "/failed", "expected an action name"),
        (
            json!({"failed": {"action": "pause", "for": "5m"}}),
            "/failed",
            "unknown field `for`",
        ),
        (
            json!({"phases": {"p": {"error": {"action": "rollback", "duration": "5m"}}}}),
            "/phases/p/error/duration",
            "only applies to pause",
        ),
        (
            json!({"error": {"action": "pause", "duration": "5 minutes"}}),
            "/error/duration",
            "unknown unit",
        ),
        (json!({"maxPauses": 0}), "/maxPauses", "maxPauses 0"),
        (json!({"unknown": 1}), "/unknown", "unknown field"),
    ];
    for (v, path, msg) in bad {
        let errors = match parse_config::<Config>(&v.to_string()) {
            Ok(c) => DefaultPolicy::check(&c),
            Err(e) => vec![e],
        };
        assert!(!errors.is_empty(), "{v} accepted");
        assert!(
            errors
                .iter()
                .any(|e| e.path.starts_with(path) && e.message.contains(msg)),
            "{v}: {errors:?}"
        );
    }
    let good = config(
        json!({"failed": "rollback", "noData": {"action": "pause", "duration": "2m"}, "maxPauses": 3}),
    );
    assert!(DefaultPolicy::check(&good).is_empty());
}
