//! The `rollgate` binary, run for real: `plugin inspect`, `plugin check` and `schema`, each exit code
//! reached for its reason.

use crate::common;

use rollgate_test_plugins as test_only;

use common::{canary_copy, rollgate, rollgate_in};

#[test]
fn inspect_a_builtin_for_people_and_for_tools() {
    let run = rollgate(&["plugin", "inspect", "threshold"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    for expected in [
        "plugin       threshold (built-in)",
        "world        verification-provider",
        "rollgate:plugin/verifier@0.2.0",
        "(rollgate:plugin@0.2)",
        "rollgate:plugin/metrics@0.2.0",
        "\"condition\"",
    ] {
        assert!(
            run.stdout.contains(expected),
            "missing {expected:?} in\n{}",
            run.stdout
        );
    }
    assert!(!run.stdout.contains("wasi:sockets"), "{}", run.stdout);

    let run = rollgate(&["plugin", "inspect", "default-policy", "--format", "json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let v: serde_json::Value = serde_json::from_str(&run.stdout).expect("JSON output");
    assert_eq!(v["world"], "failure-policy");
    assert_eq!(v["contract"], "rollgate:plugin@0.2");
    assert_eq!(v["info"]["name"], "default-policy");
    assert!(
        v["info"]["configSchema"]["properties"]["failed"].is_object(),
        "{v}"
    );
    assert_eq!(v["sha256"].as_str().map(str::len), Some(64));
}

#[test]
fn inspect_a_file_and_refusals() {
    let run = rollgate(&["plugin", "inspect", test_only::THRESHOLD]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains(test_only::THRESHOLD), "{}", run.stdout);

    // A plugin of the previous contract minor: inspect names it.
    let run = rollgate(&["plugin", "inspect", test_only::CONTRACT_V01]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    for expected in [
        "world        verification-provider (rollgate:plugin@0.1)",
        "rollgate:plugin/verifier@0.1.0",
        "rollgate:plugin/metrics@0.1.0",
    ] {
        assert!(
            run.stdout.contains(expected),
            "missing {expected:?} in\n{}",
            run.stdout
        );
    }
    let run = rollgate(&[
        "plugin",
        "inspect",
        test_only::CONTRACT_V01,
        "--format",
        "json",
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let v: serde_json::Value = serde_json::from_str(&run.stdout).expect("JSON output");
    assert_eq!(v["contract"], "rollgate:plugin@0.1");

    let run = rollgate(&["plugin", "inspect", test_only::HOSTILE_SOCKET]);
    assert_eq!(run.code, 3);
    assert!(
        run.stderr.contains("imports wasi:sockets/"),
        "{}",
        run.stderr
    );

    let run = rollgate(&[
        "plugin",
        "inspect",
        test_only::UNKNOWN_WORLD,
        "--format",
        "json",
    ]);
    assert_eq!(run.code, 3);
    let v: serde_json::Value = serde_json::from_str(&run.stdout).expect("JSON error");
    assert_eq!(v["error"]["kind"], "unknown-world");

    let run = rollgate(&[
        "plugin",
        "inspect",
        "threshold",
        "--sha256",
        &"ab".repeat(32),
    ]);
    assert_eq!(run.code, 3);
    assert!(run.stderr.contains("sha256 mismatch"), "{}", run.stderr);

    let run = rollgate(&["plugin", "inspect", "/no/such/plugin.wasm"]);
    assert_eq!(run.code, 3);
    assert!(
        run.stderr.contains("cannot read /no/such/plugin.wasm"),
        "{}",
        run.stderr
    );
}

#[test]
fn check_configurations() {
    let good = r#"{"backend": "prom", "query": "up", "condition": ">= 1"}"#;
    let run = rollgate(&["plugin", "check", "threshold", "--config", good]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("valid configuration"), "{}", run.stdout);

    let bad = r#"{"backend": "prom", "query": "up", "condition": "about 1", "window": "5 min"}"#;
    let run = rollgate(&["plugin", "check", "threshold", "--config", bad]);
    assert_eq!(run.code, 1);
    assert!(
        run.stdout
            .contains("--config: /condition: condition \"about 1\" not understood"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("--config: /window: invalid duration"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("2 problems"), "{}", run.stdout);

    let run = rollgate(&[
        "plugin",
        "check",
        "default-policy",
        "--config",
        r#"{"failed": "explode"}"#,
        "--format",
        "json",
    ]);
    assert_eq!(run.code, 1);
    let v: serde_json::Value = serde_json::from_str(&run.stdout).expect("JSON");
    assert_eq!(v["ok"], false);
    assert_eq!(v["problems"][0]["path"], "/failed");

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("policy.json");
    std::fs::write(
        &file,
        r#"{"error": {"action": "pause", "duration": "10m"}, "maxPauses": 3}"#,
    )
    .unwrap();
    let run = rollgate(&[
        "plugin",
        "check",
        "default-policy",
        "--config-file",
        file.to_str().unwrap(),
    ]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout.starts_with(file.to_str().unwrap()),
        "{}",
        run.stdout
    );

    let run = rollgate(&[
        "plugin",
        "check",
        "default-policy",
        "--config-file",
        "/no/such.json",
    ]);
    assert_eq!(run.code, 4);
    assert!(
        run.stderr.contains("cannot read config file /no/such.json"),
        "{}",
        run.stderr
    );

    // Usage errors are invalid input (4): 2 means "inconclusive" to `rollgate verify`.
    let run = rollgate(&["plugin", "check", "threshold"]);
    assert_eq!(run.code, 4, "{}", run.stderr);
    assert!(run.stderr.contains("--config"), "{}", run.stderr);
    let run = rollgate(&["--help"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
}

#[test]
fn the_example_configurations_are_valid() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/plugins");
    for (plugin, file) in [
        ("threshold", "threshold-error-rate.json"),
        ("default-policy", "default-policy.json"),
    ] {
        let path = format!("{root}/{file}");
        let run = rollgate(&["plugin", "check", plugin, "--config-file", &path]);
        assert_eq!(run.code, 0, "{path}: {}{}", run.stdout, run.stderr);
    }
}

#[test]
fn schema_prints_and_writes_every_kind() {
    let all = rollgate(&["schema"]);
    assert_eq!(all.code, 0, "{}", all.stderr);
    let map: serde_json::Value = serde_json::from_str(&all.stdout).expect("JSON");
    let kinds: Vec<&String> = map.as_object().expect("an object").keys().collect();
    assert_eq!(
        kinds,
        ["MetricBackend", "Plugin", "Rollout", "VerificationTemplate"]
    );

    // One kind, case-insensitively, is that kind's schema itself.
    let one = rollgate(&["schema", "rollout"]);
    assert_eq!(one.code, 0, "{}", one.stderr);
    let rollout: serde_json::Value = serde_json::from_str(&one.stdout).expect("JSON");
    assert_eq!(rollout, map["Rollout"]);

    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("schemas");
    let written = rollgate(&["schema", "--out", out.to_str().expect("utf-8 path")]);
    assert_eq!(written.code, 0, "{}", written.stderr);
    for kind in ["MetricBackend", "Plugin", "Rollout", "VerificationTemplate"] {
        let text = std::fs::read_to_string(out.join(format!("{kind}.schema.json"))).expect(kind);
        let schema: serde_json::Value = serde_json::from_str(&text).expect("JSON");
        assert_eq!(schema, map[kind], "{kind}");
    }

    // The API v2 shapes: all with --api, one by its name (case-insensitively).
    let api = rollgate(&["schema", "--api"]);
    assert_eq!(api.code, 0, "{}", api.stderr);
    let shapes: serde_json::Value = serde_json::from_str(&api.stdout).expect("JSON");
    let names: Vec<&String> = shapes.as_object().expect("an object").keys().collect();
    assert_eq!(
        names,
        [
            "RolloutEvent",
            "RolloutHistory",
            "RolloutList",
            "RolloutSeries",
            "RolloutStatus"
        ]
    );
    let one = rollgate(&["schema", "rolloutstatus"]);
    assert_eq!(one.code, 0, "{}", one.stderr);
    let status: serde_json::Value = serde_json::from_str(&one.stdout).expect("JSON");
    assert_eq!(status, shapes["RolloutStatus"]);
    assert_eq!(
        status["properties"]["apiVersion"]["const"],
        "rollgate.dev/v2"
    );

    let unknown = rollgate(&["schema", "Deployment"]);
    assert_eq!(unknown.code, 4);
    assert!(
        unknown.stderr.contains(
            "no document kind \"Deployment\"; the kinds are MetricBackend, Plugin, Rollout, VerificationTemplate"
        ),
        "{}",
        unknown.stderr
    );
}

/// A plugin built against the previous contract minor lints clean, and lint names its
/// contract.
#[test]
fn lint_names_a_plugin_of_the_previous_contract() {
    let dir = canary_copy(Some((
        "templates.yaml",
        "plugin: threshold",
        "plugin: old-provider",
    )));
    let bytes = std::fs::read(test_only::CONTRACT_V01).expect("contract-v01 component");
    let digest = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(&bytes))
    };
    std::fs::write(
        dir.path().join("plugin.yaml"),
        format!(
            "apiVersion: rollgate.dev/v1alpha1\nkind: Plugin\nmetadata:\n  name: old-provider\nspec:\n  source: {}\n  sha256: {digest}\n",
            test_only::CONTRACT_V01
        ),
    )
    .expect("write");
    let lint = rollgate_in(dir.path(), &["lint", "."]);
    assert_eq!(lint.code, 0, "{}{}", lint.stdout, lint.stderr);
    assert!(
        lint.stdout.contains(
            "plugin \"old-provider\" is built against rollgate:plugin@0.1 (the previous contract, still supported"
        ),
        "{}",
        lint.stdout
    );
    // A clean example says nothing of contracts.
    let lint = rollgate_in(canary_copy(None).path(), &["lint", "."]);
    assert_eq!(lint.code, 0, "{}{}", lint.stdout, lint.stderr);
    assert!(!lint.stdout.contains("contract"), "{}", lint.stdout);
}

/// Every example lints clean.
#[test]
fn lint_is_silent_on_every_example() {
    let examples = common::examples();
    let mut seen = 0;
    for entry in std::fs::read_dir(&examples).expect("examples/") {
        let dir = entry.expect("entry").path();
        if !dir.is_dir()
            || !std::fs::read_dir(&dir)
                .expect("dir")
                .flatten()
                .any(|f| f.path().extension().is_some_and(|e| e == "yaml"))
        {
            continue;
        }
        let run = rollgate(&["lint", dir.to_str().expect("utf-8")]);
        assert_eq!(
            run.code,
            0,
            "{}: {}{}",
            dir.display(),
            run.stdout,
            run.stderr
        );
        assert!(run.stdout.starts_with("ok: "), "{}", run.stdout);
        seen += 1;
    }
    assert!(
        seen >= 1,
        "no example with YAML under {}",
        examples.display()
    );
}

/// Known-bad variants of the canary example: each problem found, where it is written, and
/// all of them in one run.
#[test]
fn lint_finds_each_broken_document_and_says_where() {
    // (file, from, to, expected line on stdout)
    let cases: [(&str, &str, &str, &str); 4] = [
        (
            "templates.yaml",
            r#"condition: "< {{args.max-error-ratio}}""#,
            r#"condition: "about {{args.max-error-ratio}}""#,
            "templates.yaml:17:11: spec.metrics[0].provider.config.condition: condition \"about 0.05\" not understood",
        ),
        (
            "templates.yaml",
            "count: 4",
            "count: four",
            "templates.yaml:23:14: spec.metrics[0].count: invalid u32: expected a whole number, 0 or more",
        ),
        (
            "rollouts.yaml",
            "      weight: 25\n",
            "      weight: 25\n      wieght: 30\n",
            "rollouts.yaml:25:7: spec.phases[1].wieght: unknown field `wieght`",
        ),
        (
            "backends.yaml",
            "file: error-ratio.om",
            "file: missing.om",
            "backends.yaml:3:1: spec.replay.file: MetricBackend \"recorded\": cannot read",
        ),
    ];
    for (file, from, to, expected) in cases {
        let dir = canary_copy(Some((file, from, to)));
        let run = rollgate_in(dir.path(), &["lint", "."]);
        assert_eq!(run.code, 1, "{to}: {}{}", run.stdout, run.stderr);
        assert!(
            run.stdout.lines().any(|l| l.contains(expected)),
            "{to}: expected a line with {expected:?} in\n{}",
            run.stdout
        );
        assert!(run.stderr.contains("problem(s)"), "{}", run.stderr);

        let json = rollgate_in(dir.path(), &["lint", ".", "--format", "json"]);
        assert_eq!(json.code, 1);
        let v: serde_json::Value = serde_json::from_str(&json.stdout).expect("JSON");
        assert_eq!(v["ok"], false);
        let problems = v["problems"].as_array().expect("problems");
        assert!(!problems.is_empty());
        assert!(
            problems
                .iter()
                .all(|p| p["message"].as_str().is_some_and(|m| !m.is_empty()))
        );
    }
}

#[test]
fn a_plugin_configuration_problem_is_invalid_input_and_leaves_no_store() {
    let dir = canary_copy(Some((
        "templates.yaml",
        r#"condition: "< {{args.max-error-ratio}}""#,
        r#"condition: "about {{args.max-error-ratio}}""#,
    )));
    let lint = rollgate_in(dir.path(), &["lint", "."]);
    assert_eq!(lint.code, 1, "{}", lint.stdout);
    let at = "templates.yaml:17:11: spec.metrics[0].provider.config.condition:";
    assert!(lint.stdout.contains(at), "{}", lint.stdout);
    for args in [
        vec!["run", ".", "--store", "s.db", "--clock", "simulated"],
        vec!["verify", ".", "--replay", "error-ratio.om"],
    ] {
        let run = rollgate_in(dir.path(), &args);
        assert_eq!(run.code, 4, "{args:?}: {}", run.stderr);
        assert!(run.stderr.contains(at), "{args:?}: {}", run.stderr);
    }
    assert!(
        !dir.path().join("s.db").exists(),
        "run refused before creating the store"
    );
}

#[test]
fn a_recording_with_extreme_timestamps_is_invalid_input_at_its_line_not_a_panic() {
    for (line, why) in [
        (
            "http_error_ratio{service=\"checkout\",track=\"canary\"} 0.01 -1e300",
            "outside the years 1 to 9999",
        ),
        (
            "http_error_ratio{service=\"checkout\",track=\"canary\"} 0.01 +Inf",
            "not a finite number",
        ),
    ] {
        let dir = canary_copy(None);
        let om = dir.path().join("error-ratio.om");
        let mut text = std::fs::read_to_string(&om).expect("read");
        let at = format!("error-ratio.om:{}:1:", text.lines().count() + 1);
        text.push_str(line);
        text.push('\n');
        std::fs::write(&om, text).expect("write");
        let lint = rollgate_in(dir.path(), &["lint", "."]);
        assert_eq!(lint.code, 1, "{}{}", lint.stdout, lint.stderr);
        assert!(
            lint.stdout.contains(&at) && lint.stdout.contains(why),
            "{}",
            lint.stdout
        );
        let run = rollgate_in(
            dir.path(),
            &["run", ".", "--store", "s.db", "--clock", "simulated"],
        );
        assert_eq!(run.code, 4, "{}", run.stderr);
        assert!(
            run.stderr.contains(&at) && !run.stderr.contains("panicked"),
            "{}",
            run.stderr
        );
        let replay = rollgate_in(dir.path(), &["replay", ".", "--metrics", "error-ratio.om"]);
        assert_eq!(replay.code, 4, "{}", replay.stderr);
        assert!(replay.stderr.contains(&at), "{}", replay.stderr);
    }
}

#[test]
fn limits_at_the_edge_of_their_type_are_refused_with_the_ceiling() {
    let run = rollgate(&[
        "plugin",
        "inspect",
        "threshold",
        "--max-component-mib",
        "18446744073709551615",
    ]);
    assert_eq!(run.code, 4, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("--max-component-mib 18446744073709551615: at most 1024 MiB"),
        "{}",
        run.stderr
    );
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("plugin.yaml"),
        "apiVersion: rollgate.dev/v1alpha1\nkind: Plugin\nmetadata:\n  name: big\nspec:\n  source: threshold\n  limits:\n    maxComponentBytes: 18446744073709551615\n    memory: 5Gi\n    timeout: 36500d\n",
    )
    .expect("write");
    let lint = rollgate_in(dir.path(), &["lint", "plugin.yaml"]);
    assert_eq!(lint.code, 1, "{}{}", lint.stdout, lint.stderr);
    for want in [
        "plugin.yaml:8:24: spec.limits.maxComponentBytes: 18446744073709551615 bytes is above the ceiling of 1073741824 bytes",
        "plugin.yaml:9:13: spec.limits.memory: 5368709120 bytes is above the ceiling of 4294967296 bytes",
        "plugin.yaml:10:14: spec.limits.timeout: 3153600000000 ms is above the ceiling of 3600000 ms",
    ] {
        assert!(
            lint.stdout.contains(want),
            "missing {want:?} in\n{}",
            lint.stdout
        );
    }
}

#[test]
fn yaml_limits_and_duplicate_keys_are_said_for_operators() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("dup.yaml"),
        "apiVersion: rollgate.dev/v1alpha1\nkind: Rollout\nmetadata:\n  name: a\n  name: b\nspec: {}\n",
    )
    .expect("write");
    // 300,000 nodes: over the parser's budget.
    let mut big = String::from(
        "apiVersion: rollgate.dev/v1alpha1\nkind: Rollout\nmetadata:\n  name: big\nspec:\n  x: [",
    );
    big.push_str(&"1,".repeat(300_000));
    big.push_str("1]\n");
    std::fs::write(dir.path().join("big.yaml"), big).expect("write");
    let lint = rollgate_in(dir.path(), &["lint", "."]);
    assert_eq!(lint.code, 1, "{}{}", lint.stdout, lint.stderr);
    assert!(
        lint.stdout.contains("dup.yaml:5:3:")
            && lint
                .stdout
                .contains("the key name appears twice in this mapping; keep one"),
        "{}",
        lint.stdout
    );
    assert!(
        lint.stdout.contains("big.yaml:")
            && lint.stdout.contains("the document holds too many nodes")
            && lint.stdout.contains("split it into several documents"),
        "{}",
        lint.stdout
    );
    for internal in ["DuplicateKeyPolicy", "Nodes {", "budget breached"] {
        assert!(
            !lint.stdout.contains(internal),
            "{internal}: {}",
            lint.stdout
        );
    }
}

#[test]
fn an_action_reason_is_one_bounded_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let long = "x".repeat(1_001);
    for (reason, want) in [
        (
            long.as_str(),
            "the reason is 1001 characters long; write at most 1000",
        ),
        ("two\nlines", "the reason contains control characters"),
        ("\u{1b}[2Jcleared", "the reason contains control characters"),
    ] {
        let run = rollgate_in(
            dir.path(),
            &["pause", "checkout", "--store", "s.db", "--reason", reason],
        );
        assert_eq!(run.code, 4, "{}", run.stderr);
        assert!(run.stderr.contains(want), "{}", run.stderr);
    }
    assert!(!dir.path().join("s.db").exists());
}

#[test]
fn logs_in_a_pipe_carry_no_colour_escapes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = common::quickstart(dir.path(), "s.db", &[("ROLLGATE_LOG", "rollgate=debug")]);
    assert_eq!(out.code, 5, "{}", out.stderr);
    let stderr = out.stderr;
    assert!(
        stderr.contains("DEBUG") || stderr.contains(" INFO "),
        "no log lines: {stderr}"
    );
    assert!(!stderr.contains('\u{1b}'), "{stderr:?}");
}
