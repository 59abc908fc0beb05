//! Documents applied through the API: the file they are written to ([`api_file_name`]),
//! the references they may use, writing them and reloading, and putting the folder back
//! when they are refused.

use super::{Fleet, Refused, fingerprint, refs};
use std::path::{Path, PathBuf};

/// The file name a `POST /api/v1/documents` body is written under in `<config>/api/`:
/// `<kind>-<metadata.name>.yaml` of its first document, every character outside
/// `[a-z0-9_-]` replaced by `-` (so a name can never leave that folder). Refuses a body that
/// is not YAML documents or whose first document lacks `kind` or `metadata.name`. Pure (no
/// file is touched): the fuzz target `api_documents` calls it.
pub fn api_file_name(text: &str) -> Result<String, Refused> {
    #[derive(serde::Deserialize)]
    struct Head {
        kind: Option<String>,
        metadata: Option<Meta>,
    }
    #[derive(serde::Deserialize)]
    struct Meta {
        name: Option<String>,
    }
    let heads: Vec<Head> = serde_saphyr::from_multiple(text)
        .map_err(|e| Refused(vec![format!("the request body is not YAML documents: {e}")]))?;
    let first = heads
        .first()
        .ok_or_else(|| Refused(vec!["the request body holds no document".into()]))?;
    let (Some(kind), Some(name)) = (
        first.kind.as_deref(),
        first.metadata.as_ref().and_then(|m| m.name.as_deref()),
    ) else {
        return Err(Refused(vec![
            "the first document needs `kind` and `metadata.name`".into(),
        ]));
    };
    let safe = |s: &str| {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c.to_ascii_lowercase()
                } else {
                    '-'
                }
            })
            .collect::<String>()
    };
    Ok(format!("{}-{}.yaml", safe(kind), safe(name)))
}

impl Fleet {
    /// Add or replace documents through the API: the text is written to
    /// `<config>/api/<kind>-<name>.yaml` (after its first document) and the configuration
    /// reloaded; when that is refused, the file is put back as it was and the problems
    /// returned. Returns the file written.
    pub async fn apply(&self, text: &str) -> Result<PathBuf, Refused> {
        let name = api_file_name(text)?;
        let root = &self.inner.config.config;
        if !root.is_dir() {
            return Err(Refused(vec![format!(
                "documents can only be applied to a configuration folder; {} is a file",
                root.display()
            )]));
        }
        let dir = root.join("api");
        let file = dir.join(name);
        let _changing = self.inner.changing.lock().await;
        // Before anything is written, read or resolved: a reference to the server's files,
        // environment or programs must be one the folder's own documents use, or allowed.
        // Nothing is looked up, so the answer is the same whether it exists or not.
        let found = refs::in_text(text, &file).map_err(|e| Refused(vec![e]))?;
        if !found.is_empty() {
            let mut allowed = self.inner.config.api_allow.clone();
            if let Some(current) = self.current() {
                allowed.extend(refs::in_bundle(&current.bundle, &dir));
            }
            let problems = refs::refused(&found, &allowed, &crate::spec::shown_path(&file));
            if !problems.is_empty() {
                tracing::warn!(
                    file = %file.display(),
                    refused = problems.len(),
                    "documents refused: server-side references not allowed through the API"
                );
                return Err(Refused(problems));
            }
        }
        let before = crate::files::read_text(&file, &crate::files::SPEC_FILE).ok();
        std::fs::create_dir_all(&dir)
            .and_then(|()| std::fs::write(&file, text))
            .map_err(|e| Refused(vec![format!("cannot write {}: {e}", file.display())]))?;
        let result = match self.reload_caught().await {
            // Applied documents that do not load are refused, not installed as
            // `invalid-spec`: the caller is there to be told.
            Ok(()) => match self.problems_of(&file, text) {
                problems if problems.is_empty() => Ok(()),
                problems => Err(Refused(problems)),
            },
            Err(refused) => Err(refused),
        };
        match result {
            Ok(()) => Ok(file),
            Err(refused) => {
                let restored = match &before {
                    Some(old) => std::fs::write(&file, old),
                    None => std::fs::remove_file(&file),
                };
                if let Err(e) = restored {
                    tracing::error!(
                        "cannot restore {} after a refused apply: {e}",
                        file.display()
                    );
                }
                // The folder is as it was: load it again (a refused reload already kept
                // the running configuration).
                if self
                    .current()
                    .is_some_and(|l| l.fingerprint != fingerprint(root))
                {
                    let _ = self.reload_caught().await;
                }
                self.mark_seen();
                Err(refused)
            }
        }
    }

    /// The problems of the running configuration that concern documents applied as `text`
    /// in `file`: those written in the file, and those of the rollouts it declares.
    fn problems_of(&self, file: &Path, text: &str) -> Vec<String> {
        let Some(loaded) = self.current() else {
            return Vec::new();
        };
        let shown = format!("{}:", crate::spec::shown_path(file).display());
        #[derive(serde::Deserialize)]
        struct Head {
            kind: Option<String>,
            metadata: Option<Meta>,
        }
        #[derive(serde::Deserialize)]
        struct Meta {
            name: Option<String>,
        }
        let declared: Vec<String> = serde_saphyr::from_multiple::<Head>(text)
            .unwrap_or_default()
            .into_iter()
            .filter(|h| h.kind.as_deref() == Some("Rollout"))
            .filter_map(|h| h.metadata?.name)
            .collect();
        let mut out: Vec<String> = Vec::new();
        for (name, problems) in &loaded.invalid {
            for p in problems {
                if (declared.contains(name) || p.starts_with(&shown)) && !out.contains(p) {
                    out.push(p.clone());
                }
            }
        }
        for p in &loaded.problems {
            if p.starts_with(&shown) && !out.contains(p) {
                out.push(p.clone());
            }
        }
        out
    }
}
