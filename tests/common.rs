//! Helpers shared by the end-to-end tests.
#![allow(dead_code)]

use rollgate::metrics::{BoxFuture, MetricsSource, Query, QueryError, Series};
use rollgate::plugin::types::RolloutContext;
use rollgate::plugin::{ComponentCache, HostConfig, PluginHost};
use std::sync::Mutex;

/// A host with no disk cache (tests that need the cache set their own).
pub fn host() -> PluginHost {
    PluginHost::new(HostConfig {
        cache: ComponentCache::disabled(),
        ..HostConfig::default()
    })
    .expect("plugin host starts")
}

pub fn context(now_ms: i64) -> RolloutContext {
    RolloutContext {
        rollout: "checkout".into(),
        phase: "canary-10".into(),
        phase_index: 0,
        phase_count: 3,
        weight: 10.0,
        stable_version: "1.0.0".into(),
        canary_version: "1.1.0".into(),
        now_ms,
        phase_started_ms: now_ms - 60_000,
        metric: "error-rate".into(),
        measurement_index: 0,
        args: vec![],
    }
}

/// Metrics from memory: returns `series` for every query and records the queries.
pub struct StaticMetrics {
    pub series: Vec<Series>,
    pub seen: Mutex<Vec<Query>>,
    pub delay: std::time::Duration,
}

impl StaticMetrics {
    pub fn new(series: Vec<Series>) -> Self {
        StaticMetrics {
            series,
            seen: Mutex::new(Vec::new()),
            delay: std::time::Duration::ZERO,
        }
    }
}

impl MetricsSource for StaticMetrics {
    fn query<'a>(&'a self, query: &'a Query) -> BoxFuture<'a, Result<Vec<Series>, QueryError>> {
        Box::pin(async move {
            self.seen.lock().expect("lock").push(query.clone());
            if !self.delay.is_zero() {
                tokio::time::sleep(self.delay).await;
            }
            Ok(self.series.clone())
        })
    }
}

pub fn series(values: &[f64]) -> Series {
    Series {
        labels: vec![("job".into(), "checkout".into())],
        points: values
            .iter()
            .enumerate()
            .map(|(i, v)| (1_700_000_000_000 + i as i64 * 1000, *v))
            .collect(),
    }
}
