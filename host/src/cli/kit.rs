//! The plugin author kit: `rollgate plugin new` scaffolds a plugin crate, `rollgate plugin
//! test` runs a built plugin against recorded data, so an author needs no live backend.
//!
//! `plugin new NAME --kind provider|policy [--dir PARENT] [--sdk PATH]`: writes `NAME/`, a
//! crate that builds with `cargo build --target wasm32-wasip2 --release` and whose
//! `cargo test` passes. The SDK is not on crates.io, so by default the scaffold carries its
//! own copy (`vendor/rollgate-plugin`, `vendor/rollgate-duration`, `wit/plugin.wit`), taken
//! from this very binary: the crate is self-contained, builds offline from the registry
//! cache, and matches the contract of the rollgate that made it. `--sdk PATH` depends on an
//! SDK checkout instead (for authors working inside the rollgate repository).
//! Exit 0 written, 4 a bad name or an existing non-empty folder, 3 a write failed.
//!
//! `plugin test PLUGIN --config JSON --fixture FILE`:
//! - a verification provider measures over a recording (OpenMetrics text with timestamps,
//!   or a `rollgate metrics record` JSON) served under every backend name the config
//!   mentions (`"backend": …`) and each `--bind NAME`; at the recording's last sample
//!   (`--at T`), or at every `--every DURATION` from its start to its end. Exit 0 pass,
//!   1 fail, 2 inconclusive or no data (the worst of the measurements), 3 the plugin
//!   failed, 4 invalid input.
//! - a failure policy decides on a policy input (JSON, the WIT `policy-input` in camelCase;
//!   see `plugins/README.md`). Exit 0 continue or promote, 1 rollback or abort, 2 pause,
//!   3 the plugin failed, 4 invalid input (a bad fixture as `file:line:col`, or a provider's
//!   `--at`, `--every` or `--bind`, which a policy would ignore).

use super::{Format, Out, exit};
use crate::metrics::replay::Replay;
use crate::metrics::{Backends, MetricsSource};
use crate::plugin::types::Decision;
use crate::plugin::{LoadOptions, MetricsBinding, Plugin, PluginKind, PluginSource};
use clap::{Args, ValueEnum};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Which kind of plugin to scaffold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Kind {
    /// A verification provider: measures a metric and returns a verdict.
    Provider,
    /// A failure policy: turns the metrics' state into a decision.
    Policy,
}

/// Arguments of `rollgate plugin new`.
#[derive(Debug, Args)]
pub struct NewArgs {
    /// The crate's name (lowercase letters, digits, `-` and `_`; starts with a letter).
    pub name: String,
    /// What the plugin is.
    #[arg(long, value_enum)]
    pub kind: Kind,
    /// Where to create the crate's folder (default: here).
    #[arg(long, default_value = ".")]
    pub dir: PathBuf,
    /// Depend on this SDK folder (a rollgate checkout's plugins/sdk) instead of a copy.
    #[arg(long, value_name = "PATH")]
    pub sdk: Option<PathBuf>,
}

/// Arguments of `rollgate plugin test`.
#[derive(Debug, Args)]
pub struct TestArgs {
    /// A component file, or the name of a built-in plugin.
    pub plugin: String,
    /// The plugin's configuration, as JSON text.
    #[arg(long)]
    pub config: String,
    /// Providers: a recording (OpenMetrics or JSON); policies: a policy input (JSON).
    #[arg(long, value_name = "FILE")]
    pub fixture: PathBuf,
    /// Providers: also serve the recording under this backend name (repeatable).
    #[arg(long = "bind", value_name = "BACKEND")]
    pub bind: Vec<String>,
    /// Providers: measure at this time (default: the recording's last sample; `start+5m`,
    /// `end-1m` and absolute times work).
    #[arg(long, value_name = "T", conflicts_with = "every")]
    pub at: Option<String>,
    /// Providers: measure at every DURATION from the recording's start to its end.
    #[arg(long, value_name = "DURATION")]
    pub every: Option<String>,
    /// Sandbox limits for this run.
    #[command(flatten)]
    pub limits: super::plugin_host::LimitArgs,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
}

const SDK_FILES: &[(&str, &str)] = &[
    (
        "vendor/rollgate-plugin/src/lib.rs",
        include_str!("../../../plugins/sdk/src/lib.rs"),
    ),
    (
        "vendor/rollgate-plugin/src/config.rs",
        include_str!("../../../plugins/sdk/src/config.rs"),
    ),
    (
        "vendor/rollgate-plugin/src/context.rs",
        include_str!("../../../plugins/sdk/src/context.rs"),
    ),
    (
        "vendor/rollgate-plugin/src/measurement.rs",
        include_str!("../../../plugins/sdk/src/measurement.rs"),
    ),
    (
        "vendor/rollgate-plugin/src/sides.rs",
        include_str!("../../../plugins/sdk/src/sides.rs"),
    ),
    (
        "vendor/rollgate-duration/src/lib.rs",
        include_str!("../../../plugins/duration/src/lib.rs"),
    ),
    ("wit/plugin.wit", include_str!("../../../wit/plugin.wit")),
];

/// The plugins workspace's manifest: the single source of the SDK's dependency versions.
const PLUGINS_MANIFEST: &str = include_str!("../../../plugins/Cargo.toml");

const PROVIDER: &str = include_str!("../../templates/plugin/provider.rs");
const POLICY: &str = include_str!("../../templates/plugin/policy.rs");
const MANIFEST: &str = include_str!("../../templates/plugin/Cargo.toml.in");

const PROVIDER_FIXTURE: &str = "# TYPE error_ratio gauge
# HELP error_ratio errors / requests of the canary (what a backend would have returned)
error_ratio 0.01 1767225600
error_ratio 0.012 1767225660
error_ratio 0.011 1767225720
error_ratio 0.09 1767225780
# EOF
";

const POLICY_FIXTURE: &str = r#"{
  "rollout": "checkout",
  "phase": "canary-10",
  "phaseIndex": 0,
  "phaseCount": 3,
  "weight": 10,
  "phaseComplete": false,
  "metrics": [
    {
      "name": "errors",
      "status": "failed",
      "measurements": 3,
      "passes": 2,
      "failures": 1,
      "lastVerdict": "fail",
      "lastValue": 0.09,
      "message": "0.09 must be at most 0.05"
    }
  ]
}
"#;

/// `error-ratio` → `ErrorRatio`.
fn camel(name: &str) -> String {
    name.split(['-', '_'])
        .filter(|p| !p.is_empty())
        .map(|p| {
            let mut c = p.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect()
}

/// Why `name` cannot name a plugin crate, if it cannot.
fn bad_name(name: &str) -> Option<String> {
    let ok_chars = name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    let starts = name.chars().next().is_some_and(|c| c.is_ascii_lowercase());
    const RESERVED: &[&str] = &[
        "test",
        "std",
        "core",
        "alloc",
        "proc_macro",
        "self",
        "crate",
        "super",
    ];
    if name.is_empty() || name.len() > 64 || !ok_chars || !starts {
        Some(format!(
            "{name:?} is not a plugin crate name: use 1-64 lowercase letters, digits, '-' or '_', starting with a letter (e.g. error-ratio)"
        ))
    } else if RESERVED.contains(&name) || name.starts_with("rollgate") {
        Some(format!(
            "{name:?} is reserved (Rust or rollgate uses it); choose another name"
        ))
    } else {
        None
    }
}

/// The crates a scaffold carries in `vendor/` when no `--sdk` is given, each a folder named
/// after its package, with the manifest it is built with in the plugins workspace. Their
/// sources are in [`SDK_FILES`].
const VENDORED: &[(&str, &str)] = &[
    (
        "rollgate-plugin",
        include_str!("../../../plugins/sdk/Cargo.toml"),
    ),
    (
        "rollgate-duration",
        include_str!("../../../plugins/duration/Cargo.toml"),
    ),
];

/// The `key = value` lines of one `[section]` of a manifest, comments and blanks left out.
fn manifest_section<'a>(manifest: &'a str, wanted: &str) -> Vec<(&'a str, &'a str)> {
    let mut inside = false;
    let mut lines = Vec::new();
    for line in manifest.lines() {
        let t = line.trim();
        if let Some(header) = t.strip_prefix('[') {
            inside = header.trim_end_matches(']').trim() == wanted;
        } else if inside
            && !t.is_empty()
            && !t.starts_with('#')
            && let Some((key, value)) = t.split_once('=')
        {
            lines.push((key.trim(), value.trim()));
        }
    }
    lines
}

/// The manifest of a vendored crate: the package as the plugins workspace builds it, and
/// its `[dependencies]` with each `X.workspace = true` replaced by the workspace's line for
/// X (the versions the shipped plugins are built with, so the copy resolves from the same
/// registry cache) and each path dependency pointed at its sibling in `vendor/`.
///
/// Both manifests are compiled into this binary, so an error here is a rollgate bug that a
/// unit test catches: it says which line the copy cannot carry over.
fn vendored_manifest(name: &str, manifest: &str) -> Result<String, String> {
    let fix = "teach vendored_manifest in host/src/cli/kit.rs to copy it";
    for line in manifest.lines() {
        let t = line.trim();
        if let Some(header) = t.strip_prefix('[') {
            let header = header.trim_end_matches(']').trim();
            if header != "package" && header != "dependencies" {
                return Err(format!(
                    "the manifest of {name} has a [{header}] section the scaffold's copy lacks; {fix}"
                ));
            }
        }
    }
    let workspace = manifest_section(PLUGINS_MANIFEST, "workspace.package");
    let from_workspace = |key: &str| {
        workspace
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| *v)
            .ok_or_else(|| format!("plugins/Cargo.toml has no workspace.package {key}; {fix}"))
    };
    let workspace_deps = manifest_section(PLUGINS_MANIFEST, "workspace.dependencies");
    let vendored_path = |dep: &str| {
        if VENDORED.iter().any(|(n, _)| *n == dep) {
            Ok(format!("{dep} = {{ path = \"../{dep}\" }}"))
        } else {
            Err(format!(
                "{name} depends on {dep} by path, and {dep} is not vendored; {fix}"
            ))
        }
    };
    let mut out = format!(
        "# A copy of {name}, written by `rollgate plugin new` (rollgate {}).\n[package]\nname = \"{name}\"\nversion = {}\nedition = {}\nrust-version = {}\npublish = false\n\n[dependencies]\n",
        env!("CARGO_PKG_VERSION"),
        from_workspace("version")?,
        from_workspace("edition")?,
        from_workspace("rust-version")?,
    );
    for (key, value) in manifest_section(manifest, "dependencies") {
        let balanced = value.matches('{').count() == value.matches('}').count()
            && value.matches('[').count() == value.matches(']').count();
        if !balanced {
            return Err(format!(
                "{name}: dependency {key} spans several lines; write it on one or {fix}"
            ));
        }
        let line = if let Some(dep) = key.strip_suffix(".workspace") {
            let spec = workspace_deps
                .iter()
                .find(|(k, _)| *k == dep)
                .map(|(_, v)| *v)
                .ok_or_else(|| {
                    format!(
                        "{name}: {dep}.workspace, but plugins/Cargo.toml does not declare {dep}"
                    )
                })?;
            if spec.contains("path") {
                vendored_path(dep)?
            } else {
                format!("{dep} = {spec}")
            }
        } else if value.contains("workspace") {
            return Err(format!(
                "{name}: dependency {key} = {value} is not a form the copy understands; {fix}"
            ));
        } else if value.contains("path") {
            vendored_path(key)?
        } else {
            format!("{key} = {value}")
        };
        out.push_str(&line);
        out.push('\n');
    }
    Ok(out)
}

/// Every file of the scaffold, relative to its folder.
///
/// Fails only when this binary cannot vendor its own SDK (a rollgate bug the unit tests
/// catch); nothing is written then.
fn scaffold(name: &str, kind: Kind, sdk: Option<&Path>) -> Result<Vec<(String, String)>, String> {
    let crate_name = name.replace('-', "_");
    let description = match kind {
        Kind::Provider => {
            "A rollgate verification provider: passes while a metric stays at or below a maximum."
        }
        Kind::Policy => {
            "A rollgate failure policy: rolls back on a failed metric, pauses on an undecided one."
        }
    };
    let sdk_path = match sdk {
        Some(p) => p.display().to_string().replace('\\', "/"),
        None => "vendor/rollgate-plugin".to_string(),
    };
    let fill = |template: &str| {
        template
            .replace("{{name}}", name)
            .replace("{{crate}}", &crate_name)
            .replace("{{Struct}}", &camel(name))
            .replace("{{description}}", description)
            .replace("{{sdk}}", &sdk_path)
    };
    let (source, fixture) = match kind {
        Kind::Provider => (PROVIDER, ("fixtures/error_ratio.om", PROVIDER_FIXTURE)),
        Kind::Policy => (POLICY, ("fixtures/failed-metric.json", POLICY_FIXTURE)),
    };
    let mut files = vec![
        ("Cargo.toml".to_string(), fill(MANIFEST)),
        ("src/lib.rs".to_string(), fill(source)),
        (fixture.0.to_string(), fixture.1.to_string()),
        ("README.md".to_string(), fill(&readme(kind))),
        (".gitignore".to_string(), "/target\n".to_string()),
    ];
    if sdk.is_none() {
        for (name, manifest) in VENDORED {
            files.push((
                format!("vendor/{name}/Cargo.toml"),
                vendored_manifest(name, manifest)?,
            ));
        }
        for (path, text) in SDK_FILES {
            files.push(((*path).to_string(), (*text).to_string()));
        }
    }
    Ok(files)
}

fn readme(kind: Kind) -> String {
    let (what, config, fixture) = match kind {
        Kind::Provider => (
            "verification provider",
            r#"{"backend": "prom", "query": "error_ratio", "max": 0.05}"#,
            "fixtures/error_ratio.om",
        ),
        Kind::Policy => (
            "failure policy",
            r#"{"pause": "5m"}"#,
            "fixtures/failed-metric.json",
        ),
    };
    format!(
        "# {{{{name}}}}\n\nA rollgate {what}, a WebAssembly component (`wasm32-wasip2`).\n\n```sh\nrustup target add wasm32-wasip2      # once\ncargo test                            # the logic, natively\ncargo build --target wasm32-wasip2 --release\nrollgate plugin inspect target/wasm32-wasip2/release/{{{{crate}}}}.wasm\nrollgate plugin check target/wasm32-wasip2/release/{{{{crate}}}}.wasm --config '{config}'\nrollgate plugin test target/wasm32-wasip2/release/{{{{crate}}}}.wasm --config '{config}' --fixture {fixture}\n```\n\nThen declare it in a `Plugin` document (pin the sha256 `inspect` prints) and name it in\nyour rollouts. `vendor/` holds the rollgate plugin SDK this crate builds with, and `wit/`\nthe contract it speaks.\n"
    )
}

/// `rollgate plugin new`.
pub fn new(args: NewArgs) -> u8 {
    let mut out = Out::default();
    let code = new_inner(&args, &mut out);
    out.flush();
    code
}

fn new_inner(args: &NewArgs, out: &mut Out) -> u8 {
    if let Some(why) = bad_name(&args.name) {
        out.err(format!("rollgate plugin new: {why}"));
        return exit::INVALID_INPUT;
    }
    let root = args.dir.join(&args.name);
    if root.exists() {
        let empty = std::fs::read_dir(&root).map(|mut d| d.next().is_none());
        if !matches!(empty, Ok(true)) {
            out.err(format!(
                "rollgate plugin new: {} already exists and is not an empty folder; choose another name or --dir",
                root.display()
            ));
            return exit::INVALID_INPUT;
        }
    }
    let sdk = match &args.sdk {
        None => None,
        Some(p) => match std::fs::canonicalize(p) {
            Ok(abs) if abs.join("Cargo.toml").is_file() => Some(abs),
            _ => {
                out.err(format!(
                    "rollgate plugin new: --sdk {}: no SDK crate there (expected a folder with Cargo.toml, such as a rollgate checkout's plugins/sdk)",
                    p.display()
                ));
                return exit::INVALID_INPUT;
            }
        },
    };
    let files = match scaffold(&args.name, args.kind, sdk.as_deref()) {
        Ok(files) => files,
        Err(e) => {
            out.err(format!(
                "rollgate plugin new: this rollgate cannot copy its SDK ({e}); nothing was written. Use --sdk PATH with a rollgate checkout's plugins/sdk"
            ));
            return exit::PLUGIN_ERROR;
        }
    };
    for (path, text) in files {
        let file = root.join(&path);
        let written = file
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| std::fs::write(&file, text));
        if let Err(e) = written {
            out.err(format!(
                "rollgate plugin new: cannot write {}: {e}",
                file.display()
            ));
            return exit::PLUGIN_ERROR;
        }
    }
    let kind = match args.kind {
        Kind::Provider => "verification provider",
        Kind::Policy => "failure policy",
    };
    out.line(format!(
        "created {} ({kind}); next:\n  cd {}\n  cargo test\n  cargo build --target wasm32-wasip2 --release\n  rollgate plugin test target/wasm32-wasip2/release/{}.wasm … (see README.md)",
        root.display(),
        root.display(),
        args.name.replace('-', "_")
    ));
    exit::OK
}

/// Every string under a `backend` key of the configuration (the conventional field a
/// provider queries through).
fn backend_names(config: &serde_json::Value, names: &mut Vec<String>) {
    match config {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                if k == "backend"
                    && let Some(name) = v.as_str()
                    && !names.iter().any(|n| n == name)
                {
                    names.push(name.to_string());
                }
                backend_names(v, names);
            }
        }
        serde_json::Value::Array(items) => {
            for v in items {
                backend_names(v, names);
            }
        }
        _ => {}
    }
}

/// What went wrong before a result.
struct Failure(u8, String);

/// `rollgate plugin test`.
pub async fn test(args: TestArgs) -> u8 {
    let mut out = Out::default();
    let code = match test_inner(&args, &mut out).await {
        Ok(code) => code,
        Err(Failure(code, message)) => {
            match args.format {
                Format::Human => out.err(format!("rollgate plugin test: {message}")),
                Format::Json => out.line(json!({"ok": false, "error": message}).to_string()),
            }
            code
        }
    };
    out.flush();
    code
}

async fn test_inner(args: &TestArgs, out: &mut Out) -> Result<u8, Failure> {
    let config: serde_json::Value = serde_json::from_str(&args.config).map_err(|e| {
        Failure(
            exit::INVALID_INPUT,
            format!("--config is not JSON: {e} (write it as one JSON value)"),
        )
    })?;
    let limits = args
        .limits
        .limits()
        .map_err(|e| Failure(exit::INVALID_INPUT, e))?;
    let host =
        super::plugin_host::host().map_err(|e| Failure(exit::PLUGIN_ERROR, e.to_string()))?;
    let options = LoadOptions {
        limits,
        allowed_hosts: args.limits.allow_hosts.clone(),
        ..LoadOptions::default()
    };
    let plugin = host
        .load_async(PluginSource::parse(&args.plugin), options)
        .await
        .map_err(|e| Failure(exit::PLUGIN_ERROR, e.to_string()))?;
    let problems = plugin
        .validate(&args.config)
        .await
        .map_err(|e| Failure(exit::PLUGIN_ERROR, e.to_string()))?;
    if !problems.is_empty() {
        let listed: Vec<String> = problems
            .iter()
            .map(|p| {
                format!(
                    "{}: {}",
                    if p.path.is_empty() { "(root)" } else { &p.path },
                    p.message
                )
            })
            .collect();
        return Err(Failure(
            exit::INVALID_INPUT,
            format!(
                "--config is not valid for plugin {:?}: {}",
                plugin.name(),
                listed.join("; ")
            ),
        ));
    }
    match plugin.kind() {
        PluginKind::Provider => provider(args, &plugin, &config, out).await,
        PluginKind::Policy => {
            // A policy decides once on one input: a time or a backend would be ignored,
            // and an author who gives one expects it to matter.
            let given: Vec<&str> = [
                (args.at.is_some(), "--at"),
                (args.every.is_some(), "--every"),
                (!args.bind.is_empty(), "--bind"),
            ]
            .into_iter()
            .filter_map(|(set, flag)| set.then_some(flag))
            .collect();
            if !given.is_empty() {
                return Err(Failure(
                    exit::INVALID_INPUT,
                    format!(
                        "{} only apply to verification providers; {:?} is a failure policy, which decides once on the policy input in --fixture",
                        given.join(", "),
                        plugin.name()
                    ),
                ));
            }
            policy(args, &plugin, out).await
        }
    }
}

async fn provider(
    args: &TestArgs,
    plugin: &Plugin,
    config: &serde_json::Value,
    out: &mut Out,
) -> Result<u8, Failure> {
    let replay = Replay::open(&args.fixture).map_err(|e| {
        Failure(
            exit::INVALID_INPUT,
            format!("--fixture: {e} (a provider's fixture is a recording: OpenMetrics text with timestamps, or JSON from `rollgate metrics record`)"),
        )
    })?;
    let (first, last) = replay.span_ms();
    let mut names = args.bind.clone();
    backend_names(config, &mut names);
    if names.is_empty() {
        names.push("default".into());
    }
    let replay: Arc<dyn crate::metrics::Backend> = Arc::new(replay);
    let mut backends = Backends::new();
    for name in &names {
        backends.insert(name.clone(), replay.clone(), Default::default());
    }
    let source: Arc<dyn MetricsSource> = Arc::new(backends);
    let now = crate::engine::clock::now_ms();
    let times: Vec<i64> = match (&args.at, &args.every) {
        (_, Some(every)) => {
            let step = rollgate_duration::parse_ms(every)
                .ok()
                .filter(|ms| *ms > 0)
                .ok_or_else(|| {
                    Failure(
                        exit::INVALID_INPUT,
                        format!("--every {every:?}: write a duration above 0, e.g. 1m"),
                    )
                })?;
            let step = i64::try_from(step).unwrap_or(i64::MAX);
            let count = (last - first) / step + 1;
            if count > 100_000 {
                return Err(Failure(
                    exit::INVALID_INPUT,
                    format!("--every {every}: {count} measurements; choose a longer step"),
                ));
            }
            (0..count).map(|i| first + i * step).collect()
        }
        (Some(at), None) => vec![
            super::time::parse_in_span(at, first, last, now)
                .map_err(|e| Failure(exit::INVALID_INPUT, format!("--at: {e}")))?,
        ],
        (None, None) => vec![last],
    };
    let mut results = Vec::new();
    let mut worst = exit::OK;
    for (i, at) in times.iter().enumerate() {
        let index = u32::try_from(i).unwrap_or(u32::MAX);
        let context = super::plugin_host::cli_context("plugin-test", *at, first, index);
        let binding = MetricsBinding::new(source.clone(), names.iter().cloned());
        let m = plugin
            .measure(&args.config, &context, Some(binding))
            .await
            .map_err(|e| {
                Failure(
                    exit::PLUGIN_ERROR,
                    format!("at {}: {e}", super::time::rfc3339_ms(*at)),
                )
            })?;
        let (verdict, code) = super::plugin_host::verdict_outcome(m.verdict);
        // Fail outranks undecided: one failure is what an author must see.
        worst = match (worst, code) {
            (exit::PROBLEMS, _) | (_, exit::PROBLEMS) => exit::PROBLEMS,
            (exit::NO_DATA, _) | (_, exit::NO_DATA) => exit::NO_DATA,
            _ => exit::OK,
        };
        results.push((*at, verdict, m));
    }
    match args.format {
        Format::Json => {
            let list: Vec<_> = results
                .iter()
                .map(|(at, _, m)| {
                    let mut one = super::plugin_host::measurement_json(m);
                    one["atMs"] = json!(at);
                    one
                })
                .collect();
            out.line(
                json!({"ok": true, "plugin": plugin.name(), "kind": "provider", "backends": names, "measurements": list})
                    .to_string(),
            );
        }
        Format::Human => {
            for (at, verdict, m) in &results {
                out.line(format!(
                    "{}  {verdict}: {}",
                    super::time::rfc3339_ms(*at),
                    m.message
                ));
            }
        }
    }
    Ok(worst)
}

async fn policy(args: &TestArgs, plugin: &Plugin, out: &mut Out) -> Result<u8, Failure> {
    let input = super::policy_fixture::read(&args.fixture)
        .map_err(|message| Failure(exit::INVALID_INPUT, message))?;
    let decision = plugin
        .decide(&args.config, &input)
        .await
        .map_err(|e| Failure(exit::PLUGIN_ERROR, e.to_string()))?;
    let (name, reason, duration, code) = match &decision {
        Decision::Continue => ("continue", String::new(), None, exit::OK),
        Decision::Promote => ("promote", String::new(), None, exit::OK),
        Decision::PromoteFull => ("promote-full", String::new(), None, exit::OK),
        Decision::Pause(p) => ("pause", p.reason.clone(), p.duration_ms, exit::NO_DATA),
        Decision::Rollback(r) => ("rollback", r.clone(), None, exit::PROBLEMS),
        Decision::Abort(r) => ("abort", r.clone(), None, exit::PROBLEMS),
    };
    match args.format {
        Format::Json => out.line(
            json!({"ok": true, "plugin": plugin.name(), "kind": "policy", "decision": name, "reason": reason, "durationMs": duration})
                .to_string(),
        ),
        Format::Human => out.line(match (reason.is_empty(), duration) {
            (true, _) => name.to_string(),
            (false, Some(ms)) => format!(
                "{name} for {}: {reason}",
                crate::engine::human_ms(ms)
            ),
            (false, None) => format!("{name}: {reason}"),
        }),
    }
    Ok(code)
}

#[cfg(test)]
#[path = "kit_tests.rs"]
mod tests;
