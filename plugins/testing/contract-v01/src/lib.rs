//! Test-only component of the previous contract minor, `rollgate:plugin@0.1.0`: its own
//! bindings of the frozen `wit/v0.1/plugin.wit` (not the SDK, which follows the current
//! minor), so it is what a plugin built with the 0.1 SDK looks like to the host.
//!
//! Configuration: `{"backend": "...", "query": "...", "range": {"start-ms", "end-ms",
//! "step-ms"}?}`. `measure` runs the query and returns the mean of every finite sample as
//! its value (pass when there is one, no-data otherwise), and every sample it received —
//! labels, times and values (as `f64` bit patterns), in order — in its details, so a test can check they crossed
//! the 0.1 boundary intact.

wit_bindgen::generate!({ world: "verification-provider", path: "../../../wit/v0.1" });

use exports::rollgate::plugin::verifier::Guest;
use rollgate::plugin::metrics::{QueryRequest, TimeRange, Window, query};
use rollgate::plugin::types::{ConfigError, Measurement, PluginInfo, RolloutContext, Verdict};
use serde_json::{Value, json};

/// The component.
pub struct ContractV01;

/// The parsed configuration, or every problem with it.
struct Config {
    backend: String,
    query: String,
    range: Option<TimeRange>,
}

fn parse(config: &str) -> Result<Config, Vec<ConfigError>> {
    let doc: Value = serde_json::from_str(config).map_err(|e| {
        vec![ConfigError {
            path: String::new(),
            message: format!("not JSON: {e}"),
        }]
    })?;
    let mut errors = Vec::new();
    let mut text = |field: &str| match doc.get(field).and_then(Value::as_str) {
        Some(s) => s.to_string(),
        None => {
            errors.push(ConfigError {
                path: format!("/{field}"),
                message: "required: a string".into(),
            });
            String::new()
        }
    };
    let (backend, query) = (text("backend"), text("query"));
    let range = match doc.get("range") {
        None => None,
        Some(r) => {
            let int = |f: &str| r.get(f).and_then(Value::as_i64);
            match (
                int("start-ms"),
                int("end-ms"),
                r.get("step-ms").and_then(Value::as_u64),
            ) {
                (Some(start_ms), Some(end_ms), Some(step_ms)) => Some(TimeRange {
                    start_ms,
                    end_ms,
                    step_ms,
                }),
                _ => {
                    errors.push(ConfigError {
                        path: "/range".into(),
                        message: "needs integer start-ms, end-ms and step-ms".into(),
                    });
                    None
                }
            }
        }
    };
    if errors.is_empty() {
        Ok(Config {
            backend,
            query,
            range,
        })
    } else {
        Err(errors)
    }
}

impl Guest for ContractV01 {
    fn info() -> PluginInfo {
        PluginInfo {
            name: env!("CARGO_PKG_NAME").into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Test-only: a provider of the rollgate:plugin@0.1.0 contract.".into(),
            config_schema: json!({
                "type": "object",
                "required": ["backend", "query"],
                "properties": {
                    "backend": {"type": "string"},
                    "query": {"type": "string"},
                    "range": {"type": "object"}
                }
            })
            .to_string(),
        }
    }

    fn validate(config: String) -> Result<(), Vec<ConfigError>> {
        parse(&config).map(drop)
    }

    fn measure(config: String, _context: RolloutContext) -> Result<Measurement, String> {
        let config = parse(&config).map_err(|errors| {
            errors
                .iter()
                .map(|e| format!("{}: {}", e.path, e.message))
                .collect::<Vec<_>>()
                .join("; ")
        })?;
        let window = match config.range {
            Some(r) => Window::Range(r),
            None => Window::Instant(None),
        };
        let series = query(&QueryRequest {
            backend: config.backend,
            query: config.query,
            window,
        })
        .map_err(|e| format!("query on {} failed: {}", e.backend, e.message))?;
        let (mut sum, mut n) = (0.0, 0u32);
        let mut echoed = Vec::with_capacity(series.len());
        for s in &series {
            for sample in s.samples.iter().filter(|x| x.value.is_finite()) {
                sum += sample.value;
                n += 1;
            }
            echoed.push(json!({
                "labels": s.labels.iter().map(|l| [&l.name, &l.value]).collect::<Vec<_>>(),
                "times": s.samples.iter().map(|x| x.time_ms).collect::<Vec<_>>(),
                // As bit patterns: exact, and NaN and infinities survive JSON.
                "value-bits": s.samples.iter().map(|x| x.value.to_bits()).collect::<Vec<_>>(),
            }));
        }
        let details = json!({"contract": "0.1", "series": echoed}).to_string();
        Ok(if n == 0 {
            Measurement {
                verdict: Verdict::NoData,
                value: None,
                message: "no finite sample".into(),
                details,
            }
        } else {
            let mean = sum / f64::from(n);
            Measurement {
                verdict: Verdict::Pass,
                value: Some(mean),
                message: format!("mean of {n} samples = {mean}"),
                details,
            }
        })
    }
}

export!(ContractV01);
