//! Query latency the host adds over a raw HTTP call, against a real Prometheus (Debian's
//! package, started on a free loopback port like the tests do).
//!
//! Prints one table: a raw `reqwest` GET of `/api/v1/query`; the Prometheus backend
//! (request building, envelope decoding, normalisation); the backend registry (limits,
//! shared in-flight queries, tracing); and a whole `threshold` measurement through the
//! plugin host (fresh instance, the `metrics` import, judging); then one line a script can
//! read, `perf: metrics registry-added-us=… measure-overhead-us=…` (medians of the
//! process's CPU time: the registry over a raw GET, a whole measurement over the
//! registry's query). Run with
//! `cargo bench -p rollgate --bench metrics`.

#[path = "../../tests/common.rs"]
mod common;

use common::PromServer;
use rollgate::metrics::prometheus::{Prometheus, PrometheusConfig};
use rollgate::metrics::{Backend, BackendOptions, Backends, Query, Window};
use rollgate::plugin::{LoadOptions, MetricsBinding, PluginSource};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod cpu;

const T0: i64 = 1_700_000_000;
const RUNS: usize = 500;

/// Median and p99 of wall time, and the median of the process's CPU time (every thread of
/// it: the runtime's workers do the I/O; Prometheus runs in its own process and does not
/// count). On a shared machine the CPU time is what the host's own work costs, which other
/// processes taking the cores do not inflate.
struct Timing {
    p50: Duration,
    p99: Duration,
    cpu: Duration,
}

fn process_cpu() -> Duration {
    cpu::cpu_time(libc::CLOCK_PROCESS_CPUTIME_ID)
}

async fn time<F, Fut>(mut f: F) -> Timing
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    for _ in 0..50 {
        f().await;
    }
    let mut v = Vec::with_capacity(RUNS);
    let mut c = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        let (t, cpu) = (Instant::now(), process_cpu());
        f().await;
        c.push(process_cpu().saturating_sub(cpu));
        v.push(t.elapsed());
    }
    v.sort();
    c.sort();
    Timing {
        p50: v[v.len() / 2],
        p99: v[v.len() * 99 / 100],
        cpu: c[c.len() / 2],
    }
}

fn main() {
    if std::process::Command::new("promtool")
        .arg("--version")
        .output()
        .is_err()
    {
        println!("skipped: Prometheus is not installed (apt-get install prometheus)");
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let mut om = String::from("# TYPE error_ratio gauge\n");
        for t in (T0..=T0 + 600).step_by(15) {
            om.push_str(&format!("error_ratio{{version=\"canary\"}} 0.02 {t}\n"));
        }
        om.push_str("# EOF\n");
        let server = PromServer::start(&om).await;
        let query = "error_ratio{version=\"canary\"}";
        let at_ms = (T0 + 300) * 1000;

        let raw_client = reqwest::Client::new();
        let url = format!("{}/api/v1/query", server.address);
        let raw = time(|| {
            let req = raw_client
                .get(&url)
                .query(&[("query", query), ("time", &(T0 + 300).to_string())]);
            async move {
                let body = req.send().await.expect("raw").bytes().await.expect("body");
                assert!(!body.is_empty());
            }
        })
        .await;

        let prom =
            Arc::new(Prometheus::new(&PrometheusConfig::new(&server.address)).expect("backend"));
        let backend = time(|| {
            let prom = prom.clone();
            async move {
                let r = prom
                    .query("prom", query, Window::Instant(at_ms))
                    .await
                    .expect("query");
                assert_eq!(r.series.len(), 1);
            }
        })
        .await;

        let mut registry = Backends::new();
        registry.insert("prom", prom.clone(), BackendOptions::default());
        let registry = Arc::new(registry);
        let q = Query {
            backend: "prom".into(),
            query: query.into(),
            window: Window::Instant(at_ms),
        };
        let fetched = time(|| {
            let (registry, q) = (registry.clone(), q.clone());
            async move {
                registry.fetch(&q).await.expect("fetch");
            }
        })
        .await;

        let plugin = common::host()
            .load(
                &PluginSource::Builtin("threshold".into()),
                &LoadOptions::default(),
            )
            .expect("threshold");
        let config = serde_json::json!({"backend": "prom", "query": query, "condition": "< 0.05"})
            .to_string();
        let binding = MetricsBinding::new(registry.clone(), ["prom".to_string()]);
        let measured = time(|| {
            let (plugin, config, binding) = (plugin.clone(), config.clone(), binding.clone());
            async move {
                let m = plugin
                    .measure(&config, &common::context(at_ms), Some(binding))
                    .await
                    .expect("measure");
                assert!(m.value.is_some());
            }
        })
        .await;

        let us = |d: Duration| d.as_secs_f64() * 1e6;
        let row = |name: &str, t: &Timing| {
            println!(
                "| {name:<46} | {:>9.1} µs | {:>9.1} µs | {:>+9.1} µs | {:>9.1} µs |",
                us(t.p50),
                us(t.p99),
                us(t.p50) - us(raw.p50),
                us(t.cpu)
            );
        };
        println!();
        println!("instant query, 1 series, real Prometheus on loopback, {RUNS} runs each");
        println!(
            "| {:<46} | {:>12} | {:>12} | {:>12} | {:>12} |",
            "path", "median", "p99", "vs raw", "CPU median"
        );
        println!("|{:-<48}|{:->14}|{:->14}|{:->14}|{:->14}|", "", "", "", "", "");
        row("raw HTTP GET (reqwest)", &raw);
        row("Prometheus backend", &backend);
        row("backend registry (limits, sharing, tracing)", &fetched);
        row("threshold plugin measure through the host", &measured);
        println!(
            "wall time: the registry adds {:.1} µs to a raw GET, a measurement {:.1} µs to the registry's query",
            us(fetched.p50) - us(raw.p50),
            us(measured.p50) - us(fetched.p50)
        );
        println!(
            "perf: metrics registry-added-us={:.0} measure-overhead-us={:.0}",
            us(fetched.cpu) - us(raw.cpu),
            us(measured.cpu) - us(fetched.cpu)
        );
    });
}
