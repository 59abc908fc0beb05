//! Rollback: starting it (immediate or gradual, planned by [`super::plan`]), applying its
//! steps — a gradual one waits for each to take effect and hold — and the rollback gates
//! that can ask for it.

use super::failure::{Failure, FailureKind};
use super::run::{human_ms, ms_i64};
use super::state::State;
use super::waiting::Woke;
use super::{ENGINE_ACTOR, EngineError, Run, gate, plan};
use crate::deliver::Readiness;
use crate::spec::model::{GateKind, RollbackMode};

impl Run<'_> {
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
            self.start_rollback(why.clone());
            self.audit(&format!("gate:{}", g.name), "rollback", why, before);
            self.commit(&[], &[]).await?;
        }
        Ok(())
    }

    pub(super) async fn roll_back_step(&mut self) -> Result<(), EngineError> {
        if !self.checkpointed_delay().await? {
            return Ok(());
        }
        let before = self.cp.state;
        let Some(step) = self.cp.rollback_steps.first().cloned() else {
            self.finish(
                State::RolledBack,
                format!("rolled back: {} restored", self.spec.stable_version),
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
