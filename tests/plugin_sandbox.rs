//! The plugin host against real compiled components: the shipped plugins, and hostile
//! plugins that each try one way of hurting the host. Every hostile case must end as its own
//! named error within its limit, and the host must keep serving other plugins.

use crate::common;

use common::{StaticMetrics, context, host, series};
use rollgate::plugin::types::{Decision, MetricStatus, MetricSummary, PolicyInput, Verdict};
use rollgate::plugin::{
    CacheOutcome, ComponentCache, Contract, HostConfig, Limits, LoadOptions, MetricsBinding,
    Plugin, PluginError, PluginHost, PluginKind, PluginSource,
};
use rollgate_test_plugins as test_only;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn load(host: &PluginHost, source: PluginSource, limits: Limits) -> Result<Plugin, PluginError> {
    host.load(
        &source,
        &LoadOptions {
            limits,
            ..LoadOptions::default()
        },
    )
}

fn file(path: &str) -> PluginSource {
    PluginSource::File(PathBuf::from(path))
}

fn binding(metrics: StaticMetrics, backends: &[&str]) -> MetricsBinding {
    MetricsBinding::new(Arc::new(metrics), backends.iter().map(|b| b.to_string()))
}

fn threshold_config(condition: &str) -> String {
    format!(
        r#"{{"backend": "prom", "query": "sum(rate(errors[1m]))", "window": "5m", "reduce": "avg", "condition": "{condition}"}}"#
    )
}

/// A healthy threshold call, to show the host still serves plugins after a hostile one.
async fn threshold_still_works(host: &PluginHost) {
    let plugin = load(
        host,
        PluginSource::Builtin("threshold".into()),
        Limits::default(),
    )
    .expect("threshold loads");
    let m = plugin
        .measure(
            &threshold_config("< 0.05"),
            &context(1_700_000_100_000),
            Some(binding(
                StaticMetrics::new(vec![series(&[0.01, 0.02])]),
                &["prom"],
            )),
        )
        .await
        .expect("threshold measures");
    assert_eq!(m.verdict, Verdict::Pass, "{}", m.message);
}

#[tokio::test]
async fn threshold_measures_through_the_host() {
    let host = host();
    let plugin = load(
        &host,
        PluginSource::Builtin("threshold".into()),
        Limits::default(),
    )
    .unwrap();
    assert_eq!(plugin.kind(), PluginKind::Provider);
    let info = plugin.info().await.unwrap();
    assert_eq!(info.name, "threshold");
    let schema: serde_json::Value = serde_json::from_str(&info.config_schema).unwrap();
    assert!(schema["properties"]["condition"].is_object(), "{schema}");

    let cases = [
        (vec![series(&[0.01, 0.03])], Verdict::Pass, Some(0.02)),
        (vec![series(&[0.06, 0.08])], Verdict::Fail, Some(0.07)),
        (vec![], Verdict::NoData, None),
        (vec![series(&[f64::NAN, f64::NAN])], Verdict::NoData, None),
    ];
    for (data, verdict, value) in cases {
        let metrics = Arc::new(StaticMetrics::new(data));
        let m = plugin
            .measure(
                &threshold_config("< 0.05"),
                &context(1_700_000_300_000),
                Some(MetricsBinding::new(metrics.clone(), ["prom".to_string()])),
            )
            .await
            .unwrap();
        assert_eq!(m.verdict, verdict, "{}", m.message);
        match (m.value, value) {
            (Some(got), Some(want)) => assert!((got - want).abs() < 1e-12, "{got} vs {want}"),
            (got, want) => assert_eq!(got, want),
        }
        // The window ends at the rollout's "now", not the wall clock.
        let seen = metrics.seen.lock().unwrap();
        assert_eq!(
            seen[0].window,
            rollgate::metrics::Window::Range {
                start_ms: 1_700_000_000_000,
                end_ms: 1_700_000_300_000,
                step_ms: 5_000
            }
        );
        assert_eq!(seen[0].backend, "prom");
    }
}

/// A component built against the previous contract minor (0.1: samples as records) loads,
/// validates and measures through the host, and its samples arrive intact.
#[tokio::test]
async fn a_plugin_of_the_previous_contract_minor_loads_and_measures() {
    let host = host();
    let current = load(
        &host,
        PluginSource::Builtin("threshold".into()),
        Limits::default(),
    )
    .unwrap();
    assert_eq!(current.contract(), Contract::V0_2);
    assert_eq!(current.contract().to_string(), "rollgate:plugin@0.2");

    let plugin = load(&host, file(test_only::CONTRACT_V01), Limits::default()).unwrap();
    assert_eq!(plugin.kind(), PluginKind::Provider);
    assert_eq!(plugin.contract(), Contract::V0_1);
    assert!(
        plugin
            .exports()
            .iter()
            .any(|e| e == "rollgate:plugin/verifier@0.1.0"),
        "{:?}",
        plugin.exports()
    );
    assert!(
        plugin
            .imports()
            .iter()
            .any(|i| i == "rollgate:plugin/metrics@0.1.0"),
        "{:?}",
        plugin.imports()
    );
    assert_eq!(plugin.info().await.unwrap().name, "contract-v01");

    // validate: results converted from 0.1's types, every problem with its path.
    let config = r#"{"backend": "prom", "query": "latency"}"#;
    assert!(plugin.validate(config).await.unwrap().is_empty());
    let problems = plugin.validate("{}").await.unwrap();
    let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
    assert_eq!(paths, ["/backend", "/query"], "{problems:?}");

    // measure: two series whose samples must cross 0.1's record lowering bit for bit.
    let values_a = [0.1 + 0.2, -2.5e-300, f64::NAN, f64::INFINITY, -0.0, 7.0];
    let values_b = [f64::MAX, 1e-7];
    let mut a = series(&values_a);
    a.labels.push(("version".into(), "canary".into()));
    let mut b = series(&values_b);
    b.labels = vec![];
    b.points[1].0 = -1;
    let sent = vec![a, b];
    let metrics = Arc::new(StaticMetrics::new(sent.clone()));
    let range = r#"{"backend": "prom", "query": "latency", "range": {"start-ms": 1000, "end-ms": 61000, "step-ms": 15000}}"#;
    let m = plugin
        .measure(
            range,
            &context(1_700_000_300_000),
            Some(MetricsBinding::new(metrics.clone(), ["prom".to_string()])),
        )
        .await
        .unwrap();
    assert_eq!(m.verdict, Verdict::Pass, "{}", m.message);
    let finite: Vec<f64> = values_a
        .iter()
        .chain(&values_b)
        .copied()
        .filter(|v| v.is_finite())
        .collect();
    let mean = finite.iter().sum::<f64>() / finite.len() as f64;
    assert_eq!(m.value, Some(mean), "{}", m.message);
    let details: serde_json::Value = serde_json::from_str(&m.details).unwrap();
    assert_eq!(details["contract"], "0.1");
    let echoed = details["series"].as_array().unwrap();
    assert_eq!(echoed.len(), sent.len(), "{details}");
    for (got, want) in echoed.iter().zip(&sent) {
        let labels: Vec<(String, String)> = serde_json::from_value(got["labels"].clone()).unwrap();
        assert_eq!(labels, want.labels);
        let times: Vec<i64> = serde_json::from_value(got["times"].clone()).unwrap();
        let bits: Vec<u64> = serde_json::from_value(got["value-bits"].clone()).unwrap();
        let want_times: Vec<i64> = want.points.iter().map(|p| p.0).collect();
        let want_bits: Vec<u64> = want.points.iter().map(|p| p.1.to_bits()).collect();
        assert_eq!(times, want_times);
        assert_eq!(bits, want_bits);
    }
    assert_eq!(
        metrics.seen.lock().unwrap()[0].window,
        rollgate::metrics::Window::Range {
            start_ms: 1000,
            end_ms: 61_000,
            step_ms: 15_000
        }
    );

    // The same provider built on the current minor (columns) sees the same samples.
    let twin = load(&host, file(test_only::CONTRACT_V02), Limits::default()).unwrap();
    assert_eq!(twin.contract(), Contract::V0_2);
    let m2 = twin
        .measure(
            range,
            &context(1_700_000_300_000),
            Some(binding(StaticMetrics::new(sent.clone()), &["prom"])),
        )
        .await
        .unwrap();
    assert_eq!(m2.value.map(f64::to_bits), m.value.map(f64::to_bits));
    let mut details2: serde_json::Value = serde_json::from_str(&m2.details).unwrap();
    assert_eq!(details2["contract"], "0.2");
    details2["contract"] = "0.1".into();
    assert_eq!(details2, details);

    // The 0.1 metrics import answers with the same rules: an unbound backend is denied.
    let err = plugin
        .measure(
            r#"{"backend": "other", "query": "latency"}"#,
            &context(1_700_000_300_000),
            Some(binding(StaticMetrics::new(vec![]), &["prom"])),
        )
        .await
        .expect_err("denied");
    assert_eq!(err.kind(), "guest-error", "{err}");
    assert!(
        err.to_string().contains("not bound to this metric"),
        "{err}"
    );

    // An instant query defaults to the rollout's now, as for 0.2 plugins.
    let metrics = Arc::new(StaticMetrics::new(vec![]));
    let m = plugin
        .measure(
            config,
            &context(1_700_000_300_000),
            Some(MetricsBinding::new(metrics.clone(), ["prom".to_string()])),
        )
        .await
        .unwrap();
    assert_eq!(m.verdict, Verdict::NoData, "{}", m.message);
    assert_eq!(
        metrics.seen.lock().unwrap()[0].window,
        rollgate::metrics::Window::Instant(1_700_000_300_000)
    );
}

#[tokio::test]
async fn validate_reports_every_problem_with_its_path() {
    let host = host();
    let plugin = load(
        &host,
        PluginSource::Builtin("threshold".into()),
        Limits::default(),
    )
    .unwrap();
    assert!(
        plugin
            .validate(&threshold_config("< 0.05"))
            .await
            .unwrap()
            .is_empty()
    );
    let problems = plugin
        .validate(r#"{"backend": "prom", "query": "up", "condition": "<< 1", "reduce": "p200"}"#)
        .await
        .unwrap();
    let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
    assert_eq!(paths, ["/reduce", "/condition"], "{problems:?}");
    let problems = plugin
        .validate(r#"{"backend": "prom", "query": 3}"#)
        .await
        .unwrap();
    assert_eq!(problems.len(), 1);
    assert_eq!(problems[0].path, "/query");
    assert!(problems[0].message.contains("invalid type"), "{problems:?}");
}

#[tokio::test]
async fn a_provider_may_only_query_backends_bound_to_its_metric() {
    let host = host();
    let plugin = load(
        &host,
        PluginSource::Builtin("threshold".into()),
        Limits::default(),
    )
    .unwrap();
    let err = plugin
        .measure(
            &threshold_config("< 0.05"),
            &context(1_700_000_300_000),
            Some(binding(
                StaticMetrics::new(vec![series(&[0.01])]),
                &["datadog"],
            )),
        )
        .await
        .expect_err("prom is not bound");
    assert_eq!(err.kind(), "guest-error");
    let msg = err.to_string();
    assert!(
        msg.contains("denied") && msg.contains("\"prom\" is not bound"),
        "{msg}"
    );

    // No binding at all is denied too.
    let err = plugin
        .measure(&threshold_config("< 0.05"), &context(0), None)
        .await
        .expect_err("nothing bound");
    assert!(err.to_string().contains("denied"), "{err}");
}

#[tokio::test]
async fn default_policy_decides() {
    let host = host();
    let policy = load(
        &host,
        PluginSource::Builtin("default-policy".into()),
        Limits::default(),
    )
    .unwrap();
    assert_eq!(policy.kind(), PluginKind::Policy);
    let input = PolicyInput {
        rollout: "checkout".into(),
        phase: "canary-10".into(),
        phase_index: 0,
        phase_count: 3,
        weight: 10.0,
        now_ms: 0,
        phase_complete: false,
        metrics: vec![MetricSummary {
            name: "error-rate".into(),
            status: MetricStatus::Failed,
            dry_run: false,
            measurements: 3,
            passes: 0,
            failures: 3,
            inconclusives: 0,
            no_data: 0,
            errors: 0,
            consecutive_errors: 0,
            last_verdict: Some(Verdict::Fail),
            last_value: Some(0.071),
            message: "3 fails > failureLimit 2, last value 0.071 (< 0.05)".into(),
        }],
        pauses: vec![],
        attempt: 1,
    };
    match policy.decide("{}", &input).await.unwrap() {
        Decision::Rollback(reason) => assert!(reason.contains("error-rate"), "{reason}"),
        other => panic!("expected rollback, got {other:?}"),
    }
    match policy
        .decide(r#"{"failed": "pause"}"#, &input)
        .await
        .unwrap()
    {
        Decision::Pause(p) => assert_eq!(p.duration_ms, None),
        other => panic!("expected pause, got {other:?}"),
    }
    // A policy is not a provider, and the other way round.
    let err = policy.measure("{}", &context(0), None).await.unwrap_err();
    assert_eq!(err.kind(), "wrong-kind");
    let provider = load(
        &host,
        PluginSource::Builtin("threshold".into()),
        Limits::default(),
    )
    .unwrap();
    assert_eq!(
        provider.decide("{}", &input).await.unwrap_err().kind(),
        "wrong-kind"
    );
}

/// Run one hostile mode and return its error (it must fail).
async fn hostile(host: &PluginHost, mode: &str, limits: Limits) -> (PluginError, Duration) {
    let plugin = load(host, file(test_only::HOSTILE), limits).expect("hostile plugin loads");
    let started = Instant::now();
    let result = plugin
        .measure(
            &format!(r#"{{"mode": "{mode}"}}"#),
            &context(1_700_000_000_000),
            Some(binding(StaticMetrics::new(vec![series(&[1.0])]), &["prom"])),
        )
        .await;
    let elapsed = started.elapsed();
    match result {
        Ok(m) => panic!(
            "hostile mode {mode} returned a measurement: {:?} {}",
            m.verdict, m.message
        ),
        Err(e) => (e, elapsed),
    }
}

fn quick() -> Limits {
    Limits {
        timeout: Duration::from_millis(300),
        ..Limits::default()
    }
}

#[tokio::test]
async fn hostile_plugins_end_as_named_errors() {
    let host = host();
    // (mode, limits, expected kind, text the error must contain)
    let cases: Vec<(&str, Limits, &str, &str)> = vec![
        ("loop", quick(), "timeout", "exceeded the limit of 300ms"),
        ("sleep", quick(), "timeout", "own run time"),
        (
            "memory",
            quick(),
            "memory-limit",
            "over the limit of 67108864 bytes",
        ),
        ("stack", quick(), "stack-overflow", "stack overflow"),
        (
            "panic",
            quick(),
            "trap",
            "hostile plugin panicked on purpose",
        ),
        ("oversized", quick(), "too-large", "more than 1048576 bytes"),
        ("file", quick(), "guest-error", "file access failed"),
        ("env", quick(), "guest-error", "environment is empty"),
        // WASI 0.2's exit carries only success or failure: exit(3) arrives as status 1.
        ("exit", quick(), "exit", "exited with status 1"),
        (
            "query-unbound",
            quick(),
            "guest-error",
            "not bound to this metric",
        ),
        (
            "loop",
            Limits {
                fuel: Some(5_000_000),
                timeout: Duration::from_secs(30),
                ..Limits::default()
            },
            "out-of-fuel",
            "budget of 5000000",
        ),
        (
            "memory",
            Limits {
                memory_bytes: 8 << 20,
                ..quick()
            },
            "memory-limit",
            "over the limit of 8388608 bytes",
        ),
    ];
    for (mode, limits, kind, text) in cases {
        let timeout = limits.timeout;
        let (err, elapsed) = hostile(&host, mode, limits).await;
        assert_eq!(err.kind(), kind, "mode {mode}: {err}");
        let msg = err.to_string();
        assert!(msg.contains(text), "mode {mode}: {msg}");
        assert!(
            msg.contains("\"hostile\""),
            "mode {mode} error names the plugin: {msg}"
        );
        // Ended by its limit, not by luck: well within the timeout plus scheduling slack.
        assert!(
            elapsed < timeout + Duration::from_secs(5),
            "mode {mode} took {elapsed:?}"
        );
        threshold_still_works(&host).await;
    }
    // Each limit hit is counted for /metrics under its kind; a trap is not a limit.
    let t = rollgate::telemetry::global();
    for (limit, at_least) in [
        ("timeout", 2),
        ("memory-limit", 2),
        ("stack-overflow", 1),
        ("too-large", 1),
        ("out-of-fuel", 1),
    ] {
        let n = t.counter(
            "rollgate_plugin_limit_hits_total",
            &[("plugin", "hostile"), ("limit", limit)],
        );
        assert!(n >= at_least, "{limit}: {n}");
    }
    assert_eq!(
        t.counter(
            "rollgate_plugin_limit_hits_total",
            &[("plugin", "hostile"), ("limit", "trap")]
        ),
        0
    );
}

#[tokio::test]
async fn a_flood_of_output_is_rate_limited_not_fatal() {
    let host = host();
    let plugin = load(
        &host,
        file(test_only::HOSTILE),
        Limits {
            timeout: Duration::from_secs(20),
            ..Limits::default()
        },
    )
    .unwrap();
    let m = plugin
        .measure(r#"{"mode": "log-flood"}"#, &context(0), None)
        .await
        .expect("flooding is allowed, just not forwarded");
    assert_eq!(m.verdict, Verdict::Pass);
    // 200,000 lines were written; the burst and a trickle got through.
    assert!(
        plugin.dropped_log_lines() > 150_000,
        "{}",
        plugin.dropped_log_lines()
    );
}

#[tokio::test]
async fn hostile_calls_do_not_disturb_concurrent_calls() {
    let host = host();
    let bad = load(&host, file(test_only::HOSTILE), quick()).unwrap();
    let good = load(
        &host,
        PluginSource::Builtin("threshold".into()),
        Limits::default(),
    )
    .unwrap();
    let mut tasks = Vec::new();
    for mode in ["loop", "memory", "panic", "stack", "loop"] {
        let bad = bad.clone();
        tasks.push(tokio::spawn(async move {
            bad.measure(&format!(r#"{{"mode": "{mode}"}}"#), &context(0), None)
                .await
                .map(|_| ())
                .map_err(|e| e.kind())
        }));
    }
    let mut good_results = Vec::new();
    for _ in 0..20 {
        good_results.push(
            good.measure(
                &threshold_config("< 0.05"),
                &context(1_700_000_100_000),
                Some(binding(
                    StaticMetrics::new(vec![series(&[0.01])]),
                    &["prom"],
                )),
            )
            .await,
        );
    }
    for r in good_results {
        assert_eq!(r.expect("good plugin keeps working").verdict, Verdict::Pass);
    }
    let kinds: Vec<_> = futures_join(tasks).await;
    assert_eq!(
        kinds,
        [
            Err("timeout"),
            Err("memory-limit"),
            Err("trap"),
            Err("stack-overflow"),
            Err("timeout")
        ]
    );
}

async fn futures_join<T: Send + 'static>(tasks: Vec<tokio::task::JoinHandle<T>>) -> Vec<T> {
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.expect("task did not panic"));
    }
    out
}

#[tokio::test]
async fn query_time_is_not_charged_to_the_plugin_but_has_its_own_limit() {
    let host = host();
    let plugin = load(&host, file(test_only::HOSTILE), quick()).unwrap();
    let mut slow = StaticMetrics::new(vec![series(&[1.0])]);
    slow.delay = Duration::from_millis(600);
    let slow = Arc::new(slow);
    // A 600 ms query does not count against the 300 ms plugin timeout.
    let m = plugin
        .measure(
            r#"{"mode": "query", "backend": "prom"}"#,
            &context(0),
            Some(MetricsBinding::new(slow.clone(), ["prom".to_string()])),
        )
        .await
        .expect("slow query is fine");
    assert_eq!(m.value, Some(1.0));
    // But queries have their own budget.
    let plugin = load(
        &host,
        file(test_only::HOSTILE),
        Limits {
            query_timeout: Duration::from_millis(200),
            ..quick()
        },
    )
    .unwrap();
    let err = plugin
        .measure(
            r#"{"mode": "query", "backend": "prom"}"#,
            &context(0),
            Some(MetricsBinding::new(slow, ["prom".to_string()])),
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), "timeout");
    assert!(err.to_string().contains("queryTimeout"), "{err}");
}

#[tokio::test]
async fn components_that_are_not_plugins_are_refused_at_load() {
    let host = host();
    let load_err = |source: PluginSource| {
        load(&host, source, Limits::default())
            .err()
            .expect("refused")
    };

    let err = load_err(file(test_only::HOSTILE_SOCKET));
    assert_eq!(err.kind(), "forbidden-import", "{err}");
    assert!(err.to_string().contains("wasi:sockets/"), "{err}");

    let err = load_err(file(test_only::UNKNOWN_WORLD));
    assert_eq!(err.kind(), "unknown-world", "{err}");
    assert!(
        err.to_string().contains("example:greeter/greet@1.0.0"),
        "{err}"
    );

    // (module (func (export "measure"))), assembled by hand.
    let core: Vec<u8> = [
        &b"\0asm\x01\0\0\0"[..],
        &[0x01, 0x04, 0x01, 0x60, 0x00, 0x00],
        &[0x03, 0x02, 0x01, 0x00],
        &[0x07, 0x0b, 0x01, 0x07],
        b"measure",
        &[0x00, 0x00],
        &[0x0a, 0x04, 0x01, 0x02, 0x00, 0x0b],
    ]
    .concat();
    let err = load_err(PluginSource::Bytes(core.into()));
    assert_eq!(err.kind(), "not-a-component", "{err}");
    assert!(err.to_string().contains("core WebAssembly module"), "{err}");

    let err = load_err(PluginSource::Bytes(
        b"#!/bin/sh\necho pass\n".to_vec().into(),
    ));
    assert_eq!(err.kind(), "not-a-component");

    let err = load_err(file("/nonexistent/plugin.wasm"));
    assert_eq!(err.kind(), "read");
    assert!(
        err.to_string().contains("/nonexistent/plugin.wasm"),
        "{err}"
    );

    let err = load_err(PluginSource::Builtin("nope".into()));
    assert!(
        err.to_string().contains("threshold, default-policy"),
        "{err}"
    );

    let err = load(
        &host,
        PluginSource::Builtin("threshold".into()),
        Limits {
            max_component_bytes: 1000,
            ..Limits::default()
        },
    )
    .err()
    .unwrap();
    assert_eq!(err.kind(), "component-too-large");

    // A truncated component is invalid, with wasmtime's reason.
    let bytes = std::fs::read(test_only::THRESHOLD).unwrap();
    let err = load_err(PluginSource::Bytes(
        bytes[..bytes.len() / 2].to_vec().into(),
    ));
    assert_eq!(err.kind(), "invalid", "{err}");
}

#[tokio::test]
async fn pinned_sha256_is_enforced() {
    let host = host();
    let bytes = std::fs::read(test_only::THRESHOLD).unwrap();
    let digest = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(&bytes))
    };
    let opts = |sha: &str| LoadOptions {
        name: Some("my-threshold".into()),
        sha256: Some(sha.to_string()),
        ..LoadOptions::default()
    };
    let plugin = host
        .load(
            &file(test_only::THRESHOLD),
            &opts(&format!("sha256:{}", digest.to_uppercase())),
        )
        .expect("matching digest loads");
    assert_eq!(plugin.sha256(), digest);
    let wrong = "0".repeat(64);
    let err = host
        .load(&file(test_only::THRESHOLD), &opts(&wrong))
        .err()
        .unwrap();
    assert_eq!(err.kind(), "digest-mismatch");
    let msg = err.to_string();
    assert!(
        msg.contains("\"my-threshold\"") && msg.contains(&digest) && msg.contains(&wrong),
        "{msg}"
    );
}

#[tokio::test]
async fn the_compile_cache_is_used_and_survives_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let cache_dir = dir.path().join("cache");
    let host = PluginHost::new(HostConfig {
        cache: ComponentCache::at(&cache_dir),
        ..HostConfig::default()
    })
    .unwrap();
    let source = PluginSource::Builtin("threshold".into());
    let (_, first) = host.load_traced(&source, &LoadOptions::default()).unwrap();
    assert_eq!(first, CacheOutcome::Compiled);
    let (plugin, second) = host.load_traced(&source, &LoadOptions::default()).unwrap();
    assert_eq!(second, CacheOutcome::Hit);
    assert!(plugin.info().await.is_ok(), "cached component runs");

    // Corrupt every cached artifact: the next load recompiles instead of failing.
    for entry in std::fs::read_dir(&cache_dir).unwrap() {
        std::fs::write(entry.unwrap().path(), b"garbage").unwrap();
    }
    let (plugin, third) = host.load_traced(&source, &LoadOptions::default()).unwrap();
    assert_eq!(third, CacheOutcome::Compiled);
    assert!(plugin.info().await.is_ok());
    let (_, fourth) = host.load_traced(&source, &LoadOptions::default()).unwrap();
    assert_eq!(
        fourth,
        CacheOutcome::Hit,
        "the corrupt artifact was rewritten"
    );

    // A fuel-metered engine is a different engine: its artifacts are keyed apart.
    let metered = LoadOptions {
        limits: Limits {
            fuel: Some(1_000_000_000),
            ..Limits::default()
        },
        ..LoadOptions::default()
    };
    let (_, fifth) = host.load_traced(&source, &metered).unwrap();
    assert_eq!(fifth, CacheOutcome::Compiled);
    let artifacts = std::fs::read_dir(&cache_dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "cwasm"))
        })
        .count();
    assert_eq!(artifacts, 2, "one artifact per engine");
    let (_, sixth) = host.load_traced(&source, &LoadOptions::default()).unwrap();
    assert_eq!(
        sixth,
        CacheOutcome::Hit,
        "the plain engine's artifact is still there"
    );
    let (_, seventh) = host.load_traced(&source, &metered).unwrap();
    assert_eq!(seventh, CacheOutcome::Hit);
}

#[test]
fn an_unsafe_cache_directory_is_not_trusted() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let shared = dir.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o777)).unwrap();
    assert!(ComponentCache::at(&shared).dir().is_none());
    let private = dir.path().join("private");
    assert_eq!(ComponentCache::at(&private).dir(), Some(private.as_path()));
}

#[tokio::test]
async fn deterministic_mode_freezes_clocks_and_seeds_randomness() {
    let host = host();
    let load_mode = |deterministic| {
        host.load(
            &file(test_only::HOSTILE),
            &LoadOptions {
                deterministic,
                ..LoadOptions::default()
            },
        )
        .unwrap()
    };
    let clock = |plugin: Plugin| async move {
        plugin
            .measure(r#"{"mode": "clock"}"#, &context(1_700_000_300_000), None)
            .await
            .unwrap()
            .message
    };
    let det = load_mode(true);
    let (a, b) = (clock(det.clone()).await, clock(det).await);
    assert_eq!(a, b, "same input, same output");
    // The wall clock is the rollout's "now"; the monotonic clock steps 1 µs per reading.
    assert!(a.starts_with("wall=1700000300000 hash="), "{a}");
    assert!(a.ends_with(" elapsed=1000"), "{a}");

    let live = load_mode(false);
    let (c, d) = (clock(live.clone()).await, clock(live).await);
    assert!(!c.starts_with("wall=1700000300000"), "the real clock: {c}");
    let hash = |m: &str| m.split(' ').nth(1).map(str::to_string);
    assert_ne!(hash(&c), hash(&d), "real randomness differs between calls");
}

#[tokio::test]
async fn limits_still_fire_after_the_host_is_dropped() {
    // The CLI loads a plugin and lets the host go; the epoch ticker must live on with the
    // plugin, or a looping plugin would never be stopped.
    let plugin = {
        let host = host();
        load(&host, file(test_only::HOSTILE), quick()).unwrap()
    };
    let err = plugin
        .measure(r#"{"mode": "loop"}"#, &context(0), None)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), "timeout", "{err}");
    // validate and info are under the same limits.
    let err = plugin
        .validate(r#"{"mode": "validate-loop"}"#)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), "timeout", "{err}");
}

#[tokio::test]
async fn component_files_are_read_with_bounds() {
    let host = host();
    let err = load(&host, file("/dev/zero"), Limits::default())
        .err()
        .unwrap();
    assert_eq!(err.kind(), "read");
    assert!(err.to_string().contains("not a regular file"), "{err}");
    let err = load(
        &host,
        file(test_only::THRESHOLD),
        Limits {
            max_component_bytes: 4096,
            ..Limits::default()
        },
    )
    .err()
    .unwrap();
    assert_eq!(err.kind(), "component-too-large");
    assert!(err.to_string().contains("limit of 4096 bytes"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_concurrent_calls_than_pool_slots_wait_their_turn() {
    for pooling in [true, false] {
        let host = PluginHost::new(HostConfig {
            cache: ComponentCache::disabled(),
            max_concurrent_calls: 3,
            pooling,
            ..HostConfig::default()
        })
        .unwrap();
        let plugin = load(
            &host,
            PluginSource::Builtin("threshold".into()),
            Limits::default(),
        )
        .unwrap();
        let mut tasks = Vec::new();
        for i in 0..40 {
            let plugin = plugin.clone();
            tasks.push(tokio::spawn(async move {
                let value = if i % 2 == 0 { 0.01 } else { 0.09 };
                plugin
                    .measure(
                        &threshold_config("< 0.05"),
                        &context(1_700_000_300_000),
                        Some(binding(
                            StaticMetrics::new(vec![series(&[value])]),
                            &["prom"],
                        )),
                    )
                    .await
                    .map(|m| m.verdict)
            }));
        }
        let verdicts = futures_join(tasks).await;
        for (i, v) in verdicts.into_iter().enumerate() {
            let expected = if i % 2 == 0 {
                Verdict::Pass
            } else {
                Verdict::Fail
            };
            assert_eq!(
                v.expect("every call gets a slot eventually"),
                expected,
                "call {i}, pooling {pooling}"
            );
        }
    }
}

#[tokio::test]
async fn the_readme_example_plugin_works() {
    let host = host();
    let plugin = load(&host, file(test_only::ERROR_RATIO), Limits::default()).unwrap();
    let info = plugin.info().await.unwrap();
    assert_eq!(info.name, "error-ratio");
    let config = r#"{"backend": "prom", "query": "errors / requests", "max": 0.05}"#;
    assert!(plugin.validate(config).await.unwrap().is_empty());
    let problems = plugin
        .validate(r#"{"backend": "prom", "query": "q"}"#)
        .await
        .unwrap();
    assert!(
        problems[0].message.contains("missing field `max`"),
        "{problems:?}"
    );
    for (value, verdict) in [(0.01, Verdict::Pass), (0.2, Verdict::Fail)] {
        let m = plugin
            .measure(
                config,
                &context(0),
                Some(binding(
                    StaticMetrics::new(vec![series(&[value])]),
                    &["prom"],
                )),
            )
            .await
            .unwrap();
        assert_eq!(m.verdict, verdict, "{}", m.message);
    }
    let m = plugin
        .measure(
            config,
            &context(0),
            Some(binding(StaticMetrics::new(vec![]), &["prom"])),
        )
        .await
        .unwrap();
    assert_eq!(m.verdict, Verdict::NoData);
}

#[test]
fn compiling_is_bounded_in_time() {
    let host = PluginHost::new(HostConfig {
        cache: ComponentCache::disabled(),
        compile_timeout: Duration::from_nanos(1),
        ..HostConfig::default()
    })
    .unwrap();
    let err = load(
        &host,
        PluginSource::Builtin("threshold".into()),
        Limits::default(),
    )
    .err()
    .expect("a 300 KB component does not compile in a nanosecond");
    assert_eq!(err.kind(), "compile-timeout", "{err}");
    assert!(err.to_string().contains("\"threshold\""), "{err}");
}

#[tokio::test]
async fn loading_from_async_code_does_not_block_the_executor() {
    let host = host();
    let plugin = host
        .load_async(
            PluginSource::Builtin("threshold".into()),
            LoadOptions::default(),
        )
        .await
        .expect("loads");
    assert_eq!(plugin.info().await.unwrap().name, "threshold");
    let err = host
        .load_async(file(test_only::UNKNOWN_WORLD), LoadOptions::default())
        .await
        .err()
        .expect("refused the same way as load");
    assert_eq!(err.kind(), "unknown-world");
}
