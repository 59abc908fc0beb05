//! The watchdog: a small `sh` that stops a cluster's postmaster and removes its directory
//! when the test process dies without doing it (SIGKILL, a crash, Ctrl-C), so a killed test
//! run leaves no server holding a port and no data directory in the temp dir.
//!
//! It reads the postmaster's PID on its standard input (one line per start, `0` once the
//! server is stopped). Only the test process holds the pipe's write end (std opens it
//! close-on-exec), so end of input means the test process is gone; then, if the last PID
//! read is not 0 and that process is still the postmaster (the data directory's
//! `postmaster.pid` names it, or its command line holds the data directory: a reused PID is
//! never signalled), it sends SIGQUIT (immediate shutdown), waits up to 10 s, sends
//! SIGKILL if the server is still there, and removes the directory. It runs in a process
//! group of its own, so a Ctrl-C that ends the tests does not end it before it has cleaned.

use std::io::Write;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::Duration;

const SCRIPT: &str = r#"
dir=$1
data=$2
pid=0
while read -r line; do pid=$line; done
[ "$pid" = 0 ] && exit 0
# The postmaster's PID file names it, or (before it has written the file) its command line
# holds the data directory: never a process that merely got the PID later.
ours() {
  [ "$(head -n 1 "$data/postmaster.pid" 2>/dev/null)" = "$pid" ] \
    || tr '\0' '\n' < "/proc/$pid/cmdline" 2>/dev/null | grep -qxF -- "$data"
}
ours && kill -QUIT "$pid" 2>/dev/null
i=0
while ours && kill -0 "$pid" 2>/dev/null && [ "$i" -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
ours && kill -KILL "$pid" 2>/dev/null
rm -rf "$dir"
"#;

/// One cluster's watchdog process and the write end of its input.
pub(crate) struct Watchdog {
    child: Child,
    input: Option<ChildStdin>,
}

impl Watchdog {
    /// Start watching the cluster in `dir` (its data directory is `data`).
    pub(crate) fn spawn(dir: &Path, data: &Path) -> Result<Watchdog, String> {
        use std::os::unix::process::CommandExt as _;
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(SCRIPT)
            .arg("rollgate-pgtest-watchdog")
            .arg(dir)
            .arg(data)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .map_err(|e| format!("could not start the watchdog (sh): {e}"))?;
        let input = child.stdin.take();
        Ok(Watchdog { child, input })
    }

    /// The postmaster now running (`Some(pid)`), or none (`None`: stopped or killed).
    pub(crate) fn watch(&mut self, postmaster: Option<u32>) {
        if let Some(input) = &mut self.input {
            // A watchdog that died cannot be told; the Drop of the cluster still cleans up.
            let _ = writeln!(input, "{}", postmaster.unwrap_or(0));
        }
    }
}

impl Drop for Watchdog {
    /// The cluster is stopped and its directory removed (the cluster's teardown drops its
    /// watchdog last): tell it so and end it (bounded; killed by its PID if it lingers).
    fn drop(&mut self) {
        self.watch(None);
        drop(self.input.take());
        if crate::proc::wait(&mut self.child, Duration::from_secs(5)).is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
