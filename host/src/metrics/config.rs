//! `MetricBackend` documents: how operators declare backends, in YAML.
//!
//! ```yaml
//! apiVersion: rollgate.dev/v1alpha1
//! kind: MetricBackend
//! metadata:
//!   name: prometheus
//! spec:
//!   prometheus:
//!     address: http://prometheus.monitoring:9090
//!     timeout: 10s
//!     bearerToken: env:PROM_TOKEN
//!   maxConcurrency: 8
//!   maxPoints: 500000
//! ```
//!
//! Exactly one of `prometheus`, `replay` (and, when built with the `datadog` feature,
//! `datadog`) per backend.
//!
//! The documents are read by the spec loader ([`crate::spec::load`]), like every other
//! kind: that is where YAML, shape, `apiVersion`, name and [`problems`] errors are found,
//! at file:line:col. This module holds the structs the loader parses into, the rules a
//! spec must meet, and [`build`], which turns a loaded document into a backend (reading
//! its files and credentials); its errors start with the field path.

use super::prometheus::{Prometheus, PrometheusConfig};
use super::replay::Replay;
use super::{Backend, BackendOptions};
use schemars::JsonSchema;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

/// A `MetricBackend` document.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MetricBackendDoc {
    /// Must be `rollgate.dev/v1alpha1`.
    pub api_version: String,
    /// Must be `MetricBackend`.
    pub kind: String,
    /// Name and labels.
    pub metadata: Metadata,
    /// The backend.
    pub spec: BackendSpec,
}

/// Kubernetes-style metadata.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Metadata {
    /// The name other documents refer to.
    pub name: String,
    /// Free-form labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Free-form annotations.
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

/// One backend: exactly one type, and its limits.
// The `MetricBackend` JSON Schema (`crate::spec::json_schemas`) is derived from this struct
// and the configs it holds: their doc comments are what editors show.
#[derive(Debug, Clone, Deserialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BackendSpec {
    /// A Prometheus-compatible HTTP API.
    #[serde(default)]
    pub prometheus: Option<PrometheusConfig>,
    /// Recorded series (rollgate JSON or OpenMetrics text).
    #[serde(default)]
    pub replay: Option<ReplayConfig>,
    /// Datadog (needs a build with the `datadog` feature).
    #[serde(default)]
    #[cfg_attr(
        not(feature = "datadog"),
        schemars(
            with = "Option<serde_json::Map<String, serde_json::Value>>",
            extend("default" = null)
        )
    )]
    pub datadog: Option<DatadogSpec>,
    /// Queries in flight at once (default 8).
    #[serde(default)]
    pub max_concurrency: Option<usize>,
    /// Largest result accepted, in points over all series (default 500,000).
    #[serde(default)]
    pub max_points: Option<usize>,
    /// Most queries a second to this backend, shared by every rollout (default: no limit).
    #[serde(default)]
    pub rate_limit: Option<f64>,
    /// Identical queries (same text and window, times rounded down to this) within this
    /// span are sent once and their result shared (default `1s`; `0s` turns it off).
    #[serde(default)]
    pub share_window: Option<String>,
}

/// The `datadog` section: parsed when the feature is built in, refused with the fix otherwise.
#[cfg(feature = "datadog")]
pub type DatadogSpec = super::datadog::DatadogConfig;
/// The `datadog` section: parsed when the feature is built in, refused with the fix otherwise.
#[cfg(not(feature = "datadog"))]
pub type DatadogSpec = serde::de::IgnoredAny;

/// A replay backend's settings.
#[derive(Debug, Clone, Deserialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ReplayConfig {
    /// The recording, relative to the document's file.
    pub file: String,
}

/// What is wrong with a backend's spec regardless of its files and credentials: each
/// problem with the field path it is about. The spec loader and [`build`] share it.
pub fn problems(spec: &BackendSpec) -> Vec<(&'static str, &'static str)> {
    let mut out = Vec::new();
    let types = [
        spec.prometheus.is_some(),
        spec.replay.is_some(),
        spec.datadog.is_some(),
    ];
    match types.iter().filter(|t| **t).count() {
        0 => out.push((
            "spec",
            "spec needs one backend type: prometheus, datadog or replay",
        )),
        1 => {}
        _ => out.push((
            "spec",
            "spec sets more than one backend type; a MetricBackend has exactly one",
        )),
    }
    if spec.max_concurrency == Some(0) {
        out.push(("spec.maxConcurrency", "must be at least 1"));
    }
    if spec.rate_limit.is_some_and(|r| !r.is_finite() || r <= 0.0) {
        out.push((
            "spec.rateLimit",
            "must be a number of queries per second above 0 (leave it out for no limit)",
        ));
    }
    if let Some(w) = &spec.share_window
        && rollgate_duration::parse_ms(w).is_err()
    {
        out.push((
            "spec.shareWindow",
            "must be a duration such as 1s or 500ms (0s turns sharing off)",
        ));
    }
    out
}

/// Identical live queries within this many milliseconds share one answer, by default.
pub const DEFAULT_SHARE_MS: u64 = 1000;

/// Build one backend.
pub fn build(
    doc: &MetricBackendDoc,
    base: &Path,
) -> Result<(Arc<dyn Backend>, BackendOptions), String> {
    build_aligned(doc, base, None)
}

/// [`build`], with a replay backend's recording shifted to start at `replay_origin_ms` (the
/// rollout's start) when given, so recorded metrics replay along a rollout.
pub fn build_aligned(
    doc: &MetricBackendDoc,
    base: &Path,
    replay_origin_ms: Option<i64>,
) -> Result<(Arc<dyn Backend>, BackendOptions), String> {
    let spec = &doc.spec;
    if let Some((path, message)) = problems(spec).into_iter().next() {
        return Err(if path == "spec" {
            message.to_string()
        } else {
            format!("{path} {message}")
        });
    }
    let options = BackendOptions {
        max_concurrency: spec
            .max_concurrency
            .unwrap_or(BackendOptions::default().max_concurrency),
        max_points: spec
            .max_points
            .unwrap_or(BackendOptions::default().max_points),
        rate_per_second: spec.rate_limit,
        share_ms: match &spec.share_window {
            Some(w) => {
                rollgate_duration::parse_ms(w).map_err(|e| format!("spec.shareWindow: {e}"))?
            }
            // A recording is local and cheap, and replays on exact (often simulated) times.
            None if spec.replay.is_some() => 0,
            None => DEFAULT_SHARE_MS,
        },
    };
    let backend: Arc<dyn Backend> = if let Some(p) = &spec.prometheus {
        Arc::new(Prometheus::new(p).map_err(|e| format!("spec.prometheus.{e}"))?)
    } else if let Some(r) = &spec.replay {
        let file = base.join(&r.file);
        let replay = Replay::open(&file).map_err(|e| format!("spec.replay.file: {e}"))?;
        match replay_origin_ms {
            Some(origin) => Arc::new(
                replay
                    .aligned_to(origin)
                    .map_err(|e| format!("spec.replay.file: {e}"))?,
            ),
            None => Arc::new(replay),
        }
    } else if let Some(d) = &spec.datadog {
        datadog(d)?
    } else {
        return Err("spec needs one backend type: prometheus, datadog or replay".into());
    };
    Ok((backend, options))
}

#[cfg(feature = "datadog")]
fn datadog(config: &DatadogSpec) -> Result<Arc<dyn Backend>, String> {
    Ok(Arc::new(
        super::datadog::Datadog::new(config).map_err(|e| format!("spec.datadog.{e}"))?,
    ))
}

#[cfg(not(feature = "datadog"))]
fn datadog(_: &DatadogSpec) -> Result<Arc<dyn Backend>, String> {
    Err("spec.datadog: this rollgate was built without Datadog support; build it with `--features datadog` (release builds have it)".into())
}
