//! The rollout engine: runs a [`RolloutSpec`] phase by phase — gates, steps, readiness,
//! verification, the failure policy's decision, pauses — and survives a crash anywhere.
//!
//! How it stays correct across crashes: every unit of work ends in one store commit of the
//! whole [`Checkpoint`] plus the audit events it caused. A target step is *intended* in a
//! commit before it is applied, and marked applied after; a runner that starts on an
//! unfinished rollout re-delivers only a step whose completion was never recorded, with the
//! same step id, so an idempotent target applies it once. Audit events are written in the
//! same transaction as the state they describe, so none is lost and their order is the
//! order of the transitions.
//!
//! The engine decides nothing about verdicts itself: [`crate::verify`] counts, the failure
//! policy plugin decides, the engine applies the decision. It knows nothing of HTTP or the
//! command line except through [`crate::deliver`] and the HTTP gates of [`gate`].
//!
//! # Where things are
//!
//! This file holds the public face: [`Engine`] (create a run, drive it), [`Outcome`],
//! [`EngineError`], [`Plugins`], creating and retrying runs ([`create_run`],
//! [`create_run_after`], [`NewRun`],
//! [`retry_run`]) and the `Run` being driven. `Run`'s methods are split by concern:
//!
//! | file | what it holds |
//! |---|---|
//! | `phase.rs` | the phase loop (`drive`), each stage of a phase, confirm gates |
//! | `steps.rs` | applying target steps: intent, delivery, re-delivery after a crash, failures, checkpointed delays |
//! | `deadlines.rs` | the progress deadline, readiness of an applied step |
//! | `verification.rs` | verification runs and taking a measurement ([`measure_metric`]) |
//! | `decision.rs` | asking the failure policy and applying its decision |
//! | `actions.rs` | operator actions ([`Action`], [`check_request`]) and how a run applies them |
//! | `pause.rs` | pausing, resuming, waiting a pause out |
//! | `adopt.rs` | a resumed run adopting the rollout's current documents ([`Reconfigure`]); the configuration generation a run is driven with |
//! | `rollback.rs` | starting a rollback, its steps (immediate and gradual), the reversal a `new-rollout` rollback starts, rollback gates |
//! | `waiting.rs` | waiting for a time or an event; [`Wakers`] |
//! | `progress.rs` | progress views ([`Progress`], [`progress_of`]) and commit notifications ([`Sink`]) |
//! | `run.rs` | a run's bookkeeping: audit queue, commit, finishing; [`human_ms`] |
//!
//! And the public submodules: [`clock`] (real and simulated time), [`dry`] (dry runs and
//! `rollgate verify`), [`failure`] (structured failures, recorded in the checkpoint where
//! the engine meets them), [`gate`] (asking HTTP gates), [`plan`] (which steps a phase or
//! a rollback takes), [`reversal`] (runs that take back what another run rolled out: a
//! rollback after success, mode `new-rollout`), [`setup`] (checking a spec's plugins and backends before a run),
//! [`prepare`] (the same, rollout by rollout: what cannot be set up costs only its rollouts),
//! [`state`] (the checkpoint and its states).

pub mod clock;
pub mod dry;
pub mod failure;
pub mod gate;
pub mod lease;
pub mod plan;
pub mod prepare;
pub mod reversal;
pub mod runner;
pub mod setup;
pub mod state;

mod actions;
mod adopt;
mod deadlines;
mod decision;
#[cfg(test)]
mod future_sizes;
mod pause;
mod phase;
mod progress;
mod rollback;
mod run;
#[cfg(test)]
mod shared_tests;
mod steps;
mod verification;
mod waiting;

pub use actions::{
    Action, MAX_ACTOR_CHARS, MAX_REASON_CHARS, Permit, RunFacts, check_request, permit, permit_row,
};
pub use adopt::{Current, Reconfigure, Reread};
pub use progress::{
    Committed, MetricProgress, Observer, Outbox, PhaseProgress, Progress, Sink, TargetProgress,
    TargetUnit, progress_of, target_progress,
};
pub use run::human_ms;
pub use verification::measure_metric;
pub use waiting::Wakers;

use crate::deliver::Target;
use crate::metrics::MetricsSource;
use crate::plugin::Plugin;
use crate::spec::model::RolloutSpec;
use crate::store::{AuditEvent, MeasurementRow, Store, StoreError};
use clock::Clock;
use progress::progress_counts;
use state::{Checkpoint, State};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tracing::Instrument;
use waiting::{Registered, Wake};

/// The actor named in audit events the engine causes by itself.
pub const ENGINE_ACTOR: &str = "rollgate";

/// Errors that stop the engine from driving a rollout (a rollout's own failures are
/// states, not errors).
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The store failed; the rollout resumes from its last checkpoint next time.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// The stored checkpoint or spec cannot be read back.
    #[error("rollout {rollout}: {message}")]
    Corrupt {
        /// The rollout.
        rollout: String,
        /// What is wrong.
        message: String,
    },
    /// This runner stopped driving the run: its lease was lost, lapsed on the local clock,
    /// was given up, or the store fenced a commit. Nothing was committed or delivered
    /// after that; the run's holder goes on from the last checkpoint. Not the run's
    /// failure.
    #[error("{rollout} run {run} (lease epoch {epoch}): this runner stopped driving it: {why}")]
    Stopped {
        /// The rollout.
        rollout: String,
        /// The run.
        run: i64,
        /// The epoch this runner held.
        epoch: i64,
        /// Why.
        why: lease::Stop,
    },
    /// Another runner holds the run's lease: this runner does not drive it.
    #[error("{rollout}: {message}")]
    NotHeld {
        /// The rollout.
        rollout: String,
        /// Who holds it and what to do.
        message: String,
    },
    /// A referenced plugin or target is not available.
    #[error("rollout {rollout}: {message}")]
    Setup {
        /// The rollout.
        rollout: String,
        /// What is missing.
        message: String,
    },
}

/// The loaded plugins, by the name metrics and rollouts use.
#[derive(Clone, Default)]
pub struct Plugins {
    map: HashMap<String, Plugin>,
}

impl Plugins {
    /// An empty set.
    pub fn new() -> Plugins {
        Plugins::default()
    }
    /// Add a plugin under `name`.
    pub fn insert(&mut self, name: impl Into<String>, plugin: Plugin) {
        self.map.insert(name.into(), plugin);
    }
    /// A plugin by name.
    pub fn get(&self, name: &str) -> Option<&Plugin> {
        self.map.get(name)
    }
}

/// What the engine needs to drive rollouts: shared by every rollout of a runner.
#[derive(Clone)]
pub struct Engine {
    /// Where checkpoints and the audit log live.
    pub store: Store,
    /// Where time comes from.
    pub clock: Arc<dyn Clock>,
    /// Verification providers and failure policies, by name.
    pub plugins: Arc<Plugins>,
    /// The metric backends plugins may query.
    pub metrics: Arc<dyn MetricsSource>,
    /// For HTTP gates.
    pub http: reqwest::Client,
    /// Live progress, if anyone listens.
    pub observer: Option<Observer>,
    /// How often a waiting rollout looks for operator actions (real clock only).
    pub action_poll: Duration,
    /// Told of every commit (server mode).
    pub sink: Option<Sink>,
    /// Renders each commit's webhook notifications, queued with the commit (server mode);
    /// `None`: no webhooks.
    pub outbox: Option<Outbox>,
    /// Wake-ups for operator actions (server mode); `None`: poll every `action_poll`.
    pub wakers: Option<Arc<Wakers>>,
    /// The configuration generation these plugins and backends come from (see
    /// [`crate::store::Store::configuration`]; 0: not numbered).
    pub config_generation: i64,
    /// Where a resumed run re-reads its rollout's documents ([`adopt`]); `None`: a resume
    /// keeps the run's configuration.
    pub reconfigure: Option<Arc<dyn Reconfigure>>,
    /// The runner ([`runner::Runner::id`]) whose runs these are: [`Engine::drive`] records
    /// it on the run (and takes it off when the drive gives up with an error). `None`:
    /// nothing is recorded (replays, tests).
    pub runner: Option<i64>,
    /// The runner's leases ([`lease::Leases`]): [`Engine::drive`] drives a run only under
    /// its lease (the one the runner's lease manager claimed, or one it claims then), and
    /// every commit and delivery carries its epoch and checks its local deadline. `None`:
    /// no lease (replays, tests, a store only this process uses).
    pub leases: Option<Arc<lease::Leases>>,
    /// The loaded configuration's rollout specs, shared with the runs whose stored spec
    /// is the same (server mode); empty: every run keeps its own copy.
    pub specs: Arc<SharedSpecs>,
}

/// The loaded configuration's rollout specs by name. A server drives a run from the spec
/// stored with it, which is almost always its rollout's spec as loaded: the driver then
/// keeps the loaded one (compared field by field after parsing the stored text) instead
/// of a second copy, for as long as the run is driven — a few KB a run.
#[derive(Debug, Default)]
pub struct SharedSpecs(HashMap<String, Arc<RolloutSpec>>);

impl SharedSpecs {
    /// The specs of a loaded configuration.
    pub fn new(specs: &[Arc<RolloutSpec>]) -> SharedSpecs {
        SharedSpecs(specs.iter().map(|s| (s.name.clone(), s.clone())).collect())
    }

    /// `spec` as an `Arc`: the loaded one when it is the same, else its own.
    pub fn share(&self, spec: RolloutSpec) -> Arc<RolloutSpec> {
        match self.0.get(&spec.name) {
            Some(loaded) if **loaded == spec => loaded.clone(),
            _ => Arc::new(spec),
        }
    }
}

/// A checkpoint read from the store carries a copy of each metric's spec in its
/// verification runs: keep the run's spec's own instead when it is the same (and one copy
/// of a last observation that is also the last measurement).
fn share_metric_specs(cp: &mut Checkpoint, spec: &RolloutSpec) {
    let specs: Vec<&Arc<crate::spec::model::MetricSpec>> = spec
        .phases
        .iter()
        .flat_map(|p| &p.metrics)
        .chain(spec.background.iter().flat_map(|b| &b.metrics))
        .collect();
    let runs = cp.verification.iter_mut().chain(cp.background.iter_mut());
    for metric in runs.flat_map(|v| v.metrics.iter_mut()) {
        if let Some(same) = specs.iter().find(|s| s.as_ref() == metric.spec.as_ref()) {
            metric.spec = Arc::clone(same);
        }
        // The last observation is most often the last measurement too: one copy.
        if let (Some(last), Some(measured)) = (&metric.last, &metric.last_measured)
            && last == measured
        {
            metric.last = Some(measured.clone());
        }
    }
}

/// The outcome of driving a rollout.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// The store's id of the run.
    pub id: i64,
    /// The rollout's name.
    pub rollout: String,
    /// The state it ended in (a paused state when a simulated run waits for an operator).
    pub state: State,
    /// The last message.
    pub message: String,
    /// The run this run reverses ([`reversal`]), if it is a reversal.
    pub reverses: Option<i64>,
}

impl Engine {
    /// An engine for a process that drives its runs alone on `store`: no server parts (no
    /// observer, sink, outbox, wake-ups or reconfiguration), no runner recorded, no leases.
    /// Callers that need any of them set those fields over this one.
    pub fn alone(
        store: Store,
        clock: Arc<dyn Clock>,
        plugins: Plugins,
        metrics: Arc<dyn MetricsSource>,
        action_poll: Duration,
    ) -> Engine {
        Engine {
            store,
            clock,
            plugins: Arc::new(plugins),
            metrics,
            http: reqwest::Client::new(),
            observer: None,
            action_poll,
            sink: None,
            outbox: None,
            wakers: None,
            config_generation: 0,
            reconfigure: None,
            runner: None,
            leases: None,
            specs: Arc::default(),
        }
    }

    /// Record a new run of `spec` (state pending, audited as `create` by `actor`); its id.
    pub async fn create(
        &self,
        spec: &RolloutSpec,
        actor: &str,
        reason: &str,
    ) -> Result<i64, EngineError> {
        let new = NewRun {
            actor,
            action: "create",
            reason,
            state_before: "",
        };
        Ok(create_run(&self.store, spec, self.clock.now_ms(), new)
            .await?
            .id)
    }

    /// Drive the run `id` until it reaches a final state (or, on a simulated clock, until
    /// it waits for an operator with nothing else scheduled). A run that ends by starting
    /// its reversal (a rollback in mode `new-rollout`) goes on into that run: the outcome
    /// is the last run's. With wake-ups (server mode), the reversal is only driven here if
    /// no other task claimed it first.
    ///
    /// With leases, a run is driven only under its lease: the one held, else one claimed
    /// now; another runner holding it is [`EngineError::NotHeld`] (for a reversal this
    /// run goes on into: that runner drives it, and the outcome is this run's).
    pub async fn drive(&self, id: i64) -> Result<Outcome, EngineError> {
        let mut id = id;
        let mut last: Option<Outcome> = None;
        loop {
            let (outcome, next) = match (self.drive_one(id).await, last.take()) {
                (Err(EngineError::NotHeld { .. }), Some(previous)) => return Ok(previous),
                (result, _) => result?,
            };
            match next {
                Some(next) if self.wakers.as_ref().is_none_or(|w| w.claim(next)) => {
                    id = next;
                    last = Some(outcome);
                }
                _ => return Ok(outcome),
            }
        }
    }

    /// Drive one run; its outcome, and the run it created to reverse itself, if any.
    async fn drive_one(&self, id: i64) -> Result<(Outcome, Option<i64>), EngineError> {
        // Registered first, so the claim is released however this ends.
        let wake = self.wakers.as_ref().map(|w| w.register(id));
        let _registered = self
            .wakers
            .as_deref()
            .map(|wakers| Registered { wakers, id });
        // The store's and the lease's futures are boxed: a run's driver lives as long as the
        // run, and would otherwise be as large as the largest of them for all that time.
        let row = Box::pin(self.store.get(id))
            .await?
            .ok_or_else(|| EngineError::Corrupt {
                rollout: format!("#{id}"),
                message: "no such rollout in the store".into(),
            })?;
        let spec: RolloutSpec =
            serde_json::from_str(&row.spec).map_err(|e| EngineError::Corrupt {
                rollout: row.name.clone(),
                message: format!("the stored spec cannot be read: {e}"),
            })?;
        let cp: Checkpoint =
            serde_json::from_str(&row.checkpoint).map_err(|e| EngineError::Corrupt {
                rollout: row.name.clone(),
                message: format!("the stored checkpoint cannot be read: {e}"),
            })?;
        let base = spec
            .file
            .parent()
            .map(std::path::Path::to_path_buf)
            .unwrap_or_default();
        let target =
            crate::deliver::build(&spec.target, &base).map_err(|message| EngineError::Setup {
                rollout: spec.name.clone(),
                message,
            })?;
        // Into its `Run` before any further wait: spec and checkpoint are then kept once
        // in the driver's state, not also as locals alive across the lease's claim.
        let mut run = Run {
            lease: None,
            plugins: self.plugins.clone(),
            metrics: self.metrics.clone(),
            spec_changed: false,
            engine: self,
            wake,
            id,
            run: row.run,
            generation: row.generation,
            epoch: None,
            spec: self.specs.share(spec),
            cp,
            target,
            events: Vec::new(),
            measurements: Vec::new(),
            next_rollback_gate: HashMap::new(),
            successor: None,
            next: None,
        };
        // On the run's own fields: a local borrowed here would stay in the driver's state.
        share_metric_specs(&mut run.cp, &run.spec);
        let lease = match &self.leases {
            Some(leases) => match Box::pin(leases.acquire(id)).await? {
                Some(lease) => Some(lease),
                None => return Err(Box::pin(self.not_held(&row)).await),
            },
            None => None,
        };
        if let Some(lease) = &lease {
            lease.set_label(&row.name, row.run);
        }
        run.epoch = lease.as_ref().map(|l| l.epoch());
        run.lease = lease.clone();
        // The row's text (the spec and checkpoint as read) is not needed while the run is
        // driven, which may be for days.
        drop(row);
        let span = tracing::info_span!("rollout", rollout = %run.spec.name, run = run.run);
        let outcome = run.drive().instrument(span).await;
        Box::pin(self.ended(id, lease.as_ref(), &outcome)).await;
        Ok((outcome?, run.next))
    }

    /// After a drive: a run that ended, or that this runner gave up, frees its lease at
    /// once; a lost or lapsed one is only forgotten (another runner holds it, or will);
    /// a drive that failed otherwise takes the runner off the run.
    async fn ended(
        &self,
        id: i64,
        lease: Option<&Arc<lease::RunLease>>,
        outcome: &Result<Outcome, EngineError>,
    ) {
        if let (Some(leases), Some(lease)) = (&self.leases, lease) {
            let release = match outcome {
                Ok(o) => o.state.is_final(),
                Err(EngineError::Stopped { why, .. }) => *why == lease::Stop::Released,
                Err(_) => false,
            };
            if release {
                if let Err(e) = leases.release(lease).await {
                    tracing::warn!(
                        run = id,
                        "cannot free this runner's lease on {}: {e}; it expires by itself",
                        lease.label()
                    );
                }
            } else {
                leases.forget(lease);
            }
        }
        let gave_up = matches!(
            outcome,
            Err(e) if !matches!(e, EngineError::Stopped { .. } | EngineError::NotHeld { .. })
        );
        if gave_up
            && let Some(runner) = self.runner
            && let Err(e) = self.store.release_run(id, runner).await
        {
            tracing::warn!(
                run = id,
                "cannot record that this runner gave up the run: {e}"
            );
        }
    }

    /// [`EngineError::NotHeld`] for `row`: who holds it, as the store says.
    async fn not_held(&self, row: &crate::store::RolloutRow) -> EngineError {
        let holder = match self.store.runner_of(row.id).await {
            Ok(Some(r)) => format!(
                "`rollgate {}` on {} (pid {}, runner {})",
                r.command, r.host, r.pid, r.id
            ),
            _ => "another runner".to_string(),
        };
        EngineError::NotHeld {
            rollout: row.name.clone(),
            message: format!(
                "run {} is driven by {holder}, which holds its lease; stop that runner (its \
                 runs are free at once) or wait until its lease expires",
                row.run
            ),
        }
    }
}

fn checkpoint_json(rollout: &str, cp: &Checkpoint) -> Result<String, EngineError> {
    serde_json::to_string(cp).map_err(|e| EngineError::Corrupt {
        rollout: rollout.to_string(),
        message: format!("cannot serialise the checkpoint: {e}"),
    })
}

/// One rollout being driven.
struct Run<'e> {
    engine: &'e Engine,
    /// The lease this run is driven under (with leases): checked before every commit
    /// and delivery.
    lease: Option<Arc<lease::RunLease>>,
    /// The plugins this run measures and decides with: the engine's, or those of a newer
    /// configuration the run adopted on a resume.
    plugins: Arc<Plugins>,
    /// The backends, likewise.
    metrics: Arc<dyn MetricsSource>,
    /// The spec changed (adopted on a resume): the next commit stores it.
    spec_changed: bool,
    /// This run's wake-up, in server mode.
    wake: Option<Arc<Wake>>,
    id: i64,
    run: i64,
    generation: i64,
    /// The lease epoch this runner holds on the run: every commit and step outcome names
    /// it, so a runner whose lease was taken writes nothing. `None` without a runner.
    epoch: Option<i64>,
    /// The run's spec: shared with the loaded configuration's when they are the same
    /// (see [`SharedSpecs`]), so a server holding many runs keeps one copy of each.
    spec: Arc<RolloutSpec>,
    cp: Checkpoint,
    target: Arc<dyn Target>,
    /// Audit events of the unit of work in progress, written by the next commit.
    events: Vec<AuditEvent>,
    /// Measurements of the unit of work in progress.
    measurements: Vec<MeasurementRow>,
    /// When each rollback gate (phase index, gate name) is next asked.
    next_rollback_gate: HashMap<(usize, String), i64>,
    /// The reversal this run's next commit creates (a rollback in mode `new-rollout`).
    successor: Option<Box<rollback::Successor>>,
    /// The id of the reversal this run created.
    next: Option<i64>,
}

/// Why a retry was not started.
#[derive(Debug, thiserror::Error)]
pub enum RetryError {
    /// The latest run did not roll back, abort or fail (nor was it a reversal that ended).
    #[error(
        "retry re-runs a rolled-back, aborted or failed rollout, or rolls forward again after a rollback; {rollout:?} run {run} is {state}"
    )]
    NotEnded {
        /// The rollout.
        rollout: String,
        /// Its latest run.
        run: i64,
        /// That run's state.
        state: String,
    },
    /// The stored spec cannot be read, or the store failed.
    #[error(transparent)]
    Engine(#[from] EngineError),
}

/// Start the next run of rollout `latest.name` with the spec of its latest run (`retry`),
/// audited as `retry` by `actor`; the new row and the audited reason. Only a run that rolled
/// back, aborted or failed is retried: the command line and the server share this rule.
///
/// A reversal ([`reversal`]) that ended — succeeded included — is retried by rolling
/// forward again: the new run has the spec of the run it reversed.
pub async fn retry_run(
    store: &Store,
    latest: &crate::store::RolloutRow,
    actor: &str,
    reason: &str,
    now: i64,
) -> Result<(crate::store::RolloutRow, String), RetryError> {
    let reversed = reversal::reverses(latest);
    if permit_row(Action::Retry, latest).is_err() {
        return Err(RetryError::NotEnded {
            rollout: latest.name.clone(),
            run: latest.run,
            state: latest.state.clone(),
        });
    }
    // Rolling forward again: the release the reversal took back, as that run had it.
    let (spec_json, forward) = match reversed {
        None => (latest.spec.clone(), String::new()),
        Some(n) => {
            let runs = store.runs(&latest.name).await.map_err(EngineError::from)?;
            let row =
                runs.into_iter()
                    .find(|r| r.run == n)
                    .ok_or_else(|| EngineError::Corrupt {
                        rollout: latest.name.clone(),
                        message: format!(
                            "run {} reverses run {n}, which is not in the store",
                            latest.run
                        ),
                    })?;
            (row.spec, format!("; rolls run {n}'s release forward again"))
        }
    };
    let spec: RolloutSpec = serde_json::from_str(&spec_json).map_err(|e| EngineError::Corrupt {
        rollout: latest.name.clone(),
        message: format!("the stored spec cannot be read: {e}"),
    })?;
    let reason = format!(
        "retry of run {} by {actor}{}{forward}",
        latest.run,
        if reason.is_empty() {
            String::new()
        } else {
            format!(": {reason}")
        }
    );
    let new = NewRun {
        actor,
        action: "retry",
        reason: &reason,
        state_before: &latest.state,
    };
    let row = create_run(store, &spec, now, new).await?;
    Ok((row, reason))
}

/// Who creates a run and how it is audited (`create` for a new rollout, `retry` of an ended
/// run, with that run's state as the state before).
pub struct NewRun<'a> {
    /// Who asked.
    pub actor: &'a str,
    /// The audit action.
    pub action: &'a str,
    /// Why.
    pub reason: &'a str,
    /// The state the audit shows before (empty for a new rollout).
    pub state_before: &'a str,
}

/// Store run `after + 1` of `spec` (pending, with its first checkpoint and audit event)
/// only if run `after` is still the latest (0: the rollout has no run yet):
/// [`crate::store::StoreError::RunTaken`] otherwise, nothing written — another runner
/// sharing the store created it first.
pub async fn create_run_after(
    store: &Store,
    spec: &RolloutSpec,
    now: i64,
    new: NewRun<'_>,
    after: i64,
) -> Result<crate::store::RolloutRow, EngineError> {
    let FirstRun {
        cp,
        spec_json,
        cp_json,
        event,
    } = first_run(spec, &new, now)?;
    let row = crate::store::NewRow {
        name: &spec.name,
        spec: &spec_json,
        checkpoint: &cp_json,
        state: &cp.state.name(),
        event: &event,
        after,
    };
    Ok(store.create_after(row, now).await?)
}

/// What a new run is stored with: its first checkpoint (and as JSON), its spec as JSON
/// and its first audit event.
struct FirstRun {
    cp: Checkpoint,
    spec_json: String,
    cp_json: String,
    event: AuditEvent,
}

/// [`FirstRun`] of `spec`, for [`create_run`] and [`create_run_after`].
fn first_run(spec: &RolloutSpec, new: &NewRun<'_>, now: i64) -> Result<FirstRun, EngineError> {
    let cp = Checkpoint::new(now);
    let spec_json = serde_json::to_string(spec).map_err(|e| EngineError::Corrupt {
        rollout: spec.name.clone(),
        message: format!("cannot serialise the spec: {e}"),
    })?;
    let cp_json = checkpoint_json(&spec.name, &cp)?;
    let event = first_event(spec, &cp, new, now);
    Ok(FirstRun {
        cp,
        spec_json,
        cp_json,
        event,
    })
}

/// The `create` (or `retry`) event a new run starts its audit log with.
fn first_event(spec: &RolloutSpec, cp: &Checkpoint, new: &NewRun<'_>, now: i64) -> AuditEvent {
    AuditEvent {
        at_ms: now,
        actor: new.actor.to_string(),
        action: new.action.to_string(),
        reason: new.reason.to_string(),
        state_before: new.state_before.to_string(),
        state_after: cp.state.name(),
        progress: progress_counts(spec, cp),
    }
}

/// Store a new pending run of `spec` with its first checkpoint and audit event.
pub async fn create_run(
    store: &Store,
    spec: &RolloutSpec,
    now: i64,
    new: NewRun<'_>,
) -> Result<crate::store::RolloutRow, EngineError> {
    let FirstRun {
        cp,
        spec_json,
        cp_json,
        event,
    } = first_run(spec, &new, now)?;
    let row = store
        .create_rollout(
            &spec.name,
            &spec_json,
            &cp_json,
            &cp.state.name(),
            &event,
            now,
        )
        .await?;
    Ok(row)
}
