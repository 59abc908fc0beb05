//! `rollgate replay`, run for real: whole rollouts over recorded metrics on the simulated
//! clock — the timeline of decisions, pauses that resume by themselves, read-only (no
//! command, no webhook, no gate), the exit codes of `rollgate run`, and JSON for tools.

use crate::common;

use common::{StandIn, rollgate};
use std::path::Path;

#[test]
fn the_quickstart_replays_to_a_timeline_of_decisions() {
    let run = rollgate(&[
        "replay",
        "../examples/canary",
        "--metrics",
        "../examples/canary/error-ratio.om",
    ]);
    // 5: payments rolled back.
    assert_eq!(run.code, 5, "{}{}", run.stdout, run.stderr);
    let out = &run.stdout;
    for expected in [
        "checkout — replayed from 2026-01-01T00:00:00Z (target not touched)",
        // The timed pause of canary-50, resumed by itself five minutes later.
        "+09m00s  rollgate               pause              progressing → paused(step)  phase pause of 5m",
        "+14m00s  rollgate               resume             paused(step) → progressing  the phase's pause is over",
        "checkout: succeeded after 17m00s",
        // The policy's decision, with the numbers that caused it.
        "+08m00s  policy:default-policy  rollback           progressing → rolling-back  metric \"error-ratio\" failed: 1 failure > failureLimit 0, last value 0.0844",
        "payments: rolled-back after 09m00s — rolled back: v7 restored",
    ] {
        assert!(out.contains(expected), "missing {expected:?} in\n{out}");
    }
    assert!(
        run.stderr.contains("replayed 2 rollout(s)"),
        "{}",
        run.stderr
    );

    // Starting later in the recording changes history: checkout's first phase already
    // sees the bad minutes.
    let run = rollgate(&[
        "replay",
        "../examples/canary",
        "--metrics",
        "../examples/canary/error-ratio.om",
        "--rollout",
        "checkout",
        "--start",
        "start+8m",
        "--format",
        "json",
    ]);
    let v: serde_json::Value = serde_json::from_str(&run.stdout).expect("json");
    assert_eq!(v["startMs"], 1_767_225_600_000i64 + 8 * 60_000);
    assert_eq!(v["rollouts"].as_array().map(Vec::len), Some(1));
    let checkout = &v["rollouts"][0];
    assert_eq!(checkout["rollout"], "checkout");
    assert_eq!(
        run.code,
        if checkout["outcome"] == "succeeded" {
            0
        } else {
            5
        }
    );
    let timeline = checkout["timeline"].as_array().expect("timeline");
    assert_eq!(timeline[0]["action"], "create");
    assert_eq!(timeline[0]["offsetMs"], 0);
    let last = timeline.last().expect("an event");
    assert_eq!(last["stateAfter"], checkout["outcome"]);
    assert_eq!(checkout["durationMs"], last["offsetMs"]);
}

/// A rollout with an exec target that would write a file, a confirm gate at a stand-in
/// that records requests, and an indefinite pause.
fn guarded(dir: &Path, gate_url: &str) -> String {
    std::fs::copy("../tests/verify/latency.om", dir.join("latency.om")).expect("copy");
    let touched = dir.join("touched");
    std::fs::write(
        dir.join("specs.yaml"),
        common::fixture_with(
            "replay/guarded.yaml",
            &[
                ("touched", touched.display().to_string().as_str()),
                ("gate_url", gate_url),
            ],
        ),
    )
    .expect("write");
    dir.join("specs.yaml").to_string_lossy().into_owned()
}

#[tokio::test]
async fn replay_touches_nothing_and_stops_at_an_indefinite_pause() {
    let gate = StandIn::open(|_, _| (200, vec![], "ok".into())).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = guarded(dir.path(), &gate.url);
    let metrics = dir.path().join("latency.om").to_string_lossy().into_owned();

    let run = {
        let (spec, metrics) = (spec.clone(), metrics.clone());
        tokio::task::spawn_blocking(move || rollgate(&["replay", &spec, "--metrics", &metrics]))
            .await
            .expect("joined")
    };
    // 8: it waits for an operator at the phase's indefinite pause.
    assert_eq!(run.code, 8, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout
            .contains("(target not touched, 1 HTTP gate(s) not asked: counted as open)"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("guarded: paused(step)"),
        "{}",
        run.stdout
    );
    // The Prometheus in the spec (a closed port) was never asked either: the recording was.
    assert!(run.stdout.contains("successful: 3 of 3"), "{}", run.stdout);
    assert!(!dir.path().join("touched").exists(), "the exec target ran");
    assert!(gate.seen().is_empty(), "the gate was asked");

    // Promoted through the pause as an operator would, into a kept store.
    let store = dir.path().join("kept.db").to_string_lossy().into_owned();
    let run = {
        let (spec, metrics, store) = (spec.clone(), metrics.clone(), store.clone());
        tokio::task::spawn_blocking(move || {
            rollgate(&[
                "replay",
                &spec,
                "--metrics",
                &metrics,
                "--promote-pauses",
                "--store",
                &store,
            ])
        })
        .await
        .expect("joined")
    };
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains("replay                 promote"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("guarded: succeeded"), "{}", run.stdout);
    assert!(!dir.path().join("touched").exists(), "the exec target ran");
    assert!(gate.seen().is_empty(), "the gate was asked");
    let history =
        tokio::task::spawn_blocking(move || rollgate(&["history", "guarded", "--store", &store]))
            .await
            .expect("joined");
    assert_eq!(history.code, 0, "{}", history.stderr);
    assert!(history.stdout.contains("✔ succeeded"), "{}", history.stdout);
}

#[test]
fn invalid_input_is_4() {
    let cases: &[(&[&str], &str)] = &[
        (
            &["--rollout", "nope"],
            "no rollout named \"nope\" in the files (they hold: checkout, payments)",
        ),
        (
            &["--start", "soon"],
            "--start: time \"soon\" not understood",
        ),
    ];
    for (extra, expected) in cases {
        let mut args = vec![
            "replay",
            "../examples/canary",
            "--metrics",
            "../examples/canary/error-ratio.om",
        ];
        args.extend_from_slice(extra);
        let run = rollgate(&args);
        assert_eq!(run.code, 4, "{extra:?}: {}", run.stderr);
        assert!(run.stderr.contains(expected), "{extra:?}: {}", run.stderr);
    }
    let run = rollgate(&["replay", "../examples/canary", "--metrics", "/no/such.om"]);
    assert_eq!(run.code, 4);
    assert!(
        run.stderr.contains("--metrics: cannot read /no/such.om"),
        "{}",
        run.stderr
    );
    let run = rollgate(&["replay", "../examples/canary"]);
    assert_eq!(run.code, 4);
    assert!(run.stderr.contains("--metrics <FILE>"), "{}", run.stderr);
}
