//! The phase loop: [`Run::drive`] takes a run from state to state until it ends, and each
//! phase goes stage by stage — confirm-phase gates, apply, readiness, verify, the phase's
//! pause, confirm-promotion gates, on to the next phase or success.

use super::failure::{Failure, FailureKind};
use super::run::human_ms;
use super::state::{PauseReason, Stage, State};
use super::waiting::Woke;
use super::{ENGINE_ACTOR, EngineError, Outcome, Run, gate, plan};
use crate::spec::model::{GateKind, PauseSpec};
use serde_json::json;

impl Run<'_> {
    /// Settle the step in doubt, take operator actions, watch the deadline, then move the
    /// run on by its state; until it ends (or, on a simulated clock, only an operator could
    /// move it).
    pub(super) async fn drive(&mut self) -> Result<Outcome, EngineError> {
        self.notify();
        if !self.cp.state.is_final() {
            let before = self.cp.config_generation;
            self.note_generation();
            if before != self.cp.config_generation {
                Box::pin(self.commit(&[], &[])).await?;
            }
        }
        // Only the waiting path (`progress` → `verify` → `wait`, `paused`) is awaited
        // inline: a run's driver lives as long as the run and is as large as the largest
        // future it awaits inline, most of its life spent waiting. The rest is boxed for
        // the moment it runs (see `engine::future_sizes`).
        loop {
            if self.cp.state.is_final() {
                if !Box::pin(self.reopen()).await? {
                    return Ok(self.outcome());
                }
                continue;
            }
            // The step in doubt after a crash is settled first: an action taken before it
            // would plan from a weight that is not the one applied.
            if let Some(step) = self.cp.pending_step.clone() {
                Box::pin(self.redeliver(step)).await?;
                continue;
            }
            Box::pin(self.handle_actions()).await?;
            if self.cp.state.is_final() {
                continue;
            }
            if Box::pin(self.deadline_passed()).await? {
                continue;
            }
            match self.cp.state {
                State::Pending => Box::pin(self.start()).await?,
                State::Progressing => self.progress().await?,
                State::Paused(reason) => {
                    if let Woke::Stuck = self.paused(reason).await? {
                        return Ok(self.outcome());
                    }
                }
                State::RollingBack => Box::pin(self.roll_back_step()).await?,
                State::Succeeded | State::RolledBack | State::Aborted | State::Failed => {}
            }
        }
    }

    /// An ended run: an aborted or failed one can still be rolled back by an operator, so
    /// take the requests waiting for it. True when that reopened it (it is no longer in a
    /// final state).
    async fn reopen(&mut self) -> Result<bool, EngineError> {
        let reopen = matches!(self.cp.state, State::Aborted | State::Failed)
            && !self.engine.store.pending_actions(self.id).await?.is_empty();
        if !reopen {
            return Ok(false);
        }
        if let Some(w) = &self.wake {
            w.pending.store(true, std::sync::atomic::Ordering::SeqCst);
        }
        self.handle_actions().await?;
        Ok(!self.cp.state.is_final())
    }

    /// A pending run starts: into its first phase (a reversal: into the phase its
    /// checkpoint was created at, [`plan::reversal_start`]).
    async fn start(&mut self) -> Result<(), EngineError> {
        let before = self.cp.state;
        self.cp.state = State::Progressing;
        self.cp.message = format!(
            "started: {} → {}{}",
            self.spec.stable_version,
            self.spec.canary_version,
            self.cp
                .reverses
                .map(|n| format!(" (run {} reverses run {n})", self.run))
                .unwrap_or_default()
        );
        self.enter_phase(self.cp.phase.min(self.spec.phases.len().saturating_sub(1)));
        let msg = self.cp.message.clone();
        self.audit(ENGINE_ACTOR, "start", msg, before);
        self.commit(&[], &[]).await
    }

    pub(super) fn enter_phase(&mut self, phase: usize) {
        let now = self.now();
        self.cp.phase = phase;
        self.cp.stage = Stage::GateBefore;
        self.cp.attempt = 1;
        self.cp.phase_started_ms = now;
        self.cp.progress_since_ms = now;
        self.cp.verification = None;
        self.cp.wake_ms = None;
    }

    /// One step of a progressing run, by the stage its phase is in.
    pub(super) async fn progress(&mut self) -> Result<(), EngineError> {
        match self.cp.stage {
            Stage::GateBefore => Box::pin(self.gates(GateKind::ConfirmPhase, Stage::Apply)).await,
            Stage::Apply => Box::pin(self.apply_phase()).await,
            Stage::Ready => Box::pin(self.wait_ready()).await,
            Stage::Verify => self.verify().await,
            Stage::Pause => self.phase_pause().await,
            Stage::GateAfter => Box::pin(self.gates(GateKind::ConfirmPromotion, Stage::Done)).await,
            Stage::Done => Box::pin(self.complete_phase()).await,
        }
    }

    /// The phase's own pause, if it has one: held for a time or until an operator promotes.
    async fn phase_pause(&mut self) -> Result<(), EngineError> {
        let before = self.cp.state;
        let phase = &self.spec.phases[self.cp.phase.min(self.spec.phases.len() - 1)];
        match phase.pause {
            None => self.cp.stage = Stage::GateAfter,
            Some(PauseSpec::Timed(ms)) => {
                let until = self.after(ms);
                self.hold(
                    PauseReason::Step,
                    Some(until),
                    format!("phase pause of {}", human_ms(ms)),
                );
                let msg = self.cp.message.clone();
                self.audit(ENGINE_ACTOR, "pause", msg, before);
            }
            Some(PauseSpec::Indefinite) => {
                self.hold(
                    PauseReason::Step,
                    None,
                    "phase pause: waiting for an operator to promote".into(),
                );
                let msg = self.cp.message.clone();
                self.audit(ENGINE_ACTOR, "pause", msg, before);
            }
        }
        self.commit(&[], &[]).await
    }

    /// A phase is complete: on to the next one, or — in the last phase or promoted to full —
    /// the final step and success.
    async fn complete_phase(&mut self) -> Result<(), EngineError> {
        let before = self.cp.state;
        let last = self.cp.phase + 1 >= self.spec.phases.len();
        if last || self.cp.promote_full {
            if !self.cp.finalized {
                let step = plan::finalize_step(&self.spec, &self.cp, self.run);
                if !self.apply_step(step).await? {
                    return Ok(());
                }
            }
            let message = match self.cp.reverses {
                None => format!(
                    "succeeded: {} is the new stable version",
                    self.spec.canary_version
                ),
                Some(n) => format!(
                    "succeeded: {} is the stable version again (run {} reverses run {n})",
                    self.spec.canary_version, self.run
                ),
            };
            self.finish(State::Succeeded, message);
            let msg = self.cp.message.clone();
            self.audit(ENGINE_ACTOR, "succeed", msg, before);
        } else {
            let done = self.phase_name();
            self.enter_phase(self.cp.phase + 1);
            self.cp.message = format!("phase {done:?} complete; entering {:?}", self.phase_name());
            let msg = self.cp.message.clone();
            self.audit(ENGINE_ACTOR, "next-phase", msg, before);
        }
        self.commit(&[], &[]).await
    }

    /// Ask the phase's gates of `kind`; all open → `next` stage, one closed → paused(gate).
    pub(super) async fn gates(&mut self, kind: GateKind, next: Stage) -> Result<(), EngineError> {
        let before = self.cp.state;
        let phase = self.cp.phase.min(self.spec.phases.len() - 1);
        let gates: Vec<_> = if self.cp.promote_full {
            Vec::new()
        } else {
            self.spec.phases[phase]
                .gates
                .iter()
                .filter(|g| g.kind == kind)
                .cloned()
                .collect()
        };
        for g in &gates {
            let payload = self.gate_payload(g.kind, &g.name);
            match gate::ask(&self.engine.http, g, &payload).await {
                gate::GateAnswer::Open(_) => {
                    self.audit(
                        &format!("gate:{}", g.name),
                        "gate-open",
                        format!("gate {:?} confirmed", g.name),
                        before,
                    );
                }
                gate::GateAnswer::Closed(why) => {
                    let wake = self.after(g.interval_ms.max(1));
                    self.hold(
                        PauseReason::Gate,
                        Some(wake),
                        format!("gate {:?} has not confirmed: {why}", g.name),
                    );
                    let msg = self.cp.message.clone();
                    self.record_failure(
                        Failure::new(FailureKind::GateClosed, &msg, self.now()).gate(&g.name),
                    );
                    self.audit(&format!("gate:{}", g.name), "gate-closed", msg, before);
                    return self.commit(&[], &[]).await;
                }
            }
        }
        self.cp.stage = next;
        if next == Stage::Apply {
            self.cp.message = format!(
                "phase {:?}: applying weight {}",
                self.phase_name(),
                self.spec.phases[phase].weight
            );
        }
        self.commit(&[], &[]).await
    }

    pub(super) fn gate_payload(&self, kind: GateKind, name: &str) -> serde_json::Value {
        json!({
            "rollout": self.spec.name, "run": self.run, "gate": name,
            "kind": serde_json::to_value(kind).unwrap_or_default(),
            "phase": self.phase_name(), "phaseIndex": self.cp.phase, "phaseCount": self.spec.phases.len(),
            "weight": self.cp.weight, "state": self.cp.state.name(),
            "stableVersion": self.spec.stable_version, "canaryVersion": self.spec.canary_version,
        })
    }
}
