//! `rollgate schema [KIND] [--out DIR]`: the JSON Schema of every document kind, for
//! editors (yaml-language-server) and CI linters that check specs before rollgate sees them.

use super::{Out, exit};
use clap::Args;
use std::path::PathBuf;

/// Arguments of `rollgate schema`.
#[derive(Debug, Args)]
pub struct SchemaArgs {
    /// One kind (MetricBackend, Plugin, VerificationTemplate, Rollout); all when omitted.
    pub kind: Option<String>,
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
    let all = crate::spec::json_schemas();
    let chosen: Vec<(&str, &serde_json::Value)> = match &args.kind {
        None => all.iter().map(|(k, v)| (*k, v)).collect(),
        Some(kind) => match all.iter().find(|(k, _)| k.eq_ignore_ascii_case(kind)) {
            Some((k, v)) => vec![(*k, v)],
            None => {
                let kinds: Vec<&str> = all.keys().copied().collect();
                out.err(format!(
                    "rollgate schema: no document kind {kind:?}; the kinds are {}",
                    kinds.join(", ")
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
