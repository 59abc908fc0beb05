//! From documents to the model: split files into documents, parse each by its kind, then
//! check values and references and expand templates, collecting every problem with the
//! position of the value it is about.
//!
//! This file holds the [`Loader`] and its document loop: reading every document of every
//! file ([`load_sources`]), then resolving them together, names first so references may
//! point forward and across files. The checks of each kind live beside it:
//!
//! - `source.rs`: where a document sits ([`Src`]: file, folder, first line) and how
//!   problems point into it; splitting a file into documents; serde-saphyr's errors
//!   reworded for operators;
//! - `values.rs`: durations, sizes, bounded counts, ceilings, URLs, exactly-one choices;
//! - `backend.rs`: `MetricBackend` documents and references to them;
//! - `plugin.rs`: `Plugin` documents (source, pin, limits, allowed hosts) and references;
//! - `metric.rs`: one metric as written (provider, args it uses, counts and limits);
//! - `args.rs`: `{{args.NAME}}` placeholders: finding and substituting them;
//! - `template.rs`: `VerificationTemplate` documents;
//! - `verification.rs`: a phase's or the background's metrics: templates expanded with
//!   their args, then inline metrics;
//! - `rollout.rs`: a `Rollout`, section by section (versions, background verification,
//!   failure policy, deadline, rollback, readiness, notifications);
//! - `phase.rs`: a rollout's phases (names, weights by strategy, pauses, gates);
//! - `target.rs` and `strategy.rs`: where steps are delivered and how the rollout moves.

mod args;
mod backend;
mod metric;
mod phase;
mod plugin;
mod rollout;
mod source;
mod strategy;
mod target;
mod template;
mod values;
mod verification;

#[cfg(test)]
pub(super) use args::substitute_value;

use super::docs::{self, Doc, P, Probe};
use super::model::*;
use super::{API_VERSION, SpecError, valid_name};
use crate::files::{MAX_DOCUMENTS_PER_FILE, MAX_PROBLEMS_SHOWN};
use crate::metrics::config::MetricBackendDoc;
use source::Src;
pub(in crate::spec) use source::{first_content_line, split_documents, yaml_line_breaks};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The document kinds, in the order messages list them.
const KINDS: &[&str] = &["MetricBackend", "Plugin", "VerificationTemplate", "Rollout"];

/// Most retries a webhook target or a gate may ask for (each one waits longer than the
/// last).
const MAX_RETRIES: u32 = 20;

/// Problems collected before the loader stops reading further documents: enough to show
/// [`MAX_PROBLEMS_SHOWN`] and count a good many more, bounded however many documents the
/// files hold.
const MAX_PROBLEMS_COLLECTED: usize = 100 * MAX_PROBLEMS_SHOWN;

/// One parsed document of a known kind.
enum Parsed {
    Backend(Box<MetricBackendDoc>),
    Plugin(Box<docs::PluginDoc>),
    Template(docs::TemplateDoc),
    Rollout(Box<docs::RolloutDoc>),
}

struct Document {
    src: Src,
    name: P<String>,
    kind: &'static str,
    parsed: Parsed,
}

fn list(names: impl IntoIterator<Item = impl AsRef<str>>) -> String {
    let names: Vec<String> = names.into_iter().map(|n| n.as_ref().to_string()).collect();
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}

/// Read every document of every source, then resolve them together.
pub(super) fn load_sources(sources: &[(PathBuf, String)]) -> Result<Bundle, Vec<SpecError>> {
    let (bundle, errors) = load_sources_partial(sources);
    if errors.is_empty() {
        Ok(bundle)
    } else {
        Err(errors)
    }
}

/// Read every document of every source and resolve them together: what resolved (a
/// rollout, a template or a plugin with a problem is left out; a backend with a problem is
/// kept, for [`super::each`] to judge) and every problem, in file order.
pub(super) fn load_sources_partial(sources: &[(PathBuf, String)]) -> (Bundle, Vec<SpecError>) {
    let mut loader = Loader::default();
    let mut unchecked = None;
    for ((file, _), read) in sources.iter().zip(read_documents(sources)) {
        if loader.errors.len() >= MAX_PROBLEMS_COLLECTED {
            unchecked = Some(file);
            break;
        }
        loader.take(read);
    }
    let bundle = loader.resolve();
    let mut errors = loader.errors;
    if errors.is_empty() && unchecked.is_none() {
        return (bundle, errors);
    }
    let order: Vec<&PathBuf> = sources.iter().map(|(f, _)| f).collect();
    errors.sort_by_key(|e| {
        (
            order
                .iter()
                .position(|f| **f == e.file)
                .unwrap_or(usize::MAX),
            e.line,
            e.col,
        )
    });
    errors.dedup();
    if let Some(file) = unchecked {
        errors.push(SpecError {
            file: file.clone(),
            line: 0,
            col: 0,
            path: String::new(),
            message: format!(
                "not checked: loading stops after {MAX_PROBLEMS_COLLECTED} problems; fix those \
                 first (this file and the ones after it were not read)"
            ),
        });
    }
    (bundle, errors)
}

#[derive(Default)]
struct Loader {
    errors: Vec<SpecError>,
    documents: Vec<Document>,
    /// Names of the loaded documents per kind (for references and their messages).
    backend_names: BTreeSet<String>,
    plugin_names: BTreeSet<String>,
    template_names: BTreeSet<String>,
    /// Documents whose shape was wrong (already reported): kind and name.
    unparsed: Vec<(&'static str, String)>,
    /// Templates by name: the document (for positions) and its unsubstituted spec.
    templates: BTreeMap<String, (Src, docs::TemplateDoc, TemplateSpec)>,
}

/// Threads (the caller's included) that read the documents of a large folder.
const MAX_READERS: usize = 4;

/// Every document of every source read on its own, the documents of all files shared out
/// among up to [`MAX_READERS`] threads (YAML parsing is most of loading a large folder):
/// per source, in order, what [`Loader::take`] adds. Reading a document does not look at
/// the loader's state, so the result is the same as reading them one after another; the
/// cap on problems is applied when they are taken.
fn read_documents(sources: &[(PathBuf, String)]) -> Vec<Vec<Read>> {
    // Splitting into documents is quick and stays on this thread.
    let mut out: Vec<Vec<Read>> = Vec::with_capacity(sources.len());
    let mut work: Vec<(usize, usize, Src, String)> = Vec::new();
    for (index, (file, text)) in sources.iter().enumerate() {
        let text = yaml_line_breaks(text);
        let base = file
            .parent()
            .map(Path::to_path_buf)
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or_else(|| PathBuf::from("."));
        let documents = match split_documents(&text) {
            Ok(documents) => documents,
            Err(line) => {
                out.push(vec![Read::problem(SpecError {
                    file: file.to_path_buf(),
                    line: line + 1,
                    col: 1,
                    path: String::new(),
                    message: format!(
                        "more than {MAX_DOCUMENTS_PER_FILE} documents in one file (empty ones \
                         count too); this is document {}: split the file",
                        MAX_DOCUMENTS_PER_FILE + 1
                    ),
                })]);
                continue;
            }
        };
        let mut slots = Vec::new();
        for (offset, doc) in documents {
            let Some(first) = first_content_line(&doc) else {
                continue;
            };
            let src = Src {
                file: file.to_path_buf(),
                base: base.clone(),
                offset,
                first: offset + first + 1,
            };
            work.push((index, slots.len(), src, doc));
            slots.push(Read::default());
        }
        out.push(slots);
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    let read = || {
        let mut mine = Vec::new();
        loop {
            let at = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let Some((file, slot, src, doc)) = work.get(at) else {
                return mine;
            };
            let mut one = Read::default();
            one.parse_document(src.clone(), doc);
            mine.push((*file, *slot, one));
        }
    };
    let readers = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .min(MAX_READERS)
        .min(work.len() / 64 + 1);
    let done: Vec<Vec<(usize, usize, Read)>> = std::thread::scope(|scope| {
        // A thread that cannot be started leaves its share to the others and this one.
        let helpers: Vec<_> = (1..readers)
            .filter_map(|_| {
                std::thread::Builder::new()
                    .name("rollgate-specs".into())
                    .spawn_scoped(scope, read)
                    .ok()
            })
            .collect();
        let mut done = vec![read()];
        for helper in helpers {
            match helper.join() {
                Ok(theirs) => done.push(theirs),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        done
    });
    for (file, slot, one) in done.into_iter().flatten() {
        if let Some(place) = out.get_mut(file).and_then(|slots| slots.get_mut(slot)) {
            *place = one;
        }
    }
    out
}

/// What reading one document gave: its problems, and the document (or, when its shape
/// was wrong, its kind and name).
#[derive(Default)]
struct Read {
    errors: Vec<SpecError>,
    documents: Vec<Document>,
    unparsed: Vec<(&'static str, String)>,
}

impl Read {
    fn problem(e: SpecError) -> Read {
        Read {
            errors: vec![e],
            ..Read::default()
        }
    }

    /// Read one document: its problems, and the document parsed by its kind.
    fn parse_document(&mut self, src: Src, text: &str) {
        let probe: Probe = match serde_saphyr::from_str(text) {
            Ok(p) => p,
            Err(e) => {
                self.errors.push(src.serde_err(&e, text));
                return;
            }
        };
        match &probe.api_version {
            None => self.errors.push(src.err_doc(
                "apiVersion",
                format!("missing field `apiVersion`; use {API_VERSION}"),
            )),
            Some(v) if v.value != API_VERSION => self.errors.push(src.err(
                v,
                "apiVersion",
                format!(
                    "apiVersion {:?} is not supported; use {API_VERSION}",
                    v.value
                ),
            )),
            Some(_) => {}
        }
        let Some(kind_p) = &probe.kind else {
            self.errors.push(src.err_doc(
                "kind",
                format!("missing field `kind`; expected one of {}", KINDS.join(", ")),
            ));
            return;
        };
        let Some(kind) = KINDS.iter().copied().find(|k| *k == kind_p.value) else {
            self.errors.push(src.err(
                kind_p,
                "kind",
                format!(
                    "unknown kind {:?}; expected one of {}",
                    kind_p.value,
                    KINDS.join(", ")
                ),
            ));
            return;
        };
        let parsed = match kind {
            "MetricBackend" => serde_saphyr::from_str::<MetricBackendDoc>(text)
                .map(|b| Parsed::Backend(Box::new(b))),
            "Plugin" => serde_saphyr::from_str::<Doc<docs::PluginDoc>>(text)
                .map(|d| Parsed::Plugin(Box::new(d.spec))),
            "VerificationTemplate" => serde_saphyr::from_str::<Doc<docs::TemplateDoc>>(text)
                .map(|d| Parsed::Template(d.spec)),
            _ => serde_saphyr::from_str::<Doc<docs::RolloutDoc>>(text)
                .map(|d| Parsed::Rollout(Box::new(d.spec))),
        };
        let parsed = match parsed {
            Ok(p) => p,
            Err(e) => {
                self.errors.push(src.serde_err(&e, text));
                // Known by name, so references to it do not add errors of their own.
                if let Some(name) = probe.metadata.and_then(|m| m.name) {
                    self.unparsed.push((kind, name.value));
                }
                return;
            }
        };
        // A successful typed parse guarantees `metadata.name` is there.
        let Some(name) = probe.metadata.and_then(|m| m.name) else {
            self.errors
                .push(src.err_doc("metadata.name", "missing field `name`"));
            return;
        };
        if !valid_name(&name.value) {
            self.errors.push(src.err(
                &name,
                "metadata.name",
                format!(
                    "invalid name {:?}: use 1-63 lowercase letters, digits or '-', starting with a letter and not ending with '-'",
                    name.value
                ),
            ));
        }
        self.documents.push(Document {
            src,
            name,
            kind,
            parsed,
        });
    }
}

impl Loader {
    /// Add a file's documents in order, up to the cap on problems (the rest of the file
    /// is not taken, and [`load_sources_partial`] stops before the next file).
    fn take(&mut self, file: Vec<Read>) {
        for read in file {
            if self.errors.len() >= MAX_PROBLEMS_COLLECTED {
                return;
            }
            self.errors.extend(read.errors);
            self.documents.extend(read.documents);
            self.unparsed.extend(read.unparsed);
        }
    }

    fn resolve(&mut self) -> Bundle {
        let mut bundle = Bundle::default();
        // Names first, so references may point forward and across files.
        let mut seen: BTreeMap<(&'static str, String), String> = BTreeMap::new();
        let mut keep = Vec::new();
        for (index, doc) in self.documents.iter().enumerate() {
            let key = (doc.kind, doc.name.value.clone());
            if let Some(first) = seen.get(&key) {
                self.errors.push(doc.src.err(
                    &doc.name,
                    "metadata.name",
                    format!(
                        "duplicate {} name {:?}: already declared at {first}",
                        doc.kind, doc.name.value
                    ),
                ));
                continue;
            }
            seen.insert(key, doc.src.here(&doc.name));
            keep.push(index);
            match doc.kind {
                "MetricBackend" => {
                    self.backend_names.insert(doc.name.value.clone());
                }
                "Plugin" => {
                    self.plugin_names.insert(doc.name.value.clone());
                }
                "VerificationTemplate" => {
                    self.template_names.insert(doc.name.value.clone());
                }
                _ => {}
            }
        }
        for (kind, name) in &self.unparsed {
            let names = match *kind {
                "MetricBackend" => &mut self.backend_names,
                "Plugin" => &mut self.plugin_names,
                "VerificationTemplate" => &mut self.template_names,
                _ => continue,
            };
            names.insert(name.clone());
        }
        for (name, _) in crate::plugin::BUILTIN {
            self.plugin_names.insert((*name).to_string());
        }
        let documents = std::mem::take(&mut self.documents);
        let documents: Vec<Document> = documents
            .into_iter()
            .enumerate()
            .filter(|(i, _)| keep.contains(i))
            .map(|(_, d)| d)
            .collect();
        for doc in &documents {
            match &doc.parsed {
                Parsed::Backend(b) => {
                    self.check_backend(&doc.src, b);
                    bundle.backends.push(((**b).clone(), doc.src.file.clone()));
                    bundle.backend_at.insert(
                        b.metadata.name.clone(),
                        SourcePos {
                            file: doc.src.file.clone(),
                            line: doc.src.first,
                            col: 1,
                            path: "spec".into(),
                        },
                    );
                }
                Parsed::Plugin(p) => {
                    if let Some(spec) = self.plugin(&doc.src, &doc.name, p) {
                        bundle.plugins.insert(spec.name.clone(), spec);
                    }
                }
                Parsed::Template(t) => {
                    if let Some(spec) = self.template(&doc.src, &doc.name, t) {
                        self.templates
                            .insert(spec.name.clone(), (doc.src.clone(), t.clone(), spec));
                    }
                }
                Parsed::Rollout(_) => {}
            }
        }
        for doc in &documents {
            if let Parsed::Rollout(r) = &doc.parsed
                && let Some(spec) = self.rollout(&doc.src, &doc.name, r)
            {
                bundle.rollouts.push(std::sync::Arc::new(spec));
            }
        }
        bundle.templates = self
            .templates
            .iter()
            .map(|(name, (_, _, spec))| (name.clone(), spec.clone()))
            .collect();
        bundle
    }
}
