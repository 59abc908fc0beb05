//! Test-only: `contract-v01`'s provider (the same `provider.rs`) built against the current
//! contract, `rollgate:plugin@0.2.0`, where a series carries its samples as two columns.
//! The plugin bench times the two on the same query, so the boundary's difference between
//! the minors is a printed figure.

wit_bindgen::generate!({ world: "verification-provider", path: "../../../wit" });

#[path = "../../contract-v01/src/provider.rs"]
mod provider;

/// Which minor this build speaks, as the details say it.
const CONTRACT: &str = "0.2";

/// A series' samples as (time, value): 0.2 has them as two columns.
fn samples(s: &rollgate::plugin::types::Series) -> impl Iterator<Item = (i64, f64)> + '_ {
    s.times_ms.iter().copied().zip(s.values.iter().copied())
}

use provider::Provider;
export!(Provider);
