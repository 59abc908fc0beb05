//! `/ui/api/events?rollout=NAME`: server-sent `change` events, `{"rollout", "run",
//! "kind"}`, one per committed change (of one rollout, if asked), so a page refetches
//! what it shows. A server forwards its fleet's event stream (`kind` is the event's:
//! `decision`, `state`, `metric`, `step`; `lagged` when this subscriber fell behind), and
//! its commits that only measured (`measurement`: a chart gains a point; only to a stream
//! of one rollout, so a list page is not flooded by thousands of rollouts measuring); a
//! store view polls the store every [`POLL`] for runs whose generation changed (`kind`
//! `commit`). A keep-alive comment every 15 s; every stream ends when the process stops
//! ([`super::UiState::close`]).

use super::{Backing, UiState, session};
use crate::engine::clock::now_ms;
use crate::store::Store;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde_json::json;
use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::time::Duration;

/// How often a store view looks for changes.
pub const POLL: Duration = Duration::from_secs(1);

#[derive(Debug, serde::Deserialize)]
pub(super) struct EventsQuery {
    rollout: Option<String>,
}

fn change(rollout: &str, run: i64, kind: &str) -> Event {
    Event::default()
        .event("change")
        .data(json!({ "rollout": rollout, "run": run, "kind": kind }).to_string())
}

/// `GET /ui/api/events`.
pub(super) async fn stream(
    State(s): State<UiState>,
    Query(q): Query<EventsQuery>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = session::reader(&s, &headers) {
        return *r;
    }
    let mut closing = s.inner.closing.subscribe();
    let ended = async move {
        // Ends when close() is called (or already was), or the state is dropped.
        let _ = closing.wait_for(|c| *c).await;
    };
    let filter = q.rollout.filter(|r| !r.is_empty());
    let events = match s.backing() {
        // Commits that only measured matter to one rollout's charts; the list (no filter)
        // is not told of them: thousands of rollouts measuring would flood every list page.
        Backing::Serve(fleet) if filter.is_some() => futures::stream::select(
            fleet_changes(fleet.subscribe(), filter.clone()),
            measured_changes(fleet.subscribe_measured(), filter),
        )
        .boxed(),
        Backing::Serve(fleet) => fleet_changes(fleet.subscribe(), filter).boxed(),
        Backing::Store(store) => store_changes(store.clone(), filter).boxed(),
    };
    Sse::new(events.take_until(Box::pin(ended)))
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

/// The fleet's events as `change` events.
fn fleet_changes(
    rx: tokio::sync::broadcast::Receiver<std::sync::Arc<crate::server::Event>>,
    filter: Option<String>,
) -> impl futures::Stream<Item = Result<Event, Infallible>> {
    use tokio::sync::broadcast::error::RecvError;
    futures::stream::unfold((rx, filter), |(mut rx, filter)| async move {
        loop {
            match rx.recv().await {
                Ok(e) => {
                    if filter.as_ref().is_some_and(|f| *f != e.rollout) {
                        continue;
                    }
                    let item = change(&e.rollout, e.run, e.kind);
                    return Some((Ok(item), (rx, filter)));
                }
                Err(RecvError::Lagged(_)) => {
                    let rollout = filter.clone().unwrap_or_default();
                    return Some((Ok(change(&rollout, 0, "lagged")), (rx, filter)));
                }
                Err(RecvError::Closed) => return None,
            }
        }
    })
}

/// The fleet's commits that only measured as `change` events of kind `measurement`.
fn measured_changes(
    rx: tokio::sync::broadcast::Receiver<(String, i64)>,
    filter: Option<String>,
) -> impl futures::Stream<Item = Result<Event, Infallible>> {
    use tokio::sync::broadcast::error::RecvError;
    futures::stream::unfold((rx, filter), |(mut rx, filter)| async move {
        loop {
            match rx.recv().await {
                Ok((rollout, run)) => {
                    if filter.as_ref().is_some_and(|f| *f != rollout) {
                        continue;
                    }
                    return Some((Ok(change(&rollout, run, "measurement")), (rx, filter)));
                }
                Err(RecvError::Lagged(_)) => {
                    let rollout = filter.clone().unwrap_or_default();
                    return Some((Ok(change(&rollout, 0, "lagged")), (rx, filter)));
                }
                Err(RecvError::Closed) => return None,
            }
        }
    })
}

/// What a store view's poll remembers: where it got to, and the generations of the runs
/// changed at that very millisecond (read again next time, told only if they changed).
struct Poll {
    store: Store,
    filter: Option<String>,
    since_ms: i64,
    at_edge: HashMap<i64, i64>,
    pending: VecDeque<Event>,
}

impl Poll {
    async fn look(&mut self) {
        let Ok(changed) = self.store.changed_since(self.since_ms).await else {
            // A busy or vanished store: look again next time.
            return;
        };
        let newest = changed.iter().map(|c| c.updated_ms).max();
        for c in &changed {
            if self.at_edge.get(&c.id) == Some(&c.generation) {
                continue;
            }
            if self.filter.as_ref().is_none_or(|f| *f == c.name) {
                self.pending.push_back(change(&c.name, c.run, "commit"));
            }
        }
        if let Some(newest) = newest {
            self.since_ms = newest;
            self.at_edge = changed
                .iter()
                .filter(|c| c.updated_ms == newest)
                .map(|c| (c.id, c.generation))
                .collect();
        }
    }
}

/// The store's changes from now on as `change` events, polled every [`POLL`].
fn store_changes(
    store: Store,
    filter: Option<String>,
) -> impl futures::Stream<Item = Result<Event, Infallible>> {
    let poll = Poll {
        store,
        filter,
        since_ms: now_ms(),
        at_edge: HashMap::new(),
        pending: VecDeque::new(),
    };
    futures::stream::unfold(poll, |mut poll| async move {
        loop {
            if let Some(e) = poll.pending.pop_front() {
                return Some((Ok(e), poll));
            }
            tokio::time::sleep(POLL).await;
            poll.look().await;
        }
    })
}
