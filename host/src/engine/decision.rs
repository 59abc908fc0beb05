//! The failure policy's decision: what the policy is asked (metric summaries, pauses so
//! far) and how each [`Decision`] is applied to the run.

use super::failure::{Failure, FailureKind};
use super::run::human_ms;
use super::state::{PauseReason, Stage, State};
use super::{EngineError, Run};
use crate::plugin::types::{Decision, PauseRecord, PolicyInput};

impl Run<'_> {
    /// Ask the failure policy and apply its decision (in the same commit as what led to it).
    pub(super) async fn decide(&mut self, phase_complete: bool) -> Result<(), EngineError> {
        let before = self.cp.state;
        let input = self.policy_input(phase_complete);
        let policy_name = self.spec.failure_policy.plugin.clone();
        let actor = format!("policy:{policy_name}");
        let decision = match self.plugins.get(&policy_name) {
            None => Err(format!("failure policy {policy_name:?} is not loaded")),
            // Boxed like a provider's call (see `measure_explained`).
            Some(p) => Box::pin(p.decide(&self.spec.failure_policy.config.to_string(), &input))
                .await
                .map_err(|e| e.to_string()),
        };
        let decision = match decision {
            Ok(d) => d,
            // A failing policy must never let a rollout through: hold it for a person.
            Err(e) => {
                let reason = format!("the failure policy failed, holding the rollout: {e}");
                self.record_failure(
                    Failure::new(FailureKind::PolicyError, &reason, self.now())
                        .plugin(&policy_name),
                );
                Decision::Pause(crate::plugin::types::Pause {
                    reason,
                    duration_ms: None,
                })
            }
        };
        // While the rollout is held (by an operator, a gate, a step or the policy itself),
        // only a decision to end it is taken; going on or pausing again is the holder's call.
        if matches!(before, State::Paused(_))
            && !matches!(decision, Decision::Rollback(_) | Decision::Abort(_))
        {
            return self.commit(&[], &[]).await;
        }
        match decision {
            Decision::Continue => {
                if phase_complete {
                    let summary = self.verification_summary();
                    self.cp.stage = Stage::Pause;
                    self.cp.message = format!("phase {:?} verified: {summary}", self.phase_name());
                    let msg = self.cp.message.clone();
                    self.audit(&actor, "verified", msg, before);
                }
            }
            Decision::Promote => {
                self.stop_verification("the failure policy promoted");
                self.cp.stage = Stage::GateAfter;
                self.cp.message = "the failure policy promoted to the next phase".into();
                let msg = self.cp.message.clone();
                self.audit(&actor, "promote", msg, before);
            }
            Decision::PromoteFull => {
                self.promote_full("the failure policy promoted to full".into());
                let msg = self.cp.message.clone();
                self.audit(&actor, "promote-full", msg, before);
            }
            Decision::Pause(p) => {
                self.stop_verification("the rollout paused");
                let wake = p.duration_ms.map(|d| self.after(d));
                self.pause(PauseReason::Policy, wake, p.reason.clone());
                let msg = match p.duration_ms {
                    Some(d) => format!("{} (resumes by itself in {})", p.reason, human_ms(d)),
                    None => format!("{} (waiting for an operator)", p.reason),
                };
                self.audit(&actor, "pause", msg, before);
            }
            Decision::Rollback(reason) => {
                let taken = self.roll_back(&actor, reason.clone(), false);
                match taken.action() {
                    Some("rollback") => self.audit(&actor, "rollback", reason, before),
                    Some(action) => {
                        let msg = self.cp.message.clone();
                        self.audit(&actor, action, msg, before);
                    }
                    None => {}
                }
            }
            Decision::Abort(reason) => {
                self.finish(State::Aborted, reason.clone());
                self.audit(&actor, "abort", reason, before);
            }
        }
        self.commit(&[], &[]).await
    }

    pub(super) fn verification_summary(&self) -> String {
        let Some(v) = &self.cp.verification else {
            return "no metrics".into();
        };
        if v.metrics.is_empty() {
            return "no metrics".into();
        }
        v.metrics
            .iter()
            .map(|m| format!("{} {}", m.spec.name, m.status.name()))
            .collect::<Vec<_>>()
            .join(", ")
    }

    pub(super) fn policy_input(&self, phase_complete: bool) -> PolicyInput {
        let mut metrics = Vec::new();
        if let Some(v) = &self.cp.verification {
            metrics.extend(v.summaries());
        }
        if let Some(b) = &self.cp.background {
            metrics.extend(b.summaries());
        }
        PolicyInput {
            rollout: self.spec.name.clone(),
            phase: self.phase_name(),
            phase_index: self.cp.phase as u32,
            phase_count: self.spec.phases.len() as u32,
            weight: self.cp.weight,
            now_ms: self.now(),
            phase_complete,
            metrics,
            pauses: self
                .cp
                .pauses
                .iter()
                .map(|p| PauseRecord {
                    phase: p.phase.clone(),
                    reason: p.reason.clone(),
                    at_ms: p.at_ms,
                })
                .collect(),
            attempt: self.cp.attempt,
        }
    }
}
