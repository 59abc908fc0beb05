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
