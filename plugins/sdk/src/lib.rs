//! The rollgate plugin SDK.
//!
//! A plugin author writes a configuration type (serde + schemars), a struct, and one method;
//! this crate hides the WIT bindings, the JSON parsing of the operator's configuration, the
//! JSON Schema export and the error plumbing.
//!
//! ```
//! use rollgate_plugin::prelude::*;
//!
//! /// Passes while the error ratio stays below `max`.
//! #[derive(Deserialize, JsonSchema)]
//! struct Config { backend: String, query: String, max: f64 }
//!
//! struct ErrorRatio;
//!
//! impl Verifier for ErrorRatio {
//!     type Config = Config;
//!     fn measure(config: Config, ctx: &Context) -> Result<Measurement, String> {
//!         let series = ctx.query(&config.backend, &config.query, Window::Now)?;
//!         let Some(value) = series.iter().flat_map(|s| s.values()).last() else {
//!             return Ok(Measurement::no_data("the query returned nothing"));
//!         };
//!         Ok(Measurement::judge(value < config.max, value, format!("{value} < {}", config.max)))
//!     }
//! }
//!
//! rollgate_plugin::export_verifier!(ErrorRatio);
//! ```
//!
//! What this crate deliberately does not do: keep state between calls (every call runs in a
//! fresh instance), or give access to anything the host did not bind to the metric.

#![warn(missing_docs)]

/// Durations (`30s`, `5m`, `1h30m`), parsed as the host parses them.
pub use rollgate_duration as duration;

/// The generated WIT bindings. Plugin code should not need them directly; they are public
/// for the export macros and for authors who want the raw contract.
#[allow(missing_docs, clippy::all)]
pub mod bindings {
    /// Bindings of the `verification-provider` world.
    pub mod provider {
        wit_bindgen::generate!({
            world: "verification-provider",
            path: "../../wit",
            pub_export_macro: true,
            export_macro_name: "__export_provider",
            default_bindings_module: "::rollgate_plugin::bindings::provider",
        });
    }
    /// Bindings of the `failure-policy` world; shares its types with `provider`.
    pub mod policy {
        wit_bindgen::generate!({
            world: "failure-policy",
            path: "../../wit",
            pub_export_macro: true,
            export_macro_name: "__export_policy",
            default_bindings_module: "::rollgate_plugin::bindings::policy",
            with: {
                "rollgate:plugin/types@0.2.0": crate::bindings::provider::rollgate::plugin::types,
                "rollgate:plugin/log@0.2.0": crate::bindings::provider::rollgate::plugin::log,
            },
        });
    }
}

mod config;
mod context;
mod measurement;
mod sides;

pub use config::{ConfigError, config_schema, parse_config};
pub use context::{Context, Metrics, QueryError, QueryErrorKind, Window, log};
pub use measurement::{Limit, MeasurementExt};
pub use sides::Sides;

pub use bindings::policy::exports::rollgate::plugin::policy::{
    Decision, MetricStatus, MetricSummary, Pause, PauseRecord, PolicyInput,
};
pub use bindings::provider::rollgate::plugin::log::Level;
pub use bindings::provider::rollgate::plugin::metrics::TimeRange;
pub use bindings::provider::rollgate::plugin::types::{
    Arg, Label, Measurement, PluginInfo, RolloutContext, Series, Verdict,
};

/// One point of a [`Series`]. The contract (`rollgate:plugin@0.2`) carries a series' samples
/// as two columns, `times_ms` and `values`, which cross the sandbox boundary as blocks;
/// this is the row view of one of them ([`SeriesExt::samples`], [`Series::from_samples`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// Milliseconds since the Unix epoch (UTC).
    pub time_ms: i64,
    /// The value; NaN and infinities are possible.
    pub value: f64,
}

impl Series {
    /// A series from its labels and samples (oldest first): for tests and native callers.
    pub fn from_samples(labels: Vec<Label>, samples: impl IntoIterator<Item = Sample>) -> Series {
        let (times_ms, values) = samples.into_iter().map(|s| (s.time_ms, s.value)).unzip();
        Series {
            labels,
            times_ms,
            values,
        }
    }
}

/// Re-exports for the derive macros a configuration type needs.
pub use schemars;
pub use serde;
pub use serde_json;

/// Everything a plugin usually needs, in one `use`.
pub mod prelude {
    pub use crate::schemars::JsonSchema;
    pub use crate::serde::Deserialize;
    pub use crate::{
        ConfigError, Context, Decision, Limit, Measurement, MeasurementExt, MetricStatus,
        MetricSummary, Pause, Policy, PolicyInput, Series, SeriesExt, Verdict, Verifier, Window,
    };
}

/// A verification provider: measures one metric and returns a verdict.
pub trait Verifier {
    /// The operator's configuration for this plugin. Its JSON Schema is published by `info`,
    /// and parsing errors are reported with the path of the offending field.
    type Config: serde::de::DeserializeOwned + schemars::JsonSchema;

    /// Checks that go beyond the types (for example, a condition that must parse). Called by
    /// `validate` after the configuration parsed; return every problem found.
    fn check(_config: &Self::Config) -> Vec<ConfigError> {
        Vec::new()
    }

    /// Take one measurement. An `Err` is a failure of the plugin or of a backend it needed,
    /// in one sentence; the host counts it as an error, never as a pass.
    fn measure(config: Self::Config, ctx: &Context) -> Result<Measurement, String>;
}

/// A failure policy: turns the state of a phase's metrics into one decision.
pub trait Policy {
    /// The operator's configuration for this policy.
    type Config: serde::de::DeserializeOwned + schemars::JsonSchema;

    /// Semantic checks beyond the types; return every problem found.
    fn check(_config: &Self::Config) -> Vec<ConfigError> {
        Vec::new()
    }

    /// Decide what the rollout does next.
    fn decide(config: Self::Config, input: &PolicyInput) -> Result<Decision, String>;
}

/// Convenience accessors on a series.
pub trait SeriesExt {
    /// The value of a label, if the series has it.
    fn label(&self, name: &str) -> Option<&str>;
    /// The sample values, oldest first (NaN included).
    fn values(&self) -> impl Iterator<Item = f64> + '_;
    /// The samples as (time, value) rows, oldest first. A series whose columns differ in
    /// length (a host bug) yields the shorter one's count.
    fn samples(&self) -> impl Iterator<Item = Sample> + '_;
    /// How many samples the series has.
    fn len(&self) -> usize;
    /// Whether the series has no samples.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The labels formatted the Prometheus way: `{a="1", b="2"}`.
    fn label_string(&self) -> String;
}

impl SeriesExt for Series {
    fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|l| l.name == name)
            .map(|l| l.value.as_str())
    }

    fn values(&self) -> impl Iterator<Item = f64> + '_ {
        self.values.iter().copied()
    }

    fn samples(&self) -> impl Iterator<Item = Sample> + '_ {
        self.times_ms
            .iter()
            .zip(&self.values)
            .map(|(&time_ms, &value)| Sample { time_ms, value })
    }

    fn len(&self) -> usize {
        self.values.len()
    }

    fn label_string(&self) -> String {
        let inner: Vec<String> = self
            .labels
            .iter()
            .map(|l| format!("{}={:?}", l.name, l.value))
            .collect();
        format!("{{{}}}", inner.join(", "))
    }
}

/// Implementation details of the export macros. Not part of the API.
#[doc(hidden)]
pub mod __private {
    use super::*;
    use bindings::policy::exports::rollgate::plugin::policy as wit_policy;
    use bindings::provider::rollgate::plugin::types as wit_types;

    /// What `info` returns, built from the plugin crate's own Cargo metadata.
    pub fn info<C: schemars::JsonSchema>(
        name: &str,
        version: &str,
        description: &str,
    ) -> wit_types::PluginInfo {
        wit_types::PluginInfo {
            name: name.to_string(),
            version: version.to_string(),
            description: description.to_string(),
            config_schema: config_schema::<C>(),
        }
    }

    /// `validate` for any configuration type with a semantic check.
    pub fn validate<C: serde::de::DeserializeOwned>(
        config: &str,
        check: fn(&C) -> Vec<ConfigError>,
    ) -> Result<(), Vec<wit_types::ConfigError>> {
        let errors = match parse_config::<C>(config) {
            Ok(parsed) => check(&parsed),
            Err(e) => vec![e],
        };
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.into_iter().map(Into::into).collect())
        }
    }

    /// `measure` for a verifier: parse, then delegate with the host's metrics.
    pub fn measure<V: Verifier>(
        config: &str,
        context: wit_types::RolloutContext,
    ) -> Result<wit_types::Measurement, String> {
        let parsed = parse_config::<V::Config>(config).map_err(|e| e.to_string())?;
        let ctx = Context::new(context, &context::HostMetrics);
        V::measure(parsed, &ctx)
    }

    /// `decide` for a policy.
    pub fn decide<P: Policy>(
        config: &str,
        input: wit_policy::PolicyInput,
    ) -> Result<wit_policy::Decision, String> {
        let parsed = parse_config::<P::Config>(config).map_err(|e| e.to_string())?;
        P::decide(parsed, &input)
    }
}

/// Export a [`Verifier`] as the plugin's implementation of the `verification-provider`
/// world. The plugin's name, version and description come from its `Cargo.toml`.
///
/// On targets other than `wasm32` this expands to nothing, so a plugin crate can also be
/// used natively (unit tests, benchmarks).
#[macro_export]
macro_rules! export_verifier {
    ($ty:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            struct __RollgateExport;
            impl $crate::bindings::provider::exports::rollgate::plugin::verifier::Guest
                for __RollgateExport
            {
                fn info() -> $crate::PluginInfo {
                    $crate::__private::info::<<$ty as $crate::Verifier>::Config>(
                        env!("CARGO_PKG_NAME"),
                        env!("CARGO_PKG_VERSION"),
                        env!("CARGO_PKG_DESCRIPTION"),
                    )
                }
                fn validate(
                    config: ::std::string::String,
                ) -> ::std::result::Result<
                    (),
                    ::std::vec::Vec<
                        $crate::bindings::provider::rollgate::plugin::types::ConfigError,
                    >,
                > {
                    $crate::__private::validate::<<$ty as $crate::Verifier>::Config>(
                        &config,
                        <$ty as $crate::Verifier>::check,
                    )
                }
                fn measure(
                    config: ::std::string::String,
                    context: $crate::RolloutContext,
                ) -> ::std::result::Result<$crate::Measurement, ::std::string::String> {
                    $crate::__private::measure::<$ty>(&config, context)
                }
            }
            $crate::bindings::provider::__export_provider!(
                __RollgateExport with_types_in $crate::bindings::provider
            );
        };
    };
}

/// Export a [`Policy`] as the plugin's implementation of the `failure-policy` world.
#[macro_export]
macro_rules! export_policy {
    ($ty:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            struct __RollgateExport;
            impl $crate::bindings::policy::exports::rollgate::plugin::policy::Guest
                for __RollgateExport
            {
                fn info() -> $crate::PluginInfo {
                    $crate::__private::info::<<$ty as $crate::Policy>::Config>(
                        env!("CARGO_PKG_NAME"),
                        env!("CARGO_PKG_VERSION"),
                        env!("CARGO_PKG_DESCRIPTION"),
                    )
                }
                fn validate(
                    config: ::std::string::String,
                ) -> ::std::result::Result<
                    (),
                    ::std::vec::Vec<
                        $crate::bindings::provider::rollgate::plugin::types::ConfigError,
                    >,
                > {
                    $crate::__private::validate::<<$ty as $crate::Policy>::Config>(
                        &config,
                        <$ty as $crate::Policy>::check,
                    )
                }
                fn decide(
                    config: ::std::string::String,
                    input: $crate::PolicyInput,
                ) -> ::std::result::Result<$crate::Decision, ::std::string::String> {
                    $crate::__private::decide::<$ty>(&config, input)
                }
            }
            $crate::bindings::policy::__export_policy!(
                __RollgateExport with_types_in $crate::bindings::policy
            );
        };
    };
}
