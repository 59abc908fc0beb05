//! The per-call sandbox: the store's data (WASI context, limits, the metrics binding, the
//! output capture) and the host side of the plugin's imports.

use super::bindings::provider::rollgate::plugin::{log, metrics as wit, types};
use super::logs::{Level, LogSink};
use crate::metrics::{MetricsSource, Query, QueryErrorKind, Window};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// What a provider may query: the source, and the backends the operator bound to the metric.
#[derive(Clone)]
pub struct MetricsBinding {
    /// Where queries go.
    pub source: Arc<dyn MetricsSource>,
    /// The backend names this metric may use; any other name is `denied`.
    pub backends: Arc<[String]>,
    /// The backend of the last query the source failed during the call (shared with the
    /// call's store), so the caller can tell a backend's failure from the plugin's own.
    failed_query: Arc<Mutex<Option<String>>>,
}

impl MetricsBinding {
    /// Bind `backends` of `source`.
    pub fn new(source: Arc<dyn MetricsSource>, backends: impl IntoIterator<Item = String>) -> Self {
        MetricsBinding {
            source,
            backends: backends.into_iter().collect(),
            failed_query: Arc::default(),
        }
    }

    /// The backend whose query failed last during a call made with this binding (or a
    /// clone of it); `None` when every query was answered. Queries the host refused
    /// before sending (a backend not bound, an invalid range) are the plugin's doing and
    /// do not count.
    pub fn failed_backend(&self) -> Option<String> {
        self.failed_query.lock().ok().and_then(|g| g.clone())
    }
}

/// Time spent waiting on metric queries during one call, so it is not charged to the
/// plugin's own time budget.
#[derive(Debug, Default)]
pub struct QueryClock {
    inner: Mutex<(Duration, Option<Instant>)>,
}

impl QueryClock {
    fn start(&self) {
        if let Ok(mut g) = self.inner.lock() {
            g.1 = Some(Instant::now());
        }
    }
    fn stop(&self) {
        if let Ok(mut g) = self.inner.lock()
            && let Some(since) = g.1.take()
        {
            g.0 += since.elapsed();
        }
    }
    /// Total query time so far, including a query in progress.
    pub fn spent(&self) -> Duration {
        self.inner
            .lock()
            .map(|g| g.0 + g.1.map(|s| s.elapsed()).unwrap_or_default())
            .unwrap_or_default()
    }
}

/// Records limit hits, so a trap can be named by its cause.
#[derive(Debug)]
pub struct Limiter {
    pub memory_bytes: u64,
    pub max_table_elements: usize,
    pub max_instances: usize,
    pub max_tables: usize,
    pub max_memories: usize,
    /// The largest memory size refused, if any.
    pub memory_refused: Option<u64>,
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired as u64 > self.memory_bytes {
            self.memory_refused = Some(desired as u64);
            return Ok(false);
        }
        Ok(true)
    }
    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= self.max_table_elements)
    }
    fn instances(&self) -> usize {
        self.max_instances
    }
    fn tables(&self) -> usize {
        self.max_tables
    }
    fn memories(&self) -> usize {
        self.max_memories
    }
}

/// The data of one call's store.
pub struct StoreData {
    pub wasi: WasiCtx,
    pub table: ResourceTable,
    pub limiter: Limiter,
    pub plugin: Arc<str>,
    pub logs: Arc<LogSink>,
    pub metrics: Option<MetricsBinding>,
    pub query_clock: Arc<QueryClock>,
    /// The rollout's "now", for instant queries without a time.
    pub now_ms: i64,
    /// wasi:http state (used only by plugins allowed outgoing HTTP).
    pub http: wasmtime_wasi_http::WasiHttpCtx,
    /// Who the plugin may call over wasi:http.
    pub http_policy: HttpPolicy,
}

/// Outgoing HTTP of one plugin: only to the hosts its `Plugin` document lists
/// (`allowedHosts`); any other request fails with wasi:http's `HTTP-request-denied`, which
/// the plugin sees as an error. Requests are bounded in time: the guest's own timeouts
/// apply, capped at `timeout`.
#[derive(Debug, Clone, Default)]
pub struct HttpPolicy {
    /// Host names (`api.example.com`) or host:port pairs allowed.
    pub allowed: Arc<[String]>,
    /// The longest a connection, or a wait for the response, may take.
    pub timeout: Duration,
}

impl HttpPolicy {
    /// Whether `uri` names an allowed host (matched without case, with or without its
    /// port).
    pub fn allows(&self, uri: &http::Uri) -> bool {
        let Some(host) = uri.host() else {
            return false;
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let with_port = uri.port_u16().map(|p| format!("{host}:{p}"));
        self.allowed.iter().any(|a| {
            a.eq_ignore_ascii_case(host)
                || with_port
                    .as_deref()
                    .is_some_and(|hp| a.eq_ignore_ascii_case(hp))
        })
    }
}

impl wasmtime_wasi_http::WasiHttpHooks for HttpPolicy {
    fn send_request(
        &mut self,
        request: http::Request<wasmtime_wasi_http::WasiBody>,
        options: Option<wasmtime_wasi_http::RequestOptions>,
        fut: Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
    ) -> Box<
        dyn Future<
                Output = Result<
                    (
                        http::Response<wasmtime_wasi_http::WasiBody>,
                        Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
                    ),
                    wasmtime_wasi_http::Error,
                >,
            > + Send,
    > {
        drop(fut);
        if !self.allows(request.uri()) {
            return Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) });
        }
        let cap = self.timeout;
        let bounded = |t: Option<Duration>| Some(t.map_or(cap, |t| t.min(cap)));
        let options = options.unwrap_or_default();
        let options = wasmtime_wasi_http::RequestOptions {
            connect_timeout: bounded(options.connect_timeout),
            first_byte_timeout: bounded(options.first_byte_timeout),
            between_bytes_timeout: bounded(options.between_bytes_timeout),
        };
        Box::new(async move {
            use http_body_util::BodyExt;
            let (response, io) =
                wasmtime_wasi_http::default_send_request(request, Some(options)).await?;
            Ok((
                response.map(BodyExt::boxed_unsync),
                Box::new(io) as Box<dyn Future<Output = _> + Send>,
            ))
        })
    }
}

impl wasmtime_wasi_http::WasiHttpView for StoreData {
    fn http(&mut self) -> wasmtime_wasi_http::WasiHttpCtxView<'_> {
        wasmtime_wasi_http::WasiHttpCtxView {
            hooks: &mut self.http_policy,
            table: &mut self.table,
            ctx: &mut self.http,
        }
    }
}

impl WasiView for StoreData {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl types::Host for StoreData {}

impl log::Host for StoreData {
    async fn log(&mut self, level: log::Level, message: String) -> wasmtime::Result<()> {
        let level = match level {
            log::Level::Trace => Level::Trace,
            log::Level::Debug => Level::Debug,
            log::Level::Info => Level::Info,
            log::Level::Warn => Level::Warn,
            log::Level::Error => Level::Error,
        };
        self.emit(level, &message);
        Ok(())
    }
}

impl StoreData {
    /// A plugin's log line, for the `log` import of every contract minor.
    pub(super) fn emit(&self, level: Level, message: &str) {
        self.logs.emit(level, message);
    }
}

fn wit_kind(kind: QueryErrorKind) -> wit::QueryErrorKind {
    match kind {
        QueryErrorKind::Denied => wit::QueryErrorKind::Denied,
        QueryErrorKind::UnknownBackend => wit::QueryErrorKind::UnknownBackend,
        QueryErrorKind::BadQuery => wit::QueryErrorKind::BadQuery,
        QueryErrorKind::Unauthorized => wit::QueryErrorKind::Unauthorized,
        QueryErrorKind::Unavailable => wit::QueryErrorKind::Unavailable,
        QueryErrorKind::Timeout => wit::QueryErrorKind::Timeout,
        QueryErrorKind::RateLimited => wit::QueryErrorKind::RateLimited,
        QueryErrorKind::TooLarge => wit::QueryErrorKind::TooLarge,
        QueryErrorKind::Other => wit::QueryErrorKind::Other,
    }
}

impl wit::Host for StoreData {
    async fn query(
        &mut self,
        request: wit::QueryRequest,
    ) -> wasmtime::Result<Result<Vec<types::Series>, wit::QueryError>> {
        // Columns: each series' times and values cross the boundary as two blocks.
        Ok(self.query_series(request).await.map(|series| {
            series
                .into_iter()
                .map(|s| {
                    let (times_ms, values) = s.points.into_iter().unzip();
                    types::Series {
                        labels: s
                            .labels
                            .into_iter()
                            .map(|(name, value)| types::Label { name, value })
                            .collect(),
                        times_ms,
                        values,
                    }
                })
                .collect()
        }))
    }
}

impl StoreData {
    /// Run a plugin's query on the bound source, for the `metrics` import of every
    /// contract minor: the series as the source returned them, or the query error.
    pub(super) async fn query_series(
        &mut self,
        request: wit::QueryRequest,
    ) -> Result<Vec<crate::metrics::Series>, wit::QueryError> {
        let denied = |message: String| wit::QueryError {
            kind: wit::QueryErrorKind::Denied,
            backend: request.backend.clone(),
            message,
        };
        let Some(binding) = self.metrics.clone() else {
            return Err(denied("this call has no metric backends bound".into()));
        };
        if !binding.backends.contains(&request.backend) {
            return Err(denied(format!(
                "backend {:?} is not bound to this metric (bound: [{}]); the operator binds backends in the verification's metric",
                request.backend,
                binding.backends.join(", ")
            )));
        }
        let window = match request.window {
            wit::Window::Instant(at) => Window::Instant(at.unwrap_or(self.now_ms)),
            wit::Window::Range(r) => {
                if r.step_ms == 0 || r.end_ms < r.start_ms {
                    return Err(wit::QueryError {
                        kind: wit::QueryErrorKind::BadQuery,
                        backend: request.backend,
                        message: format!(
                            "invalid range: start {} end {} step {}ms (need start <= end and step > 0)",
                            r.start_ms, r.end_ms, r.step_ms
                        ),
                    });
                }
                Window::Range {
                    start_ms: r.start_ms,
                    end_ms: r.end_ms,
                    step_ms: r.step_ms,
                }
            }
        };
        let query = Query {
            backend: request.backend,
            query: request.query,
            window,
        };
        let started = Instant::now();
        self.query_clock.start();
        let result = binding.source.query(&query).await;
        self.query_clock.stop();
        let elapsed = started.elapsed();
        match result {
            Ok(series) => {
                let points: usize = series.iter().map(|s| s.points.len()).sum();
                tracing::debug!(
                    plugin = &*self.plugin,
                    backend = %query.backend,
                    duration_ms = elapsed.as_secs_f64() * 1e3,
                    series = series.len(),
                    points,
                    "metrics query"
                );
                Ok(series)
            }
            Err(e) => {
                tracing::debug!(
                    plugin = &*self.plugin,
                    backend = %query.backend,
                    duration_ms = elapsed.as_secs_f64() * 1e3,
                    error = %e,
                    "metrics query failed"
                );
                if let Ok(mut failed) = binding.failed_query.lock() {
                    *failed = Some(e.backend.clone());
                }
                Err(wit::QueryError {
                    kind: wit_kind(e.kind),
                    backend: e.backend,
                    message: e.message,
                })
            }
        }
    }
}

/// A monotonic clock for deterministic calls: starts at 0 and advances 1 µs per reading, so
/// the same calls see the same times (a frozen clock would make `sleep` never return).
#[derive(Default)]
pub struct SteppingClock(std::sync::atomic::AtomicU64);

impl wasmtime_wasi::HostMonotonicClock for SteppingClock {
    fn resolution(&self) -> u64 {
        1_000
    }
    fn now(&self) -> u64 {
        self.0
            .fetch_add(1_000, std::sync::atomic::Ordering::Relaxed)
    }
}

/// A wall clock frozen at the rollout's "now", for deterministic calls.
pub struct FixedClock(pub Duration);

impl wasmtime_wasi::HostWallClock for FixedClock {
    fn resolution(&self) -> Duration {
        Duration::from_millis(1)
    }
    fn now(&self) -> Duration {
        self.0
    }
}
