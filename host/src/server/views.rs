//! What `rollgate get` and `rollgate history` show, read from a store: shared by the
//! command line (reading a store file) and the HTTP API (which the command line reads with
//! `--server`), so both give the same JSON.

use crate::engine::clock::now_ms;
use crate::engine::runner::RunnerView;
use crate::engine::state::Checkpoint;
use crate::engine::{Progress, progress_of};
use crate::spec::model::RolloutSpec;
use crate::store::{InvalidSpec, RolloutRow, Store};
use serde::{Deserialize, Serialize};

/// A run as the store holds it, read back into what a display needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Snapshot {
    /// The progress computed from its spec and checkpoint.
    #[serde(flatten)]
    pub progress: Progress,
    /// Whether the run ended.
    pub finished: bool,
    /// When the run was created.
    pub created_ms: i64,
    /// When it last changed.
    pub updated_ms: i64,
    /// Why it is where it is, when that is a failure: each failed or erroring metric's
    /// reason, and the last message when the run ended other than succeeded.
    #[serde(default)]
    pub failures: Vec<String>,
    /// When the rollout's documents do not load: every problem, since when, and the run
    /// held because of them. With a run in progress that is not held, the run goes on with
    /// the configuration it started with and its state stays; otherwise the state is
    /// `invalid-spec`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invalid_spec: Option<InvalidSpec>,
    /// Who drives the run, when it is unfinished and a runner claimed it: the runner, its
    /// heartbeat and whether it stopped reporting ([`crate::engine::runner`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runner: Option<RunnerView>,
}

impl Snapshot {
    /// The snapshot of a stored run. A run whose stored spec or checkpoint cannot be read
    /// is not hidden: its snapshot has the state `unreadable` and says why ([`progress`]).
    pub fn of(row: &RolloutRow) -> Result<Snapshot, String> {
        let progress = progress(row);
        let mut failures: Vec<String> = progress
            .metrics
            .iter()
            .filter(|m| matches!(m.status.as_str(), "failed" | "error" | "inconclusive"))
            .map(|m| format!("metric {:?}: {}", m.name, m.message))
            .collect();
        if matches!(
            progress.state.as_str(),
            "rolling-back" | "rolled-back" | "aborted" | "failed" | UNREADABLE
        ) {
            failures.push(progress.message.clone());
        }
        Ok(Snapshot {
            progress,
            finished: row.finished,
            created_ms: row.created_ms,
            updated_ms: row.updated_ms,
            failures,
            invalid_spec: None,
            runner: None,
        })
    }

    /// A rollout whose documents do not load, with its latest run (if any): see
    /// [`Snapshot::invalid_spec`] and [`invalid_progress`].
    pub fn invalid(invalid: InvalidSpec, latest: Option<&RolloutRow>) -> Result<Snapshot, String> {
        let mut snap = match latest {
            Some(row) => Snapshot::of(row)?,
            None => Snapshot {
                progress: invalid_progress(&invalid, None),
                finished: false,
                created_ms: invalid.since_ms,
                updated_ms: invalid.since_ms,
                failures: Vec::new(),
                invalid_spec: None,
                runner: None,
            },
        };
        if let Some(row) = latest
            && (row.finished || invalid.held_run == Some(row.id))
        {
            snap.progress = invalid_progress(&invalid, Some(snap.progress));
            snap.finished = false;
        }
        snap.failures
            .push(format!("invalid-spec: {}", invalid.problems.join("; ")));
        snap.invalid_spec = Some(invalid);
        Ok(snap)
    }
}

/// The state shown for a rollout whose documents do not load and that has no run going on
/// with an older configuration.
pub const INVALID_SPEC: &str = "invalid-spec";

/// The progress of a rollout in the state `invalid-spec`: its latest run's (phases,
/// versions, weight) when it has one, with the state and a message that says what to do.
pub fn invalid_progress(invalid: &InvalidSpec, run: Option<Progress>) -> Progress {
    let count = invalid.problems.len();
    let after_fix = match (&run, invalid.held_run) {
        (Some(p), Some(_)) => format!(
            "run {} resumes where it was (no step applied again) once they load",
            p.run
        ),
        _ => "the rollout starts once they load".to_string(),
    };
    let message = format!(
        "the documents of rollout {:?} do not load ({count} problem(s)): fix them; {after_fix}",
        invalid.name
    );
    match run {
        Some(p) => Progress {
            state: INVALID_SPEC.to_string(),
            message,
            ..p
        },
        None => Progress {
            rollout: invalid.name.clone(),
            run: 0,
            state: INVALID_SPEC.to_string(),
            strategy: String::new(),
            stable_version: String::new(),
            canary_version: String::new(),
            phases: Vec::new(),
            phase: 0,
            phase_count: 0,
            phase_name: String::new(),
            weight: 0.0,
            message,
            metrics: Vec::new(),
            failures: Vec::new(),
            target: None,
            reverses: None,
        },
    }
}

/// The state shown for a run whose stored spec or checkpoint cannot be read.
pub const UNREADABLE: &str = "unreadable";

/// The progress of a stored run, computed from its spec and checkpoint. When either cannot
/// be read (a store damaged by hand, or written by an incompatible rollgate), the progress
/// says so with the state [`UNREADABLE`] and a message that says what to do: such a run is
/// never driven, and never hidden either.
pub fn progress(row: &RolloutRow) -> Progress {
    let name = &row.name;
    let read = serde_json::from_str::<RolloutSpec>(&row.spec)
        .map_err(|e| format!("its stored spec cannot be read ({e})"))
        .and_then(|spec| {
            serde_json::from_str::<Checkpoint>(&row.checkpoint)
                .map(|cp| progress_of(&spec, row.run, &cp))
                .map_err(|e| format!("its stored checkpoint cannot be read ({e})"))
        });
    read.unwrap_or_else(|problem| Progress {
        rollout: name.clone(),
        run: row.run,
        state: UNREADABLE.to_string(),
        strategy: String::new(),
        stable_version: String::new(),
        canary_version: String::new(),
        phases: Vec::new(),
        phase: 0,
        phase_count: 0,
        phase_name: String::new(),
        weight: 0.0,
        message: format!(
            "run {} of {name:?} (last state {}) is not driven: {problem}; restore the store from a backup, or fix the row and restart",
            row.run, row.state
        ),
        metrics: Vec::new(),
        failures: Vec::new(),
        target: None,
        reverses: None,
    })
}

/// Read the latest run of `name`; `Ok(None)` when the store has none.
pub async fn snapshot(store: &Store, name: &str) -> Result<Option<Snapshot>, String> {
    let latest = store.latest(name).await.map_err(|e| e.to_string())?;
    let invalid = store.invalid_spec(name).await.map_err(|e| e.to_string())?;
    let mut snapshot = match (&latest, invalid) {
        (None, None) => return Ok(None),
        (latest, Some(invalid)) => Snapshot::invalid(invalid, latest.as_ref())?,
        (Some(row), None) => Snapshot::of(row)?,
    };
    if let Some(row) = &latest {
        snapshot.runner = runner(store, row).await?;
    }
    Ok(Some(snapshot))
}

/// Who drives the stored run `row`, seen now: `None` for a finished run, a run no runner
/// claimed, and a store that does not record runners.
pub async fn runner(store: &Store, row: &RolloutRow) -> Result<Option<RunnerView>, String> {
    if row.finished {
        return Ok(None);
    }
    let found = store.runner_of(row.id).await.map_err(|e| e.to_string())?;
    Ok(found.map(|r| RunnerView::of(&r, now_ms())))
}

/// One run in a rollout's history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunInfo {
    /// Its number.
    pub run: i64,
    /// Its state.
    pub state: String,
    /// Whether it ended.
    pub finished: bool,
    /// When it was created.
    pub created_ms: i64,
    /// When it last changed.
    pub updated_ms: i64,
    /// The run it reverses, if it is a reversal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reverses: Option<i64>,
}

/// One audit event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditInfo {
    /// 1, 2, … in the run.
    pub seq: i64,
    /// When.
    pub at_ms: i64,
    /// Who.
    pub actor: String,
    /// What.
    pub action: String,
    /// Why.
    pub reason: String,
    /// State before.
    pub state_before: String,
    /// State after.
    pub state_after: String,
}

/// A rollout's runs and the audit log of one of them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct History {
    /// The rollout.
    pub rollout: String,
    /// Every run, oldest first.
    pub runs: Vec<RunInfo>,
    /// The run whose log this is.
    pub audit_run: i64,
    /// Its audit log, in order.
    pub audit: Vec<AuditInfo>,
    /// When the rollout's documents do not load: every problem (see
    /// [`Snapshot::invalid_spec`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invalid_spec: Option<InvalidSpec>,
}

/// Why a history cannot be shown.
#[derive(Debug, Clone, PartialEq)]
pub enum HistoryError {
    /// No rollout of that name.
    NoRollout,
    /// No such run; the runs there are.
    NoRun(Vec<i64>),
    /// The store failed.
    Store(String),
}

/// The history of `name`, with the audit log of run `run` (default: the latest).
pub async fn history(store: &Store, name: &str, run: Option<i64>) -> Result<History, HistoryError> {
    let runs = store
        .runs(name)
        .await
        .map_err(|e| HistoryError::Store(e.to_string()))?;
    let invalid = store
        .invalid_spec(name)
        .await
        .map_err(|e| HistoryError::Store(e.to_string()))?;
    let Some(latest) = runs.last() else {
        return match invalid {
            Some(invalid) if run.is_none() => Ok(History {
                rollout: name.to_string(),
                runs: Vec::new(),
                audit_run: 0,
                audit: Vec::new(),
                invalid_spec: Some(invalid),
            }),
            Some(_) => Err(HistoryError::NoRun(Vec::new())),
            None => Err(HistoryError::NoRollout),
        };
    };
    let chosen = match run {
        None => latest,
        Some(n) => runs
            .iter()
            .find(|r| r.run == n)
            .ok_or_else(|| HistoryError::NoRun(runs.iter().map(|r| r.run).collect()))?,
    };
    let audit = store
        .audit(chosen.id)
        .await
        .map_err(|e| HistoryError::Store(e.to_string()))?;
    Ok(History {
        rollout: name.to_string(),
        runs: runs
            .iter()
            .map(|r| RunInfo {
                run: r.run,
                state: r.state.clone(),
                finished: r.finished,
                created_ms: r.created_ms,
                updated_ms: r.updated_ms,
                reverses: crate::engine::reversal::reverses(r),
            })
            .collect(),
        audit_run: chosen.run,
        audit: audit
            .into_iter()
            .map(|a| AuditInfo {
                seq: a.seq,
                at_ms: a.event.at_ms,
                actor: a.event.actor,
                action: a.event.action,
                reason: a.event.reason,
                state_before: a.event.state_before,
                state_after: a.event.state_after,
            })
            .collect(),
        invalid_spec: invalid,
    })
}
