//! `rollgate serve` end to end: the real binary on a free loopback port, a real SQLite
//! store, the shipped plugins, and the API spoken over HTTP. Every server is killed by PID
//! when its test ends (a drop guard), and every wait is bounded.

use crate::common;

use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const OPERATOR: &str = "operator-token-0000000001";
const READER: &str = "reader-token-00000000001";

/// Rollouts that wait: `held-*` hold at an indefinite phase pause (paused(step)); `busy-*`
/// verify their first phase once a minute for four minutes (progressing).
fn config(dir: &Path, held: &[&str], busy: &[&str]) {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/canary");
    for f in ["backends.yaml", "templates.yaml", "error-ratio.om"] {
        std::fs::copy(examples.join(f), dir.join(f)).expect("copy the example");
    }
    let mut text = String::new();
    for name in held {
        text.push_str(&format!(
            "---\napiVersion: rollgate.dev/v1alpha1\nkind: Rollout\nmetadata:\n  name: {name}\nspec:\n  stableVersion: v1\n  canaryVersion: v2\n  target:\n    none: {{}}\n  strategy:\n    canary: {{}}\n  phases:\n    - name: canary-10\n      weight: 10\n      pause: {{}}\n    - name: full\n      weight: 100\n"
        ));
    }
    for name in busy {
        text.push_str(&format!(
            "---\napiVersion: rollgate.dev/v1alpha1\nkind: Rollout\nmetadata:\n  name: {name}\nspec:\n  stableVersion: v1\n  canaryVersion: v2\n  args:\n    service: checkout\n  target:\n    none: {{}}\n  strategy:\n    canary: {{}}\n  phases:\n    - name: canary-10\n      weight: 10\n      verification:\n        templates: [error-ratio]\n    - name: full\n      weight: 100\n"
        ));
    }
    std::fs::write(dir.join("rollouts.yaml"), text).expect("write rollouts");
}

/// A running `rollgate serve`, killed by PID on drop.
struct Server {
    child: Child,
    url: String,
    stderr: Arc<Mutex<String>>,
    client: reqwest::Client,
    rt: tokio::runtime::Runtime,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(dir: &Path, extra: &[&str]) -> Server {
    serve_env(dir, extra, &[])
}

/// [`serve`] with extra environment variables.
fn serve_env(dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Server {
    let tokens = dir.join("tokens");
    std::fs::write(
        &tokens,
        format!("# test tokens\n{OPERATOR} operator alice\n{READER} read-only bob\n"),
    )
    .expect("tokens");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rollgate"));
    cmd.arg("serve")
        .arg("--config")
        .arg(dir.join("config"))
        .arg("--db")
        .arg(format!("sqlite:{}", dir.join("state.db").display()))
        .args(["--listen", "127.0.0.1:0", "--reload-interval", "200ms"])
        .arg("--tokens")
        .arg(&tokens)
        .arg("--cache-dir")
        .arg(dir.join("cache"))
        .args(extra)
        .envs(env.iter().copied())
        .env("ROLLGATE_LOG", "rollgate=info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("rollgate serve starts");
    let stderr = Arc::new(Mutex::new(String::new()));
    let (tx, rx) = std::sync::mpsc::channel();
    {
        let pipe = child.stderr.take().expect("stderr");
        let stderr = stderr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                if line.contains("rollgate serve: ") {
                    let _ = tx.send(line.clone());
                }
                stderr
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push_str(&format!("{line}\n"));
            }
        });
    }
    let mut url = None;
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(line) => {
                if let Some(rest) = line.split("listening on ").nth(1) {
                    url = Some(rest.trim().to_string());
                }
                if line.contains("ready:") {
                    break;
                }
                if line.contains("not serving") {
                    panic!(
                        "serve refused to start: {}",
                        stderr.lock().unwrap_or_else(|e| e.into_inner())
                    );
                }
            }
            Err(_) => {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!(
                        "serve exited {status}: {}",
                        stderr.lock().unwrap_or_else(|e| e.into_inner())
                    );
                }
            }
        }
    }
    let url = url.expect("serve said where it listens");
    Server {
        child,
        url,
        stderr,
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("client"),
        rt: tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime"),
    }
}

impl Server {
    fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&str>,
    ) -> (u16, Value) {
        let url = format!("{}{path}", self.url);
        let mut r = match method {
            "GET" => self.client.get(&url),
            _ => self.client.post(&url),
        };
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        if let Some(b) = body {
            r = r.body(b.to_string());
        }
        let (status, text) = self.rt.block_on(async {
            let resp = r.send().await.expect("the server answers");
            let status = resp.status().as_u16();
            (status, resp.text().await.unwrap_or_default())
        });
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    fn metrics(&self) -> String {
        self.rt.block_on(async {
            self.client
                .get(format!("{}/metrics", self.url))
                .send()
                .await
                .expect("metrics")
                .text()
                .await
                .expect("metrics text")
        })
    }

    fn get(&self, name: &str) -> Value {
        let (status, v) = self.call(
            "GET",
            &format!("/api/v1/rollouts/{name}"),
            Some(READER),
            None,
        );
        assert_eq!(status, 200, "{v}");
        v
    }

    /// Wait (bounded) until rollout `name` is in `state` (run `run`).
    fn wait_state(&self, name: &str, run: i64, state: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            // A rollout that is not in the store yet is waited for too.
            let (status, v) = self.call(
                "GET",
                &format!("/api/v1/rollouts/{name}"),
                Some(READER),
                None,
            );
            assert!(status == 200 || status == 404, "{status}: {v}");
            if v["state"] == state && v["run"] == run {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "{name} never reached {state} (run {run}): {v}\n{}",
                self.stderr.lock().unwrap_or_else(|e| e.into_inner())
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn audit(&self, name: &str, run: i64) -> Vec<Value> {
        let (status, v) = self.call(
            "GET",
            &format!("/api/v1/rollouts/{name}/history?run={run}"),
            Some(READER),
            None,
        );
        assert_eq!(status, 200, "{v}");
        v["audit"].as_array().cloned().unwrap_or_default()
    }

    fn act(&self, name: &str, action: &str, token: Option<&str>) -> (u16, Value) {
        self.call(
            "POST",
            &format!("/api/v1/rollouts/{name}/{action}"),
            token,
            Some(r#"{"reason": "test"}"#),
        )
    }
}

fn setup(held: &[&str], busy: &[&str]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let config_dir = dir.path().join("config");
    std::fs::create_dir(&config_dir).expect("mkdir");
    config(&config_dir, held, busy);
    (dir, config_dir)
}

const ACTIONS: [&str; 7] = [
    "pause",
    "resume",
    "promote",
    "promote-full",
    "abort",
    "rollback",
    "retry",
];

#[test]
fn the_auth_matrix_and_every_action_with_its_audit_record() {
    let (dir, _) = setup(&["held", "held-2"], &["busy", "busy-2", "busy-3"]);
    let s = serve(dir.path(), &[]);
    for name in ["busy", "busy-2", "busy-3"] {
        s.wait_state(name, 1, "progressing");
    }
    for name in ["held", "held-2"] {
        s.wait_state(name, 1, "paused(step)");
    }

    // Reading needs a token; any valid one will do.
    let (status, _) = s.call("GET", "/api/v1/rollouts", None, None);
    assert_eq!(status, 401);
    let (status, _) = s.call(
        "GET",
        "/api/v1/rollouts",
        Some("not-a-listed-token-at-all"),
        None,
    );
    assert_eq!(status, 401);
    let (status, list) = s.call("GET", "/api/v1/rollouts", Some(READER), None);
    assert_eq!(status, 200);
    assert_eq!(list["rollouts"].as_array().map(Vec::len), Some(5), "{list}");
    // (query, rollouts listed)
    for (query, want) in [
        ("?state=paused", vec!["held", "held-2"]),
        ("?state=paused(step)&prefix=held-", vec!["held-2"]),
        ("?prefix=busy-", vec!["busy-2", "busy-3"]),
        ("?state=succeeded", vec![]),
    ] {
        let (status, list) = s.call(
            "GET",
            &format!("/api/v1/rollouts{query}"),
            Some(READER),
            None,
        );
        assert_eq!(status, 200);
        let names: Vec<&str> = list["rollouts"]
            .as_array()
            .map(|a| a.iter().filter_map(|r| r["rollout"].as_str()).collect())
            .unwrap_or_default();
        assert_eq!(names, want, "{query}");
    }

    // Every action without an operator token is refused, logged, and changes nothing.
    for action in ACTIONS {
        for (token, want) in [
            (None, 401),
            (Some("not-a-listed-token-at-all"), 401),
            (Some(READER), 403),
        ] {
            let (status, body) = s.act("busy", action, token);
            assert_eq!(status, want, "{action} with {token:?}: {body}");
            assert!(body["error"].is_string(), "{body}");
        }
    }
    let audit = s.audit("busy", 1);
    assert!(
        !audit.iter().any(|e| {
            let a = e["action"].as_str().unwrap_or("");
            ACTIONS.contains(&a) || a.ends_with("-refused")
        }),
        "a refused request reached the rollout: {audit:?}"
    );
    assert_eq!(s.get("busy")["state"], "progressing");
    let log = s.stderr.lock().unwrap_or_else(|e| e.into_inner()).clone();
    assert!(
        log.contains("API request refused") && log.contains("\"bob\" has a read-only token"),
        "refusals are logged: {log}"
    );

    // (rollout, action, state after, run after)
    let steps = [
        ("busy", "pause", "paused(manual)", 1),
        ("busy", "resume", "progressing", 1),
        ("held", "promote", "succeeded", 1),
        ("busy-2", "promote-full", "succeeded", 1),
        ("busy-3", "abort", "aborted", 1),
        ("busy-3", "rollback", "rolled-back", 1),
        ("busy-3", "retry", "progressing", 2),
    ];
    for (name, action, state, run) in steps {
        let (status, body) = s.act(name, action, Some(OPERATOR));
        let want = if action == "retry" { 201 } else { 200 };
        assert_eq!(status, want, "{action} on {name}: {body}");
        if action != "retry" {
            assert_eq!(body["outcome"], "applied", "{body}");
        }
        s.wait_state(name, run, state);
        let audit = s.audit(name, run);
        let record = audit
            .iter()
            .rev()
            .find(|e| e["action"] == action)
            .unwrap_or_else(|| panic!("no {action} in the audit of {name}: {audit:?}"));
        assert_eq!(
            record["actor"], "alice",
            "the actor is the token's identity"
        );
        // Promotions and rollbacks go through intermediate states; the others land.
        if ["pause", "resume", "abort"].contains(&action) {
            assert_eq!(record["stateAfter"], state, "{record}");
        }
    }
    // An action the state does not allow is a conflict, not a silent no-op.
    let (status, body) = s.act("held", "pause", Some(OPERATOR));
    assert_eq!(status, 409, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap_or("")
            .contains("already ended succeeded"),
        "{body}"
    );
    let (status, _) = s.act("nobody", "pause", Some(OPERATOR));
    assert_eq!(status, 404);
    let (status, _) = s.act("busy", "explode", Some(OPERATOR));
    assert_eq!(status, 404);

    // The command line speaks the same API.
    let token = format!("--token={OPERATOR}");
    // A request the state does not allow is refused by the engine, said so, and audited.
    let out = common::rollgate(&["pause", "held-2", "--server", &s.url, &token]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("not possible while the rollout is paused(step)"),
        "{}",
        out.stderr
    );
    assert!(
        s.audit("held-2", 1)
            .iter()
            .any(|e| e["action"] == "pause-refused" && e["actor"] == "alice"),
        "{:?}",
        s.audit("held-2", 1)
    );
    let out = common::rollgate(&["promote", "held-2", "--server", &s.url, &token]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    s.wait_state("held-2", 1, "succeeded");
    let read = format!("--token={READER}");
    let out = common::rollgate(&[
        "get", "held-2", "--server", &s.url, &read, "--format", "json",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let v: Value = serde_json::from_str(&out.stdout).expect("json");
    assert_eq!(v["state"], "succeeded");
    let out = common::rollgate(&["history", "held-2", "--server", &s.url, &read]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.contains("alice") && out.stdout.contains("promote"),
        "{}",
        out.stdout
    );
    let out = common::rollgate(&["promote", "busy", "--server", &s.url, &read]);
    assert_eq!(out.code, 4, "a read-only token cannot act: {}", out.stderr);
    assert!(
        out.stderr.contains("needs an operator token"),
        "{}",
        out.stderr
    );
}

/// Read server-sent events from `url` until `done` says so (bounded).
fn read_events(url: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let client = reqwest::Client::new();
        let mut resp = client
            .get(url)
            .bearer_auth(READER)
            .send()
            .await
            .expect("event stream");
        assert_eq!(resp.status().as_u16(), 200);
        let mut events = Vec::new();
        let mut buf = String::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let chunk = tokio::time::timeout_at(deadline, resp.chunk())
                .await
                .expect("events within a minute")
                .expect("read the stream");
            let Some(chunk) = chunk else {
                panic!("the stream ended early: {events:?}");
            };
            buf.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = buf.find("\n\n") {
                let block = buf[..end].to_string();
                buf.drain(..end + 2);
                for line in block.lines() {
                    if let Some(data) = line.strip_prefix("data: ")
                        && let Ok(v) = serde_json::from_str::<Value>(data)
                    {
                        events.push(v);
                    }
                }
            }
            if done(&events) {
                return events;
            }
        }
    })
}

#[test]
fn the_event_stream_delivers_every_transition_in_order_and_webhooks_get_them_too() {
    let hook = Hook::start();
    // The rollout's own webhook, for pauses only.
    let own = Hook::start();
    let (dir, config_dir) = setup(&[], &["busy"]);
    let rollouts = config_dir.join("rollouts.yaml");
    let text = std::fs::read_to_string(&rollouts).expect("read");
    std::fs::write(
        &rollouts,
        format!(
            "{text}  notifications:\n    - url: {}\n      events: [pause]\n",
            own.url
        ),
    )
    .expect("write");
    let s = serve(dir.path(), &["--notify", &hook.url]);
    s.wait_state("busy", 1, "progressing");
    let audit_before = s.audit("busy", 1).len();
    let url = format!("{}/api/v1/events?rollout=busy", s.url);
    let reader = std::thread::spawn(move || {
        read_events(&url, |events| {
            events.iter().any(|e| e["stateAfter"] == "succeeded")
        })
    });
    // The stream carries what happens after it starts: act once the server counts the
    // subscriber.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !s.metrics().contains("rollgate_event_subscribers 1\n") {
        assert!(
            Instant::now() < deadline,
            "the event stream never subscribed"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    for (action, state) in [
        ("pause", "paused(manual)"),
        ("resume", "progressing"),
        ("promote-full", "succeeded"),
    ] {
        let (status, body) = s.act("busy", action, Some(OPERATOR));
        assert_eq!(status, 200, "{body}");
        s.wait_state("busy", 1, state);
    }
    let events = reader.join().expect("reader");
    // In order, without gaps: exactly the audit log's events since the subscription.
    let seqs: Vec<u64> = events.iter().filter_map(|e| e["seq"].as_u64()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    let audit = s.audit("busy", 1);
    let tail: Vec<(String, String)> = audit[audit_before..]
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap_or("").into(),
                e["stateAfter"].as_str().unwrap_or("").into(),
            )
        })
        .collect();
    let streamed: Vec<(String, String)> = events
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap_or("").into(),
                e["stateAfter"].as_str().unwrap_or("").into(),
            )
        })
        .collect();
    assert!(
        tail.ends_with(&streamed) && streamed.len() >= 3,
        "stream {streamed:?} vs audit {tail:?}"
    );
    let decisions: Vec<&str> = events
        .iter()
        .filter(|e| e["kind"] == "decision")
        .filter_map(|e| e["action"].as_str())
        .collect();
    assert_eq!(
        decisions,
        ["pause", "resume", "promote-full", "succeed"],
        "{events:?}"
    );
    let pause = events
        .iter()
        .find(|e| e["action"] == "pause")
        .expect("pause");
    assert_eq!(pause["actor"], "alice");
    assert_eq!(pause["reason"], "test", "events carry the explanation");

    // The webhook got the same decisions, in order, although its first delivery failed.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got = hook.received();
        let actions: Vec<String> = got
            .iter()
            .filter(|e| e["rollout"] == "busy" && e["kind"] == "decision")
            .filter_map(|e| e["action"].as_str().map(str::to_string))
            .collect();
        if actions.ends_with(&[
            "pause".into(),
            "resume".into(),
            "promote-full".into(),
            "succeed".into(),
        ]) {
            assert!(
                hook.attempts() > got.len(),
                "the failed first delivery was retried"
            );
            break;
        }
        assert!(Instant::now() < deadline, "webhook got {actions:?}");
        std::thread::sleep(Duration::from_millis(100));
    }

    // The rollout's own webhook got only what it asked for (its first delivery failed and
    // was retried too).
    let deadline = Instant::now() + Duration::from_secs(30);
    while own.received().is_empty() {
        assert!(
            Instant::now() < deadline,
            "the rollout's webhook got nothing"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let got = own.received();
    assert!(
        got.iter()
            .all(|e| e["action"] == "pause" && e["rollout"] == "busy"),
        "{got:?}"
    );

    // /metrics counts what happened.
    let text = s.metrics();
    for want in [
        "rollgate_decisions_total{decision=\"pause\",by=\"operator\"} 1",
        "rollgate_decisions_total{decision=\"promote-full\",by=\"operator\"} 1",
        "rollgate_rollouts{state=\"succeeded\"} 1",
        "rollgate_plugin_call_seconds_count{plugin=\"threshold\"}",
        "rollgate_backend_query_seconds_count{backend=\"recorded\"}",
        "# TYPE rollgate_scheduler_lag_seconds histogram",
        "rollgate_notifications_total{outcome=\"retried\"}",
        "# TYPE rollgate_rollbacks_total counter",
    ] {
        assert!(text.contains(want), "missing {want:?} in\n{text}");
    }
}

#[test]
fn serve_refuses_to_start_on_a_broken_folder_or_tokens_file() {
    let (dir, config_dir) = setup(&["held"], &[]);
    std::fs::write(
        config_dir.join("broken.yaml"),
        "apiVersion: rollgate.dev/v1alpha1\nkind: Rollout\nmetadata:\n  name: broken\nspec:\n  stableVersion: v1\n",
    )
    .expect("write");
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, format!("{OPERATOR} operator alice\n")).expect("tokens");
    let db = format!("sqlite:{}", dir.path().join("state.db").display());
    let args = |tokens: &Path| {
        vec![
            "serve".to_string(),
            "--config".into(),
            config_dir.display().to_string(),
            "--db".into(),
            db.clone(),
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--tokens".into(),
            tokens.display().to_string(),
        ]
    };
    let a = args(&tokens);
    let out = common::rollgate(&a.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(out.code, 4, "{}", out.stderr);
    assert!(
        out.stderr.contains("broken.yaml:") && out.stderr.contains("not serving"),
        "{}",
        out.stderr
    );
    std::fs::remove_file(config_dir.join("broken.yaml")).expect("rm");
    std::fs::write(
        &tokens,
        format!("{OPERATOR} operator alice\nshort admin eve\n"),
    )
    .expect("tokens");
    let out = common::rollgate(&a.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(out.code, 4, "{}", out.stderr);
    assert!(out.stderr.contains("tokens:2:"), "{}", out.stderr);
}

#[test]
fn a_restarted_server_resumes_unfinished_runs_where_they_were() {
    let (dir, _) = setup(&["held"], &["busy"]);
    {
        let s = serve(dir.path(), &[]);
        s.wait_state("busy", 1, "progressing");
        s.wait_state("held", 1, "paused(step)");
        let (status, body) = s.act("busy", "pause", Some(OPERATOR));
        assert_eq!(status, 200, "{body}");
        s.wait_state("busy", 1, "paused(manual)");
        // Dropped: killed by PID, no graceful shutdown.
    }
    let s = serve(dir.path(), &[]);
    // The same runs, in the same states: nothing was created or started again.
    let busy = s.wait_state("busy", 1, "paused(manual)");
    assert_eq!(busy["phaseName"], "canary-10");
    s.wait_state("held", 1, "paused(step)");
    let audit = s.audit("busy", 1);
    let count = |a: &str| audit.iter().filter(|e| e["action"] == a).count();
    assert_eq!((count("create"), count("start")), (1, 1), "{audit:?}");
    // And they are driven: actions take effect.
    let (status, _) = s.act("busy", "resume", Some(OPERATOR));
    assert_eq!(status, 200);
    s.wait_state("busy", 1, "progressing");
    let (status, _) = s.act("held", "promote", Some(OPERATOR));
    assert_eq!(status, 200);
    s.wait_state("held", 1, "succeeded");
}

#[test]
fn a_bad_configuration_change_is_refused_and_the_old_one_keeps_running() {
    let (dir, config_dir) = setup(&["held"], &[]);
    let s = serve(dir.path(), &[]);
    s.wait_state("held", 1, "paused(step)");
    let status_of = |s: &Server| s.call("GET", "/api/v1/config", Some(READER), None).1;
    assert_eq!(status_of(&s)["config"]["generation"], 1);

    // A broken file in the folder: refused, with where and what; the rollout runs on.
    std::fs::write(
        config_dir.join("broken.yaml"),
        "apiVersion: rollgate.dev/v1alpha1\nkind: Rollout\nmetadata:\n  name: broken\nspec:\n  stableVersion: v1\n",
    )
    .expect("write");
    let deadline = Instant::now() + Duration::from_secs(30);
    let refused = loop {
        let v = status_of(&s);
        if v["config"]["lastError"].is_array() {
            break v;
        }
        assert!(
            Instant::now() < deadline,
            "the broken change was never reported: {v}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let problems = refused["config"]["lastError"].to_string();
    assert!(problems.contains("broken.yaml:"), "{problems}");
    assert_eq!(
        refused["config"]["generation"], 1,
        "the old configuration stays"
    );
    assert_eq!(refused["rollouts"], json!(["held"]));
    let (status, body) = s.call("GET", "/readyz", None, None);
    assert_eq!(status, 200, "still ready on the old configuration");
    // Unauthenticated: ready or not, nothing more (problems can quote files and paths).
    assert_eq!(body, json!({ "ready": true }));
    s.wait_state("held", 1, "paused(step)");

    // Fixed: applied, the error cleared.
    std::fs::remove_file(config_dir.join("broken.yaml")).expect("rm");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let v = status_of(&s);
        if v["config"]["lastError"].is_null() && v["config"]["generation"] == 2 {
            break;
        }
        assert!(Instant::now() < deadline, "the fix was never applied: {v}");
        std::thread::sleep(Duration::from_millis(100));
    }

    // Through the API: a bad document is refused with its problems and leaves no file...
    let bad = "apiVersion: rollgate.dev/v1alpha1\nkind: Rollout\nmetadata:\n  name: late\nspec:\n  stableVersion: v1\n";
    let (status, body) = s.call("POST", "/api/v1/documents", Some(OPERATOR), Some(bad));
    assert_eq!(status, 422, "{body}");
    assert!(
        body["problems"].to_string().contains("canaryVersion"),
        "{body}"
    );
    assert!(!config_dir.join("api/rollout-late.yaml").exists());
    let (status, _) = s.call("POST", "/api/v1/documents", Some(READER), Some(bad));
    assert_eq!(status, 403);
    // ...and a good one starts a rollout.
    let good = "apiVersion: rollgate.dev/v1alpha1\nkind: Rollout\nmetadata:\n  name: late\nspec:\n  stableVersion: v1\n  canaryVersion: v2\n  target:\n    none: {}\n  strategy:\n    canary: {}\n  phases:\n    - name: canary-10\n      weight: 10\n      pause: {}\n    - name: full\n      weight: 100\n";
    let (status, body) = s.call("POST", "/api/v1/documents", Some(OPERATOR), Some(good));
    assert_eq!(status, 200, "{body}");
    assert!(config_dir.join("api/rollout-late.yaml").exists());
    s.wait_state("late", 1, "paused(step)");
}

/// A webhook receiver on a free loopback port: answers 500 to the first delivery, 200 to
/// the rest, and keeps the JSON bodies it accepted.
struct Hook {
    url: String,
    got: Arc<Mutex<Vec<Value>>>,
    attempts: Arc<Mutex<usize>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl Hook {
    fn start() -> Hook {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
        let got = Arc::new(Mutex::new(Vec::new()));
        let attempts = Arc::new(Mutex::new(0usize));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (g, a, st) = (got.clone(), attempts.clone(), stop.clone());
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(300);
            while !st.load(std::sync::atomic::Ordering::SeqCst) && Instant::now() < deadline {
                let Ok((mut conn, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                };
                let _ = conn.set_nonblocking(false);
                let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
                let Some(body) = read_request(&mut conn) else {
                    continue;
                };
                let n = {
                    let mut a = a.lock().unwrap_or_else(|e| e.into_inner());
                    *a += 1;
                    *a
                };
                let status = if n == 1 {
                    "500 Internal Server Error"
                } else {
                    "200 OK"
                };
                if n != 1
                    && let Ok(v) = serde_json::from_str::<Value>(&body)
                {
                    g.lock().unwrap_or_else(|e| e.into_inner()).push(v);
                }
                let _ = conn.write_all(
                    format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                        .as_bytes(),
                );
            }
        });
        Hook {
            url,
            got,
            attempts,
            stop,
        }
    }

    fn received(&self) -> Vec<Value> {
        self.got.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn attempts(&self) -> usize {
        *self.attempts.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for Hook {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

/// One HTTP/1.1 request's body (by content-length).
fn read_request(conn: &mut std::net::TcpStream) -> Option<String> {
    let mut reader = BufReader::new(conn.try_clone().ok()?);
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':')
            && k.eq_ignore_ascii_case("content-length")
        {
            length = v.trim().parse().ok()?;
        }
    }
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body).ok()?;
    String::from_utf8(body).ok()
}

/// Wait (bounded) until `done` holds for `GET /api/v1/config`'s answer.
fn wait_config(s: &Server, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, v) = s.call("GET", "/api/v1/config", Some(READER), None);
        if done(&v) {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "{what} never happened: {v}\n{}",
            s.stderr.lock().unwrap_or_else(|e| e.into_inner())
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

const BACKEND_ON: &str = "apiVersion: rollgate.dev/v1alpha1\nkind: MetricBackend\nmetadata:\n  name: hostile\nspec:\n  replay:\n    file: ";

#[test]
fn a_recording_with_extreme_timestamps_is_refused_at_its_line_and_the_watch_goes_on() {
    let (dir, config_dir) = setup(&["held"], &[]);
    let s = serve(dir.path(), &[]);
    s.wait_state("held", 1, "paused(step)");
    // Each hostile recording, put in the folder with a backend that serves it: refused at
    // the file's line, the server still up and ready, and the next change still loaded.
    let cases = [
        (
            "minus.om",
            "up 1 1700000000\nup 2 -1e300\n",
            "minus.om:2:1:",
            "outside the years 1 to 9999",
        ),
        ("nan.om", "up 1 NaN\n", "nan.om:1:1:", "not a finite number"),
        (
            "dup.om",
            "up 1 10\nup 2 10\n",
            "dup.om:2:1:",
            "(the first is on line 1)",
        ),
        (
            "min.json",
            "{\"version\": 1, \"queries\": [{\"query\": \"up\", \"series\": [{\"labels\": {}, \"points\": [[-9223372036854775808, 1]]}]}]}",
            "min.json:1:",
            "outside the years 1 to 9999",
        ),
    ];
    for (generation, (file, text, at, what)) in cases.iter().enumerate() {
        std::fs::write(config_dir.join(file), text).expect("recording");
        std::fs::write(
            config_dir.join("hostile.yaml"),
            format!("{BACKEND_ON}{file}\n"),
        )
        .expect("backend");
        let v = wait_config(&s, "the refusal", |v| {
            v["config"]["lastError"].to_string().contains(file)
        });
        let problems = v["config"]["lastError"].to_string();
        assert!(
            problems.contains(at) && problems.contains(what),
            "{problems}"
        );
        let (status, body) = s.call("GET", "/readyz", None, None);
        assert_eq!((status, body), (200, json!({ "ready": true })));
        // The watch is alive: removing the backend is a good change, and it is applied.
        std::fs::remove_file(config_dir.join("hostile.yaml")).expect("rm");
        wait_config(&s, "the good change", |v| {
            v["config"]["lastError"].is_null() && v["config"]["generation"] == json!(generation + 2)
        });
    }
    assert_eq!(
        s.get("held")["state"],
        "paused(step)",
        "the rollout ran on through every refusal"
    );
    let log = s.stderr.lock().unwrap_or_else(|e| e.into_inner()).clone();
    assert!(!log.contains("panicked"), "{log}");
    assert!(s.metrics().contains("rollgate_config_last_reload_failed 0"));

    // An action's reason is one bounded line, through the API as on the command line.
    for (reason, want) in [
        (
            "x".repeat(1_001),
            "the reason is 1001 characters long; write at most 1000",
        ),
        ("a\nb".to_string(), "the reason contains control characters"),
    ] {
        let body = json!({ "reason": reason }).to_string();
        let (status, answer) = s.call(
            "POST",
            "/api/v1/rollouts/held/pause",
            Some(OPERATOR),
            Some(&body),
        );
        assert_eq!(status, 400, "{answer}");
        assert!(
            answer["error"].as_str().is_some_and(|e| e.contains(want)),
            "{answer}"
        );
    }
    assert_eq!(s.get("held")["state"], "paused(step)");
}

#[test]
fn a_panic_in_a_background_task_is_caught_logged_counted_and_makes_the_server_not_ready() {
    let (dir, config_dir) = setup(&["held"], &[]);
    let flag = dir.path().join("panic-now");
    let flag_text = flag.display().to_string();
    let s = serve_env(dir.path(), &[], &[("ROLLGATE_TEST_PANIC_IF", &flag_text)]);
    s.wait_state("held", 1, "paused(step)");
    let (status, body) = s.call("GET", "/readyz", None, None);
    assert_eq!((status, body), (200, json!({ "ready": true })));

    // A reload panics (the failpoint): caught, refused like a problem, logged, counted.
    std::fs::write(&flag, "").expect("flag");
    let rollouts = config_dir.join("rollouts.yaml");
    let mut text = std::fs::read_to_string(&rollouts).expect("read");
    text.push_str("# a change\n");
    std::fs::write(&rollouts, &text).expect("touch");
    let v = wait_config(&s, "the panic", |v| {
        v["panics"].as_array().is_some_and(|p| !p.is_empty())
    });
    assert_eq!(v["panics"][0]["task"], "reload", "{v}");
    assert!(
        v["panics"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("test failpoint")),
        "{v}"
    );
    assert!(
        v["config"]["lastError"]
            .to_string()
            .contains("rollgate panicked while loading"),
        "{v}"
    );
    let (status, body) = s.call("GET", "/readyz", None, None);
    assert_eq!((status, body), (503, json!({ "ready": false })));
    assert!(
        s.metrics()
            .contains("rollgate_task_panics_total{task=\"reload\"} 1"),
        "{}",
        s.metrics()
    );
    // A document applied through the API while loading panics: refused like a problem,
    // and the folder is put back.
    let doc = "apiVersion: rollgate.dev/v1alpha1\nkind: Rollout\nmetadata:\n  name: applied\nspec:\n  stableVersion: v1\n  canaryVersion: v2\n  target:\n    none: {}\n  strategy:\n    canary: {}\n  phases:\n    - name: full\n      weight: 100\n";
    let (status, body) = s.call("POST", "/api/v1/documents", Some(OPERATOR), Some(doc));
    assert_eq!(status, 422, "{body}");
    assert!(
        body.to_string().contains("rollgate panicked while loading"),
        "{body}"
    );
    assert!(!config_dir.join("api/rollout-applied.yaml").exists());
    assert!(
        s.stderr
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains("a task panicked"),
        "the panic is logged"
    );

    // The watch goes on: without the failpoint, the next change is loaded (a new rollout
    // starts), and the server stays not ready until it is restarted.
    std::fs::remove_file(&flag).expect("rm flag");
    text.push_str(&text.replace("name: held", "name: later"));
    std::fs::write(&rollouts, text).expect("write");
    s.wait_state("later", 1, "paused(step)");
    let (status, _) = s.call("GET", "/readyz", None, None);
    assert_eq!(
        status, 503,
        "a panic is never forgotten while the process lives"
    );
    drop(s);
    let s = serve(dir.path(), &[]);
    let (status, _) = s.call("GET", "/readyz", None, None);
    assert_eq!(status, 200, "a restarted server is ready again");
}

#[test]
fn a_run_whose_checkpoint_cannot_be_read_is_listed_and_logged_never_hidden() {
    let (dir, _) = setup(&["held", "kept"], &[]);
    {
        let s = serve(dir.path(), &[]);
        s.wait_state("held", 1, "paused(step)");
        s.wait_state("kept", 1, "paused(step)");
    }
    // Damage one run's checkpoint in the store, as a bad disk or a hand edit would.
    let db = dir.path().join("state.db");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        use sqlx::ConnectOptions;
        let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&db)
            .connect()
            .await
            .expect("open the store");
        let done = sqlx::query("UPDATE rollouts SET checkpoint = '{not json' WHERE name = 'held'")
            .execute(&mut conn)
            .await
            .expect("damage");
        assert_eq!(done.rows_affected(), 1);
    });
    let s = serve(dir.path(), &[]);
    // Listed, with the state `unreadable` and what to do; the other rollout as before.
    let (status, list) = s.call("GET", "/api/v1/rollouts", Some(READER), None);
    assert_eq!(status, 200, "{list}");
    let rollouts = list["rollouts"].as_array().expect("a list");
    assert_eq!(rollouts.len(), 2, "{list}");
    let held = rollouts
        .iter()
        .find(|r| r["rollout"] == "held")
        .expect("held is listed");
    assert_eq!(held["state"], "unreadable", "{list}");
    let message = held["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("stored checkpoint cannot be read")
            && message.contains("restore the store"),
        "{message}"
    );
    let one = s.get("held");
    assert_eq!(one["state"], "unreadable", "{one}");
    assert!(
        one["failures"]
            .to_string()
            .contains("checkpoint cannot be read"),
        "{one}"
    );
    s.wait_state("kept", 1, "paused(step)");
    assert!(
        s.metrics()
            .contains("rollgate_rollouts{state=\"unreadable\"} 1"),
        "{}",
        s.metrics()
    );
    let log = s.stderr.lock().unwrap_or_else(|e| e.into_inner()).clone();
    assert!(
        log.lines().any(|l| l.contains("ERROR")
            && l.contains("held")
            && l.contains("checkpoint cannot be read")),
        "{log}"
    );
    // Logs in a pipe are plain text.
    assert!(!log.contains('\u{1b}'), "{log:?}");
}
