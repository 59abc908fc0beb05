//! The harness against the real server: databases, restart, kill, cleanup (by Drop, at exit
//! and after a SIGKILL of the test process).

use super::*;

/// Poll `done` until it holds or `within` has passed; whether it held.
fn eventually(within: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The database's name in a URL from `Cluster::database`.
fn name(url: &str) -> &str {
    url.rsplit('/').next().unwrap()
}

#[test]
fn without_postgresql_a_test_skips_unless_it_is_required() {
    let bin = PathBuf::from("/pg/bin");
    assert_eq!(decide(Ok(Some(bin.clone())), true, "t"), Some(bin));
    assert_eq!(decide(Ok(None), false, "t"), None);
    let required = std::panic::catch_unwind(|| decide(Ok(None), true, "t")).unwrap_err();
    let said = required.downcast_ref::<String>().unwrap();
    assert!(said.contains("ROLLGATE_REQUIRE_POSTGRES is set but PostgreSQL is not installed"));
    let wrong = std::panic::catch_unwind(|| decide(Err("ROLLGATE_PG_BIN=x".into()), false, "t"));
    let said = wrong.unwrap_err().downcast_ref::<String>().unwrap().clone();
    assert_eq!(said, "t: ROLLGATE_PG_BIN=x");
}

#[test]
fn two_databases_answer_and_are_apart() {
    let started = Instant::now();
    let Some(cluster) = Cluster::own() else {
        return;
    };
    eprintln!(
        "cluster started (initdb + start) in {:?}",
        started.elapsed()
    );
    let created = Instant::now();
    let a = cluster.database().unwrap();
    eprintln!("database() in {:?}", created.elapsed());
    let b = cluster.database().unwrap();
    let prefix = format!("postgres://rollgate@127.0.0.1:{}/", cluster.port());
    assert!(a.starts_with(&prefix) && b.starts_with(&prefix), "{a} {b}");
    assert_ne!(a, b);
    for url in [&a, &b] {
        assert_eq!(cluster.psql(url, "SELECT 1").unwrap(), "1");
        assert_eq!(
            cluster.psql(url, "SELECT current_database()").unwrap(),
            name(url)
        );
    }
    // Fresh and separate: a table made in one is not in the other.
    cluster.psql(&a, "CREATE TABLE t (x int)").unwrap();
    let err = cluster.psql(&b, "SELECT * FROM t").unwrap_err();
    assert!(err.contains("relation \"t\" does not exist"), "{err}");
    // The settings the tests rely on are in force.
    let settings = cluster
        .psql(
            &a,
            "SELECT current_setting('fsync'), current_setting('max_connections'), \
             current_setting('shared_buffers'), current_setting('listen_addresses'), \
             current_user",
        )
        .unwrap();
    assert_eq!(settings, "off|300|64MB|127.0.0.1|rollgate");
}

#[test]
fn restart_keeps_a_row_on_the_same_port() {
    let Some(mut cluster) = Cluster::own() else {
        return;
    };
    let db = cluster.database().unwrap();
    cluster
        .psql(
            &db,
            "CREATE TABLE t (x text); INSERT INTO t VALUES ('kept')",
        )
        .unwrap();
    let (port, before) = (cluster.port(), cluster.pid().unwrap());
    let started = Instant::now();
    cluster.restart().unwrap();
    eprintln!("restart in {:?}", started.elapsed());
    let after = cluster.pid().unwrap();
    assert_ne!(before, after, "a new postmaster");
    assert_eq!(cluster.port(), port);
    assert_eq!(cluster.psql(&db, "SELECT x FROM t").unwrap(), "kept");
}

#[test]
fn stop_and_start_again_separately() {
    let Some(mut cluster) = Cluster::own() else {
        return;
    };
    let db = cluster.database().unwrap();
    let err = cluster.start_again().unwrap_err();
    assert!(err.contains("is running"), "{err}");
    cluster.stop().unwrap();
    assert_eq!(cluster.pid(), None);
    cluster.stop().unwrap(); // stopping a stopped server is nothing
    let err = cluster.psql(&db, "SELECT 1").unwrap_err();
    assert!(err.contains("psql in"), "{err}");
    cluster.start_again().unwrap();
    assert_eq!(cluster.psql(&db, "SELECT 1").unwrap(), "1");
    assert!(
        cluster
            .log_tail(50)
            .contains("database system is shut down"),
        "{}",
        cluster.log_tail(50)
    );
}

#[test]
fn kill_fails_new_queries_and_start_again_recovers_commits() {
    let Some(mut cluster) = Cluster::own() else {
        return;
    };
    let db = cluster.database().unwrap();
    // A commit must be written before it is acknowledged to survive a kill (see `kill`).
    cluster
        .psql(
            "postgres",
            &format!("ALTER DATABASE {} SET synchronous_commit = on", name(&db)),
        )
        .unwrap();
    cluster
        .psql(&db, "CREATE TABLE t (x int); INSERT INTO t VALUES (42)")
        .unwrap();
    let pid = cluster.pid().unwrap();
    let postmaster = Proc::read(pid).unwrap();
    let children = Proc::children_of(pid);
    assert!(!children.is_empty(), "a postmaster has children");
    cluster.kill();
    assert_eq!(cluster.pid(), None);
    assert!(!postmaster.alive());
    assert!(
        !children.iter().any(Proc::alive),
        "kill waits for the children"
    );
    let err = cluster.psql(&db, "SELECT 1").unwrap_err();
    assert!(err.contains("Connection refused"), "{err}");
    cluster.kill(); // killing a dead server is nothing
    cluster.start_again().unwrap();
    assert_eq!(cluster.psql(&db, "SELECT x FROM t").unwrap(), "42");
    assert!(
        cluster.log_tail(100).contains("not properly shut down"),
        "recovered from a crash: {}",
        cluster.log_tail(100)
    );
}

#[test]
fn drop_leaves_no_process_and_no_directory() {
    let Some(cluster) = Cluster::own() else {
        return;
    };
    let pid = cluster.pid().unwrap();
    let postmaster = Proc::read(pid).unwrap();
    let children = Proc::children_of(pid);
    let dir = cluster.dir().to_path_buf();
    assert!(dir.join("data/PG_VERSION").is_file());
    drop(cluster);
    assert!(!postmaster.alive(), "postmaster {pid} still runs");
    assert!(!children.iter().any(Proc::alive), "{children:?}");
    assert!(!dir.exists(), "{} is still there", dir.display());
}

#[test]
fn shared_is_one_cluster() {
    let Some(first) = Cluster::shared() else {
        return;
    };
    let second = Cluster::shared().unwrap();
    assert!(std::ptr::eq(first, second));
    assert!(first.pid().is_some());
    let db = second.database().unwrap();
    assert_eq!(first.psql(&db, "SELECT 1").unwrap(), "1");
}

/// Run the ignored helper test `name` in a child test process that writes
/// "POSTMASTER_PID DIR" to a file once it holds a cluster; return the child and both.
fn child_with_cluster(name: &str) -> Option<(Child, u32, PathBuf, tempfile::TempDir)> {
    bin::find().ok()??;
    let report = tempfile::tempdir().unwrap();
    let file = report.path().join("report");
    let output = report.path().join("output");
    let out = std::fs::File::create(&output).unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--ignored", "--exact", name, "--nocapture"])
        .env("ROLLGATE_PGTEST_REPORT", &file)
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap();
    let seen = eventually(Duration::from_secs(60), || {
        file.exists() || child.try_wait().unwrap().is_some()
    });
    let text = std::fs::read_to_string(&file).unwrap_or_default();
    if !(seen && file.exists()) {
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "{name} did not report its cluster; it said:\n{}",
            std::fs::read_to_string(&output).unwrap_or_default()
        );
    }
    let (pid, dir) = text.trim().split_once(' ').unwrap();
    Some((child, pid.parse().unwrap(), PathBuf::from(dir), report))
}

/// In the child: say which cluster it holds (written whole, then renamed into place).
fn report(cluster: &Cluster) -> bool {
    let Some(file) = std::env::var_os("ROLLGATE_PGTEST_REPORT") else {
        return false;
    };
    let file = PathBuf::from(file);
    let text = format!("{} {}", cluster.pid().unwrap(), cluster.dir().display());
    std::fs::write(file.with_extension("tmp"), text).unwrap();
    std::fs::rename(file.with_extension("tmp"), file).unwrap();
    true
}

#[test]
#[ignore = "run by a_sigkilled_test_process_leaves_no_server in a child process"]
fn child_holds_a_cluster_until_killed() {
    let Some(cluster) = Cluster::own() else {
        return;
    };
    if report(&cluster) {
        // The parent SIGKILLs this process long before.
        std::thread::sleep(Duration::from_secs(60));
    }
}

#[test]
fn a_sigkilled_test_process_leaves_no_server() {
    let Some((mut child, pid, dir, _report)) =
        child_with_cluster("tests::child_holds_a_cluster_until_killed")
    else {
        return;
    };
    let postmaster = Proc::read(pid).unwrap();
    child.kill().unwrap(); // SIGKILL: no Drop, no atexit
    child.wait().unwrap();
    let gone = eventually(Duration::from_secs(20), || {
        !postmaster.alive() && !dir.exists()
    });
    assert!(
        gone,
        "the watchdog left postmaster {pid} (alive: {}) or {} (exists: {})",
        postmaster.alive(),
        dir.display(),
        dir.exists()
    );
}

#[test]
#[ignore = "run by the_shared_cluster_stops_at_exit in a child process"]
fn child_uses_the_shared_cluster() {
    if let Some(cluster) = Cluster::shared()
        && report(cluster)
        && let Some(file) = std::env::var_os("ROLLGATE_PGTEST_REPORT")
    {
        // Exit (and stop the cluster) only once the parent has read the postmaster, else it
        // may look for a process already gone.
        let go = PathBuf::from(file).with_extension("go");
        eventually(Duration::from_secs(60), || go.exists());
    }
}

#[test]
fn the_shared_cluster_stops_at_exit() {
    let Some((mut child, pid, dir, report)) =
        child_with_cluster("tests::child_uses_the_shared_cluster")
    else {
        return;
    };
    let postmaster = Proc::read(pid).unwrap();
    std::fs::write(report.path().join("report.go"), "").unwrap();
    let status = proc::wait(&mut child, Duration::from_secs(60));
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
    // Stopped by the child's atexit handler before it exited, not later by the watchdog.
    assert!(!postmaster.alive(), "postmaster {pid} outlived the process");
    assert!(!dir.exists(), "{} outlived the process", dir.display());
}
