//! The version 2 shapes of what the API answers (`/api/v2`) and what `rollgate get` and
//! `rollgate history` print with `--format json`: every document starts with
//! `"apiVersion": "rollgate.dev/v2"`, a metric's counts are named
//! (`{"pass", "fail", "inconclusive", "noData", "error"}`), `failures` are objects with
//! their kind and cause ([`Failure`]), and rolling and blue-green runs carry their target
//! progress ([`TargetProgress`]).
//!
//! Version 1 (`/api/v1`, [`super::views`]) is frozen: its answers keep their shapes
//! byte for byte (counts as arrays, failures as sentences) for the tools written against
//! them. Both are rendered from the same [`crate::engine::Progress`], so they never
//! disagree on a number.
//!
//! Every type here derives a JSON Schema; `rollgate schema RolloutStatus` (and
//! `RolloutHistory`, `RolloutList`, `RolloutEvent`, `RolloutSeries`) prints them
//! ([`json_schemas`]).

use super::views::{self, HistoryError};
use crate::engine::failure::Failure;
use crate::engine::state::Checkpoint;
use crate::engine::{MetricProgress, PhaseProgress, TargetProgress};
use crate::store::Store;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::collections::BTreeMap;

/// The `apiVersion` of every v2 document.
pub const API_VERSION: &str = "rollgate.dev/v2";

/// The `apiVersion` marker: always [`API_VERSION`]; reading any other value is an error,
/// so a tool (or this command line) never takes a document of another version for v2.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ApiVersion;

impl Serialize for ApiVersion {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(API_VERSION)
    }
}

impl<'de> Deserialize<'de> for ApiVersion {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = Cow::<str>::deserialize(d)?;
        if text == API_VERSION {
            Ok(ApiVersion)
        } else {
            Err(serde::de::Error::custom(format!(
                "apiVersion {text:?} is not {API_VERSION:?}; this rollgate reads {API_VERSION}"
            )))
        }
    }
}

impl JsonSchema for ApiVersion {
    fn schema_name() -> Cow<'static, str> {
        "ApiVersion".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "The version of this document's shape.",
            "type": "string",
            "const": API_VERSION,
        })
    }
}

/// A metric's results, counted by what each counted as.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Counts {
    /// Passes.
    pub pass: u32,
    /// Failures.
    pub fail: u32,
    /// Inconclusive results.
    pub inconclusive: u32,
    /// No-data results kept as no-data.
    pub no_data: u32,
    /// Errors (plugin or backend failures; not measurements).
    pub error: u32,
}

/// One metric of the phase or the background.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Metric {
    /// The metric.
    pub name: String,
    /// Background verification rather than the phase's.
    pub background: bool,
    /// `pending`, `running`, `successful`, `failed`, `inconclusive`, `no-data`, `error` or
    /// `terminated`.
    pub status: String,
    /// Its results so far.
    pub counts: Counts,
    /// The last value measured (absent before the first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_value: Option<f64>,
    /// Why it is where it is (the reason of its last status change, with the numbers).
    pub message: String,
}

/// Where a run is: its phases, metrics, target progress and failures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Progress {
    /// The rollout.
    pub rollout: String,
    /// Its run number.
    pub run: i64,
    /// The state (`progressing`, `paused(policy)`, `rolled-back`, …, or `unreadable`).
    pub state: String,
    /// `canary`, `rolling` or `blue-green` (empty when unreadable).
    pub strategy: String,
    /// The version running before the rollout.
    pub stable_version: String,
    /// The version being rolled out.
    pub canary_version: String,
    /// Every phase, in order.
    pub phases: Vec<PhaseProgress>,
    /// The current phase (0-based).
    pub phase: usize,
    /// How many phases.
    pub phase_count: usize,
    /// The current phase's name.
    pub phase_name: String,
    /// The weight applied.
    pub weight: f64,
    /// What happened last.
    pub message: String,
    /// Every metric of the phase and the background.
    pub metrics: Vec<Metric>,
    /// Rolling and blue-green: how far the target is (absent for canary).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<TargetProgress>,
    /// What went wrong in the run, oldest first (at most 32; the audit log has all).
    pub failures: Vec<Failure>,
    /// The run this run reverses: it takes back what that run rolled out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reverses: Option<i64>,
}

impl From<&crate::engine::Progress> for Progress {
    fn from(p: &crate::engine::Progress) -> Self {
        Progress {
            rollout: p.rollout.clone(),
            run: p.run,
            state: p.state.clone(),
            strategy: p.strategy.clone(),
            stable_version: p.stable_version.clone(),
            canary_version: p.canary_version.clone(),
            phases: p.phases.clone(),
            phase: p.phase,
            phase_count: p.phase_count,
            phase_name: p.phase_name.clone(),
            weight: p.weight,
            message: p.message.clone(),
            metrics: p
                .metrics
                .iter()
                .map(|m| {
                    let [pass, fail, inconclusive, no_data, error] = m.counts;
                    Metric {
                        name: m.name.clone(),
                        background: m.background,
                        status: m.status.clone(),
                        counts: Counts {
                            pass,
                            fail,
                            inconclusive,
                            no_data,
                            error,
                        },
                        last_value: m.last_value,
                        message: m.message.clone(),
                    }
                })
                .collect(),
            target: p.target.clone(),
            failures: p.failures.clone(),
            reverses: p.reverses,
        }
    }
}

impl Progress {
    /// The same progress as the engine's value, for what is drawn from it (the tree of
    /// `rollgate get`, which reads v2 from a server).
    pub fn to_engine(&self) -> crate::engine::Progress {
        crate::engine::Progress {
            rollout: self.rollout.clone(),
            run: self.run,
            state: self.state.clone(),
            strategy: self.strategy.clone(),
            stable_version: self.stable_version.clone(),
            canary_version: self.canary_version.clone(),
            phases: self.phases.clone(),
            phase: self.phase,
            phase_count: self.phase_count,
            phase_name: self.phase_name.clone(),
            weight: self.weight,
            message: self.message.clone(),
            metrics: self
                .metrics
                .iter()
                .map(|m| MetricProgress {
                    name: m.name.clone(),
                    background: m.background,
                    status: m.status.clone(),
                    counts: [
                        m.counts.pass,
                        m.counts.fail,
                        m.counts.inconclusive,
                        m.counts.no_data,
                        m.counts.error,
                    ],
                    last_value: m.last_value,
                    message: m.message.clone(),
                })
                .collect(),
            failures: self.failures.clone(),
            target: self.target.clone(),
            reverses: self.reverses,
        }
    }
}

/// A rollout's latest run: `GET /api/v2/rollouts/NAME`, `rollgate get NAME --format json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Snapshot {
    /// `rollgate.dev/v2`.
    pub api_version: ApiVersion,
    /// Where the run is.
    #[serde(flatten)]
    pub progress: Progress,
    /// Whether the run ended.
    pub finished: bool,
    /// When the run was created (ms since the Unix epoch).
    pub created_ms: i64,
    /// When it last changed.
    pub updated_ms: i64,
    /// Who drives the run, when it is unfinished and a runner claimed it: its heartbeat,
    /// and whether it is stale.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runner: Option<crate::engine::runner::RunnerView>,
    /// When the rollout's documents do not load: every problem, since when, and the run
    /// held because of them (the state is then `invalid-spec`, unless a run in progress
    /// goes on with the configuration it started with).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invalid_spec: Option<crate::store::InvalidSpec>,
}

impl From<&views::Snapshot> for Snapshot {
    fn from(s: &views::Snapshot) -> Self {
        let mut progress = Progress::from(&s.progress);
        // A rollout whose documents do not load: each problem is a failure of its own.
        if let Some(invalid) = &s.invalid_spec {
            progress.failures.extend(
                invalid
                    .problems
                    .iter()
                    .map(|p| Failure::invalid_spec(p.clone(), invalid.since_ms)),
            );
        }
        Snapshot {
            api_version: ApiVersion,
            progress,
            finished: s.finished,
            created_ms: s.created_ms,
            updated_ms: s.updated_ms,
            runner: s.runner.clone(),
            invalid_spec: s.invalid_spec.clone(),
        }
    }
}

/// Read the latest run of `name` in the v2 shape; `Ok(None)` when the store has none.
pub async fn snapshot(store: &Store, name: &str) -> Result<Option<Snapshot>, String> {
    Ok(views::snapshot(store, name)
        .await?
        .as_ref()
        .map(Snapshot::from))
}

/// A rollout's runs, the audit log of one of them and that run's failures:
/// `GET /api/v2/rollouts/NAME/history`, `rollgate history NAME --format json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct History {
    /// `rollgate.dev/v2`.
    pub api_version: ApiVersion,
    /// The runs and the audit log (the v1 fields).
    #[serde(flatten)]
    pub history: views::History,
    /// What went wrong in the run of the audit log, oldest first (empty when its
    /// checkpoint cannot be read).
    pub failures: Vec<Failure>,
}

/// The history of `name` in the v2 shape, with the audit log and failures of run `run`
/// (default: the latest).
pub async fn history(store: &Store, name: &str, run: Option<i64>) -> Result<History, HistoryError> {
    let history = views::history(store, name, run).await?;
    let failures = store
        .runs(name)
        .await
        .map_err(|e| HistoryError::Store(e.to_string()))?
        .into_iter()
        .find(|r| r.run == history.audit_run)
        .and_then(|r| serde_json::from_str::<Checkpoint>(&r.checkpoint).ok())
        .map(|cp| cp.failures)
        .unwrap_or_default();
    let mut failures = failures;
    if let Some(invalid) = &history.invalid_spec {
        failures.extend(
            invalid
                .problems
                .iter()
                .map(|p| Failure::invalid_spec(p.clone(), invalid.since_ms)),
        );
    }
    Ok(History {
        api_version: ApiVersion,
        history,
        failures,
    })
}

/// One rollout in the list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ListItem {
    /// The rollout.
    pub rollout: String,
    /// Its latest run.
    pub run: i64,
    /// That run's state.
    pub state: String,
    /// The current phase's name.
    pub phase: String,
    /// The current phase (0-based).
    pub phase_index: usize,
    /// How many phases.
    pub phase_count: usize,
    /// The weight applied.
    pub weight: f64,
    /// What happened last.
    pub message: String,
    /// Rolling and blue-green: how far the target is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<TargetProgress>,
    /// The run's latest failure, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failure: Option<Failure>,
    /// Who drives the run, when it is unfinished and a runner claimed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runner: Option<crate::engine::runner::RunnerView>,
}

impl From<&crate::engine::Progress> for ListItem {
    fn from(p: &crate::engine::Progress) -> Self {
        ListItem {
            rollout: p.rollout.clone(),
            run: p.run,
            state: p.state.clone(),
            phase: p.phase_name.clone(),
            phase_index: p.phase,
            phase_count: p.phase_count,
            weight: p.weight,
            message: p.message.clone(),
            target: p.target.clone(),
            last_failure: p.failures.last().cloned(),
            runner: None,
        }
    }
}

/// The rollouts a server runs: `GET /api/v2/rollouts`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct List {
    /// `rollgate.dev/v2`.
    pub api_version: ApiVersion,
    /// The rollouts (filtered as asked), by name.
    pub rollouts: Vec<ListItem>,
    /// When the request asked for a page (`limit`) and more rollouts match: the `after` of
    /// the next page (the last name on this one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// One committed change on the v2 event stream (`GET /api/v2/events`): the v1 event's
/// fields and the progress after it.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Event<'a> {
    /// `rollgate.dev/v2`.
    pub api_version: ApiVersion,
    /// What happened (the v1 event).
    #[serde(flatten)]
    pub event: &'a super::Event,
    /// The rollout's progress after the change.
    pub progress: Progress,
}

impl<'a> Event<'a> {
    /// The v2 form of a committed event.
    pub fn of(event: &'a super::Event) -> Event<'a> {
        Event {
            api_version: ApiVersion,
            event,
            progress: Progress::from(&*event.progress),
        }
    }
}

/// The series of every metric of a run: `GET /api/v2/rollouts/NAME/series[?run=N]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolloutSeries {
    /// `rollgate.dev/v2`.
    pub api_version: ApiVersion,
    /// The rollout.
    pub rollout: String,
    /// The run whose series these are.
    pub run: i64,
    /// One series per metric of each phase it verified and of the background, ordered by
    /// phase (the background, -1, first) and metric.
    pub metrics: Vec<MetricSeries>,
}

/// The measurements of one metric in one phase (or the background), oldest first: every
/// measurement, with the oldest ones merged two by two past 1,000 points.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MetricSeries {
    /// The phase (0-based); -1 for background verification.
    pub phase_index: i64,
    /// The metric.
    pub metric: String,
    /// Background verification rather than a phase's.
    pub background: bool,
    /// Whether some points stand for several measurements (`count` > 1).
    pub downsampled: bool,
    /// The points, oldest first.
    pub points: Vec<SeriesPoint>,
}

/// One point of a series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SeriesPoint {
    /// When it was measured (ms since the Unix epoch; of the later measurement when
    /// merged).
    pub at: i64,
    /// The value measured; `null` when there was none (an error, no data).
    pub value: Option<f64>,
    /// `pass`, `fail`, `inconclusive`, `no-data` or `error`; of a merged point the worst
    /// of its measurements' (fail, error, inconclusive, no-data, pass), with that one's
    /// value.
    pub verdict: String,
    /// How many measurements the point stands for (1 unless merged).
    pub count: i64,
}

/// A run's stored points (ordered by phase, metric and time, as [`Store::series`] reads
/// them) grouped into one series per (phase, metric).
pub fn metric_series(points: Vec<crate::store::SeriesPoint>) -> Vec<MetricSeries> {
    let mut out: Vec<MetricSeries> = Vec::new();
    for p in points {
        let point = SeriesPoint {
            at: p.at_ms,
            value: p.value,
            verdict: p.verdict,
            count: p.count,
        };
        match out.last_mut() {
            Some(m) if m.phase_index == p.phase_index && m.metric == p.metric => {
                m.downsampled |= point.count > 1;
                m.points.push(point);
            }
            _ => out.push(MetricSeries {
                phase_index: p.phase_index,
                metric: p.metric,
                background: p.phase_index < 0,
                downsampled: point.count > 1,
                points: vec![point],
            }),
        }
    }
    out
}

/// The series of run `run` of `name` (default: the latest run). A rollout that never ran
/// (its documents do not load) has no run: [`HistoryError::NoRun`] with no runs.
pub async fn series(
    store: &Store,
    name: &str,
    run: Option<i64>,
) -> Result<RolloutSeries, HistoryError> {
    let store_error = |e: crate::store::StoreError| HistoryError::Store(e.to_string());
    let runs = store.runs(name).await.map_err(store_error)?;
    let chosen = match run {
        None => runs.last(),
        Some(n) => runs.iter().find(|r| r.run == n),
    };
    let Some(chosen) = chosen else {
        if runs.is_empty()
            && store
                .invalid_spec(name)
                .await
                .map_err(store_error)?
                .is_none()
        {
            return Err(HistoryError::NoRollout);
        }
        return Err(HistoryError::NoRun(runs.iter().map(|r| r.run).collect()));
    };
    let points = store.series(chosen.id).await.map_err(store_error)?;
    Ok(RolloutSeries {
        api_version: ApiVersion,
        rollout: name.to_string(),
        run: chosen.run,
        metrics: metric_series(points),
    })
}

/// The JSON Schema (draft 2020-12) of each v2 document, by name: `RolloutStatus`
/// ([`Snapshot`]), `RolloutHistory`, `RolloutList`, `RolloutEvent` and `RolloutSeries`.
/// They describe the
/// documents as written: a field that may be left out is never `null`.
pub fn json_schemas() -> BTreeMap<&'static str, serde_json::Value> {
    fn schema_for<T: JsonSchema>() -> schemars::Schema {
        schemars::generate::SchemaSettings::draft2020_12()
            .for_serialize()
            .into_generator()
            .into_root_schema_for::<T>()
    }
    let finish = |name: &str, schema: schemars::Schema, description: &str| {
        let mut value = schema.to_value();
        absent_is_not_null(&mut value);
        if let Some(object) = value.as_object_mut() {
            object.insert("title".into(), name.into());
            object.insert("description".into(), description.into());
        }
        value
    };
    let mut out = BTreeMap::new();
    out.insert(
        "RolloutStatus",
        finish(
            "RolloutStatus",
            schema_for::<Snapshot>(),
            "A rollout's latest run (API v2): GET /api/v2/rollouts/NAME, `rollgate get NAME --format json`.",
        ),
    );
    out.insert(
        "RolloutHistory",
        finish(
            "RolloutHistory",
            schema_for::<History>(),
            "A rollout's runs and an audit log (API v2): GET /api/v2/rollouts/NAME/history, `rollgate history NAME --format json`.",
        ),
    );
    out.insert(
        "RolloutList",
        finish(
            "RolloutList",
            schema_for::<List>(),
            "The rollouts a server runs (API v2): GET /api/v2/rollouts.",
        ),
    );
    out.insert(
        "RolloutEvent",
        finish(
            "RolloutEvent",
            schema_for::<Event<'static>>(),
            "The data of one event of GET /api/v2/events.",
        ),
    );
    out.insert(
        "RolloutSeries",
        finish(
            "RolloutSeries",
            schema_for::<RolloutSeries>(),
            "The series of every metric of a run (API v2): GET /api/v2/rollouts/NAME/series.",
        ),
    );
    out
}

/// In every object schema, a property that is not required (left out when it has no
/// value) does not admit `null`: v2 documents leave such fields out rather than write
/// `null`, and the schema says so, so a tool can rely on it.
fn absent_is_not_null(schema: &mut serde_json::Value) {
    use serde_json::Value;
    match schema {
        Value::Object(object) => {
            let required: Vec<String> = object
                .get("required")
                .and_then(Value::as_array)
                .map(|r| {
                    r.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default();
            if let Some(Value::Object(properties)) = object.get_mut("properties") {
                for (name, property) in properties.iter_mut() {
                    if !required.contains(name) {
                        drop_null(property);
                    }
                }
            }
            for value in object.values_mut() {
                absent_is_not_null(value);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(absent_is_not_null),
        _ => {}
    }
}

/// `{"type": ["string", "null"]}` → `{"type": "string"}`; `{"anyOf": [{"$ref": …},
/// {"type": "null"}]}` → `{"$ref": …}`.
fn drop_null(property: &mut serde_json::Value) {
    use serde_json::Value;
    let Some(object) = property.as_object_mut() else {
        return;
    };
    if let Some(Value::Array(types)) = object.get_mut("type") {
        types.retain(|t| t != "null");
        if let [only] = types.as_slice() {
            let only = only.clone();
            object.insert("type".into(), only);
        }
    }
    let is_null = |v: &Value| v.get("type").is_some_and(|t| t == "null");
    if let Some(Value::Array(options)) = object.get_mut("anyOf") {
        options.retain(|o| !is_null(o));
        if options.len() == 1
            && let Some(Value::Object(only)) = options.pop()
        {
            object.remove("anyOf");
            for (k, v) in only {
                object.entry(k).or_insert(v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::TargetUnit;
    use crate::engine::failure::FailureKind;

    /// A progress with one of everything.
    fn progress() -> crate::engine::Progress {
        crate::engine::Progress {
            rollout: "web".into(),
            run: 2,
            state: "rolling-back".into(),
            strategy: "rolling".into(),
            stable_version: "v1".into(),
            canary_version: "v2".into(),
            phases: vec![PhaseProgress {
                name: "half".into(),
                weight: 50.0,
                status: "active".into(),
            }],
            phase: 0,
            phase_count: 1,
            phase_name: "half".into(),
            weight: 40.0,
            message: "step failed".into(),
            metrics: vec![
                MetricProgress {
                    name: "errors".into(),
                    background: false,
                    status: "failed".into(),
                    counts: [2, 1, 0, 0, 3],
                    last_value: Some(0.2),
                    message: "failed: 1 failure > failureLimit 0".into(),
                },
                MetricProgress {
                    name: "latency".into(),
                    background: true,
                    status: "pending".into(),
                    counts: [0; 5],
                    last_value: None,
                    message: "pending".into(),
                },
            ],
            failures: vec![
                Failure::new(FailureKind::MetricFailed, "metric \"errors\" failed", 5)
                    .phase("half")
                    .metric("errors")
                    .value(Some(0.2))
                    .limit(Some("failureLimit 0".into())),
            ],
            target: Some(TargetProgress {
                unit: TargetUnit::Instances,
                completed: 2,
                failed: 1,
                remaining: 2,
                total: 5,
                preview_deployed: None,
                cut_over: None,
            }),
            reverses: None,
        }
    }

    #[test]
    fn counts_are_named_and_the_engine_value_round_trips() {
        let p = progress();
        let v2 = Progress::from(&p);
        let json = serde_json::to_value(&v2).unwrap();
        assert_eq!(
            json["metrics"][0]["counts"],
            serde_json::json!({"pass": 2, "fail": 1, "inconclusive": 0, "noData": 0, "error": 3})
        );
        assert!(json["metrics"][1].get("lastValue").is_none(), "{json}");
        assert_eq!(
            json["target"],
            serde_json::json!({"unit": "instances", "completed": 2, "failed": 1, "remaining": 2, "total": 5})
        );
        assert_eq!(json["failures"][0]["kind"], "metric-failed");
        assert_eq!(json["failures"][0]["limit"], "failureLimit 0");
        assert_eq!(v2.to_engine(), p);
        let back: Progress = serde_json::from_value(json).unwrap();
        assert_eq!(back, v2);
    }

    #[test]
    fn the_api_version_is_written_and_checked() {
        let snap = Snapshot {
            api_version: ApiVersion,
            progress: Progress::from(&progress()),
            finished: false,
            created_ms: 1,
            updated_ms: 2,
            runner: None,
            invalid_spec: None,
        };
        let mut json = serde_json::to_value(&snap).unwrap();
        assert_eq!(json["apiVersion"], API_VERSION);
        assert_eq!(json["rollout"], "web", "the progress is flattened: {json}");
        let back: Snapshot = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(back, snap);
        json["apiVersion"] = "rollgate.dev/v1".into();
        let e = serde_json::from_value::<Snapshot>(json).unwrap_err();
        assert!(e.to_string().contains("is not \"rollgate.dev/v2\""), "{e}");
    }

    #[test]
    fn the_schemas_accept_what_is_written_and_refuse_nulls_for_absent_fields() {
        let schemas = json_schemas();
        assert_eq!(
            schemas.keys().copied().collect::<Vec<_>>(),
            [
                "RolloutEvent",
                "RolloutHistory",
                "RolloutList",
                "RolloutSeries",
                "RolloutStatus"
            ]
        );
        let status = jsonschema::validator_for(&schemas["RolloutStatus"]).unwrap();
        let snap = Snapshot {
            api_version: ApiVersion,
            progress: Progress::from(&progress()),
            finished: false,
            created_ms: 1,
            updated_ms: 2,
            runner: None,
            invalid_spec: None,
        };
        let mut json = serde_json::to_value(&snap).unwrap();
        let errors: Vec<String> = status.iter_errors(&json).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{errors:?}\n{json}");
        json["metrics"][1]["lastValue"] = serde_json::Value::Null;
        assert!(!status.is_valid(&json), "null where a field is left out");
        json["metrics"][1]
            .as_object_mut()
            .unwrap()
            .remove("lastValue");
        json["failures"][0]["kind"] = "bad-luck".into();
        assert!(!status.is_valid(&json), "an unknown failure kind");
        json["failures"][0]["kind"] = "metric-failed".into();
        json["apiVersion"] = "rollgate.dev/v1".into();
        assert!(!status.is_valid(&json), "another version");

        let list = jsonschema::validator_for(&schemas["RolloutList"]).unwrap();
        let doc = serde_json::to_value(List {
            api_version: ApiVersion,
            rollouts: vec![ListItem::from(&progress())],
            next: None,
        })
        .unwrap();
        assert!(list.is_valid(&doc), "{doc}");
        assert!(doc.get("next").is_none(), "no next page: {doc}");
        let paged = serde_json::to_value(List {
            api_version: ApiVersion,
            rollouts: vec![ListItem::from(&progress())],
            next: Some("checkout".into()),
        })
        .unwrap();
        assert!(list.is_valid(&paged), "{paged}");
    }

    #[test]
    fn series_are_grouped_by_phase_and_metric_and_match_their_schema() {
        let p = |phase_index: i64, metric: &str, at_ms: i64, verdict: &str, count: i64| {
            crate::store::SeriesPoint {
                phase_index,
                metric: metric.into(),
                at_ms,
                value: (verdict != "error").then_some(at_ms as f64),
                verdict: verdict.into(),
                count,
            }
        };
        let metrics = metric_series(vec![
            p(-1, "errors", 5, "pass", 1),
            p(0, "errors", 1, "fail", 2),
            p(0, "errors", 3, "error", 1),
            p(0, "latency", 2, "pass", 1),
        ]);
        let keys: Vec<(i64, &str, bool, bool, usize)> = metrics
            .iter()
            .map(|m| {
                let key = (m.phase_index, m.metric.as_str(), m.background);
                (key.0, key.1, key.2, m.downsampled, m.points.len())
            })
            .collect();
        assert_eq!(
            keys,
            [
                (-1, "errors", true, false, 1),
                (0, "errors", false, true, 2),
                (0, "latency", false, false, 1)
            ]
        );
        let doc = RolloutSeries {
            api_version: ApiVersion,
            rollout: "web".into(),
            run: 2,
            metrics,
        };
        let json = serde_json::to_value(&doc).unwrap();
        assert_eq!(
            json["metrics"][1]["points"][1],
            serde_json::json!({"at": 3, "value": null, "verdict": "error", "count": 1})
        );
        assert_eq!(json["metrics"][0]["phaseIndex"], -1);
        let schema = jsonschema::validator_for(&json_schemas()["RolloutSeries"]).unwrap();
        let errors: Vec<String> = schema.iter_errors(&json).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{errors:?}\n{json}");
        let mut bad = json.clone();
        bad["metrics"][0]["points"][0]
            .as_object_mut()
            .unwrap()
            .remove("value");
        assert!(
            !schema.is_valid(&bad),
            "a point always has its value, null or not"
        );
        let back: RolloutSeries = serde_json::from_value(json).unwrap();
        assert_eq!(back, doc);
    }
}
