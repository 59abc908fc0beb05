//! rollgate: a progressive-delivery runner whose verification providers and failure
//! policies are sandboxed WebAssembly components.
//!
//! The modules follow the data flow of `docs/architecture.md`: spec → engine →
//! (verify ↔ plugin ↔ metrics) → decision → target + store: [`spec`] loads and checks the
//! YAML, [`engine`] drives each rollout on a [`engine::clock::Clock`], [`verify`] counts
//! verdicts, [`plugin`] runs the sandboxed components over [`metrics`], [`deliver`] applies
//! steps and [`store`] keeps checkpoints and the audit log; [`cli`] is the command line.
//! Server mode: [`server`] runs every rollout of a folder at once, [`api`] is its HTTP edge,
//! [`telemetry`] its `/metrics`, [`ui`] the web view (of a server, or of a store). [`files`] reads every file an operator hands over, by one
//! set of rules (regular files only, size caps, dot-entries skipped).

pub mod api;
pub mod cli;
pub mod deliver;
pub mod engine;
pub mod files;
pub mod heap;
pub mod metrics;
pub mod plugin;
pub mod server;
pub mod spec;
pub mod store;
pub mod telemetry;
pub mod ui;
pub mod verify;
