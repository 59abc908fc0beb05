//! The policy input `rollgate plugin test` gives a failure policy, as its `--fixture` file
//! writes it: JSON, the WIT `policy-input` in camelCase (see `plugins/README.md`), every
//! field but the metrics with a default.

use crate::plugin::types::{MetricSummary, PauseRecord, PolicyInput, Verdict};
use serde::Deserialize;
use std::path::Path;

/// Read a policy fixture. Errors say what to do, a JSON error at `file:line:col`.
pub(super) fn read(path: &Path) -> Result<PolicyInput, String> {
    let shown = path.display();
    let text = crate::files::read_text(path, &crate::files::SMALL_FILE)
        .map_err(|e| e.describe_as("--fixture", path))?;
    let fixture: PolicyFixture = serde_json::from_str(&text).map_err(|e| {
        format!(
            "{shown}:{}:{}: {} (a policy's fixture is a policy input as JSON; see plugins/README.md)",
            e.line(),
            e.column(),
            e.to_string()
                .trim_end_matches(&format!(" at line {} column {}", e.line(), e.column()))
        )
    })?;
    Ok(fixture.into())
}

/// A metric summary as a policy fixture writes it (the WIT record, camelCase).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct SummaryFixture {
    name: String,
    status: crate::verify::MetricStatus,
    #[serde(default)]
    dry_run: bool,
    #[serde(default)]
    measurements: u32,
    #[serde(default)]
    passes: u32,
    #[serde(default)]
    failures: u32,
    #[serde(default)]
    inconclusives: u32,
    #[serde(default)]
    no_data: u32,
    #[serde(default)]
    errors: u32,
    #[serde(default)]
    consecutive_errors: u32,
    #[serde(default)]
    last_verdict: Option<VerdictFixture>,
    #[serde(default)]
    last_value: Option<f64>,
    #[serde(default)]
    message: String,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum VerdictFixture {
    Pass,
    Fail,
    Inconclusive,
    NoData,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct PauseFixture {
    phase: String,
    reason: String,
    at_ms: i64,
}

/// A policy input as a fixture writes it; everything but the metrics has a default.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct PolicyFixture {
    #[serde(default = "fixture_rollout")]
    rollout: String,
    #[serde(default = "fixture_phase")]
    phase: String,
    #[serde(default)]
    phase_index: u32,
    #[serde(default = "one")]
    phase_count: u32,
    #[serde(default)]
    weight: f64,
    #[serde(default)]
    now_ms: i64,
    #[serde(default)]
    phase_complete: bool,
    metrics: Vec<SummaryFixture>,
    #[serde(default)]
    pauses: Vec<PauseFixture>,
    #[serde(default = "one")]
    attempt: u32,
}

fn fixture_rollout() -> String {
    "fixture".into()
}
fn fixture_phase() -> String {
    "phase".into()
}
fn one() -> u32 {
    1
}

impl From<PolicyFixture> for PolicyInput {
    fn from(f: PolicyFixture) -> PolicyInput {
        PolicyInput {
            rollout: f.rollout,
            phase: f.phase,
            phase_index: f.phase_index,
            phase_count: f.phase_count,
            weight: f.weight,
            now_ms: f.now_ms,
            phase_complete: f.phase_complete,
            metrics: f
                .metrics
                .into_iter()
                .map(|m| MetricSummary {
                    name: m.name,
                    status: m.status.into(),
                    dry_run: m.dry_run,
                    measurements: m.measurements,
                    passes: m.passes,
                    failures: m.failures,
                    inconclusives: m.inconclusives,
                    no_data: m.no_data,
                    errors: m.errors,
                    consecutive_errors: m.consecutive_errors,
                    last_verdict: m.last_verdict.map(|v| match v {
                        VerdictFixture::Pass => Verdict::Pass,
                        VerdictFixture::Fail => Verdict::Fail,
                        VerdictFixture::Inconclusive => Verdict::Inconclusive,
                        VerdictFixture::NoData => Verdict::NoData,
                    }),
                    last_value: m.last_value,
                    message: m.message,
                })
                .collect(),
            pauses: f
                .pauses
                .into_iter()
                .map(|p| PauseRecord {
                    phase: p.phase,
                    reason: p.reason,
                    at_ms: p.at_ms,
                })
                .collect(),
            attempt: f.attempt,
        }
    }
}
