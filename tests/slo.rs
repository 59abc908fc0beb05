//! `burn-rate` and `baseline-ratio`, shipped components run by the real binary
//! (`rollgate plugin measure`) against a real Prometheus on a loopback port, over two hours
//! of backfilled request counters: the canary (v2) errs at 0.1 % like the stable version
//! (v1) for an hour, then at 5 %.

use crate::common;

use common::{PromServer, rollgate};
use serde_json::{Value, json};

/// Seconds; the data spans T0 .. T0 + 2 h, a sample every 15 s.
const T0: i64 = 1_700_000_000;

fn data() -> String {
    let mut om = String::from("# TYPE http_requests counter\n");
    let (mut requests, mut errors) = ([0.0f64; 2], [0.0f64; 2]);
    let mut req_lines = String::new();
    let mut err_lines = String::new();
    for t in (T0..=T0 + 7200).step_by(15) {
        for (i, version) in ["v1", "v2"].iter().enumerate() {
            req_lines.push_str(&format!(
                "http_requests_total{{version=\"{version}\"}} {} {t}\n",
                requests[i]
            ));
            err_lines.push_str(&format!(
                "http_errors_total{{version=\"{version}\"}} {} {t}\n",
                errors[i]
            ));
            // 10 requests a second; 0.1 % errors, the canary 5 % after the first hour.
            requests[i] += 150.0;
            errors[i] += if i == 1 && t >= T0 + 3600 { 7.5 } else { 0.15 };
        }
    }
    om.push_str(&req_lines);
    om.push_str("# TYPE http_errors counter\n");
    om.push_str(&err_lines);
    om.push_str("# EOF\n");
    om
}

struct Setup {
    _server: PromServer,
    _dir: tempfile::TempDir,
    backends: String,
}

async fn setup() -> Setup {
    let server = PromServer::start(&data()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let backends = dir.path().join("backends.yaml");
    std::fs::write(
        &backends,
        format!(
            "apiVersion: rollgate.dev/v1alpha1\nkind: MetricBackend\nmetadata:\n  name: prom\nspec:\n  prometheus:\n    address: {}\n",
            server.address
        ),
    )
    .expect("write");
    Setup {
        backends: backends.to_string_lossy().into_owned(),
        _server: server,
        _dir: dir,
    }
}

/// `plugin measure` at T0 + `minutes`; the exit code and the JSON result.
async fn measure(s: &Setup, plugin: &str, config: Value, minutes: i64) -> (i32, Value) {
    let backends = s.backends.clone();
    let plugin = plugin.to_string();
    let at = (T0 + minutes * 60).to_string();
    let run = tokio::task::spawn_blocking(move || {
        rollgate(&[
            "plugin",
            "measure",
            &plugin,
            "--config",
            &config.to_string(),
            "--backends",
            &backends,
            "--at",
            &at,
            "--format",
            "json",
        ])
    })
    .await
    .expect("joined");
    let v: Value = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}{}", run.stdout, run.stderr));
    (run.code, v)
}

fn burn(version: &str) -> Value {
    json!({
        "backend": "prom",
        "errorsQuery": format!("sum(increase(http_errors_total{{version=\"{version}\"}}[$window]))"),
        "totalQuery": format!("sum(increase(http_requests_total{{version=\"{version}\"}}[$window]))"),
        "slo": 0.999,
        "scaleToPhase": false,
    })
}

#[tokio::test]
async fn burn_rate_needs_both_windows_over_the_threshold() {
    let s = setup().await;
    // Healthy: burn ≈ 1 in both windows.
    let (code, v) = measure(&s, "burn-rate", burn("v2"), 50).await;
    assert_eq!(code, 0, "{v}");
    let long = v["details"]["long"]["burnRate"].as_f64().expect("long");
    assert!((long - 1.0).abs() < 0.1, "{v}");
    // 15 minutes into the incident: the short window burns at 50, the hour at ~13 < 14.4.
    let (code, v) = measure(&s, "burn-rate", burn("v2"), 75).await;
    assert_eq!(code, 0, "{v}");
    assert!(
        v["message"]
            .as_str()
            .unwrap_or("")
            .contains("only one window burns too fast"),
        "{v}"
    );
    assert!(
        v["details"]["short"]["burnRate"].as_f64().unwrap_or(0.0) > 45.0,
        "{v}"
    );
    // 50 minutes in: both windows burn too fast.
    let (code, v) = measure(&s, "burn-rate", burn("v2"), 110).await;
    assert_eq!(code, 1, "{v}");
    assert!(
        v["message"]
            .as_str()
            .unwrap_or("")
            .contains("both windows burn too fast"),
        "{v}"
    );
    // The stable version never burns.
    let (code, _) = measure(&s, "burn-rate", burn("v1"), 110).await;
    assert_eq!(code, 0);
    // No traffic for a version that does not exist: no data, not a pass.
    let (code, v) = measure(&s, "burn-rate", burn("v3"), 110).await;
    assert_eq!(code, 2, "{v}");
    assert!(
        v["message"]
            .as_str()
            .unwrap_or("")
            .contains("under minRequests 100"),
        "{v}"
    );
}

fn ratio(extra: Value) -> Value {
    let mut v = json!({
        "backend": "prom",
        "query": "sum by (version) (rate(http_errors_total[5m])) / sum by (version) (rate(http_requests_total[5m]))",
        "splitBy": "version", "canary": "v2", "baseline": "v1",
        "tolerance": 1.5,
        "traffic": {"query": "sum by (version) (increase(http_requests_total[5m]))", "splitBy": "version", "canary": "v2", "baseline": "v1"},
        "minTraffic": 1000,
    });
    if let (Some(v), Some(e)) = (v.as_object_mut(), extra.as_object()) {
        v.extend(e.clone());
    }
    v
}

#[tokio::test]
async fn baseline_ratio_compares_the_canary_with_the_stable_version() {
    let s = setup().await;
    let (code, v) = measure(&s, "baseline-ratio", ratio(json!({})), 30).await;
    assert_eq!(code, 0, "{v}");
    assert!(
        (v["value"].as_f64().unwrap_or(0.0) - 1.0).abs() < 0.01,
        "{v}"
    );
    let (code, v) = measure(&s, "baseline-ratio", ratio(json!({})), 90).await;
    assert_eq!(code, 1, "{v}");
    assert!(
        (v["value"].as_f64().unwrap_or(0.0) - 50.0).abs() < 1.0,
        "{v}"
    );
    // Two queries and a difference: 5 % − 0.1 % is over a 1-point tolerance.
    let two = json!({
        "backend": "prom",
        "canaryQuery": "sum(rate(http_errors_total{version=\"v2\"}[5m])) / sum(rate(http_requests_total{version=\"v2\"}[5m]))",
        "baselineQuery": "sum(rate(http_errors_total{version=\"v1\"}[5m])) / sum(rate(http_requests_total{version=\"v1\"}[5m]))",
        "compare": "difference", "tolerance": 0.01,
    });
    let (code, v) = measure(&s, "baseline-ratio", two, 90).await;
    assert_eq!(code, 1, "{v}");
    assert!(
        (v["value"].as_f64().unwrap_or(0.0) - 0.049).abs() < 1e-3,
        "{v}"
    );
    // Too little traffic: no data.
    let (code, v) = measure(&s, "baseline-ratio", ratio(json!({"minTraffic": 1e9})), 90).await;
    assert_eq!(code, 2, "{v}");
    assert!(
        v["message"]
            .as_str()
            .unwrap_or("")
            .contains("each side needs at least"),
        "{v}"
    );
}
