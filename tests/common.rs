//! Helpers shared by the end-to-end tests.
#![allow(dead_code)]

use rollgate::metrics::{BoxFuture, MetricsSource, Query, QueryError, Series};
use rollgate::plugin::types::RolloutContext;
use rollgate::plugin::{ComponentCache, HostConfig, PluginHost};
use std::sync::Mutex;

/// A host with no disk cache (tests that need the cache set their own).
pub fn host() -> PluginHost {
    PluginHost::new(HostConfig {
        cache: ComponentCache::disabled(),
        ..HostConfig::default()
    })
    .expect("plugin host starts")
}

pub fn context(now_ms: i64) -> RolloutContext {
    RolloutContext {
        rollout: "checkout".into(),
        phase: "canary-10".into(),
        phase_index: 0,
        phase_count: 3,
        weight: 10.0,
        stable_version: "1.0.0".into(),
        canary_version: "1.1.0".into(),
        now_ms,
        phase_started_ms: now_ms - 60_000,
        metric: "error-rate".into(),
        measurement_index: 0,
        args: vec![],
    }
}

/// Metrics from memory: returns `series` for every query and records the queries.
pub struct StaticMetrics {
    pub series: Vec<Series>,
    pub seen: Mutex<Vec<Query>>,
    pub delay: std::time::Duration,
}

impl StaticMetrics {
    pub fn new(series: Vec<Series>) -> Self {
        StaticMetrics {
            series,
            seen: Mutex::new(Vec::new()),
            delay: std::time::Duration::ZERO,
        }
    }
}

impl MetricsSource for StaticMetrics {
    fn query<'a>(&'a self, query: &'a Query) -> BoxFuture<'a, Result<Vec<Series>, QueryError>> {
        Box::pin(async move {
            self.seen.lock().expect("lock").push(query.clone());
            if !self.delay.is_zero() {
                tokio::time::sleep(self.delay).await;
            }
            Ok(self.series.clone())
        })
    }
}

pub fn series(values: &[f64]) -> Series {
    Series {
        labels: vec![("job".into(), "checkout".into())],
        points: values
            .iter()
            .enumerate()
            .map(|(i, v)| (1_700_000_000_000 + i as i64 * 1000, *v))
            .collect(),
    }
}

/// A real Prometheus (Debian's `prometheus` package) on a free 127.0.0.1 port, serving
/// exactly the OpenMetrics data it was started with. Killed by PID when dropped.
pub struct PromServer {
    child: std::process::Child,
    pub address: String,
    _dir: tempfile::TempDir,
}

impl PromServer {
    /// Backfill `openmetrics` with promtool and start Prometheus on it.
    pub async fn start(openmetrics: &str) -> PromServer {
        Self::start_with(openmetrics, &[]).await
    }

    /// Like `start`, with extra server flags.
    pub async fn start_with(openmetrics: &str, flags: &[&str]) -> PromServer {
        use std::process::{Command, Stdio};
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data.om");
        std::fs::write(&data, openmetrics).expect("write data");
        let tsdb = dir.path().join("tsdb");
        let out = Command::new("promtool")
            .args(["tsdb", "create-blocks-from", "openmetrics"])
            .arg(&data)
            .arg(&tsdb)
            .output()
            .expect("promtool runs (install Debian's prometheus package, as .ci/run does)");
        assert!(
            out.status.success(),
            "promtool failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let config = dir.path().join("prometheus.yml");
        std::fs::write(&config, "global: {}\n").expect("write config");
        let port = free_port();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", tsdb.display()))
            .arg("--storage.tsdb.retention.time=100y")
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn")
            .args(flags)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus starts (install Debian's prometheus package, as .ci/run does)");
        let mut server = PromServer {
            child,
            address: format!("http://127.0.0.1:{port}"),
            _dir: dir,
        };
        server.wait_ready().await;
        server
    }

    async fn wait_ready(&mut self) {
        let client = reqwest::Client::new();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("prometheus exited early: {status}");
            }
            let ready = client
                .get(format!("{}/-/ready", self.address))
                .timeout(std::time::Duration::from_secs(1))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ready {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "prometheus not ready within 30 s"
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
}

impl Drop for PromServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A TCP server that accepts connections and never answers, to provoke client timeouts.
/// Stops when dropped.
pub struct Blackhole {
    pub address: String,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Blackhole {
    pub fn start() -> Blackhole {
        use std::sync::atomic::{AtomicBool, Ordering};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let address = format!("http://{}", listener.local_addr().expect("addr"));
        listener.set_nonblocking(true).expect("nonblocking");
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        std::thread::spawn(move || {
            let mut held = Vec::new();
            while !flag.load(Ordering::Relaxed) {
                if let Ok((conn, _)) = listener.accept() {
                    held.push(conn);
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        });
        Blackhole { address, stop }
    }
}

impl Drop for Blackhole {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}
