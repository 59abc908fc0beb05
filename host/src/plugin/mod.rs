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

pub mod bindings;
mod cache;
mod error;
pub mod limits;
mod logs;
mod sandbox;

pub use cache::{CacheOutcome, ComponentCache};
pub use error::PluginError;
pub use limits::Limits;
pub use sandbox::MetricsBinding;

/// The contract's types, as the host sees them.
pub mod types {
    pub use super::bindings::policy::exports::rollgate::plugin::policy::{
        Decision, MetricStatus, MetricSummary, Pause, PauseRecord, PolicyInput,
    };
    pub use super::bindings::provider::rollgate::plugin::types::{
        Arg, ConfigError, Label, Measurement, PluginInfo, RolloutContext, Sample, Series, Verdict,
    };
}

/// The shipped components built from `plugins/`, as bytes (the test-only plugins are in the
/// `rollgate-test-plugins` crate, a dev-dependency).
pub mod artifacts {
    include!(concat!(env!("OUT_DIR"), "/plugins.rs"));
}

use bindings::policy::{FailurePolicy, FailurePolicyPre};
use bindings::provider::{VerificationProvider, VerificationProviderPre};
use logs::{CallOutput, LogSink};
use sandbox::{FixedClock, Limiter, QueryClock, StoreData};
use sha2::{Digest, Sha256};
use std::borrow::Cow;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use types::{Decision, Measurement, PluginInfo, PolicyInput, RolloutContext, Verdict};
use wasmtime::component::{HasData, HasSelf, Linker, ResourceTable};
use wasmtime::{Config, Engine, Store};
use wasmtime_wasi::WasiCtxBuilder;

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
            pooling: true,
        }
    }
}

/// One engine with its linkers. Linkers are built once: building them per call is slow and
/// cloning them has been a source of wasmtime bugs.
struct EngineSet {
    engine: Engine,
    provider: Linker<StoreData>,
    policy: Linker<StoreData>,
}

struct IoTable;
impl HasData for IoTable {
    type Data<'a> = &'a mut ResourceTable;
}

/// Link the WASI interfaces plugins may use: everything a Rust `std` program imports, but
/// no sockets (a plugin reaches metrics through the host, never the network).
fn add_wasi(l: &mut Linker<StoreData>) -> wasmtime::Result<()> {
    use wasmtime_wasi::cli::WasiCli;
    use wasmtime_wasi::clocks::WasiClocks;
    use wasmtime_wasi::filesystem::WasiFilesystem;
    use wasmtime_wasi::p2::bindings::{cli, clocks, filesystem, random};
    use wasmtime_wasi::random::WasiRandom;
    use wasmtime_wasi::{cli::WasiCliView, clocks::WasiClocksView, filesystem::WasiFilesystemView};
    use wasmtime_wasi_io::bindings::wasi::io;

    io::error::add_to_linker::<StoreData, IoTable>(l, |t| &mut t.table)?;
    io::poll::add_to_linker::<StoreData, IoTable>(l, |t| &mut t.table)?;
    io::streams::add_to_linker::<StoreData, IoTable>(l, |t| &mut t.table)?;
    clocks::wall_clock::add_to_linker::<StoreData, WasiClocks>(l, StoreData::clocks)?;
    clocks::monotonic_clock::add_to_linker::<StoreData, WasiClocks>(l, StoreData::clocks)?;
    filesystem::types::add_to_linker::<StoreData, WasiFilesystem>(l, StoreData::filesystem)?;
    filesystem::preopens::add_to_linker::<StoreData, WasiFilesystem>(l, StoreData::filesystem)?;
    random::random::add_to_linker::<StoreData, WasiRandom>(l, |t| t.wasi.random())?;
    random::insecure::add_to_linker::<StoreData, WasiRandom>(l, |t| t.wasi.random())?;
    random::insecure_seed::add_to_linker::<StoreData, WasiRandom>(l, |t| t.wasi.random())?;
    cli::exit::add_to_linker::<StoreData, WasiCli>(l, StoreData::cli)?;
    cli::environment::add_to_linker::<StoreData, WasiCli>(l, StoreData::cli)?;
    cli::stdin::add_to_linker::<StoreData, WasiCli>(l, StoreData::cli)?;
    cli::stdout::add_to_linker::<StoreData, WasiCli>(l, StoreData::cli)?;
    cli::stderr::add_to_linker::<StoreData, WasiCli>(l, StoreData::cli)?;
    cli::terminal_input::add_to_linker::<StoreData, WasiCli>(l, StoreData::cli)?;
    cli::terminal_output::add_to_linker::<StoreData, WasiCli>(l, StoreData::cli)?;
    cli::terminal_stdin::add_to_linker::<StoreData, WasiCli>(l, StoreData::cli)?;
    cli::terminal_stdout::add_to_linker::<StoreData, WasiCli>(l, StoreData::cli)?;
    cli::terminal_stderr::add_to_linker::<StoreData, WasiCli>(l, StoreData::cli)?;
    Ok(())
}

/// The most any plugin's limits may ask for; the pool's slots are sized for it.
const POOL_MAX_MEMORIES_PER_COMPONENT: u32 = 16;
const POOL_MAX_TABLES_PER_COMPONENT: u32 = 64;
const POOL_MAX_CORE_INSTANCES_PER_COMPONENT: u32 = 64;

impl EngineSet {
    fn new(fuel: bool, pool_slots: Option<u32>) -> wasmtime::Result<Self> {
        let mut config = Config::new();
        config.epoch_interruption(true);
        config.consume_fuel(fuel);
        config.wasm_component_model(true);
        if let Some(slots) = pool_slots {
            let mut pool = wasmtime::PoolingAllocationConfig::default();
            pool.total_component_instances(slots)
                .total_stacks(slots)
                .total_core_instances(slots.saturating_mul(4))
                .total_memories(slots.saturating_mul(2))
                .total_tables(slots.saturating_mul(4))
                .max_core_instances_per_component(POOL_MAX_CORE_INSTANCES_PER_COMPONENT)
                .max_memories_per_component(POOL_MAX_MEMORIES_PER_COMPONENT)
                .max_tables_per_component(POOL_MAX_TABLES_PER_COMPONENT);
            config.allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(pool));
        }
        let engine = Engine::new(&config)?;
        let mut provider = Linker::new(&engine);
        add_wasi(&mut provider)?;
        // Linked for every provider; only plugins allowed hosts may import it (see
        // `check_import`), and the hooks deny every host not listed.
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut provider)?;
        VerificationProvider::add_to_linker::<_, HasSelf<StoreData>>(&mut provider, |s| s)?;
        let mut policy = Linker::new(&engine);
        add_wasi(&mut policy)?;
        FailurePolicy::add_to_linker::<_, HasSelf<StoreData>>(&mut policy, |s| s)?;
        Ok(EngineSet {
            engine,
            provider,
            policy,
        })
    }
}

struct HostInner {
    plain: EngineSet,
    /// Pool slots per engine, when pooling is on.
    pool_slots: Option<u32>,
    /// Bounds concurrent calls (and so pool slots in use).
    permits: Arc<tokio::sync::Semaphore>,
    /// Built the first time a plugin asks for fuel: metering costs every plugin on the
    /// engine up to 2× on tight loops, so plugins without a fuel limit never pay for it.
    metered: OnceLock<EngineSet>,
    cache: ComponentCache,
    compile_timeout: Duration,
}

/// Loads plugins. Cheap to clone; share one per process.
#[derive(Clone)]
pub struct PluginHost {
    inner: Arc<HostInner>,
}

impl PluginHost {
    /// A host with `config`. Starts the epoch ticker thread, which stops with the host.
    pub fn new(config: HostConfig) -> Result<Self, PluginError> {
        let slots = config.max_concurrent_calls.max(1);
        let (plain, pool_slots) = match config.pooling.then(|| EngineSet::new(false, Some(slots))) {
            Some(Ok(set)) => (Ok(set), Some(slots)),
            Some(Err(e)) => {
                tracing::warn!(
                    "pooling allocator unavailable, allocating instances on demand: {e:#}"
                );
                (EngineSet::new(false, None), None)
            }
            None => (EngineSet::new(false, None), None),
        };
        let plain = plain.map_err(|e| PluginError::Host {
            plugin: String::new(),
            message: format!("cannot create the wasm engine: {e:#}"),
        })?;
        let inner = Arc::new(HostInner {
            plain,
            pool_slots,
            permits: Arc::new(tokio::sync::Semaphore::new(slots as usize)),
            compile_timeout: config.compile_timeout,
            metered: OnceLock::new(),
            cache: config.cache,
        });
        let weak = Arc::downgrade(&inner);
        let tick = config.epoch_tick;
        std::thread::Builder::new()
            .name("rollgate-epoch".into())
            .spawn(move || {
                while let Some(inner) = weak.upgrade() {
                    inner.plain.engine.increment_epoch();
                    if let Some(m) = inner.metered.get() {
                        m.engine.increment_epoch();
                    }
                    drop(inner);
                    std::thread::sleep(tick);
                }
            })
            .map_err(|e| PluginError::Host {
                plugin: String::new(),
                message: format!("cannot start the epoch thread: {e}"),
            })?;
        Ok(PluginHost { inner })
    }

    /// Whether instances come from the pooling allocator (it falls back to on-demand
    /// allocation when the address-space reservation fails).
    pub fn pooling(&self) -> bool {
        self.inner.pool_slots.is_some()
    }

    /// The component cache in use.
    pub fn cache(&self) -> &ComponentCache {
        &self.inner.cache
    }

    fn engines(&self, fuel: bool) -> Result<&EngineSet, PluginError> {
        if !fuel {
            return Ok(&self.inner.plain);
        }
        if let Some(set) = self.inner.metered.get() {
            return Ok(set);
        }
        let set = EngineSet::new(true, self.inner.pool_slots).map_err(|e| PluginError::Host {
            plugin: String::new(),
            message: format!("cannot create the fuel-metered engine: {e:#}"),
        })?;
        Ok(self.inner.metered.get_or_init(|| set))
    }

    /// Load, check, compile (or fetch from cache) and pre-instantiate a plugin.
    pub fn load(
        &self,
        source: &PluginSource,
        options: &LoadOptions,
    ) -> Result<Plugin, PluginError> {
        Ok(self.load_traced(source, options)?.0)
    }

    /// [`PluginHost::load`] from async code: compiling can take seconds, so it runs on a
    /// blocking thread instead of an executor worker.
    pub async fn load_async(
        &self,
        source: PluginSource,
        options: LoadOptions,
    ) -> Result<Plugin, PluginError> {
        let host = self.clone();
        let name = options.name.clone().unwrap_or_default();
        tokio::task::spawn_blocking(move || host.load(&source, &options))
            .await
            .map_err(|e| PluginError::Host {
                plugin: name,
                message: format!("the loading task failed: {e}"),
            })?
    }

    /// [`PluginHost::load`], also saying whether the compiled form came from the cache.
    pub fn load_traced(
        &self,
        source: &PluginSource,
        options: &LoadOptions,
    ) -> Result<(Plugin, CacheOutcome), PluginError> {
        let (default_name, bytes): (String, Cow<'static, [u8]>) = match source {
            PluginSource::File(path) => {
                let name = path
                    .file_stem()
                    .and_then(|s| s.to_str())
                    .unwrap_or("plugin")
                    .to_string();
                let plugin = options.name.clone().unwrap_or_else(|| name.clone());
                let bytes = read_bounded(path, options.limits.max_component_bytes, &plugin)?;
                (name, Cow::Owned(bytes))
            }
            PluginSource::Builtin(name) => {
                let bytes = BUILTIN
                    .iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, b)| *b)
                    .ok_or_else(|| PluginError::Read {
                        plugin: name.clone(),
                        path: PathBuf::from(format!("builtin:{name}")),
                        source: std::io::Error::new(
                            std::io::ErrorKind::NotFound,
                            format!(
                                "no built-in plugin of that name (built-in: {})",
                                BUILTIN
                                    .iter()
                                    .map(|(n, _)| *n)
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            ),
                        ),
                    })?;
                (name.clone(), Cow::Borrowed(bytes))
            }
            PluginSource::Bytes(bytes) => ("plugin".to_string(), bytes.clone()),
        };
        let name: Arc<str> = options.name.clone().unwrap_or(default_name).into();
        let plugin = name.to_string();
        let limits = options.limits.clone();

        if bytes.len() > limits.max_component_bytes {
            return Err(PluginError::ComponentTooLarge {
                plugin,
                size: bytes.len(),
                limit: limits.max_component_bytes,
            });
        }
        let sha256 = hex::encode(Sha256::digest(&bytes));
        if let Some(pinned) = &options.sha256 {
            let expected = pinned
                .trim()
                .strip_prefix("sha256:")
                .unwrap_or(pinned.trim())
                .to_ascii_lowercase();
            if expected != sha256 {
                return Err(PluginError::DigestMismatch {
                    plugin,
                    expected,
                    actual: sha256,
                });
            }
        }
        check_header(&plugin, &bytes)?;

        if self.inner.pool_slots.is_some() {
            let over = [
                (
                    "maxInstances",
                    limits.max_instances,
                    POOL_MAX_CORE_INSTANCES_PER_COMPONENT,
                ),
                (
                    "maxMemories",
                    limits.max_memories,
                    POOL_MAX_MEMORIES_PER_COMPONENT,
                ),
                (
                    "maxTables",
                    limits.max_tables,
                    POOL_MAX_TABLES_PER_COMPONENT,
                ),
            ]
            .into_iter()
            .find(|(_, asked, max)| *asked > *max as usize);
            if let Some((field, asked, max)) = over {
                return Err(PluginError::Invalid {
                    plugin,
                    message: format!(
                        "limits.{field} is {asked}, above the host's maximum of {max}"
                    ),
                });
            }
        }
        let set = self.engines(limits.fuel.is_some())?;
        let (component, outcome) = self.compile(&plugin, &set.engine, &sha256, bytes)?;
        let ty = component.component_type();
        let exports: Vec<String> = ty
            .exports(&set.engine)
            .map(|(n, _)| n.to_string())
            .collect();
        let imports: Vec<String> = ty
            .imports(&set.engine)
            .map(|(n, _)| n.to_string())
            .collect();
        let kind = world_of(&plugin, &exports)?;
        for import in &imports {
            check_import(&plugin, kind, import)?;
        }
        let invalid = |e: wasmtime::Error| PluginError::Invalid {
            plugin: plugin.clone(),
            message: format!("{e:#}"),
        };
        let pre = match kind {
            PluginKind::Provider => {
                let pre = set.provider.instantiate_pre(&component).map_err(invalid)?;
                Pre::Provider(VerificationProviderPre::new(pre).map_err(invalid)?)
            }
            PluginKind::Policy => {
                let pre = set.policy.instantiate_pre(&component).map_err(invalid)?;
                Pre::Policy(FailurePolicyPre::new(pre).map_err(invalid)?)
            }
        };
        tracing::debug!(
            plugin = &*name,
            sha256,
            ?outcome,
            world = kind.world(),
            "plugin loaded"
        );
        Ok((
            Plugin {
                inner: Arc::new(PluginInner {
                    logs: Arc::new(LogSink::new(name.clone())),
                    name,
                    sha256,
                    kind,
                    pre,
                    limits,
                    deterministic: options.deterministic,
                    allowed_hosts: options.allowed_hosts.iter().cloned().collect(),
                    engine: set.engine.clone(),
                    permits: self.inner.permits.clone(),
                    _host: self.inner.clone(),
                    exports,
                    imports,
                }),
            },
            outcome,
        ))
    }
}

impl PluginHost {
    /// Load the compiled component from the cache, or compile it on a thread of its own,
    /// bounded in time: compiling a hostile component can take very long, and must not
    /// stall the caller forever. Cache hits stay on the caller's thread (they are cheap).
    fn compile(
        &self,
        plugin: &str,
        engine: &Engine,
        sha256: &str,
        bytes: Cow<'static, [u8]>,
    ) -> Result<(wasmtime::component::Component, CacheOutcome), PluginError> {
        if let Some(component) = self.inner.cache.lookup(engine, sha256) {
            return Ok((component, CacheOutcome::Hit));
        }
        let (tx, rx) = std::sync::mpsc::channel();
        let (cache, engine, digest) =
            (self.inner.cache.clone(), engine.clone(), sha256.to_string());
        std::thread::Builder::new()
            .name("rollgate-compile".into())
            .spawn(move || {
                let _ = tx.send(cache.compile(&engine, &digest, &bytes));
            })
            .map_err(|e| PluginError::Host {
                plugin: plugin.to_string(),
                message: format!("cannot start a compile thread: {e}"),
            })?;
        match rx.recv_timeout(self.inner.compile_timeout) {
            Ok(Ok(component)) => Ok((component, CacheOutcome::Compiled)),
            Ok(Err(e)) => Err(PluginError::Invalid {
                plugin: plugin.to_string(),
                message: format!("{e:#}"),
            }),
            Err(_) => Err(PluginError::CompileTimeout {
                plugin: plugin.to_string(),
                limit: self.inner.compile_timeout,
            }),
        }
    }
}

/// Read a component file, refusing anything but a regular file and never reading more
/// than the size limit (a path to `/dev/zero` or a FIFO must not exhaust memory or block).
fn read_bounded(
    path: &std::path::Path,
    limit: usize,
    plugin: &str,
) -> Result<Vec<u8>, PluginError> {
    use std::io::Read;
    let read_error = |source: std::io::Error| PluginError::Read {
        plugin: plugin.to_string(),
        path: path.to_path_buf(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(read_error)?;
    if !meta.is_file() {
        return Err(read_error(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a regular file",
        )));
    }
    let too_large = |size: usize| PluginError::ComponentTooLarge {
        plugin: plugin.to_string(),
        size,
        limit,
    };
    // Limits are capped where they are read, but this read must not trust that: every sum
    // saturates.
    let limit_u64 = u64::try_from(limit).unwrap_or(u64::MAX);
    if meta.len() > limit_u64 {
        return Err(too_large(usize::try_from(meta.len()).unwrap_or(usize::MAX)));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    std::fs::File::open(path)
        .and_then(|f| f.take(limit_u64.saturating_add(1)).read_to_end(&mut bytes))
        .map_err(read_error)?;
    if bytes.len() > limit {
        return Err(too_large(bytes.len()));
    }
    Ok(bytes)
}

/// Refuse what is not a component before handing it to the compiler.
fn check_header(plugin: &str, bytes: &[u8]) -> Result<(), PluginError> {
    let not = |what: &str| PluginError::NotAComponent {
        plugin: plugin.to_string(),
        what: what.to_string(),
    };
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        return Err(not(
            "not a WebAssembly file (it does not start with \\0asm); give the .wasm built with `cargo build --target wasm32-wasip2`",
        ));
    }
    match bytes[4..8] {
        [1, 0, 0, 0] => Err(not(
            "a core WebAssembly module, not a component; build for wasm32-wasip2 (which produces a component) or wrap it with `wasm-tools component new`",
        )),
        [_, _, 1, 0] => Ok(()),
        _ => Err(not("an unknown WebAssembly encoding version")),
    }
}

/// Which world the exports implement.
fn world_of(plugin: &str, exports: &[String]) -> Result<PluginKind, PluginError> {
    let mut kind = None;
    for export in exports {
        let Some(rest) = export.strip_prefix("rollgate:plugin/") else {
            continue;
        };
        let (iface, version) = rest.split_once('@').unwrap_or((rest, ""));
        let this = match iface {
            "verifier" => PluginKind::Provider,
            "policy" => PluginKind::Policy,
            _ => continue,
        };
        if !version.starts_with("0.1.") {
            return Err(PluginError::UnsupportedVersion {
                plugin: plugin.to_string(),
                export: export.clone(),
            });
        }
        if kind.is_some_and(|k| k != this) {
            return Err(PluginError::Invalid {
                plugin: plugin.to_string(),
                message: "exports both rollgate:plugin/verifier and rollgate:plugin/policy; a plugin is one or the other".into(),
            });
        }
        kind = Some(this);
    }
    kind.ok_or_else(|| PluginError::UnknownWorld {
        plugin: plugin.to_string(),
        exports: exports.join(", "),
    })
}

/// Refuse imports the sandbox does not provide, with the reason.
fn check_import(plugin: &str, kind: PluginKind, import: &str) -> Result<(), PluginError> {
    let forbidden = |why: &str| PluginError::ForbiddenImport {
        plugin: plugin.to_string(),
        import: import.to_string(),
        why: why.to_string(),
    };
    let iface = import.split('@').next().unwrap_or(import);
    match iface.split_once('/') {
        Some(("wasi:sockets", _)) => Err(forbidden(
            "plugins may not open sockets; query metrics through the rollgate:plugin/metrics import",
        )),
        // A provider may import the HTTP client; what it may reach is decided per request
        // (only the hosts its Plugin document allows; everything else is denied).
        Some(("wasi:http", "outgoing-handler" | "types")) if kind == PluginKind::Provider => Ok(()),
        Some(("wasi:http", _)) => Err(forbidden(
            "a failure policy cannot make HTTP requests, and a provider only as a client (outgoing-handler)",
        )),
        Some(("wasi:io" | "wasi:cli" | "wasi:clocks" | "wasi:random" | "wasi:filesystem", _)) => {
            Ok(())
        }
        Some(("rollgate:plugin", "types" | "log")) => Ok(()),
        Some(("rollgate:plugin", "metrics")) if kind == PluginKind::Provider => Ok(()),
        Some(("rollgate:plugin", "metrics")) => Err(forbidden(
            "a failure policy cannot query metrics; it decides from the metric statuses it is given",
        )),
        _ => Err(forbidden(
            "rollgate provides WASI (without sockets) and rollgate:plugin/{types,log,metrics} only",
        )),
    }
}

/// A call's store, its captured output, and its query-time clock.
type CallParts = (Store<StoreData>, Arc<CallOutput>, Arc<QueryClock>);

enum Pre {
    Provider(VerificationProviderPre<StoreData>),
    Policy(FailurePolicyPre<StoreData>),
}

struct PluginInner {
    name: Arc<str>,
    sha256: String,
    kind: PluginKind,
    pre: Pre,
    limits: Limits,
    deterministic: bool,
    /// Who the plugin may call over wasi:http.
    allowed_hosts: Arc<[String]>,
    engine: Engine,
    permits: Arc<tokio::sync::Semaphore>,
    /// Keeps the host — and so its epoch ticker, without which no time limit fires —
    /// alive as long as any plugin is.
    _host: Arc<HostInner>,
    logs: Arc<LogSink>,
    exports: Vec<String>,
    imports: Vec<String>,
}

/// A loaded plugin. Cheap to clone; calls may run concurrently, each in its own instance.
#[derive(Clone)]
pub struct Plugin {
    inner: Arc<PluginInner>,
}

/// A problem `validate` found in a configuration.
pub use types::ConfigError as ConfigProblem;

/// Run one call in a fresh store and instance, under a call slot and the time budgets,
/// naming any failure: `$body` is an async block over `$store`.
macro_rules! run_call {
    ($plugin:expr, $metrics:expr, $now_ms:expr, |$store:ident| $body:expr) => {{
        let started = Instant::now();
        let result = async {
            let _permit = $plugin.permit().await?;
            let (mut $store, output, clock) = $plugin.store($metrics, $now_ms)?;
            let result = $plugin.supervise($body, &clock).await?;
            result.map_err(|e| $plugin.classify(e, &$store, &output))
        }
        .await;
        $plugin.record_call(started, result.as_ref().err());
        result
    }};
}

impl Plugin {
    /// The name used in logs and errors.
    pub fn name(&self) -> &str {
        &self.inner.name
    }
    /// The component's sha256 (hex).
    pub fn sha256(&self) -> &str {
        &self.inner.sha256
    }
    /// Which world it implements.
    pub fn kind(&self) -> PluginKind {
        self.inner.kind
    }
    /// Its limits.
    pub fn limits(&self) -> &Limits {
        &self.inner.limits
    }
    /// The component's export names.
    pub fn exports(&self) -> &[String] {
        &self.inner.exports
    }
    /// The component's import names.
    pub fn imports(&self) -> &[String] {
        &self.inner.imports
    }
    /// Log lines dropped by the rate limit so far.
    pub fn dropped_log_lines(&self) -> u64 {
        self.inner.logs.dropped()
    }

    /// Count a call for `/metrics`: its wall time, and the limit it hit if one stopped it.
    fn record_call(&self, started: Instant, error: Option<&PluginError>) {
        let t = crate::telemetry::global();
        let plugin = self.inner.name.as_ref();
        t.observe(
            "rollgate_plugin_call_seconds",
            crate::telemetry::LATENCY_BUCKETS,
            &[("plugin", plugin)],
            started.elapsed().as_secs_f64(),
        );
        if let Some(e) = error
            && matches!(
                e,
                PluginError::Timeout { .. }
                    | PluginError::OutOfFuel { .. }
                    | PluginError::MemoryLimit { .. }
                    | PluginError::StackOverflow { .. }
                    | PluginError::TooLarge { .. }
            )
        {
            t.count(
                "rollgate_plugin_limit_hits_total",
                &[("plugin", plugin), ("limit", e.kind())],
                1,
            );
        }
    }

    /// Wait for a call slot (bounded by `HostConfig::max_concurrent_calls`).
    async fn permit(&self) -> Result<tokio::sync::OwnedSemaphorePermit, PluginError> {
        self.inner
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| self.host_error(e))
    }

    fn store(
        &self,
        metrics: Option<MetricsBinding>,
        now_ms: i64,
    ) -> Result<CallParts, PluginError> {
        let inner = &self.inner;
        let output = CallOutput::new(inner.logs.clone());
        let mut wasi = WasiCtxBuilder::new();
        wasi.stdout(output.stdout())
            .stderr(output.stderr())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false);
        if inner.deterministic {
            let now = Duration::from_millis(u64::try_from(now_ms).unwrap_or(0));
            wasi.secure_random(wasmtime_wasi::Deterministic::new(vec![
                0x5e, 0xed, 1, 2, 3, 4, 5, 6,
            ]))
            .insecure_random(wasmtime_wasi::Deterministic::new(vec![7, 8, 9, 10, 11, 12]))
            .insecure_random_seed(0x5eed)
            .wall_clock(FixedClock(now))
            .monotonic_clock(sandbox::SteppingClock::default());
        }
        let query_clock = Arc::new(QueryClock::default());
        let limits = &inner.limits;
        let data = StoreData {
            wasi: wasi.build(),
            table: ResourceTable::new(),
            limiter: Limiter {
                memory_bytes: limits.memory_bytes,
                max_table_elements: limits.max_table_elements,
                max_instances: limits.max_instances,
                max_tables: limits.max_tables,
                max_memories: limits.max_memories,
                memory_refused: None,
            },
            plugin: inner.name.clone(),
            logs: inner.logs.clone(),
            metrics,
            query_clock: query_clock.clone(),
            now_ms,
            http: wasmtime_wasi_http::WasiHttpCtx::new(),
            http_policy: sandbox::HttpPolicy {
                allowed: inner.allowed_hosts.clone(),
                timeout: limits.timeout,
            },
        };
        let mut store = Store::new(&inner.engine, data);
        store.limiter(|d| &mut d.limiter);
        store.set_hostcall_fuel(limits.max_result_bytes);
        store.set_max_component_handles(limits.max_handles);
        // Yield to the executor at every epoch tick: the supervisor can then stop a call
        // that is over its budget, and a busy plugin never starves other tasks.
        store.set_epoch_deadline(1);
        store.epoch_deadline_async_yield_and_update(1);
        if let Some(fuel) = limits.fuel {
            store.set_fuel(fuel).map_err(|e| self.host_error(e))?;
        }
        Ok((store, output, query_clock))
    }

    fn host_error(&self, e: impl std::fmt::Display) -> PluginError {
        PluginError::Host {
            plugin: self.inner.name.to_string(),
            message: e.to_string(),
        }
    }

    /// Run `call` under the time budgets: the plugin's own time (wall time minus time spent
    /// waiting on metric queries) and the total query time. Dropping the future stops the
    /// guest at its next epoch yield.
    async fn supervise<R>(
        &self,
        call: impl std::future::Future<Output = wasmtime::Result<R>>,
        clock: &QueryClock,
    ) -> Result<wasmtime::Result<R>, PluginError> {
        let limits = &self.inner.limits;
        let start = Instant::now();
        tokio::pin!(call);
        loop {
            let queries = clock.spent();
            let own = start.elapsed().saturating_sub(queries);
            if own >= limits.timeout {
                return Err(PluginError::Timeout {
                    plugin: self.inner.name.to_string(),
                    what: "the plugin's own run time",
                    field: "timeout",
                    limit: limits.timeout,
                });
            }
            if queries >= limits.query_timeout {
                return Err(PluginError::Timeout {
                    plugin: self.inner.name.to_string(),
                    what: "time waiting on metric queries",
                    field: "queryTimeout",
                    limit: limits.query_timeout,
                });
            }
            let wait = (limits.timeout - own).min(limits.query_timeout - queries);
            tokio::select! {
                result = &mut call => return Ok(result),
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Name a failed call by its cause.
    fn classify(
        &self,
        e: wasmtime::Error,
        store: &Store<StoreData>,
        output: &CallOutput,
    ) -> PluginError {
        let plugin = self.inner.name.to_string();
        let limits = &self.inner.limits;
        if let Some(exit) = e.downcast_ref::<wasmtime_wasi::I32Exit>() {
            return PluginError::Exit {
                plugin,
                code: exit.0,
            };
        }
        if let Some(pool) = e.downcast_ref::<wasmtime::PoolConcurrencyLimitError>() {
            return PluginError::Host {
                plugin,
                message: format!(
                    "the host's instance pool is exhausted ({pool}); raise max_concurrent_calls or lower concurrency"
                ),
            };
        }
        let trap = e.downcast_ref::<wasmtime::Trap>();
        // A refused memory.grow explains an abort (Rust's allocation-failure handler ends in
        // `unreachable`), not a trap of another kind that came later.
        if let Some(requested) = store.data().limiter.memory_refused
            && matches!(trap, None | Some(wasmtime::Trap::UnreachableCodeReached))
        {
            return PluginError::MemoryLimit {
                plugin,
                limit: limits.memory_bytes,
                requested,
            };
        }
        if let Some(trap) = trap {
            return match trap {
                wasmtime::Trap::StackOverflow => PluginError::StackOverflow { plugin },
                wasmtime::Trap::OutOfFuel => PluginError::OutOfFuel {
                    plugin,
                    fuel: limits.fuel.unwrap_or(0),
                },
                other => PluginError::Trap {
                    plugin,
                    trap: other.to_string(),
                    stderr: output.stderr_tail(),
                },
            };
        }
        let message = format!("{e:#}");
        if message.contains("fuel allocated for hostcalls has been exhausted") {
            return PluginError::TooLarge {
                plugin,
                limit: limits.max_result_bytes,
            };
        }
        PluginError::Trap {
            plugin,
            trap: message,
            stderr: output.stderr_tail(),
        }
    }

    fn wrong_kind(&self, wanted: PluginKind) -> PluginError {
        PluginError::WrongKind {
            plugin: self.inner.name.to_string(),
            actual: self.inner.kind.noun(),
            wanted: wanted.noun(),
        }
    }

    /// Ask the plugin to describe itself.
    pub async fn info(&self) -> Result<PluginInfo, PluginError> {
        let info = match &self.inner.pre {
            Pre::Provider(pre) => run_call!(self, None, 0, |store| async {
                let i = pre.instantiate_async(&mut store).await?;
                i.rollgate_plugin_verifier().call_info(&mut store).await
            })?,
            Pre::Policy(pre) => run_call!(self, None, 0, |store| async {
                let i = pre.instantiate_async(&mut store).await?;
                i.rollgate_plugin_policy().call_info(&mut store).await
            })?,
        };
        if serde_json::from_str::<serde_json::Value>(&info.config_schema).is_err() {
            return Err(PluginError::InvalidResult {
                plugin: self.inner.name.to_string(),
                problem: "info.config-schema is not JSON".into(),
            });
        }
        Ok(info)
    }

    /// Check a configuration (JSON text). `Ok(vec![])` means valid.
    pub async fn validate(&self, config: &str) -> Result<Vec<ConfigProblem>, PluginError> {
        let validated = match &self.inner.pre {
            Pre::Provider(pre) => run_call!(self, None, 0, |store| async {
                let i = pre.instantiate_async(&mut store).await?;
                i.rollgate_plugin_verifier()
                    .call_validate(&mut store, config)
                    .await
            })?,
            Pre::Policy(pre) => run_call!(self, None, 0, |store| async {
                let i = pre.instantiate_async(&mut store).await?;
                i.rollgate_plugin_policy()
                    .call_validate(&mut store, config)
                    .await
            })?,
        };
        match validated {
            Ok(()) => Ok(Vec::new()),
            Err(problems) if problems.is_empty() => Err(PluginError::InvalidResult {
                plugin: self.inner.name.to_string(),
                problem: "validate failed without saying why (empty error list)".into(),
            }),
            Err(problems) => Ok(problems),
        }
    }

    /// Take one measurement (verification providers only). `metrics` binds the backends
    /// the operator gave this metric.
    pub async fn measure(
        &self,
        config: &str,
        context: &RolloutContext,
        metrics: Option<MetricsBinding>,
    ) -> Result<Measurement, PluginError> {
        let Pre::Provider(pre) = &self.inner.pre else {
            return Err(self.wrong_kind(PluginKind::Provider));
        };
        let measured = run_call!(self, metrics, context.now_ms, |store| async {
            let i = pre.instantiate_async(&mut store).await?;
            i.rollgate_plugin_verifier()
                .call_measure(&mut store, config, context)
                .await
        })?;
        let mut m = measured.map_err(|message| PluginError::Guest {
            plugin: self.inner.name.to_string(),
            message,
        })?;
        self.check_measurement(&mut m)?;
        Ok(m)
    }

    /// The host's checks on what a provider returned.
    fn check_measurement(&self, m: &mut Measurement) -> Result<(), PluginError> {
        let invalid = |problem: String| PluginError::InvalidResult {
            plugin: self.inner.name.to_string(),
            problem,
        };
        if m.details.trim().is_empty() {
            m.details = "{}".into();
        }
        match serde_json::from_str::<serde_json::Value>(&m.details) {
            Ok(v) if v.is_object() => {}
            Ok(_) => return Err(invalid("details must be a JSON object".into())),
            Err(e) => return Err(invalid(format!("details are not JSON: {e}"))),
        }
        if m.verdict == Verdict::Pass && m.value.is_some_and(f64::is_nan) {
            return Err(invalid(
                "verdict pass with a NaN value: a NaN cannot pass a check".into(),
            ));
        }
        Ok(())
    }

    /// Decide (failure policies only).
    pub async fn decide(&self, config: &str, input: &PolicyInput) -> Result<Decision, PluginError> {
        let Pre::Policy(pre) = &self.inner.pre else {
            return Err(self.wrong_kind(PluginKind::Policy));
        };
        let decided = run_call!(self, None, input.now_ms, |store| async {
            let i = pre.instantiate_async(&mut store).await?;
            i.rollgate_plugin_policy()
                .call_decide(&mut store, config, input)
                .await
        })?;
        decided.map_err(|message| PluginError::Guest {
            plugin: self.inner.name.to_string(),
            message,
        })
    }

    /// Instantiate and drop, calling nothing: for benchmarks of the per-call fixed cost.
    #[doc(hidden)]
    pub async fn instantiate_only(&self) -> Result<(), PluginError> {
        let _permit = self.permit().await?;
        let (mut store, output, _clock) = self.store(None, 0)?;
        let r = match &self.inner.pre {
            Pre::Provider(pre) => pre.instantiate_async(&mut store).await.map(drop),
            Pre::Policy(pre) => pre.instantiate_async(&mut store).await.map(drop),
        };
        r.map_err(|e| self.classify(e, &store, &output))
    }
}
