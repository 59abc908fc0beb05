//! Runners: the processes that drive runs, registered with their heartbeat, and which run
//! each of them claims; readers ask who drives a run.

use super::db::{Scalar, query, query_as, query_scalar};
use super::{Store, StoreError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A runner: a process (`rollgate run` or `rollgate serve`) that drives runs on this store,
/// with its heartbeat. What a heartbeat *means* (when a runner counts as gone) is
/// [`crate::engine::runner`]'s business.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct RunnerRow {
    /// Store-wide id; each start of a runner gets a new one.
    pub id: i64,
    /// The machine it runs on.
    pub host: String,
    /// Its process id there.
    pub pid: i64,
    /// `run` or `serve`.
    pub command: String,
    /// The rollgate version.
    pub version: String,
    /// When it registered.
    pub started_ms: i64,
    /// Its last heartbeat.
    pub heartbeat_ms: i64,
    /// How often it means to beat.
    pub period_ms: i64,
    /// When it stopped cleanly; `None` while it runs (or after it died).
    pub stopped_ms: Option<i64>,
}

/// What a runner says about itself when it registers ([`Store::register_runner`]).
#[derive(Debug, Clone, Copy)]
pub struct NewRunner<'a> {
    /// The machine.
    pub host: &'a str,
    /// The process id.
    pub pid: i64,
    /// `run` or `serve`.
    pub command: &'a str,
    /// The rollgate version.
    pub version: &'a str,
    /// The heartbeat period.
    pub period_ms: i64,
}

impl Store {
    /// Record a runner that starts driving runs on this store, its first heartbeat at
    /// `now_ms`; its row.
    pub async fn register_runner(
        &self,
        runner: NewRunner<'_>,
        now_ms: i64,
    ) -> Result<RunnerRow, StoreError> {
        query_as(|s| s.register_runner)
            .bind(runner.host)
            .bind(runner.pid)
            .bind(runner.command)
            .bind(runner.version)
            .bind(now_ms)
            .bind(now_ms)
            .bind(runner.period_ms)
            .fetch_one(&self.liveness)
            .await
    }

    /// The runner `id` is alive at `now_ms`. Fails with [`StoreError::NotFound`] when there
    /// is no such runner or it was marked stopped.
    pub async fn heartbeat(&self, id: i64, now_ms: i64) -> Result<(), StoreError> {
        let updated = query(|s| s.heartbeat)
            .bind(now_ms)
            .bind(id)
            .execute(&self.liveness)
            .await?;
        if updated == 0 {
            return Err(StoreError::NotFound(format!("running runner {id}")));
        }
        Ok(())
    }

    /// The runner `id` stopped cleanly at `now_ms` (its last heartbeat too).
    pub async fn runner_stopped(&self, id: i64, now_ms: i64) -> Result<(), StoreError> {
        query(|s| s.runner_stopped)
            .bind(now_ms)
            .bind(now_ms)
            .bind(id)
            .execute(&self.liveness)
            .await?;
        Ok(())
    }

    /// The runner `runner` no longer drives the run `rollout_id` (its driver gave up on
    /// it); a claim another runner made since is left alone.
    pub async fn release_run(&self, rollout_id: i64, runner: i64) -> Result<(), StoreError> {
        query(|s| s.release_run)
            .bind(rollout_id)
            .bind(runner)
            .execute(&self.liveness)
            .await?;
        Ok(())
    }

    /// Whether this store records runners. A store written before runners were recorded
    /// and opened with [`Store::open_existing`] (which does not migrate) does not.
    pub async fn tracks_runners(&self) -> Result<bool, StoreError> {
        let tables: i64 = query_scalar(|s| s.tracks_runners).one(&self.pool).await?;
        Ok(tables > 0)
    }

    /// The runner that drives (or last drove) the run `rollout_id`; `None` when no runner
    /// claimed it, or the store does not record runners.
    pub async fn runner_of(&self, rollout_id: i64) -> Result<Option<RunnerRow>, StoreError> {
        if !self.tracks_runners().await? {
            return Ok(None);
        }
        query_as(|s| s.runner_of)
            .bind(rollout_id)
            .fetch_optional(&self.pool)
            .await
    }

    /// The runner of every unfinished run that has one, by rollout row id (empty when the
    /// store does not record runners); built from [`Store::claims`].
    pub async fn drivers(&self) -> Result<BTreeMap<i64, RunnerRow>, StoreError> {
        let claims = self.claims().await?;
        Ok(claims
            .runs
            .iter()
            .filter_map(|(run, runner)| Some((*run, claims.runners.get(runner)?.clone())))
            .collect())
    }
}

/// Who drives the unfinished runs, cheaply for many runs ([`Store::claims`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Claims {
    /// Each unfinished run that a runner claimed (rollout row id) → that runner's id.
    pub runs: BTreeMap<i64, i64>,
    /// Every runner, by id (a handful: one row per process that ever drove runs).
    pub runners: BTreeMap<i64, RunnerRow>,
}

impl Store {
    /// [`Store::drivers`] in two parts, for a reader of thousands of runs (the web view's
    /// list): the runs' claims as two integers a row, and the few runner rows once —
    /// rather than a runner row decoded again for each of 20,000 runs. Empty when the
    /// store does not record runners.
    pub async fn claims(&self) -> Result<Claims, StoreError> {
        if !self.tracks_runners().await? {
            return Ok(Claims::default());
        }
        let runs: Vec<(i64, i64)> = query_as(|s| s.claims).fetch_all(&self.pool).await?;
        let runners: Vec<RunnerRow> = query_as(|s| s.runners).fetch_all(&self.pool).await?;
        Ok(Claims {
            runs: runs.into_iter().collect(),
            runners: runners.into_iter().map(|r| (r.id, r)).collect(),
        })
    }
}
