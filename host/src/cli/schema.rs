//! `rollgate schema [KIND] [--api] [--out DIR]`: the JSON Schema of every document kind, for
//! editors (yaml-language-server) and CI linters that check specs before rollgate sees them;
//! with `--api` (or a shape's name as KIND), the schemas of the API v2 documents that
//! `rollgate get`/`history --format json` print and `/api/v2` answers, for tools that read
//! them.

use super::{Out, exit};
use clap::Args;
use std::path::PathBuf;

/// Arguments of `rollgate schema`.
#[derive(Debug, Args)]
pub struct SchemaArgs {
    /// One kind (MetricBackend, Plugin, VerificationTemplate, Rollout), or one API v2 shape
    /// (RolloutStatus, RolloutHistory, RolloutList, RolloutEvent, RolloutSeries); all when
    /// omitted.
    pub kind: Option<String>,
    /// The API v2 shapes instead of the document kinds (when no KIND is named).
    #[arg(long)]
    pub api: bool,
    /// Write `<Kind>.schema.json` files into this folder instead of printing.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// Print or write the schemas. Exit 0, or 4 for an unknown kind or an unwritable folder.
pub fn run(args: SchemaArgs) -> u8 {
    let mut out = Out::default();
    let code = inner(&args, &mut out);
    out.flush();
    code
}

fn inner(args: &SchemaArgs, out: &mut Out) -> u8 {
    let documents = crate::spec::json_schemas();
    let api = crate::server::v2::json_schemas();
    let chosen: Vec<(&str, &serde_json::Value)> = match &args.kind {
        None if args.api => api.iter().map(|(k, v)| (*k, v)).collect(),
        None => documents.iter().map(|(k, v)| (*k, v)).collect(),
        Some(kind) => match documents
            .iter()
            .chain(&api)
            .find(|(k, _)| k.eq_ignore_ascii_case(kind))
        {
            Some((k, v)) => vec![(*k, v)],
            None => {
                let names = |m: &std::collections::BTreeMap<&str, _>| {
                    m.keys().copied().collect::<Vec<&str>>().join(", ")
                };
                out.err(format!(
                    "rollgate schema: no document kind {kind:?}; the kinds are {}, and the API v2 shapes (--api) are {}",
                    names(&documents),
                    names(&api)
                ));
                return exit::INVALID_INPUT;
            }
        },
    };
    match &args.out {
        Some(dir) => {
            if let Err(e) = std::fs::create_dir_all(dir) {
                out.err(format!(
                    "rollgate schema: cannot create {}: {e}",
                    dir.display()
                ));
                return exit::INVALID_INPUT;
            }
            for (kind, schema) in chosen {
                let path = dir.join(format!("{kind}.schema.json"));
                let text = serde_json::to_string_pretty(schema).unwrap_or_default();
                if let Err(e) = std::fs::write(&path, text + "\n") {
                    out.err(format!(
                        "rollgate schema: cannot write {}: {e}",
                        path.display()
                    ));
                    return exit::INVALID_INPUT;
                }
                out.line(path.display().to_string());
            }
        }
        None if args.kind.is_some() => {
            out.line(serde_json::to_string_pretty(chosen[0].1).unwrap_or_default());
        }
        None => {
            let map: serde_json::Map<String, serde_json::Value> = chosen
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect();
            out.line(serde_json::to_string_pretty(&map).unwrap_or_default());
        }
    }
    exit::OK
}
