//! The Prometheus backend against a real Prometheus (Debian's package) on a loopback port,
//! loaded with exact data, directly and through the `threshold` plugin.

use crate::common;

use common::{Blackhole, PromServer, context, free_port, host, one_backend};
use rollgate::metrics::prometheus::{Prometheus, PrometheusConfig};
use rollgate::metrics::{
    Backend, BackendOptions, Backends, DataStatus, QueryErrorKind, Series, Window,
};
use rollgate::plugin::types::Verdict;
use rollgate::plugin::{LoadOptions, MetricsBinding, Plugin, PluginSource};
use std::sync::Arc;

/// Seconds; the data spans T0 .. T0 + 600 s, a point every 15 s.
const T0: i64 = 1_700_000_000;

/// error_ratio{version="canary"} is 0.02 before T0+300 and 0.10 from then on;
/// error_ratio{version="stable"} is 0.01; nan_ratio is NaN; inf_ratio is +Inf.
fn data() -> String {
    let mut om = String::from("# TYPE error_ratio gauge\n");
    for t in (T0..=T0 + 600).step_by(15) {
        let canary = if t < T0 + 300 { "0.02" } else { "0.1" };
        om.push_str(&format!("error_ratio{{version=\"canary\"}} {canary} {t}\n"));
        om.push_str(&format!("error_ratio{{version=\"stable\"}} 0.01 {t}\n"));
    }
    om.push_str("# TYPE nan_ratio gauge\n");
    for t in (T0..=T0 + 600).step_by(15) {
        om.push_str(&format!("nan_ratio NaN {t}\n"));
    }
    om.push_str("# TYPE inf_ratio gauge\n");
    for t in (T0..=T0 + 600).step_by(15) {
        om.push_str(&format!("inf_ratio +Inf {t}\n"));
    }
    om.push_str("# EOF\n");
    om
}

fn prometheus(address: &str, timeout: &str) -> Prometheus {
    Prometheus::new(&PrometheusConfig {
        timeout: Some(timeout.to_string()),
        ..PrometheusConfig::new(address)
    })
    .expect("valid config")
}

fn labels(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[tokio::test]
async fn results_are_normalised() {
    let server = PromServer::start(&data()).await;
    let prom = prometheus(&server.address, "10s");
    let at = |s: i64| Window::Instant(s * 1000);

    // Instant vector: sorted series, one point at the evaluation time.
    let r = prom.query("p", "error_ratio", at(T0 + 60)).await.unwrap();
    assert_eq!(
        r.series,
        vec![
            Series {
                labels: labels(&[("__name__", "error_ratio"), ("version", "canary")]),
                points: vec![((T0 + 60) * 1000, 0.02)],
            },
            Series {
                labels: labels(&[("__name__", "error_ratio"), ("version", "stable")]),
                points: vec![((T0 + 60) * 1000, 0.01)],
            },
        ]
    );
    assert_eq!(r.status(), DataStatus::Ok);

    // Range matrix.
    let r = prom
        .query(
            "p",
            "error_ratio{version=\"canary\"}",
            Window::Range {
                start_ms: (T0 + 270) * 1000,
                end_ms: (T0 + 300) * 1000,
                step_ms: 15_000,
            },
        )
        .await
        .unwrap();
    assert_eq!(r.series.len(), 1);
    assert_eq!(
        r.series[0].points,
        vec![
            ((T0 + 270) * 1000, 0.02),
            ((T0 + 285) * 1000, 0.02),
            ((T0 + 300) * 1000, 0.1)
        ]
    );

    // Scalar.
    let r = prom
        .query("p", "scalar(error_ratio{version=\"stable\"})", at(T0))
        .await
        .unwrap();
    assert_eq!(
        r.series,
        vec![Series {
            labels: vec![],
            points: vec![(T0 * 1000, 0.01)]
        }]
    );

    // NaN and +Inf come through as values; all-NaN is no-data.
    let r = prom.query("p", "nan_ratio", at(T0 + 60)).await.unwrap();
    assert!(r.series[0].points[0].1.is_nan());
    assert_eq!(r.status(), DataStatus::NoData);
    let r = prom.query("p", "inf_ratio", at(T0 + 60)).await.unwrap();
    assert_eq!(r.series[0].points[0].1, f64::INFINITY);

    // An unknown metric is an empty result: no-data, not an error.
    let r = prom.query("p", "no_such_metric", at(T0)).await.unwrap();
    assert!(r.series.is_empty());
    assert_eq!(r.status(), DataStatus::NoData);

    // String results, which the client crate cannot decode.
    let r = prom.query("p", "\"0.5\"", at(T0)).await.unwrap();
    assert_eq!(
        r.series,
        vec![Series {
            labels: vec![],
            points: vec![(T0 * 1000, 0.5)]
        }]
    );
    let e = prom.query("p", "\"hello\"", at(T0)).await.unwrap_err();
    assert_eq!(e.kind, QueryErrorKind::BadQuery);
    assert!(e.message.contains("\"hello\", not a number"), "{e}");
}

#[tokio::test]
async fn failures_are_classified_with_the_backend_message() {
    let server = PromServer::start(&data()).await;
    let prom = prometheus(&server.address, "10s");
    let e = prom
        .query("prom-main", "sum(error_ratio", Window::Instant(T0 * 1000))
        .await
        .unwrap_err();
    assert_eq!(e.kind, QueryErrorKind::BadQuery);
    assert!(e.kind.is_config() && !e.kind.retryable());
    assert_eq!(e.backend, "prom-main");
    // Prometheus' own words, verbatim.
    assert!(
        e.message.contains("HTTP 400") && e.message.contains("bad_data"),
        "{e}"
    );
    assert!(e.message.contains("parse error"), "{e}");

    let down = prometheus(&format!("http://127.0.0.1:{}", free_port()), "2s");
    let e = down
        .query("p", "up", Window::Instant(T0 * 1000))
        .await
        .unwrap_err();
    assert_eq!(e.kind, QueryErrorKind::Unavailable, "{e}");
    assert!(e.kind.retryable());
    assert!(e.message.contains("cannot connect"), "{e}");

    let hole = Blackhole::start();
    let slow = prometheus(&hole.address, "300ms");
    let started = std::time::Instant::now();
    let e = slow
        .query("p", "up", Window::Instant(T0 * 1000))
        .await
        .unwrap_err();
    assert_eq!(e.kind, QueryErrorKind::Timeout, "{e}");
    assert!(e.kind.retryable());
    assert!(started.elapsed() < std::time::Duration::from_secs(10));

    // A wrong path prefix is a 404 with a hint.
    let wrong = prometheus(&format!("{}/not-the-api", server.address), "10s");
    let e = wrong
        .query("p", "up", Window::Instant(T0 * 1000))
        .await
        .unwrap_err();
    assert!(
        e.message.contains("HTTP 404") && e.message.contains("path prefix"),
        "{e}"
    );
}

/// The threshold plugin, bound to backend "prom" of `backends`.
async fn measure(
    plugin: &Plugin,
    backends: Arc<Backends>,
    config: &str,
    now_s: i64,
) -> Result<rollgate::plugin::types::Measurement, rollgate::plugin::PluginError> {
    plugin
        .measure(
            config,
            &context(now_s * 1000),
            Some(MetricsBinding::new(backends, ["prom".to_string()])),
        )
        .await
}

fn threshold(query: &str, condition: &str) -> String {
    serde_json::json!({
        "backend": "prom",
        "query": query,
        "window": "2m",
        "reduce": "avg",
        "condition": condition,
    })
    .to_string()
}

#[tokio::test]
async fn threshold_against_a_real_prometheus() {
    let server = PromServer::start(&data()).await;
    let backends = one_backend(
        "prom",
        Arc::new(prometheus(&server.address, "10s")),
        BackendOptions::default(),
    );
    let host = host();
    let plugin = host
        .load(
            &PluginSource::Builtin("threshold".into()),
            &LoadOptions::default(),
        )
        .unwrap();
    let canary = "error_ratio{version=\"canary\"}";

    // Before the canary degrades: 0.02 over the window.
    let m = measure(
        &plugin,
        backends.clone(),
        &threshold(canary, "< 0.05"),
        T0 + 240,
    )
    .await
    .unwrap();
    assert_eq!(m.verdict, Verdict::Pass, "{}", m.message);
    assert!((m.value.unwrap() - 0.02).abs() < 1e-12);

    // After: 0.10.
    let m = measure(
        &plugin,
        backends.clone(),
        &threshold(canary, "< 0.05"),
        T0 + 540,
    )
    .await
    .unwrap();
    assert_eq!(m.verdict, Verdict::Fail, "{}", m.message);
    assert!((m.value.unwrap() - 0.1).abs() < 1e-12);
    assert!(
        m.message
            .starts_with("avg over 2m = 0.1, does not meet < 0.05"),
        "{}",
        m.message
    );

    // Straddling the change, PromQL's step evaluation gives 30 points of 0.02 and 31 of 0.10.
    let m = measure(
        &plugin,
        backends.clone(),
        &threshold(canary, "< 0.05"),
        T0 + 360,
    )
    .await
    .unwrap();
    assert_eq!(m.verdict, Verdict::Fail, "{}", m.message);
    assert!(
        (m.value.unwrap() - 3.7 / 61.0).abs() < 1e-12,
        "{:?}",
        m.value
    );

    // No data, all-NaN, +Inf.
    for (query, verdict) in [
        ("no_such_metric", Verdict::NoData),
        ("nan_ratio", Verdict::NoData),
        ("inf_ratio", Verdict::Fail),
    ] {
        let m = measure(
            &plugin,
            backends.clone(),
            &threshold(query, "< 0.05"),
            T0 + 240,
        )
        .await
        .unwrap();
        assert_eq!(m.verdict, verdict, "{query}: {}", m.message);
    }

    // A bad query is an error with Prometheus' text, never a verdict.
    let e = measure(
        &plugin,
        backends.clone(),
        &threshold("sum(error_ratio", "< 0.05"),
        T0 + 240,
    )
    .await
    .unwrap_err();
    assert_eq!(e.kind(), "guest-error");
    assert!(
        e.to_string().contains("bad query") && e.to_string().contains("parse error"),
        "{e}"
    );

    // Server down: retryable unavailable error, surfaced through the plugin.
    let down = one_backend(
        "prom",
        Arc::new(prometheus(
            &format!("http://127.0.0.1:{}", free_port()),
            "2s",
        )),
        BackendOptions::default(),
    );
    let e = measure(&plugin, down, &threshold(canary, "< 0.05"), T0 + 240)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("unavailable"), "{e}");
    assert!(
        rollgate::telemetry::global().counter(
            "rollgate_backend_query_errors_total",
            &[("backend", "prom"), ("kind", "unavailable")]
        ) >= 1,
        "the failed query is counted for /metrics"
    );

    // Timeout: the backend's own timeout fires before the plugin's query budget.
    let hole = Blackhole::start();
    let slow = one_backend(
        "prom",
        Arc::new(prometheus(&hole.address, "300ms")),
        BackendOptions::default(),
    );
    let e = measure(&plugin, slow, &threshold(canary, "< 0.05"), T0 + 240)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("timeout"), "{e}");

    // A result over the size cap is refused with a clear error.
    let capped = one_backend(
        "prom",
        Arc::new(prometheus(&server.address, "10s")),
        BackendOptions {
            max_points: 10,
            ..BackendOptions::default()
        },
    );
    let e = measure(&plugin, capped, &threshold(canary, "< 0.05"), T0 + 240)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("over the limit of 10 points"), "{e}");
}

#[tokio::test]
async fn a_recording_replays_to_the_live_verdicts() {
    use rollgate::metrics::record::{merge, record};
    use rollgate::metrics::replay::{Recording, Replay};
    let server = PromServer::start(&data()).await;
    let live = one_backend(
        "prom",
        Arc::new(prometheus(&server.address, "10s")),
        BackendOptions::default(),
    );
    let canary = "error_ratio{version=\"canary\"}";
    let mut recording = Recording {
        version: 1,
        queries: vec![],
    };
    let recorded = record(&live, "prom", canary, T0 * 1000, (T0 + 600) * 1000, 2_000)
        .await
        .unwrap();
    assert_eq!(recorded.series.len(), 1);
    assert_eq!(recorded.series[0].points.len(), 301);
    merge(&mut recording, recorded);
    // Through a file, as `rollgate metrics record` writes it.
    let text = serde_json::to_string(&recording).unwrap();
    let replay = Replay::from_recording(&serde_json::from_str(&text).unwrap()).unwrap();
    let replayed = one_backend("prom", Arc::new(replay), BackendOptions::default());

    let host = host();
    let plugin = host
        .load(
            &PluginSource::Builtin("threshold".into()),
            &LoadOptions::default(),
        )
        .unwrap();
    for now in [T0 + 240, T0 + 360, T0 + 540] {
        let config = threshold(canary, "< 0.05");
        let a = measure(&plugin, live.clone(), &config, now).await.unwrap();
        let b = measure(&plugin, replayed.clone(), &config, now)
            .await
            .unwrap();
        assert_eq!(
            (a.verdict, a.value, &a.message),
            (b.verdict, b.value, &b.message),
            "at T0+{}",
            now - T0
        );
    }
}

#[tokio::test]
async fn metrics_commands_query_and_record() {
    let server = PromServer::start(&data()).await;
    let dir = tempfile::tempdir().unwrap();
    let recording = dir.path().join("rec.json");
    let backends = dir.path().join("backends.yaml");
    std::fs::write(
        &backends,
        format!(
            "apiVersion: rollgate.dev/v1alpha1\nkind: MetricBackend\nmetadata:\n  name: prom\nspec:\n  prometheus:\n    address: {}\n---\napiVersion: rollgate.dev/v1alpha1\nkind: MetricBackend\nmetadata:\n  name: recorded\nspec:\n  replay:\n    file: rec.json\n",
            server.address
        ),
    )
    .unwrap();
    let b = backends.to_str().unwrap();
    let run = |args: Vec<String>| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_rollgate"))
            .args(&args)
            .output()
            .expect("runs");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let args = |extra: &[&str]| -> Vec<String> {
        ["metrics"]
            .iter()
            .chain(extra)
            .map(|s| s.to_string())
            .collect()
    };
    let at = (T0 + 60).to_string();
    let canary = "error_ratio{version=\"canary\"}";

    // The replay backend's file does not exist yet: loading the backends fails, saying where.
    let (code, _, err) = run(args(&[
        "query",
        "--backends",
        b,
        "--backend",
        "prom",
        "--query",
        canary,
        "--at",
        &at,
    ]));
    assert_eq!(code, 4, "{err}");
    assert!(
        err.contains("MetricBackend \"recorded\": spec.replay.file: cannot read"),
        "{err}"
    );

    // Record from the live Prometheus (the replay backend is in another file for now).
    let live_only = dir.path().join("live.yaml");
    let text = std::fs::read_to_string(&backends).unwrap();
    std::fs::write(&live_only, text.split("---").next().unwrap()).unwrap();
    let l = live_only.to_str().unwrap();
    let (code, out, err) = run(args(&[
        "record",
        "--backends",
        l,
        "--backend",
        "prom",
        "--query",
        canary,
        "--from",
        &T0.to_string(),
        "--to",
        &(T0 + 600).to_string(),
        "--step",
        "15s",
        "--out",
        recording.to_str().unwrap(),
    ]));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("recorded 1 series, 41 points"), "{out}");

    // Now both backends load; live and replayed answer the same.
    for backend in ["prom", "recorded"] {
        let (code, out, err) = run(args(&[
            "query",
            "--backends",
            b,
            "--backend",
            backend,
            "--query",
            canary,
            "--at",
            &at,
            "--format",
            "json",
        ]));
        assert_eq!(code, 0, "{backend}: {err}");
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["status"], "ok");
        assert_eq!(v["series"][0]["points"][0][1], 0.02, "{backend}: {v}");
    }
    let (code, out, _) = run(args(&[
        "query",
        "--backends",
        l,
        "--backend",
        "prom",
        "--query",
        "nope",
        "--at",
        &at,
    ]));
    assert_eq!(code, 2, "no data: {out}");
    let (code, _, err) = run(args(&[
        "query",
        "--backends",
        l,
        "--backend",
        "prom",
        "--query",
        "sum(",
        "--at",
        &at,
    ]));
    assert_eq!(code, 3);
    assert!(
        err.contains("bad-query") && err.contains("parse error"),
        "{err}"
    );
    let (code, _, err) = run(args(&[
        "query",
        "--backends",
        l,
        "--backend",
        "nope",
        "--query",
        "up",
    ]));
    assert_eq!(code, 3);
    assert!(
        err.contains("no backend named \"nope\" (known: [prom])"),
        "{err}"
    );
    let (code, _, err) = run(args(&[
        "query",
        "--backends",
        l,
        "--backend",
        "prom",
        "--query",
        "up",
        "--at",
        "yesterday",
    ]));
    assert_eq!(code, 4);
    assert!(err.contains("not understood"), "{err}");
}

#[tokio::test]
async fn tls_with_a_custom_ca() {
    use rollgate::metrics::prometheus::TlsConfig;
    let (server, ca, _certs) = PromServer::start_tls(&data()).await;
    assert!(server.address.starts_with("https://"));
    let with = |tls: Option<TlsConfig>| {
        Prometheus::new(&PrometheusConfig {
            tls,
            ..PrometheusConfig::new(&server.address)
        })
        .expect("valid config")
    };
    let at = Window::Instant((T0 + 60) * 1000);
    let trusted = with(Some(TlsConfig {
        ca_file: Some(ca.display().to_string()),
        insecure_skip_verify: false,
    }));
    let r = trusted
        .query("p", "error_ratio", at)
        .await
        .expect("trusted CA");
    assert_eq!(r.series.len(), 2);
    // The system roots do not know the test CA: a certificate error, not a verdict.
    let e = with(None).query("p", "error_ratio", at).await.unwrap_err();
    assert_eq!(e.kind, QueryErrorKind::Unavailable, "{e}");
    assert!(e.message.to_lowercase().contains("certificate"), "{e}");
    let insecure = with(Some(TlsConfig {
        ca_file: None,
        insecure_skip_verify: true,
    }));
    assert!(insecure.query("p", "error_ratio", at).await.is_ok());
    // A file that is not PEM is refused at configuration time.
    let not_pem = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(not_pem.path(), "hello").unwrap();
    let e = Prometheus::new(&PrometheusConfig {
        tls: Some(TlsConfig {
            ca_file: Some(not_pem.path().display().to_string()),
            insecure_skip_verify: false,
        }),
        ..PrometheusConfig::new(&server.address)
    })
    .err()
    .expect("refused");
    assert!(
        e.contains("tls.caFile") && e.contains("no certificate"),
        "{e}"
    );
}

#[tokio::test]
async fn headers_and_credentials_go_over_the_wire_by_reference() {
    use rollgate::metrics::prometheus::BasicAuth;
    let stand_in = common::StandIn::open(|_, _| {
        (
            200,
            vec![],
            r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#.into(),
        )
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "tok-123456\n").unwrap();
    let password = dir.path().join("password");
    std::fs::write(&password, "pass").unwrap();
    let config = |bearer: bool| PrometheusConfig {
        headers: [("X-Scope-OrgID".to_string(), "team-a".to_string())].into(),
        bearer_token: bearer.then(|| format!("file:{}", token.display())),
        basic_auth: (!bearer).then(|| BasicAuth {
            username: "user".into(),
            password: format!("file:{}", password.display()),
        }),
        ..PrometheusConfig::new(&stand_in.url)
    };
    for bearer in [true, false] {
        let r = Prometheus::new(&config(bearer))
            .unwrap()
            .query("p", "up", Window::Instant(T0 * 1000))
            .await
            .unwrap();
        assert!(r.series.is_empty());
    }
    let seen = stand_in.seen();
    assert_eq!(seen[0].path, "/api/v1/query");
    assert_eq!(seen[0].query["query"], "up");
    assert_eq!(seen[0].query["time"], T0.to_string());
    assert_eq!(seen[0].headers["x-scope-orgid"], "team-a");
    assert_eq!(seen[0].headers["authorization"], "Bearer tok-123456");
    assert_eq!(seen[1].headers["authorization"], "Basic dXNlcjpwYXNz");
}
