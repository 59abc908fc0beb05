//! The canary judge through the host: the shipped `canary-judge` component, run by the real
//! binary (`rollgate plugin test`) over tests/judge/vectors.om, must give the reference
//! values of shared/judge-vectors.md that its native unit tests give (both builds agree).

mod common;

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
    let (code, m) = one("allnan", json!({}));
    expect(&m, None, None, None, "Nodata");
    assert_eq!((code, m["verdict"].as_str()), (2, Some("no-data")));
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
    assert!(
        (m["value"].as_f64().unwrap_or(-1.0) - 83.333).abs() < 1e-3,
        "{m}"
    );
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
