//! Plugin host benchmark: prints one table.
//!
//! - compiling the `threshold` component vs loading it from the on-disk cache;
//! - instantiate-only (fresh store + instance, no call);
//! - instantiate + `measure` of `threshold` over 1,000 samples (a fresh instance per call,
//!   as in production: instances are never reused to win a benchmark);
//! - the same threshold logic called natively (the plugin crate compiled for the host).
//!
//! Run with `cargo bench -p rollgate --bench plugin`. Targets: cached load ≤ 1 % of compile,
//! instantiate ≤ 20 µs.

use rollgate::metrics::{BoxFuture, MetricsSource, Query, QueryError, Series};
use rollgate::plugin::types::RolloutContext;
use rollgate::plugin::{
    CacheOutcome, ComponentCache, HostConfig, LoadOptions, MetricsBinding, PluginHost, PluginSource,
};
use std::sync::Arc;
use std::time::{Duration, Instant};

const SAMPLES: usize = 1_000;
const CONFIG: &str = r#"{"backend": "prom", "query": "rate(errors[1m])", "window": "1h", "reduce": "p99", "condition": "< 0.05"}"#;

struct Fixed(Vec<Series>);

impl MetricsSource for Fixed {
    fn query<'a>(&'a self, _: &'a Query) -> BoxFuture<'a, Result<Vec<Series>, QueryError>> {
        Box::pin(async move { Ok(self.0.clone()) })
    }
}

fn samples() -> Vec<(i64, f64)> {
    (0..SAMPLES)
        .map(|i| {
            (
                1_700_000_000_000 + i as i64 * 3_600,
                0.01 + (i % 37) as f64 * 0.0007,
            )
        })
        .collect()
}

fn context() -> RolloutContext {
    RolloutContext {
        rollout: "bench".into(),
        phase: "canary".into(),
        phase_index: 0,
        phase_count: 1,
        weight: 10.0,
        stable_version: "1".into(),
        canary_version: "2".into(),
        now_ms: 1_700_003_600_000,
        phase_started_ms: 1_700_000_000_000,
        metric: "errors".into(),
        measurement_index: 0,
        args: vec![],
    }
}

struct Stats {
    median: Duration,
    p99: Duration,
    mean: Duration,
}

fn stats(mut d: Vec<Duration>) -> Stats {
    d.sort();
    let mean = d.iter().sum::<Duration>() / d.len() as u32;
    Stats {
        median: d[d.len() / 2],
        p99: d[(d.len() * 99 / 100).min(d.len() - 1)],
        mean,
    }
}

fn fmt(d: Duration) -> String {
    let ns = d.as_nanos() as f64;
    if ns >= 1e9 {
        format!("{:.2} s", ns / 1e9)
    } else if ns >= 1e6 {
        format!("{:.2} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.1} µs", ns / 1e3)
    } else {
        format!("{ns:.0} ns")
    }
}

fn row(name: &str, n: usize, s: &Stats) {
    println!(
        "| {name:<44} | {n:>6} | {:>10} | {:>10} | {:>10} |",
        fmt(s.median),
        fmt(s.p99),
        fmt(s.mean)
    );
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let source = PluginSource::Builtin("threshold".into());
    let opts = LoadOptions::default();

    // Compile: no cache, every load compiles.
    let cold = PluginHost::new(HostConfig {
        cache: ComponentCache::disabled(),
        ..HostConfig::default()
    })
    .expect("host");
    let compile: Vec<Duration> = (0..5)
        .map(|_| {
            let t = Instant::now();
            let (_, outcome) = cold.load_traced(&source, &opts).expect("compiles");
            assert_eq!(outcome, CacheOutcome::Compiled);
            t.elapsed()
        })
        .collect();

    // Cached: the first load writes the artifact, the rest read it.
    let dir = tempfile::tempdir().expect("tempdir");
    let warm = PluginHost::new(HostConfig {
        cache: ComponentCache::at(dir.path()),
        ..HostConfig::default()
    })
    .expect("host");
    warm.load_traced(&source, &opts).expect("first load");
    let cached: Vec<Duration> = (0..50)
        .map(|_| {
            let t = Instant::now();
            let (_, outcome) = warm.load_traced(&source, &opts).expect("cached load");
            assert_eq!(outcome, CacheOutcome::Hit);
            t.elapsed()
        })
        .collect();

    let plugin = warm.load(&source, &opts).expect("load");
    let instantiate: Vec<Duration> = rt.block_on(async {
        for _ in 0..200 {
            plugin.instantiate_only().await.expect("instantiate");
        }
        let mut v = Vec::new();
        for _ in 0..5_000 {
            let t = Instant::now();
            plugin.instantiate_only().await.expect("instantiate");
            v.push(t.elapsed());
        }
        v
    });

    let series = vec![Series {
        labels: vec![("job".into(), "checkout".into())],
        points: samples(),
    }];
    let binding = MetricsBinding::new(Arc::new(Fixed(series)), ["prom".to_string()]);
    let ctx = context();
    let (measure, verdict) = rt.block_on(async {
        let mut v = Vec::new();
        let mut last = None;
        for i in 0..1_200 {
            let t = Instant::now();
            let m = plugin
                .measure(CONFIG, &ctx, Some(binding.clone()))
                .await
                .expect("measure");
            if i >= 200 {
                v.push(t.elapsed());
            }
            last = Some(m);
        }
        (v, last.expect("measured"))
    });

    // The same logic, natively: the plugin crate's pure judge over the same samples.
    let config: threshold::Config = serde_json::from_str(CONFIG).expect("config");
    let native_series = vec![rollgate_plugin::Series {
        labels: vec![rollgate_plugin::Label {
            name: "job".into(),
            value: "checkout".into(),
        }],
        samples: samples()
            .into_iter()
            .map(|(time_ms, value)| rollgate_plugin::Sample { time_ms, value })
            .collect(),
    }];
    let mut native_verdict = None;
    let native: Vec<Duration> = (0..20_000)
        .map(|_| {
            let t = Instant::now();
            let compiled = config.compile().expect("compiles");
            let m = threshold::judge(&compiled, std::hint::black_box(&native_series));
            let d = t.elapsed();
            native_verdict = Some(m);
            d
        })
        .collect();
    let native_verdict = native_verdict.expect("judged");
    assert_eq!(
        native_verdict.message, verdict.message,
        "wasm and native agree"
    );

    let compile = stats(compile);
    let cached = stats(cached);
    let instantiate = stats(instantiate);
    let measure = stats(measure);
    let native = stats(native);
    println!();
    println!(
        "threshold component: {} bytes",
        rollgate::plugin::artifacts::shipped::THRESHOLD.len()
    );
    println!(
        "| {:<44} | {:>6} | {:>10} | {:>10} | {:>10} |",
        "operation", "runs", "median", "p99", "mean"
    );
    println!(
        "|{:-<46}|{:->8}|{:->12}|{:->12}|{:->12}|",
        "", "", "", "", ""
    );
    row("compile (Component::from_binary)", 5, &compile);
    row("cached load (read + deserialize + checks)", 50, &cached);
    row(
        "instantiate only (fresh store + instance)",
        5_000,
        &instantiate,
    );
    row("instantiate + measure, 1,000 samples", 1_000, &measure);
    row("same threshold logic, native", 20_000, &native);
    println!();
    println!(
        "cached load = {:.2} % of compile (target ≤ 1 %); instantiate median {} (target ≤ 20 µs); \
         wasm call / native = {:.1}×",
        cached.median.as_secs_f64() / compile.median.as_secs_f64() * 100.0,
        fmt(instantiate.median),
        measure.median.as_secs_f64() / native.median.as_secs_f64()
    );
    println!("verdict: {:?} — {}", verdict.verdict, verdict.message);
}
