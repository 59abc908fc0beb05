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

    /// The `ROLLGATE_*` variables describing `step` (a delivery adds [`super::LEASE_EPOCH_ENV`]) (`json` is the step serialised).
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

    /// Run `argv` with the step in its environment and on stdin, within the timeout; a
    /// delivery also carries the lease epoch it is made under (`ROLLGATE_LEASE_EPOCH`).
    async fn run(
        &self,
        argv: &[String],
        step: &Step,
        which: Which,
        epoch: Option<i64>,
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
            .envs(epoch.map(|e| (super::LEASE_EPOCH_ENV, e.to_string())))
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

    fn apply<'a>(
        &'a self,
        step: &'a Step,
        epoch: Option<i64>,
    ) -> BoxFuture<'a, Result<Applied, TargetError>> {
        Box::pin(async move {
            let done = self.run(&self.command, step, Which::Command, epoch).await?;
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
            let done = self.run(ready, step, Which::ReadyCommand, None).await?;
            Ok(if done.status.success() {
                Readiness::Ready
            } else {
                Readiness::NotReady(failure(&done))
            })
        })
    }
}

#[cfg(test)]
#[path = "exec_tests.rs"]
mod tests;
