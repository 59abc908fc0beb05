//! What a token holder can learn through `rollgate serve` that they should not: secrets a
//! backend echoes in an error body (issue 14, item 2), and the server's own files and
//! environment through documents applied with an operator token (item 4). The real binary,
//! real loopback stand-ins, every wait bounded, every server killed by PID on drop.

use crate::common;

use common::serve::{OPERATOR, READER, Serve, read_events};
use common::{DdReply, DdRequest, StandIn};
use serde_json::Value;
use std::path::PathBuf;
use std::time::{Duration, Instant};

fn setup() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("config");
    std::fs::create_dir(&config).expect("mkdir");
    (dir, config)
}

/// A rollout verifying one metric against `backend` once; an error ends the metric.
fn rollout(name: &str, backend: &str, query: &str) -> String {
    common::fixture_with(
        "serve_leaks/rollout.yaml",
        &[("name", name), ("backend", backend), ("query", query)],
    )
}

/// Every piece of `secret` that must not appear: the whole, and each start of at least 4
/// characters (what a cut through it would leave).
fn pieces(secret: &str) -> Vec<String> {
    (4..=secret.len())
        .map(|n| secret[..n].to_string())
        .collect()
}

fn assert_clean(place: &str, text: &[u8], secrets: &[String]) {
    for secret in secrets {
        for piece in pieces(secret) {
            assert!(
                !text.windows(piece.len()).any(|w| w == piece.as_bytes()),
                "{place} holds {piece:?} (a piece of a secret)"
            );
        }
    }
}

#[test]
fn secrets_a_backend_echoes_reach_no_reader_log_or_store() {
    // A Prometheus that echoes the Authorization header so that its base64 straddles the
    // 300-character cut of the error body.
    let prom = StandIn::open_blocking(|r: &DdRequest, _| -> DdReply {
        let auth = r.headers.get("authorization").cloned().unwrap_or_default();
        (
            401,
            vec![],
            format!("{} Authorization: {auth} was refused", "x".repeat(270)),
        )
    });
    let (dir, config) = setup();
    let password = "Pa55-word-0f-the-year!";
    std::fs::write(dir.path().join("pw"), password).expect("pw");
    let basic = {
        use std::fmt::Write as _;
        // base64("ops:" + password), as the client sends it.
        let bytes = format!("ops:{password}").into_bytes();
        let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let b = [
                chunk[0],
                *chunk.get(1).unwrap_or(&0),
                *chunk.get(2).unwrap_or(&0),
            ];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for i in 0..4 {
                if i <= chunk.len() {
                    let _ = write!(
                        out,
                        "{}",
                        alphabet[((n >> (18 - 6 * i)) & 63) as usize] as char
                    );
                } else {
                    out.push('=');
                }
            }
        }
        out
    };
    let mut backends = format!(
        "apiVersion: rollgate.dev/v1alpha1\nkind: MetricBackend\nmetadata:\n  name: prom\nspec:\n  prometheus:\n    address: {}\n    basicAuth:\n      username: ops\n      password: file:{}\n",
        prom.url,
        dir.path().join("pw").display()
    );
    let mut secrets = vec![password.to_string(), basic.clone()];
    let mut rollouts = vec![rollout("leak-prom", "prom", "sum(up)")];
    // Datadog sends its keys in headers: a proxy echoing them across the cut.
    let _dd = if cfg!(feature = "datadog") {
        let dd = StandIn::open_blocking(|r: &DdRequest, _| -> DdReply {
            let api = r.headers.get("dd-api-key").cloned().unwrap_or_default();
            let app = r
                .headers
                .get("dd-application-key")
                .cloned()
                .unwrap_or_default();
            let text = format!(
                "{} DD-API-KEY: {api} DD-APPLICATION-KEY: {app}",
                "x".repeat(280)
            );
            (
                403,
                vec![],
                serde_json::json!({ "errors": [text] }).to_string(),
            )
        });
        let (api, app) = ("ddapikey-0123456789abcdef", "ddappkey-fedcba9876543210");
        std::fs::write(dir.path().join("dd-api"), api).expect("key");
        backends.push_str(&format!(
            "---\napiVersion: rollgate.dev/v1alpha1\nkind: MetricBackend\nmetadata:\n  name: dd\nspec:\n  datadog:\n    url: {}\n    apiKey: file:{}\n    applicationKey: env:ROLLGATE_TEST_DD_APP\n",
            dd.url,
            dir.path().join("dd-api").display()
        ));
        secrets.push(api.into());
        secrets.push(app.into());
        rollouts.push(rollout("leak-dd", "dd", "avg:errors{*}"));
        Some(dd)
    } else {
        None
    };
    std::fs::write(config.join("backends.yaml"), backends).expect("backends");
    let s = Serve::new(dir.path())
        .log("rollgate=debug")
        .env(&[("ROLLGATE_TEST_DD_APP", "ddappkey-fedcba9876543210")])
        .start();

    // Subscribe first, then start the rollouts through the API.
    let names: Vec<String> = rollouts
        .iter()
        .map(|r| {
            r.lines()
                .find_map(|l| l.strip_prefix("  name: "))
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    let statuses = ["HTTP 401", "HTTP 403"];
    let wanted: Vec<(String, &str)> = names.iter().cloned().zip(statuses).collect();
    let url = format!("{}/api/v1/events", s.url);
    let stream = std::thread::spawn(move || {
        read_events(&url, Duration::from_secs(120), move |events| {
            wanted.iter().all(|(name, status)| {
                events.iter().any(|e| {
                    e["rollout"] == name.as_str() && e["reason"].to_string().contains(status)
                })
            })
        })
    });
    s.wait_subscribers(1);
    for text in &rollouts {
        let (status, body) = s.apply(text);
        assert_eq!(status, 200, "{body}");
    }

    // The read-only view says what went wrong, with the secret redacted.
    for (name, backend, status) in names
        .iter()
        .zip([("prom", statuses[0]), ("dd", statuses[1])])
        .map(|(n, (b, st))| (n, b, st))
    {
        let deadline = Instant::now() + Duration::from_secs(60);
        let view = loop {
            let (code, view) = s.read_text(&format!("/api/v1/rollouts/{name}"));
            assert_eq!(code, 200, "{view}");
            if view.contains(status) {
                break view;
            }
            assert!(
                Instant::now() < deadline,
                "{name}: the error never reached the view: {view}\n{}",
                s.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        assert_clean(&format!("the view of {name}"), view.as_bytes(), &secrets);
        assert!(
            view.contains(&format!("backend \\\"{backend}\\\"")) && view.contains("[redacted]"),
            "{name}: the message says what went wrong, the secret redacted: {view}"
        );
        let (code, list) = s.read_text("/api/v1/rollouts");
        assert_eq!(code, 200);
        assert_clean("the rollout list", list.as_bytes(), &secrets);
        let (code, history) = s.read_text(&format!("/api/v1/rollouts/{name}/history"));
        assert_eq!(code, 200);
        assert_clean("the history", history.as_bytes(), &secrets);
        let out = common::rollgate(&["history", name, "--server", &s.url, "--token", READER]);
        assert_eq!(out.code, 0, "{}", out.stderr);
        assert_clean(
            "rollgate history",
            format!("{}{}", out.stdout, out.stderr).as_bytes(),
            &secrets,
        );
    }
    let events = stream.join().expect("the event stream");
    let text = serde_json::to_string(&events).expect("json");
    assert_clean("the event stream", text.as_bytes(), &secrets);
    assert!(text.contains("[redacted]"), "{text}");
    assert_clean("the log", s.log().as_bytes(), &secrets);
    drop(s);
    for file in ["state.db", "state.db-wal", "state.db-shm"] {
        if let Ok(bytes) = std::fs::read(dir.path().join(file)) {
            assert_clean(file, &bytes, &secrets);
        }
    }
}

fn backend_doc(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: rollgate.dev/v1alpha1\nkind: MetricBackend\nmetadata:\n  name: {name}\nspec:\n{spec}"
    )
}

#[test]
fn documents_through_the_api_reach_only_what_the_folder_uses() {
    let (dir, config) = setup();
    common::copy_example("canary", &["backends.yaml", "error-ratio.om"], &config);
    let catcher =
        StandIn::open_blocking(|_: &DdRequest, _| -> DdReply { (200, vec![], "{}".into()) });
    let s = Serve::new(dir.path())
        .log("rollgate=debug")
        .args(&["--api-allow-ref", "env:ROLLGATE_TEST_ALLOWED"])
        .env(&[
            ("ROLLGATE_TEST_SET_1", "value-of-a-server-variable"),
            ("ROLLGATE_TEST_ALLOWED", "allowed-token-value"),
        ])
        .start();
    let tokens = dir.path().join("tokens");
    let refused = |text: &str, field: &str, line: u64, col: u64, reference: &str| -> String {
        let (status, body) = s.apply(text);
        assert_eq!(status, 422, "{body}");
        let v: Value = serde_json::from_str(&body).expect("json");
        let problems = v["problems"].as_array().expect("problems").clone();
        assert_eq!(problems.len(), 1, "{body}");
        let p = problems[0].as_str().unwrap_or_default();
        let at = format!(":{line}:{col}: {field}: {reference} is ");
        assert!(p.contains(&at), "{p} should contain {at}");
        assert!(
            p.contains(&format!("--api-allow-ref '{reference}'")),
            "says how to allow it: {p}"
        );
        assert!(!body.contains(OPERATOR), "quotes the tokens file: {body}");
        body
    };

    // The tokens file as a recording: refused before it is read.
    let text = backend_doc(
        "stolen",
        &format!("  replay:\n    file: {}\n", tokens.display()),
    );
    refused(
        &text,
        "spec.replay.file",
        7,
        11,
        &format!("file:{}", tokens.display()),
    );
    // The tokens file as a bearer token to an address of the caller's choosing.
    let text = backend_doc(
        "exfil",
        &format!(
            "  prometheus:\n    address: {}\n    bearerToken: file:{}\n",
            catcher.url,
            tokens.display()
        ),
    );
    refused(
        &text,
        "spec.prometheus.bearerToken",
        8,
        18,
        &format!("file:{}", tokens.display()),
    );
    // An environment variable: the same answer whether it exists or not.
    let env = |name: &str| {
        backend_doc(
            "exfil",
            &format!(
                "  prometheus:\n    address: {}\n    bearerToken: env:{name}\n",
                catcher.url
            ),
        )
    };
    let set = refused(
        &env("ROLLGATE_TEST_SET_1"),
        "spec.prometheus.bearerToken",
        8,
        18,
        "env:ROLLGATE_TEST_SET_1",
    );
    let unset = refused(
        &env("ROLLGATE_TEST_NOT_1"),
        "spec.prometheus.bearerToken",
        8,
        18,
        "env:ROLLGATE_TEST_NOT_1",
    );
    assert_eq!(
        set.replace("ROLLGATE_TEST_SET_1", "NAME"),
        unset.replace("ROLLGATE_TEST_NOT_1", "NAME"),
        "no existence oracle"
    );
    // A command on the server.
    let text = rollout("shell", "recorded", "up").replace(
        "    none: {}",
        "    exec:\n      command: [sh, -c, 'cat /etc/passwd']",
    );
    refused(
        &text,
        "spec.target.exec.command",
        10,
        16,
        r#"exec:["sh","-c","cat /etc/passwd"]"#,
    );
    assert!(
        catcher.seen().is_empty(),
        "nothing was sent: {:?}",
        catcher.seen()
    );
    let written = std::fs::read_dir(config.join("api")).map_or(0, |d| d.count());
    assert_eq!(written, 0, "nothing refused is left in the folder");

    // What the operator allowed, and what the folder's own documents use, are applied.
    let (status, body) = s.apply(&env("ROLLGATE_TEST_ALLOWED"));
    assert_eq!(status, 200, "{body}");
    let (status, body) = s.apply(&backend_doc(
        "same-recording",
        "  replay:\n    file: ../error-ratio.om\n",
    ));
    assert_eq!(status, 200, "the folder's own recording: {body}");
    assert!(
        config
            .join("api/metricbackend-same-recording.yaml")
            .exists()
    );
}
