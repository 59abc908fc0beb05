//! Status for people: `rollgate get NAME [--watch]` (the live tree of a rollout, read from
//! the store a runner writes, or from a server's API with `--server URL`) and `rollgate
//! history NAME` (its runs and audit log). The same tree is drawn live by `rollgate run`
//! on a terminal; `get` adds who drives an unfinished run ([`with_runner`]), saying so
//! plainly when that runner stopped reporting.
//!
//! Exit codes: 0 shown, 3 the store or server cannot be read, 4 no such rollout or run (or
//! a token the server refused).

use super::remote::{Remote, segment};
use super::style::{self, Colour, glyph, paint, status_colour};
use super::{Format, Out, exit};
use crate::engine::Progress;
use crate::engine::runner::RunnerView;
use crate::server::v2::{self, History, Snapshot};
use crate::server::views::HistoryError;
use crate::store::{Location, Store};
use clap::Args;
use std::time::Duration;

/// Arguments of `rollgate get`.
#[derive(Debug, Args)]
pub struct GetArgs {
    /// The rollout's name.
    pub rollout: String,
    /// The state store the runner uses: a SQLite file or a `postgres://` URL (`--db` is the
    /// same option).
    #[arg(
        long,
        alias = "db",
        default_value = "rollgate.db",
        value_name = "FILE|URL"
    )]
    pub store: Location,
    /// Ask a `rollgate serve` API instead of a store file (http://HOST:PORT).
    #[arg(long, value_name = "URL")]
    pub server: Option<String>,
    /// The API token (default: $ROLLGATE_TOKEN).
    #[arg(long)]
    pub token: Option<String>,
    /// Keep showing the rollout as it changes, until its run ends.
    #[arg(long, short = 'w')]
    pub watch: bool,
    /// With --watch: how often to look, e.g. 500ms.
    #[arg(long, default_value = "1s", value_name = "DURATION")]
    pub interval: String,
    /// Output format (with --watch and json: one JSON line per change).
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
}

/// Arguments of `rollgate history`.
#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// The rollout's name.
    pub rollout: String,
    /// The state store the runner uses: a SQLite file or a `postgres://` URL (`--db` is the
    /// same option).
    #[arg(
        long,
        alias = "db",
        default_value = "rollgate.db",
        value_name = "FILE|URL"
    )]
    pub store: Location,
    /// Ask a `rollgate serve` API instead of a store file (http://HOST:PORT).
    #[arg(long, value_name = "URL")]
    pub server: Option<String>,
    /// The API token (default: $ROLLGATE_TOKEN).
    #[arg(long)]
    pub token: Option<String>,
    /// The audit log of this run (default: the latest).
    #[arg(long)]
    pub run: Option<i64>,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
}

/// The tree of one rollout, like `kubectl argo rollouts get`: a header, then the phases
/// with their state glyphs and, under the active phase and the background, each metric's
/// counts and last value.
/// What the status tree and the history say of a rollout whose documents do not load.
fn invalid_lines(invalid: &crate::store::InvalidSpec) -> Vec<String> {
    let mut lines = vec![format!(
        "invalid-spec since {}: the documents of {:?} do not load ({} problem(s)):",
        super::time::rfc3339_ms(invalid.since_ms),
        invalid.name,
        invalid.problems.len()
    )];
    lines.extend(invalid.problems.iter().map(|p| format!("  {p}")));
    lines
}

pub fn tree(p: &Progress, colour: bool) -> Vec<String> {
    let state = paint(
        colour,
        status_colour(&p.state),
        &format!("{} {}", glyph(&p.state), p.state),
    );
    let dim = |t: &str| paint(colour, Colour::Dim, t);
    let reverses = p
        .reverses
        .map(|n| format!(", reverses run {n}"))
        .unwrap_or_default();
    // A rollout that never ran (its documents do not load): nothing but its state yet.
    if p.run == 0 {
        return vec![
            format!("{} {} (no run yet)", dim("Name:    "), p.rollout),
            format!("{} {state}", dim("Status:  ")),
            format!("{} {}", dim("Message: "), p.message),
        ];
    }
    let mut lines = vec![
        format!(
            "{} {} (run {}{reverses})",
            dim("Name:    "),
            p.rollout,
            p.run
        ),
        format!("{} {state}", dim("Status:  ")),
        format!("{} {}", dim("Message: "), p.message),
        format!("{} {}", dim("Strategy:"), p.strategy),
        format!(
            "{} {}/{} {}",
            dim("Phase:   "),
            (p.phase + 1).min(p.phase_count),
            p.phase_count,
            p.phase_name
        ),
        format!("{} {}", dim("Weight:  "), number(p.weight)),
        format!(
            "{} {} (stable) → {} (canary)",
            dim("Versions:"),
            p.stable_version,
            p.canary_version
        ),
        String::new(),
    ];
    let metric_lines = |background: bool, last_branch: bool| -> Vec<String> {
        let ms: Vec<_> = p
            .metrics
            .iter()
            .filter(|m| m.background == background)
            .collect();
        let rows: Vec<Vec<String>> = ms
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let [ok, fail, inc, nodata, err] = m.counts;
                let branch = if i + 1 == ms.len() {
                    "└─"
                } else {
                    "├─"
                };
                vec![
                    format!(
                        "{}{branch} {} {}",
                        if last_branch { "   " } else { "│  " },
                        glyph(&m.status),
                        m.name
                    ),
                    m.status.clone(),
                    format!("✔ {ok}  ✖ {fail}  ? {inc}  ∅ {nodata}  ⚠ {err}"),
                    m.last_value
                        .map(|v| format!("last {}", number(v)))
                        .unwrap_or_default(),
                ]
            })
            .collect();
        style::table(&rows)
            .into_iter()
            .zip(&ms)
            .map(|(line, m)| paint(colour, status_colour(&m.status), &line))
            .collect()
    };
    for (i, phase) in p.phases.iter().enumerate() {
        let last = i + 1 == p.phases.len();
        let branch = if last { "└─" } else { "├─" };
        let (g, name) = match phase.status.as_str() {
            "done" => ("✔", "done"),
            "active" => (glyph(&p.state), p.state.as_str()),
            _ => ("○", "pending"),
        };
        let line = format!(
            "{branch} {g} {}  weight {}  {name}",
            phase.name,
            number(phase.weight)
        );
        lines.push(paint(colour, status_colour(name), &line));
        if phase.status == "active" {
            lines.extend(metric_lines(false, last));
        }
    }
    if p.metrics.iter().any(|m| m.background) {
        lines.push("background".to_string());
        lines.extend(metric_lines(true, true));
    }
    lines
}

/// Add who drives the run to a [`tree`]'s header (its block up to the first blank line): a
/// runner that stopped reporting or was stopped in red, with what to do.
pub fn with_runner(lines: &mut Vec<String>, runner: &RunnerView, colour: bool) {
    let text = if runner.is_gone() {
        paint(colour, Colour::Red, &format!("⚠ {}", runner.message))
    } else {
        runner.message.clone()
    };
    let line = format!("{} {text}", paint(colour, Colour::Dim, "Runner:  "));
    let at = lines
        .iter()
        .position(String::is_empty)
        .unwrap_or(lines.len());
    lines.insert(at, line);
}

/// 10, 12.5, 0.0123: no trailing zeros.
fn number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        let s = format!("{v:.4}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

/// `rollgate get`.
pub async fn get(args: GetArgs) -> u8 {
    let mut out = Out::default();
    let code = get_inner(&args, &mut out).await;
    out.flush();
    code
}

async fn open(path: &Location, out: &mut Out) -> Option<Store> {
    if !path.exists() {
        out.err(format!(
            "rollgate: no store at {path}; name the runner's store with --store"
        ));
        return None;
    }
    match Store::open_existing_at(path).await {
        Ok(s) => Some(s),
        Err(e) => {
            out.err(format!("rollgate: {e}"));
            None
        }
    }
}

fn json_of(s: &Snapshot) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

/// Where `get` and `history` read from: a store file, or a server's API.
enum Source {
    Local(Store),
    Remote(Remote),
}

impl Source {
    async fn open(
        store: &Location,
        server: Option<&str>,
        token: Option<&str>,
        out: &mut Out,
    ) -> Option<Source> {
        match server {
            Some(url) => Some(Source::Remote(Remote::new(url, token))),
            None => open(store, out).await.map(Source::Local),
        }
    }

    /// Where the rollout was looked for, for messages.
    fn place(&self, store: &Location) -> String {
        match self {
            Source::Local(_) => store.to_string(),
            Source::Remote(_) => "the server".to_string(),
        }
    }

    /// The rollout's latest run, in the v2 shape `--format json` prints.
    async fn snapshot(&self, name: &str) -> Result<Option<Snapshot>, (u8, String)> {
        match self {
            Source::Local(store) => v2::snapshot(store, name)
                .await
                .map_err(|e| (exit::PLUGIN_ERROR, e)),
            Source::Remote(remote) => {
                match remote.get_v2(&format!("/rollouts/{}", segment(name))).await {
                    Ok(s) => Ok(Some(s)),
                    Err(e)
                        if e.code == exit::INVALID_INPUT
                            && e.message.contains("no rollout named") =>
                    {
                        Ok(None)
                    }
                    Err(e) => Err((e.code, e.message)),
                }
            }
        }
    }
}

async fn get_inner(args: &GetArgs, out: &mut Out) -> u8 {
    let Some(source) = Source::open(
        &args.store,
        args.server.as_deref(),
        args.token.as_deref(),
        out,
    )
    .await
    else {
        return exit::INVALID_INPUT;
    };
    let interval = match rollgate_duration::parse_ms(&args.interval) {
        Ok(ms) => Duration::from_millis(ms.max(50)),
        Err(e) => {
            out.err(format!("rollgate: --interval: {e}"));
            return exit::INVALID_INPUT;
        }
    };
    let colour = style::stdout_colour();
    let mut shown = String::new();
    let mut drawn_lines = 0usize;
    loop {
        let snap = match source.snapshot(&args.rollout).await {
            Ok(Some(s)) => s,
            Ok(None) => {
                out.err(format!(
                    "rollgate: no rollout named {:?} in {}",
                    args.rollout,
                    source.place(&args.store)
                ));
                return exit::INVALID_INPUT;
            }
            Err((code, e)) => {
                out.err(format!("rollgate: {e}"));
                return code;
            }
        };
        let text = match args.format {
            Format::Json => json_of(&snap),
            Format::Human => {
                let mut lines = tree(&snap.progress.to_engine(), colour);
                if let Some(invalid) = &snap.invalid_spec {
                    lines.extend(invalid_lines(invalid));
                }
                if let Some(runner) = &snap.runner {
                    with_runner(&mut lines, runner, colour);
                }
                lines.push(paint(
                    colour,
                    Colour::Dim,
                    &format!("updated {}", super::time::rfc3339_ms(snap.updated_ms)),
                ));
                lines.join("\n")
            }
        };
        if !args.watch {
            out.line(text);
            return exit::OK;
        }
        if text != shown {
            // On a terminal the tree is redrawn in place; elsewhere each change is appended.
            if colour && args.format == Format::Human && drawn_lines > 0 {
                out.line(format!("\x1b[{drawn_lines}A\x1b[J{text}"));
            } else {
                out.line(&text);
            }
            out.flush();
            drawn_lines = text.lines().count();
            shown = text;
        }
        if snap.finished {
            return exit::OK;
        }
        tokio::time::sleep(interval).await;
    }
}

/// `rollgate history`.
pub async fn history(args: HistoryArgs) -> u8 {
    let mut out = Out::default();
    let code = history_inner(&args, &mut out).await;
    out.flush();
    code
}

async fn history_inner(args: &HistoryArgs, out: &mut Out) -> u8 {
    let Some(source) = Source::open(
        &args.store,
        args.server.as_deref(),
        args.token.as_deref(),
        out,
    )
    .await
    else {
        return exit::INVALID_INPUT;
    };
    let found = match &source {
        Source::Local(store) => v2::history(store, &args.rollout, args.run)
            .await
            .map_err(|e| match e {
                HistoryError::NoRollout => (
                    exit::INVALID_INPUT,
                    format!("no rollout named {:?} in {}", args.rollout, args.store),
                ),
                HistoryError::NoRun(runs) => {
                    let known: Vec<String> = runs.iter().map(ToString::to_string).collect();
                    (
                        exit::INVALID_INPUT,
                        format!(
                            "{:?} has no run {} (runs: {})",
                            args.rollout,
                            args.run.unwrap_or_default(),
                            known.join(", ")
                        ),
                    )
                }
                HistoryError::Store(e) => (exit::PLUGIN_ERROR, e),
            }),
        Source::Remote(remote) => {
            let mut path = format!("/rollouts/{}/history", segment(&args.rollout));
            if let Some(run) = args.run {
                path.push_str(&format!("?run={run}"));
            }
            remote
                .get_v2::<History>(&path)
                .await
                .map_err(|e| (e.code, e.message))
        }
    };
    let document = match found {
        Ok(h) => h,
        Err((code, e)) => {
            out.err(format!("rollgate: {e}"));
            return code;
        }
    };
    let history = &document.history;
    let runs = &history.runs;
    if let (Some(invalid), Format::Human) = (&history.invalid_spec, args.format) {
        out.line(invalid_lines(invalid).join("\n"));
        if runs.is_empty() {
            return exit::OK;
        }
        out.line("");
    }
    if runs.is_empty() && args.format == Format::Json {
        out.line(serde_json::to_string(&history).unwrap_or_default());
        return exit::OK;
    }
    let Some(chosen) = runs.iter().find(|r| r.run == history.audit_run) else {
        out.err(format!(
            "rollgate: the history of {:?} names no run {}",
            args.rollout, history.audit_run
        ));
        return exit::PLUGIN_ERROR;
    };
    let time = super::time::rfc3339_ms;
    match args.format {
        Format::Json => out.line(serde_json::to_string(&document).unwrap_or_default()),
        Format::Human => {
            let colour = style::stdout_colour();
            let mut rows = vec![
                ["RUN", "STATE", "STARTED", "LAST CHANGE", "REVERSES"]
                    .map(String::from)
                    .to_vec(),
            ];
            for r in runs {
                rows.push(vec![
                    r.run.to_string(),
                    format!("{} {}", glyph(&r.state), r.state),
                    time(r.created_ms),
                    time(r.updated_ms),
                    r.reverses.map(|n| format!("run {n}")).unwrap_or_default(),
                ]);
            }
            for (line, r) in style::table(&rows)
                .iter()
                .zip(std::iter::once(None).chain(runs.iter().map(Some)))
            {
                let c = r.map_or(Colour::Plain, |r| status_colour(&r.state));
                out.line(paint(colour, c, line));
            }
            out.line("");
            out.line(format!("audit log of run {}:", chosen.run));
            let start = chosen.created_ms;
            let mut rows = vec![
                ["TIME", "+", "ACTOR", "ACTION", "STATE", "REASON"]
                    .map(String::from)
                    .to_vec(),
            ];
            for e in &history.audit {
                let state = if e.state_before == e.state_after || e.state_before.is_empty() {
                    e.state_after.clone()
                } else {
                    format!("{} → {}", e.state_before, e.state_after)
                };
                rows.push(vec![
                    time(e.at_ms),
                    offset(e.at_ms - start),
                    e.actor.clone(),
                    e.action.clone(),
                    state,
                    e.reason.clone(),
                ]);
            }
            for line in style::table(&rows) {
                out.line(line);
            }
        }
    }
    exit::OK
}

/// `+1h02m03s` since the start of a run.
pub fn offset(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    let (h, m, s) = (s / 3600, s % 3600 / 60, s % 60);
    if h > 0 {
        format!("+{h}h{m:02}m{s:02}s")
    } else {
        format!("+{m:02}m{s:02}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{MetricProgress, PhaseProgress};

    fn progress() -> Progress {
        Progress {
            rollout: "checkout".into(),
            run: 2,
            state: "progressing".into(),
            strategy: "canary".into(),
            stable_version: "v1".into(),
            canary_version: "v2".into(),
            phases: vec![
                PhaseProgress {
                    name: "canary-10".into(),
                    weight: 10.0,
                    status: "done".into(),
                },
                PhaseProgress {
                    name: "canary-50".into(),
                    weight: 50.0,
                    status: "active".into(),
                },
                PhaseProgress {
                    name: "full".into(),
                    weight: 100.0,
                    status: "pending".into(),
                },
            ],
            phase: 1,
            phase_count: 3,
            phase_name: "canary-50".into(),
            weight: 50.0,
            message: "verifying phase \"canary-50\"".into(),
            metrics: vec![
                MetricProgress {
                    name: "error-ratio".into(),
                    background: false,
                    status: "running".into(),
                    counts: [3, 1, 0, 0, 2],
                    last_value: Some(0.0125),
                    message: "running: 3 passes".into(),
                },
                MetricProgress {
                    name: "saturation".into(),
                    background: true,
                    status: "failed".into(),
                    counts: [0, 2, 0, 0, 0],
                    last_value: None,
                    message: "failed: 2 fails > failureLimit 1".into(),
                },
            ],
            failures: Vec::new(),
            target: None,
            reverses: None,
        }
    }

    #[test]
    fn the_tree_shows_header_phases_and_metrics() {
        let lines = tree(&progress(), false);
        let text = lines.join("\n");
        for expected in [
            "Name:     checkout (run 2)",
            "Status:   ◌ progressing",
            "Strategy: canary",
            "Phase:    2/3 canary-50",
            "Weight:   50",
            "Versions: v1 (stable) → v2 (canary)",
            "├─ ✔ canary-10  weight 10  done",
            "├─ ◌ canary-50  weight 50  progressing",
            "│  └─ ◌ error-ratio  running  ✔ 3  ✖ 1  ? 0  ∅ 0  ⚠ 2  last 0.0125",
            "└─ ○ full  weight 100  pending",
            "background\n   └─ ✖ saturation  failed  ✔ 0  ✖ 2  ? 0  ∅ 0  ⚠ 0",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in\n{text}");
        }
        assert!(!text.contains('\x1b'), "no colour off a terminal");
        assert!(tree(&progress(), true).join("\n").contains("\x1b[31m"));
        // A run that takes back what another rolled out says which.
        let reversal = Progress {
            reverses: Some(1),
            ..progress()
        };
        assert!(tree(&reversal, false)[0].ends_with("checkout (run 2, reverses run 1)"));
    }

    #[test]
    fn the_runner_joins_the_header() {
        let view = |stopped_ms, stale| {
            RunnerView {
            id: 3,
            host: "build-3".into(),
            pid: 99,
            command: "run".into(),
            started_ms: 0,
            heartbeat_ms: 0,
            period_ms: 5_000,
            stopped_ms,
            stale,
            message: "runner on build-3 stopped reporting at 1970-01-01 00:00:00 UTC; the run is not progressing — restart `rollgate run` on this store".into(),
        }
        };
        let mut lines = tree(&progress(), false);
        with_runner(&mut lines, &view(None, true), false);
        let at = lines.iter().position(String::is_empty).expect("blank line");
        assert_eq!(
            lines[at - 1],
            "Runner:   ⚠ runner on build-3 stopped reporting at 1970-01-01 00:00:00 UTC; the run is not progressing — restart `rollgate run` on this store"
        );
        let mut lines = tree(&progress(), true);
        with_runner(&mut lines, &view(Some(1), false), true);
        assert!(lines.iter().any(|l| l.contains("\x1b[31m⚠ runner")));
    }

    #[test]
    fn offsets_and_numbers() {
        assert_eq!(offset(0), "+00m00s");
        assert_eq!(offset(3_723_000), "+1h02m03s");
        assert_eq!(number(10.0), "10");
        assert_eq!(number(12.5), "12.5");
        assert_eq!(number(0.012_34), "0.0123");
    }
}
