//! Crash recovery for real: `rollgate run` is started as a child process on an `exec`
//! target that logs every delivered step, killed with SIGKILL at many different points
//! (inside a step before and after it took effect, and at arbitrary moments), restarted,
//! and every rollout must finish with each step applied exactly once and an audit log that
//! is complete, ordered and identical to the one of an uninterrupted run.
//!
//! The target is what an operator would write: it applies a step at most once per step id
//! (the id is the idempotency key rollgate gives every step), and it logs every delivery
//! separately, so the test can see re-deliveries as well as applications.

use crate::common;

use rollgate::store::Store;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const TARGET: &str = r#"#!/bin/sh
# A deployment target that applies each step once (by its id) and can kill its runner.
set -u
d="$LOGDIR"
exec 9>>"$d/lock"
flock 9
echo "$ROLLGATE_STEP_ID" >> "$d/deliveries.log"
n=$(wc -l < "$d/deliveries.log" | tr -d ' ')
if grep -qx "$n before" "$d/plan"; then kill -9 "$PPID"; exit 1; fi
if ! grep -q "^$ROLLGATE_STEP_ID " "$d/applied.log"; then
    echo "$ROLLGATE_STEP_ID $ROLLGATE_OPERATION $ROLLGATE_WEIGHT" >> "$d/applied.log"
fi
if grep -qx "$n after" "$d/plan"; then kill -9 "$PPID"; exit 0; fi
"#;

fn spec(logdir: &Path, recording: &str) -> String {
    common::fixture_with(
        "crash/rollouts.yaml",
        &[
            ("logdir", logdir.display().to_string().as_str()),
            ("recording", recording),
        ],
    )
}

fn recording() -> String {
    // checkout healthy throughout; payments regresses from minute 4 (its third phase, which measures at minutes 4, 5 and 6).
    let mut text = String::from("# TYPE http_error_ratio gauge\n");
    let t0 = 1_767_225_600i64;
    for i in 0..=(3600 / 15) {
        let t = t0 + 15 * i;
        let minute = (15 * i) as f64 / 60.0;
        let bad = if minute < 4.0 { 0.01 } else { 0.09 };
        text.push_str(&format!(
            "http_error_ratio{{service=\"checkout\",version=\"v2\"}} 0.01 {t}\n\
             http_error_ratio{{service=\"payments\",version=\"v2\"}} {bad} {t}\n"
        ));
    }
    text.push_str("# EOF\n");
    text
}

/// One scenario's files.
struct Scenario {
    dir: tempfile::TempDir,
    cache: PathBuf,
}

impl Scenario {
    fn new(cache: &Path, plan: &str) -> Scenario {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        std::fs::write(d.join("target.sh"), TARGET).expect("write target");
        std::fs::write(d.join("plan"), plan).expect("write plan");
        std::fs::write(d.join("applied.log"), "").expect("write log");
        std::fs::write(d.join("recording.om"), recording()).expect("write recording");
        std::fs::create_dir(d.join("spec")).expect("mkdir");
        std::fs::write(d.join("spec/rollouts.yaml"), spec(d, "../recording.om"))
            .expect("write spec");
        Scenario {
            dir,
            cache: cache.to_path_buf(),
        }
    }

    fn command(&self) -> Command {
        let d = self.dir.path();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_rollgate"));
        cmd.arg("run")
            .arg(d.join("spec"))
            .arg("--store")
            .arg(d.join("rollgate.db"))
            .args(["--clock", "simulated", "--start", "2026-01-01T00:00:00Z"])
            .arg("--cache-dir")
            .arg(&self.cache)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    /// Run until the runner exits by itself; `kill_after` kills it at those moments
    /// (one per start) as long as there are any left. Returns the final exit code and
    /// how many times the runner was killed.
    fn run_to_end(&self, mut kill_after: Vec<Duration>) -> (i32, usize) {
        let mut kills = 0;
        for _ in 0..60 {
            let mut child = self.command().spawn().expect("start rollgate");
            let deadline = Instant::now() + Duration::from_secs(120);
            let kill_at = (!kill_after.is_empty()).then(|| Instant::now() + kill_after.remove(0));
            let status = loop {
                if let Some(status) = child.try_wait().expect("wait") {
                    break status;
                }
                if kill_at.is_some_and(|k| Instant::now() >= k) {
                    let _ = child.kill();
                    break child.wait().expect("wait");
                }
                assert!(
                    Instant::now() < deadline,
                    "rollgate run did not finish within 120 s"
                );
                std::thread::sleep(Duration::from_millis(2));
            };
            let out = child.wait_with_output().expect("output");
            match status.code() {
                // Killed (by the target's `kill -9 $PPID` or by us): start it again.
                None => kills += 1,
                Some(code) => {
                    assert!(
                        code == 5,
                        "rollgate run exited {code}, expected 5 (steady succeeded, regress rolled back)\nstdout:\n{}\nstderr:\n{}",
                        String::from_utf8_lossy(&out.stdout),
                        String::from_utf8_lossy(&out.stderr)
                    );
                    let stdout = String::from_utf8_lossy(&out.stdout);
                    assert!(stdout.contains("steady: succeeded"), "{stdout}");
                    assert!(stdout.contains("regress: rolled-back"), "{stdout}");
                    return (code, kills);
                }
            }
        }
        panic!("the rollouts did not finish after 60 restarts");
    }

    fn lines(&self, file: &str) -> Vec<String> {
        std::fs::read_to_string(self.dir.path().join(file))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// The audit log of each rollout's run as (action, before, after), checked for order.
    async fn audit(&self) -> Vec<(String, Vec<(String, String, String)>)> {
        let store = Store::open(&self.dir.path().join("rollgate.db"))
            .await
            .expect("store");
        let mut out = Vec::new();
        for row in store.list().await.expect("list") {
            assert!(row.finished, "{} is not finished: {}", row.name, row.state);
            let audit = store.audit(row.id).await.expect("audit");
            let seqs: Vec<i64> = audit.iter().map(|a| a.seq).collect();
            assert_eq!(
                seqs,
                (1..=audit.len() as i64).collect::<Vec<_>>(),
                "gapless audit of {}",
                row.name
            );
            assert!(
                audit
                    .windows(2)
                    .all(|w| w[0].event.at_ms <= w[1].event.at_ms),
                "audit of {} out of time order",
                row.name
            );
            assert!(
                audit
                    .windows(2)
                    .all(|w| w[0].event.state_after == w[1].event.state_before),
                "audit of {} has a hole: an event's state_before is not the previous state_after",
                row.name
            );
            out.push((
                row.name.clone(),
                audit
                    .iter()
                    .map(|a| {
                        (
                            a.event.action.clone(),
                            a.event.state_before.clone(),
                            a.event.state_after.clone(),
                        )
                    })
                    .collect(),
            ));
        }
        out.sort();
        out
    }
}

fn expected_applied() -> Vec<(&'static str, Vec<(&'static str, &'static str)>)> {
    vec![
        (
            "regress",
            vec![
                ("set-weight", "10"),
                ("set-weight", "25"),
                ("set-weight", "50"),
                ("rollback", "25"),
                ("rollback", "10"),
                ("rollback", "0"),
            ],
        ),
        (
            "steady",
            vec![
                ("set-weight", "10"),
                ("set-weight", "25"),
                ("set-weight", "50"),
                ("set-weight", "100"),
                ("finalize", "100"),
            ],
        ),
    ]
}

/// Each step applied exactly once, in order; every delivery is of a known step and any
/// re-delivery is explained by a kill.
fn check_applied(s: &Scenario, kills: usize) {
    let applied = s.lines("applied.log");
    let mut ids: Vec<&str> = applied.iter().filter_map(|l| l.split(' ').next()).collect();
    let total = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), total, "a step was applied twice: {applied:#?}");
    for (rollout, want) in expected_applied() {
        let got: Vec<(String, String)> = applied
            .iter()
            .filter(|l| l.starts_with(&format!("{rollout}#")))
            .map(|l| {
                let f: Vec<&str> = l.split(' ').collect();
                (f[1].to_string(), f[2].to_string())
            })
            .collect();
        let want: Vec<(String, String)> = want
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        assert_eq!(got, want, "steps applied to {rollout}");
    }
    let deliveries = s.lines("deliveries.log");
    let redelivered = deliveries.len() - total;
    // A kill leaves at most one step in doubt per rollout (both run side by side); only those
    // may be delivered again, under the same id.
    let rollouts = expected_applied().len();
    assert!(
        redelivered <= kills * rollouts,
        "{redelivered} re-deliveries but only {kills} kills of {rollouts} rollouts: a completed step was delivered again"
    );
    for d in &deliveries {
        assert!(
            ids.contains(&d.as_str()),
            "delivered {d} but it never took effect"
        );
    }
}

#[test]
fn sigkill_anywhere_applies_every_step_once_and_loses_no_audit_event() {
    let cache = tempfile::tempdir().expect("cache");
    let rt = tokio::runtime::Runtime::new().expect("runtime");

    // The reference: no kills.
    let reference = Scenario::new(cache.path(), "");
    let (_, kills) = reference.run_to_end(Vec::new());
    assert_eq!(kills, 0);
    check_applied(&reference, 0);
    let reference_audit = rt.block_on(reference.audit());
    assert_eq!(reference.lines("deliveries.log").len(), 11);
    // The reference itself tells the story: both started, one succeeded, one rolled back.
    for (name, events) in &reference_audit {
        let actions: Vec<&str> = events.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(actions.first(), Some(&"create"), "{name}");
        let last = if name == "steady" {
            "succeed"
        } else {
            "rolled-back"
        };
        assert_eq!(actions.last(), Some(&last), "{name}: {actions:?}");
    }

    // Killed by the target at every delivery, before and after the step took effect.
    for n in 1..=11 {
        for mode in ["before", "after"] {
            let s = Scenario::new(cache.path(), &format!("{n} {mode}\n"));
            let (_, kills) = s.run_to_end(Vec::new());
            assert_eq!(
                kills, 1,
                "delivery {n} {mode}: the target should have killed the runner once"
            );
            check_applied(&s, kills);
            assert_eq!(
                rt.block_on(s.audit()),
                reference_audit,
                "audit after a kill at delivery {n} {mode}"
            );
        }
    }

    // Killed at arbitrary moments, over and over, until the rollouts finish.
    for (i, every) in [31u64, 53, 97, 181].into_iter().enumerate() {
        let s = Scenario::new(cache.path(), "");
        let kills_at: Vec<Duration> = (0..40)
            .map(|k| Duration::from_millis(every + 13 * ((k + i as u64) % 5)))
            .collect();
        let (_, kills) = s.run_to_end(kills_at);
        eprintln!("killed every ~{every} ms: {kills} kills before the rollouts finished");
        check_applied(&s, kills);
        assert_eq!(
            rt.block_on(s.audit()),
            reference_audit,
            "audit after {kills} kills every ~{every} ms"
        );
    }
}
