//! Host-side bindings of `wit/plugin.wit`, one module per world. The policy world reuses the
//! provider world's shared interfaces, so `types` and `log` exist once.

/// The `verification-provider` world.
pub mod provider {
    wasmtime::component::bindgen!({
        world: "verification-provider",
        path: "../wit",
        imports: { default: async | trappable },
        exports: { default: async },
    });
}

/// The `failure-policy` world.
pub mod policy {
    wasmtime::component::bindgen!({
        world: "failure-policy",
        path: "../wit",
        imports: { default: async | trappable },
        exports: { default: async },
        with: {
            "rollgate:plugin/types": super::provider::rollgate::plugin::types,
            "rollgate:plugin/log": super::provider::rollgate::plugin::log,
        },
    });
}

/// The contract's package name and version, as they appear in export names.
pub const PACKAGE: &str = "rollgate:plugin";
/// The version of the contract this host implements.
pub const VERSION: &str = "0.1.0";
