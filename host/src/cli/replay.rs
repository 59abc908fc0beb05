//! `rollgate replay PATH… --metrics FILE`: "what would have happened if this had been
//! live". Every selected rollout runs whole — phases, verifications, the failure policy's
//! decisions, pauses that resume by themselves, rollbacks — over recorded metrics on a
//! simulated clock, and the timeline of decisions is printed. Use it to tune thresholds
//! and policies before trusting them.
//!
//! Read-only: the target is replaced by `none` (no command runs, no webhook is called) and
//! HTTP gates are not asked (they count as open; the timeline says how many were skipped).
//! The runs go to a throw-away store unless `--store` keeps them for `rollgate history`.
//!
//! Exit codes, as `rollgate run`: 0 every rollout succeeded, 5 one rolled back, 6 one was
//! aborted, 7 one failed, 8 one waits for an operator (an indefinite pause; see
//! `--promote-pauses`), 3 a plugin or the store failed, 4 invalid input.

use super::{Format, Out, exit, style};
use crate::engine::clock::{Clock, SimClock};
use crate::engine::state::{PauseReason, State};
use crate::engine::{Action, Engine, Outcome, setup};
use crate::metrics::replay::Replay;
use crate::spec::model::{RolloutSpec, TargetSpec};
use crate::store::{AuditRow, Store};
use clap::Args;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Arguments of `rollgate replay`.
#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// Spec files and folders (every *.yaml / *.yml below a folder).
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// The recorded metrics (OpenMetrics text with timestamps, or a JSON recording of
    /// `rollgate metrics record`), served under every backend name.
    #[arg(long, value_name = "FILE")]
    pub metrics: PathBuf,
    /// Only this rollout (repeatable; default: every rollout in the files).
    #[arg(long = "rollout", value_name = "NAME")]
    pub rollouts: Vec<String>,
    /// When the rollouts start: `start` (the recording's first sample, the default),
    /// `start+10m`, `end-1h`, or any time `rollgate run --start` takes.
    #[arg(long, default_value = "start", value_name = "T")]
    pub start: String,
    /// Promote through indefinite phase pauses as an operator would, instead of stopping
    /// there (exit 8).
    #[arg(long)]
    pub promote_pauses: bool,
    /// Keep the runs in this store (for `rollgate history`); default: a throw-away store.
    #[arg(long, value_name = "FILE")]
    pub store: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
    /// Where compiled plugins are cached (default: the user cache folder).
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
}

/// `rollgate replay`.
pub async fn run(args: ReplayArgs) -> u8 {
    let mut out = Out::default();
    let code = inner(&args, &mut out).await;
    out.flush();
    code
}

/// A throw-away folder removed when dropped (the replay's store).
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn scratch() -> std::io::Result<Scratch> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let dir = std::env::temp_dir().join(format!("rollgate-replay-{}-{nanos}", std::process::id()));
    std::fs::create_dir(&dir)?;
    Ok(Scratch(dir))
}

/// The rollout as a replay runs it: nothing outside is touched.
fn read_only(spec: &RolloutSpec) -> (RolloutSpec, usize) {
    let mut spec = spec.clone();
    spec.target = TargetSpec::None;
    let mut gates = 0;
    for phase in &mut spec.phases {
        gates += phase.gates.len();
        phase.gates.clear();
    }
    (spec, gates)
}

async fn inner(args: &ReplayArgs, out: &mut Out) -> u8 {
    let Some(bundle) = super::load_or_report(&args.paths, "rollgate replay", "replayed", out)
    else {
        return exit::INVALID_INPUT;
    };
    let selected = match super::select_rollouts(&bundle, &args.rollouts) {
        Ok(r) => r,
        Err(e) => {
            out.err(format!("rollgate replay: {e}"));
            return exit::INVALID_INPUT;
        }
    };
    let replay = match Replay::open(&args.metrics) {
        Ok(r) => r,
        Err(e) => {
            out.err(format!("rollgate replay: --metrics: {e}"));
            return exit::INVALID_INPUT;
        }
    };
    let (first, last) = replay.span_ms();
    let wall = crate::engine::clock::now_ms();
    let start = match super::time::parse_in_span(&args.start, first, last, wall) {
        Ok(t) => t,
        Err(e) => {
            out.err(format!("rollgate replay: --start: {e}"));
            return exit::INVALID_INPUT;
        }
    };
    let specs: Vec<(RolloutSpec, usize)> = selected.iter().map(|r| read_only(r)).collect();
    let rollouts: Vec<&RolloutSpec> = specs.iter().map(|(s, _)| s).collect();
    let backends = setup::replay_everywhere(&bundle, Arc::new(replay));
    let host = match super::plugin_host::host_with_cache(args.cache_dir.as_deref()) {
        Ok(h) => h,
        Err(e) => {
            out.err(format!("rollgate replay: {e}"));
            return exit::PLUGIN_ERROR;
        }
    };
    let plugins = match setup::plugins(&host, &bundle, &rollouts, true).await {
        Ok(p) => p,
        Err(problems) => {
            for p in &problems {
                out.err(format!("rollgate replay: {p}"));
            }
            return super::setup_exit(&problems);
        }
    };
    let (_scratch, store) = match open_store(args, out).await {
        Ok(s) => s,
        Err(code) => return code,
    };
    let sim = SimClock::new(start);
    let engine = Engine::alone(
        store.clone(),
        Arc::new(sim.clone()),
        plugins,
        Arc::new(backends),
        Duration::from_millis(10),
    );
    let measured = std::time::Instant::now();
    let mut ids = Vec::new();
    for r in &rollouts {
        match engine.create(r, "replay", "rollgate replay").await {
            Ok(id) => ids.push(id),
            Err(e) => {
                out.err(format!("rollgate replay: {e}"));
                return exit::PLUGIN_ERROR;
            }
        }
    }
    let max_rounds = rollouts.iter().map(|r| r.phases.len()).sum::<usize>() + 1;
    let outcomes = match drive(&engine, &sim, &ids, max_rounds, args.promote_pauses, out).await {
        Ok(o) => o,
        Err(code) => return code,
    };
    let took = measured.elapsed();
    let mut code = exit::OK;
    let mut reports = Vec::new();
    for ((id, outcome), (spec, gates)) in ids.iter().zip(&outcomes).zip(&specs) {
        let Some(outcome) = outcome else { continue };
        code = code.max(super::run::outcome_code(outcome));
        // The timeline goes on into the run that reversed this one, if any.
        let mut audit = Vec::new();
        for run in std::iter::once(*id).chain((outcome.id != *id).then_some(outcome.id)) {
            match store.audit(run).await {
                Ok(a) => audit.extend(a),
                Err(e) => {
                    out.err(format!("rollgate replay: {e}"));
                    return exit::PLUGIN_ERROR;
                }
            }
        }
        let end = audit.last().map_or(start, |a| a.event.at_ms);
        reports.push(Report {
            spec,
            gates: *gates,
            outcome,
            audit,
            end,
        });
    }
    match args.format {
        Format::Json => print_json(&reports, start, code, out),
        Format::Human => print_human(&reports, start, took, out),
    }
    code
}

/// The store the runs go to: `--store`, or one in a scratch folder removed when the
/// returned guard drops. Err: the exit code, after saying why.
async fn open_store(args: &ReplayArgs, out: &mut Out) -> Result<(Option<Scratch>, Store), u8> {
    let (scratch, store_path) = match &args.store {
        Some(path) => (None, path.clone()),
        None => match scratch() {
            Ok(s) => {
                let path = s.0.join("replay.db");
                (Some(s), path)
            }
            Err(e) => {
                out.err(format!(
                    "rollgate replay: cannot make a scratch folder for the store: {e}"
                ));
                return Err(exit::PLUGIN_ERROR);
            }
        },
    };
    match Store::open(&store_path).await {
        Ok(s) => Ok((scratch, s)),
        Err(e) => {
            out.err(format!("rollgate replay: {e}"));
            Err(exit::INVALID_INPUT)
        }
    }
}

/// Drive the created runs `ids` to their ends on the simulated clock: the outcome of each
/// (by index). Err: the exit code, after saying why.
async fn drive(
    engine: &Engine,
    sim: &SimClock,
    ids: &[i64],
    max_rounds: usize,
    promote_pauses: bool,
    out: &mut Out,
) -> Result<Vec<Option<Outcome>>, u8> {
    let mut outcomes: Vec<Option<Outcome>> = vec![None; ids.len()];
    // The run each rollout is at: a rollback in mode `new-rollout` goes on in a new run.
    let mut current = ids.to_vec();
    let mut pending: Vec<usize> = (0..ids.len()).collect();
    // Each round drives every unfinished rollout side by side until it ends or waits for an
    // operator; with --promote-pauses, an indefinite phase pause is promoted and the
    // rollout driven again.
    for _ in 0..max_rounds {
        if pending.is_empty() {
            break;
        }
        let actors: Vec<_> = pending.iter().map(|_| sim.actor()).collect();
        let mut tasks = Vec::new();
        for (&i, actor) in pending.iter().zip(actors) {
            let engine = engine.clone();
            let id = current[i];
            tasks.push(tokio::spawn(async move {
                let _actor = actor;
                (i, engine.drive(id).await)
            }));
        }
        let mut again = Vec::new();
        for task in tasks {
            match task.await {
                Ok((i, Ok(o))) => {
                    let step_pause = o.state == State::Paused(PauseReason::Step);
                    if promote_pauses && step_pause {
                        if let Err(e) = engine
                            .store
                            .request_action(
                                o.id,
                                Action::Promote.name(),
                                "replay",
                                "--promote-pauses",
                                sim.now_ms(),
                            )
                            .await
                        {
                            out.err(format!("rollgate replay: {e}"));
                            return Err(exit::PLUGIN_ERROR);
                        }
                        again.push(i);
                    }
                    current[i] = o.id;
                    outcomes[i] = Some(o);
                }
                Ok((_, Err(e))) => {
                    out.err(format!("rollgate replay: {e}"));
                    return Err(exit::PLUGIN_ERROR);
                }
                Err(e) => {
                    out.err(format!("rollgate replay: a rollout task failed: {e}"));
                    return Err(exit::PLUGIN_ERROR);
                }
            }
        }
        pending = again;
    }
    Ok(outcomes)
}

/// One replayed rollout, as the timeline shows it.
struct Report<'a> {
    /// The rollout as replayed (read-only).
    spec: &'a RolloutSpec,
    /// HTTP gates not asked.
    gates: usize,
    /// How it ended.
    outcome: &'a Outcome,
    /// Its audit events, in order.
    audit: Vec<AuditRow>,
    /// The time of its last event.
    end: i64,
}

fn print_json(reports: &[Report], start: i64, code: u8, out: &mut Out) {
    let rollouts: Vec<_> = reports
        .iter()
        .map(|r| {
            let timeline: Vec<_> = r
                .audit
                .iter()
                .map(|a| {
                    serde_json::json!({
                        "atMs": a.event.at_ms,
                        "offsetMs": a.event.at_ms - start,
                        "actor": a.event.actor,
                        "action": a.event.action,
                        "stateBefore": a.event.state_before,
                        "stateAfter": a.event.state_after,
                        "reason": a.event.reason,
                    })
                })
                .collect();
            serde_json::json!({
                "rollout": r.spec.name,
                "outcome": r.outcome.state.name(),
                "message": r.outcome.message,
                "durationMs": r.end - start,
                "gatesSkipped": r.gates,
                "timeline": timeline,
            })
        })
        .collect();
    out.line(
        serde_json::json!({
            "startMs": start,
            "exitCode": code,
            "rollouts": rollouts,
        })
        .to_string(),
    );
}

fn print_human(reports: &[Report], start: i64, took: Duration, out: &mut Out) {
    let colour = style::stdout_colour();
    for r in reports {
        out.line(format!(
            "{} — replayed from {} (target not touched{})",
            r.spec.name,
            super::time::rfc3339_ms(start),
            if r.gates > 0 {
                format!(", {} HTTP gate(s) not asked: counted as open", r.gates)
            } else {
                String::new()
            }
        ));
        let mut rows = Vec::new();
        for a in &r.audit {
            let e = &a.event;
            // Noise for a timeline of decisions: the create event, and steps to a
            // target that is not there.
            if e.action == "create" {
                continue;
            }
            let state = if e.state_before == e.state_after || e.state_before.is_empty() {
                e.state_after.clone()
            } else {
                format!("{} → {}", e.state_before, e.state_after)
            };
            rows.push(vec![
                super::status::offset(e.at_ms - start),
                e.actor.clone(),
                e.action.clone(),
                state,
                e.reason.clone(),
            ]);
        }
        for line in style::table(&rows) {
            out.line(format!("  {line}"));
        }
        let name = r.outcome.state.name();
        out.line(style::paint(
            colour,
            style::status_colour(&name),
            &format!(
                "{}: {} after {} — {}",
                r.spec.name,
                name,
                super::status::offset(r.end - start).trim_start_matches('+'),
                r.outcome.message
            ),
        ));
        out.line("");
    }
    out.err(format!(
        "replayed {} rollout(s) in {:.0?} of real time",
        reports.len(),
        took
    ));
}
