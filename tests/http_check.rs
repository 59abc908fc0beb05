//! `http-check` through the host: the shipped component calls a local server over wasi:http,
//! run by `rollgate verify --live` from a Plugin document that lists the allowed hosts.
//! An allowed host is judged; any other host is denied (an error, never a verdict); a
//! server that never answers is a timeout error; null and non-JSON bodies fail.

use crate::common;

use common::{Blackhole, StandIn, rollgate};
use serde_json::Value;

/// A spec whose one metric checks `url` with `config` (JSON object text without braces),
/// the plugin allowed to reach `allowed`.
fn spec(dir: &std::path::Path, allowed: &str, url: &str, config: &str) -> String {
    let text = common::fixture_with(
        "http_check/spec.yaml",
        &[("allowed", allowed), ("url", url), ("config", config)],
    );
    let file = dir.join("spec.yaml");
    std::fs::write(&file, text).expect("write");
    file.to_string_lossy().into_owned()
}

/// `verify --live` of the spec: exit code and the metric's report.
async fn verify(path: String) -> (i32, Value) {
    let run = tokio::task::spawn_blocking(move || {
        rollgate(&[
            "verify",
            &path,
            "--live",
            "--format",
            "json",
            "--max-duration",
            "30s",
        ])
    })
    .await
    .expect("joined");
    let v: Value = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}{}", run.stdout, run.stderr));
    (run.code, v["metrics"][0].clone())
}

fn message(report: &Value) -> String {
    report["observations"][0]["message"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

#[tokio::test]
async fn allowed_hosts_pass_others_are_denied() {
    let server = StandIn::open(|req, _| match req.path.as_str() {
        "/health" => (200, vec![], r#"{"status": "up", "errors": 0.01}"#.into()),
        "/null" => (200, vec![], "null".into()),
        "/html" => (200, vec![], "<html>fine</html>".into()),
        _ => (503, vec![], r#"{"status": "down"}"#.into()),
    })
    .await;
    let port = server
        .url
        .rsplit(':')
        .next()
        .unwrap_or_default()
        .to_string();
    let dir = tempfile::tempdir().expect("tempdir");
    let url = |host: &str, path: &str| format!("http://{host}:{port}{path}");

    let (code, r) = verify(spec(
        dir.path(),
        "127.0.0.1",
        &url("127.0.0.1", "/health"),
        r#"field: /status, equals: up"#,
    ))
    .await;
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["status"], "successful", "{r}");
    assert!(message(&r).contains("field /status is \"up\""), "{r}");

    let (code, r) = verify(spec(
        dir.path(),
        "127.0.0.1",
        &url("127.0.0.1", "/health"),
        r#"field: /errors, max: 0.005"#,
    ))
    .await;
    assert_eq!(code, 1, "{r}");
    assert!(message(&r).contains("outside"), "{r}");

    let (code, r) = verify(spec(
        dir.path(),
        "127.0.0.1",
        &url("127.0.0.1", "/down"),
        "json: true",
    ))
    .await;
    assert_eq!(code, 1, "{r}");
    assert!(message(&r).contains("status 503 is not expected"), "{r}");

    // Null and non-JSON bodies never pass.
    for path in ["/null", "/html"] {
        let (code, r) = verify(spec(
            dir.path(),
            "127.0.0.1",
            &url("127.0.0.1", path),
            "json: true",
        ))
        .await;
        assert_eq!(code, 1, "{path}: {r}");
    }

    // The same server under a name the Plugin document does not list: denied, an error.
    let seen = server.seen().len();
    let (code, r) = verify(spec(
        dir.path(),
        "127.0.0.1",
        &url("localhost", "/health"),
        "json: true",
    ))
    .await;
    assert_eq!(code, 3, "{r}");
    assert_eq!(r["status"], "error", "{r}");
    assert!(message(&r).contains("HttpRequestDenied"), "{r}");
    assert_eq!(
        server.seen().len(),
        seen,
        "a denied request must not leave the host"
    );
}

#[tokio::test]
async fn a_server_that_never_answers_is_a_timeout_error() {
    let hole = Blackhole::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("{}/health", hole.address);
    let (code, r) = verify(spec(dir.path(), "127.0.0.1", &url, "timeout: 500ms")).await;
    assert_eq!(code, 3, "{r}");
    assert_eq!(r["status"], "error", "{r}");
    assert!(message(&r).to_lowercase().contains("timeout"), "{r}");
}
