//! The documents exactly as operators write them: serde structs that mirror the YAML,
//! every value an error may point at wrapped in [`P`] so it keeps its line and column.
//!
//! These structs only describe *shape* (field names, types, unknown fields refused). What
//! the values mean — durations, references, defaults, cross-field rules — is decided in
//! [`super::resolve`], which turns them into the [`super::model`]. The JSON Schemas that
//! editors use are generated from these same structs (a `MetricBackend`'s spec from
//! [`crate::metrics::config::BackendSpec`] and the configs it holds, which the loader
//! parses backends into), so the schema and the parser cannot drift apart.

use super::model::{DeadlineAction, GateKind, NoDataAction};
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

/// A value with the position (1-based line and column, relative to its document's text) it
/// was read from, so that problems found after parsing still point into the file.
#[derive(Debug, Clone, PartialEq)]
pub struct P<T> {
    /// The value.
    pub value: T,
    /// 1-based line within the document text (0: unknown).
    pub line: u64,
    /// 1-based column (0: unknown).
    pub col: u64,
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for P<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let spanned = serde_saphyr::Spanned::<T>::deserialize(deserializer)?;
        Ok(P {
            value: spanned.value,
            line: spanned.referenced.line(),
            col: spanned.referenced.column(),
        })
    }
}

impl<T: JsonSchema> JsonSchema for P<T> {
    fn inline_schema() -> bool {
        T::inline_schema()
    }
    fn schema_name() -> Cow<'static, str> {
        T::schema_name()
    }
    fn schema_id() -> Cow<'static, str> {
        T::schema_id()
    }
    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        T::json_schema(generator)
    }
}

/// Only what is needed to choose a document's struct: read first, ignoring everything else,
/// so a file can mix kinds without losing positions.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Probe {
    /// `apiVersion`, when present.
    #[serde(default)]
    pub api_version: Option<P<String>>,
    /// `kind`, when present.
    #[serde(default)]
    pub kind: Option<P<String>>,
    /// `metadata`, when present.
    #[serde(default)]
    pub metadata: Option<ProbeMetadata>,
}

/// The part of `metadata` the probe reads.
#[derive(Debug, Deserialize)]
pub struct ProbeMetadata {
    /// `metadata.name`, when present.
    #[serde(default)]
    pub name: Option<P<String>>,
}

/// A rollgate document of one kind: the Kubernetes-style envelope around a `spec`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Doc<S> {
    /// Always `rollgate.dev/v1alpha1`.
    pub api_version: String,
    /// The document's kind.
    pub kind: String,
    /// Name, labels and annotations.
    pub metadata: MetadataDoc,
    /// What the document declares.
    pub spec: S,
}

/// Kubernetes-style metadata.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MetadataDoc {
    /// How other documents refer to this one: 1-63 of `a-z`, `0-9`, `-`, starting with a
    /// letter.
    pub name: P<String>,
    /// Free-form labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Free-form annotations.
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

/// `Plugin.spec`: a WebAssembly component the operator names and pins.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PluginDoc {
    /// `builtin:threshold`, a built-in name (`threshold`, `default-policy`), a component
    /// file relative to this document's file, or a component published to an OCI registry,
    /// pinned by digest: `oci://REGISTRY/REPOSITORY@sha256:DIGEST`.
    pub source: P<String>,
    /// The component's sha256 (64 hex digits, optional `sha256:` prefix). Required for a
    /// file, refused for a built-in.
    #[serde(default)]
    pub sha256: Option<P<String>>,
    /// Limits overriding the host defaults.
    #[serde(default)]
    pub limits: Option<LimitsDoc>,
    /// Hosts the plugin may reach over wasi:http.
    #[serde(default)]
    pub allowed_hosts: Vec<P<String>>,
    /// Registry credentials for an `oci://` source, by reference.
    #[serde(default)]
    pub auth: Option<OciAuthDoc>,
    /// TLS settings for an `oci://` source's registry.
    #[serde(default)]
    pub tls: Option<OciTlsDoc>,
    /// Reach an `oci://` source's registry over plain HTTP (a local registry only).
    #[serde(default)]
    pub insecure: Option<P<bool>>,
    /// The longest pulling an `oci://` source may take (default 30s).
    #[serde(default)]
    pub pull_timeout: Option<P<String>>,
    /// Check a signature before trusting an `oci://` source's digest.
    #[serde(default)]
    pub verify: Option<VerifyDoc>,
}

/// `Plugin.spec.auth`: registry credentials, each `env:NAME` or `file:PATH`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct OciAuthDoc {
    /// `env:NAME` or `file:PATH`.
    pub username: P<String>,
    /// `env:NAME` or `file:PATH`.
    pub password: P<String>,
}

/// `Plugin.spec.tls`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct OciTlsDoc {
    /// A PEM bundle of CA certificates the registry's certificate may chain to, relative to
    /// this document's file.
    pub ca_file: P<String>,
}

/// `Plugin.spec.verify`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct VerifyDoc {
    /// A key-based cosign signature.
    pub cosign: CosignDoc,
}

/// `Plugin.spec.verify.cosign`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CosignDoc {
    /// `file:PATH` of the PEM public key (ECDSA P-256, as `cosign generate-key-pair`
    /// writes), relative to this document's file.
    pub public_key: P<String>,
}

/// A plugin's limits; each one optional.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LimitsDoc {
    /// Linear memory cap: bytes, or with a `Ki`/`Mi`/`Gi` suffix (`64Mi`).
    #[serde(default)]
    pub memory: Option<P<SizeDoc>>,
    /// Wall time per call (`2s`).
    #[serde(default)]
    pub timeout: Option<P<String>>,
    /// Time per call waiting for metric queries (`30s`).
    #[serde(default)]
    pub query_timeout: Option<P<String>>,
    /// Instruction budget per call.
    #[serde(default)]
    pub fuel: Option<P<u64>>,
    /// Largest result in bytes.
    #[serde(default)]
    pub max_result_bytes: Option<P<u64>>,
    /// Largest component file: bytes, or with a `Ki`/`Mi`/`Gi` suffix (`8Mi`).
    #[serde(default)]
    pub max_component_bytes: Option<P<SizeDoc>>,
}

/// A size: plain bytes or a string with a binary suffix.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum SizeDoc {
    /// Bytes.
    Bytes(u64),
    /// `512Ki`, `64Mi`, `1Gi` or a number of bytes as text.
    Text(String),
}

/// `VerificationTemplate.spec`: metrics to reuse across rollouts, parameterised by args.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TemplateDoc {
    /// Declared args; `{{args.NAME}}` in the metrics refers to them.
    #[serde(default)]
    pub args: Vec<ArgDoc>,
    /// The metrics.
    pub metrics: P<Vec<MetricDoc>>,
}

/// A declared template arg.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ArgDoc {
    /// The arg's name.
    pub name: P<String>,
    /// Its default; without one, every rollout using the template must supply it.
    #[serde(default)]
    pub value: Option<String>,
}

/// One metric, in a template or inline in a rollout.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MetricDoc {
    /// Unique within the verification it runs in.
    pub name: P<String>,
    /// Which plugin measures it, against which backend, configured how.
    pub provider: ProviderDoc,
    /// Time between measurements (`30s`). Without it: one measurement.
    #[serde(default)]
    pub interval: Option<P<String>>,
    /// Measurements to take (at least 1; more than 1 needs `interval`).
    #[serde(default)]
    pub count: Option<P<u32>>,
    /// Wait before the first measurement (default `0s`).
    #[serde(default)]
    pub initial_delay: Option<P<String>>,
    /// Fails when failures exceed this (default 0; -1: never by total, which needs a
    /// consecutive limit).
    #[serde(default)]
    pub failure_limit: Option<P<i64>>,
    /// Inconclusive when inconclusive verdicts exceed this (default 0).
    #[serde(default)]
    pub inconclusive_limit: Option<u32>,
    /// Error when consecutive errors exceed this (default 4).
    #[serde(default)]
    pub consecutive_error_limit: Option<u32>,
    /// Failed after this many failures in a row.
    #[serde(default)]
    pub consecutive_failure_limit: Option<P<u32>>,
    /// Successful after this many passes in a row.
    #[serde(default)]
    pub consecutive_success_limit: Option<P<u32>>,
    /// What a no-data verdict counts as (default `no-data`).
    #[serde(default)]
    pub no_data: Option<NoDataAction>,
    /// With `noData: no-data`: no-data when such verdicts exceed this (default 0).
    #[serde(default)]
    pub no_data_limit: Option<u32>,
    /// Measured and shown, never decides.
    #[serde(default)]
    pub dry_run: Option<bool>,
    /// Non-failed measurements kept (default 10).
    #[serde(default)]
    pub measurement_retention: Option<P<u32>>,
}

/// A metric's provider.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ProviderDoc {
    /// A `Plugin` document's name or a built-in name.
    pub plugin: P<String>,
    /// A `MetricBackend` document's name (may use `{{args.NAME}}`).
    #[serde(default)]
    pub backend: Option<P<String>>,
    /// The plugin's configuration; `{{args.NAME}}` is substituted in every string.
    #[serde(default)]
    pub config: Option<P<Node>>,
}

/// Free-form YAML that keeps every value's position, so a bad `{{args.x}}` deep inside a
/// provider's config is reported where it is written.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    /// `null` / `~` / nothing.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// A number.
    Number(serde_json::Number),
    /// A string.
    String(String),
    /// A sequence.
    Seq(Vec<P<Node>>),
    /// A mapping (keys as text with their positions, in file order).
    Map(Vec<(P<String>, P<Node>)>),
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_unit<E: de::Error>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
        Node::deserialize(d)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Node, E> {
        Ok(Node::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Node, E> {
        Ok(Node::Number(v.into()))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Node, E> {
        Ok(Node::Number(v.into()))
    }
    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Node, E> {
        i64::try_from(v)
            .map(|v| Node::Number(v.into()))
            .map_err(|_| E::custom("integer out of range"))
    }
    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Node, E> {
        u64::try_from(v)
            .map(|v| Node::Number(v.into()))
            .map_err(|_| E::custom("integer out of range"))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Node, E> {
        serde_json::Number::from_f64(v)
            .map(Node::Number)
            .ok_or_else(|| E::custom("NaN and infinite numbers cannot be used in a config"))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Node, E> {
        Ok(Node::String(v.to_string()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Node, E> {
        Ok(Node::String(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<P<Node>>()? {
            items.push(item);
        }
        Ok(Node::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<P<KeyText>>()? {
            let value = map.next_value::<P<Node>>()?;
            let key = P {
                value: key.value.0,
                line: key.line,
                col: key.col,
            };
            entries.push((key, value));
        }
        Ok(Node::Map(entries))
    }
}

/// The field path (`spec.metrics[0].count`) of what sits at `line:col` of a document's
/// text, for errors that serde reports with a position only. The path descends through the
/// last key (or item) starting at or before the position; it stops at a mapping that starts
/// exactly there, so "missing field" names the mapping that lacks it. Empty when the text
/// is not even YAML (or holds a value no config could, such as `.nan`).
pub fn path_at(text: &str, line: u64, col: u64) -> String {
    let Ok(root) = serde_saphyr::from_str::<P<Node>>(text) else {
        return String::new();
    };
    let at = (line, col);
    let mut path = String::new();
    let mut node = &root;
    loop {
        if (node.line, node.col) == at {
            break;
        }
        let next = match &node.value {
            Node::Map(entries) => entries
                .iter()
                .rev()
                .find(|(k, _)| k.line > 0 && (k.line, k.col) <= at)
                .map(|(k, v)| {
                    if !path.is_empty() {
                        path.push('.');
                    }
                    path.push_str(&k.value);
                    v
                }),
            Node::Seq(items) => items
                .iter()
                .enumerate()
                .rev()
                .find(|(_, v)| v.line > 0 && (v.line, v.col) <= at)
                .map(|(i, v)| {
                    path.push_str(&format!("[{i}]"));
                    v
                }),
            Node::Null | Node::Bool(_) | Node::Number(_) | Node::String(_) => None,
        };
        match next {
            Some(child) => node = child,
            None => break,
        }
    }
    path
}

/// A mapping key as text (YAML allows numbers and booleans as keys; JSON wants strings).
struct KeyText(String);

impl<'de> Deserialize<'de> for KeyText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = KeyText;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a scalar mapping key")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<KeyText, E> {
                Ok(KeyText(v.to_string()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<KeyText, E> {
                Ok(KeyText(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<KeyText, E> {
                Ok(KeyText(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<KeyText, E> {
                Ok(KeyText(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<KeyText, E> {
                Ok(KeyText(v.to_string()))
            }
        }
        deserializer.deserialize_any(V)
    }
}

impl JsonSchema for Node {
    fn schema_name() -> Cow<'static, str> {
        "AnyValue".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        schemars::json_schema!({
            "description": "Free-form configuration (any YAML value)."
        })
    }
}

/// `Rollout.spec`: what to roll out, where, in which phases, verified how.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RolloutDoc {
    /// The version running now.
    pub stable_version: P<String>,
    /// The version being rolled out.
    pub canary_version: P<String>,
    /// Args for the templates this rollout uses (name → value).
    #[serde(default)]
    pub args: BTreeMap<String, String>,
    /// Where steps are applied: exactly one of `exec`, `webhook`, `none`.
    pub target: P<TargetDoc>,
    /// How the rollout moves: exactly one of `canary`, `rolling`, `blueGreen`.
    pub strategy: P<StrategyDoc>,
    /// The phases, in order (at least one).
    pub phases: P<Vec<PhaseDoc>>,
    /// Verification across phases, from `startingPhase` to the end.
    #[serde(default)]
    pub background_verification: Option<BackgroundDoc>,
    /// The failure policy (default: the built-in `default-policy`).
    #[serde(default)]
    pub failure_policy: Option<PolicyDoc>,
    /// A phase making no progress for this long fails the rollout (`10m`).
    #[serde(default)]
    pub progress_deadline: Option<P<String>>,
    /// What an exceeded deadline does: `fail` (default) or `rollback`.
    #[serde(default)]
    pub on_deadline: Option<DeadlineAction>,
    /// How a rollback runs (default: immediate).
    #[serde(default)]
    pub rollback: Option<P<RollbackDoc>>,
    /// Readiness waiting after each step.
    #[serde(default)]
    pub readiness: Option<ReadinessDoc>,
    /// Webhooks told of this rollout's state changes and decisions (server mode).
    #[serde(default)]
    pub notifications: Vec<NotificationDoc>,
}

/// A webhook that receives a JSON event for every state change and decision.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NotificationDoc {
    /// Where events are POSTed (http or https).
    pub url: P<String>,
    /// Only these audit actions (`rollback`, `succeed`, `pause`, …); default: every state
    /// change and decision.
    #[serde(default)]
    pub events: Vec<String>,
}

/// A rollout's target: exactly one field set.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TargetDoc {
    /// Run a command per step.
    #[serde(default)]
    pub exec: Option<P<ExecDoc>>,
    /// POST each step to a URL.
    #[serde(default)]
    pub webhook: Option<P<WebhookDoc>>,
    /// Change nothing (verification only): `none: {}`.
    #[serde(default)]
    pub none: Option<Empty>,
}

/// An empty mapping (`{}`).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Empty {}

/// An `exec` target.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ExecDoc {
    /// Program and arguments (no shell).
    pub command: P<Vec<String>>,
    /// Readiness probe: ready when it exits 0.
    #[serde(default)]
    pub ready_command: Option<P<Vec<String>>>,
    /// Per invocation (default `5m`).
    #[serde(default)]
    pub timeout: Option<P<String>>,
    /// Extra environment.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Working directory, relative to this file (default: the file's folder).
    #[serde(default)]
    pub working_dir: Option<String>,
}

/// A `webhook` target.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct WebhookDoc {
    /// Where steps are POSTed (http or https).
    pub url: P<String>,
    /// Readiness URL (GET, ready on 2xx).
    #[serde(default)]
    pub ready_url: Option<P<String>>,
    /// Per request (default `10s`).
    #[serde(default)]
    pub timeout: Option<P<String>>,
    /// Retries after a failed request (default 3, at most 20).
    #[serde(default)]
    #[schemars(range(max = 20))]
    pub retries: Option<P<u32>>,
    /// Delay before the first retry, doubling (default `1s`).
    #[serde(default)]
    pub retry_delay: Option<P<String>>,
    /// Extra headers; values may be `env:NAME` / `file:PATH`.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

/// A rollout's strategy: exactly one field set.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct StrategyDoc {
    /// Each phase sets the canary's traffic weight: `canary: {}`.
    #[serde(default)]
    pub canary: Option<Empty>,
    /// Each phase's weight is the share of instances updated.
    #[serde(default)]
    pub rolling: Option<P<RollingDoc>>,
    /// Deploy beside, verify the preview, cut over at weight 100: `blueGreen: {}`.
    #[serde(default)]
    pub blue_green: Option<Empty>,
}

/// The `rolling` strategy.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RollingDoc {
    /// The instances in update order (or `replicas`).
    #[serde(default)]
    pub instances: Option<P<Vec<P<String>>>>,
    /// A number of instances, named `instance-1` … `instance-N` (or `instances`); 1 to
    /// 10000.
    #[serde(default)]
    #[schemars(range(min = 1, max = 10000))]
    pub replicas: Option<P<u32>>,
    /// Instances per batch (default 1).
    #[serde(default)]
    pub parallelism: Option<P<u32>>,
    /// Pause between batches (default `0s`).
    #[serde(default)]
    pub delay_between_batches: Option<P<String>>,
}

/// One phase.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PhaseDoc {
    /// Unique within the rollout.
    pub name: P<String>,
    /// Percent (0-100): traffic (canary), instances (rolling), 0 or 100 (blue-green).
    pub weight: P<f64>,
    /// A pause after verification: `{duration: 5m}`, or `{}` until promoted.
    #[serde(default)]
    pub pause: Option<PauseDoc>,
    /// The phase's verification.
    #[serde(default)]
    pub verification: Option<VerificationDoc>,
    /// HTTP gates.
    #[serde(default)]
    pub gates: Vec<GateDoc>,
}

/// A phase's pause.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PauseDoc {
    /// How long; without it, until an operator promotes.
    #[serde(default)]
    pub duration: Option<P<String>>,
}

/// Templates and inline metrics.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct VerificationDoc {
    /// Templates used, with per-use args.
    #[serde(default)]
    pub templates: Vec<P<TemplateRefDoc>>,
    /// Inline metrics.
    #[serde(default)]
    pub metrics: Vec<MetricDoc>,
}

/// A template reference: a name, or `{name, args}`.
#[derive(Debug, Clone)]
pub struct TemplateRefDoc {
    /// The template's name.
    pub name: String,
    /// Per-use args.
    pub args: BTreeMap<String, String>,
}

/// The mapping form of a template reference.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TemplateRefMap {
    /// The template's name.
    pub name: String,
    /// Per-use args, overriding the rollout's args and the template's defaults.
    #[serde(default)]
    pub args: BTreeMap<String, String>,
}

impl<'de> Deserialize<'de> for TemplateRefDoc {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = TemplateRefDoc;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a template name or {name, args}")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<TemplateRefDoc, E> {
                Ok(TemplateRefDoc {
                    name: v.to_string(),
                    args: BTreeMap::new(),
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<TemplateRefDoc, A::Error> {
                let m = TemplateRefMap::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(TemplateRefDoc {
                    name: m.name,
                    args: m.args,
                })
            }
        }
        deserializer.deserialize_any(V)
    }
}

impl JsonSchema for TemplateRefDoc {
    fn schema_name() -> Cow<'static, str> {
        "TemplateRef".into()
    }
    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let map = generator.subschema_for::<TemplateRefMap>();
        schemars::json_schema!({
            "description": "A VerificationTemplate's name, or {name, args}.",
            "anyOf": [{"type": "string"}, map]
        })
    }
}

/// An HTTP gate.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct GateDoc {
    /// Unique within the phase.
    pub name: P<String>,
    /// `confirm-phase`, `confirm-promotion` or `rollback`.
    pub kind: GateKind,
    /// The URL (http or https).
    pub url: P<String>,
    /// Per request (default `10s`).
    #[serde(default)]
    pub timeout: Option<P<String>>,
    /// Retries of a failed request (default 2, at most 20).
    #[serde(default)]
    #[schemars(range(max = 20))]
    pub retries: Option<P<u32>>,
    /// While closed, ask again this often (default `30s`).
    #[serde(default)]
    pub interval: Option<P<String>>,
}

/// Background verification.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BackgroundDoc {
    /// The phase where it starts (default: the first).
    #[serde(default)]
    pub starting_phase: Option<P<String>>,
    /// Templates used, with per-use args.
    #[serde(default)]
    pub templates: Vec<P<TemplateRefDoc>>,
    /// Inline metrics.
    #[serde(default)]
    pub metrics: Vec<MetricDoc>,
}

/// The failure policy.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PolicyDoc {
    /// A `Plugin` document's name or a built-in name (default `default-policy`).
    #[serde(default)]
    pub plugin: Option<P<String>>,
    /// The policy's configuration.
    #[serde(default)]
    pub config: Option<P<Node>>,
}

/// How a rollback runs.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RollbackDoc {
    /// `immediate` (default), `gradual` or `new-rollout`.
    #[serde(default)]
    pub mode: Option<RollbackModeName>,
    /// With `gradual`: pause between steps (default `0s`).
    #[serde(default)]
    pub step_pause: Option<P<String>>,
}

/// The rollback modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum RollbackModeName {
    /// Restore the stable version in one step.
    Immediate,
    /// Walk the weights back down phase by phase.
    Gradual,
    /// A new run takes the previous version back through every phase, with verification.
    NewRollout,
}

/// Readiness waiting.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ReadinessDoc {
    /// Give up after this long (default `5m`).
    #[serde(default)]
    pub timeout: Option<P<String>>,
    /// Ask this often (default `2s`).
    #[serde(default)]
    pub interval: Option<P<String>>,
}
