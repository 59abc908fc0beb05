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

pub mod clock;
pub mod dry;
pub mod gate;
pub mod plan;
pub mod setup;
pub mod state;

use crate::deliver::{Operation, Readiness, Step, Target};
use crate::metrics::MetricsSource;
use crate::plugin::types::{Decision, PauseRecord, PolicyInput, RolloutContext};
use crate::plugin::{MetricsBinding, Plugin};
use crate::spec::model::{
    DeadlineAction, GateKind, MetricSpec, PauseSpec, RollbackMode, RolloutSpec, Strategy,
};
use crate::store::{AuditEvent, Commit, MeasurementRow, StepStatus, Store, StoreError};
use crate::verify::{Observation, RunOutcome, StatusChange, VerificationRun};
use clock::Clock;
use serde_json::json;
use state::{Checkpoint, PauseEntry, PauseReason, Stage, State};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tracing::Instrument;

/// The actor named in audit events the engine causes by itself.
pub const ENGINE_ACTOR: &str = "rollgate";

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
    /// Restore the stable version.
    Rollback,
    /// Re-run a rolled-back, aborted or failed rollout as a new run.
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

/// One metric's line in a progress report.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MetricProgress {
    /// The metric.
    pub name: String,
    /// Background verification rather than the phase's.
    pub background: bool,
    /// Its status (`running`, `failed`, …).
    pub status: String,
    /// Passes, failures, inconclusive, no-data, errors.
    pub counts: [u32; 5],
    /// The last value measured.
    pub last_value: Option<f64>,
    /// Why it is where it is (the reason of its last status change, with the numbers).
    pub message: String,
}

/// One phase's line in a progress report.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PhaseProgress {
    /// The phase.
    pub name: String,
    /// Its weight.
    pub weight: f64,
    /// `done`, `active` or `pending` (an ended rollout's last phase stays `active` unless
    /// it succeeded).
    pub status: String,
}

/// A snapshot for live progress displays.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Progress {
    /// The rollout.
    pub rollout: String,
    /// Its run number.
    pub run: i64,
    /// The state's name.
    pub state: String,
    /// `canary`, `rolling` or `blue-green`.
    pub strategy: String,
    /// The version running before the rollout.
    pub stable_version: String,
    /// The version being rolled out.
    pub canary_version: String,
    /// Every phase, in order.
    pub phases: Vec<PhaseProgress>,
    /// The current phase (0-based) and how many there are.
    pub phase: usize,
    /// How many phases.
    pub phase_count: usize,
    /// The phase's name.
    pub phase_name: String,
    /// The canary weight applied.
    pub weight: f64,
    /// What happened last.
    pub message: String,
    /// Every metric of the phase and the background.
    pub metrics: Vec<MetricProgress>,
}

/// Receives progress after every committed transition.
pub type Observer = Arc<dyn Fn(&Progress) + Send + Sync>;

/// One committed transition, as a [`Sink`] sees it: the progress after it and the audit
/// events and measurements it wrote, in order.
#[derive(Debug)]
pub struct Committed<'a> {
    /// The store's id of the run.
    pub id: i64,
    /// The progress after the commit.
    pub progress: &'a Progress,
    /// The audit events the commit wrote.
    pub events: &'a [AuditEvent],
    /// The measurements the commit wrote.
    pub measurements: &'a [MeasurementRow],
}

/// Told of every commit of every rollout (server mode: the event stream, webhooks and
/// `/metrics`). Called on the rollout's task after the commit landed: it must not block.
pub type Sink = Arc<dyn Fn(&Committed<'_>) + Send + Sync>;

/// Wakes waiting rollouts when an operator acts, so a server with thousands of waiting
/// rollouts does not poll the store for each of them every `action_poll`: a rollout only
/// looks for action requests after [`Wakers::wake`] (and, as a fallback for requests
/// written to the store by another process, every `action_poll`).
#[derive(Debug, Default)]
pub struct Wakers {
    map: std::sync::Mutex<HashMap<i64, Arc<Wake>>>,
}

/// One rollout's wake-up: a flag that says "look for requests" and a notification.
#[derive(Debug)]
struct Wake {
    pending: std::sync::atomic::AtomicBool,
    notify: tokio::sync::Notify,
}

impl Wakers {
    fn register(&self, id: i64) -> Arc<Wake> {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(id)
            .or_insert_with(|| {
                Arc::new(Wake {
                    // A run (re)started by a server looks once: requests may predate it.
                    pending: std::sync::atomic::AtomicBool::new(true),
                    notify: tokio::sync::Notify::new(),
                })
            })
            .clone()
    }

    fn unregister(&self, id: i64) {
        self.map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
    }

    /// Tell the run `id` that an action request waits for it. False when no task drives
    /// that run (the caller must start one).
    pub fn wake(&self, id: i64) -> bool {
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        match map.get(&id) {
            Some(w) => {
                w.pending.store(true, std::sync::atomic::Ordering::SeqCst);
                w.notify.notify_one();
                true
            }
            None => false,
        }
    }

    /// Claim the run `id` for a new driver task: false when one drives it already. The
    /// claim is released when that driver's [`Engine::drive`] ends.
    pub fn claim(&self, id: i64) -> bool {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if map.contains_key(&id) {
            return false;
        }
        map.insert(
            id,
            Arc::new(Wake {
                pending: std::sync::atomic::AtomicBool::new(true),
                notify: tokio::sync::Notify::new(),
            }),
        );
        true
    }

    /// True while a task drives the run `id`.
    pub fn is_driving(&self, id: i64) -> bool {
        self.map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(&id)
    }

    /// How many runs are being driven.
    pub fn len(&self) -> usize {
        self.map.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// True when no run is being driven.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Unregisters a run from [`Wakers`] when its driver ends, however it ends.
struct Registered<'a> {
    wakers: &'a Wakers,
    id: i64,
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        self.wakers.unregister(self.id);
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
    /// Wake-ups for operator actions (server mode); `None`: poll every `action_poll`.
    pub wakers: Option<Arc<Wakers>>,
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
}

impl Engine {
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
    /// it waits for an operator with nothing else scheduled).
    pub async fn drive(&self, id: i64) -> Result<Outcome, EngineError> {
        // Registered first, so the claim is released however this ends.
        let wake = self.wakers.as_ref().map(|w| w.register(id));
        let _registered = self
            .wakers
            .as_deref()
            .map(|wakers| Registered { wakers, id });
        let row = self
            .store
            .get(id)
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
        let mut run = Run {
            engine: self,
            wake,
            id,
            run: row.run,
            generation: row.generation,
            spec,
            cp,
            target,
            events: Vec::new(),
            measurements: Vec::new(),
            next_rollback_gate: HashMap::new(),
        };
        let span = tracing::info_span!("rollout", rollout = %run.spec.name, run = run.run);
        run.drive().instrument(span).await
    }
}

/// What a run looks like to a progress display: computed from its spec and checkpoint, so
/// the live observer of `rollgate run` and `rollgate get` on the store show the same thing.
pub fn progress_of(spec: &RolloutSpec, run: i64, cp: &Checkpoint) -> Progress {
    let mut metrics = Vec::new();
    for (verification, background) in [(&cp.verification, false), (&cp.background, true)] {
        for m in verification.iter().flat_map(|v| &v.metrics) {
            let c = &m.counters;
            metrics.push(MetricProgress {
                name: m.spec.name.clone(),
                background,
                status: m.status.name().to_string(),
                counts: [c.passes, c.failures, c.inconclusives, c.no_data, c.errors],
                last_value: m.last.as_ref().and_then(|r| r.value),
                message: m.message.clone(),
            });
        }
    }
    let succeeded = cp.state == State::Succeeded;
    let phases = spec
        .phases
        .iter()
        .enumerate()
        .map(|(i, p)| PhaseProgress {
            name: p.name.clone(),
            weight: p.weight,
            status: if succeeded || i < cp.phase {
                "done"
            } else if i == cp.phase && cp.state != State::Pending {
                "active"
            } else {
                "pending"
            }
            .to_string(),
        })
        .collect();
    Progress {
        rollout: spec.name.clone(),
        run,
        state: cp.state.name(),
        strategy: match spec.strategy {
            Strategy::Canary => "canary",
            Strategy::Rolling { .. } => "rolling",
            Strategy::BlueGreen => "blue-green",
        }
        .to_string(),
        stable_version: spec.stable_version.clone(),
        canary_version: spec.canary_version.clone(),
        phases,
        phase: cp.phase,
        phase_count: spec.phases.len(),
        phase_name: spec
            .phases
            .get(cp.phase)
            .map(|p| p.name.clone())
            .unwrap_or_default(),
        weight: cp.weight,
        message: cp.message.clone(),
        metrics,
    }
}

/// Take one measurement of `spec` with its plugin, bound to the metric's backends: what a
/// verification does each time a metric is due (the engine, and `rollgate verify`). A
/// missing plugin or a failing call is an `error` observation, never a pass.
pub async fn measure_metric(
    plugins: &Plugins,
    metrics: Arc<dyn MetricsSource>,
    spec: &MetricSpec,
    context: &RolloutContext,
) -> Observation {
    let Some(plugin) = plugins.get(&spec.plugin) else {
        return Observation::Error(format!("plugin {:?} is not loaded", spec.plugin));
    };
    let binding = MetricsBinding::new(metrics, spec.backend.iter().cloned());
    match plugin
        .measure(&spec.config.to_string(), context, Some(binding))
        .await
    {
        Ok(m) => Observation::Measured(m),
        Err(e) => Observation::Error(e.to_string()),
    }
}

fn checkpoint_json(rollout: &str, cp: &Checkpoint) -> Result<String, EngineError> {
    serde_json::to_string(cp).map_err(|e| EngineError::Corrupt {
        rollout: rollout.to_string(),
        message: format!("cannot serialise the checkpoint: {e}"),
    })
}

/// The target progress counts every audit event carries.
fn progress_counts(spec: &RolloutSpec, cp: &Checkpoint) -> serde_json::Value {
    let phase = spec
        .phases
        .get(cp.phase)
        .map(|p| p.name.as_str())
        .unwrap_or("");
    match &spec.strategy {
        Strategy::Rolling { instances, .. } => {
            let total = instances.len() as u32;
            json!({
                "phase": phase, "phaseIndex": cp.phase, "weight": cp.weight,
                "updated": cp.updated, "pending": total.saturating_sub(cp.updated), "total": total,
            })
        }
        _ => {
            json!({"phase": phase, "phaseIndex": cp.phase, "weight": cp.weight, "preview": cp.preview})
        }
    }
}

/// Which verification run a measurement belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Which {
    Phase,
    Background,
}

/// What a wait ended with.
enum Woke {
    /// The time came.
    Time,
    /// Something else needs attention (an operator action, a decision changed the state).
    Interrupted,
    /// Simulated clock, nothing scheduled: only an operator could move this rollout.
    Stuck,
}

/// One rollout being driven.
struct Run<'e> {
    engine: &'e Engine,
    /// This run's wake-up, in server mode.
    wake: Option<Arc<Wake>>,
    id: i64,
    run: i64,
    generation: i64,
    spec: RolloutSpec,
    cp: Checkpoint,
    target: Arc<dyn Target>,
    /// Audit events of the unit of work in progress, written by the next commit.
    events: Vec<AuditEvent>,
    /// Measurements of the unit of work in progress.
    measurements: Vec<MeasurementRow>,
    /// When each rollback gate (phase index, gate name) is next asked.
    next_rollback_gate: HashMap<(usize, String), i64>,
}

impl Run<'_> {
    fn now(&self) -> i64 {
        self.engine.clock.now_ms()
    }

    /// The time `ms` from now.
    fn after(&self, ms: u64) -> i64 {
        self.now().saturating_add(ms_i64(ms))
    }

    fn phase_name(&self) -> String {
        self.spec
            .phases
            .get(self.cp.phase)
            .map(|p| p.name.clone())
            .unwrap_or_default()
    }

    /// Queue an audit event for the next commit.
    fn audit(&mut self, actor: &str, action: &str, reason: impl Into<String>, before: State) {
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

    /// Commit the checkpoint with the queued events and measurements.
    async fn commit(
        &mut self,
        intents: &[(String, String)],
        consumed: &[i64],
    ) -> Result<(), EngineError> {
        let cp_json = checkpoint_json(&self.spec.name, &self.cp)?;
        let events = std::mem::take(&mut self.events);
        let measurements = std::mem::take(&mut self.measurements);
        self.generation = self
            .engine
            .store
            .commit(
                self.id,
                self.generation,
                Commit {
                    checkpoint: &cp_json,
                    state: &self.cp.state.name(),
                    finished: self.cp.state.is_final(),
                    events: &events,
                    measurements: &measurements,
                    step_intents: intents,
                    consumed_actions: consumed,
                },
                self.now(),
            )
            .await?;
        if let Some(sink) = &self.engine.sink {
            let progress = progress_of(&self.spec, self.run, &self.cp);
            sink(&Committed {
                id: self.id,
                progress: &progress,
                events: &events,
                measurements: &measurements,
            });
            if let Some(observer) = &self.engine.observer {
                observer(&progress);
            }
        } else {
            self.notify();
        }
        Ok(())
    }

    fn notify(&self) {
        if let Some(observer) = &self.engine.observer {
            observer(&progress_of(&self.spec, self.run, &self.cp));
        }
    }

    /// Whether action requests may be waiting: always without wake-ups; with them, only
    /// after a wake-up (the flag is cleared by looking).
    fn may_have_actions(&self) -> bool {
        self.wake
            .as_ref()
            .is_none_or(|w| w.pending.swap(false, std::sync::atomic::Ordering::SeqCst))
    }

    fn outcome(&self) -> Outcome {
        Outcome {
            id: self.id,
            rollout: self.spec.name.clone(),
            state: self.cp.state,
            message: self.cp.message.clone(),
        }
    }

    async fn drive(&mut self) -> Result<Outcome, EngineError> {
        self.notify();
        loop {
            if self.cp.state.is_final() {
                // An aborted or failed run can still be rolled back by an operator.
                let reopen = matches!(self.cp.state, State::Aborted | State::Failed)
                    && !self.engine.store.pending_actions(self.id).await?.is_empty();
                if !reopen {
                    return Ok(self.outcome());
                }
                if let Some(w) = &self.wake {
                    w.pending.store(true, std::sync::atomic::Ordering::SeqCst);
                }
                self.handle_actions().await?;
                if self.cp.state.is_final() {
                    return Ok(self.outcome());
                }
                continue;
            }
            // The step in doubt after a crash is settled first: an action taken before it
            // would plan from a weight that is not the one applied.
            if let Some(step) = self.cp.pending_step.clone() {
                self.redeliver(step).await?;
                continue;
            }
            self.handle_actions().await?;
            if self.cp.state.is_final() {
                continue;
            }
            if self.deadline_passed().await? {
                continue;
            }
            match self.cp.state {
                State::Pending => {
                    let before = self.cp.state;
                    self.cp.state = State::Progressing;
                    self.cp.message = format!(
                        "started: {} → {}",
                        self.spec.stable_version, self.spec.canary_version
                    );
                    self.enter_phase(0);
                    let msg = self.cp.message.clone();
                    self.audit(ENGINE_ACTOR, "start", msg, before);
                    self.commit(&[], &[]).await?;
                }
                State::Progressing => self.progress().await?,
                State::Paused(reason) => {
                    if let Woke::Stuck = self.paused(reason).await? {
                        return Ok(self.outcome());
                    }
                }
                State::RollingBack => self.roll_back_step().await?,
                State::Succeeded | State::RolledBack | State::Aborted | State::Failed => {}
            }
        }
    }

    fn enter_phase(&mut self, phase: usize) {
        let now = self.now();
        self.cp.phase = phase;
        self.cp.stage = Stage::GateBefore;
        self.cp.attempt = 1;
        self.cp.phase_started_ms = now;
        self.cp.progress_since_ms = now;
        self.cp.verification = None;
        self.cp.wake_ms = None;
    }

    // ----- operator actions -------------------------------------------------------------

    async fn handle_actions(&mut self) -> Result<(), EngineError> {
        if !self.may_have_actions() {
            return Ok(());
        }
        let requests = self.engine.store.pending_actions(self.id).await?;
        for req in requests {
            let before = self.cp.state;
            let result = match Action::parse(&req.action) {
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
    fn apply_action(&mut self, action: Action, actor: &str, reason: &str) -> Result<(), String> {
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
                    Ok(())
                }
                State::RollingBack => {
                    self.cp.paused_rollback = true;
                    self.pause(
                        PauseReason::Manual,
                        None,
                        reason_or(reason, actor, "rollback paused"),
                    );
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
                Ok(())
            }
            Action::Rollback => match state {
                State::RolledBack | State::Succeeded | State::RollingBack => refuse("rollback"),
                _ => {
                    self.start_rollback(reason_or(reason, actor, "rollback requested"));
                    Ok(())
                }
            },
            Action::Retry => {
                Err("retry starts a new run: use `rollgate retry NAME`, then `rollgate run`".into())
            }
        }
    }

    /// Pause and count it: operator and policy pauses are what the policy sees (maxPauses).
    fn pause(&mut self, reason: PauseReason, wake: Option<i64>, message: String) {
        self.cp.pauses.push(PauseEntry {
            phase: self.phase_name(),
            reason: message.clone(),
            at_ms: self.now(),
        });
        self.hold(reason, wake, message);
    }

    /// Pause without counting it: a phase's own pause, a gate not yet confirming.
    fn hold(&mut self, reason: PauseReason, wake: Option<i64>, message: String) {
        self.cp.state = State::Paused(reason);
        self.cp.wake_ms = wake;
        self.cp.message = message;
    }

    /// Leave a pause: re-enter the current phase and re-evaluate (resume is not "ignore
    /// the gate": gates are asked again, verification starts afresh).
    fn resume(&mut self, why: PauseReason) {
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

    fn promote_full(&mut self, message: String) {
        self.stop_verification("promoted to full");
        self.cp.state = State::Progressing;
        self.cp.promote_full = true;
        self.cp.phase = self.spec.phases.len().saturating_sub(1);
        self.cp.stage = Stage::Apply;
        self.cp.wake_ms = None;
        self.cp.message = message;
    }

    fn stop_verification(&mut self, reason: &str) {
        let now = self.now();
        let changes = match self.cp.verification.as_mut() {
            Some(v) => v.stop(now, reason),
            None => Vec::new(),
        };
        self.audit_changes(&changes);
    }

    fn finish(&mut self, state: State, message: String) {
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

    fn start_rollback(&mut self, message: String) {
        self.stop_verification("the rollout is rolling back");
        let now = self.now();
        let changes = match self.cp.background.as_mut() {
            Some(b) => b.stop(now, "the rollout is rolling back"),
            None => Vec::new(),
        };
        self.audit_changes(&changes);
        self.cp.rollback_steps = plan::rollback_steps(&self.spec, &self.cp, self.run);
        self.cp.seq += self.cp.rollback_steps.len() as u32;
        self.cp.state = State::RollingBack;
        self.cp.promote_full = false;
        self.cp.paused_rollback = false;
        self.cp.finished_ms = None;
        self.cp.wake_ms = None;
        self.cp.message = message;
    }

    fn audit_changes(&mut self, changes: &[StatusChange]) {
        let state = self.cp.state;
        for c in changes {
            self.audit(
                ENGINE_ACTOR,
                &format!("metric-{}", c.to.name()),
                format!("metric {:?}: {}", c.metric, c.reason),
                state,
            );
        }
    }

    // ----- deadlines ----------------------------------------------------------------------

    async fn deadline_passed(&mut self) -> Result<bool, EngineError> {
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

    async fn on_deadline(&mut self, why: String) -> Result<(), EngineError> {
        let before = self.cp.state;
        match self.spec.on_deadline {
            DeadlineAction::Fail => self.finish(State::Failed, why.clone()),
            DeadlineAction::Rollback => self.start_rollback(why.clone()),
        }
        self.audit(ENGINE_ACTOR, "deadline", why, before);
        self.commit(&[], &[]).await
    }

    // ----- the phase --------------------------------------------------------------------

    async fn progress(&mut self) -> Result<(), EngineError> {
        match self.cp.stage {
            Stage::GateBefore => self.gates(GateKind::ConfirmPhase, Stage::Apply).await,
            Stage::Apply => self.apply_phase().await,
            Stage::Ready => self.wait_ready().await,
            Stage::Verify => self.verify().await,
            Stage::Pause => {
                let before = self.cp.state;
                let phase = &self.spec.phases[self.cp.phase.min(self.spec.phases.len() - 1)];
                match phase.pause {
                    None => self.cp.stage = Stage::GateAfter,
                    Some(PauseSpec::Timed(ms)) => {
                        let until = self.after(ms);
                        self.hold(
                            PauseReason::Step,
                            Some(until),
                            format!("phase pause of {}", human_ms(ms)),
                        );
                        let msg = self.cp.message.clone();
                        self.audit(ENGINE_ACTOR, "pause", msg, before);
                    }
                    Some(PauseSpec::Indefinite) => {
                        self.hold(
                            PauseReason::Step,
                            None,
                            "phase pause: waiting for an operator to promote".into(),
                        );
                        let msg = self.cp.message.clone();
                        self.audit(ENGINE_ACTOR, "pause", msg, before);
                    }
                }
                self.commit(&[], &[]).await
            }
            Stage::GateAfter => self.gates(GateKind::ConfirmPromotion, Stage::Done).await,
            Stage::Done => {
                let before = self.cp.state;
                let last = self.cp.phase + 1 >= self.spec.phases.len();
                if last || self.cp.promote_full {
                    if !self.cp.finalized {
                        let step = plan::finalize_step(&self.spec, &self.cp, self.run);
                        if !self.apply_step(step).await? {
                            return Ok(());
                        }
                    }
                    self.finish(
                        State::Succeeded,
                        format!(
                            "succeeded: {} is the new stable version",
                            self.spec.canary_version
                        ),
                    );
                    let msg = self.cp.message.clone();
                    self.audit(ENGINE_ACTOR, "succeed", msg, before);
                } else {
                    let done = self.phase_name();
                    self.enter_phase(self.cp.phase + 1);
                    self.cp.message =
                        format!("phase {done:?} complete; entering {:?}", self.phase_name());
                    let msg = self.cp.message.clone();
                    self.audit(ENGINE_ACTOR, "next-phase", msg, before);
                }
                self.commit(&[], &[]).await
            }
        }
    }

    /// Ask the phase's gates of `kind`; all open → `next` stage, one closed → paused(gate).
    async fn gates(&mut self, kind: GateKind, next: Stage) -> Result<(), EngineError> {
        let before = self.cp.state;
        let phase = self.cp.phase.min(self.spec.phases.len() - 1);
        let gates: Vec<_> = if self.cp.promote_full {
            Vec::new()
        } else {
            self.spec.phases[phase]
                .gates
                .iter()
                .filter(|g| g.kind == kind)
                .cloned()
                .collect()
        };
        for g in &gates {
            let payload = self.gate_payload(g.kind, &g.name);
            match gate::ask(&self.engine.http, g, &payload).await {
                gate::GateAnswer::Open(_) => {
                    self.audit(
                        &format!("gate:{}", g.name),
                        "gate-open",
                        format!("gate {:?} confirmed", g.name),
                        before,
                    );
                }
                gate::GateAnswer::Closed(why) => {
                    let wake = self.after(g.interval_ms.max(1));
                    self.hold(
                        PauseReason::Gate,
                        Some(wake),
                        format!("gate {:?} has not confirmed: {why}", g.name),
                    );
                    let msg = self.cp.message.clone();
                    self.audit(&format!("gate:{}", g.name), "gate-closed", msg, before);
                    return self.commit(&[], &[]).await;
                }
            }
        }
        self.cp.stage = next;
        if next == Stage::Apply {
            self.cp.message = format!(
                "phase {:?}: applying weight {}",
                self.phase_name(),
                self.spec.phases[phase].weight
            );
        }
        self.commit(&[], &[]).await
    }

    fn gate_payload(&self, kind: GateKind, name: &str) -> serde_json::Value {
        json!({
            "rollout": self.spec.name, "run": self.run, "gate": name,
            "kind": serde_json::to_value(kind).unwrap_or_default(),
            "phase": self.phase_name(), "phaseIndex": self.cp.phase, "phaseCount": self.spec.phases.len(),
            "weight": self.cp.weight, "state": self.cp.state.name(),
            "stableVersion": self.spec.stable_version, "canaryVersion": self.spec.canary_version,
        })
    }

    /// Wait out a delay kept in the checkpoint (`wake_ms`), so a restart does not skip it.
    /// True when it is over; false when something else happened first.
    async fn checkpointed_delay(&mut self) -> Result<bool, EngineError> {
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
    async fn delay(&mut self, ms: u64) -> Result<(), EngineError> {
        self.cp.wake_ms = Some(self.after(ms));
        self.commit(&[], &[]).await?;
        self.checkpointed_delay().await.map(|_| ())
    }

    async fn apply_phase(&mut self) -> Result<(), EngineError> {
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
    async fn apply_step(&mut self, step: Step) -> Result<bool, EngineError> {
        let json = serde_json::to_string(&step).unwrap_or_default();
        self.cp.pending_step = Some(step.clone());
        self.cp.seq = self.cp.seq.max(step_seq(&step.id) + 1);
        self.cp.message = format!("applying {} ({})", step.operation.name(), step.id);
        self.commit(&[(step.id.clone(), json)], &[]).await?;
        self.deliver(step).await
    }

    /// A step intended before a crash: finish its bookkeeping if the store saw it applied,
    /// re-deliver it (same id) otherwise.
    async fn redeliver(&mut self, step: Step) -> Result<(), EngineError> {
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

    async fn deliver(&mut self, step: Step) -> Result<bool, EngineError> {
        let mut attempt = 0;
        let result = loop {
            match self.target.apply(&step).await {
                Err(e) if e.retryable && attempt < 3 => {
                    attempt += 1;
                    tracing::warn!(rollout = %self.spec.name, step = %step.id, "retrying: {e}");
                    let until = self.now().saturating_add(1_000 << attempt);
                    self.engine.clock.sleep_until(until).await;
                }
                other => break other,
            }
        };
        let now = self.now();
        let before = self.cp.state;
        match result {
            Ok(applied) => {
                self.engine
                    .store
                    .step_done(self.id, &step.id, StepStatus::Applied, &applied.output, now)
                    .await?;
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
                    .step_done(self.id, &step.id, StepStatus::Failed, &error, now)
                    .await?;
                self.step_failed(&step, error).await?;
                Ok(false)
            }
        }
    }

    /// A step that could not be applied: a forward step starts the rollback, a rollback
    /// step fails the rollout.
    async fn step_failed(&mut self, step: &Step, error: String) -> Result<(), EngineError> {
        let before = self.cp.state;
        self.cp.pending_step = None;
        let why = format!(
            "step {} ({}) failed: {error}",
            step.id,
            step.operation.name()
        );
        if self.cp.state == State::RollingBack || step.operation == Operation::Rollback {
            self.finish(
                State::Failed,
                format!("{why}; the rollback could not complete"),
            );
        } else {
            self.start_rollback(why.clone());
        }
        self.audit(ENGINE_ACTOR, "step-failed", why, before);
        self.commit(&[], &[]).await
    }

    /// Take an applied step into the checkpoint.
    fn absorb(&mut self, step: &Step) {
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

    async fn wait_ready(&mut self) -> Result<(), EngineError> {
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
                    match self.spec.on_deadline {
                        DeadlineAction::Fail => self.finish(State::Failed, msg.clone()),
                        DeadlineAction::Rollback => self.start_rollback(msg.clone()),
                    }
                    self.audit(ENGINE_ACTOR, "readiness-timeout", msg, before);
                    return self.commit(&[], &[]).await;
                }
                self.cp.message = format!("waiting for {} to take effect: {why}", step.id);
                let until = self.after(self.spec.readiness.interval_ms.max(1));
                self.wait(Some(until)).await.map(|_| ())
            }
        }
    }

    /// One verification step: start the runs, decide on a complete run, or take the next
    /// measurement that is due.
    async fn verify(&mut self) -> Result<(), EngineError> {
        let now = self.now();
        let phase = self.cp.phase.min(self.spec.phases.len() - 1);
        if self.cp.verification.is_none() {
            self.cp.verification =
                Some(VerificationRun::new(&self.spec.phases[phase].metrics, now));
            if let Some(bg) = &self.spec.background
                && self.cp.background.is_none()
                && phase >= bg.starting_phase
            {
                self.cp.background = Some(VerificationRun::new(&bg.metrics, now));
            }
            self.cp.message = format!("verifying phase {:?}", self.phase_name());
            return self.commit(&[], &[]).await;
        }
        let (outcome, due) = match &self.cp.verification {
            Some(v) => (v.outcome(), v.next_due()),
            None => (RunOutcome::Running, None),
        };
        if let RunOutcome::Complete(_) = outcome {
            return self.decide(true).await;
        }
        match due {
            Some((metric, at)) => {
                if at > now {
                    return self.wait(Some(at)).await.map(|_| ());
                }
                self.measure(Which::Phase, metric).await
            }
            // Running with nothing due should not happen; re-check after a wait.
            None => self.wait(Some(now + 1_000)).await.map(|_| ()),
        }
    }

    async fn measure(&mut self, which: Which, index: usize) -> Result<(), EngineError> {
        let now = self.now();
        let phase = self.cp.phase.min(self.spec.phases.len() - 1);
        let run = match which {
            Which::Phase => self.cp.verification.as_ref(),
            Which::Background => self.cp.background.as_ref(),
        };
        let Some(metric) = run.and_then(|r| r.metrics.get(index)) else {
            return Ok(());
        };
        let spec = metric.spec.clone();
        let context = RolloutContext {
            rollout: self.spec.name.clone(),
            phase: self.phase_name(),
            phase_index: phase as u32,
            phase_count: self.spec.phases.len() as u32,
            weight: self.cp.weight,
            stable_version: self.spec.stable_version.clone(),
            canary_version: self.spec.canary_version.clone(),
            now_ms: now,
            phase_started_ms: self.cp.phase_started_ms,
            metric: spec.name.clone(),
            measurement_index: metric.counters.measurements + metric.counters.errors,
            args: spec
                .args
                .iter()
                .map(|(k, v)| crate::plugin::types::Arg {
                    name: k.clone(),
                    value: v.clone(),
                })
                .collect(),
        };
        let span = tracing::info_span!(
            "metric",
            phase = %context.phase,
            metric = %spec.name,
            plugin = %spec.plugin,
            background = which == Which::Background
        );
        let observation = measure_metric(
            &self.engine.plugins,
            self.engine.metrics.clone(),
            &spec,
            &context,
        )
        .instrument(span)
        .await;
        let at = self.now();
        let run = match which {
            Which::Phase => self.cp.verification.as_mut(),
            Which::Background => self.cp.background.as_mut(),
        };
        let Some(run) = run else { return Ok(()) };
        let (recorded, changes) = run.record(index, observation, at);
        let verdict = recorded.verdict.name().to_string();
        self.measurements.push(MeasurementRow {
            phase_index: if which == Which::Phase {
                phase as i64
            } else {
                -1
            },
            metric: spec.name.clone(),
            index: i64::from(recorded.index),
            at_ms: recorded.at_ms,
            verdict: verdict.clone(),
            value: recorded.value.filter(|v| v.is_finite()),
            message: recorded.message.clone(),
            details: recorded.details.clone(),
            retention: i64::from(spec.retention),
        });
        self.audit_changes(&changes);
        self.cp.progress_since_ms = at;
        self.cp.message = format!(
            "{}metric {:?}: {} {}",
            if which == Which::Background {
                "background "
            } else {
                ""
            },
            spec.name,
            verdict,
            recorded.value.map(|v| format!("{v}")).unwrap_or_default()
        );
        // A held rollout keeps measuring in the background, but only a change of a metric's
        // status is news for the policy; asking it at every measurement would stack pauses.
        if matches!(self.cp.state, State::Paused(_)) && changes.is_empty() {
            return self.commit(&[], &[]).await;
        }
        self.decide(false).await
    }

    /// Ask the failure policy and apply its decision (in the same commit as what led to it).
    async fn decide(&mut self, phase_complete: bool) -> Result<(), EngineError> {
        let before = self.cp.state;
        let input = self.policy_input(phase_complete);
        let policy_name = self.spec.failure_policy.plugin.clone();
        let actor = format!("policy:{policy_name}");
        let decision = match self.engine.plugins.get(&policy_name) {
            None => Err(format!("failure policy {policy_name:?} is not loaded")),
            Some(p) => p
                .decide(&self.spec.failure_policy.config.to_string(), &input)
                .await
                .map_err(|e| e.to_string()),
        };
        let decision = match decision {
            Ok(d) => d,
            // A failing policy must never let a rollout through: hold it for a person.
            Err(e) => Decision::Pause(crate::plugin::types::Pause {
                reason: format!("the failure policy failed, holding the rollout: {e}"),
                duration_ms: None,
            }),
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
                self.start_rollback(reason.clone());
                self.audit(&actor, "rollback", reason, before);
            }
            Decision::Abort(reason) => {
                self.finish(State::Aborted, reason.clone());
                self.audit(&actor, "abort", reason, before);
            }
        }
        self.commit(&[], &[]).await
    }

    fn verification_summary(&self) -> String {
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

    fn policy_input(&self, phase_complete: bool) -> PolicyInput {
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

    // ----- waiting ----------------------------------------------------------------------

    /// Wait until `until` (or, with `None`, until something happens), taking background
    /// measurements and asking rollback gates meanwhile, and returning early for operator
    /// actions or when a decision moved the rollout.
    async fn wait(&mut self, until: Option<i64>) -> Result<Woke, EngineError> {
        let state = self.cp.state;
        let stage = self.cp.stage;
        let phase = self.cp.phase;
        let mut next_poll: Option<i64> = None;
        loop {
            let now = self.now();
            if until.is_some_and(|u| now >= u) {
                return Ok(Woke::Time);
            }
            if self.cp.state != state || self.cp.stage != stage || self.cp.phase != phase {
                return Ok(Woke::Interrupted);
            }
            // Background measurements run while the rollout progresses or holds.
            let bg_due = match (&self.cp.background, self.cp.state) {
                (Some(b), State::Progressing | State::Paused(_)) => b.next_due(),
                _ => None,
            };
            if let Some((metric, at)) = bg_due
                && at <= now
            {
                self.measure(Which::Background, metric).await?;
                continue;
            }
            let gate_due = self.rollback_gate_due(now);
            if let Some((g, at)) = &gate_due
                && *at <= now
            {
                self.ask_rollback_gate(g.clone()).await?;
                continue;
            }
            let next = [until, bg_due.map(|(_, at)| at), gate_due.map(|(_, at)| at)]
                .into_iter()
                .flatten()
                .min();
            if self.engine.clock.is_simulated() {
                // Nothing outside the process acts on simulated time: a wait only an
                // operator can end (background metrics and rollback gates aside) ends here,
                // instead of measuring a hold forever.
                match (until, next) {
                    (Some(_), Some(at)) => self.engine.clock.sleep_until(at).await,
                    _ => return Ok(Woke::Stuck),
                }
                continue;
            }
            let poll_ms = i64::try_from(self.engine.action_poll.as_millis()).unwrap_or(i64::MAX);
            let poll = next_poll.get_or_insert(now.saturating_add(poll_ms));
            let at = next.map_or(*poll, |n| n.min(*poll));
            match &self.wake {
                Some(wake) => {
                    let wake = wake.clone();
                    tokio::select! {
                        _ = self.engine.clock.sleep_until(at) => {}
                        _ = wake.notify.notified() => return Ok(Woke::Interrupted),
                    }
                }
                None => self.engine.clock.sleep_until(at).await,
            }
            // How late the timer fired: the scheduler's lag, for `/metrics`.
            let late = self.now().saturating_sub(at);
            crate::telemetry::global().observe_lag(late.max(0) as f64 / 1000.0);
            // Operator actions are looked for every poll interval, however busy the timers.
            if self.now() >= *poll {
                next_poll = None;
                if !self.engine.store.pending_actions(self.id).await?.is_empty() {
                    if let Some(w) = &self.wake {
                        w.pending.store(true, std::sync::atomic::Ordering::SeqCst);
                    }
                    return Ok(Woke::Interrupted);
                }
            }
        }
    }

    fn rollback_gate_due(&mut self, now: i64) -> Option<(crate::spec::model::GateSpec, i64)> {
        if !matches!(self.cp.state, State::Progressing | State::Paused(_)) {
            return None;
        }
        let phase = self.cp.phase.min(self.spec.phases.len().saturating_sub(1));
        let gates = &self.spec.phases.get(phase)?.gates;
        let mut best: Option<(crate::spec::model::GateSpec, i64)> = None;
        for g in gates.iter().filter(|g| g.kind == GateKind::Rollback) {
            let at = *self
                .next_rollback_gate
                .entry((phase, g.name.clone()))
                .or_insert(now);
            if best.as_ref().is_none_or(|(_, b)| at < *b) {
                best = Some((g.clone(), at));
            }
        }
        best
    }

    async fn ask_rollback_gate(
        &mut self,
        g: crate::spec::model::GateSpec,
    ) -> Result<(), EngineError> {
        let now = self.now();
        let phase = self.cp.phase;
        self.next_rollback_gate.insert(
            (phase, g.name.clone()),
            now.saturating_add(ms_i64(g.interval_ms.max(1))),
        );
        let payload = self.gate_payload(g.kind, &g.name);
        if let gate::GateAnswer::Open(body) = gate::ask(&self.engine.http, &g, &payload).await {
            let before = self.cp.state;
            let why = format!(
                "rollback gate {:?} requested a rollback: {}",
                g.name,
                body.trim()
            );
            self.start_rollback(why.clone());
            self.audit(&format!("gate:{}", g.name), "rollback", why, before);
            self.commit(&[], &[]).await?;
        }
        Ok(())
    }

    async fn paused(&mut self, reason: PauseReason) -> Result<Woke, EngineError> {
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

    async fn roll_back_step(&mut self) -> Result<(), EngineError> {
        if !self.checkpointed_delay().await? {
            return Ok(());
        }
        let before = self.cp.state;
        let Some(step) = self.cp.rollback_steps.first().cloned() else {
            self.finish(
                State::RolledBack,
                format!("rolled back: {} restored", self.spec.stable_version),
            );
            let msg = self.cp.message.clone();
            self.audit(ENGINE_ACTOR, "rolled-back", msg, before);
            return self.commit(&[], &[]).await;
        };
        if !self.apply_step(step.clone()).await? {
            return Ok(());
        }
        // Gradual: each step must take effect and hold before the next.
        if let RollbackMode::Gradual { step_pause_ms } = self.spec.rollback
            && !self.cp.rollback_steps.is_empty()
        {
            let deadline = self.after(self.spec.readiness.timeout_ms);
            loop {
                let last = match self.target.ready(&step).await {
                    Ok(Readiness::Ready) => break,
                    Ok(Readiness::NotReady(why)) => why,
                    Err(e) => e.to_string(),
                };
                if self.now() >= deadline {
                    // Restoring the stable version matters more than a slow step: go on,
                    // but say so.
                    let before = self.cp.state;
                    let why = format!(
                        "rollback step {} did not become ready within {} ({last}); going on with the rollback",
                        step.id,
                        human_ms(self.spec.readiness.timeout_ms)
                    );
                    self.cp.message = why.clone();
                    self.audit(ENGINE_ACTOR, "readiness-timeout", why, before);
                    self.commit(&[], &[]).await?;
                    break;
                }
                let until = self.after(self.spec.readiness.interval_ms.max(1));
                // Through `wait`, so an operator's pause or abort is not held up.
                if let Woke::Interrupted | Woke::Stuck = self.wait(Some(until)).await? {
                    return Ok(());
                }
            }
            if step_pause_ms > 0 {
                self.delay(step_pause_ms).await?;
            }
        }
        Ok(())
    }
}

/// Why a retry was not started.
#[derive(Debug, thiserror::Error)]
pub enum RetryError {
    /// The latest run did not roll back, abort or fail.
    #[error(
        "retry re-runs a rolled-back, aborted or failed rollout; {rollout:?} run {run} is {state}"
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
pub async fn retry_run(
    store: &Store,
    latest: &crate::store::RolloutRow,
    actor: &str,
    reason: &str,
    now: i64,
) -> Result<(crate::store::RolloutRow, String), RetryError> {
    if !matches!(latest.state.as_str(), "rolled-back" | "aborted" | "failed") {
        return Err(RetryError::NotEnded {
            rollout: latest.name.clone(),
            run: latest.run,
            state: latest.state.clone(),
        });
    }
    let spec: RolloutSpec =
        serde_json::from_str(&latest.spec).map_err(|e| EngineError::Corrupt {
            rollout: latest.name.clone(),
            message: format!("the stored spec cannot be read: {e}"),
        })?;
    let reason = format!(
        "retry of run {} by {actor}{}",
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

/// Store a new pending run of `spec` with its first checkpoint and audit event.
pub async fn create_run(
    store: &Store,
    spec: &RolloutSpec,
    now: i64,
    new: NewRun<'_>,
) -> Result<crate::store::RolloutRow, EngineError> {
    let cp = Checkpoint::new(now);
    let spec_json = serde_json::to_string(spec).map_err(|e| EngineError::Corrupt {
        rollout: spec.name.clone(),
        message: format!("cannot serialise the spec: {e}"),
    })?;
    let cp_json = checkpoint_json(&spec.name, &cp)?;
    let event = AuditEvent {
        at_ms: now,
        actor: new.actor.to_string(),
        action: new.action.to_string(),
        reason: new.reason.to_string(),
        state_before: new.state_before.to_string(),
        state_after: cp.state.name(),
        progress: progress_counts(spec, &cp),
    };
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

fn reason_or(reason: &str, actor: &str, default: &str) -> String {
    if reason.trim().is_empty() {
        format!("{default} by {actor}")
    } else {
        format!("{default} by {actor}: {reason}")
    }
}

fn step_seq(id: &str) -> u32 {
    id.rsplit_once('/')
        .and_then(|(_, tail)| tail.split('-').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
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

/// A spec or plugin duration as clock milliseconds, saturating (a duration of ~u64::MAX
/// means "never", not a time in the past).
fn ms_i64(ms: u64) -> i64 {
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
