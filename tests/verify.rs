//! `rollgate verify`, run for real on the files in tests/verify and examples/: every exit
//! code reached for its reason, the JUnit report valid against a JUnit schema with the right
//! counts, JSON for tools, and `--live` against a real Prometheus.

use crate::common;

use common::{PromServer, Run, rollgate};
use std::path::Path;

const SPECS: &str = "../tests/verify";
const LATENCY: &str = "../tests/verify/latency.om";

fn verify(extra: &[&str]) -> Run {
    let mut args = vec!["verify", SPECS, "--replay", LATENCY];
    args.extend_from_slice(extra);
    rollgate(&args)
}

#[test]
fn every_exit_code_for_its_reason() {
    // 0: three healthy minutes.
    let run = verify(&["--phase", "latency"]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout
            .contains("successful: 3 of 3 measurements, 3 passed"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("values: 0.2000 0.2000 0.2000"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("pass: 1 metric(s)"), "{}", run.stdout);

    // 1: the latency rises at minute 30; the explanation names the limit and the value.
    let run = verify(&["--phase", "latency", "--from", "start+29m"]);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout
            .contains("failed: 1 failure > failureLimit 0, last value 0.9"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("values: 0.2000 0.9000"),
        "{}",
        run.stdout
    );

    // 2: no series for the service.
    let run = verify(&["--phase", "missing"]);
    assert_eq!(run.code, 2, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains("no-data: 1 no-data > noDataLimit 0"),
        "{}",
        run.stdout
    );

    // 2: the window ends before the metric's three measurements.
    let run = verify(&["--phase", "latency", "--to", "start+1m"]);
    assert_eq!(run.code, 2, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains(
            "terminated: the end of the window (2026-01-01T00:01:00Z) came before the metric completed (2 of 3 measurements taken)"
        ),
        "{}",
        run.stdout
    );

    // 0: a dry-run metric fails, is shown, and decides nothing.
    let run = verify(&["--phase", "shadow"]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains("strict-latency (dry-run)  failed"),
        "{}",
        run.stdout
    );

    // 3: every measurement is an error (the recording lacks the query) until
    // consecutiveErrorLimit.
    let run = rollgate(&[
        "verify",
        SPECS,
        "--replay",
        "../tests/verify/recorded-queries.json",
        "--phase",
        "latency",
    ]);
    assert_eq!(run.code, 3, "{}{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("error"), "{}", run.stdout);
    assert!(
        run.stdout.contains("the recording has no query"),
        "{}",
        run.stdout
    );

    // The worst deciding metric wins, by severity (error > fail > inconclusive > pass):
    // latency failing and missing without data is a fail.
    let run = verify(&["--from", "start+29m"]);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
}

#[test]
fn invalid_input_is_4_and_says_what_to_do() {
    let cases: &[(&[&str], &str)] = &[
        (
            &["--rollout", "nope"],
            "no rollout named \"nope\" in the files (they hold: api)",
        ),
        (
            &["--phase", "nope"],
            "no selected rollout has a phase named \"nope\"",
        ),
        (
            &["--phase", "full"],
            "these phases have no metrics to verify: api/full",
        ),
        (
            &["--from", "yesterday"],
            "--from: time \"yesterday\" not understood",
        ),
        (
            &["--from", "end", "--to", "start"],
            "--to (2026-01-01T00:00:00Z) is before --from",
        ),
        (
            &["--max-duration", "5m"],
            "cannot be used with '--max-duration <DURATION>'",
        ),
    ];
    for (extra, expected) in cases {
        let run = verify(extra);
        assert_eq!(run.code, 4, "{extra:?}: {}{}", run.stdout, run.stderr);
        assert!(run.stderr.contains(expected), "{extra:?}: {}", run.stderr);
    }
    // No mode.
    let run = rollgate(&["verify", SPECS]);
    assert_eq!(run.code, 4, "{}", run.stderr);
    assert!(run.stderr.contains("--live|--replay"), "{}", run.stderr);
    // A recording that cannot be read.
    let run = rollgate(&["verify", SPECS, "--replay", "/no/such.om"]);
    assert_eq!(run.code, 4, "{}", run.stderr);
    assert!(
        run.stderr.contains("--replay: cannot read /no/such.om"),
        "{}",
        run.stderr
    );
    // A broken spec: where, and nothing measured.
    let dir = tempfile::tempdir().expect("tempdir");
    let text = std::fs::read_to_string(Path::new(SPECS).join("specs.yaml")).expect("read");
    std::fs::write(
        dir.path().join("specs.yaml"),
        text.replace("count: 3", "count: three"),
    )
    .expect("write");
    std::fs::copy(LATENCY, dir.path().join("latency.om")).expect("copy");
    let path = dir.path().to_string_lossy().into_owned();
    let run = rollgate(&["verify", &path, "--replay", LATENCY]);
    assert_eq!(run.code, 4, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("specs.yaml:30:14: spec.metrics[0].count"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("nothing was verified"),
        "{}",
        run.stderr
    );
}

/// Attribute `name` of the first element `tag` in `xml`.
fn attr<'x>(xml: &'x str, tag: &str, name: &str) -> &'x str {
    let start = xml.find(&format!("<{tag} ")).expect("element");
    let key = format!(" {name}=\"");
    let at = start + xml[start..].find(&key).expect("attribute") + key.len();
    &xml[at..at + xml[at..].find('"').expect("closing quote")]
}

#[test]
fn junit_is_valid_xml_with_the_right_counts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let report = dir.path().join("verify.xml");
    let report_arg = report.to_string_lossy().into_owned();
    let run = verify(&["--from", "start+29m", "--junit", &report_arg]);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    let checked = std::process::Command::new("xmllint")
        .args(["--noout", "--schema", "../tests/verify/junit.xsd"])
        .arg(&report)
        .output()
        .expect("xmllint runs (install libxml2-utils; .ci/run does)");
    assert!(
        checked.status.success(),
        "{}",
        String::from_utf8_lossy(&checked.stderr)
    );
    let xml = std::fs::read_to_string(&report).expect("report");
    // Three metrics: latency fails, missing has no data (skipped), the dry-run metric
    // passes the report whatever it measured.
    assert_eq!(attr(&xml, "testsuites", "tests"), "3", "{xml}");
    assert_eq!(attr(&xml, "testsuites", "failures"), "1", "{xml}");
    assert_eq!(attr(&xml, "testsuites", "errors"), "0", "{xml}");
    assert_eq!(attr(&xml, "testsuites", "skipped"), "1", "{xml}");
    assert_eq!(xml.matches("<testcase ").count(), 3, "{xml}");
    assert_eq!(xml.matches("<testsuite ").count(), 3, "{xml}");
    assert_eq!(xml.matches("<failure ").count(), 1, "{xml}");
    // The failure carries the explanation, escaped.
    assert!(
        xml.contains("message=\"failed: 1 failure &gt; failureLimit 0, last value 0.9"),
        "{xml}"
    );
    assert!(xml.contains("values: 0.2000 0.9000</failure>"), "{xml}");

    // An error case is an <error>.
    let run = rollgate(&[
        "verify",
        SPECS,
        "--replay",
        "../tests/verify/recorded-queries.json",
        "--phase",
        "latency",
        "--junit",
        &report_arg,
    ]);
    assert_eq!(run.code, 3, "{}", run.stderr);
    let xml = std::fs::read_to_string(&report).expect("report");
    assert_eq!(attr(&xml, "testsuites", "errors"), "1", "{xml}");
    assert_eq!(xml.matches("<error ").count(), 1, "{xml}");
}

#[test]
fn json_for_tools() {
    let run = verify(&["--from", "start+29m", "--format", "json"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let v: serde_json::Value = serde_json::from_str(&run.stdout).expect("one JSON document");
    assert_eq!(v["outcome"], "fail");
    assert_eq!(v["exitCode"], 1);
    assert_eq!(v["mode"], "replay");
    let metrics = v["metrics"].as_array().expect("metrics");
    assert_eq!(metrics.len(), 3);
    assert_eq!(metrics[0]["verification"], "latency");
    assert_eq!(metrics[0]["status"], "failed");
    let values: Vec<f64> = metrics[0]["observations"]
        .as_array()
        .expect("observations")
        .iter()
        .filter_map(|o| o["value"].as_f64())
        .collect();
    assert_eq!(values, vec![0.2, 0.9]);
    assert_eq!(metrics[2]["dryRun"], true);
}

#[test]
fn the_quickstart_example_verifies() {
    // Checkout's canary over the recorded hour: healthy; payments' error ratio rises after
    // minute 20, so a verification starting there fails.
    let run = rollgate(&[
        "verify",
        "../examples/canary",
        "--replay",
        "../examples/canary/error-ratio.om",
        "--rollout",
        "checkout",
    ]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert_eq!(
        run.stdout
            .lines()
            .filter(|l| l.starts_with("checkout ") && l.contains(" successful "))
            .count(),
        4,
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("pass: 4 metric(s)"), "{}", run.stdout);
    let run = rollgate(&[
        "verify",
        "../examples/canary",
        "--replay",
        "../examples/canary/error-ratio.om",
        "--rollout",
        "payments",
        "--phase",
        "canary-50",
        "--from",
        "start+40m",
    ]);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
}

/// A live run against a real Prometheus on a loopback port: `vector(…)` is evaluated by
/// the server at the time of each measurement.
#[tokio::test]
async fn live_against_a_real_prometheus() {
    let server = PromServer::start(&std::fs::read_to_string(LATENCY).expect("recording")).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = |value: &str, count: u32| {
        common::fixture_with(
            "verify/live.yaml",
            &[
                ("address", server.address.as_str()),
                ("value", value),
                ("count", &count.to_string()),
            ],
        )
    };
    let file = dir.path().join("live.yaml");
    let path = file.to_string_lossy().into_owned();

    std::fs::write(&file, spec("0.01", 2)).expect("write");
    let run = tokio::task::spawn_blocking({
        let path = path.clone();
        move || rollgate(&["verify", &path, "--live", "--format", "json"])
    })
    .await
    .expect("joined");
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let v: serde_json::Value = serde_json::from_str(&run.stdout).expect("json");
    assert_eq!(v["mode"], "live");
    let observations = v["metrics"][0]["observations"].as_array().expect("obs");
    assert_eq!(observations.len(), 2);
    // Live: the second measurement is a real interval after the first.
    let at = |i: usize| observations[i]["atMs"].as_i64().expect("atMs");
    assert!(at(1) - at(0) >= 1000, "{observations:?}");

    std::fs::write(&file, spec("0.5", 2)).expect("write");
    let run = tokio::task::spawn_blocking({
        let path = path.clone();
        move || rollgate(&["verify", &path, "--live"])
    })
    .await
    .expect("joined");
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);

    // The cap: the third measurement would be due after --max-duration.
    std::fs::write(&file, spec("0.01", 3)).expect("write");
    let run = tokio::task::spawn_blocking({
        let path = path.clone();
        move || rollgate(&["verify", &path, "--live", "--max-duration", "1500ms"])
    })
    .await
    .expect("joined");
    assert_eq!(run.code, 2, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout
            .contains("terminated: --max-duration 1500ms came before the metric completed"),
        "{}",
        run.stdout
    );
}
