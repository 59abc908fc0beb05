//! A run adopting its rollout's current documents, and the configuration generation a run
//! is driven with.
//!
//! A run keeps the spec, plugins and backends it started with while it progresses
//! (reproducibility). Two things change that, each audited as `configuration generation
//! N → M`:
//!
//! - **a resume**: an operator who fixed the documents (a wrong Prometheus address, an
//!   expired credential, a template's query) resumes the paused run, and the run re-reads
//!   its rollout's documents ([`Reconfigure`]): the verification of every phase and of the
//!   background, the failure policy, gates, readiness, deadlines and notifications, with the
//!   plugins and backends they name. What makes the run what it is — versions, strategy,
//!   target, the phases and their weights, the rollback mode — is kept; a change there is
//!   named in the audit and applies to the next run. Documents that do not load refuse the
//!   resume with every problem, so nothing half-read is ever adopted.
//! - **being driven by a runner with a newer configuration** (a restart after the files
//!   changed, a run held as `invalid-spec` and released): the run keeps its spec and uses
//!   that configuration's plugins and backends by the same names.

use super::state::State;
use super::{ENGINE_ACTOR, Plugins, Run};
use crate::metrics::MetricsSource;
use crate::spec::model::RolloutSpec;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// A rollout's documents as they are now, set up.
pub struct Current {
    /// The rollout's resolved spec (shared with the loaded configuration).
    pub spec: Arc<RolloutSpec>,
    /// The plugins it names, loaded.
    pub plugins: Arc<Plugins>,
    /// The backends, built.
    pub metrics: Arc<dyn MetricsSource>,
    /// The configuration generation they belong to.
    pub generation: i64,
}

/// What re-reading a rollout's documents found.
pub enum Reread {
    /// They load: adopt them.
    Adopt(Box<Current>),
    /// Nothing to adopt (the rollout is no longer in the documents, say): go on with the
    /// run's configuration, for this reason.
    Keep(String),
    /// They do not load: refuse the resume, with every problem.
    Refuse(Vec<String>),
}

/// Where a runner re-reads a rollout's documents: `rollgate run` reads its files again,
/// `rollgate serve` its folder.
pub trait Reconfigure: Send + Sync {
    /// The rollout's documents as they are now.
    fn reread<'a>(&'a self, rollout: &'a str) -> Pin<Box<dyn Future<Output = Reread> + Send + 'a>>;
}

impl Run<'_> {
    /// Note the configuration generation this runner drives the run with; a run first
    /// driven with another is audited.
    pub(super) fn note_generation(&mut self) {
        let new = self.engine.config_generation;
        let old = self.cp.config_generation;
        if new == 0 || old == new {
            return;
        }
        self.cp.config_generation = new;
        if old != 0 {
            let state = self.cp.state;
            self.audit(
                ENGINE_ACTOR,
                "configuration",
                format!(
                    "configuration generation {old} → {new}: this runner drives the run with the plugins and backends of generation {new}; the run's own spec stays"
                ),
                state,
            );
        }
    }

    /// Before a resume of a paused run: re-read the rollout's documents and adopt them
    /// (see the module doc). `Err` refuses the resume, saying why and what to do.
    pub(super) async fn adopt_current(&mut self, actor: &str) -> Result<(), String> {
        if !matches!(self.cp.state, State::Paused(_)) || self.cp.paused_rollback {
            return Ok(());
        }
        let Some(reconfigure) = self.engine.reconfigure.clone() else {
            return Ok(());
        };
        let name = self.spec.name.clone();
        match reconfigure.reread(&name).await {
            Reread::Refuse(problems) => Err(format!(
                "the documents of rollout {name:?} do not load, so the run cannot adopt them; fix them, then resume again: {}",
                problems.join("; ")
            )),
            Reread::Keep(why) => {
                let state = self.cp.state;
                self.audit(
                    actor,
                    "configuration",
                    format!("the run keeps its configuration: {why}"),
                    state,
                );
                Ok(())
            }
            Reread::Adopt(current) => {
                let old = self.cp.config_generation;
                let mut spec = (*self.spec).clone();
                let not_adopted = adopt(&mut spec, &current.spec);
                let same_spec =
                    serde_json::to_value(&spec).ok() == serde_json::to_value(&self.spec).ok();
                self.plugins = current.plugins;
                self.metrics = current.metrics;
                if same_spec && old == current.generation {
                    // Nothing new to adopt.
                    return Ok(());
                }
                self.cp.config_generation = current.generation;
                if !same_spec {
                    // The background's metrics restart with the adopted ones.
                    if spec.background != self.spec.background {
                        let now = self.now();
                        if let Some(b) = self.cp.background.as_mut() {
                            let changes = b.stop(now, "the run adopted a new configuration");
                            self.audit_changes(&changes);
                        }
                        self.cp.background = None;
                    }
                    // Shared with the configuration when the run adopted all of it.
                    self.spec = if spec == *current.spec {
                        current.spec.clone()
                    } else {
                        Arc::new(spec)
                    };
                    self.spec_changed = true;
                }
                let generations = if old == current.generation {
                    format!("configuration generation {old} (unchanged)")
                } else {
                    format!("configuration generation {old} → {}", current.generation)
                };
                let mut reason = format!(
                    "{generations}: the run adopted the current backends, plugins, templates and verification of rollout {name:?}"
                );
                if !not_adopted.is_empty() {
                    reason.push_str(&format!(
                        "; not adopted (they apply to the next run): {}",
                        not_adopted.join(", ")
                    ));
                }
                let state = self.cp.state;
                self.audit(actor, "configuration", reason, state);
                Ok(())
            }
        }
    }

    /// Whether a resume request for a run in this state re-reads the documents.
    pub(super) fn resume_rereads(&self) -> bool {
        matches!(self.cp.state, State::Paused(_)) && !self.cp.paused_rollback
    }
}

/// Adopt `now`'s verification and its settings into the run's spec `run`; what differs and
/// is not adopted, as `what: old → new`.
pub(super) fn adopt(run: &mut RolloutSpec, now: &RolloutSpec) -> Vec<String> {
    let mut kept = Vec::new();
    let mut differs = |what: &str, old: String, new: String| {
        if old != new {
            kept.push(format!("{what} {old} → {new}"));
        }
    };
    differs(
        "stable version",
        run.stable_version.clone(),
        now.stable_version.clone(),
    );
    differs(
        "canary version",
        run.canary_version.clone(),
        now.canary_version.clone(),
    );
    differs(
        "strategy",
        format!("{:?}", run.strategy),
        format!("{:?}", now.strategy),
    );
    differs(
        "target",
        format!("{:?}", run.target),
        format!("{:?}", now.target),
    );
    differs(
        "rollback",
        format!("{:?}", run.rollback),
        format!("{:?}", now.rollback),
    );
    let shape = |s: &RolloutSpec| {
        s.phases
            .iter()
            .map(|p| format!("{}@{}", p.name, p.weight))
            .collect::<Vec<_>>()
            .join(",")
    };
    differs("phases", shape(run), shape(now));
    for phase in &mut run.phases {
        if let Some(new) = now.phases.iter().find(|p| p.name == phase.name) {
            phase.metrics = new.metrics.clone();
            phase.gates = new.gates.clone();
        }
    }
    run.background = now.background.clone();
    run.failure_policy = now.failure_policy.clone();
    run.readiness = now.readiness;
    run.progress_deadline_ms = now.progress_deadline_ms;
    run.on_deadline = now.on_deadline;
    run.notifications = now.notifications.clone();
    run.args = now.args.clone();
    kept
}
