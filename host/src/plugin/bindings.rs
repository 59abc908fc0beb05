//! Host-side bindings of the contract, one module per supported minor: [`v0_2`] of
//! `wit/plugin.wit` (the current contract, `rollgate:plugin@0.2.0`) and [`v0_1`] of the
//! frozen `wit/v0.1/plugin.wit` (the previous minor, still loaded). Within a minor, one
//! module per world; the policy world reuses the provider world's shared interfaces, so
//! `types` and `log` exist once per minor.
//!
//! The host's own types ([`super::types`]) are the current minor's; `versions.rs` converts
//! the previous minor's to and from them, so the call path exists once.

/// The current contract, `rollgate:plugin@0.2.0` (`wit/plugin.wit`).
pub mod v0_2 {
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
}

/// The previous minor, `rollgate:plugin@0.1.0` (`wit/v0.1/plugin.wit`, frozen): a series
/// carries its samples as a list of records.
pub mod v0_1 {
    /// The `verification-provider` world.
    pub mod provider {
        wasmtime::component::bindgen!({
            world: "verification-provider",
            path: "../wit/v0.1",
            imports: { default: async | trappable },
            exports: { default: async },
        });
    }

    /// The `failure-policy` world.
    pub mod policy {
        wasmtime::component::bindgen!({
            world: "failure-policy",
            path: "../wit/v0.1",
            imports: { default: async | trappable },
            exports: { default: async },
            with: {
                "rollgate:plugin/types": super::provider::rollgate::plugin::types,
                "rollgate:plugin/log": super::provider::rollgate::plugin::log,
            },
        });
    }
}

pub use v0_2::{policy, provider};

/// The contract's package name, as it appears in export names.
pub const PACKAGE: &str = "rollgate:plugin";
/// The version of the current contract, which the SDK builds against.
pub const VERSION: &str = "0.2.0";
