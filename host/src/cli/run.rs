//! `rollgate run FILE…`: run the rollouts of some files in the foreground to a final state,
//! resuming any unfinished run of the same rollouts from the store. The operator actions
//! a running `rollgate run` picks up from the same store are in `actions.rs`.
//!
//! Exit codes of `run`: 0 every rollout succeeded, 5 one rolled back (a release taken back
//! by a reversal that succeeded included), 6 one was aborted,
//! 7 one failed, 8 one waits for an operator (simulated clock only), 3 a plugin or the
//! store failed, 4 invalid input. With several rollouts the highest code wins. Stopped by
//! SIGINT or SIGTERM: 130 or 143, once the runner is marked stopped in the store.
//!
//! While it drives runs, `run` is the store's runner ([`crate::engine::runner`]): it
//! registers, beats every `--heartbeat` and marks itself stopped when it ends, so `rollgate
//! get` can tell a run being driven from one whose runner died. It drives each run under
//! the run's lease ([`crate::engine::lease`]), renewed while it drives and freed when it
//! ends: a run another runner (a `rollgate serve` on the same store) holds is not driven,
//! with an error that names that runner.

use super::run_output::{Shown, report};
use super::{Format, Out, exit};
use crate::engine::clock::{Clock, SimClock, SystemClock, now_ms};
use crate::engine::prepare;
use crate::engine::reversal;
use crate::engine::runner::Runner;
use crate::engine::state::State;
use crate::engine::{ENGINE_ACTOR, Engine, Outcome, setup};
use crate::spec::model::RolloutSpec;
use crate::store::{Location, RolloutRow, Store};
use clap::{Args, ValueEnum};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Exit codes of `rollgate run` beyond the shared ones.
pub mod code {
    /// A rollout rolled back.
    pub const ROLLED_BACK: u8 = 5;
    /// A rollout was aborted.
    pub const ABORTED: u8 = 6;
    /// A rollout failed.
    pub const FAILED: u8 = 7;
    /// A rollout waits for an operator (simulated clock).
    pub const WAITING: u8 = 8;
}

/// Which clock drives the rollouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum ClockKind {
    /// Real time.
    #[default]
    System,
    /// Simulated time that jumps to the next timer: an hour of rollout in well under a
    /// second (for replay backends and dry runs).
    Simulated,
}

/// `rollgate run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// YAML files or folders with MetricBackend, Plugin, VerificationTemplate and Rollout
    /// documents.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// The state store: a SQLite file (created if missing) or a PostgreSQL database
    /// (`postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE`; `--db` is the same option).
    #[arg(
        long,
        alias = "db",
        default_value = "rollgate.db",
        value_name = "FILE|URL"
    )]
    pub store: Location,
    /// Only these rollouts (default: every rollout in the files).
    #[arg(long = "rollout")]
    pub rollouts: Vec<String>,
    /// Which clock drives the rollouts.
    #[arg(long, value_enum, default_value_t)]
    pub clock: ClockKind,
    /// With the simulated clock: when the rollout starts (now, -1h, unix seconds, RFC 3339).
    #[arg(long, default_value = "now")]
    pub start: String,
    /// Output format (progress lines, then the outcome).
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
    /// Where compiled plugins are cached (default: the user cache folder).
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
    /// Refuse every oci:// plugin that is not signed (cosign, key-based) by the key its
    /// Plugin document names in verify.cosign.publicKey.
    #[arg(long)]
    pub require_signed_plugins: bool,
    /// How often a waiting rollout looks for operator actions, in milliseconds.
    #[arg(long, default_value_t = 250)]
    pub poll_ms: u64,
    /// How often this runner records its heartbeat in the store (100ms to 1h); `rollgate
    /// get` reports a runner silent for three periods as stopped reporting.
    #[arg(long, default_value = "5s", value_name = "DURATION")]
    pub heartbeat: String,
}

/// `rollgate run`.
pub async fn run(args: RunArgs) -> u8 {
    let mut out = Out::default();
    let code = run_inner(&args, &mut out).await;
    out.flush();
    code
}

async fn run_inner(args: &RunArgs, out: &mut Out) -> u8 {
    match run_steps(args, out).await {
        Ok(code) | Err(code) => code,
    }
}

/// `rollgate run`, step by step; `Err` is an exit code whose reason is already in `out`.
async fn run_steps(args: &RunArgs, out: &mut Out) -> Result<u8, u8> {
    let heartbeat = match crate::engine::runner::parse_period(&args.heartbeat) {
        Ok(p) => p,
        Err(e) => {
            out.err(format!("rollgate: --heartbeat: {e}"));
            return Err(exit::INVALID_INPUT);
        }
    };
    // Rollout by rollout: one that does not load (or whose template, plugin or backend does
    // not) is reported as invalid-spec and not run; the others run, and the exit code says
    // invalid input at the end.
    let each = crate::spec::load_each(&args.files);
    let (checked, plugins) = check(&each, args, out).await?;
    let (store, config_generation) = open_store(args, &each, &checked, out).await?;
    let latest = latest_runs(&store, &checked.rollouts, &args.files, out).await?;
    let (clock, sim) = clock(args, &latest, out)?;
    // Recordings are aligned to the start of the runs: of the first resumed one, else now.
    let origin = resumed(&latest)
        .map(|row| row.created_ms)
        .min()
        .unwrap_or_else(|| clock.now_ms());
    // Every backend that builds (one that does not costs only the rollouts using it, which
    // are not run).
    let backends = prepare::backends(&each.bundle, Some(origin));
    let shown = Shown::new(args.format);
    let engine = Engine {
        observer: Some(shown.observer()),
        config_generation,
        reconfigure: Some(Arc::new(FilesReread {
            files: args.files.clone(),
            host: checked.host.clone(),
            store: store.clone(),
            deterministic: args.clock == ClockKind::Simulated,
            origin,
        })),
        ..Engine::alone(
            store.clone(),
            clock.clone(),
            plugins,
            Arc::new(backends),
            Duration::from_millis(args.poll_ms.max(10)),
        )
    };
    let (ids, done) = start_runs(&engine, &checked.rollouts, latest, &args.files, out).await?;
    let results = drive(engine, ids, sim.as_ref(), heartbeat, &shown, args, out).await?;
    Ok(finish(results, done, &checked, &shown, out))
}

/// What loading and setting up the files left to run, and what they refused.
struct Checked<'a> {
    /// The rollouts asked for, those that run and those that are invalid-spec.
    selection: Selection,
    /// The plugin host the rollouts' plugins were loaded with.
    host: crate::plugin::PluginHost,
    /// The rollouts that run.
    rollouts: Vec<&'a RolloutSpec>,
    /// How many problems were reported.
    problem_count: usize,
    /// The exit code the problems give: a plugin error when every one is about the
    /// environment (a plugin or backend that cannot be reached), else invalid input.
    invalid_code: u8,
}

/// Select the rollouts asked for, set them up (plugins, backends) and report every problem,
/// all before the store is created; also returns the plugins that loaded.
async fn check<'a>(
    each: &'a crate::spec::Each,
    args: &RunArgs,
    out: &mut Out,
) -> Result<(Checked<'a>, crate::engine::Plugins), u8> {
    let mut selection = match select(each, &args.rollouts) {
        Ok(s) => s,
        Err(e) => {
            let other: Vec<String> = each.other.iter().map(ToString::to_string).collect();
            report(out, &other, &std::collections::BTreeMap::new());
            if other.is_empty() {
                out.err(format!("rollgate: {e}; nothing to run"));
            } else {
                out.err(format!(
                    "rollgate: {} problem(s); nothing was run",
                    other.len()
                ));
            }
            return Err(exit::INVALID_INPUT);
        }
    };
    let bundle = &each.bundle;
    let host =
        match super::plugin_host::host_with(args.cache_dir.as_deref(), args.require_signed_plugins)
        {
            Ok(h) => h,
            Err(e) => {
                out.err(format!("rollgate: {e}"));
                return Err(exit::PLUGIN_ERROR);
            }
        };
    let deterministic = args.clock == ClockKind::Simulated;
    let valid: Vec<&RolloutSpec> = bundle
        .rollouts
        .iter()
        .filter(|r| selection.valid.contains(&r.name))
        .map(|r| &**r)
        .collect();
    let prepared = prepare::prepare(&host, bundle, &valid, &[], deterministic, None).await;
    for (name, problems) in prepared.invalid {
        selection.valid.retain(|n| *n != name);
        selection.invalid.insert(name, problems);
    }
    let rollouts: Vec<&RolloutSpec> = valid
        .into_iter()
        .filter(|r| selection.valid.contains(&r.name))
        .collect();
    // Everything that can be refused is reported before the store is created.
    let other: Vec<String> = each
        .other
        .iter()
        .map(ToString::to_string)
        .chain(prepared.other.iter().map(ToString::to_string))
        .collect();
    report(out, &other, &selection.invalid);
    let problem_count = other.len()
        + selection
            .invalid
            .values()
            .map(Vec::len)
            .fold(0, usize::saturating_add);
    let input = |ps: &[setup::Problem]| ps.iter().any(setup::Problem::is_input);
    let invalid_code = if other.is_empty()
        && !selection.invalid.values().any(|ps| input(ps))
        && !selection.invalid.is_empty()
    {
        exit::PLUGIN_ERROR
    } else {
        exit::INVALID_INPUT
    };
    let checked = Checked {
        selection,
        host,
        rollouts,
        problem_count,
        invalid_code,
    };
    Ok((checked, prepared.plugins))
}

/// Open the store (unless there is nothing to run or record), number the configuration
/// and record which rollouts are invalid-spec; `Err` when nothing runs.
async fn open_store(
    args: &RunArgs,
    each: &crate::spec::Each,
    checked: &Checked<'_>,
    out: &mut Out,
) -> Result<(Store, i64), u8> {
    let problem_count = checked.problem_count;
    // Nothing to run and nothing to record: no store file is created.
    if checked.rollouts.is_empty() && !args.store.exists() {
        out.err(format!(
            "rollgate: {problem_count} problem(s); nothing was run"
        ));
        return Err(checked.invalid_code);
    }
    let store = match Store::open_at(&args.store, true).await {
        Ok(s) => s,
        Err(e) => {
            out.err(format!("rollgate: {e}"));
            return Err(exit::INVALID_INPUT);
        }
    };
    let config_generation = match store.configuration(&each.fingerprint, now_ms()).await {
        Ok(g) => g,
        Err(e) => {
            out.err(format!("rollgate: {e}"));
            return Err(exit::PLUGIN_ERROR);
        }
    };
    if let Err(e) = record_invalid(&store, &checked.selection).await {
        out.err(format!("rollgate: {e}"));
        return Err(exit::PLUGIN_ERROR);
    }
    if checked.rollouts.is_empty() {
        out.err(format!(
            "rollgate: {problem_count} problem(s); nothing was run"
        ));
        return Err(checked.invalid_code);
    }
    Ok((store, config_generation))
}

/// What the store already knows of each rollout: an unfinished run is resumed, a finished
/// run of the same spec is reported, anything else (`None`) starts a new run.
/// An ended run with a request waiting (a rollback of an aborted run) is driven again.
async fn latest_runs(
    store: &Store,
    rollouts: &[&RolloutSpec],
    files: &[PathBuf],
    out: &mut Out,
) -> Result<Vec<Option<RolloutRow>>, u8> {
    let mut latest = Vec::new();
    for r in rollouts {
        let row = match store.latest(&r.name).await {
            Ok(row) => row,
            Err(e) => {
                out.err(format!("rollgate: {e}"));
                return Err(exit::PLUGIN_ERROR);
            }
        };
        let row = match row {
            Some(mut row) if row.finished => match store.pending_actions(row.id).await {
                Ok(waiting) if !waiting.is_empty() => {
                    row.finished = false;
                    Some(row)
                }
                Ok(_) => same_spec(&row, r, files).then_some(row),
                Err(e) => {
                    out.err(format!("rollgate: {e}"));
                    return Err(exit::PLUGIN_ERROR);
                }
            },
            other => other,
        };
        latest.push(row);
    }
    Ok(latest)
}

/// The runs that are resumed.
fn resumed(latest: &[Option<RolloutRow>]) -> impl Iterator<Item = &RolloutRow> {
    latest.iter().flatten().filter(|row| !row.finished)
}

/// The clock that drives the runs, and the simulated clock when it is one.
fn clock(
    args: &RunArgs,
    latest: &[Option<RolloutRow>],
    out: &mut Out,
) -> Result<(Arc<dyn Clock>, Option<SimClock>), u8> {
    Ok(match args.clock {
        ClockKind::System => (Arc::new(SystemClock), None),
        ClockKind::Simulated => {
            let start = match super::time::parse_time(&args.start, now_ms()) {
                Ok(t) => t,
                Err(e) => {
                    out.err(format!("rollgate: --start: {e}"));
                    return Err(exit::INVALID_INPUT);
                }
            };
            // A resumed run's time goes on from its last commit: the simulated clock never
            // goes back, or the run would measure the same minutes twice.
            let start = resumed(latest)
                .map(|row| row.updated_ms)
                .fold(start, i64::max);
            let sim = SimClock::new(start);
            (Arc::new(sim.clone()), Some(sim))
        }
    })
}

/// Each rollout's run: an unfinished one resumed, a new one created, or an ended one
/// reported. Returns the ids of the runs to drive and the outcomes of those that ended.
async fn start_runs(
    engine: &Engine,
    rollouts: &[&RolloutSpec],
    latest: Vec<Option<RolloutRow>>,
    files: &[PathBuf],
    out: &mut Out,
) -> Result<(Vec<i64>, Vec<Outcome>), u8> {
    let mut ids = Vec::new();
    let mut done: Vec<Outcome> = Vec::new();
    for (r, latest) in rollouts.iter().zip(latest) {
        match latest {
            Some(row) if !row.finished => {
                let reverses = reversal::reverses(&row)
                    .map(|n| format!(", which reverses run {n},"))
                    .unwrap_or_default();
                if !same_spec(&row, r, files) {
                    eprintln!(
                        "rollgate: {}: resuming run {}{reverses} with the spec it started with (the file has changed since; the change applies to the next run)",
                        r.name, row.run
                    );
                } else {
                    eprintln!(
                        "rollgate: {}: resuming run {}{reverses} from its checkpoint ({})",
                        r.name, row.run, row.state
                    );
                }
                ids.push(row.id);
            }
            Some(row) => {
                let reverses = reversal::reverses(&row);
                let message = match reverses {
                    None => format!(
                        "run {} already ended {} (use `rollgate retry {}` to run it again)",
                        row.run, row.state, row.name
                    ),
                    Some(n) => format!(
                        "run {} already ended {}; it reverses run {n} (use `rollgate retry {}` to roll forward again)",
                        row.run, row.state, row.name
                    ),
                };
                done.push(Outcome {
                    id: row.id,
                    rollout: row.name.clone(),
                    state: state_of(&row.state),
                    message,
                    reverses,
                });
            }
            None => match engine.create(r, ENGINE_ACTOR, "rollgate run").await {
                Ok(id) => ids.push(id),
                Err(e) => {
                    out.err(format!("rollgate: {e}"));
                    return Err(exit::PLUGIN_ERROR);
                }
            },
        }
    }
    Ok((ids, done))
}

/// What each run's task ended with.
type Driven = Vec<Result<Result<Outcome, crate::engine::EngineError>, tokio::task::JoinError>>;

/// Drive the runs to their end as the store's runner (registered, beating), or until
/// SIGINT or SIGTERM (`Err` with its exit code, the runner marked stopped).
async fn drive(
    mut engine: Engine,
    ids: Vec<i64>,
    sim: Option<&SimClock>,
    heartbeat: Duration,
    shown: &Shown,
    args: &RunArgs,
    out: &mut Out,
) -> Result<Driven, u8> {
    // This process drives runs from here on: it is their runner, and beats while it is.
    let runner = if ids.is_empty() {
        None
    } else {
        match Runner::register(&engine.store, "run", heartbeat).await {
            Ok(r) => Some(r),
            Err(e) => {
                out.err(format!("rollgate: {e}"));
                return Err(exit::PLUGIN_ERROR);
            }
        }
    };
    engine.runner = runner.as_ref().map(Runner::id);
    // Each run is driven under its lease, claimed when its drive starts (another runner
    // holding it is an error naming that runner) and renewed while it goes on.
    let leases = match &runner {
        Some(r) => match hold_leases(&engine.store, r.id()).await {
            Ok(l) => Some(l),
            Err(e) => {
                out.err(format!("rollgate: {e}"));
                return Err(exit::PLUGIN_ERROR);
            }
        },
        None => None,
    };
    engine.leases = leases.clone();
    let renew = leases.clone().map(|l| tokio::spawn(renew_leases(l)));
    let beat = runner.as_ref().map(|r| tokio::spawn(r.beat()));
    // Every rollout is registered with the simulated clock before any starts, so time
    // cannot jump while the first waits and the others do not exist yet.
    let actors: Vec<_> = ids.iter().map(|_| sim.map(SimClock::actor)).collect();
    let mut tasks = Vec::new();
    for (id, actor) in ids.into_iter().zip(actors) {
        let engine = engine.clone();
        tasks.push(tokio::spawn(async move {
            let _actor = actor;
            engine.drive(id).await
        }));
    }
    let aborts: Vec<_> = tasks.iter().map(|t| t.abort_handle()).collect();
    let mut joined = std::pin::pin!(futures::future::join_all(tasks));
    let results = tokio::select! {
        results = &mut joined => results,
        signal = interrupted() => {
            // The runs stop where they are (each resumes from its last commit), then the
            // runner is marked stopped: a clean stop, not a runner that died.
            for a in &aborts {
                a.abort();
            }
            let _ = tokio::time::timeout(Duration::from_secs(10), &mut joined).await;
            free_leases(renew, leases.as_deref(), out).await;
            stop_runner(beat, runner, out).await;
            shown.draw_last();
            let (name, code) = signal;
            out.err(format!(
                "rollgate: stopped by {name}; unfinished runs resume from their checkpoints at the next `rollgate run` on {}",
                args.store
            ));
            return Err(code);
        }
    };
    free_leases(renew, leases.as_deref(), out).await;
    stop_runner(beat, runner, out).await;
    Ok(results)
}

/// This runner's leases ([`crate::engine::lease`]), after freeing those of runners of this
/// host that died (a killed `rollgate run` restarted resumes its runs at once).
async fn hold_leases(
    store: &Store,
    runner: i64,
) -> Result<Arc<crate::engine::lease::Leases>, crate::store::StoreError> {
    crate::engine::lease::release_dead_local_runners(store, runner).await?;
    Ok(Arc::new(crate::engine::lease::Leases::new(
        store.clone(),
        runner,
        crate::engine::lease::DEFAULT_TTL,
    )))
}

/// Renew the runs' leases every third of their ttl; a run another runner took, or whose
/// local deadline passed without a renewal, stops.
async fn renew_leases(leases: Arc<crate::engine::lease::Leases>) {
    let every = crate::engine::lease::renew_every(leases.ttl());
    loop {
        tokio::time::sleep(every).await;
        match leases.renew().await {
            Ok(renewal) => {
                for lost in renewal.lost {
                    tracing::warn!(
                        "lost the lease on {} (epoch {}): another runner holds it; stopped \
                         driving it",
                        lost.label(),
                        lost.epoch()
                    );
                }
            }
            Err(e) => tracing::warn!("cannot renew this runner's leases: {e}"),
        }
        for (lease, at_ms) in leases.expire_overdue() {
            tracing::warn!(
                "lease on {} (epoch {}) expired locally at {} without a renewal: stopped \
                 driving it",
                lease.label(),
                lease.epoch(),
                crate::engine::lease::utc_text_ms(at_ms)
            );
        }
    }
}

/// Stop renewing and free every lease at once (the runs ended, or a signal stopped them).
async fn free_leases(
    renew: Option<tokio::task::JoinHandle<()>>,
    leases: Option<&crate::engine::lease::Leases>,
    out: &mut Out,
) {
    if let Some(renew) = renew {
        renew.abort();
    }
    if let Some(leases) = leases {
        leases.close();
        if let Err(e) = leases.release_all().await {
            out.err(format!(
                "rollgate: cannot free this runner's leases: {e}; they expire by themselves"
            ));
        }
    }
}

/// Report what the runs ended with, the problems that kept rollouts from running, and
/// return the exit code: the highest of all.
fn finish(
    results: Driven,
    done: Vec<Outcome>,
    checked: &Checked<'_>,
    shown: &Shown,
    out: &mut Out,
) -> u8 {
    let mut code = exit::OK;
    let mut outcomes = done;
    for result in results {
        match result {
            Ok(Ok(o)) => outcomes.push(o),
            Ok(Err(e)) => {
                out.err(format!("rollgate: {e}"));
                code = code.max(exit::PLUGIN_ERROR);
            }
            Err(e) => {
                out.err(format!("rollgate: a rollout task failed: {e}"));
                code = code.max(exit::PLUGIN_ERROR);
            }
        }
    }
    // The final state of every tree, whenever the last throttled drawing was.
    shown.draw_last();
    let problem_count = checked.problem_count;
    let invalid = &checked.selection.invalid;
    if problem_count > 0 {
        out.err(if invalid.is_empty() {
            format!("rollgate: {problem_count} problem(s) above; no rollout depends on them")
        } else {
            format!(
                "rollgate: {} rollout(s) not run: {}; {problem_count} problem(s) above",
                invalid.len(),
                invalid
                    .keys()
                    .map(|n| format!("{n:?} (invalid-spec)"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        });
        code = code.max(checked.invalid_code);
    }
    for o in &outcomes {
        code = code.max(outcome_code(o));
        match shown.format {
            Format::Human => out.line(format!("{}: {} — {}", o.rollout, o.state, o.message)),
            Format::Json => {
                let mut line = serde_json::json!({"rollout": o.rollout, "outcome": o.state.name(), "message": o.message});
                if let Some(n) = o.reverses {
                    line["reverses"] = n.into();
                }
                out.line(line.to_string())
            }
        }
    }
    code
}

/// Stop the heartbeat and mark the runner stopped (a failure to is reported, not fatal: the
/// runner then reads as stopped reporting, which is true enough).
async fn stop_runner(
    beat: Option<tokio::task::JoinHandle<()>>,
    runner: Option<Runner>,
    out: &mut Out,
) {
    if let Some(beat) = beat {
        beat.abort();
    }
    if let Some(runner) = runner
        && let Err(e) = runner.stop().await
    {
        out.err(format!(
            "rollgate: cannot mark this runner stopped in the store: {e}"
        ));
    }
}

/// SIGINT or SIGTERM: its name and the exit code a shell gives it (128 + its number).
async fn interrupted() -> (&'static str, u8) {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => futures::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => ("SIGINT", 130),
        _ = term => ("SIGTERM", 143),
    }
}

/// The rollouts a `rollgate run` was asked for, split into those that load and those
/// that do not (with their problems).
struct Selection {
    valid: Vec<String>,
    invalid: std::collections::BTreeMap<String, Vec<setup::Problem>>,
}

/// The rollouts named (each must exist, loading or not), or every rollout of the files.
fn select(each: &crate::spec::Each, names: &[String]) -> Result<Selection, String> {
    let valid: Vec<&str> = each
        .bundle
        .rollouts
        .iter()
        .map(|r| r.name.as_str())
        .collect();
    for wanted in names {
        if !valid.contains(&wanted.as_str()) && !each.invalid.contains_key(wanted) {
            let mut known: Vec<&str> = valid.clone();
            known.extend(each.invalid.keys().map(String::as_str));
            known.sort_unstable();
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
    let chosen = |n: &str| names.is_empty() || names.iter().any(|w| w == n);
    let selection = Selection {
        valid: valid
            .iter()
            .filter(|n| chosen(n))
            .map(|n| (*n).to_string())
            .collect(),
        invalid: each
            .invalid
            .iter()
            .filter(|(n, _)| chosen(n))
            .map(|(n, ps)| {
                (
                    n.clone(),
                    ps.iter().map(setup::Problem::from_spec).collect(),
                )
            })
            .collect(),
    };
    if selection.valid.is_empty() && selection.invalid.is_empty() {
        return Err("the files hold no Rollout document".into());
    }
    Ok(selection)
}

/// Record in the store which selected rollouts are invalid-spec (holding an unfinished run
/// of theirs) and which load again.
async fn record_invalid(
    store: &Store,
    selection: &Selection,
) -> Result<(), crate::store::StoreError> {
    let now = now_ms();
    for (name, problems) in &selection.invalid {
        let held = store
            .latest(name)
            .await?
            .filter(|r| !r.finished)
            .map(|r| r.id);
        let problems: Vec<String> = problems.iter().map(ToString::to_string).collect();
        store.set_invalid(name, &problems, held, now).await?;
    }
    for name in &selection.valid {
        store.clear_invalid(name).await?;
    }
    Ok(())
}

/// Where a run of `rollgate run` re-reads its rollout's documents on a resume: the same
/// files, loaded and set up again.
struct FilesReread {
    files: Vec<PathBuf>,
    host: crate::plugin::PluginHost,
    store: Store,
    deterministic: bool,
    origin: i64,
}

impl crate::engine::Reconfigure for FilesReread {
    fn reread<'a>(
        &'a self,
        rollout: &'a str,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = crate::engine::Reread> + Send + 'a>>
    {
        Box::pin(async move {
            use crate::engine::{Current, Reread};
            let each = crate::spec::load_each(&self.files);
            if let Some(problems) = each.invalid.get(rollout) {
                return Reread::Refuse(problems.iter().map(ToString::to_string).collect());
            }
            let Some(spec) = each.bundle.rollouts.iter().find(|r| r.name == rollout) else {
                return Reread::Keep(format!("rollout {rollout:?} is no longer in the files"));
            };
            let prepared = prepare::prepare(
                &self.host,
                &each.bundle,
                &[spec],
                &[],
                self.deterministic,
                None,
            )
            .await;
            if let Some(problems) = prepared.invalid.get(rollout) {
                return Reread::Refuse(problems.iter().map(ToString::to_string).collect());
            }
            let generation = match self.store.configuration(&each.fingerprint, now_ms()).await {
                Ok(g) => g,
                Err(e) => return Reread::Refuse(vec![e.to_string()]),
            };
            Reread::Adopt(Box::new(Current {
                spec: spec.clone(),
                plugins: Arc::new(prepared.plugins),
                metrics: Arc::new(prepare::backends(&each.bundle, Some(self.origin))),
                generation,
            }))
        })
    }
}

/// Whether the stored run ran this very spec, wherever the files were loaded from then
/// (see [`crate::spec::same_spec`]); a reversal in mode `new-rollout` counts as the spec
/// it reversed ([`reversal::ran_spec`]).
fn same_spec(row: &crate::store::RolloutRow, r: &RolloutSpec, files: &[PathBuf]) -> bool {
    reversal::ran_spec(row, r, &crate::spec::root_of(files, &r.file))
}

fn state_of(name: &str) -> State {
    match name {
        "succeeded" => State::Succeeded,
        "rolled-back" => State::RolledBack,
        "aborted" => State::Aborted,
        _ => State::Failed,
    }
}

/// The exit code of an outcome. A reversal that succeeded took the release back: for
/// whoever asked for the release, it rolled back.
pub(super) fn outcome_code(o: &Outcome) -> u8 {
    match o.state {
        State::Succeeded if o.reverses.is_some() => code::ROLLED_BACK,
        State::Succeeded => exit::OK,
        State::RolledBack => code::ROLLED_BACK,
        State::Aborted => code::ABORTED,
        State::Failed => code::FAILED,
        _ => code::WAITING,
    }
}
