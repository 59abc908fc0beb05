//! The counting rules: how a metric's measurements become a metric status, and how a
//! phase's metrics become one verification outcome.
//!
//! Verification must be explainable and replayable, so this module is **pure**: it calls
//! no plugin, reads no clock (times are `i64` milliseconds handed in by the engine) and does
//! no I/O. The engine asks [`VerificationRun::next_due`] what to measure and when, calls the
//! provider plugin itself, and feeds each result back as an [`Observation`]; what comes back
//! is the [`Recorded`] measurement and the [`StatusChange`]s it caused, each with a reason
//! that names the numbers behind it. Every type here serialises, because the engine
//! checkpoints a run between any two measurements.
//!
//! The rules follow Argo Rollouts' knobs and defaults (rollout-anchors.md §1.4), and its
//! counting wherever someone migrating from it would otherwise be surprised:
//! - a `count` reached without `consecutiveSuccessLimit` passes in a row is
//!   **inconclusive** while `failureLimit` applies (0 or more, the default 0) and was not
//!   exceeded, and **failed** only with `failureLimit: -1` (where the streak is the only
//!   way to pass);
//! - an error ends the pass streak (passes interrupted by an error are not passes in a
//!   row) and leaves the fail streak as it was.
//!
//! It fixes Argo's surprises elsewhere: the cause of a status is checked in one fixed order
//! so it is exact, errors never count as measurements (`count` counts measurements),
//! `consecutiveFailureLimit` exists, and a metric cut short by a failing sibling is
//! [`MetricStatus::Terminated`], never "successful" (Argo #2158).
//!
//! What this module deliberately does not do: decide what a status means for the rollout
//! (the failure-policy plugin does that from [`MetricRun::summary`]), or persist anything.
//!
//! Files: `mod.rs` what goes in and comes out ([`Observation`], [`Recorded`],
//! [`StatusChange`], [`MetricStatus`], [`Counters`]); `metric.rs` one metric's run and its
//! counting rules ([`MetricRun`]), tested in `metric_tests.rs`; `run.rs` a phase's metrics
//! together and their one outcome ([`VerificationRun`], [`RunOutcome`]).

mod metric;
mod run;

pub use metric::MetricRun;
pub use run::{RunOutcome, VerificationRun};

use crate::plugin::types::{Measurement, Verdict};
use serde::{Deserialize, Serialize};

/// After an error, the next attempt comes after at most this long (Argo's fixed 10 s).
pub const ERROR_RETRY_MS: u64 = 10_000;

/// What one attempt to measure a metric produced: the plugin's measurement, or why there
/// is none. The engine builds it from the plugin call; it is the only input of the rules.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(into = "ObservationRepr", from = "ObservationRepr")]
pub enum Observation {
    /// The provider answered with a verdict.
    Measured(Measurement),
    /// The plugin or a backend it needed failed; the text says how. Counted as an error,
    /// never as a measurement.
    Error(String),
}

/// The serialised form of an [`Observation`] (the wit-generated [`Measurement`] has no
/// serde implementation of its own).
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
enum ObservationRepr {
    Measured {
        verdict: RecordedVerdict,
        value: Option<f64>,
        message: String,
        details: String,
    },
    Error {
        message: String,
    },
}

impl From<Observation> for ObservationRepr {
    fn from(o: Observation) -> Self {
        match o {
            Observation::Measured(m) => ObservationRepr::Measured {
                verdict: RecordedVerdict::from(m.verdict),
                value: m.value,
                message: m.message,
                details: m.details,
            },
            Observation::Error(message) => ObservationRepr::Error { message },
        }
    }
}

impl From<ObservationRepr> for Observation {
    fn from(o: ObservationRepr) -> Self {
        match o {
            ObservationRepr::Measured {
                verdict,
                value,
                message,
                details,
            } => match verdict.to_verdict() {
                Some(verdict) => Observation::Measured(Measurement {
                    verdict,
                    value,
                    message,
                    details,
                }),
                // A measured observation never carries `error`; if a hand-written one
                // does, it is the error it says it is.
                None => Observation::Error(message),
            },
            ObservationRepr::Error { message } => Observation::Error(message),
        }
    }
}

/// Where a metric is in its life. Our own serialisable mirror of the contract's
/// `metric-status` (which the failure policy receives through [`MetricRun::summary`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MetricStatus {
    /// Nothing recorded yet (for example, waiting for its initial delay).
    Pending,
    /// Measuring; no limit reached.
    Running,
    /// Finished healthy.
    Successful,
    /// A failure limit was exceeded.
    Failed,
    /// Too many inconclusive verdicts.
    Inconclusive,
    /// Too many no-data verdicts (kept as no-data by the metric's `noData`).
    NoData,
    /// Too many errors in a row.
    Error,
    /// Cut short: a sibling decided the phase, or the verification was stopped.
    Terminated,
}

impl MetricStatus {
    /// Whether the metric is finished: nothing more is measured and its status is final.
    pub fn is_complete(self) -> bool {
        !matches!(self, MetricStatus::Pending | MetricStatus::Running)
    }

    /// Whether the status is a bad outcome: failed, inconclusive, no-data or error.
    pub fn is_bad(self) -> bool {
        matches!(
            self,
            MetricStatus::Failed
                | MetricStatus::Inconclusive
                | MetricStatus::NoData
                | MetricStatus::Error
        )
    }

    /// The kebab-case name, as serialised and shown (`no-data`, `failed`, ...).
    pub fn name(self) -> &'static str {
        match self {
            MetricStatus::Pending => "pending",
            MetricStatus::Running => "running",
            MetricStatus::Successful => "successful",
            MetricStatus::Failed => "failed",
            MetricStatus::Inconclusive => "inconclusive",
            MetricStatus::NoData => "no-data",
            MetricStatus::Error => "error",
            MetricStatus::Terminated => "terminated",
        }
    }

    /// How bad a *complete* status is when a run takes the worst of its metrics:
    /// successful < terminated < no-data < inconclusive < error < failed. Incomplete
    /// statuses rank lowest (they never take part in a complete outcome).
    pub fn severity(self) -> u8 {
        match self {
            MetricStatus::Pending | MetricStatus::Running => 0,
            MetricStatus::Successful => 1,
            MetricStatus::Terminated => 2,
            MetricStatus::NoData => 3,
            MetricStatus::Inconclusive => 4,
            MetricStatus::Error => 5,
            MetricStatus::Failed => 6,
        }
    }

    /// How a sibling's bad status reads in a termination reason ("failed", "errored").
    fn as_sibling_cause(self) -> &'static str {
        match self {
            MetricStatus::Failed => "failed",
            MetricStatus::Inconclusive => "was inconclusive",
            MetricStatus::NoData => "had no data",
            MetricStatus::Error => "errored",
            other => other.name(),
        }
    }
}

impl std::fmt::Display for MetricStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl From<MetricStatus> for crate::plugin::types::MetricStatus {
    fn from(s: MetricStatus) -> Self {
        use crate::plugin::types::MetricStatus as P;
        match s {
            MetricStatus::Pending => P::Pending,
            MetricStatus::Running => P::Running,
            MetricStatus::Successful => P::Successful,
            MetricStatus::Failed => P::Failed,
            MetricStatus::Inconclusive => P::Inconclusive,
            MetricStatus::NoData => P::NoData,
            MetricStatus::Error => P::Error,
            MetricStatus::Terminated => P::Terminated,
        }
    }
}

/// The verdict a recorded observation **counted as**: the plugin's verdict after the
/// metric's `noData` mapping, or `error` when there was no measurement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RecordedVerdict {
    /// Healthy.
    Pass,
    /// Unhealthy.
    Fail,
    /// No judgement either way.
    Inconclusive,
    /// Nothing to judge (kept as no-data).
    NoData,
    /// The plugin or a backend failed.
    Error,
}

impl RecordedVerdict {
    /// The kebab-case name (`pass`, `no-data`, ...).
    pub fn name(self) -> &'static str {
        match self {
            RecordedVerdict::Pass => "pass",
            RecordedVerdict::Fail => "fail",
            RecordedVerdict::Inconclusive => "inconclusive",
            RecordedVerdict::NoData => "no-data",
            RecordedVerdict::Error => "error",
        }
    }

    /// Whether the store's measurement retention keeps it unconditionally (fail and
    /// error).
    pub fn is_failure(self) -> bool {
        matches!(self, RecordedVerdict::Fail | RecordedVerdict::Error)
    }

    /// The contract's verdict, or `None` for `error` (which is not a verdict).
    pub fn to_verdict(self) -> Option<Verdict> {
        match self {
            RecordedVerdict::Pass => Some(Verdict::Pass),
            RecordedVerdict::Fail => Some(Verdict::Fail),
            RecordedVerdict::Inconclusive => Some(Verdict::Inconclusive),
            RecordedVerdict::NoData => Some(Verdict::NoData),
            RecordedVerdict::Error => None,
        }
    }
}

impl From<Verdict> for RecordedVerdict {
    fn from(v: Verdict) -> Self {
        match v {
            Verdict::Pass => RecordedVerdict::Pass,
            Verdict::Fail => RecordedVerdict::Fail,
            Verdict::Inconclusive => RecordedVerdict::Inconclusive,
            Verdict::NoData => RecordedVerdict::NoData,
        }
    }
}

impl std::fmt::Display for RecordedVerdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The numbers a metric's status is decided from; also what a [`StatusChange`] snapshots so
/// the audit trail shows exactly what caused it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Counters {
    /// Measurements taken: passes + failures + inconclusives + no-data (errors excluded).
    pub measurements: u32,
    /// Pass verdicts (after the no-data mapping).
    pub passes: u32,
    /// Fail verdicts (after the no-data mapping).
    pub failures: u32,
    /// Inconclusive verdicts (after the no-data mapping).
    pub inconclusives: u32,
    /// No-data verdicts kept as no-data.
    pub no_data: u32,
    /// Errors (plugin or backend failures).
    pub errors: u32,
    /// Errors since the last non-error.
    pub consecutive_errors: u32,
    /// Fails since the last measurement that was not a fail (errors neither extend nor
    /// break this streak).
    pub consecutive_failures: u32,
    /// Passes since the last observation that was not a pass: an error breaks this streak
    /// (it does not break the fail streak).
    pub consecutive_successes: u32,
}

impl Counters {
    /// Count one observation: totals, and the streaks it extends or resets.
    fn count(&mut self, verdict: RecordedVerdict) {
        let bump = |n: &mut u32| *n = n.saturating_add(1);
        match verdict {
            // An error is not a measurement: it has its own streak
            // (`consecutiveErrorLimit`) and leaves the fail streak as it was; but passes
            // interrupted by an error are not passes in a row, so it ends the pass streak
            // (as in Argo Rollouts).
            RecordedVerdict::Error => {
                bump(&mut self.errors);
                bump(&mut self.consecutive_errors);
                self.consecutive_successes = 0;
                return;
            }
            RecordedVerdict::Pass => bump(&mut self.passes),
            RecordedVerdict::Fail => bump(&mut self.failures),
            RecordedVerdict::Inconclusive => bump(&mut self.inconclusives),
            RecordedVerdict::NoData => bump(&mut self.no_data),
        }
        bump(&mut self.measurements);
        self.consecutive_errors = 0;
        if verdict == RecordedVerdict::Fail {
            bump(&mut self.consecutive_failures);
        } else {
            self.consecutive_failures = 0;
        }
        if verdict == RecordedVerdict::Pass {
            bump(&mut self.consecutive_successes);
        } else {
            self.consecutive_successes = 0;
        }
    }

    /// "5 passed, 1 failed, 2 errors": the non-zero tallies (passes always shown).
    fn tally(&self) -> String {
        let mut out = format!("{} passed", self.passes);
        for (n, word) in [
            (self.failures, "failed"),
            (self.inconclusives, "inconclusive"),
            (self.no_data, "no data"),
        ] {
            if n > 0 {
                out.push_str(&format!(", {n} {word}"));
            }
        }
        if self.errors > 0 {
            out.push_str(&format!(", {}", counted(self.errors, "error", "errors")));
        }
        out
    }
}

/// `1 failure`, `3 failures`: a number with its noun, for reasons read by people.
fn counted(n: u32, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// One observation as the metric recorded it: handed back to the engine, which keeps it
/// in the store (subject to the metric's retention) and shows it; the metric itself keeps
/// only its latest observation and latest measurement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Recorded {
    /// Zero-based index among this metric's observations (errors included).
    pub index: u32,
    /// When it was recorded (ms since the Unix epoch).
    pub at_ms: i64,
    /// What it counted as.
    pub verdict: RecordedVerdict,
    /// The value the plugin compared, if any.
    pub value: Option<f64>,
    /// The plugin's sentence, or the error; notes a no-data mapping when one applied.
    pub message: String,
    /// The plugin's structured detail (JSON object text, `{}` when none).
    pub details: String,
}

/// A metric moved from one status to another. Audited by the engine, so it carries the
/// reason with the numbers that caused it and a snapshot of the counters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusChange {
    /// The metric's name.
    pub metric: String,
    /// The status before.
    pub from: MetricStatus,
    /// The status after.
    pub to: MetricStatus,
    /// When (ms since the Unix epoch).
    pub at_ms: i64,
    /// Why, starting with the new status' name, e.g.
    /// `failed: 3 failures > failureLimit 2, last value 0.071 (the plugin said: ...)`.
    pub reason: String,
    /// The counters at the change.
    pub counters: Counters,
    /// The last value measured, if any.
    pub last_value: Option<f64>,
    /// The limit that decided a completing change, as the spec names it
    /// (`failureLimit 2`, `consecutiveErrorLimit 4`, `consecutiveSuccessLimit 3`); `None`
    /// for a change no limit decided (running, a count reached, terminated).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_names_match_serde_and_classes() {
        let cases = [
            (MetricStatus::Pending, "pending", false, false),
            (MetricStatus::Running, "running", false, false),
            (MetricStatus::Successful, "successful", true, false),
            (MetricStatus::Failed, "failed", true, true),
            (MetricStatus::Inconclusive, "inconclusive", true, true),
            (MetricStatus::NoData, "no-data", true, true),
            (MetricStatus::Error, "error", true, true),
            (MetricStatus::Terminated, "terminated", true, false),
        ];
        for (status, name, complete, bad) in cases {
            assert_eq!(status.name(), name);
            assert_eq!(
                serde_json::to_value(status).unwrap(),
                serde_json::json!(name)
            );
            assert_eq!(status.is_complete(), complete, "{name}");
            assert_eq!(status.is_bad(), bad, "{name}");
        }
    }

    #[test]
    fn severity_orders_complete_statuses() {
        use MetricStatus::*;
        let order = [Successful, Terminated, NoData, Inconclusive, Error, Failed];
        for pair in order.windows(2) {
            assert!(pair[0].severity() < pair[1].severity(), "{pair:?}");
        }
    }

    #[test]
    fn counters_streaks_reset() {
        use RecordedVerdict::*;
        /// Verdicts, then the (errors, failures, passes) streaks after them.
        type Case = (&'static [RecordedVerdict], (u32, u32, u32));
        let cases: [Case; 12] = [
            (&[Error, Error, Pass], (0, 0, 1)),
            (&[Fail, Fail, Inconclusive], (0, 0, 0)),
            // Errors are not measurements: they leave the fail streak alone...
            (&[Fail, Fail, Error], (1, 2, 0)),
            (&[Fail, Error, Fail], (0, 2, 0)),
            // ...but end the pass streak (Argo Rollouts' rule).
            (&[Pass, Pass, Error], (1, 0, 0)),
            (&[Pass, Error, Error, Pass], (0, 0, 1)),
            (&[Pass, Pass, Error, Pass, Pass], (0, 0, 2)),
            (&[Pass, Error, Fail], (0, 1, 0)),
            (&[Fail, Error, Pass], (0, 0, 1)),
            (&[Pass, Pass, NoData], (0, 0, 0)),
            (&[Pass, Pass, Pass], (0, 0, 3)),
            (&[Pass, Fail, Fail], (0, 2, 0)),
        ];
        for (seq, (errors, failures, successes)) in cases {
            let mut c = Counters::default();
            for v in seq {
                c.count(*v);
            }
            assert_eq!(
                (
                    c.consecutive_errors,
                    c.consecutive_failures,
                    c.consecutive_successes
                ),
                (errors, failures, successes),
                "{seq:?}"
            );
            assert_eq!(
                c.measurements,
                c.passes + c.failures + c.inconclusives + c.no_data
            );
        }
    }

    #[test]
    fn observation_round_trips_through_serde() {
        let cases = [
            Observation::Measured(Measurement {
                verdict: Verdict::NoData,
                value: Some(0.5),
                message: "m".into(),
                details: "{}".into(),
            }),
            Observation::Error("backend prometheus timed out".into()),
        ];
        for obs in cases {
            let text = serde_json::to_string(&obs).unwrap();
            let back: Observation = serde_json::from_str(&text).unwrap();
            assert_eq!(format!("{obs:?}"), format!("{back:?}"));
        }
    }
}
