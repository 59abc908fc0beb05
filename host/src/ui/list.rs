//! `/ui/api/overview`: the tiles and the page of rows of the rollouts list, from a list
//! index kept in memory.
//!
//! The index holds one summary per rollout (its latest run: state, phase, weight, times,
//! the last audit event, the cause of a rollback), read from the store — the same code for
//! a server and a store view. Each request refreshes it incrementally: only the latest
//! runs whose `updated_ms` is at or after the newest it has seen
//! ([`crate::store::Store::latest_changed`], indexed), the `invalid_specs` (a small table)
//! and, at most every [`DRIVERS_EVERY`], who drives the unfinished runs (a claim does not
//! change `updated_ms`). A checkpoint is parsed once per commit, never once per request;
//! tiles, filters and paging then run over the summaries in memory.

use super::{UiState, error, session};
use crate::engine::clock::now_ms;
use crate::engine::failure::FailureKind;
use crate::engine::runner::RunnerView;
use crate::server::views;
use crate::store::{Claims, InvalidSpec, ListedRow, Store, StoreError};
use axum::Json;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

/// How often the runners of unfinished runs are read again.
pub const DRIVERS_EVERY: Duration = Duration::from_secs(2);

/// Largest page.
pub const MAX_PAGE_SIZE: usize = 500;

/// What the list shows of a rollout's latest run.
#[derive(Debug, Clone, PartialEq)]
struct Entry {
    id: i64,
    run: i64,
    /// The run's generation when read: a row read again unchanged is not parsed again.
    generation: i64,
    strategy: String,
    state: String,
    phase_name: String,
    phase: usize,
    phase_count: usize,
    weight: f64,
    created_ms: i64,
    updated_ms: i64,
    finished: bool,
    last_actor: Option<String>,
    last_action: Option<String>,
    message: String,
    /// Why a rolled-back run rolled back (`verification`, `gate`, … ).
    cause: &'static str,
}

impl Entry {
    fn of(listed: &ListedRow) -> Entry {
        let row = &listed.row;
        let p = views::progress(row);
        Entry {
            id: row.id,
            run: row.run,
            generation: row.generation,
            cause: cause(p.failures.last().map(|f| f.kind)),
            strategy: p.strategy,
            state: p.state,
            phase_name: p.phase_name,
            phase: p.phase,
            phase_count: p.phase_count,
            weight: p.weight,
            created_ms: row.created_ms,
            updated_ms: row.updated_ms,
            finished: row.finished,
            last_actor: listed.last_actor.clone(),
            last_action: listed.last_action.clone(),
            message: p.message,
        }
    }
}

/// The cause of a rollback, from the run's last failure.
fn cause(kind: Option<FailureKind>) -> &'static str {
    use FailureKind as K;
    match kind {
        Some(
            K::MetricFailed
            | K::MetricError
            | K::MetricInconclusive
            | K::MetricNoData
            | K::PolicyError
            | K::PluginError
            | K::BackendError,
        ) => "verification",
        Some(K::GateClosed | K::GateRollback) => "gate",
        Some(K::Deadline) => "deadline",
        Some(K::Operator) => "operator",
        Some(K::ReadinessTimeout | K::StepFailed | K::InvalidSpec) | None => "other",
    }
}

#[derive(Default)]
struct Index {
    /// By rollout name.
    entries: BTreeMap<String, Entry>,
    /// The newest `updated_ms` read; the next refresh reads from it (inclusive).
    seen_ms: Option<i64>,
    invalid: BTreeMap<String, InvalidSpec>,
    /// Run id → its runner's id, and each runner (read every [`DRIVERS_EVERY`]).
    claims: Claims,
    /// The runners whose heartbeat is stale, as of the last read of the claims.
    stale_runners: std::collections::BTreeSet<i64>,
    drivers_read: Option<Instant>,
    /// How many runs the last refresh parsed (what changed since the one before).
    last_read: usize,
}

/// The list index (see the module's doc).
#[derive(Default)]
pub(super) struct ListIndex {
    index: tokio::sync::Mutex<Index>,
}

impl Index {
    async fn refresh(&mut self, store: &Store) -> Result<(), StoreError> {
        let changed = store
            .latest_changed(self.seen_ms.unwrap_or(i64::MIN))
            .await?;
        self.last_read = 0;
        for listed in &changed {
            let row = &listed.row;
            self.seen_ms = Some(
                self.seen_ms
                    .map_or(row.updated_ms, |s| s.max(row.updated_ms)),
            );
            // Rows changed at the newest millisecond seen come again (a commit in the same
            // millisecond after the read must not be missed): parse only what changed.
            let current = self.entries.get(&row.name);
            if current.is_some_and(|e| {
                e.run > row.run || (e.id == row.id && e.generation == row.generation)
            }) {
                continue;
            }
            self.entries.insert(row.name.clone(), Entry::of(listed));
            self.last_read += 1;
        }
        self.invalid = store
            .invalid_specs()
            .await?
            .into_iter()
            .map(|i| (i.name.clone(), i))
            .collect();
        if self
            .drivers_read
            .is_none_or(|at| at.elapsed() >= DRIVERS_EVERY)
        {
            // Two integers per unfinished run and the few runner rows: decoding a runner
            // row per run cost 180–360 ms a read at 20,000 runs on a busy server.
            self.claims = store.claims().await?;
            self.drivers_read = Some(Instant::now());
        }
        // Staleness moves with the clock: judged at every refresh (a handful of runners).
        let now = now_ms();
        self.stale_runners = self
            .claims
            .runners
            .values()
            .filter(|r| RunnerView::of(r, now).stale)
            .map(|r| r.id)
            .collect();
        Ok(())
    }
}

/// A rollout as the list shows it now: its entry (none for an invalid rollout that never
/// ran) with the invalid-spec overlay and the attention it needs.
struct Shown<'a> {
    name: &'a str,
    entry: Option<&'a Entry>,
    state: &'a str,
    finished: bool,
    attention: Option<&'static str>,
    invalid: Option<&'a InvalidSpec>,
}

fn shown<'a>(name: &'a str, entry: Option<&'a Entry>, index: &'a Index) -> Shown<'a> {
    let invalid = index.invalid.get(name);
    let overlaid =
        invalid.is_some_and(|i| entry.is_none_or(|e| e.finished || i.held_run == Some(e.id)));
    let (state, finished) = match entry {
        _ if overlaid => (views::INVALID_SPEC, false),
        Some(e) => (e.state.as_str(), e.finished),
        None => (views::INVALID_SPEC, false),
    };
    let stale = entry.is_some_and(|e| {
        !e.finished
            && index
                .claims
                .runs
                .get(&e.id)
                .is_some_and(|r| index.stale_runners.contains(r))
    });
    let attention = if overlaid {
        Some("invalid-spec")
    } else if stale {
        Some("stale-runner")
    } else if state.starts_with("paused(") {
        Some("paused")
    } else {
        None
    };
    Shown {
        name,
        entry,
        state,
        finished,
        attention,
        invalid,
    }
}

/// What `/ui/api/overview` was asked.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Ask {
    period: &'static str,
    since_ms: Option<i64>,
    state: Option<String>,
    prefix: Option<String>,
    page: usize,
    page_size: usize,
}

/// The states a `state=` filter may name.
fn known_state(s: &str) -> bool {
    crate::engine::state::State::NAMES.contains(&s)
        || [
            views::INVALID_SPEC,
            views::UNREADABLE,
            "paused",
            "attention",
            "unfinished",
        ]
        .contains(&s)
}

/// Read the query; a bad value is an error naming the parameter and what is allowed.
fn ask(q: &HashMap<String, String>, now: i64) -> Result<Ask, String> {
    const HOUR: i64 = 3_600_000;
    let period = q.get("period").map_or("24h", String::as_str);
    let (period, span) = match period {
        "1h" => ("1h", Some(HOUR)),
        "24h" => ("24h", Some(24 * HOUR)),
        "7d" => ("7d", Some(7 * 24 * HOUR)),
        "30d" => ("30d", Some(30 * 24 * HOUR)),
        "all" => ("all", None),
        other => {
            return Err(format!(
                "period: {other:?} is not a period; use 1h, 24h, 7d, 30d or all"
            ));
        }
    };
    let number = |name: &str, default: usize, max: usize| -> Result<usize, String> {
        match q.get(name) {
            None => Ok(default),
            Some(text) => match text.parse::<usize>() {
                Ok(n) if (1..=max).contains(&n) => Ok(n),
                _ => Err(format!(
                    "{name}: {text:?} is not a whole number from 1 to {max}"
                )),
            },
        }
    };
    let state = q.get("state").filter(|s| !s.is_empty()).cloned();
    if let Some(s) = &state
        && !known_state(s)
    {
        let mut names: Vec<&str> = crate::engine::state::State::NAMES.to_vec();
        names.extend([
            views::INVALID_SPEC,
            views::UNREADABLE,
            "paused",
            "attention",
            "unfinished",
        ]);
        return Err(format!(
            "state: {s:?} is not a state; use one of {}",
            names.join(", ")
        ));
    }
    Ok(Ask {
        period,
        since_ms: span.map(|s| now.saturating_sub(s)),
        state,
        prefix: q.get("prefix").filter(|p| !p.is_empty()).cloned(),
        page: number("page", 1, 1_000_000_000)?,
        page_size: number("pageSize", 100, MAX_PAGE_SIZE)?,
    })
}

fn matches(ask: &Ask, s: &Shown<'_>) -> bool {
    let state_ok = match ask.state.as_deref() {
        None => true,
        Some("paused") => s.state.starts_with("paused("),
        Some("attention") => s.attention.is_some(),
        Some("unfinished") => !s.finished,
        Some(want) => s.state == want,
    };
    state_ok && ask.prefix.as_deref().is_none_or(|p| s.name.starts_with(p))
}

fn row_json(s: &Shown<'_>, now: i64) -> Value {
    match s.entry {
        Some(e) => {
            let end = if e.finished { e.updated_ms } else { now };
            let message = match s.invalid {
                Some(i) if s.state == views::INVALID_SPEC => invalid_message(i),
                _ => e.message.clone(),
            };
            json!({
                "rollout": s.name, "run": e.run, "strategy": e.strategy, "state": s.state,
                "phase": e.phase_name, "phaseIndex": e.phase, "phaseCount": e.phase_count,
                "weight": e.weight, "startedMs": e.created_ms, "updatedMs": e.updated_ms,
                "durationMs": end.saturating_sub(e.created_ms), "finished": s.finished,
                "lastActor": e.last_actor, "lastAction": e.last_action,
                "attention": s.attention, "message": message,
            })
        }
        None => json!({
            "rollout": s.name, "run": 0, "strategy": "", "state": s.state,
            "phase": "", "phaseIndex": 0, "phaseCount": 0, "weight": 0.0,
            "startedMs": s.invalid.map(|i| i.since_ms), "updatedMs": s.invalid.map(|i| i.since_ms),
            "durationMs": null, "finished": false, "lastActor": null, "lastAction": null,
            "attention": s.attention,
            "message": s.invalid.map(invalid_message).unwrap_or_default(),
        }),
    }
}

fn invalid_message(i: &InvalidSpec) -> String {
    format!(
        "the documents of rollout {:?} do not load ({} problem(s)): fix them; {}",
        i.name,
        i.problems.len(),
        i.problems.first().map(String::as_str).unwrap_or_default()
    )
}

/// Tiles and one page of rows, over the index as it is.
fn answer(index: &Index, ask: &Ask, now: i64) -> Value {
    let mut all: Vec<Shown<'_>> = index
        .entries
        .iter()
        .map(|(name, e)| shown(name, Some(e), index))
        .collect();
    let never_ran: Vec<&String> = index
        .invalid
        .keys()
        .filter(|n| !index.entries.contains_key(*n))
        .collect();
    if !never_ran.is_empty() {
        all.extend(never_ran.into_iter().map(|n| shown(n, None, index)));
        all.sort_by(|a, b| a.name.cmp(b.name));
    }
    let mut progressing = 0u64;
    let mut by_attention: BTreeMap<&str, u64> = BTreeMap::new();
    let mut rolled_back_by: BTreeMap<&str, u64> =
        ["verification", "gate", "deadline", "operator", "other"]
            .into_iter()
            .map(|k| (k, 0))
            .collect();
    let (mut succeeded, mut ended) = (0u64, 0u64);
    let mut durations = Vec::new();
    for s in &all {
        if s.state == "progressing" {
            progressing += 1;
        }
        if let Some(a) = s.attention {
            *by_attention.entry(a).or_default() += 1;
        }
        // Ended in the period: the run's own end, whatever its documents do now.
        let Some(e) = s.entry.filter(|e| e.finished) else {
            continue;
        };
        if ask.since_ms.is_some_and(|since| e.updated_ms < since) {
            continue;
        }
        ended += 1;
        durations.push(e.updated_ms.saturating_sub(e.created_ms));
        match e.state.as_str() {
            "succeeded" => succeeded += 1,
            "rolled-back" => *rolled_back_by.entry(e.cause).or_default() += 1,
            _ => {}
        }
    }
    durations.sort_unstable();
    let median = match durations.len() {
        0 => None,
        n if n % 2 == 1 => Some(durations[n / 2]),
        n => Some(durations[n / 2 - 1] / 2 + durations[n / 2] / 2),
    };
    let ratio = (ended > 0).then(|| {
        let r = succeeded as f64 / ended as f64;
        (r * 1000.0).round() / 1000.0
    });
    let attention_count = |k: &str| by_attention.get(k).copied().unwrap_or(0);
    let filtered: Vec<&Shown<'_>> = all.iter().filter(|s| matches(ask, s)).collect();
    let total = filtered.len();
    let pages = total.div_ceil(ask.page_size).max(1);
    let rows: Vec<Value> = filtered
        .iter()
        .skip((ask.page - 1).saturating_mul(ask.page_size))
        .take(ask.page_size)
        .map(|s| row_json(s, now))
        .collect();
    json!({
        "period": ask.period,
        "generatedMs": now,
        "tiles": {
            "progressing": progressing,
            "attention": by_attention.values().sum::<u64>(),
            "attentionBy": {
                "paused": attention_count("paused"),
                "invalidSpec": attention_count("invalid-spec"),
                "staleRunner": attention_count("stale-runner"),
            },
            "rolledBack": rolled_back_by.values().sum::<u64>(),
            "rolledBackBy": rolled_back_by,
            "succeeded": succeeded,
            "ended": ended,
            "successRatio": ratio,
            "medianDurationMs": median,
        },
        "total": total,
        "page": ask.page,
        "pageSize": ask.page_size,
        "pages": pages,
        "rows": rows,
    })
}

impl ListIndex {
    /// Read what changed (at start: everything) without answering anything.
    pub(super) async fn warm(&self, store: &Store) -> Result<(), StoreError> {
        self.index.lock().await.refresh(store).await
    }

    /// Refresh from `store`, then answer `ask` at `now`.
    pub(super) async fn overview(
        &self,
        store: &Store,
        ask: &Ask,
        now: i64,
    ) -> Result<Value, StoreError> {
        let mut index = self.index.lock().await;
        index.refresh(store).await?;
        Ok(answer(&index, ask, now))
    }
}

/// `GET /ui/api/overview?period=…&state=…&prefix=…&page=…&pageSize=…`.
pub(super) async fn overview(
    State(s): State<UiState>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = session::reader(&s, &headers) {
        return *r;
    }
    let now = now_ms();
    let ask = match ask(&q, now) {
        Ok(a) => a,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    match s.inner.list.overview(s.store_ref(), &ask, now).await {
        Ok(v) => Json(v).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

#[cfg(test)]
#[path = "list_tests.rs"]
mod tests;
