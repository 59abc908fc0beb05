//! `rollgate verify PATH…`: the CI dry-run. Runs the verifications of rollouts — every
//! phase with metrics and the background verification, or the ones named — with the real
//! plugins, backends and counting rules, and prints a verdict per metric with its values
//! and the reason. Read-only: no target is touched, no store is written, no policy asked.
//!
//! Modes (one is required):
//! - `--live`: against the configured backends now, measurements at their intervals, for at
//!   most `--max-duration`;
//! - `--replay FILE [--from T] [--to T]`: over a recording (OpenMetrics text or a rollgate
//!   JSON recording) served under every backend name, on a simulated clock — an hour of
//!   data in milliseconds. `T` is any time `rollgate run --start` takes, or `start`, `end`,
//!   `start+10m`, `end-5m` within the recording.
//!
//! Exit codes (the worst deciding metric wins; dry-run metrics never decide): 0 pass,
//! 1 fail, 2 inconclusive / no data / not complete within the window, 3 error (a plugin or
//! backend failed, or a plugin could not be set up), 4 invalid input.

use super::{Format, Out, exit, style};
use crate::engine::dry::{DryRun, MetricReport, Pace, Which, Window};
use crate::engine::setup;
use crate::metrics::replay::Replay;
use crate::metrics::{Backends, MetricsSource};
use crate::spec::model::{Bundle, RolloutSpec};
use crate::verify::MetricStatus;
use clap::{ArgGroup, Args};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Arguments of `rollgate verify`.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("mode").required(true).args(["live", "replay"])))]
pub struct VerifyArgs {
    /// Spec files and folders (every *.yaml / *.yml below a folder).
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Only this rollout (repeatable; default: every rollout in the files).
    #[arg(long = "rollout", value_name = "NAME")]
    pub rollouts: Vec<String>,
    /// Only this phase's verification (repeatable; `background` for the background
    /// verification; default: every phase with metrics, and the background).
    #[arg(long = "phase", value_name = "NAME")]
    pub phases: Vec<String>,
    /// Measure against the configured backends now, in real time.
    #[arg(long)]
    pub live: bool,
    /// With --live: stop after this long (metrics not complete by then are inconclusive);
    /// default 10m.
    #[arg(long, conflicts_with = "replay", value_name = "DURATION")]
    pub max_duration: Option<String>,
    /// Measure over this recording (OpenMetrics text with timestamps, or a JSON recording of
    /// `rollgate metrics record`), on a simulated clock.
    #[arg(long, value_name = "FILE")]
    pub replay: Option<PathBuf>,
    /// With --replay: when the verification starts (default: the recording's first sample).
    #[arg(long, requires = "replay", value_name = "T")]
    pub from: Option<String>,
    /// With --replay: no measurement after this (default: the recording's last sample).
    #[arg(long, requires = "replay", value_name = "T")]
    pub to: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
    /// Also write a JUnit XML report here: one test case per metric.
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// Where compiled plugins are cached (default: the user cache folder).
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
}

/// What went wrong before anything could be measured.
struct Failure {
    code: u8,
    lines: Vec<String>,
}

fn invalid(line: impl Into<String>) -> Failure {
    Failure {
        code: exit::INVALID_INPUT,
        lines: vec![line.into()],
    }
}

/// `rollgate verify`.
pub async fn run(args: VerifyArgs) -> u8 {
    let mut out = Out::default();
    let code = match inner(&args, &mut out).await {
        Ok(code) => code,
        Err(f) => {
            for line in f.lines {
                out.err(format!("rollgate verify: {line}"));
            }
            f.code
        }
    };
    out.flush();
    code
}

async fn inner(args: &VerifyArgs, out: &mut Out) -> Result<u8, Failure> {
    let Some(bundle) = super::load_or_report(&args.paths, "rollgate verify", "verified", out)
    else {
        return Ok(exit::INVALID_INPUT);
    };
    let plan = plan(&bundle, &args.rollouts, &args.phases)?;
    let now = crate::engine::clock::now_ms();
    let (backends, mut window) = match &args.replay {
        Some(file) => replay_backends(&bundle, file, args.from.as_deref(), args.to.as_deref())?,
        None => {
            let max_text = args.max_duration.as_deref().unwrap_or("10m");
            let max = rollgate_duration::parse_ms(max_text)
                .map_err(|e| invalid(format!("--max-duration: {e}")))?;
            let backends = setup::backends(&bundle, Some(now)).map_err(|errors| Failure {
                code: exit::INVALID_INPUT,
                lines: errors.iter().map(ToString::to_string).collect(),
            })?;
            let window = Window {
                start_ms: now,
                end_ms: now.saturating_add(i64::try_from(max).unwrap_or(i64::MAX)),
                pace: Pace::Live,
                end_name: format!("--max-duration {max_text}"),
            };
            (backends, window)
        }
    };
    let host =
        super::plugin_host::host_with_cache(args.cache_dir.as_deref()).map_err(|e| Failure {
            code: exit::PLUGIN_ERROR,
            lines: vec![e.to_string()],
        })?;
    let rollouts: Vec<&RolloutSpec> = plan.iter().map(|(r, _)| *r).collect();
    let deterministic = window.pace == Pace::Simulated;
    let plugins = setup::plugins(&host, &bundle, &rollouts, deterministic)
        .await
        .map_err(|problems| Failure {
            code: super::setup_exit(&problems),
            lines: problems.iter().map(ToString::to_string).collect(),
        })?;
    // A live window starts once the plugins are ready: loading (compiling) them must not
    // eat into --max-duration.
    if window.pace == Pace::Live {
        let length = window.end_ms - window.start_ms;
        window.start_ms = crate::engine::clock::now_ms();
        window.end_ms = window.start_ms.saturating_add(length);
    }
    let dry = DryRun {
        plugins: &plugins,
        metrics: Arc::new(backends) as Arc<dyn MetricsSource>,
    };
    // Every verification runs side by side from the same start: a live run takes as long
    // as the longest, not the sum.
    let (dry, window) = (&dry, &window);
    let runs = plan
        .iter()
        .flat_map(|(r, whichs)| whichs.iter().map(move |w| dry.run(r, *w, window)));
    let reports: Vec<MetricReport> = futures::future::join_all(runs)
        .await
        .into_iter()
        .flatten()
        .collect();
    let code = verdict_code(&reports);
    if let Some(path) = &args.junit {
        std::fs::write(path, junit(&reports, window)).map_err(|e| Failure {
            code: exit::INVALID_INPUT,
            lines: vec![format!(
                "cannot write the JUnit report {}: {e}",
                path.display()
            )],
        })?;
    }
    match args.format {
        Format::Json => out.line(
            serde_json::json!({
                "outcome": outcome_name(code),
                "exitCode": code,
                "mode": if args.replay.is_some() { "replay" } else { "live" },
                "window": {"fromMs": window.start_ms, "toMs": window.end_ms},
                "metrics": reports,
            })
            .to_string(),
        ),
        Format::Human => human(&reports, code, window, out),
    }
    Ok(code)
}

/// The verifications to run: the rollouts asked for (all by default), each with the phases
/// asked for (by default every phase with metrics, then the background).
fn plan<'b>(
    bundle: &'b Bundle,
    rollouts: &[String],
    phases: &[String],
) -> Result<Vec<(&'b RolloutSpec, Vec<Which>)>, Failure> {
    let selected = super::select_rollouts(bundle, rollouts).map_err(invalid)?;
    let mut plan = Vec::new();
    let mut found = vec![false; phases.len()];
    for r in selected {
        let mut whichs = Vec::new();
        for (i, p) in r.phases.iter().enumerate() {
            if let Some(k) = phases.iter().position(|n| n == &p.name) {
                found[k] = true;
                whichs.push(Which::Phase(i));
            } else if phases.is_empty() && !p.metrics.is_empty() {
                whichs.push(Which::Phase(i));
            }
        }
        if let Some(bg) = &r.background
            && !bg.metrics.is_empty()
        {
            if let Some(k) = phases.iter().position(|n| n == "background") {
                found[k] = true;
                whichs.push(Which::Background);
            } else if phases.is_empty() {
                whichs.push(Which::Background);
            }
        }
        if !whichs.is_empty() {
            plan.push((r, whichs));
        }
    }
    if let Some(k) = found.iter().position(|f| !f) {
        return Err(invalid(format!(
            "no selected rollout has a phase named {:?} (or, for `background`, a background verification)",
            phases[k]
        )));
    }
    let empty: Vec<String> = plan
        .iter()
        .flat_map(|(r, whichs)| {
            whichs.iter().filter_map(move |w| match w {
                Which::Phase(i) if r.phases[*i].metrics.is_empty() => {
                    Some(format!("{}/{}", r.name, r.phases[*i].name))
                }
                _ => None,
            })
        })
        .collect();
    if !empty.is_empty() {
        return Err(invalid(format!(
            "these phases have no metrics to verify: {}",
            empty.join(", ")
        )));
    }
    if plan.is_empty() {
        return Err(invalid(
            "the selected rollouts have no metrics: nothing to verify",
        ));
    }
    Ok(plan)
}

/// The recording served under every declared backend name, and the window within it.
fn replay_backends(
    bundle: &Bundle,
    file: &Path,
    from: Option<&str>,
    to: Option<&str>,
) -> Result<(Backends, Window), Failure> {
    let replay = Replay::open(file).map_err(|e| invalid(format!("--replay: {e}")))?;
    let (first, last) = replay.span_ms();
    let now = crate::engine::clock::now_ms();
    let start = match from {
        Some(t) => super::time::parse_in_span(t, first, last, now)
            .map_err(|e| invalid(format!("--from: {e}")))?,
        None => first,
    };
    let end = match to {
        Some(t) => super::time::parse_in_span(t, first, last, now)
            .map_err(|e| invalid(format!("--to: {e}")))?,
        None => last,
    };
    if end < start {
        return Err(invalid(format!(
            "--to ({}) is before --from ({})",
            super::time::rfc3339_ms(end),
            super::time::rfc3339_ms(start)
        )));
    }
    let backends = setup::replay_everywhere(bundle, Arc::new(replay));
    let window = Window {
        start_ms: start,
        end_ms: end,
        pace: Pace::Simulated,
        end_name: format!("the end of the window ({})", super::time::rfc3339_ms(end)),
    };
    Ok((backends, window))
}

/// What a metric's status means for the exit code.
fn status_code(status: MetricStatus) -> u8 {
    match status {
        MetricStatus::Successful => exit::OK,
        MetricStatus::Failed => exit::PROBLEMS,
        MetricStatus::Error => exit::PLUGIN_ERROR,
        MetricStatus::Inconclusive
        | MetricStatus::NoData
        | MetricStatus::Terminated
        | MetricStatus::Pending
        | MetricStatus::Running => exit::NO_DATA,
    }
}

/// The worst deciding metric's code, by severity: error > fail > inconclusive > pass.
fn verdict_code(reports: &[MetricReport]) -> u8 {
    let rank = |code: u8| match code {
        exit::PLUGIN_ERROR => 3,
        exit::PROBLEMS => 2,
        exit::NO_DATA => 1,
        _ => 0,
    };
    reports
        .iter()
        .filter(|r| !r.dry_run)
        .map(|r| status_code(r.status))
        .max_by_key(|c| rank(*c))
        .unwrap_or(exit::OK)
}

fn outcome_name(code: u8) -> &'static str {
    match code {
        exit::OK => "pass",
        exit::PROBLEMS => "fail",
        exit::NO_DATA => "inconclusive",
        _ => "error",
    }
}

/// Values as people read them: up to 12, the last ones when there are more.
fn values(r: &MetricReport) -> String {
    let all: Vec<String> = r
        .observations
        .iter()
        .map(|o| match o.value {
            Some(v) => format!("{v:.4}"),
            None => o.verdict.name().to_string(),
        })
        .collect();
    const SHOWN: usize = 12;
    if all.len() > SHOWN {
        format!(
            "… {} more, {}",
            all.len() - SHOWN,
            all[all.len() - SHOWN..].join(" ")
        )
    } else {
        all.join(" ")
    }
}

fn human(reports: &[MetricReport], code: u8, window: &Window, out: &mut Out) {
    let colour = style::stdout_colour();
    let mut rows = vec![
        [
            "ROLLOUT",
            "VERIFICATION",
            "METRIC",
            "STATUS",
            "✔",
            "✖",
            "?",
            "∅",
            "⚠",
            "LAST",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for r in reports {
        let c = &r.counters;
        let last = r
            .observations
            .iter()
            .rev()
            .find_map(|o| o.value)
            .map(|v| format!("{v:.4}"))
            .unwrap_or_else(|| "-".into());
        rows.push(vec![
            r.rollout.clone(),
            r.verification.clone(),
            if r.dry_run {
                format!("{} (dry-run)", r.metric)
            } else {
                r.metric.clone()
            },
            r.status.name().to_string(),
            c.passes.to_string(),
            c.failures.to_string(),
            c.inconclusives.to_string(),
            c.no_data.to_string(),
            c.errors.to_string(),
            last,
        ]);
    }
    let lines = style::table(&rows);
    if let Some(header) = lines.first() {
        out.line(header);
    }
    for (line, r) in lines.iter().skip(1).zip(reports) {
        out.line(style::paint(
            colour,
            style::status_colour(r.status.name()),
            line,
        ));
        out.line(format!("    {}", r.reason));
        let v = values(r);
        if !v.is_empty() {
            out.line(format!("    values: {v}"));
        }
    }
    let count = |s: MetricStatus| reports.iter().filter(|r| r.status == s).count();
    let mut parts = Vec::new();
    for s in [
        MetricStatus::Successful,
        MetricStatus::Failed,
        MetricStatus::Inconclusive,
        MetricStatus::NoData,
        MetricStatus::Error,
        MetricStatus::Terminated,
    ] {
        let n = count(s);
        if n > 0 {
            parts.push(format!("{n} {}", s.name()));
        }
    }
    out.line(format!(
        "{}: {} metric(s) from {} to {}: {}",
        outcome_name(code),
        reports.len(),
        super::time::rfc3339_ms(window.start_ms),
        super::time::rfc3339_ms(window.end_ms),
        parts.join(", ")
    ));
}

/// XML text and attribute escaping.
fn xml(text: &str) -> String {
    let mut s = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => s.push_str("&amp;"),
            '<' => s.push_str("&lt;"),
            '>' => s.push_str("&gt;"),
            '"' => s.push_str("&quot;"),
            '\'' => s.push_str("&apos;"),
            // Control characters are not allowed in XML 1.0, even escaped.
            c if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r') => s.push('\u{fffd}'),
            c => s.push(c),
        }
    }
    s
}

/// The JUnit XML report: a suite per verification (rollout/phase), a test case per metric.
/// Failed metrics are `<failure>`, errors `<error>`, and what could not be decided
/// (inconclusive, no data, not complete) is `<skipped>`; each carries the explanation and
/// the values. A dry-run metric never fails the report: it is a passing case whose
/// result is in its `<system-out>`.
pub fn junit(reports: &[MetricReport], window: &Window) -> String {
    let mut suites: Vec<(String, Vec<&MetricReport>)> = Vec::new();
    for r in reports {
        let name = format!("{}/{}", r.rollout, r.verification);
        match suites.iter_mut().find(|(n, _)| *n == name) {
            Some((_, list)) => list.push(r),
            None => suites.push((name, vec![r])),
        }
    }
    let kind = |r: &MetricReport| -> &'static str {
        if r.dry_run {
            return "pass";
        }
        match status_code(r.status) {
            exit::OK => "pass",
            exit::PROBLEMS => "failure",
            exit::PLUGIN_ERROR => "error",
            _ => "skipped",
        }
    };
    let tally = |list: &[&MetricReport], k: &str| list.iter().filter(|r| kind(r) == k).count();
    let seconds = |ms: i64| format!("{:.3}", ms.max(0) as f64 / 1000.0);
    let all: Vec<&MetricReport> = reports.iter().collect();
    let mut x = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    x.push_str(&format!(
        "<testsuites name=\"rollgate verify\" tests=\"{}\" failures=\"{}\" errors=\"{}\" skipped=\"{}\" time=\"{}\">\n",
        all.len(),
        tally(&all, "failure"),
        tally(&all, "error"),
        tally(&all, "skipped"),
        seconds(window.end_ms - window.start_ms),
    ));
    for (name, list) in &suites {
        let time = list.iter().map(|r| r.elapsed_ms).max().unwrap_or(0);
        x.push_str(&format!(
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{}\" errors=\"{}\" skipped=\"{}\" time=\"{}\" timestamp=\"{}\">\n",
            xml(name),
            list.len(),
            tally(list, "failure"),
            tally(list, "error"),
            tally(list, "skipped"),
            seconds(time),
            xml(super::time::rfc3339_ms(window.start_ms).trim_end_matches('Z')),
        ));
        for r in list {
            x.push_str(&format!(
                "    <testcase classname=\"{}\" name=\"{}\" time=\"{}\"",
                xml(&format!("{}.{}", r.rollout, r.verification)),
                xml(&r.metric),
                seconds(r.elapsed_ms)
            ));
            let detail = format!(
                "{}\nplugin: {}\ncounts: {} passed, {} failed, {} inconclusive, {} no data, {} errors\nvalues: {}",
                r.reason,
                r.plugin,
                r.counters.passes,
                r.counters.failures,
                r.counters.inconclusives,
                r.counters.no_data,
                r.counters.errors,
                values(r)
            );
            let body = match kind(r) {
                "failure" | "error" => {
                    let tag = kind(r);
                    format!(
                        "      <{tag} message=\"{}\" type=\"{}\">{}</{tag}>\n",
                        xml(&r.reason),
                        r.status.name(),
                        xml(&detail)
                    )
                }
                "skipped" => format!("      <skipped message=\"{}\"/>\n", xml(&r.reason)),
                _ => String::new(),
            };
            let system_out = if r.dry_run {
                format!(
                    "      <system-out>dry-run metric (does not decide): {}</system-out>\n",
                    xml(&detail)
                )
            } else if !matches!(kind(r), "failure" | "error") {
                format!("      <system-out>{}</system-out>\n", xml(&detail))
            } else {
                String::new()
            };
            x.push_str(">\n");
            x.push_str(&body);
            x.push_str(&system_out);
            x.push_str("    </testcase>\n");
        }
        x.push_str("  </testsuite>\n");
    }
    x.push_str("</testsuites>\n");
    x
}
