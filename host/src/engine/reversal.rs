//! Reversal runs: a run of its own that takes back what another run of the rollout rolled
//! out, linked to it by [`Checkpoint::reverses`] (shown as "run 3 reverses run 2").
//!
//! - **After a success** ([`rollback_after_success`]): in mode `immediate` or `gradual` the
//!   new run has the same spec and starts where the succeeded run ended, rolling back
//!   (its steps planned by [`plan::rollback_steps`]); it ends `rolled-back`. In mode
//!   `new-rollout` the new run's spec has stable and canary swapped ([`swapped`]) and it
//!   takes the previous version through every phase, with verification; it ends
//!   `succeeded`.
//! - **During a rollout in mode `new-rollout`**: the run ends `rolled-back` and the same
//!   commit creates the reversal ([`new_rollout_checkpoint`]; `Run::reverse` in
//!   `rollback.rs`), which the engine then drives.
//!
//! A reversal never rolls back by itself to the version it takes away (`rollback.rs`), a
//! `retry` of it rolls the reversed release forward again ([`super::retry_run`]), and the
//! folder still holding that release is not a reason to roll it out again ([`ran_spec`]).

use super::plan;
use super::progress::progress_counts;
use super::state::{Checkpoint, Stage, State};
use super::{EngineError, checkpoint_json};
use crate::spec::model::{RollbackMode, RolloutSpec};
use crate::store::{AuditEvent, NewRow, RolloutRow, Store, StoreError};
use std::path::Path;

/// `spec` with its stable and canary versions swapped: the spec of a `new-rollout`
/// reversal, whose canary is the version going back.
pub fn swapped(spec: &RolloutSpec) -> RolloutSpec {
    let mut s = spec.clone();
    std::mem::swap(&mut s.stable_version, &mut s.canary_version);
    s
}

/// The run a stored run reverses, from its checkpoint; `None` for a run that reverses
/// nothing (or whose checkpoint cannot be read: the engine reports that when it drives it).
pub fn reverses(row: &RolloutRow) -> Option<i64> {
    #[derive(serde::Deserialize)]
    struct Link {
        #[serde(default)]
        reverses: Option<i64>,
    }
    serde_json::from_str::<Link>(&row.checkpoint).ok()?.reverses
}

/// Whether the stored run `row` ran the spec `current`, loaded from below `root` (see
/// [`crate::spec::same_spec`]). A reversal in mode `new-rollout` ran it with the versions
/// swapped: the folder still holding the release it took back is not a new release, and
/// starting it again would undo the rollback.
pub fn ran_spec(row: &RolloutRow, current: &RolloutSpec, root: &Path) -> bool {
    crate::spec::same_spec(&row.spec, current, root)
        || reverses(row).is_some() && crate::spec::same_spec(&row.spec, &swapped(current), root)
}

/// The first checkpoint of a `new-rollout` reversal of run `reversed_run`: pending, at the
/// phase [`plan::reversal_start`] picks, with the share of the version going back that is
/// live already. `spec` is the swapped spec, `reversed` the reversed run's checkpoint.
pub fn new_rollout_checkpoint(
    spec: &RolloutSpec,
    reversed: &Checkpoint,
    reversed_run: i64,
    now: i64,
) -> Checkpoint {
    let mut cp = Checkpoint::new(now);
    let (phase, weight) = plan::reversal_start(spec, reversed);
    cp.phase = phase;
    cp.weight = weight;
    cp.reverses = Some(reversed_run);
    cp.message = format!(
        "created: reverses run {reversed_run}, taking {} back through the phases",
        spec.canary_version
    );
    cp
}

/// The first checkpoint of an `immediate` or `gradual` rollback of run `reversed_run`,
/// which succeeded with the checkpoint `done`: where that run ended (last phase, everything
/// applied), rolling back, with the steps `plan::rollback_steps` plans for run `run`.
fn rollback_checkpoint(
    spec: &RolloutSpec,
    done: &Checkpoint,
    run: i64,
    reversed_run: i64,
    now: i64,
) -> Checkpoint {
    let mut cp = Checkpoint::new(now);
    cp.phase = done.phase;
    cp.stage = Stage::Done;
    cp.weight = done.weight;
    cp.updated = done.updated;
    cp.preview = done.preview;
    cp.finalized = done.finalized;
    cp.reverses = Some(reversed_run);
    cp.rollback_steps = plan::rollback_steps(spec, &cp, run);
    cp.seq = cp.seq.saturating_add(cp.rollback_steps.len() as u32);
    cp.state = State::RollingBack;
    cp.message = format!(
        "rolling back run {reversed_run}: restoring {}",
        spec.stable_version
    );
    cp
}

/// Why a rollback after success was not started.
#[derive(Debug, thiserror::Error)]
pub enum ReverseError {
    /// It cannot be started: the run already is a reversal, or another run was created
    /// meanwhile. The message says what to do.
    #[error("{0}")]
    Refused(String),
    /// The stored run cannot be read, or the store failed.
    #[error(transparent)]
    Engine(#[from] EngineError),
}

/// Roll back a rollout whose latest run `latest` succeeded: create the run that reverses
/// it, audited as `rollback` by `actor` with the state before `succeeded`; the new row and
/// the audited reason. The command line and the server share this; the caller starts the
/// run (`rollgate run`, or the server at once).
pub async fn rollback_after_success(
    store: &Store,
    latest: &RolloutRow,
    actor: &str,
    reason: &str,
    now: i64,
) -> Result<(RolloutRow, String), ReverseError> {
    let name = &latest.name;
    if latest.state != State::Succeeded.name() {
        return Err(ReverseError::Refused(format!(
            "{name:?} run {} is {}, not succeeded",
            latest.run, latest.state
        )));
    }
    // A reversal is not reversed again: it is rolled forward (`permit` says how).
    super::permit_row(super::Action::Rollback, latest).map_err(ReverseError::Refused)?;
    let corrupt = |what: &str, e: serde_json::Error| EngineError::Corrupt {
        rollout: name.clone(),
        message: format!(
            "the stored {what} of run {} cannot be read: {e}",
            latest.run
        ),
    };
    let spec: RolloutSpec = serde_json::from_str(&latest.spec).map_err(|e| corrupt("spec", e))?;
    let done: Checkpoint =
        serde_json::from_str(&latest.checkpoint).map_err(|e| corrupt("checkpoint", e))?;
    let run = latest
        .run
        .checked_add(1)
        .ok_or_else(|| EngineError::Corrupt {
            rollout: name.clone(),
            message: format!("run {} is the last run number there can be", latest.run),
        })?;
    let (spec, cp, how) = match spec.rollback {
        RollbackMode::NewRollout => {
            let spec = swapped(&spec);
            let cp = new_rollout_checkpoint(&spec, &done, latest.run, now);
            let how = format!(
                "takes {} back through every phase (new-rollout)",
                spec.canary_version
            );
            (spec, cp, how)
        }
        RollbackMode::Immediate | RollbackMode::Gradual { .. } => {
            let cp = rollback_checkpoint(&spec, &done, run, latest.run, now);
            let how = format!("restores {}", spec.stable_version);
            (spec, cp, how)
        }
    };
    let reason = format!(
        "rollback of run {} by {actor} after it succeeded{}; run {run} reverses run {}: it {how}",
        latest.run,
        if reason.is_empty() {
            String::new()
        } else {
            format!(": {reason}")
        },
        latest.run
    );
    let spec_json = serde_json::to_string(&spec).map_err(|e| EngineError::Corrupt {
        rollout: name.clone(),
        message: format!("cannot serialise the spec: {e}"),
    })?;
    let cp_json = checkpoint_json(name, &cp)?;
    let event = AuditEvent {
        at_ms: now,
        actor: actor.to_string(),
        action: "rollback".into(),
        reason: reason.clone(),
        state_before: latest.state.clone(),
        state_after: cp.state.name(),
        progress: progress_counts(&spec, &cp),
    };
    let new = NewRow {
        name,
        spec: &spec_json,
        checkpoint: &cp_json,
        state: &cp.state.name(),
        event: &event,
        after: latest.run,
    };
    match store.create_after(new, now).await {
        Ok(row) => Ok((row, reason)),
        Err(e @ StoreError::RunTaken { .. }) => Err(ReverseError::Refused(e.to_string())),
        Err(e) => Err(ReverseError::Engine(e.into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(checkpoint: &str) -> RolloutRow {
        RolloutRow {
            id: 1,
            name: "web".into(),
            run: 2,
            spec: "{}".into(),
            checkpoint: checkpoint.into(),
            state: "succeeded".into(),
            finished: true,
            generation: 1,
            created_ms: 0,
            updated_ms: 0,
        }
    }

    #[test]
    fn the_link_is_read_from_the_checkpoint() {
        let mut cp = Checkpoint::new(0);
        assert_eq!(reverses(&row(&serde_json::to_string(&cp).unwrap())), None);
        // Not written at all for a run that reverses nothing (stores stay as they were).
        assert!(!serde_json::to_string(&cp).unwrap().contains("reverses"));
        cp.reverses = Some(1);
        assert_eq!(
            reverses(&row(&serde_json::to_string(&cp).unwrap())),
            Some(1)
        );
        assert_eq!(reverses(&row("not json")), None);
    }
}
