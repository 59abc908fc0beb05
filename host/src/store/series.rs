//! The series of every metric of a run (migration 4): one point per measurement — time,
//! value, verdict — appended by the commit that records the measurement, in its
//! transaction, and never pruned by measurement retention.
//!
//! Bounded: at most [`CAP`] points per (run, phase, metric). An append that takes a series
//! past the cap merges its oldest half two by two ([`merge`]): the later point's time, the
//! worse verdict with that point's value, the counts summed. Recent points stay exact;
//! older ones get coarser each time the cap is passed again, so a long metric keeps its
//! shape in at most 1,000 points. The series' size is kept in a counter row (`series`),
//! so an append costs one insert and one upsert (counting the points instead cost more
//! than the rest of the commit), and a merge (every [`CAP`] / 4 appends) is three
//! statements: read the oldest half, delete it, insert the merged points.

use super::commit::Tx;
use super::db::{Scalar, query, query_as, query_scalar};
use super::{MeasurementRow, Store, StoreError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Most points a series of one (run, phase, metric) holds.
pub const CAP: i64 = 1_000;

/// One point of a metric's series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
pub struct SeriesPoint {
    /// The phase measured; -1 for background verification.
    pub phase_index: i64,
    /// The metric's name.
    pub metric: String,
    /// When it was measured (the later measurement's time for a merged point).
    pub at_ms: i64,
    /// The value measured, if any (of the worse verdict's measurement when merged).
    pub value: Option<f64>,
    /// `pass`, `fail`, `inconclusive`, `no-data` or `error` (the worst when merged).
    pub verdict: String,
    /// How many measurements the point stands for: 1 unless merged.
    pub count: i64,
}

impl From<&MeasurementRow> for SeriesPoint {
    /// A retained measurement as a point (a run recorded before the series existed has
    /// only those).
    fn from(m: &MeasurementRow) -> SeriesPoint {
        SeriesPoint {
            phase_index: m.phase_index,
            metric: m.metric.clone(),
            at_ms: m.at_ms,
            value: m.value,
            verdict: m.verdict.clone(),
            count: 1,
        }
    }
}

/// A stored point as a merge reads (and writes back) it.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub(super) struct Stored {
    pub id: i64,
    pub at_ms: i64,
    pub value: Option<f64>,
    pub verdict: String,
    pub count: i64,
}

/// How bad a verdict is, for merging: fail beats error (a judgement of the version, where
/// an error is not), both beat inconclusive, which beats no-data, which beats pass.
fn badness(verdict: &str) -> u8 {
    match verdict {
        "fail" => 5,
        "error" => 4,
        "inconclusive" => 3,
        "no-data" => 2,
        "pass" => 1,
        _ => 0,
    }
}

/// Two neighbouring points as one, kept in the later one's place (its id and time): the
/// worse verdict and that point's value (the later one's on a tie), the counts summed.
pub(super) fn merge(earlier: &Stored, later: &Stored) -> Stored {
    let worse = if badness(&earlier.verdict) > badness(&later.verdict) {
        earlier
    } else {
        later
    };
    Stored {
        id: later.id,
        at_ms: later.at_ms,
        value: worse.value,
        verdict: worse.verdict.clone(),
        count: earlier.count.saturating_add(later.count),
    }
}

/// Append the points of a commit's measurements to their series (inside the commit's
/// transaction), merging any series the appends take past [`CAP`].
pub(super) async fn append(
    tx: &mut Tx<'_>,
    id: i64,
    measurements: &[MeasurementRow],
) -> Result<(), StoreError> {
    let mut appended: BTreeMap<(i64, &str), i64> = BTreeMap::new();
    for m in measurements {
        query(|s| s.series.append)
            .bind(id)
            .bind(m.phase_index)
            .bind(&m.metric)
            .bind(m.at_ms)
            .bind(m.value)
            .bind(&m.verdict)
            .execute(&mut *tx)
            .await?;
        *appended
            .entry((m.phase_index, m.metric.as_str()))
            .or_default() += 1;
    }
    for ((phase_index, metric), n) in appended {
        let points: i64 = query_scalar(|s| s.series.count)
            .bind(id)
            .bind(phase_index)
            .bind(metric)
            .bind(n)
            .one(&mut *tx)
            .await?;
        if points > CAP {
            downsample(tx, id, phase_index, metric, points).await?;
        }
    }
    Ok(())
}

/// Merge the oldest half of a series holding `points` points two by two, until it holds at
/// most [`CAP`].
async fn downsample(
    tx: &mut Tx<'_>,
    id: i64,
    phase_index: i64,
    metric: &str,
    mut points: i64,
) -> Result<(), StoreError> {
    while points > CAP {
        // An even number of the oldest points: half the series, rounded down.
        let take = points / 2 / 2 * 2;
        let oldest: Vec<Stored> = query_as(|s| s.series.oldest)
            .bind(id)
            .bind(phase_index)
            .bind(metric)
            .bind(take)
            .fetch_all(&mut *tx)
            .await?;
        // Whole pairs only (the counter may disagree with the points of a store edited
        // by hand: then fewer come back).
        let paired = &oldest[..oldest.len() / 2 * 2];
        let Some(newest) = paired.last() else {
            // Nothing to merge: stop rather than loop; the next append tries again.
            break;
        };
        let merged: Vec<Stored> = paired
            .chunks_exact(2)
            .filter_map(|pair| match pair {
                [earlier, later] => Some(merge(earlier, later)),
                _ => None,
            })
            .collect();
        let merged_json = serde_json::to_string(&merged)
            .map_err(|e| StoreError::Db(format!("cannot serialise series points: {e}")))?;
        // The pairs go, their merged points come back in the later points' places: two
        // statements whatever the number of points.
        query(|s| s.series.delete_oldest)
            .bind(id)
            .bind(phase_index)
            .bind(metric)
            .bind(newest.at_ms)
            .bind(newest.id)
            .execute(&mut *tx)
            .await?;
        query(|s| s.series.insert_merged)
            .bind(id)
            .bind(phase_index)
            .bind(metric)
            .bind(merged_json)
            .execute(&mut *tx)
            .await?;
        let merged = i64::try_from(merged.len()).unwrap_or(i64::MAX);
        points -= merged;
    }
    query(|s| s.series.set_count)
        .bind(points)
        .bind(id)
        .bind(phase_index)
        .bind(metric)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

impl Store {
    /// Whether this store keeps series (a store written before migration 4, opened by a
    /// reader that does not migrate, does not: it has none).
    async fn tracks_series(&self) -> Result<bool, StoreError> {
        let tables: i64 = query_scalar(|s| s.series.tracked).one(&self.pool).await?;
        Ok(tables > 0)
    }

    /// The series of every metric of the run `rollout_id`, ordered by phase, metric and
    /// time (empty for a run recorded before series were kept).
    pub async fn series(&self, rollout_id: i64) -> Result<Vec<SeriesPoint>, StoreError> {
        if !self.tracks_series().await? {
            return Ok(Vec::new());
        }
        query_as(|s| s.series.of_run)
            .bind(rollout_id)
            .fetch_all(&self.pool)
            .await
    }
}

#[cfg(test)]
#[path = "series_tests.rs"]
mod tests;
