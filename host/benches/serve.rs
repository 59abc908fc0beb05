//! Server-mode scale: `rollgate serve` with N synthetic rollouts on the replay backend, each
//! verifying its first phase every 10 s (the threshold plugin over a recording, then the
//! default failure policy), measured from outside the process.
//!
//! For each N it prints the steady-state CPU (cores busy), RSS and RSS per rollout above a
//! one-rollout baseline, the p50/p99 scheduler lag (from the server's own
//! `rollgate_scheduler_lag_seconds` histogram, over the measuring window only) and
//! measurements per second. The target: 20,000 rollouts at a 10 s interval with p99 lag
//! under 100 ms and at most 50 KB per idle rollout.
//!
//! `cargo bench --bench serve` runs N = 1,000, 10,000, 20,000; `ROLLGATE_BENCH_N=500,2000`
//! picks others, `ROLLGATE_BENCH_WINDOW=30` the measuring window in seconds. The store is
//! `sync=normal` (a process crash loses nothing; see `rollgate serve --help`).

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
    std::fs::write(dir.join("tokens"), format!("{TOKEN} read-only bench\n")).expect("tokens");
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_rollgate"))
        .arg("serve")
        .arg("--config")
        .arg(dir.join("config"))
        .arg("--db")
        .arg(format!(
            "sqlite:{}?sync=normal",
            dir.join("state.db").display()
        ))
        .args(["--listen", "127.0.0.1:0", "--reload-interval", "1h"])
        .arg("--tokens")
        .arg(dir.join("tokens"))
        .arg("--cache-dir")
        .arg(dir.join("cache"))
        .env("ROLLGATE_LOG", "error")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("rollgate serve starts");
    let pipe = child.stderr.take().expect("stderr");
    let mut url = None;
    for line in BufReader::new(pipe).lines().map_while(Result::ok) {
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
}

fn measure(n: usize, window: Duration, baseline_rss: Option<u64>) -> Row {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("config")).expect("mkdir");
    config(&dir.path().join("config"), n);
    let (server, startup) = serve(dir.path());
    let pid = server.child.id();
    // Every rollout takes its first measurement at start; one full interval later the
    // schedule is spread out and steady.
    std::thread::sleep(Duration::from_secs(12));
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
    Row {
        n,
        startup,
        cpu: (cpu1 - cpu0) / elapsed,
        rss,
        per_rollout: baseline_rss.map(|b| rss.saturating_sub(b) as f64 / n.max(1) as f64),
        p50: quantile(&b0, &b1, 0.5),
        p99: quantile(&b0, &b1, 0.99),
        per_second: measured / elapsed,
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
        .unwrap_or_else(|| vec![1_000, 10_000, 20_000]);
    let window = Duration::from_secs(
        std::env::var("ROLLGATE_BENCH_WINDOW")
            .ok()
            .and_then(|w| w.parse().ok())
            .unwrap_or(30),
    );
    let baseline = measure(1, Duration::from_secs(3), None);
    println!(
        "baseline: one rollout, RSS {:.1} MiB; measuring {} s per N, after 12 s of warm-up",
        baseline.rss as f64 / 1048576.0,
        window.as_secs()
    );
    println!(
        "| rollouts | start-up | CPU (cores) | RSS | RSS / rollout | lag p50 | lag p99 | measurements/s |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    let ms = |v: Option<f64>| v.map_or("-".to_string(), |s| format!("{:.1} ms", s * 1e3));
    for n in ns {
        let r = measure(n, window, Some(baseline.rss));
        println!(
            "| {} | {:.1} s | {:.2} | {:.0} MiB | {} | {} | {} | {:.0} |",
            r.n,
            r.startup.as_secs_f64(),
            r.cpu,
            r.rss as f64 / 1048576.0,
            r.per_rollout
                .map_or("-".to_string(), |b| format!("{:.1} KB", b / 1000.0)),
            ms(r.p50),
            ms(r.p99),
            r.per_second
        );
    }
}
