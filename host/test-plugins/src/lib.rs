//! The plugin components rollgate's tests load from disk, by path: the test-only plugins
//! (`HOSTILE`, `HOSTILE_SOCKET`, `UNKNOWN_WORLD`, `ERROR_RATIO`, `CONTRACT_V01`, `CONTRACT_V02`), built by this crate's
//! build script, and the shipped ones (`THRESHOLD`, …), built by rollgate's.
//!
//! A dev-dependency of `rollgate` only: the shipped library carries no test plugin.

include!(concat!(env!("OUT_DIR"), "/paths.rs"));
