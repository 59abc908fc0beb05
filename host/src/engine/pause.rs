//! Pauses: holding a run (counted or not), resuming it — which re-enters the phase — and
//! waiting a pause out.

use super::state::{PauseEntry, PauseReason, Stage, State};
use super::waiting::Woke;
use super::{ENGINE_ACTOR, EngineError, Run};
use crate::verify::RunOutcome;

impl Run<'_> {
    /// Pause and count it: operator and policy pauses are what the policy sees (maxPauses).
    pub(super) fn pause(&mut self, reason: PauseReason, wake: Option<i64>, message: String) {
        self.cp.pauses.push(PauseEntry {
            phase: self.phase_name(),
            reason: message.clone(),
            at_ms: self.now(),
        });
        self.hold(reason, wake, message);
    }

    /// Pause without counting it: a phase's own pause, a gate not yet confirming.
    pub(super) fn hold(&mut self, reason: PauseReason, wake: Option<i64>, message: String) {
        self.cp.state = State::Paused(reason);
        self.cp.wake_ms = wake;
        self.cp.message = message;
    }

    /// Leave a pause: re-enter the current phase and re-evaluate (resume is not "ignore
    /// the gate": gates are asked again, verification starts afresh).
    pub(super) fn resume(&mut self, why: PauseReason) {
        let now = self.now();
        self.cp.wake_ms = None;
        self.cp.progress_since_ms = now;
        if self.cp.paused_rollback {
            self.cp.paused_rollback = false;
            self.cp.state = State::RollingBack;
            return;
        }
        if matches!(why, PauseReason::Manual | PauseReason::Policy)
            && matches!(self.cp.stage, Stage::Verify | Stage::Pause | Stage::Done)
        {
            // Metrics still running are cut short (audited in the paused state).
            self.stop_verification("the phase is re-entered after a pause");
        }
        self.cp.state = State::Progressing;
        match why {
            // The phase's own pause is over: on to its promotion gates.
            PauseReason::Step => self.cp.stage = Stage::GateAfter,
            // Ask the same gate again.
            PauseReason::Gate => {}
            PauseReason::Manual | PauseReason::Policy => {
                if matches!(self.cp.stage, Stage::Verify | Stage::Pause | Stage::Done) {
                    self.cp.verification = None;
                    self.cp.stage = Stage::Ready;
                    self.cp.ready_since_ms = Some(now);
                    self.cp.attempt += 1;
                    if self
                        .cp
                        .background
                        .as_ref()
                        .is_some_and(|b| !matches!(b.outcome(), RunOutcome::Running))
                    {
                        self.cp.background = None;
                    }
                }
            }
        }
    }

    pub(super) async fn paused(&mut self, reason: PauseReason) -> Result<Woke, EngineError> {
        let woke = self.wait(self.cp.wake_ms).await?;
        if let Woke::Time = woke
            && self.cp.state == State::Paused(reason)
        {
            let before = self.cp.state;
            self.resume(reason);
            self.cp.message = match reason {
                PauseReason::Step => "the phase's pause is over".into(),
                PauseReason::Gate => "asking the gate again".into(),
                _ => "the pause is over; re-entering the phase".into(),
            };
            let msg = self.cp.message.clone();
            self.audit(ENGINE_ACTOR, "resume", msg, before);
            self.commit(&[], &[]).await?;
        }
        Ok(woke)
    }
}
