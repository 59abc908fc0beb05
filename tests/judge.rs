//! The canary judge through the host: the shipped `canary-judge` component, run by the real
//! binary (`rollgate plugin test`) over tests/judge/vectors.om, must give the reference
//! values of shared/judge-vectors.md that its native unit tests give (both builds agree).

use crate::common;

use common::rollgate;
use serde_json::{Value, json};

const VECTORS: &str = "../tests/judge/vectors.om";

/// One metric per (name, group, canary side, extra settings).
fn metric(name: &str, group: &str, canary: &str, extra: Value) -> Value {
    let mut m = json!({
        "name": name, "group": group, "query": "latency", "splitBy": "side",
        "canary": canary, "baseline": "baseline",
    });
    if let (Some(m), Some(extra)) = (m.as_object_mut(), extra.as_object()) {
        m.extend(extra.clone());
    }
    m
}

/// Judge `metrics` (with `top` settings); the exit code and the measurement's JSON.
fn judge(metrics: Vec<Value>, top: Value) -> (i32, Value) {
    let mut config = json!({"backend": "prom", "window": "9m", "step": "1m", "metrics": metrics});
    if let (Some(c), Some(top)) = (config.as_object_mut(), top.as_object()) {
        c.extend(top.clone());
    }
    let config = config.to_string();
    let run = rollgate(&[
        "plugin",
        "test",
        "canary-judge",
        "--config",
        &config,
        "--fixture",
        VECTORS,
        "--format",
        "json",
    ]);
    let v: Value = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}{}", run.stdout, run.stderr));
    (run.code, v["measurements"][0].clone())
}

#[track_caller]
fn expect(
    m: &Value,
    ci: Option<(f64, f64)>,
    estimate: Option<f64>,
    ratio: Option<f64>,
    label: &str,
) {
    let r = &m["details"]["metrics"][0];
    assert_eq!(r["label"], label, "{r}");
    let close = |v: &Value, x: f64| v.as_f64().is_some_and(|v| (v - x).abs() <= 1e-3);
    match ci {
        Some((lo, hi)) => assert!(
            close(&r["interval"][0], lo) && close(&r["interval"][1], hi),
            "{r}"
        ),
        None => assert!(r["interval"].is_null(), "{r}"),
    }
    if let Some(e) = estimate {
        assert!(close(&r["estimate"], e), "{r}");
    }
    if let Some(x) = ratio {
        assert!(close(&r["effect"], x), "{r}");
    }
}

#[test]
fn every_metric_vector() {
    let one = |canary: &str, extra: Value| {
        judge(vec![metric("latency", "latency", canary, extra)], json!({}))
    };
    let (code, m) = one("v1", json!({}));
    expect(&m, Some((-2.0, 2.0)), Some(0.0), Some(1.003), "Pass");
    assert_eq!((code, m["verdict"].as_str()), (0, Some("pass")));
    let (code, m) = one("plus20", json!({}));
    expect(&m, Some((18.0, 22.0)), Some(20.0), Some(1.2), "High");
    assert_eq!(code, 1);
    let (_, m) = one("plus20", json!({"direction": "decrease"}));
    expect(&m, Some((18.0, 22.0)), Some(20.0), Some(1.2), "Pass");
    let (_, m) = one("plus5", json!({}));
    expect(&m, Some((3.0, 7.0)), Some(5.0), Some(1.05), "High");
    let (_, m) = one("plus5", json!({"effectSize": {"allowedIncrease": 1.1}}));
    expect(&m, Some((3.0, 7.0)), Some(5.0), Some(1.05), "Pass");
    let (_, m) = one("nan", json!({}));
    expect(&m, Some((-2.0, 3.0)), Some(0.5), Some(1.005), "Pass");
    assert_eq!(m["details"]["metrics"][0]["nan"], json!([2, 0]));
    // Its only metric without data: 100% Nodata, which Kayenta scores 0, a failure.
    let (code, m) = one("allnan", json!({}));
    expect(&m, None, None, None, "Nodata");
    assert_eq!((code, m["verdict"].as_str()), (1, Some("fail")));
    let (_, m) = one("allnan", json!({"mustHaveData": true}));
    expect(&m, None, None, None, "NodataFailMetric");
}

#[test]
fn every_scoring_vector() {
    // S1: latency 50 (Pass, High), errors 100, weights 60/40 → 70 → fail.
    let (code, m) = judge(
        vec![
            metric("a", "latency", "v1", json!({})),
            metric("b", "latency", "plus20", json!({})),
            metric("c", "errors", "v1", json!({})),
        ],
        json!({"groupWeights": {"latency": 60, "errors": 40}}),
    );
    assert_eq!(code, 1, "{m}");
    assert!(
        (m["value"].as_f64().unwrap_or(-1.0) - 70.0).abs() < 1e-9,
        "{m}"
    );
    let scores: Vec<f64> = m["details"]["groups"]
        .as_array()
        .map(|g| g.iter().filter_map(|g| g["score"].as_f64()).collect())
        .unwrap_or_default();
    assert_eq!(scores, [50.0, 100.0]);
    // S2: equal weights, 100, 100, 50 → 83.33 → marginal → inconclusive.
    let (code, m) = judge(
        vec![
            metric("a", "A", "v1", json!({})),
            metric("b", "B", "v1", json!({})),
            metric("c", "C", "v1", json!({})),
            metric("d", "C", "minus20", json!({})),
        ],
        json!({}),
    );
    assert_eq!(
        (code, m["verdict"].as_str()),
        (2, Some("inconclusive")),
        "{m}"
    );
    // Kayenta rounds the summary to two decimals (WeightedSumScorer: Precision.round).
    assert_eq!(m["value"].as_f64(), Some(83.33), "{m}");
    assert_eq!(m["details"]["outcome"], "marginal");
    // S3: a critical High fails whatever the rest says.
    let (code, m) = judge(
        vec![
            metric("a", "A", "v1", json!({})),
            metric("b", "B", "plus20", json!({"critical": true})),
        ],
        json!({}),
    );
    assert_eq!((code, m["value"].as_f64()), (1, Some(0.0)), "{m}");
    assert!(
        m["message"]
            .as_str()
            .unwrap_or("")
            .contains("critical metric(s) failed: b"),
        "{m}"
    );
}

#[test]
fn the_configuration_is_checked_before_judging() {
    let config =
        json!({"backend": "prom", "confidence": 2, "metrics": [{"name": "x", "canaryQuery": "a"}]})
            .to_string();
    let run = rollgate(&["plugin", "check", "canary-judge", "--config", &config]);
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert!(
        run.stdout
            .contains("/confidence: must be between 0.5 and 1"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("/metrics/0: give canaryQuery and baselineQuery, or query with splitBy"),
        "{}",
        run.stdout
    );
}

/// One metric of `canary` against `baseline` (sides of tests/judge/vectors.om) in `group`.
fn versus(name: &str, group: &str, canary: &str, baseline: &str, extra: Value) -> Value {
    let mut m = json!({
        "name": name, "group": group, "query": "latency", "splitBy": "side",
        "canary": canary, "baseline": baseline,
    });
    if let (Some(m), Some(extra)) = (m.as_object_mut(), extra.as_object()) {
        m.extend(extra.clone());
    }
    m
}

fn metric_named<'a>(m: &'a Value, name: &str) -> &'a Value {
    m["details"]["metrics"]
        .as_array()
        .and_then(|all| all.iter().find(|r| r["name"] == name))
        .unwrap_or(&Value::Null)
}

fn close(v: &Value, x: f64, within: f64) -> bool {
    v.as_f64().is_some_and(|v| (v - x).abs() <= within)
}

// Issue 15 through the wasm build: the same numbers as the native tests
// (plugins/canary-judge/src/tests/kayenta.rs, where each case is sourced in full).

#[test]
fn kayenta_item1_the_estimate_is_the_solvers_root() {
    // R: x <- c(29,29,22,19,29); y <- c(13,18,10,10,4); wilcox.test(x, y, conf.int=TRUE,
    // conf.level=0.98, exact=FALSE, correct=TRUE)$conf.int → 3.9999782634687473, 25;
    // Kayenta's estimate (the same call with conf.level=1e-300) → 15.757152818778415;
    // Hodges-Lehmann 16. High (a Hodges-Lehmann dead band, 4, would make it a Pass).
    let (code, m) = judge(
        vec![versus("k5", "A", "k5canary", "k5baseline", json!({}))],
        json!({}),
    );
    let r = metric_named(&m, "k5");
    assert_eq!(r["label"], "High", "{m}");
    assert!(close(&r["interval"][0], 3.9999782634687473, 1e-9), "{r}");
    assert!(close(&r["estimate"], 15.757152818778415, 1e-9), "{r}");
    assert_eq!(r["hodgesLehmann"], 16.0, "{r}");
    assert_eq!(code, 1, "{m}");
}

#[test]
fn kayenta_item2_a_zero_mean_skips_the_effect_check() {
    // R: wilcox.test(c(-2,-1,0,1,2), c(-20,-21,-19,-22,-18), conf.int=TRUE,
    // conf.level=0.98, exact=FALSE, correct=TRUE)$conf.int → 16.00005024961294,
    // 23.99994975038706. The canary's mean is 0: ratio NaN (null), the effect check is
    // skipped → High.
    let (_, m) = judge(
        vec![versus("z", "A", "zeromean", "negative", json!({}))],
        json!({}),
    );
    let r = metric_named(&m, "z");
    assert_eq!(r["label"], "High", "{m}");
    assert!(r["ratio"].is_null() && r["effect"].is_null(), "{r}");
    assert!(close(&r["interval"][0], 16.00005024961294, 1e-9), "{r}");
}

#[test]
fn kayenta_item3_no_data_with_nan_replacement_passes() {
    // ClassifierSuite "Mann-Whitney Missing Experiment Data with NaN Replacement": no
    // canary series, nanStrategy replace → Pass.
    let (code, m) = judge(
        vec![versus(
            "r",
            "A",
            "missing",
            "baseline",
            json!({"nanStrategy": "replace"}),
        )],
        json!({}),
    );
    assert_eq!(metric_named(&m, "r")["label"], "Pass", "{m}");
    assert_eq!((code, m["verdict"].as_str()), (0, Some("pass")), "{m}");
}

#[test]
fn kayenta_item4_critical_needs_the_flag_and_the_effect() {
    // criticalIncrease without `critical` makes no critical failure: Pass + High score
    // 50, not 0.
    let (code, m) = judge(
        vec![
            versus("a", "A", "v1", "baseline", json!({})),
            versus(
                "b",
                "A",
                "plus20",
                "baseline",
                json!({"effectSize": {"criticalIncrease": 1.1}}),
            ),
        ],
        json!({}),
    );
    assert_eq!((code, m["value"].as_f64()), (1, Some(50.0)), "{m}");
    assert_eq!(metric_named(&m, "b")["criticalFailure"], false, "{m}");
    // A critical metric whose ratio (1.05) is below its criticalIncrease (1.5) is High but
    // not critical (ClassifierSuite "Critical Effect Size: High").
    let (_, m) = judge(
        vec![
            versus("a", "A", "v1", "baseline", json!({})),
            versus(
                "b",
                "A",
                "plus5",
                "baseline",
                json!({"critical": true, "effectSize": {"criticalIncrease": 1.5}}),
            ),
        ],
        json!({}),
    );
    assert_eq!(m["value"].as_f64(), Some(50.0), "{m}");
}

#[test]
fn kayenta_item5_a_group_without_data_counts_100() {
    // Pass + High in A, Nodata in B → 75, marginal (WeightedSumScorer: a group without
    // data counts 100).
    let (code, m) = judge(
        vec![
            versus("a", "A", "v1", "baseline", json!({})),
            versus("b", "A", "plus20", "baseline", json!({})),
            versus("c", "B", "allnan", "baseline", json!({})),
        ],
        json!({}),
    );
    assert_eq!(
        (code, m["verdict"].as_str(), m["value"].as_f64()),
        (2, Some("inconclusive"), Some(75.0)),
        "{m}"
    );
}

#[test]
fn kayenta_item5_half_without_data_fails_unless_asked() {
    // WeightedSumScorer.tooManyNodata: 50% Nodata → score 0, a failure ...
    let metrics = || {
        vec![
            versus("a", "A", "v1", "baseline", json!({})),
            versus("c", "B", "allnan", "baseline", json!({})),
        ]
    };
    let (code, m) = judge(metrics(), json!({}));
    assert_eq!(
        (code, m["verdict"].as_str(), m["value"].as_f64()),
        (1, Some("fail"), Some(0.0)),
        "{m}"
    );
    // ... or no-data with the departure asked for.
    let (code, m) = judge(metrics(), json!({"nodataVerdict": "no-data"}));
    assert_eq!((code, m["verdict"].as_str()), (2, Some("no-data")), "{m}");
}

#[test]
fn kayenta_item5_groups_weights_and_muted_metrics() {
    // A metric in two groups, an unweighted group and a muted metric: A = {Pass, High} =
    // 50 (weight 60), B = {High} = 0 (the 40 left); the muted Low is shown, not scored →
    // 30 (WeightedSumScorer.calculateSummaryScore, ScoringHelper.score).
    let mut both = versus("b", "A", "plus20", "baseline", json!({}));
    if let Some(b) = both.as_object_mut() {
        b.remove("group");
        b.insert("groups".into(), json!(["A", "B"]));
    }
    let (code, m) = judge(
        vec![
            versus("a", "A", "v1", "baseline", json!({})),
            both,
            versus("m", "A", "minus20", "baseline", json!({"muted": true})),
        ],
        json!({"groupWeights": {"A": 60}}),
    );
    assert_eq!((code, m["value"].as_f64()), (1, Some(30.0)), "{m}");
    let muted = metric_named(&m, "m");
    assert_eq!(
        (muted["label"].as_str(), muted["muted"].as_bool()),
        (Some("Low"), Some(true)),
        "{m}"
    );
}

#[test]
fn kayenta_item6_small_samples_have_outlier_fences() {
    // R: quantile(c(1, 2, 100), c(.01,.25,.75,.99), type=7) → 1.02, 1.5, 51, 98.04; with
    // factor 0.5 the upper fence is max(98.04, 51 + 0.5 × 49.5) = 98.04: 100 goes.
    let (_, m) = judge(
        vec![versus(
            "o",
            "A",
            "small3",
            "baseline",
            json!({"outlierFactor": 0.5}),
        )],
        json!({}),
    );
    let r = metric_named(&m, "o");
    assert_eq!(
        (r["outliers"][0].as_u64(), r["canaryCount"].as_u64()),
        (Some(1), Some(2)),
        "{r}"
    );
}

#[test]
fn kayenta_item7_the_reason_names_the_tolerance() {
    let (_, m) = judge(
        vec![versus("t", "A", "plus20", "baseline", json!({}))],
        json!({"tolerance": 0.1}),
    );
    let reason = metric_named(&m, "t")["reason"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(reason.contains("0.1 × |estimate| dead band"), "{reason}");
}
