//! The `exec` target: run the operator's own command once per step.
//!
//! Most teams already have a script that sets a weight or updates a batch; `exec` lets them
//! keep it. The command gets the whole step twice — as `ROLLGATE_*` environment variables
//! for shell scripts and as JSON on stdin for everything else — and its exit code is the
//! answer. There is no shell in between: `command` is the argv, so nothing is re-parsed.
//!
//! A command must not hang a rollout: it runs in its own process group with a timeout, and
//! on timeout the whole group (the command and everything it started) is killed. Its output
//! is drained while it runs, so a chatty command cannot block on a full pipe, and only the
//! tail is kept.

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
use tokio::task::JoinHandle;

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
    /// `base_dir` (the rollout file's folder), or `base_dir` itself.
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
        let working_dir = match &spec.working_dir {
            Some(dir) if dir.is_relative() => base_dir.join(dir),
            Some(dir) => dir.clone(),
            None => base_dir.to_path_buf(),
        };
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

    /// Where a relative program path (`./deploy.sh`) is looked for: the working directory,
    /// not rollgate's own (a bare name goes through `PATH`).
    fn program(&self, written: &str) -> PathBuf {
        let path = Path::new(written);
        if written.contains('/') && path.is_relative() && !self.working_dir.as_os_str().is_empty() {
            self.working_dir.join(path)
        } else {
            path.to_path_buf()
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
        if !self.working_dir.as_os_str().is_empty() && !self.working_dir.is_dir() {
            return Err(self.error(
                format!(
                    "working directory {} does not exist; check target.exec.workingDir",
                    self.working_dir.display()
                ),
                false,
            ));
        }
        let program = self.program(written);
        let mut cmd = tokio::process::Command::new(&program);
        cmd.args(&argv[1..]);
        if !self.working_dir.as_os_str().is_empty() {
            cmd.current_dir(&self.working_dir);
        }
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
        let pgid = child.id();
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
        let waited = tokio::time::timeout(self.timeout, child.wait()).await;
        let status = match waited {
            Ok(Ok(status)) => status,
            Ok(Err(e)) => {
                kill_group(pgid).await;
                let _ = child.start_kill();
                let _ = child.wait().await;
                stop(&mut readers, &feeder);
                return Err(self.error(format!("cannot wait for {written}: {e}"), true));
            }
            Err(_) => {
                kill_group(pgid).await;
                let _ = child.start_kill();
                let _ = child.wait().await;
                settle(&mut readers).await;
                stop(&mut readers, &feeder);
                let err = take(&stderr).text(OUTPUT_TAIL_BYTES);
                let mut message = format!(
                    "{written} timed out after {}; killed it and its process group",
                    human(self.timeout)
                );
                if !err.trim().is_empty() {
                    message.push_str(&format!("; stderr: {}", err.trim()));
                }
                return Err(self.error(message, true));
            }
        };
        settle(&mut readers).await;
        stop(&mut readers, &feeder);
        Ok(Finished {
            status,
            stdout: take(&stdout),
            stderr: take(&stderr),
        })
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

fn stop(readers: &mut [JoinHandle<()>; 2], feeder: &JoinHandle<()>) {
    for r in readers.iter() {
        r.abort();
    }
    feeder.abort();
}

/// SIGKILL the process group `pgid` (the command was spawned as its leader), using the
/// `kill` program so that no libc binding is needed.
async fn kill_group(pgid: Option<u32>) {
    let Some(pgid) = pgid else {
        return;
    };
    let result = tokio::process::Command::new("kill")
        .args(["-KILL", "--", &format!("-{pgid}")])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await;
    match result {
        Ok(status) if status.success() => {}
        Ok(status) => tracing::warn!(pgid, %status, "kill of the process group failed"),
        Err(e) => tracing::warn!(pgid, "cannot run kill for the process group: {e}"),
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
    use crate::target::testing::step;
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
        assert!(err.retryable);
        assert!(err.message.contains("timed out after 1s"), "{err}");
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
