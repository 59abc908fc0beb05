//! {{name}}: a rollgate verification provider.
//!
//! Build:   cargo build --target wasm32-wasip2 --release
//!          → target/wasm32-wasip2/release/{{crate}}.wasm
//! Check:   rollgate plugin check target/wasm32-wasip2/release/{{crate}}.wasm \
//!              --config '{"backend": "prom", "query": "error_ratio", "max": 0.05}'
//! Try it:  rollgate plugin test target/wasm32-wasip2/release/{{crate}}.wasm \
//!              --config '{"backend": "prom", "query": "error_ratio", "max": 0.05}' \
//!              --fixture fixtures/error_ratio.om
//! Test:    cargo test   (natively: the logic below, with a fixture instead of a backend)

use rollgate_plugin::prelude::*;

/// The operator's configuration (written under `provider.config` in a metric). Its JSON
/// Schema is published by the plugin, and `rollgate lint` checks configurations against it.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The MetricBackend to query (the operator binds it to the metric).
    pub backend: String,
    /// The query, in the backend's language (PromQL for Prometheus).
    pub query: String,
    /// The highest healthy value.
    pub max: f64,
}

/// Passes while the latest value of the query stays at or below `max`.
pub struct {{Struct}};

impl Verifier for {{Struct}} {
    type Config = Config;

    /// Checks beyond the types, reported by `rollgate lint` at the config's file:line:col.
    fn check(config: &Config) -> Vec<ConfigError> {
        let mut problems = Vec::new();
        if config.query.trim().is_empty() {
            problems.push(ConfigError::new("/query", "must not be empty"));
        }
        if !config.max.is_finite() {
            problems.push(ConfigError::new("/max", "must be a finite number"));
        }
        problems
    }

    /// One measurement. An `Err` counts as an error, never as a pass.
    fn measure(config: Config, ctx: &Context) -> Result<Measurement, String> {
        let series = ctx.query(&config.backend, &config.query, Window::Now)?;
        let Some(value) = series
            .iter()
            .flat_map(|s| s.values())
            .filter(|v| !v.is_nan())
            .last()
        else {
            return Ok(Measurement::no_data("the query returned no value"));
        };
        Ok(Measurement::judge(
            value <= config.max,
            value,
            format!("{value} must be at most {}", config.max),
        ))
    }
}

rollgate_plugin::export_verifier!({{Struct}});

#[cfg(test)]
mod tests {
    use super::*;
    use rollgate_plugin::{Metrics, QueryError, RolloutContext, Sample};

    /// Answers every query with the same series: what the backend would have returned.
    struct Fixture(Vec<Series>);

    impl Metrics for Fixture {
        fn query(&self, _: &str, _: &str, _: Window, _: i64) -> Result<Vec<Series>, QueryError> {
            Ok(self.0.clone())
        }
    }

    fn measure(values: &[f64]) -> Measurement {
        let series = Series::from_samples(
            Vec::new(),
            values.iter().enumerate().map(|(i, v)| Sample {
                time_ms: i as i64 * 15_000,
                value: *v,
            }),
        );
        let fixture = Fixture(if values.is_empty() { vec![] } else { vec![series] });
        let context = RolloutContext {
            rollout: "checkout".into(),
            phase: "canary-10".into(),
            phase_index: 0,
            phase_count: 3,
            weight: 10.0,
            stable_version: "v1".into(),
            canary_version: "v2".into(),
            now_ms: 1_767_225_600_000,
            phase_started_ms: 1_767_225_600_000,
            metric: "errors".into(),
            measurement_index: 0,
            args: Vec::new(),
        };
        let config = Config {
            backend: "prom".into(),
            query: "error_ratio".into(),
            max: 0.05,
        };
        {{Struct}}::measure(config, &Context::new(context, &fixture)).expect("measures")
    }

    #[test]
    fn judges_the_latest_value() {
        assert_eq!(measure(&[0.2, 0.01]).verdict, Verdict::Pass);
        let failed = measure(&[0.01, 0.2]);
        assert_eq!(failed.verdict, Verdict::Fail);
        assert_eq!(failed.value, Some(0.2));
        assert_eq!(measure(&[]).verdict, Verdict::NoData);
    }

    #[test]
    fn checks_the_configuration() {
        let config = Config {
            backend: "prom".into(),
            query: " ".into(),
            max: f64::NAN,
        };
        let paths: Vec<String> = {{Struct}}::check(&config)
            .into_iter()
            .map(|p| p.path)
            .collect();
        assert_eq!(paths, ["/query", "/max"]);
    }
}
