//! Verification and measuring: starting a phase's (and the background's) verification
//! runs, taking the measurement that is due, recording it, and stopping runs that are cut
//! short. What a measurement means is [`crate::verify`]'s; what to do about it is the
//! policy's ([`super::decision`]).

use super::failure::{ErrorCause, Failure, FailureKind};
use super::state::State;
use super::{ENGINE_ACTOR, EngineError, Plugins, Run};
use crate::metrics::MetricsSource;
use crate::plugin::types::RolloutContext;
use crate::plugin::{MetricsBinding, PluginError};
use crate::spec::model::MetricSpec;
use crate::store::MeasurementRow;
use crate::verify::{MetricStatus, Observation, RunOutcome, StatusChange, VerificationRun};
use std::sync::Arc;
use tracing::Instrument;

/// Take one measurement of `spec` with its plugin, bound to the metric's backends: what a
/// verification does each time a metric is due (the engine, and `rollgate verify`). A
/// missing plugin or a failing call is an `error` observation, never a pass.
pub async fn measure_metric(
    plugins: &Plugins,
    metrics: Arc<dyn MetricsSource>,
    spec: &MetricSpec,
    context: &RolloutContext,
) -> Observation {
    measure_explained(plugins, metrics, spec, context).await.0
}

/// [`measure_metric`], and for an error, whose it was ([`ErrorCause`]): a backend's when a
/// query failed during the call (or the call's time ran out waiting on queries), the
/// plugin's own error (`err` from `measure`) otherwise a metric error, anything else
/// (not loaded, a trap, a limit, a broken result) the plugin's.
pub(super) async fn measure_explained(
    plugins: &Plugins,
    metrics: Arc<dyn MetricsSource>,
    spec: &MetricSpec,
    context: &RolloutContext,
) -> (Observation, Option<ErrorCause>) {
    let Some(plugin) = plugins.get(&spec.plugin) else {
        return (
            Observation::Error(format!("plugin {:?} is not loaded", spec.plugin)),
            Some(ErrorCause::Plugin),
        );
    };
    let binding = MetricsBinding::new(metrics, spec.backend.iter().cloned());
    let watch = binding.clone();
    // Boxed: a plugin call's future (wasmtime's, the backends') is large, and would
    // otherwise be part of every run driver's state for the run's whole life.
    match Box::pin(plugin.measure(&spec.config.to_string(), context, Some(binding))).await {
        Ok(m) => (Observation::Measured(m), None),
        Err(e) => {
            let cause = match (watch.failed_backend(), &e) {
                (Some(backend), _) => ErrorCause::Backend(Some(backend)),
                (None, PluginError::Timeout { field, .. }) if *field == "queryTimeout" => {
                    ErrorCause::Backend(spec.backend.clone())
                }
                (None, PluginError::Guest { .. }) => ErrorCause::Metric,
                (None, _) => ErrorCause::Plugin,
            };
            (Observation::Error(e.to_string()), Some(cause))
        }
    }
}

/// Which verification run a measurement belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Which {
    Phase,
    Background,
}

impl Run<'_> {
    pub(super) fn stop_verification(&mut self, reason: &str) {
        let now = self.now();
        let changes = match self.cp.verification.as_mut() {
            Some(v) => v.stop(now, reason),
            None => Vec::new(),
        };
        self.audit_changes(&changes);
    }

    pub(super) fn audit_changes(&mut self, changes: &[StatusChange]) {
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

    /// Record a failure for each deciding metric among `changes` that went bad: its kind
    /// (an error is the plugin's, a backend's or the metric's, by `cause`), the value, and
    /// the limit that decided it. Dry-run metrics never decide, so they never fail a run.
    fn metric_failures(
        &mut self,
        spec: &MetricSpec,
        changes: &[StatusChange],
        cause: Option<&ErrorCause>,
    ) {
        if spec.dry_run {
            return;
        }
        let now = self.now();
        for c in changes.iter().filter(|c| c.metric == spec.name) {
            let kind = match c.to {
                MetricStatus::Failed => FailureKind::MetricFailed,
                MetricStatus::Inconclusive => FailureKind::MetricInconclusive,
                MetricStatus::NoData => FailureKind::MetricNoData,
                MetricStatus::Error => cause.map_or(FailureKind::MetricError, ErrorCause::kind),
                _ => continue,
            };
            let backend = match cause {
                Some(ErrorCause::Backend(Some(b))) if c.to == MetricStatus::Error => {
                    Some(b.clone())
                }
                _ => spec.backend.clone(),
            };
            let value = if c.to == MetricStatus::Error {
                None
            } else {
                c.last_value
            };
            self.record_failure(
                Failure::new(kind, format!("metric {:?}: {}", c.metric, c.reason), now)
                    .metric(&c.metric)
                    .value(value)
                    .limit(c.limit.clone())
                    .plugin(&spec.plugin)
                    .backend(backend),
            );
        }
    }

    /// One verification step: start the runs, decide on a complete run, or take the next
    /// measurement that is due.
    pub(super) async fn verify(&mut self) -> Result<(), EngineError> {
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
            return Box::pin(self.commit(&[], &[])).await;
        }
        let (outcome, due) = match &self.cp.verification {
            Some(v) => (v.outcome(), v.next_due()),
            None => (RunOutcome::Running, None),
        };
        if let RunOutcome::Complete(_) = outcome {
            return Box::pin(self.decide(true)).await;
        }
        match due {
            Some((metric, at)) => {
                if at > now {
                    return self.wait(Some(at)).await.map(|_| ());
                }
                Box::pin(self.measure(Which::Phase, metric)).await
            }
            // Running with nothing due should not happen; re-check after a wait.
            None => self.wait(Some(now + 1_000)).await.map(|_| ()),
        }
    }

    pub(super) async fn measure(&mut self, which: Which, index: usize) -> Result<(), EngineError> {
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
        let (observation, cause) =
            measure_explained(&self.plugins, self.metrics.clone(), &spec, &context)
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
        self.metric_failures(&spec, &changes, cause.as_ref());
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
}
