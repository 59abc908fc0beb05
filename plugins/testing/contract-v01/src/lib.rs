//! Test-only component of the previous contract minor, `rollgate:plugin@0.1.0`: its own
//! bindings of the frozen `wit/v0.1/plugin.wit` (not the SDK, which follows the current
//! minor), so it is what a plugin built with the 0.1 SDK looks like to the host.
//!
//! Configuration: `{"backend": "...", "query": "...", "range": {"start-ms", "end-ms",
//! "step-ms"}?, "echo": bool?}`. `measure` runs the query and returns the mean of every
//! finite sample as its value (pass when there is one, no-data otherwise), and, unless
//! `echo` is false, every sample it received — labels, times and values (as `f64` bit
//! patterns), in order — in its details, so a test can check they crossed the 0.1 boundary
//! intact. `contract-v02` is the same provider on the current minor (`src/provider.rs` is
//! shared), for the bench's 0.1-vs-0.2 figure.

wit_bindgen::generate!({ world: "verification-provider", path: "../../../wit/v0.1" });

mod provider;

/// Which minor this build speaks, as the details say it.
const CONTRACT: &str = "0.1";

/// A series' samples as (time, value): 0.1 has them as records.
fn samples(s: &rollgate::plugin::types::Series) -> impl Iterator<Item = (i64, f64)> + '_ {
    s.samples.iter().map(|x| (x.time_ms, x.value))
}

use provider::Provider;
export!(Provider);
