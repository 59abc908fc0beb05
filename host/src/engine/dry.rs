//! Dry runs of verifications, for `rollgate verify`: a phase's (or the background's)
//! metrics measured with the same plugins, backends and counting rules as a rollout, but
//! without a rollout — no store, no target, no failure policy. The run ends when every
//! metric is complete or when its window ends, whichever comes first.
//!
//! Time is either real (`Pace::Live`: measurements wait for their interval) or simulated
//! (`Pace::Simulated`: time jumps to the next due measurement, so an hour of recorded
//! metrics is verified in milliseconds).

use super::clock::Clock as _;
use super::{Plugins, measure_metric};
use crate::metrics::MetricsSource;
use crate::plugin::types::{Arg, RolloutContext};
use crate::spec::model::{MetricSpec, RolloutSpec};
use crate::verify::{Counters, MetricStatus, Recorded, VerificationRun};
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;

/// How time passes in a dry run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pace {
    /// Real time: the run sleeps until each measurement is due.
    Live,
    /// Simulated time: the clock jumps to each due measurement.
    Simulated,
}

/// Which verification of a rollout to dry-run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    /// The phase at this index.
    Phase(usize),
    /// The background verification.
    Background,
}

/// The window a dry run measures in.
#[derive(Debug, Clone)]
pub struct Window {
    /// When the verification starts (ms since the Unix epoch): the phase's start.
    pub start_ms: i64,
    /// No measurement is taken after this.
    pub end_ms: i64,
    /// How time passes.
    pub pace: Pace,
    /// What the end is called in reasons ("the end of the window (--to …)").
    pub end_name: String,
}

/// One metric's result.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MetricReport {
    /// The rollout.
    pub rollout: String,
    /// The phase's name, or `background`.
    pub verification: String,
    /// The metric.
    pub metric: String,
    /// The plugin that measured it.
    pub plugin: String,
    /// A dry-run metric is measured and shown but never decides.
    pub dry_run: bool,
    /// Where it ended.
    pub status: MetricStatus,
    /// Why, with the numbers (the counting rules' own sentence).
    pub reason: String,
    /// The tallies.
    pub counters: Counters,
    /// Every observation, in order.
    pub observations: Vec<Recorded>,
    /// From the start of the window to the metric's completion, in milliseconds.
    pub elapsed_ms: i64,
}

/// What a dry run needs besides the rollout.
pub struct DryRun<'a> {
    /// The loaded plugins.
    pub plugins: &'a Plugins,
    /// The metric backends.
    pub metrics: Arc<dyn MetricsSource>,
}

impl DryRun<'_> {
    /// Measure `which` verification of `rollout` within `window`; one report per metric in
    /// spec order. Nothing but the plugins and the metric backends is touched.
    pub async fn run(
        &self,
        rollout: &RolloutSpec,
        which: Which,
        window: &Window,
    ) -> Vec<MetricReport> {
        let (name, specs, phase_index, weight): (
            String,
            &[std::sync::Arc<MetricSpec>],
            usize,
            f64,
        ) = match which {
            Which::Phase(i) => match rollout.phases.get(i) {
                Some(p) => (p.name.clone(), &p.metrics, i, p.weight),
                None => return Vec::new(),
            },
            Which::Background => match &rollout.background {
                Some(b) => {
                    let i = b.starting_phase.min(rollout.phases.len().saturating_sub(1));
                    let weight = rollout.phases.get(i).map_or(0.0, |p| p.weight);
                    ("background".to_string(), &b.metrics, i, weight)
                }
                None => return Vec::new(),
            },
        };
        let phase_name = rollout
            .phases
            .get(phase_index)
            .map(|p| p.name.clone())
            .unwrap_or_default();
        let mut run = VerificationRun::new(specs, window.start_ms);
        let mut observations: Vec<Vec<Recorded>> = vec![Vec::new(); specs.len()];
        let mut completed: Vec<Option<i64>> = vec![None; specs.len()];
        let mut now = window.start_ms;
        while let Some((index, due)) = run.next_due() {
            if due > window.end_ms {
                break;
            }
            now = match window.pace {
                Pace::Simulated => due.max(now),
                Pace::Live => {
                    let wall = super::clock::SystemClock.now_ms();
                    if due > wall {
                        let wait = u64::try_from(due - wall).unwrap_or(0);
                        tokio::time::sleep(Duration::from_millis(wait)).await;
                    }
                    super::clock::SystemClock.now_ms()
                }
            };
            let Some(metric) = run.metrics.get(index) else {
                break;
            };
            let spec = metric.spec.clone();
            let context = RolloutContext {
                rollout: rollout.name.clone(),
                phase: phase_name.clone(),
                phase_index: u32::try_from(phase_index).unwrap_or(u32::MAX),
                phase_count: u32::try_from(rollout.phases.len()).unwrap_or(u32::MAX),
                weight,
                stable_version: rollout.stable_version.clone(),
                canary_version: rollout.canary_version.clone(),
                now_ms: now,
                phase_started_ms: window.start_ms,
                metric: spec.name.clone(),
                measurement_index: metric.counters.measurements + metric.counters.errors,
                args: spec
                    .args
                    .iter()
                    .map(|(k, v)| Arg {
                        name: k.clone(),
                        value: v.clone(),
                    })
                    .collect(),
            };
            let observation =
                measure_metric(self.plugins, self.metrics.clone(), &spec, &context).await;
            let (recorded, changes) = run.record(index, observation, now);
            if let Some(list) = observations.get_mut(index) {
                list.push(recorded);
            }
            for change in &changes {
                if change.to.is_complete()
                    && let Some(i) = specs.iter().position(|s| s.name == change.metric)
                    && let Some(slot) = completed.get_mut(i)
                {
                    *slot = Some(change.at_ms);
                }
            }
        }
        let end = match window.pace {
            Pace::Simulated => window.end_ms.max(now),
            Pace::Live => super::clock::SystemClock
                .now_ms()
                .min(window.end_ms.max(now)),
        };
        let at = window.end_name.as_str();
        let ended = format!("{at} came");
        for change in run.finish_at(end, at, &ended) {
            if let Some(i) = specs.iter().position(|s| s.name == change.metric)
                && let Some(slot) = completed.get_mut(i)
            {
                *slot = Some(change.at_ms);
            }
        }
        run.metrics
            .into_iter()
            .zip(observations)
            .zip(completed)
            .map(|((m, observations), done)| MetricReport {
                rollout: rollout.name.clone(),
                verification: name.clone(),
                metric: m.spec.name.clone(),
                plugin: m.spec.plugin.clone(),
                dry_run: m.spec.dry_run,
                status: m.status,
                reason: m.message.clone(),
                counters: m.counters,
                observations,
                elapsed_ms: done.unwrap_or(end) - window.start_ms,
            })
            .collect()
    }
}
