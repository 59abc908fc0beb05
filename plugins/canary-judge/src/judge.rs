//! The judge: each metric classified (NetflixACAJudge's Mann-Whitney classifier with an
//! effect-size check), then the classifications scored by group (its weighted-sum scorer).

use crate::stats;
use serde::Serialize;
use std::collections::BTreeMap;

/// Which change of a metric is bad.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, schemars::JsonSchema, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Direction {
    /// Only an increase is bad (latency, errors).
    Increase,
    /// Only a decrease is bad (throughput, success rate).
    Decrease,
    /// Any significant change is bad (the default).
    #[default]
    Either,
}

/// What happens to NaN samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, schemars::JsonSchema, Default)]
#[serde(rename_all = "kebab-case")]
pub enum NanStrategy {
    /// Drop them (the default).
    #[default]
    Remove,
    /// Replace them with `nanReplacement` (default 0): for counters where "no sample"
    /// means "nothing happened".
    Replace,
}

/// How big a significant change must be to count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, schemars::JsonSchema, Default)]
#[serde(rename_all = "kebab-case")]
pub enum EffectMeasure {
    /// mean(canary) / mean(baseline); thresholds are ratios (default 1.0).
    #[default]
    MeanRatio,
    /// The common-language effect size P(canary > baseline); thresholds are
    /// probabilities (default 0.5).
    Cles,
}

/// How one metric is judged.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    /// The metric's name.
    pub name: String,
    /// Its group (for scoring).
    pub group: String,
    /// Which change is bad.
    pub direction: Direction,
    /// NaN handling.
    pub nan_strategy: NanStrategy,
    /// The value NaNs become with `NanStrategy::Replace`.
    pub nan_replacement: f64,
    /// IQR outlier removal factor (e.g. 3.0), applied to each sample; none when `None`.
    pub outlier_factor: Option<f64>,
    /// The effect-size measure.
    pub measure: EffectMeasure,
    /// An increase smaller than this effect is a pass.
    pub allowed_increase: f64,
    /// A decrease smaller than this effect is a pass.
    pub allowed_decrease: f64,
    /// An increase at least this large fails the whole judgement.
    pub critical_increase: Option<f64>,
    /// A decrease at least this large fails the whole judgement.
    pub critical_decrease: Option<f64>,
    /// A High, Low or missing-data result of this metric fails the whole judgement.
    pub critical: bool,
    /// No data is a failure of the metric (`NodataFailMetric`), not a skipped metric.
    pub must_have_data: bool,
}

/// A metric's classification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Label {
    /// No significant change in the bad direction, or one too small to matter.
    Pass,
    /// Significantly higher than the baseline.
    High,
    /// Significantly lower than the baseline.
    Low,
    /// No data on one side: left out of the score.
    Nodata,
    /// No data where data is required: counted as a failure.
    NodataFailMetric,
    /// The metric could not be measured (a query failed).
    Error,
}

/// One metric's result, with everything that explains its label.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MetricResult {
    /// The metric.
    pub name: String,
    /// Its group.
    pub group: String,
    /// The label.
    pub label: Label,
    /// Why, in a sentence.
    pub reason: String,
    /// The metric was marked critical.
    pub critical: bool,
    /// Its effect passed a critical threshold (or it is critical and not a pass).
    pub critical_failure: bool,
    /// Confidence interval of canary − baseline, when computed.
    pub interval: Option<[f64; 2]>,
    /// The Hodges-Lehmann estimate of canary − baseline, when computed.
    pub estimate: Option<f64>,
    /// The effect size (mean ratio or CLES), when computed.
    pub effect: Option<f64>,
    /// Canary samples judged (after NaN handling and outlier removal).
    pub canary_count: usize,
    /// Baseline samples judged.
    pub baseline_count: usize,
    /// NaN samples removed or replaced (canary, baseline).
    pub nan: [usize; 2],
    /// Outliers removed (canary, baseline).
    pub outliers: [usize; 2],
}

impl MetricResult {
    fn bare(rule: &Rule, label: Label, reason: String) -> MetricResult {
        MetricResult {
            name: rule.name.clone(),
            group: rule.group.clone(),
            label,
            reason,
            critical: rule.critical,
            critical_failure: false,
            interval: None,
            estimate: None,
            effect: None,
            canary_count: 0,
            baseline_count: 0,
            nan: [0, 0],
            outliers: [0, 0],
        }
    }

    /// A metric whose query failed.
    pub fn error(rule: &Rule, message: String) -> MetricResult {
        let mut r = MetricResult::bare(rule, Label::Error, message);
        r.critical_failure = rule.critical;
        r
    }
}

/// NaN handling then outlier removal; the values and how many NaNs and outliers went.
fn prepare(rule: &Rule, raw: &[f64]) -> (Vec<f64>, usize, usize) {
    let nan = raw.iter().filter(|v| v.is_nan()).count();
    let values: Vec<f64> = match rule.nan_strategy {
        NanStrategy::Remove => raw.iter().copied().filter(|v| !v.is_nan()).collect(),
        NanStrategy::Replace => raw
            .iter()
            .map(|v| if v.is_nan() { rule.nan_replacement } else { *v })
            .collect(),
    };
    match rule.outlier_factor {
        Some(f) => {
            let kept = stats::without_outliers(&values, f);
            let removed = values.len() - kept.len();
            (kept, nan, removed)
        }
        None => (values, nan, 0),
    }
}

fn effect(rule: &Rule, canary: &[f64], baseline: &[f64]) -> f64 {
    match rule.measure {
        EffectMeasure::Cles => stats::cles(canary, baseline),
        EffectMeasure::MeanRatio => {
            let (c, b) = (stats::mean(canary), stats::mean(baseline));
            if b == 0.0 {
                if c == 0.0 {
                    1.0
                } else {
                    f64::INFINITY * c.signum()
                }
            } else {
                c / b
            }
        }
    }
}

/// Classify one metric from its raw canary and baseline samples.
pub fn classify(
    rule: &Rule,
    canary_raw: &[f64],
    baseline_raw: &[f64],
    confidence: f64,
    tolerance: f64,
) -> MetricResult {
    let (canary, nan_c, out_c) = prepare(rule, canary_raw);
    let (baseline, nan_b, out_b) = prepare(rule, baseline_raw);
    let mut r = MetricResult::bare(rule, Label::Pass, String::new());
    r.canary_count = canary.len();
    r.baseline_count = baseline.len();
    r.nan = [nan_c, nan_b];
    r.outliers = [out_c, out_b];
    if canary.is_empty() || baseline.is_empty() {
        let side = match (canary.is_empty(), baseline.is_empty()) {
            (true, true) => "canary and baseline have",
            (true, false) => "the canary has",
            _ => "the baseline has",
        };
        if rule.must_have_data {
            r.label = Label::NodataFailMetric;
            r.reason = format!("{side} no data, and the metric must have data");
            r.critical_failure = rule.critical;
        } else {
            r.label = Label::Nodata;
            r.reason = format!("{side} no data; the metric is left out of the score");
        }
        return r;
    }
    let mut sc = canary.clone();
    let mut sb = baseline.clone();
    sc.sort_by(f64::total_cmp);
    sb.sort_by(f64::total_cmp);
    r.effect = Some(effect(rule, &canary, &baseline));
    if sc == sb {
        r.reason = "the canary and baseline data are identical".into();
        return r;
    }
    let shift = match stats::shift(&canary, &baseline, confidence) {
        Ok(s) => s,
        Err(e) => {
            r.label = Label::Error;
            r.reason = e;
            r.critical_failure = rule.critical;
            return r;
        }
    };
    r.interval = Some([shift.lower, shift.upper]);
    r.estimate = Some(shift.estimate);
    let effect = r.effect.unwrap_or(1.0);
    let band = tolerance * shift.estimate.abs();
    let ci = format!(
        "{}% interval of canary − baseline [{}, {}], estimate {}",
        fmt(confidence * 100.0),
        fmt(shift.lower),
        fmt(shift.upper),
        fmt(shift.estimate)
    );
    let measure = match rule.measure {
        EffectMeasure::MeanRatio => "mean ratio",
        EffectMeasure::Cles => "CLES",
    };
    let up = matches!(rule.direction, Direction::Increase | Direction::Either);
    let down = matches!(rule.direction, Direction::Decrease | Direction::Either);
    if up && shift.lower > band {
        if effect < rule.allowed_increase {
            r.reason = format!(
                "{ci} is above +{} but the {measure} {} is below the allowed increase {}",
                fmt(band),
                fmt(effect),
                fmt(rule.allowed_increase)
            );
            return r;
        }
        r.label = Label::High;
        r.critical_failure = rule.critical || rule.critical_increase.is_some_and(|c| effect >= c);
        r.reason = format!(
            "{ci} is above +{} (0.25 × |estimate| dead band), {measure} {}",
            fmt(band),
            fmt(effect)
        );
        return r;
    }
    if down && shift.upper < -band {
        if effect > rule.allowed_decrease {
            r.reason = format!(
                "{ci} is below −{} but the {measure} {} is above the allowed decrease {}",
                fmt(band),
                fmt(effect),
                fmt(rule.allowed_decrease)
            );
            return r;
        }
        r.label = Label::Low;
        r.critical_failure = rule.critical || rule.critical_decrease.is_some_and(|c| effect <= c);
        r.reason = format!("{ci} is below −{}, {measure} {}", fmt(band), fmt(effect));
        return r;
    }
    r.reason = format!(
        "{ci}: no significant change in the bad direction, {measure} {}",
        fmt(effect)
    );
    r
}

/// Short numbers for reasons: up to 6 significant digits.
pub fn fmt(v: f64) -> String {
    if !v.is_finite() {
        return format!("{v}");
    }
    let s = format!("{v:.6}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" { "0".into() } else { s.to_string() }
}

/// The judgement of a set of metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// The score reached the pass threshold.
    Pass,
    /// Between the marginal and pass thresholds.
    Marginal,
    /// Below the marginal threshold, or a critical metric failed.
    Fail,
    /// Half or more of the metrics had no data.
    Nodata,
}

/// One group's score.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupScore {
    /// The group.
    pub group: String,
    /// 100 · pass / (pass + high + low + nodata-fail + error).
    pub score: f64,
    /// Its weight in the summary.
    pub weight: f64,
    /// Every metric of the group had no data: left out of the summary.
    pub no_data: bool,
}

/// The scored judgement.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Scores {
    /// Per group.
    pub groups: Vec<GroupScore>,
    /// The weighted summary score (0–100).
    pub summary: f64,
    /// The outcome.
    pub outcome: Outcome,
    /// Why.
    pub reason: String,
}

/// Score classified metrics: per group, then weighted (equal weights when `weights` is
/// empty), with the overrides: a critical failure fails, half or more metrics without data
/// is no data.
pub fn score(
    results: &[MetricResult],
    weights: &BTreeMap<String, f64>,
    pass: f64,
    marginal: f64,
) -> Scores {
    let mut groups: Vec<GroupScore> = Vec::new();
    let mut order: Vec<&str> = Vec::new();
    for r in results {
        if !order.contains(&r.group.as_str()) {
            order.push(&r.group);
        }
    }
    for g in order {
        let of: Vec<&MetricResult> = results.iter().filter(|r| r.group == g).collect();
        let count = |l: Label| of.iter().filter(|r| r.label == l).count() as f64;
        let passes = count(Label::Pass);
        let total = passes
            + count(Label::High)
            + count(Label::Low)
            + count(Label::NodataFailMetric)
            + count(Label::Error);
        groups.push(GroupScore {
            group: g.to_string(),
            score: if total > 0.0 {
                100.0 * passes / total
            } else {
                0.0
            },
            weight: if weights.is_empty() {
                1.0
            } else {
                weights.get(g).copied().unwrap_or(0.0)
            },
            no_data: total == 0.0,
        });
    }
    let counted: Vec<&GroupScore> = groups.iter().filter(|g| !g.no_data).collect();
    let total_weight: f64 = counted.iter().map(|g| g.weight).sum();
    let summary = if total_weight > 0.0 {
        counted.iter().map(|g| g.score * g.weight).sum::<f64>() / total_weight
    } else {
        0.0
    };
    let nodata = results
        .iter()
        .filter(|r| matches!(r.label, Label::Nodata | Label::NodataFailMetric))
        .count();
    let critical: Vec<&str> = results
        .iter()
        .filter(|r| r.critical_failure)
        .map(|r| r.name.as_str())
        .collect();
    let (outcome, summary, reason) = if !critical.is_empty() {
        (
            Outcome::Fail,
            0.0,
            format!("critical metric(s) failed: {}", critical.join(", ")),
        )
    } else if results.is_empty() || nodata * 2 >= results.len() {
        (
            Outcome::Nodata,
            summary,
            format!(
                "{nodata} of {} metric(s) had no data (half or more)",
                results.len()
            ),
        )
    } else if summary >= pass {
        (
            Outcome::Pass,
            summary,
            format!("score {} ≥ pass threshold {}", fmt2(summary), fmt(pass)),
        )
    } else if summary >= marginal {
        (
            Outcome::Marginal,
            summary,
            format!(
                "score {} is marginal (≥ {} but < {})",
                fmt2(summary),
                fmt(marginal),
                fmt(pass)
            ),
        )
    } else {
        (
            Outcome::Fail,
            summary,
            format!(
                "score {} < marginal threshold {}",
                fmt2(summary),
                fmt(marginal)
            ),
        )
    };
    Scores {
        groups,
        summary,
        outcome,
        reason,
    }
}

fn fmt2(v: f64) -> String {
    format!("{v:.2}")
}

/// A judgement within a lifetime of several intervals (Kayenta's multi-interval analysis
/// over a growing window): before the last interval, a score at or below `marginal` fails
/// at once and anything above it lets the analysis go on (a pass for the counting rules);
/// the last interval passes only at or above `pass`.
pub fn interval_passes(summary: f64, last: bool, pass: f64, marginal: f64) -> bool {
    if last {
        summary >= pass
    } else {
        summary > marginal
    }
}
