//! `canary-judge`: Kayenta's NetflixACAJudge as a rollgate verification provider.
//!
//! One measurement judges a set of metrics of the canary against the baseline, computing
//! what Kayenta computes (its departures are listed in README.md):
//! 1. per metric, canary and baseline samples come from two queries, or from one query
//!    split by a label; NaNs are removed or replaced; outliers optionally removed by
//!    Kayenta's IQR fences (widened to the 1st/99th percentiles, any sample size);
//! 2. a Mann-Whitney confidence interval of the shift canary − baseline and Kayenta's
//!    location estimate, both roots of the corrected rank statistic found by Brent's method
//!    with Kayenta's bracket and tolerance (see [`stats`]); the metric is High when the
//!    interval lies above a dead band of ±tolerance × |estimate| (Low when below) in a bad
//!    direction and the effect size (mean ratio, NaN when a mean is 0, or CLES) reaches
//!    the allowed increase (decrease) or cannot be computed; labels Pass, High, Low,
//!    Nodata, NodataFailMetric, Error;
//! 3. muted metrics are left out; each metric counts in each of its groups, scored
//!    100 · pass / (pass + high + low + nodata-fail) (a group with none of those counts
//!    100) and weighted in percent (unweighted groups share the rest); a critical failure,
//!    or half or more metrics without data, makes the score 0; the summary against the
//!    pass and marginal thresholds gives pass, inconclusive (marginal) or fail. With
//!    `lifetime`, the window grows from the phase's start and the judgement follows
//!    Kayenta's multi-interval rule (see [`judge::interval_passes`]).
//!
//! Deterministic: no random noise is added when both samples are constant; they give the
//! interval `[d, d]` of their one difference. The measurement's details carry every
//! metric's label, interval, estimate, Hodges-Lehmann median, effect size and counts, and
//! the pass and marginal thresholds as the score's `limits` (the lines a chart draws).

pub mod judge;
pub mod stats;

use judge::{Direction, EffectMeasure, MetricResult, NanStrategy, NodataVerdict, Outcome, Rule};
use rollgate_plugin::Sides;
use rollgate_plugin::duration::parse_ms;
use rollgate_plugin::prelude::*;
use serde_json::json;
use std::collections::BTreeMap;

/// The judge's configuration.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Config {
    /// The backend every metric queries unless it names its own.
    pub backend: String,
    /// How far back each judgement looks (default `10m`). With `lifetime`, ignored: the
    /// window grows from the phase's start.
    #[serde(default)]
    pub window: Option<String>,
    /// Resolution of the queries (default: the window / 60, at least `1s`).
    #[serde(default)]
    pub step: Option<String>,
    /// Multi-interval analysis: the phase's judgements end after this long; before then a
    /// score at or below the marginal threshold fails at once, and the last judgement must
    /// reach the pass threshold.
    #[serde(default)]
    pub lifetime: Option<String>,
    /// Confidence level of the intervals (default 0.98).
    #[serde(default)]
    pub confidence: Option<f64>,
    /// Dead band as a fraction of |estimate| (default 0.25).
    #[serde(default)]
    pub tolerance: Option<f64>,
    /// Score needed to pass (default 95).
    #[serde(default)]
    pub pass_threshold: Option<f64>,
    /// Score below which the canary fails (default 75); between the two it is marginal
    /// (inconclusive).
    #[serde(default)]
    pub marginal_threshold: Option<f64>,
    /// Weight of each group in the summary, in percent (Kayenta's `groupWeights`). Groups
    /// without a weight share what the given weights leave of 100 equally; with none
    /// given, every group weighs the same. The weights may add up to at most 100, and to
    /// exactly 100 when every scored group has one.
    #[serde(default)]
    pub group_weights: BTreeMap<String, f64>,
    /// What half or more of the scored metrics without data gives: `fail` (Kayenta: the
    /// score is 0, the default) or `no-data` (a departure: the score is kept and the
    /// verdict is no-data, for the failure policy to decide).
    #[serde(default)]
    pub nodata_verdict: NodataVerdict,
    /// The metrics judged.
    pub metrics: Vec<MetricConfig>,
}

/// One metric of the judgement.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MetricConfig {
    /// Unique within the judgement.
    pub name: String,
    /// Its scoring group (default: its name). Give `group` or `groups`, not both.
    #[serde(default)]
    pub group: Option<String>,
    /// Its scoring groups, as in Kayenta: the metric counts in each. `[]` scores it in no
    /// group (it still counts for critical failures and missing data).
    #[serde(default)]
    pub groups: Option<Vec<String>>,
    /// The backend (default: the judgement's).
    #[serde(default)]
    pub backend: Option<String>,
    /// Where the canary's and the baseline's samples come from.
    #[serde(flatten)]
    pub sides: Sides,
    /// Which change is bad: `increase`, `decrease` or `either` (default).
    #[serde(default)]
    pub direction: Direction,
    /// `remove` (default) or `replace` NaN samples.
    #[serde(default)]
    pub nan_strategy: NanStrategy,
    /// What NaNs become with `replace` (default 0).
    #[serde(default)]
    pub nan_replacement: Option<f64>,
    /// Remove samples outside [Q1 − f·IQR, Q3 + f·IQR] (e.g. 3.0); off by default.
    #[serde(default)]
    pub outlier_factor: Option<f64>,
    /// The effect-size check.
    #[serde(default)]
    pub effect_size: Option<EffectSize>,
    /// Critical: a High past `criticalIncrease`, a Low past `criticalDecrease`, or no
    /// data (with `nanStrategy: remove`) fails the whole judgement.
    #[serde(default)]
    pub critical: bool,
    /// No data is a failure (`NodataFailMetric`, counted in its groups) rather than a
    /// skipped metric (`Nodata`). A critical metric without data is `Nodata` and fails
    /// the judgement.
    #[serde(default)]
    pub must_have_data: bool,
    /// Measured and shown in the details, but left out of the score (Kayenta's `muted`).
    #[serde(default)]
    pub muted: bool,
}

/// How large a significant change must be to count.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EffectSize {
    /// `mean-ratio` (default) or `cles`.
    #[serde(default)]
    pub measure: EffectMeasure,
    /// A significant increase with a smaller effect passes (default 1.0, CLES 0.5).
    #[serde(default)]
    pub allowed_increase: Option<f64>,
    /// A significant decrease with a larger effect passes (default 1.0, CLES 0.5).
    #[serde(default)]
    pub allowed_decrease: Option<f64>,
    /// A High of a `critical` metric fails the whole judgement when its effect is at
    /// least this (or cannot be computed); default 1.0, CLES 0.5. No effect without
    /// `critical`.
    #[serde(default)]
    pub critical_increase: Option<f64>,
    /// A Low of a `critical` metric fails the whole judgement when its effect is at most
    /// this (or cannot be computed); default 1.0, CLES 0.5. No effect without `critical`.
    #[serde(default)]
    pub critical_decrease: Option<f64>,
}

impl MetricConfig {
    /// The groups the metric is scored in.
    pub fn group_names(&self) -> Vec<String> {
        match (&self.groups, &self.group) {
            (Some(groups), _) => groups.clone(),
            (None, Some(group)) => vec![group.clone()],
            (None, None) => vec![self.name.clone()],
        }
    }

    /// The judging rule of this metric.
    pub fn rule(&self) -> Rule {
        let effect = self.effect_size.clone().unwrap_or(EffectSize {
            measure: EffectMeasure::MeanRatio,
            allowed_increase: None,
            allowed_decrease: None,
            critical_increase: None,
            critical_decrease: None,
        });
        let neutral = match effect.measure {
            EffectMeasure::MeanRatio => 1.0,
            EffectMeasure::Cles => 0.5,
        };
        Rule {
            name: self.name.clone(),
            groups: self.group_names(),
            direction: self.direction,
            nan_strategy: self.nan_strategy,
            nan_replacement: self.nan_replacement.unwrap_or(0.0),
            outlier_factor: self.outlier_factor,
            measure: effect.measure,
            allowed_increase: effect.allowed_increase.unwrap_or(neutral),
            allowed_decrease: effect.allowed_decrease.unwrap_or(neutral),
            critical_increase: effect.critical_increase.unwrap_or(neutral),
            critical_decrease: effect.critical_decrease.unwrap_or(neutral),
            critical: self.critical,
            must_have_data: self.must_have_data,
            muted: self.muted,
        }
    }
}

struct Settings {
    window_ms: u64,
    step_ms: u64,
    lifetime_ms: Option<u64>,
    confidence: f64,
    tolerance: f64,
    pass: f64,
    marginal: f64,
}

fn settings(config: &Config) -> Result<Settings, Vec<ConfigError>> {
    let mut problems = Vec::new();
    let mut duration = |field: &str, text: &Option<String>| match text {
        None => None,
        Some(t) => match parse_ms(t) {
            Ok(0) => {
                problems.push(ConfigError::new(format!("/{field}"), "must be more than 0"));
                None
            }
            Ok(ms) => Some(ms),
            Err(e) => {
                problems.push(ConfigError::new(format!("/{field}"), e));
                None
            }
        },
    };
    let window_ms = duration("window", &config.window).unwrap_or(600_000);
    let step = duration("step", &config.step);
    let lifetime_ms = duration("lifetime", &config.lifetime);
    let step_ms = step.unwrap_or_else(|| (lifetime_ms.unwrap_or(window_ms) / 60).max(1000));
    let confidence = config.confidence.unwrap_or(0.98);
    if !(confidence > 0.5 && confidence < 1.0) {
        problems.push(ConfigError::new(
            "/confidence",
            "must be between 0.5 and 1 (e.g. 0.98)",
        ));
    }
    let tolerance = config.tolerance.unwrap_or(0.25);
    if !(tolerance >= 0.0 && tolerance.is_finite()) {
        problems.push(ConfigError::new(
            "/tolerance",
            "must be 0 or more (e.g. 0.25)",
        ));
    }
    let pass = config.pass_threshold.unwrap_or(95.0);
    let marginal = config.marginal_threshold.unwrap_or(75.0);
    if !(0.0..=100.0).contains(&pass) {
        problems.push(ConfigError::new(
            "/passThreshold",
            "must be between 0 and 100",
        ));
    }
    if !(0.0..=100.0).contains(&marginal) || marginal > pass {
        problems.push(ConfigError::new(
            "/marginalThreshold",
            "must be between 0 and the pass threshold",
        ));
    }
    if config.metrics.is_empty() {
        problems.push(ConfigError::new("/metrics", "needs at least one metric"));
    }
    let named: Vec<String> = config
        .metrics
        .iter()
        .flat_map(MetricConfig::group_names)
        .collect();
    for (group, w) in &config.group_weights {
        if !(0.0..=100.0).contains(w) {
            problems.push(ConfigError::new(
                format!("/groupWeights/{group}"),
                "must be between 0 and 100 (a percentage)",
            ));
        } else if !named.contains(group) {
            problems.push(ConfigError::new(
                format!("/groupWeights/{group}"),
                format!("no metric is in group {group:?}"),
            ));
        }
    }
    let given: f64 = config.group_weights.values().sum();
    let scored: Vec<String> = config
        .metrics
        .iter()
        .filter(|m| !m.muted)
        .flat_map(MetricConfig::group_names)
        .collect();
    if given > 100.0 + 1e-9 {
        problems.push(ConfigError::new(
            "/groupWeights",
            format!("the weights add up to {}, more than 100", judge::fmt(given)),
        ));
    } else if !config.group_weights.is_empty()
        && scored.iter().all(|g| config.group_weights.contains_key(g))
        && given < 100.0 - 1e-9
    {
        problems.push(ConfigError::new(
            "/groupWeights",
            format!(
                "the weights add up to {} and every scored group has one: they must add up to 100",
                judge::fmt(given)
            ),
        ));
    }
    if !config.metrics.is_empty() && config.metrics.iter().all(|m| m.muted) {
        problems.push(ConfigError::new(
            "/metrics",
            "every metric is muted: at least one must be scored",
        ));
    }
    for (i, m) in config.metrics.iter().enumerate() {
        let at = |f: &str| format!("/metrics/{i}/{f}");
        if config.metrics[..i].iter().any(|o| o.name == m.name) {
            problems.push(ConfigError::new(
                at("name"),
                format!("duplicate metric name {:?}", m.name),
            ));
        }
        problems.extend(m.sides.check(&format!("/metrics/{i}")));
        if m.outlier_factor
            .is_some_and(|f| !(f > 0.0 && f.is_finite()))
        {
            problems.push(ConfigError::new(
                at("outlierFactor"),
                "must be more than 0 (e.g. 3)",
            ));
        }
        if m.group.is_some() && m.groups.is_some() {
            problems.push(ConfigError::new(
                at("groups"),
                "give group or groups, not both",
            ));
        }
    }
    if problems.is_empty() {
        Ok(Settings {
            window_ms,
            step_ms,
            lifetime_ms,
            confidence,
            tolerance,
            pass,
            marginal,
        })
    } else {
        Err(problems)
    }
}

/// Every sample of every series.
fn samples<'a>(series: impl Iterator<Item = &'a Series>) -> Vec<f64> {
    series.flat_map(|s| s.values()).collect()
}

/// The canary's and baseline's samples of one metric.
fn fetch(
    config: &Config,
    m: &MetricConfig,
    ctx: &Context,
    window: Window,
) -> Result<(Vec<f64>, Vec<f64>), String> {
    let backend = m.backend.as_deref().unwrap_or(&config.backend);
    let (canary, baseline) = m.sides.fetch(ctx, backend, window)?;
    Ok((samples(canary.iter()), samples(baseline.iter())))
}

/// The judge.
pub struct CanaryJudge;

impl Verifier for CanaryJudge {
    type Config = Config;

    fn check(config: &Config) -> Vec<ConfigError> {
        settings(config).err().unwrap_or_default()
    }

    fn measure(config: Config, ctx: &Context) -> Result<Measurement, String> {
        let s = settings(&config).map_err(|p| {
            p.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        })?;
        let now = ctx.rollout.now_ms;
        let started = ctx.rollout.phase_started_ms;
        let (window, last) = match s.lifetime_ms {
            Some(lifetime) => {
                let elapsed = u64::try_from(now - started).unwrap_or(0);
                (
                    Window::Range {
                        start_ms: started.min(now - 1),
                        end_ms: now,
                        step_ms: s.step_ms,
                    },
                    Some(elapsed >= lifetime),
                )
            }
            None => (
                Window::Last {
                    lookback_ms: s.window_ms,
                    step_ms: s.step_ms,
                },
                None,
            ),
        };
        // A query that fails fails the measurement (Kayenta's fetch stage fails the run): a
        // backend error is never turned into a label that scoring could skip.
        let mut results: Vec<MetricResult> = Vec::with_capacity(config.metrics.len());
        for m in &config.metrics {
            let (canary, baseline) =
                fetch(&config, m, ctx, window).map_err(|e| format!("metric {}: {e}", m.name))?;
            results.push(judge::classify(
                &m.rule(),
                &canary,
                &baseline,
                s.confidence,
                s.tolerance,
            ));
        }
        let scores = judge::score(
            &results,
            &config.group_weights,
            s.pass,
            s.marginal,
            config.nodata_verdict,
        );
        let labels: Vec<String> = results
            .iter()
            .map(|r| format!("{} {:?}", r.name, r.label))
            .collect();
        let (verdict, message) = match (scores.outcome, last) {
            (Outcome::Nodata, _) => (Verdict::NoData, scores.reason.clone()),
            (_, _) if scores.overridden => (Verdict::Fail, scores.reason.clone()),
            (_, Some(is_last)) => {
                let ok = judge::interval_passes(scores.summary, is_last, s.pass, s.marginal);
                let what = if is_last {
                    format!(
                        "final judgement: score {:.2} needs ≥ {}",
                        scores.summary,
                        judge::fmt(s.pass)
                    )
                } else {
                    format!(
                        "interim judgement: score {:.2} must stay above {}",
                        scores.summary,
                        judge::fmt(s.marginal)
                    )
                };
                (if ok { Verdict::Pass } else { Verdict::Fail }, what)
            }
            (Outcome::Pass, None) => (Verdict::Pass, scores.reason.clone()),
            (Outcome::Marginal, None) => (Verdict::Inconclusive, scores.reason.clone()),
            (Outcome::Fail, None) => (Verdict::Fail, scores.reason.clone()),
        };
        let details = json!({
            "summary": scores.summary,
            "outcome": scores.outcome,
            "groups": scores.groups,
            "metrics": results,
            "lastInterval": last,
        });
        // The score's thresholds: the lines a chart of the score draws.
        let limits = [
            Limit::new(format!("pass ≥ {}", judge::fmt(s.pass)), s.pass),
            Limit::new(format!("marginal ≥ {}", judge::fmt(s.marginal)), s.marginal),
        ];
        Ok(Measurement::new(
            verdict,
            Some(scores.summary),
            format!("{message} ({})", labels.join(", ")),
        )
        .with_details(details)
        .with_limits(&limits))
    }
}

rollgate_plugin::export_verifier!(CanaryJudge);

#[cfg(test)]
mod tests;
