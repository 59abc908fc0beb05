//! The statistics of the judge, computed the way Kayenta's `kayenta-mannwhitney` and
//! `kayenta-judge` compute them, with `x` the canary ("experiment") and `y` the baseline
//! ("control").
//!
//! - The interval and the estimate are roots of the continuity- and tie-corrected normal
//!   statistic of the rank sum of `x − μ` against `y` ([`wilcoxon_diff`]), found by Brent's
//!   method (R's `zeroin`, as Kayenta and R's `uniroot` use it) on `[min x − max y,
//!   max x − min y]` with an absolute tolerance of 1e-4 ([`zeroin`]). The statistic is a
//!   step function, so a root is wherever the solver stops inside the step that crosses
//!   zero, not the exact pairwise difference: Kayenta's numbers, to the last digits.
//! - The interval is what R's `wilcox.test(x, y, conf.int = TRUE, exact = FALSE,
//!   correct = TRUE)` gives. The estimate is Kayenta's, the root of the same *corrected*
//!   statistic at 0; R drops the continuity correction for its estimate, so the two can
//!   differ there. The Hodges-Lehmann median of the pairwise differences is reported as
//!   an extra detail only.
//! - The normal quantile is Commons Math's (`√2 · erfinv(2p − 1)`, Giles' approximation),
//!   means are Commons Math's two-pass means, percentiles its R-7 estimate.
//!
//! No random noise is ever added: Kayenta adds Gaussian noise when both samples are
//! constant; the judge gives the interval `[d, d]` of their one difference instead (see
//! `judge::classify`).

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

/// Kayenta's `wilcoxonDiff(mu, zq, x, y)`: the rank sum of `x − mu` against `y`, centred,
/// continuity-corrected by ½ towards zero and divided by its tie-corrected standard
/// deviation, minus `zq`. An error when every observation is tied (σ = 0).
///
/// This is the definition, sorting the pooled sample at every call; [`RankTest`] computes
/// the same number, bit for bit, without sorting again for each `mu`.
pub fn wilcoxon_diff(x: &[f64], y: &[f64], mu: f64, zq: f64) -> Result<f64, String> {
    let combined: Vec<f64> = x.iter().map(|v| v - mu).chain(y.iter().copied()).collect();
    let r = ranks(&combined);
    let rank_sum = r[..x.len()].iter().sum::<f64>();
    statistic(x.len(), y.len(), rank_sum, tie_sum(&combined), zq)
}

/// The normalised statistic from the rank sum of `x` and the tie sum of the pooled sample.
fn statistic(nx: usize, ny: usize, rank_sum: f64, ties: f64, zq: f64) -> Result<f64, String> {
    let (nx, ny) = (nx as f64, ny as f64);
    let dz = rank_sum - nx * (nx + 1.0) / 2.0 - nx * ny / 2.0;
    let sign = if dz > 0.0 {
        1.0
    } else if dz < 0.0 {
        -1.0
    } else {
        0.0
    };
    let correction = sign * 0.5;
    let sigma =
        ((nx * ny / 12.0) * ((nx + ny + 1.0) - ties / ((nx + ny) * (nx + ny - 1.0)))).sqrt();
    if sigma == 0.0 || !sigma.is_finite() {
        return Err("cannot compute a confidence interval when all observations are tied".into());
    }
    Ok((dz - correction) / sigma - zq)
}

/// The rank test's two samples, each sorted once, so that [`wilcoxon_diff`] at any `mu`
/// is one merge pass instead of a sort of the pooled sample: `x − mu` stays sorted
/// (subtracting a constant is monotone in floating point), so merging it with `y` visits
/// the pooled sample in order, and each run of equal values is one tie group, whose
/// average rank and size give the rank sum and the tie sum.
///
/// The result is bit-identical to [`wilcoxon_diff`]'s: ranks are multiples of ½ and tie
/// terms `t³ − t` integers, all exactly representable (the sums stay under 2⁵³ for at
/// most [`MAX_SAMPLES`] values), so summing them in another order or as `count × rank`
/// gives the same doubles. Only for finite samples (NaN and infinities are refused by
/// the judge before; [`shift`] falls back to the definition otherwise).
pub struct RankTest {
    x: Vec<f64>,
    y: Vec<f64>,
}

impl RankTest {
    /// Sort both samples (by `total_cmp`, as [`ranks`] does).
    pub fn new(x: &[f64], y: &[f64]) -> RankTest {
        let (mut x, mut y) = (x.to_vec(), y.to_vec());
        sort_total(&mut x);
        sort_total(&mut y);
        RankTest { x, y }
    }

    /// `min(x) − max(y)` and `max(x) − min(y)`, the range the shift is searched in, from
    /// the sorted samples' ends: no pass over them (in wasm `f64::min`/`max` are calls to
    /// libm, four thousand of them for 2 × 1,000 samples: ~4 % of the call). The same
    /// doubles as folding with `f64::min`/`max`: the samples are finite, and of `−0` and
    /// `+0` the `total_cmp` order puts `−0` first and `+0` last, as wasi-libc's `fmin` and
    /// `fmax` pick them.
    fn shift_range(&self) -> (f64, f64) {
        match (self.x.first(), self.x.last(), self.y.first(), self.y.last()) {
            (Some(&x0), Some(&x1), Some(&y0), Some(&y1)) => (x0 - y1, x1 - y0),
            // Empty samples are refused before (the folds would give these).
            _ => (f64::INFINITY, f64::NEG_INFINITY),
        }
    }

    /// [`wilcoxon_diff`] of the two samples at `mu`.
    pub fn wilcoxon_diff(&self, mu: f64, zq: f64) -> Result<f64, String> {
        let (x, y) = (&self.x[..], &self.y[..]);
        let (mut i, mut j, mut at) = (0usize, 0usize, 0usize);
        let (mut rank_sum, mut ties) = (0.0f64, 0.0f64);
        while i < x.len() || j < y.len() {
            // The smallest value left; its tie group is every equal value of both sides.
            let v = match (x.get(i), y.get(j)) {
                (Some(&a), Some(&b)) => {
                    let a = a - mu;
                    if a <= b { a } else { b }
                }
                (Some(&a), None) => a - mu,
                (None, Some(&b)) => b,
                (None, None) => break,
            };
            let from_x = tied(&x[i..], mu, v);
            // `b − 0` is `b` for every finite `b` (and `−0 − 0` is `−0`).
            let from_y = tied(&y[j..], 0.0, v);
            let t = from_x + from_y;
            if t == 0 {
                // Only a NaN compares unequal to itself; the judge never passes one.
                return Err("the rank test cannot order NaN".into());
            }
            let rank = (at + at + t - 1) as f64 / 2.0 + 1.0;
            rank_sum += from_x as f64 * rank;
            let tf = t as f64;
            ties += tf * tf * tf - tf;
            i += from_x;
            j += from_y;
            at += t;
        }
        statistic(x.len(), y.len(), rank_sum, ties, zq)
    }

    /// [`hodges_lehmann`] of the two samples, without building the pairwise differences:
    /// the median's lower order statistic is found by a binary search over the doubles in
    /// `total_cmp` order, counting the differences at or below a candidate in one pass
    /// (`x_i − y_j` is monotone in both, as floating-point subtraction is, so the
    /// differences at or below any value form a staircase); for an even count, the upper
    /// one is the same value or the smallest difference above it, found in one more pass.
    /// About 64 passes over `|x| + |y|` values instead of sorting `|x| · |y|`: the same
    /// double comes out, since the smallest candidate with enough differences at or below
    /// it is a difference.
    pub fn hodges_lehmann(&self) -> Option<f64> {
        let (x, y) = (&self.x[..], &self.y[..]);
        let pairs = x.len().checked_mul(y.len())?;
        if pairs == 0 || pairs > MAX_PAIRS {
            return None;
        }
        let mid = pairs / 2;
        if pairs % 2 == 1 {
            return Some(from_order_key(self.kth_difference(mid)?));
        }
        let lower = self.kth_difference(mid - 1)?;
        let (at_or_below, above) = self.staircase(lower);
        let upper = if at_or_below > mid { lower } else { above? };
        Some((from_order_key(lower) + from_order_key(upper)) / 2.0)
    }

    /// The [`order_key`] of the `k`-th smallest (0-based, `total_cmp` order) of every
    /// `x_i − y_j`.
    fn kth_difference(&self, k: usize) -> Option<i64> {
        let (x, y) = (&self.x[..], &self.y[..]);
        let (first_x, last_x) = (*x.first()?, *x.last()?);
        let (first_y, last_y) = (*y.first()?, *y.last()?);
        let (mut lo, mut hi) = (order_key(first_x - last_y), order_key(last_x - first_y));
        while lo < hi {
            // The floor of the midpoint, without overflow.
            let mid = (lo >> 1) + (hi >> 1) + (lo & hi & 1);
            if at_or_below(x, y, mid) > k {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        Some(lo)
    }

    /// How many differences are at or below the double of order key `t`, and the key of
    /// the smallest difference above it (if any).
    fn staircase(&self, t: i64) -> (usize, Option<i64>) {
        let (x, y) = (&self.x[..], &self.y[..]);
        let mut count = 0usize;
        let mut above: Option<i64> = None;
        // For each x_i (ascending), the differences x_i − y_j at or below t are the y_j
        // from `from` on (x_i − y_j falls as y_j grows), and `from` only moves right as
        // x_i grows; the smallest difference above t in the row is at `from − 1`.
        let mut from = 0usize;
        for &a in x {
            while from < y.len() && order_key(a - y[from]) > t {
                from += 1;
            }
            count += y.len() - from;
            if let Some(&b) = from.checked_sub(1).and_then(|j| y.get(j)) {
                let key = order_key(a - b);
                above = Some(above.map_or(key, |k| k.min(key)));
            }
        }
        (count, above)
    }
}

/// The step macro `$step` eight times in a row: one loop turn (see [`at_or_below`]).
macro_rules! eight_steps {
    ($step:ident) => {
        $step!();
        $step!();
        $step!();
        $step!();
        $step!();
        $step!();
        $step!();
        $step!();
    };
}

/// How many differences `x_i − y_j` are at or below the double of order key `t`: the
/// count of [`RankTest::staircase`] alone, the search's hot loop, in a function of its
/// own. Shaped for Cranelift: every loop iteration checks the epoch (the host's
/// interruption), and a call on that check's slow path makes each value live in the loop
/// live across a call; inlined into the search, with the search's own values live too,
/// the loop kept its values on the stack and reloaded them at every step. LLVM's code is
/// the same either way.
///
/// For the same reason the staircase is walked as ONE flat loop of steps (each moves to
/// the next `y` or, with the row counted, to the next `x`: |x| + |y| steps at most, as
/// the nested loops took), eight steps a turn: the steps inside a turn are forward
/// branches, so Cranelift checks the epoch (and spills and reloads around it) once per
/// eight steps instead of at every one, and keeps the loop's values in registers
/// between. Wasm `canary-judge` 363 → 236 µs (native 146 → 126–150 µs, unchanged within
/// the noise).
#[inline(never)]
fn at_or_below(x: &[f64], y: &[f64], t: i64) -> usize {
    let (mut i, mut from, mut count) = (0usize, 0usize, 0usize);
    // One step: `from` past a difference above `t`, or the row of `x[i]` counted.
    macro_rules! step {
        () => {
            if i < x.len() {
                if from < y.len() && order_key(x[i] - y[from]) > t {
                    from += 1;
                } else {
                    count += y.len() - from;
                    i += 1;
                }
            }
        };
    }
    while i < x.len() {
        eight_steps!(step);
    }
    count
}

/// How many of the first values `a` of `s` have `a − mu == v`: the size of one side of a
/// tie group in [`RankTest::wilcoxon_diff`]'s merge. Eight values a turn, for the same
/// reason as [`at_or_below`]'s steps: one epoch check per eight instead of per value.
#[inline(always)]
fn tied(s: &[f64], mu: f64, v: f64) -> usize {
    let mut n = 0usize;
    macro_rules! step {
        () => {
            if n < s.len() && s[n] - mu == v {
                n += 1;
            } else {
                return n;
            }
        };
    }
    loop {
        eight_steps!(step);
    }
}

/// Sort `values` in `total_cmp` order, as the integers of [`order_key`]: the same array as
/// `sort_by(f64::total_cmp)` (doubles equal under `total_cmp` are the same bits, so no
/// sort's stability shows, and the key is a bijection keeping the order), without a
/// comparison closure — in wasm the closure's calls made the sort 2× native.
pub fn sort_total(values: &mut [f64]) {
    let mut keys: Vec<i64> = values.iter().map(|&v| order_key(v)).collect();
    keys.sort_unstable();
    for (v, k) in values.iter_mut().zip(keys) {
        *v = from_order_key(k);
    }
}

/// A double's rank in `total_cmp` order, as a signed integer: `total_cmp`'s own transform
/// (a negative number's bits other than the sign flipped), branch-free for the hot loop.
fn order_key(v: f64) -> i64 {
    let bits = v.to_bits() as i64;
    bits ^ ((((bits >> 63) as u64) >> 1) as i64)
}

/// The double of an [`order_key`] (the transform is its own inverse).
fn from_order_key(key: i64) -> f64 {
    f64::from_bits((key ^ ((((key >> 63) as u64) >> 1) as i64)) as u64)
}

/// Commons Math's `Precision.equals(v, 0)`: zero within one ulp.
fn is_zero(v: f64) -> bool {
    v.abs() <= f64::from_bits(1)
}

/// Absolute tolerance of the root finder (R's `uniroot(tol = 1e-4)`, Kayenta's solver).
pub const ROOT_TOLERANCE: f64 = 1e-4;
/// Iterations the root finder may take.
const ROOT_ITERATIONS: u32 = 1000;

/// A zero of `f` in `[a, b]` by Brent's method (R's `zeroin`, which both R's `uniroot` and
/// Kayenta's `BrentSolver` implement), given `f(a)` and `f(b)`: inverse quadratic or
/// linear interpolation when it stays inside the bracket and shrinks it fast enough,
/// bisection otherwise, until the bracket is within `2ε|b| + tol/2`. The arithmetic is
/// done in the same order so the same point comes out. After the last iteration the
/// current point is returned, as they do.
pub fn zeroin(
    a: f64,
    b: f64,
    fa: f64,
    fb: f64,
    mut f: impl FnMut(f64) -> Result<f64, String>,
) -> Result<f64, String> {
    let (mut a, mut b, mut fa, mut fb) = (a, b, fa, fb);
    let (mut c, mut fc) = (a, fa);
    if is_zero(fa) {
        return Ok(a);
    }
    if is_zero(fb) {
        return Ok(b);
    }
    for _ in 0..=ROOT_ITERATIONS {
        let previous = b - a;
        if fc.abs() < fb.abs() {
            // Make b the best approximation so far.
            a = b;
            b = c;
            c = a;
            fa = fb;
            fb = fc;
            fc = fa;
        }
        let tolerance = 2.0 * f64::EPSILON * b.abs() + ROOT_TOLERANCE / 2.0;
        let mut step = (c - b) / 2.0;
        if step.abs() <= tolerance || is_zero(fb) {
            return Ok(b);
        }
        if previous.abs() >= tolerance && fa.abs() > fb.abs() {
            let cb = c - b;
            let (mut p, mut q);
            if a == c {
                // Two distinct points: the secant.
                let t1 = fb / fa;
                p = cb * t1;
                q = 1.0 - t1;
            } else {
                // Inverse quadratic interpolation.
                let qa = fa / fc;
                let t1 = fb / fc;
                let t2 = fb / fa;
                p = t2 * (cb * qa * (qa - t1) - (b - a) * (t1 - 1.0));
                q = (qa - 1.0) * (t1 - 1.0) * (t2 - 1.0);
            }
            if p > 0.0 {
                q = -q;
            } else {
                p = -p;
            }
            if p < (0.75 * cb * q - (tolerance * q).abs() / 2.0) && p < (previous * q / 2.0).abs() {
                step = p / q;
            }
        }
        if step.abs() < tolerance {
            step = if step > 0.0 { tolerance } else { -tolerance };
        }
        a = b;
        fa = fb;
        b += step;
        fb = f(b)?;
        if (fb > 0.0 && fc > 0.0) || (fb < 0.0 && fc < 0.0) {
            c = a;
            fc = fa;
        }
    }
    Ok(b)
}

/// erf⁻¹(x) as Commons Math computes it (M. Giles, "Approximating the erfinv function",
/// GPU Computing Gems, 2011: the double-precision polynomials, with the published
/// coefficients as Commons Math writes them).
#[allow(clippy::excessive_precision, clippy::unreadable_literal)]
pub fn erf_inv(x: f64) -> f64 {
    let mut w = -((1.0 - x) * (1.0 + x)).ln();
    let horner = |w: f64, coefficients: &[f64]| {
        let mut p = coefficients[0];
        for c in &coefficients[1..] {
            p = c + p * w;
        }
        p
    };
    let p = if w < 6.25 {
        w -= 3.125;
        horner(
            w,
            &[
                -3.6444120640178196996e-21,
                -1.685059138182016589e-19,
                1.2858480715256400167e-18,
                1.115787767802518096e-17,
                -1.333171662854620906e-16,
                2.0972767875968561637e-17,
                6.6376381343583238325e-15,
                -4.0545662729752068639e-14,
                -8.1519341976054721522e-14,
                2.6335093153082322977e-12,
                -1.2975133253453532498e-11,
                -5.4154120542946279317e-11,
                1.051212273321532285e-09,
                -4.1126339803469836976e-09,
                -2.9070369957882005086e-08,
                4.2347877827932403518e-07,
                -1.3654692000834678645e-06,
                -1.3882523362786468719e-05,
                0.0001867342080340571352,
                -0.00074070253416626697512,
                -0.0060336708714301490533,
                0.24015818242558961693,
                1.6536545626831027356,
            ],
        )
    } else if w < 16.0 {
        w = w.sqrt() - 3.25;
        horner(
            w,
            &[
                2.2137376921775787049e-09,
                9.0756561938885390979e-08,
                -2.7517406297064545428e-07,
                1.8239629214389227755e-08,
                1.5027403968909827627e-06,
                -4.013867526981545969e-06,
                2.9234449089955446044e-06,
                1.2475304481671778723e-05,
                -4.7318229009055733981e-05,
                6.8284851459573175448e-05,
                2.4031110387097893999e-05,
                -0.0003550375203628474796,
                0.00095328937973738049703,
                -0.0016882755560235047313,
                0.0024914420961078508066,
                -0.0037512085075692412107,
                0.005370914553590063617,
                1.0052589676941592334,
                3.0838856104922207635,
            ],
        )
    } else if w.is_finite() {
        w = w.sqrt() - 5.0;
        horner(
            w,
            &[
                -2.7109920616438573243e-11,
                -2.5556418169965252055e-10,
                1.5076572693500548083e-09,
                -3.7894654401267369937e-09,
                7.6157012080783393804e-09,
                -1.4960026627149240478e-08,
                2.9147953450901080826e-08,
                -6.7711997758452339498e-08,
                2.2900482228026654717e-07,
                -9.9298272942317002539e-07,
                4.5260625972231537039e-06,
                -1.9681778105531670567e-05,
                7.5995277030017761139e-05,
                -0.00021503011930044477347,
                -0.00013871931833623122026,
                1.0103004648645343977,
                4.8499064014085844221,
            ],
        )
    } else {
        f64::INFINITY
    };
    p * x
}

/// The standard normal quantile as Commons Math's `NormalDistribution(0, 1)
/// .inverseCumulativeProbability(p)` computes it, which Kayenta uses.
pub fn normal_quantile(p: f64) -> f64 {
    std::f64::consts::SQRT_2 * erf_inv(2.0 * p - 1.0)
}

/// The result of the rank test.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Shift {
    /// Lower bound of the confidence interval of canary − baseline.
    pub lower: f64,
    /// Upper bound.
    pub upper: f64,
    /// Kayenta's location estimate: the root of the corrected statistic at 0.
    pub estimate: f64,
    /// The Hodges-Lehmann estimate (median of every pairwise difference), when there are
    /// at most [`MAX_PAIRS`] pairs: a detail, never used to judge.
    pub hodges_lehmann: Option<f64>,
}

/// Pairwise differences sorted at most for the Hodges-Lehmann detail (8 MB).
pub const MAX_PAIRS: usize = 1_000_000;

/// Samples (canary and baseline together) the rank test takes at most: each evaluation of
/// the statistic passes over them, and the solver evaluates it up to a thousand times.
pub const MAX_SAMPLES: usize = 200_000;

/// The median of every pairwise difference `x_i − y_j`: selected (`select_nth_unstable`,
/// linear on average), not sorted; the same value a sort by `total_cmp` puts in the middle.
pub fn hodges_lehmann(x: &[f64], y: &[f64]) -> Option<f64> {
    let pairs = x.len().checked_mul(y.len())?;
    if pairs == 0 || pairs > MAX_PAIRS {
        return None;
    }
    let mut all: Vec<f64> = x
        .iter()
        .flat_map(|a| y.iter().map(move |b| a - b))
        .collect();
    let mid = all.len() / 2;
    let (below, &mut upper, _) = all.select_nth_unstable_by(mid, f64::total_cmp);
    Some(if pairs % 2 == 1 {
        upper
    } else {
        // The element just before the middle is the largest of those below it.
        let lower = below.iter().copied().max_by(f64::total_cmp)?;
        (lower + upper) / 2.0
    })
}

/// Kayenta's `MannWhitney.mannWhitneyUTest(x, y, confidence)`: the confidence interval of
/// the shift canary − baseline and its estimate. Both samples must be non-empty and
/// NaN-free.
pub fn shift(canary: &[f64], baseline: &[f64], confidence: f64) -> Result<Shift, String> {
    shift_with(canary, baseline, confidence, || {
        RankTest::new(canary, baseline)
    })
}

/// [`shift`] of samples already sorted by `total_cmp` ([`classify`](crate::judge::classify)
/// sorts them for its own checks): the rank test takes them as they are instead of sorting
/// copies again. The same result: nothing here depends on the samples' order (the sorted
/// copies are the same either way — values equal under `total_cmp` are the same bits — and
/// the definitions' rank sums are exact).
pub fn shift_sorted(canary: &[f64], baseline: &[f64], confidence: f64) -> Result<Shift, String> {
    debug_assert!(canary.is_sorted_by(|a, b| a.total_cmp(b).is_le()));
    debug_assert!(baseline.is_sorted_by(|a, b| a.total_cmp(b).is_le()));
    shift_with(canary, baseline, confidence, || RankTest {
        x: canary.to_vec(),
        y: baseline.to_vec(),
    })
}

fn shift_with(
    canary: &[f64],
    baseline: &[f64],
    confidence: f64,
    rank_test: impl FnOnce() -> RankTest,
) -> Result<Shift, String> {
    let (x, y) = (canary, baseline);
    if x.is_empty() || y.is_empty() {
        return Err("both samples need values".into());
    }
    if x.len() + y.len() > MAX_SAMPLES {
        return Err(format!(
            "{} + {} samples is over {MAX_SAMPLES}; use a coarser step or a shorter window",
            x.len(),
            y.len()
        ));
    }
    // Sorted once for every evaluation the solver makes (the definition, which sorts each
    // time, for samples the merge cannot order).
    let finite = x.iter().chain(y).all(|v| v.is_finite());
    let sorted = finite.then(rank_test);
    let (mu_min, mu_max) = match &sorted {
        Some(test) => test.shift_range(),
        None => {
            let min = |v: &[f64]| v.iter().copied().fold(f64::INFINITY, f64::min);
            let max = |v: &[f64]| v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            (min(x) - max(y), max(x) - min(y))
        }
    };
    let alpha = 1.0 - confidence;
    // Negative: the lower tail.
    let z = normal_quantile(alpha / 2.0);
    let diff = |mu: f64, zq: f64| match &sorted {
        Some(test) => test.wilcoxon_diff(mu, zq),
        None => wilcoxon_diff(x, y, mu, zq),
    };
    let root = |zq: f64| -> Result<f64, String> {
        let f_lower = diff(mu_min, zq)?;
        let f_upper = diff(mu_max, zq)?;
        if f_lower <= 0.0 {
            Ok(mu_min)
        } else if f_upper >= 0.0 {
            Ok(mu_max)
        } else {
            zeroin(mu_min, mu_max, f_lower, f_upper, |mu| diff(mu, zq))
        }
    };
    let lower = root(-z)?;
    let upper = root(z)?;
    let f_lower = diff(mu_min, 0.0)?;
    let f_upper = diff(mu_max, 0.0)?;
    let estimate = zeroin(mu_min, mu_max, f_lower, f_upper, |mu| diff(mu, 0.0))?;
    Ok(Shift {
        lower,
        upper,
        estimate,
        hodges_lehmann: match &sorted {
            Some(test) => test.hodges_lehmann(),
            None => hodges_lehmann(x, y),
        },
    })
}

/// Arithmetic mean as Commons Math's `StatUtils.mean` computes it (the sum over n, then a
/// second pass adding the mean residual); NaN for no values.
pub fn mean(values: &[f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let n = values.len() as f64;
    let xbar = values.iter().sum::<f64>() / n;
    let correction: f64 = values.iter().map(|v| v - xbar).sum();
    xbar + correction / n
}

/// Kayenta's mean ratio mean(canary) / mean(baseline): NaN when either mean is 0 (or
/// either side is empty).
pub fn mean_ratio(canary: &[f64], baseline: &[f64]) -> f64 {
    let (c, b) = (mean(canary), mean(baseline));
    if c == 0.0 || b == 0.0 {
        f64::NAN
    } else {
        c / b
    }
}

/// The common-language effect size P(canary > baseline) + ½ P(canary = baseline), from the
/// canary's rank sum in the pooled sample as Kayenta computes it (Vargha and Delaney).
pub fn cles(canary: &[f64], baseline: &[f64]) -> f64 {
    let (m, n) = (canary.len() as f64, baseline.len() as f64);
    let pooled: Vec<f64> = canary.iter().chain(baseline).copied().collect();
    let r1: f64 = ranks(&pooled)[..canary.len()].iter().sum();
    (2.0 * r1 - m * (m + 1.0)) / (2.0 * n * m)
}

/// The `p`-th percentile (0 < p ≤ 100) by Commons Math's R-7 estimate (linear
/// interpolation between order statistics); NaN for no values.
pub fn percentile(values: &[f64], p: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    let q = p / 100.0;
    let pos = if q == 0.0 {
        0.0
    } else if q == 1.0 {
        n as f64
    } else {
        1.0 + (n - 1) as f64 * q
    };
    if pos < 1.0 {
        return sorted[0];
    }
    if pos >= n as f64 {
        return sorted[n - 1];
    }
    let floor = pos.floor();
    let at = floor as usize;
    let dif = pos - floor;
    let (lower, upper) = (sorted[at - 1], sorted[at]);
    lower + dif * (upper - lower)
}

/// Kayenta's outlier fences (`IQRDetector(factor, reduceSensitivity = true)`):
/// `[min(P1, Q1 − f·IQR), max(P99, Q3 + f·IQR)]`, percentiles R-7, for any sample size.
pub fn outlier_fences(values: &[f64], factor: f64) -> (f64, f64) {
    let (q1, q3) = (percentile(values, 25.0), percentile(values, 75.0));
    let iqr = q3 - q1;
    let (lower, upper) = (q1 - factor * iqr, q3 + factor * iqr);
    let (p01, p99) = (percentile(values, 1.0), percentile(values, 99.0));
    (p01.min(lower), p99.max(upper))
}

/// Keep the values within the [`outlier_fences`] (values on a fence stay).
pub fn without_outliers(values: &[f64], factor: f64) -> Vec<f64> {
    if values.is_empty() {
        return Vec::new();
    }
    let (lo, hi) = outlier_fences(values, factor);
    values
        .iter()
        .copied()
        .filter(|v| !(*v > hi || *v < lo))
        .collect()
}

/// Commons Math's `Precision.round(x, 2)`: the shortest decimal form of `x` rounded half
/// up (away from zero) to two decimals, as Kayenta rounds the summary score.
pub fn round2(x: f64) -> f64 {
    if !x.is_finite() || x.abs() >= 1e15 {
        return x;
    }
    // Rust prints the shortest decimal that reads back as `x`, without an exponent.
    let text = format!("{}", x.abs());
    let (int, frac) = text.split_once('.').unwrap_or((&text, ""));
    let digit = |i: usize| {
        frac.as_bytes()
            .get(i)
            .map_or(0, |b| u64::from(b.saturating_sub(b'0')))
    };
    let whole: u64 = int.parse().unwrap_or(0);
    let mut cents = whole * 100 + digit(0) * 10 + digit(1);
    if digit(2) >= 5 {
        cents += 1;
    }
    // An exact integer over 100, correctly rounded: the double nearest the decimal.
    let r = cents as f64 / 100.0;
    if x < 0.0 { -r } else { r }
}
