//! Operator actions through the server: recording a request and waiting for the run's
//! answer, retries, and the rollback of a succeeded run (a new run that reverses it).

use super::Fleet;
use crate::engine::clock::now_ms;
use crate::engine::reversal::{self, ReverseError};
use crate::engine::state::State;
use crate::engine::{Action, RetryError, retry_run};
use std::time::Duration;
use tokio::sync::broadcast;

/// How long an action request waits for the run to apply or refuse it before the API
/// answers "queued".
const OUTCOME_WAIT: Duration = Duration::from_secs(5);

impl Fleet {
    /// Ask for `action` on rollout `name` as `actor`. Actions other than retry are recorded
    /// in the store and the run is woken (or driven again, for a rollback of an aborted or
    /// failed run), then the answer waits (a few seconds at most) for the run to apply the
    /// action (`outcome: applied`, with the state after) or refuse it (409, with why); a
    /// run too busy to answer in time gets `outcome: queued`. Retry creates and starts the
    /// next run; so does a rollback of a succeeded run (the run that reverses it, with
    /// `reverses`). With several runners on one store, a request for a run another runner
    /// holds is written to the store for that runner (which finds it by its
    /// `--action-poll`, [`Fleet::wake_run`]) and answered `queued` at once, with `heldBy`
    /// (the holder's runner id). `Err((status, message))`.
    pub async fn act(
        &self,
        name: &str,
        action: Action,
        actor: &str,
        reason: &str,
    ) -> Result<serde_json::Value, (u16, String)> {
        crate::engine::check_request(actor, reason).map_err(|e| (400, e))?;
        let store = &self.inner.store;
        let internal = |e: crate::store::StoreError| (500, e.to_string());
        let invalid = self
            .inner
            .invalid
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned();
        let latest = store.latest(name).await.map_err(internal)?;
        let latest = match (latest, &invalid) {
            (Some(row), _) => row,
            (None, Some(i)) => {
                return Err((
                    409,
                    format!(
                        "rollout {name:?} is invalid-spec and has no run to {}: {}; fix the documents and it starts",
                        action.name(),
                        i.problems.join("; ")
                    ),
                ));
            }
            (None, None) => return Err((404, format!("no rollout named {name:?}"))),
        };
        if let Some(i) = &invalid
            && (i.held_run == Some(latest.id) || action == Action::Retry)
        {
            let what = if action == Action::Retry {
                "a retry would start a run of documents that do not load".to_string()
            } else {
                format!(
                    "run {} is held until its documents load (it then resumes where it was by itself)",
                    latest.run
                )
            };
            return Err((
                409,
                format!(
                    "rollout {name:?} is invalid-spec: {what}; fix: {}",
                    i.problems.join("; ")
                ),
            ));
        }
        let engine = self
            .current()
            .map(|l| l.engine.clone())
            .ok_or_else(|| (503, "the server has no configuration yet".to_string()))?;
        if action == Action::Retry {
            let (row, reason) = retry_run(store, &latest, actor, reason, now_ms())
                .await
                .map_err(|e| match e {
                    RetryError::NotEnded { .. } => (409, e.to_string()),
                    RetryError::Engine(e) => (500, e.to_string()),
                })?;
            self.remember_row(&row);
            self.spawn(&engine, row.id);
            return Ok(serde_json::json!({
                "rollout": name, "action": "retry", "run": row.run, "state": row.state,
                "reason": reason,
            }));
        }
        if action == Action::Rollback && latest.state == State::Succeeded.name() {
            // After a success: a new run takes the previous version back, started at once.
            let (row, reason) =
                reversal::rollback_after_success(store, &latest, actor, reason, now_ms())
                    .await
                    .map_err(|e| match e {
                        ReverseError::Refused(_) => (409, e.to_string()),
                        ReverseError::Engine(e) => (500, e.to_string()),
                    })?;
            self.remember_row(&row);
            self.spawn(&engine, row.id);
            return Ok(serde_json::json!({
                "rollout": name, "action": "rollback", "run": row.run, "state": row.state,
                "reason": reason, "reverses": latest.run,
            }));
        }
        // An ended run has no engine to refuse the request: the rule is asked here (a run
        // going on refuses it itself, audited).
        if latest.finished {
            crate::engine::permit_row(action, &latest).map_err(|why| (409, why))?;
        }
        // Listen before asking, so the engine's answer cannot be missed.
        let mut events = self.inner.events.subscribe();
        let request = store
            .request_action(latest.id, action.name(), actor, reason, now_ms())
            .await
            .map_err(internal)?;
        if !self.wake_run(latest.id) {
            if self.leases().is_some() && !latest.finished {
                // Another runner drives the run (or will: it may be free, and this
                // runner's manager looks now): the holder finds the request in the store.
                self.poke_leases();
                let held = store.lease_of(latest.id).await.map_err(internal)?;
                let me = self.leases().map(|l| l.runner());
                if let Some(lease) = held.filter(|l| l.live() && l.runner != me) {
                    return Ok(serde_json::json!({
                        "rollout": name, "action": action.name(), "request": request,
                        "run": latest.run, "outcome": "queued", "state": latest.state,
                        "heldBy": lease.runner,
                    }));
                }
            } else {
                // Not driven (an ended run an operator reopens): driven here, under a
                // lease claimed now.
                self.spawn(&engine, latest.id);
            }
        }
        let refused = format!("{}-refused", action.name());
        let answer = tokio::time::timeout(OUTCOME_WAIT, async {
            loop {
                match events.recv().await {
                    Ok(e)
                        if e.rollout == name
                            && e.run == latest.run
                            && e.actor == actor
                            && (e.action == action.name() || e.action == refused) =>
                    {
                        return Some(e);
                    }
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        })
        .await
        .ok()
        .flatten();
        match answer {
            Some(e) if e.action == refused => Err((409, e.reason.clone())),
            Some(e) => Ok(serde_json::json!({
                "rollout": name, "action": action.name(), "request": request,
                "run": latest.run, "outcome": "applied", "stateBefore": e.state_before,
                "state": e.state_after, "reason": e.reason,
            })),
            // The run is busy (a long plugin call, a slow target step): it will get to it.
            None => Ok(serde_json::json!({
                "rollout": name, "action": action.name(), "request": request,
                "run": latest.run, "outcome": "queued", "state": latest.state,
            })),
        }
    }
}
