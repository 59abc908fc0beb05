//! The sandbox limits of one plugin.

use std::time::Duration;

/// Limits applied to every call of a plugin. The defaults suit Rust plugins; plugins built
/// with JavaScript or Python toolchains need more memory and larger components.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Maximum linear memory, in bytes (default 64 MiB).
    pub memory_bytes: u64,
    /// Maximum wall time the plugin itself may take per call, not counting time spent
    /// waiting for metric queries (default 2 s).
    pub timeout: Duration,
    /// Maximum total time per call spent waiting for metric queries (default 30 s).
    pub query_timeout: Duration,
    /// Maximum bytes the plugin may hand to the host in one host call or result
    /// (default 1 MiB).
    pub max_result_bytes: usize,
    /// Optional instruction budget per call (fuel). Off by default: metering costs up to 2×
    /// on tight loops, and the wall-time limit already stops runaway plugins.
    pub fuel: Option<u64>,
    /// Maximum size of the component file, in bytes (default 8 MiB).
    pub max_component_bytes: usize,
    /// Maximum core instances, tables and memories a component may create.
    pub max_instances: usize,
    /// See `max_instances`.
    pub max_tables: usize,
    /// See `max_instances`.
    pub max_memories: usize,
    /// Maximum elements of any table.
    pub max_table_elements: usize,
    /// Maximum live resource handles.
    pub max_handles: usize,
}

/// The largest value each limit an operator sets may take. A limit is a guard, not a knob
/// to switch it off: past these no plugin is realistic, and every sum the host makes of a
/// limit (a read of `max_component_bytes + 1`, a deadline `now + timeout`) stays far inside
/// its integer type.
pub mod ceiling {
    /// A component file: 1 GiB.
    pub const COMPONENT_BYTES: u64 = 1 << 30;
    /// Linear memory: 4 GiB, all a 32-bit memory can address.
    pub const MEMORY_BYTES: u64 = 4 << 30;
    /// One result or host call: 256 MiB.
    pub const RESULT_BYTES: u64 = 256 << 20;
    /// A call's wall time, and its time waiting for queries: 1 hour.
    pub const TIMEOUT_MS: u64 = 60 * 60 * 1000;

    /// `value` if it is at most `max`, else what to write instead, for a message.
    pub fn check(value: u64, max: u64, unit: &str) -> Result<u64, String> {
        if value <= max {
            Ok(value)
        } else {
            Err(format!(
                "{value} {unit} is above the ceiling of {max} {unit}; write at most {max}"
            ))
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_bytes: 64 << 20,
            timeout: Duration::from_secs(2),
            query_timeout: Duration::from_secs(30),
            max_result_bytes: 1 << 20,
            fuel: None,
            max_component_bytes: 8 << 20,
            max_instances: 64,
            max_tables: 64,
            max_memories: 16,
            max_table_elements: 100_000,
            max_handles: 1_000,
        }
    }
}
