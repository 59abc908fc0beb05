//! The judge against Kayenta: the cases of Kayenta's own test suites (spinnaker/kayenta at
//! a69573b; `MannWhitneySuite`, `ClassifierSuite`, `ScorerSuite`, `StatisticSuite`,
//! `DetectorSuite`; the suite and case are named above each assertion), and cases computed
//! with R where Kayenta follows R. Kayenta's classifier tests use tolerance 0.10 and
//! confidence 0.95 (`new MannWhitneyClassifier(tolerance = 0.10, confLevel = 0.95)`), which
//! are the judge's `tolerance` and `confidence` here. Tests are named after the item of
//! issue 15 they prove (item1 … item7).
//!
//! R reference values: `wilcox.test(x, y, conf.int = TRUE, exact = FALSE, correct = TRUE)`
//! (R 4.2.2) for the interval. R drops the continuity correction for its estimate and
//! Kayenta does not, so Kayenta's estimate is R's root of the corrected statistic at 0:
//! `wilcox.test(x, y, conf.int = TRUE, conf.level = 1e-300, exact = FALSE,
//! correct = TRUE)$conf.int[1]` (a level of ~0 puts both bounds at that root).

use super::kayenta_data::*;
use super::*;

/// `MannWhitneyClassifier(tolerance = 0.10, confLevel = 0.95)`'s classify.
fn kclassify(rule: &Rule, experiment: &[f64], control: &[f64]) -> MetricResult {
    classify(rule, experiment, control, 0.95, 0.10)
}

/// A rule with Kayenta's `effectSizeThresholds = (allowedDecrease, allowedIncrease)` and
/// `criticalThresholds = (criticalDecrease, criticalIncrease)`.
fn krule(direction: Direction, effect: (f64, f64), critical_effect: (f64, f64)) -> Rule {
    let mut r = rule();
    r.direction = direction;
    (r.allowed_decrease, r.allowed_increase) = effect;
    (r.critical_decrease, r.critical_increase) = critical_effect;
    r
}

fn plain() -> Rule {
    krule(Direction::Either, (1.0, 1.0), (1.0, 1.0))
}

#[track_caller]
fn near(actual: f64, expected: f64, within: f64) {
    assert!(
        (actual - expected).abs() <= within,
        "{actual} is not within {within} of {expected}"
    );
}

// ----- Item 1: the estimate and bounds are the roots Kayenta's solver finds -----

#[test]
fn item1_tie_out_with_r_interval_and_estimate() {
    // MannWhitneySuite "Mann-Whitney Confidence Interval & Estimate: Tie out with R
    // Version": mannWhitneyUTest(experiment, control) at 0.95; E = 1e-6 for the bounds,
    // 1e-4 for the estimate. The exact crossings would be −0.5 and 0.
    let s = shift(&TIE_OUT_EXPERIMENT, &TIE_OUT_CONTROL, 0.95).expect("computes");
    near(s.lower, -0.500002521696696, 1e-6);
    near(s.upper, -3.486287505871302E-5, 1e-6);
    near(s.estimate, -0.4999393907180323, 1e-4);
    // Same case, "(Large)", at 0.98.
    let s = shift(&TIE_OUT_LARGE_EXPERIMENT, &TIE_OUT_LARGE_CONTROL, 0.98).expect("computes");
    near(s.lower, -0.4999173250549087, 1e-6);
    near(s.upper, -6.912685789769486E-6, 1e-6);
    near(s.estimate, -3.45044082729315E-5, 1e-4);
}

#[test]
fn item1_intermediate_values_of_the_solver() {
    // MannWhitneySuite "Mann-Whitney Intermediate Values / Variables" (confidence 0.95,
    // E = 1e-6): the bracket, the statistic at its ends and the three roots. The solver's
    // tolerance (1e-4) is wider than this interval, so its "lower" bound is above its
    // "upper" one, as in Kayenta.
    let (x, y) = (&INTERMEDIATE_X[..], &INTERMEDIATE_Y[..]);
    let mu_min = x.iter().copied().fold(f64::INFINITY, f64::min)
        - y.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let mu_max = x.iter().copied().fold(f64::NEG_INFINITY, f64::max)
        - y.iter().copied().fold(f64::INFINITY, f64::min);
    near(mu_min, -3.124999999999986, 1e-6);
    near(mu_max, 5.555555555555557, 1e-6);
    let zq = -normal_quantile(0.05 / 2.0);
    near(zq, 1.9599639845400536, 1e-6);
    let f = |mu: f64, z: f64| wilcoxon_diff(x, y, mu, z).expect("not all tied");
    near(f(mu_min, zq), 17.090968923762254, 1e-6);
    near(f(mu_max, zq), -20.997687930433106, 1e-6);
    near(f(mu_min, -zq), 21.01089689284236, 1e-6);
    near(f(mu_max, -zq), -17.077759961353, 1e-6);
    let s = shift(x, y, 0.95).expect("computes");
    near(s.lower, 3.521755377702165E-5, 1e-6);
    near(s.upper, 2.02456461662334E-5, 1e-6);
    near(s.estimate, 2.6279243045155653E-5, 1e-6);
}

#[test]
fn item1_small_samples_and_the_quantile() {
    // MannWhitneySuite "Mann-Whitney Confidence Interval & Estimate" (0.95, E = 1e-6).
    let s = shift(&[10.0, 20.0, 30.0, 40.0], &[1.0, 2.0, 3.0, 4.0], 0.95).expect("computes");
    near(s.lower, 6.0, 1e-6);
    near(s.upper, 39.0, 1e-6);
    near(s.estimate, 22.5, 1e-6);
    // MannWhitneySuite "Test zQuant": inverseCumulativeProbability(0.02 / 2).
    near(normal_quantile(0.01), -2.326348, 1e-6);
}

#[test]
fn item1_a_five_sample_pair_is_high_as_in_kayenta_not_pass() {
    // R: x <- c(29, 29, 22, 19, 29); y <- c(13, 18, 10, 10, 4)
    //   wilcox.test(x, y, conf.int=TRUE, conf.level=0.98, exact=FALSE, correct=TRUE)$conf.int
    //     → 3.9999782634687473, 25
    //   Kayenta's estimate (conf.level = 1e-300, see above) → 15.757152818778415
    //   median(outer(x, y, "-")) → 16 (Hodges-Lehmann)
    // The dead band is 0.25 × 15.757 = 3.939 < 3.99998: High. With the Hodges-Lehmann
    // median the band is 4 and the metric would pass.
    let (x, y) = (
        [29.0, 29.0, 22.0, 19.0, 29.0],
        [13.0, 18.0, 10.0, 10.0, 4.0],
    );
    let r = classify(&rule(), &x, &y, 0.98, 0.25);
    assert_eq!(r.label, Label::High, "{r:#?}");
    let [lower, upper] = r.interval.expect("an interval");
    near(lower, 3.9999782634687473, 1e-9);
    near(upper, 25.0, 1e-9);
    near(r.estimate.expect("estimate"), 15.757152818778415, 1e-9);
    assert_eq!(r.hodges_lehmann, Some(16.0));
}

// ----- Item 2: a zero mean makes the mean ratio NaN and skips the effect check -----

#[test]
fn item2_a_zero_mean_is_a_nan_ratio_and_the_effect_check_is_skipped() {
    // ClassifierSuite "Mann-Whitney Zero Mean: High Metric with Effect Size":
    // effectSizeThresholds (0.8, 1.2) → High, deviation NaN.
    let zeros = [0.0; 5];
    let r = kclassify(
        &krule(Direction::Either, (0.8, 1.2), (1.0, 1.0)),
        &[54.9, 54.5, 55.1, 55.6, 57.4],
        &zeros,
    );
    assert_eq!(r.label, Label::High);
    assert!(r.ratio.is_some_and(f64::is_nan), "{r:#?}");
    // "Zero Mean: Low Metric with Effect Size" → Low, deviation NaN.
    let r = kclassify(
        &krule(Direction::Either, (0.8, 1.2), (1.0, 1.0)),
        &zeros,
        &[54.9, 54.5, 55.1, 55.6, 57.4],
    );
    assert_eq!(r.label, Label::Low);
    assert!(r.ratio.is_some_and(f64::is_nan), "{r:#?}");
    // "Zero Mean: Pass Metric" → Pass, deviation 1.0.
    let r = kclassify(
        &krule(Direction::Either, (0.8, 1.2), (1.0, 1.0)),
        &zeros,
        &zeros,
    );
    assert_eq!((r.label, r.ratio), (Label::Pass, Some(1.0)));
    // "Zero Mean: Critical Metric": NaN replaced, critical, criticalThresholds (0.8, 1.2)
    // → High and critical (the NaN effect passes the critical check).
    let mut k = krule(Direction::Either, (1.0, 1.0), (0.8, 1.2));
    k.critical = true;
    k.nan_strategy = NanStrategy::Replace;
    let experiment = [
        0.05000000074505806,
        0.05000000074505806,
        0.01666666753590107,
        0.01666666753590107,
        0.01666666753590107,
        0.05000000074505806,
        0.03333333507180214,
        0.05000000260770321,
        0.05000000260770321,
        0.13333333656191826,
    ];
    let r = kclassify(&k, &experiment, &[0.0; 10]);
    assert_eq!((r.label, r.critical_failure), (Label::High, true), "{r:#?}");
}

#[test]
fn item2_a_zero_canary_mean_over_a_negative_baseline_is_high() {
    // R: x <- c(-2, -1, 0, 1, 2); y <- c(-20, -21, -19, -22, -18)
    //   wilcox.test(x, y, conf.int=TRUE, conf.level=0.98, exact=FALSE, correct=TRUE)$conf.int
    //     → 16.00005024961294, 23.99994975038706; Kayenta's estimate → 20.
    // mean(x) = 0: Kayenta's ratio is NaN and the check is skipped → High. A ratio of
    // 0 / −20 = 0 would be below the allowed increase 1 → Pass.
    let r = classify(
        &rule(),
        &[-2.0, -1.0, 0.0, 1.0, 2.0],
        &[-20.0, -21.0, -19.0, -22.0, -18.0],
        0.98,
        0.25,
    );
    assert_eq!(r.label, Label::High, "{r:#?}");
    let [lower, upper] = r.interval.expect("an interval");
    near(lower, 16.00005024961294, 1e-9);
    near(upper, 23.99994975038706, 1e-9);
    near(r.estimate.expect("estimate"), 20.0, 1e-9);
    assert!(r.effect.is_some_and(f64::is_nan));
    assert!(
        r.reason.contains("effect-size check skipped"),
        "{}",
        r.reason
    );
}

#[test]
fn item2_mean_ratios() {
    // StatisticSuite "Effect Size: Mean Ratio (No Effect)", "(High)", "(Low)",
    // "(Zero Mean)".
    assert_eq!(mean_ratio(&[1.0; 5], &[1.0; 5]), 1.0);
    assert_eq!(mean_ratio(&[10.0; 5], &[1.0; 5]), 10.0);
    assert_eq!(mean_ratio(&[10.0; 5], &[100.0; 5]), 0.1);
    assert!(mean_ratio(&[10.0; 5], &[0.0; 5]).is_nan());
    assert!(mean_ratio(&[0.0; 5], &[10.0; 5]).is_nan());
}

// ----- Item 3: an empty side with nanStrategy replace is a pass -----

#[test]
fn item3_missing_data_with_nan_replacement_is_a_pass() {
    let control = [1.0, 2.0, 3.0, 4.0, 5.0];
    // ClassifierSuite "Mann-Whitney Missing Experiment Data with NaN Replacement" → Pass.
    let mut k = krule(Direction::Decrease, (1.0, 1.0), (1.0, 1.0));
    k.nan_strategy = NanStrategy::Replace;
    let r = kclassify(&k, &[], &control);
    assert_eq!(
        (r.label, r.critical_failure),
        (Label::Pass, false),
        "{r:#?}"
    );
    // ... also for a critical metric, and for a missing baseline.
    k.critical = true;
    let r = kclassify(&k, &control, &[]);
    assert_eq!(
        (r.label, r.critical_failure),
        (Label::Pass, false),
        "{r:#?}"
    );
    // ClassifierSuite "Mann-Whitney Missing Experiment Data" → Nodata.
    let k = krule(Direction::Decrease, (1.0, 1.0), (1.0, 1.0));
    assert_eq!(kclassify(&k, &[], &control).label, Label::Nodata);
    // "Missing Experiment Data: Critical Metric" → Nodata, critical.
    let mut k = k;
    k.critical = true;
    let r = kclassify(&k, &[], &control);
    assert_eq!((r.label, r.critical_failure), (Label::Nodata, true));
    // "Missing Data: Reason String": a reason is given.
    assert!(!kclassify(&k, &[], &[]).reason.is_empty());
    // A critical metric that must have data is Nodata and critical (Kayenta's classify:
    // NodataFailMetric only when not critical).
    k.must_have_data = true;
    let r = kclassify(&k, &[], &control);
    assert_eq!((r.label, r.critical_failure), (Label::Nodata, true));
}

// ----- Item 4: critical needs the critical flag and the critical effect -----

#[test]
fn item4_critical_needs_the_flag_and_the_critical_effect() {
    let (experiment, control) = ([20.0, 22.0, 21.0, 25.0, 30.0], [1.0, 2.2, 1.1, 2.5, 3.0]);
    let critical = |effect: (f64, f64), critical_effect: (f64, f64)| {
        let mut k = krule(Direction::Either, effect, critical_effect);
        k.critical = true;
        kclassify(&k, &experiment, &control)
    };
    // ClassifierSuite "Critical Effect Size: Critical High": criticalThresholds (1.0, 1.2).
    let r = critical((1.0, 1.0), (1.0, 1.2));
    assert_eq!((r.label, r.critical_failure), (Label::High, true));
    // "Critical Effect Size: High": effect (1.0, 5.0), critical (1.0, 13.0) → High, not
    // critical (the ratio, 11.55, is below 13).
    let r = critical((1.0, 5.0), (1.0, 13.0));
    assert_eq!(
        (r.label, r.critical_failure),
        (Label::High, false),
        "{r:#?}"
    );
    // "Critical Effect Size: Pass": effect (1.0, 13.0), critical (1.0, 15.0) → Pass.
    let r = critical((1.0, 13.0), (1.0, 15.0));
    assert_eq!((r.label, r.critical_failure), (Label::Pass, false));
    // "Critical Effect Size: Critical High (Default Thresholds)" → High, critical.
    let r = critical((1.0, 1.0), (1.0, 1.0));
    assert_eq!((r.label, r.critical_failure), (Label::High, true));
    // "Critical Effect Size: Critical Low": critical (1.2, 1.0) → Low, critical.
    let mut k = krule(Direction::Either, (1.0, 1.0), (1.2, 1.0));
    k.critical = true;
    let r = kclassify(
        &k,
        &[2.0, 2.0, 2.0, 2.0, 3.0],
        &[10.0, 20.2, 10.1, 20.5, 30.0],
    );
    assert_eq!((r.label, r.critical_failure), (Label::Low, true));
    // A criticalIncrease without `critical` makes nothing critical: the High is scored
    // like any other failure.
    let r = kclassify(
        &krule(Direction::Either, (1.0, 1.0), (1.0, 1.2)),
        &experiment,
        &control,
    );
    assert_eq!((r.label, r.critical_failure), (Label::High, false));
    let pass = kclassify(&plain(), &control, &control);
    let s = score(
        &[pass, r],
        &BTreeMap::new(),
        95.0,
        75.0,
        NodataVerdict::Fail,
    );
    assert_eq!(
        (s.summary, s.outcome, s.overridden),
        (50.0, Outcome::Fail, false)
    );
}

// ----- Item 5: scoring -----

fn result(name: &str, groups: &[&str], label: Label) -> MetricResult {
    let mut r = rule();
    r.name = name.into();
    r.groups = groups.iter().map(ToString::to_string).collect();
    let mut res = MetricResult::error(&r, String::new());
    res.label = label;
    res
}

fn summary(results: &[MetricResult], weights: &[(&str, f64)]) -> Scores {
    let weights = weights.iter().map(|(g, w)| (g.to_string(), *w)).collect();
    score(results, &weights, 95.0, 75.0, NodataVerdict::Fail)
}

#[test]
fn item5_kayentas_scorer_suite() {
    use Label::*;
    // ScorerSuite "Weighted Sum Group Scorer: Single Metric Pass" → 100.
    assert_eq!(summary(&[result("p", &["g"], Pass)], &[]).summary, 100.0);
    // "Single Metric Fail" → 0.
    assert_eq!(summary(&[result("h", &["g"], High)], &[]).summary, 0.0);
    // "Single group Nodata" → group score 0, summary 0 (and a Fail).
    let s = summary(&[result("n", &["g"], Nodata)], &[]);
    assert_eq!(
        (s.groups[0].score, s.summary, s.outcome),
        (0.0, 0.0, Outcome::Fail)
    );
    // "One Group, Two Metrics" → 50.
    let s = summary(&[result("p", &["g"], Pass), result("h", &["g"], High)], &[]);
    assert_eq!(s.summary, 50.0);
    // "One Group, Three Metrics" → 33.33 (rounded to two decimals).
    let s = summary(
        &[
            result("p", &["g"], Pass),
            result("h", &["g"], High),
            result("l", &["g"], Low),
        ],
        &[],
    );
    assert_eq!(s.summary, 33.33);
    // "Two Groups, Three Metrics": weights 75/25 → 75.
    let s = summary(
        &[
            result("p1", &["group-1"], Pass),
            result("p2", &["group-1"], Pass),
            result("f", &["group-2"], High),
        ],
        &[("group-1", 75.0), ("group-2", 25.0)],
    );
    assert_eq!(s.summary, 75.0);
    // "Two Groups, Three Metrics (Equal Weight)" → 25.
    let s = summary(
        &[
            result("p", &["group-1"], Pass),
            result("f1", &["group-1"], High),
            result("f2", &["group-2"], High),
        ],
        &[("group-1", 50.0), ("group-2", 50.0)],
    );
    assert_eq!(s.summary, 25.0);
    // "Two Groups, Three Metrics (Equal Weight), one NoData" → 50.
    let s = summary(
        &[
            result("p", &["group-1"], Pass),
            result("n", &["group-1"], Nodata),
            result("f", &["group-2"], High),
        ],
        &[("group-1", 50.0), ("group-2", 50.0)],
    );
    assert_eq!(s.summary, 50.0);
    // "Two Metrics, one good (normal), one fail (critical)" → 0.
    let mut critical_high = result("h", &["g"], High);
    critical_high.critical_failure = true;
    let s = summary(&[result("p", &["g"], Pass), critical_high], &[]);
    assert_eq!((s.summary, s.outcome), (0.0, Outcome::Fail));
    // "Two Metrics, one low (normal), one good (critical)" → 50.
    let mut critical_pass = result("p", &["g"], Pass);
    critical_pass.critical_failure = true;
    let s = summary(&[result("l", &["g"], Low), critical_pass], &[]);
    assert_eq!(s.summary, 50.0);
    // "Two Metrics, one good (normal), one nodata (critical)" → 0.
    let mut critical_nodata = result("n", &["g"], Nodata);
    critical_nodata.critical_failure = true;
    let s = summary(&[result("p", &["g"], Pass), critical_nodata], &[]);
    assert_eq!(s.summary, 0.0);
    // "Two Groups (Unequal Weight), Four Metrics": 15/85 → 5.
    let s = summary(
        &[
            result("h", &["group1"], High),
            result("l", &["group1"], Low),
            result("p", &["group1"], Pass),
            result("f", &["group2"], High),
        ],
        &[("group1", 15.0), ("group2", 85.0)],
    );
    assert_eq!(s.summary, 5.0);
}

#[test]
fn item5_a_group_without_data_counts_as_a_full_score() {
    // Issue 15: Pass + High in A, Nodata in B → A 50, B (no data) 100 → 75, marginal
    // (WeightedSumScorer.calculateSummaryScore: effectiveScore = 100 for a noData group).
    let s = summary(
        &[
            result("p", &["A"], Label::Pass),
            result("h", &["A"], Label::High),
            result("n", &["B"], Label::Nodata),
        ],
        &[],
    );
    assert_eq!((s.summary, s.outcome), (75.0, Outcome::Marginal), "{s:#?}");
    assert!(s.groups[1].no_data);
}

#[test]
fn item5_labels_in_the_denominator() {
    use Label::*;
    // WeightedSumScorer.calculateGroupScore: NodataFailMetric is a failure of its group,
    // and not "no data" for the 50% rule → 50, a Fail.
    let s = summary(
        &[
            result("p", &["g"], Pass),
            result("f", &["g"], NodataFailMetric),
        ],
        &[],
    );
    assert_eq!(
        (s.summary, s.outcome, s.overridden),
        (50.0, Outcome::Fail, false)
    );
    // Error is not in the denominator → 100.
    let s = summary(
        &[result("p", &["g"], Pass), result("e", &["g"], Error)],
        &[],
    );
    assert_eq!((s.summary, s.outcome), (100.0, Outcome::Pass));
}

#[test]
fn item5_unweighted_groups_share_the_rest_and_metrics_count_in_every_group() {
    use Label::*;
    // WeightedSumScorer.calculateSummaryScore: A has 60; B, the one group without a
    // weight, gets (100 − 60) / 1 = 40. A = 50, B = 100 → 30 + 40 = 70.
    let s = summary(
        &[
            result("p", &["A"], Pass),
            result("h", &["A"], High),
            result("q", &["B"], Pass),
        ],
        &[("A", 60.0)],
    );
    let weights: Vec<f64> = s.groups.iter().map(|g| g.weight).collect();
    assert_eq!((weights, s.summary), (vec![60.0, 40.0], 70.0));
    // calculateGroupScores: a metric counts in each of its groups. A = {Pass, High} = 50,
    // B = {High} = 0 → 25.
    let s = summary(
        &[result("p", &["A"], Pass), result("h", &["A", "B"], High)],
        &[],
    );
    let groups: Vec<f64> = s.groups.iter().map(|g| g.score).collect();
    assert_eq!((groups, s.summary), (vec![50.0, 0.0], 25.0));
}

#[test]
fn item5_muted_metrics_are_not_scored() {
    // ScoringHelper.score: muted results are filtered out before scoring; they are still
    // classified and reported.
    let mut muted = result("h", &["g"], Label::High);
    muted.muted = true;
    let s = summary(&[result("p", &["g"], Label::Pass), muted.clone()], &[]);
    assert_eq!((s.summary, s.outcome), (100.0, Outcome::Pass));
    // A muted critical failure does not fail the judgement either.
    muted.critical_failure = true;
    let s = summary(&[result("p", &["g"], Label::Pass), muted], &[]);
    assert_eq!((s.summary, s.outcome), (100.0, Outcome::Pass));
    // A muted rule still classifies.
    let mut r = rule();
    r.muted = true;
    let res = classify(&r, &plus(20.0), &B, 0.98, 0.25);
    assert_eq!((res.label, res.muted), (Label::High, true));
}

// ----- Item 6: outlier fences -----

#[test]
fn item6_the_fences_are_widened_to_the_1st_and_99th_percentiles() {
    // R: quantile(c(10,10,10,10,11,10,10,10,10,14), c(.01,.25,.75,.99), type = 7)
    //   → 10, 10, 10, 13.73. IQR = 0, so Q3 + 3·IQR = 10, but the upper fence is
    //   max(P99, 10) = 13.73: 11 stays and 14 goes.
    let values = [10.0, 10.0, 10.0, 10.0, 11.0, 10.0, 10.0, 10.0, 10.0, 14.0];
    let (lo, hi) = outlier_fences(&values, 3.0);
    near(lo, 10.0, 1e-12);
    near(hi, 13.73, 1e-12);
    let kept = without_outliers(&values, 3.0);
    assert_eq!(kept, [10.0, 10.0, 10.0, 10.0, 11.0, 10.0, 10.0, 10.0, 10.0]);
}

#[test]
fn item6_small_samples_have_fences_too() {
    // R: quantile(c(1, 2, 100), c(.01,.25,.75,.99), type = 7) → 1.02, 1.5, 51, 98.04.
    // Factor 0.5: Q3 + 0.5·49.5 = 75.75, widened to P99 = 98.04; 100 is outside.
    assert_eq!(without_outliers(&[1.0, 2.0, 100.0], 0.5), [1.0, 2.0]);
    let mut r = rule();
    r.outlier_factor = Some(0.5);
    let res = classify(&r, &[1.0, 2.0, 100.0], &B, 0.98, 0.25);
    assert_eq!((res.outliers[0], res.canary_count), (1, 2));
}

#[test]
fn item6_kayentas_detector_suite_with_the_judges_widened_fences() {
    // DetectorSuite "IQR Detection" (factor 1.5): only 50 is an outlier. The judge's
    // detector widens the fences (reduceSensitivity = true); R's quantile(type = 7) gives
    // P99 = 48.53 < 50, so the truth is the same.
    let data = [21.0, 23.0, 24.0, 25.0, 50.0, 29.0, 23.0, 21.0];
    assert_eq!(
        without_outliers(&data, 1.5),
        [21.0, 23.0, 24.0, 25.0, 29.0, 23.0, 21.0]
    );
    // "IQR NIST Test" (factor 1.5): only the last value, 1441, is an outlier.
    let kept = without_outliers(&NIST, 1.5);
    assert_eq!(kept, NIST[..NIST.len() - 1]);
    // "IQR Empty Data".
    assert!(without_outliers(&[], 1.5).is_empty());
}

#[test]
fn item6_percentiles_are_r7() {
    // StatisticSuite "Summary Statistics: Basic Percentile".
    let data = [0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5];
    near(percentile(&data, 5.0), 0.175, 1e-4);
    assert_eq!(percentile(&data, 50.0), 1.75);
    assert_eq!(percentile(&data, 100.0), 3.5);
    // "Basic Percentile Estimate (Linear Interpolation)".
    let data: Vec<f64> = (0..10).map(f64::from).collect();
    assert_eq!(percentile(&data, 50.0), 4.5);
    // "Percentile (NIST Data)".
    let data = [
        95.1772, 95.1567, 95.1937, 95.1959, 95.1442, 95.0610, 95.1591, 95.1195, 95.1772, 95.0925,
        95.1990, 95.1682,
    ];
    near(percentile(&data, 90.0), 95.19568, 1e-9);
    // "Percentile Metric Object".
    assert_eq!(percentile(&[1.0], 100.0), 1.0);
}

// ----- Item 7: the reason names the configured tolerance -----

#[test]
fn item7_the_reason_names_the_configured_tolerance() {
    let r = classify(&rule(), &plus(20.0), &B, 0.98, 0.1);
    assert_eq!(r.label, Label::High);
    assert!(
        r.reason.contains("0.1 × |estimate| dead band"),
        "{}",
        r.reason
    );
    assert!(!r.reason.contains("0.25"), "{}", r.reason);
    let r = classify(&rule(), &plus(-20.0), &B, 0.98, 0.4);
    assert_eq!(r.label, Label::Low);
    assert!(
        r.reason.contains("0.4 × |estimate| dead band"),
        "{}",
        r.reason
    );
}

// ----- The rest of Kayenta's ClassifierSuite and StatisticSuite -----

#[test]
fn classifier_suite_labels() {
    let k = plain();
    // ClassifierSuite "Mann-Whitney Classifier Test: Pass Metric" / "High Metric" / "Low
    // Metric".
    assert_eq!(
        kclassify(&k, &PASS_EXPERIMENT, &CONTROL_10).label,
        Label::Pass
    );
    assert_eq!(
        kclassify(&k, &HIGH_EXPERIMENT, &CONTROL_10).label,
        Label::High
    );
    assert_eq!(
        kclassify(&k, &PASS_EXPERIMENT, &CONTROL_20).label,
        Label::Low
    );
    // "Directional Test: Increase" (low data, increase) → Pass; "Decrease" (high data,
    // decrease) → Pass; "High Metric" (increase) → High, not critical; "Low Metric"
    // (decrease) → Low.
    let up = krule(Direction::Increase, (1.0, 1.0), (1.0, 1.0));
    let down = krule(Direction::Decrease, (1.0, 1.0), (1.0, 1.0));
    assert_eq!(
        kclassify(&up, &PASS_EXPERIMENT, &CONTROL_20).label,
        Label::Pass
    );
    assert_eq!(
        kclassify(&down, &HIGH_EXPERIMENT, &CONTROL_10).label,
        Label::Pass
    );
    let r = kclassify(&up, &HIGH_EXPERIMENT, &CONTROL_10);
    assert_eq!((r.label, r.critical_failure), (Label::High, false));
    assert_eq!(
        kclassify(&down, &PASS_EXPERIMENT, &CONTROL_20).label,
        Label::Low
    );
    // "Mean Ratio Effect Size: High": thresholds (0.8, 1.2) → High.
    let effect = krule(Direction::Either, (0.8, 1.2), (1.0, 1.0));
    let r = kclassify(
        &effect,
        &[20.0, 22.0, 21.0, 25.0, 30.0],
        &[1.0, 2.2, 1.1, 2.5, 3.0],
    );
    assert_eq!(r.label, Label::High);
    // "Mean Ratio Effect Size: Low" (decrease, thresholds (0.8, 1.2)) → Low.
    let effect_down = krule(Direction::Decrease, (0.8, 1.2), (1.0, 1.0));
    let r = kclassify(&effect_down, &PASS_EXPERIMENT, &CONTROL_20);
    assert_eq!(r.label, Label::Low);
    // "Mean Ratio Effect Size: Pass": thresholds (0.5, 1.0) → Pass.
    let r = kclassify(
        &krule(Direction::Either, (0.5, 1.0), (1.0, 1.0)),
        &[10.0, 12.2, 10.1, 12.5, 23.0],
        &[20.0, 22.0, 21.0, 25.0, 30.0],
    );
    assert_eq!(r.label, Label::Pass);
    // "CLES Effect Size: Pass" / "High" / "Low": tolerance 0.20, confidence 0.98.
    let cles_rule = |effect: (f64, f64)| {
        let mut k = krule(Direction::Either, effect, (0.5, 0.5));
        k.measure = EffectMeasure::Cles;
        k
    };
    let r = classify(
        &cles_rule((0.5, 0.8)),
        &CLES_PASS_EXPERIMENT,
        &CLES_PASS_CONTROL,
        0.98,
        0.20,
    );
    assert_eq!(r.label, Label::Pass);
    let r = classify(
        &cles_rule((0.2, 0.8)),
        &CLES_HIGH_EXPERIMENT,
        &CLES_HIGH_CONTROL,
        0.98,
        0.20,
    );
    assert_eq!(r.label, Label::High);
    let r = classify(
        &cles_rule((0.2, 0.8)),
        &CLES_LOW_EXPERIMENT,
        &CLES_LOW_CONTROL,
        0.98,
        0.20,
    );
    assert_eq!(r.label, Label::Low);
}

#[test]
fn classifier_suite_ties() {
    let down = krule(Direction::Decrease, (1.0, 1.0), (1.0, 1.0));
    // ClassifierSuite "Mann-Whitney Tied Observations" → Pass.
    assert_eq!(kclassify(&down, &[1.0; 3], &[1.0; 2]).label, Label::Pass);
    // "Mann-Whitney Identical Populations" → Pass.
    let r = kclassify(
        &down,
        &[1.0, 2.0, 3.0, 4.0, 5.0],
        &[5.0, 4.0, 3.0, 2.0, 1.0],
    );
    assert_eq!(r.label, Label::Pass);
    // "Mann-Whitney Leading Zero Identical Population" → Pass.
    let r = kclassify(&down, &[0.0, 1.0, 1.0, 1.0, 1.0], &[1.0; 5]);
    assert_eq!(r.label, Label::Pass);
    // "Mann-Whitney Majority Tied Observations" → Pass.
    let r = kclassify(&plain(), &[1.0, 1.0, 1.0, 1.0, 10.0], &[1.0; 5]);
    assert_eq!(r.label, Label::Pass);
    // "Mann-Whitney Tied Ranks" and "Tied Ranks With Zeros" → High (Kayenta adds noise;
    // the judge takes the one difference).
    assert_eq!(
        kclassify(&plain(), &[10.0; 5], &[1.0; 5]).label,
        Label::High
    );
    assert_eq!(
        kclassify(&plain(), &[10.0; 5], &[0.0; 5]).label,
        Label::High
    );
}

#[test]
fn statistic_suite_effect_sizes() {
    // StatisticSuite "CLES Effect Size: Identical" → 0.5.
    let same = [1.0, 2.0, 3.0, 4.0, 5.0];
    assert_eq!(cles(&same, &same), 0.5);
    // "CLES Effect Size: Different (No Overlap)" → 0.0.
    let experiment = [
        2.27776335, 2.61149434, 3.26894105, 2.91672701, 1.40656921, 2.18292082, 3.47901292,
        3.00034118, 3.02402043, 4.69912745,
    ];
    let control = [
        25.31531073,
        25.19450817,
        24.6288846,
        24.37991861,
        26.40999244,
        25.28524759,
        24.99788745,
        26.13841676,
        22.93604649,
        24.56817832,
    ];
    assert_eq!(cles(&experiment, &control), 0.0);
    // "Summary Statistics: List": mean 5.5.
    assert_eq!(mean(&[1.0, 1.0, 1.0, 10.0, 10.0, 10.0]), 5.5);
}
