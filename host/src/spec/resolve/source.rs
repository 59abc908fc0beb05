//! Where a document sits in its file, and how a problem points into it: [`Src`] turns a
//! value's position within its document into the file's line and column. Also splitting a
//! file into documents, and serde-saphyr's errors reworded for operators.

use super::super::SpecError;
use super::super::docs::{self, P};
use super::super::model::SourcePos;
use crate::files::MAX_DOCUMENTS_PER_FILE;
use std::path::PathBuf;

/// Where a document sits: its file, the file's folder and the document's first line.
#[derive(Debug, Clone)]
pub(super) struct Src {
    pub(super) file: PathBuf,
    pub(super) base: PathBuf,
    /// Lines of the file before the document's text.
    pub(super) offset: usize,
    /// The line of the document's first content (for problems of the whole document).
    pub(super) first: usize,
}

impl Src {
    pub(super) fn pos<T>(&self, p: &P<T>) -> (usize, usize) {
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
    pub(super) fn at<T>(&self, p: &P<T>, path: &str) -> SourcePos {
        let (line, col) = self.pos(p);
        SourcePos {
            file: self.file.clone(),
            line,
            col,
            path: path.to_string(),
        }
    }

    pub(super) fn err<T>(
        &self,
        p: &P<T>,
        path: impl Into<String>,
        message: impl Into<String>,
    ) -> SpecError {
        let (line, col) = self.pos(p);
        self.err_at(line, col, path, message)
    }

    pub(super) fn err_doc(&self, path: impl Into<String>, message: impl Into<String>) -> SpecError {
        self.err_at(self.first, 1, path, message)
    }

    pub(super) fn err_at(
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

    pub(super) fn here<T>(&self, p: &P<T>) -> String {
        let (line, col) = self.pos(p);
        format!("{}:{line}:{col}", self.file.display())
    }

    /// A YAML or shape error from serde-saphyr, moved to the document's place in the file,
    /// with the field path of where it points (`text` is the document's text).
    pub(super) fn serde_err(&self, e: &serde_saphyr::Error, text: &str) -> SpecError {
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

/// Split a YAML stream into its documents: `(lines before it, text)`. A document starts at a
/// `---` line (kept in its text, so the parser sees the marker and positions stay right).
/// More than [`MAX_DOCUMENTS_PER_FILE`] documents (empty ones included) is an error: the
/// 0-based line where the first document too many starts.
pub(in crate::spec) fn split_documents(text: &str) -> Result<Vec<(usize, String)>, usize> {
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
pub(in crate::spec) fn first_content_line(text: &str) -> Option<usize> {
    text.lines().position(|line| {
        let t = line.trim();
        let t = t.strip_prefix("---").map(str::trim).unwrap_or(t);
        !(t.is_empty() || t.starts_with('#') || t.starts_with('%') || t == "...")
    })
}

/// `text` with every YAML line break (`\r\n`, a lone `\r`, `\n`) written as `\n`: the YAML
/// parser counts a lone `\r` as a line break, so the documents are split and positions
/// counted the same way (a file with lone CRs got line numbers past its end; found by the
/// fuzzer). Columns do not change: a break ends its line.
pub(in crate::spec) fn yaml_line_breaks(text: &str) -> std::borrow::Cow<'_, str> {
    if text.contains('\r') {
        std::borrow::Cow::Owned(text.replace("\r\n", "\n").replace('\r', "\n"))
    } else {
        std::borrow::Cow::Borrowed(text)
    }
}
