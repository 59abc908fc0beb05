//! `threshold`: the verification provider most metrics need.
//!
//! Runs one query on a backend, reduces each series' samples to one value (`last`, `avg`,
//! `min`, `max`, `sum`, `count`, `pNN`), combines the series (`each` judges every series,
//! `pool` pools all samples, or any reducer), and compares with a pass condition and an
//! optional fail condition. An empty or all-NaN result is `no-data`, never a pass.
//!
//! The judging logic ([`judge`]) is plain Rust with no host dependency, so it runs natively
//! in unit tests and benchmarks exactly as it runs inside the component.

mod condition;
mod reduce;

pub use condition::Condition;
pub use reduce::{Across, Reducer};

use rollgate_plugin::duration::parse_ms;
use rollgate_plugin::prelude::*;
use serde_json::json;

/// The operator's configuration.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Config {
    /// The metric backend to query (a `MetricBackend` bound to this metric).
    pub backend: String,
    /// The query, in the backend's own language (PromQL, a Datadog query, ...).
    pub query: String,
    /// Evaluate over this window ending at "now" (e.g. `5m`); an instant query when absent.
    #[serde(default)]
    pub window: Option<String>,
    /// Resolution of a windowed query (e.g. `15s`); default: the window / 60, at least 1s.
    #[serde(default)]
    pub step: Option<String>,
    /// How each series' samples become one value: `last` (default), `first`, `avg`,
    /// `min`, `max`, `sum`, `count`, `median` or `pNN` (e.g. `p95`, `p99.9`). NaN samples
    /// are ignored.
    #[serde(default)]
    pub reduce: Option<String>,
    /// How several series are combined: `each` (default: every series is judged and all
    /// must pass), `pool` (all samples of all series are reduced together), or a reducer
    /// applied to the per-series values (`max`, `avg`, `sum`, ...).
    #[serde(default)]
    pub across: Option<String>,
    /// The pass condition: `< 0.05`, `<= 0.05`, `> 0.99`, `>= 0.99`, `== 0`, `!= 0`,
    /// a range `[0.1, 0.2]` (brackets inclusive, parentheses exclusive),
    /// `between 0.1 and 0.2`, or `outside [0.1, 0.2]`.
    pub condition: String,
    /// Optional fail condition, same syntax. When set, a value that meets neither condition
    /// is inconclusive; when both hold, fail wins. Without it, anything that does not pass
    /// fails.
    #[serde(default)]
    pub fail_condition: Option<String>,
}

/// A configuration with every string parsed: what [`judge`] works from.
#[derive(Debug, Clone)]
pub struct Compiled {
    /// Per-series reduction.
    pub reduce: Reducer,
    /// Combination of series.
    pub across: Across,
    /// Pass condition.
    pub pass: Condition,
    /// Fail condition, when given.
    pub fail: Option<Condition>,
    /// Window length in ms, for messages; `None` for an instant query.
    pub window_ms: Option<u64>,
    /// Step in ms of a windowed query.
    pub step_ms: u64,
}

impl Config {
    /// Parse every string field; every problem is reported with its JSON pointer.
    pub fn compile(&self) -> Result<Compiled, Vec<ConfigError>> {
        let mut errors = Vec::new();
        let reduce = take(
            &mut errors,
            "/reduce",
            Reducer::parse(self.reduce.as_deref().unwrap_or("last")),
        );
        let across = take(
            &mut errors,
            "/across",
            Across::parse(self.across.as_deref().unwrap_or("each")),
        );
        let pass = take(&mut errors, "/condition", Condition::parse(&self.condition));
        let fail = match &self.fail_condition {
            Some(text) => take(&mut errors, "/failCondition", Condition::parse(text)).map(Some),
            None => Some(None),
        };
        let window_ms = match &self.window {
            Some(text) => take(&mut errors, "/window", positive_ms(text, "window")).map(Some),
            None => Some(None),
        };
        let step_ms = match &self.step {
            Some(text) => take(&mut errors, "/step", positive_ms(text, "step")),
            None => Some(window_ms.flatten().map_or(1_000, |w| (w / 60).max(1_000))),
        };
        if self.backend.trim().is_empty() {
            errors.push(ConfigError::new("/backend", "backend must not be empty"));
        }
        if self.query.trim().is_empty() {
            errors.push(ConfigError::new("/query", "query must not be empty"));
        }
        if self.step.is_some() && self.window.is_none() {
            errors.push(ConfigError::new(
                "/step",
                "step only applies to a windowed query: set window too, or remove step",
            ));
        }
        match (reduce, across, pass, fail, window_ms, step_ms) {
            (
                Some(reduce),
                Some(across),
                Some(pass),
                Some(fail),
                Some(window_ms),
                Some(step_ms),
            ) if errors.is_empty() => Ok(Compiled {
                reduce,
                across,
                pass,
                fail,
                window_ms,
                step_ms,
            }),
            _ => Err(errors),
        }
    }
}

/// Keep a parsed value, or record its error at `path`.
fn take<T>(errors: &mut Vec<ConfigError>, path: &str, parsed: Result<T, String>) -> Option<T> {
    parsed
        .map_err(|message| errors.push(ConfigError::new(path, message)))
        .ok()
}

fn positive_ms(text: &str, what: &str) -> Result<u64, String> {
    match parse_ms(text)? {
        0 => Err(format!("{what} must be longer than 0")),
        ms => Ok(ms),
    }
}

/// Judge one value against the conditions (fail wins when both hold, as in Argo Rollouts).
fn verdict_of(c: &Compiled, value: f64) -> Verdict {
    match &c.fail {
        Some(fail) if fail.holds(value) => Verdict::Fail,
        Some(_) if c.pass.holds(value) => Verdict::Pass,
        Some(_) => Verdict::Inconclusive,
        None if c.pass.holds(value) => Verdict::Pass,
        None => Verdict::Fail,
    }
}

/// A value as shown next to its verdict: rounded for reading, unless the rounded number
/// would read as the other verdict (0.0499999 shown as "0.05" next to "< 0.05"); then in
/// full precision.
fn shown(c: &Compiled, value: f64) -> String {
    let short = fmt_num(value);
    match short.parse::<f64>() {
        Ok(back) if verdict_of(c, back) == verdict_of(c, value) => short,
        _ if value.is_finite() => format!("{value}"),
        _ => short,
    }
}

/// How a verdict reads in a message.
fn judgement(c: &Compiled, verdict: Verdict) -> String {
    match (verdict, &c.fail) {
        (Verdict::Pass, _) => format!("meets {}", c.pass),
        (Verdict::Fail, Some(fail)) => format!("meets fail condition {fail}"),
        (Verdict::Fail, None) => format!("does not meet {}", c.pass),
        (_, Some(fail)) => format!("meets neither {} nor fail condition {fail}", c.pass),
        (_, None) => format!("does not meet {}", c.pass),
    }
}

/// Format a number for people: up to 6 significant digits, no trailing zeros.
pub fn fmt_num(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        };
    }
    let a = v.abs();
    if a != 0.0 && !(1e-4..1e9).contains(&a) {
        return format!("{v:e}");
    }
    // Six significant digits: decimals = 6 - (digits before the point), where a number
    // below 1 has -(leading zeros after the point) digits before it.
    let magnitude = if a == 0.0 {
        0
    } else {
        a.log10().floor() as i32 + 1
    };
    let digits = (6 - magnitude).max(0) as usize;
    let s = format!("{v:.digits$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

fn verdict_name(v: Verdict) -> &'static str {
    match v {
        Verdict::Pass => "pass",
        Verdict::Fail => "fail",
        Verdict::Inconclusive => "inconclusive",
        Verdict::NoData => "no-data",
    }
}

impl Compiled {
    /// The lines a chart of the metric draws (the details' `limits`): each finite bound of
    /// the pass condition, then of the fail condition (labelled `fail: …`).
    pub fn limits(&self) -> Vec<Limit> {
        let fail = self.fail.iter().flat_map(|f| f.limits("fail: "));
        self.pass
            .limits("")
            .into_iter()
            .chain(fail)
            .map(|(label, value)| Limit::new(label, value))
            .collect()
    }
}

/// Judge a query result. Pure: the same series give the same measurement. Every
/// measurement's details carry the conditions' `limits`, whatever the verdict.
pub fn judge(c: &Compiled, series: &[Series]) -> Measurement {
    judge_series(c, series).with_limits(&c.limits())
}

fn judge_series(c: &Compiled, series: &[Series]) -> Measurement {
    let what = match c.window_ms {
        Some(w) => format!("{} over {}", c.reduce, fmt_window(w)),
        None => c.reduce.to_string(),
    };
    let total_samples: usize = series.iter().map(|s| s.values.len()).sum();
    if series.is_empty() {
        return Measurement::no_data("the query returned no series").with_details(json!({
            "series": 0,
        }));
    }
    match c.across {
        Across::Each => judge_each(c, series, &what, total_samples),
        Across::Pool => {
            let value = c.reduce.apply(series.iter().flat_map(|s| s.values()));
            judge_one(c, value, &what, series.len(), total_samples, "pooled")
        }
        Across::Reduce(across) => {
            let per_series: Vec<Option<f64>> =
                series.iter().map(|s| c.reduce.apply(s.values())).collect();
            let empty = per_series.iter().filter(|v| v.is_none()).count();
            let how = if empty > 0 {
                format!("{across} across series, {empty} without data ignored")
            } else {
                format!("{across} across series")
            };
            // A series that reduces to NaN (e.g. +Inf and -Inf averaged) cannot be judged; a
            // reducer across series must not quietly drop it and pass on the others.
            if per_series.iter().flatten().any(|v| v.is_nan()) {
                return judge_one(c, Some(f64::NAN), &what, series.len(), total_samples, &how);
            }
            let value = across.apply(per_series.iter().flatten().copied());
            judge_one(c, value, &what, series.len(), total_samples, &how)
        }
    }
}

fn judge_one(
    c: &Compiled,
    value: Option<f64>,
    what: &str,
    n_series: usize,
    n_samples: usize,
    how: &str,
) -> Measurement {
    let counts = format!(
        "{n_series} series, {n_samples} sample{}",
        if n_samples == 1 { "" } else { "s" }
    );
    let Some(value) = value else {
        return Measurement::no_data(format!("no data: every sample is null or NaN ({counts})"))
            .with_details(json!({"series": n_series, "samples": n_samples}));
    };
    if value.is_nan() {
        return Measurement::new(
            Verdict::Inconclusive,
            None,
            format!("{what} ({how}) is NaN (e.g. +Inf and -Inf summed), cannot judge ({counts})"),
        );
    }
    let verdict = verdict_of(c, value);
    let message = format!(
        "{what} ({how}) = {}, {} ({counts})",
        shown(c, value),
        judgement(c, verdict)
    );
    Measurement::new(verdict, Some(value), message).with_details(json!({
        "value": finite_or_string(value),
        "verdict": verdict_name(verdict),
        "series": n_series,
        "samples": n_samples,
        "condition": c.pass.to_string(),
        "failCondition": c.fail.as_ref().map(|f| f.to_string()),
    }))
}

fn judge_each(c: &Compiled, series: &[Series], what: &str, n_samples: usize) -> Measurement {
    let mut judged = Vec::with_capacity(series.len());
    let mut empty = 0usize;
    for s in series {
        match c.reduce.apply(s.values()) {
            Some(v) if v.is_nan() => judged.push((s, v, Verdict::Inconclusive)),
            Some(v) => judged.push((s, v, verdict_of(c, v))),
            None => empty += 1,
        }
    }
    if judged.is_empty() {
        return Measurement::no_data(format!(
            "no data: every sample of the {} series is null or NaN",
            series.len()
        ))
        .with_details(json!({"series": series.len(), "samples": n_samples}));
    }
    let overall = if judged.iter().any(|j| j.2 == Verdict::Fail) {
        Verdict::Fail
    } else if judged.iter().any(|j| j.2 == Verdict::Inconclusive) {
        Verdict::Inconclusive
    } else {
        Verdict::Pass
    };
    // The series that decided: the first one with the overall verdict.
    let decisive = judged
        .iter()
        .find(|j| j.2 == overall)
        .map(|j| j.1)
        .unwrap_or(f64::NAN);
    let empty_note = if empty > 0 {
        format!(", {empty} series without data ignored")
    } else {
        String::new()
    };
    let message = if decisive.is_nan() {
        format!(
            "{what} is NaN for {} of {} series (e.g. +Inf and -Inf combined): cannot judge{empty_note}",
            judged.iter().filter(|j| j.1.is_nan()).count(),
            judged.len()
        )
    } else if judged.len() == 1 && series.len() == 1 {
        format!(
            "{what} = {}, {} ({} sample{})",
            shown(c, decisive),
            judgement(c, overall),
            n_samples,
            if n_samples == 1 { "" } else { "s" }
        )
    } else {
        let matching: Vec<String> = judged
            .iter()
            .filter(|j| j.2 == overall)
            .take(3)
            .map(|j| format!("{} = {}", j.0.label_string(), shown(c, j.1)))
            .collect();
        let count = judged.iter().filter(|j| j.2 == overall).count();
        let more = if count > matching.len() {
            format!(" and {} more", count - matching.len())
        } else {
            String::new()
        };
        format!(
            "{count} of {} series {}: {what} {}{more}{empty_note}",
            judged.len(),
            judgement(c, overall),
            matching.join(", ")
        )
    };
    let details: Vec<serde_json::Value> = judged
        .iter()
        .map(|(s, v, verdict)| {
            let labels: serde_json::Map<String, serde_json::Value> = s
                .labels
                .iter()
                .map(|l| (l.name.clone(), json!(l.value)))
                .collect();
            json!({"labels": labels, "value": finite_or_string(*v), "verdict": verdict_name(*verdict), "samples": s.values.len()})
        })
        .collect();
    let value = if decisive.is_nan() {
        None
    } else {
        Some(decisive)
    };
    Measurement::new(overall, value, message).with_details(json!({
        "series": details,
        "seriesWithoutData": empty,
        "condition": c.pass.to_string(),
        "failCondition": c.fail.as_ref().map(|f| f.to_string()),
    }))
}

fn finite_or_string(v: f64) -> serde_json::Value {
    if v.is_finite() {
        json!(v)
    } else {
        json!(fmt_num(v))
    }
}

fn fmt_window(ms: u64) -> String {
    const UNITS: [(u64, &str); 4] = [
        (86_400_000, "d"),
        (3_600_000, "h"),
        (60_000, "m"),
        (1_000, "s"),
    ];
    for (size, unit) in UNITS {
        if ms.is_multiple_of(size) {
            return format!("{}{unit}", ms / size);
        }
    }
    format!("{ms}ms")
}

/// The plugin.
pub struct Threshold;

impl Verifier for Threshold {
    type Config = Config;

    fn check(config: &Config) -> Vec<ConfigError> {
        config.compile().err().unwrap_or_default()
    }

    fn measure(config: Config, ctx: &Context) -> Result<Measurement, String> {
        let compiled = config.compile().map_err(|errors| {
            let all: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
            all.join("; ")
        })?;
        let window = match compiled.window_ms {
            Some(lookback_ms) => Window::Last {
                lookback_ms,
                step_ms: compiled.step_ms,
            },
            None => Window::Now,
        };
        let series = ctx.query(&config.backend, &config.query, window)?;
        Ok(judge(&compiled, &series))
    }
}

rollgate_plugin::export_verifier!(Threshold);

#[cfg(test)]
mod tests;
