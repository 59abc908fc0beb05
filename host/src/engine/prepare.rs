//! Setting rollouts up one by one: what [`super::setup`] does for a whole bundle, with
//! every problem given to the rollouts it costs instead of refusing them all.
//!
//! A backend that does not build costs the rollouts whose metrics query it; a plugin that
//! does not load costs the rollouts that name it; a plugin used as the wrong kind, or a
//! configuration a plugin refuses, costs the rollout that wrote it. The rest is set up and
//! runs. Used by `rollgate serve` (a change to the folder), `rollgate run` and `lint`.

use super::Plugins;
use super::setup::{Answers, Problem, build_backend, load_args, metrics_of, validate};
use crate::metrics::Backends;
use crate::plugin::{Plugin, PluginHost, PluginKind};
use crate::spec::SpecError;
use crate::spec::model::{Bundle, RolloutSpec, SourcePos};
use std::collections::{BTreeMap, BTreeSet};

/// What the engine runs with, rollout by rollout.
pub struct Prepared {
    /// The backends that built.
    pub backends: Backends,
    /// The plugins that loaded.
    pub plugins: Plugins,
    /// Each rollout of the documents that cannot be set up, with every problem (its own
    /// and those of what it uses).
    pub invalid: BTreeMap<String, Vec<Problem>>,
    /// Each stored run (by store id) whose spec cannot be set up with these documents: it
    /// is held, not driven, until they are fixed.
    pub held: BTreeMap<i64, Vec<Problem>>,
    /// Problems that cost no rollout: a backend that does not build and that nothing uses.
    pub other: Vec<Problem>,
}

impl Problem {
    /// A loader's problem as a setup problem (it is always the operator's input).
    pub fn from_spec(e: &SpecError) -> Problem {
        Problem {
            at: (!e.file.as_os_str().is_empty()).then(|| SourcePos {
                file: e.file.clone(),
                line: e.line,
                col: e.col,
                path: e.path.clone(),
            }),
            message: e.message.clone(),
            input: true,
        }
    }
}

/// What each rollout uses: (plugin, kind) pairs and backends.
fn uses(r: &RolloutSpec) -> (Vec<(String, PluginKind)>, BTreeSet<String>) {
    let mut plugins = vec![(r.failure_policy.plugin.clone(), PluginKind::Policy)];
    let mut backends = BTreeSet::new();
    for (_, m) in metrics_of(r) {
        plugins.push((m.plugin.clone(), PluginKind::Provider));
        if let Some(b) = &m.backend {
            backends.insert(b.clone());
        }
    }
    (plugins, backends)
}

/// Every backend of `bundle` that builds (one that does not costs only the rollouts that
/// use it: see [`prepare`]).
pub fn backends(bundle: &Bundle, replay_origin_ms: Option<i64>) -> Backends {
    let mut backends = Backends::new();
    for (doc, file) in &bundle.backends {
        if let Ok((backend, options)) = build_backend(bundle, doc, file, replay_origin_ms) {
            backends.insert(doc.metadata.name.clone(), backend, options);
        }
    }
    backends
}

/// Set up the `rollouts` of `bundle` and the stored `runs` (store id, spec) to drive, one
/// by one (see the module doc).
pub async fn prepare(
    host: &PluginHost,
    bundle: &Bundle,
    rollouts: &[&RolloutSpec],
    runs: &[(i64, &RolloutSpec)],
    deterministic: bool,
    replay_origin_ms: Option<i64>,
) -> Prepared {
    let mut backends = Backends::new();
    let mut broken_backends: BTreeMap<String, Problem> = BTreeMap::new();
    for (doc, file) in &bundle.backends {
        match build_backend(bundle, doc, file, replay_origin_ms) {
            Ok((backend, options)) => backends.insert(doc.metadata.name.clone(), backend, options),
            Err(problem) => {
                broken_backends.insert(doc.metadata.name.clone(), problem);
            }
        }
    }
    // Every plugin any rollout or run names, loaded once, all at once: a plugin pulled from
    // a registry that is slow delays no other plugin (its own pull is bounded).
    let mut names: BTreeSet<String> = BTreeSet::new();
    for r in rollouts.iter().copied().chain(runs.iter().map(|(_, r)| *r)) {
        names.extend(uses(r).0.into_iter().map(|(name, _)| name));
    }
    let loads = names.into_iter().map(|name| {
        let (source, options) = load_args(bundle, &name, deterministic);
        async move {
            let result = host
                .load_async(source, options)
                .await
                .map_err(|e| Problem::new(format!("plugin {name:?}: {e}")));
            (name, result)
        }
    });
    let loaded: BTreeMap<String, Result<Plugin, Problem>> =
        futures::future::join_all(loads).await.into_iter().collect();
    let used: BTreeSet<String> = rollouts
        .iter()
        .copied()
        .chain(runs.iter().map(|(_, r)| *r))
        .flat_map(|r| uses(r).1)
        .collect();
    let mut prepared = Prepared {
        backends,
        plugins: Plugins::new(),
        invalid: BTreeMap::new(),
        held: BTreeMap::new(),
        other: broken_backends
            .iter()
            .filter(|(name, _)| !used.contains(*name))
            .map(|(_, p)| p.clone())
            .collect(),
    };
    // One plugin call per distinct configuration, whatever the number of rollouts.
    let mut answers = Answers::new();
    for r in rollouts {
        let problems = check(
            r,
            &loaded,
            &broken_backends,
            &mut prepared.plugins,
            &mut answers,
        )
        .await;
        if !problems.is_empty() {
            prepared.invalid.insert(r.name.clone(), problems);
        }
    }
    for (id, r) in runs {
        let problems = check(
            r,
            &loaded,
            &broken_backends,
            &mut prepared.plugins,
            &mut answers,
        )
        .await;
        if !problems.is_empty() {
            prepared.held.insert(*id, problems);
        }
    }
    prepared
}

/// What keeps `r` from being set up; when nothing does, its plugins go into `plugins`.
async fn check(
    r: &RolloutSpec,
    loaded: &BTreeMap<String, Result<Plugin, Problem>>,
    broken_backends: &BTreeMap<String, Problem>,
    plugins: &mut Plugins,
    answers: &mut Answers,
) -> Vec<Problem> {
    let mut problems = Vec::new();
    let (wanted, used_backends) = uses(r);
    for b in &used_backends {
        if let Some(p) = broken_backends.get(b) {
            problems.push(p.clone());
        }
    }
    let mut seen = BTreeSet::new();
    for (name, kind) in &wanted {
        if !seen.insert(name.clone()) {
            continue;
        }
        match loaded.get(name) {
            Some(Ok(p)) if p.kind() != *kind => problems.push(Problem {
                at: None,
                message: format!(
                    "plugin {name:?} is a {} but rollout {:?} uses it as a {}: name a {} here",
                    p.kind().world(),
                    r.name,
                    kind.world(),
                    kind.world()
                ),
                input: true,
            }),
            Some(Ok(_)) | None => {}
            Some(Err(problem)) => problems.push(problem.clone()),
        }
    }
    if problems.is_empty() {
        let loaded_plugin = |name: &str| loaded.get(name).and_then(|l| l.as_ref().ok());
        let mut checked = std::collections::HashSet::new();
        problems.extend(validate(r, &loaded_plugin, &mut checked, answers).await);
    }
    if problems.is_empty() {
        for (name, _) in &wanted {
            if let Some(Ok(p)) = loaded.get(name) {
                plugins.insert(name.clone(), p.clone());
            }
        }
    }
    problems
}
