//! Deadlines and readiness: the progress deadline, and waiting for an applied step to take
//! effect within the readiness timeout.

use super::failure::{Failure, FailureKind};
use super::run::{human_ms, ms_i64};
use super::state::{Stage, State};
use super::{ENGINE_ACTOR, EngineError, Run};
use crate::deliver::Readiness;
use crate::spec::model::DeadlineAction;

impl Run<'_> {
    pub(super) async fn deadline_passed(&mut self) -> Result<bool, EngineError> {
        if self.cp.state != State::Progressing {
            return Ok(false);
        }
        let Some(deadline) = self.spec.progress_deadline_ms else {
            return Ok(false);
        };
        let idle = self.now() - self.cp.progress_since_ms;
        if idle <= ms_i64(deadline) {
            return Ok(false);
        }
        let why = format!(
            "progress deadline of {} exceeded in phase {:?} ({} without progress while {})",
            human_ms(deadline),
            self.phase_name(),
            human_ms(idle.max(0) as u64),
            stage_name(self.cp.stage)
        );
        self.on_deadline(why).await?;
        Ok(true)
    }

    pub(super) async fn on_deadline(&mut self, why: String) -> Result<(), EngineError> {
        let before = self.cp.state;
        let limit = self
            .spec
            .progress_deadline_ms
            .map(|d| format!("progressDeadline {}", human_ms(d)));
        self.record_failure(Failure::new(FailureKind::Deadline, &why, self.now()).limit(limit));
        let why = match self.spec.on_deadline {
            DeadlineAction::Fail => {
                self.finish(State::Failed, why.clone());
                why
            }
            DeadlineAction::Rollback => self.roll_back_or_hold(why),
        };
        self.audit(ENGINE_ACTOR, "deadline", why, before);
        self.commit(&[], &[]).await
    }

    pub(super) async fn wait_ready(&mut self) -> Result<(), EngineError> {
        let before = self.cp.state;
        let Some(step) = self.cp.last_step.clone() else {
            self.cp.stage = Stage::Verify;
            return self.commit(&[], &[]).await;
        };
        let since = *self.cp.ready_since_ms.get_or_insert(self.now());
        match self.target.ready(&step).await {
            Ok(Readiness::Ready) => {
                self.cp.stage = Stage::Verify;
                self.cp.progress_since_ms = self.now();
                self.cp.message = format!("{} ({}) took effect", step.operation.name(), step.id);
                self.commit(&[], &[]).await
            }
            answer => {
                let why = match answer {
                    Ok(Readiness::NotReady(m)) => m,
                    Err(e) => e.to_string(),
                    Ok(Readiness::Ready) => String::new(),
                };
                if self.now().saturating_sub(since) >= ms_i64(self.spec.readiness.timeout_ms) {
                    let msg = format!(
                        "{} ({}) did not become ready within {}: {why}",
                        step.operation.name(),
                        step.id,
                        human_ms(self.spec.readiness.timeout_ms)
                    );
                    self.record_failure(readiness_timeout(
                        &msg,
                        self.now(),
                        self.spec.readiness.timeout_ms,
                    ));
                    let msg = match self.spec.on_deadline {
                        DeadlineAction::Fail => {
                            self.finish(State::Failed, msg.clone());
                            msg
                        }
                        DeadlineAction::Rollback => self.roll_back_or_hold(msg),
                    };
                    self.audit(ENGINE_ACTOR, "readiness-timeout", msg, before);
                    return self.commit(&[], &[]).await;
                }
                self.cp.message = format!("waiting for {} to take effect: {why}", step.id);
                let until = self.after(self.spec.readiness.interval_ms.max(1));
                self.wait(Some(until)).await.map(|_| ())
            }
        }
    }
}

/// A step that did not take effect within `readiness.timeout` (`timeout_ms`).
pub(super) fn readiness_timeout(message: &str, at_ms: i64, timeout_ms: u64) -> Failure {
    Failure::new(FailureKind::ReadinessTimeout, message, at_ms)
        .limit(Some(format!("readiness.timeout {}", human_ms(timeout_ms))))
}

fn stage_name(stage: Stage) -> &'static str {
    match stage {
        Stage::GateBefore => "asking confirm-phase gates",
        Stage::Apply => "applying steps",
        Stage::Ready => "waiting for readiness",
        Stage::Verify => "verifying",
        Stage::Pause => "pausing",
        Stage::GateAfter => "asking confirm-promotion gates",
        Stage::Done => "completing the phase",
    }
}
