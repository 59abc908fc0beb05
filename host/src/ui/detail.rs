//! The detail document of one rollout run: `GET /ui/api/rollouts/{name}?run=N`, which the
//! detail page (`host/ui/detail.js`) draws.
//!
//! Everything is read from the store — the run's row (its resolved spec and checkpoint),
//! its audit log, its measurements — and shaped once here, so the page only draws: the v2
//! snapshot as the API shapes it, banners that say what happened and what to do, the
//! phases with their pauses and gates, every metric with its points, counts, limit lines
//! and the checklist of its limits ([`metrics`]), the decision timeline, which operator
//! actions the engine would take now ([`crate::engine::permit`], the engine's own rule) and
//! the effective Rollout as YAML with its diff against the previous run's
//! ([`super::yaml`], [`super::diff`]).
//!
//! Files: `detail.rs` the document, banners, phases, actions and spec; `detail_metrics.rs`
//! the metrics (points, counts, checklists, limit lines); `detail_tests.rs` the tests.

#[path = "detail_metrics.rs"]
mod metrics;

pub use metrics::{Check, checklist};

use crate::engine::clock::now_ms;
use crate::engine::state::{Checkpoint, PauseReason, State};
use crate::engine::{Action, Permit, permit_row};
use crate::server::v2;
use crate::server::views::{self, AuditInfo, HistoryError};
use crate::spec::model::{GateKind, PauseSpec, RolloutSpec};
use crate::store::{InvalidSpec, MeasurementRow, RolloutRow, SeriesPoint, Store};
use serde_json::{Value, json};

/// Where the page's points come from: the run's series (every measurement's point,
/// downsampled past the cap; [`Store::series`]), or for a run recorded before the series
/// existed, its retained measurements.
async fn points(
    store: &Store,
    id: i64,
    kept: &[MeasurementRow],
) -> Result<Vec<SeriesPoint>, String> {
    let series = store.series(id).await.map_err(|e| e.to_string())?;
    if series.is_empty() {
        // A run recorded before the series existed (migration 4): its retained
        // measurements are what there is.
        return Ok(kept.iter().map(SeriesPoint::from).collect());
    }
    Ok(series)
}

/// The detail document of run `run` of rollout `name` (default: its latest run), or
/// `(status, message)`: 404 for an unknown rollout or run, 500 when the store fails.
pub async fn document(store: &Store, name: &str, run: Option<i64>) -> Result<Value, (u16, String)> {
    let internal = |e: String| (500, e);
    let history = views::history(store, name, run)
        .await
        .map_err(|e| match e {
            HistoryError::NoRollout => (404, format!("no rollout named {name:?}")),
            HistoryError::NoRun(runs) => (404, no_run(name, run, &runs)),
            HistoryError::Store(e) => (500, e),
        })?;
    let rows = store
        .runs(name)
        .await
        .map_err(|e| internal(e.to_string()))?;
    let Some(latest) = rows.last() else {
        return never_ran(store, name, history).await;
    };
    let row = rows
        .iter()
        .find(|r| r.run == history.audit_run)
        .unwrap_or(latest);
    let is_latest = row.id == latest.id;
    let snapshot = if is_latest {
        v2::snapshot(store, name).await.map_err(internal)?
    } else {
        None
    };
    let snapshot = match snapshot {
        Some(s) => s,
        None => v2::Snapshot::from(&views::Snapshot::of(row).map_err(internal)?),
    };
    let spec = serde_json::from_str::<RolloutSpec>(&row.spec).ok();
    let cp = serde_json::from_str::<Checkpoint>(&row.checkpoint).ok();
    let kept = store
        .measurements(row.id)
        .await
        .map_err(|e| internal(e.to_string()))?;
    let points = points(store, row.id, &kept).await.map_err(internal)?;
    let (phases, background, metrics) = match (&spec, &cp) {
        (Some(spec), Some(cp)) => metrics::layout(spec, cp, &snapshot, &points, &kept),
        _ => (Vec::new(), Vec::new(), Vec::new()),
    };
    let now = now_ms();
    let started = cp.as_ref().map_or(row.created_ms, |c| c.started_ms);
    let ended = cp.as_ref().and_then(|c| c.finished_ms);
    let previous = rows.iter().find(|r| Some(r.run) == row.run.checked_sub(1));
    let banners = banners(
        &snapshot,
        row,
        cp.as_ref(),
        spec.as_ref(),
        &history.audit,
        now,
    );
    Ok(json!({
        "snapshot": snapshot,
        "runs": history.runs,
        "run": row.run,
        "startedMs": started,
        "durationMs": ended.unwrap_or(now).saturating_sub(started).max(0),
        "banners": banners,
        "phases": phases,
        "background": background,
        "metrics": metrics,
        "timeline": history.audit,
        "actions": actions(row, latest, snapshot.invalid_spec.as_ref()),
        "spec": spec_view(row, previous),
    }))
}

/// "run 7 of "web" does not exist; its runs are 1, 2".
fn no_run(name: &str, run: Option<i64>, runs: &[i64]) -> String {
    let runs: Vec<String> = runs.iter().map(i64::to_string).collect();
    format!(
        "run {} of {name:?} does not exist; its runs are {}",
        run.unwrap_or(0),
        if runs.is_empty() {
            "none yet".to_string()
        } else {
            runs.join(", ")
        }
    )
}

/// A rollout that never ran (its documents never loaded): the snapshot and the banner that
/// lists its problems, nothing else.
async fn never_ran(
    store: &Store,
    name: &str,
    history: views::History,
) -> Result<Value, (u16, String)> {
    let snapshot = v2::snapshot(store, name)
        .await
        .map_err(|e| (500, e))?
        .ok_or_else(|| (404, format!("no rollout named {name:?}")))?;
    let banners: Vec<Value> = snapshot.invalid_spec.iter().map(invalid_banner).collect();
    let why = format!("{name:?} has no run: fix its documents and it starts");
    let actions: serde_json::Map<String, Value> = Action::ALL
        .iter()
        .map(|a| (a.name().to_string(), json!({"allowed": false, "why": why})))
        .collect();
    Ok(json!({
        "snapshot": snapshot, "runs": history.runs, "run": 0,
        "startedMs": snapshot.created_ms, "durationMs": 0,
        "banners": banners, "phases": [], "background": [], "metrics": [],
        "timeline": [], "actions": actions,
        "spec": {"yaml": "", "previousRun": null, "diff": []},
    }))
}

/// What happened and what to do about it: one banner per thing an operator must know.
fn banners(
    snapshot: &v2::Snapshot,
    row: &RolloutRow,
    cp: Option<&Checkpoint>,
    spec: Option<&RolloutSpec>,
    audit: &[AuditInfo],
    now: i64,
) -> Vec<Value> {
    let name = &row.name;
    let mut out = Vec::new();
    if let Some(invalid) = &snapshot.invalid_spec {
        out.push(invalid_banner(invalid));
    }
    if let Some(runner) = snapshot.runner.as_ref().filter(|r| r.is_gone()) {
        out.push(banner(
            "stale-runner",
            "error",
            "The runner is not reporting",
            &runner.message,
            &format!(
                "restart `rollgate {}` on this store; the run resumes where it was",
                runner.command
            ),
        ));
    }
    // The event that put the run where it is: the last one that entered its state.
    let entered = audit
        .iter()
        .rev()
        .find(|a| a.state_after == row.state && a.state_before != row.state);
    let by = |fallback: &str| {
        entered.map_or_else(
            || fallback.to_string(),
            |a| format!("{} by {}: {}", a.action, a.actor, a.reason),
        )
    };
    let Some(state) = State::from_name(&row.state) else {
        return out;
    };
    let failures = || {
        let mut lines: Vec<String> = cp
            .map(|c| c.failures.iter().map(|f| f.message.clone()).collect())
            .unwrap_or_default();
        lines.dedup();
        lines
    };
    match state {
        State::Paused(why) => {
            let cp_paused_rollback = cp.is_some_and(|c| c.paused_rollback);
            let hint = pause_hint(why, name, cp, spec, cp_paused_rollback, now);
            let title = match entered {
                Some(a) => format!("Paused ({}) by {}", why.name(), a.actor),
                None => format!("Paused ({})", why.name()),
            };
            out.push(banner(
                "paused",
                "warn",
                &title,
                &by(&snapshot.progress.message),
                &hint,
            ));
        }
        State::RolledBack | State::RollingBack => {
            let title = if state == State::RolledBack {
                "Rolled back"
            } else {
                "Rolling back"
            };
            let mut b = banner(
                "rolled-back",
                "error",
                title,
                &decision(audit, &snapshot.progress.message),
                &format!(
                    "the stable version {} is (being) restored; fix the cause, then `rollgate retry {name}` (or Retry here) rolls it out again",
                    snapshot.progress.stable_version
                ),
            );
            b["failures"] = json!(failures());
            out.push(b);
        }
        State::Aborted | State::Failed => {
            let kind = if state == State::Aborted {
                "aborted"
            } else {
                "failed"
            };
            let mut b = banner(
                kind,
                "error",
                if state == State::Aborted {
                    "Aborted"
                } else {
                    "Failed"
                },
                &by(&snapshot.progress.message),
                &format!(
                    "what was applied stays: `rollgate rollback {name}` restores the stable version, `rollgate retry {name}` starts again"
                ),
            );
            b["failures"] = json!(failures());
            out.push(b);
        }
        State::Succeeded => out.push(banner(
            "succeeded",
            "info",
            "Succeeded",
            &format!(
                "{} is the new stable version",
                snapshot.progress.canary_version
            ),
            &format!("a rollback (`rollgate rollback {name}`) starts a run that reverses it"),
        )),
        State::Pending | State::Progressing => {}
    }
    out
}

fn banner(kind: &str, level: &str, title: &str, text: &str, hint: &str) -> Value {
    json!({"kind": kind, "level": level, "title": title, "text": text, "hint": hint,
           "problems": []})
}

fn invalid_banner(invalid: &InvalidSpec) -> Value {
    let mut b = banner(
        "invalid-spec",
        "error",
        "The rollout's documents do not load",
        &format!(
            "{} problem(s) in the documents of {:?}",
            invalid.problems.len(),
            invalid.name
        ),
        match invalid.held_run {
            Some(_) => "fix each problem below; the held run then resumes where it was by itself",
            None => "fix each problem below; the rollout then starts by itself",
        },
    );
    b["problems"] = json!(invalid.problems);
    b
}

/// The decision that rolled the run back, with its numbers: the audit event that entered
/// `rolling-back` or `rolled-back` (the policy's, a gate's or an operator's reason).
fn decision(audit: &[AuditInfo], fallback: &str) -> String {
    audit
        .iter()
        .rev()
        .find(|a| {
            let back = |s: &str| matches!(s, "rolling-back" | "rolled-back");
            back(&a.state_after) && !back(&a.state_before)
        })
        .map_or_else(
            || fallback.to_string(),
            |a| format!("{} by {}: {}", a.action, a.actor, a.reason),
        )
}

/// How a paused run goes on.
fn pause_hint(
    why: PauseReason,
    name: &str,
    cp: Option<&Checkpoint>,
    spec: Option<&RolloutSpec>,
    paused_rollback: bool,
    now: i64,
) -> String {
    if paused_rollback {
        return format!("resume (`rollgate resume {name}`) continues the rollback");
    }
    let phase = cp.zip(spec).and_then(|(c, s)| s.phases.get(c.phase));
    match why {
        PauseReason::Step => match (cp.and_then(|c| c.wake_ms), phase.and_then(|p| p.pause)) {
            (Some(at), Some(PauseSpec::Timed(_))) => format!(
                "goes on by itself in {} ({}); promote (`rollgate promote {name}`) to go on now",
                crate::engine::human_ms(u64::try_from(at.saturating_sub(now)).unwrap_or(0)),
                crate::engine::runner::utc_text(at)
            ),
            _ => format!(
                "waits until promoted: `rollgate promote {name}` (or Promote here) goes to the next phase"
            ),
        },
        PauseReason::Gate => format!(
            "waits for the phase's gate to confirm (asked again by itself); `rollgate promote {name}` skips it, `rollgate rollback {name}` restores the stable version"
        ),
        PauseReason::Manual | PauseReason::Policy => format!(
            "`rollgate resume {name}` re-enters the phase with fresh verification (re-reading the documents), `rollgate promote {name}` goes on without it, `rollgate rollback {name}` restores the stable version"
        ),
    }
}

/// Each action: whether the engine would take it now (`allowed`), and why not. Actions
/// act on the latest run; a held run (documents that do not load) takes none.
fn actions(row: &RolloutRow, latest: &RolloutRow, invalid: Option<&InvalidSpec>) -> Value {
    let mut out = serde_json::Map::new();
    for action in Action::ALL {
        let verdict = if row.id != latest.id {
            Err(format!(
                "run {} is not the latest run; actions act on run {}",
                row.run, latest.run
            ))
        } else if let Some(i) =
            invalid.filter(|i| i.held_run == Some(latest.id) || action == Action::Retry)
        {
            Err(format!(
                "{:?} is invalid-spec: {}; fix: {}",
                row.name,
                if action == Action::Retry {
                    "a retry would start a run of documents that do not load".to_string()
                } else {
                    format!("run {} is held until its documents load", latest.run)
                },
                i.problems.join("; ")
            ))
        } else {
            permit_row(action, latest)
        };
        out.insert(
            action.name().to_string(),
            match verdict {
                Ok(p) => json!({"allowed": true, "newRun": p == Permit::NewRun}),
                Err(why) => json!({"allowed": false, "why": why}),
            },
        );
    }
    Value::Object(out)
}

/// The effective Rollout as YAML, and its line diff against the previous run's.
fn spec_view(row: &RolloutRow, previous: Option<&RolloutRow>) -> Value {
    let yaml = |r: &RolloutRow| match serde_json::from_str::<Value>(&r.spec) {
        Ok(v) => super::yaml::to_yaml(&v),
        Err(e) => format!("# the stored spec of run {} cannot be read: {e}\n", r.run),
    };
    let text = yaml(row);
    let (diff, limited) = match previous {
        Some(p) => {
            let d = super::diff::diff(&yaml(p), &text);
            (d.lines, d.limited)
        }
        None => (Vec::new(), None),
    };
    json!({"yaml": text, "previousRun": previous.map(|p| p.run), "diff": diff,
           "diffLimited": limited})
}

/// A gate's line on its phase: its kind and where it stands.
fn gate_status(kind: GateKind, phase_status: &str, closed: Option<&str>) -> String {
    match (kind, phase_status, closed) {
        (_, _, Some(why)) => format!("closed: {why}"),
        (GateKind::Rollback, "active", None) => "watching".into(),
        (GateKind::Rollback, _, None) => "not asked".into(),
        (_, "done", None) => "passed".into(),
        _ => "not asked yet".into(),
    }
}

#[cfg(test)]
#[path = "detail_tests.rs"]
mod tests;
