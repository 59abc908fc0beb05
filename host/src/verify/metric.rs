//! One metric's run: its counters, its schedule, its latest observations and its status.

use super::{
    Counters, ERROR_RETRY_MS, MetricStatus, Observation, Recorded, RecordedVerdict, StatusChange,
    counted,
};
use crate::plugin::types::{MetricSummary, Verdict};
use crate::spec::model::{MetricSpec, NoDataAction};
use serde::{Deserialize, Serialize};

/// The state of one metric within a verification run. It exists so that everything the
/// counting rules need — counters, streaks, the next due time, the latest observations —
/// sits in one serialisable value the engine can checkpoint and resume between
/// measurements. Its size does not grow with the number of observations: the history of
/// measurements is kept by the store (with the metric's retention), not in the checkpoint
/// that is rewritten on every commit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MetricRun {
    /// The metric as resolved from the spec.
    pub spec: MetricSpec,
    /// Where it is.
    pub status: MetricStatus,
    /// The numbers its status is decided from.
    pub counters: Counters,
    /// When the verification run started (ms since the Unix epoch).
    pub started_ms: i64,
    /// When the next measurement is due; `None` once complete.
    pub next_due_ms: Option<i64>,
    /// The latest observation, whatever it was.
    pub last: Option<Recorded>,
    /// The latest observation that was a measurement (not an error): the source of the
    /// summary's last verdict and last value.
    #[serde(default)]
    pub last_measured: Option<Recorded>,
    /// The reason of the last status change.
    pub message: String,
}

impl MetricRun {
    /// A pending metric whose first measurement is due `initial_delay` after `started_ms`.
    pub fn new(spec: MetricSpec, started_ms: i64) -> Self {
        let first = started_ms.saturating_add(ms_to_i64(spec.initial_delay_ms));
        MetricRun {
            spec,
            status: MetricStatus::Pending,
            counters: Counters::default(),
            started_ms,
            next_due_ms: Some(first),
            last: None,
            last_measured: None,
            message: "pending: no measurement yet".to_string(),
        }
    }

    /// When the next measurement is due; `None` once the metric is complete.
    pub fn due(&self) -> Option<i64> {
        if self.status.is_complete() {
            None
        } else {
            self.next_due_ms
        }
    }

    /// Whether the metric runs until stopped (`interval` set, no `count`).
    pub fn is_indefinite(&self) -> bool {
        self.target_count().is_none()
    }

    /// The measurements that complete the metric: `count`, 1 without an interval, none
    /// (run until stopped) with an interval and no count.
    fn target_count(&self) -> Option<u32> {
        match (self.spec.count, self.spec.interval_ms) {
            (Some(count), _) => Some(count),
            (None, None) => Some(1),
            (None, Some(_)) => None,
        }
    }

    /// Record one observation and re-assess the status.
    ///
    /// An observation arriving after the metric completed (a measurement that was in
    /// flight when a sibling decided the phase) is handed back as recorded, with the index
    /// it would have had, but neither counted nor kept: the status, its reason and the
    /// counters behind it stay final and consistent.
    pub fn record(&mut self, obs: Observation, at_ms: i64) -> (Recorded, Option<StatusChange>) {
        let index = self
            .counters
            .measurements
            .saturating_add(self.counters.errors);
        let recorded = self.classify(obs, index, at_ms);
        if self.status.is_complete() {
            self.next_due_ms = None;
            return (recorded, None);
        }
        self.counters.count(recorded.verdict);
        if recorded.verdict != RecordedVerdict::Error {
            self.last_measured = Some(recorded.clone());
        }
        self.last = Some(recorded.clone());
        let (status, reason, limit) = match self.assess() {
            Some(done) => done,
            None => (MetricStatus::Running, self.running_reason(&recorded), None),
        };
        self.next_due_ms = if status.is_complete() {
            None
        } else {
            Some(self.schedule(at_ms, recorded.verdict))
        };
        let change = self
            .change_to(status, at_ms, reason)
            .map(|change| StatusChange { limit, ..change });
        (recorded, change)
    }

    /// Stop an incomplete metric: it becomes terminated with `terminated: {reason}`.
    /// A complete metric keeps its status (`None`).
    pub fn terminate(&mut self, at_ms: i64, reason: &str) -> Option<StatusChange> {
        if self.status.is_complete() {
            return None;
        }
        self.next_due_ms = None;
        self.change_to(
            MetricStatus::Terminated,
            at_ms,
            format!("terminated: {reason}"),
        )
    }

    /// End the metric because the rollout reached its end: an indefinite (background)
    /// metric that is running with at least one measurement and no limit exceeded is
    /// successful; any other incomplete metric is terminated.
    pub fn finish(&mut self, at_ms: i64) -> Option<StatusChange> {
        self.finish_at(at_ms, "the end of the rollout", "the rollout ended")
    }

    /// [`MetricRun::finish`] for another end than the rollout's (the end of a dry run's
    /// window): `at` says where it stopped ("the end of the window"), `ended` what ended
    /// ("the window ended").
    pub fn finish_at(&mut self, at_ms: i64, at: &str, ended: &str) -> Option<StatusChange> {
        if self.status.is_complete() {
            return None;
        }
        if self.is_indefinite()
            && self.status == MetricStatus::Running
            && self.counters.measurements > 0
        {
            self.next_due_ms = None;
            let reason = format!(
                "successful: stopped at {at} after {}, {}{}",
                counted(self.counters.measurements, "measurement", "measurements"),
                self.counters.tally(),
                self.value_tail()
            );
            return self.change_to(MetricStatus::Successful, at_ms, reason);
        }
        let taken = match self.spec.count {
            Some(count) => format!("{} of {count} measurements", self.counters.measurements),
            None => counted(self.counters.measurements, "measurement", "measurements"),
        };
        let why = format!("{ended} before the metric completed ({taken} taken)");
        self.terminate(at_ms, &why)
    }

    /// The metric as the failure policy sees it.
    pub fn summary(&self) -> MetricSummary {
        let c = &self.counters;
        MetricSummary {
            name: self.spec.name.clone(),
            status: self.status.into(),
            dry_run: self.spec.dry_run,
            measurements: c.measurements,
            passes: c.passes,
            failures: c.failures,
            inconclusives: c.inconclusives,
            no_data: c.no_data,
            errors: c.errors,
            consecutive_errors: c.consecutive_errors,
            last_verdict: self
                .last_measured
                .as_ref()
                .and_then(|r| r.verdict.to_verdict()),
            last_value: self.last_value(),
            message: without_status(&self.message).to_string(),
        }
    }

    /// The last value measured, if any.
    pub fn last_value(&self) -> Option<f64> {
        self.last_measured.as_ref().and_then(|r| r.value)
    }

    /// Turn an observation into what it counts as, applying the `noData` mapping.
    fn classify(&self, obs: Observation, index: u32, at_ms: i64) -> Recorded {
        match obs {
            Observation::Error(message) => Recorded {
                index,
                at_ms,
                verdict: RecordedVerdict::Error,
                value: None,
                message,
                details: "{}".to_string(),
            },
            Observation::Measured(m) => {
                let (verdict, note) = match (m.verdict, self.spec.no_data) {
                    (Verdict::NoData, NoDataAction::Inconclusive) => {
                        (RecordedVerdict::Inconclusive, Some("inconclusive"))
                    }
                    (Verdict::NoData, NoDataAction::Fail) => (RecordedVerdict::Fail, Some("fail")),
                    (Verdict::NoData, NoDataAction::Pass) => (RecordedVerdict::Pass, Some("pass")),
                    (v, _) => (RecordedVerdict::from(v), None),
                };
                let message = match note {
                    None => m.message,
                    Some(as_) if m.message.is_empty() => format!("no data, counted as {as_}"),
                    Some(as_) => format!("{} (no data, counted as {as_})", m.message),
                };
                Recorded {
                    index,
                    at_ms,
                    verdict,
                    value: m.value,
                    message,
                    details: m.details,
                }
            }
        }
    }

    /// The completing status, its reason and the limit behind it (`failureLimit 2`), checked
    /// in a fixed order so the first match is the exact cause; `None` while no rule
    /// completes the metric.
    fn assess(&self) -> Option<(MetricStatus, String, Option<String>)> {
        let c = &self.counters;
        let s = &self.spec;
        if c.consecutive_errors > s.consecutive_error_limit {
            let last = self.last.as_ref().map_or("", |r| r.message.as_str());
            return Some((
                MetricStatus::Error,
                format!(
                    "error: {} > consecutiveErrorLimit {}, last: {last}",
                    counted(
                        c.consecutive_errors,
                        "consecutive error",
                        "consecutive errors"
                    ),
                    s.consecutive_error_limit
                ),
                Some(format!(
                    "consecutiveErrorLimit {}",
                    s.consecutive_error_limit
                )),
            ));
        }
        if s.failure_limit >= 0 && i64::from(c.failures) > s.failure_limit {
            return Some((
                MetricStatus::Failed,
                format!(
                    "failed: {} > failureLimit {}{}",
                    counted(c.failures, "failure", "failures"),
                    s.failure_limit,
                    self.evidence()
                ),
                Some(format!("failureLimit {}", s.failure_limit)),
            ));
        }
        if let Some(n) = s.consecutive_failure_limit.filter(|n| *n > 0)
            && c.consecutive_failures >= n
        {
            return Some((
                MetricStatus::Failed,
                format!(
                    "failed: {} >= consecutiveFailureLimit {n}{}",
                    counted(
                        c.consecutive_failures,
                        "consecutive failure",
                        "consecutive failures"
                    ),
                    self.evidence()
                ),
                Some(format!("consecutiveFailureLimit {n}")),
            ));
        }
        if c.inconclusives > s.inconclusive_limit {
            return Some((
                MetricStatus::Inconclusive,
                format!(
                    "inconclusive: {} inconclusive > inconclusiveLimit {}{}",
                    c.inconclusives,
                    s.inconclusive_limit,
                    self.evidence()
                ),
                Some(format!("inconclusiveLimit {}", s.inconclusive_limit)),
            ));
        }
        if c.no_data > s.no_data_limit {
            return Some((
                MetricStatus::NoData,
                format!(
                    "no-data: {} no-data > noDataLimit {}{}",
                    c.no_data,
                    s.no_data_limit,
                    self.evidence()
                ),
                Some(format!("noDataLimit {}", s.no_data_limit)),
            ));
        }
        let success_limit = s.consecutive_success_limit.filter(|n| *n > 0);
        if let Some(n) = success_limit
            && c.consecutive_successes >= n
        {
            return Some((
                MetricStatus::Successful,
                format!(
                    "successful: {} >= consecutiveSuccessLimit {n} after {}, {}{}",
                    counted(
                        c.consecutive_successes,
                        "consecutive pass",
                        "consecutive passes"
                    ),
                    counted(c.measurements, "measurement", "measurements"),
                    c.tally(),
                    self.value_tail()
                ),
                None,
            ));
        }
        let count = self.target_count()?;
        if c.measurements < count.max(1) {
            return None;
        }
        Some(match success_limit {
            // Argo Rollouts' rule: while failureLimit applies (0 or more) and was not
            // exceeded, a missing success streak is not proof of failure — inconclusive
            // (the default policy pauses for a person). Only with failureLimit -1, where
            // the streak is the one way to pass, is it a failure.
            Some(n) if s.failure_limit >= 0 => (
                MetricStatus::Inconclusive,
                format!(
                    "inconclusive: count {count} reached without {n} passes in a row (consecutiveSuccessLimit {n}) and within failureLimit {}, {}{}",
                    s.failure_limit,
                    c.tally(),
                    self.value_tail()
                ),
                Some(format!("consecutiveSuccessLimit {n}")),
            ),
            Some(n) => (
                MetricStatus::Failed,
                format!(
                    "failed: count {count} reached without {n} passes in a row (consecutiveSuccessLimit {n}, failureLimit -1), {}{}",
                    c.tally(),
                    self.value_tail()
                ),
                Some(format!("consecutiveSuccessLimit {n}")),
            ),
            None => (
                MetricStatus::Successful,
                format!(
                    "successful: {} of {}, {}{}",
                    c.measurements,
                    counted(count, "measurement", "measurements"),
                    c.tally(),
                    self.value_tail()
                ),
                None,
            ),
        })
    }

    /// The reason of Pending → Running.
    fn running_reason(&self, first: &Recorded) -> String {
        if first.verdict == RecordedVerdict::Error {
            format!(
                "running: first attempt failed with an error: {}",
                first.message
            )
        } else {
            format!(
                "running: first result {}{}",
                first.verdict,
                self.value_tail()
            )
        }
    }

    /// When the next measurement is due after one recorded at `at_ms`.
    fn schedule(&self, at_ms: i64, verdict: RecordedVerdict) -> i64 {
        let interval = self.spec.interval_ms;
        let wait = if verdict == RecordedVerdict::Error {
            interval.map_or(ERROR_RETRY_MS, |i| i.min(ERROR_RETRY_MS))
        } else {
            // Without an interval only `count` > 1 keeps a metric running after a
            // measurement (the loader refuses that); measure again at once.
            interval.unwrap_or(0)
        };
        at_ms.saturating_add(ms_to_i64(wait))
    }

    /// `, last value 0.071 (the plugin said: ...)` for the latest observation.
    fn evidence(&self) -> String {
        let Some(last) = &self.last else {
            return String::new();
        };
        let mut out = match last.value {
            Some(v) => format!(", last value {v}"),
            None => String::new(),
        };
        if !last.message.is_empty() {
            out.push_str(&format!(" (the plugin said: {})", last.message));
        }
        out
    }

    /// `, last value 0.01` when a value was measured.
    fn value_tail(&self) -> String {
        self.last_value()
            .map(|v| format!(", last value {v}"))
            .unwrap_or_default()
    }

    /// Move to `to` (if it differs), remember the reason, and describe the change.
    fn change_to(&mut self, to: MetricStatus, at_ms: i64, reason: String) -> Option<StatusChange> {
        let from = self.status;
        if from == to {
            return None;
        }
        self.status = to;
        self.message = reason.clone();
        Some(StatusChange {
            metric: self.spec.name.clone(),
            from,
            to,
            at_ms,
            reason,
            counters: self.counters,
            last_value: self.last_value(),
            limit: None,
        })
    }
}

/// Milliseconds as `i64`, saturating.
fn ms_to_i64(ms: u64) -> i64 {
    i64::try_from(ms).unwrap_or(i64::MAX)
}

/// A reason without its leading `status: ` word: the policy names the status itself, so
/// its explanation reads "metric m failed: 1 failure > …" rather than "failed: failed: …".
fn without_status(message: &str) -> &str {
    const WORDS: [&str; 8] = [
        "pending: ",
        "running: ",
        "successful: ",
        "failed: ",
        "inconclusive: ",
        "error: ",
        "no-data: ",
        "terminated: ",
    ];
    WORDS
        .iter()
        .find_map(|w| message.strip_prefix(w))
        .unwrap_or(message)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::plugin::types::Measurement;
    use std::collections::BTreeMap;

    /// A metric with the spec's defaults: one measurement, failureLimit 0,
    /// inconclusiveLimit 0, consecutiveErrorLimit 4, noData no-data (limit 0), retention 10.
    pub(crate) fn spec(name: &str) -> MetricSpec {
        MetricSpec {
            name: name.to_string(),
            template: None,
            plugin: "threshold".to_string(),
            backend: None,
            config: serde_json::Value::Null,
            interval_ms: None,
            count: None,
            initial_delay_ms: 0,
            failure_limit: 0,
            inconclusive_limit: 0,
            consecutive_error_limit: 4,
            consecutive_failure_limit: None,
            consecutive_success_limit: None,
            no_data: NoDataAction::NoData,
            no_data_limit: 0,
            dry_run: false,
            retention: 10,
            args: BTreeMap::new(),
            config_at: None,
        }
    }

    /// `spec` measuring every 60 s, `count` times (`None`: until stopped).
    pub(crate) fn every(name: &str, count: Option<u32>) -> MetricSpec {
        MetricSpec {
            interval_ms: Some(60_000),
            count,
            ..spec(name)
        }
    }

    pub(crate) fn obs(verdict: Verdict, value: Option<f64>, message: &str) -> Observation {
        Observation::Measured(Measurement {
            verdict,
            value,
            message: message.to_string(),
            details: "{}".to_string(),
        })
    }

    pub(crate) fn pass() -> Observation {
        obs(Verdict::Pass, Some(0.01), "")
    }
    pub(crate) fn fail() -> Observation {
        obs(Verdict::Fail, Some(0.5), "")
    }
    fn inconclusive() -> Observation {
        obs(Verdict::Inconclusive, None, "")
    }
    fn no_data() -> Observation {
        obs(Verdict::NoData, None, "")
    }
    pub(crate) fn error() -> Observation {
        Observation::Error("backend prometheus timed out".to_string())
    }

    /// Feed observations one minute apart; return the run and the statuses after each.
    fn feed(spec: MetricSpec, seq: Vec<Observation>) -> (MetricRun, Vec<MetricStatus>) {
        let mut run = MetricRun::new(spec, 0);
        let mut statuses = Vec::new();
        for (i, o) in seq.into_iter().enumerate() {
            run.record(o, (i as i64 + 1) * 60_000);
            statuses.push(run.status);
        }
        (run, statuses)
    }

    #[test]
    fn limits_and_defaults() {
        use MetricStatus::*;
        #[rustfmt::skip]
        let cases: Vec<(&str, MetricSpec, Vec<Observation>, Vec<MetricStatus>)> = vec![
            ("one pass, no interval: count defaults to 1", spec("m"), vec![pass()], vec![Successful]),
            ("one fail: failureLimit defaults to 0", spec("m"), vec![fail()], vec![Failed]),
            ("one inconclusive: inconclusiveLimit defaults to 0", spec("m"), vec![inconclusive()], vec![Inconclusive]),
            ("one no-data: noDataLimit defaults to 0", spec("m"), vec![no_data()], vec![NoData]),
            ("errors: consecutiveErrorLimit defaults to 4",
                spec("m"), vec![error(), error(), error(), error(), error()],
                vec![Running, Running, Running, Running, Error]),
            ("failureLimit 2: the third failure fails (not the second)",
                MetricSpec { failure_limit: 2, ..every("m", Some(5)) },
                vec![fail(), fail(), fail()], vec![Running, Running, Failed]),
            ("failureLimit -1 never fails by total",
                MetricSpec { failure_limit: -1, ..every("m", Some(3)) },
                vec![fail(), fail(), fail()], vec![Running, Running, Successful]),
            ("consecutiveFailureLimit 2: two in a row fail",
                MetricSpec { failure_limit: -1, consecutive_failure_limit: Some(2), ..every("m", Some(5)) },
                vec![fail(), pass(), fail(), fail()], vec![Running, Running, Running, Failed]),
            ("consecutiveFailureLimit: an error does not break the streak",
                MetricSpec { failure_limit: -1, consecutive_failure_limit: Some(2), ..every("m", Some(3)) },
                vec![fail(), error(), fail()], vec![Running, Running, Failed]),
            ("consecutiveFailureLimit: a pass breaks the streak, errors do not extend it",
                MetricSpec { failure_limit: -1, consecutive_failure_limit: Some(2), ..every("m", Some(3)) },
                vec![fail(), pass(), error(), fail()], vec![Running, Running, Running, Successful]),
            ("inconclusiveLimit 1: the second inconclusive",
                MetricSpec { inconclusive_limit: 1, ..every("m", Some(5)) },
                vec![inconclusive(), pass(), inconclusive()], vec![Running, Running, Inconclusive]),
            ("noDataLimit 1: the second no-data",
                MetricSpec { no_data_limit: 1, ..every("m", Some(5)) },
                vec![no_data(), no_data()], vec![Running, NoData]),
            ("consecutiveErrorLimit 1: two in a row",
                MetricSpec { consecutive_error_limit: 1, ..every("m", Some(3)) },
                vec![error(), pass(), error(), error()], vec![Running, Running, Running, Error]),
            ("consecutiveSuccessLimit 2 ends early",
                MetricSpec { failure_limit: 5, consecutive_success_limit: Some(2), ..every("m", Some(5)) },
                vec![pass(), fail(), pass(), pass()], vec![Running, Running, Running, Successful]),
            ("consecutiveSuccessLimit 3: an error breaks the streak (pass, pass, error, pass is not successful yet)",
                MetricSpec { consecutive_success_limit: Some(3), ..every("m", Some(5)) },
                vec![pass(), pass(), error(), pass(), pass(), pass()],
                vec![Running, Running, Running, Running, Running, Successful]),
            ("consecutiveFailureLimit 2: an error does not reset the failure streak either way",
                MetricSpec { failure_limit: -1, consecutive_failure_limit: Some(2), consecutive_success_limit: Some(5), ..every("m", Some(5)) },
                vec![fail(), error(), error(), fail()], vec![Running, Running, Running, Failed]),
            // count reached without the success streak: inconclusive while failureLimit
            // applies (unset, which loads as 0; 0; 3), failed only with -1.
            ("count reached without the streak, failureLimit unset (0): inconclusive",
                MetricSpec { consecutive_success_limit: Some(3), ..every("m", Some(3)) },
                vec![pass(), pass(), error(), pass()], vec![Running, Running, Running, Inconclusive]),
            ("count reached without the streak, failureLimit 0: inconclusive",
                MetricSpec { failure_limit: 0, consecutive_success_limit: Some(2), ..every("m", Some(2)) },
                vec![pass(), error(), pass()], vec![Running, Running, Inconclusive]),
            ("count reached without the streak, failureLimit 3: inconclusive",
                MetricSpec { failure_limit: 3, consecutive_success_limit: Some(3), ..every("m", Some(3)) },
                vec![pass(), fail(), pass()], vec![Running, Running, Inconclusive]),
            ("failureLimit 1 exceeded before count: failed, whatever the streak",
                MetricSpec { failure_limit: 1, consecutive_success_limit: Some(3), ..every("m", Some(3)) },
                vec![fail(), pass(), fail()], vec![Running, Running, Failed]),
            ("count reached without the streak, failureLimit -1: failed",
                MetricSpec { failure_limit: -1, consecutive_success_limit: Some(3), ..every("m", Some(3)) },
                vec![pass(), fail(), pass()], vec![Running, Running, Failed]),
            ("count reached with the streak on its last measurement: successful",
                MetricSpec { failure_limit: -1, consecutive_success_limit: Some(2), ..every("m", Some(3)) },
                vec![fail(), pass(), pass()], vec![Running, Running, Successful]),
            ("errors are not counted in count",
                every("m", Some(2)),
                vec![pass(), error(), error(), pass()], vec![Running, Running, Running, Successful]),
            ("failures within the limit still succeed at count",
                MetricSpec { failure_limit: 1, ..every("m", Some(2)) },
                vec![fail(), pass()], vec![Running, Successful]),
            ("error wins over failure when both trip",
                MetricSpec { consecutive_error_limit: 0, ..every("m", Some(3)) },
                vec![error()], vec![Error]),
            ("indefinite metric keeps running",
                MetricSpec { failure_limit: 3, ..every("m", None) },
                vec![pass(), pass(), fail(), pass()], vec![Running, Running, Running, Running]),
        ];
        for (name, spec, seq, want) in cases {
            let (_, got) = feed(spec, seq);
            assert_eq!(got, want, "{name}");
        }
    }

    #[test]
    fn no_data_mappings() {
        use MetricStatus::*;
        let cases = [
            (
                NoDataAction::NoData,
                NoData,
                (0, 0, 0, 1),
                RecordedVerdict::NoData,
            ),
            (
                NoDataAction::Inconclusive,
                Inconclusive,
                (0, 0, 1, 0),
                RecordedVerdict::Inconclusive,
            ),
            (
                NoDataAction::Fail,
                Failed,
                (0, 1, 0, 0),
                RecordedVerdict::Fail,
            ),
            (
                NoDataAction::Pass,
                Successful,
                (1, 0, 0, 0),
                RecordedVerdict::Pass,
            ),
        ];
        for (action, status, (p, f, i, n), verdict) in cases {
            let (run, _) = feed(
                MetricSpec {
                    no_data: action,
                    ..spec("m")
                },
                vec![obs(Verdict::NoData, None, "no series")],
            );
            let c = run.counters;
            assert_eq!(run.status, status, "{action:?}");
            assert_eq!(
                (c.passes, c.failures, c.inconclusives, c.no_data),
                (p, f, i, n)
            );
            assert_eq!(c.measurements, 1);
            let last = run.last.unwrap();
            assert_eq!(last.verdict, verdict);
            if action != NoDataAction::NoData {
                assert_eq!(
                    last.message,
                    format!("no series (no data, counted as {})", verdict.name())
                );
            }
        }
    }

    #[test]
    fn reasons_name_the_numbers() {
        let cases: Vec<(MetricSpec, Vec<Observation>, &str)> = vec![
            (
                MetricSpec {
                    failure_limit: 2,
                    ..every("m", Some(5))
                },
                vec![
                    fail(),
                    fail(),
                    obs(Verdict::Fail, Some(0.071), "error ratio 0.071 >= 0.05"),
                ],
                "failed: 3 failures > failureLimit 2, last value 0.071 (the plugin said: error ratio 0.071 >= 0.05)",
            ),
            (
                every("m", Some(5)),
                vec![error(), error(), error(), error(), error()],
                "error: 5 consecutive errors > consecutiveErrorLimit 4, last: backend prometheus timed out",
            ),
            (
                every("m", Some(5)),
                vec![pass(), pass(), pass(), pass(), pass()],
                "successful: 5 of 5 measurements, 5 passed, last value 0.01",
            ),
            (
                MetricSpec {
                    failure_limit: 1,
                    ..every("m", Some(3))
                },
                vec![pass(), fail(), error(), pass()],
                "successful: 3 of 3 measurements, 2 passed, 1 failed, 1 error, last value 0.01",
            ),
            (
                MetricSpec {
                    failure_limit: 5,
                    consecutive_success_limit: Some(3),
                    ..every("m", Some(5))
                },
                vec![pass(), pass(), fail(), pass(), pass()],
                "inconclusive: count 5 reached without 3 passes in a row (consecutiveSuccessLimit 3) and within failureLimit 5, 4 passed, 1 failed, last value 0.01",
            ),
            (
                MetricSpec {
                    failure_limit: -1,
                    consecutive_success_limit: Some(3),
                    ..every("m", Some(3))
                },
                vec![pass(), error(), pass(), pass()],
                "failed: count 3 reached without 3 passes in a row (consecutiveSuccessLimit 3, failureLimit -1), 3 passed, 1 error, last value 0.01",
            ),
            (
                MetricSpec {
                    failure_limit: -1,
                    consecutive_failure_limit: Some(2),
                    ..every("m", Some(5))
                },
                vec![fail(), fail()],
                "failed: 2 consecutive failures >= consecutiveFailureLimit 2, last value 0.5",
            ),
            (
                spec("m"),
                vec![obs(Verdict::Inconclusive, Some(0.04), "between")],
                "inconclusive: 1 inconclusive > inconclusiveLimit 0, last value 0.04 (the plugin said: between)",
            ),
            (
                spec("m"),
                vec![obs(Verdict::NoData, None, "no series")],
                "no-data: 1 no-data > noDataLimit 0 (the plugin said: no series)",
            ),
            (
                MetricSpec {
                    failure_limit: 1,
                    consecutive_success_limit: Some(2),
                    ..every("m", Some(5))
                },
                vec![fail(), pass(), pass()],
                "successful: 2 consecutive passes >= consecutiveSuccessLimit 2 after 3 measurements, 2 passed, 1 failed, last value 0.01",
            ),
            (
                MetricSpec {
                    consecutive_error_limit: 0,
                    ..spec("m")
                },
                vec![error()],
                "error: 1 consecutive error > consecutiveErrorLimit 0, last: backend prometheus timed out",
            ),
            (
                every("m", Some(5)),
                vec![pass()],
                "running: first result pass, last value 0.01",
            ),
            (
                every("m", Some(5)),
                vec![error()],
                "running: first attempt failed with an error: backend prometheus timed out",
            ),
        ];
        for (spec, seq, want) in cases {
            let (run, _) = feed(spec, seq);
            assert_eq!(run.message, want);
        }
    }

    #[test]
    fn completing_changes_name_the_limit_that_decided() {
        let cases: Vec<(MetricSpec, Vec<Observation>, Option<&str>)> = vec![
            (spec("m"), vec![fail()], Some("failureLimit 0")),
            (
                MetricSpec {
                    failure_limit: -1,
                    consecutive_failure_limit: Some(2),
                    ..every("m", Some(5))
                },
                vec![fail(), fail()],
                Some("consecutiveFailureLimit 2"),
            ),
            (spec("m"), vec![inconclusive()], Some("inconclusiveLimit 0")),
            (spec("m"), vec![no_data()], Some("noDataLimit 0")),
            (
                MetricSpec {
                    consecutive_error_limit: 1,
                    ..spec("m")
                },
                vec![error(), error()],
                Some("consecutiveErrorLimit 1"),
            ),
            (
                MetricSpec {
                    consecutive_success_limit: Some(2),
                    ..every("m", Some(2))
                },
                vec![pass(), error(), pass()],
                Some("consecutiveSuccessLimit 2"),
            ),
            (spec("m"), vec![pass()], None),
            (every("m", Some(3)), vec![pass()], None),
        ];
        for (spec, seq, want) in cases {
            let mut run = MetricRun::new(spec, 0);
            let mut last = None;
            for (i, o) in seq.into_iter().enumerate() {
                if let (_, Some(change)) = run.record(o, i as i64) {
                    last = Some(change);
                }
            }
            let change = last.expect("a change");
            assert_eq!(change.limit.as_deref(), want, "{}", change.reason);
        }
    }

    #[test]
    fn status_changes_are_reported_once() {
        let mut run = MetricRun::new(every("m", Some(2)), 0);
        let (_, first) = run.record(pass(), 10);
        let first = first.unwrap();
        assert_eq!(
            (first.from, first.to),
            (MetricStatus::Pending, MetricStatus::Running)
        );
        assert_eq!(first.counters.measurements, 1);
        assert_eq!(first.last_value, Some(0.01));
        assert_eq!(first.metric, "m");
        let (_, second) = run.record(pass(), 20);
        let second = second.unwrap();
        assert_eq!(
            (second.from, second.to, second.at_ms),
            (MetricStatus::Running, MetricStatus::Successful, 20)
        );
        // One observation that completes straight away: a single change from pending.
        let mut once = MetricRun::new(spec("m"), 0);
        let change = once.record(fail(), 5).1.unwrap();
        assert_eq!(
            (change.from, change.to),
            (MetricStatus::Pending, MetricStatus::Failed)
        );
        // A late observation is handed back but neither counted nor kept.
        let before = once.clone();
        let (late, none) = once.record(pass(), 6);
        assert!(none.is_none());
        assert_eq!((late.index, late.verdict), (1, RecordedVerdict::Pass));
        assert_eq!(once, before);
        assert_eq!(once.due(), None);
    }

    #[test]
    fn scheduling() {
        // (spec, observations with times, expected due after each)
        let delayed = MetricSpec {
            initial_delay_ms: 30_000,
            ..every("m", Some(3))
        };
        assert_eq!(MetricRun::new(delayed, 1_000).due(), Some(31_000));
        /// A spec, observations with their times, and the due time expected after each.
        type Case = (MetricSpec, Vec<(Observation, i64)>, Vec<Option<i64>>);
        let cases: Vec<Case> = vec![
            (
                every("m", Some(3)),
                vec![
                    (pass(), 0),
                    (error(), 60_000),
                    (pass(), 70_000),
                    (pass(), 130_000),
                ],
                vec![Some(60_000), Some(70_000), Some(130_000), None],
            ),
            (
                MetricSpec {
                    interval_ms: Some(3_000),
                    ..every("m", Some(2))
                },
                vec![(error(), 0), (pass(), 3_000)],
                vec![Some(3_000), Some(6_000)],
            ),
            (
                spec("m"),
                vec![(error(), 0), (error(), 10_000), (pass(), 20_000)],
                vec![Some(10_000), Some(20_000), None],
            ),
        ];
        for (spec, seq, want) in cases {
            let mut run = MetricRun::new(spec, 0);
            let got: Vec<_> = seq
                .into_iter()
                .map(|(o, at)| {
                    run.record(o, at);
                    run.due()
                })
                .collect();
            assert_eq!(got, want);
        }
    }

    #[test]
    fn the_checkpoint_does_not_grow_with_failures() {
        // The history of measurements lives in the store; the checkpoint, rewritten on
        // every commit, keeps only the counters and the latest observations, however many
        // failures and errors there were.
        let spec = MetricSpec {
            retention: 2,
            failure_limit: -1,
            ..every("m", None)
        };
        let size_after = |n: usize| {
            let seq: Vec<_> = (0..n)
                .map(|i| match i % 3 {
                    0 => fail(),
                    1 => error(),
                    _ => pass(),
                })
                .collect();
            let (run, _) = feed(spec.clone(), seq);
            (run.clone(), serde_json::to_string(&run).unwrap().len())
        };
        let (small_run, small) = size_after(9);
        let (run, big) = size_after(3_000);
        // Only the digits of the counters, indexes and times differ.
        assert!(big <= small + 64, "{small} bytes after 9, {big} after 3000");
        assert_eq!(small_run.counters.failures, 3);
        let c = run.counters;
        assert_eq!(
            (c.measurements, c.passes, c.failures, c.errors),
            (2_000, 1_000, 1_000, 1_000)
        );
        assert_eq!(run.status, MetricStatus::Running);
        // The latest observation, and the latest measurement, are still at hand.
        let last = run.last.as_ref().unwrap();
        assert_eq!((last.index, last.verdict), (2_999, RecordedVerdict::Pass));
        let (run, _) = feed(spec.clone(), vec![pass(), fail(), error()]);
        assert_eq!(
            run.last.as_ref().map(|r| (r.index, r.verdict)),
            Some((2, RecordedVerdict::Error))
        );
        assert_eq!(
            run.last_measured.as_ref().map(|r| (r.index, r.verdict)),
            Some((1, RecordedVerdict::Fail))
        );
        assert_eq!(run.last_value(), Some(0.5));
        let json = serde_json::to_value(&run).unwrap();
        assert!(json.get("retained").is_none(), "{json}");
    }

    #[test]
    fn an_old_checkpoint_with_a_retained_history_still_loads() {
        let (run, _) = feed(every("m", Some(3)), vec![pass(), fail()]);
        let mut json = serde_json::to_value(&run).unwrap();
        let old_entry = serde_json::to_value(run.last.as_ref().unwrap()).unwrap();
        json.as_object_mut()
            .unwrap()
            .insert("retained".into(), serde_json::json!([old_entry]));
        let back: MetricRun = serde_json::from_value(json).unwrap();
        assert_eq!(back, run);
    }

    #[test]
    fn terminate_and_finish() {
        let mut pending = MetricRun::new(every("m", None), 0);
        let change = pending.finish(5).unwrap();
        assert_eq!(change.to, MetricStatus::Terminated);
        assert_eq!(
            change.reason,
            "terminated: the rollout ended before the metric completed (0 measurements taken)"
        );

        let (mut background, _) = feed(every("bg", None), vec![pass(), pass()]);
        let change = background.finish(9).unwrap();
        assert_eq!(change.to, MetricStatus::Successful);
        assert_eq!(
            change.reason,
            "successful: stopped at the end of the rollout after 2 measurements, 2 passed, last value 0.01"
        );
        assert!(background.finish(10).is_none());
        assert!(background.terminate(10, "x").is_none());

        let (mut counted, _) = feed(every("c", Some(3)), vec![pass()]);
        assert_eq!(counted.finish(9).unwrap().to, MetricStatus::Terminated);

        let (mut stopped, _) = feed(every("s", None), vec![pass()]);
        let change = stopped
            .terminate(3, "sibling metric \"latency\" failed")
            .unwrap();
        assert_eq!(
            change.reason,
            "terminated: sibling metric \"latency\" failed"
        );
        assert_eq!(stopped.due(), None);
        // Terminated is final.
        stopped.record(fail(), 4);
        assert_eq!(stopped.status, MetricStatus::Terminated);
    }

    #[test]
    fn summary_for_the_policy() {
        let (run, _) = feed(
            MetricSpec {
                dry_run: true,
                ..every("m", Some(3))
            },
            vec![obs(Verdict::Pass, Some(0.2), ""), error()],
        );
        let s = run.summary();
        assert_eq!(s.name, "m");
        assert!(s.dry_run);
        assert!(matches!(
            s.status,
            crate::plugin::types::MetricStatus::Running
        ));
        assert_eq!(
            (s.measurements, s.passes, s.errors, s.consecutive_errors),
            (1, 1, 1, 1)
        );
        assert!(matches!(s.last_verdict, Some(Verdict::Pass)));
        assert_eq!(s.last_value, Some(0.2));
        assert_eq!(s.message, without_status(&run.message));
        assert!(!s.message.starts_with("running: "), "{}", s.message);
    }

    #[test]
    fn checkpoint_round_trip() {
        let (run, _) = feed(every("m", Some(3)), vec![pass(), error()]);
        let text = serde_json::to_string(&run).unwrap();
        let back: MetricRun = serde_json::from_str(&text).unwrap();
        assert_eq!(back, run);
    }
}
