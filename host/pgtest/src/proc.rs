//! Processes: commands run with a time bound, signals by PID, and what `/proc` says about a
//! PID (to tell a live process from a reused PID or a zombie).

use std::io::Read;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

/// How often a wait looks again.
pub(crate) const POLL: Duration = Duration::from_millis(10);

/// Run `cmd` to completion with its output captured, killing it (by its PID, through its
/// `Child`) if it takes longer than `within`.
pub(crate) fn run(cmd: &mut Command, within: Duration, what: &str) -> Result<Output, String> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{what}: could not start it: {e}"))?;
    // Read both pipes while waiting, so a chatty command cannot block on a full pipe.
    let readers = [
        child.stdout.take().map(|mut out| {
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                let _ = out.read_to_end(&mut buf);
                buf
            })
        }),
        child.stderr.take().map(|mut err| {
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                let _ = err.read_to_end(&mut buf);
                buf
            })
        }),
    ];
    let status = wait(&mut child, within);
    let status = match status {
        Some(status) => status,
        None => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "{what}: did not finish within {:.1} s; it was killed",
                within.as_secs_f64()
            ));
        }
    };
    let [stdout, stderr] = readers.map(|r| r.and_then(|h| h.join().ok()).unwrap_or_default());
    Ok(Output {
        status,
        stdout,
        stderr,
    })
}

/// Wait up to `within` for `child` to exit; `None` if it is still running then.
pub(crate) fn wait(child: &mut Child, within: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + within;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(POLL),
            // Still running at the deadline, or not ours to wait for any more.
            Ok(None) | Err(_) => return None,
        }
    }
}

/// Send `signal` to `pid`; false when there is no such process (or it is not ours).
pub(crate) fn signal(pid: u32, signal: libc::c_int) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: kill has no memory-safety preconditions; pid > 0 names one process.
    pid > 0 && unsafe { libc::kill(pid, signal) } == 0
}

/// A process as `/proc/PID/stat` shows it: enough to find the children of a PID and to
/// recognise the same process later (a PID can be reused; its start time cannot).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Proc {
    pub pid: u32,
    pub ppid: u32,
    /// Clock ticks after boot at which it started.
    pub start: u64,
    pub zombie: bool,
}

impl Proc {
    /// The process `pid` now, if there is one.
    pub(crate) fn read(pid: u32) -> Option<Proc> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // "pid (comm) state ppid …": comm may hold spaces and parentheses; it ends at the
        // last ')'. After it, field 3 is the state, 4 the parent and 22 the start time.
        let rest = stat.get(stat.rfind(')')? + 1..)?;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        Some(Proc {
            pid,
            ppid: fields.get(1)?.parse().ok()?,
            start: fields.get(19)?.parse().ok()?,
            zombie: *fields.first()? == "Z",
        })
    }

    /// Whether this very process (same PID, same start time) still runs (a zombie does
    /// not: it has exited and holds nothing but its PID).
    pub(crate) fn alive(&self) -> bool {
        Proc::read(self.pid).is_some_and(|now| now.start == self.start && !now.zombie)
    }

    /// The processes whose parent is `pid` now.
    pub(crate) fn children_of(pid: u32) -> Vec<Proc> {
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
            .filter_map(Proc::read)
            .filter(|p| p.ppid == pid)
            .collect()
    }
}

/// Wait up to `within` until none of `procs` is alive; whether they are all gone.
pub(crate) fn wait_gone(procs: &[Proc], within: Duration) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if !procs.iter().any(Proc::alive) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(POLL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_over_its_bound_is_killed_and_reported() {
        let started = Instant::now();
        let err = run(
            Command::new("sleep").arg("30"),
            Duration::from_millis(200),
            "sleep",
        )
        .unwrap_err();
        assert!(err.contains("did not finish within 0.2 s"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn output_and_status_come_back() {
        let out = run(
            Command::new("sh").args(["-c", "echo out; echo err >&2; exit 3"]),
            Duration::from_secs(30),
            "sh",
        )
        .unwrap();
        assert_eq!(out.status.code(), Some(3));
        assert_eq!(out.stdout, b"out\n");
        assert_eq!(out.stderr, b"err\n");
    }

    #[test]
    fn proc_knows_our_children_and_when_they_are_gone() {
        let mut child = Command::new("sleep").arg("30").spawn().unwrap();
        let me = std::process::id();
        let kids = Proc::children_of(me);
        let kid = *kids.iter().find(|p| p.pid == child.id()).unwrap();
        assert!(kid.alive());
        assert!(signal(child.id(), libc::SIGKILL));
        // Killed but not reaped: a zombie, which no longer counts as alive.
        assert!(wait_gone(&[kid], Duration::from_secs(10)));
        child.wait().unwrap();
        assert!(!signal(kid.pid, 0) || Proc::read(kid.pid).is_some_and(|p| p.start != kid.start));
    }
}
