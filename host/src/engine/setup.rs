//! Turning a loaded [`Bundle`] into what the engine runs with: the plugins every rollout
//! names (loaded, pinned, limited, their configs validated) and the metric backends.
//!
//! This is done once, before any rollout starts, so that a missing component, a digest
//! mismatch or a plugin config the plugin itself rejects stops `rollgate run` with every
//! problem named, instead of surfacing as an "error" measurement in the middle of a rollout.

use super::Plugins;
use crate::metrics::config;
use crate::metrics::{Backend, BackendOptions, Backends};
use crate::plugin::{Limits, LoadOptions, PluginHost, PluginKind, PluginSource};
use crate::spec::model::{
    Bundle, MetricSpec, PluginSourceSpec, PluginSpec, RolloutSpec, SourcePos,
};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Build the bundle's backends. Replay backends are aligned so their recording starts at
/// `replay_origin_ms` (the rollout's start), so recorded metrics replay along the rollout.
pub fn backends(bundle: &Bundle, replay_origin_ms: Option<i64>) -> Result<Backends, Vec<Problem>> {
    let mut backends = Backends::new();
    let mut errors = Vec::new();
    for (doc, file) in &bundle.backends {
        match build_backend(bundle, doc, file, replay_origin_ms) {
            Ok((backend, options)) => backends.insert(doc.metadata.name.clone(), backend, options),
            Err(problem) => errors.push(problem),
        }
    }
    if errors.is_empty() {
        Ok(backends)
    } else {
        Err(errors)
    }
}

/// Build one backend of the bundle; the problem says where its document is.
pub(super) fn build_backend(
    bundle: &Bundle,
    doc: &config::MetricBackendDoc,
    file: &Path,
    replay_origin_ms: Option<i64>,
) -> Result<(Arc<dyn Backend>, BackendOptions), Problem> {
    let base = file.parent().unwrap_or(Path::new("."));
    config::build_aligned(doc, base, replay_origin_ms).map_err(|message| {
        // Build errors start with their field path (`spec.replay.file: …`).
        let (path, message) = match message.split_once(": ") {
            Some((path, rest)) if path.starts_with("spec") && !path.contains(' ') => {
                (path.to_string(), rest.to_string())
            }
            _ => ("spec".to_string(), message),
        };
        let message = format!("MetricBackend {:?}: {message}", doc.metadata.name);
        let at = bundle
            .backend_at
            .get(&doc.metadata.name)
            .map(|at| SourcePos { path, ..at.clone() });
        Problem {
            at,
            message,
            input: true,
        }
    })
}

/// One recording served under every backend name of the bundle, at its own times: what
/// `rollgate verify --replay` and `rollgate replay` measure against instead of the
/// configured backends.
pub fn replay_everywhere(bundle: &Bundle, replay: Arc<dyn Backend>) -> Backends {
    let mut backends = Backends::new();
    for (doc, _) in &bundle.backends {
        backends.insert(
            doc.metadata.name.clone(),
            replay.clone(),
            BackendOptions::default(),
        );
    }
    backends
}

/// Every metric of a rollout with where it sits (`phase "canary-10"` / `background`).
pub fn metrics_of(rollout: &RolloutSpec) -> Vec<(String, &MetricSpec)> {
    let mut out = Vec::new();
    for phase in &rollout.phases {
        for m in &phase.metrics {
            out.push((format!("phase {:?}", phase.name), &**m));
        }
    }
    if let Some(bg) = &rollout.background {
        for m in &bg.metrics {
            out.push(("background verification".to_string(), &**m));
        }
    }
    out
}

/// Load every plugin the rollouts name and validate every config given to one. Problems
/// are collected, each naming the rollout, the metric and the plugin.
pub async fn plugins(
    host: &PluginHost,
    bundle: &Bundle,
    rollouts: &[&RolloutSpec],
    deterministic: bool,
) -> Result<Plugins, Vec<Problem>> {
    // name → kind expected
    let mut wanted: BTreeMap<String, PluginKind> = BTreeMap::new();
    // What the operator wrote wrong (exit 4) and what failed in a plugin (exit 3).
    let mut wrong: Vec<String> = Vec::new();
    let mut errors = Vec::new();
    for r in rollouts {
        let uses = std::iter::once((r.failure_policy.plugin.clone(), PluginKind::Policy)).chain(
            metrics_of(r)
                .into_iter()
                .map(|(_, m)| (m.plugin.clone(), PluginKind::Provider)),
        );
        for (name, kind) in uses {
            match wanted.get(&name) {
                Some(k) if *k != kind => wrong.push(format!(
                    "plugin {name:?} is used both as a failure policy and as a verification provider (rollout {:?}); a component is one or the other: name a different plugin for one of the uses",
                    r.name
                )),
                Some(_) => {}
                None => {
                    wanted.insert(name, kind);
                }
            }
        }
    }
    let mut plugins = Plugins::new();
    // Problems inside a plugin's configuration, with where it is written.
    let mut found: Vec<Problem> = Vec::new();
    let mut checked = std::collections::HashSet::new();
    // All at once: a plugin pulled from a slow registry delays no other one.
    let loads = wanted.keys().map(|name| {
        let (source, options) = load_args(bundle, name, deterministic);
        host.load_async(source, options)
    });
    let results = futures::future::join_all(loads).await;
    for ((name, kind), result) in wanted.iter().zip(results) {
        match result {
            Ok(p) if p.kind() != *kind => wrong.push(format!(
                "plugin {name:?} is a {} but is used as a {}",
                p.kind().world(),
                kind.world()
            )),
            Ok(p) => plugins.insert(name.clone(), p),
            Err(e) => errors.push(format!("plugin {name:?}: {e}")),
        }
    }
    let loaded = |name: &str| plugins.get(name);
    let mut answers = Answers::new();
    for r in rollouts {
        // What the operator wrote wrong is reported after the plugins that failed.
        for problem in validate(r, &loaded, &mut checked, &mut answers).await {
            if problem.input {
                found.push(problem);
            } else {
                errors.push(problem.message);
            }
        }
    }
    let mut all: Vec<Problem> = errors.into_iter().map(Problem::new).collect();
    all.extend(wrong.into_iter().map(|message| Problem {
        at: None,
        message,
        input: true,
    }));
    all.extend(found);
    if all.is_empty() {
        Ok(plugins)
    } else {
        Err(all)
    }
}

/// Each plugin's own check of the configurations `r` gives it (its failure policy's, then
/// its metrics'): the problems it finds, at the `file:line:col` of the configuration
/// (input), and the calls that failed (not input). A configuration already in `checked`
/// (the same plugin, text and place: a template used twice) is not checked again.
pub(super) async fn validate<'p>(
    r: &RolloutSpec,
    loaded: &(dyn Fn(&str) -> Option<&'p crate::plugin::Plugin> + Sync),
    checked: &mut std::collections::HashSet<(String, String, Option<SourcePos>)>,
    answers: &mut Answers,
) -> Vec<Problem> {
    let mut problems = Vec::new();
    if let Some(p) = loaded(&r.failure_policy.plugin) {
        let config = r.failure_policy.config.to_string();
        match answer(answers, p, &r.failure_policy.plugin, config).await {
            Ok(found) => problems.extend(found.into_iter().map(|c| {
                Problem::at(
                    r.failure_policy.config_at.as_ref(),
                    &c.path,
                    format!(
                        "{} (rollout {:?}, policy plugin {:?})",
                        c.message, r.name, r.failure_policy.plugin
                    ),
                )
            })),
            Err(e) => problems.push(Problem::new(format!(
                "rollout {:?}: failure policy: {e}",
                r.name
            ))),
        }
    }
    for (place, m) in metrics_of(r) {
        let Some(p) = loaded(&m.plugin) else {
            continue;
        };
        // A template used by several phases: one check of the same config in one place.
        let key = (m.plugin.clone(), m.config.to_string(), m.config_at.clone());
        if !checked.insert(key) {
            continue;
        }
        match answer(answers, p, &m.plugin, m.config.to_string()).await {
            Ok(found) => problems.extend(found.into_iter().map(|c| {
                Problem::at(
                    m.config_at.as_ref(),
                    &c.path,
                    format!(
                        "{} (rollout {:?}, {place}, metric {:?}, plugin {:?})",
                        c.message, r.name, m.name, m.plugin
                    ),
                )
            })),
            Err(e) => problems.push(Problem::new(format!(
                "rollout {:?}, metric {:?}: {e}",
                r.name, m.name
            ))),
        }
    }
    problems
}

/// A plugin's answers to the configurations it validated, by (plugin name, configuration
/// text), for one load of the folder: thousands of rollouts that give one plugin the same
/// configuration (from one template) are checked by one call, not one instance each.
pub(super) type Answers =
    std::collections::HashMap<(String, String), Result<Vec<crate::plugin::ConfigProblem>, String>>;

/// `p`'s answer to `config`, from `answers` when it was asked already.
async fn answer(
    answers: &mut Answers,
    p: &crate::plugin::Plugin,
    name: &str,
    config: String,
) -> Result<Vec<crate::plugin::ConfigProblem>, String> {
    let key = (name.to_string(), config);
    if let Some(known) = answers.get(&key) {
        return known.clone();
    }
    let got = p.validate(&key.1).await.map_err(|e| e.to_string());
    answers.insert(key, got.clone());
    got
}

/// A problem found while setting up a rollout's plugins, where it is written when known.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    /// Where: the configuration's position and the field path (JSON pointer appended).
    pub at: Option<SourcePos>,
    /// What, and what to do.
    pub message: String,
    /// Whether what is wrong is what the operator wrote (a configuration a plugin refused,
    /// a plugin used as the wrong kind) rather than a failure of a plugin or the host.
    pub input: bool,
}

impl Problem {
    pub(super) fn new(message: String) -> Problem {
        Problem {
            at: None,
            message,
            input: false,
        }
    }

    /// Whether what is wrong is what the operator wrote (see [`Problem::input`]).
    pub fn is_input(&self) -> bool {
        self.input
    }

    /// A problem inside a configuration written at `at`, at the JSON pointer `pointer_path`.
    pub(super) fn at(at: Option<&SourcePos>, pointer_path: &str, message: String) -> Problem {
        Problem {
            at: at.map(|a| SourcePos {
                path: format!("{}{}", a.path, pointer(pointer_path)),
                ..a.clone()
            }),
            message,
            input: true,
        }
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.at {
            Some(a) if a.path.is_empty() => write!(
                f,
                "{}:{}:{}: {}",
                crate::spec::shown_path(&a.file).display(),
                a.line,
                a.col,
                self.message
            ),
            Some(a) => write!(
                f,
                "{}:{}:{}: {}: {}",
                crate::spec::shown_path(&a.file).display(),
                a.line,
                a.col,
                a.path,
                self.message
            ),
            None => f.write_str(&self.message),
        }
    }
}

/// A JSON pointer as a dotted suffix: `/max` → `.max`.
fn pointer(path: &str) -> String {
    path.split('/')
        .filter(|s| !s.is_empty())
        .map(|s| format!(".{s}"))
        .collect()
}

/// Where plugin `name` of `bundle` comes from and how it is loaded: its Plugin document,
/// else the built-in of that name.
pub(super) fn load_args(
    bundle: &Bundle,
    name: &str,
    deterministic: bool,
) -> (PluginSource, LoadOptions) {
    match bundle.plugins.get(name) {
        Some(spec) => (source_of(spec), options_of(spec, deterministic)),
        None => (
            PluginSource::Builtin(name.to_string()),
            LoadOptions {
                name: Some(name.to_string()),
                deterministic,
                ..LoadOptions::default()
            },
        ),
    }
}

pub(super) fn source_of(spec: &PluginSpec) -> PluginSource {
    match &spec.source {
        PluginSourceSpec::Builtin(name) => PluginSource::Builtin(name.clone()),
        PluginSourceSpec::File(path) => PluginSource::File(path.clone()),
        PluginSourceSpec::Oci(text) => {
            // The loader parsed it already; a reference that no longer parses is refused
            // by the pull with a named error rather than a panic.
            let reference = crate::plugin::oci::OciRef::parse(text).unwrap_or_else(|_| {
                crate::plugin::oci::OciRef {
                    registry: String::new(),
                    repository: text.clone(),
                    tag: None,
                    digest: None,
                }
            });
            let mut source = crate::plugin::oci::OciSource::new(reference);
            if let Some(o) = &spec.oci {
                let secret = |s: &Option<String>| {
                    s.as_deref()
                        .and_then(|s| crate::metrics::secret::SecretRef::parse(s).ok())
                };
                source.username = secret(&o.username);
                source.password = secret(&o.password);
                source.ca_file = o.ca_file.clone();
                source.insecure = o.insecure;
                if let Some(ms) = o.timeout_ms {
                    source.timeout = Duration::from_millis(ms);
                }
                source.cosign_key = o.cosign_key.clone();
            }
            PluginSource::Oci(Box::new(source))
        }
    }
}

pub(super) fn options_of(spec: &PluginSpec, deterministic: bool) -> LoadOptions {
    let mut limits = Limits::default();
    let l = &spec.limits;
    if let Some(v) = l.memory_bytes {
        limits.memory_bytes = v;
    }
    if let Some(v) = l.timeout_ms {
        limits.timeout = Duration::from_millis(v);
    }
    if let Some(v) = l.query_timeout_ms {
        limits.query_timeout = Duration::from_millis(v);
    }
    if l.fuel.is_some() {
        limits.fuel = l.fuel;
    }
    if let Some(v) = l.max_result_bytes {
        limits.max_result_bytes = v;
    }
    if let Some(v) = l.max_component_bytes {
        limits.max_component_bytes = v;
    }
    LoadOptions {
        name: Some(spec.name.clone()),
        sha256: spec.sha256.clone(),
        limits,
        deterministic,
        allowed_hosts: spec.allowed_hosts.clone(),
    }
}
