//! Rollout by rollout: the `invalid-spec` records of a configuration (invalid rollouts,
//! held runs) and the events they cause, how a rollout looks with its record
//! ([`overlay`]), and where a resumed run re-reads its rollout's documents ([`Reread`]).

use super::{Event, Fleet, Inner, Loaded, SERVE_ACTOR, fingerprint, views};
use crate::engine::Progress;
use crate::engine::clock::now_ms;
use crate::store::InvalidSpec;
use std::collections::BTreeMap;
use std::sync::Arc;

/// What a rollout looks like given its latest run's progress and its `invalid-spec` record
/// (see [`views::Snapshot::invalid`]): a run in progress that is not held keeps its state.
pub(super) fn overlay(progress: Option<Progress>, invalid: Option<&InvalidSpec>) -> Progress {
    match (progress, invalid) {
        (Some(p), None) => p,
        (None, Some(i)) => views::invalid_progress(i, None),
        (Some(p), Some(i)) => {
            let finished = matches!(
                p.state.as_str(),
                "succeeded" | "rolled-back" | "aborted" | "failed"
            );
            if finished || i.held_run.is_some() {
                views::invalid_progress(i, Some(p))
            } else {
                p
            }
        }
        (None, None) => views::invalid_progress(
            &InvalidSpec {
                name: String::new(),
                problems: Vec::new(),
                since_ms: 0,
                held_run: None,
            },
            None,
        ),
    }
}

/// Where a run of `rollgate serve` re-reads its rollout's documents on a resume: the folder
/// is loaded again if it changed, and the running configuration answers.
pub(super) struct Reread(pub(super) std::sync::Weak<Inner>);

impl crate::engine::Reconfigure for Reread {
    fn reread<'a>(
        &'a self,
        rollout: &'a str,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = crate::engine::Reread> + Send + 'a>>
    {
        Box::pin(async move {
            use crate::engine::{Current, Reread as R};
            let Some(inner) = self.0.upgrade() else {
                return R::Keep("the server is stopping".into());
            };
            let fleet = Fleet { inner };
            let changed = fleet
                .current()
                .is_none_or(|l| l.fingerprint != fingerprint(&fleet.inner.config.config));
            if changed && let Err(refused) = fleet.reload().await {
                return R::Refuse(refused.0);
            }
            let Some(loaded) = fleet.current() else {
                return R::Keep("the server has no configuration yet".into());
            };
            if let Some(problems) = loaded.invalid.get(rollout) {
                return R::Refuse(problems.clone());
            }
            match loaded.bundle.rollouts.iter().find(|r| r.name == rollout) {
                Some(spec) => R::Adopt(Box::new(Current {
                    spec: spec.clone(),
                    plugins: loaded.engine.plugins.clone(),
                    metrics: loaded.engine.metrics.clone(),
                    generation: loaded.engine.config_generation,
                })),
                None => R::Keep(format!(
                    "rollout {rollout:?} is no longer in the configuration folder"
                )),
            }
        })
    }
}

impl Fleet {
    /// Make the store's `invalid-spec` records what this configuration found (invalid
    /// rollouts, held runs), and tell the event stream and webhooks of each rollout that
    /// turned `invalid-spec` (or whose problems changed) and of each that loads again.
    pub(super) async fn record_invalid(&self, loaded: &Loaded) -> Result<(), String> {
        let store = &self.inner.store;
        let err = |e: crate::store::StoreError| e.to_string();
        let now = now_ms();
        let mut wanted: BTreeMap<String, (Vec<String>, Option<i64>)> = loaded
            .invalid
            .iter()
            .map(|(name, problems)| (name.clone(), (problems.clone(), None)))
            .collect();
        for (id, (name, problems)) in &loaded.held {
            let entry = wanted.entry(name.clone()).or_default();
            for p in problems {
                if !entry.0.contains(p) {
                    entry.0.push(p.clone());
                }
            }
            entry.1 = Some(*id);
        }
        let before: BTreeMap<String, InvalidSpec> = store
            .invalid_specs()
            .await
            .map_err(err)?
            .into_iter()
            .map(|i| (i.name.clone(), i))
            .collect();
        for (name, (problems, held)) in &wanted {
            store
                .set_invalid(name, problems, *held, now)
                .await
                .map_err(err)?;
        }
        for name in before.keys().filter(|n| !wanted.contains_key(*n)) {
            store.clear_invalid(name).await.map_err(err)?;
        }
        let after: BTreeMap<String, InvalidSpec> = store
            .invalid_specs()
            .await
            .map_err(err)?
            .into_iter()
            .map(|i| (i.name.clone(), i))
            .collect();
        *self.inner.invalid.lock().unwrap_or_else(|e| e.into_inner()) = after.clone();
        // The status says what the store says, once it says it.
        {
            let mut status = self.inner.status.lock().unwrap_or_else(|e| e.into_inner());
            status.invalid = after
                .iter()
                .map(|(name, i)| (name.clone(), i.problems.clone()))
                .collect();
            status.problems = loaded.problems.clone();
        }
        let known = |name: &str| {
            self.inner
                .known
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(name)
                .map(|k| k.progress.clone())
        };
        let webhooks = self.inner.config.global_webhooks.clone();
        let mut queued: Vec<(String, String)> = Vec::new();
        for (name, invalid) in &after {
            let old = before.get(name);
            if old.is_some_and(|o| o.problems == invalid.problems && o.held_run == invalid.held_run)
            {
                continue;
            }
            let progress = known(name);
            let state_before = match (old, &progress) {
                (Some(_), _) => views::INVALID_SPEC.to_string(),
                (None, Some(p)) => p.state.clone(),
                (None, None) => String::new(),
            };
            let shown = overlay(progress.clone(), Some(invalid));
            self.tell(
                &mut queued,
                Event {
                    seq: 0,
                    rollout: name.clone(),
                    run: shown.run,
                    at_ms: now,
                    actor: SERVE_ACTOR.to_string(),
                    action: views::INVALID_SPEC.to_string(),
                    kind: "state",
                    reason: invalid.problems.join("; "),
                    state_before,
                    state_after: shown.state.clone(),
                    phase: shown.phase_name.clone(),
                    weight: shown.weight,
                    progress: Arc::new(shown),
                },
                &webhooks,
            );
        }
        for name in before.keys().filter(|n| !after.contains_key(*n)) {
            let progress = known(name);
            self.tell(
                &mut queued,
                Event {
                    seq: 0,
                    rollout: name.clone(),
                    run: progress.as_ref().map_or(0, |p| p.run),
                    at_ms: now,
                    actor: SERVE_ACTOR.to_string(),
                    action: "spec-valid".to_string(),
                    kind: "state",
                    reason: format!(
                        "the documents of rollout {name:?} load again (configuration generation {})",
                        loaded.engine.config_generation
                    ),
                    state_before: views::INVALID_SPEC.to_string(),
                    state_after: progress
                        .as_ref()
                        .map_or_else(|| "pending".to_string(), |p| p.state.clone()),
                    phase: progress
                        .as_ref()
                        .map(|p| p.phase_name.clone())
                        .unwrap_or_default(),
                    weight: progress.as_ref().map_or(0.0, |p| p.weight),
                    progress: Arc::new(overlay(progress.clone(), None)),
                },
                &webhooks,
            );
        }
        // Not audit events: queued on their own, after the records they tell of.
        store.enqueue(None, &queued).await.map_err(err)?;
        if !queued.is_empty() {
            self.inner
                .notifier
                .wake(webhooks.iter().map(|w| w.url.as_str()));
        }
        Ok(())
    }

    /// Stream `event` and add its webhook notifications to `queued`.
    fn tell(
        &self,
        queued: &mut Vec<(String, String)>,
        event: Event,
        webhooks: &[crate::spec::model::NotificationSpec],
    ) {
        queued.extend(super::events::webhook_bodies(&event, webhooks));
        self.inner.emit(event);
    }
}
