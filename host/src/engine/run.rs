//! A run's bookkeeping: its clock, the audit events queued for the next commit, the commit
//! that ends every unit of work (and tells the sink and observer), how a run ends
//! ([`Run::finish`]), and how durations are counted and shown.

use super::failure::Failure;
use super::lease::{Stop, utc_text_ms};
use super::progress::{Committed, progress_counts, progress_of};
use super::state::State;
use super::{EngineError, Outcome, Run, checkpoint_json};
use crate::store::{AuditEvent, Commit, NewRow, StoreError};

impl Run<'_> {
    pub(super) fn now(&self) -> i64 {
        self.engine.clock.now_ms()
    }

    /// The time `ms` from now.
    pub(super) fn after(&self, ms: u64) -> i64 {
        self.now().saturating_add(ms_i64(ms))
    }

    pub(super) fn phase_name(&self) -> String {
        self.spec
            .phases
            .get(self.cp.phase)
            .map(|p| p.name.clone())
            .unwrap_or_default()
    }

    /// Record a failure in the checkpoint (committed with the next commit), in the current
    /// phase unless it names one.
    pub(super) fn record_failure(&mut self, failure: Failure) {
        let failure = if failure.phase.is_none() {
            failure.phase(self.phase_name())
        } else {
            failure
        };
        super::failure::record(&mut self.cp.failures, failure);
    }

    /// Queue an audit event for the next commit.
    pub(super) fn audit(
        &mut self,
        actor: &str,
        action: &str,
        reason: impl Into<String>,
        before: State,
    ) {
        let reason = reason.into();
        tracing::info!(rollout = %self.spec.name, %actor, %action, before = %before, after = %self.cp.state, "{reason}");
        self.events.push(AuditEvent {
            at_ms: self.now(),
            actor: actor.to_string(),
            action: action.to_string(),
            reason,
            state_before: before.name(),
            state_after: self.cp.state.name(),
            progress: progress_counts(&self.spec, &self.cp),
        });
    }

    /// Whether this run may still commit or deliver under its lease (always, without
    /// one): not lost, not past its local deadline. `doing` says what it was about to do,
    /// for the log line that says it did not.
    pub(super) fn hold_lease(&self, doing: &str) -> Result<(), EngineError> {
        match self.lease.as_ref().map(|l| l.check()) {
            None | Some(Ok(())) => Ok(()),
            Some(Err(why)) => Err(self.stopped(why, doing)),
        }
    }

    /// A safe point (waiting, or before a step's intent): a driver asked to stop — its
    /// lease given up, lost or lapsed — stops here.
    pub(super) fn safe_point(&self) -> Result<(), EngineError> {
        match self.lease.as_ref().and_then(|l| l.stop_requested()) {
            None => self.hold_lease("stopped driving it"),
            Some(why) => Err(self.stopped(why, "stopped driving it")),
        }
    }

    /// The error that stops this driver, logged: why, and what it did not do.
    pub(super) fn stopped(&self, why: Stop, doing: &str) -> EngineError {
        let (name, run) = (&self.spec.name, self.run);
        let epoch = self.epoch.unwrap_or_default();
        match why {
            Stop::Expired { at_ms } => tracing::warn!(
                "lease on {name} run {run} (epoch {epoch}) expired locally at {}: {doing}",
                utc_text_ms(at_ms)
            ),
            Stop::Lost => tracing::warn!(
                "lost the lease on {name} run {run} (epoch {epoch}): another runner holds it; \
                 {doing}"
            ),
            Stop::Fenced { holder } => tracing::warn!(
                "the store refused a write of {name} run {run} under lease epoch {epoch}: \
                 another runner holds it under epoch {holder}; {doing}"
            ),
            Stop::Halted => tracing::warn!(
                "stopped driving {name} run {run} (epoch {epoch}) before a safe point: this \
                 runner is stopping; {doing}"
            ),
            Stop::Released => tracing::info!(
                "gave up the lease on {name} run {run} (epoch {epoch}) at a safe point: \
                 another runner may take it over"
            ),
        }
        EngineError::Stopped {
            rollout: name.clone(),
            run,
            epoch,
            why,
        }
    }

    /// A store error of this run's write: a fenced one stops the driver (another runner
    /// holds the run), the rest stay store errors.
    pub(super) fn store_failed(&self, e: StoreError) -> EngineError {
        match e {
            StoreError::Fenced { holder, .. } => self.stopped(
                Stop::Fenced { holder },
                "stopped driving it, nothing written",
            ),
            e => EngineError::Store(e),
        }
    }

    /// Commit the checkpoint with the queued events and measurements — and, when this run
    /// ended by starting its reversal, that run, in the same transaction. Under a lease,
    /// only while it holds ([`Run::hold_lease`]); a fenced commit stops the driver.
    pub(super) async fn commit(
        &mut self,
        intents: &[(String, String)],
        consumed: &[i64],
    ) -> Result<(), EngineError> {
        self.hold_lease("not committing")?;
        let cp_json = checkpoint_json(&self.spec.name, &self.cp)?;
        let spec_json = if self.spec_changed {
            Some(
                serde_json::to_string(&self.spec).map_err(|e| EngineError::Corrupt {
                    rollout: self.spec.name.clone(),
                    message: format!("cannot serialise the spec: {e}"),
                })?,
            )
        } else {
            None
        };
        let events = std::mem::take(&mut self.events);
        let measurements = std::mem::take(&mut self.measurements);
        let state = self.cp.state.name();
        let progress = (self.engine.sink.is_some() || self.engine.outbox.is_some())
            .then(|| progress_of(&self.spec, self.run, &self.cp));
        let outbox = match (&self.engine.outbox, &progress) {
            (Some(render), Some(progress)) if !events.is_empty() => render(&Committed {
                id: self.id,
                progress,
                events: &events,
                measurements: &measurements,
            }),
            _ => Vec::new(),
        };
        let commit = Commit {
            epoch: self.epoch,
            checkpoint: &cp_json,
            state: &state,
            finished: self.cp.state.is_final(),
            events: &events,
            measurements: &measurements,
            step_intents: intents,
            consumed_actions: consumed,
            spec: spec_json.as_deref(),
            outbox: &outbox,
        };
        let store = &self.engine.store;
        self.generation = match self.successor.take() {
            // Boxed, here and below: the store's futures (each dialect's) would otherwise
            // be part of every run driver's state for the run's whole life.
            None => Box::pin(store.commit(self.id, self.generation, commit, self.now()))
                .await
                .map_err(|e| self.store_failed(e))?,
            Some(next) => {
                let spec = serde_json::to_string(&next.spec).map_err(|e| EngineError::Corrupt {
                    rollout: self.spec.name.clone(),
                    message: format!("cannot serialise the reversal's spec: {e}"),
                })?;
                let checkpoint = checkpoint_json(&self.spec.name, &next.checkpoint)?;
                let row = NewRow {
                    name: &self.spec.name,
                    spec: &spec,
                    checkpoint: &checkpoint,
                    state: &next.checkpoint.state.name(),
                    event: &next.event,
                    after: self.run,
                };
                let (generation, created) = Box::pin(store.commit_with_successor(
                    self.id,
                    self.generation,
                    commit,
                    row,
                    self.now(),
                ))
                .await
                .map_err(|e| self.store_failed(e))?;
                tracing::info!(rollout = %self.spec.name, run = created.run, reverses = self.run, "reversal created");
                self.next = Some(created.id);
                generation
            }
        };
        self.spec_changed = false;
        if let (Some(sink), Some(progress)) = (&self.engine.sink, &progress) {
            sink(&Committed {
                id: self.id,
                progress,
                events: &events,
                measurements: &measurements,
            });
            if let Some(observer) = &self.engine.observer {
                observer(progress);
            }
        } else {
            self.notify();
        }
        Ok(())
    }

    pub(super) fn notify(&self) {
        if let Some(observer) = &self.engine.observer {
            observer(&progress_of(&self.spec, self.run, &self.cp));
        }
    }

    pub(super) fn outcome(&self) -> Outcome {
        Outcome {
            id: self.id,
            rollout: self.spec.name.clone(),
            state: self.cp.state,
            message: self.cp.message.clone(),
            reverses: self.cp.reverses,
        }
    }

    pub(super) fn finish(&mut self, state: State, message: String) {
        self.stop_verification(&format!("the rollout ended: {}", state.name()));
        let now = self.now();
        let changes = match self.cp.background.as_mut() {
            Some(b) if state == State::Succeeded => b.finish(now),
            Some(b) => b.stop(now, &format!("the rollout ended: {}", state.name())),
            None => Vec::new(),
        };
        self.audit_changes(&changes);
        self.cp.state = state;
        self.cp.finished_ms = Some(now);
        self.cp.wake_ms = None;
        self.cp.message = message;
    }
}

/// A spec or plugin duration as clock milliseconds, saturating (a duration of ~u64::MAX
/// means "never", not a time in the past).
pub(super) fn ms_i64(ms: u64) -> i64 {
    i64::try_from(ms).unwrap_or(i64::MAX)
}

/// `90000` → `1m30s`.
pub fn human_ms(ms: u64) -> String {
    if ms < 1_000 {
        return format!("{ms}ms");
    }
    let s = ms / 1_000;
    let (h, m, s) = (s / 3600, (s % 3600) / 60, s % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if s > 0 || out.is_empty() {
        out.push_str(&format!("{s}s"));
    }
    out
}
