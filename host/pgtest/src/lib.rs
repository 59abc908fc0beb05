//! A real PostgreSQL server for rollgate's tests: Debian's `postgresql` (the highest
//! `/usr/lib/postgresql/*/bin`, or `ROLLGATE_PG_BIN`), initialised into a fresh temp dir and
//! started on a free 127.0.0.1 port by the tests themselves, never the system's service.
//!
//! - [`Cluster::shared`]: one server per test process, for tests that only need a database
//!   each ([`Cluster::database`]).
//! - [`Cluster::own`]: a server of the test's own, for tests that stop, restart or kill it.
//!
//! Both skip (return `None`, saying so loudly on stderr) when PostgreSQL is not installed,
//! unless `ROLLGATE_REQUIRE_POSTGRES` is set (CI sets it), and panic when it is set or the
//! server does not start.
//!
//! The server trusts every connection on loopback; its superuser is `rollgate`. Test
//! settings: `fsync=off`, `synchronous_commit=off`, `full_page_writes=off`,
//! `max_connections=300`, `shared_buffers=64MB`, the Unix socket in the temp dir, the log in
//! `postgres.log` there. As root (CI), `initdb` and the server run as the `postgres` user
//! (PostgreSQL refuses root) and the temp dir is handed to it.
//!
//! Every process is stopped by its PID and every wait is bounded. A test process killed
//! outright (SIGKILL) cannot run its own cleanup: a watchdog per cluster (`watchdog.rs`)
//! stops the server and removes its directory then.
//!
//! Files: `bin.rs` (finding the binaries, the user to run them as), `proc.rs` (bounded
//! commands, signals, `/proc`), `watchdog.rs`; tests in `tests.rs`.

mod bin;
mod proc;
mod watchdog;

#[cfg(test)]
mod tests;

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use bin::RunAs;
use proc::Proc;
use watchdog::Watchdog;

/// The superuser `initdb` creates; every URL [`Cluster::database`] returns connects as it.
pub const USER: &str = "rollgate";

/// How long a server may take to accept connections after it was started.
const READY_WITHIN: Duration = Duration::from_secs(30);
/// How long a fast shutdown may take before the server is killed.
const STOP_WITHIN: Duration = Duration::from_secs(30);
/// How long an immediate shutdown (SIGQUIT), or the children of a killed postmaster, may
/// take to end.
const QUIT_WITHIN: Duration = Duration::from_secs(10);
/// How long `initdb` may take.
const INITDB_WITHIN: Duration = Duration::from_secs(120);
/// How long one `psql` call may take.
const PSQL_WITHIN: Duration = Duration::from_secs(60);
/// How many free ports `start` tries when another process takes the one it picked.
const PORT_ATTEMPTS: u32 = 5;
/// The server's settings for tests (speed over durability: the data is thrown away).
const SETTINGS: [&str; 6] = [
    "listen_addresses=127.0.0.1",
    "fsync=off",
    "synchronous_commit=off",
    "full_page_writes=off",
    "max_connections=300",
    "shared_buffers=64MB",
];

/// One running PostgreSQL server: its own temp dir (data directory, Unix socket, log),
/// listening on a 127.0.0.1 port. Dropping it stops the server (immediate shutdown, by its
/// PID, SIGKILL after 10 s) and removes the directory.
pub struct Cluster {
    bin: PathBuf,
    run_as: Option<RunAs>,
    dir: tempfile::TempDir,
    port: u16,
    state: Mutex<State>,
    databases: AtomicU64,
}

/// What changes while a cluster is stopped and started.
struct State {
    /// The running postmaster, `None` while stopped or after `kill`.
    postmaster: Option<Child>,
    /// `None` only once torn down.
    watchdog: Option<Watchdog>,
}

/// Why a start failed: the port was taken (try another) or anything else.
enum Launch {
    PortTaken(String),
    Failed(String),
}

impl Cluster {
    /// `initdb` into a fresh temp dir, start the server on a free 127.0.0.1 port and wait
    /// until it accepts connections (at most 30 s; then `Err` with the server log's tail).
    /// When another process takes the port before the server binds it, start again on
    /// another (5 tries). Blocks the calling thread for the whole start (about a second).
    pub fn start() -> Result<Cluster, String> {
        let bin = bin::find()?.ok_or_else(|| {
            "PostgreSQL is not installed: no /usr/lib/postgresql/*/bin holding initdb, postgres, \
             pg_isready and psql (install Debian's postgresql package, as .ci/run does, or set \
             ROLLGATE_PG_BIN to its bin directory)"
                .to_string()
        })?;
        Self::start_with(bin)
    }

    /// One cluster per test process, started on first use and stopped at process exit (an
    /// `atexit` handler: immediate shutdown, then the directory is removed). If the test
    /// process is killed outright (SIGKILL), no handler runs: the cluster's watchdog (a
    /// small `sh` that sees the process's end) stops the server by its PID within about
    /// 10 s and removes the directory.
    ///
    /// `None` when PostgreSQL is not installed and `ROLLGATE_REQUIRE_POSTGRES` is unset,
    /// after saying so loudly on stderr ("!!! skipping: PostgreSQL not installed — TEST did
    /// not run …"): the test returns early. Panics with the reason when it is required (CI
    /// sets `ROLLGATE_REQUIRE_POSTGRES=1`), when `ROLLGATE_PG_BIN` is wrong, or when the
    /// server does not start (then every later call panics too, without trying again). It
    /// is shared, so it cannot be stopped or killed: [`Cluster::own`] can.
    pub fn shared() -> Option<&'static Cluster> {
        static SHARED: OnceLock<Result<Cluster, String>> = OnceLock::new();
        extern "C" fn stop_shared() {
            if let Some(Ok(cluster)) = SHARED.get() {
                cluster.teardown();
            }
        }
        let bin = installed()?;
        let shared = SHARED.get_or_init(|| {
            let cluster = Self::start_with(bin)?;
            // SAFETY: stop_shared is a plain function that never unwinds (teardown ignores
            // every error and takes a poisoned lock as it is).
            if unsafe { libc::atexit(stop_shared) } != 0 {
                return Err("could not register the shared cluster's atexit handler".into());
            }
            Ok(cluster)
        });
        match shared {
            Ok(cluster) => Some(cluster),
            Err(e) => panic!("the shared PostgreSQL cluster for the tests did not start: {e}"),
        }
    }

    /// Like [`Cluster::shared`] but a cluster of the test's own (for tests that stop,
    /// restart or kill it): `Some(Cluster::start())`, with the same rules for skipping and
    /// panicking. Dropping it stops it and removes its directory.
    pub fn own() -> Option<Cluster> {
        let bin = installed()?;
        match Self::start_with(bin) {
            Ok(cluster) => Some(cluster),
            Err(e) => panic!("a PostgreSQL cluster for the test did not start: {e}"),
        }
    }

    /// Create a fresh, empty database with a name unique in this cluster and return its URL,
    /// `postgres://rollgate@127.0.0.1:PORT/NAME` (no password: the server trusts loopback).
    pub fn database(&self) -> Result<String, String> {
        let n = self.databases.fetch_add(1, Ordering::Relaxed) + 1;
        let name = format!("rollgate_test_{n}");
        self.psql("postgres", &format!("CREATE DATABASE {name}"))?;
        Ok(format!("postgres://{USER}@127.0.0.1:{}/{name}", self.port))
    }

    /// Run `sql` with `psql` in `database` (a name in this cluster, or a URL such as
    /// [`Cluster::database`] returns) and return what it printed: unaligned, tuples only,
    /// fields separated by `|`, one row a line, the final newline removed. Stops at the
    /// first error and returns it (as does a server that does not answer). At most 60 s.
    pub fn psql(&self, database: &str, sql: &str) -> Result<String, String> {
        let mut cmd = Command::new(self.bin.join("psql"));
        cmd.args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql]);
        if database.starts_with("postgres://") || database.starts_with("postgresql://") {
            cmd.arg("-d").arg(database);
        } else {
            cmd.args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", USER])
                .arg("-d")
                .arg(database);
        }
        // Nothing from the caller's environment changes where or how psql connects.
        for var in [
            "PGOPTIONS",
            "PGSERVICE",
            "PGSERVICEFILE",
            "PGSSLMODE",
            "PGPASSFILE",
        ] {
            cmd.env_remove(var);
        }
        cmd.env("PGCONNECT_TIMEOUT", "10");
        let out = proc::run(&mut cmd, PSQL_WITHIN, "psql")?;
        if !out.status.success() {
            return Err(format!(
                "psql in {database} ({sql}): {} ({})",
                String::from_utf8_lossy(&out.stderr).trim(),
                out.status
            ));
        }
        let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
        if text.ends_with('\n') {
            text.pop();
        }
        Ok(text)
    }

    /// The 127.0.0.1 port the server listens on (the same across restarts).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The postmaster's PID; `None` while the server is stopped or after [`Cluster::kill`].
    pub fn pid(&self) -> Option<u32> {
        self.lock().postmaster.as_ref().map(Child::id)
    }

    /// The cluster's temp dir (the data directory is `data/` in it, the log `postgres.log`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Stop the server ([`Cluster::stop`]) and start it again on the same port and data
    /// directory ([`Cluster::start_again`]): "PostgreSQL restarted under load".
    pub fn restart(&mut self) -> Result<(), String> {
        self.stop()?;
        self.start_again()
    }

    /// Stop the server: a fast shutdown (SIGINT to the postmaster: open transactions roll
    /// back, clients are disconnected, everything committed is written), waiting until it
    /// has exited. At most 30 s: then it is killed and this is an `Err` with the log's tail.
    /// `Ok` when it is not running.
    pub fn stop(&mut self) -> Result<(), String> {
        let mut state = self.lock();
        let Some(mut postmaster) = state.postmaster.take() else {
            return Ok(());
        };
        let pid = postmaster.id();
        proc::signal(pid, libc::SIGINT);
        let stopped = proc::wait(&mut postmaster, STOP_WITHIN).is_some();
        if !stopped {
            quit(&mut postmaster);
        }
        state.watch(None);
        drop(state);
        if stopped {
            Ok(())
        } else {
            Err(format!(
                "PostgreSQL (pid {pid}) did not stop within {} s of a fast shutdown and was \
                 killed; its log ends:\n{}",
                STOP_WITHIN.as_secs(),
                self.log_tail(20)
            ))
        }
    }

    /// Start the stopped (or killed) server again on the same port and data directory and
    /// wait until it accepts connections (after a kill, once it has recovered); at most
    /// 30 s. `Err` when it is running, or with the log's tail when it does not start (the
    /// port taken meanwhile, for one).
    pub fn start_again(&mut self) -> Result<(), String> {
        if self.pid().is_some() {
            return Err(format!(
                "PostgreSQL on port {} is running: stop it before starting it again",
                self.port
            ));
        }
        match self.launch() {
            Ok(()) => Ok(()),
            Err(Launch::PortTaken(e) | Launch::Failed(e)) => Err(e),
        }
    }

    /// SIGKILL the postmaster (a crash: nothing is shut down) and wait for it. Its children
    /// (backends, checkpointer, …) notice and exit on their own; this waits for them too (at
    /// most 10 s), so that [`Cluster::start_again`] finds the shared memory free. Nothing
    /// when the server is not running.
    ///
    /// With `synchronous_commit=off`, a commit is acknowledged before its WAL is written,
    /// so the last commits (within about 3 × `wal_writer_delay`, 600 ms) may be lost by a
    /// kill. A test that asserts that a commit survives a kill turns it on for its database
    /// first: `ALTER DATABASE name SET synchronous_commit = on` (new sessions then wait for
    /// the WAL write; `fsync=off` still spares the disk).
    pub fn kill(&mut self) {
        let mut state = self.lock();
        let Some(mut postmaster) = state.postmaster.take() else {
            return;
        };
        let children = Proc::children_of(postmaster.id());
        let _ = postmaster.kill();
        let _ = proc::wait(&mut postmaster, QUIT_WITHIN);
        state.watch(None);
        proc::wait_gone(&children, QUIT_WITHIN);
    }

    /// The last `lines` lines of the server's log (for assertion messages).
    pub fn log_tail(&self, lines: usize) -> String {
        let path = self.log_path();
        match std::fs::read(&path) {
            Ok(bytes) => tail(&String::from_utf8_lossy(&bytes), lines),
            Err(e) => format!("(no server log at {}: {e})", path.display()),
        }
    }

    fn start_with(bin: PathBuf) -> Result<Cluster, String> {
        let run_as = bin::run_as()?;
        let dir = tempfile::Builder::new()
            .prefix("rollgate-pg-")
            .tempdir()
            .map_err(|e| format!("could not create a temp dir for PostgreSQL: {e}"))?;
        if let Some(RunAs { uid, gid }) = run_as {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).map_err(|e| {
                format!(
                    "could not hand {} to the postgres user: {e}",
                    dir.path().display()
                )
            })?;
        }
        let mut cluster = Cluster {
            bin,
            run_as,
            state: Mutex::new(State {
                postmaster: None,
                watchdog: None,
            }),
            port: 0,
            databases: AtomicU64::new(0),
            dir,
        };
        cluster.initdb()?;
        let watchdog = Watchdog::spawn(cluster.dir(), &cluster.data())?;
        cluster.lock().watchdog = Some(watchdog);
        for attempt in 1..=PORT_ATTEMPTS {
            cluster.port = free_port()?;
            match cluster.launch() {
                Ok(()) => return Ok(cluster),
                Err(Launch::PortTaken(e)) if attempt == PORT_ATTEMPTS => {
                    return Err(format!("{e} ({PORT_ATTEMPTS} ports tried)"));
                }
                Err(Launch::PortTaken(_)) => {}
                Err(Launch::Failed(e)) => return Err(e),
            }
        }
        Err("no port tried".into())
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("postgres.log")
    }

    /// A command for one of the server's binaries, run as the server's user, in its dir.
    fn server_command(&self, tool: &str) -> Command {
        use std::os::unix::process::CommandExt as _;
        let mut cmd = Command::new(self.bin.join(tool));
        // The server's user may not be able to enter the caller's current directory.
        cmd.current_dir(self.dir.path());
        if let Some(RunAs { uid, gid }) = self.run_as {
            // std drops the supplementary groups too when it changes the uid as root.
            cmd.uid(uid).gid(gid);
        }
        cmd
    }

    fn initdb(&self) -> Result<(), String> {
        let mut cmd = self.server_command("initdb");
        cmd.arg("-D").arg(self.data()).args([
            "-U",
            USER,
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        ]);
        let out = proc::run(&mut cmd, INITDB_WITHIN, "initdb")?;
        if out.status.success() {
            return Ok(());
        }
        let hint = if self.run_as.is_some() {
            " (as root, initdb and the server run as the postgres user, which must be able to \
             reach that directory: check the permissions of TMPDIR and its parents)"
        } else {
            ""
        };
        Err(format!(
            "initdb {} failed ({}){hint}: {}",
            self.data().display(),
            out.status,
            tail(&String::from_utf8_lossy(&out.stderr), 20)
        ))
    }

    /// Start the postmaster on `self.port` and wait until it accepts connections.
    fn launch(&self) -> Result<(), Launch> {
        let failed = |e: String| Launch::Failed(e);
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .map_err(|e| failed(format!("could not open the server log: {e}")))?;
        // Where this start's lines begin, to tell its errors from an earlier run's.
        let from = log.metadata().map(|m| m.len()).unwrap_or(0);
        let log_err = log
            .try_clone()
            .map_err(|e| failed(format!("could not open the server log: {e}")))?;
        let mut cmd = self.server_command("postgres");
        cmd.arg("-D")
            .arg(self.data())
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-c")
            .arg(format!(
                "unix_socket_directories={}",
                self.dir.path().display()
            ));
        for setting in SETTINGS {
            cmd.arg("-c").arg(setting);
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .map_err(|e| failed(format!("could not start postgres: {e}")))?;
        let pid = child.id();
        let mut state = self.lock();
        state.postmaster = Some(child);
        state.watch(Some(pid));
        let deadline = Instant::now() + READY_WITHIN;
        loop {
            let exited = match state.postmaster.as_mut().map(Child::try_wait) {
                Some(Ok(None)) => None,
                Some(Ok(Some(status))) => Some(status.to_string()),
                Some(Err(e)) => Some(e.to_string()),
                None => Some("gone".into()),
            };
            if let Some(status) = exited {
                state.postmaster = None;
                state.watch(None);
                drop(state);
                let said = self.log_since(from);
                let e = format!(
                    "postgres (port {}) exited ({status}) before accepting connections; its \
                     log says:\n{}",
                    self.port,
                    tail(&said, 20)
                );
                return Err(if said.contains("Address already in use") {
                    Launch::PortTaken(e)
                } else {
                    Launch::Failed(e)
                });
            }
            if self.ready() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                if let Some(mut postmaster) = state.postmaster.take() {
                    quit(&mut postmaster);
                }
                state.watch(None);
                drop(state);
                return Err(failed(format!(
                    "postgres (port {}) did not accept connections within {} s and was \
                     stopped; its log ends:\n{}",
                    self.port,
                    READY_WITHIN.as_secs(),
                    tail(&self.log_since(from), 20)
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether the server accepts connections now (`pg_isready` exits 0).
    fn ready(&self) -> bool {
        let mut cmd = Command::new(self.bin.join("pg_isready"));
        cmd.args(["-q", "-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-U", USER, "-d", "postgres", "-t", "2"]);
        proc::run(&mut cmd, Duration::from_secs(5), "pg_isready")
            .is_ok_and(|out| out.status.success())
    }

    /// The log written since byte `from`.
    fn log_since(&self, from: u64) -> String {
        let bytes = std::fs::read(self.log_path()).unwrap_or_default();
        let from = usize::try_from(from).unwrap_or(0).min(bytes.len());
        String::from_utf8_lossy(&bytes[from..]).into_owned()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding it leaves nothing half-changed that matters here.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stop the server (immediate shutdown, SIGKILL after 10 s, its children too then),
    /// end the watchdog and remove the directory. Never panics (it runs at exit too).
    fn teardown(&self) {
        let mut state = self.lock();
        if let Some(mut postmaster) = state.postmaster.take() {
            quit(&mut postmaster);
        }
        state.watch(None);
        drop(state.watchdog.take());
        let _ = std::fs::remove_dir_all(self.dir.path());
    }
}

impl Drop for Cluster {
    /// Stop the server by its PID (SIGQUIT: immediate shutdown; SIGKILL after 10 s), wait
    /// for it, remove the directory.
    fn drop(&mut self) {
        self.teardown();
    }
}

impl State {
    fn watch(&mut self, postmaster: Option<u32>) {
        if let Some(watchdog) = &mut self.watchdog {
            watchdog.watch(postmaster);
        }
    }
}

/// Immediate shutdown of a postmaster: SIGQUIT (it ends its children and exits), then, if it
/// is still there after 10 s, SIGKILL to it and to the children it had.
fn quit(postmaster: &mut Child) {
    let children = Proc::children_of(postmaster.id());
    proc::signal(postmaster.id(), libc::SIGQUIT);
    if proc::wait(postmaster, QUIT_WITHIN).is_some() {
        return;
    }
    let _ = postmaster.kill();
    let _ = proc::wait(postmaster, QUIT_WITHIN);
    for child in children.iter().filter(|c| c.alive()) {
        proc::signal(child.pid, libc::SIGKILL);
    }
}

/// The bin directory, or `None` after saying loudly that the test is skipped; panics when
/// PostgreSQL is required (`ROLLGATE_REQUIRE_POSTGRES`) or `ROLLGATE_PG_BIN` is wrong.
fn installed() -> Option<PathBuf> {
    let required =
        std::env::var_os("ROLLGATE_REQUIRE_POSTGRES").is_some_and(|v| !v.is_empty() && v != "0");
    let test = std::thread::current().name().map(str::to_string);
    decide(
        bin::find(),
        required,
        test.as_deref().unwrap_or("this test"),
    )
}

/// What [`installed`] does with what it found.
fn decide(found: Result<Option<PathBuf>, String>, required: bool, test: &str) -> Option<PathBuf> {
    match found {
        Ok(Some(bin)) => Some(bin),
        Err(e) => panic!("{test}: {e}"),
        Ok(None) => {
            assert!(
                !required,
                "{test}: ROLLGATE_REQUIRE_POSTGRES is set but PostgreSQL is not installed (no \
                 /usr/lib/postgresql/*/bin/initdb): install Debian's postgresql package, as \
                 .ci/run does, or set ROLLGATE_PG_BIN to its bin directory"
            );
            eprintln!(
                "\n!!! skipping: PostgreSQL not installed — {test} did not run (install \
                 Debian's postgresql package, as .ci/run does, or set ROLLGATE_PG_BIN; set \
                 ROLLGATE_REQUIRE_POSTGRES=1 to make this a failure) !!!\n"
            );
            None
        }
    }
}

/// A port nobody listens on right now (the server binds it a moment later; `start` tries
/// another if someone else was faster).
fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free port on 127.0.0.1: {e}"))
}

/// The last `lines` lines of `text`.
fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
