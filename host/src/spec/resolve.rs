//! From documents to the model: split files into documents, parse each by its kind, then
//! check values and references and expand templates, collecting every problem with the
//! position of the value it is about.

use super::docs::{self, Doc, MetricDoc, Node, P, Probe, TemplateRefDoc};
use super::model::*;
use super::{SpecError, parse_duration};
use crate::files::{MAX_DOCUMENTS_PER_FILE, MAX_PROBLEMS_SHOWN};
use crate::metrics::config::{API_VERSION, MetricBackendDoc, valid_name};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The document kinds, in the order messages list them.
const KINDS: &[&str] = &["MetricBackend", "Plugin", "VerificationTemplate", "Rollout"];

/// Most instances `rolling.replicas` may name: each one becomes a name in the spec, the
/// checkpoint and every step.
const MAX_REPLICAS: u32 = 10_000;

/// Most retries a webhook target or a gate may ask for (each one waits longer than the
/// last).
const MAX_RETRIES: u32 = 20;

/// Problems collected before the loader stops reading further documents: enough to show
/// [`MAX_PROBLEMS_SHOWN`] and count a good many more, bounded however many documents the
/// files hold.
const MAX_PROBLEMS_COLLECTED: usize = 100 * MAX_PROBLEMS_SHOWN;

/// Where a document sits: its file, the file's folder and the document's first line.
#[derive(Debug, Clone)]
struct Src {
    file: PathBuf,
    base: PathBuf,
    /// Lines of the file before the document's text.
    offset: usize,
    /// The line of the document's first content (for problems of the whole document).
    first: usize,
}

impl Src {
    fn pos<T>(&self, p: &P<T>) -> (usize, usize) {
        if p.line == 0 {
            (self.first, 1)
        } else {
            (
                self.offset + usize::try_from(p.line).unwrap_or(usize::MAX - self.offset),
                usize::try_from(p.col).unwrap_or(1).max(1),
            )
        }
    }

    /// Where `p` is written, as a [`SourcePos`].
    fn at<T>(&self, p: &P<T>, path: &str) -> SourcePos {
        let (line, col) = self.pos(p);
        SourcePos {
            file: self.file.clone(),
            line,
            col,
            path: path.to_string(),
        }
    }

    fn err<T>(&self, p: &P<T>, path: impl Into<String>, message: impl Into<String>) -> SpecError {
        let (line, col) = self.pos(p);
        self.err_at(line, col, path, message)
    }

    fn err_doc(&self, path: impl Into<String>, message: impl Into<String>) -> SpecError {
        self.err_at(self.first, 1, path, message)
    }

    fn err_at(
        &self,
        line: usize,
        col: usize,
        path: impl Into<String>,
        message: impl Into<String>,
    ) -> SpecError {
        SpecError {
            file: self.file.clone(),
            line,
            col,
            path: path.into(),
            message: message.into(),
        }
    }

    fn here<T>(&self, p: &P<T>) -> String {
        let (line, col) = self.pos(p);
        format!("{}:{line}:{col}", self.file.display())
    }

    /// A YAML or shape error from serde-saphyr, moved to the document's place in the file,
    /// with the field path of where it points (`text` is the document's text).
    fn serde_err(&self, e: &serde_saphyr::Error, text: &str) -> SpecError {
        use serde_saphyr::MessageFormatter;
        let message = yaml_limit_message(e.without_snippet()).unwrap_or_else(|| {
            serde_saphyr::DefaultMessageFormatter
                .format_message(e.without_snippet())
                .lines()
                .next()
                .unwrap_or("invalid document")
                .to_string()
        });
        let message = match message.as_str() {
            "invalid u8" | "invalid u16" | "invalid u32" | "invalid u64" | "invalid usize" => {
                format!("{message}: expected a whole number, 0 or more")
            }
            "invalid i8" | "invalid i16" | "invalid i32" | "invalid i64" => {
                format!("{message}: expected a whole number")
            }
            "invalid f32" | "invalid f64" | "invalid floating point" => {
                format!("{message}: expected a number")
            }
            "invalid bool" => format!("{message}: expected true or false"),
            _ => message,
        };
        match e.location() {
            Some(loc) if loc.line() > 0 => self.err_at(
                self.offset + usize::try_from(loc.line()).unwrap_or(0),
                usize::try_from(loc.column()).unwrap_or(1).max(1),
                docs::path_at(text, loc.line(), loc.column()),
                message,
            ),
            _ => self.err_doc("", message),
        }
    }
}

/// The messages serde-saphyr words for its own users (a budget as Rust debug text, a
/// duplicate key with advice to set a parser option), said for an operator instead.
fn yaml_limit_message(e: &serde_saphyr::Error) -> Option<String> {
    use serde_saphyr::budget::BudgetBreach as B;
    let too = |what: &str, n: usize| {
        format!(
            "the document holds too many {what} (reading stopped at {n}): YAML this large or this nested is refused, as a guard against alias bombs; split it into several documents or files"
        )
    };
    Some(match e {
        serde_saphyr::Error::Budget { breach, .. } => match breach {
            B::Events { events } => too("YAML events", *events),
            B::Aliases { aliases } => too("aliases (*name)", *aliases),
            B::Anchors { anchors } => too("anchors (&name)", *anchors),
            B::Depth { depth } => too("levels of nesting", *depth),
            B::Documents { documents } => too("documents", *documents),
            B::Nodes { nodes } => too("nodes", *nodes),
            B::ScalarBytes { total_scalar_bytes } => too("bytes of values", *total_scalar_bytes),
            B::MergeKeys { merge_keys } => too("merge keys (<<)", *merge_keys),
            B::AliasAnchorRatio { aliases, anchors } => format!(
                "the document uses {aliases} aliases for {anchors} anchors: refused as an alias bomb; write the values out"
            ),
            B::InputBytes { input_bytes } => too("bytes", *input_bytes),
            _ => "the document is larger or more nested than rollgate reads (a YAML limit); split it into several documents or files".to_string(),
        },
        serde_saphyr::Error::DuplicateMappingKey { key, .. } => match key {
            Some(k) => format!("the key {k} appears twice in this mapping; keep one"),
            None => "a key appears twice in this mapping; keep one".to_string(),
        },
        _ => return None,
    })
}

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

/// Split a YAML stream into its documents: `(lines before it, text)`. A document starts at a
/// `---` line (kept in its text, so the parser sees the marker and positions stay right).
/// More than [`MAX_DOCUMENTS_PER_FILE`] documents (empty ones included) is an error: the
/// 0-based line where the first document too many starts.
fn split_documents(text: &str) -> Result<Vec<(usize, String)>, usize> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut start = 0;
    for (index, line) in text.split_inclusive('\n').enumerate() {
        let bare = line.trim_end_matches(['\n', '\r']);
        let marker = bare == "---" || bare.starts_with("--- ") || bare.starts_with("---\t");
        if marker && index > 0 {
            if out.len() + 1 >= MAX_DOCUMENTS_PER_FILE {
                return Err(index);
            }
            out.push((start, std::mem::take(&mut current)));
            start = index;
        }
        current.push_str(line);
    }
    out.push((start, current));
    Ok(out)
}

/// The 0-based index (within the document) of its first line with content, or `None` when
/// the document holds nothing but markers, directives, comments and blank lines.
fn first_content_line(text: &str) -> Option<usize> {
    text.lines().position(|line| {
        let t = line.trim();
        let t = t.strip_prefix("---").map(str::trim).unwrap_or(t);
        !(t.is_empty() || t.starts_with('#') || t.starts_with('%') || t == "...")
    })
}

fn list(names: impl IntoIterator<Item = impl AsRef<str>>) -> String {
    let names: Vec<String> = names.into_iter().map(|n| n.as_ref().to_string()).collect();
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}

/// `text` with every YAML line break (`\r\n`, a lone `\r`, `\n`) written as `\n`: the YAML
/// parser counts a lone `\r` as a line break, so the documents are split and positions
/// counted the same way (a file with lone CRs got line numbers past its end; found by the
/// fuzzer). Columns do not change: a break ends its line.
fn yaml_line_breaks(text: &str) -> std::borrow::Cow<'_, str> {
    if text.contains('\r') {
        std::borrow::Cow::Owned(text.replace("\r\n", "\n").replace('\r', "\n"))
    } else {
        std::borrow::Cow::Borrowed(text)
    }
}

/// Read every document of every source, then resolve them together.
pub(super) fn load_sources(sources: &[(PathBuf, String)]) -> Result<Bundle, Vec<SpecError>> {
    let mut loader = Loader::default();
    let mut unchecked = None;
    for (file, text) in sources {
        if loader.errors.len() >= MAX_PROBLEMS_COLLECTED {
            unchecked = Some(file);
            break;
        }
        loader.parse_file(file, &yaml_line_breaks(text));
    }
    let bundle = loader.resolve();
    let mut errors = loader.errors;
    if errors.is_empty() && unchecked.is_none() {
        return Ok(bundle);
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
    Err(errors)
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

impl Loader {
    fn parse_file(&mut self, file: &Path, text: &str) {
        let base = file
            .parent()
            .map(Path::to_path_buf)
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or_else(|| PathBuf::from("."));
        let documents = match split_documents(text) {
            Ok(documents) => documents,
            Err(line) => {
                self.errors.push(SpecError {
                    file: file.to_path_buf(),
                    line: line + 1,
                    col: 1,
                    path: String::new(),
                    message: format!(
                        "more than {MAX_DOCUMENTS_PER_FILE} documents in one file (empty ones \
                         count too); this is document {}: split the file",
                        MAX_DOCUMENTS_PER_FILE + 1
                    ),
                });
                return;
            }
        };
        for (offset, doc) in documents {
            if self.errors.len() >= MAX_PROBLEMS_COLLECTED {
                return;
            }
            let Some(first) = first_content_line(&doc) else {
                continue;
            };
            let src = Src {
                file: file.to_path_buf(),
                base: base.clone(),
                offset,
                first: offset + first + 1,
            };
            self.parse_document(src, &doc);
        }
    }

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
                bundle.rollouts.push(spec);
            }
        }
        bundle.templates = self
            .templates
            .iter()
            .map(|(name, (_, _, spec))| (name.clone(), spec.clone()))
            .collect();
        bundle
    }

    fn check_backend(&mut self, src: &Src, doc: &MetricBackendDoc) {
        for (path, message) in crate::metrics::config::problems(&doc.spec) {
            self.errors.push(src.err_doc(path, message));
        }
    }

    // ---- durations and small values ----

    fn duration(&mut self, src: &Src, p: &P<String>, path: &str) -> Option<Millis> {
        match parse_duration(&p.value) {
            Ok(ms) => Some(ms),
            Err(e) => {
                self.errors.push(src.err(p, path, e));
                None
            }
        }
    }

    /// `value` (read from `p`) if it is at most `max`, else a problem at `p`.
    fn capped<T>(
        &mut self,
        src: &Src,
        p: &P<T>,
        path: &str,
        value: u64,
        max: u64,
        unit: &str,
    ) -> Option<u64> {
        match crate::plugin::limits::ceiling::check(value, max, unit) {
            Ok(v) => Some(v),
            Err(e) => {
                self.errors.push(src.err(p, path, e));
                None
            }
        }
    }

    fn positive_duration(&mut self, src: &Src, p: &P<String>, path: &str) -> Option<Millis> {
        let ms = self.duration(src, p, path)?;
        if ms == 0 {
            self.errors
                .push(src.err(p, path, format!("{:?} must be more than 0", p.value)));
            return None;
        }
        Some(ms)
    }

    /// An optional count within `min..=max` (`default` when absent or out of range, which
    /// is reported with the allowed range).
    fn bounded(
        &mut self,
        src: &Src,
        p: Option<&P<u32>>,
        path: &str,
        default: u32,
        (min, max): (u32, u32),
    ) -> u32 {
        match p {
            None => default,
            Some(p) if (min..=max).contains(&p.value) => p.value,
            Some(p) => {
                self.errors.push(src.err(
                    p,
                    path,
                    format!("{} is out of range; use {min} to {max}", p.value),
                ));
                default
            }
        }
    }

    fn opt_duration(
        &mut self,
        src: &Src,
        p: &Option<P<String>>,
        path: &str,
        default: Millis,
        positive: bool,
    ) -> Millis {
        match p {
            None => default,
            Some(p) if positive => self.positive_duration(src, p, path).unwrap_or(default),
            Some(p) => self.duration(src, p, path).unwrap_or(default),
        }
    }

    fn size(&mut self, src: &Src, p: &P<docs::SizeDoc>, path: &str) -> Option<u64> {
        let text = match &p.value {
            docs::SizeDoc::Bytes(n) => return Some(*n),
            docs::SizeDoc::Text(t) => t.trim(),
        };
        let (digits, factor) = if let Some(d) = text.strip_suffix("Ki") {
            (d, 1u64 << 10)
        } else if let Some(d) = text.strip_suffix("Mi") {
            (d, 1 << 20)
        } else if let Some(d) = text.strip_suffix("Gi") {
            (d, 1 << 30)
        } else {
            (text, 1)
        };
        match digits
            .trim()
            .parse::<u64>()
            .ok()
            .and_then(|n| n.checked_mul(factor))
        {
            Some(n) => Some(n),
            None => {
                self.errors.push(src.err(
                    p,
                    path,
                    format!(
                        "invalid size {text:?}: write bytes (1048576) or a number with Ki, Mi or Gi (64Mi)"
                    ),
                ));
                None
            }
        }
    }

    fn url(&mut self, src: &Src, p: &P<String>, path: &str) {
        let ok = ["http://", "https://"]
            .iter()
            .any(|s| p.value.strip_prefix(s).is_some_and(|rest| !rest.is_empty()));
        if !ok {
            self.errors.push(src.err(
                p,
                path,
                format!("invalid URL {:?}: use an http:// or https:// URL", p.value),
            ));
        }
    }

    fn plugin_exists(&mut self, src: &Src, p: &P<String>, path: &str) {
        if !self.plugin_names.contains(&p.value) {
            let message = format!(
                "plugin {:?} not found; known plugins: {}",
                p.value,
                list(&self.plugin_names)
            );
            self.errors.push(src.err(p, path, message));
        }
    }

    fn backend_missing(&self, name: &str) -> Option<String> {
        if self.backend_names.contains(name) {
            None
        } else if self.backend_names.is_empty() {
            Some(format!(
                "backend {name:?} not found; no MetricBackend documents were loaded"
            ))
        } else {
            Some(format!(
                "backend {name:?} not found; known backends: {}",
                list(&self.backend_names)
            ))
        }
    }

    // ---- plugins ----

    fn plugin(&mut self, src: &Src, name: &P<String>, doc: &docs::PluginDoc) -> Option<PluginSpec> {
        let before = self.errors.len();
        let builtins: Vec<&str> = crate::plugin::BUILTIN.iter().map(|(n, _)| *n).collect();
        if builtins.contains(&name.value.as_str()) {
            self.errors.push(src.err(
                name,
                "metadata.name",
                format!(
                    "{:?} is the name of a built-in plugin; choose another name",
                    name.value
                ),
            ));
        }
        let text = doc.source.value.trim();
        let source = if let Some(b) = text.strip_prefix("builtin:") {
            if builtins.contains(&b) {
                PluginSourceSpec::Builtin(b.to_string())
            } else {
                self.errors.push(src.err(
                    &doc.source,
                    "spec.source",
                    format!(
                        "unknown built-in plugin {b:?}; built-ins: {}",
                        list(&builtins)
                    ),
                ));
                return None;
            }
        } else if builtins.contains(&text) {
            PluginSourceSpec::Builtin(text.to_string())
        } else if text.is_empty() {
            self.errors.push(src.err(
                &doc.source,
                "spec.source",
                "empty source: name a built-in plugin or a component file",
            ));
            return None;
        } else {
            PluginSourceSpec::File(src.base.join(text))
        };
        let sha256 = match (&source, &doc.sha256) {
            (PluginSourceSpec::Builtin(_), Some(s)) => {
                self.errors.push(src.err(
                    s,
                    "spec.sha256",
                    "a built-in plugin is pinned by rollgate itself; remove sha256",
                ));
                None
            }
            (PluginSourceSpec::Builtin(_), None) => None,
            (PluginSourceSpec::File(_), None) => {
                self.errors.push(src.err(
                    &doc.source,
                    "spec.sha256",
                    format!(
                        "a plugin file must be pinned: add `sha256:` with the component's digest (`sha256sum {text}`)"
                    ),
                ));
                None
            }
            (PluginSourceSpec::File(_), Some(s)) => {
                let hex = s.value.trim();
                let hex = hex.strip_prefix("sha256:").unwrap_or(hex);
                if hex.len() == 64 && hex.chars().all(|c| c.is_ascii_hexdigit()) {
                    Some(hex.to_ascii_lowercase())
                } else {
                    self.errors.push(src.err(
                        s,
                        "spec.sha256",
                        "invalid sha256: expected 64 hex digits (optionally prefixed with `sha256:`)",
                    ));
                    None
                }
            }
        };
        let mut limits = PluginLimits::default();
        if let Some(l) = &doc.limits {
            use crate::plugin::limits::ceiling;
            if let Some(m) = &l.memory {
                limits.memory_bytes = self.size(src, m, "spec.limits.memory").and_then(|n| {
                    self.capped(
                        src,
                        m,
                        "spec.limits.memory",
                        n,
                        ceiling::MEMORY_BYTES,
                        "bytes",
                    )
                });
            }
            if let Some(t) = &l.timeout {
                limits.timeout_ms = self
                    .positive_duration(src, t, "spec.limits.timeout")
                    .and_then(|n| {
                        self.capped(src, t, "spec.limits.timeout", n, ceiling::TIMEOUT_MS, "ms")
                    });
            }
            if let Some(t) = &l.query_timeout {
                limits.query_timeout_ms = self
                    .positive_duration(src, t, "spec.limits.queryTimeout")
                    .and_then(|n| {
                        self.capped(
                            src,
                            t,
                            "spec.limits.queryTimeout",
                            n,
                            ceiling::TIMEOUT_MS,
                            "ms",
                        )
                    });
            }
            if let Some(f) = &l.fuel {
                if f.value == 0 {
                    self.errors
                        .push(src.err(f, "spec.limits.fuel", "must be at least 1"));
                }
                limits.fuel = Some(f.value);
            }
            if let Some(b) = &l.max_result_bytes {
                limits.max_result_bytes = self
                    .capped(
                        src,
                        b,
                        "spec.limits.maxResultBytes",
                        b.value,
                        ceiling::RESULT_BYTES,
                        "bytes",
                    )
                    .and_then(|n| usize::try_from(n).ok());
            }
            if let Some(b) = &l.max_component_bytes {
                limits.max_component_bytes = self
                    .size(src, b, "spec.limits.maxComponentBytes")
                    .and_then(|n| {
                        self.capped(
                            src,
                            b,
                            "spec.limits.maxComponentBytes",
                            n,
                            ceiling::COMPONENT_BYTES,
                            "bytes",
                        )
                    })
                    .and_then(|n| usize::try_from(n).ok());
            }
        }
        let mut allowed_hosts = Vec::new();
        for (i, h) in doc.allowed_hosts.iter().enumerate() {
            let host = h.value.trim();
            if host.is_empty() || host.contains("://") || host.contains('/') {
                self.errors.push(src.err(
                    h,
                    format!("spec.allowedHosts[{i}]"),
                    format!(
                        "invalid host {:?}: write a host name like api.example.com",
                        h.value
                    ),
                ));
            } else {
                allowed_hosts.push(host.to_string());
            }
        }
        (self.errors.len() == before).then(|| PluginSpec {
            name: name.value.clone(),
            source,
            sha256,
            limits,
            allowed_hosts,
            file: src.file.clone(),
        })
    }

    // ---- metrics ----

    /// Check one metric as written; the result's `config` and `backend` are not
    /// substituted. `declared` are the arg names `{{args.x}}` may use; `owner` says whose
    /// args they are, for messages.
    fn metric(
        &mut self,
        src: &Src,
        path: &str,
        m: &MetricDoc,
        declared: &BTreeSet<String>,
        owner: &str,
    ) -> Option<MetricSpec> {
        let before = self.errors.len();
        if m.name.value.trim().is_empty() {
            self.errors
                .push(src.err(&m.name, format!("{path}.name"), "a metric needs a name"));
        }
        self.plugin_exists(src, &m.provider.plugin, &format!("{path}.provider.plugin"));
        if let Some(b) = &m.provider.backend {
            self.check_args(src, b, &format!("{path}.provider.backend"), declared, owner);
            if placeholders(&b.value).is_empty()
                && let Some(message) = self.backend_missing(&b.value)
            {
                self.errors
                    .push(src.err(b, format!("{path}.provider.backend"), message));
            }
        }
        let config_at = m
            .provider
            .config
            .as_ref()
            .map(|node| src.at(node, &format!("{path}.provider.config")));
        let config = match &m.provider.config {
            Some(node) => {
                self.check_node(
                    src,
                    node,
                    &format!("{path}.provider.config"),
                    declared,
                    owner,
                );
                to_json(&node.value)
            }
            None => Value::Object(Default::default()),
        };
        let interval_ms = m
            .interval
            .as_ref()
            .and_then(|i| self.positive_duration(src, i, &format!("{path}.interval")));
        let mut count = None;
        if let Some(c) = &m.count {
            if c.value == 0 {
                self.errors.push(src.err(
                    c,
                    format!("{path}.count"),
                    "count must be at least 1 (leave it out to measure until the phase ends)",
                ));
            } else if c.value > 1 && m.interval.is_none() {
                self.errors.push(src.err(
                    c,
                    format!("{path}.count"),
                    format!(
                        "count {} needs an interval (the time between measurements), e.g. `interval: 30s`",
                        c.value
                    ),
                ));
            }
            count = Some(c.value);
        }
        let initial_delay_ms = self.opt_duration(
            src,
            &m.initial_delay,
            &format!("{path}.initialDelay"),
            0,
            false,
        );
        for (limit, field) in [
            (&m.consecutive_failure_limit, "consecutiveFailureLimit"),
            (&m.consecutive_success_limit, "consecutiveSuccessLimit"),
        ] {
            if let Some(l) = limit
                && l.value == 0
            {
                self.errors.push(src.err(
                    l,
                    format!("{path}.{field}"),
                    "must be at least 1 (leave it out to turn it off)",
                ));
            }
        }
        let failure_limit = match &m.failure_limit {
            None => 0,
            Some(f) if f.value < -1 => {
                self.errors.push(src.err(
                    f,
                    format!("{path}.failureLimit"),
                    format!(
                        "failureLimit {} is invalid: use 0 or more, or -1 to disable",
                        f.value
                    ),
                ));
                0
            }
            Some(f)
                if f.value == -1
                    && m.consecutive_failure_limit.is_none()
                    && m.consecutive_success_limit.is_none() =>
            {
                self.errors.push(src.err(
                    f,
                    format!("{path}.failureLimit"),
                    "failureLimit -1 disables failing by total, so the metric needs consecutiveFailureLimit or consecutiveSuccessLimit",
                ));
                -1
            }
            Some(f) => f.value,
        };
        (self.errors.len() == before).then(|| MetricSpec {
            name: m.name.value.clone(),
            template: None,
            plugin: m.provider.plugin.value.clone(),
            backend: m.provider.backend.as_ref().map(|b| b.value.clone()),
            config,
            interval_ms,
            count,
            initial_delay_ms,
            failure_limit,
            inconclusive_limit: m.inconclusive_limit.unwrap_or(0),
            consecutive_error_limit: m.consecutive_error_limit.unwrap_or(4),
            consecutive_failure_limit: m.consecutive_failure_limit.as_ref().map(|l| l.value),
            consecutive_success_limit: m.consecutive_success_limit.as_ref().map(|l| l.value),
            no_data: m.no_data.unwrap_or_default(),
            no_data_limit: m.no_data_limit.unwrap_or(0),
            dry_run: m.dry_run.unwrap_or(false),
            retention: m.measurement_retention.as_ref().map_or(10, |r| r.value),
            args: BTreeMap::new(),
            config_at,
        })
    }

    fn check_args(
        &mut self,
        src: &Src,
        p: &P<String>,
        path: &str,
        declared: &BTreeSet<String>,
        owner: &str,
    ) {
        for name in placeholders(&p.value) {
            if !declared.contains(&name) {
                self.errors.push(src.err(
                    p,
                    path,
                    format!(
                        "unknown arg {name:?} in {{{{args.{name}}}}}; {owner} {}",
                        list(declared)
                    ),
                ));
            }
        }
    }

    fn check_node(
        &mut self,
        src: &Src,
        node: &P<Node>,
        path: &str,
        declared: &BTreeSet<String>,
        owner: &str,
    ) {
        match &node.value {
            Node::String(s) => {
                let p = P {
                    value: s.clone(),
                    line: node.line,
                    col: node.col,
                };
                self.check_args(src, &p, path, declared, owner);
            }
            Node::Seq(items) => {
                for (i, item) in items.iter().enumerate() {
                    self.check_node(src, item, &format!("{path}[{i}]"), declared, owner);
                }
            }
            Node::Map(entries) => {
                for (key, value) in entries {
                    let key = &key.value;
                    self.check_node(src, value, &format!("{path}.{key}"), declared, owner);
                }
            }
            Node::Null | Node::Bool(_) | Node::Number(_) => {}
        }
    }

    // ---- templates ----

    fn template(
        &mut self,
        src: &Src,
        name: &P<String>,
        doc: &docs::TemplateDoc,
    ) -> Option<TemplateSpec> {
        let before = self.errors.len();
        let mut args = BTreeMap::new();
        for (i, a) in doc.args.iter().enumerate() {
            if a.name.value.trim().is_empty() {
                self.errors.push(src.err(
                    &a.name,
                    format!("spec.args[{i}].name"),
                    "an arg needs a name",
                ));
            } else if args.insert(a.name.value.clone(), a.value.clone()).is_some() {
                self.errors.push(src.err(
                    &a.name,
                    format!("spec.args[{i}].name"),
                    format!("arg {:?} is declared twice", a.name.value),
                ));
            }
        }
        let declared: BTreeSet<String> = args.keys().cloned().collect();
        let owner = format!("template {:?} declares:", name.value);
        let mut metrics = Vec::new();
        let mut names: BTreeMap<String, String> = BTreeMap::new();
        if doc.metrics.value.is_empty() {
            self.errors.push(src.err(
                &doc.metrics,
                "spec.metrics",
                "a template needs at least one metric",
            ));
        }
        for (i, m) in doc.metrics.value.iter().enumerate() {
            let path = format!("spec.metrics[{i}]");
            if let Some(first) = names.get(&m.name.value) {
                self.errors.push(src.err(
                    &m.name,
                    format!("{path}.name"),
                    format!(
                        "metric {:?} is defined twice in this template (first at {first})",
                        m.name.value
                    ),
                ));
            } else {
                names.insert(m.name.value.clone(), src.here(&m.name));
            }
            if let Some(mut spec) = self.metric(src, &path, m, &declared, &owner) {
                spec.template = Some(name.value.clone());
                spec.args = args
                    .iter()
                    .filter_map(|(k, v)| v.clone().map(|v| (k.clone(), v)))
                    .collect();
                metrics.push(spec);
            }
        }
        (self.errors.len() == before).then(|| TemplateSpec {
            name: name.value.clone(),
            args,
            metrics,
            file: src.file.clone(),
        })
    }

    /// The metrics a verification (phase or background) runs: its templates, expanded with
    /// their args, then its inline metrics; names unique across both.
    fn verification(
        &mut self,
        src: &Src,
        path: &str,
        templates: &[P<TemplateRefDoc>],
        inline: &[MetricDoc],
        rollout_args: &BTreeMap<String, String>,
        phase: Option<&str>,
    ) -> Vec<MetricSpec> {
        let mut out: Vec<MetricSpec> = Vec::new();
        // name → (origin, position)
        let mut origins: BTreeMap<String, String> = BTreeMap::new();
        for (i, r) in templates.iter().enumerate() {
            let rpath = format!("{path}.templates[{i}]");
            let Some((tsrc, tdoc, tspec)) = self.templates.get(&r.value.name).cloned() else {
                let message = format!(
                    "template {:?} not found; known templates: {}",
                    r.value.name,
                    list(&self.template_names)
                );
                // A template that exists but is invalid was already reported.
                if !self.template_names.contains(&r.value.name) {
                    self.errors.push(src.err(r, rpath, message));
                }
                continue;
            };
            // Args in effect: defaults < rollout args < per-use args.
            let mut args: BTreeMap<String, String> = BTreeMap::new();
            for (k, v) in &tspec.args {
                if let Some(v) = rollout_args.get(k).or(v.as_ref()) {
                    args.insert(k.clone(), v.clone());
                }
            }
            for (k, v) in &r.value.args {
                if tspec.args.contains_key(k) {
                    args.insert(k.clone(), v.clone());
                } else {
                    self.errors.push(src.err(
                        r,
                        format!("{rpath}.args.{k}"),
                        format!(
                            "template {:?} has no arg {k:?}; its args: {}",
                            tspec.name,
                            list(tspec.args.keys())
                        ),
                    ));
                }
            }
            let mut complete = true;
            for k in tspec.args.keys() {
                if !args.contains_key(k) {
                    complete = false;
                    self.errors.push(src.err(
                        r,
                        rpath.clone(),
                        format!(
                            "template {:?} needs arg {k:?}: set it in the rollout's spec.args or in this reference's args",
                            tspec.name
                        ),
                    ));
                }
            }
            if !complete {
                continue;
            }
            for (m, mdoc) in tspec.metrics.iter().zip(&tdoc.metrics.value) {
                let mut m = m.clone();
                m.config = substitute_value(&m.config, &args);
                if let Some(b) = &m.backend {
                    let b = substitute(b, &args);
                    if placeholders(&b).is_empty()
                        && !placeholders(mdoc.provider.backend.as_ref().map_or("", |b| &b.value))
                            .is_empty()
                        && let Some(message) = self.backend_missing(&b)
                    {
                        self.errors.push(src.err(
                            r,
                            rpath.clone(),
                            format!("template {:?} metric {:?}: {message}", tspec.name, m.name),
                        ));
                    }
                    m.backend = Some(b);
                }
                m.args = args.clone();
                let origin = format!("template {:?}", tspec.name);
                if let Some(first) = origins.get(&m.name) {
                    self.errors.push(src.err(
                        r,
                        rpath.clone(),
                        format!(
                            "metric {:?} is defined twice in this verification: by {first} and by {origin}",
                            m.name
                        ),
                    ));
                    continue;
                }
                if let Some(phase) = phase
                    && runs_forever(&m)
                {
                    self.errors.push(tsrc.err(
                        mdoc.interval.as_ref().unwrap_or(&mdoc.name),
                        format!("spec.metrics[{}].interval", index_of(&tdoc, &m.name)),
                        format!(
                            "metric {:?} (used by phase {phase:?} at {}) has an interval but no count, and no consecutiveSuccessLimit with a failureLimit of 0 or more, so the phase might never end; set a count (only background metrics may run indefinitely)",
                            m.name,
                            src.here(r)
                        ),
                    ));
                }
                origins.insert(m.name.clone(), origin);
                out.push(m);
            }
        }
        let declared: BTreeSet<String> = rollout_args.keys().cloned().collect();
        for (i, mdoc) in inline.iter().enumerate() {
            let mpath = format!("{path}.metrics[{i}]");
            let Some(mut m) = self.metric(src, &mpath, mdoc, &declared, "the rollout's args:")
            else {
                continue;
            };
            m.config = substitute_value(&m.config, rollout_args);
            if let Some(b) = &m.backend {
                let b = substitute(b, rollout_args);
                if placeholders(&b).is_empty()
                    && !placeholders(mdoc.provider.backend.as_ref().map_or("", |x| &x.value))
                        .is_empty()
                    && let Some(message) = self.backend_missing(&b)
                    && let Some(bp) = &mdoc.provider.backend
                {
                    self.errors
                        .push(src.err(bp, format!("{mpath}.provider.backend"), message));
                }
                m.backend = Some(b);
            }
            m.args = rollout_args.clone();
            if let Some(first) = origins.get(&m.name) {
                self.errors.push(src.err(
                    &mdoc.name,
                    format!("{mpath}.name"),
                    format!(
                        "metric {:?} is defined twice in this verification: by {first} and inline",
                        m.name
                    ),
                ));
                continue;
            }
            if phase.is_some() && runs_forever(&m) {
                self.errors.push(src.err(
                    mdoc.interval.as_ref().unwrap_or(&mdoc.name),
                    format!("{mpath}.interval"),
                    format!(
                        "metric {:?} has an interval but no count, and no consecutiveSuccessLimit with a failureLimit of 0 or more, so the phase might never end; set a count (only background metrics may run indefinitely)",
                        m.name
                    ),
                ));
            }
            origins.insert(m.name.clone(), "inline".into());
            out.push(m);
        }
        out
    }
}

fn index_of(doc: &docs::TemplateDoc, metric: &str) -> usize {
    doc.metrics
        .value
        .iter()
        .position(|m| m.name.value == metric)
        .unwrap_or(0)
}

/// A phase metric that measures on an interval with nothing that ends it: no count, and
/// no consecutiveSuccessLimit, or one that alternating verdicts never reach while
/// failureLimit -1 never fails it.
fn runs_forever(m: &MetricSpec) -> bool {
    m.interval_ms.is_some()
        && m.count.is_none()
        && (m.consecutive_success_limit.is_none() || m.failure_limit < 0)
}

// ---- args ----

/// One `{{args.NAME}}` found in a string: byte range and name.
fn find_placeholders(s: &str) -> Vec<(usize, usize, String)> {
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(found) = s[from..].find("{{") {
        let start = from + found;
        let rest = &s[start + 2..];
        let trimmed = rest.trim_start();
        let mut matched = None;
        if let Some(after) = trimmed.strip_prefix("args.") {
            let len = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
                .unwrap_or(after.len());
            let name = &after[..len];
            let tail = after[len..].trim_start();
            if !name.is_empty() && tail.starts_with("}}") {
                let end = s.len() - tail.len() + 2;
                matched = Some((start, end, name.to_string()));
            }
        }
        match matched {
            Some(m) => {
                from = m.1;
                out.push(m);
            }
            None => from = start + 2,
        }
    }
    out
}

/// The arg names a string refers to.
fn placeholders(s: &str) -> Vec<String> {
    find_placeholders(s)
        .into_iter()
        .map(|(_, _, n)| n)
        .collect()
}

/// Substitute the args into a string (unknown args stay as written).
fn substitute(s: &str, args: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(s.len());
    let mut last = 0;
    for (start, end, name) in find_placeholders(s) {
        out.push_str(&s[last..start]);
        match args.get(&name) {
            Some(v) => out.push_str(v),
            None => out.push_str(&s[start..end]),
        }
        last = end;
    }
    out.push_str(&s[last..]);
    out
}

/// Substitute the args into every string of a JSON value. A string that is exactly one
/// placeholder whose value reads as a JSON number or boolean becomes that number/boolean.
pub(super) fn substitute_value(v: &Value, args: &BTreeMap<String, String>) -> Value {
    match v {
        Value::String(s) => {
            let found = find_placeholders(s);
            if let [(0, end, name)] = found.as_slice()
                && *end == s.len()
                && let Some(text) = args.get(name)
                && let Ok(typed) = serde_json::from_str::<Value>(text.trim())
                && (typed.is_number() || typed.is_boolean())
            {
                return typed;
            }
            Value::String(substitute(s, args))
        }
        Value::Array(items) => {
            Value::Array(items.iter().map(|i| substitute_value(i, args)).collect())
        }
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), substitute_value(v, args)))
                .collect(),
        ),
        other => other.clone(),
    }
}

fn to_json(node: &Node) -> Value {
    match node {
        Node::Null => Value::Null,
        Node::Bool(b) => Value::Bool(*b),
        Node::Number(n) => Value::Number(n.clone()),
        Node::String(s) => Value::String(s.clone()),
        Node::Seq(items) => Value::Array(items.iter().map(|i| to_json(&i.value)).collect()),
        Node::Map(entries) => Value::Object(
            entries
                .iter()
                .map(|(k, v)| (k.value.clone(), to_json(&v.value)))
                .collect(),
        ),
    }
}

// ---- rollouts ----

impl Loader {
    fn rollout(
        &mut self,
        src: &Src,
        name: &P<String>,
        doc: &docs::RolloutDoc,
    ) -> Option<RolloutSpec> {
        let before = self.errors.len();
        for (p, field) in [
            (&doc.stable_version, "spec.stableVersion"),
            (&doc.canary_version, "spec.canaryVersion"),
        ] {
            if p.value.trim().is_empty() {
                self.errors.push(src.err(p, field, "must not be empty"));
            }
        }
        let target = self.target(src, &doc.target);
        let strategy = self.strategy(src, &doc.strategy);

        // Phases.
        let mut phases = Vec::new();
        if doc.phases.value.is_empty() {
            self.errors.push(src.err(
                &doc.phases,
                "spec.phases",
                "a rollout needs at least one phase",
            ));
        }
        let mut phase_names: BTreeMap<String, String> = BTreeMap::new();
        let mut previous: Option<f64> = None;
        let count = doc.phases.value.len();
        for (i, p) in doc.phases.value.iter().enumerate() {
            let path = format!("spec.phases[{i}]");
            if p.name.value.trim().is_empty() {
                self.errors
                    .push(src.err(&p.name, format!("{path}.name"), "a phase needs a name"));
            } else if let Some(first) = phase_names.get(&p.name.value) {
                self.errors.push(src.err(
                    &p.name,
                    format!("{path}.name"),
                    format!(
                        "phase name {:?} is used twice (first at {first})",
                        p.name.value
                    ),
                ));
            } else {
                phase_names.insert(p.name.value.clone(), src.here(&p.name));
            }
            let w = p.weight.value;
            let wpath = format!("{path}.weight");
            if !(0.0..=100.0).contains(&w) {
                self.errors.push(src.err(
                    &p.weight,
                    wpath.clone(),
                    format!("weight {w} is out of range; use 0 to 100 (percent)"),
                ));
            } else {
                match &strategy {
                    Some(Strategy::BlueGreen) => {
                        if w != 0.0 && w != 100.0 {
                            self.errors.push(src.err(
                                &p.weight,
                                wpath.clone(),
                                format!("a blue-green phase's weight is 0 (preview) or 100 (cut over), not {w}"),
                            ));
                        } else if i + 1 == count && w != 100.0 {
                            self.errors.push(src.err(
                                &p.weight,
                                wpath.clone(),
                                format!("the last phase of a blue-green rollout must have weight 100 (cut over), not {w}"),
                            ));
                        }
                    }
                    Some(s) => {
                        if let Some(prev) = previous
                            && w < prev
                        {
                            let kind = if matches!(s, Strategy::Canary) {
                                "canary"
                            } else {
                                "rolling"
                            };
                            self.errors.push(src.err(
                                &p.weight,
                                wpath.clone(),
                                format!("weight {w} is below the previous phase's {prev}; {kind} weights may not decrease"),
                            ));
                        }
                    }
                    None => {}
                }
                previous = Some(w);
            }
            let pause = p.pause.as_ref().map(|pause| match &pause.duration {
                None => Some(PauseSpec::Indefinite),
                Some(d) => self
                    .duration(src, d, &format!("{path}.pause.duration"))
                    .map(PauseSpec::Timed),
            });
            let metrics = match &p.verification {
                Some(v) => self.verification(
                    src,
                    &format!("{path}.verification"),
                    &v.templates,
                    &v.metrics,
                    &doc.args,
                    Some(&p.name.value),
                ),
                None => Vec::new(),
            };
            let mut gates = Vec::new();
            let mut gate_names = BTreeSet::new();
            for (g_index, g) in p.gates.iter().enumerate() {
                let gpath = format!("{path}.gates[{g_index}]");
                if g.name.value.trim().is_empty() {
                    self.errors.push(src.err(
                        &g.name,
                        format!("{gpath}.name"),
                        "a gate needs a name",
                    ));
                } else if !gate_names.insert(g.name.value.clone()) {
                    self.errors.push(src.err(
                        &g.name,
                        format!("{gpath}.name"),
                        format!("gate name {:?} is used twice in this phase", g.name.value),
                    ));
                }
                self.url(src, &g.url, &format!("{gpath}.url"));
                gates.push(GateSpec {
                    name: g.name.value.clone(),
                    kind: g.kind,
                    url: g.url.value.clone(),
                    timeout_ms: self.opt_duration(
                        src,
                        &g.timeout,
                        &format!("{gpath}.timeout"),
                        10_000,
                        true,
                    ),
                    retries: self.bounded(
                        src,
                        g.retries.as_ref(),
                        &format!("{gpath}.retries"),
                        2,
                        (0, MAX_RETRIES),
                    ),
                    interval_ms: self.opt_duration(
                        src,
                        &g.interval,
                        &format!("{gpath}.interval"),
                        30_000,
                        true,
                    ),
                });
            }
            phases.push(PhaseSpec {
                name: p.name.value.clone(),
                weight: w,
                pause: pause.flatten(),
                metrics,
                gates,
            });
        }

        // Background verification.
        let background = match &doc.background_verification {
            None => None,
            Some(b) => {
                let starting_phase = match &b.starting_phase {
                    None => 0,
                    Some(sp) => match doc
                        .phases
                        .value
                        .iter()
                        .position(|p| p.name.value == sp.value)
                    {
                        Some(i) => i,
                        None => {
                            self.errors.push(src.err(
                                sp,
                                "spec.backgroundVerification.startingPhase",
                                format!(
                                    "phase {:?} not found; phases: {}",
                                    sp.value,
                                    list(doc.phases.value.iter().map(|p| p.name.value.as_str()))
                                ),
                            ));
                            0
                        }
                    },
                };
                let metrics = self.verification(
                    src,
                    "spec.backgroundVerification",
                    &b.templates,
                    &b.metrics,
                    &doc.args,
                    None,
                );
                Some(BackgroundSpec {
                    starting_phase,
                    metrics,
                })
            }
        };

        // Failure policy.
        let failure_policy = match &doc.failure_policy {
            None => PolicyRef {
                plugin: "default-policy".into(),
                config: Value::Object(Default::default()),
                config_at: None,
            },
            Some(p) => {
                if let Some(plugin) = &p.plugin {
                    self.plugin_exists(src, plugin, "spec.failurePolicy.plugin");
                }
                PolicyRef {
                    plugin: p
                        .plugin
                        .as_ref()
                        .map_or_else(|| "default-policy".to_string(), |p| p.value.clone()),
                    config: p
                        .config
                        .as_ref()
                        .map_or_else(|| Value::Object(Default::default()), |c| to_json(&c.value)),
                    config_at: p
                        .config
                        .as_ref()
                        .map(|c| src.at(c, "spec.failurePolicy.config")),
                }
            }
        };

        let progress_deadline_ms = doc
            .progress_deadline
            .as_ref()
            .and_then(|d| self.positive_duration(src, d, "spec.progressDeadline"));
        let rollback = match &doc.rollback {
            None => RollbackMode::Immediate,
            Some(r) => match (r.value.mode, &r.value.step_pause) {
                (None | Some(docs::RollbackModeName::Immediate), None) => RollbackMode::Immediate,
                (Some(docs::RollbackModeName::NewRollout), None) => RollbackMode::NewRollout,
                // An error: the value returned does not matter.
                (
                    None
                    | Some(docs::RollbackModeName::Immediate | docs::RollbackModeName::NewRollout),
                    Some(s),
                ) => {
                    self.errors.push(src.err(
                        s,
                        "spec.rollback.stepPause",
                        "stepPause applies to `mode: gradual` only",
                    ));
                    RollbackMode::Immediate
                }
                (Some(docs::RollbackModeName::Gradual), step) => RollbackMode::Gradual {
                    step_pause_ms: self.opt_duration(
                        src,
                        step,
                        "spec.rollback.stepPause",
                        0,
                        false,
                    ),
                },
            },
        };
        let readiness = match &doc.readiness {
            None => Readiness::default(),
            Some(r) => {
                let d = Readiness::default();
                Readiness {
                    timeout_ms: self.opt_duration(
                        src,
                        &r.timeout,
                        "spec.readiness.timeout",
                        d.timeout_ms,
                        true,
                    ),
                    interval_ms: self.opt_duration(
                        src,
                        &r.interval,
                        "spec.readiness.interval",
                        d.interval_ms,
                        true,
                    ),
                }
            }
        };
        let mut notifications = Vec::new();
        for (i, n) in doc.notifications.iter().enumerate() {
            self.url(src, &n.url, &format!("spec.notifications[{i}].url"));
            notifications.push(crate::spec::model::NotificationSpec {
                url: n.url.value.clone(),
                events: n.events.clone(),
            });
        }
        if self.errors.len() != before {
            return None;
        }
        Some(RolloutSpec {
            name: name.value.clone(),
            file: src.file.clone(),
            stable_version: doc.stable_version.value.clone(),
            canary_version: doc.canary_version.value.clone(),
            target: target?,
            strategy: strategy?,
            phases,
            background,
            failure_policy,
            progress_deadline_ms,
            on_deadline: doc.on_deadline.unwrap_or_default(),
            rollback,
            readiness,
            args: doc.args.clone(),
            notifications,
        })
    }

    /// A choice of exactly one field (`what` sets one of `options`); false after reporting.
    fn exactly_one<T>(
        &mut self,
        src: &Src,
        at: &P<T>,
        path: &str,
        what: &str,
        options: &[(&str, bool)],
    ) -> bool {
        let names: Vec<&str> = options.iter().map(|(n, _)| *n).collect();
        let set: Vec<&str> = options
            .iter()
            .filter(|(_, on)| *on)
            .map(|(n, _)| *n)
            .collect();
        if set.len() == 1 {
            return true;
        }
        let message = if set.is_empty() {
            format!("the {what} needs one of {}", names.join(", "))
        } else {
            format!(
                "the {what} sets {}; set exactly one of {}",
                set.join(" and "),
                names.join(", ")
            )
        };
        self.errors.push(src.err(at, path, message));
        false
    }

    fn target(&mut self, src: &Src, t: &P<docs::TargetDoc>) -> Option<TargetSpec> {
        let options = [
            ("exec", t.value.exec.is_some()),
            ("webhook", t.value.webhook.is_some()),
            ("none", t.value.none.is_some()),
        ];
        if !self.exactly_one(src, t, "spec.target", "target", &options) {
            return None;
        }
        if let Some(e) = &t.value.exec {
            let e = &e.value;
            if e.command.value.is_empty() || e.command.value[0].trim().is_empty() {
                self.errors.push(src.err(
                    &e.command,
                    "spec.target.exec.command",
                    "the command needs at least a program, e.g. [./deploy.sh]",
                ));
            }
            if let Some(r) = &e.ready_command
                && (r.value.is_empty() || r.value[0].trim().is_empty())
            {
                self.errors.push(src.err(
                    r,
                    "spec.target.exec.readyCommand",
                    "the ready command needs at least a program, e.g. [./ready.sh]",
                ));
            }
            Some(TargetSpec::Exec(ExecTargetSpec {
                command: e.command.value.clone(),
                ready_command: e.ready_command.as_ref().map(|r| r.value.clone()),
                timeout_ms: self.opt_duration(
                    src,
                    &e.timeout,
                    "spec.target.exec.timeout",
                    5 * 60_000,
                    true,
                ),
                env: e.env.clone(),
                // As written: the target joins it onto the rollout file's folder (once).
                working_dir: e.working_dir.as_ref().map(PathBuf::from),
            }))
        } else if let Some(w) = &t.value.webhook {
            let w = &w.value;
            self.url(src, &w.url, "spec.target.webhook.url");
            if let Some(r) = &w.ready_url {
                self.url(src, r, "spec.target.webhook.readyUrl");
            }
            Some(TargetSpec::Webhook(WebhookTargetSpec {
                url: w.url.value.clone(),
                ready_url: w.ready_url.as_ref().map(|r| r.value.clone()),
                timeout_ms: self.opt_duration(
                    src,
                    &w.timeout,
                    "spec.target.webhook.timeout",
                    10_000,
                    true,
                ),
                retries: self.bounded(
                    src,
                    w.retries.as_ref(),
                    "spec.target.webhook.retries",
                    3,
                    (0, MAX_RETRIES),
                ),
                retry_delay_ms: self.opt_duration(
                    src,
                    &w.retry_delay,
                    "spec.target.webhook.retryDelay",
                    1_000,
                    false,
                ),
                headers: w.headers.clone(),
            }))
        } else {
            Some(TargetSpec::None)
        }
    }

    fn strategy(&mut self, src: &Src, s: &P<docs::StrategyDoc>) -> Option<Strategy> {
        let options = [
            ("canary", s.value.canary.is_some()),
            ("rolling", s.value.rolling.is_some()),
            ("blueGreen", s.value.blue_green.is_some()),
        ];
        if !self.exactly_one(src, s, "spec.strategy", "strategy", &options) {
            return None;
        }
        if s.value.canary.is_some() {
            return Some(Strategy::Canary);
        }
        if s.value.blue_green.is_some() {
            return Some(Strategy::BlueGreen);
        }
        let r = s.value.rolling.as_ref()?;
        let before = self.errors.len();
        let instances = match (&r.value.instances, &r.value.replicas) {
            (Some(list), None) => {
                if list.value.is_empty() {
                    self.errors.push(src.err(
                        list,
                        "spec.strategy.rolling.instances",
                        "list at least one instance",
                    ));
                }
                let mut seen = BTreeSet::new();
                for (i, inst) in list.value.iter().enumerate() {
                    if inst.value.trim().is_empty() {
                        self.errors.push(src.err(
                            inst,
                            format!("spec.strategy.rolling.instances[{i}]"),
                            "an instance needs a name",
                        ));
                    } else if !seen.insert(inst.value.clone()) {
                        self.errors.push(src.err(
                            inst,
                            format!("spec.strategy.rolling.instances[{i}]"),
                            format!("instance {:?} is listed twice", inst.value),
                        ));
                    }
                }
                list.value.iter().map(|i| i.value.clone()).collect()
            }
            (None, Some(n)) => {
                if n.value == 0 {
                    self.errors.push(src.err(
                        n,
                        "spec.strategy.rolling.replicas",
                        "replicas must be at least 1",
                    ));
                    Vec::new()
                } else if n.value > MAX_REPLICAS {
                    self.errors.push(src.err(
                        n,
                        "spec.strategy.rolling.replicas",
                        format!("{} replicas are too many; use 1 to {MAX_REPLICAS}", n.value),
                    ));
                    Vec::new()
                } else {
                    (1..=n.value).map(|i| format!("instance-{i}")).collect()
                }
            }
            _ => {
                self.errors.push(src.err(
                    r,
                    "spec.strategy.rolling",
                    "set exactly one of instances (a list of names) or replicas (a number)",
                ));
                Vec::new()
            }
        };
        let parallelism = match &r.value.parallelism {
            None => 1,
            Some(p) if p.value == 0 => {
                self.errors.push(src.err(
                    p,
                    "spec.strategy.rolling.parallelism",
                    "parallelism must be at least 1",
                ));
                1
            }
            Some(p) => p.value,
        };
        let delay = self.opt_duration(
            src,
            &r.value.delay_between_batches,
            "spec.strategy.rolling.delayBetweenBatches",
            0,
            false,
        );
        (self.errors.len() == before).then_some(Strategy::Rolling {
            instances,
            parallelism,
            delay_between_batches_ms: delay,
        })
    }
}
