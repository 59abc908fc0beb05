//! The Datadog backend (feature `datadog`) against a local stand-in that follows Datadog's
//! documented v1/v2 request and response format: the SaaS cannot be reached from here.

use crate::common;

use common::{DdReply, StandIn, dd_v2_body, free_port, host};
use rollgate::metrics::datadog::{Api, Datadog, DatadogConfig, RateLimit};
use rollgate::metrics::{Backend, BackendOptions, DataStatus, QueryErrorKind, Window};
use rollgate::plugin::types::Verdict;
use rollgate::plugin::{LoadOptions, MetricsBinding, PluginSource};
use std::sync::Arc;
use std::time::Duration;

const API: &str = "api-key-0123456789";
const APP: &str = "app-key-9876543210";
const T: i64 = 1_700_000_000_000;

/// Keys by file reference, as operators give them.
struct Keys {
    _dir: tempfile::TempDir,
    api: String,
    app: String,
}

fn keys(api: &str, app: &str) -> Keys {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("api"), dir.path().join("app"));
    std::fs::write(&a, format!("{api}\n")).unwrap();
    std::fs::write(&b, app).unwrap();
    Keys {
        api: format!("file:{}", a.display()),
        app: format!("file:{}", b.display()),
        _dir: dir,
    }
}

fn datadog(url: &str, keys: &Keys, api: Api, rate_limit: RateLimit) -> Datadog {
    Datadog::new(&DatadogConfig {
        site: None,
        url: Some(url.to_string()),
        api_key: keys.api.clone(),
        application_key: keys.app.clone(),
        api,
        timeout: Some("5s".into()),
        rate_limit,
    })
    .expect("valid config")
}

fn ok(body: String) -> DdReply {
    (200, vec![], body)
}

fn range() -> Window {
    Window::Range {
        start_ms: T,
        end_ms: T + 120_000,
        step_ms: 60_000,
    }
}

#[tokio::test]
async fn v2_results_are_normalised() {
    let dd = StandIn::datadog(API, APP, |r, _| {
        let q = r.body["data"]["attributes"]["queries"][0]["query"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let times = [T, T + 60_000, T + 120_000];
        match q.as_str() {
            "empty" => ok(dd_v2_body(&times, &[])),
            "nulls" => ok(dd_v2_body(
                &times,
                &[(&["version:canary"], vec![None, None, None])],
            )),
            _ => ok(dd_v2_body(
                &times,
                &[
                    (
                        &["version:stable"],
                        vec![Some(0.01), Some(0.01), Some(0.01)],
                    ),
                    (&["version:canary"], vec![Some(0.02), None, Some(0.1)]),
                ],
            )),
        }
    })
    .await;
    let k = keys(API, APP);
    let backend = datadog(&dd.url, &k, Api::V2, RateLimit::default());
    let r = backend
        .query("dd", "avg:errors{*} by {version}", range())
        .await
        .unwrap();
    assert_eq!(r.series.len(), 2);
    assert_eq!(
        r.series[0].labels,
        vec![("version".to_string(), "canary".to_string())]
    );
    let canary: Vec<f64> = r.series[0].points.iter().map(|p| p.1).collect();
    assert_eq!(canary[0], 0.02);
    assert!(canary[1].is_nan(), "null is NaN");
    assert_eq!(canary[2], 0.1);
    assert_eq!(r.series[0].points[2].0, T + 120_000);
    assert_eq!(r.status(), DataStatus::Ok);

    // What went over the wire: the documented v2 request.
    let sent = &dd.seen()[0];
    assert_eq!(sent.path, "/api/v2/query/timeseries");
    let a = &sent.body["data"]["attributes"];
    assert_eq!(
        (a["from"].as_i64(), a["to"].as_i64(), a["interval"].as_i64()),
        (Some(T), Some(T + 120_000), Some(60_000))
    );
    assert_eq!(a["formulas"][0]["formula"], "a");
    assert_eq!(a["queries"][0]["name"], "a");

    let r = backend.query("dd", "empty", range()).await.unwrap();
    assert_eq!(r.status(), DataStatus::NoData);
    let r = backend.query("dd", "nulls", range()).await.unwrap();
    assert_eq!(r.status(), DataStatus::NoData);

    // Instant: the newest non-null point of the last 5 minutes, at the asked time.
    let r = backend
        .query("dd", "x", Window::Instant(T + 150_000))
        .await
        .unwrap();
    assert_eq!(r.series[0].points, vec![(T + 150_000, 0.1)]);
    let seen = dd.seen();
    let a = &seen.last().unwrap().body["data"]["attributes"];
    assert_eq!(a["from"].as_i64(), Some(T + 150_000 - 300_000));
}

#[tokio::test]
async fn v1_queries() {
    let dd = StandIn::datadog(API, APP, |r, _| {
        if r.query.get("query").map(String::as_str) == Some("bad{") {
            return ok(
                r#"{"status": "error", "error": "Error parsing query: unexpected end"}"#.into(),
            );
        }
        ok(serde_json::json!({
            "status": "ok",
            "res_type": "time_series",
            "query": r.query["query"],
            "from_date": 1_700_000_000_000i64,
            "to_date": 1_700_000_120_000i64,
            "series": [{
                "metric": "errors", "scope": "version:canary", "tag_set": ["version:canary"],
                "expression": "avg:errors{version:canary}", "length": 2, "interval": 60,
                "pointlist": [[1_700_000_000_000.0, 0.02], [1_700_000_060_000.0, null]]
            }]
        })
        .to_string())
    })
    .await;
    let k = keys(API, APP);
    let backend = datadog(&dd.url, &k, Api::V1, RateLimit::default());
    let r = backend
        .query("dd", "avg:errors{version:canary}", range())
        .await
        .unwrap();
    assert_eq!(
        r.series[0].labels,
        vec![("version".to_string(), "canary".to_string())]
    );
    assert_eq!(r.series[0].points[0], (T, 0.02));
    assert!(r.series[0].points[1].1.is_nan());
    let sent = &dd.seen()[0];
    assert_eq!(sent.path, "/api/v1/query");
    assert_eq!(sent.query["from"], (T / 1000).to_string());
    assert_eq!(sent.query["query"], "avg:errors{version:canary}");
    let e = backend.query("dd", "bad{", range()).await.unwrap_err();
    assert_eq!(e.kind, QueryErrorKind::BadQuery);
    assert!(e.message.contains("Error parsing query"), "{e}");
}

#[tokio::test]
async fn failures_are_classified_and_keys_never_leak() {
    let dd = StandIn::datadog(API, APP, |r, _| {
        let q = r.body["data"]["attributes"]["queries"][0]["query"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        match q.as_str() {
            "boom" => (
                500,
                vec![],
                r#"{"errors":["Internal Server Error"]}"#.into(),
            ),
            "garbage" => (200, vec![], "this is not json".into()),
            "bad" => (
                400,
                vec![],
                r#"{"errors":["Invalid query: unexpected '}'"]}"#.into(),
            ),
            _ => ok(dd_v2_body(&[T], &[])),
        }
    })
    .await;
    let good = keys(API, APP);
    let backend = datadog(&dd.url, &good, Api::V2, RateLimit::default());
    let cases = [
        (
            "boom",
            QueryErrorKind::Unavailable,
            "HTTP 500 Internal Server Error: Internal Server Error",
        ),
        ("garbage", QueryErrorKind::Other, "not Datadog API JSON"),
        (
            "bad",
            QueryErrorKind::BadQuery,
            "Invalid query: unexpected '}'",
        ),
    ];
    for (query, kind, text) in cases {
        let e = backend.query("dd", query, range()).await.unwrap_err();
        assert_eq!(e.kind, kind, "{query}: {e}");
        assert!(e.message.contains(text), "{query}: {e}");
    }

    // Wrong key: the stand-in answers 403 as Datadog does.
    let wrong = keys("wrong-api-key-1234", APP);
    let e = datadog(&dd.url, &wrong, Api::V2, RateLimit::default())
        .query("dd", "x", range())
        .await
        .unwrap_err();
    assert_eq!(e.kind, QueryErrorKind::Unauthorized, "{e}");
    assert!(e.kind.is_config());
    assert!(e.message.contains("Forbidden"), "{e}");
    for secret in [API, APP, "wrong-api-key-1234"] {
        assert!(!e.to_string().contains(secret), "a key leaked: {e}");
    }

    // No answer in time: the request timeout fires, retryable.
    let hole = common::Blackhole::start();
    let slow = Datadog::new(&DatadogConfig {
        site: None,
        url: Some(hole.address.clone()),
        api_key: good.api.clone(),
        application_key: good.app.clone(),
        api: Api::V2,
        timeout: Some("300ms".into()),
        rate_limit: RateLimit::default(),
    })
    .unwrap();
    let e = slow.query("dd", "x", range()).await.unwrap_err();
    assert_eq!(e.kind, QueryErrorKind::Timeout, "{e}");
    assert!(e.kind.retryable());

    // Nobody listening: retryable.
    let down = datadog(
        &format!("http://127.0.0.1:{}", free_port()),
        &good,
        Api::V2,
        RateLimit::default(),
    );
    let e = down.query("dd", "x", range()).await.unwrap_err();
    assert_eq!(e.kind, QueryErrorKind::Unavailable, "{e}");
    assert!(e.kind.retryable());
}

/// A stand-in that answers every query 429 with `X-RateLimit-Reset: reset`.
async fn always_limited(reset: &'static str) -> StandIn {
    StandIn::datadog(API, APP, move |_, _| {
        (
            429,
            vec![("X-RateLimit-Reset".into(), reset.into())],
            r#"{"errors":["Too many requests"]}"#.into(),
        )
    })
    .await
}

#[tokio::test]
async fn rate_limits_are_waited_out_as_the_headers_say() {
    // The first two answers are 429 with X-RateLimit-Reset: 1 (second); then data.
    let dd = StandIn::datadog(API, APP, |_, i| {
        if i < 2 {
            (
                429,
                vec![
                    ("X-RateLimit-Limit".into(), "100".into()),
                    ("X-RateLimit-Period".into(), "10".into()),
                    ("X-RateLimit-Remaining".into(), "0".into()),
                    ("X-RateLimit-Reset".into(), "1".into()),
                ],
                r#"{"errors":["Too many requests"]}"#.into(),
            )
        } else {
            ok(dd_v2_body(&[T], &[(&["version:canary"], vec![Some(0.5)])]))
        }
    })
    .await;
    let k = keys(API, APP);
    let backend = datadog(&dd.url, &k, Api::V2, RateLimit::default());
    let r = backend
        .query("dd", "x", range())
        .await
        .expect("succeeds after waiting");
    assert_eq!(r.series[0].points[0].1, 0.5);
    let seen = dd.seen();
    assert_eq!(seen.len(), 3);
    // The backoff honoured the reset header (1 s, plus up to 25 % jitter) each time.
    for pair in seen.windows(2) {
        let gap = pair[1].at - pair[0].at;
        assert!(gap >= Duration::from_secs(1), "retried after {gap:?}");
    }

    // With fewer retries allowed than 429s, the error is rate-limited (retryable).
    let dd = always_limited("0.2").await;
    let backend = datadog(
        &dd.url,
        &k,
        Api::V2,
        RateLimit {
            max_retries: 2,
            max_wait: "30s".into(),
        },
    );
    let e = backend.query("dd", "x", range()).await.unwrap_err();
    assert_eq!(e.kind, QueryErrorKind::RateLimited, "{e}");
    assert!(e.kind.retryable());
    assert_eq!(dd.seen().len(), 3, "one try and two retries");

    // A reset further away than the wait budget is not waited for.
    let dd = always_limited("60").await;
    let backend = datadog(
        &dd.url,
        &k,
        Api::V2,
        RateLimit {
            max_retries: 5,
            max_wait: "2s".into(),
        },
    );
    let started = std::time::Instant::now();
    let e = backend.query("dd", "x", range()).await.unwrap_err();
    assert_eq!(e.kind, QueryErrorKind::RateLimited);
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(dd.seen().len(), 1);
}

#[test]
fn configuration_errors_name_the_field() {
    let k = keys(API, APP);
    let base = DatadogConfig {
        site: None,
        url: None,
        api_key: k.api.clone(),
        application_key: k.app.clone(),
        api: Api::V2,
        timeout: None,
        rate_limit: RateLimit::default(),
    };
    let bad_key = keys("line\u{7}feed", APP);
    let cases = [
        (
            DatadogConfig {
                api_key: "plain-key".into(),
                ..base.clone()
            },
            "apiKey: credentials are given by reference only",
        ),
        (
            DatadogConfig {
                application_key: "env:ROLLGATE_TEST_UNSET_APP".into(),
                ..base.clone()
            },
            "applicationKey: environment variable ROLLGATE_TEST_UNSET_APP is not set",
        ),
        (
            DatadogConfig {
                api_key: bad_key.api.clone(),
                ..base.clone()
            },
            "apiKey: the key contains characters not allowed",
        ),
        (
            DatadogConfig {
                site: Some("datadoghq.eu".into()),
                url: Some("http://x".into()),
                ..base.clone()
            },
            "either site or url",
        ),
        (
            DatadogConfig {
                site: Some("evil.com/path?".into()),
                ..base.clone()
            },
            "is not a host name",
        ),
        (
            DatadogConfig {
                url: Some("ftp://x".into()),
                ..base.clone()
            },
            "use http(s)://host",
        ),
        (
            DatadogConfig {
                timeout: Some("fast".into()),
                ..base.clone()
            },
            "timeout:",
        ),
    ];
    for (config, text) in cases {
        let e = Datadog::new(&config).err().expect("refused");
        assert!(e.contains(text), "{e:?} does not contain {text:?}");
    }
    // Any site is accepted without the client's panicking site list.
    assert!(
        Datadog::new(&DatadogConfig {
            site: Some("us9.datadoghq.com".into()),
            ..base.clone()
        })
        .is_ok()
    );
    assert!(Datadog::new(&base).is_ok(), "datadoghq.com by default");
}

#[tokio::test]
async fn threshold_against_the_datadog_stand_in() {
    let dd = StandIn::datadog(API, APP, |r, _| {
        let from = r.body["data"]["attributes"]["from"]
            .as_i64()
            .unwrap_or_default();
        // Healthy before T + 10 min, then 10 % errors.
        let v = if from < T + 600_000 { 0.02 } else { 0.1 };
        ok(dd_v2_body(
            &[from, from + 60_000],
            &[(&["version:canary"], vec![Some(v), Some(v)])],
        ))
    })
    .await;
    let k = keys(API, APP);
    let backends = common::one_backend(
        "dd",
        Arc::new(datadog(&dd.url, &k, Api::V2, RateLimit::default())),
        BackendOptions::default(),
    );
    let plugin = host()
        .load(
            &PluginSource::Builtin("threshold".into()),
            &LoadOptions::default(),
        )
        .unwrap();
    let config = r#"{"backend": "dd", "query": "sum:errors{version:canary}.as_rate()", "window": "2m", "reduce": "avg", "condition": "< 0.05"}"#;
    for (now, verdict) in [(T + 300_000, Verdict::Pass), (T + 900_000, Verdict::Fail)] {
        let m = plugin
            .measure(
                config,
                &common::context(now),
                Some(MetricsBinding::new(backends.clone(), ["dd".to_string()])),
            )
            .await
            .unwrap();
        assert_eq!(m.verdict, verdict, "{}", m.message);
    }
}

#[tokio::test]
async fn one_metric_from_the_command_line() {
    let dd = StandIn::datadog(API, APP, |_, _| {
        ok(dd_v2_body(
            &[T, T + 60_000],
            &[(&["version:canary"], vec![Some(0.2), Some(0.3)])],
        ))
    })
    .await;
    let k = keys(API, APP);
    let dir = tempfile::tempdir().unwrap();
    let backends = dir.path().join("backends.yaml");
    std::fs::write(
        &backends,
        format!(
            "apiVersion: rollgate.dev/v1alpha1\nkind: MetricBackend\nmetadata:\n  name: dd\nspec:\n  datadog:\n    url: {}\n    apiKey: {}\n    applicationKey: {}\n",
            dd.url, k.api, k.app
        ),
    )
    .unwrap();
    let config = r#"{"backend": "dd", "query": "sum:errors{version:canary}.as_rate()", "window": "2m", "reduce": "avg", "condition": "< 0.05"}"#;
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_rollgate"))
        .args([
            "plugin",
            "measure",
            "threshold",
            "--config",
            config,
            "--backends",
        ])
        .arg(&backends)
        .args(["--at", &(T + 120_000).to_string()])
        .output()
        .await
        .expect("runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.starts_with("fail: avg over 2m = 0.25, does not meet < 0.05"),
        "{stdout}"
    );
}
