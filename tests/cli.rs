//! The `rollgate` binary, run for real: `plugin inspect`, `plugin check` and `schema`, each exit code
//! reached for its reason.

mod common;

use rollgate::plugin::artifacts::test_only;

use common::{rollgate, rollgate_in};

#[test]
fn inspect_a_builtin_for_people_and_for_tools() {
    let run = rollgate(&["plugin", "inspect", "threshold"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    for expected in [
        "plugin       threshold (built-in)",
        "world        verification-provider",
        "rollgate:plugin/verifier@0.1.0",
        "rollgate:plugin/metrics@0.1.0",
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

/// Every example lints clean.
#[test]
fn lint_is_silent_on_every_example() {
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
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
    let canary = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/canary");
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
        let dir = tempfile::tempdir().expect("tempdir");
        for entry in std::fs::read_dir(&canary).expect("canary") {
            let path = entry.expect("entry").path();
            std::fs::copy(&path, dir.path().join(path.file_name().expect("name"))).expect("copy");
        }
        let target = dir.path().join(file);
        let text = std::fs::read_to_string(&target).expect("read");
        assert!(text.contains(from), "{file} has no {from:?}");
        std::fs::write(&target, text.replacen(from, to, 1)).expect("write");
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
