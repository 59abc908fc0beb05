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
    /// Its groups (for scoring); it counts in each of them.
    pub groups: Vec<String>,
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
    /// A significant increase with a smaller effect is a pass.
    pub allowed_increase: f64,
    /// A significant decrease with a larger effect is a pass.
    pub allowed_decrease: f64,
    /// A High of a critical metric with at least this effect is a critical failure.
    pub critical_increase: f64,
    /// A Low of a critical metric with at most this effect is a critical failure.
    pub critical_decrease: f64,
    /// The metric is critical: a High or Low past the critical effect, or no data, fails
    /// the whole judgement.
    pub critical: bool,
    /// No data is a failure of the metric (`NodataFailMetric`), not a skipped metric.
    pub must_have_data: bool,
    /// Measured and shown, but not scored.
    pub muted: bool,
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
    /// No data on one side: left out of its groups' scores.
    Nodata,
    /// No data where data is required: counted as a failure.
    NodataFailMetric,
    /// The metric could not be classified (e.g. too many samples): left out of its
    /// groups' scores.
    Error,
}

/// One metric's result, with everything that explains its label.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MetricResult {
    /// The metric.
    pub name: String,
    /// Its groups.
    pub groups: Vec<String>,
    /// The label.
    pub label: Label,
    /// Why, in a sentence.
    pub reason: String,
    /// The metric was marked critical.
    pub critical: bool,
    /// Kayenta's `critical` result: this result fails the whole judgement (a critical
    /// metric's High or Low past its critical effect, or its Nodata).
    pub critical_failure: bool,
    /// Muted: shown, not scored.
    pub muted: bool,
    /// Confidence interval of canary − baseline, when computed.
    pub interval: Option<[f64; 2]>,
    /// Kayenta's location estimate of canary − baseline, when computed.
    pub estimate: Option<f64>,
    /// The Hodges-Lehmann median of the pairwise differences (a detail; not judged).
    pub hodges_lehmann: Option<f64>,
    /// Kayenta's reported deviation: mean(canary) / mean(baseline); null (NaN) when a
    /// mean is 0.
    pub ratio: Option<f64>,
    /// The effect size (mean ratio or CLES) when computed; null (NaN) when a mean is 0,
    /// and the effect-size checks are then skipped.
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
            groups: rule.groups.clone(),
            label,
            reason,
            critical: rule.critical,
            critical_failure: false,
            muted: rule.muted,
            interval: None,
            estimate: None,
            hodges_lehmann: None,
            ratio: None,
            effect: None,
            canary_count: 0,
            baseline_count: 0,
            nan: [0, 0],
            outliers: [0, 0],
        }
    }

    /// A metric that could not be classified (Kayenta: an exception in the classifier,
    /// never critical).
    pub fn error(rule: &Rule, message: String) -> MetricResult {
        MetricResult::bare(rule, Label::Error, message)
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
        EffectMeasure::MeanRatio => stats::mean_ratio(canary, baseline),
    }
}

/// Classify one metric from its raw canary and baseline samples: Kayenta's
/// `MannWhitneyClassifier.classify` with the judge's NaN and outlier handling first.
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
        r.ratio = Some(1.0);
        match rule.nan_strategy {
            // Kayenta: with NaNs replaced, missing data is a pass.
            NanStrategy::Replace => {
                r.reason = format!("{side} no data; with nanStrategy replace that is a pass");
            }
            NanStrategy::Remove if rule.must_have_data && !rule.critical => {
                r.label = Label::NodataFailMetric;
                r.reason = format!("{side} no data, and the metric must have data");
            }
            NanStrategy::Remove => {
                r.label = Label::Nodata;
                r.critical_failure = rule.critical;
                r.reason = if rule.critical {
                    format!("{side} no data, and the metric is critical")
                } else {
                    format!("{side} no data; the metric is left out of the score")
                };
            }
        }
        return r;
    }
    let mut sc = canary.clone();
    let mut sb = baseline.clone();
    stats::sort_total(&mut sc);
    stats::sort_total(&mut sb);
    if sc == sb {
        r.ratio = Some(1.0);
        r.reason = "the canary and baseline data are identical".into();
        return r;
    }
    if sc[0] == sc[sc.len() - 1] && sb[0] == sb[sb.len() - 1] && sc[0] == sb[0] {
        r.ratio = Some(1.0);
        r.reason = "every canary and baseline sample has the same value".into();
        return r;
    }
    if canary.iter().chain(&baseline).any(|v| v.is_infinite()) {
        r.label = Label::Error;
        r.reason = "metric classification failed: infinite samples cannot be ranked".into();
        return r;
    }
    let ratio = stats::mean_ratio(&canary, &baseline);
    let effect = effect(rule, &canary, &baseline);
    r.ratio = Some(ratio);
    r.effect = Some(effect);
    let constant = sc[0] == sc[sc.len() - 1] && sb[0] == sb[sb.len() - 1];
    let shift = if constant {
        // Kayenta adds Gaussian noise here; the judge takes the one difference exactly.
        let d = sc[0] - sb[0];
        Ok(stats::Shift {
            lower: d,
            upper: d,
            estimate: d,
            hodges_lehmann: Some(d),
        })
    } else {
        // The sorted copies: the rank test needs them sorted.
        stats::shift_sorted(&sc, &sb, confidence)
    };
    let shift = match shift {
        Ok(s) => s,
        Err(e) => {
            r.label = Label::Error;
            r.reason = format!("metric classification failed: {e}");
            return r;
        }
    };
    r.interval = Some([shift.lower, shift.upper]);
    r.estimate = Some(shift.estimate);
    r.hodges_lehmann = shift.hodges_lehmann;
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
    let effect_text = if effect.is_nan() {
        format!("{measure} undefined (a mean is 0), effect-size check skipped")
    } else {
        format!("{measure} {}", fmt(effect))
    };
    let dead_band = format!("{} × |estimate| dead band", fmt(tolerance));
    let up = matches!(rule.direction, Direction::Increase | Direction::Either);
    let down = matches!(rule.direction, Direction::Decrease | Direction::Either);
    let is_high = up && shift.lower > band && (effect.is_nan() || effect >= rule.allowed_increase);
    let is_low =
        down && shift.upper < -band && (effect.is_nan() || effect <= rule.allowed_decrease);
    if is_high {
        r.label = Label::High;
        r.critical_failure = rule.critical && (effect.is_nan() || effect >= rule.critical_increase);
        r.reason = format!("{ci} is above +{} ({dead_band}), {effect_text}", fmt(band));
    } else if is_low {
        r.label = Label::Low;
        r.critical_failure = rule.critical && (effect.is_nan() || effect <= rule.critical_decrease);
        r.reason = format!("{ci} is below −{} ({dead_band}), {effect_text}", fmt(band));
    } else if up && shift.lower > band {
        r.reason = format!(
            "{ci} is above +{} ({dead_band}) but the {measure} {} is below the allowed increase {}",
            fmt(band),
            fmt(effect),
            fmt(rule.allowed_increase)
        );
    } else if down && shift.upper < -band {
        r.reason = format!(
            "{ci} is below −{} ({dead_band}) but the {measure} {} is above the allowed decrease {}",
            fmt(band),
            fmt(effect),
            fmt(rule.allowed_decrease)
        );
    } else {
        r.reason = format!(
            "{ci}: no significant change in the bad direction beyond the {dead_band}, {effect_text}"
        );
    }
    if r.critical_failure {
        r.reason.push_str(" (critical)");
    } else if rule.critical && matches!(r.label, Label::High | Label::Low) {
        r.reason
            .push_str(" (critical metric, but the effect does not reach its critical threshold)");
    }
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
    /// Below the marginal threshold, a critical failure, or (Kayenta's rule) half or more
    /// of the metrics without data.
    Fail,
    /// Half or more of the metrics had no data, with `nodataVerdict: no-data`.
    Nodata,
}

/// What half or more of the scored metrics without data gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, schemars::JsonSchema, Default)]
#[serde(rename_all = "kebab-case")]
pub enum NodataVerdict {
    /// Kayenta's rule: the summary is 0, a failure (the default).
    #[default]
    Fail,
    /// A departure from Kayenta: the summary is kept and the verdict is no-data, so the
    /// failure policy decides (pause, by default) instead of a rollback.
    NoData,
}

/// One group's score.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupScore {
    /// The group.
    pub group: String,
    /// 100 · pass / (pass + high + low + nodata-fail); 0 when none of those.
    pub score: f64,
    /// Its weight in the summary, in percent (given, or its share of what the given
    /// weights leave).
    pub weight: f64,
    /// No metric of the group was Pass, High, Low or NodataFailMetric: the group counts as
    /// 100 in the summary (Kayenta's rule).
    pub no_data: bool,
}

/// The scored judgement.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Scores {
    /// Per group.
    pub groups: Vec<GroupScore>,
    /// The weighted summary score (0–100), rounded to two decimals.
    pub summary: f64,
    /// The outcome.
    pub outcome: Outcome,
    /// A critical failure or too many metrics without data decided, whatever the score.
    pub overridden: bool,
    /// Why.
    pub reason: String,
}

/// Score classified metrics as Kayenta's `WeightedSumScorer` and
/// `ThresholdScoreClassifier` do: muted metrics are left out; each metric counts in each
/// of its groups; a group scores 100 · pass / (pass + high + low + nodata-fail), and one
/// with none of those counts as 100; groups are weighted by `weights` (percent) and the
/// groups without a weight share what is left equally; the sum is rounded to two
/// decimals. A critical failure, or half or more of the metrics `Nodata`, makes it 0
/// (with [`NodataVerdict::NoData`], the latter keeps the score and is no data).
pub fn score(
    results: &[MetricResult],
    weights: &BTreeMap<String, f64>,
    pass: f64,
    marginal: f64,
    nodata_verdict: NodataVerdict,
) -> Scores {
    let scored: Vec<&MetricResult> = results.iter().filter(|r| !r.muted).collect();
    let mut order: Vec<&str> = Vec::new();
    for r in &scored {
        for g in &r.groups {
            if !order.contains(&g.as_str()) {
                order.push(g);
            }
        }
    }
    let given: f64 = weights.values().sum();
    let unweighted = order.iter().filter(|g| !weights.contains_key(**g)).count();
    let share = if unweighted > 0 {
        (100.0 - given) / unweighted as f64
    } else {
        0.0
    };
    let groups: Vec<GroupScore> = order
        .iter()
        .map(|g| {
            let of: Vec<&&MetricResult> = scored
                .iter()
                .filter(|r| r.groups.iter().any(|x| x == g))
                .collect();
            let count = |l: Label| of.iter().filter(|r| r.label == l).count() as f64;
            let passes = count(Label::Pass);
            let total =
                passes + count(Label::High) + count(Label::Low) + count(Label::NodataFailMetric);
            GroupScore {
                group: g.to_string(),
                score: if total > 0.0 {
                    passes / total * 100.0
                } else {
                    0.0
                },
                weight: weights.get(*g).copied().unwrap_or(share),
                no_data: total == 0.0,
            }
        })
        .collect();
    let weighted = stats::round2(
        groups
            .iter()
            .map(|g| (if g.no_data { 100.0 } else { g.score }) * (g.weight / 100.0))
            .sum(),
    );
    let nodata = scored.iter().filter(|r| r.label == Label::Nodata).count();
    let too_many_nodata = !scored.is_empty() && nodata as f64 / scored.len() as f64 * 100.0 >= 50.0;
    let critical: Vec<&str> = scored
        .iter()
        .filter(|r| r.critical_failure && r.label != Label::Pass)
        .map(|r| r.name.as_str())
        .collect();
    let nodata_reason = || {
        format!(
            "{nodata} of {} scored metric(s) had no data (50% or more)",
            scored.len()
        )
    };
    let (outcome, summary, overridden, reason) = if !critical.is_empty() {
        (
            Outcome::Fail,
            0.0,
            true,
            format!("critical metric(s) failed: {}", critical.join(", ")),
        )
    } else if too_many_nodata {
        match nodata_verdict {
            NodataVerdict::Fail => (
                Outcome::Fail,
                0.0,
                true,
                format!("{}: score 0", nodata_reason()),
            ),
            NodataVerdict::NoData => (Outcome::Nodata, weighted, true, nodata_reason()),
        }
    } else if weighted >= pass {
        (
            Outcome::Pass,
            weighted,
            false,
            format!("score {} ≥ pass threshold {}", fmt2(weighted), fmt(pass)),
        )
    } else if weighted >= marginal {
        (
            Outcome::Marginal,
            weighted,
            false,
            format!(
                "score {} is marginal (≥ {} but < {})",
                fmt2(weighted),
                fmt(marginal),
                fmt(pass)
            ),
        )
    } else {
        (
            Outcome::Fail,
            weighted,
            false,
            format!(
                "score {} < marginal threshold {}",
                fmt2(weighted),
                fmt(marginal)
            ),
        )
    };
    Scores {
        groups,
        summary,
        outcome,
        overridden,
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
