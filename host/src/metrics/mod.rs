//! Metric backends, behind one trait that the plugin host's `metrics` import calls.
//!
//! This module defines the normalised query and result shapes and the [`MetricsSource`]
//! trait. The backends themselves (Prometheus, Datadog, replay) implement it; the plugin
//! host only ever sees the trait, so a plugin cannot tell one backend from another and never
//! sees an address or a credential.

use std::future::Future;
use std::pin::Pin;

/// When to evaluate a query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
#[derive(Debug, Clone, PartialEq, Eq)]
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

/// A boxed, sendable future (the trait is object-safe).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Something that answers queries by backend name.
pub trait MetricsSource: Send + Sync {
    /// Run a query. An empty vector means the query matched nothing.
    fn query<'a>(&'a self, query: &'a Query) -> BoxFuture<'a, Result<Vec<Series>, QueryError>>;
}
