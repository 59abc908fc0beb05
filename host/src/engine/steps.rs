//! Target steps: applying a phase's steps, each intended in a commit before it is applied
//! and recorded after; re-delivering the step in doubt after a crash; what a failed step
//! does; and the delays a restart must not skip.

use super::failure::{Failure, FailureKind};
use super::state::{Stage, State};
use super::{ENGINE_ACTOR, EngineError, Run, plan};
use crate::deliver::{Operation, Step};
use crate::spec::model::Strategy;
use crate::store::StepStatus;

impl Run<'_> {
    /// Wait out a delay kept in the checkpoint (`wake_ms`), so a restart does not skip it.
    /// True when it is over; false when something else happened first.
    pub(super) async fn checkpointed_delay(&mut self) -> Result<bool, EngineError> {
        let Some(until) = self.cp.wake_ms else {
            return Ok(true);
        };
        if self.now() < until {
            self.wait(Some(until)).await?;
            if self.now() < until {
                return Ok(false);
            }
        }
        self.cp.wake_ms = None;
        Ok(true)
    }

    /// Start a delay that must survive a restart: committed before it is waited out.
    pub(super) async fn delay(&mut self, ms: u64) -> Result<(), EngineError> {
        self.cp.wake_ms = Some(self.after(ms));
        self.commit(&[], &[]).await?;
        self.checkpointed_delay().await.map(|_| ())
    }

    pub(super) async fn apply_phase(&mut self) -> Result<(), EngineError> {
        if !self.checkpointed_delay().await? {
            return Ok(());
        }
        let full = self.cp.promote_full;
        match plan::next_step(&self.spec, &self.cp, self.run, full) {
            Some(step) => {
                let batch = step.operation == Operation::UpdateBatch;
                if !self.apply_step(step).await? {
                    return Ok(());
                }
                // Rolling: the delay between batches (not after the phase's last one).
                if batch
                    && let Strategy::Rolling {
                        delay_between_batches_ms,
                        ..
                    } = &self.spec.strategy
                    && *delay_between_batches_ms > 0
                    && plan::next_step(&self.spec, &self.cp, self.run, full).is_some()
                {
                    let ms = *delay_between_batches_ms;
                    self.delay(ms).await?;
                }
                Ok(())
            }
            None => {
                self.cp.stage = if full {
                    Stage::Done
                } else if self.cp.last_step.is_some() {
                    Stage::Ready
                } else {
                    Stage::Verify
                };
                self.cp.ready_since_ms = Some(self.now());
                self.commit(&[], &[]).await
            }
        }
    }

    /// Record the intent, apply, record the completion. False when the step failed (the
    /// rollout has moved to rolling back or failed).
    pub(super) async fn apply_step(&mut self, step: Step) -> Result<bool, EngineError> {
        // A safe point: a driver giving its lease up stops before the intent, never between
        // the intent and the step's outcome.
        self.safe_point()?;
        let json = serde_json::to_string(&step).unwrap_or_default();
        self.cp.pending_step = Some(step.clone());
        self.cp.seq = self.cp.seq.max(step_seq(&step.id) + 1);
        self.cp.message = format!("applying {} ({})", step.operation.name(), step.id);
        self.commit(&[(step.id.clone(), json)], &[]).await?;
        self.deliver(step).await
    }

    /// A step intended before a crash: finish its bookkeeping if the store saw it applied,
    /// re-deliver it (same id) otherwise.
    pub(super) async fn redeliver(&mut self, step: Step) -> Result<(), EngineError> {
        let steps = self.engine.store.steps(self.id).await?;
        let recorded = steps.iter().find(|s| s.step_id == step.id);
        match recorded.map(|s| (s.status, s.result.clone())) {
            Some((StepStatus::Applied, _)) => {
                let before = self.cp.state;
                self.absorb(&step);
                self.cp.message = format!(
                    "applied {} ({}); recorded after a restart",
                    step.operation.name(),
                    step.id
                );
                let msg = self.cp.message.clone();
                self.audit(ENGINE_ACTOR, "apply", msg, before);
                self.commit(&[], &[]).await?;
            }
            // Its failure was recorded but not acted on: act on it, never apply it again.
            Some((StepStatus::Failed, result)) => {
                let error = result.unwrap_or_else(|| "failed (no detail recorded)".into());
                self.step_failed(&step, error).await?;
            }
            _ => {
                tracing::warn!(rollout = %self.spec.name, step = %step.id, "re-delivering a step whose completion was not recorded");
                self.deliver(step).await?;
            }
        }
        Ok(())
    }

    pub(super) async fn deliver(&mut self, step: Step) -> Result<bool, EngineError> {
        let mut attempt = 0;
        let result = loop {
            self.hold_lease(&format!("not delivering step {}", step.id))?;
            match self.target.apply(&step, self.epoch).await {
                Err(e) if e.retryable && attempt < 3 => {
                    attempt += 1;
                    tracing::warn!(rollout = %self.spec.name, step = %step.id, "retrying: {e}");
                    let until = self.now().saturating_add(1_000 << attempt);
                    self.engine.clock.sleep_until(until).await;
                }
                other => break other,
            }
        };
        // The outcome is recorded even past the local deadline: it is a fact, and the store
        // takes it only under this run's epoch (fenced: another runner took the run, which
        // then delivers the step again as in doubt). Recorded, it is not delivered again
        // when this runner claims the run back.
        let now = self.now();
        let before = self.cp.state;
        match result {
            Ok(applied) => {
                self.engine
                    .store
                    .step_done(
                        self.id,
                        &step.id,
                        StepStatus::Applied,
                        &applied.output,
                        now,
                        self.epoch,
                    )
                    .await
                    .map_err(|e| self.store_failed(e))?;
                self.absorb(&step);
                self.cp.message = format!("applied {} ({})", step.operation.name(), step.id);
                let msg = self.cp.message.clone();
                self.audit(ENGINE_ACTOR, "apply", msg, before);
                self.commit(&[], &[]).await?;
                Ok(true)
            }
            Err(e) => {
                let error = e.to_string();
                self.engine
                    .store
                    .step_done(
                        self.id,
                        &step.id,
                        StepStatus::Failed,
                        &error,
                        now,
                        self.epoch,
                    )
                    .await
                    .map_err(|e| self.store_failed(e))?;
                self.step_failed(&step, error).await?;
                Ok(false)
            }
        }
    }

    /// A step that could not be applied: a forward step starts the rollback (a reversal
    /// holds for an operator instead), a rollback step fails the rollout.
    pub(super) async fn step_failed(
        &mut self,
        step: &Step,
        error: String,
    ) -> Result<(), EngineError> {
        let before = self.cp.state;
        self.cp.pending_step = None;
        let why = format!(
            "step {} ({}) failed: {error}",
            step.id,
            step.operation.name()
        );
        self.record_failure(Failure::new(FailureKind::StepFailed, &why, self.now()));
        let why = if self.cp.state == State::RollingBack || step.operation == Operation::Rollback {
            self.finish(
                State::Failed,
                format!("{why}; the rollback could not complete"),
            );
            why
        } else {
            self.cp.refused_step = Some(step.clone());
            self.roll_back_or_hold(why)
        };
        self.audit(ENGINE_ACTOR, "step-failed", why, before);
        self.commit(&[], &[]).await
    }

    /// Take an applied step into the checkpoint.
    pub(super) fn absorb(&mut self, step: &Step) {
        self.cp.pending_step = None;
        match step.operation {
            Operation::DeployPreview => self.cp.preview = true,
            Operation::UpdateBatch => {
                self.cp.updated = step.updated;
                self.cp.weight = step.weight;
            }
            Operation::Rollback => {
                self.cp.weight = step.weight;
                if matches!(self.spec.strategy, Strategy::Rolling { .. }) {
                    self.cp.updated = step.updated;
                }
                if self
                    .cp
                    .rollback_steps
                    .first()
                    .is_some_and(|s| s.id == step.id)
                {
                    self.cp.rollback_steps.remove(0);
                }
            }
            Operation::SetWeight | Operation::CutOver => self.cp.weight = step.weight,
            Operation::Finalize => self.cp.finalized = true,
        }
        if step.operation != Operation::Finalize {
            self.cp.last_step = Some(step.clone());
        }
        self.cp.progress_since_ms = self.now();
    }
}

fn step_seq(id: &str) -> u32 {
    id.rsplit_once('/')
        .and_then(|(_, tail)| tail.split('-').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}
