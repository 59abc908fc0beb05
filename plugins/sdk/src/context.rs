//! What a measurement can see: the rollout context and the host's metric backends.

use crate::bindings::provider::rollgate::plugin::{log as wit_log, metrics as wit, types};
use std::fmt;

pub use wit::QueryErrorKind;

/// When to evaluate a query.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Window {
    /// At the rollout's "now".
    Now,
    /// At one instant, in milliseconds since the Unix epoch.
    At(i64),
    /// Over the last `lookback_ms` milliseconds before "now", one sample every `step_ms`.
    Last {
        /// Length of the window.
        lookback_ms: u64,
        /// Resolution.
        step_ms: u64,
    },
    /// Over an explicit range.
    Range {
        /// Start (inclusive), ms since the epoch.
        start_ms: i64,
        /// End (inclusive), ms since the epoch.
        end_ms: i64,
        /// Resolution.
        step_ms: u64,
    },
}

/// A failed query, as the host reported it.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryError {
    /// The class of failure.
    pub kind: QueryErrorKind,
    /// The backend's name.
    pub backend: String,
    /// What happened (the backend's own message where there was one).
    pub message: String,
}

impl QueryError {
    /// Whether trying again later may succeed.
    pub fn retryable(&self) -> bool {
        matches!(
            self.kind,
            QueryErrorKind::Unavailable | QueryErrorKind::Timeout | QueryErrorKind::RateLimited
        )
    }
}

impl fmt::Display for QueryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            QueryErrorKind::Denied => "denied",
            QueryErrorKind::UnknownBackend => "unknown backend",
            QueryErrorKind::BadQuery => "bad query",
            QueryErrorKind::Unauthorized => "unauthorized",
            QueryErrorKind::Unavailable => "unavailable",
            QueryErrorKind::Timeout => "timeout",
            QueryErrorKind::RateLimited => "rate limited",
            QueryErrorKind::TooLarge => "result too large",
            QueryErrorKind::Other => "error",
        };
        write!(f, "backend {:?}: {kind}: {}", self.backend, self.message)
    }
}

impl std::error::Error for QueryError {}

impl From<QueryError> for String {
    fn from(e: QueryError) -> String {
        e.to_string()
    }
}

/// A source of series. In a plugin the host provides it; in native tests of a plugin, a
/// fixture can.
pub trait Metrics {
    /// Run `query` on `backend` over `window`, where "now" is `now_ms`.
    fn query(
        &self,
        backend: &str,
        query: &str,
        window: Window,
        now_ms: i64,
    ) -> Result<Vec<types::Series>, QueryError>;
}

/// The host's metrics import.
pub(crate) struct HostMetrics;

impl Metrics for HostMetrics {
    fn query(
        &self,
        backend: &str,
        query: &str,
        window: Window,
        now_ms: i64,
    ) -> Result<Vec<types::Series>, QueryError> {
        let window = match window {
            Window::Now => wit::Window::Instant(None),
            Window::At(t) => wit::Window::Instant(Some(t)),
            Window::Last {
                lookback_ms,
                step_ms,
            } => wit::Window::Range(wit::TimeRange {
                start_ms: now_ms.saturating_sub(i64::try_from(lookback_ms).unwrap_or(i64::MAX)),
                end_ms: now_ms,
                step_ms,
            }),
            Window::Range {
                start_ms,
                end_ms,
                step_ms,
            } => wit::Window::Range(wit::TimeRange {
                start_ms,
                end_ms,
                step_ms,
            }),
        };
        wit::query(&wit::QueryRequest {
            backend: backend.to_string(),
            query: query.to_string(),
            window,
        })
        .map_err(|e| QueryError {
            kind: e.kind,
            backend: e.backend,
            message: e.message,
        })
    }
}

/// Where a measurement happens, and the way to query metrics.
pub struct Context<'a> {
    /// The rollout, phase and metric being measured, as the host described them.
    pub rollout: types::RolloutContext,
    metrics: &'a dyn Metrics,
}

impl<'a> Context<'a> {
    /// A context over any metrics source (the host's in a plugin; a fixture in tests).
    pub fn new(rollout: types::RolloutContext, metrics: &'a dyn Metrics) -> Self {
        Context { rollout, metrics }
    }

    /// Query a backend the operator bound to this metric. Naming any other backend fails
    /// with [`QueryErrorKind::Denied`].
    pub fn query(
        &self,
        backend: &str,
        query: &str,
        window: Window,
    ) -> Result<Vec<types::Series>, QueryError> {
        self.metrics
            .query(backend, query, window, self.rollout.now_ms)
    }

    /// The value of a verification argument.
    pub fn arg(&self, name: &str) -> Option<&str> {
        self.rollout
            .args
            .iter()
            .find(|a| a.name == name)
            .map(|a| a.value.as_str())
    }
}

/// Log through the host (rate-limited there, tagged with the plugin's name). On native
/// targets this prints to stderr.
pub fn log(level: wit_log::Level, message: &str) {
    #[cfg(target_arch = "wasm32")]
    wit_log::log(level, message);
    #[cfg(not(target_arch = "wasm32"))]
    eprintln!("[{level:?}] {message}");
}
