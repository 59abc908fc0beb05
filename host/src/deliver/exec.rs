//! The `exec` target: run the operator's own command once per step.
//!
//! Most teams already have a script that sets a weight or updates a batch; `exec` lets them
//! keep it. The command gets the whole step twice — as `ROLLGATE_*` environment variables
//! for shell scripts and as JSON on stdin for everything else — and its exit code is the
//! answer. There is no shell in between: `command` is the argv, so nothing is re-parsed.
//!
//! A command must not hang a rollout: it runs in its own process group with a timeout, and
//! on timeout the whole group (the command and everything it started) is killed — as it is
//! when the rollout stops waiting for it (the `apply` future is dropped). Its output is
//! drained while it runs, so a chatty command cannot block on a full pipe, and only the tail
//! is kept.
//!
//! Paths: the working directory is `workingDir` joined onto the rollout file's folder once,
//! made absolute when the target is built; a program written with a slash (`./deploy.sh`,
//! `bin/deploy`) is looked for in that directory, a bare name (`sh`) on `PATH`.

use super::{
    Applied, CAPTURE_BYTES, OUTPUT_TAIL_BYTES, Readiness, Step, Tail, Target, TargetError,
    env_weight,
};
use crate::metrics::BoxFuture;
use crate::spec::model::ExecTargetSpec;
use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::task::{AbortHandle, JoinHandle};

/// After the command exits, how long to keep reading pipes that something it started in
/// the background still holds open.
const PIPE_GRACE: Duration = Duration::from_secs(1);

/// Runs `target.exec.command` per step and `target.exec.readyCommand` per readiness check.
#[derive(Debug, Clone)]
pub struct ExecTarget {
    command: Vec<String>,
    ready_command: Option<Vec<String>>,
    timeout: Duration,
    env: BTreeMap<String, String>,
    working_dir: PathBuf,
}

/// Which of the two commands runs (for error messages that name the field to fix).
#[derive(Debug, Clone, Copy)]
enum Which {
    Command,
    ReadyCommand,
}

impl Which {
    fn field(self) -> &'static str {
        match self {
            Which::Command => "target.exec.command",
            Which::ReadyCommand => "target.exec.readyCommand",
        }
    }
}

/// How a finished command ended, with the tails of its output.
struct Finished {
    status: ExitStatus,
    stdout: Tail,
    stderr: Tail,
}

impl ExecTarget {
    /// Check the spec and fix the working directory: `workingDir` resolved against
    /// `base_dir` (the rollout file's folder), or `base_dir` itself, made absolute.
    pub fn new(spec: &ExecTargetSpec, base_dir: &Path) -> Result<ExecTarget, String> {
        if spec.command.first().is_none_or(|p| p.is_empty()) {
            return Err(
                "target.exec.command: name a program (and its arguments), e.g. [./deploy.sh]"
                    .into(),
            );
        }
        if let Some(ready) = &spec.ready_command
            && ready.first().is_none_or(|p| p.is_empty())
        {
            return Err("target.exec.readyCommand: name a program (or leave it out)".into());
        }
        if spec.timeout_ms == 0 {
            return Err("target.exec.timeoutMs: must be more than 0".into());
        }
        let working_dir = working_dir(spec.working_dir.as_deref(), base_dir)?;
        Ok(ExecTarget {
            command: spec.command.clone(),
            ready_command: spec.ready_command.clone(),
            timeout: Duration::from_millis(spec.timeout_ms),
            env: spec.env.clone(),
            working_dir,
        })
    }

    /// The working directory commands run in.
    pub fn working_dir(&self) -> &Path {
        &self.working_dir
    }

    /// The `ROLLGATE_*` variables describing `step` (`json` is the step serialised).
    pub fn step_env(step: &Step, json: &str) -> Vec<(&'static str, String)> {
        vec![
            ("ROLLGATE_STEP", json.to_string()),
            ("ROLLGATE_STEP_ID", step.id.clone()),
            ("ROLLGATE_ROLLOUT", step.rollout.clone()),
            ("ROLLGATE_OPERATION", step.operation.name().to_string()),
            ("ROLLGATE_PHASE", step.phase.clone()),
            ("ROLLGATE_PHASE_INDEX", step.phase_index.to_string()),
            ("ROLLGATE_PHASE_COUNT", step.phase_count.to_string()),
            ("ROLLGATE_WEIGHT", env_weight(step.weight)),
            ("ROLLGATE_STABLE_VERSION", step.stable_version.clone()),
            ("ROLLGATE_CANARY_VERSION", step.canary_version.clone()),
            ("ROLLGATE_INSTANCES", step.instances.join(",")),
            ("ROLLGATE_UPDATED", step.updated.to_string()),
            ("ROLLGATE_TOTAL", step.total.to_string()),
        ]
    }

    fn error(&self, message: String, retryable: bool) -> TargetError {
        TargetError {
            target: self.describe(),
            message,
            retryable,
        }
    }

    /// Run `argv` with the step in its environment and on stdin, within the timeout.
    async fn run(
        &self,
        argv: &[String],
        step: &Step,
        which: Which,
    ) -> Result<Finished, TargetError> {
        let Some(written) = argv.first() else {
            return Err(self.error(format!("{}: no program", which.field()), false));
        };
        let json = serde_json::to_string(step)
            .map_err(|e| self.error(format!("cannot serialise the step: {e}"), false))?;
        if !self.working_dir.is_dir() {
            return Err(self.error(
                format!(
                    "working directory {} does not exist; check target.exec.workingDir",
                    self.working_dir.display()
                ),
                false,
            ));
        }
        let program = program(&self.working_dir, written);
        let mut cmd = tokio::process::Command::new(&program);
        cmd.args(&argv[1..]).current_dir(&self.working_dir);
        // The step's own variables win over `env`: scripts must be able to trust them.
        cmd.envs(&self.env)
            .envs(Self::step_env(step, &json))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .process_group(0);
        let mut child = cmd.spawn().map_err(|e| {
            let looked = if program.as_path() != Path::new(written) {
                format!(" (looked for {})", program.display())
            } else {
                String::new()
            };
            let why = match e.kind() {
                std::io::ErrorKind::NotFound => "not found".to_string(),
                std::io::ErrorKind::PermissionDenied => {
                    "permission denied (is it executable?)".to_string()
                }
                _ => e.to_string(),
            };
            self.error(
                format!(
                    "cannot run {written}: {why}{looked}; check {}",
                    which.field()
                ),
                false,
            )
        })?;
        // The child leads its own process group (`process_group(0)`): its pid is the
        // group's id. From here on, whatever way this function ends — including the future
        // being dropped while it waits — the guard aborts the pipe tasks and, unless the
        // command finished by itself, kills the group.
        let mut guard = Guard {
            pgid: child.id(),
            tasks: Vec::new(),
        };
        let stdout = Arc::new(Mutex::new(Tail::new(CAPTURE_BYTES)));
        let stderr = Arc::new(Mutex::new(Tail::new(CAPTURE_BYTES)));
        let mut readers = [
            tokio::spawn(drain(child.stdout.take(), stdout.clone())),
            tokio::spawn(drain(child.stderr.take(), stderr.clone())),
        ];
        let stdin = child.stdin.take();
        // A command that never reads stdin must not block us: feed it from a task.
        let feeder: JoinHandle<()> = tokio::spawn(async move {
            if let Some(mut stdin) = stdin {
                let _ = stdin.write_all(json.as_bytes()).await;
                let _ = stdin.shutdown().await;
            }
        });
        guard.tasks = readers
            .iter()
            .chain(std::iter::once(&feeder))
            .map(JoinHandle::abort_handle)
            .collect();
        let waited = tokio::time::timeout(self.timeout, child.wait()).await;
        let status = match waited {
            Ok(Ok(status)) => status,
            Ok(Err(e)) => {
                guard.kill_group();
                let _ = child.start_kill();
                let _ = child.wait().await;
                return Err(self.error(format!("cannot wait for {written}: {e}"), true));
            }
            Err(_) => {
                // Killed before the leader is reaped, so its pid (the group id) cannot
                // have been reused yet.
                guard.kill_group();
                let _ = child.start_kill();
                let _ = child.wait().await;
                settle(&mut readers).await;
                let err = take(&stderr).text(OUTPUT_TAIL_BYTES);
                let mut message = format!(
                    "{written} timed out after {} (target.exec.timeout); killed it and its \
                     process group",
                    human(self.timeout)
                );
                if !err.trim().is_empty() {
                    message.push_str(&format!("; stderr: {}", err.trim()));
                }
                // Not retryable: the command had its whole time; running it again would
                // only wait as long again. Raise target.exec.timeout if it needs more.
                return Err(self.error(message, false));
            }
        };
        // The command finished by itself: what it left running in the background is its
        // business, and the reaped leader's pid may be reused — never signal the group now.
        guard.pgid = None;
        settle(&mut readers).await;
        drop(guard);
        Ok(Finished {
            status,
            stdout: take(&stdout),
            stderr: take(&stderr),
        })
    }
}

/// The working directory commands run in: `written` (the spec's `workingDir`) joined onto
/// `base_dir` (the rollout file's folder) when relative, or `base_dir` itself; made
/// absolute against rollgate's current directory, so that neither the program path nor the
/// child's `current_dir` can be read relative to the other.
fn working_dir(written: Option<&Path>, base_dir: &Path) -> Result<PathBuf, String> {
    let dir = match written {
        Some(dir) => base_dir.join(dir),
        None => base_dir.to_path_buf(),
    };
    let dir = if dir.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        dir
    };
    std::path::absolute(&dir).map_err(|e| {
        format!(
            "target.exec.workingDir: cannot make {} absolute: {e}; use an absolute workingDir",
            dir.display()
        )
    })
}

/// The program to run for `written` (the first word of the command): a path with a slash
/// (`./deploy.sh`, `bin/deploy`) relative to `working_dir` (which is absolute), an absolute
/// path as is, and a bare name (`sh`) as is, for a `PATH` lookup.
fn program(working_dir: &Path, written: &str) -> PathBuf {
    let path = Path::new(written);
    if written.contains('/') && path.is_relative() {
        let mut out = working_dir.to_path_buf();
        out.extend(
            path.components()
                .filter(|c| *c != std::path::Component::CurDir),
        );
        out
    } else {
        path.to_path_buf()
    }
}

/// Cleans up after a command however [`ExecTarget::run`] ends: aborts the tasks reading
/// and feeding its pipes and, while `pgid` is set, SIGKILLs its process group.
struct Guard {
    pgid: Option<u32>,
    tasks: Vec<AbortHandle>,
}

impl Guard {
    /// SIGKILL the process group now (once).
    fn kill_group(&mut self) {
        if let Some(pgid) = self.pgid.take() {
            kill_group(pgid);
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.kill_group();
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Why a command failed, from its status and output: exit code or signal, then the tail of
/// stderr (or of stdout when stderr is empty).
fn failure(f: &Finished) -> String {
    let how = match (f.status.code(), f.status.signal()) {
        (Some(code), _) => format!("exited with code {code}"),
        (None, Some(sig)) => format!("killed by signal {sig} ({})", signal_name(sig)),
        (None, None) => format!("ended abnormally ({})", f.status),
    };
    let err = f.stderr.text(OUTPUT_TAIL_BYTES);
    let out = f.stdout.text(OUTPUT_TAIL_BYTES);
    if !err.trim().is_empty() {
        format!("{how}: {}", err.trim())
    } else if !out.trim().is_empty() {
        format!("{how} (stderr empty; stdout: {})", out.trim())
    } else {
        format!("{how} (no output)")
    }
}

fn signal_name(sig: i32) -> &'static str {
    match sig {
        1 => "SIGHUP",
        2 => "SIGINT",
        3 => "SIGQUIT",
        4 => "SIGILL",
        6 => "SIGABRT",
        7 => "SIGBUS",
        8 => "SIGFPE",
        9 => "SIGKILL",
        11 => "SIGSEGV",
        13 => "SIGPIPE",
        14 => "SIGALRM",
        15 => "SIGTERM",
        _ => "unknown signal",
    }
}

/// `30000` ms → `30s`, `1500` → `1500ms`.
fn human(d: Duration) -> String {
    let ms = d.as_millis();
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

/// Read a pipe to its end into a shared tail (shared so that what was read survives the
/// reader being aborted).
async fn drain<R: AsyncRead + Unpin>(pipe: Option<R>, tail: Arc<Mutex<Tail>>) {
    let Some(mut pipe) = pipe else {
        return;
    };
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => tail
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .push(&buf[..n]),
        }
    }
}

fn take(tail: &Mutex<Tail>) -> Tail {
    std::mem::take(&mut *tail.lock().unwrap_or_else(|poisoned| poisoned.into_inner()))
}

/// Let the readers reach the end of the pipes, unless something the command left running
/// keeps them open.
async fn settle(readers: &mut [JoinHandle<()>; 2]) {
    let _ = tokio::time::timeout(PIPE_GRACE, async {
        for r in readers.iter_mut() {
            let _ = r.await;
        }
    })
    .await;
}

/// SIGKILL the process group `pgid` (the command was spawned as its leader).
fn kill_group(pgid: u32) {
    let Ok(pgid) = libc::pid_t::try_from(pgid) else {
        tracing::warn!(pgid, "process group id out of range; not killed");
        return;
    };
    if pgid <= 1 {
        // killpg(0) would signal our own group, 1 is init: never.
        return;
    }
    // SAFETY: killpg takes plain integers and touches no memory of ours.
    let result = unsafe { libc::killpg(pgid, libc::SIGKILL) };
    if result != 0 {
        let e = std::io::Error::last_os_error();
        // ESRCH: the group is already gone, which is what we wanted.
        if e.raw_os_error() != Some(libc::ESRCH) {
            tracing::warn!(pgid, "cannot kill the process group: {e}");
        }
    }
}

impl Target for ExecTarget {
    fn describe(&self) -> String {
        format!("exec {}", self.command.join(" "))
    }

    fn apply<'a>(&'a self, step: &'a Step) -> BoxFuture<'a, Result<Applied, TargetError>> {
        Box::pin(async move {
            let done = self.run(&self.command, step, Which::Command).await?;
            if done.status.success() {
                Ok(Applied {
                    output: done.stdout.text(OUTPUT_TAIL_BYTES),
                })
            } else {
                Err(self.error(failure(&done), false))
            }
        })
    }

    fn ready<'a>(&'a self, step: &'a Step) -> BoxFuture<'a, Result<Readiness, TargetError>> {
        Box::pin(async move {
            let Some(ready) = &self.ready_command else {
                return Ok(Readiness::Ready);
            };
            let done = self.run(ready, step, Which::ReadyCommand).await?;
            Ok(if done.status.success() {
                Readiness::Ready
            } else {
                Readiness::NotReady(failure(&done))
            })
        })
    }
}

#[cfg(test)]
mod tests {
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
        let mut s =
            sh("env | grep '^ROLLGATE_\\|^EXTRA=' > env.txt; cat > stdin.json; echo applied");
        s.env.insert("EXTRA".into(), "yes".into());
        // The step's own variables win over `env`.
        s.env.insert("ROLLGATE_WEIGHT".into(), "999".into());
        let target = ExecTarget::new(&s, dir.path()).unwrap();
        let st = step();
        let applied = target.apply(&st).await.unwrap();
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
            let err = target.apply(&step()).await.unwrap_err();
            assert!(err.message.contains(want), "{want:?} in {:?}", err.message);
            assert_eq!(err.retryable, retryable, "{want}");
            assert!(err.target.starts_with("exec "), "{}", err.target);
        }
        let mut s = sh("true");
        s.working_dir = Some("nope".into());
        let err = ExecTarget::new(&s, dir.path())
            .unwrap()
            .apply(&step())
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
        let out = target.apply(&step()).await.unwrap().output;
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
        let err = target.apply(&step()).await.unwrap_err();
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{:?}",
            started.elapsed()
        );
        // Final: the command had its whole time, the engine must not run it again.
        assert!(!err.retryable, "{err}");
        assert!(
            err.message.contains(
                "timed out after 1s (target.exec.timeout); killed it and its process group"
            ),
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
        let err = target.apply(&step()).await.unwrap_err();
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
        let s = sh(
            "sleep 1000 & echo $! > grandchild.pid; echo $$ > child.pid; while :; do sleep 1; done",
        );
        let target = ExecTarget::new(&s, dir.path()).unwrap();
        // The rollout stops waiting long before the command's own 20 s timeout: once the
        // command has started (it writes grandchild.pid, then child.pid), drop the future.
        let st = step();
        let mut apply = target.apply(&st);
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
        let relative =
            crate::deliver::testing::relative_to_cwd(dir.path()).join("specs/rollout.yaml");
        assert!(relative.is_relative());
        let bundle = crate::spec::load(&[relative]).unwrap_or_else(|e| panic!("{e:#?}"));
        let rollout = &bundle.rollouts[0];
        let base = rollout
            .file
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let target = crate::deliver::build(&rollout.target, &base).unwrap();
        let out = target.apply(&step()).await.unwrap().output;
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
        let out = tokio::time::timeout(Duration::from_secs(15), target.apply(&step()))
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
        let out = target.apply(&step()).await.unwrap().output;
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
}
