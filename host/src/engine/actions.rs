//! Operator actions: what a request may carry ([`check_request`]), the [`Action`]s, and how
//! a run takes the requests waiting for it — each applied to the checkpoint, or refused
//! with the reason, audited and committed one by one.

use super::failure::{Failure, FailureKind};
use super::state::{PauseReason, Stage, State};
use super::{EngineError, Run};

/// The longest reason an operator may give with an action, in characters.
pub const MAX_REASON_CHARS: usize = 1_000;
/// The longest actor name an action may carry, in characters.
pub const MAX_ACTOR_CHARS: usize = 200;

/// Check what an operator's action request carries before anything is written: the reason
/// and actor end up in the audit log, the event stream, webhooks and every terminal that
/// shows them, so they are plain text of a bounded length.
pub fn check_request(actor: &str, reason: &str) -> Result<(), String> {
    for (what, text, max) in [
        ("the reason", reason, MAX_REASON_CHARS),
        ("the actor", actor, MAX_ACTOR_CHARS),
    ] {
        let chars = text.chars().count();
        if chars > max {
            return Err(format!(
                "{what} is {chars} characters long; write at most {max}"
            ));
        }
        if text.chars().any(char::is_control) {
            return Err(format!(
                "{what} contains control characters (a newline, a tab or a terminal escape); write one line of plain text"
            ));
        }
    }
    Ok(())
}

/// An operator's action on a rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Hold at the current weight.
    Pause,
    /// Continue a paused rollout: re-enter the current phase and re-evaluate.
    Resume,
    /// Go to the next phase now.
    Promote,
    /// Jump to the end: apply the final weight and succeed.
    PromoteFull,
    /// Stop; what was applied stays.
    Abort,
    /// Restore the stable version (after a success: a new run that reverses the succeeded
    /// one, [`super::reversal`]).
    Rollback,
    /// Re-run a rolled-back, aborted or failed rollout as a new run; after a reversal, roll
    /// forward again.
    Retry,
}

impl Action {
    /// All actions, for messages.
    pub const ALL: [Action; 7] = [
        Action::Pause,
        Action::Resume,
        Action::Promote,
        Action::PromoteFull,
        Action::Abort,
        Action::Rollback,
        Action::Retry,
    ];

    /// The action's name (as stored and audited).
    pub fn name(self) -> &'static str {
        match self {
            Action::Pause => "pause",
            Action::Resume => "resume",
            Action::Promote => "promote",
            Action::PromoteFull => "promote-full",
            Action::Abort => "abort",
            Action::Rollback => "rollback",
            Action::Retry => "retry",
        }
    }

    /// Parse an action's name.
    pub fn parse(text: &str) -> Result<Action, String> {
        Action::ALL
            .into_iter()
            .find(|a| a.name() == text)
            .ok_or_else(|| {
                let names: Vec<&str> = Action::ALL.iter().map(|a| a.name()).collect();
                format!("unknown action {text:?}; use one of {}", names.join(", "))
            })
    }
}

impl Run<'_> {
    pub(super) async fn handle_actions(&mut self) -> Result<(), EngineError> {
        if !self.may_have_actions() {
            return Ok(());
        }
        let requests = self.engine.store.pending_actions(self.id).await?;
        for req in requests {
            let before = self.cp.state;
            let result = match Action::parse(&req.action) {
                // A resume re-reads the rollout's documents first (fix, then resume).
                Ok(Action::Resume) if self.resume_rereads() => {
                    match self.adopt_current(&req.actor).await {
                        Ok(()) => self.apply_action(Action::Resume, &req.actor, &req.reason),
                        Err(why) => Err(why),
                    }
                }
                Ok(action) => self.apply_action(action, &req.actor, &req.reason),
                Err(e) => Err(e),
            };
            match result {
                Ok(()) => {
                    let reason = if req.reason.is_empty() {
                        format!("{} by {}", req.action, req.actor)
                    } else {
                        req.reason.clone()
                    };
                    self.audit(&req.actor, &req.action, reason, before);
                }
                Err(why) => {
                    self.audit(&req.actor, &format!("{}-refused", req.action), why, before);
                }
            }
            self.commit(&[], &[req.id]).await?;
        }
        Ok(())
    }

    /// Apply an operator action to the checkpoint (the caller audits and commits).
    pub(super) fn apply_action(
        &mut self,
        action: Action,
        actor: &str,
        reason: &str,
    ) -> Result<(), String> {
        let state = self.cp.state;
        let refuse = |what: &str| {
            Err(format!(
                "{what} is not possible while the rollout is {state}"
            ))
        };
        match action {
            Action::Pause => match state {
                State::Pending | State::Progressing => {
                    self.pause(
                        PauseReason::Manual,
                        None,
                        reason_or(reason, actor, "paused"),
                    );
                    self.operator_failure(actor);
                    Ok(())
                }
                State::RollingBack => {
                    self.cp.paused_rollback = true;
                    self.pause(
                        PauseReason::Manual,
                        None,
                        reason_or(reason, actor, "rollback paused"),
                    );
                    self.operator_failure(actor);
                    Ok(())
                }
                _ => refuse("pause"),
            },
            Action::Resume => match state {
                State::Paused(why) => {
                    self.resume(why);
                    self.cp.message = reason_or(reason, actor, "resumed");
                    Ok(())
                }
                _ => refuse("resume"),
            },
            Action::Promote => match state {
                // In the last phase "next" is the end: the final weight must still be applied.
                State::Progressing | State::Paused(_)
                    if !self.cp.paused_rollback && self.cp.phase + 1 >= self.spec.phases.len() =>
                {
                    self.promote_full(reason_or(reason, actor, "promoted to full (last phase)"));
                    Ok(())
                }
                State::Progressing | State::Paused(_) if !self.cp.paused_rollback => {
                    self.stop_verification("promoted by an operator");
                    self.cp.state = State::Progressing;
                    self.cp.stage = Stage::Done;
                    self.cp.wake_ms = None;
                    self.cp.message = reason_or(reason, actor, "promoted to the next phase");
                    Ok(())
                }
                _ => refuse("promote"),
            },
            Action::PromoteFull => match state {
                State::Pending | State::Progressing | State::Paused(_)
                    if !self.cp.paused_rollback =>
                {
                    self.promote_full(reason_or(reason, actor, "promoted to full"));
                    Ok(())
                }
                _ => refuse("promote-full"),
            },
            Action::Abort => {
                if state.is_final() {
                    return refuse("abort");
                }
                self.finish(
                    State::Aborted,
                    reason_or(reason, actor, "aborted; what was applied stays"),
                );
                self.operator_failure(actor);
                Ok(())
            }
            Action::Rollback => match state {
                State::RolledBack | State::Succeeded | State::RollingBack => refuse("rollback"),
                _ => {
                    self.roll_back(actor, reason_or(reason, actor, "rollback requested"), true);
                    self.operator_failure(actor);
                    Ok(())
                }
            },
            Action::Retry => {
                Err("retry starts a new run: use `rollgate retry NAME`, then `rollgate run`".into())
            }
        }
    }

    /// An operator stopped the run (pause, abort, rollback): recorded with the message the
    /// action left.
    fn operator_failure(&mut self, actor: &str) {
        let message = self.cp.message.clone();
        self.record_failure(Failure::new(FailureKind::Operator, message, self.now()).actor(actor));
    }

    pub(super) fn promote_full(&mut self, message: String) {
        self.stop_verification("promoted to full");
        self.cp.state = State::Progressing;
        self.cp.promote_full = true;
        self.cp.phase = self.spec.phases.len().saturating_sub(1);
        self.cp.stage = Stage::Apply;
        self.cp.wake_ms = None;
        self.cp.message = message;
    }
}

fn reason_or(reason: &str, actor: &str, default: &str) -> String {
    if reason.trim().is_empty() {
        format!("{default} by {actor}")
    } else {
        format!("{default} by {actor}: {reason}")
    }
}
