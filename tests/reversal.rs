//! Rollback after a successful rollout, and rollback mode `new-rollout`: the run that takes
//! the previous version back is a run of its own, linked to the run it reverses; a retry
//! of it rolls forward again. Through the library (the `rollout` harness: real plugins,
//! replayed metrics, exec targets that log each step with its versions, the simulated
//! clock) and through the command line.

use crate::common;
use crate::rollout::{Harness, TEMPLATE, actions, cli, recording, rollout};
use common::serve::{OPERATOR, Serve};

use rollgate::engine::reversal::{self, ReverseError};
use rollgate::engine::state::{PauseReason, State};
use rollgate::engine::{Outcome, retry_run};
use rollgate::store::{AuditRow, RolloutRow};

/// A rollout whose exec target logs `OPERATION WEIGHT UPDATED INSTANCES STABLE>CANARY`.
fn versioned(name: &str, phases: &str, extra: &str) -> String {
    rollout(name, "{canary: {}}", phases, extra).replace(
        "$ROLLGATE_INSTANCES\"",
        "$ROLLGATE_INSTANCES $ROLLGATE_STABLE_VERSION>$ROLLGATE_CANARY_VERSION\"",
    )
}

async fn latest(h: &Harness) -> RolloutRow {
    h.engine
        .store
        .latest("web")
        .await
        .expect("latest")
        .expect("a run")
}

async fn audit_of(h: &Harness, run: &RolloutRow) -> Vec<AuditRow> {
    h.engine.store.audit(run.id).await.expect("audit")
}

async fn runs(h: &Harness) -> Vec<(i64, String, Option<i64>)> {
    rollgate::server::views::history(&h.engine.store, "web", None)
        .await
        .expect("history")
        .runs
        .into_iter()
        .map(|r| (r.run, r.state, r.reverses))
        .collect()
}

/// `rollgate rollback` of the latest run, which succeeded, as alice.
async fn roll_back_success(h: &Harness, reason: &str) -> RolloutRow {
    let done = latest(h).await;
    let (row, audited) =
        reversal::rollback_after_success(&h.engine.store, &done, "alice", reason, h.clock_now())
            .await
            .expect("rollback after success");
    assert_eq!(row.run, done.run + 1);
    assert!(
        audited.contains(&format!("run {} reverses run {}", row.run, done.run)),
        "{audited}"
    );
    row
}

/// `rollgate retry` of the latest run, as alice.
async fn retry(h: &Harness) -> RolloutRow {
    let ended = latest(h).await;
    let (row, _) = retry_run(&h.engine.store, &ended, "alice", "", h.clock_now())
        .await
        .expect("retry");
    row
}

fn forward(lines: &[&str]) -> Vec<String> {
    lines.iter().map(|l| format!("{l} v1>v2")).collect()
}

fn back(lines: &[&str]) -> Vec<String> {
    lines.iter().map(|l| format!("{l} v2>v1")).collect()
}

const THREE_PHASES: &str = "    - {name: p10, weight: 10, verification: {templates: [error-ratio]}}\n    - {name: p50, weight: 50, verification: {templates: [error-ratio]}}\n    - {name: full, weight: 100}\n";

const RELEASE: [&str; 4] = [
    "set-weight 10 0 ",
    "set-weight 50 0 ",
    "set-weight 100 0 ",
    "finalize 100 0 ",
];

/// Modes `immediate` and `gradual` after a success: a new run, starting where the
/// succeeded run ended, restores the old version (gradual: down the phases' weights, each
/// step held for stepPause); a retry of it rolls forward again.
#[tokio::test]
async fn after_success_immediate_and_gradual_restore_the_old_version_and_retry_rolls_forward() {
    let modes: [(&str, &[&str]); 2] = [
        ("", &["rollback 0 0 "]),
        (
            "  rollback: {mode: gradual, stepPause: 10s}\n",
            &["rollback 50 0 ", "rollback 10 0 ", "rollback 0 0 "],
        ),
    ];
    for (mode, restore) in modes {
        let h = Harness::new(&versioned("web", THREE_PHASES, mode), &[0.01; 30]).await;
        assert_eq!(h.drive("web").await.state, State::Succeeded, "{mode}");
        assert_eq!(h.log(), forward(&RELEASE), "{mode}");

        let run2 = roll_back_success(&h, "the pager went off").await;
        assert_eq!(run2.state, "rolling-back", "{mode}");
        let o = h.drive("web").await;
        assert_eq!((o.state, o.reverses), (State::RolledBack, Some(1)), "{o:?}");
        assert!(
            o.message
                .contains("rolled back: v1 restored (run 2 reverses run 1)"),
            "{o:?}"
        );
        assert_eq!(h.log()[4..], forward(restore)[..], "{mode}");

        let audit = audit_of(&h, &run2).await;
        let created = &audit[0].event;
        assert_eq!(
            (
                created.actor.as_str(),
                created.action.as_str(),
                created.state_before.as_str(),
                created.state_after.as_str()
            ),
            ("alice", "rollback", "succeeded", "rolling-back")
        );
        assert!(
            created.reason.contains("the pager went off") && created.reason.contains("restores v1"),
            "{}",
            created.reason
        );
        let last = audit.last().expect("events");
        assert_eq!(
            (last.event.action.as_str(), &last.event.progress["weight"]),
            ("rolled-back", &serde_json::json!(0.0))
        );
        if !mode.is_empty() {
            // Each gradual step waited its stepPause before the next.
            let applied: Vec<i64> = audit
                .iter()
                .filter(|a| a.event.action == "apply")
                .map(|a| a.event.at_ms)
                .collect();
            assert_eq!(applied.len(), 3, "{:?}", actions(&audit));
            assert!(
                applied.windows(2).all(|w| w[1] - w[0] >= 10_000),
                "{applied:?}"
            );
        }

        // Retry rolls the release forward again, as a run that reverses nothing.
        let run3 = retry(&h).await;
        let o = h.drive("web").await;
        assert_eq!((o.state, o.reverses), (State::Succeeded, None), "{o:?}");
        assert_eq!(
            h.log()[4 + restore.len()..],
            forward(&RELEASE)[..],
            "{mode}"
        );
        let audit = audit_of(&h, &run3).await;
        assert_eq!(audit[0].event.action, "retry");
        assert!(
            audit[0]
                .event
                .reason
                .contains("rolls run 1's release forward again"),
            "{}",
            audit[0].event.reason
        );
        assert_eq!(
            runs(&h).await,
            [
                (1, "succeeded".into(), None),
                (2, "rolled-back".into(), Some(1)),
                (3, "succeeded".into(), None)
            ]
        );
    }
}

/// Mode `new-rollout` after a success: the new run has the versions swapped and takes v1
/// through every phase with its verification, ending succeeded; a rollback of it is
/// refused (retry is the way forward), and a retry rolls the release forward again.
#[tokio::test]
async fn after_success_new_rollout_takes_the_old_version_through_every_phase() {
    let h = Harness::new(
        &versioned("web", THREE_PHASES, "  rollback: {mode: new-rollout}\n"),
        &[0.01; 30],
    )
    .await;
    assert_eq!(h.drive("web").await.state, State::Succeeded);
    let run2 = roll_back_success(&h, "").await;
    assert_eq!(run2.state, "pending");
    let o = h.drive("web").await;
    assert_eq!((o.state, o.reverses), (State::Succeeded, Some(1)), "{o:?}");
    assert!(
        o.message
            .contains("v1 is the stable version again (run 2 reverses run 1)"),
        "{o:?}"
    );
    assert_eq!(h.log()[4..], back(&RELEASE)[..]);

    // Every phase was verified: measured, counted, decided by the policy.
    let audit = audit_of(&h, &run2).await;
    assert_eq!(audit[0].event.action, "rollback");
    assert_eq!(audit[0].event.state_before, "succeeded");
    assert!(
        audit[0]
            .event
            .reason
            .contains("takes v1 back through every phase"),
        "{}",
        audit[0].event.reason
    );
    let verified: Vec<&str> = audit
        .iter()
        .filter(|a| a.event.action == "verified" && a.event.actor == "policy:default-policy")
        .map(|a| a.event.progress["phase"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(verified, ["p10", "p50", "full"], "{:?}", actions(&audit));
    let measured = h
        .engine
        .store
        .measurements(run2.id)
        .await
        .expect("measurements");
    assert!(
        measured.len() >= 4 && measured.iter().all(|m| m.verdict == "pass"),
        "{measured:?}"
    );

    // A reversal is not rolled back after it ended: retry rolls forward.
    let ended = latest(&h).await;
    match reversal::rollback_after_success(&h.engine.store, &ended, "alice", "", h.clock_now())
        .await
    {
        Err(ReverseError::Refused(m)) => {
            assert!(m.contains("`rollgate retry web`"), "{m}")
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    let run3 = retry(&h).await;
    assert_eq!(audit_of(&h, &run3).await[0].event.state_before, "succeeded");
    let o = h.drive("web").await;
    assert_eq!((o.state, o.reverses), (State::Succeeded, None), "{o:?}");
    assert_eq!(h.log()[8..], forward(&RELEASE)[..]);
    assert_eq!(
        runs(&h).await,
        [
            (1, "succeeded".into(), None),
            (2, "succeeded".into(), Some(1)),
            (3, "succeeded".into(), None)
        ]
    );
}

/// Phases whose second (p60) waits a minute before it measures: the reversal, which
/// starts there the moment run 1 fails, does not measure run 1's bad minute again.
const FOUR_PHASES: &str = "    - {name: p20, weight: 20, verification: {templates: [error-ratio]}}\n    - {name: p60, weight: 60, verification: {templates: [settled-error-ratio]}}\n    - {name: p80, weight: 80, verification: {templates: [error-ratio]}}\n    - {name: full, weight: 100}\n";

/// The rollout of [`FOUR_PHASES`] in mode `new-rollout`, with the template p60 uses.
fn four_phases() -> String {
    let template = TEMPLATE
        .split("---\n")
        .find(|doc| doc.contains("kind: VerificationTemplate"))
        .expect("the error-ratio template")
        .replace("{name: error-ratio}", "{name: settled-error-ratio}")
        .replace("count: 2", "count: 2\n      initialDelay: 1m");
    versioned("web", FOUR_PHASES, "  rollback: {mode: new-rollout}\n") + "---\n" + &template
}

/// Healthy in minute 0 (p20 passes), failing in minute 1 (run 1 fails at 60 % after a
/// minute in p60), then `then` (what the reversal measures in p60 and p80).
fn failing_in_p60(then: f64) -> Vec<f64> {
    let mut values = vec![0.01, 0.9];
    values.extend([then; 40]);
    values
}

/// The engine drives one run, then the reversal it created; the outcome is the last's.
async fn drive_to_reversal(h: &Harness) -> (Outcome, RolloutRow, RolloutRow) {
    let o = h.drive("web").await;
    let runs = h.engine.store.runs("web").await.expect("runs");
    assert_eq!(runs.len(), 2, "{o:?}");
    (o, runs[0].clone(), runs[1].clone())
}

/// Mode `new-rollout` during a rollout: a failing metric ends run 1 rolled back (no
/// rollback step), and run 2 takes v1 back from the first phase whose weight is at least
/// v1's share (40 % → p60), through every phase with verification.
#[tokio::test]
async fn new_rollout_during_a_rollout_starts_where_the_old_version_never_loses_traffic() {
    let h = Harness::new(&four_phases(), &failing_in_p60(0.01)).await;
    let (o, run1, run2) = drive_to_reversal(&h).await;
    assert_eq!(
        (o.state, o.reverses, o.id),
        (State::Succeeded, Some(1), run2.id),
        "{o:?}"
    );
    let mut want = forward(&["set-weight 20 0 ", "set-weight 60 0 "]);
    want.extend(back(&[
        "set-weight 60 0 ",
        "set-weight 80 0 ",
        "set-weight 100 0 ",
        "finalize 100 0 ",
    ]));
    assert_eq!(h.log(), want);

    assert_eq!(run1.state, "rolled-back");
    let audit1 = audit_of(&h, &run1).await;
    let decision = audit1
        .iter()
        .find(|a| a.event.action == "rollback")
        .expect("the policy's rollback");
    assert_eq!(decision.event.actor, "policy:default-policy");
    assert_eq!(decision.event.state_after, "rolled-back");
    let last = &audit1.last().expect("events").event;
    assert_eq!(last.state_after, "rolled-back");
    let snapshot = rollgate::server::views::Snapshot::of(&run1).expect("snapshot");
    assert!(
        snapshot
            .progress
            .message
            .contains("rolled back by a new rollout: run 2 takes v1 through the phases"),
        "{}",
        snapshot.progress.message
    );

    let audit2 = audit_of(&h, &run2).await;
    let created = &audit2[0].event;
    assert_eq!(
        (
            created.actor.as_str(),
            created.action.as_str(),
            created.state_before.as_str(),
            created.state_after.as_str()
        ),
        (
            "policy:default-policy",
            "rollback",
            "rolled-back",
            "pending"
        )
    );
    assert!(
        created.reason.contains("run 2 reverses run 1"),
        "{}",
        created.reason
    );
    // One commit wrote run 1's end and run 2's creation.
    assert_eq!(created.at_ms, last.at_ms);
    let start = audit2
        .iter()
        .find(|a| a.event.action == "start")
        .expect("start");
    assert_eq!(start.event.progress["phase"], "p60");
    assert!(
        start.event.reason.contains("(run 2 reverses run 1)"),
        "{}",
        start.event.reason
    );
    let verified: Vec<&str> = audit2
        .iter()
        .filter(|a| a.event.action == "verified")
        .map(|a| a.event.progress["phase"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(verified, ["p60", "p80", "full"], "{:?}", actions(&audit2));
    let measured = actions(&audit2)
        .iter()
        .filter(|a| *a == "metric-successful")
        .count();
    assert_eq!(measured, 2, "{:?}", actions(&audit2));
    assert_eq!(
        runs(&h).await,
        [
            (1, "rolled-back".into(), None),
            (2, "succeeded".into(), Some(1))
        ]
    );
}

/// The reversal's own verification fails: it is not rolled back to the version it takes
/// away — it holds for an operator, whose rollback of it is immediate.
#[tokio::test]
async fn a_reversal_that_fails_holds_for_an_operator_instead_of_rolling_back() {
    let h = Harness::new(&four_phases(), &failing_in_p60(0.9)).await;
    let (o, _, run2) = drive_to_reversal(&h).await;
    assert_eq!(
        (o.state, o.reverses),
        (State::Paused(PauseReason::Policy), Some(1)),
        "{o:?}"
    );
    assert!(
        o.message.contains("not rolled back") && o.message.contains("reverses run 1"),
        "{}",
        o.message
    );
    let audit = audit_of(&h, &run2).await;
    let held = audit
        .iter()
        .find(|a| a.event.action == "pause" && a.event.actor == "policy:default-policy")
        .unwrap_or_else(|| panic!("held by the policy: {:?}", actions(&audit)));
    assert_eq!(held.event.state_after, "paused(policy)");
    assert_eq!(
        audit
            .iter()
            .filter(|a| a.event.action == "rollback")
            .count(),
        1,
        "only the creation: {:?}",
        actions(&audit)
    );
    assert!(
        !h.log().iter().any(|l| l.starts_with("rollback")),
        "{:?}",
        h.log()
    );

    // An operator's rollback of the reversal restores what it was taking away, at once.
    h.act("web", "rollback", "carol", "v1 is worse").await;
    let o = h.drive("web").await;
    assert_eq!(o.state, State::RolledBack, "{o:?}");
    assert!(
        o.message
            .contains("rolled back: v2 restored (run 2 reverses run 1)"),
        "{}",
        o.message
    );
    assert_eq!(
        h.log().last().map(String::as_str),
        Some("rollback 0 0  v2>v1")
    );
    assert_eq!(h.engine.store.runs("web").await.expect("runs").len(), 2);
}

/// The operator's loop from the command line: rollback after success queues the reversal,
/// `rollgate run` drives it (not a new run of the files' release), it is shown as
/// reversing run 1, a second rollback is refused, and retry rolls forward.
#[test]
fn rollback_after_success_and_retry_from_the_command_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    std::fs::write(d.join("recording.om"), recording("web", &[0.01; 30])).expect("write");
    std::fs::write(d.join("common.yaml"), TEMPLATE).expect("write");
    let phases = "    - {name: p10, weight: 10, verification: {templates: [error-ratio]}}\n    - {name: full, weight: 100}\n";
    std::fs::write(
        d.join("rollouts.yaml"),
        versioned("web", phases, "  rollback: {mode: new-rollout}\n")
            .replace("$DIR", &d.display().to_string()),
    )
    .expect("write");
    let run = [
        "run",
        ".",
        "--store",
        "r.db",
        "--clock",
        "simulated",
        "--start",
        "2026-01-01T00:00:00Z",
    ];
    let act = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--store", "r.db", "--actor", "alice"]);
        cli(d, &all)
    };
    let (code, out, err) = cli(d, &run);
    assert_eq!(code, 0, "{out}\n{err}");

    let (code, out, err) = act(&["rollback", "web", "--reason", "pager"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("web: run 2 queued (rollback of run 1 by alice after it succeeded: pager; run 2 reverses run 1: it takes v1 back through every phase (new-rollout)); `rollgate run` starts it"),
        "{out}"
    );
    let (code, out, _) = cli(d, &["get", "web", "--store", "r.db"]);
    assert_eq!(code, 0);
    assert!(out.contains("web (run 2, reverses run 1)"), "{out}");

    // The files still hold the v1 → v2 release: the reversal is resumed, not replaced.
    let (code, out, err) = cli(d, &run);
    assert_eq!(
        code, 5,
        "a release taken back exits as rolled back: {out}\n{err}"
    );
    assert!(
        err.contains("resuming run 2, which reverses run 1, from its checkpoint"),
        "{err}"
    );
    assert!(
        out.contains(
            "web: succeeded — succeeded: v1 is the stable version again (run 2 reverses run 1)"
        ),
        "{out}"
    );
    let (code, out, _) = cli(d, &run);
    assert_eq!(code, 5);
    assert!(
        out.contains("run 2 already ended succeeded; it reverses run 1 (use `rollgate retry web` to roll forward again)"),
        "{out}"
    );

    let (code, _, err) = act(&["rollback", "web"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("run 2 already took back what run 1 rolled out"),
        "{err}"
    );
    let (code, out, _) = cli(d, &["history", "web", "--store", "r.db"]);
    assert_eq!(code, 0);
    let row2 = out
        .lines()
        .find(|l| l.trim_start().starts_with("2 "))
        .unwrap_or_else(|| panic!("run 2 listed: {out}"));
    assert!(out.contains("REVERSES") && row2.ends_with("run 1"), "{out}");

    let (code, out, err) = act(&["retry", "web"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(
            "web: run 3 queued (retry of run 2 by alice; rolls run 1's release forward again)"
        ),
        "{out}"
    );
    let (code, out, err) = cli(d, &run);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        out.contains("web: succeeded — succeeded: v2 is the new stable version"),
        "{out}"
    );

    let log = std::fs::read_to_string(d.join("steps.log")).expect("log");
    let release = ["set-weight 10 0 ", "set-weight 100 0 ", "finalize 100 0 "];
    let mut want = forward(&release);
    want.extend(back(&release));
    want.extend(forward(&release));
    assert_eq!(log.lines().collect::<Vec<_>>(), want);
}

/// Server mode: `POST …/rollback` on a succeeded run starts the reversal at once (201,
/// `reverses`), which goes through the phases (here it holds at the first phase's pause);
/// a rollback during a rollout ends the run and the server drives the reversal; a restart
/// does not start the folder's release again; retry rolls forward.
#[test]
fn the_server_reverses_after_success_and_during_a_rollout() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("config");
    std::fs::create_dir(&config).expect("mkdir");
    common::copy_example(
        "canary",
        &["backends.yaml", "templates.yaml", "error-ratio.om"],
        &config,
    );
    let mut text = String::new();
    for name in ["after", "during"] {
        text.push_str("---\n");
        text.push_str(&common::fixture_with("serve/held.yaml", &[("name", name)]));
        text.push_str("  rollback: {mode: new-rollout}\n");
    }
    std::fs::write(config.join("rollouts.yaml"), text).expect("write rollouts");
    {
        let s = Serve::new(dir.path()).start();
        s.wait_state("after", 1, "paused(step)");
        s.wait_state("during", 1, "paused(step)");
        let (status, body) = s.act("after", "promote", Some(OPERATOR));
        assert_eq!(status, 200, "{body}");
        s.wait_state("after", 1, "succeeded");

        let (status, body) = s.act("after", "rollback", Some(OPERATOR));
        assert_eq!(status, 201, "{body}");
        assert_eq!(
            (&body["run"], &body["reverses"]),
            (&2.into(), &1.into()),
            "{body}"
        );
        // The reversal goes through the phases: it holds at the first one's pause.
        let v = s.wait_state("after", 2, "paused(step)");
        assert_eq!(
            (
                &v["stableVersion"],
                &v["canaryVersion"],
                &v["reverses"],
                &v["weight"]
            ),
            (&"v2".into(), &"v1".into(), &1.into(), &10.0.into()),
            "{v}"
        );
        let created = &s.audit("after", 2)[0];
        assert_eq!(
            (
                &created["action"],
                &created["actor"],
                &created["stateBefore"]
            ),
            (&"rollback".into(), &"alice".into(), &"succeeded".into()),
            "{created}"
        );
        let (status, body) = s.act("after", "promote", Some(OPERATOR));
        assert_eq!(status, 200, "{body}");
        s.wait_state("after", 2, "succeeded");

        // During the rollout: run 1 ends, the server drives run 2 (from 90 % for v1: the
        // last phase) to success.
        let (status, body) = s.act("during", "rollback", Some(OPERATOR));
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            (&body["outcome"], &body["state"]),
            (&"applied".into(), &"rolled-back".into()),
            "{body}"
        );
        let v = s.wait_state("during", 2, "succeeded");
        assert_eq!(v["reverses"], 1, "{v}");
        assert_eq!(s.audit("during", 2)[0]["actor"], "alice");
        // Dropped: killed by PID.
    }
    // A restart resumes nothing and starts nothing: the reversals stand.
    let s = Serve::new(dir.path()).start();
    for name in ["after", "during"] {
        let (status, history) = s.read(&format!("/api/v1/rollouts/{name}/history"));
        assert_eq!(status, 200, "{history}");
        let runs: Vec<(i64, Option<i64>)> = history["runs"]
            .as_array()
            .expect("runs")
            .iter()
            .map(|r| (r["run"].as_i64().unwrap_or(0), r["reverses"].as_i64()))
            .collect();
        assert_eq!(runs, [(1, None), (2, Some(1))], "{name}: {history}");
    }
    let (status, body) = s.act("after", "retry", Some(OPERATOR));
    assert_eq!(status, 201, "{body}");
    let v = s.wait_state("after", 3, "paused(step)");
    assert_eq!(
        (&v["stableVersion"], &v["canaryVersion"], v.get("reverses")),
        (&"v1".into(), &"v2".into(), None),
        "{v}"
    );
}

/// A rolling reversal (an operator's rollback, mode `new-rollout`) updates the instances
/// from the first again — exactly those run 1 updated — and goes through every phase.
#[tokio::test]
async fn a_rolling_reversal_updates_again_the_instances_the_run_updated() {
    let phases = "    - {name: half, weight: 50, pause: {}}\n    - {name: all, weight: 100}\n";
    let spec = rollout(
        "web",
        "{rolling: {instances: [a, b, c, d], parallelism: 2}}",
        phases,
        "  rollback: {mode: new-rollout}\n",
    )
    .replace(
        "$ROLLGATE_INSTANCES\"",
        "$ROLLGATE_INSTANCES $ROLLGATE_STABLE_VERSION>$ROLLGATE_CANARY_VERSION\"",
    );
    let h = Harness::new(&spec, &[0.01; 30]).await;
    assert_eq!(h.drive("web").await.state.name(), "paused(step)");
    h.act("web", "rollback", "carol", "").await;
    let o = h.drive("web").await;
    // The reversal holds at the first phase's pause, like any run of this spec.
    assert_eq!(
        (o.state.name(), o.reverses),
        ("paused(step)".to_string(), Some(1)),
        "{o:?}"
    );
    h.act("web", "promote", "carol", "").await;
    let o = h.drive("web").await;
    assert_eq!(o.state, State::Succeeded, "{o:?}");
    assert_eq!(
        h.log(),
        [
            "update-batch 50 2 a,b v1>v2",
            "update-batch 50 2 a,b v2>v1",
            "update-batch 100 4 c,d v2>v1",
            "finalize 100 4  v2>v1"
        ]
    );
    assert_eq!(
        runs(&h).await,
        [
            (1, "rolled-back".into(), None),
            (2, "succeeded".into(), Some(1))
        ]
    );
}
