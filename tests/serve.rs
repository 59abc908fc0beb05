//! `rollgate serve` end to end: the real binary on a free loopback port, a real SQLite
//! store, the shipped plugins, and the API spoken over HTTP. Every server is killed by PID
//! when its test ends (a drop guard), and every wait is bounded.

use crate::common;

use common::StandIn;
use common::serve::{OPERATOR, READER, Serve, Server, read_events};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Rollouts that wait: `held-*` hold at an indefinite phase pause (paused(step)); `busy-*`
/// verify their first phase once a minute for four minutes (progressing).
fn config(dir: &Path, held: &[&str], busy: &[&str]) {
    common::copy_example(
        "canary",
        &["backends.yaml", "templates.yaml", "error-ratio.om"],
        dir,
    );
    let mut text = String::new();
    for name in held {
        text.push_str("---\n");
        text.push_str(&common::fixture_with("serve/held.yaml", &[("name", name)]));
    }
    for name in busy {
        text.push_str("---\n");
        text.push_str(&common::fixture_with("serve/busy.yaml", &[("name", name)]));
    }
    std::fs::write(dir.join("rollouts.yaml"), text).expect("write rollouts");
}

fn serve(dir: &Path, extra: &[&str]) -> Server {
    Serve::new(dir).args(extra).start()
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
    assert_eq!(s.rollout("busy")["state"], "progressing");
    let log = s.log();
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

#[test]
fn the_event_stream_delivers_every_transition_in_order_and_webhooks_get_them_too() {
    let hook = webhook();
    // The rollout's own webhook, for pauses only.
    let own = webhook();
    let (dir, config_dir) = setup(&[], &["busy"]);
    let rollouts = config_dir.join("rollouts.yaml");
    let text = std::fs::read_to_string(&rollouts).expect("read");
    std::fs::write(
        &rollouts,
        format!(
            "{text}  notifications:\n    - url: {}/hook\n      events: [pause]\n",
            own.url
        ),
    )
    .expect("write");
    let hook_url = format!("{}/hook", hook.url);
    let s = serve(dir.path(), &["--notify", &hook_url]);
    s.wait_state("busy", 1, "progressing");
    let audit_before = s.audit("busy", 1).len();
    let url = format!("{}/api/v1/events?rollout=busy", s.url);
    let reader = std::thread::spawn(move || {
        read_events(&url, Duration::from_secs(60), |events| {
            events.iter().any(|e| e["stateAfter"] == "succeeded")
        })
    });
    // The stream carries what happens after it starts: act once the server counts the
    // subscriber.
    s.wait_subscribers(1);
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
        let got = received(&hook);
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
                hook.seen().len() > got.len(),
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
    while received(&own).is_empty() {
        assert!(
            Instant::now() < deadline,
            "the rollout's webhook got nothing"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let got = received(&own);
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
fn serve_refuses_to_start_where_nothing_loads_or_on_a_broken_tokens_file() {
    let (dir, config_dir) = setup(&["held"], &[]);
    // A folder with nothing in it loads nothing: a wrong path, not a team's typo.
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).expect("mkdir");
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
    let mut a = args(&tokens);
    a[2] = empty.display().to_string();
    let out = common::rollgate(&a.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(out.code, 4, "{}", out.stderr);
    assert!(
        out.stderr.contains("holds no *.yaml") && out.stderr.contains("not serving"),
        "{}",
        out.stderr
    );
    let a = args(&tokens);
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
fn a_broken_rollout_is_invalid_spec_and_the_others_keep_running() {
    let (dir, config_dir) = setup(&["held"], &[]);
    let s = serve(dir.path(), &[]);
    s.wait_state("held", 1, "paused(step)");
    let status_of = |s: &Server| s.call("GET", "/api/v1/config", Some(READER), None).1;
    assert_eq!(status_of(&s)["config"]["generation"], 1);

    // A broken rollout in the folder: invalid-spec with where and what; the other runs on.
    std::fs::write(
        config_dir.join("broken.yaml"),
        "apiVersion: rollgate.dev/v1alpha1\nkind: Rollout\nmetadata:\n  name: broken\nspec:\n  stableVersion: v1\n",
    )
    .expect("write");
    let seen = s.wait_config("the broken rollout", |v| {
        v["config"]["invalid"]["broken"].is_array()
    });
    let problems = seen["config"]["invalid"]["broken"].to_string();
    assert!(problems.contains("broken.yaml:"), "{problems}");
    assert!(seen["config"]["lastError"].is_null(), "{seen}");
    assert_eq!(seen["rollouts"], json!(["held"]));
    let broken = s.rollout("broken");
    assert_eq!(broken["state"], "invalid-spec", "{broken}");
    assert!(
        broken["invalidSpec"]["problems"]
            .to_string()
            .contains("broken.yaml:"),
        "{broken}"
    );
    let (status, body) = s.call("GET", "/readyz", None, None);
    assert_eq!(status, 200, "still ready");
    // Unauthenticated: ready or not, nothing more (problems can quote files and paths).
    assert_eq!(body, json!({ "ready": true }));
    s.wait_state("held", 1, "paused(step)");

    // Fixed: the invalid-spec state is gone.
    std::fs::remove_file(config_dir.join("broken.yaml")).expect("rm");
    s.wait_config("the fix", |v| {
        v["config"]["invalid"] == json!({}) && v["config"]["lastError"].is_null()
    });
    let (status, _) = s.call("GET", "/api/v1/rollouts/broken", Some(READER), None);
    assert_eq!(
        status, 404,
        "a rollout that never ran and left the folder is gone"
    );

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
    let good = &common::fixture_with("serve/held.yaml", &[("name", "late")]);
    let (status, body) = s.call("POST", "/api/v1/documents", Some(OPERATOR), Some(good));
    assert_eq!(status, 200, "{body}");
    assert!(config_dir.join("api/rollout-late.yaml").exists());
    s.wait_state("late", 1, "paused(step)");
}

/// A webhook receiver on a free loopback port: answers 500 to the first delivery, 200 to
/// the rest.
fn webhook() -> StandIn {
    StandIn::open_blocking(|_, i| (if i == 0 { 500 } else { 200 }, vec![], String::new()))
}

/// The JSON bodies `hook` accepted (every delivery after the first).
fn received(hook: &StandIn) -> Vec<Value> {
    hook.seen()
        .into_iter()
        .skip(1)
        .map(|r| r.body)
        .filter(|b| !b.is_null())
        .collect()
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
        // No rollout uses the backend: a problem of the folder, costing no rollout.
        let v = s.wait_config("the refusal", |v| {
            v["config"]["problems"].to_string().contains(file)
        });
        let problems = v["config"]["problems"].to_string();
        assert!(
            problems.contains(at) && problems.contains(what),
            "{problems}"
        );
        let (status, body) = s.call("GET", "/readyz", None, None);
        assert_eq!((status, body), (200, json!({ "ready": true })));
        // The watch is alive: removing the backend is a good change, and it is applied.
        std::fs::remove_file(config_dir.join("hostile.yaml")).expect("rm");
        s.wait_config("the good change", |v| {
            v["config"]["lastError"].is_null()
                && v["config"]["problems"] == json!([])
                && v["config"]["generation"].as_u64() > Some(generation as u64 + 1)
        });
    }
    assert_eq!(
        s.rollout("held")["state"],
        "paused(step)",
        "the rollout ran on through every refusal"
    );
    let log = s.log();
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
    assert_eq!(s.rollout("held")["state"], "paused(step)");
}

#[test]
fn a_panic_in_a_background_task_is_caught_logged_counted_and_makes_the_server_not_ready() {
    let (dir, config_dir) = setup(&["held"], &[]);
    let flag = dir.path().join("panic-now");
    let flag_text = flag.display().to_string();
    let s = Serve::new(dir.path())
        .env(&[("ROLLGATE_TEST_PANIC_IF", &flag_text)])
        .start();
    s.wait_state("held", 1, "paused(step)");
    let (status, body) = s.call("GET", "/readyz", None, None);
    assert_eq!((status, body), (200, json!({ "ready": true })));

    // A reload panics (the failpoint): caught, refused like a problem, logged, counted.
    std::fs::write(&flag, "").expect("flag");
    let rollouts = config_dir.join("rollouts.yaml");
    let mut text = std::fs::read_to_string(&rollouts).expect("read");
    text.push_str("# a change\n");
    std::fs::write(&rollouts, &text).expect("touch");
    let v = s.wait_config("the panic", |v| {
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
    assert!(s.log().contains("a task panicked"), "the panic is logged");

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
    let one = s.rollout("held");
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
    let log = s.log();
    assert!(
        log.lines().any(|l| l.contains("ERROR")
            && l.contains("held")
            && l.contains("checkpoint cannot be read")),
        "{log}"
    );
    // Logs in a pipe are plain text.
    assert!(!log.contains('\u{1b}'), "{log:?}");
}

/// `/api/v2` answers the v2 documents, valid against the schemas `rollgate schema`
/// publishes (named counts, structured failures, the `apiVersion` marker), and its event
/// stream carries the progress after each event; `/api/v1` and the webhooks keep their
/// shapes, and `rollgate get --server` prints v2 JSON and the same tree as from the store.
#[test]
fn api_v2_answers_the_new_shapes_and_v1_stays_as_it_was() {
    let hook = webhook();
    let (dir, _) = setup(&["held"], &["busy"]);
    let hook_url = format!("{}/hook", hook.url);
    let s = serve(dir.path(), &["--notify", &hook_url]);
    s.wait_state("busy", 1, "progressing");
    s.wait_state("held", 1, "paused(step)");
    let status = common::api_schema("RolloutStatus");
    let list = common::api_schema("RolloutList");
    let history = common::api_schema("RolloutHistory");
    let event = common::api_schema("RolloutEvent");

    let v1_url = format!("{}/api/v1/events?rollout=busy", s.url);
    let v2_url = format!("{}/api/v2/events?rollout=busy", s.url);
    let until_succeeded = |events: &[Value]| events.iter().any(|e| e["stateAfter"] == "succeeded");
    let v1_reader =
        std::thread::spawn(move || read_events(&v1_url, Duration::from_secs(60), until_succeeded));
    let v2_reader =
        std::thread::spawn(move || read_events(&v2_url, Duration::from_secs(60), until_succeeded));
    s.wait_subscribers(2);
    // An operator's pause is a failure of kind `operator`; then the run goes on to its end.
    for (action, state) in [
        ("pause", "paused(manual)"),
        ("resume", "progressing"),
        ("promote-full", "succeeded"),
    ] {
        let (code, body) = s.act("busy", action, Some(OPERATOR));
        assert_eq!(code, 200, "{body}");
        s.wait_state("busy", 1, state);
    }
    let v1_events = v1_reader.join().expect("v1 reader");
    let v2_events = v2_reader.join().expect("v2 reader");
    assert!(!v2_events.is_empty());
    for e in &v2_events {
        common::assert_valid(&event, e);
        assert_eq!(e["apiVersion"], "rollgate.dev/v2");
        assert_eq!(e["progress"]["rollout"], "busy");
    }
    // The same events; v1 without the marker and the progress.
    let stripped: Vec<Value> = v2_events
        .iter()
        .map(|e| {
            let mut e = e.clone();
            let o = e.as_object_mut().expect("an object");
            o.remove("apiVersion");
            o.remove("progress");
            e
        })
        .collect();
    assert_eq!(stripped, v1_events);
    let paused = v2_events
        .iter()
        .find(|e| e["action"] == "pause")
        .expect("the pause");
    assert_eq!(paused["progress"]["state"], "paused(manual)");
    let failure = &paused["progress"]["failures"][0];
    assert_eq!(
        (&failure["kind"], &failure["actor"]),
        (&json!("operator"), &json!("alice")),
        "{paused}"
    );
    // Webhooks get the v1 event.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !received(&hook)
        .iter()
        .any(|e| e["rollout"] == "busy" && e["action"] == "succeed")
    {
        assert!(
            Instant::now() < deadline,
            "the webhook got {:?}",
            received(&hook)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        received(&hook)
            .iter()
            .all(|e| e.get("apiVersion").is_none() && e.get("progress").is_none()),
        "{:?}",
        received(&hook)
    );

    // One rollout, the list, a history: v2 by schema; v1 as it was.
    let (code, busy) = s.read("/api/v2/rollouts/busy");
    assert_eq!(code, 200, "{busy}");
    common::assert_valid(&status, &busy);
    assert_eq!(busy["apiVersion"], "rollgate.dev/v2");
    assert!(busy["metrics"][0]["counts"]["pass"].is_u64(), "{busy}");
    assert_eq!(busy["failures"][0]["kind"], "operator", "{busy}");
    let old = s.rollout("busy");
    assert!(old.get("apiVersion").is_none(), "{old}");
    assert!(old["metrics"][0]["counts"].is_array(), "{old}");
    assert!(
        old["failures"]
            .as_array()
            .is_some_and(|f| f.iter().all(Value::is_string)),
        "{old}"
    );
    let (code, all) = s.read("/api/v2/rollouts?prefix=b");
    assert_eq!(code, 200, "{all}");
    common::assert_valid(&list, &all);
    assert_eq!(all["rollouts"].as_array().map(Vec::len), Some(1), "{all}");
    assert_eq!(
        all["rollouts"][0]["lastFailure"]["kind"], "operator",
        "{all}"
    );
    // Paging: one rollout a page, in name order, `next` naming where the next page starts
    // and absent on the last; a bad limit is refused; v1 (frozen) ignores paging.
    let (code, first) = s.read("/api/v2/rollouts?limit=1");
    assert_eq!(code, 200, "{first}");
    common::assert_valid(&list, &first);
    assert_eq!(
        first["rollouts"].as_array().map(Vec::len),
        Some(1),
        "{first}"
    );
    assert_eq!(first["rollouts"][0]["rollout"], "busy", "{first}");
    assert_eq!(first["next"], "busy", "{first}");
    let (code, second) = s.read("/api/v2/rollouts?limit=1&after=busy");
    assert_eq!(code, 200, "{second}");
    common::assert_valid(&list, &second);
    assert_eq!(second["rollouts"][0]["rollout"], "held", "{second}");
    assert!(second.get("next").is_none(), "the last page: {second}");
    let (code, whole) = s.read("/api/v2/rollouts?limit=1000");
    assert_eq!(code, 200, "{whole}");
    assert_eq!(
        whole["rollouts"].as_array().map(Vec::len),
        Some(2),
        "{whole}"
    );
    assert!(whole.get("next").is_none(), "{whole}");
    let (code, none) = s.read("/api/v2/rollouts?after=held");
    assert_eq!(code, 200, "{none}");
    assert_eq!(none["rollouts"].as_array().map(Vec::len), Some(0), "{none}");
    for bad in ["0", "1001", "ten", "-1"] {
        let (code, e) = s.read(&format!("/api/v2/rollouts?limit={bad}"));
        assert_eq!(code, 400, "limit={bad}: {e}");
        assert!(
            e["error"].as_str().is_some_and(|m| m.contains("1 to 1000")),
            "limit={bad}: {e}"
        );
    }
    let (code, v1) = s.call("GET", "/api/v1/rollouts?limit=1", Some(READER), None);
    assert_eq!(code, 200, "{v1}");
    assert_eq!(v1["rollouts"].as_array().map(Vec::len), Some(2), "{v1}");
    assert!(v1.get("next").is_none(), "{v1}");
    let (code, h) = s.read("/api/v2/rollouts/busy/history");
    assert_eq!(code, 200, "{h}");
    common::assert_valid(&history, &h);
    assert_eq!(h["failures"][0]["actor"], "alice", "{h}");
    let (code, _) = s.read("/api/v2/rollouts/nope");
    assert_eq!(code, 404);
    let (code, _) = s.call("GET", "/api/v2/rollouts/busy", None, None);
    assert_eq!(code, 401, "v2 needs a token as v1 does");

    // The command line reads v2 from the server: the same JSON, and the same tree as from
    // the store.
    let read = format!("--token={READER}");
    let out = common::rollgate(&["get", "held", "--server", &s.url, &read, "--format", "json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let v: Value = serde_json::from_str(&out.stdout).expect("json");
    common::assert_valid(&status, &v);
    assert_eq!(v, s.read("/api/v2/rollouts/held").1);
    let store = dir.path().join("state.db").to_string_lossy().into_owned();
    let from_server = common::rollgate(&["get", "held", "--server", &s.url, &read]);
    let from_store = common::rollgate(&["get", "held", "--store", &store]);
    assert_eq!(from_server.code, 0, "{}", from_server.stderr);
    assert_eq!(from_store.code, 0, "{}", from_store.stderr);
    assert_eq!(from_server.stdout, from_store.stdout);
    let out = common::rollgate(&[
        "history", "busy", "--server", &s.url, &read, "--format", "json",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let v: Value = serde_json::from_str(&out.stdout).expect("json");
    common::assert_valid(&history, &v);

    // Actions answer under v2 as under v1.
    let (code, body) = s.call(
        "POST",
        "/api/v2/rollouts/held/promote",
        Some(OPERATOR),
        Some(r#"{"reason": "v2"}"#),
    );
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["outcome"], "applied", "{body}");
    s.wait_state("held", 1, "succeeded");
}

/// A run whose drive fails on the store — here a database another process holds locked
/// longer than the store's busy timeout — is driven again from its last checkpoint once
/// the store answers, instead of being left undriven until a restart.
#[test]
fn a_run_whose_store_failed_is_driven_again_from_its_last_checkpoint() {
    use sqlx::Connection;
    let dir = tempfile::tempdir().expect("tempdir");
    let config_dir = dir.path().join("config");
    std::fs::create_dir(&config_dir).expect("mkdir");
    common::copy_example("canary", &["backends.yaml", "error-ratio.om"], &config_dir);
    std::fs::write(
        config_dir.join("steady.yaml"),
        "apiVersion: rollgate.dev/v1alpha1\nkind: VerificationTemplate\nmetadata:\n  name: every-second\nspec:\n  metrics:\n    - name: error-ratio\n      provider:\n        plugin: threshold\n        backend: recorded\n        config:\n          backend: recorded\n          query: http_error_ratio{service=\"checkout\",track=\"canary\"}\n          window: 1m\n          reduce: avg\n          condition: \"< 0.05\"\n      interval: 1s\n      count: 100000\n---\napiVersion: rollgate.dev/v1alpha1\nkind: Rollout\nmetadata:\n  name: steady\nspec:\n  stableVersion: v1\n  canaryVersion: v2\n  target:\n    none: {}\n  strategy:\n    canary: {}\n  phases:\n    - name: canary-10\n      weight: 10\n      verification:\n        templates: [every-second]\n    - name: full\n      weight: 100\n",
    )
    .expect("write");
    let s = Serve::new(dir.path()).log("warn").start();
    s.wait_state("steady", 1, "progressing");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let url = format!("sqlite:{}", dir.path().join("state.db").display());
    let mut db = rt
        .block_on(sqlx::SqliteConnection::connect(&url))
        .expect("a connection to the store");
    let measured = |db: &mut sqlx::SqliteConnection| -> i64 {
        rt.block_on(sqlx::query_scalar("SELECT COUNT(*) FROM measurements").fetch_one(db))
            .expect("count")
    };
    // Measuring every second.
    let deadline = Instant::now() + Duration::from_secs(30);
    while measured(&mut db) < 2 {
        assert!(Instant::now() < deadline, "no measurement: {}", s.log());
        std::thread::sleep(Duration::from_millis(200));
    }
    // Every write waits for the lock, then fails after the busy timeout (5 s).
    rt.block_on(sqlx::query("BEGIN EXCLUSIVE").execute(&mut db))
        .expect("lock");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !s
        .log()
        .contains("driving the run again from its last checkpoint")
    {
        assert!(
            Instant::now() < deadline,
            "no store failure seen while the database was locked: {}",
            s.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    rt.block_on(sqlx::query("ROLLBACK").execute(&mut db))
        .expect("unlock");
    // Driven again: it measures on.
    let after = measured(&mut db);
    let deadline = Instant::now() + Duration::from_secs(40);
    while measured(&mut db) < after + 3 {
        assert!(
            Instant::now() < deadline,
            "the run is no longer driven after the store failed: {}",
            s.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(!s.log().contains("the rollout stopped"), "{}", s.log());
    s.wait_state("steady", 1, "progressing");
}
