//! On-disk cache of compiled components.
//!
//! Compiling a component with Cranelift takes hundreds of milliseconds to seconds; loading
//! the serialised result takes well under a millisecond. The key is the component's sha256,
//! the engine's compatibility hash (compiler settings, features, wasmtime version) and
//! rollgate's own version, so an artifact is only ever loaded by an engine that could have
//! produced it.
//!
//! Deserialising is `unsafe` in wasmtime: the bytes are trusted to be what wasmtime wrote.
//! So the cache only uses a directory that belongs to the current user and that nobody else
//! can write to, writes files atomically (temp file + rename), and treats every problem —
//! unreadable, stale, corrupt — as a miss that recompiles and rewrites, never as an error.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use wasmtime::Engine;
use wasmtime::component::Component;

/// Where compiled components are kept.
#[derive(Debug, Clone)]
pub struct ComponentCache {
    dir: Option<PathBuf>,
}

/// FNV-1a, stable across processes and Rust versions (unlike `DefaultHasher`).
struct Fnv(u64);

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x100_0000_01b3);
        }
    }
}

/// What a load did, for benchmarks and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheOutcome {
    /// Loaded a compiled artifact from disk.
    Hit,
    /// Compiled (and stored, if the cache is enabled).
    Compiled,
}

impl ComponentCache {
    /// No caching: every load compiles.
    pub fn disabled() -> Self {
        ComponentCache { dir: None }
    }

    /// Cache in `dir` (created with mode 0700). If the directory is unsafe (another owner,
    /// writable by others), caching is turned off with a warning rather than trusting it.
    pub fn at(dir: impl Into<PathBuf>) -> Self {
        let dir = dir.into();
        match prepare(&dir) {
            Ok(()) => ComponentCache { dir: Some(dir) },
            Err(why) => {
                tracing::warn!(dir = %dir.display(), "component cache disabled: {why}");
                ComponentCache { dir: None }
            }
        }
    }

    /// The default location: `$ROLLGATE_CACHE_DIR`, else `$XDG_CACHE_HOME/rollgate/components`,
    /// else `~/.cache/rollgate/components`; disabled when none can be found.
    pub fn default_location() -> Self {
        let dir = std::env::var_os("ROLLGATE_CACHE_DIR")
            .map(PathBuf::from)
            .or_else(|| {
                std::env::var_os("XDG_CACHE_HOME")
                    .map(|d| PathBuf::from(d).join("rollgate/components"))
            })
            .or_else(|| {
                std::env::var_os("HOME")
                    .map(|h| PathBuf::from(h).join(".cache/rollgate/components"))
            });
        match dir {
            Some(dir) => ComponentCache::at(dir),
            None => ComponentCache::disabled(),
        }
    }

    /// The directory, if caching is on.
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    fn path(&self, engine: &Engine, sha256: &str) -> Option<PathBuf> {
        let dir = self.dir.as_ref()?;
        let mut h = Fnv(0xcbf2_9ce4_8422_2325);
        engine.precompile_compatibility_hash().hash(&mut h);
        env!("CARGO_PKG_VERSION").hash(&mut h);
        Some(dir.join(format!("{sha256}-{:016x}.cwasm", h.finish())))
    }

    /// The compiled form of the component whose sha256 is `sha256`, if cached and usable.
    pub fn lookup(&self, engine: &Engine, sha256: &str) -> Option<Component> {
        let path = self.path(engine, sha256)?;
        // A regular file of a sane size only: anything else is a cache miss.
        let cap = crate::files::Cap {
            bytes: 1 << 30,
            what: "a compiled component",
            advice: "remove the cache folder",
        };
        let artifact = crate::files::read_bytes(&path, &cap).ok()?;
        // Read into memory rather than mmap (`deserialize_file`): a mapped file that
        // something truncates under us would crash the process with SIGBUS.
        //
        // SAFETY: the file is in a directory only this user can write, named by the
        // content hash and the engine's compatibility hash, and was written by `compile`
        // below from `Component::serialize`. wasmtime still checks the header and the
        // engine configuration and returns an error on mismatch.
        match unsafe { Component::deserialize(engine, &artifact) } {
            Ok(component) => Some(component),
            Err(e) => {
                tracing::debug!(path = %path.display(), "cached component unusable, recompiling: {e}");
                None
            }
        }
    }

    /// Compile `bytes` (whose sha256 is `sha256`) and store the result, if caching is on.
    pub fn compile(
        &self,
        engine: &Engine,
        sha256: &str,
        bytes: &[u8],
    ) -> wasmtime::Result<Component> {
        let component = Component::from_binary(engine, bytes)?;
        if let Some(path) = self.path(engine, sha256)
            && let Err(e) = store(&path, &component)
        {
            tracing::warn!(path = %path.display(), "could not write the component cache: {e}");
        }
        Ok(component)
    }
}

fn prepare(dir: &Path) -> Result<(), String> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| format!("cannot create it: {e}"))?;
    let meta = std::fs::metadata(dir).map_err(|e| format!("cannot stat it: {e}"))?;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let uid = unsafe { libc_geteuid() };
    if meta.uid() != uid {
        return Err(format!(
            "it belongs to uid {}, not to this user ({uid})",
            meta.uid()
        ));
    }
    if meta.permissions().mode() & 0o022 != 0 {
        return Err("it is writable by other users".into());
    }
    Ok(())
}

unsafe extern "C" {
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
}

fn store(path: &Path, component: &Component) -> std::io::Result<()> {
    let bytes = component
        .serialize()
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    crate::files::write_atomic(path, &bytes)
}
