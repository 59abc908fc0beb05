//! Structured failures: what went wrong in a run, recorded in the checkpoint where the
//! engine meets it, so a tool reading the API (v2) or `rollgate get --format json` can act
//! on the kind, the metric, the value and the limit instead of parsing sentences.
//!
//! A [`Failure`] is recorded when the engine decides on it: a metric that ends failed,
//! erroring, inconclusive or without data (with the value and the limit that was crossed),
//! a readiness timeout, a step the target refused, a gate that did not confirm or asked
//! for a rollback, a progress deadline, a failure policy that failed, an operator's pause,
//! abort or rollback. The run keeps its failures, oldest first, up to [`MAX_FAILURES`] (the
//! audit log keeps everything); a gate that is still closed when it is asked again updates
//! its failure instead of adding one.
//!
//! What this module does not do: decide anything. The failure policy and the engine
//! decide; a failure is the record of why.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// How many failures a run keeps in its checkpoint (the oldest are dropped first): the
/// checkpoint is rewritten by every commit and must not grow with the run's length.
pub const MAX_FAILURES: usize = 32;

/// What kind of thing failed. The names are stable (kebab-case in JSON): tools match on
/// them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum FailureKind {
    /// A metric ended `failed`: a failure limit was crossed.
    MetricFailed,
    /// A metric ended `error` because its plugin could not make the measurement and said
    /// why (the plugin's own error, with no failed backend query behind it).
    MetricError,
    /// A metric ended `inconclusive`.
    MetricInconclusive,
    /// A metric ended `no-data`.
    MetricNoData,
    /// An applied step did not take effect within `readiness.timeout`.
    ReadinessTimeout,
    /// The target refused a step.
    StepFailed,
    /// A confirm gate did not confirm (the run waits as `paused(gate)`).
    GateClosed,
    /// A rollback gate asked for a rollback.
    GateRollback,
    /// The progress deadline passed.
    Deadline,
    /// The failure policy plugin failed (the run is held for a person).
    PolicyError,
    /// A metric ended `error` because its provider plugin broke: not loaded, trapped, ran
    /// out of time, fuel or memory, or returned something the contract does not allow.
    PluginError,
    /// A metric ended `error` because a metric backend failed: a query of the last
    /// erroring call failed (or its time ran out waiting on queries).
    BackendError,
    /// The rollout's documents (or a template, plugin or backend they reference) do not
    /// load.
    InvalidSpec,
    /// An operator paused, aborted or rolled back the run.
    Operator,
}

impl FailureKind {
    /// Every kind, in the order of the documentation.
    pub const ALL: [FailureKind; 14] = [
        FailureKind::MetricFailed,
        FailureKind::MetricError,
        FailureKind::MetricInconclusive,
        FailureKind::MetricNoData,
        FailureKind::ReadinessTimeout,
        FailureKind::StepFailed,
        FailureKind::GateClosed,
        FailureKind::GateRollback,
        FailureKind::Deadline,
        FailureKind::PolicyError,
        FailureKind::PluginError,
        FailureKind::BackendError,
        FailureKind::InvalidSpec,
        FailureKind::Operator,
    ];

    /// The kebab-case name, as serialised.
    pub fn name(self) -> &'static str {
        match self {
            FailureKind::MetricFailed => "metric-failed",
            FailureKind::MetricError => "metric-error",
            FailureKind::MetricInconclusive => "metric-inconclusive",
            FailureKind::MetricNoData => "metric-no-data",
            FailureKind::ReadinessTimeout => "readiness-timeout",
            FailureKind::StepFailed => "step-failed",
            FailureKind::GateClosed => "gate-closed",
            FailureKind::GateRollback => "gate-rollback",
            FailureKind::Deadline => "deadline",
            FailureKind::PolicyError => "policy-error",
            FailureKind::PluginError => "plugin-error",
            FailureKind::BackendError => "backend-error",
            FailureKind::InvalidSpec => "invalid-spec",
            FailureKind::Operator => "operator",
        }
    }
}

impl std::fmt::Display for FailureKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One failure of a run, with what caused it. Fields that do not apply to its kind are
/// absent from the JSON (not `null`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Failure {
    /// What failed.
    pub kind: FailureKind,
    /// The phase the run was in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// The metric (metric kinds, and plugin or backend errors of a metric).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric: Option<String>,
    /// The last value the metric measured, when it has one (not for errors).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    /// The limit that was crossed, as the spec names it: `failureLimit 0`,
    /// `consecutiveErrorLimit 4`, `readiness.timeout 5m`, `progressDeadline 10m`, ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<String>,
    /// The plugin: a metric's provider, or the failure policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugin: Option<String>,
    /// The metric backend: the one whose query failed (backend-error), or the one the
    /// metric is bound to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<String>,
    /// The gate (gate-closed, gate-rollback).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gate: Option<String>,
    /// Who acted (operator).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// What happened, for people: the same sentence the audit log has.
    pub message: String,
    /// When (ms since the Unix epoch).
    pub at_ms: i64,
}

impl Failure {
    /// A failure of `kind` saying `message`, at `at_ms`; the builders below add the rest.
    pub fn new(kind: FailureKind, message: impl Into<String>, at_ms: i64) -> Failure {
        Failure {
            kind,
            phase: None,
            metric: None,
            value: None,
            limit: None,
            plugin: None,
            backend: None,
            gate: None,
            actor: None,
            message: message.into(),
            at_ms,
        }
    }

    /// A rollout whose documents (or what they reference) do not load: one failure per
    /// problem, `problem` as the loader words it (`file:line:col: field: what to do`).
    pub fn invalid_spec(problem: impl Into<String>, at_ms: i64) -> Failure {
        Failure::new(FailureKind::InvalidSpec, problem, at_ms)
    }

    /// In phase `phase` (ignored when empty).
    pub fn phase(mut self, phase: impl Into<String>) -> Failure {
        let phase = phase.into();
        self.phase = (!phase.is_empty()).then_some(phase);
        self
    }

    /// Of metric `metric`.
    pub fn metric(mut self, metric: impl Into<String>) -> Failure {
        self.metric = Some(metric.into());
        self
    }

    /// With the value measured.
    pub fn value(mut self, value: Option<f64>) -> Failure {
        self.value = value.filter(|v| v.is_finite());
        self
    }

    /// With the limit crossed.
    pub fn limit(mut self, limit: Option<String>) -> Failure {
        self.limit = limit;
        self
    }

    /// With the plugin.
    pub fn plugin(mut self, plugin: impl Into<String>) -> Failure {
        self.plugin = Some(plugin.into());
        self
    }

    /// With the backend (ignored when `None`).
    pub fn backend(mut self, backend: Option<String>) -> Failure {
        self.backend = backend;
        self
    }

    /// Of gate `gate`.
    pub fn gate(mut self, gate: impl Into<String>) -> Failure {
        self.gate = Some(gate.into());
        self
    }

    /// Caused by `actor`.
    pub fn actor(mut self, actor: impl Into<String>) -> Failure {
        self.actor = Some(actor.into());
        self
    }

    /// Whether `self` is the same gate still closed in the same phase as `other` (so it
    /// replaces `other` rather than adding a line per re-check).
    fn repeats(&self, other: &Failure) -> bool {
        self.kind == FailureKind::GateClosed
            && other.kind == FailureKind::GateClosed
            && self.gate == other.gate
            && self.phase == other.phase
    }
}

/// Add `failure` to a run's `failures`: a gate still closed replaces its previous failure;
/// beyond [`MAX_FAILURES`] the oldest is dropped.
pub fn record(failures: &mut Vec<Failure>, failure: Failure) {
    if let Some(last) = failures.last_mut()
        && failure.repeats(last)
    {
        *last = failure;
        return;
    }
    failures.push(failure);
    if failures.len() > MAX_FAILURES {
        let excess = failures.len() - MAX_FAILURES;
        failures.drain(..excess);
    }
}

/// Why a measurement produced no result, as far as the host can tell: which failure kind
/// a metric that ends `error` on it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorCause {
    /// The plugin returned its own error and no backend query failed during the call.
    Metric,
    /// The plugin broke (or is not loaded).
    Plugin,
    /// A backend query failed during the call (the backend named), or the call ran out of
    /// its time waiting on queries.
    Backend(Option<String>),
}

impl ErrorCause {
    /// The failure kind of a metric that ended `error` on this cause.
    pub fn kind(&self) -> FailureKind {
        match self {
            ErrorCause::Metric => FailureKind::MetricError,
            ErrorCause::Plugin => FailureKind::PluginError,
            ErrorCause::Backend(_) => FailureKind::BackendError,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_the_fourteen_documented_names() {
        let names: Vec<&str> = FailureKind::ALL.iter().map(|k| k.name()).collect();
        assert_eq!(
            names,
            [
                "metric-failed",
                "metric-error",
                "metric-inconclusive",
                "metric-no-data",
                "readiness-timeout",
                "step-failed",
                "gate-closed",
                "gate-rollback",
                "deadline",
                "policy-error",
                "plugin-error",
                "backend-error",
                "invalid-spec",
                "operator",
            ]
        );
        for kind in FailureKind::ALL {
            assert_eq!(serde_json::to_value(kind).unwrap(), kind.name());
            let back: FailureKind = serde_json::from_value(kind.name().into()).unwrap();
            assert_eq!(back, kind);
        }
    }

    #[test]
    fn absent_fields_are_left_out_and_read_back() {
        let f = Failure::new(
            FailureKind::MetricFailed,
            "failed: 1 failure > failureLimit 0",
            7,
        )
        .phase("canary-10")
        .metric("error-ratio")
        .value(Some(0.08))
        .limit(Some("failureLimit 0".into()))
        .plugin("threshold")
        .backend(Some("prometheus".into()));
        let json = serde_json::to_value(&f).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "kind": "metric-failed", "phase": "canary-10", "metric": "error-ratio",
                "value": 0.08, "limit": "failureLimit 0", "plugin": "threshold",
                "backend": "prometheus", "message": "failed: 1 failure > failureLimit 0",
                "atMs": 7,
            })
        );
        let back: Failure = serde_json::from_value(json).unwrap();
        assert_eq!(back, f);
        let bare = Failure::invalid_spec("r.yaml:3:5: spec.phases: required", 1).phase("");
        assert_eq!(
            serde_json::to_value(&bare).unwrap(),
            serde_json::json!({"kind": "invalid-spec", "message": "r.yaml:3:5: spec.phases: required", "atMs": 1})
        );
        // A non-finite value is left out (JSON has no NaN).
        assert_eq!(
            Failure::new(FailureKind::MetricFailed, "", 0)
                .value(Some(f64::NAN))
                .value,
            None
        );
    }

    #[test]
    fn a_gate_still_closed_updates_its_failure_and_the_list_is_capped() {
        let closed = |gate: &str, phase: &str, at: i64| {
            Failure::new(FailureKind::GateClosed, format!("{gate} closed"), at)
                .gate(gate)
                .phase(phase)
        };
        let mut list = Vec::new();
        record(&mut list, closed("calendar", "p1", 1));
        record(&mut list, closed("calendar", "p1", 2));
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].at_ms, 2);
        record(&mut list, closed("load-test", "p1", 3));
        record(&mut list, closed("calendar", "p2", 4));
        assert_eq!(list.len(), 3);
        for i in 0..100 {
            record(
                &mut list,
                Failure::new(FailureKind::Operator, "paused", 10 + i),
            );
        }
        assert_eq!(list.len(), MAX_FAILURES);
        assert_eq!(
            list.first().map(|f| f.at_ms),
            Some(10 + 100 - MAX_FAILURES as i64)
        );
        assert_eq!(list.last().map(|f| f.at_ms), Some(109));
    }
}
