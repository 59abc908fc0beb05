//! The exec target's tests: the step in the environment and on stdin, failures, timeouts
//! and process groups, relative paths, readiness, chatty and lingering commands.

use super::*;
use crate::deliver::testing::step;
use std::time::Instant;

fn spec(command: &[&str]) -> ExecTargetSpec {
    ExecTargetSpec {
        command: command.iter().map(|s| s.to_string()).collect(),
        ready_command: None,
        timeout_ms: 20_000,
        env: BTreeMap::new(),
        working_dir: None,
    }
}

fn sh(script: &str) -> ExecTargetSpec {
    spec(&["sh", "-c", script])
}

/// Gone, or a zombie nobody reaps (this container's PID 1 may not).
fn gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z') || rest.starts_with('X')),
    }
}

#[tokio::test]
async fn the_step_arrives_in_env_and_on_stdin() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = sh("env | grep '^ROLLGATE_\\|^EXTRA=' > env.txt; cat > stdin.json; echo applied");
    s.env.insert("EXTRA".into(), "yes".into());
    // The step's own variables win over `env`.
    s.env.insert("ROLLGATE_WEIGHT".into(), "999".into());
    let target = ExecTarget::new(&s, dir.path()).unwrap();
    let st = step();
    let applied = target.apply(&st, Some(3)).await.unwrap();
    assert_eq!(applied.output, "applied\n");

    let env = std::fs::read_to_string(dir.path().join("env.txt")).unwrap();
    let env: BTreeMap<&str, &str> = env.lines().filter_map(|l| l.split_once('=')).collect();
    let json = serde_json::to_string(&st).unwrap();
    let want = [
        ("ROLLGATE_STEP", json.as_str()),
        ("ROLLGATE_STEP_ID", "web#1/3-update-batch"),
        ("ROLLGATE_ROLLOUT", "web"),
        ("ROLLGATE_OPERATION", "update-batch"),
        ("ROLLGATE_PHASE", "half"),
        ("ROLLGATE_PHASE_INDEX", "1"),
        ("ROLLGATE_PHASE_COUNT", "3"),
        ("ROLLGATE_WEIGHT", "12.5"),
        ("ROLLGATE_STABLE_VERSION", "v1"),
        ("ROLLGATE_CANARY_VERSION", "v2"),
        ("ROLLGATE_INSTANCES", "web-1,web-2"),
        ("ROLLGATE_UPDATED", "2"),
        ("ROLLGATE_TOTAL", "16"),
        ("ROLLGATE_LEASE_EPOCH", "3"),
        ("EXTRA", "yes"),
    ];
    for (k, v) in want {
        assert_eq!(env.get(k).copied(), Some(v), "{k}");
    }
    let stdin: Step =
        serde_json::from_slice(&std::fs::read(dir.path().join("stdin.json")).unwrap()).unwrap();
    assert_eq!(stdin, st);
}

#[tokio::test]
async fn failures_say_what_happened() {
    let dir = tempfile::tempdir().unwrap();
    // (command, message contains, retryable)
    let cases: Vec<(ExecTargetSpec, &str, bool)> = vec![
        (
            sh("echo progress; echo 'weight 20 refused by mesh' >&2; exit 3"),
            "exited with code 3: weight 20 refused by mesh",
            false,
        ),
        (
            sh("echo only stdout; exit 1"),
            "exited with code 1 (stderr empty; stdout: only stdout)",
            false,
        ),
        (sh("exit 2"), "exited with code 2 (no output)", false),
        (sh("kill -TERM $$"), "killed by signal 15 (SIGTERM)", false),
        (
            spec(&["rollgate-no-such-program"]),
            "cannot run rollgate-no-such-program: not found; check target.exec.command",
            false,
        ),
        (
            spec(&["./missing.sh"]),
            "cannot run ./missing.sh: not found (looked for",
            false,
        ),
    ];
    for (s, want, retryable) in cases {
        let target = ExecTarget::new(&s, dir.path()).unwrap();
        let err = target.apply(&step(), None).await.unwrap_err();
        assert!(err.message.contains(want), "{want:?} in {:?}", err.message);
        assert_eq!(err.retryable, retryable, "{want}");
        assert!(err.target.starts_with("exec "), "{}", err.target);
    }
    let mut s = sh("true");
    s.working_dir = Some("nope".into());
    let err = ExecTarget::new(&s, dir.path())
        .unwrap()
        .apply(&step(), None)
        .await
        .unwrap_err();
    assert!(
        err.message.contains("check target.exec.workingDir"),
        "{err}"
    );
}

#[tokio::test]
async fn relative_programs_and_working_dirs_resolve_against_the_rollout_folder() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("deploy")).unwrap();
    let script = dir.path().join("deploy/run.sh");
    std::fs::write(&script, "#!/bin/sh\npwd\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut s = spec(&["./run.sh"]);
    s.working_dir = Some("deploy".into());
    let target = ExecTarget::new(&s, dir.path()).unwrap();
    let out = target.apply(&step(), None).await.unwrap().output;
    let want = dir.path().join("deploy").canonicalize().unwrap();
    assert_eq!(Path::new(out.trim()).canonicalize().unwrap(), want);
}

#[tokio::test]
async fn timeout_kills_the_whole_process_group_quickly() {
    let dir = tempfile::tempdir().unwrap();
    let mut s =
        sh("echo $$ > sh.pid; sleep 30 & echo $! > bg.pid; sleep 30 & echo $! > fg.pid; wait");
    s.timeout_ms = 1_000;
    let target = ExecTarget::new(&s, dir.path()).unwrap();
    let started = Instant::now();
    let err = target.apply(&step(), None).await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    // Final: the command had its whole time, the engine must not run it again.
    assert!(!err.retryable, "{err}");
    assert!(
        err.message
            .contains("timed out after 1s (target.exec.timeout); killed it and its process group"),
        "{err}"
    );
    for name in ["sh.pid", "bg.pid", "fg.pid"] {
        let pid: u32 = std::fs::read_to_string(dir.path().join(name))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // SIGKILL is delivered asynchronously: wait for the condition, bounded.
        let deadline = Instant::now() + Duration::from_secs(5);
        while !gone(pid) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(gone(pid), "{name} {pid} still running");
    }
}

/// Wait (bounded) for `pid` to be gone; SIGKILL is delivered asynchronously.
async fn wait_gone(pid: u32) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !gone(pid) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    gone(pid)
}

/// The pid a command wrote to `dir/name`, waiting (bounded) for it to appear.
async fn pid_in(dir: &Path, name: &str) -> u32 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(text) = std::fs::read_to_string(dir.join(name))
            && let Ok(pid) = text.trim().parse()
        {
            return pid;
        }
        assert!(Instant::now() < deadline, "{name} never written");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_timeout_leaves_no_grandchild_behind() {
    let dir = tempfile::tempdir().unwrap();
    // The grandchild is backgrounded, then the command hangs past its timeout.
    let mut s = sh("sleep 1000 & echo $! > grandchild.pid; while :; do sleep 1; done");
    s.timeout_ms = 500;
    let target = ExecTarget::new(&s, dir.path()).unwrap();
    let err = target.apply(&step(), None).await.unwrap_err();
    assert!(err.message.contains("timed out after 500ms"), "{err}");
    assert!(!err.retryable, "{err}");
    let pid = pid_in(dir.path(), "grandchild.pid").await;
    assert!(
        wait_gone(pid).await,
        "grandchild {pid} survived the timeout"
    );
}

#[tokio::test]
async fn dropping_a_running_apply_kills_its_process_group() {
    let dir = tempfile::tempdir().unwrap();
    let s =
        sh("sleep 1000 & echo $! > grandchild.pid; echo $$ > child.pid; while :; do sleep 1; done");
    let target = ExecTarget::new(&s, dir.path()).unwrap();
    // The rollout stops waiting long before the command's own 20 s timeout: once the
    // command has started (it writes grandchild.pid, then child.pid), drop the future.
    let st = step();
    let mut apply = target.apply(&st, None);
    tokio::select! {
        result = &mut apply => panic!("the command cannot finish: {result:?}"),
        _ = pid_in(dir.path(), "child.pid") => {}
    }
    drop(apply);
    for name in ["child.pid", "grandchild.pid"] {
        let pid = pid_in(dir.path(), name).await;
        assert!(
            wait_gone(pid).await,
            "{name} {pid} survived the dropped apply"
        );
    }
}

#[test]
fn paths_resolve_once_against_a_relative_rollout_folder() {
    // What the engine hands over for `specs/rollout.yaml` loaded by `load_str` (or an
    // old stored spec): a relative folder. Resolved against our current directory once.
    let cwd = std::env::current_dir().unwrap();
    let base = Path::new("specs");
    // (workingDir, program as written, expected working dir, expected program)
    let cases: Vec<(Option<&str>, &str, PathBuf, PathBuf)> = vec![
        (
            None,
            "./step.sh",
            cwd.join("specs"),
            cwd.join("specs/step.sh"),
        ),
        (
            None,
            "bin/step",
            cwd.join("specs"),
            cwd.join("specs/bin/step"),
        ),
        (
            Some("deploy"),
            "./step.sh",
            cwd.join("specs/deploy"),
            cwd.join("specs/deploy/step.sh"),
        ),
        (
            Some("./deploy/"),
            "./bin/./step.sh",
            cwd.join("specs/deploy"),
            cwd.join("specs/deploy/bin/step.sh"),
        ),
        // A bare name is looked up on PATH; an absolute program is kept.
        (
            Some("deploy"),
            "sh",
            cwd.join("specs/deploy"),
            PathBuf::from("sh"),
        ),
        (None, "/bin/sh", cwd.join("specs"), PathBuf::from("/bin/sh")),
        (
            Some("/opt/app"),
            "./step.sh",
            PathBuf::from("/opt/app"),
            PathBuf::from("/opt/app/step.sh"),
        ),
    ];
    for (dir, written, want_dir, want_program) in cases {
        let mut s = spec(&[written]);
        s.working_dir = dir.map(PathBuf::from);
        let t = ExecTarget::new(&s, base).unwrap();
        assert!(
            t.working_dir().is_absolute(),
            "{}",
            t.working_dir().display()
        );
        assert_eq!(t.working_dir(), want_dir, "{dir:?}");
        assert_eq!(
            program(t.working_dir(), written),
            want_program,
            "{dir:?} {written}"
        );
    }
    // Messages name the program cleanly (no `/./`).
    assert_eq!(
        program(Path::new("/srv/app"), "./deploy.sh").as_os_str(),
        "/srv/app/deploy.sh"
    );
    // The engine's base for a file in the current directory is the empty path.
    let t = ExecTarget::new(&spec(&["./step.sh"]), Path::new("")).unwrap();
    assert_eq!(t.working_dir(), cwd);
}

#[tokio::test]
async fn a_rollout_loaded_by_a_relative_path_runs_its_relative_program() {
    // specs/rollout.yaml, workingDir `steps`, command `./step.sh`, loaded through a path
    // relative to the current directory, built the way the engine builds it.
    let dir = tempfile::tempdir().unwrap();
    let steps = dir.path().join("specs/steps");
    std::fs::create_dir_all(&steps).unwrap();
    let script = steps.join("step.sh");
    std::fs::write(&script, "#!/bin/sh\npwd\necho \"ran $0\"\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let yaml = [
        "apiVersion: rollgate.dev/v1alpha1",
        "kind: Rollout",
        "metadata: {name: web}",
        "spec:",
        "  stableVersion: v1",
        "  canaryVersion: v2",
        "  target:",
        "    exec: {command: [./step.sh], workingDir: steps}",
        "  strategy: {canary: {}}",
        "  phases:",
        "    - {name: full, weight: 100}",
        "",
    ]
    .join("\n");
    std::fs::write(dir.path().join("specs/rollout.yaml"), yaml).unwrap();
    let relative = crate::deliver::testing::relative_to_cwd(dir.path()).join("specs/rollout.yaml");
    assert!(relative.is_relative());
    let bundle = crate::spec::load(&[relative]).unwrap_or_else(|e| panic!("{e:#?}"));
    let rollout = &bundle.rollouts[0];
    let base = rollout
        .file
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let target = crate::deliver::build(&rollout.target, &base).unwrap();
    let out = target.apply(&step(), None).await.unwrap().output;
    let mut lines = out.lines();
    let pwd = Path::new(lines.next().unwrap()).canonicalize().unwrap();
    assert_eq!(pwd, steps.canonicalize().unwrap());
    let ran = lines.next().unwrap().strip_prefix("ran ").unwrap();
    assert!(Path::new(ran).is_absolute(), "{ran}");
    assert_eq!(
        Path::new(ran).canonicalize().unwrap(),
        script.canonicalize().unwrap()
    );
}

#[tokio::test]
async fn readiness_runs_the_ready_command() {
    let dir = tempfile::tempdir().unwrap();
    let none = ExecTarget::new(&sh("true"), dir.path()).unwrap();
    assert_eq!(none.ready(&step()).await.unwrap(), Readiness::Ready);

    let mut s = sh("true");
    s.ready_command = Some(
            ["sh", "-c", "test \"$ROLLGATE_WEIGHT\" = 12.5 && test -f up || { echo 'pods 1/4 ready' >&2; exit 1; }"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
        );
    let target = ExecTarget::new(&s, dir.path()).unwrap();
    assert_eq!(
        target.ready(&step()).await.unwrap(),
        Readiness::NotReady("exited with code 1: pods 1/4 ready".into())
    );
    std::fs::write(dir.path().join("up"), "").unwrap();
    assert_eq!(target.ready(&step()).await.unwrap(), Readiness::Ready);

    s.ready_command = Some(vec!["rollgate-no-such-probe".into()]);
    let err = ExecTarget::new(&s, dir.path())
        .unwrap()
        .ready(&step())
        .await
        .unwrap_err();
    assert!(
        err.message.contains("check target.exec.readyCommand"),
        "{err}"
    );
}

#[tokio::test]
async fn a_chatty_command_does_not_deadlock_and_keeps_the_tail() {
    let dir = tempfile::tempdir().unwrap();
    // 1 MiB on each pipe, interleaved, without reading stdin.
    let s = sh(
        "head -c 1048576 /dev/zero | tr '\\0' e >&2 & head -c 1048576 /dev/zero | tr '\\0' a; wait; echo END",
    );
    let target = ExecTarget::new(&s, dir.path()).unwrap();
    let out = tokio::time::timeout(Duration::from_secs(15), target.apply(&step(), None))
        .await
        .expect("no deadlock")
        .unwrap()
        .output;
    assert!(out.len() <= OUTPUT_TAIL_BYTES + "…".len(), "{}", out.len());
    assert!(out.starts_with("…aaaa"), "{}", &out[..10]);
    assert!(out.ends_with("aaaaEND\n"));
}

#[tokio::test]
async fn a_background_process_holding_the_pipes_does_not_hold_the_step() {
    let dir = tempfile::tempdir().unwrap();
    // The child exits at once; the background `sleep` keeps stdout open for 3 s.
    let target = ExecTarget::new(&sh("sleep 3 & echo started"), dir.path()).unwrap();
    let started = Instant::now();
    let out = target.apply(&step(), None).await.unwrap().output;
    assert_eq!(out, "started\n");
    assert!(
        started.elapsed() < Duration::from_millis(2_900),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn specs_are_checked_when_built() {
    let base = Path::new("/srv/rollouts");
    let cases: Vec<(ExecTargetSpec, &str)> = vec![
        (spec(&[]), "target.exec.command: name a program"),
        (spec(&[""]), "target.exec.command: name a program"),
        (
            ExecTargetSpec {
                ready_command: Some(vec![]),
                ..spec(&["x"])
            },
            "target.exec.readyCommand",
        ),
        (
            ExecTargetSpec {
                timeout_ms: 0,
                ..spec(&["x"])
            },
            "target.exec.timeoutMs",
        ),
    ];
    for (s, want) in cases {
        let err = ExecTarget::new(&s, base).unwrap_err();
        assert!(err.starts_with(want), "{want:?}: {err}");
    }
    let t = ExecTarget::new(&spec(&["./deploy.sh", "--fast"]), base).unwrap();
    assert_eq!(t.working_dir(), base);
    assert_eq!(t.describe(), "exec ./deploy.sh --fast");
    let abs = ExecTarget::new(
        &ExecTargetSpec {
            working_dir: Some("/opt/app".into()),
            ..spec(&["x"])
        },
        base,
    )
    .unwrap();
    assert_eq!(abs.working_dir(), Path::new("/opt/app"));
}
