//! The contract minors a plugin may be built against, and one call path over them: a
//! pre-instantiated component of either minor behind [`ProviderPre`] / [`PolicyPre`], whose
//! calls take and return the host's types (the current minor's). The previous minor's
//! bindings convert at the boundary: its arguments from the host's types, its results into
//! them, and its imports (`metrics`, `log`) onto the same host functions as the current
//! minor's.

use super::bindings::{v0_1, v0_2};
use super::logs::Level;
use super::sandbox::StoreData;
use super::types::{
    ConfigError, Decision, Measurement, MetricStatus, PluginInfo, PolicyInput, RolloutContext,
    Verdict,
};
use wasmtime::Store;

/// Which minor of `rollgate:plugin` a component was built against. The host supports the
/// current minor and the previous one; it tells them apart by the component's export names
/// (`rollgate:plugin/verifier@0.2.0`, …).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Contract {
    /// `rollgate:plugin@0.1.x`: samples as a list of records (frozen: `wit/v0.1/plugin.wit`).
    V0_1,
    /// `rollgate:plugin@0.2.x`, the current contract: samples as two columns.
    V0_2,
}

impl Contract {
    /// The contract the SDK builds against.
    pub const CURRENT: Contract = Contract::V0_2;

    /// The minor of an export's version (`0.2.1` → 0.2), if the host supports it.
    pub fn of_version(version: &str) -> Option<Contract> {
        let mut parts = version.split('.');
        match (parts.next(), parts.next()) {
            (Some("0"), Some("1")) => Some(Contract::V0_1),
            (Some("0"), Some("2")) => Some(Contract::V0_2),
            _ => None,
        }
    }

    /// `0.1` or `0.2`.
    pub fn minor(self) -> &'static str {
        match self {
            Contract::V0_1 => "0.1",
            Contract::V0_2 => "0.2",
        }
    }
}

impl std::fmt::Display for Contract {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "rollgate:plugin@{}", self.minor())
    }
}

/// A pre-instantiated verification provider of either minor.
pub(super) enum ProviderPre {
    V0_2(v0_2::provider::VerificationProviderPre<StoreData>),
    V0_1(v0_1::provider::VerificationProviderPre<StoreData>),
}

/// A pre-instantiated failure policy of either minor.
pub(super) enum PolicyPre {
    V0_2(v0_2::policy::FailurePolicyPre<StoreData>),
    V0_1(v0_1::policy::FailurePolicyPre<StoreData>),
}

type Validated = Result<(), Vec<ConfigError>>;

impl ProviderPre {
    /// Instantiate in `store` and drop the instance (the per-call fixed cost).
    pub(super) async fn instantiate(&self, store: &mut Store<StoreData>) -> wasmtime::Result<()> {
        match self {
            ProviderPre::V0_2(pre) => pre.instantiate_async(store).await.map(drop),
            ProviderPre::V0_1(pre) => pre.instantiate_async(store).await.map(drop),
        }
    }

    pub(super) async fn info(&self, store: &mut Store<StoreData>) -> wasmtime::Result<PluginInfo> {
        match self {
            ProviderPre::V0_2(pre) => {
                let i = pre.instantiate_async(&mut *store).await?;
                i.rollgate_plugin_verifier().call_info(store).await
            }
            ProviderPre::V0_1(pre) => {
                let i = pre.instantiate_async(&mut *store).await?;
                Ok(info(i.rollgate_plugin_verifier().call_info(store).await?))
            }
        }
    }

    pub(super) async fn validate(
        &self,
        store: &mut Store<StoreData>,
        config: &str,
    ) -> wasmtime::Result<Validated> {
        match self {
            ProviderPre::V0_2(pre) => {
                let i = pre.instantiate_async(&mut *store).await?;
                i.rollgate_plugin_verifier()
                    .call_validate(store, config)
                    .await
            }
            ProviderPre::V0_1(pre) => {
                let i = pre.instantiate_async(&mut *store).await?;
                let r = i
                    .rollgate_plugin_verifier()
                    .call_validate(store, config)
                    .await?;
                Ok(r.map_err(config_errors))
            }
        }
    }

    pub(super) async fn measure(
        &self,
        store: &mut Store<StoreData>,
        config: &str,
        context: &RolloutContext,
    ) -> wasmtime::Result<Result<Measurement, String>> {
        match self {
            ProviderPre::V0_2(pre) => {
                let i = pre.instantiate_async(&mut *store).await?;
                i.rollgate_plugin_verifier()
                    .call_measure(store, config, context)
                    .await
            }
            ProviderPre::V0_1(pre) => {
                let i = pre.instantiate_async(&mut *store).await?;
                let r = i
                    .rollgate_plugin_verifier()
                    .call_measure(store, config, &context_v01(context))
                    .await?;
                Ok(r.map(measurement))
            }
        }
    }
}

impl PolicyPre {
    /// Instantiate in `store` and drop the instance (the per-call fixed cost).
    pub(super) async fn instantiate(&self, store: &mut Store<StoreData>) -> wasmtime::Result<()> {
        match self {
            PolicyPre::V0_2(pre) => pre.instantiate_async(store).await.map(drop),
            PolicyPre::V0_1(pre) => pre.instantiate_async(store).await.map(drop),
        }
    }

    pub(super) async fn info(&self, store: &mut Store<StoreData>) -> wasmtime::Result<PluginInfo> {
        match self {
            PolicyPre::V0_2(pre) => {
                let i = pre.instantiate_async(&mut *store).await?;
                i.rollgate_plugin_policy().call_info(store).await
            }
            PolicyPre::V0_1(pre) => {
                let i = pre.instantiate_async(&mut *store).await?;
                Ok(info(i.rollgate_plugin_policy().call_info(store).await?))
            }
        }
    }

    pub(super) async fn validate(
        &self,
        store: &mut Store<StoreData>,
        config: &str,
    ) -> wasmtime::Result<Validated> {
        match self {
            PolicyPre::V0_2(pre) => {
                let i = pre.instantiate_async(&mut *store).await?;
                i.rollgate_plugin_policy()
                    .call_validate(store, config)
                    .await
            }
            PolicyPre::V0_1(pre) => {
                let i = pre.instantiate_async(&mut *store).await?;
                let r = i
                    .rollgate_plugin_policy()
                    .call_validate(store, config)
                    .await?;
                Ok(r.map_err(config_errors))
            }
        }
    }

    pub(super) async fn decide(
        &self,
        store: &mut Store<StoreData>,
        config: &str,
        input: &PolicyInput,
    ) -> wasmtime::Result<Result<Decision, String>> {
        match self {
            PolicyPre::V0_2(pre) => {
                let i = pre.instantiate_async(&mut *store).await?;
                i.rollgate_plugin_policy()
                    .call_decide(store, config, input)
                    .await
            }
            PolicyPre::V0_1(pre) => {
                let i = pre.instantiate_async(&mut *store).await?;
                let r = i
                    .rollgate_plugin_policy()
                    .call_decide(store, config, &policy_input_v01(input))
                    .await?;
                Ok(r.map(decision))
            }
        }
    }
}

// The previous minor's types, to and from the host's. Type-identical in 0.1 and 0.2 except
// `series`, so these are field-for-field moves.

mod old {
    pub use super::v0_1::policy::exports::rollgate::plugin::policy::{
        Decision, MetricStatus, MetricSummary, Pause, PauseRecord, PolicyInput,
    };
    pub use super::v0_1::provider::rollgate::plugin::metrics as wit;
    pub use super::v0_1::provider::rollgate::plugin::types::{
        Arg, ConfigError, Label, Measurement, PluginInfo, RolloutContext, Sample, Series, Verdict,
    };
}
use super::bindings::v0_2::provider::rollgate::plugin::metrics as wit;

fn info(i: old::PluginInfo) -> PluginInfo {
    PluginInfo {
        name: i.name,
        version: i.version,
        description: i.description,
        config_schema: i.config_schema,
    }
}

fn config_errors(errors: Vec<old::ConfigError>) -> Vec<ConfigError> {
    errors
        .into_iter()
        .map(|e| ConfigError {
            path: e.path,
            message: e.message,
        })
        .collect()
}

fn verdict(v: old::Verdict) -> Verdict {
    match v {
        old::Verdict::Pass => Verdict::Pass,
        old::Verdict::Fail => Verdict::Fail,
        old::Verdict::Inconclusive => Verdict::Inconclusive,
        old::Verdict::NoData => Verdict::NoData,
    }
}

fn verdict_v01(v: Verdict) -> old::Verdict {
    match v {
        Verdict::Pass => old::Verdict::Pass,
        Verdict::Fail => old::Verdict::Fail,
        Verdict::Inconclusive => old::Verdict::Inconclusive,
        Verdict::NoData => old::Verdict::NoData,
    }
}

fn measurement(m: old::Measurement) -> Measurement {
    Measurement {
        verdict: verdict(m.verdict),
        value: m.value,
        message: m.message,
        details: m.details,
    }
}

fn context_v01(c: &RolloutContext) -> old::RolloutContext {
    old::RolloutContext {
        rollout: c.rollout.clone(),
        phase: c.phase.clone(),
        phase_index: c.phase_index,
        phase_count: c.phase_count,
        weight: c.weight,
        stable_version: c.stable_version.clone(),
        canary_version: c.canary_version.clone(),
        now_ms: c.now_ms,
        phase_started_ms: c.phase_started_ms,
        metric: c.metric.clone(),
        measurement_index: c.measurement_index,
        args: c
            .args
            .iter()
            .map(|a| old::Arg {
                name: a.name.clone(),
                value: a.value.clone(),
            })
            .collect(),
    }
}

fn status_v01(s: MetricStatus) -> old::MetricStatus {
    match s {
        MetricStatus::Pending => old::MetricStatus::Pending,
        MetricStatus::Running => old::MetricStatus::Running,
        MetricStatus::Successful => old::MetricStatus::Successful,
        MetricStatus::Failed => old::MetricStatus::Failed,
        MetricStatus::Inconclusive => old::MetricStatus::Inconclusive,
        MetricStatus::NoData => old::MetricStatus::NoData,
        MetricStatus::Error => old::MetricStatus::Error,
        MetricStatus::Terminated => old::MetricStatus::Terminated,
    }
}

fn policy_input_v01(p: &PolicyInput) -> old::PolicyInput {
    old::PolicyInput {
        rollout: p.rollout.clone(),
        phase: p.phase.clone(),
        phase_index: p.phase_index,
        phase_count: p.phase_count,
        weight: p.weight,
        now_ms: p.now_ms,
        phase_complete: p.phase_complete,
        metrics: p
            .metrics
            .iter()
            .map(|m| old::MetricSummary {
                name: m.name.clone(),
                status: status_v01(m.status),
                dry_run: m.dry_run,
                measurements: m.measurements,
                passes: m.passes,
                failures: m.failures,
                inconclusives: m.inconclusives,
                no_data: m.no_data,
                errors: m.errors,
                consecutive_errors: m.consecutive_errors,
                last_verdict: m.last_verdict.map(verdict_v01),
                last_value: m.last_value,
                message: m.message.clone(),
            })
            .collect(),
        pauses: p
            .pauses
            .iter()
            .map(|r| old::PauseRecord {
                phase: r.phase.clone(),
                reason: r.reason.clone(),
                at_ms: r.at_ms,
            })
            .collect(),
        attempt: p.attempt,
    }
}

fn decision(d: old::Decision) -> Decision {
    use super::types::Pause;
    match d {
        old::Decision::Continue => Decision::Continue,
        old::Decision::Promote => Decision::Promote,
        old::Decision::PromoteFull => Decision::PromoteFull,
        old::Decision::Pause(old::Pause {
            reason,
            duration_ms,
        }) => Decision::Pause(Pause {
            reason,
            duration_ms,
        }),
        old::Decision::Rollback(why) => Decision::Rollback(why),
        old::Decision::Abort(why) => Decision::Abort(why),
    }
}

// The previous minor's imports, onto the same host functions as the current minor's.

impl old::wit::Host for StoreData {
    async fn query(
        &mut self,
        request: old::wit::QueryRequest,
    ) -> wasmtime::Result<Result<Vec<old::Series>, old::wit::QueryError>> {
        let window = match request.window {
            old::wit::Window::Instant(at) => wit::Window::Instant(at),
            old::wit::Window::Range(r) => wit::Window::Range(wit::TimeRange {
                start_ms: r.start_ms,
                end_ms: r.end_ms,
                step_ms: r.step_ms,
            }),
        };
        let request = wit::QueryRequest {
            backend: request.backend,
            query: request.query,
            window,
        };
        Ok(match self.query_series(request).await {
            // Records: 0.1 lowers each sample as one.
            Ok(series) => Ok(series
                .into_iter()
                .map(|s| old::Series {
                    labels: s
                        .labels
                        .into_iter()
                        .map(|(name, value)| old::Label { name, value })
                        .collect(),
                    samples: s
                        .points
                        .into_iter()
                        .map(|(time_ms, value)| old::Sample { time_ms, value })
                        .collect(),
                })
                .collect()),
            Err(e) => Err(old::wit::QueryError {
                kind: query_error_kind_v01(e.kind),
                backend: e.backend,
                message: e.message,
            }),
        })
    }
}

fn query_error_kind_v01(kind: wit::QueryErrorKind) -> old::wit::QueryErrorKind {
    use old::wit::QueryErrorKind as Old;
    match kind {
        wit::QueryErrorKind::Denied => Old::Denied,
        wit::QueryErrorKind::UnknownBackend => Old::UnknownBackend,
        wit::QueryErrorKind::BadQuery => Old::BadQuery,
        wit::QueryErrorKind::Unauthorized => Old::Unauthorized,
        wit::QueryErrorKind::Unavailable => Old::Unavailable,
        wit::QueryErrorKind::Timeout => Old::Timeout,
        wit::QueryErrorKind::RateLimited => Old::RateLimited,
        wit::QueryErrorKind::TooLarge => Old::TooLarge,
        wit::QueryErrorKind::Other => Old::Other,
    }
}

impl v0_1::provider::rollgate::plugin::types::Host for StoreData {}

impl v0_1::provider::rollgate::plugin::log::Host for StoreData {
    async fn log(
        &mut self,
        level: v0_1::provider::rollgate::plugin::log::Level,
        message: String,
    ) -> wasmtime::Result<()> {
        use v0_1::provider::rollgate::plugin::log::Level as Old;
        let level = match level {
            Old::Trace => Level::Trace,
            Old::Debug => Level::Debug,
            Old::Info => Level::Info,
            Old::Warn => Level::Warn,
            Old::Error => Level::Error,
        };
        self.emit(level, &message);
        Ok(())
    }
}
