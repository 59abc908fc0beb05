//! Capturing a query's range from a live backend into a recording the replay backend
//! serves (`rollgate metrics record`).

use super::replay::{RecordedQuery, RecordedSeries, Recording};
use super::{Backends, Query, QueryError, Window};

/// Run `query` on `backend` over `[start_ms, end_ms]` every `step_ms` and return it as a
/// recorded query.
pub async fn record(
    backends: &Backends,
    backend: &str,
    query: &str,
    start_ms: i64,
    end_ms: i64,
    step_ms: u64,
) -> Result<RecordedQuery, QueryError> {
    let result = backends
        .fetch(&Query {
            backend: backend.to_string(),
            query: query.to_string(),
            window: Window::Range {
                start_ms,
                end_ms,
                step_ms,
            },
        })
        .await?;
    Ok(RecordedQuery {
        backend: Some(backend.to_string()),
        query: query.to_string(),
        start_ms: Some(start_ms),
        end_ms: Some(end_ms),
        step_ms: Some(step_ms),
        series: result.series.iter().map(RecordedSeries::from).collect(),
    })
}

/// Add `query` to `recording`, replacing an earlier recording of the same query text.
pub fn merge(recording: &mut Recording, query: RecordedQuery) {
    let same = |q: &RecordedQuery| {
        q.query
            .split_whitespace()
            .eq(query.query.split_whitespace())
    };
    match recording.queries.iter_mut().find(|q| same(q)) {
        Some(existing) => *existing = query,
        None => recording.queries.push(query),
    }
}
