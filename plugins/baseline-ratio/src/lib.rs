//! `baseline-ratio`: the canary's value of a query against the stable version's, as a ratio
//! (`canary / baseline`) or a difference (`canary − baseline`), within a tolerance in the
//! bad direction. Each side's value is the sum of the latest values of its series. With
//! `trafficQuery`, each side must have served at least `minTraffic` or the measurement is
//! `no-data`: a ratio of two near-empty numbers decides nothing.

use rollgate_plugin::Sides;
use rollgate_plugin::prelude::*;
use serde_json::json;

/// How the two values are compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Compare {
    /// canary / baseline; the tolerance is the largest allowed ratio (e.g. 1.2 allows 20 %
    /// more) for increases, and for decreases its reciprocal bound (0.8 allows 20 % less).
    #[default]
    Ratio,
    /// canary − baseline; the tolerance is the largest allowed difference (in the metric's
    /// unit).
    Difference,
}

/// Which change is bad.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Direction {
    /// The canary being higher is bad (errors, latency): the default.
    #[default]
    Increase,
    /// The canary being lower is bad (throughput, success).
    Decrease,
    /// Either.
    Either,
}

/// The operator's configuration.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Config {
    /// The backend.
    pub backend: String,
    /// The compared metric.
    #[serde(flatten)]
    pub sides: Sides,
    /// `ratio` (default) or `difference`.
    #[serde(default)]
    pub compare: Compare,
    /// The largest allowed ratio (e.g. 1.2) or difference.
    pub tolerance: f64,
    /// Which change is bad (default `increase`).
    #[serde(default)]
    pub direction: Direction,
    /// Each side's traffic (same shapes: `canaryQuery`/`baselineQuery` or split).
    #[serde(default)]
    pub traffic: Option<Sides>,
    /// Least traffic each side needs for a verdict (default 0).
    #[serde(default)]
    pub min_traffic: Option<f64>,
}

/// The sum of the latest non-NaN value of each series; `None` without any.
fn value<'a>(series: impl Iterator<Item = &'a Series>) -> Option<f64> {
    let values: Vec<f64> = series
        .filter_map(|s| s.values().filter(|v| !v.is_nan()).last())
        .collect();
    (!values.is_empty()).then(|| values.iter().sum())
}

fn read(ctx: &Context, backend: &str, sides: &Sides) -> Result<(Option<f64>, Option<f64>), String> {
    let (canary, baseline) = sides.fetch(ctx, backend, Window::Now)?;
    Ok((value(canary.iter()), value(baseline.iter())))
}

/// Judge two values.
pub fn judge(config: &Config, canary: f64, baseline: f64) -> Measurement {
    let t = config.tolerance;
    let (compared, up_bad, down_bad, what) = match config.compare {
        Compare::Ratio => {
            if baseline == 0.0 {
                let ratio = if canary == 0.0 { 1.0 } else { f64::INFINITY };
                (ratio, ratio > t, false, "ratio")
            } else {
                let r = canary / baseline;
                (r, r > t, r < 1.0 / t, "ratio")
            }
        }
        Compare::Difference => {
            let d = canary - baseline;
            (d, d > t, d < -t, "difference")
        }
    };
    let bad = match config.direction {
        Direction::Increase => up_bad,
        Direction::Decrease => down_bad,
        Direction::Either => up_bad || down_bad,
    };
    let bound = match (config.compare, config.direction) {
        (Compare::Ratio, Direction::Increase) => format!("at most {t}"),
        (Compare::Ratio, Direction::Decrease) => format!("at least {}", 1.0 / t),
        (Compare::Ratio, Direction::Either) => format!("within [{}, {t}]", 1.0 / t),
        (Compare::Difference, Direction::Increase) => format!("at most +{t}"),
        (Compare::Difference, Direction::Decrease) => format!("at least −{t}"),
        (Compare::Difference, Direction::Either) => format!("within ±{t}"),
    };
    Measurement::judge(
        !bad,
        compared,
        format!("canary {canary} vs baseline {baseline}: {what} {compared:.4} must be {bound}"),
    )
    .with_details(json!({"canary": canary, "baseline": baseline, what: compared, "tolerance": t}))
}

/// The provider.
pub struct BaselineRatio;

impl Verifier for BaselineRatio {
    type Config = Config;

    fn check(c: &Config) -> Vec<ConfigError> {
        let mut problems: Vec<ConfigError> = c.sides.check("").into_iter().collect();
        if let Some(t) = &c.traffic {
            problems.extend(t.check("/traffic"));
        }
        let ok = match c.compare {
            Compare::Ratio => c.tolerance >= 1.0 && c.tolerance.is_finite(),
            Compare::Difference => c.tolerance >= 0.0 && c.tolerance.is_finite(),
        };
        if !ok {
            problems.push(ConfigError::new(
                "/tolerance",
                match c.compare {
                    Compare::Ratio => "a ratio tolerance must be 1 or more (1.2 allows 20 %)",
                    Compare::Difference => "a difference tolerance must be 0 or more",
                },
            ));
        }
        if c.min_traffic.is_some_and(|m| !(m >= 0.0 && m.is_finite())) {
            problems.push(ConfigError::new("/minTraffic", "must be 0 or more"));
        }
        if c.min_traffic.is_some() && c.traffic.is_none() {
            problems.push(ConfigError::new(
                "/minTraffic",
                "needs traffic queries to count with",
            ));
        }
        problems
    }

    fn measure(config: Config, ctx: &Context) -> Result<Measurement, String> {
        if let Some(traffic) = &config.traffic {
            let (c, b) = read(ctx, &config.backend, traffic)?;
            let min = config.min_traffic.unwrap_or(0.0);
            let (c, b) = (c.unwrap_or(0.0), b.unwrap_or(0.0));
            if c < min || b < min || (c == 0.0 && b == 0.0) {
                return Ok(Measurement::no_data(format!(
                    "traffic canary {c}, baseline {b}: each side needs at least {min}"
                )));
            }
        }
        let (canary, baseline) = read(ctx, &config.backend, &config.sides)?;
        match (canary, baseline) {
            (Some(c), Some(b)) => Ok(judge(&config, c, b)),
            (None, None) => Ok(Measurement::no_data("neither side returned a value")),
            (None, _) => Ok(Measurement::no_data("the canary returned no value")),
            (_, None) => Ok(Measurement::no_data("the baseline returned no value")),
        }
    }
}

rollgate_plugin::export_verifier!(BaselineRatio);

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: serde_json::Value) -> Config {
        let mut v =
            json!({"backend": "prom", "canaryQuery": "c", "baselineQuery": "b", "tolerance": 1.2});
        if let (Some(v), Some(e)) = (v.as_object_mut(), extra.as_object()) {
            v.extend(e.clone());
        }
        serde_json::from_value(v).expect("config")
    }

    #[test]
    fn ratios_in_each_direction() {
        let up = config(json!({}));
        assert_eq!(judge(&up, 1.1, 1.0).verdict, Verdict::Pass);
        assert_eq!(judge(&up, 1.3, 1.0).verdict, Verdict::Fail);
        assert_eq!(judge(&up, 0.1, 1.0).verdict, Verdict::Pass);
        assert_eq!(judge(&up, 1.0, 0.0).verdict, Verdict::Fail);
        assert_eq!(judge(&up, 0.0, 0.0).verdict, Verdict::Pass);
        let down = config(json!({"direction": "decrease"}));
        assert_eq!(judge(&down, 0.8, 1.0).verdict, Verdict::Fail);
        assert_eq!(judge(&down, 2.0, 1.0).verdict, Verdict::Pass);
        let either = config(json!({"direction": "either"}));
        assert_eq!(judge(&either, 0.8, 1.0).verdict, Verdict::Fail);
        assert_eq!(judge(&either, 1.3, 1.0).verdict, Verdict::Fail);
        let m = judge(&either, 1.1, 1.0);
        assert_eq!(m.verdict, Verdict::Pass);
        assert!(
            m.message
                .contains("must be within [0.8333333333333334, 1.2]"),
            "{}",
            m.message
        );
    }

    #[test]
    fn differences() {
        let c = config(json!({"compare": "difference", "tolerance": 0.05}));
        assert_eq!(judge(&c, 0.12, 0.1).verdict, Verdict::Pass);
        assert_eq!(judge(&c, 0.2, 0.1).verdict, Verdict::Fail);
        assert_eq!(judge(&c, 0.2, 0.1).value, Some(0.2 - 0.1));
    }

    #[test]
    fn configuration_problems() {
        let c: Config = serde_json::from_value(json!({
            "backend": "prom", "canaryQuery": "c", "tolerance": 0.5, "minTraffic": 10
        }))
        .expect("parses");
        let paths: Vec<String> = BaselineRatio::check(&c)
            .into_iter()
            .map(|p| p.path)
            .collect();
        assert_eq!(paths, ["", "/tolerance", "/minTraffic"]);
    }
}
