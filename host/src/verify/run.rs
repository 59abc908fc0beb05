//! A phase's (or the background's) verification: its metrics together, fail-fast, and the
//! one outcome the engine waits for.

use super::{MetricRun, MetricStatus, Observation, Recorded, RecordedVerdict, StatusChange};
use crate::plugin::types::MetricSummary;
use crate::spec::model::MetricSpec;
use serde::{Deserialize, Serialize};

/// Where a verification run stands as a whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunOutcome {
    /// A deciding (non-dry-run) metric is still incomplete.
    Running,
    /// Every deciding metric is complete; the worst of their statuses (successful when all
    /// are good, or when only dry-run metrics exist).
    Complete(MetricStatus),
}

/// The metrics of one verification, measured side by side. It exists to apply the rules
/// that span metrics: a deciding metric that goes bad terminates its siblings (fail-fast),
/// dry-run metrics never decide, and the run's outcome is the worst deciding status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VerificationRun {
    /// The metrics, in spec order (indices are what [`VerificationRun::record`] takes).
    pub metrics: Vec<MetricRun>,
}

impl VerificationRun {
    /// A run of `specs`, all pending, started at `started_ms`.
    pub fn new<S>(specs: &[S], started_ms: i64) -> Self
    where
        S: Clone + Into<std::sync::Arc<MetricSpec>>,
    {
        VerificationRun {
            metrics: specs
                .iter()
                .map(|s| MetricRun::new(s.clone(), started_ms))
                .collect(),
        }
    }

    /// The metric due first (lowest index on ties) and when; `None` when nothing is due
    /// any more.
    pub fn next_due(&self) -> Option<(usize, i64)> {
        self.metrics
            .iter()
            .enumerate()
            .filter_map(|(i, m)| m.due().map(|at| (i, at)))
            .min_by_key(|&(i, at)| (at, i))
    }

    /// Record an observation of metric `metric`. When it makes a deciding metric bad
    /// (failed, inconclusive, no-data, error), every other incomplete metric is terminated
    /// with a reason naming it. Returns the recorded observation and every status change,
    /// the metric's own first. An index out of range records nothing and changes nothing.
    pub fn record(
        &mut self,
        metric: usize,
        obs: Observation,
        at_ms: i64,
    ) -> (Recorded, Vec<StatusChange>) {
        let Some(run) = self.metrics.get_mut(metric) else {
            return (unrecorded(obs, at_ms), Vec::new());
        };
        let (recorded, change) = run.record(obs, at_ms);
        let decides = !run.spec.dry_run;
        let name = run.spec.name.clone();
        let mut changes = Vec::new();
        if let Some(change) = change {
            if decides && change.to.is_bad() {
                let reason = format!("sibling metric {name:?} {}", change.to.as_sibling_cause());
                changes.push(change);
                for (i, other) in self.metrics.iter_mut().enumerate() {
                    if i != metric
                        && let Some(c) = other.terminate(at_ms, &reason)
                    {
                        changes.push(c);
                    }
                }
            } else {
                changes.push(change);
            }
        }
        (recorded, changes)
    }

    /// Terminate every incomplete metric with `terminated: {reason}` (the verification is
    /// abandoned: the phase was decided otherwise, the rollout is rolling back, ...).
    pub fn stop(&mut self, at_ms: i64, reason: &str) -> Vec<StatusChange> {
        self.metrics
            .iter_mut()
            .filter_map(|m| m.terminate(at_ms, reason))
            .collect()
    }

    /// End the verification because the rollout reached its end: indefinite metrics still
    /// running healthy become successful, any other incomplete metric is terminated.
    pub fn finish(&mut self, at_ms: i64) -> Vec<StatusChange> {
        self.metrics
            .iter_mut()
            .filter_map(|m| m.finish(at_ms))
            .collect()
    }

    /// [`VerificationRun::finish`] for another end than the rollout's; see
    /// [`MetricRun::finish_at`].
    pub fn finish_at(&mut self, at_ms: i64, at: &str, ended: &str) -> Vec<StatusChange> {
        self.metrics
            .iter_mut()
            .filter_map(|m| m.finish_at(at_ms, at, ended))
            .collect()
    }

    /// Running while a deciding metric is incomplete; then the worst deciding status
    /// (successful < terminated < no-data < inconclusive < error < failed). With only
    /// dry-run metrics: running until they complete, then successful.
    pub fn outcome(&self) -> RunOutcome {
        let deciding: Vec<_> = self.metrics.iter().filter(|m| !m.spec.dry_run).collect();
        if deciding.is_empty() {
            return if self.metrics.iter().all(|m| m.status.is_complete()) {
                RunOutcome::Complete(MetricStatus::Successful)
            } else {
                RunOutcome::Running
            };
        }
        if deciding.iter().any(|m| !m.status.is_complete()) {
            return RunOutcome::Running;
        }
        let worst = deciding
            .iter()
            .map(|m| m.status)
            .max_by_key(|s| s.severity())
            .unwrap_or(MetricStatus::Successful);
        RunOutcome::Complete(worst)
    }

    /// Every metric as the failure policy sees it, in spec order.
    pub fn summaries(&self) -> Vec<MetricSummary> {
        self.metrics.iter().map(MetricRun::summary).collect()
    }
}

/// The [`Recorded`] handed back for an observation of a metric that does not exist.
fn unrecorded(obs: Observation, at_ms: i64) -> Recorded {
    match obs {
        Observation::Measured(m) => Recorded {
            index: 0,
            at_ms,
            verdict: RecordedVerdict::from(m.verdict),
            value: m.value,
            message: m.message,
            details: m.details,
        },
        Observation::Error(message) => Recorded {
            index: 0,
            at_ms,
            verdict: RecordedVerdict::Error,
            value: None,
            message,
            details: "{}".to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::super::metric::tests::{error, every, fail, obs, pass, spec};
    use super::*;
    use crate::plugin::types::Verdict;
    use crate::spec::model::NoDataAction;
    use proptest::prelude::*;

    fn dry(mut s: MetricSpec) -> MetricSpec {
        s.dry_run = true;
        s
    }

    #[test]
    fn fail_fast_terminates_siblings() {
        let specs = [
            every("errors", Some(5)),
            every("latency", Some(5)),
            dry(every("shadow", Some(5))),
            spec("done"),
        ];
        let mut run = VerificationRun::new(&specs, 0);
        run.record(3, pass(), 1);
        run.record(0, pass(), 1);
        let (_, changes) = run.record(1, fail(), 2);
        let got: Vec<_> = changes
            .iter()
            .map(|c| (c.metric.as_str(), c.to, c.reason.as_str()))
            .collect();
        let latency = "failed: 1 failure > failureLimit 0, last value 0.5";
        let sibling = "terminated: sibling metric \"latency\" failed";
        assert_eq!(
            got,
            vec![
                ("latency", MetricStatus::Failed, latency),
                ("errors", MetricStatus::Terminated, sibling),
                ("shadow", MetricStatus::Terminated, sibling),
            ]
        );
        assert_eq!(run.metrics[3].status, MetricStatus::Successful);
        assert_eq!(run.outcome(), RunOutcome::Complete(MetricStatus::Failed));
        assert_eq!(run.next_due(), None);
    }

    #[test]
    fn dry_run_never_decides() {
        let specs = [dry(spec("shadow")), spec("real")];
        let mut run = VerificationRun::new(&specs, 0);
        let (_, changes) = run.record(0, fail(), 1);
        assert_eq!(changes.len(), 1, "no fail-fast from a dry-run metric");
        assert_eq!(run.metrics[1].status, MetricStatus::Pending);
        assert_eq!(run.outcome(), RunOutcome::Running);
        run.record(1, pass(), 2);
        assert_eq!(
            run.outcome(),
            RunOutcome::Complete(MetricStatus::Successful)
        );
    }

    #[test]
    fn outcome_takes_the_worst() {
        use MetricStatus::*;
        // Force each metric's status directly: the ordering is what is under test.
        let cases: Vec<(Vec<(MetricStatus, bool)>, RunOutcome)> = vec![
            (vec![], RunOutcome::Complete(Successful)),
            (
                vec![(Successful, false), (Running, false)],
                RunOutcome::Running,
            ),
            (
                vec![(Successful, false), (Pending, true)],
                RunOutcome::Complete(Successful),
            ),
            (vec![(Pending, true)], RunOutcome::Running),
            (vec![(Failed, true)], RunOutcome::Complete(Successful)),
            (
                vec![(Successful, false), (Terminated, false)],
                RunOutcome::Complete(Terminated),
            ),
            (
                vec![(Terminated, false), (NoData, false)],
                RunOutcome::Complete(NoData),
            ),
            (
                vec![(Inconclusive, false), (NoData, false)],
                RunOutcome::Complete(Inconclusive),
            ),
            (
                vec![(Inconclusive, false), (Error, false)],
                RunOutcome::Complete(Error),
            ),
            (
                vec![(Failed, false), (Error, false), (Successful, false)],
                RunOutcome::Complete(Failed),
            ),
            (
                vec![(Successful, false), (Failed, true)],
                RunOutcome::Complete(Successful),
            ),
        ];
        for (statuses, want) in cases {
            let specs: Vec<_> = statuses
                .iter()
                .enumerate()
                .map(|(i, (_, d))| MetricSpec {
                    dry_run: *d,
                    ..spec(&format!("m{i}"))
                })
                .collect();
            let mut run = VerificationRun::new(&specs, 0);
            for (m, (status, _)) in run.metrics.iter_mut().zip(&statuses) {
                m.status = *status;
            }
            assert_eq!(run.outcome(), want, "{statuses:?}");
        }
    }

    #[test]
    fn next_due_is_the_earliest() {
        let specs = [
            MetricSpec {
                initial_delay_ms: 5_000,
                ..every("late", Some(2))
            },
            every("a", Some(2)),
            every("b", Some(2)),
        ];
        let mut run = VerificationRun::new(&specs, 100);
        assert_eq!(run.next_due(), Some((1, 100)));
        run.record(1, pass(), 100);
        assert_eq!(run.next_due(), Some((2, 100)));
        run.record(2, error(), 200);
        assert_eq!(run.next_due(), Some((0, 5_100)));
        run.record(0, pass(), 5_100);
        assert_eq!(run.next_due(), Some((2, 10_200)));
    }

    #[test]
    fn stop_and_finish() {
        let specs = [every("bg", None), every("counted", Some(3)), spec("once")];
        let mut run = VerificationRun::new(&specs, 0);
        run.record(0, pass(), 1);
        run.record(1, pass(), 1);
        run.record(2, pass(), 1);
        let mut finished = run.clone();
        let changes = run.stop(5, "the rollout is rolling back");
        let got: Vec<_> = changes.iter().map(|c| (c.metric.as_str(), c.to)).collect();
        assert_eq!(
            got,
            vec![
                ("bg", MetricStatus::Terminated),
                ("counted", MetricStatus::Terminated)
            ]
        );
        assert_eq!(changes[0].reason, "terminated: the rollout is rolling back");
        assert_eq!(
            run.outcome(),
            RunOutcome::Complete(MetricStatus::Terminated)
        );

        let changes = finished.finish(5);
        let got: Vec<_> = changes.iter().map(|c| (c.metric.as_str(), c.to)).collect();
        assert_eq!(
            got,
            vec![
                ("bg", MetricStatus::Successful),
                ("counted", MetricStatus::Terminated)
            ]
        );
    }

    #[test]
    fn out_of_range_index_records_nothing() {
        let mut run = VerificationRun::new(&[spec("m")], 0);
        let before = run.clone();
        let (recorded, changes) = run.record(7, fail(), 1);
        assert_eq!(recorded.verdict, RecordedVerdict::Fail);
        assert!(changes.is_empty());
        assert_eq!(run, before);
    }

    #[test]
    fn summaries_in_spec_order() {
        let mut run = VerificationRun::new(&[spec("a"), dry(spec("b"))], 0);
        run.record(1, obs(Verdict::NoData, None, ""), 1);
        let s = run.summaries();
        assert_eq!(s.len(), 2);
        assert_eq!((s[0].name.as_str(), s[1].name.as_str()), ("a", "b"));
        assert_eq!(s[1].no_data, 1);
        assert!(s[1].dry_run);
    }

    /// What the property tests feed in: 0 pass, 1 fail, 2 inconclusive, 3 no-data, 4 error.
    fn observation(kind: u8) -> Observation {
        match kind {
            0 => pass(),
            1 => fail(),
            2 => obs(Verdict::Inconclusive, Some(0.3), "between"),
            3 => obs(Verdict::NoData, None, "no series"),
            _ => error(),
        }
    }

    fn any_spec() -> impl Strategy<Value = MetricSpec> {
        (
            (
                prop::option::of(0u64..120_000),
                prop::option::of(0u32..8),
                -1i64..4,
                0u32..4,
                0u32..5,
            ),
            (
                prop::option::of(0u32..4),
                prop::option::of(0u32..4),
                0u32..4,
                0u32..4,
                0u32..4,
                any::<bool>(),
            ),
        )
            .prop_map(
                |(
                    (interval, count, failure_limit, inconclusive_limit, errors),
                    (cfl, csl, no_data, no_data_limit, retention, dry_run),
                )| MetricSpec {
                    interval_ms: interval,
                    // The loader refuses a count without an interval.
                    count: interval.and(count),
                    failure_limit,
                    inconclusive_limit,
                    consecutive_error_limit: errors,
                    consecutive_failure_limit: cfl,
                    consecutive_success_limit: csl,
                    no_data: [
                        NoDataAction::NoData,
                        NoDataAction::Inconclusive,
                        NoDataAction::Fail,
                        NoDataAction::Pass,
                    ][no_data as usize],
                    no_data_limit,
                    retention,
                    dry_run,
                    ..spec("m")
                },
            )
    }

    proptest! {
        #[test]
        fn metric_properties(
            spec in any_spec(),
            seq in prop::collection::vec(0u8..5, 0..40),
            terminate_at in prop::option::of(0usize..40),
        ) {
            let mut run = MetricRun::new(spec.clone(), 0);
            let mut completed: Option<MetricStatus> = None;
            for (i, kind) in seq.into_iter().enumerate() {
                if terminate_at == Some(i) {
                    run.terminate(i as i64, "stopped");
                }
                let was_complete = run.status.is_complete();
                let before = run.counters;
                let (recorded, change) = run.record(observation(kind), i as i64);
                if !was_complete {
                    prop_assert_eq!(recorded.index as usize, i);
                }
                if let Some(change) = &change {
                    prop_assert_ne!(change.from, change.to);
                    prop_assert!(change.reason.starts_with(change.to.name()));
                }
                let c = run.counters;
                // (1) counters are consistent.
                prop_assert_eq!(
                    c.measurements,
                    c.passes + c.failures + c.inconclusives + c.no_data
                );
                if !was_complete {
                    prop_assert_eq!(c.measurements + c.errors, i as u32 + 1);
                    prop_assert_eq!(run.last.as_deref(), Some(&recorded));
                }
                // (2) once complete the status never changes and nothing is due;
                // (4) terminated stays terminated.
                if let Some(done) = completed {
                    prop_assert_eq!(run.status, done);
                    prop_assert!(change.is_none());
                }
                if run.status.is_complete() {
                    prop_assert_eq!(run.due(), None);
                    completed = Some(run.status);
                } else {
                    prop_assert!(run.due().is_some());
                    prop_assert_eq!(run.status, MetricStatus::Running);
                }
                // (3) never successful while failures exceed a failure limit.
                if run.status == MetricStatus::Successful && spec.failure_limit >= 0 {
                    prop_assert!(i64::from(c.failures) <= spec.failure_limit);
                }
                // (6) with failureLimit 0 or more, failed means a failure limit was
                // crossed (a missing success streak alone is inconclusive).
                if change.as_ref().is_some_and(|ch| ch.to == MetricStatus::Failed)
                    && spec.failure_limit >= 0
                {
                    let by_total = i64::from(c.failures) > spec.failure_limit;
                    let in_a_row = spec
                        .consecutive_failure_limit
                        .is_some_and(|n| n > 0 && c.consecutive_failures >= n);
                    prop_assert!(by_total || in_a_row, "{:?}", change);
                }
                // (5) an error is not a measurement: it leaves the fail streak as it was
                // and ends the pass streak.
                if !was_complete && recorded.verdict == RecordedVerdict::Error {
                    prop_assert_eq!(c.consecutive_failures, before.consecutive_failures);
                    prop_assert_eq!(c.consecutive_successes, 0);
                    prop_assert_eq!(c.consecutive_errors, before.consecutive_errors + 1);
                }
            }
        }

        #[test]
        fn run_properties(
            specs in prop::collection::vec(any_spec(), 0..4),
            steps in prop::collection::vec((0usize..4, 0u8..5), 0..40),
        ) {
            let specs: Vec<_> = specs
                .into_iter()
                .enumerate()
                .map(|(i, s)| MetricSpec { name: format!("m{i}"), ..s })
                .collect();
            let mut run = VerificationRun::new(&specs, 0);
            for (t, (metric, kind)) in steps.into_iter().enumerate() {
                let before: Vec<_> = run.metrics.iter().map(|m| m.status).collect();
                let (_, changes) = run.record(metric, observation(kind), t as i64);
                for (m, was) in run.metrics.iter().zip(&before) {
                    if was.is_complete() {
                        prop_assert_eq!(m.status, *was);
                    }
                }
                // A deciding metric gone bad leaves nothing incomplete.
                let bad = run.metrics.iter().any(|m| !m.spec.dry_run && m.status.is_bad());
                if bad {
                    prop_assert!(run.metrics.iter().all(|m| m.status.is_complete()));
                    prop_assert!(run.next_due().is_none());
                    prop_assert!(matches!(run.outcome(), RunOutcome::Complete(s) if s.is_bad()));
                }
                for c in &changes {
                    if c.to == MetricStatus::Terminated {
                        prop_assert!(c.reason.starts_with("terminated: sibling metric"));
                    }
                }
            }
            let mut stopped = run.clone();
            stopped.stop(1_000, "end");
            prop_assert!(stopped.metrics.iter().all(|m| m.status != MetricStatus::Running
                && m.status != MetricStatus::Pending));
            prop_assert!(!matches!(stopped.outcome(), RunOutcome::Running));
            run.finish(1_000);
            prop_assert!(!matches!(run.outcome(), RunOutcome::Running));
        }
    }
}
