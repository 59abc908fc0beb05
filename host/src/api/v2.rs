//! `/api/v2`: the routes whose answers changed shape in version 2 — the rollout list, one
//! rollout, its history and the event stream — and those only v2 has (a run's metric
//! series), answered with [`crate::server::v2`]'s documents. Authorization, filters,
//! errors and status codes are v1's.

use super::{
    AppState, EventsQuery, HistoryQuery, ListQuery, Role, authorize, error, event_stream,
    history_error, listed,
};
use crate::server::Event;
use crate::server::v2::{self, ApiVersion, ListItem};
use crate::server::views::HistoryError;
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

/// The most rollouts one page of `GET /api/v2/rollouts` holds.
pub(super) const MAX_PAGE: usize = 1000;

/// Paging of the v2 list (v1's list is frozen and ignores these): `limit` rollouts a page,
/// those named after `after`.
#[derive(Debug, Deserialize)]
pub(super) struct PageQuery {
    limit: Option<String>,
    after: Option<String>,
}

impl PageQuery {
    /// The page size asked for, checked: `None` lists every rollout, as before paging.
    fn limit(&self) -> Result<Option<usize>, String> {
        let Some(text) = self.limit.as_deref() else {
            return Ok(None);
        };
        match text.trim().parse::<usize>() {
            Ok(n) if (1..=MAX_PAGE).contains(&n) => Ok(Some(n)),
            _ => Err(format!(
                "limit {text:?}: a page holds 1 to {MAX_PAGE} rollouts; leave it out to list every rollout"
            )),
        }
    }
}

pub(super) async fn list(
    State(s): State<AppState>,
    Query(q): Query<ListQuery>,
    Query(page): Query<PageQuery>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = authorize(&s, &headers, Role::Read, "listing rollouts") {
        return *r;
    }
    let limit = match page.limit() {
        Ok(l) => l,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let listed = match listed(&s, &q).await {
        Ok(l) => l,
        Err(r) => return r,
    };
    // `listed` is in name order: a page is the names after `after`, up to `limit`.
    let mut rest = listed
        .into_iter()
        .filter(|(p, _)| page.after.as_deref().is_none_or(|a| p.rollout.as_str() > a))
        .peekable();
    let mut rollouts = Vec::new();
    while let Some((p, runner)) = rest.next_if(|_| limit.is_none_or(|n| rollouts.len() < n)) {
        rollouts.push(ListItem {
            runner,
            ..ListItem::from(&p)
        });
    }
    let next = match rest.peek() {
        Some(_) => rollouts.last().map(|r: &ListItem| r.rollout.clone()),
        None => None,
    };
    Json(v2::List {
        api_version: ApiVersion,
        rollouts,
        next,
    })
    .into_response()
}

pub(super) async fn one(
    State(s): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = authorize(&s, &headers, Role::Read, "reading a rollout") {
        return *r;
    }
    match v2::snapshot(s.fleet.store(), &name).await {
        Ok(Some(snap)) => Json(snap).into_response(),
        Ok(None) => error(StatusCode::NOT_FOUND, format!("no rollout named {name:?}")),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

pub(super) async fn history(
    State(s): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<HistoryQuery>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = authorize(&s, &headers, Role::Read, "reading a rollout's history") {
        return *r;
    }
    match v2::history(s.fleet.store(), &name, q.run).await {
        Ok(h) => Json(h).into_response(),
        Err(e) => history_error(&name, q.run, e),
    }
}

/// The series of every metric of a run (default: the latest); errors as history's.
pub(super) async fn series(
    State(s): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<HistoryQuery>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = authorize(&s, &headers, Role::Read, "reading a rollout's series") {
        return *r;
    }
    match v2::series(s.fleet.store(), &name, q.run).await {
        Ok(series) => Json(series).into_response(),
        Err(HistoryError::NoRun(runs)) if runs.is_empty() => error(
            StatusCode::NOT_FOUND,
            format!(
                "{name:?} has not run: its documents do not load (see GET /api/v2/rollouts/{name})"
            ),
        ),
        Err(e) => history_error(&name, q.run, e),
    }
}

pub(super) async fn events(
    State(s): State<AppState>,
    Query(q): Query<EventsQuery>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = authorize(&s, &headers, Role::Read, "streaming events") {
        return *r;
    }
    event_stream(&s, q, sse_event)
}

fn sse_event(e: &Event) -> sse::Event {
    sse::Event::default()
        .id(e.seq.to_string())
        .event(e.kind)
        .data(serde_json::to_string(&v2::Event::of(e)).unwrap_or_default())
}
