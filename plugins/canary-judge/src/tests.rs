//! The reference vectors of `shared/judge-vectors.md` (R's wilcox.test, confidence 0.98,
//! tolerance 0.25, mean ratio with allowed increase/decrease 1.0 unless stated), derived
//! cases, and (in `kayenta`) the cases of Kayenta's own test suites.

use super::judge::*;
use super::stats::*;
use super::*;

mod fast_paths;
mod kayenta;
mod kayenta_data;

const B: [f64; 10] = [100., 102., 98., 101., 99., 103., 97., 100., 101., 99.];

fn rule() -> Rule {
    MetricConfig {
        name: "m".into(),
        group: None,
        groups: None,
        backend: None,
        sides: Sides {
            canary_query: Some("c".into()),
            baseline_query: Some("b".into()),
            ..Sides::default()
        },
        direction: Direction::Either,
        nan_strategy: NanStrategy::Remove,
        nan_replacement: None,
        outlier_factor: None,
        effect_size: None,
        critical: false,
        must_have_data: false,
        muted: false,
    }
    .rule()
}

fn plus(d: f64) -> Vec<f64> {
    B.iter().map(|b| b + d).collect()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-3
}

#[track_caller]
fn check(
    r: &MetricResult,
    ci: Option<(f64, f64)>,
    estimate: Option<f64>,
    ratio: Option<f64>,
    label: Label,
) {
    assert_eq!(r.label, label, "{r:#?}");
    match ci {
        Some((lo, hi)) => {
            let [l, h] = r.interval.expect("an interval");
            assert!(
                close(l, lo) && close(h, hi),
                "CI [{l}, {h}], expected [{lo}, {hi}]: {r:#?}"
            );
        }
        None => assert!(r.interval.is_none()),
    }
    if let Some(e) = estimate {
        assert!(close(r.estimate.expect("estimate"), e), "{r:#?}");
    }
    if let Some(x) = ratio {
        assert!(close(r.effect.expect("effect"), x), "{r:#?}");
    }
}

fn run(rule: &Rule, canary: &[f64]) -> MetricResult {
    classify(rule, canary, &B, 0.98, 0.25)
}

#[test]
fn v1_no_change_passes() {
    let c = [101., 99., 100., 102., 98., 100., 103., 99., 101., 100.];
    check(
        &run(&rule(), &c),
        Some((-2., 2.)),
        Some(0.),
        Some(1.003),
        Label::Pass,
    );
}

#[test]
fn v2_v3_a_large_increase_is_high_unless_only_decreases_matter() {
    check(
        &run(&rule(), &plus(20.)),
        Some((18., 22.)),
        Some(20.),
        Some(1.2),
        Label::High,
    );
    let mut r = rule();
    r.direction = Direction::Decrease;
    check(
        &run(&r, &plus(20.)),
        Some((18., 22.)),
        Some(20.),
        Some(1.2),
        Label::Pass,
    );
}

#[test]
fn v4_v5_a_small_increase_is_high_unless_the_effect_is_allowed() {
    check(
        &run(&rule(), &plus(5.)),
        Some((3., 7.)),
        Some(5.),
        Some(1.05),
        Label::High,
    );
    let mut r = rule();
    r.allowed_increase = 1.1;
    let res = run(&r, &plus(5.));
    check(&res, Some((3., 7.)), Some(5.), Some(1.05), Label::Pass);
    assert!(
        res.reason.contains("below the allowed increase 1.1"),
        "{}",
        res.reason
    );
}

#[test]
fn v8_nans_are_removed() {
    let n = f64::NAN;
    let c = [101., n, 100., 102., 98., n, 103., 99., 101., 100.];
    let r = run(&rule(), &c);
    check(&r, Some((-2., 3.)), Some(0.5), Some(1.005), Label::Pass);
    assert_eq!((r.canary_count, r.nan), (8, [2, 0]));
}

#[test]
fn v9_v10_all_nan_is_no_data_or_a_failure_when_data_is_required() {
    let c = [f64::NAN; 10];
    check(&run(&rule(), &c), None, None, None, Label::Nodata);
    let mut r = rule();
    r.must_have_data = true;
    let res = run(&r, &c);
    check(&res, None, None, None, Label::NodataFailMetric);
    assert!(!res.critical_failure, "not critical");
}

fn labelled(name: &str, group: &str, label: Label, critical: bool) -> MetricResult {
    let mut r = rule();
    r.name = name.into();
    r.groups = vec![group.into()];
    r.critical = critical;
    let mut res = MetricResult::error(&r, String::new());
    res.label = label;
    res.critical_failure = critical && label != Label::Pass;
    res
}

#[test]
fn s1_weighted_groups() {
    let results = [
        labelled("a", "latency", Label::Pass, false),
        labelled("b", "latency", Label::High, false),
        labelled("c", "errors", Label::Pass, false),
    ];
    let weights = BTreeMap::from([("latency".to_string(), 60.0), ("errors".to_string(), 40.0)]);
    let s = score(&results, &weights, 95.0, 75.0, NodataVerdict::Fail);
    let scores: Vec<f64> = s.groups.iter().map(|g| g.score).collect();
    assert_eq!(scores, [50.0, 100.0]);
    assert_eq!(s.summary, 70.0);
    assert_eq!(s.outcome, Outcome::Fail);
}

#[test]
fn s2_equal_weights_marginal() {
    let results = [
        labelled("a", "A", Label::Pass, false),
        labelled("b", "B", Label::Pass, false),
        labelled("c", "C", Label::Pass, false),
        labelled("d", "C", Label::Low, false),
    ];
    let s = score(&results, &BTreeMap::new(), 95.0, 75.0, NodataVerdict::Fail);
    // Kayenta rounds the summary to two decimals.
    assert_eq!(s.summary, 83.33, "{s:?}");
    assert_eq!(s.outcome, Outcome::Marginal);
}

#[test]
fn s3_a_critical_metric_fails_everything() {
    let results = [
        labelled("a", "A", Label::Pass, false),
        labelled("b", "B", Label::High, true),
    ];
    let s = score(&results, &BTreeMap::new(), 95.0, 75.0, NodataVerdict::Fail);
    assert_eq!(s.outcome, Outcome::Fail);
    assert_eq!(s.summary, 0.0);
    assert!(
        s.reason.contains("critical metric(s) failed: b"),
        "{}",
        s.reason
    );
}

#[test]
fn half_the_metrics_without_data_fails_or_is_no_data_when_asked() {
    // Kayenta's WeightedSumScorer: 50% or more Nodata → summary 0 (ScorerSuite "Weighted
    // Sum Group Scorer: Single group Nodata": 0.0), which the thresholds make a Fail.
    let results = [
        labelled("a", "A", Label::Pass, false),
        labelled("b", "B", Label::Nodata, false),
    ];
    let s = score(&results, &BTreeMap::new(), 95.0, 75.0, NodataVerdict::Fail);
    assert_eq!(
        (s.summary, s.outcome, s.overridden),
        (0.0, Outcome::Fail, true)
    );
    // The departure, on request: the score is kept (A 100, B without data counts 100).
    let s = score(
        &results,
        &BTreeMap::new(),
        95.0,
        75.0,
        NodataVerdict::NoData,
    );
    assert_eq!((s.summary, s.outcome), (100.0, Outcome::Nodata));
    // ScorerSuite "Two Groups, one Pass, one Nodata": groups 100 and 0 (no data), summary
    // 100.
    let results = [
        labelled("a", "A", Label::Pass, false),
        labelled("b", "A", Label::Pass, false),
        labelled("c", "B", Label::Nodata, false),
    ];
    let s = score(&results, &BTreeMap::new(), 95.0, 75.0, NodataVerdict::Fail);
    let groups: Vec<(f64, bool)> = s.groups.iter().map(|g| (g.score, g.no_data)).collect();
    assert_eq!(groups, [(100.0, false), (0.0, true)]);
    assert_eq!((s.summary, s.outcome), (100.0, Outcome::Pass));
}

#[test]
fn multi_interval_judgements() {
    let walk = |scores: &[f64]| -> (bool, usize) {
        for (i, s) in scores.iter().enumerate() {
            let last = i + 1 == scores.len();
            if !interval_passes(*s, last, 95.0, 75.0) {
                return (false, i + 1);
            }
        }
        (true, scores.len())
    };
    assert_eq!(walk(&[90., 85., 96., 97.]), (true, 4));
    assert_eq!(walk(&[90., 75., 99., 99.]), (false, 2));
    assert_eq!(walk(&[90., 90., 90., 90.]), (false, 4));
}

#[test]
fn two_constant_samples_are_judged_without_noise() {
    let r = classify(&rule(), &[5.0; 10], &[3.0; 10], 0.98, 0.25);
    check(&r, Some((2., 2.)), Some(2.), Some(5.0 / 3.0), Label::High);
    // One constant value on both sides: identical.
    let r = classify(&rule(), &[4.0; 3], &[4.0; 7], 0.98, 0.25);
    assert_eq!(r.label, Label::Pass);
}

#[test]
fn a_decrease_is_low_and_a_critical_effect_is_critical() {
    check(
        &run(&rule(), &plus(-20.)),
        Some((-22., -18.)),
        Some(-20.),
        Some(0.8),
        Label::Low,
    );
    let mut r = rule();
    r.critical = true;
    r.critical_increase = 1.15;
    let res = run(&r, &plus(20.));
    assert!(res.critical_failure);
    let res = run(&r, &plus(5.));
    assert_eq!(res.label, Label::High);
    assert!(!res.critical_failure);
}

#[test]
fn outliers_are_removed_by_iqr() {
    let mut c = plus(0.0);
    c.push(10_000.0);
    let mut r = rule();
    r.outlier_factor = Some(3.0);
    let res = run(&r, &c);
    assert_eq!(res.outliers, [1, 0]);
    assert_eq!(res.label, Label::Pass);
}

#[test]
fn the_normal_quantile() {
    // R: qnorm(c(0.99, 0.975, 0.01)).
    assert!((normal_quantile(0.99) - 2.326_347_874).abs() < 1e-8);
    assert!((normal_quantile(0.975) - 1.959_963_985).abs() < 1e-8);
    assert!((normal_quantile(0.01) + 2.326_347_874).abs() < 1e-8);
}

#[test]
fn ranks_average_ties() {
    assert_eq!(ranks(&[3.0, 1.0, 3.0, 2.0]), vec![3.5, 1.0, 3.5, 2.0]);
}

#[test]
fn configuration_checks() {
    let config: Config = serde_json::from_value(json!({
        "backend": "prom",
        "confidence": 1.5,
        "groupWeights": {"latency": 1},
        "metrics": [
            {"name": "a", "canaryQuery": "x"},
            {"name": "a", "group": "latency", "query": "q", "splitBy": "version", "canary": "v2", "baseline": "v1"}
        ]
    }))
    .expect("parses");
    let paths: Vec<String> = CanaryJudge::check(&config)
        .into_iter()
        .map(|p| p.path)
        .collect();
    // Group "a" has no weight: it takes the 99 that latency's 1 leaves (Kayenta).
    assert_eq!(paths, ["/confidence", "/metrics/0", "/metrics/1/name"]);
    let config: Config = serde_json::from_value(json!({
        "backend": "prom",
        "groupWeights": {"latency": 60, "errors": 30, "typo": 5},
        "metrics": [
            {"name": "a", "group": "latency", "groups": ["latency"], "canaryQuery": "x", "baselineQuery": "y"},
            {"name": "b", "groups": ["errors"], "canaryQuery": "x", "baselineQuery": "y"}
        ]
    }))
    .expect("parses");
    let problems: Vec<(String, String)> = CanaryJudge::check(&config)
        .into_iter()
        .map(|p| (p.path, p.message))
        .collect();
    assert_eq!(
        problems.iter().map(|p| p.0.as_str()).collect::<Vec<_>>(),
        ["/groupWeights/typo", "/groupWeights", "/metrics/0/groups"],
        "{problems:?}"
    );
    assert!(
        problems[1].1.contains("they must add up to 100"),
        "{problems:?}"
    );
    let config: Config = serde_json::from_value(json!({
        "backend": "prom",
        "groupWeights": {"latency": 60, "errors": 50},
        "metrics": [
            {"name": "a", "group": "latency", "canaryQuery": "x", "baselineQuery": "y", "muted": true},
            {"name": "b", "groups": ["errors"], "canaryQuery": "x", "baselineQuery": "y", "muted": true}
        ]
    }))
    .expect("parses");
    let paths: Vec<String> = CanaryJudge::check(&config)
        .into_iter()
        .map(|p| p.path)
        .collect();
    assert_eq!(paths, ["/groupWeights", "/metrics"]);
}

/// The metrics a fixture serves: by query text.
struct Fixture(Vec<(&'static str, Vec<Series>)>);

impl rollgate_plugin::Metrics for Fixture {
    fn query(
        &self,
        _: &str,
        query: &str,
        _: Window,
        _: i64,
    ) -> Result<Vec<Series>, rollgate_plugin::QueryError> {
        Ok(self
            .0
            .iter()
            .find(|(q, _)| *q == query)
            .map(|(_, s)| s.clone())
            .unwrap_or_default())
    }
}

fn series(labels: &[(&str, &str)], values: &[f64]) -> Series {
    Series {
        labels: labels
            .iter()
            .map(|(n, v)| rollgate_plugin::Label {
                name: n.to_string(),
                value: v.to_string(),
            })
            .collect(),
        times_ms: (0..values.len()).map(|i| i as i64 * 15_000).collect(),
        values: values.to_vec(),
    }
}

fn context() -> rollgate_plugin::RolloutContext {
    rollgate_plugin::RolloutContext {
        rollout: "r".into(),
        phase: "p".into(),
        phase_index: 0,
        phase_count: 1,
        weight: 10.0,
        stable_version: "v1".into(),
        canary_version: "v2".into(),
        now_ms: 1_767_225_600_000,
        phase_started_ms: 1_767_225_600_000 - 600_000,
        metric: "judge".into(),
        measurement_index: 0,
        args: vec![],
    }
}

#[test]
fn a_whole_measurement_explains_itself() {
    let fixture = Fixture(vec![(
        "latency",
        vec![
            series(&[("version", "v2")], &plus(20.)),
            series(&[("version", "v1")], &B),
        ],
    )]);
    let config: Config = serde_json::from_value(json!({
        "backend": "prom",
        "metrics": [{"name": "latency", "query": "latency", "splitBy": "version", "canary": "v2", "baseline": "v1", "direction": "increase"}]
    }))
    .expect("parses");
    let m = CanaryJudge::measure(config, &Context::new(context(), &fixture)).expect("judges");
    assert_eq!(m.verdict, Verdict::Fail);
    assert_eq!(m.value, Some(0.0));
    assert!(m.message.contains("latency High"), "{}", m.message);
    let details: serde_json::Value = serde_json::from_str(&m.details).expect("json");
    let metric = &details["metrics"][0];
    assert_eq!(metric["label"], "High");
    // R: B <- c(100,102,98,101,99,103,97,100,101,99); wilcox.test(B + 20, B,
    // conf.int=TRUE, conf.level=0.98, exact=FALSE, correct=TRUE)$conf.int
    // → 17.999940614203155, 22.000059385796845 (the solver's stopping points).
    let bound = |i: usize| metric["interval"][i].as_f64().unwrap_or(f64::NAN);
    assert!((bound(0) - 17.999940614203155).abs() < 1e-9, "{metric}");
    assert!((bound(1) - 22.000059385796845).abs() < 1e-9, "{metric}");
    assert_eq!(metric["canaryCount"], 10);
    // The score's thresholds are the lines a chart of it draws.
    assert_eq!(
        details["limits"],
        json!([{"label": "pass ≥ 95", "value": 95.0}, {"label": "marginal ≥ 75", "value": 75.0}])
    );
}

#[test]
fn the_limits_are_the_configured_thresholds() {
    let fixture = Fixture(vec![(
        "latency",
        vec![
            series(&[("version", "v2")], &B),
            series(&[("version", "v1")], &B),
        ],
    )]);
    let config: Config = serde_json::from_value(json!({
        "backend": "prom",
        "passThreshold": 90.5,
        "marginalThreshold": 60,
        "metrics": [{"name": "latency", "query": "latency", "splitBy": "version", "canary": "v2", "baseline": "v1"}]
    }))
    .expect("parses");
    let m = CanaryJudge::measure(config, &Context::new(context(), &fixture)).expect("judges");
    assert_eq!(m.verdict, Verdict::Pass, "{}", m.message);
    let details: serde_json::Value = serde_json::from_str(&m.details).expect("json");
    assert_eq!(
        details["limits"],
        json!([{"label": "pass ≥ 90.5", "value": 90.5}, {"label": "marginal ≥ 60", "value": 60.0}])
    );
    assert_eq!(details["metrics"][0]["label"], "Pass", "{details}");
}

#[test]
fn infinite_samples_are_an_error_label_not_a_verdict() {
    // Not in Kayenta (its ranking would meet NaN shifts); the judge refuses to rank them.
    let mut c = plus(0.0);
    c[3] = f64::INFINITY;
    let r = run(&rule(), &c);
    assert_eq!(r.label, Label::Error, "{r:#?}");
    assert!(!r.critical_failure);
}

/// `sort_total` gives the array `sort_by(f64::total_cmp)` gives, bit for bit: zeros of both
/// signs, subnormals, infinities and NaNs of both signs and several payloads included.
#[test]
fn sorting_by_order_keys_is_sorting_by_total_cmp() {
    let specials = [
        0.0,
        -0.0,
        f64::from_bits(1),
        -f64::from_bits(1),
        f64::MIN_POSITIVE,
        f64::MAX,
        f64::MIN,
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::NAN,
        -f64::NAN,
        f64::from_bits(0x7ff0_0000_0000_0001),
        f64::from_bits(0xfff8_0000_0000_0002),
        1.5,
        -1.5,
        1e-300,
        -1e300,
    ];
    // A deterministic shuffle of the specials among ordinary values.
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut values: Vec<f64> = (0..2000)
        .map(|i| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            if i % 7 == 0 {
                specials[(state >> 33) as usize % specials.len()]
            } else {
                ((state >> 11) as f64 / (1u64 << 53) as f64 - 0.5) * 1e3
            }
        })
        .collect();
    let mut expected = values.clone();
    expected.sort_by(f64::total_cmp);
    sort_total(&mut values);
    let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<u64>>();
    assert_eq!(bits(&values), bits(&expected));
}
