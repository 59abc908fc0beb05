//! The files and folders an operator hands over, end to end through the real binary: the
//! same walker and reader for `lint`, `run` and `serve` (FIFOs, devices, symlink loops,
//! ConfigMap mounts, caps), and a run's identity that does not depend on where the folder
//! is mounted. Every wait is bounded; every server is killed by PID when its test ends.

use crate::common;

use common::serve::{Serve, Server};
use common::{rollgate, rollgate_in};
use std::path::{Path, PathBuf};

/// A rollout that finishes on its own: two phases; its exec target appends
/// `ROLLOUT OPERATION WEIGHT` to `applied` (outside the configuration folder) for every step
/// it applies; one measurement of the recorded error ratio in the first phase.
fn rollout(name: &str, applied: &Path) -> String {
    common::fixture_with(
        "files/rollout.yaml",
        &[("name", name), ("applied", &applied.display().to_string())],
    )
}

/// The recorded backend (relative to the file that declares it) and its recording.
fn backend(dir: &Path) {
    common::copy_example("canary", &["error-ratio.om"], dir);
    std::fs::write(
        dir.join("backends.yaml"),
        "apiVersion: rollgate.dev/v1alpha1\nkind: MetricBackend\nmetadata:\n  name: recorded\nspec:\n  replay:\n    file: error-ratio.om\n",
    )
    .expect("write");
}

#[cfg(unix)]
fn mkfifo(path: &Path) {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).expect("path");
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
}

/// Start `rollgate serve` on `config` with the store and plugin cache in `dir`; returns once
/// it says it is ready, or `Err(its log)` when it exits first.
fn serve(dir: &Path, config: &Path) -> Result<Server, String> {
    Serve::new(dir)
        .config(config)
        .reload_interval("100ms")
        .try_start()
}

#[cfg(unix)]
#[test]
fn a_fifo_in_the_folder_is_refused_by_lint_run_and_serve_without_hanging() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("config");
    std::fs::create_dir(&config).expect("mkdir");
    std::fs::write(
        config.join("a.yaml"),
        rollout("checkout", &dir.path().join("applied")),
    )
    .expect("write");
    backend(&config);
    mkfifo(&config.join("zz.yaml"));
    let want = "config/zz.yaml:0:0: not a regular file but a FIFO (named pipe); rollgate reads only regular files";

    let lint = rollgate_in(dir.path(), &["lint", "config"]);
    assert_eq!(lint.code, 1, "{}{}", lint.stdout, lint.stderr);
    assert!(lint.stdout.contains(want), "{}", lint.stdout);
    assert!(lint.stderr.contains("1 problem(s)"), "{}", lint.stderr);

    // The FIFO is no rollout's: the rollout runs, and the run still says invalid input.
    let run = rollgate_in(dir.path(), &["run", "config", "--store", "s.db"]);
    assert_eq!(run.code, 4, "{}", run.stderr);
    assert!(run.stderr.contains(want), "{}", run.stderr);
    assert!(dir.path().join("applied").exists(), "the rollout ran");

    // serve starts, and says what it could not read.
    let server = serve(dir.path(), &config).expect("serve starts on what loads");
    let config_status = server.wait_config("the problem", |v| {
        v["config"]["problems"]
            .to_string()
            .contains("zz.yaml:0:0: not a regular file but a FIFO")
    });
    assert_eq!(config_status["rollouts"], serde_json::json!(["checkout"]));
}

#[cfg(target_os = "linux")]
#[test]
fn devices_given_as_any_file_are_refused_before_a_byte_is_read() {
    let dir = tempfile::tempdir().expect("tempdir");
    let device = "not a regular file but a character device";
    // A spec file.
    for path in ["/dev/zero", "/dev/urandom"] {
        let lint = rollgate(&["lint", path]);
        assert_eq!(lint.code, 1, "{}", lint.stderr);
        assert!(
            lint.stdout.contains(&format!("{path}:0:0: {device}")),
            "{}",
            lint.stdout
        );
    }
    // --tokens.
    let config = dir.path().join("config");
    std::fs::create_dir(&config).expect("mkdir");
    std::fs::write(
        config.join("a.yaml"),
        rollout("checkout", &dir.path().join("applied")),
    )
    .expect("write");
    backend(&config);
    let serve = rollgate(&[
        "serve",
        "--config",
        config.to_str().expect("utf-8"),
        "--db",
        &format!("sqlite:{}", dir.path().join("s.db").display()),
        "--listen",
        "127.0.0.1:0",
        "--tokens",
        "/dev/urandom",
    ]);
    assert_eq!(serve.code, 4, "{}", serve.stderr);
    assert!(
        serve
            .stderr
            .contains(&format!("/dev/urandom: the tokens file: {device}")),
        "{}",
        serve.stderr
    );
    // --config-file.
    let check = rollgate(&["plugin", "check", "threshold", "--config-file", "/dev/zero"]);
    assert_eq!(check.code, 4, "{}", check.stderr);
    assert!(
        check
            .stderr
            .contains(&format!("config file /dev/zero: {device}")),
        "{}",
        check.stderr
    );
    // --fixture: a policy's (JSON) and a provider's (a recording).
    let policy = rollgate(&[
        "plugin",
        "test",
        "default-policy",
        "--config",
        "{}",
        "--fixture",
        "/dev/zero",
    ]);
    assert_eq!(policy.code, 4, "{}", policy.stderr);
    assert!(
        policy
            .stderr
            .contains(&format!("--fixture /dev/zero: {device}")),
        "{}",
        policy.stderr
    );
    let provider = rollgate(&[
        "plugin",
        "test",
        "threshold",
        "--config",
        r#"{"backend": "recorded", "query": "x", "window": "1m", "reduce": "avg", "condition": "< 1"}"#,
        "--fixture",
        "/dev/urandom",
    ]);
    assert_eq!(provider.code, 4, "{}", provider.stderr);
    assert!(
        provider.stderr.contains(&format!("/dev/urandom: {device}")),
        "{}",
        provider.stderr
    );
}

#[test]
fn a_million_empty_documents_are_one_problem() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("empty.yaml"), "---\n".repeat(1_000_000)).expect("write");
    let lint = rollgate_in(dir.path(), &["lint", "empty.yaml"]);
    assert_eq!(lint.code, 1, "{}", lint.stderr);
    assert_eq!(
        lint.stdout,
        "empty.yaml:1001:1: more than 1000 documents in one file (empty ones count too); this is document 1001: split the file\n"
    );
    assert_eq!(lint.stderr, "1 problem(s)\n");
}

#[test]
fn many_problems_show_the_first_hundred_then_how_many_more() {
    let dir = tempfile::tempdir().expect("tempdir");
    let text: String = (0..600)
        .map(|i| format!("---\napiVersion: rollgate.dev/v1alpha1\nkind: Nope{i}\n"))
        .collect();
    std::fs::write(dir.path().join("bad.yaml"), text).expect("write");
    let lint = rollgate_in(dir.path(), &["lint", "bad.yaml"]);
    assert_eq!(lint.code, 1, "{}", lint.stderr);
    let lines: Vec<&str> = lint.stdout.lines().collect();
    assert_eq!(lines.len(), 101, "{}", lint.stdout);
    assert!(lines[99].starts_with("bad.yaml:300:7: kind: unknown kind \"Nope99\""));
    assert_eq!(
        lines[100],
        "… and 500 more problem(s) not shown; fix the ones above first"
    );
    assert_eq!(lint.stderr, "600 problem(s)\n");
    let run = rollgate_in(dir.path(), &["run", "bad.yaml", "--store", "s.db"]);
    assert_eq!(run.code, 4, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("rollgate: … and 500 more problem(s) not shown")
            && run.stderr.contains("600 problem(s); nothing was run"),
        "{}",
        run.stderr
    );
}

#[test]
fn invalid_utf8_is_reported_at_its_first_byte() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("latin1.yaml"),
        b"apiVersion: rollgate.dev/v1alpha1\nkind: Rollout\nmetadata:\n  name: caf\xe9\n",
    )
    .expect("write");
    let lint = rollgate_in(dir.path(), &["lint", "latin1.yaml"]);
    assert_eq!(lint.code, 1, "{}", lint.stderr);
    assert_eq!(
        lint.stdout,
        "latin1.yaml:4:12: not UTF-8 text (the first invalid byte is here); save the file as UTF-8\n"
    );
}

/// A ConfigMap as Kubernetes mounts it: the files in a timestamped folder, `..data`
/// pointing at it, and each visible file a link through `..data`.
#[cfg(unix)]
fn configmap(root: &Path, stamp: &str, files: &[(&str, String)]) {
    use std::os::unix::fs::symlink;
    let dir = root.join(stamp);
    std::fs::create_dir(&dir).expect("mkdir");
    for (name, text) in files {
        std::fs::write(dir.join(name), text).expect("write");
    }
    // Swapped atomically, as the kubelet does: a new link renamed over the old one; then
    // links for files that are new.
    symlink(stamp, root.join("..data_tmp")).expect("link");
    std::fs::rename(root.join("..data_tmp"), root.join("..data")).expect("rename");
    for (name, _) in files {
        let link = root.join(name);
        if std::fs::symlink_metadata(&link).is_err() {
            symlink(format!("..data/{name}"), &link).expect("link");
        }
    }
}

#[cfg(unix)]
#[test]
fn a_configmap_mount_loads_once_in_lint_run_and_serve_and_reloads_on_a_swap() {
    let dir = tempfile::tempdir().expect("tempdir");
    let applied = dir.path().join("applied");
    let config = dir.path().join("config");
    std::fs::create_dir(&config).expect("mkdir");
    let recording = std::fs::read_to_string(common::example("canary").join("error-ratio.om"))
        .expect("recording");
    let backends = "apiVersion: rollgate.dev/v1alpha1\nkind: MetricBackend\nmetadata:\n  name: recorded\nspec:\n  replay:\n    file: error-ratio.om\n".to_string();
    configmap(
        &config,
        "..2026_11_29_07_00_00.123",
        &[
            ("backends.yaml", backends.clone()),
            ("error-ratio.om", recording.clone()),
            ("rollout.yaml", rollout("checkout", &applied)),
        ],
    );

    let lint = rollgate_in(dir.path(), &["lint", "config"]);
    assert_eq!(lint.code, 0, "{}{}", lint.stdout, lint.stderr);
    assert!(
        lint.stdout
            .contains("ok: 1 rollout(s), 0 template(s), 1 backend(s)"),
        "{}",
        lint.stdout
    );
    let run = rollgate_in(
        dir.path(),
        &["run", "config", "--store", "run.db", "--clock", "simulated"],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    // Each step once: the ConfigMap's files were read once.
    let once = std::fs::read_to_string(&applied).expect("applied");
    assert!(once.starts_with("checkout "), "{once}");
    std::fs::remove_file(&applied).expect("rm");

    let server = serve(dir.path(), &config).unwrap_or_else(|log| panic!("{log}"));
    server.wait_succeeded(&["checkout"]);
    assert_eq!(std::fs::read_to_string(&applied).expect("applied"), once);
    // The update: a second rollout, in a new timestamped folder.
    configmap(
        &config,
        "..2026_11_29_08_00_00.456",
        &[
            ("backends.yaml", backends),
            ("error-ratio.om", recording),
            ("rollout.yaml", rollout("checkout", &applied)),
            ("search.yaml", rollout("search", &applied)),
        ],
    );
    server.wait_succeeded(&["search"]);
    let list = server.get("/api/v1/rollouts");
    let names: Vec<&str> = list["rollouts"]
        .as_array()
        .map(|a| a.iter().filter_map(|r| r["rollout"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(names, ["checkout", "search"], "{list}");
    let config_status = server.get("/api/v1/config")["config"].clone();
    assert!(
        config_status["generation"].as_u64() >= Some(2),
        "{config_status}"
    );
    assert!(config_status["lastError"].is_null(), "{config_status}");
    // checkout's spec did not change: it was not run again; search ran once.
    let text = std::fs::read_to_string(&applied).expect("applied");
    let of = |name: &str| -> String {
        text.lines()
            .filter_map(|l| l.strip_prefix(name))
            .map(|l| format!("{l}\n"))
            .collect()
    };
    assert_eq!(
        format!("{}{}", of("checkout "), of("search ")),
        once.replace("checkout ", "").repeat(2)
    );
}

#[cfg(unix)]
#[test]
fn a_symlink_loop_in_the_folder_neither_stalls_serve_nor_its_shutdown() {
    use std::os::unix::fs::symlink;
    let dir = tempfile::tempdir().expect("tempdir");
    let applied = dir.path().join("applied");
    let config = dir.path().join("config");
    std::fs::create_dir_all(config.join("team")).expect("mkdir");
    backend(&config);
    std::fs::write(config.join("team/a.yaml"), rollout("checkout", &applied)).expect("write");
    symlink(&config, config.join("team/up")).expect("link");
    symlink("..", config.join("team/parent")).expect("link");
    symlink("loop-b", config.join("loop-a")).expect("link");
    symlink("loop-a", config.join("loop-b")).expect("link");
    let server = serve(dir.path(), &config).unwrap_or_else(|log| panic!("{log}"));
    server.wait_succeeded(&["checkout"]);
    // Change detection still works through the loops.
    std::fs::write(config.join("team/b.yaml"), rollout("search", &applied)).expect("write");
    server.wait_line("configuration loaded");
    server.wait_succeeded(&["search"]);
    let status = server.terminate();
    assert!(status.success(), "{status}");
}

/// `mv A B`, as a test: a folder's whole content, moved.
fn move_folder(from: &Path, to: &Path) {
    std::fs::rename(from, to).expect("mv");
}

#[test]
fn moving_the_folder_runs_nothing_again_in_serve() {
    let dir = tempfile::tempdir().expect("tempdir");
    let applied = dir.path().join("applied");
    let a = dir.path().join("a");
    std::fs::create_dir_all(a.join("team")).expect("mkdir");
    backend(&a);
    std::fs::write(a.join("team/checkout.yaml"), rollout("checkout", &applied)).expect("write");
    std::fs::write(a.join("search.yaml"), rollout("search", &applied)).expect("write");

    let server = serve(dir.path(), &a).unwrap_or_else(|log| panic!("{log}"));
    server.wait_succeeded(&["checkout", "search"]);
    let status = server.terminate();
    assert!(status.success(), "{status}");
    let before = std::fs::read_to_string(&applied).expect("applied");
    assert!(
        before.contains("checkout set-weight 10") && before.contains("search finalize 100"),
        "{before}"
    );

    let b: PathBuf = dir.path().join("mnt/b");
    std::fs::create_dir_all(b.parent().expect("parent")).expect("mkdir");
    move_folder(&a, &b);
    // Start-up reconciles before it says ready: by then any new run would exist.
    let server = serve(dir.path(), &b).unwrap_or_else(|log| panic!("{log}"));
    for name in ["checkout", "search"] {
        let history = server.get(&format!("/api/v1/rollouts/{name}/history"));
        let runs = history["runs"].as_array().cloned().unwrap_or_default();
        assert_eq!(runs.len(), 1, "{name}: {history}");
        let v = server.get(&format!("/api/v1/rollouts/{name}"));
        assert_eq!(
            (v["run"].as_i64(), v["state"].as_str()),
            (Some(1), Some("succeeded"))
        );
    }
    assert!(
        !server.log().contains("the configuration changed since run"),
        "{}",
        server.log()
    );
    drop(server);
    assert_eq!(std::fs::read_to_string(&applied).expect("applied"), before);
}

#[test]
fn moving_the_folder_runs_nothing_again_in_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let applied = dir.path().join("applied");
    let a = dir.path().join("a");
    std::fs::create_dir(&a).expect("mkdir");
    backend(&a);
    std::fs::write(a.join("checkout.yaml"), rollout("checkout", &applied)).expect("write");
    let args = ["--store", "s.db", "--clock", "simulated"];
    let first = rollgate_in(dir.path(), &[&["run", "a"][..], &args].concat());
    assert_eq!(first.code, 0, "{}", first.stderr);
    let before = std::fs::read_to_string(&applied).expect("applied");
    assert!(before.contains("checkout set-weight 10"), "{before}");
    move_folder(&a, &dir.path().join("b"));
    let again = rollgate_in(dir.path(), &[&["run", "b"][..], &args].concat());
    assert_eq!(again.code, 0, "{}", again.stderr);
    let said = format!("{}{}", again.stdout, again.stderr);
    assert!(said.contains("run 1 already ended succeeded"), "{said}");
    assert_eq!(std::fs::read_to_string(&applied).expect("applied"), before);
}
