//! A rollout's durable state: what is checkpointed before every effect, and the names
//! operators see.
//!
//! The checkpoint is the *only* state a runner needs to continue a rollout after a crash:
//! where it is (phase, stage), what it applied (weight, instances), the step it was about to
//! apply (re-delivered with the same id if the runner died mid-step), the verification runs
//! with their counters, pauses and deadlines.

use super::failure::Failure;
use crate::deliver::Step;
use crate::verify::VerificationRun;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Why a rollout is paused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PauseReason {
    /// The phase's own pause (timed or until promoted).
    Step,
    /// An operator paused it.
    Manual,
    /// The failure policy paused it.
    Policy,
    /// A gate has not confirmed yet.
    Gate,
}

/// The rollout's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "state", content = "reason")]
pub enum State {
    /// Created, nothing applied yet.
    Pending,
    /// Moving: applying steps, waiting for readiness, verifying.
    Progressing,
    /// Holding at the current weight.
    Paused(PauseReason),
    /// Every phase passed; the canary version is the new stable.
    Succeeded,
    /// Restoring the stable version.
    RollingBack,
    /// The stable version is restored.
    RolledBack,
    /// Stopped by an operator or the policy; what was applied stays.
    Aborted,
    /// Could not go on (progress deadline, a target that refuses steps).
    Failed,
}

impl State {
    /// Every state's name, as [`State::name`] gives it (for gauges that list zeros too).
    pub const NAMES: [&'static str; 11] = [
        "pending",
        "progressing",
        "paused(step)",
        "paused(manual)",
        "paused(policy)",
        "paused(gate)",
        "succeeded",
        "rolling-back",
        "rolled-back",
        "aborted",
        "failed",
    ];

    /// Terminal states end the run (a retry starts a new run).
    pub fn is_final(self) -> bool {
        matches!(
            self,
            State::Succeeded | State::RolledBack | State::Aborted | State::Failed
        )
    }

    /// The state named `name` (as [`State::name`] writes it, and the store's `state`
    /// column holds it); `None` for any other text.
    pub fn from_name(name: &str) -> Option<State> {
        const ALL: [State; 11] = [
            State::Pending,
            State::Progressing,
            State::Paused(PauseReason::Step),
            State::Paused(PauseReason::Manual),
            State::Paused(PauseReason::Policy),
            State::Paused(PauseReason::Gate),
            State::Succeeded,
            State::RollingBack,
            State::RolledBack,
            State::Aborted,
            State::Failed,
        ];
        ALL.into_iter().find(|s| s.name() == name)
    }

    /// The name shown to operators: `paused(gate)`, `rolling-back`, …
    pub fn name(self) -> String {
        match self {
            State::Pending => "pending".into(),
            State::Progressing => "progressing".into(),
            State::Paused(r) => format!("paused({})", r.name()),
            State::Succeeded => "succeeded".into(),
            State::RollingBack => "rolling-back".into(),
            State::RolledBack => "rolled-back".into(),
            State::Aborted => "aborted".into(),
            State::Failed => "failed".into(),
        }
    }
}

impl PauseReason {
    /// `step`, `manual`, `policy`, `gate`.
    pub fn name(self) -> &'static str {
        match self {
            PauseReason::Step => "step",
            PauseReason::Manual => "manual",
            PauseReason::Policy => "policy",
            PauseReason::Gate => "gate",
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

/// An operator's request that has been recorded but not yet carried out. Requests wait in
/// the store until the runner takes them at its next step boundary (after the step in
/// flight), so the control of a run is derived from its pending requests, never stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Control {
    /// No request outstanding.
    #[default]
    Active,
    /// A pause was requested; it takes effect once the step in flight completes.
    PauseRequested,
    /// An abort or rollback was requested; it takes effect once the step in flight
    /// completes.
    CancelRequested,
}

impl Control {
    /// The control of a run whose pending requests are `actions` (oldest first): a cancel
    /// (abort, rollback) outranks a pause; anything else leaves it active.
    pub fn of<'a>(actions: impl IntoIterator<Item = &'a str>) -> Control {
        actions
            .into_iter()
            .map(|a| match a {
                "abort" | "rollback" => Control::CancelRequested,
                "pause" => Control::PauseRequested,
                _ => Control::Active,
            })
            .max_by_key(|c| match c {
                Control::Active => 0,
                Control::PauseRequested => 1,
                Control::CancelRequested => 2,
            })
            .unwrap_or_default()
    }

    /// `active`, `pause-requested`, `cancel-requested`.
    pub fn name(self) -> &'static str {
        match self {
            Control::Active => "active",
            Control::PauseRequested => "pause-requested",
            Control::CancelRequested => "cancel-requested",
        }
    }
}

/// Where inside the current phase the rollout is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Stage {
    /// Asking the phase's confirm-phase gates.
    GateBefore,
    /// Applying the phase's steps.
    Apply,
    /// Waiting for the last step to take effect.
    Ready,
    /// Verifying.
    Verify,
    /// In the phase's pause.
    Pause,
    /// Asking the phase's confirm-promotion gates.
    GateAfter,
    /// The phase is complete.
    Done,
}

/// A pause, remembered for the failure policy (which may escalate repeated pauses).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PauseEntry {
    /// The phase's name.
    pub phase: String,
    /// Why.
    pub reason: String,
    /// When.
    pub at_ms: i64,
}

/// Everything needed to continue a rollout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Checkpoint {
    /// The state.
    pub state: State,
    /// The current phase index.
    pub phase: usize,
    /// Where in the phase.
    pub stage: Stage,
    /// The next step's sequence number (part of step ids).
    pub seq: u32,
    /// The canary weight applied so far.
    pub weight: f64,
    /// Rolling: instances on the canary version.
    pub updated: u32,
    /// Blue-green: the preview is deployed.
    pub preview: bool,
    /// A step whose intent is recorded but whose completion is not: re-delivered (same id)
    /// after a crash.
    pub pending_step: Option<Step>,
    /// The last applied step (readiness is asked about it).
    pub last_step: Option<Step>,
    /// When the readiness wait started.
    pub ready_since_ms: Option<i64>,
    /// The phase's verification run.
    pub verification: Option<VerificationRun>,
    /// The background verification run.
    pub background: Option<VerificationRun>,
    /// When a timed wait ends: a pause, a gate re-check, or (committed before it starts,
    /// so a restart waits out the rest) a rolling batch delay or a gradual rollback's step
    /// pause.
    pub wake_ms: Option<i64>,
    /// Pauses so far.
    pub pauses: Vec<PauseEntry>,
    /// How many times the current phase was entered (1 on first entry).
    pub attempt: u32,
    /// When the current phase started.
    pub phase_started_ms: i64,
    /// When progress was last made (for the progress deadline; paused time does not count).
    pub progress_since_ms: i64,
    /// Promote-full in progress: apply the final step and finish without verifying.
    pub promote_full: bool,
    /// The closing (finalize) step was applied.
    #[serde(default)]
    pub finalized: bool,
    /// Rolling back: the steps still to apply.
    pub rollback_steps: Vec<Step>,
    /// The state to return to when a paused rollback resumes.
    pub paused_rollback: bool,
    /// The run this run reverses (a rollback after success, or mode `new-rollout`): it
    /// takes the version that run replaced back, and never rolls back by itself to the
    /// version it is taking away.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reverses: Option<i64>,
    /// The latest human-readable status.
    pub message: String,
    /// When the run started.
    pub started_ms: i64,
    /// When it reached a final state.
    pub finished_ms: Option<i64>,
    /// The configuration generation the run is driven with (0: not numbered; see
    /// [`crate::store::Store::configuration`]).
    #[serde(default)]
    pub config_generation: i64,
    /// What went wrong so far, oldest first, at most [`super::failure::MAX_FAILURES`]
    /// (absent from checkpoints written before failures were recorded).
    #[serde(default)]
    pub failures: Vec<Failure>,
    /// The last forward step the target refused (rolling: its batch's instances failed;
    /// blue-green: its step failed), for the target progress; a rollback step that fails
    /// is not one.
    #[serde(default)]
    pub refused_step: Option<Step>,
}

impl Checkpoint {
    /// A fresh run at `now_ms`.
    pub fn new(now_ms: i64) -> Checkpoint {
        Checkpoint {
            state: State::Pending,
            phase: 0,
            stage: Stage::GateBefore,
            seq: 1,
            weight: 0.0,
            updated: 0,
            preview: false,
            pending_step: None,
            last_step: None,
            ready_since_ms: None,
            verification: None,
            background: None,
            wake_ms: None,
            pauses: Vec::new(),
            attempt: 1,
            phase_started_ms: now_ms,
            progress_since_ms: now_ms,
            promote_full: false,
            finalized: false,
            rollback_steps: Vec::new(),
            paused_rollback: false,
            reverses: None,
            message: "created".into(),
            started_ms: now_ms,
            finished_ms: None,
            config_generation: 0,
            failures: Vec::new(),
            refused_step: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_comes_from_the_pending_requests() {
        let cases: [(&[&str], Control); 6] = [
            (&[], Control::Active),
            (&["promote", "resume"], Control::Active),
            (&["pause"], Control::PauseRequested),
            (&["promote", "pause"], Control::PauseRequested),
            (&["pause", "abort", "resume"], Control::CancelRequested),
            (&["rollback"], Control::CancelRequested),
        ];
        for (actions, want) in cases {
            assert_eq!(Control::of(actions.iter().copied()), want, "{actions:?}");
        }
        assert_eq!(Control::CancelRequested.name(), "cancel-requested");
    }

    #[test]
    fn every_state_name_reads_back() {
        for name in State::NAMES {
            assert_eq!(
                State::from_name(name).map(State::name).as_deref(),
                Some(name)
            );
        }
        assert_eq!(State::from_name("invalid-spec"), None);
    }

    #[test]
    fn a_checkpoint_written_before_failures_were_recorded_still_loads() {
        let mut json = serde_json::to_value(Checkpoint::new(5)).unwrap();
        let object = json.as_object_mut().unwrap();
        assert!(object.remove("failures").is_some());
        assert!(object.remove("refusedStep").is_some());
        let back: Checkpoint = serde_json::from_value(json).unwrap();
        assert_eq!(back, Checkpoint::new(5));
    }
}
