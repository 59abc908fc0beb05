//! `rollgate lint PATH…`: everything `rollgate run` checks before it touches anything, and
//! nothing more — documents, references, args, backends, plugins and every plugin's own
//! check of its configuration — reported all at once, each with where and what to do.

use super::{Format, Out, exit};
use crate::engine::setup;
use crate::plugin::Contract;
use clap::Args;
use serde::Serialize;
use std::path::PathBuf;

/// Arguments of `rollgate lint`.
#[derive(Debug, Args)]
pub struct LintArgs {
    /// Spec files and folders (every *.yaml / *.yml below a folder).
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Human)]
    pub format: Format,
    /// Where compiled plugins are cached (default: the user cache folder).
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
    /// Refuse every oci:// plugin that is not signed (cosign, key-based) by the key its
    /// Plugin document names in verify.cosign.publicKey.
    #[arg(long)]
    pub require_signed_plugins: bool,
}

/// One problem, as tools read it.
#[derive(Debug, Serialize, PartialEq)]
pub struct Finding {
    /// The file, when known.
    pub file: Option<String>,
    /// 1-based line (0: the whole file or unknown).
    pub line: usize,
    /// 1-based column (0: unknown).
    pub col: usize,
    /// The field path (`spec.phases[1].weight`), when known.
    pub path: String,
    /// What is wrong and what to do.
    pub message: String,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(file) = &self.file {
            write!(f, "{file}:{}:{}: ", self.line, self.col)?;
        }
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)
    }
}

/// A problem of the engine's setup as a finding, its file shown as the operator named it.
fn finding(p: setup::Problem) -> Finding {
    match p.at {
        Some(at) => Finding {
            file: Some(crate::spec::shown_path(&at.file).display().to_string()),
            line: at.line,
            col: at.col,
            path: at.path,
            message: p.message,
        },
        None => Finding {
            file: None,
            line: 0,
            col: 0,
            path: String::new(),
            message: p.message,
        },
    }
}

/// Exit 0 when clean, 1 with problems (all printed), 3 when the plugin host cannot start.
pub async fn run(args: LintArgs) -> u8 {
    let mut out = Out::default();
    let code = inner(&args, &mut out).await;
    out.flush();
    code
}

async fn inner(args: &LintArgs, out: &mut Out) -> u8 {
    let (findings, total, summary) = match lint(args).await {
        Ok(r) => r,
        Err(e) => {
            out.err(format!("rollgate lint: {e}"));
            return exit::PLUGIN_ERROR;
        }
    };
    let verdicts = match per_rollout(args).await {
        Ok(v) => v,
        Err(e) => {
            out.err(format!("rollgate lint: {e}"));
            return exit::PLUGIN_ERROR;
        }
    };
    match args.format {
        Format::Json => out.line(
            serde_json::json!({
                "ok": findings.is_empty(), "problems": findings, "checked": summary,
                "rollouts": verdicts,
            })
            .to_string(),
        ),
        Format::Human => {
            for f in &findings {
                out.line(f.to_string());
            }
            if findings.is_empty() {
                out.line(format!("ok: {summary}"));
            } else {
                // What `rollgate run` and `serve` make of it: which rollouts run.
                for v in &verdicts {
                    out.err(match v.state {
                        "invalid-spec" => format!(
                            "rollout {:?}: invalid-spec ({} problem(s)); it does not run until they are fixed",
                            v.name,
                            v.problems.len()
                        ),
                        _ => format!("rollout {:?}: loads; it runs", v.name),
                    });
                }
                out.err(format!("{total} problem(s)"));
            }
        }
    }
    if findings.is_empty() {
        exit::OK
    } else {
        exit::PROBLEMS
    }
}

/// One rollout as `rollgate run` and `serve` would take it.
#[derive(Debug, Serialize)]
pub struct Verdict {
    /// The rollout.
    pub name: String,
    /// `ok` or `invalid-spec`.
    pub state: &'static str,
    /// Its problems (its own and those of what it uses), as `file:line:col: field: what
    /// to do`.
    pub problems: Vec<String>,
}

/// Every rollout of the files with its verdict, rollout by rollout (see
/// [`crate::spec::load_each`] and [`crate::engine::prepare`]).
async fn per_rollout(args: &LintArgs) -> Result<Vec<Verdict>, String> {
    let each = crate::spec::load_each(&args.paths);
    let host =
        super::plugin_host::host_with(args.cache_dir.as_deref(), args.require_signed_plugins)
            .map_err(|e| e.to_string())?;
    let rollouts: Vec<_> = each.bundle.rollouts.iter().map(|r| &**r).collect();
    let prepared =
        crate::engine::prepare::prepare(&host, &each.bundle, &rollouts, &[], false, None).await;
    let mut out: Vec<Verdict> = each
        .invalid
        .iter()
        .map(|(name, problems)| Verdict {
            name: name.clone(),
            state: "invalid-spec",
            problems: problems.iter().map(ToString::to_string).collect(),
        })
        .collect();
    for r in &rollouts {
        out.push(match prepared.invalid.get(&r.name) {
            Some(problems) => Verdict {
                name: r.name.clone(),
                state: "invalid-spec",
                problems: problems.iter().map(ToString::to_string).collect(),
            },
            None => Verdict {
                name: r.name.clone(),
                state: "ok",
                problems: Vec::new(),
            },
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// The problems of the files (the first ones, when there are very many), how many there
/// are in all, and what was checked (for the all-clear line).
async fn lint(args: &LintArgs) -> Result<(Vec<Finding>, usize, String), String> {
    let bundle = match crate::spec::load(&args.paths) {
        Ok(b) => b,
        Err(errors) => {
            let total = crate::spec::problem_count(&errors);
            // References are checked by the loader too; plugins need a loaded bundle.
            let findings = errors
                .into_iter()
                .map(|e| match e.not_shown() {
                    // "… and N more": not about one file.
                    Some(_) => Finding {
                        file: None,
                        line: 0,
                        col: 0,
                        path: String::new(),
                        message: e.message,
                    },
                    None => Finding {
                        file: Some(e.file.display().to_string()),
                        line: e.line,
                        col: e.col,
                        path: e.path,
                        message: e.message,
                    },
                })
                .collect();
            return Ok((findings, total, String::new()));
        }
    };
    let mut findings = Vec::new();
    if let Err(problems) = setup::backends(&bundle, None) {
        findings.extend(problems.into_iter().map(finding));
    }
    let host =
        super::plugin_host::host_with(args.cache_dir.as_deref(), args.require_signed_plugins)
            .map_err(|e| e.to_string())?;
    let rollouts: Vec<_> = bundle.rollouts.iter().map(|r| &**r).collect();
    // Plugins built against the previous contract minor still work; say so, so that their
    // authors hear about the current one.
    let mut previous_contract = Vec::new();
    match setup::plugins(&host, &bundle, &rollouts, false).await {
        Ok(loaded) => {
            for name in bundle.plugins.keys() {
                if let Some(plugin) = loaded.get(name)
                    && plugin.contract() != Contract::CURRENT
                {
                    previous_contract.push(format!(
                        "; plugin {name:?} is built against {} (the previous contract, still supported; rebuild it with the current SDK, {})",
                        plugin.contract(),
                        Contract::CURRENT
                    ));
                }
            }
        }
        Err(problems) => findings.extend(problems.into_iter().map(finding)),
    }
    let summary = format!(
        "{} rollout(s), {} template(s), {} backend(s), {} plugin(s){}",
        bundle.rollouts.len(),
        bundle.templates.len(),
        bundle.backends.len(),
        bundle.plugins.len(),
        previous_contract.concat()
    );
    let total = findings.len();
    Ok((findings, total, summary))
}
