//! Loading rollout by rollout: which problems belong to which rollout.
//!
//! One team's typo must not stop another team's rollout. [`super::load_each`] resolves the
//! documents as [`super::load`] does, then gives each problem to the rollouts it concerns:
//!
//! - a problem inside a `Rollout` document belongs to that rollout;
//! - a problem inside a shared document (a `VerificationTemplate`, `Plugin` or
//!   `MetricBackend`) belongs to every rollout that references it — by a template in a
//!   phase or the background, by a metric's plugin or backend, by its failure policy — and
//!   the shared document is left out of what loads;
//! - a problem that belongs to no document whose kind and name can be read (an unreadable
//!   file, a document that is not YAML at all), or to a shared document no rollout uses, is
//!   one of [`Each::other`]: reported, but costing no rollout.
//!
//! A rollout with any problem is [`Each::invalid`] and left out of the bundle; everything
//! else loads. A document whose YAML cannot be read is still placed, by its `kind:` and
//! `name:` lines, so a rollout whose own document is broken is named, not lost.

use super::SpecError;
use super::docs::{self, Doc, Probe};
use super::model::{Bundle, RolloutSpec};
use super::resolve::{first_content_line, split_documents, yaml_line_breaks};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// What a per-rollout load found.
#[derive(Debug, Default)]
pub struct Each {
    /// What loads: shared documents without problems, and the rollouts that load with
    /// everything they reference.
    pub bundle: Bundle,
    /// Each invalid rollout's problems: its own document's and those of every shared
    /// document it references, in file order.
    pub invalid: BTreeMap<String, Vec<SpecError>>,
    /// Problems that cost no rollout (see the module doc).
    pub other: Vec<SpecError>,
    /// The SHA-256 of every file read, with its path: what numbers a configuration in the
    /// store ([`crate::store::Store::configuration`]).
    pub fingerprint: String,
}

impl Each {
    /// No problem anywhere.
    pub fn is_clean(&self) -> bool {
        self.invalid.is_empty() && self.other.is_empty()
    }

    /// Every problem once (a shared document's problem is given to each rollout using it,
    /// but counted once), in file order.
    pub fn all_problems(&self) -> Vec<SpecError> {
        let mut all: Vec<SpecError> = self
            .invalid
            .values()
            .flatten()
            .chain(&self.other)
            .cloned()
            .collect();
        all.sort_by(|a, b| (&a.file, a.line, a.col).cmp(&(&b.file, b.line, b.col)));
        all.dedup();
        all
    }

    /// File names as an operator would type them (see [`super::shown_path`]).
    pub(super) fn shorten(&mut self) {
        for e in self.invalid.values_mut().flatten().chain(&mut self.other) {
            e.file = super::shown_path(&e.file);
        }
    }
}

/// The document kinds another document can reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Shared {
    Backend,
    Plugin,
    Template,
}

/// What a document is and where it sits.
#[derive(Debug)]
struct Placed {
    file: PathBuf,
    /// 1-based lines `[first, end)` of the document's text in its file.
    first: usize,
    end: usize,
    kind: Option<String>,
    name: Option<String>,
    /// For a `Rollout`: the templates, plugins and backends its document names.
    uses: BTreeSet<(Shared, String)>,
}

/// Give each problem to its rollouts (see the module doc).
pub(super) fn attribute(
    sources: &[(PathBuf, String)],
    mut bundle: Bundle,
    problems: Vec<SpecError>,
) -> Each {
    // Nothing to give to anyone: the documents need not be read again to place them (half
    // the time of loading a large clean folder).
    if problems.is_empty() {
        return Each {
            bundle,
            invalid: BTreeMap::new(),
            other: Vec::new(),
            fingerprint: fingerprint(sources),
        };
    }
    let placed: Vec<Placed> = sources
        .iter()
        .flat_map(|(file, text)| place(file, &yaml_line_breaks(text)))
        .collect();
    let mut own: BTreeMap<String, Vec<SpecError>> = BTreeMap::new();
    let mut broken: BTreeMap<(Shared, String), Vec<SpecError>> = BTreeMap::new();
    let mut other = Vec::new();
    for e in problems {
        let doc = placed
            .iter()
            .find(|d| d.file == e.file && d.first <= e.line && e.line < d.end);
        let named = doc.and_then(|d| Some((d.kind.as_deref()?, d.name.clone()?)));
        match named {
            Some(("Rollout", name)) => own.entry(name).or_default().push(e),
            Some((kind, name)) => match shared_kind(kind) {
                Some(kind) => broken.entry((kind, name)).or_default().push(e),
                None => other.push(e),
            },
            None => other.push(e),
        }
    }
    // Who uses what: the documents as written, and the resolved rollouts (whose metrics
    // carry their templates' plugins and backends).
    let mut uses: BTreeMap<String, BTreeSet<(Shared, String)>> = BTreeMap::new();
    for d in &placed {
        if let (Some("Rollout"), Some(name)) = (d.kind.as_deref(), &d.name) {
            uses.entry(name.clone())
                .or_default()
                .extend(d.uses.iter().cloned());
        }
    }
    for r in &bundle.rollouts {
        uses.entry(r.name.clone())
            .or_default()
            .extend(resolved_uses(r));
    }
    let mut used: BTreeSet<(Shared, String)> = BTreeSet::new();
    let mut invalid = own;
    for (rollout, names) in &uses {
        for key in names {
            if let Some(problems) = broken.get(key) {
                used.insert(key.clone());
                invalid
                    .entry(rollout.clone())
                    .or_default()
                    .extend(problems.iter().cloned());
            }
        }
    }
    other.extend(
        broken
            .iter()
            .filter(|(key, _)| !used.contains(*key))
            .flat_map(|(_, problems)| problems.iter().cloned()),
    );
    for problems in invalid.values_mut() {
        problems.sort_by(|a, b| (&a.file, a.line, a.col).cmp(&(&b.file, b.line, b.col)));
        problems.dedup();
    }
    bundle.rollouts.retain(|r| !invalid.contains_key(&r.name));
    let is_broken = |kind: Shared, name: &str| broken.contains_key(&(kind, name.to_string()));
    bundle
        .backends
        .retain(|(doc, _)| !is_broken(Shared::Backend, &doc.metadata.name));
    bundle
        .backend_at
        .retain(|name, _| !is_broken(Shared::Backend, name));
    bundle
        .plugins
        .retain(|name, _| !is_broken(Shared::Plugin, name));
    bundle
        .templates
        .retain(|name, _| !is_broken(Shared::Template, name));
    Each {
        bundle,
        invalid,
        other,
        fingerprint: fingerprint(sources),
    }
}

/// The SHA-256 of the sources, each path and text length-prefixed.
fn fingerprint(sources: &[(PathBuf, String)]) -> String {
    use sha2::{Digest, Sha256};
    let mut hash = Sha256::new();
    for (file, text) in sources {
        let path = file.to_string_lossy();
        for part in [path.as_bytes(), text.as_bytes()] {
            hash.update((part.len() as u64).to_le_bytes());
            hash.update(part);
        }
    }
    hash.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

fn shared_kind(kind: &str) -> Option<Shared> {
    match kind {
        "MetricBackend" => Some(Shared::Backend),
        "Plugin" => Some(Shared::Plugin),
        "VerificationTemplate" => Some(Shared::Template),
        _ => None,
    }
}

/// What a resolved rollout uses.
fn resolved_uses(r: &RolloutSpec) -> BTreeSet<(Shared, String)> {
    let mut out = BTreeSet::new();
    out.insert((Shared::Plugin, r.failure_policy.plugin.clone()));
    for (_, m) in crate::engine::setup::metrics_of(r) {
        out.insert((Shared::Plugin, m.plugin.clone()));
        if let Some(b) = &m.backend {
            out.insert((Shared::Backend, b.clone()));
        }
        if let Some(t) = &m.template {
            out.insert((Shared::Template, t.clone()));
        }
    }
    out
}

/// The documents of one file, each placed: its lines, kind and name (read by the probe, or
/// from its `kind:` / `name:` lines when it is not YAML), and what a rollout uses.
fn place(file: &Path, text: &str) -> Vec<Placed> {
    let Ok(documents) = split_documents(text) else {
        // Too many documents: the loader reported it for the whole file.
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut starts: Vec<usize> = documents.iter().map(|(offset, _)| *offset).collect();
    starts.push(usize::MAX - 1);
    for (i, (offset, doc)) in documents.iter().enumerate() {
        if first_content_line(doc).is_none() {
            continue;
        }
        let (kind, name) = match serde_saphyr::from_str::<Probe>(doc) {
            Ok(p) => (
                p.kind.map(|k| k.value),
                p.metadata.and_then(|m| m.name).map(|n| n.value),
            ),
            Err(_) => scan_kind_and_name(doc),
        };
        let uses = if kind.as_deref() == Some("Rollout") {
            rollout_uses(doc)
        } else {
            BTreeSet::new()
        };
        out.push(Placed {
            file: file.to_path_buf(),
            first: offset.saturating_add(1),
            end: starts
                .get(i + 1)
                .copied()
                .unwrap_or(usize::MAX - 1)
                .saturating_add(1),
            kind,
            name,
            uses,
        });
    }
    out
}

/// `kind:` at the top level and `name:` under `metadata:`, read line by line from a
/// document that is not YAML.
fn scan_kind_and_name(doc: &str) -> (Option<String>, Option<String>) {
    let value = |line: &str, key: &str| {
        line.strip_prefix(key)
            .map(|v| v.trim().trim_matches(['"', '\'']).to_string())
            .filter(|v| !v.is_empty())
    };
    let mut kind = None;
    let mut name = None;
    let mut in_metadata = false;
    for line in doc.lines() {
        let top = !line.starts_with([' ', '\t']);
        if top {
            in_metadata = line.trim_end() == "metadata:";
            if kind.is_none() {
                kind = value(line, "kind:");
            }
        } else if in_metadata && name.is_none() {
            name = value(line.trim_start(), "name:");
        }
    }
    (kind, name)
}

/// The templates, plugins and backends a `Rollout` document names, as written (the
/// document may not resolve).
fn rollout_uses(doc: &str) -> BTreeSet<(Shared, String)> {
    let mut out = BTreeSet::new();
    let Ok(d) = serde_saphyr::from_str::<Doc<docs::RolloutDoc>>(doc) else {
        return out;
    };
    let spec = d.spec;
    let mut verification = |templates: &[docs::P<docs::TemplateRefDoc>],
                            metrics: &[docs::MetricDoc]| {
        for t in templates {
            out.insert((Shared::Template, t.value.name.clone()));
        }
        for m in metrics {
            out.insert((Shared::Plugin, m.provider.plugin.value.clone()));
            if let Some(b) = &m.provider.backend {
                out.insert((Shared::Backend, b.value.clone()));
            }
        }
    };
    for phase in &spec.phases.value {
        if let Some(v) = &phase.verification {
            verification(&v.templates, &v.metrics);
        }
    }
    if let Some(b) = &spec.background_verification {
        verification(&b.templates, &b.metrics);
    }
    if let Some(plugin) = spec.failure_policy.as_ref().and_then(|p| p.plugin.as_ref()) {
        out.insert((Shared::Plugin, plugin.value.clone()));
    }
    out
}
