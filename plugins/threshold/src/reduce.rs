//! Reducing samples (and series) to one value.

use std::fmt;

/// How many values become one. NaN inputs are ignored; no input gives `None`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Reducer {
    /// The newest value.
    Last,
    /// The oldest value.
    First,
    /// The arithmetic mean.
    Avg,
    /// The smallest value.
    Min,
    /// The largest value.
    Max,
    /// The sum.
    Sum,
    /// How many values there are.
    Count,
    /// A quantile in [0, 1], with linear interpolation between the closest ranks (as
    /// Prometheus' `quantile_over_time`).
    Quantile(f64),
}

impl Reducer {
    /// Parse `last`, `first`, `avg`/`mean`, `min`, `max`, `sum`, `count`, `median`, `pNN`.
    pub fn parse(text: &str) -> Result<Reducer, String> {
        let t = text.trim().to_ascii_lowercase();
        Ok(match t.as_str() {
            "last" => Reducer::Last,
            "first" => Reducer::First,
            "avg" | "mean" => Reducer::Avg,
            "min" => Reducer::Min,
            "max" => Reducer::Max,
            "sum" => Reducer::Sum,
            "count" => Reducer::Count,
            "median" => Reducer::Quantile(0.5),
            p if p.starts_with('p') => {
                let q: f64 = p[1..].parse().map_err(|_| {
                    format!("reducer {text:?}: a percentile is `p` and a number, e.g. p95 or p99.9")
                })?;
                if !(0.0..=100.0).contains(&q) {
                    return Err(format!(
                        "reducer {text:?}: percentile must be within 0 and 100"
                    ));
                }
                Reducer::Quantile(q / 100.0)
            }
            _ => {
                return Err(format!(
                    "unknown reducer {text:?}: use last, first, avg, min, max, sum, count, median or pNN (e.g. p95)"
                ));
            }
        })
    }

    /// Reduce the non-NaN values; `None` when there are none.
    pub fn apply(&self, values: impl Iterator<Item = f64>) -> Option<f64> {
        let mut values = values.filter(|v| !v.is_nan());
        match self {
            Reducer::Last => values.last(),
            Reducer::First => values.next(),
            Reducer::Min => values.reduce(f64::min),
            Reducer::Max => values.reduce(f64::max),
            Reducer::Sum => values.reduce(|a, b| a + b),
            Reducer::Count => {
                let n = values.count();
                (n > 0).then_some(n as f64)
            }
            Reducer::Avg => {
                let (sum, n) = values.fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
                (n > 0).then(|| sum / n as f64)
            }
            Reducer::Quantile(q) => {
                let mut all: Vec<f64> = values.collect();
                if all.is_empty() {
                    return None;
                }
                let rank = q * (all.len() - 1) as f64;
                let lo = (rank.floor() as usize).min(all.len() - 1);
                let hi = (rank.ceil() as usize).min(all.len() - 1);
                // The two closest ranks by selection, not a full sort: the `lo`-th value in
                // `total_cmp` order, and the next one (the smallest of those above it) —
                // the same two values a sort would put there.
                let (_, &mut a, above) = all.select_nth_unstable_by(lo, f64::total_cmp);
                let b = if hi == lo {
                    a
                } else {
                    above.iter().copied().min_by(f64::total_cmp)?
                };
                let w = rank - lo as f64;
                // Weighted form, so that an infinite neighbour gives ±Inf, not Inf - Inf = NaN.
                Some(if lo == hi || a == b || w == 0.0 {
                    a
                } else if w == 1.0 {
                    b
                } else {
                    a * (1.0 - w) + b * w
                })
            }
        }
    }
}

impl fmt::Display for Reducer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reducer::Last => f.write_str("last"),
            Reducer::First => f.write_str("first"),
            Reducer::Avg => f.write_str("avg"),
            Reducer::Min => f.write_str("min"),
            Reducer::Max => f.write_str("max"),
            Reducer::Sum => f.write_str("sum"),
            Reducer::Count => f.write_str("count"),
            Reducer::Quantile(q) => write!(f, "p{}", crate::fmt_num(q * 100.0)),
        }
    }
}

/// How several series combine.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Across {
    /// Judge every series; all must pass.
    Each,
    /// Reduce all samples of all series together.
    Pool,
    /// Reduce each series, then reduce the per-series values with this.
    Reduce(Reducer),
}

impl Across {
    /// Parse `each`, `pool` or a reducer name.
    pub fn parse(text: &str) -> Result<Across, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "each" => Ok(Across::Each),
            "pool" => Ok(Across::Pool),
            _ => Reducer::parse(text)
                .map(Across::Reduce)
                .map_err(|e| format!("{e}; or `each` (judge every series) or `pool`")),
        }
    }
}
