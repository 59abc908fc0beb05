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
//! `datadog`) per backend. Parse errors carry file:line:col; errors found while building a
//! backend name the file, the backend and the field.

use super::prometheus::{Prometheus, PrometheusConfig};
use super::replay::Replay;
use super::{Backend, BackendOptions, Backends};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The API version of rollgate's documents.
pub const API_VERSION: &str = "rollgate.dev/v1alpha1";

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
#[derive(Debug, Clone, Deserialize, PartialEq)]
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
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ReplayConfig {
    /// The recording, relative to the document's file.
    pub file: String,
}

/// A problem with a backend document.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{location}: {message}")]
pub struct ConfigError {
    /// `file:line:col`, or `file: MetricBackend NAME` when the position is not known.
    pub location: String,
    /// What is wrong and what to do.
    pub message: String,
}

/// Parse the `MetricBackend` documents of a YAML text (`path` is used in messages and to
/// resolve relative files).
pub fn parse(text: &str, path: &Path) -> Result<Vec<MetricBackendDoc>, ConfigError> {
    let docs: Vec<MetricBackendDoc> = serde_saphyr::from_multiple(text).map_err(|e| {
        let (line, col) = e
            .location()
            .map(|l| (l.line(), l.column()))
            .unwrap_or((0, 0));
        let full = e.to_string();
        let first = full.lines().next().unwrap_or_default();
        // "error: line L column C: message" → "message"
        let message = first
            .split_once(": ")
            .map(|(_, rest)| rest)
            .and_then(|rest| rest.split_once(": ").map(|(_, m)| m))
            .unwrap_or(first)
            .to_string();
        ConfigError {
            location: format!("{}:{line}:{col}", path.display()),
            message,
        }
    })?;
    for doc in &docs {
        let at = || format!("{}: MetricBackend {:?}", path.display(), doc.metadata.name);
        if doc.api_version != API_VERSION {
            return Err(ConfigError {
                location: at(),
                message: format!(
                    "apiVersion {:?} is not supported; use {API_VERSION}",
                    doc.api_version
                ),
            });
        }
        if doc.kind != "MetricBackend" {
            return Err(ConfigError {
                location: at(),
                message: format!("kind {:?} where a MetricBackend was expected", doc.kind),
            });
        }
        if !valid_name(&doc.metadata.name) {
            return Err(ConfigError {
                location: at(),
                message: "metadata.name must be 1-63 lowercase letters, digits or '-', starting with a letter".into(),
            });
        }
    }
    Ok(docs)
}

/// Whether `name` is a valid document name: 1-63 of `a-z`, `0-9`, `-`, starting with a letter and
/// not ending with `-`.
pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.ends_with('-')
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

/// Read backend documents from files and build them all. Every problem is reported.
pub fn load(paths: &[PathBuf]) -> Result<Backends, Vec<ConfigError>> {
    let mut backends = Backends::new();
    let mut errors = Vec::new();
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    for path in paths {
        let text = match crate::files::read_text(path, &crate::files::SPEC_FILE) {
            Ok(t) => t,
            Err(e) => {
                let location = match e.position() {
                    Some((line, col)) => format!("{}:{line}:{col}", path.display()),
                    None => path.display().to_string(),
                };
                errors.push(ConfigError {
                    location,
                    message: e.to_string(),
                });
                continue;
            }
        };
        let docs = match parse(&text, path) {
            Ok(d) => d,
            Err(e) => {
                errors.push(e);
                continue;
            }
        };
        let base = path.parent().unwrap_or(Path::new("."));
        for doc in docs {
            let name = doc.metadata.name.clone();
            let location = format!("{}: MetricBackend {name:?}", path.display());
            if let Some(first) = seen.insert(name.clone(), path.display().to_string()) {
                errors.push(ConfigError {
                    location,
                    message: format!("a backend named {name:?} is already declared in {first}"),
                });
                continue;
            }
            match build(&doc, base) {
                Ok((backend, options)) => backends.insert(name, backend, options),
                Err(message) => errors.push(ConfigError { location, message }),
            }
        }
    }
    if errors.is_empty() {
        Ok(backends)
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
apiVersion: rollgate.dev/v1alpha1
kind: MetricBackend
metadata:
  name: prom
spec:
  prometheus:
    address: http://127.0.0.1:9090
    timeout: 5s
  maxConcurrency: 4
---
apiVersion: rollgate.dev/v1alpha1
kind: MetricBackend
metadata:
  name: recorded
spec:
  replay:
    file: rec.om
"#;

    #[test]
    fn documents_load_and_build() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("rec.om"), "up 1 1700000000\n").unwrap();
        let file = dir.path().join("backends.yaml");
        std::fs::write(&file, GOOD).unwrap();
        let backends = load(std::slice::from_ref(&file)).expect("valid");
        assert_eq!(backends.names(), ["prom", "recorded"]);
    }

    #[test]
    fn errors_say_where() {
        let p = Path::new("b.yaml");
        let cases = [
            (
                GOOD.replace("timeout: 5s", "timout: 5s"),
                "b.yaml:9:5",
                "unknown field `timout`",
            ),
            (
                GOOD.replace("maxConcurrency: 4", "maxConcurrency: four"),
                "b.yaml:10:19",
                "",
            ),
            (
                GOOD.replace(
                    "v1alpha1\nkind: MetricBackend\nmetadata:\n  name: prom",
                    "v9\nkind: MetricBackend\nmetadata:\n  name: prom",
                ),
                "b.yaml: MetricBackend \"prom\"",
                "apiVersion \"rollgate.dev/v9\" is not supported",
            ),
            (
                GOOD.replace("name: prom", "name: Prom_1"),
                "b.yaml: MetricBackend \"Prom_1\"",
                "metadata.name must be",
            ),
        ];
        for (text, location, message) in cases {
            let e = parse(&text, p).unwrap_err();
            assert_eq!(e.location, location, "{e}");
            assert!(e.message.contains(message), "{e}");
        }
    }

    #[test]
    fn datadog_backends_need_the_feature_or_build() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("key");
        std::fs::write(&key, "k-1234").unwrap();
        let file = dir.path().join("dd.yaml");
        std::fs::write(
            &file,
            format!(
                "apiVersion: rollgate.dev/v1alpha1\nkind: MetricBackend\nmetadata:\n  name: dd\nspec:\n  datadog:\n    site: datadoghq.eu\n    apiKey: file:{k}\n    applicationKey: file:{k}\n",
                k = key.display()
            ),
        )
        .unwrap();
        let result = load(&[file]);
        #[cfg(feature = "datadog")]
        assert_eq!(result.expect("builds").names(), ["dd"]);
        #[cfg(not(feature = "datadog"))]
        {
            let errors = result.err().expect("refused");
            assert!(
                errors[0]
                    .message
                    .contains("built without Datadog support; build it with `--features datadog`"),
                "{errors:?}"
            );
        }
    }

    #[test]
    fn build_errors_name_backend_and_field() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("b.yaml");
        let text = GOOD.replace("timeout: 5s", "timeout: 5s\n    bearerToken: hunter2")
            + "---\napiVersion: rollgate.dev/v1alpha1\nkind: MetricBackend\nmetadata:\n  name: prom\nspec:\n  replay:\n    file: x.om\n";
        std::fs::write(&file, text).unwrap();
        let errors = load(&[file]).err().expect("invalid");
        let text: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        assert!(text[0].contains("MetricBackend \"prom\": spec.prometheus.bearerToken: credentials are given by reference only"), "{text:?}");
        assert!(
            text[1].contains("MetricBackend \"recorded\": spec.replay.file: cannot read"),
            "{text:?}"
        );
        assert!(
            text[2].contains("a backend named \"prom\" is already declared"),
            "{text:?}"
        );
        assert!(
            !text.iter().any(|t| t.contains("hunter2")),
            "the inline secret is never echoed: {text:?}"
        );
    }
}
