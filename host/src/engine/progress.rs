//! Progress views: what a run looks like to a display ([`progress_of`]), what a [`Sink`]
//! is told of each commit, and the counts every audit event carries.
//!
//! [`Progress`] is computed once and shown in two shapes: its own serde shape is API v1's
//! (frozen: counts as an array, no failures or target), and `crate::server::v2` renders
//! the v2 shape from the same value (named counts, [`Failure`]s, [`TargetProgress`]).

use super::failure::Failure;
use super::state::{Checkpoint, State};
use crate::deliver::Operation;
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
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
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
    /// What went wrong in the run, oldest first (not in the v1 shape).
    #[serde(skip)]
    pub failures: Vec<Failure>,
    /// Rolling and blue-green: how far the target is (not in the v1 shape).
    #[serde(skip)]
    pub target: Option<TargetProgress>,
    /// The run this run reverses: it takes back what that run rolled out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reverses: Option<i64>,
}

/// What a rolling or blue-green target reported, counted: what the target applied
/// (completed), what it refused (failed), what is left (remaining) of the total.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TargetProgress {
    /// What is counted: `instances` (rolling) or `steps` (blue-green: deploy the preview,
    /// then cut traffic over).
    pub unit: TargetUnit,
    /// Rolling: instances on the new version, as the last step the target applied left
    /// them (a rollback brings it down again). Blue-green: the preview is deployed (1),
    /// and traffic is cut over (2).
    pub completed: u32,
    /// Rolling: the instances of the batch the target refused. Blue-green: 1 when the
    /// target refused deploying the preview or the cut-over.
    pub failed: u32,
    /// Neither completed nor failed: `total - completed - failed`.
    pub remaining: u32,
    /// Rolling: every instance. Blue-green: 2.
    pub total: u32,
    /// Blue-green: the preview is deployed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preview_deployed: Option<bool>,
    /// Blue-green: all traffic is on the new version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cut_over: Option<bool>,
}

/// What [`TargetProgress`] counts.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum TargetUnit {
    /// Rolling: instances.
    Instances,
    /// Blue-green: its two steps.
    Steps,
}

/// The target progress of a rolling or blue-green run; `None` for canary (its weight is
/// its progress).
pub fn target_progress(spec: &RolloutSpec, cp: &Checkpoint) -> Option<TargetProgress> {
    let refused = cp.refused_step.as_ref();
    match &spec.strategy {
        Strategy::Canary => None,
        Strategy::Rolling { instances, .. } => {
            let total = u32::try_from(instances.len()).unwrap_or(u32::MAX);
            let completed = cp.updated.min(total);
            let failed = refused
                .filter(|s| s.operation == Operation::UpdateBatch)
                .map_or(0, |s| u32::try_from(s.instances.len()).unwrap_or(u32::MAX))
                .min(total - completed);
            Some(TargetProgress {
                unit: TargetUnit::Instances,
                completed,
                failed,
                remaining: total - completed - failed,
                total,
                preview_deployed: None,
                cut_over: None,
            })
        }
        Strategy::BlueGreen => {
            let cut_over = cp.weight >= 100.0;
            let completed = u32::from(cp.preview) + u32::from(cut_over);
            let failed = u32::from(refused.is_some_and(|s| {
                matches!(s.operation, Operation::DeployPreview | Operation::CutOver)
            }))
            .min(2 - completed);
            Some(TargetProgress {
                unit: TargetUnit::Steps,
                completed,
                failed,
                remaining: 2 - completed - failed,
                total: 2,
                preview_deployed: Some(cp.preview),
                cut_over: Some(cut_over),
            })
        }
    }
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

/// Renders the webhook notifications of a commit *before* it is written (server mode): the
/// engine hands them to the store with the commit, which queues them in the outbox in the
/// same transaction ([`crate::store::Commit::outbox`]). `Committed::progress` is the
/// progress the commit makes. Called on the rollout's task: it must not block.
pub type Outbox = Arc<dyn Fn(&Committed<'_>) -> Vec<crate::store::OutboxItem> + Send + Sync>;

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
        failures: cp.failures.clone(),
        target: target_progress(spec, cp),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deliver::Step;
    use crate::engine::plan::tests::spec;
    use crate::spec::model::RollbackMode;

    fn refused(operation: Operation, instances: &[&str]) -> Option<Step> {
        let s = spec(Strategy::Canary, &[10.0], RollbackMode::Immediate);
        let mut step = crate::engine::plan::next_step(&s, &Checkpoint::new(0), 1, false)?;
        step.operation = operation;
        step.instances = instances.iter().map(|i| i.to_string()).collect();
        Some(step)
    }

    #[test]
    fn target_progress_counts_what_the_target_applied_and_refused() {
        let rolling = Strategy::Rolling {
            instances: ["a", "b", "c", "d", "e"].map(String::from).to_vec(),
            parallelism: 2,
            delay_between_batches_ms: 0,
        };
        // (strategy, instances updated, weight, preview, refused step,
        //  (unit, completed, failed, remaining, total, preview deployed, cut over))
        type Want = (TargetUnit, u32, u32, u32, u32, Option<bool>, Option<bool>);
        type Case = (Strategy, u32, f64, bool, Option<Step>, Option<Want>);
        let cases: Vec<Case> = vec![
            (Strategy::Canary, 0, 10.0, false, None, None),
            (
                rolling.clone(),
                0,
                0.0,
                false,
                None,
                Some((TargetUnit::Instances, 0, 0, 5, 5, None, None)),
            ),
            (
                rolling.clone(),
                2,
                40.0,
                false,
                None,
                Some((TargetUnit::Instances, 2, 0, 3, 5, None, None)),
            ),
            (
                rolling.clone(),
                2,
                40.0,
                false,
                refused(Operation::UpdateBatch, &["c", "d"]),
                Some((TargetUnit::Instances, 2, 2, 1, 5, None, None)),
            ),
            // A refused finalize is not a batch: no instance failed.
            (
                rolling.clone(),
                5,
                100.0,
                false,
                refused(Operation::Finalize, &[]),
                Some((TargetUnit::Instances, 5, 0, 0, 5, None, None)),
            ),
            (
                Strategy::BlueGreen,
                0,
                0.0,
                false,
                None,
                Some((TargetUnit::Steps, 0, 0, 2, 2, Some(false), Some(false))),
            ),
            (
                Strategy::BlueGreen,
                0,
                0.0,
                false,
                refused(Operation::DeployPreview, &[]),
                Some((TargetUnit::Steps, 0, 1, 1, 2, Some(false), Some(false))),
            ),
            (
                Strategy::BlueGreen,
                0,
                0.0,
                true,
                None,
                Some((TargetUnit::Steps, 1, 0, 1, 2, Some(true), Some(false))),
            ),
            (
                Strategy::BlueGreen,
                0,
                0.0,
                true,
                refused(Operation::CutOver, &[]),
                Some((TargetUnit::Steps, 1, 1, 0, 2, Some(true), Some(false))),
            ),
            (
                Strategy::BlueGreen,
                0,
                100.0,
                true,
                None,
                Some((TargetUnit::Steps, 2, 0, 0, 2, Some(true), Some(true))),
            ),
        ];
        for (strategy, updated, weight, preview, refused_step, want) in cases {
            let s = spec(strategy, &[50.0, 100.0], RollbackMode::Immediate);
            let mut cp = Checkpoint::new(0);
            cp.updated = updated;
            cp.weight = weight;
            cp.preview = preview;
            cp.refused_step = refused_step;
            let got = target_progress(&s, &cp).map(|t| {
                (
                    t.unit,
                    t.completed,
                    t.failed,
                    t.remaining,
                    t.total,
                    t.preview_deployed,
                    t.cut_over,
                )
            });
            assert_eq!(
                got, want,
                "{:?} updated {updated} weight {weight}",
                s.strategy
            );
        }
    }
}
