//! The runner's heartbeat, for real: `rollgate run` and `rollgate serve` register in the
//! store and beat; after a SIGKILL, `rollgate get` (and the API) say in plain words that the
//! runner stopped reporting and what to do; a restarted runner is fresh again under a new
//! id; a clean stop (SIGTERM) reads as stopped, not as a crash; a finished run shows no
//! runner.

use crate::common;

use common::rollgate;
use common::serve::{READER, Serve};
use rollgate::engine::runner::utc_text;
use serde_json::Value;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The rollout that waits for an operator after its first phase (shared with `status`).
const HELD: &str = "../tests/status/paused.yaml";

/// A `rollgate run` killed (by PID) when the test ends, however it ends.
struct Runner(Child);

impl Drop for Runner {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Runner {
    /// `rollgate run` of [`HELD`] on `store`, beating every 200 ms.
    fn start(store: &str) -> Runner {
        Runner(
            Command::new(env!("CARGO_BIN_EXE_rollgate"))
                .args([
                    "run",
                    HELD,
                    "--store",
                    store,
                    "--poll-ms",
                    "50",
                    "--heartbeat",
                    "200ms",
                ])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("rollgate runs"),
        )
    }

    fn pid(&self) -> i64 {
        i64::from(self.0.id())
    }

    /// Send `signal` and wait (bounded) for the process to end.
    fn signal(&mut self, signal: i32) -> ExitStatus {
        let pid = i32::try_from(self.0.id()).expect("pid");
        // SAFETY: signalling the child this test started, by its PID.
        assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
        self.wait_exit()
    }

    fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.0.try_wait().expect("wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "rollgate run did not end");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn stderr(&mut self) -> String {
        use std::io::Read;
        let mut text = String::new();
        if let Some(mut pipe) = self.0.stderr.take() {
            let _ = pipe.read_to_string(&mut text);
        }
        text
    }
}

/// `rollgate get held --store STORE --format json`, parsed (`None` while it cannot say).
fn get(store: &str) -> Option<Value> {
    let run = rollgate(&["get", "held", "--store", store, "--format", "json"]);
    (run.code == 0)
        .then(|| serde_json::from_str(&run.stdout).ok())
        .flatten()
}

/// Ask `get` (bounded) until `check` holds; the last answer.
fn wait_for(store: &str, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let seen = get(store);
        if let Some(v) = &seen
            && check(v)
        {
            return v.clone();
        }
        assert!(Instant::now() < deadline, "never {what}: {seen:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Run `rollgate ARGS` (bounded) until its output satisfies `check`.
fn wait_human(args: &[&str], check: impl Fn(&str) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let run = rollgate(args);
        if run.code == 0 && check(&run.stdout) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "rollgate {args:?} never showed what was expected:\n{}{}",
            run.stdout,
            run.stderr
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The sentence for a runner on `host` that stopped reporting at `heartbeat_ms`.
fn stale_sentence(host: &str, heartbeat_ms: i64, command: &str) -> String {
    format!(
        "runner on {host} stopped reporting at {}; the run is not progressing — restart `rollgate {command}` on this store",
        utc_text(heartbeat_ms)
    )
}

fn store_in(dir: &Path, file: &str) -> String {
    dir.join(file).to_string_lossy().into_owned()
}

#[test]
fn a_killed_runner_reads_stale_and_a_restarted_one_fresh() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = store_in(dir.path(), "rollgate.db");

    // Driven: the runner is this process, and it beats.
    let mut first = Runner::start(&store);
    let pid = first.pid();
    let seen = wait_for(&store, "driven by the first runner", |v| {
        v["state"] == "paused(step)" && v["runner"]["pid"] == pid && v["runner"]["stale"] == false
    });
    let runner = &seen["runner"];
    let host = runner["host"].as_str().expect("host").to_string();
    assert!(!host.is_empty());
    assert_eq!(runner["command"], "run");
    assert_eq!(runner["periodMs"], 200);
    assert!(
        runner["message"]
            .as_str()
            .is_some_and(|m| m.starts_with(&format!("driven by `rollgate run` on {host}"))),
        "{runner}"
    );
    let beat = runner["heartbeatMs"].as_i64().expect("heartbeatMs");
    wait_for(&store, "a later heartbeat", |v| {
        v["runner"]["heartbeatMs"]
            .as_i64()
            .is_some_and(|b| b > beat)
    });

    // SIGKILL: nothing marks it stopped; its heartbeat just ages past three periods.
    let killed_id = runner["id"].clone();
    let _ = first.0.kill();
    let _ = first.0.wait();
    let stale = wait_for(&store, "stale", |v| v["runner"]["stale"] == true);
    let runner = &stale["runner"];
    assert_eq!(runner["id"], killed_id);
    assert_eq!(runner["pid"], pid);
    assert!(runner.get("stoppedMs").is_none(), "{runner}");
    let last_beat = runner["heartbeatMs"].as_i64().expect("heartbeatMs");
    let sentence = stale_sentence(&host, last_beat, "run");
    assert_eq!(runner["message"], sentence.as_str());
    assert_eq!(
        stale["state"], "paused(step)",
        "the run itself is as it was"
    );
    // People see the same sentence in the tree's header.
    let human = rollgate(&["get", "held", "--store", &store]);
    assert_eq!(human.code, 0, "{}", human.stderr);
    assert!(
        human.stdout.contains(&format!("Runner:   ⚠ {sentence}")),
        "{}",
        human.stdout
    );

    // Restarted: a new runner claims the run and beats; fresh again.
    let mut second = Runner::start(&store);
    let pid2 = second.pid();
    let fresh = wait_for(&store, "fresh under the new runner", |v| {
        v["runner"]["pid"] == pid2 && v["runner"]["stale"] == false
    });
    assert_ne!(fresh["runner"]["id"], killed_id, "a new runner id");
    assert_ne!(pid2, pid);
    assert_eq!(fresh["state"], "paused(step)");
    // People see who drives it (asked until then: a loaded machine may delay a beat).
    wait_human(&["get", "held", "--store", &store], |text| {
        text.contains(&format!(
            "Runner:   driven by `rollgate run` on {host} (pid {pid2},"
        )) && !text.contains("stopped reporting")
    });

    // A clean stop (SIGTERM): 143, and the runner reads as stopped, not as a crash.
    let status = second.signal(libc::SIGTERM);
    let stderr = second.stderr();
    assert_eq!(status.code(), Some(143), "{stderr}");
    assert!(stderr.contains("stopped by SIGTERM"), "{stderr}");
    let stopped = get(&store).expect("get");
    let runner = &stopped["runner"];
    assert_eq!(runner["pid"], pid2);
    assert_eq!(runner["stale"], false, "{runner}");
    let at = runner["stoppedMs"].as_i64().expect("stoppedMs");
    assert_eq!(
        runner["message"],
        format!(
            "runner on {host} was stopped at {}; the run is not progressing — restart `rollgate run` on this store",
            utc_text(at)
        )
        .as_str()
    );

    // Driven to its end: a finished run shows no runner.
    let mut third = Runner::start(&store);
    let pid3 = third.pid();
    wait_for(&store, "driven by the third runner", |v| {
        v["runner"]["pid"] == pid3
    });
    let promote = rollgate(&["promote", "held", "--store", &store]);
    assert_eq!(promote.code, 0, "{}", promote.stderr);
    let status = third.wait_exit();
    assert_eq!(status.code(), Some(0), "{}", third.stderr());
    let done = get(&store).expect("get");
    assert_eq!(done["state"], "succeeded");
    assert!(done.get("runner").is_none(), "{done}");
}

#[test]
fn serve_is_the_runner_of_its_runs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("config");
    std::fs::create_dir(&config).expect("mkdir");
    std::fs::copy(HELD, config.join("held.yaml")).expect("copy");
    let store = store_in(dir.path(), "state.db");

    // The API says who drives each unfinished run: one rollout, and the list.
    let server = Serve::new(dir.path())
        .args(&["--heartbeat", "200ms"])
        .start();
    let view = server.wait_state("held", 1, "paused(step)");
    let runner = &view["runner"];
    assert_eq!(runner["command"], "serve", "{view}");
    assert_eq!(runner["stale"], false);
    let host = runner["host"].as_str().expect("host").to_string();
    let first_id = runner["id"].clone();
    let list = server.get("/api/v1/rollouts");
    assert_eq!(list["rollouts"][0]["runner"]["id"], first_id, "{list}");
    // The runners: this one, live, holding the one unfinished run; the same in /metrics.
    let runners = server.get("/api/v1/runners");
    let listed = runners["runners"].as_array().expect("runners");
    assert_eq!(listed.len(), 1, "{runners}");
    assert_eq!(
        (
            &listed[0]["id"],
            &listed[0]["state"],
            &listed[0]["runs"],
            &listed[0]["this"]
        ),
        (
            &first_id,
            &Value::from("live"),
            &Value::from(1),
            &Value::from(true)
        ),
        "{runners}"
    );
    let metrics = server.metrics();
    assert!(
        metrics.contains("rollgate_runners{state=\"live\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains(&format!(
            "rollgate_runner_runs{{runner=\"{first_id}\",host=\"{host}\"}} 1"
        )),
        "{metrics}"
    );
    // `get --server` shows what the server sees.
    wait_human(
        &["get", "held", "--server", &server.url, "--token", READER],
        |text| text.contains(&format!("Runner:   driven by `rollgate serve` on {host}")),
    );

    // Killed: the store tells whoever reads it to restart the server.
    drop(server);
    let stale = wait_for(&store, "stale", |v| v["runner"]["stale"] == true);
    let beat = stale["runner"]["heartbeatMs"]
        .as_i64()
        .expect("heartbeatMs");
    assert_eq!(
        stale["runner"]["message"],
        stale_sentence(&host, beat, "serve").as_str()
    );

    // Restarted: fresh, under a new id; stopped cleanly: stopped.
    let server = Serve::new(dir.path())
        .args(&["--heartbeat", "200ms"])
        .start();
    let deadline = Instant::now() + Duration::from_secs(60);
    let view = loop {
        let view = server.rollout("held");
        if view["runner"]["id"] != first_id && view["runner"]["stale"] == false {
            break view;
        }
        assert!(Instant::now() < deadline, "never claimed again: {view}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(view["state"], "paused(step)");
    // The killed runner is listed as stopped (the new one, on the same host, found its
    // process gone and freed its leases at start), holding nothing; the new one holds it.
    let runners = server.get("/api/v1/runners");
    let state_of = |id: &Value| {
        runners["runners"]
            .as_array()
            .and_then(|l| l.iter().find(|r| &r["id"] == id))
            .map(|r| (r["state"].clone(), r["runs"].clone()))
    };
    assert_eq!(
        state_of(&first_id),
        Some(("stopped".into(), 0.into())),
        "{runners}"
    );
    assert_eq!(
        state_of(&view["runner"]["id"]),
        Some(("live".into(), 1.into())),
        "{runners}"
    );
    let status = server.terminate();
    assert_eq!(status.code(), Some(0));
    let stopped = get(&store).expect("get");
    assert_eq!(stopped["runner"]["stale"], false, "{stopped}");
    assert!(
        stopped["runner"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("was stopped at")
                && m.ends_with("restart `rollgate serve` on this store")),
        "{stopped}"
    );
}
