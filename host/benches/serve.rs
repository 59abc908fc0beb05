//! Server-mode scale: `rollgate serve` with N synthetic rollouts on the replay backend, each
//! verifying its first phase every 10 s (the threshold plugin over a recording, then the
//! default failure policy), measured from outside the process.
//!
//! For each N it prints the steady-state CPU (cores busy), RSS and RSS per rollout above a
//! one-rollout baseline, the p50/p99 scheduler lag (from the server's own
//! `rollgate_scheduler_lag_seconds` histogram, over the measuring window only) and
//! measurements per second. The targets: 100,000 rollouts at a 10 s interval on this
//! 2-core machine with p99 lag under 100 ms, at most 20 KB per rollout and at most 1.5
//! cores. Then the restart: the server is killed (SIGKILL) after the window and started
//! again on the same store; the table shows how long until it is ready and until every
//! run has measured again (the new process's `rollgate_measurements_total` reaches N:
//! each run resumes and measures once more — `restart-ready-s` and `restart-s` in the
//! `perf:` line; a resumed run measures when its interval since its last measurement
//! ends, so `restart-s` cannot be under the 10 s interval).
//!
//! `cargo bench --bench serve` runs N = 1,000, 20,000, 50,000, 100,000 (a spec file holds a
//! thousand rollouts: 100 files at 100,000); `ROLLGATE_BENCH_N=500,2000`
//! picks others, `ROLLGATE_BENCH_WINDOW=30` the measuring window in seconds. The store is
//! `sync=normal` (a process crash loses nothing; see `rollgate serve --help`).
//!
//! Then several runners on one PostgreSQL (a real server started by `rollgate-pgtest`):
//! `ROLLGATE_BENCH_SHARED_N` rollouts (default 20,000; 0 skips it) over
//! `ROLLGATE_BENCH_RUNNERS` servers (default 3) with `--lease-ttl 10s`: per runner its CPU,
//! RSS, runs held and p50/p99 scheduling lag; the database's commits per second; then the
//! takeover after a SIGKILL of one runner: the time until every run it held has measured
//! again under another runner. Targets: p99 lag < 100 ms, takeover ≤ lease ttl + 5 s.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const TOKEN: &str = "bench-reader-token-000001";

struct Server {
    child: Child,
    url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn config(dir: &Path, n: usize) {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/canary");
    std::fs::copy(examples.join("error-ratio.om"), dir.join("error-ratio.om")).expect("copy");
    std::fs::write(
        dir.join("backends.yaml"),
        "apiVersion: rollgate.dev/v1alpha1\nkind: MetricBackend\nmetadata:\n  name: recorded\nspec:\n  replay:\n    file: error-ratio.om\n  shareWindow: 1s\n  maxConcurrency: 64\n",
    )
    .expect("write");
    std::fs::write(
        dir.join("templates.yaml"),
        "apiVersion: rollgate.dev/v1alpha1\nkind: VerificationTemplate\nmetadata:\n  name: error-ratio\nspec:\n  metrics:\n    - name: error-ratio\n      provider:\n        plugin: threshold\n        backend: recorded\n        config:\n          backend: recorded\n          query: http_error_ratio{service=\"checkout\",track=\"canary\"}\n          window: 1m\n          reduce: avg\n          condition: \"< 0.05\"\n      interval: 10s\n      count: 100000\n",
    )
    .expect("write");
    // A thousand rollouts a file: a spec file is read up to 4 MiB (one file of 20,000
    // rollouts, 6.6 MB, would load nothing).
    for (file, chunk) in (0..n).collect::<Vec<_>>().chunks(1_000).enumerate() {
        let mut text = String::with_capacity(chunk.len() * 400);
        for i in chunk {
            text.push_str(&format!(
                "---\napiVersion: rollgate.dev/v1alpha1\nkind: Rollout\nmetadata:\n  name: svc-{i:05}\nspec:\n  stableVersion: v1\n  canaryVersion: v2\n  target:\n    none: {{}}\n  strategy:\n    canary: {{}}\n  phases:\n    - name: canary-10\n      weight: 10\n      verification:\n        templates: [error-ratio]\n    - name: full\n      weight: 100\n"
            ));
        }
        std::fs::write(dir.join(format!("rollouts-{file:03}.yaml")), text).expect("write");
    }
}

fn serve(dir: &Path) -> (Server, Duration) {
    let db = format!("sqlite:{}?sync=normal", dir.join("state.db").display());
    serve_on(dir, &db, &[], "cache")
}

/// `rollgate serve` on the configuration `dir/config` and the store `db`, with `extra`
/// arguments and its own plugin cache `dir/CACHE`; returns once it is ready.
fn serve_on(dir: &Path, db: &str, extra: &[&str], cache: &str) -> (Server, Duration) {
    std::fs::write(dir.join("tokens"), format!("{TOKEN} read-only bench\n")).expect("tokens");
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_rollgate"))
        .arg("serve")
        .arg("--config")
        .arg(dir.join("config"))
        .arg("--db")
        .arg(db)
        .args(extra)
        .args(["--listen", "127.0.0.1:0", "--reload-interval", "1h"])
        .arg("--tokens")
        .arg(dir.join("tokens"))
        .arg("--cache-dir")
        .arg(dir.join(cache))
        .env("ROLLGATE_LOG", "error")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("rollgate serve starts");
    let pipe = child.stderr.take().expect("stderr");
    let mut url = None;
    let mut lines = BufReader::new(pipe).lines();
    for line in lines.by_ref().map_while(Result::ok) {
        if let Some(rest) = line.split("listening on ").nth(1) {
            url = Some(rest.trim().to_string());
        }
        if line.contains("ready:") {
            break;
        }
        if line.contains("not serving") {
            panic!("serve refused to start: {line}");
        }
    }
    let url = url.expect("serve said where it listens");
    // Keep reading its stderr, so that a chatty server never blocks on a full pipe.
    std::thread::spawn(move || lines.for_each(drop));
    (Server { child, url }, started.elapsed())
}

/// (utime + stime in seconds, RSS in bytes) of a process.
fn usage(pid: u32) -> (f64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of stat: 12 and 13 after the state field.
    let hz = 100.0; // USER_HZ on Linux
    let cpu = (ticks(11) + ticks(12)) / hz;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss_kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    (cpu, rss_kb * 1024)
}

fn metrics(url: &str) -> String {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        reqwest::get(format!("{url}/metrics"))
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics text")
    })
}

/// Sum of a counter family's series.
fn counter(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter(|l| l[name.len()..].starts_with(['{', ' ']))
        .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
        .sum()
}

/// Cumulative buckets (le, count) of the lag histogram.
fn lag_buckets(text: &str) -> Vec<(f64, f64)> {
    let prefix = "rollgate_scheduler_lag_seconds_bucket{le=\"";
    text.lines()
        .filter_map(|l| l.strip_prefix(prefix))
        .filter_map(|rest| {
            let (le, count) = rest.split_once("\"} ")?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((le, count.trim().parse().ok()?))
        })
        .collect()
}

/// A quantile from the difference of two cumulative bucket lists, interpolated linearly.
fn quantile(before: &[(f64, f64)], after: &[(f64, f64)], q: f64) -> Option<f64> {
    let delta: Vec<(f64, f64)> = after
        .iter()
        .map(|(le, c)| {
            let b = before
                .iter()
                .find(|(l, _)| l == le)
                .map_or(0.0, |(_, c)| *c);
            (*le, c - b)
        })
        .collect();
    let total = delta.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let mut lower = (0.0, 0.0);
    for (le, c) in &delta {
        if *c >= rank {
            if le.is_infinite() {
                return Some(lower.0);
            }
            let span = c - lower.1;
            let into = if span > 0.0 {
                (rank - lower.1) / span
            } else {
                1.0
            };
            return Some(lower.0 + (le - lower.0) * into);
        }
        lower = (*le, *c);
    }
    None
}

struct Row {
    n: usize,
    startup: Duration,
    cpu: f64,
    rss: u64,
    per_rollout: Option<f64>,
    p50: Option<f64>,
    p99: Option<f64>,
    per_second: f64,
    /// SIGKILL after the window, then `serve` again on the same store: until it is ready,
    /// and until every run has measured again (`None`: not within two minutes).
    restart_ready: Duration,
    restart: Option<Duration>,
}

/// Wait until the servers together measure at least 95 % of the schedule's rate (`n`
/// rollouts every 10 s) over 10 s — the start's burst of first steps and measurements is
/// over — and one more interval; at most 300 s.
fn settle(urls: &[&str], n: usize) {
    let total = || -> f64 {
        urls.iter()
            .map(|u| counter(&metrics(u), "rollgate_measurements_total"))
            .sum()
    };
    let started = Instant::now();
    let mut before = total();
    loop {
        std::thread::sleep(Duration::from_secs(10));
        let now = total();
        if now - before >= 0.95 * n as f64 || started.elapsed() > Duration::from_secs(300) {
            break;
        }
        before = now;
    }
    std::thread::sleep(Duration::from_secs(10));
}

fn measure(n: usize, window: Duration, baseline_rss: Option<u64>) -> Row {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("config")).expect("mkdir");
    config(&dir.path().join("config"), n);
    let (server, startup) = serve(dir.path());
    let pid = server.child.id();
    settle(&[&server.url], n);
    let m0 = metrics(&server.url);
    let (cpu0, _) = usage(pid);
    let t0 = Instant::now();
    std::thread::sleep(window);
    let m1 = metrics(&server.url);
    let (cpu1, rss) = usage(pid);
    let elapsed = t0.elapsed().as_secs_f64();
    let measured =
        counter(&m1, "rollgate_measurements_total") - counter(&m0, "rollgate_measurements_total");
    let (b0, b1) = (lag_buckets(&m0), lag_buckets(&m1));
    // A crash and a restart on the same store: how long until every run measures again.
    drop(server);
    let restarted = Instant::now();
    let (server, restart_ready) = serve(dir.path());
    let restart = loop {
        let measured = counter(&metrics(&server.url), "rollgate_measurements_total");
        if measured >= n as f64 {
            break Some(restarted.elapsed());
        }
        if restarted.elapsed() > Duration::from_secs(120) {
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    drop(server);
    Row {
        n,
        startup,
        cpu: (cpu1 - cpu0) / elapsed,
        rss,
        per_rollout: baseline_rss.map(|b| rss.saturating_sub(b) as f64 / n.max(1) as f64),
        p50: quantile(&b0, &b1, 0.5),
        p99: quantile(&b0, &b1, 0.99),
        per_second: measured / elapsed,
        restart_ready,
        restart,
    }
}

fn main() {
    // `cargo test --benches` runs bench binaries with --bench absent: do nothing then.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let ns: Vec<usize> = std::env::var("ROLLGATE_BENCH_N")
        .ok()
        .map(|v| v.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1_000, 20_000, 50_000, 100_000]);
    let window = Duration::from_secs(
        std::env::var("ROLLGATE_BENCH_WINDOW")
            .ok()
            .and_then(|w| w.parse().ok())
            .unwrap_or(30),
    );
    let baseline = measure(1, Duration::from_secs(3), None);
    println!(
        "baseline: one rollout, RSS {:.1} MiB; measuring {} s per N, once the schedule is met",
        baseline.rss as f64 / 1048576.0,
        window.as_secs()
    );
    println!(
        "| rollouts | start-up | CPU (cores) | RSS | RSS / rollout | lag p50 | lag p99 | measurements/s | restart: ready | restart: all measured |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let ms = |v: Option<f64>| v.map_or("-".to_string(), |s| format!("{:.1} ms", s * 1e3));
    let mut lines = Vec::new();
    for n in ns {
        let r = measure(n, window, Some(baseline.rss));
        // One line a script can read per N, printed after the table.
        lines.push(format!(
            "perf: serve n={} startup-s={:.1} restart-ready-s={:.1} restart-s={} cores={:.2} rss-kb-per-rollout={} lag-p99-ms={}",
            r.n,
            r.startup.as_secs_f64(),
            r.restart_ready.as_secs_f64(),
            r.restart
                .map_or("-".to_string(), |t| format!("{:.1}", t.as_secs_f64())),
            r.cpu,
            r.per_rollout
                .map_or("-".to_string(), |b| format!("{:.1}", b / 1000.0)),
            r.p99.map_or("-".to_string(), |s| format!("{:.1}", s * 1e3)),
        ));
        println!(
            "| {} | {:.1} s | {:.2} | {:.0} MiB | {} | {} | {} | {:.0} | {:.1} s | {} |",
            r.n,
            r.startup.as_secs_f64(),
            r.cpu,
            r.rss as f64 / 1048576.0,
            r.per_rollout
                .map_or("-".to_string(), |b| format!("{:.1} KB", b / 1000.0)),
            ms(r.p50),
            ms(r.p99),
            r.per_second,
            r.restart_ready.as_secs_f64(),
            r.restart
                .map_or("not within 120 s".to_string(), |t| format!(
                    "{:.1} s",
                    t.as_secs_f64()
                )),
        );
    }
    for line in lines {
        println!("{line}");
    }
    shared_postgres();
}

/// One runner of the shared-database part.
struct Runner {
    server: Server,
    id: i64,
}

/// `SELECT …` on the bench's database through psql: the single value it prints.
fn scalar(cluster: &rollgate_pgtest::Cluster, url: &str, sql: &str) -> f64 {
    cluster
        .psql(url, sql)
        .expect("psql")
        .trim()
        .parse()
        .unwrap_or(0.0)
}

/// Several `rollgate serve` on one PostgreSQL: their share, lag, CPU and RSS, the
/// database's commits per second, and the takeover after a SIGKILL.
fn shared_postgres() {
    let n: usize = std::env::var("ROLLGATE_BENCH_SHARED_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let runners: usize = std::env::var("ROLLGATE_BENCH_RUNNERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    if n == 0 || runners == 0 {
        return;
    }
    let window = Duration::from_secs(
        std::env::var("ROLLGATE_BENCH_WINDOW")
            .ok()
            .and_then(|w| w.parse().ok())
            .unwrap_or(30),
    );
    let Some(cluster) = rollgate_pgtest::Cluster::own() else {
        println!("shared PostgreSQL: skipped (PostgreSQL is not installed)");
        return;
    };
    let url = cluster.database().expect("database");
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("config")).expect("mkdir");
    config(&dir.path().join("config"), n);
    let ttl_s = 10;
    let ttl = format!("{ttl_s}s");
    let started = Instant::now();
    let mut all: Vec<Runner> = (0..runners)
        .map(|i| {
            let (server, _) = serve_on(
                dir.path(),
                &url,
                &["--lease-ttl", &ttl, "--heartbeat", "1s"],
                &format!("cache-{i}"),
            );
            Runner { server, id: 0 }
        })
        .collect();
    let startup = started.elapsed();
    for r in &mut all {
        let text = scalar(
            &cluster,
            &url,
            &format!(
                "SELECT id FROM runners WHERE pid = {} ORDER BY id DESC LIMIT 1",
                r.server.child.id()
            ),
        );
        r.id = text as i64;
    }
    // Every run is claimed and measures on schedule.
    let urls: Vec<&str> = all.iter().map(|r| r.server.url.as_str()).collect();
    settle(&urls, n);
    let before: Vec<(String, f64)> = all
        .iter()
        .map(|r| (metrics(&r.server.url), usage(r.server.child.id()).0))
        .collect();
    let commits = "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()";
    let c0 = scalar(&cluster, &url, commits);
    let t0 = Instant::now();
    std::thread::sleep(window);
    let elapsed = t0.elapsed().as_secs_f64();
    let c1 = scalar(&cluster, &url, commits);
    println!();
    println!(
        "shared PostgreSQL: {n} rollouts over {runners} runners, lease ttl {ttl}, measuring {} s \
         (all started and ready in {:.1} s)",
        window.as_secs(),
        startup.as_secs_f64()
    );
    println!("| runner | runs held | CPU (cores) | RSS | lag p50 | lag p99 | measurements/s |");
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    let ms = |v: Option<f64>| v.map_or("-".to_string(), |s| format!("{:.1} ms", s * 1e3));
    let mut worst_p99: Option<f64> = None;
    for (r, (m0, cpu0)) in all.iter().zip(&before) {
        let m1 = metrics(&r.server.url);
        let (cpu1, rss) = usage(r.server.child.id());
        let held = scalar(
            &cluster,
            &url,
            &format!(
                "SELECT COUNT(*) FROM rollouts WHERE finished = 0 AND runner_id = {} \
                 AND lease_expires_ms IS NOT NULL",
                r.id
            ),
        );
        let (b0, b1) = (lag_buckets(m0), lag_buckets(&m1));
        let p99 = quantile(&b0, &b1, 0.99);
        worst_p99 = match (worst_p99, p99) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        let measured = counter(&m1, "rollgate_measurements_total")
            - counter(m0, "rollgate_measurements_total");
        println!(
            "| {} | {held} | {:.2} | {:.0} MiB | {} | {} | {:.0} |",
            r.id,
            (cpu1 - cpu0) / elapsed,
            rss as f64 / 1048576.0,
            ms(quantile(&b0, &b1, 0.5)),
            ms(p99),
            measured / elapsed
        );
    }
    let commits_per_s = (c1 - c0) / elapsed;
    println!("database commits/s: {commits_per_s:.0}");

    // SIGKILL the first runner: how long until every run it held measured again elsewhere.
    let victim = all.remove(0);
    let held: Vec<String> = cluster
        .psql(
            &url,
            &format!(
                "SELECT id FROM rollouts WHERE finished = 0 AND runner_id = {}",
                victim.id
            ),
        )
        .expect("psql")
        .lines()
        .map(str::to_string)
        .filter(|l| !l.is_empty())
        .collect();
    let killed_at_ms = scalar(
        &cluster,
        &url,
        "SELECT (EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::BIGINT",
    );
    let killed = Instant::now();
    drop(victim);
    let ids = if held.is_empty() {
        "0".to_string()
    } else {
        held.join(",")
    };
    let deadline = Duration::from_secs(ttl_s * 6 + 60);
    let takeover = loop {
        let waiting = scalar(
            &cluster,
            &url,
            &format!(
                "SELECT COUNT(*) FROM rollouts WHERE id IN ({ids}) AND finished = 0 \
                 AND (updated_ms < {killed_at_ms} OR runner_id IS NULL)"
            ),
        );
        if waiting == 0.0 {
            break Some(killed.elapsed());
        }
        if killed.elapsed() > deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let takeover_text = takeover.map_or("did not finish".to_string(), |t| {
        format!("{:.1} s", t.as_secs_f64())
    });
    println!(
        "takeover after SIGKILL of a runner holding {} runs: {takeover_text} (target: ttl {ttl} + 5 s)",
        held.len()
    );
    println!(
        "perf: shared-postgres n={n} runners={runners} lag-p99-ms={} commits-per-s={commits_per_s:.0} takeover-s={}",
        worst_p99.map_or("-".to_string(), |v| format!("{:.1}", v * 1e3)),
        takeover.map_or("-".to_string(), |t| format!("{:.1}", t.as_secs_f64()))
    );
}
