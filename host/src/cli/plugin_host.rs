//! What the commands that call plugins share: the plugin host (with its compile cache),
//! the sandbox-limit flags, the context of a measurement taken outside any rollout, and how a
//! measurement and its verdict are printed and exited with.
//!
//! `plugin.rs` (inspect/check/measure), `kit.rs` (new/test) and the commands that run
//! rollouts use it; it uses none of them.

use super::exit;
use crate::plugin::{HostConfig, PluginError, PluginHost};
use clap::Args;
use serde_json::json;

/// Sandbox limits an author may raise for a trusted plugin (what a `Plugin` document's
/// `limits` says for a rollout), e.g. for a JavaScript plugin, whose component carries a
/// whole JS engine.
#[derive(Debug, Args, Default)]
pub struct LimitArgs {
    /// Largest component file accepted, in MiB (default 8).
    #[arg(long, value_name = "MIB")]
    pub max_component_mib: Option<u64>,
    /// Largest linear memory, in MiB (default 64).
    #[arg(long, value_name = "MIB")]
    pub memory_mib: Option<u64>,
    /// Longest a call may run, e.g. 5s (default 2s).
    #[arg(long, value_name = "DURATION")]
    pub timeout: Option<String>,
    /// A host the plugin may call over wasi:http (repeatable), as `allowedHosts` in a
    /// Plugin document.
    #[arg(long = "allow-host", value_name = "HOST")]
    pub allow_hosts: Vec<String>,
}

impl LimitArgs {
    /// The default limits with these raised or lowered.
    pub fn limits(&self) -> Result<crate::plugin::Limits, String> {
        use crate::plugin::limits::ceiling;
        let mut limits = crate::plugin::Limits::default();
        let mib = |n: u64, flag: &str, max: u64| {
            n.checked_mul(1024 * 1024)
                .filter(|bytes| *bytes <= max)
                .ok_or_else(|| format!("{flag} {n}: at most {} MiB", max >> 20))
        };
        if let Some(n) = self.max_component_mib {
            let bytes = mib(n, "--max-component-mib", ceiling::COMPONENT_BYTES)?;
            limits.max_component_bytes = usize::try_from(bytes)
                .map_err(|_| format!("--max-component-mib {n}: too large for this machine"))?;
        }
        if let Some(n) = self.memory_mib {
            limits.memory_bytes = mib(n, "--memory-mib", ceiling::MEMORY_BYTES)?;
        }
        if let Some(t) = &self.timeout {
            let ms = rollgate_duration::parse_ms(t)
                .and_then(|ms| ceiling::check(ms, ceiling::TIMEOUT_MS, "ms"))
                .map_err(|e| format!("--timeout: {e}"))?;
            limits.timeout = std::time::Duration::from_millis(ms);
        }
        Ok(limits)
    }
}

pub fn host() -> Result<PluginHost, PluginError> {
    host_with_cache(None)
}

/// A plugin host compiling into `cache_dir` (default: the user cache folder).
pub fn host_with_cache(cache_dir: Option<&std::path::Path>) -> Result<PluginHost, PluginError> {
    host_with(cache_dir, false)
}

/// A plugin host compiling into `cache_dir`, refusing unsigned OCI plugins when
/// `require_signed` (`--require-signed-plugins`).
pub fn host_with(
    cache_dir: Option<&std::path::Path>,
    require_signed: bool,
) -> Result<PluginHost, PluginError> {
    let mut config = HostConfig::default();
    if let Some(dir) = cache_dir {
        config.cache = crate::plugin::ComponentCache::at(dir.to_path_buf());
    }
    config.require_signed_plugins = require_signed;
    PluginHost::new(config)
}

/// A verdict's name and the exit code it means for the measuring commands: 0 pass, 1 fail,
/// 2 inconclusive or no data.
pub fn verdict_outcome(verdict: crate::plugin::types::Verdict) -> (&'static str, u8) {
    use crate::plugin::types::Verdict;
    match verdict {
        Verdict::Pass => ("pass", exit::OK),
        Verdict::Fail => ("fail", exit::PROBLEMS),
        Verdict::Inconclusive => ("inconclusive", exit::NO_DATA),
        Verdict::NoData => ("no-data", exit::NO_DATA),
    }
}

/// The rollout context of a measurement the command line takes outside any rollout
/// (`plugin measure`, `plugin test`): one phase, no versions, no args, the metric named
/// after the command, so a plugin's messages say where they came from.
pub fn cli_context(
    command: &str,
    now_ms: i64,
    phase_started_ms: i64,
    measurement_index: u32,
) -> crate::plugin::types::RolloutContext {
    crate::plugin::types::RolloutContext {
        rollout: command.into(),
        phase: command.into(),
        phase_index: 0,
        phase_count: 1,
        weight: 0.0,
        stable_version: String::new(),
        canary_version: String::new(),
        now_ms,
        phase_started_ms,
        metric: command.into(),
        measurement_index,
        args: Vec::new(),
    }
}

/// A measurement as the measuring commands print it with `--format json`: the verdict's
/// name, a finite value or null, the message and the plugin's details as JSON (null when
/// they are not JSON).
pub fn measurement_json(m: &crate::plugin::types::Measurement) -> serde_json::Value {
    json!({
        "verdict": verdict_outcome(m.verdict).0,
        "value": m.value.filter(|v| v.is_finite()),
        "message": m.message,
        "details": serde_json::from_str::<serde_json::Value>(&m.details).unwrap_or_default(),
    })
}
