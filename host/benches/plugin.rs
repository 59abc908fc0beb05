//! Plugin host benchmark: prints one table and ends with one `perf:` line.
//!
//! - compiling the `threshold` component vs loading it from the on-disk cache;
//! - instantiate-only (fresh store + instance, no call);
//! - instantiate + `measure` of `threshold` over 1,000 samples (a fresh instance per call,
//!   as in production: instances are never reused to win a benchmark), and the same logic
//!   called natively (the plugin crate compiled for the host);
//! - instantiate + `measure` of `canary-judge` over 2 × 1,000 samples (canary and
//!   baseline), and the same natively;
//! - the same provider built against the previous contract minor (0.1, samples lowered as
//!   records) and the current one (0.2, two columns), over the 1,000 samples: the test-only
//!   `contract-v01`/`contract-v02` components (one source; a query and a mean), so the
//!   minors' boundary difference is a figure;
//! - what a whole `threshold` measurement through the host adds to the backend registry's
//!   own query (an instant query of one series, answered from memory so that only the
//!   host's share is timed; `--bench metrics` times the same against a real Prometheus).
//!
//! Run with `cargo bench -p rollgate --bench plugin`. Targets: cached load ≤ 1 % of compile,
//! instantiate ≤ 20 µs, threshold wasm ≤ 2× native, canary-judge wasm ≤ 1.5× native, a
//! measurement ≤ +20 µs over its query. The last line reads
//! `perf: threshold-wasm/native=… judge-wasm/native=… measure-overhead-us=… records-minus-columns-us=…`.
//!
//! `ROLLGATE_BENCH_ONLY=threshold|judge|overhead|native-threshold|native-judge|contract-0.1|contract-0.2` runs only
//! that loop, for `ROLLGATE_BENCH_SECONDS` (default 10) — to profile it with
//! `perf record -g`. `ROLLGATE_BENCH_WASM_DIR=DIR` loads `threshold.wasm` and
//! `canary_judge.wasm` from DIR instead of the built-in components (e.g. a build with
//! `--config profile.release.strip=false`), and `ROLLGATE_WASM_PERFMAP=1` makes wasmtime
//! write /tmp/perf-PID.map, so `perf report` names the plugins' functions.

use rollgate::metrics::{
    Backend, BackendOptions, Backends, BoxFuture, MetricsSource, Query, QueryError, QueryResult,
    Series, Window,
};
use rollgate::plugin::types::{Measurement, RolloutContext};
use rollgate::plugin::{
    CacheOutcome, ComponentCache, HostConfig, LoadOptions, MetricsBinding, Plugin, PluginHost,
    PluginSource,
};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod cpu;

const SAMPLES: usize = 1_000;
const CONFIG: &str = r#"{"backend": "prom", "query": "rate(errors[1m])", "window": "1h", "reduce": "p99", "condition": "< 0.05"}"#;
const JUDGE_CONFIG: &str = r#"{"backend": "prom", "window": "1h", "metrics": [{"name": "latency", "canaryQuery": "canary", "baselineQuery": "baseline", "direction": "increase"}]}"#;
const CONTRACT_CONFIG: &str = r#"{"backend": "prom", "query": "x", "echo": false}"#;
const INSTANT_CONFIG: &str =
    r#"{"backend": "prom", "query": "error_ratio", "condition": "< 0.05"}"#;

/// Answers from memory: `canary` and `baseline` name their own series, anything else gets
/// the first.
struct Fixed(Vec<(String, Vec<Series>)>);

impl MetricsSource for Fixed {
    fn query<'a>(&'a self, q: &'a Query) -> BoxFuture<'a, Result<Vec<Series>, QueryError>> {
        let found = self
            .0
            .iter()
            .find(|(name, _)| *name == q.query)
            .or(self.0.first())
            .map(|(_, s)| s.clone())
            .unwrap_or_default();
        Box::pin(async move { Ok(found) })
    }
}

/// A backend answering an instant query from memory, behind the real registry.
struct Instant1;

impl Backend for Instant1 {
    fn kind(&self) -> &'static str {
        "memory"
    }
    fn query<'a>(
        &'a self,
        _: &'a str,
        _: &'a str,
        window: Window,
    ) -> BoxFuture<'a, Result<QueryResult, QueryError>> {
        let at = match window {
            Window::Instant(t) => t,
            Window::Range { end_ms, .. } => end_ms,
        };
        Box::pin(async move {
            Ok(QueryResult {
                series: vec![Series {
                    labels: vec![
                        ("__name__".into(), "error_ratio".into()),
                        ("version".into(), "canary".into()),
                    ],
                    points: vec![(at, 0.02)],
                }],
                warnings: vec![],
            })
        })
    }
}

/// `SAMPLES` points whose values cycle with period `period`, from `base` in `step`s.
fn samples(period: usize, base: f64, step: f64) -> Vec<(i64, f64)> {
    (0..SAMPLES)
        .map(|i| {
            (
                1_700_000_000_000 + i as i64 * 3_600,
                base + (i % period) as f64 * step,
            )
        })
        .collect()
}

fn threshold_samples() -> Vec<(i64, f64)> {
    samples(37, 0.01, 0.0007)
}
fn canary_samples() -> Vec<(i64, f64)> {
    samples(41, 0.105, 0.0011)
}
fn baseline_samples() -> Vec<(i64, f64)> {
    samples(37, 0.1, 0.001)
}

fn host_series(points: Vec<(i64, f64)>) -> Vec<Series> {
    vec![Series {
        labels: vec![("job".into(), "checkout".into())],
        points,
    }]
}

fn native_series(points: Vec<(i64, f64)>) -> Vec<rollgate_plugin::Series> {
    vec![rollgate_plugin::Series {
        labels: vec![rollgate_plugin::Label {
            name: "job".into(),
            value: "checkout".into(),
        }],
        times_ms: points.iter().map(|p| p.0).collect(),
        values: points.iter().map(|p| p.1).collect(),
    }]
}

/// The plugins' queries, natively: the same series by query text (`canary`, anything
/// else the baseline's), copied per query as the host copies them into the instance.
struct NativeFixed {
    canary: Vec<rollgate_plugin::Series>,
    baseline: Vec<rollgate_plugin::Series>,
}

impl rollgate_plugin::Metrics for NativeFixed {
    fn query(
        &self,
        _: &str,
        query: &str,
        _: rollgate_plugin::Window,
        _: i64,
    ) -> Result<Vec<rollgate_plugin::Series>, rollgate_plugin::QueryError> {
        Ok(match query {
            "canary" => self.canary.clone(),
            _ => self.baseline.clone(),
        })
    }
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

fn native_context() -> rollgate_plugin::RolloutContext {
    let c = context();
    rollgate_plugin::RolloutContext {
        rollout: c.rollout,
        phase: c.phase,
        phase_index: c.phase_index,
        phase_count: c.phase_count,
        weight: c.weight,
        stable_version: c.stable_version,
        canary_version: c.canary_version,
        now_ms: c.now_ms,
        phase_started_ms: c.phase_started_ms,
        metric: c.metric,
        measurement_index: c.measurement_index,
        args: vec![],
    }
}

fn cpu_now() -> Duration {
    cpu::cpu_time(libc::CLOCK_THREAD_CPUTIME_ID)
}

/// One timed run: wall time and this thread's CPU time.
#[derive(Clone, Copy)]
struct Took {
    wall: Duration,
    cpu: Duration,
}

/// Time `f` once.
fn took<T>(f: impl FnOnce() -> T) -> (Took, T) {
    let (wall, cpu) = (Instant::now(), cpu_now());
    let r = f();
    let cpu = cpu_now().saturating_sub(cpu);
    (
        Took {
            wall: wall.elapsed(),
            cpu,
        },
        r,
    )
}

struct Stats {
    median: Duration,
    p99: Duration,
    mean: Duration,
    cpu_median: Duration,
}

fn stats(runs: Vec<Took>) -> Stats {
    let mut d: Vec<Duration> = runs.iter().map(|t| t.wall).collect();
    let mut c: Vec<Duration> = runs.iter().map(|t| t.cpu).collect();
    d.sort();
    c.sort();
    let mean = d.iter().sum::<Duration>() / d.len() as u32;
    Stats {
        median: d[d.len() / 2],
        p99: d[(d.len() * 99 / 100).min(d.len() - 1)],
        mean,
        cpu_median: c[c.len() / 2],
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
        "| {name:<48} | {n:>6} | {:>10} | {:>10} | {:>10} | {:>10} |",
        fmt(s.median),
        fmt(s.p99),
        fmt(s.mean),
        fmt(s.cpu_median)
    );
}

/// A row whose work runs on other threads (compiling), so this thread's CPU time means
/// nothing.
fn row_wall(name: &str, n: usize, s: &Stats) {
    println!(
        "| {name:<48} | {n:>6} | {:>10} | {:>10} | {:>10} | {:>10} |",
        fmt(s.median),
        fmt(s.p99),
        fmt(s.mean),
        "—"
    );
}

/// Which loop `ROLLGATE_BENCH_ONLY` asks for alone, and for how long.
fn only() -> Option<(String, Duration)> {
    let name = std::env::var("ROLLGATE_BENCH_ONLY").ok()?;
    let secs = std::env::var("ROLLGATE_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    Some((name, Duration::from_secs(secs)))
}

/// Time `f` `runs` times after `warm` untimed runs; returns the timings and the last result.
fn time<T>(warm: usize, runs: usize, mut f: impl FnMut() -> T) -> (Vec<Took>, T) {
    for _ in 0..warm {
        std::hint::black_box(f());
    }
    let mut v = Vec::with_capacity(runs);
    let mut last = None;
    for _ in 0..runs {
        let (t, r) = took(&mut f);
        v.push(t);
        last = Some(r);
    }
    (v, last.expect("at least one run"))
}

type Timed<T> = (Vec<Took>, T);

/// Time `a` and `b` alternately, `runs` times each after `warm` untimed rounds.
fn pair<A, B>(
    warm: usize,
    runs: usize,
    mut a: impl FnMut() -> A,
    mut b: impl FnMut() -> B,
) -> (Timed<A>, Timed<B>) {
    let (mut ta, mut tb) = (Vec::with_capacity(runs), Vec::with_capacity(runs));
    let (mut la, mut lb) = (None, None);
    for i in 0..warm + runs {
        let (da, ra) = took(&mut a);
        let (db, rb) = took(&mut b);
        if i >= warm {
            ta.push(da);
            tb.push(db);
        }
        la = Some(ra);
        lb = Some(rb);
    }
    (
        (ta, la.expect("at least one run")),
        (tb, lb.expect("at least one run")),
    )
}

/// Runs `f` until `how_long` passed (profiling mode).
fn spin<T>(how_long: Duration, mut f: impl FnMut() -> T) {
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < how_long {
        std::hint::black_box(f());
        n += 1;
    }
    println!("{n} runs, {} each", fmt(start.elapsed() / n.max(1) as u32));
}

struct Calls {
    rt: tokio::runtime::Runtime,
    threshold: Plugin,
    judge: Plugin,
    /// The same provider on contract 0.1 and 0.2.
    v01: Plugin,
    v02: Plugin,
    ctx: RolloutContext,
    threshold_binding: MetricsBinding,
    judge_binding: MetricsBinding,
    /// The registry over an in-memory instant backend, and a binding to it.
    registry: Arc<Backends>,
    registry_binding: MetricsBinding,
}

impl Calls {
    fn new(host: &PluginHost) -> Self {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let opts = LoadOptions::default();
        let src = |name: &str, file: &str| match std::env::var("ROLLGATE_BENCH_WASM_DIR") {
            Ok(d) => PluginSource::File(std::path::Path::new(&d).join(file)),
            Err(_) => PluginSource::Builtin(name.into()),
        };
        let threshold = host
            .load(&src("threshold", "threshold.wasm"), &opts)
            .expect("threshold");
        let judge = host
            .load(&src("canary-judge", "canary_judge.wasm"), &opts)
            .expect("canary-judge");
        let test_only = |path: &str| {
            host.load(&PluginSource::File(path.into()), &opts)
                .expect("a test-only plugin")
        };
        let v01 = test_only(rollgate_test_plugins::CONTRACT_V01);
        let v02 = test_only(rollgate_test_plugins::CONTRACT_V02);
        let fixed = |s: Vec<(String, Vec<Series>)>| {
            MetricsBinding::new(Arc::new(Fixed(s)), ["prom".to_string()])
        };
        let mut registry = Backends::new();
        registry.insert("prom", Arc::new(Instant1), BackendOptions::default());
        let registry = Arc::new(registry);
        Calls {
            rt,
            threshold,
            judge,
            v01,
            v02,
            ctx: context(),
            threshold_binding: fixed(vec![("".into(), host_series(threshold_samples()))]),
            judge_binding: fixed(vec![
                ("canary".into(), host_series(canary_samples())),
                ("baseline".into(), host_series(baseline_samples())),
            ]),
            registry_binding: MetricsBinding::new(registry.clone(), ["prom".to_string()]),
            registry,
        }
    }

    fn threshold(&self) -> Measurement {
        self.rt.block_on(async {
            self.threshold
                .measure(CONFIG, &self.ctx, Some(self.threshold_binding.clone()))
                .await
                .expect("measure")
        })
    }

    fn judge(&self) -> Measurement {
        self.rt.block_on(async {
            self.judge
                .measure(JUDGE_CONFIG, &self.ctx, Some(self.judge_binding.clone()))
                .await
                .expect("judge")
        })
    }

    /// The contract-vNN provider over the threshold's 1,000 samples.
    fn contract(&self, plugin: &Plugin) -> Measurement {
        self.rt.block_on(async {
            plugin
                .measure(
                    CONTRACT_CONFIG,
                    &self.ctx,
                    Some(self.threshold_binding.clone()),
                )
                .await
                .expect("measure")
        })
    }

    fn query(&self) -> usize {
        let q = Query {
            backend: "prom".into(),
            query: "error_ratio".into(),
            window: Window::Instant(self.ctx.now_ms),
        };
        self.rt.block_on(async {
            let r = self.registry.fetch(&q).await.expect("fetch");
            r.series.len()
        })
    }

    fn instant_measure(&self) -> Measurement {
        self.rt.block_on(async {
            self.threshold
                .measure(
                    INSTANT_CONFIG,
                    &self.ctx,
                    Some(self.registry_binding.clone()),
                )
                .await
                .expect("measure")
        })
    }
}

/// The native sides of the comparisons: each does what the SDK's export does inside the
/// component — parse the configuration text, measure (querying, which copies the series),
/// build the measurement — so the ratio is the sandbox's cost, not a difference of work.
struct Native {
    threshold_metrics: NativeFixed,
    judge_metrics: NativeFixed,
}

impl Native {
    fn new() -> Self {
        Native {
            threshold_metrics: NativeFixed {
                canary: native_series(threshold_samples()),
                baseline: native_series(threshold_samples()),
            },
            judge_metrics: NativeFixed {
                canary: native_series(canary_samples()),
                baseline: native_series(baseline_samples()),
            },
        }
    }

    fn threshold(&self) -> rollgate_plugin::Measurement {
        use rollgate_plugin::Verifier;
        let config =
            rollgate_plugin::parse_config::<threshold::Config>(std::hint::black_box(CONFIG))
                .expect("config");
        let ctx = rollgate_plugin::Context::new(native_context(), &self.threshold_metrics);
        threshold::Threshold::measure(config, &ctx).expect("measures")
    }

    fn judge(&self) -> rollgate_plugin::Measurement {
        use rollgate_plugin::Verifier;
        let config = rollgate_plugin::parse_config::<canary_judge::Config>(std::hint::black_box(
            JUDGE_CONFIG,
        ))
        .expect("judge config");
        let ctx = rollgate_plugin::Context::new(native_context(), &self.judge_metrics);
        canary_judge::CanaryJudge::measure(config, &ctx).expect("judges")
    }
}

fn main() {
    let source = PluginSource::Builtin("threshold".into());
    let opts = LoadOptions::default();
    let dir = tempfile::tempdir().expect("tempdir");
    let warm = PluginHost::new(HostConfig {
        cache: ComponentCache::at(dir.path()),
        ..HostConfig::default()
    })
    .expect("host");
    let calls = Calls::new(&warm);
    let native = Native::new();

    if let Some((name, how_long)) = only() {
        match name.as_str() {
            "threshold" => spin(how_long, || calls.threshold()),
            "judge" => spin(how_long, || calls.judge()),
            "overhead" => spin(how_long, || calls.instant_measure()),
            "native-threshold" => spin(how_long, || native.threshold()),
            "native-judge" => spin(how_long, || native.judge()),
            "contract-0.1" => spin(how_long, || calls.contract(&calls.v01)),
            "contract-0.2" => spin(how_long, || calls.contract(&calls.v02)),
            other => panic!(
                "ROLLGATE_BENCH_ONLY={other:?}: use threshold, judge, overhead, native-threshold, native-judge, contract-0.1 or contract-0.2"
            ),
        }
        return;
    }

    // Compile: no cache, every load compiles.
    let cold = PluginHost::new(HostConfig {
        cache: ComponentCache::disabled(),
        ..HostConfig::default()
    })
    .expect("host");
    let (compile, _) = time(0, 5, || {
        let (_, outcome) = cold.load_traced(&source, &opts).expect("compiles");
        assert_eq!(outcome, CacheOutcome::Compiled);
    });

    // Cached: the first load writes the artifact, the rest read it.
    warm.load(&source, &opts).expect("first load");
    let (cached, _) = time(0, 50, || {
        let (_, outcome) = warm.load_traced(&source, &opts).expect("cached load");
        assert_eq!(outcome, CacheOutcome::Hit);
    });

    let (instantiate, _) = time(200, 5_000, || {
        calls
            .rt
            .block_on(calls.threshold.instantiate_only())
            .expect("instantiate")
    });

    // Each wasm call and its native twin interleaved, so that both see the same machine.
    let ((measure, verdict), (native_threshold, native_verdict)) =
        pair(200, 2_000, || calls.threshold(), || native.threshold());
    assert_eq!(
        native_verdict.message, verdict.message,
        "wasm and native threshold agree"
    );
    let ((judge, judged), (native_judge, native_judged)) =
        pair(5, 100, || calls.judge(), || native.judge());
    assert_eq!(
        native_judged.message, judged.message,
        "wasm and native canary-judge agree"
    );
    assert_eq!(native_judged.details, judged.details);

    // The two minors' boundaries, interleaved: the same provider, the same samples.
    let ((v01, m01), (v02, m02)) = pair(
        200,
        2_000,
        || calls.contract(&calls.v01),
        || calls.contract(&calls.v02),
    );
    assert_eq!(
        m01.value.map(f64::to_bits),
        m02.value.map(f64::to_bits),
        "0.1 and 0.2 see the same samples"
    );

    // Interleaved too.
    let ((query, _), (through_host, m)) =
        pair(200, 2_000, || calls.query(), || calls.instant_measure());
    assert!(m.value.is_some(), "{}", m.message);

    let compile = stats(compile);
    let cached = stats(cached);
    let instantiate = stats(instantiate);
    let measure = stats(measure);
    let native_threshold = stats(native_threshold);
    let judge = stats(judge);
    let native_judge = stats(native_judge);
    let v01 = stats(v01);
    let v02 = stats(v02);
    let query = stats(query);
    let through_host = stats(through_host);
    println!();
    println!(
        "threshold component: {} bytes, canary-judge component: {} bytes",
        rollgate::plugin::artifacts::shipped::THRESHOLD.len(),
        rollgate::plugin::artifacts::shipped::CANARY_JUDGE.len()
    );
    println!(
        "| {:<48} | {:>6} | {:>10} | {:>10} | {:>10} | {:>10} |",
        "operation", "runs", "median", "p99", "mean", "CPU median"
    );
    println!(
        "|{:-<50}|{:->8}|{:->12}|{:->12}|{:->12}|{:->12}|",
        "", "", "", "", "", ""
    );
    row_wall("compile (Component::from_binary)", 5, &compile);
    row("cached load (read + deserialize + checks)", 50, &cached);
    row(
        "instantiate only (fresh store + instance)",
        5_000,
        &instantiate,
    );
    row(
        "threshold: instantiate + measure, 1,000 samples",
        1_000,
        &measure,
    );
    row("threshold: same logic, native", 2_000, &native_threshold);
    row(
        "canary-judge: instantiate + measure, 2 × 1,000",
        100,
        &judge,
    );
    row("canary-judge: same logic, native", 100, &native_judge);
    row("contract 0.1 (records): query + mean, 1,000", 2_000, &v01);
    row("contract 0.2 (columns): the same", 2_000, &v02);
    row("registry query (instant, in memory)", 2_000, &query);
    row(
        "threshold measurement of that query via host",
        2_000,
        &through_host,
    );
    // Ratios and the overhead from CPU time (this thread's: the calls run on it), which
    // another process taking the core does not inflate; wall-time ratios are printed too.
    let ratio = |a: &Stats, b: &Stats| a.cpu_median.as_secs_f64() / b.cpu_median.as_secs_f64();
    let wall_ratio = |a: &Stats, b: &Stats| a.median.as_secs_f64() / b.median.as_secs_f64();
    let threshold_ratio = ratio(&measure, &native_threshold);
    let judge_ratio = ratio(&judge, &native_judge);
    let overhead_us =
        (through_host.cpu_median.as_secs_f64() - query.cpu_median.as_secs_f64()) * 1e6;
    let wall_overhead_us = (through_host.median.as_secs_f64() - query.median.as_secs_f64()) * 1e6;
    let columns_save_us = (v01.cpu_median.as_secs_f64() - v02.cpu_median.as_secs_f64()) * 1e6;
    println!(
        "wall time: threshold wasm/native {:.2}×, canary-judge wasm/native {:.2}×, a measurement adds {wall_overhead_us:.1} µs",
        wall_ratio(&measure, &native_threshold),
        wall_ratio(&judge, &native_judge),
    );
    println!();
    println!(
        "cached load = {:.2} % of compile (target ≤ 1 %); instantiate median {} (target ≤ 20 µs)",
        cached.median.as_secs_f64() / compile.median.as_secs_f64() * 100.0,
        fmt(instantiate.median),
    );
    println!(
        "threshold wasm/native {threshold_ratio:.2}× (target ≤ 2×); canary-judge wasm/native \
         {judge_ratio:.2}× (target ≤ 1.5×); a measurement adds {overhead_us:.1} µs to its query \
         (target ≤ 20 µs) — CPU time"
    );
    println!(
        "1,000 samples through contract 0.1 (records) cost {columns_save_us:.1} µs more than \
         through 0.2 (columns) — CPU time"
    );
    println!("threshold: {:?} — {}", verdict.verdict, verdict.message);
    println!("canary-judge: {:?} — {}", judged.verdict, judged.message);
    println!(
        "perf: threshold-wasm/native={threshold_ratio:.1} judge-wasm/native={judge_ratio:.1} \
         measure-overhead-us={overhead_us:.0} records-minus-columns-us={columns_save_us:.0}"
    );
}
