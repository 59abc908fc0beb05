//! The per-call path: each call on a [`Plugin`] runs in a fresh store and instance, under
//! a call slot, the plugin's limits (memory, tables, handles, result size, fuel) and the
//! epoch deadline, supervised against its time budgets; a failure is named by its cause,
//! and what came back is checked before anyone sees it.

use super::host::HostInner;
use super::logs::{CallOutput, LogSink};
use super::sandbox::{self, FixedClock, Limiter, QueryClock, StoreData};
use super::types::{Decision, Measurement, PluginInfo, PolicyInput, RolloutContext, Verdict};
use super::versions::{Contract, PolicyPre, ProviderPre};
use super::{ConfigProblem, Limits, MetricsBinding, PluginError, PluginKind};
use std::sync::Arc;
use std::time::{Duration, Instant};
use wasmtime::component::ResourceTable;
use wasmtime::{Engine, Store};
use wasmtime_wasi::WasiCtxBuilder;

/// A call's store, its captured output, and its query-time clock.
type CallParts = (Store<StoreData>, Arc<CallOutput>, Arc<QueryClock>);

pub(super) enum Pre {
    Provider(ProviderPre),
    Policy(PolicyPre),
}

pub(super) struct PluginInner {
    pub(super) name: Arc<str>,
    pub(super) sha256: String,
    pub(super) kind: PluginKind,
    /// The contract minor it was built against.
    pub(super) contract: Contract,
    pub(super) pre: Pre,
    pub(super) limits: Limits,
    pub(super) deterministic: bool,
    /// Who the plugin may call over wasi:http.
    pub(super) allowed_hosts: Arc<[String]>,
    pub(super) engine: Engine,
    pub(super) permits: Arc<tokio::sync::Semaphore>,
    /// Keeps the host — and so its epoch ticker, without which no time limit fires —
    /// alive as long as any plugin is.
    pub(super) _host: Arc<HostInner>,
    pub(super) logs: Arc<LogSink>,
    pub(super) exports: Vec<String>,
    pub(super) imports: Vec<String>,
}

/// A loaded plugin. Cheap to clone; calls may run concurrently, each in its own instance.
#[derive(Clone)]
pub struct Plugin {
    pub(super) inner: Arc<PluginInner>,
}

/// Run one call in a fresh store and instance, under a call slot and the time budgets,
/// naming any failure: `$body` is a future over `$store`.
macro_rules! run_call {
    ($plugin:expr, $metrics:expr, $now_ms:expr, |$store:ident| $body:expr) => {{
        let started = Instant::now();
        let result = async {
            let _permit = $plugin.permit().await?;
            let (mut $store, output, clock) = $plugin.store($metrics, $now_ms)?;
            let result = $plugin.supervise($body, &clock).await?;
            result.map_err(|e| $plugin.classify(e, &$store, &output))
        }
        .await;
        $plugin.record_call(started, result.as_ref().err());
        result
    }};
}

impl Plugin {
    /// The name used in logs and errors.
    pub fn name(&self) -> &str {
        &self.inner.name
    }
    /// The component's sha256 (hex).
    pub fn sha256(&self) -> &str {
        &self.inner.sha256
    }
    /// Which world it implements.
    pub fn kind(&self) -> PluginKind {
        self.inner.kind
    }
    /// The contract minor it was built against (from its export names).
    pub fn contract(&self) -> Contract {
        self.inner.contract
    }
    /// Its limits.
    pub fn limits(&self) -> &Limits {
        &self.inner.limits
    }
    /// The component's export names.
    pub fn exports(&self) -> &[String] {
        &self.inner.exports
    }
    /// The component's import names.
    pub fn imports(&self) -> &[String] {
        &self.inner.imports
    }
    /// Log lines dropped by the rate limit so far.
    pub fn dropped_log_lines(&self) -> u64 {
        self.inner.logs.dropped()
    }

    /// Count a call for `/metrics`: its wall time, and the limit it hit if one stopped it.
    fn record_call(&self, started: Instant, error: Option<&PluginError>) {
        let t = crate::telemetry::global();
        let plugin = self.inner.name.as_ref();
        t.observe(
            "rollgate_plugin_call_seconds",
            crate::telemetry::LATENCY_BUCKETS,
            &[("plugin", plugin)],
            started.elapsed().as_secs_f64(),
        );
        if let Some(e) = error
            && matches!(
                e,
                PluginError::Timeout { .. }
                    | PluginError::OutOfFuel { .. }
                    | PluginError::MemoryLimit { .. }
                    | PluginError::StackOverflow { .. }
                    | PluginError::TooLarge { .. }
            )
        {
            t.count(
                "rollgate_plugin_limit_hits_total",
                &[("plugin", plugin), ("limit", e.kind())],
                1,
            );
        }
    }

    /// Wait for a call slot (bounded by `HostConfig::max_concurrent_calls`).
    async fn permit(&self) -> Result<tokio::sync::OwnedSemaphorePermit, PluginError> {
        self.inner
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| self.host_error(e))
    }

    fn store(
        &self,
        metrics: Option<MetricsBinding>,
        now_ms: i64,
    ) -> Result<CallParts, PluginError> {
        let inner = &self.inner;
        let output = CallOutput::new(inner.logs.clone());
        let mut wasi = WasiCtxBuilder::new();
        wasi.stdout(output.stdout())
            .stderr(output.stderr())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false);
        if inner.deterministic {
            let now = Duration::from_millis(u64::try_from(now_ms).unwrap_or(0));
            wasi.secure_random(wasmtime_wasi::Deterministic::new(vec![
                0x5e, 0xed, 1, 2, 3, 4, 5, 6,
            ]))
            .insecure_random(wasmtime_wasi::Deterministic::new(vec![7, 8, 9, 10, 11, 12]))
            .insecure_random_seed(0x5eed)
            .wall_clock(FixedClock(now))
            .monotonic_clock(sandbox::SteppingClock::default());
        }
        let query_clock = Arc::new(QueryClock::default());
        let limits = &inner.limits;
        let data = StoreData {
            wasi: wasi.build(),
            table: ResourceTable::new(),
            limiter: Limiter {
                memory_bytes: limits.memory_bytes,
                max_table_elements: limits.max_table_elements,
                max_instances: limits.max_instances,
                max_tables: limits.max_tables,
                max_memories: limits.max_memories,
                memory_refused: None,
            },
            plugin: inner.name.clone(),
            logs: inner.logs.clone(),
            metrics,
            query_clock: query_clock.clone(),
            now_ms,
            http: wasmtime_wasi_http::WasiHttpCtx::new(),
            http_policy: sandbox::HttpPolicy {
                allowed: inner.allowed_hosts.clone(),
                timeout: limits.timeout,
            },
        };
        let mut store = Store::new(&inner.engine, data);
        store.limiter(|d| &mut d.limiter);
        store.set_hostcall_fuel(limits.max_result_bytes);
        store.set_max_component_handles(limits.max_handles);
        // Yield to the executor at every epoch tick: the supervisor can then stop a call
        // that is over its budget, and a busy plugin never starves other tasks.
        store.set_epoch_deadline(1);
        store.epoch_deadline_async_yield_and_update(1);
        if let Some(fuel) = limits.fuel {
            store.set_fuel(fuel).map_err(|e| self.host_error(e))?;
        }
        Ok((store, output, query_clock))
    }

    fn host_error(&self, e: impl std::fmt::Display) -> PluginError {
        PluginError::Host {
            plugin: self.inner.name.to_string(),
            message: e.to_string(),
        }
    }

    /// Run `call` under the time budgets: the plugin's own time (wall time minus time spent
    /// waiting on metric queries) and the total query time. Dropping the future stops the
    /// guest at its next epoch yield.
    async fn supervise<R>(
        &self,
        call: impl std::future::Future<Output = wasmtime::Result<R>>,
        clock: &QueryClock,
    ) -> Result<wasmtime::Result<R>, PluginError> {
        let limits = &self.inner.limits;
        let start = Instant::now();
        tokio::pin!(call);
        // Most calls finish in their first poll (well inside one epoch tick, so the guest
        // never yields): no timer is armed for them. A timer is a registration in the
        // runtime's wheel and its removal, on every call.
        if let std::task::Poll::Ready(result) = futures::poll!(&mut call) {
            return Ok(result);
        }
        loop {
            let queries = clock.spent();
            let own = start.elapsed().saturating_sub(queries);
            if own >= limits.timeout {
                return Err(PluginError::Timeout {
                    plugin: self.inner.name.to_string(),
                    what: "the plugin's own run time",
                    field: "timeout",
                    limit: limits.timeout,
                });
            }
            if queries >= limits.query_timeout {
                return Err(PluginError::Timeout {
                    plugin: self.inner.name.to_string(),
                    what: "time waiting on metric queries",
                    field: "queryTimeout",
                    limit: limits.query_timeout,
                });
            }
            let wait = (limits.timeout - own).min(limits.query_timeout - queries);
            tokio::select! {
                result = &mut call => return Ok(result),
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Name a failed call by its cause.
    fn classify(
        &self,
        e: wasmtime::Error,
        store: &Store<StoreData>,
        output: &CallOutput,
    ) -> PluginError {
        let plugin = self.inner.name.to_string();
        let limits = &self.inner.limits;
        if let Some(exit) = e.downcast_ref::<wasmtime_wasi::I32Exit>() {
            return PluginError::Exit {
                plugin,
                code: exit.0,
            };
        }
        if let Some(pool) = e.downcast_ref::<wasmtime::PoolConcurrencyLimitError>() {
            return PluginError::Host {
                plugin,
                message: format!(
                    "the host's instance pool is exhausted ({pool}); raise max_concurrent_calls or lower concurrency"
                ),
            };
        }
        let trap = e.downcast_ref::<wasmtime::Trap>();
        // A refused memory.grow explains an abort (Rust's allocation-failure handler ends in
        // `unreachable`), not a trap of another kind that came later.
        if let Some(requested) = store.data().limiter.memory_refused
            && matches!(trap, None | Some(wasmtime::Trap::UnreachableCodeReached))
        {
            return PluginError::MemoryLimit {
                plugin,
                limit: limits.memory_bytes,
                requested,
            };
        }
        if let Some(trap) = trap {
            return match trap {
                wasmtime::Trap::StackOverflow => PluginError::StackOverflow { plugin },
                wasmtime::Trap::OutOfFuel => PluginError::OutOfFuel {
                    plugin,
                    fuel: limits.fuel.unwrap_or(0),
                },
                other => PluginError::Trap {
                    plugin,
                    trap: other.to_string(),
                    stderr: output.stderr_tail(),
                },
            };
        }
        let message = format!("{e:#}");
        if message.contains("fuel allocated for hostcalls has been exhausted") {
            return PluginError::TooLarge {
                plugin,
                limit: limits.max_result_bytes,
            };
        }
        PluginError::Trap {
            plugin,
            trap: message,
            stderr: output.stderr_tail(),
        }
    }

    fn wrong_kind(&self, wanted: PluginKind) -> PluginError {
        PluginError::WrongKind {
            plugin: self.inner.name.to_string(),
            actual: self.inner.kind.noun(),
            wanted: wanted.noun(),
        }
    }

    /// Ask the plugin to describe itself.
    pub async fn info(&self) -> Result<PluginInfo, PluginError> {
        let info = match &self.inner.pre {
            Pre::Provider(pre) => run_call!(self, None, 0, |store| pre.info(&mut store))?,
            Pre::Policy(pre) => run_call!(self, None, 0, |store| pre.info(&mut store))?,
        };
        if serde_json::from_str::<serde_json::Value>(&info.config_schema).is_err() {
            return Err(PluginError::InvalidResult {
                plugin: self.inner.name.to_string(),
                problem: "info.config-schema is not JSON".into(),
            });
        }
        Ok(info)
    }

    /// Check a configuration (JSON text). `Ok(vec![])` means valid.
    pub async fn validate(&self, config: &str) -> Result<Vec<ConfigProblem>, PluginError> {
        let validated = match &self.inner.pre {
            Pre::Provider(pre) => {
                run_call!(self, None, 0, |store| pre.validate(&mut store, config))?
            }
            Pre::Policy(pre) => run_call!(self, None, 0, |store| pre.validate(&mut store, config))?,
        };
        match validated {
            Ok(()) => Ok(Vec::new()),
            Err(problems) if problems.is_empty() => Err(PluginError::InvalidResult {
                plugin: self.inner.name.to_string(),
                problem: "validate failed without saying why (empty error list)".into(),
            }),
            Err(problems) => Ok(problems),
        }
    }

    /// Take one measurement (verification providers only). `metrics` binds the backends
    /// the operator gave this metric.
    pub async fn measure(
        &self,
        config: &str,
        context: &RolloutContext,
        metrics: Option<MetricsBinding>,
    ) -> Result<Measurement, PluginError> {
        let Pre::Provider(pre) = &self.inner.pre else {
            return Err(self.wrong_kind(PluginKind::Provider));
        };
        let measured = run_call!(self, metrics, context.now_ms, |store| pre
            .measure(&mut store, config, context))?;
        let mut m = measured.map_err(|message| PluginError::Guest {
            plugin: self.inner.name.to_string(),
            message,
        })?;
        self.check_measurement(&mut m)?;
        Ok(m)
    }

    /// The host's checks on what a provider returned.
    fn check_measurement(&self, m: &mut Measurement) -> Result<(), PluginError> {
        let invalid = |problem: String| PluginError::InvalidResult {
            plugin: self.inner.name.to_string(),
            problem,
        };
        if m.details.trim().is_empty() {
            m.details = "{}".into();
        }
        if let Some(problem) = details_problem(&m.details) {
            return Err(invalid(problem));
        }
        if m.verdict == Verdict::Pass && m.value.is_some_and(f64::is_nan) {
            return Err(invalid(
                "verdict pass with a NaN value: a NaN cannot pass a check".into(),
            ));
        }
        Ok(())
    }

    /// Decide (failure policies only).
    pub async fn decide(&self, config: &str, input: &PolicyInput) -> Result<Decision, PluginError> {
        let Pre::Policy(pre) = &self.inner.pre else {
            return Err(self.wrong_kind(PluginKind::Policy));
        };
        let decided = run_call!(self, None, input.now_ms, |store| pre
            .decide(&mut store, config, input))?;
        decided.map_err(|message| PluginError::Guest {
            plugin: self.inner.name.to_string(),
            message,
        })
    }

    /// Instantiate and drop, calling nothing: for benchmarks of the per-call fixed cost.
    #[doc(hidden)]
    pub async fn instantiate_only(&self) -> Result<(), PluginError> {
        let _permit = self.permit().await?;
        let (mut store, output, _clock) = self.store(None, 0)?;
        let r = match &self.inner.pre {
            Pre::Provider(pre) => pre.instantiate(&mut store).await,
            Pre::Policy(pre) => pre.instantiate(&mut store).await,
        };
        r.map_err(|e| self.classify(e, &store, &output))
    }
}

/// What is wrong with a measurement's details, if anything: they must be one JSON object.
/// Checked without building the document (every measurement passes here).
fn details_problem(details: &str) -> Option<String> {
    use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};
    struct Object;
    impl<'de> Visitor<'de> for Object {
        type Value = ();
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            Ok(())
        }
    }
    let mut de = serde_json::Deserializer::from_str(details);
    match de.deserialize_any(Object).and_then(|()| de.end()) {
        Ok(()) => None,
        Err(e) if e.is_data() => Some("details must be a JSON object".into()),
        Err(e) => Some(format!("details are not JSON: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::details_problem;

    #[test]
    fn details_must_be_one_json_object() {
        assert_eq!(details_problem("{}"), None);
        assert_eq!(
            details_problem(r#"{"a": [1, {"b": null}], "limits": []}"#),
            None
        );
        for not_object in ["[]", "1", "\"text\"", "null", "true"] {
            assert_eq!(
                details_problem(not_object).as_deref(),
                Some("details must be a JSON object"),
                "{not_object}"
            );
        }
        for not_json in ["{", "{\"a\": }", "{} {}", "{}x", "nope"] {
            let problem = details_problem(not_json).unwrap_or_default();
            assert!(
                problem.starts_with("details are not JSON: "),
                "{not_json}: {problem}"
            );
        }
    }
}
