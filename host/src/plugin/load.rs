//! Loading a component: reading it (bounded), its size and pinned digest, the header,
//! compiling it under a time limit (or taking it from the cache), which world it
//! implements, the imports check, and pre-instantiation into a [`Plugin`].

use super::bindings::{v0_1, v0_2};
use super::call::{Plugin, PluginInner, Pre};
use super::host::{
    POOL_MAX_CORE_INSTANCES_PER_COMPONENT, POOL_MAX_MEMORIES_PER_COMPONENT,
    POOL_MAX_TABLES_PER_COMPONENT, PluginHost,
};
use super::logs::LogSink;
use super::versions::{Contract, PolicyPre, ProviderPre};
use super::{BUILTIN, CacheOutcome, Limits, LoadOptions, PluginError, PluginKind, PluginSource};
use sha2::{Digest, Sha256};
use std::borrow::Cow;
use std::path::PathBuf;
use std::sync::Arc;
use wasmtime::Engine;

impl PluginHost {
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
        let (source, options) = match source {
            PluginSource::Oci(oci) => self.pull(&oci, options).await?,
            other => (other, options),
        };
        tokio::task::spawn_blocking(move || host.load(&source, &options))
            .await
            .map_err(|e| PluginError::Host {
                plugin: name,
                message: format!("the loading task failed: {e}"),
            })?
    }

    /// Pull an OCI plugin (or take it from the blob cache): its bytes, pinned to the layer
    /// digest, as the source to load.
    pub async fn pull(
        &self,
        oci: &super::oci::OciSource,
        mut options: LoadOptions,
    ) -> Result<(PluginSource, LoadOptions), PluginError> {
        let plugin = options.name.clone().unwrap_or_else(|| {
            oci.reference
                .repository
                .rsplit('/')
                .next()
                .unwrap_or("plugin")
                .to_string()
        });
        let pulled = super::oci::pull(
            oci,
            &self.inner.blobs,
            options.limits.max_component_bytes,
            self.inner.require_signed,
        )
        .await
        .map_err(|e| PluginError::Oci {
            plugin: plugin.clone(),
            reference: oci.reference.to_string(),
            failure: e.failure,
            message: e.message,
        })?;
        tracing::debug!(
            plugin,
            reference = %oci.reference,
            from_cache = pulled.from_cache,
            "plugin pulled"
        );
        options.sha256 = Some(pulled.layer_digest);
        options.name = Some(plugin);
        Ok((PluginSource::Bytes(Cow::Owned(pulled.bytes)), options))
    }

    /// [`PluginHost::load`], also saying whether the compiled form came from the cache.
    pub fn load_traced(
        &self,
        source: &PluginSource,
        options: &LoadOptions,
    ) -> Result<(Plugin, CacheOutcome), PluginError> {
        if let PluginSource::Oci(oci) = source {
            // Pulling is async: on a thread of its own with its own runtime, so this works
            // from any context (a blocking thread, a runtime worker, no runtime at all).
            let host = self.clone();
            let oci = oci.clone();
            let options = options.clone();
            let (source, options) = std::thread::scope(|s| {
                s.spawn(move || {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .map_err(|e| PluginError::Host {
                            plugin: options.name.clone().unwrap_or_default(),
                            message: format!("cannot start a runtime to pull with: {e}"),
                        })?;
                    runtime.block_on(host.pull(&oci, options))
                })
                .join()
                .unwrap_or_else(|_| {
                    Err(PluginError::Host {
                        plugin: String::new(),
                        message: "the pulling thread panicked".into(),
                    })
                })
            })?;
            return self.load_traced(&source, &options);
        }
        let (default_name, bytes) = source_bytes(source, options)?;
        let name: Arc<str> = options.name.clone().unwrap_or(default_name).into();
        let plugin = name.to_string();
        let limits = options.limits.clone();
        let sha256 = check_bytes(&plugin, &bytes, &limits, options.sha256.as_deref())?;
        self.check_pool_limits(&plugin, &limits)?;
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
        let (kind, contract) = world_of(&plugin, &exports)?;
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
                Pre::Provider(match contract {
                    Contract::V0_2 => ProviderPre::V0_2(
                        v0_2::provider::VerificationProviderPre::new(pre).map_err(invalid)?,
                    ),
                    Contract::V0_1 => ProviderPre::V0_1(
                        v0_1::provider::VerificationProviderPre::new(pre).map_err(invalid)?,
                    ),
                })
            }
            PluginKind::Policy => {
                let pre = set.policy.instantiate_pre(&component).map_err(invalid)?;
                Pre::Policy(match contract {
                    Contract::V0_2 => {
                        PolicyPre::V0_2(v0_2::policy::FailurePolicyPre::new(pre).map_err(invalid)?)
                    }
                    Contract::V0_1 => {
                        PolicyPre::V0_1(v0_1::policy::FailurePolicyPre::new(pre).map_err(invalid)?)
                    }
                })
            }
        };
        tracing::debug!(
            plugin = &*name,
            sha256,
            ?outcome,
            world = kind.world(),
            contract = contract.minor(),
            "plugin loaded"
        );
        Ok((
            Plugin {
                inner: Arc::new(PluginInner {
                    logs: Arc::new(LogSink::new(name.clone())),
                    name,
                    sha256,
                    kind,
                    contract,
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

    /// Refuse limits the pool's slots are not sized for.
    fn check_pool_limits(&self, plugin: &str, limits: &Limits) -> Result<(), PluginError> {
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
                    plugin: plugin.to_string(),
                    message: format!(
                        "limits.{field} is {asked}, above the host's maximum of {max}"
                    ),
                });
            }
        }
        Ok(())
    }
}

/// The component's bytes and the name it goes by unless the operator named it.
fn source_bytes(
    source: &PluginSource,
    options: &LoadOptions,
) -> Result<(String, Cow<'static, [u8]>), PluginError> {
    Ok(match source {
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
        PluginSource::Oci(oci) => {
            return Err(PluginError::Host {
                plugin: options.name.clone().unwrap_or_default(),
                message: format!("{} must be pulled before it is read", oci.reference),
            });
        }
    })
}

/// The checks on the bytes before compiling: size, the pinned digest, the header. The
/// component's sha256 (hex).
fn check_bytes(
    plugin: &str,
    bytes: &[u8],
    limits: &Limits,
    pinned: Option<&str>,
) -> Result<String, PluginError> {
    if bytes.len() > limits.max_component_bytes {
        return Err(PluginError::ComponentTooLarge {
            plugin: plugin.to_string(),
            size: bytes.len(),
            limit: limits.max_component_bytes,
        });
    }
    let sha256 = hex::encode(Sha256::digest(bytes));
    if let Some(pinned) = pinned {
        let expected = pinned
            .trim()
            .strip_prefix("sha256:")
            .unwrap_or(pinned.trim())
            .to_ascii_lowercase();
        if expected != sha256 {
            return Err(PluginError::DigestMismatch {
                plugin: plugin.to_string(),
                expected,
                actual: sha256,
            });
        }
    }
    check_header(plugin, bytes)?;
    Ok(sha256)
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
    use crate::files::{Cap, ReadError};
    let cap = Cap {
        // Limits are capped where they are read, but this read must not trust that.
        bytes: u64::try_from(limit).unwrap_or(u64::MAX),
        what: "a plugin component",
        advice: "raise limits.maxComponentBytes if the plugin is trusted",
    };
    crate::files::read_bytes(path, &cap).map_err(|e| match e {
        ReadError::TooLarge(_) => PluginError::ComponentTooLarge {
            plugin: plugin.to_string(),
            size: std::fs::metadata(path)
                .ok()
                .and_then(|m| usize::try_from(m.len()).ok())
                .unwrap_or(limit.saturating_add(1)),
            limit,
        },
        ReadError::Io(source) => PluginError::Read {
            plugin: plugin.to_string(),
            path: path.to_path_buf(),
            source,
        },
        other => PluginError::Read {
            plugin: plugin.to_string(),
            path: path.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidInput, other.to_string()),
        },
    })
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

/// Which world the exports implement, and which contract minor: the version of the
/// `rollgate:plugin/verifier` or `/policy` export (a host supports the current minor and the
/// previous one).
fn world_of(plugin: &str, exports: &[String]) -> Result<(PluginKind, Contract), PluginError> {
    let mut found: Option<(PluginKind, Contract)> = None;
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
        let Some(contract) = Contract::of_version(version) else {
            return Err(PluginError::UnsupportedVersion {
                plugin: plugin.to_string(),
                export: export.clone(),
            });
        };
        if found.is_some_and(|(k, _)| k != this) {
            return Err(PluginError::Invalid {
                plugin: plugin.to_string(),
                message: "exports both rollgate:plugin/verifier and rollgate:plugin/policy; a plugin is one or the other".into(),
            });
        }
        found = Some((this, contract));
    }
    found.ok_or_else(|| PluginError::UnknownWorld {
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
