//! Loading and running plugins: WebAssembly components speaking `wit/plugin.wit`.
//!
//! A [`PluginHost`] owns the wasmtime engine, the linkers of both worlds, the compiled
//! component cache and the epoch ticker. [`PluginHost::load`] checks a component (pinned
//! sha256, size, component-ness, world, imports), compiles it once (or loads it from the
//! cache) and pre-instantiates it. Each call on the resulting [`Plugin`] then runs in a
//! **fresh store and instance**, under the plugin's [`Limits`], and every way a plugin can
//! misbehave ends as a named [`PluginError`] — never a hang, a host panic or a pass.
//!
//! What this module deliberately does not do: decide what a verdict means (that is the
//! verification and engine layers), or talk to metric backends itself (it calls a
//! [`MetricsSource`](crate::metrics::MetricsSource) bound per call).
//!
//! # Where things are
//!
//! This file holds what a caller names: where a plugin comes from ([`PluginSource`],
//! [`BUILTIN`]), how to load it ([`LoadOptions`]), its world ([`PluginKind`]), the host's
//! settings ([`HostConfig`]) and the contract's [`types`].
//!
//! | file | what it holds |
//! |---|---|
//! | `host.rs` | engine setup: the wasmtime `Config`/`Engine` (epochs, fuel, the pooling allocator), the WASI and contract linkers, the epoch ticker; [`PluginHost`] |
//! | `load.rs` | loading a component: reading it bounded, size and pinned digest, the header, compiling under a time limit (or the cache), world detection, the imports check, pre-instantiation |
//! | `call.rs` | the per-call path: [`Plugin`], a fresh store and instance per call, its limits, fuel and epoch deadline, the time budgets, naming a failure, checking what came back |
//! | `sandbox.rs` | what a call's store holds: the resource limiter, clocks, the HTTP policy, the metrics import ([`MetricsBinding`]) |
//! | `logs.rs` | a plugin's captured output and rate-limited log lines |
//! | `error.rs` | [`PluginError`], one named variant per way a plugin can fail |
//! | `limits.rs` | the sandbox [`Limits`] |
//! | `cache.rs` | the compiled-component cache ([`ComponentCache`]) |
//! | `bindings.rs` | the bindings generated from `wit/plugin.wit` (0.2, current) and `wit/v0.1/plugin.wit` (0.1, previous) |
//! | `versions.rs` | the contract minors ([`Contract`]): one call path over both minors' bindings, converting 0.1's types |

pub mod bindings;
mod cache;
mod call;
mod error;
mod host;
pub mod limits;
mod load;
mod logs;
pub mod oci;
mod sandbox;
mod versions;

pub use cache::{CacheOutcome, ComponentCache};
pub use call::Plugin;
pub use error::PluginError;
pub use host::PluginHost;
pub use limits::Limits;
pub use sandbox::MetricsBinding;
pub use versions::Contract;

/// The contract's types, as the host sees them.
pub mod types {
    pub use super::bindings::policy::exports::rollgate::plugin::policy::{
        Decision, MetricStatus, MetricSummary, Pause, PauseRecord, PolicyInput,
    };
    pub use super::bindings::provider::rollgate::plugin::types::{
        Arg, ConfigError, Label, Measurement, PluginInfo, RolloutContext, Series, Verdict,
    };
}

/// The shipped components built from `plugins/`, as bytes (the test-only plugins are in the
/// `rollgate-test-plugins` crate, a dev-dependency).
pub mod artifacts {
    include!(concat!(env!("OUT_DIR"), "/plugins.rs"));
}

/// A problem `validate` found in a configuration.
pub use types::ConfigError as ConfigProblem;

use std::borrow::Cow;
use std::path::PathBuf;
use std::time::Duration;

/// The plugins compiled into the rollgate binary, by name (the list is host/build/plugins.rs).
pub const BUILTIN: &[(&str, &[u8])] = artifacts::shipped::ALL;

/// Where a plugin comes from.
#[derive(Debug, Clone)]
pub enum PluginSource {
    /// A component file.
    File(PathBuf),
    /// A plugin built into rollgate (`threshold`, `default-policy`).
    Builtin(String),
    /// Component bytes from elsewhere.
    Bytes(Cow<'static, [u8]>),
    /// A component published to an OCI registry, pinned by its manifest digest.
    Oci(Box<oci::OciSource>),
}

impl PluginSource {
    /// `builtin:NAME` or a bare built-in name is a built-in; anything else is a file path.
    pub fn parse(text: &str) -> PluginSource {
        let name = text.strip_prefix("builtin:").unwrap_or(text);
        if BUILTIN.iter().any(|(n, _)| *n == name) {
            PluginSource::Builtin(name.to_string())
        } else {
            PluginSource::File(PathBuf::from(text))
        }
    }
}

/// How to load a plugin.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// The name the operator gave it (used in every log line and error). Defaults to the
    /// built-in name or the file name.
    pub name: Option<String>,
    /// The pinned sha256 (hex, optionally prefixed `sha256:`); loading fails on mismatch.
    pub sha256: Option<String>,
    /// The sandbox limits.
    pub limits: Limits,
    /// Same input, same output: seeded randomness and a wall clock frozen at the rollout's
    /// "now" (for replays and tests).
    pub deterministic: bool,
    /// Hosts a verification provider may call over wasi:http (its Plugin document's
    /// `allowedHosts`); every other request is denied (empty: all are).
    pub allowed_hosts: Vec<String>,
}

/// Which world a plugin implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PluginKind {
    /// `verification-provider`: exports `verifier`.
    Provider,
    /// `failure-policy`: exports `policy`.
    Policy,
}

impl PluginKind {
    /// The world's name.
    pub fn world(self) -> &'static str {
        match self {
            PluginKind::Provider => "verification-provider",
            PluginKind::Policy => "failure-policy",
        }
    }
    fn noun(self) -> &'static str {
        match self {
            PluginKind::Provider => "verification provider",
            PluginKind::Policy => "failure policy",
        }
    }
}

/// Host-wide settings.
#[derive(Debug, Clone)]
pub struct HostConfig {
    /// Where compiled components are cached.
    pub cache: ComponentCache,
    /// How often the epoch advances; the granularity of time limits.
    pub epoch_tick: Duration,
    /// How many plugin calls may run at once across the host; further calls wait their
    /// turn. With the pooling allocator this is also the number of pre-reserved instance
    /// slots.
    pub max_concurrent_calls: u32,
    /// The longest a component may take to compile. Compiling runs on its own thread; past
    /// this the load fails with `compile-timeout` (the thread finishes in the background).
    pub compile_timeout: Duration,
    /// Refuse an OCI plugin unless a cosign signature by its `verify.cosign.publicKey`
    /// signs its digest (`rollgate serve --require-signed-plugins`).
    pub require_signed_plugins: bool,
    /// Pre-reserve instance slots (memories, tables, fiber stacks) and reuse them, which
    /// makes a fresh instance per call cheap. Costs virtual address space (about 4 GiB per
    /// memory slot); falls back to on-demand allocation if the reservation fails.
    pub pooling: bool,
}

impl Default for HostConfig {
    fn default() -> Self {
        HostConfig {
            cache: ComponentCache::default_location(),
            epoch_tick: Duration::from_millis(10),
            max_concurrent_calls: 256,
            compile_timeout: Duration::from_secs(120),
            require_signed_plugins: false,
            pooling: true,
        }
    }
}
