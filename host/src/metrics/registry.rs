//! The operator's backends by name, as the plugins' `metrics` import sees them.

use super::{
    Backend, BoxFuture, DataStatus, MetricsSource, Query, QueryError, QueryErrorKind, QueryResult,
    Series, Window,
};
use futures::FutureExt;
use futures::future::Shared;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::Semaphore;

/// Limits of one backend, shared by every rollout that uses it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackendOptions {
    /// Queries in flight at once (default 8); more wait their turn.
    pub max_concurrency: usize,
    /// Largest result accepted, in points summed over series (default 500,000).
    pub max_points: usize,
}

impl Default for BackendOptions {
    fn default() -> Self {
        BackendOptions {
            max_concurrency: 8,
            max_points: 500_000,
        }
    }
}

type SharedQuery = Shared<BoxFuture<'static, Result<Arc<QueryResult>, QueryError>>>;

struct Entry {
    backend: Arc<dyn Backend>,
    permits: Arc<Semaphore>,
    options: BackendOptions,
}

/// The backends by name. Identical queries in flight at the same time (same backend, query
/// text and window — e.g. two rollouts in the same tick) are sent once and shared.
#[derive(Default)]
pub struct Backends {
    entries: HashMap<String, Entry>,
    in_flight: Mutex<HashMap<Query, SharedQuery>>,
}

impl Backends {
    /// No backends.
    pub fn new() -> Self {
        Backends::default()
    }

    /// Add (or replace) the backend `name`.
    pub fn insert(
        &mut self,
        name: impl Into<String>,
        backend: Arc<dyn Backend>,
        options: BackendOptions,
    ) {
        self.entries.insert(
            name.into(),
            Entry {
                backend,
                permits: Arc::new(Semaphore::new(options.max_concurrency.max(1))),
                options,
            },
        );
    }

    /// The names, sorted.
    pub fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.entries.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }

    /// Run a query with its limits, sharing it with identical queries in flight.
    pub async fn fetch(&self, query: &Query) -> Result<Arc<QueryResult>, QueryError> {
        let Some(entry) = self.entries.get(&query.backend) else {
            return Err(QueryError::new(
                QueryErrorKind::UnknownBackend,
                &query.backend,
                format!(
                    "no backend named {:?} (known: [{}]); declare it as a MetricBackend",
                    query.backend,
                    self.names().join(", ")
                ),
            ));
        };
        let shared = {
            let mut map = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
            match map.get(query) {
                Some(existing) => {
                    tracing::debug!(backend = %query.backend, "joining an identical query in flight");
                    existing.clone()
                }
                None => {
                    let fut = run(
                        entry.backend.clone(),
                        entry.permits.clone(),
                        entry.options,
                        query.clone(),
                    )
                    .boxed()
                    .shared();
                    map.insert(query.clone(), fut.clone());
                    fut
                }
            }
        };
        let result = shared.clone().await;
        let mut map = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
        if map.get(query).is_some_and(|f| f.ptr_eq(&shared)) {
            map.remove(query);
        }
        result
    }
}

async fn run(
    backend: Arc<dyn Backend>,
    permits: Arc<Semaphore>,
    options: BackendOptions,
    query: Query,
) -> Result<Arc<QueryResult>, QueryError> {
    let name = query.backend.as_str();
    let _permit = permits
        .acquire_owned()
        .await
        .map_err(|e| QueryError::new(QueryErrorKind::Other, name, e.to_string()))?;
    let started = Instant::now();
    let result = backend.query(name, &query.query, query.window).await;
    let ms = started.elapsed().as_secs_f64() * 1e3;
    let window = match query.window {
        Window::Instant(t) => format!("at {t}"),
        Window::Range {
            start_ms,
            end_ms,
            step_ms,
        } => format!("{start_ms}..{end_ms} step {step_ms}ms"),
    };
    match result {
        Ok(result) => {
            let points = result.points();
            let series = result.series.len();
            if points > options.max_points {
                let e = QueryError::new(
                    QueryErrorKind::TooLarge,
                    name,
                    format!(
                        "the result has {series} series and {points} points, over the limit of {} points; narrow the query or the window, or raise maxPoints",
                        options.max_points
                    ),
                );
                tracing::warn!(
                    backend = name,
                    kind = backend.kind(),
                    duration_ms = ms,
                    series,
                    points,
                    "query result too large"
                );
                return Err(e);
            }
            for w in &result.warnings {
                tracing::warn!(backend = name, query = %query.query, "backend warning: {w}");
            }
            tracing::debug!(
                backend = name,
                kind = backend.kind(),
                window,
                duration_ms = ms,
                series,
                points,
                no_data = result.status() == DataStatus::NoData,
                "query"
            );
            Ok(Arc::new(result))
        }
        Err(e) => {
            tracing::debug!(
                backend = name,
                kind = backend.kind(),
                window,
                duration_ms = ms,
                error = %e,
                retryable = e.kind.retryable(),
                "query failed"
            );
            Err(e)
        }
    }
}

impl MetricsSource for Backends {
    fn query<'a>(&'a self, query: &'a Query) -> BoxFuture<'a, Result<Vec<Series>, QueryError>> {
        Box::pin(async move { self.fetch(query).await.map(|r| r.series.clone()) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::sync::Notify;

    /// Counts calls and the most calls in flight at once; holds each call until released.
    #[derive(Default)]
    struct Counting {
        calls: AtomicUsize,
        in_flight: AtomicUsize,
        peak: AtomicUsize,
        release: Notify,
    }

    impl Backend for Counting {
        fn kind(&self) -> &'static str {
            "counting"
        }
        fn query<'a>(
            &'a self,
            _: &'a str,
            query: &'a str,
            _: Window,
        ) -> BoxFuture<'a, Result<QueryResult, QueryError>> {
            Box::pin(async move {
                self.calls.fetch_add(1, Ordering::SeqCst);
                let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                self.peak.fetch_max(now, Ordering::SeqCst);
                self.release.notified().await;
                self.in_flight.fetch_sub(1, Ordering::SeqCst);
                Ok(QueryResult {
                    series: vec![Series {
                        labels: vec![("q".into(), query.into())],
                        points: vec![(0, 1.0)],
                    }],
                    warnings: vec![],
                })
            })
        }
    }

    fn q(text: &str) -> Query {
        Query {
            backend: "b".into(),
            query: text.into(),
            window: Window::Instant(0),
        }
    }

    /// Release held calls until every task has finished.
    async fn drain<T>(backend: &Counting, tasks: Vec<tokio::task::JoinHandle<T>>) -> Vec<T> {
        let mut out = Vec::new();
        for mut t in tasks {
            loop {
                backend.release.notify_waiters();
                tokio::select! {
                    r = &mut t => { out.push(r.expect("task")); break; }
                    _ = tokio::task::yield_now() => {}
                }
            }
        }
        out
    }

    #[tokio::test]
    async fn identical_queries_in_flight_are_fetched_once() {
        let backend = Arc::new(Counting::default());
        let mut backends = Backends::new();
        backends.insert("b", backend.clone(), BackendOptions::default());
        let backends = Arc::new(backends);
        let mut tasks = Vec::new();
        for i in 0..10 {
            let backends = backends.clone();
            let text = if i < 8 { "same" } else { "other" };
            tasks.push(tokio::spawn(async move { backends.fetch(&q(text)).await }));
        }
        // Let every task reach the registry before releasing the backend.
        while backend.calls.load(Ordering::SeqCst) < 2 {
            tokio::task::yield_now().await;
        }
        for _ in 0..50 {
            tokio::task::yield_now().await;
        }
        let results = drain(&backend, tasks).await;
        assert_eq!(
            backend.calls.load(Ordering::SeqCst),
            2,
            "8 identical + 2 different → 2 calls"
        );
        for r in &results {
            assert_eq!(r.as_ref().expect("ok").series.len(), 1);
        }
        // Nothing stays registered once the queries are done; a later query goes out again.
        assert!(backends.in_flight.lock().unwrap().is_empty());
        let later = {
            let backends = backends.clone();
            tokio::spawn(async move { backends.fetch(&q("same")).await })
        };
        drain(&backend, vec![later]).await;
        assert_eq!(backend.calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn concurrency_is_limited_per_backend() {
        let backend = Arc::new(Counting::default());
        let mut backends = Backends::new();
        backends.insert(
            "b",
            backend.clone(),
            BackendOptions {
                max_concurrency: 2,
                ..BackendOptions::default()
            },
        );
        let backends = Arc::new(backends);
        let tasks: Vec<_> = (0..6)
            .map(|i| {
                let backends = backends.clone();
                tokio::spawn(async move { backends.fetch(&q(&format!("q{i}"))).await })
            })
            .collect();
        let results = drain(&backend, tasks).await;
        assert!(results.iter().all(Result::is_ok));
        assert_eq!(backend.calls.load(Ordering::SeqCst), 6);
        assert!(
            backend.peak.load(Ordering::SeqCst) <= 2,
            "peak {}",
            backend.peak.load(Ordering::SeqCst)
        );
    }

    #[tokio::test]
    async fn unknown_backends_are_named() {
        let mut backends = Backends::new();
        backends.insert(
            "prom",
            Arc::new(Counting::default()),
            BackendOptions::default(),
        );
        let e = backends
            .fetch(&Query {
                backend: "datadog".into(),
                ..q("x")
            })
            .await
            .unwrap_err();
        assert_eq!(e.kind, QueryErrorKind::UnknownBackend);
        assert!(
            e.message
                .contains("no backend named \"datadog\" (known: [prom])"),
            "{e}"
        );
    }
}
