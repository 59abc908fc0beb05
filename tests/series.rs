//! The metric series through `rollgate serve`: `GET /api/v2/rollouts/NAME/series` after a
//! run holds a point for every measurement the run counted — per phase, per metric, and
//! the background apart — whatever measurement retention kept.

use crate::common;

use common::serve::Serve;
use serde_json::Value;
use std::path::Path;

/// A metric of the threshold plugin over the recording, measured every 50 ms.
fn metric(name: &str, condition: &str, count: Option<u32>, indent: &str) -> String {
    let count = count
        .map(|c| format!("{indent}  count: {c}\n"))
        .unwrap_or_default();
    format!(
        "{indent}- name: {name}\n\
         {indent}  provider:\n\
         {indent}    plugin: threshold\n\
         {indent}    backend: recorded\n\
         {indent}    config:\n\
         {indent}      backend: recorded\n\
         {indent}      query: 'http_error_ratio{{service=\"checkout\",track=\"canary\"}}'\n\
         {indent}      window: 1m\n\
         {indent}      reduce: avg\n\
         {indent}      condition: \"{condition}\"\n\
         {indent}  interval: 50ms\n\
         {indent}  measurementRetention: 2\n\
         {count}"
    )
}

/// `quick`: two phases of six and four measurements of `error-ratio`, and a background
/// metric `alive` measuring until the run ends.
fn config(dir: &Path) {
    common::copy_example("canary", &["backends.yaml", "error-ratio.om"], dir);
    let rollout = format!(
        "apiVersion: rollgate.dev/v1alpha1\nkind: Rollout\nmetadata:\n  name: quick\nspec:\n  \
         stableVersion: v1\n  canaryVersion: v2\n  target:\n    none: {{}}\n  strategy:\n    \
         canary: {{}}\n  backgroundVerification:\n    metrics:\n{}  phases:\n    - name: \
         canary-10\n      weight: 10\n      verification:\n        metrics:\n{}    - name: \
         full\n      weight: 100\n      verification:\n        metrics:\n{}",
        metric("alive", "< 1", None, "      "),
        metric("error-ratio", "< 0.05", Some(6), "          "),
        metric("error-ratio", "< 0.05", Some(4), "          "),
    );
    std::fs::write(dir.join("rollouts.yaml"), rollout).expect("write rollouts");
}

/// The sum of a v2 metric's counts.
fn counted(metric: &Value) -> u64 {
    ["pass", "fail", "inconclusive", "noData", "error"]
        .iter()
        .map(|k| metric["counts"][*k].as_u64().unwrap_or(0))
        .sum()
}

/// The measurements a series stands for.
fn points(series: &Value) -> u64 {
    series["points"]
        .as_array()
        .map(|p| p.iter().map(|p| p["count"].as_u64().unwrap_or(0)).sum())
        .unwrap_or(0)
}

#[test]
fn the_series_of_a_run_holds_every_measurement_it_counted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config_dir = dir.path().join("config");
    std::fs::create_dir(&config_dir).expect("mkdir");
    config(&config_dir);
    let s = Serve::new(dir.path()).start();
    s.wait_state("quick", 1, "succeeded");

    let (code, snap) = s.read("/api/v2/rollouts/quick");
    assert_eq!(code, 200, "{snap}");
    let (code, doc) = s.read("/api/v2/rollouts/quick/series");
    assert_eq!(code, 200, "{doc}");
    common::assert_valid(&common::api_schema("RolloutSeries"), &doc);
    assert_eq!(
        (&doc["apiVersion"], &doc["rollout"], &doc["run"]),
        (
            &Value::from("rollgate.dev/v2"),
            &Value::from("quick"),
            &Value::from(1)
        ),
        "{doc}"
    );
    let series = doc["metrics"].as_array().expect("metrics");
    let keys: Vec<(i64, &str, bool)> = series
        .iter()
        .map(|m| {
            (
                m["phaseIndex"].as_i64().unwrap_or(-9),
                m["metric"].as_str().unwrap_or(""),
                m["background"].as_bool().unwrap_or(false),
            )
        })
        .collect();
    assert_eq!(
        keys,
        [
            (-1, "alive", true),
            (0, "error-ratio", false),
            (1, "error-ratio", false)
        ],
        "{doc}"
    );
    // The first phase measured six times (all pass) before it went on.
    assert_eq!(points(&series[1]), 6, "{doc}");
    // The snapshot shows the last phase's metrics and the background: each one's counts
    // are its series' points, though retention keeps only two passes of each.
    let phase = snap["phase"].as_i64().expect("phase");
    let metrics = snap["metrics"].as_array().expect("metrics");
    assert_eq!(metrics.len(), 2, "{snap}");
    for m in metrics {
        let background = m["background"].as_bool().unwrap_or(false);
        let phase_index = if background { -1 } else { phase };
        let one = series
            .iter()
            .find(|s| s["phaseIndex"] == phase_index && s["metric"] == m["name"])
            .unwrap_or_else(|| panic!("no series for {m}: {doc}"));
        assert!(counted(m) > 0, "{m}");
        assert_eq!(points(one), counted(m), "{m}\n{one}");
        assert_eq!(one["downsampled"], false);
        let verdicts = one["points"].as_array().expect("points");
        assert!(
            verdicts
                .iter()
                .all(|p| p["verdict"] == "pass" && p["value"].is_f64() && p["count"] == 1),
            "{one}"
        );
    }

    // Errors as history's: no such rollout, no such run (with the runs there are), no token.
    let (code, body) = s.read("/api/v2/rollouts/nope/series");
    assert_eq!(code, 404, "{body}");
    assert_eq!(body["error"], "no rollout named \"nope\"", "{body}");
    let (code, body) = s.read("/api/v2/rollouts/quick/series?run=7");
    assert_eq!(code, 404, "{body}");
    assert_eq!(body["error"], "\"quick\" has no run 7 (runs: 1)", "{body}");
    let (code, same) = s.read("/api/v2/rollouts/quick/series?run=1");
    assert_eq!((code, &same), (200, &doc));
    let (code, _) = s.call("GET", "/api/v2/rollouts/quick/series", None, None);
    assert_eq!(code, 401, "reading a series needs a token");
}
