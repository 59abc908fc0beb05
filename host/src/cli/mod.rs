//! The `rollgate` command line: a thin layer of clap commands over the library modules.
//! Commands print for humans by default and JSON with `--format json`; exit codes are
//! documented per command.
//!
//! Files, one command (or family) each, plus what several share:
//! - `run.rs`: `run`, step by step; `run_output.rs`: what it shows while it runs (the live
//!   trees, progress lines, the problems report); `actions.rs`: the operator actions
//!   (`pause` … `retry`); `serve.rs`: `serve`; `remote.rs`: the client of a server's API
//!   (`--server URL`);
//! - `status.rs`: `get` and `history`; `style.rs`: tables, glyphs and colour for people;
//! - `lint.rs`, `verify.rs`, `replay.rs`, `schema.rs`: the read-only checks;
//! - `plugin.rs`: `plugin inspect|check|measure`; `kit.rs`: `plugin new|test` (the author
//!   kit, tested in `kit_tests.rs`; `policy_fixture.rs`: the policy input a `plugin test` fixture writes);
//!   `plugin_host.rs`: what every command calling plugins shares (host, limit flags,
//!   measurement output) — `plugin.rs` uses `kit.rs`, both use `plugin_host.rs`, never back;
//! - `metrics.rs`: `metrics query|record`; `time.rs`: time arguments (`now-1h`, RFC 3339);
//! - `ui.rs`: `ui`, the web view of a store (read-only).

mod actions;
mod kit;
mod lint;
mod metrics;
mod plugin;
mod plugin_host;
mod plugin_oci;
mod policy_fixture;
mod remote;
mod replay;
mod run;
mod run_output;
mod schema;
mod serve;
mod status;
mod style;
mod time;
mod ui;
mod verify;

use crate::engine::Action;
use clap::{Parser, Subcommand, ValueEnum};
use std::process::ExitCode;

/// rollgate — progressive delivery with sandboxed WebAssembly verification plugins.
#[derive(Debug, Parser)]
#[command(name = "rollgate", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Inspect and check plugins (WebAssembly components).
    #[command(subcommand)]
    Plugin(plugin::PluginCommand),
    /// Query metric backends and record what they answer for replays.
    #[command(subcommand)]
    Metrics(metrics::MetricsCommand),
    /// Run rollouts in the foreground to a final state (resuming unfinished runs).
    Run(run::RunArgs),
    /// Run every rollout of a configuration folder at once, with an HTTP API.
    Serve(serve::ServeArgs),
    /// Serve the web view of a store `rollgate run` wrote (read-only).
    Ui(ui::UiArgs),
    /// Show a rollout as a tree (state, phases, metrics); --watch follows it live.
    Get(status::GetArgs),
    /// List a rollout's runs and the audit log of one.
    History(status::HistoryArgs),
    /// Check spec files as `rollgate run` would, without running: every problem at once.
    Lint(lint::LintArgs),
    /// Replay whole rollouts over recorded metrics (read-only): the timeline of decisions.
    Replay(replay::ReplayArgs),
    /// Dry-run verifications (read-only): a verdict per metric, live or over a recording.
    Verify(verify::VerifyArgs),
    /// Print (or write) the JSON Schema of each document kind, for editors and CI.
    Schema(schema::SchemaArgs),
    /// Hold a running rollout at its current weight.
    Pause(actions::ActionArgs),
    /// Continue a paused rollout: re-enter the current phase and re-evaluate.
    Resume(actions::ActionArgs),
    /// Move a rollout to its next phase now.
    Promote(actions::ActionArgs),
    /// Apply the final weight and finish a rollout now.
    PromoteFull(actions::ActionArgs),
    /// Stop a rollout; what was applied stays.
    Abort(actions::ActionArgs),
    /// Restore the stable version; after a success, queue the run that takes the previous
    /// version back (as `spec.rollback.mode` says).
    Rollback(actions::ActionArgs),
    /// Queue a new run of a rolled-back, aborted or failed rollout; after a rollback, roll
    /// forward again.
    Retry(actions::ActionArgs),
}

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum Format {
    /// For people.
    #[default]
    Human,
    /// For tools.
    Json,
}

/// Exit codes shared by the commands.
pub mod exit {
    /// Success.
    pub const OK: u8 = 0;
    /// The input was checked and has problems (invalid configuration, failed check).
    pub const PROBLEMS: u8 = 1;
    /// There was nothing to judge (no data).
    pub const NO_DATA: u8 = 2;
    /// A plugin could not be loaded or failed while running.
    pub const PLUGIN_ERROR: u8 = 3;
    /// The input could not be read at all.
    pub const INVALID_INPUT: u8 = 4;
}

/// Collected output of a command, written at the end. A closed pipe (`rollgate … | head`)
/// is not an error worth a panic: the reader has what it wanted.
#[derive(Debug, Default)]
pub struct Out {
    stdout: String,
    stderr: String,
}

impl Out {
    /// A line for stdout.
    pub fn line(&mut self, line: impl AsRef<str>) {
        self.stdout.push_str(line.as_ref());
        self.stdout.push('\n');
    }
    /// A line for stderr.
    pub fn err(&mut self, line: impl AsRef<str>) {
        self.stderr.push_str(line.as_ref());
        self.stderr.push('\n');
    }
    /// Write both, ignoring a closed pipe.
    pub fn flush(&mut self) {
        use std::io::Write;
        let _ = std::io::stdout().write_all(std::mem::take(&mut self.stdout).as_bytes());
        let _ = std::io::stderr().write_all(std::mem::take(&mut self.stderr).as_bytes());
    }
}

/// The exit code for problems found setting up plugins: invalid input (4) when any is the
/// operator's to fix, as `lint` reports the same problems, else a plugin failure (3).
pub fn setup_exit(problems: &[crate::engine::setup::Problem]) -> u8 {
    if problems.iter().any(crate::engine::setup::Problem::is_input) {
        exit::INVALID_INPUT
    } else {
        exit::PLUGIN_ERROR
    }
}

/// Load spec files and folders; on problems, print each (after `who`, e.g. `rollgate
/// replay`) and how many, saying `nothing was {done}`, and give `None`.
pub fn load_or_report(
    paths: &[std::path::PathBuf],
    who: &str,
    done: &str,
    out: &mut Out,
) -> Option<crate::spec::model::Bundle> {
    match crate::spec::load(paths) {
        Ok(b) => Some(b),
        Err(errors) => {
            for e in &errors {
                out.err(format!("{who}: {e}"));
            }
            out.err(format!(
                "{who}: {} problem(s); nothing was {done}",
                crate::spec::problem_count(&errors)
            ));
            None
        }
    }
}

/// The rollouts named (each must exist), or every rollout of the bundle when none is; an
/// error when that leaves nothing.
pub fn select_rollouts<'b>(
    bundle: &'b crate::spec::model::Bundle,
    names: &[String],
) -> Result<Vec<&'b crate::spec::model::RolloutSpec>, String> {
    for wanted in names {
        if !bundle.rollouts.iter().any(|r| &r.name == wanted) {
            let known: Vec<&str> = bundle.rollouts.iter().map(|r| r.name.as_str()).collect();
            return Err(format!(
                "no rollout named {wanted:?} in the files (they hold: {})",
                if known.is_empty() {
                    "no rollout".to_string()
                } else {
                    known.join(", ")
                }
            ));
        }
    }
    let selected: Vec<_> = bundle
        .rollouts
        .iter()
        .filter(|r| names.is_empty() || names.contains(&r.name))
        .map(|r| &**r)
        .collect();
    if selected.is_empty() {
        return Err("the files hold no Rollout document".into());
    }
    Ok(selected)
}

/// Run the command line with the process arguments.
pub fn main() -> ExitCode {
    // A usage mistake is invalid input (4), not clap's default 2: `rollgate verify` uses 2
    // for "inconclusive", and a typo in a CI script must not read as a verdict.
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() {
                exit::INVALID_INPUT
            } else {
                exit::OK
            });
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("ROLLGATE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        // Colour only on a terminal: a log file or a pipe gets plain text (and NO_COLOR is
        // honoured, as everywhere else rollgate colours).
        .with_ansi(style::stderr_live())
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let mut out = Out::default();
            out.err(format!("rollgate: cannot start the async runtime: {e}"));
            out.flush();
            return ExitCode::from(exit::PLUGIN_ERROR);
        }
    };
    let code = runtime.block_on(async {
        match cli.command {
            Command::Plugin(cmd) => plugin::run(cmd).await,
            Command::Metrics(cmd) => metrics::run(cmd).await,
            Command::Run(args) => run::run(args).await,
            Command::Serve(args) => serve::run(args).await,
            Command::Ui(args) => ui::run(args).await,
            Command::Schema(args) => schema::run(args),
            Command::Lint(args) => lint::run(args).await,
            Command::Verify(args) => verify::run(args).await,
            Command::Replay(args) => replay::run(args).await,
            Command::Get(args) => status::get(args).await,
            Command::History(args) => status::history(args).await,
            Command::Pause(args) => actions::action(Action::Pause, args).await,
            Command::Resume(args) => actions::action(Action::Resume, args).await,
            Command::Promote(args) => actions::action(Action::Promote, args).await,
            Command::PromoteFull(args) => actions::action(Action::PromoteFull, args).await,
            Command::Abort(args) => actions::action(Action::Abort, args).await,
            Command::Rollback(args) => actions::action(Action::Rollback, args).await,
            Command::Retry(args) => actions::action(Action::Retry, args).await,
        }
    });
    ExitCode::from(code)
}
