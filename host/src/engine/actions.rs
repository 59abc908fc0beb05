//! Operator actions: what a request may carry ([`check_request`]), the [`Action`]s, and how
//! a run takes the requests waiting for it — each applied to the checkpoint, or refused
//! with the reason, audited and committed one by one.

use super::failure::{Failure, FailureKind};
use super::state::{PauseReason, Stage, State};
use super::{EngineError, Run};
use crate::store::RolloutRow;

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

/// What taking an action does, when [`permit`] allows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permit {
    /// A request the run's engine applies to its checkpoint at its next step.
    Apply,
    /// A new run: a retry, or the rollback of a succeeded run (its reversal).
    NewRun,
}

/// What [`permit`] decides from: the run's number, state, whether it is a paused rollback
/// and the run it reverses.
#[derive(Debug, Clone, Copy)]
pub struct RunFacts<'a> {
    /// The rollout's name.
    pub name: &'a str,
    /// The run's number.
    pub run: i64,
    /// Its state.
    pub state: State,
    /// Paused while rolling back ([`super::state::Checkpoint::paused_rollback`]).
    pub paused_rollback: bool,
    /// The run it reverses ([`super::state::Checkpoint::reverses`]).
    pub reverses: Option<i64>,
}

/// The one rule of which operator action a run takes: `Ok` with what taking it does, or
/// `Err` with why not, in the words the command line, the API and the engine answer with.
/// The engine applies what it permits ([`Run::apply_action`]), the command line and the
/// server check it before writing a request, retry and the rollback after success before
/// creating a run, and the web view shows it on each action's button.
pub fn permit(action: Action, run: &RunFacts<'_>) -> Result<Permit, String> {
    let RunFacts {
        name,
        run: number,
        state,
        paused_rollback,
        reverses,
    } = *run;
    match action {
        // Retry re-runs an ended run; after a reversal it rolls forward again.
        Action::Retry => {
            let ended = matches!(state, State::RolledBack | State::Aborted | State::Failed)
                || reverses.is_some() && state.is_final();
            return if ended {
                Ok(Permit::NewRun)
            } else {
                Err(format!(
                    "retry re-runs a rolled-back, aborted or failed rollout, or rolls forward again after a rollback; {name:?} run {number} is {state}"
                ))
            };
        }
        // After a success a rollback is a new run that reverses it, unless it is one.
        Action::Rollback if state == State::Succeeded => {
            return match reverses {
                Some(reversed) => Err(format!(
                    "{name:?} run {number} already took back what run {reversed} rolled out; roll that forward again with `rollgate retry {name}`"
                )),
                None => Ok(Permit::NewRun),
            };
        }
        _ => {}
    }
    // Only a rollback reopens an ended run, and only one that did not restore the stable
    // version or finish the rollout already.
    let reopens = action == Action::Rollback && matches!(state, State::Aborted | State::Failed);
    if state.is_final() && !reopens {
        return Err(format!(
            "{name:?} run {number} already ended {state}; nothing to {}",
            action.name()
        ));
    }
    let allowed = match action {
        Action::Pause => matches!(
            state,
            State::Pending | State::Progressing | State::RollingBack
        ),
        Action::Resume => matches!(state, State::Paused(_)),
        Action::Promote => {
            matches!(state, State::Progressing | State::Paused(_)) && !paused_rollback
        }
        Action::PromoteFull => {
            matches!(
                state,
                State::Pending | State::Progressing | State::Paused(_)
            ) && !paused_rollback
        }
        Action::Abort => true,
        Action::Rollback => !matches!(state, State::RollingBack),
        Action::Retry => false,
    };
    if allowed {
        Ok(Permit::Apply)
    } else {
        Err(format!(
            "{} is not possible while the rollout is {state}",
            action.name()
        ))
    }
}

/// [`permit`] for a stored run: its state column, and from its checkpoint whether it is a
/// paused rollback and the run it reverses. A state no engine writes (a damaged row)
/// permits nothing.
pub fn permit_row(action: Action, row: &RolloutRow) -> Result<Permit, String> {
    #[derive(serde::Deserialize, Default)]
    #[serde(rename_all = "camelCase")]
    struct Link {
        #[serde(default)]
        paused_rollback: bool,
        #[serde(default)]
        reverses: Option<i64>,
    }
    let link: Link = serde_json::from_str(&row.checkpoint).unwrap_or_default();
    let state = State::from_name(&row.state).ok_or_else(|| {
        format!(
            "{:?} run {} is {}, which no action applies to",
            row.name, row.run, row.state
        )
    })?;
    permit(
        action,
        &RunFacts {
            name: &row.name,
            run: row.run,
            state,
            paused_rollback: link.paused_rollback,
            reverses: link.reverses,
        },
    )
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
        if action == Action::Retry {
            return Err(
                "retry starts a new run: use `rollgate retry NAME`, then `rollgate run`".into(),
            );
        }
        let facts = RunFacts {
            name: &self.spec.name,
            run: 0,
            state,
            paused_rollback: self.cp.paused_rollback,
            reverses: self.cp.reverses,
        };
        match permit(action, &facts) {
            Ok(Permit::Apply) => {}
            // A new run is made by the command line or the server, never inside a run.
            Ok(Permit::NewRun) | Err(_) => {
                return Err(format!(
                    "{} is not possible while the rollout is {state}",
                    action.name()
                ));
            }
        }
        match action {
            Action::Pause if state == State::RollingBack => {
                self.cp.paused_rollback = true;
                self.pause(
                    PauseReason::Manual,
                    None,
                    reason_or(reason, actor, "rollback paused"),
                );
                self.operator_failure(actor);
            }
            Action::Pause => {
                self.pause(
                    PauseReason::Manual,
                    None,
                    reason_or(reason, actor, "paused"),
                );
                self.operator_failure(actor);
            }
            Action::Resume => {
                if let State::Paused(why) = state {
                    self.resume(why);
                }
                self.cp.message = reason_or(reason, actor, "resumed");
            }
            // In the last phase "next" is the end: the final weight must still be applied.
            Action::Promote if self.cp.phase + 1 >= self.spec.phases.len() => {
                self.promote_full(reason_or(reason, actor, "promoted to full (last phase)"));
            }
            Action::Promote => {
                self.stop_verification("promoted by an operator");
                self.cp.state = State::Progressing;
                self.cp.stage = Stage::Done;
                self.cp.wake_ms = None;
                self.cp.message = reason_or(reason, actor, "promoted to the next phase");
            }
            Action::PromoteFull => {
                self.promote_full(reason_or(reason, actor, "promoted to full"));
            }
            Action::Abort => {
                self.finish(
                    State::Aborted,
                    reason_or(reason, actor, "aborted; what was applied stays"),
                );
                self.operator_failure(actor);
            }
            Action::Rollback => {
                self.roll_back(actor, reason_or(reason, actor, "rollback requested"), true);
                self.operator_failure(actor);
            }
            Action::Retry => {}
        }
        Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(state: State, paused_rollback: bool, reverses: Option<i64>) -> RunFacts<'static> {
        RunFacts {
            name: "web",
            run: 2,
            state,
            paused_rollback,
            reverses,
        }
    }

    /// Which actions each state permits: the table the engine, the command line, the
    /// server and the web view share.
    #[test]
    fn each_state_permits_its_actions() {
        use Action::*;
        use Permit::{Apply as A, NewRun as N};
        let paused = State::Paused(PauseReason::Policy);
        // (state, paused rollback, reverses, [pause, resume, promote, promote-full, abort,
        //  rollback, retry]) — None: refused.
        type Row = (State, bool, Option<i64>, [Option<Permit>; 7]);
        let table: [Row; 11] = [
            (
                State::Pending,
                false,
                None,
                [Some(A), None, None, Some(A), Some(A), Some(A), None],
            ),
            (
                State::Progressing,
                false,
                None,
                [Some(A), None, Some(A), Some(A), Some(A), Some(A), None],
            ),
            (
                paused,
                false,
                None,
                [None, Some(A), Some(A), Some(A), Some(A), Some(A), None],
            ),
            (
                paused,
                true,
                None,
                [None, Some(A), None, None, Some(A), Some(A), None],
            ),
            (
                State::RollingBack,
                false,
                None,
                [Some(A), None, None, None, Some(A), None, None],
            ),
            (
                State::Succeeded,
                false,
                None,
                [None, None, None, None, None, Some(N), None],
            ),
            (
                State::Succeeded,
                false,
                Some(1),
                [None, None, None, None, None, None, Some(N)],
            ),
            (
                State::RolledBack,
                false,
                None,
                [None, None, None, None, None, None, Some(N)],
            ),
            (
                State::Aborted,
                false,
                None,
                [None, None, None, None, None, Some(A), Some(N)],
            ),
            (
                State::Failed,
                false,
                None,
                [None, None, None, None, None, Some(A), Some(N)],
            ),
            (
                State::RolledBack,
                false,
                Some(1),
                [None, None, None, None, None, None, Some(N)],
            ),
        ];
        for (state, paused_rollback, reverses, want) in table {
            let f = facts(state, paused_rollback, reverses);
            for (action, want) in [Pause, Resume, Promote, PromoteFull, Abort, Rollback, Retry]
                .into_iter()
                .zip(want)
            {
                assert_eq!(
                    permit(action, &f).ok(),
                    want,
                    "{} in {state} (paused rollback {paused_rollback}, reverses {reverses:?})",
                    action.name()
                );
            }
        }
    }

    #[test]
    fn a_refusal_says_why_in_the_words_the_cli_and_api_use() {
        let ended = permit(Action::Pause, &facts(State::Aborted, false, None)).unwrap_err();
        assert_eq!(
            ended,
            "\"web\" run 2 already ended aborted; nothing to pause"
        );
        let busy = permit(Action::Resume, &facts(State::Progressing, false, None)).unwrap_err();
        assert_eq!(
            busy,
            "resume is not possible while the rollout is progressing"
        );
        let twice = permit(Action::Rollback, &facts(State::Succeeded, false, Some(1))).unwrap_err();
        assert!(
            twice.contains("already took back what run 1 rolled out"),
            "{twice}"
        );
        let retry = permit(Action::Retry, &facts(State::Progressing, false, None)).unwrap_err();
        assert!(retry.starts_with("retry re-runs a rolled-back"), "{retry}");
    }
}
