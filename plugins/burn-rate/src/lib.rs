//! `burn-rate`: the SLO multi-window burn-rate check (as in Google's SRE workbook).
//!
//! The error ratio over a window is `errors / total`, both counted over that window by the
//! operator's queries (`$window` in a query is replaced by the window, e.g. `1h`). The burn
//! rate is that ratio divided by the error budget `1 − slo`: 1 spends the budget exactly
//! over the SLO period. The canary fails only when **both** the long and the short window
//! burn faster than `threshold` (the long window shows it is significant, the short one
//! that it is still happening). Windows are capped at the time since the phase started
//! (`scaleToPhase`, on by default), so a canary is judged on its own traffic, not on the
//! stable version's hour before it. Fewer than `minRequests` requests in the short window
//! is `no-data`, never a verdict.

use rollgate_plugin::duration::parse_ms;
use rollgate_plugin::prelude::*;
use serde_json::json;

/// The operator's configuration.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Config {
    /// The backend to query.
    pub backend: String,
    /// Failed requests over `$window`, e.g. `sum(increase(http_requests_total{code=~"5..",version="v2"}[$window]))`.
    pub errors_query: String,
    /// All requests over `$window`, e.g. `sum(increase(http_requests_total{version="v2"}[$window]))`.
    pub total_query: String,
    /// The SLO, e.g. 0.999 (an error budget of 0.1 %).
    pub slo: f64,
    /// The long window (default `1h`).
    #[serde(default)]
    pub long_window: Option<String>,
    /// The short window (default `5m`).
    #[serde(default)]
    pub short_window: Option<String>,
    /// Burn rate above which a window is burning too fast (default 14.4: 2 % of a 30-day
    /// budget in an hour).
    #[serde(default)]
    pub threshold: Option<f64>,
    /// Cap both windows at the time since the phase started (default true).
    #[serde(default)]
    pub scale_to_phase: Option<bool>,
    /// Fewest requests in the short window for a verdict (default 100).
    #[serde(default)]
    pub min_requests: Option<f64>,
}

/// The settings with defaults applied and durations parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Long window, ms.
    pub long_ms: u64,
    /// Short window, ms.
    pub short_ms: u64,
    /// Burn-rate threshold.
    pub threshold: f64,
    /// Error budget (1 − slo).
    pub budget: f64,
    /// Cap windows at the phase's age.
    pub scale: bool,
    /// Minimum requests.
    pub min_requests: f64,
}

/// Parse and check a configuration.
pub fn settings(c: &Config) -> Result<Settings, Vec<ConfigError>> {
    let mut problems = Vec::new();
    let mut window =
        |field: &str, text: &Option<String>, default: u64| match text.as_deref().map(parse_ms) {
            None => default,
            Some(Ok(ms)) if ms >= 1000 => ms,
            Some(Ok(_)) => {
                problems.push(ConfigError::new(format!("/{field}"), "must be at least 1s"));
                default
            }
            Some(Err(e)) => {
                problems.push(ConfigError::new(format!("/{field}"), e));
                default
            }
        };
    let long_ms = window("longWindow", &c.long_window, 3_600_000);
    let short_ms = window("shortWindow", &c.short_window, 300_000);
    if short_ms > long_ms {
        problems.push(ConfigError::new(
            "/shortWindow",
            "must not be longer than longWindow",
        ));
    }
    if !(c.slo > 0.0 && c.slo < 1.0) {
        problems.push(ConfigError::new(
            "/slo",
            "must be between 0 and 1, e.g. 0.999",
        ));
    }
    let threshold = c.threshold.unwrap_or(14.4);
    if !(threshold > 0.0 && threshold.is_finite()) {
        problems.push(ConfigError::new(
            "/threshold",
            "must be more than 0, e.g. 14.4",
        ));
    }
    let min_requests = c.min_requests.unwrap_or(100.0);
    if !(min_requests >= 0.0 && min_requests.is_finite()) {
        problems.push(ConfigError::new("/minRequests", "must be 0 or more"));
    }
    for (field, q) in [
        ("errorsQuery", &c.errors_query),
        ("totalQuery", &c.total_query),
    ] {
        if !q.contains("$window") {
            problems.push(ConfigError::new(
                format!("/{field}"),
                "must count over $window (e.g. increase(x[$window])), or both windows would read the same numbers",
            ));
        }
    }
    if problems.is_empty() {
        Ok(Settings {
            long_ms,
            short_ms,
            threshold,
            budget: 1.0 - c.slo,
            scale: c.scale_to_phase.unwrap_or(true),
            min_requests,
        })
    } else {
        Err(problems)
    }
}

/// A window as PromQL writes durations: whole seconds.
fn promql(ms: u64) -> String {
    format!("{}s", (ms / 1000).max(1))
}

/// Sum of the latest value of every series (NaN-free); `None` when there is none.
fn total(series: &[Series]) -> Option<f64> {
    let values: Vec<f64> = series
        .iter()
        .filter_map(|s| s.values().filter(|v| !v.is_nan()).last())
        .collect();
    (!values.is_empty()).then(|| values.iter().sum())
}

/// One window's numbers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Burn {
    /// The window, ms.
    pub window_ms: u64,
    /// Failed requests.
    pub errors: f64,
    /// All requests.
    pub total: f64,
}

impl Burn {
    /// errors / total.
    pub fn ratio(&self) -> f64 {
        if self.total > 0.0 {
            self.errors / self.total
        } else {
            0.0
        }
    }
    /// The ratio over the error budget.
    pub fn rate(&self, budget: f64) -> f64 {
        self.ratio() / budget
    }
}

/// The verdict from the two windows.
pub fn judge(s: &Settings, long: Burn, short: Burn) -> Measurement {
    let (bl, bs) = (long.rate(s.budget), short.rate(s.budget));
    let details = json!({
        "long": {"window": promql(long.window_ms), "errors": long.errors, "total": long.total, "errorRatio": long.ratio(), "burnRate": bl},
        "short": {"window": promql(short.window_ms), "errors": short.errors, "total": short.total, "errorRatio": short.ratio(), "burnRate": bs},
        "threshold": s.threshold,
        "errorBudget": s.budget,
    });
    if short.total < s.min_requests {
        return Measurement::no_data(format!(
            "{} requests in the short window ({}) is under minRequests {}",
            short.total,
            promql(short.window_ms),
            s.min_requests
        ))
        .with_details(details);
    }
    let fails = bl > s.threshold && bs > s.threshold;
    let message = format!(
        "burn rate {:.3} over {} and {:.3} over {} (threshold {}): {}",
        bl,
        promql(long.window_ms),
        bs,
        promql(short.window_ms),
        s.threshold,
        if fails {
            "both windows burn too fast"
        } else if bl > s.threshold || bs > s.threshold {
            "only one window burns too fast"
        } else {
            "within budget"
        }
    );
    Measurement::judge(!fails, bl.min(bs), message).with_details(details)
}

/// The provider.
pub struct BurnRate;

impl Verifier for BurnRate {
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
        let age = u64::try_from(ctx.rollout.now_ms - ctx.rollout.phase_started_ms).unwrap_or(0);
        let cap = |ms: u64| if s.scale { ms.min(age.max(1000)) } else { ms };
        let read = |window_ms: u64| -> Result<Burn, String> {
            let w = promql(window_ms);
            let errors = ctx.query(
                &config.backend,
                &config.errors_query.replace("$window", &w),
                Window::Now,
            )?;
            let all = ctx.query(
                &config.backend,
                &config.total_query.replace("$window", &w),
                Window::Now,
            )?;
            Ok(Burn {
                window_ms,
                // No error series at all means no errors; no traffic series means no data.
                errors: total(&errors).unwrap_or(0.0),
                total: total(&all).unwrap_or(0.0),
            })
        };
        let long = read(cap(s.long_ms))?;
        let short = read(cap(s.short_ms))?;
        Ok(judge(&s, long, short))
    }
}

rollgate_plugin::export_verifier!(BurnRate);

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        serde_json::from_value(json!({
            "backend": "prom",
            "errorsQuery": "sum(increase(errors[$window]))",
            "totalQuery": "sum(increase(requests[$window]))",
            "slo": 0.99
        }))
        .expect("config")
    }

    fn burn(window_ms: u64, errors: f64, total: f64) -> Burn {
        Burn {
            window_ms,
            errors,
            total,
        }
    }

    #[test]
    fn both_windows_must_burn_to_fail() {
        let s = settings(&config()).expect("valid");
        assert_eq!(
            (s.long_ms, s.short_ms, s.threshold),
            (3_600_000, 300_000, 14.4)
        );
        // 20 % errors over a 1 % budget: burn 20 in both windows.
        let m = judge(
            &s,
            burn(3_600_000, 2000.0, 10_000.0),
            burn(300_000, 200.0, 1000.0),
        );
        assert_eq!(m.verdict, Verdict::Fail);
        assert!((m.value.unwrap_or(0.0) - 20.0).abs() < 1e-9);
        // The short window has recovered: pass.
        let m = judge(
            &s,
            burn(3_600_000, 2000.0, 10_000.0),
            burn(300_000, 5.0, 1000.0),
        );
        assert_eq!(m.verdict, Verdict::Pass);
        assert!(m.message.contains("only one window"), "{}", m.message);
        // Exactly at the threshold is not above it.
        let m = judge(
            &s,
            burn(3_600_000, 1440.0, 10_000.0),
            burn(300_000, 144.0, 1000.0),
        );
        assert_eq!(m.verdict, Verdict::Pass);
    }

    #[test]
    fn too_little_traffic_is_no_data() {
        let s = settings(&config()).expect("valid");
        let m = judge(&s, burn(3_600_000, 50.0, 99.0), burn(300_000, 50.0, 99.0));
        assert_eq!(m.verdict, Verdict::NoData);
        assert!(m.message.contains("under minRequests 100"), "{}", m.message);
    }

    #[test]
    fn configuration_problems() {
        let c: Config = serde_json::from_value(json!({
            "backend": "prom", "errorsQuery": "errors", "totalQuery": "x[$window]",
            "slo": 1.0, "shortWindow": "2h", "threshold": 0
        }))
        .expect("parses");
        let paths: Vec<String> = BurnRate::check(&c).into_iter().map(|p| p.path).collect();
        assert_eq!(
            paths,
            ["/shortWindow", "/slo", "/threshold", "/errorsQuery"]
        );
    }
}
