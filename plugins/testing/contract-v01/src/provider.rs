//! The provider of `contract-v01` and `contract-v02`: the same code over either minor's
//! bindings (each crate generates its own as `crate::…` and says how to read a series'
//! samples, `crate::samples`), so the bench can time the two boundaries on equal work.

use crate::exports::rollgate::plugin::verifier::Guest;
use crate::rollgate::plugin::metrics::{QueryRequest, TimeRange, Window, query};
use crate::rollgate::plugin::types::{
    ConfigError, Measurement, PluginInfo, RolloutContext, Verdict,
};
use serde_json::{Value, json};

/// The component.
pub struct Provider;

/// The parsed configuration, or every problem with it.
struct Config {
    backend: String,
    query: String,
    range: Option<TimeRange>,
    /// Put every sample into the details (default true); off, the call is the query, the
    /// boundary and a mean.
    echo: bool,
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
    let echo = doc.get("echo").and_then(Value::as_bool).unwrap_or(true);
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
            echo,
        })
    } else {
        Err(errors)
    }
}

impl Guest for Provider {
    fn info() -> PluginInfo {
        PluginInfo {
            name: env!("CARGO_PKG_NAME").into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: env!("CARGO_PKG_DESCRIPTION").into(),
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
        let mut echoed = Vec::new();
        for s in &series {
            for (_, value) in crate::samples(s).filter(|(_, v)| v.is_finite()) {
                sum += value;
                n += 1;
            }
            if config.echo {
                echoed.push(json!({
                    "labels": s.labels.iter().map(|l| [&l.name, &l.value]).collect::<Vec<_>>(),
                    "times": crate::samples(s).map(|(t, _)| t).collect::<Vec<_>>(),
                    // As bit patterns: exact, and NaN and infinities survive JSON.
                    "value-bits": crate::samples(s).map(|(_, v)| v.to_bits()).collect::<Vec<_>>(),
                }));
            }
        }
        let details = json!({"contract": crate::CONTRACT, "series": echoed}).to_string();
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
