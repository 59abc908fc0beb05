//! Metric backends, behind one trait, and the registry the plugin host queries by name.
//!
//! Every backend (Prometheus, replay, Datadog) implements [`Backend`] and returns one
//! normalised result: labelled series of (time, value) points with an explicit
//! [`DataStatus`] (ok, or no-data when the result is empty or all NaN/null), or a
//! [`QueryError`] that says whether it is retryable and keeps the backend's own message.
//! [`Backends`] holds the operator's backends by name and implements [`MetricsSource`], the
//! trait behind the plugins' `metrics` import: it enforces concurrency limits and result
//! size caps, fetches identical in-flight queries once, and traces every query. A plugin
//! never sees an address or a credential.
//!
//! Files: `mod.rs` the trait and the normalised result ([`Backend`], [`Series`],
//! [`QueryError`], [`Window`]); `registry.rs` [`Backends`] (limits, caps, shared in-flight
//! queries); `prometheus.rs`, `datadog.rs` (feature `datadog`) and `replay.rs` (recorded
//! series; tests in `replay_tests.rs`) the backends; `record.rs` recording query answers
//! for replay; `config.rs` a `MetricBackend`'s spec and building a backend from it;
//! `secret.rs` secrets and their redaction.

pub mod config;
#[cfg(feature = "datadog")]
pub mod datadog;
pub mod prometheus;
pub mod record;
mod registry;
pub mod replay;
pub mod secret;

pub use registry::{BackendOptions, Backends};

use std::future::Future;
use std::pin::Pin;

/// When to evaluate a query.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Window {
    /// At one instant (ms since the Unix epoch).
    Instant(i64),
    /// Over a range (ms since the Unix epoch, inclusive), one point per `step_ms`.
    Range {
        /// Start.
        start_ms: i64,
        /// End.
        end_ms: i64,
        /// Resolution.
        step_ms: u64,
    },
}

/// A query for a named backend.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Query {
    /// The backend's name.
    pub backend: String,
    /// The query text in the backend's language.
    pub query: String,
    /// When.
    pub window: Window,
}

/// A labelled series of (time ms, value) points.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Series {
    /// Labels, in the backend's order.
    pub labels: Vec<(String, String)>,
    /// Points, oldest first.
    pub points: Vec<(i64, f64)>,
}

/// The class of a query failure; mirrors the WIT `query-error-kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryErrorKind {
    /// Backend not bound to the metric.
    Denied,
    /// No such backend.
    UnknownBackend,
    /// The query was rejected.
    BadQuery,
    /// Credentials were rejected.
    Unauthorized,
    /// Unreachable or failing (retryable).
    Unavailable,
    /// Too slow (retryable).
    Timeout,
    /// Throttled (retryable).
    RateLimited,
    /// Result over the size cap.
    TooLarge,
    /// Anything else.
    Other,
}

impl QueryErrorKind {
    /// Whether the operator must fix something (query, credentials, names) rather than wait.
    pub fn is_config(self) -> bool {
        matches!(
            self,
            QueryErrorKind::BadQuery
                | QueryErrorKind::Unauthorized
                | QueryErrorKind::UnknownBackend
                | QueryErrorKind::Denied
        )
    }

    /// A short name: `bad-query`, `unavailable`, ...
    pub fn name(self) -> &'static str {
        match self {
            QueryErrorKind::Denied => "denied",
            QueryErrorKind::UnknownBackend => "unknown-backend",
            QueryErrorKind::BadQuery => "bad-query",
            QueryErrorKind::Unauthorized => "unauthorized",
            QueryErrorKind::Unavailable => "unavailable",
            QueryErrorKind::Timeout => "timeout",
            QueryErrorKind::RateLimited => "rate-limited",
            QueryErrorKind::TooLarge => "too-large",
            QueryErrorKind::Other => "other",
        }
    }

    /// Whether trying again later may succeed.
    pub fn retryable(self) -> bool {
        matches!(
            self,
            QueryErrorKind::Unavailable | QueryErrorKind::Timeout | QueryErrorKind::RateLimited
        )
    }
}

/// A failed query. The message keeps the backend's own words and never a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("backend {backend:?}: {message}")]
pub struct QueryError {
    /// The class of failure.
    pub kind: QueryErrorKind,
    /// The backend's name.
    pub backend: String,
    /// What happened.
    pub message: String,
}

impl QueryError {
    /// An error of `kind` from `backend`.
    pub fn new(kind: QueryErrorKind, backend: &str, message: impl Into<String>) -> Self {
        QueryError {
            kind,
            backend: backend.to_string(),
            message: message.into(),
        }
    }
}

/// Whether a successful query found anything to judge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataStatus {
    /// At least one non-NaN point.
    Ok,
    /// No series, or every point null/NaN.
    NoData,
}

/// A successful query, normalised.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct QueryResult {
    /// The series, labels sorted by name, points oldest first. Nulls are NaN.
    pub series: Vec<Series>,
    /// Warnings the backend attached to an otherwise successful answer, verbatim.
    pub warnings: Vec<String>,
}

impl QueryResult {
    /// Ok, or no-data when there is nothing but NaN.
    pub fn status(&self) -> DataStatus {
        let any = self
            .series
            .iter()
            .any(|s| s.points.iter().any(|(_, v)| !v.is_nan()));
        if any {
            DataStatus::Ok
        } else {
            DataStatus::NoData
        }
    }

    /// Total points over all series.
    pub fn points(&self) -> usize {
        self.series.iter().map(|s| s.points.len()).sum()
    }
}

/// A metric backend: runs a query in its own language.
pub trait Backend: Send + Sync {
    /// The backend type (`prometheus`, `replay`, `datadog`).
    fn kind(&self) -> &'static str;
    /// Run `query` over `window`. `backend` is the operator's name for this backend, for
    /// error messages.
    fn query<'a>(
        &'a self,
        backend: &'a str,
        query: &'a str,
        window: Window,
    ) -> BoxFuture<'a, Result<QueryResult, QueryError>>;
}

/// An error and its sources, as one line (transport errors hide the useful part in a source).
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// The largest answer read from a metric backend: one that sends more (a broken proxy, a
/// hostile server) is refused as soon as it passes this, not buffered whole.
pub(crate) const MAX_ANSWER_BYTES: usize = 256 << 20;

/// The message of a [`QueryErrorKind::TooLarge`] answer over `cap` bytes.
pub(crate) fn answer_too_large(cap: usize) -> String {
    let size = if cap >= 1 << 20 && cap.is_multiple_of(1 << 20) {
        format!("{} MiB", cap >> 20)
    } else {
        format!("{cap} bytes")
    };
    format!(
        "the answer is larger than {size}, the most rollgate reads; narrow the query or its window"
    )
}

/// How much of an outside body (a backend's error answer) a message quotes, in characters;
/// cut by [`secret::excerpt`], which redacts the backend's secrets first.
pub(crate) const ERROR_BODY_CHARS: usize = 300;

/// A boxed, sendable future (the trait is object-safe).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Something that answers queries by backend name.
pub trait MetricsSource: Send + Sync {
    /// Run a query. An empty vector means the query matched nothing.
    fn query<'a>(&'a self, query: &'a Query) -> BoxFuture<'a, Result<Vec<Series>, QueryError>>;
}
