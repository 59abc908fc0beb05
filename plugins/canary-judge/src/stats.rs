//! The statistics of the judge, exactly as R's `wilcox.test(x, y, conf.int = TRUE,
//! exact = FALSE, correct = TRUE)` computes them (the asymptotic two-sample case), with
//! `x` the canary and `y` the baseline.
//!
//! R finds the confidence bounds with `uniroot` on a step function of the shift `d`; the
//! function only changes at pairwise differences `x_i - y_j`, so this module finds the
//! exact difference where it crosses zero instead (R's answer is within its tolerance,
//! 1e-4, of it). No random noise is ever added: when both samples are constant every
//! pairwise difference is the same `d`, and the interval is `[d, d]` with estimate `d`.

/// Average ranks (1-based) of `values`, ties sharing the mean of their positions.
pub fn ranks(values: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[a].total_cmp(&values[b]));
    let mut out = vec![0.0; values.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && values[order[j + 1]] == values[order[i]] {
            j += 1;
        }
        let rank = (i + j) as f64 / 2.0 + 1.0;
        for &k in &order[i..=j] {
            out[k] = rank;
        }
        i = j + 1;
    }
    out
}

/// Σ (t³ − t) over the sizes t of the groups of tied values.
fn tie_sum(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mut sum = 0.0;
    let mut i = 0;
    while i < sorted.len() {
        let mut j = i;
        while j + 1 < sorted.len() && sorted[j + 1] == sorted[i] {
            j += 1;
        }
        let t = (j - i + 1) as f64;
        sum += t * t * t - t;
        i = j + 1;
    }
    sum
}

/// R's `wdiff(d, zq)`: the continuity-corrected, tie-corrected normal statistic of the
/// rank-sum of `x - d` against `y`, minus the quantile `zq`. `None` when every observation
/// is tied (σ = 0).
fn wdiff(x: &[f64], y: &[f64], d: f64, zq: f64, correct: bool) -> Option<f64> {
    let (nx, ny) = (x.len() as f64, y.len() as f64);
    let combined: Vec<f64> = x.iter().map(|v| v - d).chain(y.iter().copied()).collect();
    let r = ranks(&combined);
    let dz = r[..x.len()].iter().sum::<f64>() - nx * (nx + 1.0) / 2.0 - nx * ny / 2.0;
    let correction = if correct {
        dz.signum() * 0.5 * f64::from(dz != 0.0)
    } else {
        0.0
    };
    let n = nx + ny;
    let sigma = ((nx * ny / 12.0) * ((n + 1.0) - tie_sum(&combined) / (n * (n - 1.0)))).sqrt();
    if sigma == 0.0 || !sigma.is_finite() {
        return None;
    }
    Some((dz - correction) / sigma - zq)
}

/// Every pairwise difference `x_i - y_j`, sorted.
fn differences(x: &[f64], y: &[f64]) -> Vec<f64> {
    let mut d: Vec<f64> = x
        .iter()
        .flat_map(|a| y.iter().map(move |b| a - b))
        .collect();
    d.sort_by(f64::total_cmp);
    d.dedup();
    d
}

/// The shift where `wdiff(·, zq)` crosses zero: R's `root(zq)`. `wdiff` is non-increasing
/// in the shift and constant between consecutive pairwise differences, so the crossing is
/// found by bisection over those differences.
fn root(x: &[f64], y: &[f64], diffs: &[f64], zq: f64, correct: bool) -> f64 {
    let (lo, hi) = (diffs[0], diffs[diffs.len() - 1]);
    let f = |d: f64| wdiff(x, y, d, zq, correct).unwrap_or(0.0);
    if f(lo) <= 0.0 {
        return lo;
    }
    if f(hi) >= 0.0 {
        return hi;
    }
    // The value on the open interval after diffs[k].
    let after = |k: usize| f((diffs[k] + diffs[k + 1]) / 2.0);
    let last = diffs.len() - 2;
    if after(last) > 0.0 {
        return hi;
    }
    // The first interval whose value is not positive; the crossing is at its left end.
    let (mut a, mut b) = (0usize, last);
    while a < b {
        let m = (a + b) / 2;
        if after(m) > 0.0 {
            a = m + 1;
        } else {
            b = m;
        }
    }
    let k = a;
    if after(k) == 0.0 {
        // A plateau at zero: its middle, as a root finder settles for any point of it.
        let mut end = k;
        while end < last && after(end + 1) == 0.0 {
            end += 1;
        }
        return (diffs[k] + diffs[end + 1]) / 2.0;
    }
    diffs[k]
}

/// The standard normal quantile (Acklam's rational approximation: relative error below
/// 1.2e-9, far below what moves a bound from one pairwise difference to the next).
pub fn qnorm(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969_683_028_665_376e1,
        2.209_460_984_245_205e2,
        -2.759_285_104_469_687e2,
        1.383_577_518_672_69e2,
        -3.066_479_806_614_716e1,
        2.506_628_277_459_239,
    ];
    const B: [f64; 5] = [
        -5.447_609_879_822_406e1,
        1.615_858_368_580_409e2,
        -1.556_989_798_598_866e2,
        6.680_131_188_771_972e1,
        -1.328_068_155_288_572e1,
    ];
    const C: [f64; 6] = [
        -7.784_894_002_430_293e-3,
        -3.223_964_580_411_365e-1,
        -2.400_758_277_161_838,
        -2.549_732_539_343_734,
        4.374_664_141_464_968,
        2.938_163_982_698_783,
    ];
    const D: [f64; 4] = [
        7.784_695_709_041_462e-3,
        3.224_671_290_700_398e-1,
        2.445_134_137_142_996,
        3.754_408_661_907_416,
    ];
    let low = 0.024_25;
    if p < low {
        let q = (-2.0 * p.ln()).sqrt();
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    } else if p <= 1.0 - low {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    } else {
        let q = (-2.0 * (1.0 - p).ln()).sqrt();
        -(((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    }
}

/// The result of the rank test.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Shift {
    /// Lower bound of the confidence interval of canary − baseline.
    pub lower: f64,
    /// Upper bound.
    pub upper: f64,
    /// The Hodges-Lehmann estimate: the median of every pairwise difference.
    pub estimate: f64,
}

/// Pairwise differences the judge will sort at most (a million: 8 MB); beyond that a
/// coarser step is needed.
pub const MAX_PAIRS: usize = 1_000_000;

/// The confidence interval (at `confidence`, e.g. 0.98) and estimate of the shift
/// canary − baseline. Both samples must be non-empty and NaN-free.
pub fn shift(canary: &[f64], baseline: &[f64], confidence: f64) -> Result<Shift, String> {
    if canary.is_empty() || baseline.is_empty() {
        return Err("both samples need values".into());
    }
    let pairs = canary.len().saturating_mul(baseline.len());
    if pairs > MAX_PAIRS {
        return Err(format!(
            "{} × {} samples is over {MAX_PAIRS} pairs; use a coarser step or a shorter window",
            canary.len(),
            baseline.len()
        ));
    }
    let mut all: Vec<f64> = canary
        .iter()
        .flat_map(|a| baseline.iter().map(move |b| a - b))
        .collect();
    let mid = all.len() / 2;
    all.sort_by(f64::total_cmp);
    let estimate = if all.len() % 2 == 1 {
        all[mid]
    } else {
        (all[mid - 1] + all[mid]) / 2.0
    };
    let diffs = differences(canary, baseline);
    if diffs.len() == 1 {
        return Ok(Shift {
            lower: diffs[0],
            upper: diffs[0],
            estimate: diffs[0],
        });
    }
    let alpha = 1.0 - confidence;
    let z = qnorm(1.0 - alpha / 2.0);
    Ok(Shift {
        lower: root(canary, baseline, &diffs, z, true),
        upper: root(canary, baseline, &diffs, -z, true),
        estimate,
    })
}

/// Arithmetic mean (NaN for no values).
pub fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len() as f64
}

/// The common-language effect size: P(canary > baseline) + ½ P(canary = baseline) over
/// every pair.
pub fn cles(canary: &[f64], baseline: &[f64]) -> f64 {
    let mut wins = 0.0;
    for a in canary {
        for b in baseline {
            if a > b {
                wins += 1.0;
            } else if a == b {
                wins += 0.5;
            }
        }
    }
    wins / (canary.len() * baseline.len()) as f64
}

/// The `p` quantile by linear interpolation between order statistics (R's type 7).
pub fn quantile(sorted: &[f64], p: f64) -> f64 {
    let h = (sorted.len() - 1) as f64 * p;
    let lo = h.floor() as usize;
    let hi = (lo + 1).min(sorted.len() - 1);
    sorted[lo] + (h - lo as f64) * (sorted[hi] - sorted[lo])
}

/// Keep the values within `[Q1 − factor·IQR, Q3 + factor·IQR]` (quartiles of type 7).
pub fn without_outliers(values: &[f64], factor: f64) -> Vec<f64> {
    if values.len() < 4 {
        return values.to_vec();
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let (q1, q3) = (quantile(&sorted, 0.25), quantile(&sorted, 0.75));
    let iqr = q3 - q1;
    let (lo, hi) = (q1 - factor * iqr, q3 + factor * iqr);
    values
        .iter()
        .copied()
        .filter(|v| *v >= lo && *v <= hi)
        .collect()
}
