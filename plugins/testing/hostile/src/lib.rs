//! Test-only plugin: misbehaves as `mode` says, so the host's sandbox can be tested with a
//! real compiled component. Every mode must end as a named error on the host side.

use rollgate_plugin::prelude::*;
use rollgate_plugin::{Level, MeasurementExt, log};
use std::hint::black_box;

/// Which misbehaviour.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// loop, memory, stack, panic, oversized, file, env, sleep, exit, log-flood,
    /// query-unbound, query, clock, validate-loop (loops in `validate`), ok.
    pub mode: String,
    /// For `query`: the backend to query.
    #[serde(default)]
    pub backend: Option<String>,
}

#[inline(never)]
pub fn deep(n: u64) -> u64 {
    if n == 0 {
        return 1;
    }
    // Not associative, so it cannot become a loop.
    deep(n - 1).rotate_left(1) ^ n
}

/// The plugin (public so native builds, where the export macro is empty, see it used).
pub struct Hostile;

impl Verifier for Hostile {
    type Config = Config;

    fn check(config: &Config) -> Vec<ConfigError> {
        if config.mode == "validate-loop" {
            let mut x = 0u64;
            loop {
                x = black_box(x.wrapping_add(1));
            }
        }
        Vec::new()
    }

    fn measure(config: Config, ctx: &Context) -> Result<Measurement, String> {
        match config.mode.as_str() {
            "loop" => {
                let mut x = 0u64;
                loop {
                    x = black_box(x.wrapping_add(1));
                }
            }
            "memory" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 1 << 20]);
                    black_box(&hoard);
                }
            }
            "stack" => Ok(Measurement::new(
                Verdict::Pass,
                Some(deep(black_box(u64::MAX)) as f64),
                "unreachable",
            )),
            "panic" => panic!("hostile plugin panicked on purpose"),
            "oversized" => Ok(Measurement::new(Verdict::Pass, None, "x".repeat(8 << 20))),
            "file" => match std::fs::read_to_string("/etc/hostname") {
                Ok(content) => Ok(Measurement::new(
                    Verdict::Pass,
                    None,
                    format!("read: {content}"),
                )),
                Err(e) => Err(format!("file access failed: {e}")),
            },
            "env" => {
                let vars: Vec<String> = std::env::vars().map(|(k, _)| k).collect();
                if vars.is_empty() {
                    Err("environment is empty".into())
                } else {
                    Ok(Measurement::new(Verdict::Pass, None, vars.join(",")))
                }
            }
            "sleep" => {
                std::thread::sleep(std::time::Duration::from_secs(3600));
                Ok(Measurement::new(Verdict::Pass, None, "woke up"))
            }
            "exit" => std::process::exit(3),
            "log-flood" => {
                for i in 0..100_000 {
                    log(Level::Info, &format!("flood line {i}"));
                    println!("stdout flood line {i}");
                }
                Ok(Measurement::new(Verdict::Pass, Some(1.0), "flooded"))
            }
            "query-unbound" => {
                let series = ctx.query("not-bound-to-me", "up", Window::Now)?;
                Ok(Measurement::new(
                    Verdict::Pass,
                    Some(series.len() as f64),
                    "queried",
                ))
            }
            "query" => {
                let backend = config.backend.as_deref().unwrap_or("prom");
                let series = ctx.query(backend, "up", Window::Now)?;
                Ok(Measurement::new(
                    Verdict::Pass,
                    Some(series.len() as f64),
                    "queried",
                ))
            }
            "clock" => {
                use std::hash::{BuildHasher, Hasher};
                let wall = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_millis())
                    .unwrap_or(0);
                let t0 = std::time::Instant::now();
                let mut h = std::collections::hash_map::RandomState::new().build_hasher();
                h.write_u64(42);
                let elapsed = t0.elapsed().as_nanos();
                Ok(Measurement::new(
                    Verdict::Pass,
                    None,
                    format!("wall={wall} hash={} elapsed={elapsed}", h.finish()),
                ))
            }
            "ok" => Ok(Measurement::new(Verdict::Pass, Some(1.0), "fine")),
            other => Err(format!("unknown mode {other:?}")),
        }
    }
}

rollgate_plugin::export_verifier!(Hostile);
