//! Step planning: which idempotent target operations a phase, a promote-full or a rollback
//! needs, given what was already applied. Pure, so the strategies are tested as tables.

use super::state::Checkpoint;
use crate::deliver::{Operation, Step};
use crate::spec::model::{RollbackMode, RolloutSpec, Strategy};

/// The next step of phase `phase` (towards its weight), or `None` when the phase's steps are
/// all applied. `full` plans towards the end state (promote-full).
pub fn next_step(spec: &RolloutSpec, cp: &Checkpoint, run: i64, full: bool) -> Option<Step> {
    let phase = cp.phase.min(spec.phases.len().saturating_sub(1));
    let target_weight = if full {
        100.0
    } else {
        spec.phases.get(phase)?.weight
    };
    let step =
        |operation: Operation, weight: f64| base_step(spec, cp, run, operation, weight, phase);
    match &spec.strategy {
        Strategy::Canary => {
            (cp.weight != target_weight).then(|| step(Operation::SetWeight, target_weight))
        }
        Strategy::BlueGreen => {
            if !cp.preview {
                Some(step(Operation::DeployPreview, 0.0))
            } else if target_weight >= 100.0 && cp.weight < 100.0 {
                Some(step(Operation::CutOver, 100.0))
            } else {
                None
            }
        }
        Strategy::Rolling {
            instances,
            parallelism,
            ..
        } => {
            let total = instances.len() as u32;
            let wanted = instances_for(target_weight, total);
            if cp.updated >= wanted {
                return None;
            }
            let end = cp.updated.saturating_add((*parallelism).max(1)).min(wanted);
            let mut s = step(
                Operation::UpdateBatch,
                100.0 * f64::from(end) / f64::from(total),
            );
            s.instances = instances[cp.updated as usize..end as usize].to_vec();
            s.updated = end;
            s.total = total;
            Some(s)
        }
    }
}

/// Instances on the canary version for a weight: rounded up, so 10 % of 4 is 1.
pub fn instances_for(weight: f64, total: u32) -> u32 {
    ((weight / 100.0 * f64::from(total)).ceil() as u32).min(total)
}

/// The steps that restore the stable version from where `cp` is.
pub fn rollback_steps(spec: &RolloutSpec, cp: &Checkpoint, run: i64) -> Vec<Step> {
    let phase = cp.phase.min(spec.phases.len().saturating_sub(1));
    let mut seq = cp.seq;
    let mut make = |weight: f64, instances: Vec<String>, updated: u32, total: u32| {
        let mut s = base_step(spec, cp, run, Operation::Rollback, weight, phase);
        s.id = step_id(&spec.name, run, seq, Operation::Rollback);
        seq += 1;
        s.instances = instances;
        s.updated = updated;
        s.total = total;
        s
    };
    let gradual = matches!(spec.rollback, RollbackMode::Gradual { .. });
    match &spec.strategy {
        Strategy::Canary if gradual => {
            let mut weights: Vec<f64> = spec.phases[..=phase]
                .iter()
                .map(|p| p.weight)
                .filter(|w| *w < cp.weight)
                .collect();
            weights.dedup();
            weights.reverse();
            weights.retain(|w| *w > 0.0);
            weights.push(0.0);
            weights
                .into_iter()
                .map(|w| make(w, Vec::new(), 0, 0))
                .collect()
        }
        Strategy::Canary | Strategy::BlueGreen => vec![make(0.0, Vec::new(), 0, 0)],
        Strategy::Rolling {
            instances,
            parallelism,
            ..
        } => {
            let total = instances.len() as u32;
            let touched = &instances[..cp.updated.min(total) as usize];
            if !gradual {
                return vec![make(0.0, touched.to_vec(), 0, total)];
            }
            let mut out = Vec::new();
            let mut left = touched.len();
            while left > 0 {
                let start = left.saturating_sub((*parallelism).max(1) as usize);
                let weight = 100.0 * start as f64 / f64::from(total.max(1));
                out.push(make(
                    weight,
                    touched[start..left].to_vec(),
                    start as u32,
                    total,
                ));
                left = start;
            }
            if out.is_empty() {
                out.push(make(0.0, Vec::new(), 0, total));
            }
            out
        }
    }
}

/// Where a run that reverses another in mode `new-rollout` starts: the phase, and the
/// weight of the version going back that is already live. `spec` is the reversed run's
/// spec with stable and canary swapped, `reversed` the reversed run's last checkpoint.
///
/// Canary: the version going back serves `100 − weight` of the traffic; the reversal
/// starts at the first phase whose weight is at least that, so it never raises the
/// traffic of the version it takes away (after a success that is the first phase).
/// Rolling and blue-green start from the first phase: rolling re-updates the instances
/// from the first, which are exactly those the reversed run updated; blue-green deploys
/// the version going back as the preview and cuts over to it.
pub fn reversal_start(spec: &RolloutSpec, reversed: &Checkpoint) -> (usize, f64) {
    match spec.strategy {
        Strategy::Canary => {
            let back = (100.0 - reversed.weight).clamp(0.0, 100.0);
            let phase = spec
                .phases
                .iter()
                .position(|p| p.weight >= back)
                .unwrap_or(spec.phases.len().saturating_sub(1));
            (phase, back)
        }
        Strategy::Rolling { .. } | Strategy::BlueGreen => (0, 0.0),
    }
}

/// The closing step of a successful rollout.
pub fn finalize_step(spec: &RolloutSpec, cp: &Checkpoint, run: i64) -> Step {
    let phase = spec.phases.len().saturating_sub(1);
    let mut s = base_step(spec, cp, run, Operation::Finalize, 100.0, phase);
    if let Strategy::Rolling { instances, .. } = &spec.strategy {
        s.updated = instances.len() as u32;
        s.total = instances.len() as u32;
    }
    s
}

/// `ROLLOUT#RUN/SEQ-OPERATION`.
pub fn step_id(rollout: &str, run: i64, seq: u32, op: Operation) -> String {
    format!("{rollout}#{run}/{seq:03}-{}", op.name())
}

fn base_step(
    spec: &RolloutSpec,
    cp: &Checkpoint,
    run: i64,
    operation: Operation,
    weight: f64,
    phase: usize,
) -> Step {
    let (updated, total) = match &spec.strategy {
        Strategy::Rolling { instances, .. } => (cp.updated, instances.len() as u32),
        _ => (0, 0),
    };
    Step {
        id: step_id(&spec.name, run, cp.seq, operation),
        rollout: spec.name.clone(),
        operation,
        phase: spec
            .phases
            .get(phase)
            .map(|p| p.name.clone())
            .unwrap_or_default(),
        phase_index: phase as u32,
        phase_count: spec.phases.len() as u32,
        weight,
        stable_version: spec.stable_version.clone(),
        canary_version: spec.canary_version.clone(),
        instances: Vec::new(),
        updated,
        total,
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::spec::model::*;

    /// A rollout of `strategy` with a phase per weight (`p0`, `p1`, …), no metrics.
    pub(in crate::engine) fn spec(
        strategy: Strategy,
        weights: &[f64],
        rollback: RollbackMode,
    ) -> RolloutSpec {
        RolloutSpec {
            name: "web".into(),
            file: "r.yaml".into(),
            stable_version: "v1".into(),
            canary_version: "v2".into(),
            target: TargetSpec::None,
            strategy,
            phases: weights
                .iter()
                .enumerate()
                .map(|(i, w)| PhaseSpec {
                    name: format!("p{i}"),
                    weight: *w,
                    pause: None,
                    metrics: Vec::new(),
                    gates: Vec::new(),
                })
                .collect(),
            background: None,
            failure_policy: PolicyRef {
                plugin: "default-policy".into(),
                config: serde_json::json!({}),
                config_at: None,
            },
            progress_deadline_ms: None,
            on_deadline: DeadlineAction::Fail,
            rollback,
            readiness: Readiness::default(),
            args: Default::default(),
            notifications: Vec::new(),
        }
    }

    /// Apply every step of every phase, as the engine would, and list them.
    fn walk(spec: &RolloutSpec) -> Vec<(Operation, f64, Vec<String>, u32)> {
        let mut cp = Checkpoint::new(0);
        let mut out = Vec::new();
        for phase in 0..spec.phases.len() {
            cp.phase = phase;
            while let Some(step) = next_step(spec, &cp, 1, false) {
                out.push((
                    step.operation,
                    step.weight,
                    step.instances.clone(),
                    step.updated,
                ));
                cp.seq += 1;
                apply(&mut cp, &step);
                assert!(out.len() < 100, "planning does not converge");
            }
        }
        out
    }

    fn apply(cp: &mut Checkpoint, step: &Step) {
        match step.operation {
            Operation::DeployPreview => cp.preview = true,
            Operation::UpdateBatch => {
                cp.updated = step.updated;
                cp.weight = step.weight;
            }
            _ => cp.weight = step.weight,
        }
    }

    #[test]
    fn strategies_plan_their_steps() {
        let canary = spec(
            Strategy::Canary,
            &[10.0, 10.0, 50.0, 100.0],
            RollbackMode::Immediate,
        );
        assert_eq!(
            walk(&canary).iter().map(|s| (s.0, s.1)).collect::<Vec<_>>(),
            vec![
                (Operation::SetWeight, 10.0),
                (Operation::SetWeight, 50.0),
                (Operation::SetWeight, 100.0)
            ]
        );
        let rolling = spec(
            Strategy::Rolling {
                instances: (1..=5).map(|i| format!("i{i}")).collect(),
                parallelism: 2,
                delay_between_batches_ms: 0,
            },
            &[20.0, 100.0],
            RollbackMode::Immediate,
        );
        let steps = walk(&rolling);
        assert_eq!(
            steps.iter().map(|s| (s.2.clone(), s.3)).collect::<Vec<_>>(),
            vec![
                (vec!["i1".to_string()], 1),
                (vec!["i2".into(), "i3".into()], 3),
                (vec!["i4".into(), "i5".into()], 5),
            ]
        );
        let bg = spec(Strategy::BlueGreen, &[0.0, 100.0], RollbackMode::Immediate);
        assert_eq!(
            walk(&bg).iter().map(|s| s.0).collect::<Vec<_>>(),
            vec![Operation::DeployPreview, Operation::CutOver]
        );
    }

    #[test]
    fn rollbacks_walk_back_from_where_the_rollout_is() {
        let gradual = RollbackMode::Gradual { step_pause_ms: 0 };
        let canary = spec(
            Strategy::Canary,
            &[10.0, 25.0, 50.0, 100.0],
            gradual.clone(),
        );
        let mut cp = Checkpoint::new(0);
        cp.phase = 2;
        cp.weight = 50.0;
        cp.seq = 7;
        let steps = rollback_steps(&canary, &cp, 3);
        assert_eq!(
            steps.iter().map(|s| s.weight).collect::<Vec<_>>(),
            vec![25.0, 10.0, 0.0]
        );
        assert_eq!(
            steps.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(),
            vec![
                "web#3/007-rollback",
                "web#3/008-rollback",
                "web#3/009-rollback"
            ]
        );
        let immediate = spec(Strategy::Canary, &[10.0, 50.0], RollbackMode::Immediate);
        assert_eq!(rollback_steps(&immediate, &cp, 1).len(), 1);

        let rolling = spec(
            Strategy::Rolling {
                instances: (1..=5).map(|i| format!("i{i}")).collect(),
                parallelism: 2,
                delay_between_batches_ms: 0,
            },
            &[60.0, 100.0],
            gradual,
        );
        let mut cp = Checkpoint::new(0);
        cp.updated = 3;
        let steps = rollback_steps(&rolling, &cp, 1);
        assert_eq!(
            steps
                .iter()
                .map(|s| (s.instances.clone(), s.updated))
                .collect::<Vec<_>>(),
            vec![
                (vec!["i2".to_string(), "i3".to_string()], 1),
                (vec!["i1".to_string()], 0)
            ]
        );
    }

    #[test]
    fn a_reversal_never_raises_the_traffic_of_the_version_it_takes_away() {
        let canary = spec(
            Strategy::Canary,
            &[10.0, 25.0, 50.0, 100.0],
            RollbackMode::NewRollout,
        );
        let mut cp = Checkpoint::new(0);
        // (weight of the reversed run's canary, where the reversal starts, live share of
        // the version going back).
        for (weight, phase, back) in [
            (0.0, 3, 100.0),
            (10.0, 3, 90.0),
            (50.0, 2, 50.0),
            (60.0, 2, 40.0),
            (75.0, 1, 25.0),
            (80.0, 1, 20.0),
            (95.0, 0, 5.0),
            // After a success: from the first phase.
            (100.0, 0, 0.0),
        ] {
            cp.weight = weight;
            assert_eq!(reversal_start(&canary, &cp), (phase, back), "from {weight}");
            // The first step of the reversal goes to the phase's weight, never below the
            // share the version going back already has.
            assert!(canary.phases[phase].weight >= back);
        }
        // A spec whose last phase is below the live share: the last phase.
        let short = spec(Strategy::Canary, &[10.0, 20.0], RollbackMode::NewRollout);
        cp.weight = 10.0;
        assert_eq!(reversal_start(&short, &cp), (1, 90.0));
        for other in [
            Strategy::BlueGreen,
            Strategy::Rolling {
                instances: vec!["a".into(), "b".into()],
                parallelism: 1,
                delay_between_batches_ms: 0,
            },
        ] {
            let s = spec(other, &[50.0, 100.0], RollbackMode::NewRollout);
            cp.weight = 50.0;
            assert_eq!(reversal_start(&s, &cp), (0, 0.0));
        }
    }

    #[test]
    fn instance_counts_round_up() {
        for (weight, total, want) in [
            (10.0, 4, 1),
            (0.0, 4, 0),
            (50.0, 5, 3),
            (100.0, 7, 7),
            (120.0, 3, 3),
        ] {
            assert_eq!(instances_for(weight, total), want, "{weight}% of {total}");
        }
    }
}
