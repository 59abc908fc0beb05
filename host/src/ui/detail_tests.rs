use super::*;
use crate::engine::state::{PauseReason, Stage};
use crate::spec::model::*;
use crate::store::{AuditEvent, Commit, MeasurementRow};
use crate::verify::{Counters, MetricRun, Observation, VerificationRun};
use proptest::prelude::*;
use std::collections::BTreeMap;

fn metric_spec(name: &str) -> MetricSpec {
    MetricSpec {
        name: name.into(),
        template: None,
        plugin: "threshold".into(),
        backend: None,
        config: json!({}),
        interval_ms: Some(60_000),
        count: Some(4),
        initial_delay_ms: 0,
        failure_limit: 0,
        inconclusive_limit: 0,
        consecutive_error_limit: 4,
        consecutive_failure_limit: None,
        consecutive_success_limit: None,
        no_data: NoDataAction::NoData,
        no_data_limit: 0,
        dry_run: false,
        retention: 10,
        args: BTreeMap::new(),
        config_at: None,
    }
}

fn rollout_spec(name: &str, stable: &str) -> RolloutSpec {
    let phase = |name: &str, weight: f64, pause: Option<PauseSpec>| PhaseSpec {
        name: name.into(),
        weight,
        pause,
        metrics: vec![std::sync::Arc::new(metric_spec("error-ratio"))],
        gates: Vec::new(),
    };
    RolloutSpec {
        name: name.into(),
        file: "r.yaml".into(),
        stable_version: stable.into(),
        canary_version: "v2".into(),
        target: TargetSpec::None,
        strategy: crate::spec::model::Strategy::Canary,
        phases: vec![
            phase("canary-10", 10.0, None),
            phase("canary-50", 50.0, Some(PauseSpec::Timed(300_000))),
            phase("full", 100.0, None),
        ],
        background: None,
        failure_policy: PolicyRef {
            plugin: "default-policy".into(),
            config: json!({}),
            config_at: None,
        },
        progress_deadline_ms: None,
        on_deadline: DeadlineAction::Fail,
        rollback: RollbackMode::Immediate,
        readiness: Readiness::default(),
        args: BTreeMap::new(),
        notifications: Vec::new(),
    }
}

fn measured(verdict: Verdict, value: f64) -> Observation {
    Observation::Measured(Measurement {
        verdict,
        value: Some(value),
        message: format!("value {value}"),
        details: json!({"limits": [{"label": "< 0.05", "value": 0.05}]}).to_string(),
    })
}

fn event(actor: &str, action: &str, reason: &str, before: &str, after: &str) -> AuditEvent {
    AuditEvent {
        at_ms: 2_000,
        actor: actor.into(),
        action: action.into(),
        reason: reason.into(),
        state_before: before.into(),
        state_after: after.into(),
        progress: json!({}),
    }
}

use crate::plugin::types::{Measurement, Verdict};

/// A store holding run 1 of `name` (stable v0, rolled back) and run 2 (stable v1): phase 0
/// passed (2 points), phase 1 failed twice and is paused by the policy.
async fn filled(name: &str) -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(&dir.path().join("s.db")).await.expect("open");
    for (stable, _) in [("v0", 1), ("v1", 2)] {
        let spec = rollout_spec(name, stable);
        let cp = Checkpoint::new(1_000);
        store
            .create_rollout(
                name,
                &serde_json::to_string(&spec).unwrap(),
                &serde_json::to_string(&cp).unwrap(),
                "pending",
                &event("alice", "create", "new", "", "pending"),
                1_000,
            )
            .await
            .expect("create");
    }
    let row = store.latest(name).await.unwrap().unwrap();
    let spec = rollout_spec(name, "v1");
    let mut rows = Vec::new();
    let mut keep = |phase: i64, run: &mut MetricRun, obs: Observation, at: i64| {
        let (r, _) = run.record(obs, at);
        rows.push(MeasurementRow {
            phase_index: phase,
            metric: "error-ratio".into(),
            index: i64::from(r.index),
            at_ms: at,
            verdict: r.verdict.name().into(),
            value: r.value,
            message: r.message,
            details: r.details,
            retention: 10,
        });
    };
    let mut p0 = MetricRun::new(spec.phases[0].metrics[0].clone(), 1_000);
    keep(0, &mut p0, measured(Verdict::Pass, 0.01), 61_000);
    keep(0, &mut p0, measured(Verdict::Pass, 0.02), 121_000);
    let mut v = VerificationRun::new(&spec.phases[1].metrics, 200_000);
    keep(1, &mut v.metrics[0], measured(Verdict::Pass, 0.03), 260_000);
    keep(1, &mut v.metrics[0], measured(Verdict::Fail, 0.09), 320_000);
    let mut cp = Checkpoint::new(1_000);
    cp.state = State::Paused(PauseReason::Policy);
    cp.phase = 1;
    cp.stage = Stage::Verify;
    cp.weight = 50.0;
    cp.verification = Some(v);
    cp.message = "paused by policy".into();
    let events = [
        event("rollgate", "start", "started", "pending", "progressing"),
        event(
            "policy:default-policy",
            "pause",
            "metric error-ratio failed: 1 failure > failureLimit 0",
            "progressing",
            "paused(policy)",
        ),
    ];
    store
        .commit(
            row.id,
            row.generation,
            Commit {
                epoch: None,
                checkpoint: &serde_json::to_string(&cp).unwrap(),
                state: "paused(policy)",
                finished: false,
                events: &events,
                measurements: &rows,
                step_intents: &[],
                outbox: &[],
                consumed_actions: &[],
                spec: None,
            },
            400_000,
        )
        .await
        .expect("commit");
    (dir, store)
}

#[tokio::test]
async fn a_paused_run_says_who_paused_it_why_and_how_to_go_on() {
    let name = "<img src=x onerror=alert(1)>";
    let (_dir, store) = filled(name).await;
    let doc = document(&store, name, None).await.expect("document");
    assert_eq!(doc["run"], 2);
    assert_eq!(doc["snapshot"]["rollout"], name);
    assert_eq!(doc["snapshot"]["state"], "paused(policy)");
    let banner = &doc["banners"][0];
    assert_eq!(banner["kind"], "paused");
    assert_eq!(banner["title"], "Paused (policy) by policy:default-policy");
    assert!(
        banner["text"]
            .as_str()
            .unwrap()
            .contains("1 failure > failureLimit 0"),
        "{banner}"
    );
    assert!(banner["hint"].as_str().unwrap().contains("rollgate resume"));
    // The phases: done, active (no pause running: paused by the policy), pending.
    let status: Vec<&str> = doc["phases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["status"].as_str().unwrap())
        .collect();
    assert_eq!(status, ["done", "active", "pending"]);
    assert_eq!(doc["phases"][1]["pause"]["durationMs"], 300_000);
    assert_eq!(doc["phases"][1]["pause"]["untilMs"], Value::Null);
    // Phase 1's metric: from the checkpoint, its points equal its counts; failed with the
    // limit that tripped; the plugin's line.
    let m = &doc["metrics"][1];
    assert_eq!(m["key"], "p1/error-ratio");
    assert_eq!(m["status"], "failed");
    assert_eq!(m["counts"]["pass"], 1);
    assert_eq!(m["counts"]["fail"], 1);
    assert_eq!(m["points"].as_array().unwrap().len(), 2);
    assert_eq!(m["points"][1]["verdict"], "fail");
    assert_eq!(m["lines"], json!([{"label": "< 0.05", "value": 0.05}]));
    assert_eq!(m["message"], "value 0.09");
    let tripped: Vec<&Value> = m["checklist"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["tripped"] == true)
        .collect();
    assert_eq!(tripped.len(), 1);
    assert_eq!(tripped[0]["text"], "1 failure > failureLimit 0");
    // Phase 0's metric is counted again from its points with the engine's rules.
    let m0 = &doc["metrics"][0];
    assert_eq!(m0["counts"]["pass"], 2);
    assert_eq!(m0["status"], "terminated");
    // Actions: the engine's rule for paused(policy).
    let allowed = |a: &str| doc["actions"][a]["allowed"] == true;
    assert!(allowed("resume") && allowed("promote") && allowed("abort") && allowed("rollback"));
    assert!(!allowed("pause") && !allowed("retry"));
    assert!(
        doc["actions"]["pause"]["why"]
            .as_str()
            .unwrap()
            .contains("not possible while the rollout is paused(policy)")
    );
    // The timeline, the YAML and its diff against run 1.
    assert_eq!(doc["timeline"].as_array().unwrap().len(), 3);
    assert_eq!(doc["timeline"][2]["actor"], "policy:default-policy");
    let yaml = doc["spec"]["yaml"].as_str().unwrap();
    let back: Value = serde_saphyr::from_str(yaml).expect("yaml");
    assert_eq!(back["name"], name);
    assert_eq!(doc["spec"]["previousRun"], 1);
    let changed: Vec<String> = doc["spec"]["diff"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["op"] != " ")
        .map(|l| {
            format!(
                "{}{}",
                l["op"].as_str().unwrap(),
                l["text"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(changed, ["-stableVersion: v0", "+stableVersion: v1"]);
}

#[tokio::test]
async fn an_older_run_takes_no_action_and_unknown_names_are_404() {
    let (_dir, store) = filled("web").await;
    let doc = document(&store, "web", Some(1)).await.expect("run 1");
    assert_eq!(doc["run"], 1);
    assert_eq!(doc["snapshot"]["run"], 1);
    assert_eq!(doc["spec"]["previousRun"], Value::Null);
    for a in Action::ALL {
        assert_eq!(doc["actions"][a.name()]["allowed"], false, "{}", a.name());
    }
    assert!(
        doc["actions"]["abort"]["why"]
            .as_str()
            .unwrap()
            .contains("actions act on run 2")
    );
    let (status, why) = document(&store, "web", Some(7)).await.unwrap_err();
    assert_eq!(status, 404);
    assert_eq!(why, "run 7 of \"web\" does not exist; its runs are 1, 2");
    let (status, why) = document(&store, "nope", None).await.unwrap_err();
    assert_eq!((status, why.as_str()), (404, "no rollout named \"nope\""));
}

#[test]
fn the_checklist_names_each_limit_and_the_one_that_tripped() {
    let mut spec = metric_spec("m");
    spec.consecutive_success_limit = Some(3);
    spec.failure_limit = 1;
    let counters = Counters {
        measurements: 4,
        passes: 2,
        failures: 2,
        consecutive_failures: 1,
        consecutive_successes: 1,
        ..Counters::default()
    };
    let texts: Vec<(bool, bool, String)> = checklist(&spec, &counters, true)
        .into_iter()
        .map(|c| (c.ok, c.tripped, c.text))
        .collect();
    assert_eq!(
        texts,
        [
            (
                true,
                false,
                "0 consecutive errors ≤ consecutiveErrorLimit 4".into()
            ),
            (false, true, "2 failures > failureLimit 1".into()),
            (true, false, "0 inconclusive ≤ inconclusiveLimit 0".into()),
            (true, false, "0 no-data ≤ noDataLimit 0".into()),
            (
                false,
                false,
                "count 4 reached without 3 passes in a row (consecutiveSuccessLimit 3)".into()
            ),
            (true, false, "4 of 4 measurements".into()),
        ]
    );
    // Not bad (still running, or successful): nothing tripped.
    assert!(
        checklist(&spec, &counters, false)
            .iter()
            .all(|c| !c.tripped)
    );
}

fn observation(v: u8) -> Observation {
    match v {
        0 => measured(Verdict::Pass, 0.0),
        1 => measured(Verdict::Fail, 1.0),
        2 => measured(Verdict::Inconclusive, 0.5),
        3 => measured(Verdict::NoData, 0.0),
        _ => Observation::Error("boom".into()),
    }
}

proptest! {
    /// Whatever the limits and verdicts, the item the checklist marks as tripped is the
    /// limit the engine's counting rules name for the metric's bad status.
    #[test]
    fn the_tripped_limit_is_the_engines(
        verdicts in prop::collection::vec(0u8..5, 1..20),
        failure_limit in -1i64..3, inconclusive_limit in 0u32..3,
        consecutive_error_limit in 0u32..3, consecutive_failure in prop::option::of(1u32..4),
        consecutive_success in prop::option::of(1u32..4), count in prop::option::of(1u32..8),
    ) {
        let mut spec = metric_spec("m");
        spec.failure_limit = failure_limit;
        spec.inconclusive_limit = inconclusive_limit;
        spec.consecutive_error_limit = consecutive_error_limit;
        spec.consecutive_failure_limit = consecutive_failure;
        spec.consecutive_success_limit = consecutive_success;
        spec.count = count;
        let mut run = MetricRun::new(spec.clone(), 0);
        for (i, v) in verdicts.iter().enumerate() {
            let (_, change) = run.record(observation(*v), i as i64);
            if let Some(change) = change.filter(|c| c.to.is_bad()) {
                let tripped: Vec<String> = checklist(&spec, &run.counters, true)
                    .into_iter().filter(|c| c.tripped).map(|c| c.limit).collect();
                prop_assert_eq!(tripped, change.limit.into_iter().collect::<Vec<_>>(),
                    "{}", change.reason);
            }
        }
    }
}
