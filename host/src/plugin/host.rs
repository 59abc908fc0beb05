//! Engine setup: the wasmtime `Config` and `Engine` (epoch interruption, fuel metering,
//! the pooling allocator and its slot sizes), the linkers of both worlds with the WASI
//! interfaces plugins may use, and the [`PluginHost`] that owns them with the epoch ticker.

use super::bindings::{v0_1, v0_2};
use super::sandbox::StoreData;
use super::{ComponentCache, HostConfig, PluginError};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use wasmtime::component::{HasData, HasSelf, Linker, ResourceTable};
use wasmtime::{Config, Engine};

/// One engine with its linkers. Linkers are built once: building them per call is slow and
/// cloning them has been a source of wasmtime bugs.
pub(super) struct EngineSet {
    pub(super) engine: Engine,
    pub(super) provider: Linker<StoreData>,
    pub(super) policy: Linker<StoreData>,
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
pub(super) const POOL_MAX_MEMORIES_PER_COMPONENT: u32 = 16;
pub(super) const POOL_MAX_TABLES_PER_COMPONENT: u32 = 64;
pub(super) const POOL_MAX_CORE_INSTANCES_PER_COMPONENT: u32 = 64;
/// Bytes of a pooled linear memory kept resident (and reset in place) between instances.
const POOL_MEMORY_KEEP_RESIDENT: usize = 1 << 20;
/// Bytes of a pooled table kept resident (and reset in place) between instances.
const POOL_TABLE_KEEP_RESIDENT: usize = 64 << 10;

impl EngineSet {
    fn new(fuel: bool, pool_slots: Option<u32>) -> wasmtime::Result<Self> {
        let mut config = Config::new();
        config.epoch_interruption(true);
        config.consume_fuel(fuel);
        config.wasm_component_model(true);
        // For `perf`: name the plugins' compiled functions in /tmp/perf-<pid>.map.
        if std::env::var_os("ROLLGATE_WASM_PERFMAP").is_some() {
            config.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
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
            // Reset a slot's memory and tables in place when the next instance takes it
            // (the pages a call dirtied, found with Linux's PAGEMAP_SCAN, are copied back
            // to the initial image or zeroed), instead of madvise-ing them away and
            // faulting them in again on the next call: page faults, madvise and mprotect
            // were a third of a `threshold` call. Isolation is unchanged — every instance
            // still starts from the component's initial memory — and each warm slot keeps
            // at most this much resident.
            pool.linear_memory_keep_resident(POOL_MEMORY_KEEP_RESIDENT)
                .table_keep_resident(POOL_TABLE_KEEP_RESIDENT)
                .pagemap_scan(wasmtime::Enabled::Auto);
            config.allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(pool));
        }
        let engine = Engine::new(&config)?;
        let mut provider = Linker::new(&engine);
        add_wasi(&mut provider)?;
        // Linked for every provider; only plugins allowed hosts may import it (see
        // `check_import`), and the hooks deny every host not listed.
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut provider)?;
        // Both contract minors' imports: their names differ by version (`…/metrics@0.2.0`,
        // `…/metrics@0.1.0`), and a component links against its own.
        v0_2::provider::VerificationProvider::add_to_linker::<_, HasSelf<StoreData>>(
            &mut provider,
            |s| s,
        )?;
        v0_1::provider::VerificationProvider::add_to_linker::<_, HasSelf<StoreData>>(
            &mut provider,
            |s| s,
        )?;
        let mut policy = Linker::new(&engine);
        add_wasi(&mut policy)?;
        v0_2::policy::FailurePolicy::add_to_linker::<_, HasSelf<StoreData>>(&mut policy, |s| s)?;
        v0_1::policy::FailurePolicy::add_to_linker::<_, HasSelf<StoreData>>(&mut policy, |s| s)?;
        Ok(EngineSet {
            engine,
            provider,
            policy,
        })
    }
}

pub(super) struct HostInner {
    plain: EngineSet,
    /// Pool slots per engine, when pooling is on.
    pub(super) pool_slots: Option<u32>,
    /// Bounds concurrent calls (and so pool slots in use).
    pub(super) permits: Arc<tokio::sync::Semaphore>,
    /// Built the first time a plugin asks for fuel: metering costs every plugin on the
    /// engine up to 2× on tight loops, so plugins without a fuel limit never pay for it.
    metered: OnceLock<EngineSet>,
    pub(super) cache: ComponentCache,
    pub(super) compile_timeout: Duration,
    /// Pulled OCI blobs, in `oci/` under the compile cache.
    pub(super) blobs: super::oci::BlobCache,
    pub(super) require_signed: bool,
}

/// Loads plugins. Cheap to clone; share one per process.
#[derive(Clone)]
pub struct PluginHost {
    pub(super) inner: Arc<HostInner>,
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
            blobs: super::oci::BlobCache::at(config.cache.dir().map(|d| d.join("oci"))),
            require_signed: config.require_signed_plugins,
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

    pub(super) fn engines(&self, fuel: bool) -> Result<&EngineSet, PluginError> {
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
}
