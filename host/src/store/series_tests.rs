//! Series tests against real SQLite files and PostgreSQL databases (`on_both`): what a commit appends, what retention leaves,
//! how a long metric is downsampled, and that a refused commit appends nothing.

use super::*;
use crate::store::tests::{fresh_pg, on_both};
use crate::store::{AuditEvent, Commit, RolloutRow};
use serde_json::json;
use tempfile::TempDir;

async fn fresh() -> (TempDir, Store) {
    let dir = tempfile::tempdir().expect("tempdir");
    // sync=normal: thousands of commits without an fsync each.
    let store = Store::open_durable(&dir.path().join("rollgate.db"), false)
        .await
        .expect("open");
    (dir, store)
}

async fn create(store: &Store) -> RolloutRow {
    let event = AuditEvent {
        at_ms: 0,
        actor: "rollgate".into(),
        action: "create".into(),
        reason: "test".into(),
        state_before: String::new(),
        state_after: "progressing".into(),
        progress: json!({}),
    };
    store
        .create_rollout("web", "{}", "{}", "progressing", &event, 0)
        .await
        .expect("create")
}

fn measurement(phase_index: i64, metric: &str, index: i64, verdict: &str) -> MeasurementRow {
    MeasurementRow {
        phase_index,
        metric: metric.into(),
        index,
        at_ms: 1_000 + index * 10,
        verdict: verdict.into(),
        value: (verdict != "error").then_some(index as f64 / 4.0),
        message: String::new(),
        details: "{}".into(),
        retention: 3,
    }
}

/// Commit `measurements` as the next transition of `row`; returns the new generation.
async fn commit(store: &Store, row: &RolloutRow, generation: i64, m: &[MeasurementRow]) -> i64 {
    store
        .commit(row.id, generation, transition(m), 5)
        .await
        .expect("commit")
}

fn transition(measurements: &[MeasurementRow]) -> Commit<'_> {
    Commit {
        epoch: None,
        checkpoint: "{}",
        state: "progressing",
        finished: false,
        events: &[],
        measurements,
        step_intents: &[],
        outbox: &[],
        consumed_actions: &[],
        spec: None,
    }
}

on_both!(every_committed_measurement_is_a_point_of_its_series);
async fn every_committed_measurement_is_a_point_of_its_series(store: Store) {
    let row = create(&store).await;
    let first = [measurement(0, "errors", 0, "pass")];
    let g = commit(&store, &row, 1, &first).await;
    // Two in one commit, one of them an error without a value.
    let next = [
        measurement(0, "errors", 1, "fail"),
        measurement(0, "errors", 2, "error"),
    ];
    commit(&store, &row, g, &next).await;
    let series = store.series(row.id).await.unwrap();
    let want: Vec<SeriesPoint> = first.iter().chain(&next).map(SeriesPoint::from).collect();
    assert_eq!(series, want);
    assert_eq!(series[2].value, None);
    // Another run has its own series.
    assert!(store.series(row.id + 1).await.unwrap().is_empty());
}

on_both!(measurement_retention_does_not_prune_the_series);
async fn measurement_retention_does_not_prune_the_series(store: Store) {
    let row = create(&store).await;
    let mut g = 1;
    let all: Vec<MeasurementRow> = (0..20)
        .map(|i| measurement(0, "errors", i, if i == 4 { "fail" } else { "pass" }))
        .collect();
    for m in &all {
        g = commit(&store, &row, g, std::slice::from_ref(m)).await;
    }
    // Retention 3 keeps the failure and the last 3 passes…
    let kept = store.measurements(row.id).await.unwrap();
    assert_eq!(
        kept.iter().map(|m| m.index).collect::<Vec<_>>(),
        [4, 17, 18, 19]
    );
    // …while the series has every one.
    let series = store.series(row.id).await.unwrap();
    assert_eq!(
        series,
        all.iter().map(SeriesPoint::from).collect::<Vec<_>>()
    );
}

/// The worst verdict of a stretch of measurements and the value of the latest measurement
/// with it: what one point standing for them must say.
fn fold(covered: &[MeasurementRow]) -> (i64, Option<f64>, String) {
    let worst = covered
        .iter()
        .map(|m| badness(&m.verdict))
        .max()
        .unwrap_or(0);
    let latest_worst = covered
        .iter()
        .rev()
        .find(|m| badness(&m.verdict) == worst)
        .expect("a measurement");
    let last = covered.last().expect("a measurement");
    (last.at_ms, latest_worst.value, latest_worst.verdict.clone())
}

on_both!(a_long_metric_is_downsampled_to_the_cap_keeping_failures_and_recent_points);
async fn a_long_metric_is_downsampled_to_the_cap_keeping_failures_and_recent_points(store: Store) {
    let row = create(&store).await;
    // Failures here and there, errors and inconclusive ones among passes.
    let verdict = |i: i64| match i {
        3 | 777 | 1_500 | 2_100 => "fail",
        _ if i % 97 == 0 => "error",
        _ if i % 41 == 0 => "inconclusive",
        _ if i % 53 == 0 => "no-data",
        _ => "pass",
    };
    let all: Vec<MeasurementRow> = (0..2_500)
        .map(|i| measurement(0, "errors", i, verdict(i)))
        .collect();
    let mut g = 1;
    for m in &all {
        g = commit(&store, &row, g, std::slice::from_ref(m)).await;
    }
    let series = store.series(row.id).await.unwrap();
    assert!(series.len() as i64 <= CAP, "{} points", series.len());
    assert!(series.len() > 500, "{} points", series.len());
    assert_eq!(series.iter().map(|p| p.count).sum::<i64>(), 2_500);
    // Every point stands for a contiguous stretch of measurements, in order: the later
    // end's time, the worst verdict and the latest such measurement's value.
    let mut from = 0usize;
    for p in &series {
        let to = from + usize::try_from(p.count).expect("positive");
        let (at_ms, value, verdict) = fold(&all[from..to]);
        assert_eq!(
            (p.at_ms, p.value, p.verdict.as_str()),
            (at_ms, value, verdict.as_str()),
            "the point for measurements {from}..{to}"
        );
        from = to;
    }
    // No failure is lost.
    for i in [3, 777, 1_500, 2_100] {
        let at = all[i].at_ms;
        let covering = series.iter().find(|p| p.at_ms >= at).expect("a point");
        assert_eq!(covering.verdict, "fail", "measurement {i}");
    }
    // The newest half of the cap is exact.
    let recent = &series[series.len() - 500..];
    assert_eq!(
        recent,
        &all[2_000..]
            .iter()
            .map(SeriesPoint::from)
            .collect::<Vec<_>>()[..]
    );
    // The counter row agrees with the points.
    let counted: i64 = crate::store::db::query_scalar(|_| "SELECT points FROM series")
        .one(&store.pool)
        .await
        .unwrap();
    assert_eq!(counted, series.len() as i64);
}

on_both!(a_commit_of_many_measurements_at_once_stays_under_the_cap);
async fn a_commit_of_many_measurements_at_once_stays_under_the_cap(store: Store) {
    let row = create(&store).await;
    let all: Vec<MeasurementRow> = (0..3_000)
        .map(|i| measurement(0, "errors", i, "pass"))
        .collect();
    commit(&store, &row, 1, &all).await;
    let series = store.series(row.id).await.unwrap();
    assert!(series.len() as i64 <= CAP, "{} points", series.len());
    assert_eq!(series.iter().map(|p| p.count).sum::<i64>(), 3_000);
    assert_eq!(series.last(), all.last().map(SeriesPoint::from).as_ref());
}

on_both!(metrics_phases_and_the_background_have_series_of_their_own);
async fn metrics_phases_and_the_background_have_series_of_their_own(store: Store) {
    let row = create(&store).await;
    let mut g = 1;
    // The background's "errors" and phase 1's "latency" beside phase 0's "errors", which
    // goes past the cap.
    let others = [
        measurement(-1, "errors", 0, "fail"),
        measurement(1, "latency", 1, "pass"),
        measurement(-1, "errors", 2, "pass"),
    ];
    g = commit(&store, &row, g, &others).await;
    for i in 0..1_200 {
        g = commit(&store, &row, g, &[measurement(0, "errors", i, "pass")]).await;
    }
    let series = store.series(row.id).await.unwrap();
    let key = |p: &SeriesPoint| (p.phase_index, p.metric.clone());
    let keys: Vec<(i64, String)> = series.iter().map(key).collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted, "ordered by phase, then metric");
    let background: Vec<&SeriesPoint> = series.iter().filter(|p| p.phase_index == -1).collect();
    assert_eq!(
        background,
        [
            &SeriesPoint::from(&others[0]),
            &SeriesPoint::from(&others[2])
        ],
        "the background is apart from phase 0's metric of the same name"
    );
    let latency: Vec<&SeriesPoint> = series.iter().filter(|p| p.phase_index == 1).collect();
    assert_eq!(latency, [&SeriesPoint::from(&others[1])]);
    let phase0: Vec<&SeriesPoint> = series.iter().filter(|p| p.phase_index == 0).collect();
    assert!(phase0.len() as i64 <= CAP);
    assert_eq!(phase0.iter().map(|p| p.count).sum::<i64>(), 1_200);
}

on_both!(a_refused_commit_appends_no_point);
async fn a_refused_commit_appends_no_point(store: Store) {
    let row = create(&store).await;
    let g = commit(&store, &row, 1, &[measurement(0, "errors", 0, "pass")]).await;
    let stale = [measurement(0, "errors", 1, "fail")];
    let e = store
        .commit(row.id, g - 1, transition(&stale), 6)
        .await
        .expect_err("a stale generation");
    assert!(matches!(e, StoreError::Conflict { .. }), "{e}");
    let series = store.series(row.id).await.unwrap();
    assert_eq!(series.len(), 1, "{series:?}");
    assert_eq!(series[0].verdict, "pass");
}

#[test]
fn a_merged_point_has_the_worse_verdict_and_its_value() {
    let p = |id: i64, verdict: &str, value: Option<f64>, count: i64| Stored {
        id,
        at_ms: id * 10,
        value,
        verdict: verdict.into(),
        count,
    };
    // (earlier, later, the verdict and value kept)
    let cases = [
        (
            p(1, "fail", Some(1.0), 1),
            p(2, "pass", Some(2.0), 1),
            ("fail", Some(1.0)),
        ),
        (
            p(1, "pass", Some(1.0), 1),
            p(2, "error", None, 1),
            ("error", None),
        ),
        (
            p(1, "fail", Some(1.0), 1),
            p(2, "error", None, 1),
            ("fail", Some(1.0)),
        ),
        (
            p(1, "inconclusive", Some(1.0), 2),
            p(2, "no-data", None, 1),
            ("inconclusive", Some(1.0)),
        ),
        (
            p(1, "pass", None, 1),
            p(2, "no-data", None, 1),
            ("no-data", None),
        ),
        (
            p(1, "pass", Some(1.0), 4),
            p(2, "pass", Some(2.0), 1),
            ("pass", Some(2.0)),
        ),
    ];
    for (earlier, later, (verdict, value)) in cases {
        let merged = merge(&earlier, &later);
        assert_eq!(
            (merged.id, merged.at_ms, merged.count),
            (later.id, later.at_ms, earlier.count + later.count)
        );
        assert_eq!(
            (merged.verdict.as_str(), merged.value),
            (verdict, value),
            "{earlier:?} + {later:?}"
        );
    }
}
