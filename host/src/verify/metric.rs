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
    /// The metric as resolved from the spec (shared with the run's spec).
    pub spec: std::sync::Arc<MetricSpec>,
    /// Where it is.
    pub status: MetricStatus,
    /// The numbers its status is decided from.
    pub counters: Counters,
    /// When the verification run started (ms since the Unix epoch).
    pub started_ms: i64,
    /// When the next measurement is due; `None` once complete.
    pub next_due_ms: Option<i64>,
    /// The latest observation, whatever it was (shared with `last_measured` when it was
    /// a measurement: one copy of its message and details).
    pub last: Option<std::sync::Arc<Recorded>>,
    /// The latest observation that was a measurement (not an error): the source of the
    /// summary's last verdict and last value.
    #[serde(default)]
    pub last_measured: Option<std::sync::Arc<Recorded>>,
    /// The reason of the last status change.
    pub message: String,
}

impl MetricRun {
    /// A pending metric whose first measurement is due `initial_delay` after `started_ms`.
    pub fn new(spec: impl Into<std::sync::Arc<MetricSpec>>, started_ms: i64) -> Self {
        let spec = spec.into();
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
        let shared = std::sync::Arc::new(recorded.clone());
        if recorded.verdict != RecordedVerdict::Error {
            self.last_measured = Some(shared.clone());
        }
        self.last = Some(shared);
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
#[path = "metric_tests.rs"]
pub(crate) mod tests;
