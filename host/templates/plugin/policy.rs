//! {{name}}: a rollgate failure policy.
//!
//! Build:   cargo build --target wasm32-wasip2 --release
//!          → target/wasm32-wasip2/release/{{crate}}.wasm
//! Check:   rollgate plugin check target/wasm32-wasip2/release/{{crate}}.wasm \
//!              --config '{"pause": "5m"}'
//! Try it:  rollgate plugin test target/wasm32-wasip2/release/{{crate}}.wasm \
//!              --config '{"pause": "5m"}' --fixture fixtures/failed-metric.json
//! Test:    cargo test   (natively)

use rollgate_plugin::prelude::*;

/// The operator's configuration (written under `failurePolicy.config` in a rollout).
#[derive(Deserialize, JsonSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// How long to hold the rollout when a metric cannot decide (inconclusive or no data)
    /// before it resumes by itself, e.g. "5m". Without it, an operator resumes it.
    #[serde(default)]
    pub pause: Option<String>,
}

/// Rolls back when a deciding metric failed or errored, pauses when one could not decide,
/// and otherwise lets the rollout go on.
pub struct {{Struct}};

impl Policy for {{Struct}} {
    type Config = Config;

    fn check(config: &Config) -> Vec<ConfigError> {
        match config.pause.as_deref().map(rollgate_plugin::duration::parse_ms) {
            Some(Err(e)) => vec![ConfigError::new("/pause", e)],
            _ => Vec::new(),
        }
    }

    fn decide(config: Config, input: &PolicyInput) -> Result<Decision, String> {
        let deciding = input.metrics.iter().filter(|m| !m.dry_run);
        for m in deciding.clone() {
            if matches!(m.status, MetricStatus::Failed | MetricStatus::Error) {
                return Ok(Decision::Rollback(format!(
                    "metric {:?} {}: {}",
                    m.name,
                    if m.status == MetricStatus::Failed { "failed" } else { "errored" },
                    m.message
                )));
            }
        }
        for m in deciding {
            if matches!(m.status, MetricStatus::Inconclusive | MetricStatus::NoData) {
                let duration_ms = match config.pause.as_deref() {
                    Some(text) => Some(rollgate_plugin::duration::parse_ms(text)?),
                    None => None,
                };
                return Ok(Decision::Pause(Pause {
                    reason: format!("metric {:?} could not decide: {}", m.name, m.message),
                    duration_ms,
                }));
            }
        }
        Ok(Decision::Continue)
    }
}

rollgate_plugin::export_policy!({{Struct}});

#[cfg(test)]
mod tests {
    use super::*;

    fn input(status: MetricStatus, dry_run: bool) -> PolicyInput {
        PolicyInput {
            rollout: "checkout".into(),
            phase: "canary-10".into(),
            phase_index: 0,
            phase_count: 3,
            weight: 10.0,
            now_ms: 1_767_225_600_000,
            phase_complete: false,
            metrics: vec![MetricSummary {
                name: "errors".into(),
                status,
                dry_run,
                measurements: 1,
                passes: 0,
                failures: 1,
                inconclusives: 0,
                no_data: 0,
                errors: 0,
                consecutive_errors: 0,
                last_verdict: Some(Verdict::Fail),
                last_value: Some(0.2),
                message: "0.2 must be at most 0.05".into(),
            }],
            pauses: Vec::new(),
            attempt: 1,
        }
    }

    #[test]
    fn failures_roll_back_and_undecided_metrics_pause() {
        let decide = |status, dry_run| {{Struct}}::decide(Config::default(), &input(status, dry_run));
        assert!(matches!(
            decide(MetricStatus::Failed, false),
            Ok(Decision::Rollback(reason)) if reason.contains("0.2 must be at most 0.05")
        ));
        assert!(matches!(decide(MetricStatus::Failed, true), Ok(Decision::Continue)));
        assert!(matches!(
            decide(MetricStatus::NoData, false),
            Ok(Decision::Pause(Pause { duration_ms: None, .. }))
        ));
        assert!(matches!(decide(MetricStatus::Running, false), Ok(Decision::Continue)));
        let timed = Config {
            pause: Some("5m".into()),
        };
        assert!(matches!(
            {{Struct}}::decide(timed, &input(MetricStatus::Inconclusive, false)),
            Ok(Decision::Pause(Pause { duration_ms: Some(300_000), .. }))
        ));
    }

    #[test]
    fn checks_the_pause() {
        let bad = Config {
            pause: Some("soon".into()),
        };
        assert_eq!({{Struct}}::check(&bad)[0].path, "/pause");
        assert!({{Struct}}::check(&Config::default()).is_empty());
    }
}
