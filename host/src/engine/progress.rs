//! Progress views: what a run looks like to a display ([`progress_of`]), what a [`Sink`]
//! is told of each commit, and the counts every audit event carries.

use super::state::{Checkpoint, State};
use crate::spec::model::{RolloutSpec, Strategy};
use crate::store::{AuditEvent, MeasurementRow};
use serde_json::json;
use std::sync::Arc;

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
    /// The run this run reverses: it takes back what that run rolled out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reverses: Option<i64>,
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
        reverses: cp.reverses,
    }
}

/// The target progress counts every audit event carries.
pub(super) fn progress_counts(spec: &RolloutSpec, cp: &Checkpoint) -> serde_json::Value {
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
