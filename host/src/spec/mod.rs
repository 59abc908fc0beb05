//! Spec documents: from YAML files to the validated, resolved [`model`] the engine runs.
//!
//! Operators write Kubernetes-style documents (`MetricBackend`, `Plugin`,
//! `VerificationTemplate`, `Rollout`), several per file, spread over files and folders.
//! [`load`] reads them all, checks every value and every reference, expands templates with
//! their args, and either returns a [`Bundle`] or *every* problem found, each pointing at the
//! file, line and column of the offending value with a message that says what to do.
//!
//! Deliberately not done here: anything with side effects. Plugin files are not read (their
//! digests are checked when the plugin host loads them) and backends are not connected; the
//! engine does both when it sets a rollout up.
//!
//! How positions survive: a file is split into its documents (remembering each one's first
//! line), each document is read once as a probe (`kind`, `apiVersion`, `metadata.name`) and
//! once as the struct of its kind, whose values carry their positions ([`docs::P`]), so
//! problems found after parsing still point into the file.
//!
//! Files: `mod.rs` the entry points ([`load`], [`load_each`], paths as shown); `docs.rs`
//! the documents as written (the JSON Schemas derive from them); `model.rs` the resolved
//! model; `resolve/` the loader, one file per kind or concern (its `mod.rs` maps them);
//! `each.rs` which problems belong to which rollout (loading rollout by rollout);
//! `identity.rs` whether a finished run ran the spec the files hold now; `tests.rs` and
//! `load_tests.rs` the loader against good, broken and hostile documents and folders.

pub mod docs;
mod each;
mod identity;
#[cfg(test)]
mod load_tests;
pub mod model;
mod resolve;
#[cfg(test)]
mod tests;

pub use each::Each;
pub use identity::{root_of, same_spec};
pub use model::*;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// The API version of rollgate's documents.
pub const API_VERSION: &str = "rollgate.dev/v1alpha1";

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

/// One problem in the spec documents, where it is and what to do about it. Collected, not
/// thrown: a load reports every problem at once so an operator fixes them in one pass.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct SpecError {
    /// The file (empty only for the "… and N more" of a capped list: see
    /// [`SpecError::not_shown`]).
    pub file: PathBuf,
    /// 1-based line of the offending value (0 when the file could not be read).
    pub line: usize,
    /// 1-based column.
    pub col: usize,
    /// The field, like `spec.phases[1].verification.templates[0]` (empty: the whole
    /// document or a YAML/shape error).
    pub path: String,
    /// What is wrong, and what was expected or what to do.
    pub message: String,
}

impl SpecError {
    /// For the last problem of a capped list: how many problems are not shown. Such a
    /// problem has no file and keeps the count in `line`.
    pub fn not_shown(&self) -> Option<usize> {
        self.file.as_os_str().is_empty().then_some(self.line)
    }
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.not_shown().is_some() {
            return f.write_str(&self.message);
        }
        write!(f, "{}:{}:{}: ", self.file.display(), self.line, self.col)?;
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)
    }
}

/// Load spec documents from files and folders (a folder: every `*.yaml` / `*.yml` below it,
/// recursively, in sorted order, by the rules of [`crate::files`]: dot-entries skipped,
/// symlinked folders not followed, symlinked files read, regular files only, size caps).
/// Relative paths inside a document resolve against its file's folder. Every problem is
/// reported, up to [`crate::files::MAX_PROBLEMS_SHOWN`] one by one and then how many more.
///
/// Paths are made absolute here, once, against the current directory: every `file` in the
/// bundle (and so every folder relative paths resolve against) is absolute, and means the
/// same whatever directory a command is later run in. Errors show them relative to the
/// current directory again when they are below it.
pub fn load(paths: &[PathBuf]) -> Result<Bundle, Vec<SpecError>> {
    let (sources, mut errors) = read_sources(paths);
    let result = resolve::load_sources(&sources);
    match result {
        Ok(bundle) if errors.is_empty() => Ok(bundle),
        Ok(_) => Err(cap_problems(shorten(errors))),
        Err(more) => {
            errors.extend(more);
            Err(cap_problems(shorten(errors)))
        }
    }
}

/// Load spec documents rollout by rollout ([`each`]): what loads is kept, and every
/// problem is given to the rollouts it concerns. Never fails as a whole: a broken file
/// costs only the rollouts it holds or that use what it declares.
pub fn load_each(paths: &[PathBuf]) -> Each {
    let (sources, errors) = read_sources(paths);
    let (bundle, problems) = resolve::load_sources_partial(&sources);
    let mut each = each::attribute(&sources, bundle, problems);
    each.other.splice(0..0, errors);
    each.shorten();
    each
}

/// Read the spec files of `paths` (made absolute), with a problem for each that cannot be
/// read.
fn read_sources(paths: &[PathBuf]) -> (Vec<(PathBuf, String)>, Vec<SpecError>) {
    use crate::files::{MAX_SPEC_TOTAL_BYTES, SPEC_FILE};
    let mut sources = Vec::new();
    let mut errors = Vec::new();
    let mut total: u64 = 0;
    'paths: for path in paths {
        let path = &match std::path::absolute(path) {
            Ok(path) => path,
            Err(e) => {
                errors.push(unreadable(path, &crate::files::ReadError::Io(e)));
                continue;
            }
        };
        let files = if path.is_dir() {
            let walk = crate::files::spec_files(path);
            if walk.files.is_empty() && walk.problems.is_empty() {
                errors.push(SpecError {
                    file: path.clone(),
                    line: 0,
                    col: 0,
                    path: String::new(),
                    message: "the folder holds no *.yaml or *.yml files".into(),
                });
            }
            errors.extend(walk.problems.into_iter().map(|(file, message)| SpecError {
                file,
                line: 0,
                col: 0,
                path: String::new(),
                message,
            }));
            walk.files
        } else {
            vec![path.clone()]
        };
        for file in files {
            match crate::files::read_text(&file, &SPEC_FILE) {
                Ok(text) => {
                    total = total.saturating_add(u64::try_from(text.len()).unwrap_or(u64::MAX));
                    if total > MAX_SPEC_TOTAL_BYTES {
                        errors.push(SpecError {
                            file,
                            line: 0,
                            col: 0,
                            path: String::new(),
                            message: format!(
                                "the spec files add up to more than {} MiB, the most rollgate \
                                 loads at once; this file and the rest are not read",
                                MAX_SPEC_TOTAL_BYTES / (1024 * 1024)
                            ),
                        });
                        break 'paths;
                    }
                    sources.push((file, text));
                }
                Err(e) => errors.push(unreadable(&file, &e)),
            }
        }
    }
    (sources, errors)
}

/// Errors name files as an operator would type them: relative to the current directory
/// when they are below it (the bundle itself keeps absolute paths).
fn shorten(mut errors: Vec<SpecError>) -> Vec<SpecError> {
    for e in &mut errors {
        e.file = shown_path(&e.file);
    }
    errors
}

/// The first [`crate::files::MAX_PROBLEMS_SHOWN`] problems, then one saying how many more
/// there are (see [`SpecError::not_shown`]).
fn cap_problems(mut errors: Vec<SpecError>) -> Vec<SpecError> {
    let shown = crate::files::MAX_PROBLEMS_SHOWN;
    if errors.len() > shown {
        let more = errors.len() - shown;
        errors.truncate(shown);
        errors.push(SpecError {
            file: PathBuf::new(),
            line: more,
            col: 0,
            path: String::new(),
            message: format!("… and {more} more problem(s) not shown; fix the ones above first"),
        });
    }
    errors
}

/// How many problems a load found, counting those not shown.
pub fn problem_count(errors: &[SpecError]) -> usize {
    errors
        .iter()
        .map(|e| e.not_shown().unwrap_or(1))
        .fold(0, usize::saturating_add)
}

/// A spec file's path as messages show it: relative to the current directory when it is
/// below it, else as it is.
pub fn shown_path(file: &Path) -> PathBuf {
    std::env::current_dir()
        .ok()
        .and_then(|cwd| file.strip_prefix(cwd).ok().map(Path::to_path_buf))
        .unwrap_or_else(|| file.to_path_buf())
}

/// Load the documents of one file's text; `file` names it in errors and relative paths
/// resolve against its folder.
pub fn load_str(text: &str, file: &Path) -> Result<Bundle, Vec<SpecError>> {
    resolve::load_sources(&[(file.to_path_buf(), text.to_string())]).map_err(cap_problems)
}

/// [`load_each`] over one file's text (`file` names it in problems, which are not
/// shortened): what the fuzz target `spec_load` checks against [`load_str`].
pub fn load_each_str(text: &str, file: &Path) -> Each {
    let sources = [(file.to_path_buf(), text.to_string())];
    let (bundle, problems) = resolve::load_sources_partial(&sources);
    each::attribute(&sources, bundle, problems)
}

/// Parse a duration as operators write it (`250ms`, `30s`, `5m`, `1h30m`) into milliseconds.
pub fn parse_duration(text: &str) -> Result<Millis, String> {
    rollgate_duration::parse_ms(text)
}

/// The JSON Schema (draft 2020-12) of each document kind, for editors and CI linting.
pub fn json_schemas() -> BTreeMap<&'static str, serde_json::Value> {
    use docs::*;
    let mut out = BTreeMap::new();
    out.insert(
        "MetricBackend",
        finish(
            "MetricBackend",
            schemars::schema_for!(Doc<crate::metrics::config::BackendSpec>),
            "Declares a metric backend (Prometheus, replay, Datadog) that metrics query.",
        ),
    );
    out.insert(
        "Plugin",
        finish(
            "Plugin",
            schemars::schema_for!(Doc<PluginDoc>),
            "Names and pins a WebAssembly verification or policy plugin.",
        ),
    );
    out.insert(
        "VerificationTemplate",
        finish(
            "VerificationTemplate",
            schemars::schema_for!(Doc<TemplateDoc>),
            "Metrics reused across rollouts, parameterised by args.",
        ),
    );
    out.insert(
        "Rollout",
        finish(
            "Rollout",
            schemars::schema_for!(Doc<RolloutDoc>),
            "Rolls a new version out in verified phases.",
        ),
    );
    out
}

/// Name a generated schema after its kind and pin `apiVersion` and `kind` to constants.
fn finish(kind: &str, schema: schemars::Schema, description: &str) -> serde_json::Value {
    let mut value = schema.to_value();
    if let Some(object) = value.as_object_mut() {
        object.insert("title".into(), kind.into());
        object.insert("description".into(), description.into());
        if let Some(props) = object
            .get_mut("properties")
            .and_then(serde_json::Value::as_object_mut)
        {
            props.insert(
                "apiVersion".into(),
                serde_json::json!({"const": API_VERSION}),
            );
            props.insert("kind".into(), serde_json::json!({"const": kind}));
        }
    }
    value
}

/// A file that was not read: at the first invalid byte when it is not UTF-8, else the
/// whole file (`:0:0`).
fn unreadable(path: &Path, e: &crate::files::ReadError) -> SpecError {
    let (line, col) = e.position().unwrap_or((0, 0));
    SpecError {
        file: path.to_path_buf(),
        line,
        col,
        path: String::new(),
        message: e.to_string(),
    }
}
