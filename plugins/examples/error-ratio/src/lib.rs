use rollgate_plugin::prelude::*;

/// Passes while the error ratio stays below `max`.
#[derive(Deserialize, JsonSchema)]
pub struct Config {
    backend: String,
    query: String,
    max: f64,
}

pub struct ErrorRatio;

impl Verifier for ErrorRatio {
    type Config = Config;

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
        let message = format!("error ratio {value} must stay below {}", config.max);
        Ok(Measurement::judge(value < config.max, value, message))
    }
}

rollgate_plugin::export_verifier!(ErrorRatio);
