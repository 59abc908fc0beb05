//! `rollgate plugin inspect|check|measure`.
//!
//! - `inspect PLUGIN`: world, exports, imports, the plugin's own info and config schema.
//!   Exit 0, or 3 when the plugin is refused or fails.
//! - `check PLUGIN --config JSON`: runs the plugin's `validate` on a configuration.
//!   Exit 0 valid, 1 problems, 3 plugin refused or failed, 4 unreadable input.
//! - `new NAME --kind provider|policy` and `test PLUGIN --config JSON --fixture FILE`: the
//!   plugin author kit, see [`super::kit`].
//! - `measure PLUGIN --config JSON --backends FILE [--bind NAME] [--at T]`: one measurement
//!   of a verification provider against declared backends. Exit 0 pass, 1 fail,
//!   2 inconclusive or no data, 3 error, 4 invalid input.

use super::plugin_host::{cli_context, host, measurement_json, verdict_outcome};
use super::{Format, Out, exit};
use crate::plugin::{LoadOptions, PluginError, PluginSource};
use clap::{Args, Subcommand};
use serde_json::json;
use std::path::PathBuf;

#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// Show what a plugin is: world, exports, imports, info and config schema.
    Inspect(InspectArgs),
    /// Check a configuration against a plugin (runs its `validate`).
    Check(CheckArgs),
    /// Take one measurement with a verification provider against declared backends.
    Measure(MeasureArgs),
    /// Scaffold a plugin crate (provider or policy) that builds and tests as it is.
    New(super::kit::NewArgs),
    /// Run a plugin against a fixture: a recording (providers) or a policy input (policies).
    Test(super::kit::TestArgs),
    /// Publish a component to an OCI registry; prints the digest to pin.
    Push(super::plugin_oci::PushArgs),
    /// Fetch a published component (checking its digests); prints the digest a tag points at.
    Pull(super::plugin_oci::PullArgs),
    /// Sign a published component with a cosign key (key-based, as `cosign sign --key`).
    Sign(super::plugin_oci::SignArgs),
}

#[derive(Debug, Args)]
pub struct MeasureArgs {
    /// A component file, or the name of a built-in plugin.
    plugin: String,
    /// The plugin's configuration, as JSON text.
    #[arg(long)]
    config: String,
    /// YAML files with MetricBackend documents.
    #[arg(long = "backends", value_name = "FILE", required = true)]
    files: Vec<PathBuf>,
    /// A backend the metric may query (repeatable); default: every declared backend.
    #[arg(long = "bind", value_name = "BACKEND")]
    bind: Vec<String>,
    /// The rollout's "now" for this measurement (default now).
    #[arg(long, default_value = "now")]
    at: String,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    format: Format,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// A component file, or the name of a built-in plugin (`threshold`, `default-policy`).
    plugin: String,
    /// Pinned sha256 the component must have.
    #[arg(long)]
    sha256: Option<String>,
    /// Sandbox limits.
    #[command(flatten)]
    limits: super::plugin_host::LimitArgs,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    format: Format,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// A component file, or the name of a built-in plugin.
    plugin: String,
    /// The configuration, as JSON text.
    #[arg(
        long,
        conflicts_with = "config_file",
        required_unless_present = "config_file"
    )]
    config: Option<String>,
    /// The configuration, from a JSON file.
    #[arg(long, value_name = "FILE")]
    config_file: Option<PathBuf>,
    /// Pinned sha256 the component must have.
    #[arg(long)]
    sha256: Option<String>,
    /// Sandbox limits.
    #[command(flatten)]
    limits: super::plugin_host::LimitArgs,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    format: Format,
}

pub async fn run(cmd: PluginCommand) -> u8 {
    match cmd {
        PluginCommand::Inspect(args) => inspect(args).await,
        PluginCommand::Check(args) => check(args).await,
        PluginCommand::Measure(args) => measure(args).await,
        PluginCommand::New(args) => super::kit::new(args),
        PluginCommand::Test(args) => super::kit::test(args).await,
        PluginCommand::Push(args) => super::plugin_oci::push(args).await,
        PluginCommand::Pull(args) => super::plugin_oci::pull(args).await,
        PluginCommand::Sign(args) => super::plugin_oci::sign(args).await,
    }
}

/// Load options from the command line: a pinned digest and the sandbox limits.
fn load_options(
    sha256: Option<String>,
    limits_args: &super::plugin_host::LimitArgs,
) -> Result<LoadOptions, u8> {
    match limits_args.limits() {
        Ok(limits) => Ok(LoadOptions {
            sha256,
            limits,
            allowed_hosts: limits_args.allow_hosts.clone(),
            ..LoadOptions::default()
        }),
        Err(e) => {
            let mut out = Out::default();
            out.err(format!("rollgate: {e}"));
            out.flush();
            Err(exit::INVALID_INPUT)
        }
    }
}

fn report(e: &PluginError, format: Format) -> u8 {
    let mut out = Out::default();
    match format {
        Format::Human => out.err(format!("rollgate: {e}")),
        Format::Json => out.line(
            json!({"ok": false, "error": {"kind": e.kind(), "message": e.to_string()}}).to_string(),
        ),
    }
    out.flush();
    exit::PLUGIN_ERROR
}

async fn inspect(args: InspectArgs) -> u8 {
    let source = PluginSource::parse(&args.plugin);
    let options = match load_options(args.sha256, &args.limits) {
        Ok(o) => o,
        Err(code) => return code,
    };
    let loaded = match host() {
        Ok(h) => h.load_async(source.clone(), options).await,
        Err(e) => Err(e),
    };
    let plugin = match loaded {
        Ok(p) => p,
        Err(e) => return report(&e, args.format),
    };
    let info = match plugin.info().await {
        Ok(i) => i,
        Err(e) => return report(&e, args.format),
    };
    let schema: serde_json::Value =
        serde_json::from_str(&info.config_schema).unwrap_or(serde_json::Value::Null);
    let origin = match &source {
        PluginSource::Builtin(_) => "built-in".to_string(),
        PluginSource::File(p) => p.display().to_string(),
        PluginSource::Bytes(_) => "bytes".to_string(),
        PluginSource::Oci(oci) => oci.reference.to_string(),
    };
    let mut out = Out::default();
    match args.format {
        Format::Json => out.line(
            json!({
                "ok": true,
                "source": origin,
                "world": plugin.kind().world(),
                "contract": plugin.contract().to_string(),
                "sha256": plugin.sha256(),
                "exports": plugin.exports(),
                "imports": plugin.imports(),
                "info": {
                    "name": info.name,
                    "version": info.version,
                    "description": info.description,
                    "configSchema": schema,
                },
            })
            .to_string(),
        ),
        Format::Human => {
            out.line(format!("plugin       {} ({origin})", info.name));
            out.line(format!("version      {}", info.version));
            out.line(format!(
                "world        {} ({})",
                plugin.kind().world(),
                plugin.contract()
            ));
            out.line(format!("sha256       {}", plugin.sha256()));
            out.line(format!("description  {}", info.description));
            out.line("exports");
            for e in plugin.exports() {
                out.line(format!("  {e}"));
            }
            out.line("imports");
            for i in plugin.imports() {
                out.line(format!("  {i}"));
            }
            out.line("config schema");
            let pretty = serde_json::to_string_pretty(&schema).unwrap_or_default();
            for line in pretty.lines() {
                out.line(format!("  {line}"));
            }
        }
    }
    out.flush();
    exit::OK
}

async fn check(args: CheckArgs) -> u8 {
    let config = match (&args.config, &args.config_file) {
        (Some(text), _) => text.clone(),
        (None, Some(path)) => match crate::files::read_text(path, &crate::files::SMALL_FILE) {
            Ok(text) => text,
            Err(e) => {
                let mut out = Out::default();
                out.err(format!("rollgate: {}", e.describe_as("config file", path)));
                out.flush();
                return exit::INVALID_INPUT;
            }
        },
        (None, None) => {
            let mut out = Out::default();
            out.err("rollgate: give the configuration with --config JSON or --config-file FILE");
            out.flush();
            return exit::INVALID_INPUT;
        }
    };
    let source = PluginSource::parse(&args.plugin);
    let options = match load_options(args.sha256, &args.limits) {
        Ok(o) => o,
        Err(code) => return code,
    };
    let loaded = match host() {
        Ok(h) => h.load_async(source, options).await,
        Err(e) => Err(e),
    };
    let plugin = match loaded {
        Ok(p) => p,
        Err(e) => return report(&e, args.format),
    };
    let problems = match plugin.validate(&config).await {
        Ok(p) => p,
        Err(e) => return report(&e, args.format),
    };
    let where_ = args
        .config_file
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "--config".to_string());
    let mut out = Out::default();
    match args.format {
        Format::Json => out.line(
            json!({
                "ok": problems.is_empty(),
                "plugin": plugin.name(),
                "problems": problems.iter().map(|p| json!({"path": p.path, "message": p.message})).collect::<Vec<_>>(),
            })
            .to_string(),
        ),
        Format::Human if problems.is_empty() => {
            out.line(format!("{where_}: valid configuration for plugin {:?}", plugin.name()));
        }
        Format::Human => {
            for p in &problems {
                let at = if p.path.is_empty() { "(root)" } else { &p.path };
                out.line(format!("{where_}: {at}: {}", p.message));
            }
            out.line(format!(
                "{} problem{} in the configuration of plugin {:?}",
                problems.len(),
                if problems.len() == 1 { "" } else { "s" },
                plugin.name()
            ));
        }
    }
    out.flush();
    if problems.is_empty() {
        exit::OK
    } else {
        exit::PROBLEMS
    }
}

/// Exit codes: 0 pass, 1 fail, 2 inconclusive or no data, 3 error, 4 invalid input.
async fn measure(args: MeasureArgs) -> u8 {
    use crate::plugin::MetricsBinding;
    let mut out = Out::default();
    let now = crate::engine::clock::now_ms();
    let at = match super::time::parse_time(&args.at, now) {
        Ok(t) => t,
        Err(e) => {
            out.err(format!("rollgate: {e}"));
            out.flush();
            return exit::INVALID_INPUT;
        }
    };
    let Some(backends) = super::metrics::load_backends(&args.files, &mut out) else {
        out.flush();
        return exit::INVALID_INPUT;
    };
    let bind: Vec<String> = if args.bind.is_empty() {
        backends.names().into_iter().map(str::to_string).collect()
    } else {
        args.bind.clone()
    };
    let loaded = match host() {
        Ok(h) => {
            h.load_async(PluginSource::parse(&args.plugin), LoadOptions::default())
                .await
        }
        Err(e) => Err(e),
    };
    let plugin = match loaded {
        Ok(p) => p,
        Err(e) => return report(&e, args.format),
    };
    let context = cli_context("plugin-measure", at, at, 0);
    let binding = MetricsBinding::new(std::sync::Arc::new(backends), bind);
    let m = match plugin.measure(&args.config, &context, Some(binding)).await {
        Ok(m) => m,
        Err(e) => return report(&e, args.format),
    };
    let (verdict, code) = verdict_outcome(m.verdict);
    match args.format {
        Format::Json => {
            let mut result = measurement_json(&m);
            result["ok"] = json!(true);
            out.line(result.to_string());
        }
        Format::Human => out.line(format!("{verdict}: {}", m.message)),
    }
    out.flush();
    code
}
