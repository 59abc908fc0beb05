//! Everything that can go wrong with a plugin, each case named so that operators (and the
//! failure policy) can tell a plugin that looped from one that ran out of memory.

use std::path::PathBuf;
use std::time::Duration;

/// A plugin failed to load or to run. Every variant names the plugin.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// The plugin file could not be read.
    #[error("plugin {plugin:?}: cannot read {path}: {source}")]
    Read {
        /// Plugin name.
        plugin: String,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file's sha256 is not the pinned one.
    #[error(
        "plugin {plugin:?}: sha256 mismatch: the spec pins {expected} but the component is {actual}; \
         if the new file is trusted, update the pinned sha256"
    )]
    DigestMismatch {
        /// Plugin name.
        plugin: String,
        /// The pinned digest.
        expected: String,
        /// The digest of what was loaded.
        actual: String,
    },
    /// The component is larger than its limit.
    #[error(
        "plugin {plugin:?}: the component is {size} bytes, over the limit of {limit} bytes; \
         raise limits.maxComponentBytes if it is trusted"
    )]
    ComponentTooLarge {
        /// Plugin name.
        plugin: String,
        /// Its size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// Not a component: a core module, or not WebAssembly at all.
    #[error("plugin {plugin:?}: {what}")]
    NotAComponent {
        /// Plugin name.
        plugin: String,
        /// What it is instead, and what to do.
        what: String,
    },
    /// A component, but of neither rollgate world.
    #[error(
        "plugin {plugin:?}: implements neither rollgate world: it exports [{exports}]; a verification \
         provider exports rollgate:plugin/verifier@0.2.0 and a failure policy rollgate:plugin/policy@0.2.0 \
         (or @0.1.0, the previous contract)"
    )]
    UnknownWorld {
        /// Plugin name.
        plugin: String,
        /// What it exports, comma-separated.
        exports: String,
    },
    /// Built against a version of the contract this host does not support.
    #[error(
        "plugin {plugin:?}: exports {export}, a contract version this rollgate does not support \
         (it supports rollgate:plugin@0.2.x and 0.1.x); rebuild the plugin against this rollgate's SDK"
    )]
    UnsupportedVersion {
        /// Plugin name.
        plugin: String,
        /// The export with the unsupported version.
        export: String,
    },
    /// The component imports something the sandbox does not provide.
    #[error("plugin {plugin:?}: imports {import}, which rollgate does not provide: {why}")]
    ForbiddenImport {
        /// Plugin name.
        plugin: String,
        /// The import.
        import: String,
        /// Why, and what to do instead.
        why: String,
    },
    /// wasmtime refused the component (invalid, or its imports do not type-check).
    #[error("plugin {plugin:?}: invalid component: {message}")]
    Invalid {
        /// Plugin name.
        plugin: String,
        /// wasmtime's explanation.
        message: String,
    },
    /// Compiling took longer than the host allows.
    #[error(
        "plugin {plugin:?}: compile timeout: compiling the component took longer than {limit:?}; \
         is it unusually large or hostile?"
    )]
    CompileTimeout {
        /// Plugin name.
        plugin: String,
        /// The limit.
        limit: Duration,
    },
    /// A call that the plugin's world does not have (measure on a policy, decide on a provider).
    #[error("plugin {plugin:?} is a {actual}, not a {wanted}")]
    WrongKind {
        /// Plugin name.
        plugin: String,
        /// What it is.
        actual: &'static str,
        /// What the caller needed.
        wanted: &'static str,
    },
    /// The call ran longer than its wall-time limit.
    #[error(
        "plugin {plugin:?}: timeout: {what} exceeded the limit of {limit:?}; the call was stopped \
         (raise limits.{field} if the plugin is legitimately slow)"
    )]
    Timeout {
        /// Plugin name.
        plugin: String,
        /// Which budget: the plugin's own time, or time waiting on metric queries.
        what: &'static str,
        /// The limit's field name.
        field: &'static str,
        /// The limit.
        limit: Duration,
    },
    /// The call used up its fuel (instruction budget).
    #[error("plugin {plugin:?}: out of fuel: used its budget of {fuel} units (limits.fuel)")]
    OutOfFuel {
        /// Plugin name.
        plugin: String,
        /// The budget.
        fuel: u64,
    },
    /// The plugin tried to grow its memory beyond the limit.
    #[error(
        "plugin {plugin:?}: memory limit: tried to grow linear memory to {requested} bytes, over the \
         limit of {limit} bytes (limits.memoryBytes)"
    )]
    MemoryLimit {
        /// Plugin name.
        plugin: String,
        /// The limit.
        limit: u64,
        /// What it asked for.
        requested: u64,
    },
    /// The plugin recursed past the wasm stack limit.
    #[error(
        "plugin {plugin:?}: stack overflow: the call stack was exhausted (infinite recursion?)"
    )]
    StackOverflow {
        /// Plugin name.
        plugin: String,
    },
    /// The plugin tried to hand more data to the host than allowed.
    #[error(
        "plugin {plugin:?}: too large: tried to pass more than {limit} bytes to the host in one call \
         (limits.maxResultBytes)"
    )]
    TooLarge {
        /// Plugin name.
        plugin: String,
        /// The limit.
        limit: usize,
    },
    /// The plugin trapped (a panic in Rust becomes a trap).
    #[error("plugin {plugin:?}: trap: {trap}{}", stderr_suffix(.stderr))]
    Trap {
        /// Plugin name.
        plugin: String,
        /// wasmtime's description of the trap.
        trap: String,
        /// The end of what the plugin wrote to stderr (a Rust panic message lands here).
        stderr: String,
    },
    /// The plugin called `exit`.
    #[error("plugin {plugin:?}: exited with status {code} instead of returning")]
    Exit {
        /// Plugin name.
        plugin: String,
        /// The status.
        code: i32,
    },
    /// The plugin returned an error of its own (its `err` result).
    #[error("plugin {plugin:?}: {message}")]
    Guest {
        /// Plugin name.
        plugin: String,
        /// What the plugin said.
        message: String,
    },
    /// The plugin returned something that breaks the contract.
    #[error("plugin {plugin:?}: invalid result: {problem}")]
    InvalidResult {
        /// Plugin name.
        plugin: String,
        /// What is wrong.
        problem: String,
    },
    /// Pulling the component from its OCI registry failed, or what was pulled is not to be
    /// trusted (a digest or signature that does not check, the wrong media type).
    #[error("plugin {plugin:?}: {}: {reference}: {message}", .failure.kind())]
    Oci {
        /// Plugin name.
        plugin: String,
        /// The `oci://` reference.
        reference: String,
        /// Which failure (its name is the error's kind).
        failure: super::oci::OciFailure,
        /// What happened and what to do.
        message: String,
    },
    /// Something failed in the host while running the plugin.
    #[error("plugin {plugin:?}: host error: {message}")]
    Host {
        /// Plugin name.
        plugin: String,
        /// What failed.
        message: String,
    },
}

fn stderr_suffix(stderr: &str) -> String {
    let s = stderr.trim();
    if s.is_empty() {
        String::new()
    } else {
        format!("; plugin stderr: {s}")
    }
}

impl PluginError {
    /// A stable short name for the kind of failure (`timeout`, `memory-limit`, ...), for
    /// metrics, JSON output and the failure policy.
    pub fn kind(&self) -> &'static str {
        match self {
            PluginError::Read { .. } => "read",
            PluginError::DigestMismatch { .. } => "digest-mismatch",
            PluginError::ComponentTooLarge { .. } => "component-too-large",
            PluginError::NotAComponent { .. } => "not-a-component",
            PluginError::UnknownWorld { .. } => "unknown-world",
            PluginError::UnsupportedVersion { .. } => "unsupported-version",
            PluginError::ForbiddenImport { .. } => "forbidden-import",
            PluginError::Invalid { .. } => "invalid",
            PluginError::CompileTimeout { .. } => "compile-timeout",
            PluginError::WrongKind { .. } => "wrong-kind",
            PluginError::Timeout { .. } => "timeout",
            PluginError::OutOfFuel { .. } => "out-of-fuel",
            PluginError::MemoryLimit { .. } => "memory-limit",
            PluginError::StackOverflow { .. } => "stack-overflow",
            PluginError::TooLarge { .. } => "too-large",
            PluginError::Trap { .. } => "trap",
            PluginError::Exit { .. } => "exit",
            PluginError::Guest { .. } => "guest-error",
            PluginError::InvalidResult { .. } => "invalid-result",
            PluginError::Host { .. } => "host-error",
            PluginError::Oci { failure, .. } => failure.kind(),
        }
    }

    /// Whether the error happened while loading (configuration problem) rather than calling.
    pub fn is_load_error(&self) -> bool {
        matches!(
            self,
            PluginError::Read { .. }
                | PluginError::DigestMismatch { .. }
                | PluginError::ComponentTooLarge { .. }
                | PluginError::NotAComponent { .. }
                | PluginError::UnknownWorld { .. }
                | PluginError::UnsupportedVersion { .. }
                | PluginError::ForbiddenImport { .. }
                | PluginError::Invalid { .. }
                | PluginError::CompileTimeout { .. }
                | PluginError::Oci { .. }
        )
    }
}
