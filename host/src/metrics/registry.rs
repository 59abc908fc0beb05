//! The operator's backends by name, as the plugins' `metrics` import sees them.

use super::{
    Backend, BoxFuture, DataStatus, MetricsSource, Query, QueryError, QueryErrorKind, QueryResult,
    Series, Window,
};
use futures::FutureExt;
use futures::future::Shared;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

/// Limits of one backend, shared by every rollout that uses it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BackendOptions {
    /// Queries in flight at once (default 8); more wait their turn.
    pub max_concurrency: usize,
    /// Largest result accepted, in points summed over series (default 500,000).
    pub max_points: usize,
    /// Most queries a second (default: no limit); more wait their turn, with a burst of one
    /// second's worth.
    pub rate_per_second: Option<f64>,
    /// An identical query (same text, same window length) answered at most this many
    /// milliseconds before the asked time is shared instead of sent again (0: off, the
    /// default here; live backends built from documents default to 1 s).
    pub share_ms: u64,
}

impl Default for BackendOptions {
    fn default() -> Self {
        BackendOptions {
            max_concurrency: 8,
            max_points: 500_000,
            rate_per_second: None,
            share_ms: 0,
        }
    }
}

type SharedQuery = Shared<BoxFuture<'static, Result<Arc<QueryResult>, QueryError>>>;

struct Entry {
    backend: Arc<dyn Backend>,
    permits: Arc<Semaphore>,
    options: BackendOptions,
    rate: Option<Arc<RateLimit>>,
}

/// A GCRA rate limit: a query may go when its theoretical arrival time is at most one
/// second's burst ahead of now; otherwise it waits until it is.
#[derive(Debug)]
struct RateLimit {
    interval: Duration,
    tolerance: Duration,
    tat: Mutex<Option<Instant>>,
}

impl RateLimit {
    fn new(per_second: f64) -> Self {
        let per_second = per_second.max(1e-6);
        let burst = per_second.ceil().max(1.0);
        let interval = Duration::from_secs_f64(1.0 / per_second);
        RateLimit {
            interval,
            tolerance: interval.mul_f64(burst - 1.0),
            tat: Mutex::new(None),
        }
    }

    /// How long the caller must wait before sending (and books its slot).
    fn book(&self) -> Duration {
        let now = Instant::now();
        let mut tat = self.tat.lock().unwrap_or_else(|p| p.into_inner());
        let t = tat.map_or(now, |t| t.max(now));
        *tat = Some(t + self.interval);
        (t.checked_sub(self.tolerance).unwrap_or(now)).saturating_duration_since(now)
    }
}

/// A result kept for sharing: the time it was asked for, and when it arrived.
struct Recent {
    at_ms: i64,
    fetched: Instant,
    result: Arc<QueryResult>,
}

/// What makes two queries "the same" for sharing: the text and the window's shape, not its
/// exact time.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ShareKey {
    backend: String,
    query: String,
    /// 0 for an instant query; the range's length and step otherwise.
    span_ms: i64,
    step_ms: u64,
}

fn share_key(q: &Query) -> (ShareKey, i64) {
    let (span_ms, step_ms, at) = match q.window {
        Window::Instant(t) => (0, 0, t),
        Window::Range {
            start_ms,
            end_ms,
            step_ms,
        } => (end_ms - start_ms, step_ms, end_ms),
    };
    (
        ShareKey {
            backend: q.backend.clone(),
            query: q.query.clone(),
            span_ms,
            step_ms,
        },
        at,
    )
}

/// How many shared results are kept before old ones are dropped.
const RECENT_CAP: usize = 50_000;

/// The backends by name. Identical queries in flight at the same time (same backend, query
/// text and window) are sent once and shared; with a share window, an identical query
/// answered moments before — e.g. for another rollout in the same tick — is reused too.
#[derive(Default)]
pub struct Backends {
    entries: HashMap<String, Entry>,
    in_flight: Mutex<HashMap<Query, SharedQuery>>,
    recent: Mutex<HashMap<ShareKey, Recent>>,
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
                rate: options.rate_per_second.map(|r| Arc::new(RateLimit::new(r))),
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
        let share = entry.options.share_ms > 0;
        if share && let Some(hit) = self.recent_result(query, entry.options.share_ms) {
            return Ok(hit);
        }
        let shared = {
            let mut map = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
            match map.get(query) {
                Some(existing) => {
                    tracing::debug!(backend = %query.backend, "joining an identical query in flight");
                    crate::telemetry::global().count(
                        "rollgate_backend_queries_shared_total",
                        &[("backend", &query.backend)],
                        1,
                    );
                    existing.clone()
                }
                None => {
                    let fut = run(
                        entry.backend.clone(),
                        entry.permits.clone(),
                        entry.rate.clone(),
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
        drop(map);
        if share && let Ok(r) = &result {
            self.keep_recent(query, r.clone(), entry.options.share_ms);
        }
        result
    }

    /// A result of an identical query asked for at most `share_ms` before this one.
    fn recent_result(&self, query: &Query, share_ms: u64) -> Option<Arc<QueryResult>> {
        let (key, at) = share_key(query);
        let recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        let hit = recent.get(&key)?;
        let age = at - hit.at_ms;
        if (0..i64::try_from(share_ms).unwrap_or(i64::MAX)).contains(&age) {
            crate::telemetry::global().count(
                "rollgate_backend_queries_shared_total",
                &[("backend", &query.backend)],
                1,
            );
            Some(hit.result.clone())
        } else {
            None
        }
    }

    fn keep_recent(&self, query: &Query, result: Arc<QueryResult>, share_ms: u64) {
        let (key, at) = share_key(query);
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        if recent.len() >= RECENT_CAP {
            let horizon = Duration::from_millis(share_ms.saturating_mul(2));
            recent.retain(|_, r| r.fetched.elapsed() < horizon);
            if recent.len() >= RECENT_CAP {
                recent.clear();
            }
        }
        match recent.get_mut(&key) {
            Some(r) if r.at_ms > at => {}
            Some(r) => {
                *r = Recent {
                    at_ms: at,
                    fetched: Instant::now(),
                    result,
                }
            }
            None => {
                recent.insert(
                    key,
                    Recent {
                        at_ms: at,
                        fetched: Instant::now(),
                        result,
                    },
                );
            }
        }
    }
}

async fn run(
    backend: Arc<dyn Backend>,
    permits: Arc<Semaphore>,
    rate: Option<Arc<RateLimit>>,
    options: BackendOptions,
    query: Query,
) -> Result<Arc<QueryResult>, QueryError> {
    let name = query.backend.as_str();
    if let Some(rate) = rate {
        let wait = rate.book();
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
    let _permit = permits
        .acquire_owned()
        .await
        .map_err(|e| QueryError::new(QueryErrorKind::Other, name, e.to_string()))?;
    let started = Instant::now();
    let result = backend.query(name, &query.query, query.window).await;
    let telemetry = crate::telemetry::global();
    telemetry.observe(
        "rollgate_backend_query_seconds",
        crate::telemetry::LATENCY_BUCKETS,
        &[("backend", name)],
        started.elapsed().as_secs_f64(),
    );
    if let Err(e) = &result {
        telemetry.count(
            "rollgate_backend_query_errors_total",
            &[("backend", name), ("kind", e.kind.name())],
            1,
        );
    }
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

    /// A counting backend named "b" with `options`, and the registry holding it.
    fn counting(options: BackendOptions) -> (Arc<Counting>, Arc<Backends>) {
        let backend = Arc::new(Counting::default());
        let mut backends = Backends::new();
        backends.insert("b", backend.clone(), options);
        (backend, Arc::new(backends))
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
        let (backend, backends) = counting(BackendOptions::default());
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
        let (backend, backends) = counting(BackendOptions {
            max_concurrency: 2,
            ..BackendOptions::default()
        });
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

    fn q_at(text: &str, at: i64) -> Query {
        Query {
            backend: "b".into(),
            query: text.into(),
            window: Window::Instant(at),
        }
    }

    #[tokio::test]
    async fn a_query_answered_within_the_share_window_is_not_sent_again() {
        let (backend, backends) = counting(BackendOptions {
            share_ms: 1000,
            ..BackendOptions::default()
        });
        // (asked at, query, calls to the backend after it)
        let cases = [
            (10_000, "up", 1),
            (10_400, "up", 1),   // 400 ms later: shared
            (10_999, "up", 1),   // still inside the window
            (11_000, "up", 2),   // 1 s after the answer it shares: asked again
            (10_500, "up", 3),   // earlier than the kept answer: never answered from the future
            (11_200, "down", 4), // another text
        ];
        for (at, text, calls) in cases {
            let b = backends.clone();
            let task = tokio::spawn(async move { b.fetch(&q_at(text, at)).await });
            let r = drain(&backend, vec![task]).await;
            assert!(r[0].is_ok());
            assert_eq!(
                backend.calls.load(Ordering::SeqCst),
                calls,
                "asked {text} at {at}"
            );
        }
    }

    #[tokio::test]
    async fn without_a_share_window_every_query_is_sent() {
        let (backend, backends) = counting(BackendOptions::default());
        for at in [0, 1, 2] {
            let b = backends.clone();
            let task = tokio::spawn(async move { b.fetch(&q_at("up", at)).await });
            drain(&backend, vec![task]).await;
        }
        assert_eq!(backend.calls.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn the_rate_limit_books_slots_after_a_one_second_burst() {
        let rate = RateLimit::new(4.0);
        // A burst of 4 goes at once; the 5th waits about a quarter of a second, the 6th half.
        let waits: Vec<Duration> = (0..6).map(|_| rate.book()).collect();
        for w in &waits[..4] {
            assert!(w.is_zero(), "{waits:?}");
        }
        assert!(
            waits[4] > Duration::from_millis(200) && waits[4] <= Duration::from_millis(250),
            "{waits:?}"
        );
        assert!(
            waits[5] > Duration::from_millis(450) && waits[5] <= Duration::from_millis(500),
            "{waits:?}"
        );
    }
}
