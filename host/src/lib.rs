//! rollgate: a progressive-delivery runner whose verification providers and failure
//! policies are sandboxed WebAssembly components.
//!
//! The modules follow the data flow of `../shared/DESIGN.md`: spec → engine →
//! (verify ↔ plugin ↔ metrics) → decision → target + store. This crate so far holds the
//! plugin host ([`plugin`]) and the metrics interface it calls ([`metrics`]).

pub mod cli;
pub mod metrics;
pub mod plugin;
pub mod spec;
pub mod store;
pub mod verify;
