//! The detail document's phases and metrics: every metric of every phase and of the
//! background, with its points, counts, status, limits as a checklist and the lines its
//! plugin reports.
//!
//! A metric of the phase the run is in (and of the background) has its counters in the
//! checkpoint. A metric of an earlier phase has only its points: they are replayed through
//! the engine's own counting rules ([`MetricRun::record`]), so its counts, status and
//! reason are the engine's, not a second copy of them.

use crate::engine::state::{Checkpoint, State};
use crate::plugin::types::{Measurement, Verdict};
use crate::server::v2;
use crate::spec::model::{MetricSpec, NoDataAction, RolloutSpec};
use crate::store::{MeasurementRow, SeriesPoint};
use crate::verify::{Counters, MetricRun, Observation};
use serde_json::{Value, json};

/// The largest details shown per metric, in bytes of JSON text; larger ones are cut.
const MAX_DETAILS_BYTES: usize = 64 * 1024;
/// The most limit lines drawn per metric.
const MAX_LINES: usize = 16;

/// The phases, the background's metric keys and every metric, in the document's shape.
pub(super) fn layout(
    spec: &RolloutSpec,
    cp: &Checkpoint,
    snapshot: &v2::Snapshot,
    points: &[SeriesPoint],
    kept: &[MeasurementRow],
) -> (Vec<Value>, Vec<String>, Vec<Value>) {
    let mut metrics = Vec::new();
    let mut phases = Vec::new();
    for (i, phase) in spec.phases.iter().enumerate() {
        let status = snapshot
            .progress
            .phases
            .get(i)
            .map_or("pending", |p| p.status.as_str());
        let current = (i == cp.phase)
            .then_some(cp.verification.as_ref())
            .flatten();
        let keys: Vec<String> = phase
            .metrics
            .iter()
            .map(|m| {
                let key = format!("p{i}/{}", m.name);
                let run = current.and_then(|v| v.metrics.iter().find(|r| r.spec.name == m.name));
                metrics.push(metric(&key, i as i64, m, run, status, points, kept));
                key
            })
            .collect();
        let closed = |gate: &str| {
            (i == cp.phase && cp.state == State::Paused(crate::engine::state::PauseReason::Gate))
                .then(|| {
                    cp.failures
                        .iter()
                        .rev()
                        .find(|f| f.gate.as_deref() == Some(gate))
                        .map(|f| f.message.as_str())
                })
                .flatten()
        };
        let gates: Vec<Value> = phase
            .gates
            .iter()
            .map(|g| {
                json!({"name": g.name, "kind": g.kind,
                       "status": super::gate_status(g.kind, status, closed(&g.name))})
            })
            .collect();
        let pause = phase.pause.map(|p| {
            let until = (i == cp.phase
                && cp.state == State::Paused(crate::engine::state::PauseReason::Step))
            .then_some(cp.wake_ms)
            .flatten();
            match p {
                crate::spec::model::PauseSpec::Timed(ms) => {
                    json!({"durationMs": ms, "untilMs": until, "indefinite": false})
                }
                crate::spec::model::PauseSpec::Indefinite => {
                    json!({"durationMs": null, "untilMs": null, "indefinite": true})
                }
            }
        });
        phases.push(json!({
            "index": i, "name": phase.name, "weight": phase.weight, "status": status,
            "pause": pause, "gates": gates, "metrics": keys,
        }));
    }
    let mut background = Vec::new();
    if let Some(bg) = &spec.background {
        let started = cp.phase >= bg.starting_phase || cp.background.is_some();
        let status = if started { "active" } else { "pending" };
        for m in &bg.metrics {
            let key = format!("bg/{}", m.name);
            let run = cp
                .background
                .as_ref()
                .and_then(|v| v.metrics.iter().find(|r| r.spec.name == m.name));
            metrics.push(metric(&key, -1, m, run, status, points, kept));
            background.push(key);
        }
    }
    (phases, background, metrics)
}

/// One metric of phase `phase` (-1: background) whose phase is `phase_status`, with its
/// run from the checkpoint when it has one.
fn metric(
    key: &str,
    phase: i64,
    spec: &MetricSpec,
    run: Option<&MetricRun>,
    phase_status: &str,
    points: &[SeriesPoint],
    kept: &[MeasurementRow],
) -> Value {
    let mine: Vec<&SeriesPoint> = points
        .iter()
        .filter(|p| p.phase_index == phase && p.metric == spec.name)
        .collect();
    let replayed;
    let run = match run {
        Some(r) => Some(r),
        None if mine.is_empty() => None,
        None => {
            replayed = replay(spec, &mine, phase_status);
            Some(&replayed)
        }
    };
    let (status, counters, reason) = match run {
        Some(r) => (r.status.name(), r.counters, r.message.clone()),
        None => ("pending", Counters::default(), "no measurement yet".into()),
    };
    let last = kept
        .iter()
        .rev()
        .find(|m| m.phase_index == phase && m.metric == spec.name);
    let details = last.map(|m| details(&m.details));
    let lines = details.as_ref().map(limit_lines).unwrap_or_default();
    let c = &counters;
    let bad = run.is_some_and(|r| r.status.is_bad());
    json!({
        "key": key, "phaseIndex": phase, "name": spec.name, "background": phase < 0,
        "dryRun": spec.dry_run, "plugin": spec.plugin, "status": status,
        "counts": {"pass": c.passes, "fail": c.failures, "inconclusive": c.inconclusives,
                   "noData": c.no_data, "error": c.errors},
        "limits": {"failureLimit": spec.failure_limit, "inconclusiveLimit": spec.inconclusive_limit,
                   "consecutiveErrorLimit": spec.consecutive_error_limit, "count": spec.count,
                   "consecutiveFailureLimit": spec.consecutive_failure_limit,
                   "consecutiveSuccessLimit": spec.consecutive_success_limit,
                   "noDataLimit": (spec.no_data == NoDataAction::NoData).then_some(spec.no_data_limit)},
        "checklist": checklist(spec, &counters, bad),
        "message": last.map_or_else(|| reason.clone(), |m| m.message.clone()),
        "reason": reason,
        "details": details,
        "lines": lines,
        "points": mine.iter().map(|p| json!({"at": p.at_ms, "value": p.value.filter(|v| v.is_finite()),
                                            "verdict": p.verdict, "count": p.count})).collect::<Vec<_>>(),
        "downsampled": mine.iter().any(|p| p.count > 1),
    })
}

/// A metric of an earlier phase, counted again from its points with the engine's rules;
/// one its phase left before it completed is terminated, as the engine left it.
fn replay(spec: &MetricSpec, points: &[&SeriesPoint], phase_status: &str) -> MetricRun {
    let start = points.first().map_or(0, |p| p.at_ms);
    let mut run = MetricRun::new(spec.clone(), start);
    for p in points {
        for _ in 0..p.count.clamp(1, 1_000) {
            let observation = match verdict(&p.verdict) {
                Some(verdict) => Observation::Measured(Measurement {
                    verdict,
                    value: p.value,
                    message: String::new(),
                    details: "{}".into(),
                }),
                None => Observation::Error(String::new()),
            };
            run.record(observation, p.at_ms);
        }
    }
    if phase_status == "done" && !run.status.is_complete() {
        let at = points.last().map_or(start, |p| p.at_ms);
        run.terminate(at, "the phase ended before the metric completed");
    }
    run
}

/// The plugin verdict a stored verdict word stands for; `None` for `error` (and anything
/// unknown, counted as the error it must be).
fn verdict(word: &str) -> Option<Verdict> {
    match word {
        "pass" => Some(Verdict::Pass),
        "fail" => Some(Verdict::Fail),
        "inconclusive" => Some(Verdict::Inconclusive),
        "no-data" => Some(Verdict::NoData),
        _ => None,
    }
}

/// The plugin's details: its JSON, or its text when it is not JSON; cut when huge.
fn details(text: &str) -> Value {
    if text.len() > MAX_DETAILS_BYTES {
        let mut end = MAX_DETAILS_BYTES;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        return Value::String(format!(
            "{}… ({} bytes, cut at {MAX_DETAILS_BYTES})",
            &text[..end],
            text.len()
        ));
    }
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_string()))
}

/// The horizontal lines a plugin reports in its details (`"limits": [{"label", "value"}]`),
/// finite values only, at most [`MAX_LINES`].
fn limit_lines(details: &Value) -> Vec<Value> {
    details
        .get("limits")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|l| {
            let value = l.get("value")?.as_f64().filter(|v| v.is_finite())?;
            let label = l.get("label").and_then(Value::as_str).unwrap_or("limit");
            Some(json!({"label": label, "value": value}))
        })
        .take(MAX_LINES)
        .collect()
}

/// One line of a metric's checklist.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Check {
    /// Within the limit (or, for a success condition, not failed by it).
    pub ok: bool,
    /// "1 failure > failureLimit 0".
    pub text: String,
    /// The limit as the spec names it (`failureLimit 0`), as failures and the engine name it.
    pub limit: String,
    /// The limit that decided the metric's bad status.
    pub tripped: bool,
}

fn counted(n: u32, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// A metric's limits against its counters, in the order the engine checks them (the first
/// one crossed is the cause: `tripped` when the metric ended `bad`).
pub fn checklist(spec: &MetricSpec, c: &Counters, bad: bool) -> Vec<Check> {
    let mut out = Vec::new();
    let mut push = |ok: bool, text: String, limit: String| {
        out.push(Check {
            ok,
            text,
            limit,
            tripped: false,
        })
    };
    let e = spec.consecutive_error_limit;
    let ok = c.consecutive_errors <= e;
    push(
        ok,
        format!(
            "{} {} consecutiveErrorLimit {e}",
            counted(
                c.consecutive_errors,
                "consecutive error",
                "consecutive errors"
            ),
            if ok { "≤" } else { ">" }
        ),
        format!("consecutiveErrorLimit {e}"),
    );
    let f = spec.failure_limit;
    if f >= 0 {
        let ok = i64::from(c.failures) <= f;
        push(
            ok,
            format!(
                "{} {} failureLimit {f}",
                counted(c.failures, "failure", "failures"),
                if ok { "≤" } else { ">" }
            ),
            format!("failureLimit {f}"),
        );
    }
    if let Some(n) = spec.consecutive_failure_limit.filter(|n| *n > 0) {
        let ok = c.consecutive_failures < n;
        push(
            ok,
            format!(
                "{} {} consecutiveFailureLimit {n}",
                counted(
                    c.consecutive_failures,
                    "consecutive failure",
                    "consecutive failures"
                ),
                if ok { "<" } else { ">=" }
            ),
            format!("consecutiveFailureLimit {n}"),
        );
    }
    let i = spec.inconclusive_limit;
    let ok = c.inconclusives <= i;
    push(
        ok,
        format!(
            "{} inconclusive {} inconclusiveLimit {i}",
            c.inconclusives,
            if ok { "≤" } else { ">" }
        ),
        format!("inconclusiveLimit {i}"),
    );
    if spec.no_data == NoDataAction::NoData {
        let d = spec.no_data_limit;
        let ok = c.no_data <= d;
        push(
            ok,
            format!(
                "{} no-data {} noDataLimit {d}",
                c.no_data,
                if ok { "≤" } else { ">" }
            ),
            format!("noDataLimit {d}"),
        );
    }
    let count = match (spec.count, spec.interval_ms) {
        (Some(n), _) => Some(n),
        (None, None) => Some(1),
        (None, Some(_)) => None,
    };
    if let Some(n) = spec.consecutive_success_limit.filter(|n| *n > 0) {
        // A success condition: it fails the metric only when the count is reached
        // without it.
        let reached = c.consecutive_successes >= n;
        let ok = reached || count.is_none_or(|k| c.measurements < k.max(1));
        let text = match (reached, ok) {
            (true, _) => format!(
                "{} >= consecutiveSuccessLimit {n}",
                counted(
                    c.consecutive_successes,
                    "consecutive pass",
                    "consecutive passes"
                )
            ),
            (false, true) => format!(
                "{} of consecutiveSuccessLimit {n} so far",
                counted(
                    c.consecutive_successes,
                    "consecutive pass",
                    "consecutive passes"
                )
            ),
            (false, false) => format!(
                "count {} reached without {n} passes in a row (consecutiveSuccessLimit {n})",
                count.unwrap_or(0)
            ),
        };
        push(ok, text, format!("consecutiveSuccessLimit {n}"));
    }
    if let Some(n) = count {
        push(
            true,
            format!("{} of {n} measurements", c.measurements),
            format!("count {n}"),
        );
    }
    if bad && let Some(first) = out.iter_mut().find(|c| !c.ok) {
        first.tripped = true;
    }
    out
}
