//! Rollback: deciding how it is carried out ([`Run::roll_back`]) — in this run (immediate
//! or gradual, planned by [`super::plan`]), by a new run that takes the stable version
//! through the phases (mode `new-rollout`, [`super::reversal`]), or not at all in a run
//! that is itself a reversal — applying its steps (a gradual one waits for each to take
//! effect and hold), and the rollback gates that can ask for it.

use super::failure::{Failure, FailureKind};
use super::progress::progress_counts;
use super::reversal;
use super::run::{human_ms, ms_i64};
use super::state::{Checkpoint, PauseReason, Stage, State};
use super::waiting::Woke;
use super::{ENGINE_ACTOR, EngineError, Run, gate, plan};
use crate::deliver::Readiness;
use crate::spec::model::{GateKind, RollbackMode, RolloutSpec};
use crate::store::AuditEvent;

/// What a request to roll back did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum RollbackTaken {
    /// This run rolls back (immediate or gradual).
    RollingBack,
    /// This run ended rolled back; the next commit creates the run that takes the stable
    /// version through the phases (mode `new-rollout`).
    Reversed,
    /// This run is a reversal: it holds for an operator instead (`paused(policy)`).
    Held,
    /// This run is a reversal already holding for an operator: nothing changed.
    AlreadyHeld,
}

impl RollbackTaken {
    /// The audit action of the decision: `rollback`, `pause` when held, none when nothing
    /// changed.
    pub(super) fn action(self) -> Option<&'static str> {
        match self {
            RollbackTaken::RollingBack | RollbackTaken::Reversed => Some("rollback"),
            RollbackTaken::Held => Some("pause"),
            RollbackTaken::AlreadyHeld => None,
        }
    }
}

/// The reversal a run creates when it rolls back in mode `new-rollout`: written by the
/// run's next commit, in the same transaction.
pub(super) struct Successor {
    /// The spec, stable and canary swapped.
    pub(super) spec: RolloutSpec,
    /// Its first checkpoint.
    pub(super) checkpoint: Checkpoint,
    /// The audit event of its creation.
    pub(super) event: AuditEvent,
}

impl Run<'_> {
    /// Roll back because `actor` asked (`operator`: an operator's request; otherwise the
    /// failure policy, a rollback gate, a deadline or a failed step), saying `why`; the
    /// caller audits and commits.
    ///
    /// A run that reverses another never rolls back by itself to the version it takes
    /// away: it holds for an operator, who may resume, promote, abort or roll it back —
    /// and an operator's rollback of it is immediate. In mode `new-rollout` any other run
    /// ends rolled back and a new run takes the stable version through every phase.
    pub(super) fn roll_back(&mut self, actor: &str, why: String, operator: bool) -> RollbackTaken {
        if let Some(reversed) = self.cp.reverses
            && !operator
        {
            if self.cp.state == State::Paused(PauseReason::Policy) && self.cp.wake_ms.is_none() {
                return RollbackTaken::AlreadyHeld;
            }
            self.stop_verification("the rollout holds for an operator");
            if self.cp.stage == Stage::Ready {
                // A resume waits for readiness afresh.
                self.cp.ready_since_ms = None;
            }
            let message = format!(
                "{why}; not rolled back: this run takes {back} back (it reverses run {reversed}) and rolling back would restore {away}, the version it takes away; resume to try the phase again, promote to go on, or roll back to restore {away}",
                back = self.spec.canary_version,
                away = self.spec.stable_version,
            );
            self.pause(PauseReason::Policy, None, message);
            return RollbackTaken::Held;
        }
        if self.spec.rollback == RollbackMode::NewRollout && self.cp.reverses.is_none() {
            self.reverse(actor, why);
            return RollbackTaken::Reversed;
        }
        self.start_rollback(why);
        RollbackTaken::RollingBack
    }

    /// [`Run::roll_back`] for the engine's own reasons (a deadline, a failed step): the
    /// reason to audit — `why`, or, when a reversal holds instead, what it says about that.
    pub(super) fn roll_back_or_hold(&mut self, why: String) -> String {
        match self.roll_back(ENGINE_ACTOR, why.clone(), false) {
            RollbackTaken::Held => self.cp.message.clone(),
            _ => why,
        }
    }

    /// Mode `new-rollout`: end this run rolled back, and queue the run that reverses it
    /// (stable and canary swapped, starting where [`plan::reversal_start`] says) for the
    /// next commit.
    fn reverse(&mut self, actor: &str, why: String) {
        let next = self.run.saturating_add(1);
        let spec = reversal::swapped(&self.spec);
        let now = self.now();
        let checkpoint = reversal::new_rollout_checkpoint(&spec, &self.cp, self.run, now);
        self.finish(
            State::RolledBack,
            format!(
                "rolled back by a new rollout: run {next} takes {} through the phases ({why})",
                self.spec.stable_version
            ),
        );
        let event = AuditEvent {
            at_ms: now,
            actor: actor.to_string(),
            action: "rollback".into(),
            reason: format!(
                "run {next} reverses run {}: it takes {} back through every phase (new-rollout); {why}",
                self.run, spec.canary_version
            ),
            state_before: self.cp.state.name(),
            state_after: checkpoint.state.name(),
            progress: progress_counts(&spec, &checkpoint),
        };
        self.successor = Some(Box::new(Successor {
            spec,
            checkpoint,
            event,
        }));
    }

    /// Roll back in this run: plan the steps that restore the stable version.
    pub(super) fn start_rollback(&mut self, message: String) {
        self.stop_verification("the rollout is rolling back");
        let now = self.now();
        let changes = match self.cp.background.as_mut() {
            Some(b) => b.stop(now, "the rollout is rolling back"),
            None => Vec::new(),
        };
        self.audit_changes(&changes);
        self.cp.rollback_steps = plan::rollback_steps(&self.spec, &self.cp, self.run);
        self.cp.seq += self.cp.rollback_steps.len() as u32;
        self.cp.state = State::RollingBack;
        self.cp.promote_full = false;
        self.cp.paused_rollback = false;
        self.cp.finished_ms = None;
        self.cp.wake_ms = None;
        self.cp.message = message;
    }

    pub(super) fn rollback_gate_due(
        &mut self,
        now: i64,
    ) -> Option<(crate::spec::model::GateSpec, i64)> {
        if !matches!(self.cp.state, State::Progressing | State::Paused(_)) {
            return None;
        }
        let phase = self.cp.phase.min(self.spec.phases.len().saturating_sub(1));
        let gates = &self.spec.phases.get(phase)?.gates;
        let mut best: Option<(crate::spec::model::GateSpec, i64)> = None;
        for g in gates.iter().filter(|g| g.kind == GateKind::Rollback) {
            let at = *self
                .next_rollback_gate
                .entry((phase, g.name.clone()))
                .or_insert(now);
            if best.as_ref().is_none_or(|(_, b)| at < *b) {
                best = Some((g.clone(), at));
            }
        }
        best
    }

    pub(super) async fn ask_rollback_gate(
        &mut self,
        g: crate::spec::model::GateSpec,
    ) -> Result<(), EngineError> {
        let now = self.now();
        let phase = self.cp.phase;
        self.next_rollback_gate.insert(
            (phase, g.name.clone()),
            now.saturating_add(ms_i64(g.interval_ms.max(1))),
        );
        let payload = self.gate_payload(g.kind, &g.name);
        if let gate::GateAnswer::Open(body) = gate::ask(&self.engine.http, &g, &payload).await {
            let before = self.cp.state;
            let why = format!(
                "rollback gate {:?} requested a rollback: {}",
                g.name,
                body.trim()
            );
            self.record_failure(Failure::new(FailureKind::GateRollback, &why, now).gate(&g.name));
            let actor = format!("gate:{}", g.name);
            let taken = self.roll_back(&actor, why.clone(), false);
            if let Some(action) = taken.action() {
                let reason = if taken == RollbackTaken::Held {
                    self.cp.message.clone()
                } else {
                    why
                };
                self.audit(&actor, action, reason, before);
                self.commit(&[], &[]).await?;
            }
        }
        Ok(())
    }

    pub(super) async fn roll_back_step(&mut self) -> Result<(), EngineError> {
        if !self.checkpointed_delay().await? {
            return Ok(());
        }
        let before = self.cp.state;
        let Some(step) = self.cp.rollback_steps.first().cloned() else {
            let reverses = self
                .cp
                .reverses
                .map(|n| format!(" (run {} reverses run {n})", self.run))
                .unwrap_or_default();
            self.finish(
                State::RolledBack,
                format!(
                    "rolled back: {} restored{reverses}",
                    self.spec.stable_version
                ),
            );
            let msg = self.cp.message.clone();
            self.audit(ENGINE_ACTOR, "rolled-back", msg, before);
            return self.commit(&[], &[]).await;
        };
        if !self.apply_step(step.clone()).await? {
            return Ok(());
        }
        // Gradual: each step must take effect and hold before the next.
        if let RollbackMode::Gradual { step_pause_ms } = self.spec.rollback
            && !self.cp.rollback_steps.is_empty()
        {
            let deadline = self.after(self.spec.readiness.timeout_ms);
            loop {
                let last = match self.target.ready(&step).await {
                    Ok(Readiness::Ready) => break,
                    Ok(Readiness::NotReady(why)) => why,
                    Err(e) => e.to_string(),
                };
                if self.now() >= deadline {
                    // Restoring the stable version matters more than a slow step: go on,
                    // but say so.
                    let before = self.cp.state;
                    let why = format!(
                        "rollback step {} did not become ready within {} ({last}); going on with the rollback",
                        step.id,
                        human_ms(self.spec.readiness.timeout_ms)
                    );
                    self.cp.message = why.clone();
                    self.record_failure(super::deadlines::readiness_timeout(
                        &why,
                        self.now(),
                        self.spec.readiness.timeout_ms,
                    ));
                    self.audit(ENGINE_ACTOR, "readiness-timeout", why, before);
                    self.commit(&[], &[]).await?;
                    break;
                }
                let until = self.after(self.spec.readiness.interval_ms.max(1));
                // Through `wait`, so an operator's pause or abort is not held up.
                if let Woke::Interrupted | Woke::Stuck = self.wait(Some(until)).await? {
                    return Ok(());
                }
            }
            if step_pause_ms > 0 {
                self.delay(step_pause_ms).await?;
            }
        }
        Ok(())
    }
}
