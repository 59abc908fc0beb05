//! `GET /api/v1/runners` (and `/api/v2/runners`): the processes driving this store's runs —
//! every `rollgate serve` sharing a database and any `rollgate run` — with their last
//! heartbeat, whether they stopped reporting, and how many runs each holds a live lease on;
//! and the same as `/metrics` gauges.

use super::{AppState, Role, authorize};
use crate::engine::clock::now_ms;
use crate::engine::runner::RunnerView;
use crate::store::{RunnerRow, Store, StoreError};
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// Runners that stopped cleanly stay listed this long, then only the store keeps them.
const STOPPED_SHOWN_MS: i64 = 3_600_000;

/// One runner as the API shows it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunnerEntry {
    /// Who it is and whether it reports (the view `get` shows beside a run).
    #[serde(flatten)]
    pub view: RunnerView,
    /// `live`, `stale` (stopped reporting) or `stopped` (stopped cleanly).
    pub state: &'static str,
    /// Unfinished runs it holds a live lease on now.
    pub runs: i64,
    /// True for the server answering.
    pub this: bool,
}

/// The runners worth showing (every one not stopped, and those stopped within the last
/// hour), oldest first, with how many runs each holds.
pub async fn entries(store: &Store, me: Option<i64>) -> Result<Vec<RunnerEntry>, StoreError> {
    let claims = store.claims().await?;
    let held = store.leases_held().await?;
    let now = now_ms();
    Ok(claims
        .runners
        .values()
        .filter(|r: &&RunnerRow| {
            r.stopped_ms
                .is_none_or(|at| now.saturating_sub(at) <= STOPPED_SHOWN_MS)
        })
        .map(|row| {
            let view = RunnerView::of(row, now);
            let state = match (view.stopped_ms, view.stale) {
                (Some(_), _) => "stopped",
                (None, true) => "stale",
                (None, false) => "live",
            };
            RunnerEntry {
                runs: held.get(&row.id).copied().unwrap_or(0),
                this: me == Some(row.id),
                state,
                view,
            }
        })
        .collect())
}

/// `GET /api/v1/runners`.
pub async fn list(State(s): State<AppState>, headers: HeaderMap) -> Response {
    if let Err(r) = authorize(&s, &headers, Role::Read, "listing the runners") {
        return *r;
    }
    match entries(s.fleet.store(), s.fleet.runner_id()).await {
        Ok(runners) => Json(serde_json::json!({ "runners": runners })).into_response(),
        Err(e) => super::error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("cannot read the runners from the store: {e}"),
        ),
    }
}

/// The `/metrics` families of the runners: how many are live, stale and stopped, and per
/// runner not stopped its runs and the age of its heartbeat.
pub async fn metric_families(store: &Store) -> Vec<crate::telemetry::Gauge<'static>> {
    let Ok(runners) = entries(store, None).await else {
        return Vec::new();
    };
    let count = |state: &str| runners.iter().filter(|r| r.state == state).count() as f64;
    let states = ["live", "stale", "stopped"]
        .iter()
        .map(|state| (crate::telemetry::labels(&[("state", state)]), count(state)))
        .collect();
    let now = now_ms();
    let running: Vec<&RunnerEntry> = runners.iter().filter(|r| r.state != "stopped").collect();
    let label = |r: &RunnerEntry| {
        let id = r.view.id.to_string();
        crate::telemetry::labels(&[("runner", id.as_str()), ("host", r.view.host.as_str())])
    };
    vec![
        (
            "rollgate_runners",
            "Runners of this store by state (stopped: within the last hour).",
            states,
        ),
        (
            "rollgate_runner_runs",
            "Unfinished runs each runner holds a live lease on.",
            running.iter().map(|r| (label(r), r.runs as f64)).collect(),
        ),
        (
            "rollgate_runner_heartbeat_age_seconds",
            "Seconds since each runner's last heartbeat (on this server's clock).",
            running
                .iter()
                .map(|r| {
                    let age = now.saturating_sub(r.view.heartbeat_ms).max(0) as f64 / 1000.0;
                    (label(r), age)
                })
                .collect(),
        ),
    ]
}
