//! Status for people, run for real: `rollgate get` (tree, JSON, --watch following a live
//! runner), `rollgate history` (runs and audit log), and the live tree `rollgate run` draws
//! on a terminal (through a pseudo-terminal made by `script`).

use crate::common;

use common::{Run, rollgate};
use std::io::BufRead;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The quickstart's two rollouts run to their ends into a store in `dir`.
fn quickstart_store(dir: &Path) -> String {
    let store = dir.join("rollgate.db").to_string_lossy().into_owned();
    let run = rollgate(&[
        "run",
        "../examples/canary",
        "--store",
        &store,
        "--clock",
        "simulated",
        "--start",
        "2026-01-01T00:00:00Z",
    ]);
    assert_eq!(run.code, 5, "{}", run.stderr);
    store
}

#[test]
fn get_shows_the_tree_and_json() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = quickstart_store(dir.path());
    let run = rollgate(&["get", "payments", "--store", &store]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    for expected in [
        "Name:     payments (run 1)",
        "Status:   ↩ rolled-back",
        "Strategy: canary",
        "Phase:    3/4 canary-50",
        "Versions: v7 (stable) → v8 (canary)",
        "├─ ✔ canary-10  weight 10  done",
        "├─ ↩ canary-50  weight 50  rolled-back",
        "│  └─ ✖ error-ratio  failed  ✔ 2  ✖ 1  ? 0  ∅ 0  ⚠ 0  last 0.0845",
        "└─ ○ full  weight 100  pending",
    ] {
        assert!(
            run.stdout.contains(expected),
            "missing {expected:?} in\n{}",
            run.stdout
        );
    }
    assert!(!run.stdout.contains('\x1b'), "no colour off a terminal");

    let run = rollgate(&["get", "checkout", "--store", &store, "--format", "json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let v: serde_json::Value = serde_json::from_str(&run.stdout).expect("json");
    assert_eq!(v["state"], "succeeded");
    assert_eq!(v["finished"], true);
    assert_eq!(v["strategy"], "canary");
    assert_eq!(v["phases"].as_array().map(Vec::len), Some(4));
    assert!(
        v["phases"]
            .as_array()
            .expect("phases")
            .iter()
            .all(|p| p["status"] == "done")
    );

    // --watch on an ended run shows it once and returns.
    let run = rollgate(&["get", "checkout", "--store", &store, "--watch"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.stdout.matches("Name:").count(), 1, "{}", run.stdout);

    // Not there: 4, saying what to do.
    let run = rollgate(&["get", "nope", "--store", &store]);
    assert_eq!(run.code, 4);
    assert!(
        run.stderr.contains("no rollout named \"nope\""),
        "{}",
        run.stderr
    );
    let missing = dir
        .path()
        .join("elsewhere.db")
        .to_string_lossy()
        .into_owned();
    let run = rollgate(&["get", "checkout", "--store", &missing]);
    assert_eq!(run.code, 4);
    assert!(run.stderr.contains("--store"), "{}", run.stderr);
    assert!(
        !Path::new(&missing).exists(),
        "reading must not create a store"
    );
}

#[test]
fn history_lists_runs_and_the_audit_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = quickstart_store(dir.path());
    // A second run of payments, queued by an operator.
    let run = rollgate(&["retry", "payments", "--store", &store, "--actor", "ana"]);
    assert_eq!(run.code, 0, "{}", run.stderr);

    let run = rollgate(&["history", "payments", "--store", &store, "--run", "1"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let out = &run.stdout;
    assert!(out.contains("1    ↩ rolled-back"), "{out}");
    assert!(out.contains("2    ○ pending"), "{out}");
    assert!(out.contains("audit log of run 1:"), "{out}");
    for expected in [
        "+00m00s  rollgate               start",
        "+08m00s  policy:default-policy  rollback           progressing → rolling-back",
        "+09m00s  rollgate               rolled-back        rolling-back → rolled-back  rolled back: v7 restored",
    ] {
        assert!(out.contains(expected), "missing {expected:?} in\n{out}");
    }

    let run = rollgate(&["history", "payments", "--store", &store, "--format", "json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let v: serde_json::Value = serde_json::from_str(&run.stdout).expect("json");
    assert_eq!(v["runs"].as_array().map(Vec::len), Some(2));
    assert_eq!(v["auditRun"], 2);
    assert_eq!(v["audit"][0]["action"], "retry");
    assert_eq!(v["audit"][0]["actor"], "ana");

    let run = rollgate(&["history", "payments", "--store", &store, "--run", "9"]);
    assert_eq!(run.code, 4);
    assert!(
        run.stderr.contains("has no run 9 (runs: 1, 2)"),
        "{}",
        run.stderr
    );
}

/// `get` and `history --format json` print the API v2 documents: valid against the schemas
/// `rollgate schema` publishes, with named counts and structured failures.
#[test]
fn get_and_history_json_are_the_v2_documents_by_schema() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = quickstart_store(dir.path());
    let status = common::api_schema("RolloutStatus");
    let history = common::api_schema("RolloutHistory");

    let run = rollgate(&["get", "payments", "--store", &store, "--format", "json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let v: serde_json::Value = serde_json::from_str(&run.stdout).expect("json");
    common::assert_valid(&status, &v);
    assert_eq!(v["apiVersion"], "rollgate.dev/v2");
    assert_eq!(v["state"], "rolled-back");
    let metric = &v["metrics"][0];
    assert_eq!(metric["name"], "error-ratio");
    assert_eq!(
        metric["counts"],
        serde_json::json!({"pass": 2, "fail": 1, "inconclusive": 0, "noData": 0, "error": 0})
    );
    // The one failure: the metric, its value and the limit it crossed.
    let failures = v["failures"].as_array().expect("failures");
    assert_eq!(failures.len(), 1, "{v}");
    let f = &failures[0];
    for (field, want) in [
        ("kind", serde_json::json!("metric-failed")),
        ("phase", "canary-50".into()),
        ("metric", "error-ratio".into()),
        ("limit", "failureLimit 0".into()),
        ("plugin", "threshold".into()),
        ("backend", "recorded".into()),
    ] {
        assert_eq!(f[field], want, "{field}: {f}");
    }
    assert_eq!(
        f["value"].as_f64().map(|x| (x * 1e4).round()),
        Some(845.0),
        "{f}"
    );
    assert!(f.get("gate").is_none() && f.get("actor").is_none(), "{f}");
    // Canary: no target progress.
    assert!(v.get("target").is_none(), "{v}");

    let run = rollgate(&["get", "checkout", "--store", &store, "--format", "json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let v: serde_json::Value = serde_json::from_str(&run.stdout).expect("json");
    common::assert_valid(&status, &v);
    assert_eq!(v["failures"], serde_json::json!([]), "{v}");

    let run = rollgate(&["history", "payments", "--store", &store, "--format", "json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let h: serde_json::Value = serde_json::from_str(&run.stdout).expect("json");
    common::assert_valid(&history, &h);
    assert_eq!(h["apiVersion"], "rollgate.dev/v2");
    assert_eq!(h["auditRun"], 1);
    assert_eq!(h["failures"][0]["kind"], "metric-failed", "{h}");

    // A document of the other version is not taken for this one.
    let mut other = v.clone();
    other["apiVersion"] = "rollgate.dev/v1".into();
    assert!(!status.is_valid(&other));
}

/// A `rollgate` process killed (by PID) when the test ends, however it ends.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(args: &[&str]) -> Guard {
    Guard(
        Command::new(env!("CARGO_BIN_EXE_rollgate"))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("rollgate runs"),
    )
}

/// Ask `rollgate get --format json` until `check` holds (bounded).
fn wait_for(store: &str, what: &str, check: impl Fn(&serde_json::Value) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let run: Run = rollgate(&["get", "held", "--store", store, "--format", "json"]);
        if run.code == 0
            && let Ok(v) = serde_json::from_str::<serde_json::Value>(&run.stdout)
            && check(&v)
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "never {what}: {}{}",
            run.stdout,
            run.stderr
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn watch_follows_a_live_runner_until_the_run_ends() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir
        .path()
        .join("rollgate.db")
        .to_string_lossy()
        .into_owned();
    let _runner = spawn(&[
        "run",
        "../tests/status/paused.yaml",
        "--store",
        &store,
        "--poll-ms",
        "50",
    ]);
    wait_for(&store, "paused", |v| v["state"] == "paused(step)");

    let mut watch = spawn(&[
        "get",
        "held",
        "--store",
        &store,
        "--watch",
        "--interval",
        "100ms",
        "--format",
        "json",
    ]);
    let stdout = watch.0.stdout.take().expect("stdout");
    let lines = std::thread::spawn(move || {
        std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .collect::<Vec<String>>()
    });
    // The operator promotes; the runner finishes; the watch sees it and ends by itself.
    let run = rollgate(&["promote", "held", "--store", &store, "--format", "json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let v: serde_json::Value = serde_json::from_str(&run.stdout).expect("json");
    assert_eq!(v["action"], "promote");
    assert_eq!(v["state"], "paused(step)");
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = watch.0.try_wait().expect("wait") {
            break status;
        }
        assert!(Instant::now() < deadline, "the watch did not end");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success());
    let lines = lines.join().expect("lines");
    let states: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).expect("one JSON document per line"))
        .collect();
    assert_eq!(
        states.first().map(|v| v["state"].clone()),
        Some("paused(step)".into()),
        "{lines:?}"
    );
    let last = states.last().expect("a last state");
    assert_eq!(last["state"], "succeeded", "{lines:?}");
    assert_eq!(last["finished"], true);
    // Only changes are printed.
    for pair in lines.windows(2) {
        assert_ne!(pair[0], pair[1]);
    }
}

/// `script` gives `rollgate run` a pseudo-terminal: there it draws the coloured tree; in a
/// pipe it writes plain progress lines.
#[test]
fn run_draws_the_live_tree_only_on_a_terminal() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir
        .path()
        .join("rollgate.db")
        .to_string_lossy()
        .into_owned();
    let command = format!(
        "{} run ../examples/canary --store {store} --clock simulated --start 2026-01-01T00:00:00Z",
        env!("CARGO_BIN_EXE_rollgate")
    );
    let out = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .env_remove("NO_COLOR")
        .stdin(Stdio::null())
        .output()
        .expect("script runs (util-linux)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(5), "{text}");
    assert!(text.contains("\x1b[31m"), "coloured on a terminal: {text}");
    let plain = text.replace("\x1b[0m", "");
    assert!(
        plain.contains("│  └─ ✖ error-ratio  failed  ✔ 2  ✖ 1"),
        "the tree: {plain}"
    );
    // Redrawn in place: cursor up and clear.
    assert!(text.contains("\x1b[J"), "{text}");

    let store2 = dir.path().join("second.db").to_string_lossy().into_owned();
    let run = rollgate(&[
        "run",
        "../examples/canary",
        "--store",
        &store2,
        "--clock",
        "simulated",
        "--start",
        "2026-01-01T00:00:00Z",
    ]);
    assert_eq!(run.code, 5);
    assert!(!run.stderr.contains('\x1b'), "{}", run.stderr);
    assert!(run.stderr.contains("[payments#1]"), "{}", run.stderr);
}
