//! The resolved model: what the engine runs after the YAML documents were parsed,
//! checked, their references resolved, templates expanded and `{{args.x}}` substituted.
//!
//! Nothing here knows about YAML or positions; the loader ([`super::load`]) produces these
//! values only when every document is valid. All durations are milliseconds (`*_ms`), so the
//! model serialises plainly into checkpoints.

use crate::metrics::config::MetricBackendDoc;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Milliseconds.
pub type Millis = u64;

/// Everything loaded from a set of files and folders.
#[derive(Debug, Clone, Default)]
pub struct Bundle {
    /// `MetricBackend` documents, each with the file it came from (relative paths in a
    /// backend resolve against that file's folder).
    pub backends: Vec<(MetricBackendDoc, PathBuf)>,
    /// Where each `MetricBackend` document starts, by name (for problems found when the
    /// backend is built: an unreadable recording, a bad address).
    pub backend_at: BTreeMap<String, SourcePos>,
    /// `Plugin` documents by name.
    pub plugins: BTreeMap<String, PluginSpec>,
    /// `VerificationTemplate` documents by name, as written (args not yet substituted).
    pub templates: BTreeMap<String, TemplateSpec>,
    /// `Rollout` documents, resolved, in file order.
    pub rollouts: Vec<std::sync::Arc<RolloutSpec>>,
}

/// A `Plugin` document: a WebAssembly component the operator names and pins.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PluginSpec {
    /// `metadata.name`: how metrics and rollouts refer to it.
    pub name: String,
    /// Where the component comes from.
    pub source: PluginSourceSpec,
    /// The pinned sha256 (hex, lowercase), required for files.
    pub sha256: Option<String>,
    /// Limits tightening (or, for JS/Python components, raising) the defaults.
    pub limits: PluginLimits,
    /// Hosts the plugin may reach over wasi:http (empty: none).
    pub allowed_hosts: Vec<String>,
    /// The file the document came from.
    pub file: PathBuf,
    /// How to reach and trust an `oci://` source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oci: Option<OciSpec>,
}

/// How an `oci://` plugin source is pulled and trusted.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OciSpec {
    /// `auth.username` (`env:NAME` / `file:PATH`, a file resolved against the document).
    pub username: Option<String>,
    /// `auth.password`, likewise.
    pub password: Option<String>,
    /// `tls.caFile`, resolved against the document's folder.
    pub ca_file: Option<PathBuf>,
    /// Plain HTTP.
    pub insecure: bool,
    /// The longest a pull may take.
    pub timeout_ms: Option<Millis>,
    /// `verify.cosign.publicKey`, resolved against the document's folder.
    pub cosign_key: Option<PathBuf>,
}

/// Where a plugin's component comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum PluginSourceSpec {
    /// Built into rollgate (`threshold`, `default-policy`).
    Builtin(String),
    /// A component file (resolved against the document's folder).
    File(PathBuf),
    /// A component in an OCI registry: `oci://REGISTRY/REPO@sha256:DIGEST`.
    Oci(String),
}

/// Per-plugin limit overrides; `None` keeps the host default.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PluginLimits {
    /// Linear memory cap in bytes.
    pub memory_bytes: Option<u64>,
    /// Plugin wall time per call.
    pub timeout_ms: Option<Millis>,
    /// Time per call waiting for metric queries.
    pub query_timeout_ms: Option<Millis>,
    /// Instruction budget per call.
    pub fuel: Option<u64>,
    /// Largest result in bytes.
    pub max_result_bytes: Option<usize>,
    /// Largest component file in bytes.
    pub max_component_bytes: Option<usize>,
}

/// A `VerificationTemplate` as written: declared args (with defaults) and metrics whose
/// strings may contain `{{args.name}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TemplateSpec {
    /// `metadata.name`.
    pub name: String,
    /// Declared args: name → default (`None`: the rollout must supply it).
    pub args: BTreeMap<String, Option<String>>,
    /// The metrics, args not substituted.
    pub metrics: Vec<MetricSpec>,
    /// The file the document came from.
    pub file: PathBuf,
}

/// One metric of a verification, resolved: which provider measures it, against which
/// backend, and the counting rules that turn its measurements into a status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MetricSpec {
    /// Unique within one verification run.
    pub name: String,
    /// The template it came from, if any.
    pub template: Option<String>,
    /// The verification-provider plugin: a `Plugin` document's name or a built-in name.
    pub plugin: String,
    /// The `MetricBackend` bound to this metric (the only one the plugin may query).
    pub backend: Option<String>,
    /// The provider's configuration (JSON), args substituted.
    pub config: serde_json::Value,
    /// Time between measurements. `None`: one measurement (unless `count` says more,
    /// which the loader refuses without an interval).
    pub interval_ms: Option<Millis>,
    /// Measurements to take. `None` with an interval: until the verification is stopped
    /// (background verification) or the phase ends.
    pub count: Option<u32>,
    /// Wait this long after the run starts before the first measurement.
    pub initial_delay_ms: Millis,
    /// The metric fails when failures exceed this (default 0; -1: never by total).
    pub failure_limit: i64,
    /// Inconclusive when inconclusive verdicts exceed this (default 0).
    pub inconclusive_limit: u32,
    /// Error when consecutive errors exceed this (default 4).
    pub consecutive_error_limit: u32,
    /// Failed when this many failures happen in a row (`None`: off).
    pub consecutive_failure_limit: Option<u32>,
    /// Successful once this many passes happen in a row (`None`: off).
    pub consecutive_success_limit: Option<u32>,
    /// What a `no-data` verdict counts as.
    pub no_data: NoDataAction,
    /// With `no_data: no-data`: the metric's status is no-data when no-data verdicts
    /// exceed this (default 0).
    pub no_data_limit: u32,
    /// Measured and shown, never decides.
    pub dry_run: bool,
    /// Non-failed measurements kept per metric (failures are all kept). Default 10.
    pub retention: u32,
    /// The args in effect (passed to the plugin in its context).
    pub args: BTreeMap<String, String>,
    /// Where `provider.config` is written, for problems the plugin finds in it later.
    #[serde(default)]
    pub config_at: Option<SourcePos>,
}

/// Where a value is written in the spec files, for problems found after loading (a
/// plugin checking its configuration): `file:line:col` and the field path.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub struct SourcePos {
    /// The file.
    pub file: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub col: usize,
    /// The field path (`spec.metrics[0].provider.config`).
    pub path: String,
}

/// What a `no-data` verdict counts as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum NoDataAction {
    /// Its own counter and its own metric status (`no-data`), mapped by the failure policy.
    #[default]
    NoData,
    /// Count it as inconclusive.
    Inconclusive,
    /// Count it as a failure.
    Fail,
    /// Count it as a pass (no traffic means nothing went wrong).
    Pass,
}

/// A `Rollout` document, resolved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RolloutSpec {
    /// `metadata.name`.
    pub name: String,
    /// The file it came from.
    pub file: PathBuf,
    /// The version running now.
    pub stable_version: String,
    /// The version being rolled out.
    pub canary_version: String,
    /// Where steps are applied.
    pub target: TargetSpec,
    /// How traffic or instances move.
    pub strategy: Strategy,
    /// The phases, in order (at least one).
    pub phases: Vec<PhaseSpec>,
    /// Verification that runs across phases, from `starting_phase` until the rollout ends.
    pub background: Option<BackgroundSpec>,
    /// The failure policy that turns verification results into decisions.
    pub failure_policy: PolicyRef,
    /// A phase that makes no progress for this long fails the rollout (time paused does
    /// not count). `None`: no deadline.
    pub progress_deadline_ms: Option<Millis>,
    /// What happens when the deadline passes.
    pub on_deadline: DeadlineAction,
    /// How a rollback is carried out.
    pub rollback: RollbackMode,
    /// How long a step may take to become ready, and how often readiness is asked.
    pub readiness: Readiness,
    /// The rollout's args (also used to substitute templates).
    pub args: BTreeMap<String, String>,
    /// Webhooks told of this rollout's state changes and decisions (server mode).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notifications: Vec<NotificationSpec>,
}

/// A webhook for a rollout's events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NotificationSpec {
    /// Where events are POSTed.
    pub url: String,
    /// Only these audit actions; empty: every state change and decision.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<String>,
}

/// The failure policy a rollout uses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyRef {
    /// A `Plugin` document's name or a built-in name (default `default-policy`).
    pub plugin: String,
    /// Its configuration (JSON).
    pub config: serde_json::Value,
    /// Where the configuration is written.
    #[serde(default)]
    pub config_at: Option<SourcePos>,
}

/// What an exceeded progress deadline does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum DeadlineAction {
    /// Mark the rollout failed and leave what was applied (the default).
    #[default]
    Fail,
    /// Roll back.
    Rollback,
}

/// How a rollback runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub enum RollbackMode {
    /// Restore the stable version in one step.
    #[default]
    Immediate,
    /// Walk the weights back down phase by phase (reverse order), each step waiting for
    /// readiness and `step_pause_ms`, honouring gates of kind `rollback-step`.
    Gradual {
        /// Pause between rollback steps.
        step_pause_ms: Millis,
    },
    /// Ocean CD's "New Rollout": a new run takes the stable version back through every
    /// phase, with its verification, as a rollout of its own (stable and canary swapped).
    /// A rollback of that run, which only an operator can ask for, is immediate.
    NewRollout,
}

/// Readiness waiting after each applied step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Readiness {
    /// Give up (and let the failure policy treat it as an error) after this long.
    pub timeout_ms: Millis,
    /// Ask this often.
    pub interval_ms: Millis,
}

impl Default for Readiness {
    fn default() -> Self {
        Readiness {
            timeout_ms: 5 * 60_000,
            interval_ms: 2_000,
        }
    }
}

/// Where a rollout's steps are applied.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum TargetSpec {
    /// Verification only: nothing is changed anywhere.
    None,
    /// Run the operator's command per step.
    Exec(ExecTargetSpec),
    /// POST each step as JSON.
    Webhook(WebhookTargetSpec),
}

/// An `exec` target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExecTargetSpec {
    /// Program and arguments (no shell unless the operator names one).
    pub command: Vec<String>,
    /// Optional readiness probe: ready when it exits 0.
    pub ready_command: Option<Vec<String>>,
    /// Per invocation.
    pub timeout_ms: Millis,
    /// Extra environment.
    pub env: BTreeMap<String, String>,
    /// Working directory as written: relative to the rollout file's folder, which the
    /// target joins it onto when it is built (default: that folder).
    pub working_dir: Option<PathBuf>,
}

/// A `webhook` target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookTargetSpec {
    /// Where steps are POSTed.
    pub url: String,
    /// Optional readiness URL: GET, ready on 2xx. Without it the step is ready once applied.
    pub ready_url: Option<String>,
    /// Per request.
    pub timeout_ms: Millis,
    /// Retries after a failed request (connection error, 5xx, 429).
    pub retries: u32,
    /// Delay before the first retry (doubling).
    pub retry_delay_ms: Millis,
    /// Extra headers; values may be `env:NAME` / `file:PATH` references.
    pub headers: BTreeMap<String, String>,
}

/// How a rollout moves.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Strategy {
    /// Each phase sets a traffic weight on the canary.
    Canary,
    /// Each phase's weight is the share of instances updated, in batches of
    /// `parallelism` with a delay between batches.
    Rolling {
        /// The instances, in update order.
        instances: Vec<String>,
        /// Instances per batch (at least 1).
        parallelism: u32,
        /// Pause between batches.
        delay_between_batches_ms: Millis,
    },
    /// The new version is deployed in full beside the old one and must become ready; the
    /// phases before the first weight-100 phase verify the preview; the weight-100 phase
    /// cuts all traffic over.
    BlueGreen,
}

/// One phase.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PhaseSpec {
    /// Unique within the rollout.
    pub name: String,
    /// Canary: traffic percent. Rolling: percent of instances updated. Blue-green: 0
    /// (preview) or 100 (cut over).
    pub weight: f64,
    /// A pause after the phase's verification (timed or until promoted).
    pub pause: Option<PauseSpec>,
    /// The phase's verification (may be empty). Shared with the runs measuring them.
    pub metrics: Vec<std::sync::Arc<MetricSpec>>,
    /// Gates of this phase.
    pub gates: Vec<GateSpec>,
}

/// A pause in a phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum PauseSpec {
    /// Resume by itself after this long.
    Timed(Millis),
    /// Wait for an operator to promote.
    Indefinite,
}

/// Background verification.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BackgroundSpec {
    /// Index of the phase where it starts (default 0).
    pub starting_phase: usize,
    /// Its metrics. Shared with the runs measuring them.
    pub metrics: Vec<std::sync::Arc<MetricSpec>>,
}

/// An HTTP gate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GateSpec {
    /// Unique within the phase.
    pub name: String,
    /// When it is asked.
    pub kind: GateKind,
    /// The URL (POST of a JSON description of the rollout and phase).
    pub url: String,
    /// Per request.
    pub timeout_ms: Millis,
    /// Retries of a failed request before counting it as closed.
    pub retries: u32,
    /// While closed, ask again this often.
    pub interval_ms: Millis,
}

/// When a gate is asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum GateKind {
    /// Before the phase's step is applied; closed → paused(gate) until it opens.
    ConfirmPhase,
    /// Before promoting out of the phase; closed → paused(gate).
    ConfirmPromotion,
    /// Asked while the phase runs; an open (2xx) answer requests a rollback.
    Rollback,
}
