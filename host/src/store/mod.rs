//! The store: rollouts, their checkpoints, the audit log, measurements, the step ledger and
//! pending operator actions, in one SQLite file.
//!
//! The engine commits every transition *before* applying its effect, so after a crash the
//! runner resumes every unfinished rollout from its last checkpoint, applies no step twice
//! and loses no audit event. This module is what makes that promise hold:
//!
//! - one transaction per [`Store::commit`]: the checkpoint, its audit events, measurements,
//!   step intents and consumed actions land together or not at all;
//! - an optimistic `generation` per rollout: a commit names the generation it started from,
//!   so two runners can never both advance one rollout ([`StoreError::Conflict`]);
//! - durable writes (WAL, `synchronous=FULL`) and a busy timeout, so a second process (the
//!   CLI requesting an action) can write while a runner commits.
//!
//! The queries are plain SQL with portable types (64-bit integers, TEXT, one nullable
//! float, booleans as 0/1) so that a PostgreSQL backend can share them later; the pool type
//! stays private to [`Store`]. This module knows nothing about what a checkpoint or a step
//! *means*: both are JSON text the engine owns.
//!
//! Files:
//! - `mod.rs`: the rows ([`RolloutRow`], [`AuditRow`], … read with `sqlx::FromRow`), the
//!   [`StoreError`], and [`Store`] — opening (one connection-options builder), the one
//!   filtered query behind every listing of rollouts, commits and the smaller reads/writes;
//! - `sql.rs`: the SQL text of every statement, one field per statement in a `Sql` value
//!   per dialect (SQLite today; the PostgreSQL dialect goes beside it);
//! - `tests.rs`: tests against real SQLite files.
//!
//! The schema lives in `host/migrations` (embedded at build time); a migration, once
//! released, never changes: existing stores must open. Readers that do not migrate
//! ([`Store::open_existing`]) may meet an older schema: what a later migration added (the
//! runners, migration 2) reads as absent there ([`Store::tracks_runners`]).
//!
//! Runners: a process that drives runs registers in `runners` ([`Store::register_runner`]),
//! beats ([`Store::heartbeat`]), claims each run it drives ([`Store::claim_run`]) and marks
//! itself stopped when it stops cleanly; readers ask who drives a run ([`Store::runner_of`],
//! [`Store::drivers`]).

mod invalid;
mod sql;

pub use invalid::InvalidSpec;

use serde::{Deserialize, Serialize};
use sql::{Filter, Sql};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

/// How long a writer waits for another connection or process holding the write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Connections per [`Store`]; SQLite serialises writers anyway, a few readers help the CLI.
const MAX_CONNECTIONS: u32 = 4;

/// Why a store operation failed; each message says what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The file could not be opened or created.
    #[error("cannot open the store {path}: {message}; check the path and permissions")]
    Open {
        /// The path given.
        path: String,
        /// What SQLite or the file system said.
        message: String,
    },
    /// The schema could not be brought up to date (the message names the fix).
    #[error("{0}")]
    Migrate(String),
    /// A query failed.
    #[error("store database error: {0}")]
    Db(String),
    /// Another runner advanced the rollout since this one read it.
    #[error(
        "rollout {rollout} was advanced by another runner (expected generation {expected}, \
         found {found}); only one runner may drive a rollout: stop the other one or let it finish"
    )]
    Conflict {
        /// The rollout's name.
        rollout: String,
        /// The generation the commit started from.
        expected: i64,
        /// The generation in the store.
        found: i64,
    },
    /// A rollout, step or action the caller named does not exist.
    #[error("not found in the store: {0}")]
    NotFound(String),
    /// A run that must follow a given run was not created: a later run exists already.
    #[error(
        "run {run} of {rollout} was not created: its latest run is {latest} now (another run \
         was started meanwhile); see `rollgate history {rollout}`"
    )]
    RunTaken {
        /// The rollout's name.
        rollout: String,
        /// The run that was to be created.
        run: i64,
        /// The latest run in the store.
        latest: i64,
    },
}

fn db(e: sqlx::Error) -> StoreError {
    StoreError::Db(e.to_string())
}

/// One run of a rollout: its resolved spec, where it got to and whether it is done.
///
/// Retrying a rollout creates a new row with the next `run` number, so every attempt keeps
/// its own checkpoint and audit log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
pub struct RolloutRow {
    /// Store-wide id.
    pub id: i64,
    /// The rollout's name.
    pub name: String,
    /// 1, 2, … per name.
    pub run: i64,
    /// The resolved spec (JSON).
    pub spec: String,
    /// The engine's checkpoint (JSON).
    pub checkpoint: String,
    /// The state name, for listing without parsing the checkpoint.
    pub state: String,
    /// Final state reached; never resumed.
    pub finished: bool,
    /// Bumped by every commit; commits name the generation they expect.
    pub generation: i64,
    /// When the row was created.
    pub created_ms: i64,
    /// When the last commit landed.
    pub updated_ms: i64,
}

/// One entry of a rollout's audit log: who did what, why, and what it changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
pub struct AuditEvent {
    /// When it happened.
    pub at_ms: i64,
    /// Who did it (`rollgate`, a user, a plugin).
    pub actor: String,
    /// What was done.
    pub action: String,
    /// Why.
    pub reason: String,
    /// State before.
    pub state_before: String,
    /// State after.
    pub state_after: String,
    /// Target progress counts at that moment (stored as JSON text, parsed by
    /// [`Store::audit`]).
    #[sqlx(skip)]
    pub progress: serde_json::Value,
}

/// An audit event with its position in the rollout's log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditRow {
    /// 1, 2, … per rollout row, without gaps.
    pub seq: i64,
    /// The event.
    pub event: AuditEvent,
}

/// One measurement of one metric, kept so operators can see what a verdict was based on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
pub struct MeasurementRow {
    /// The phase it verified; -1 for background verification.
    pub phase_index: i64,
    /// The metric's name.
    pub metric: String,
    /// The measurement's index within its verification run.
    #[sqlx(rename = "idx")]
    pub index: i64,
    /// When it was taken.
    pub at_ms: i64,
    /// The verdict word (`pass`, `fail`, `error`, …).
    pub verdict: String,
    /// The measured value, if any.
    pub value: Option<f64>,
    /// The plugin's message.
    pub message: String,
    /// The plugin's details (JSON or text).
    pub details: String,
    /// Keep all `fail`/`error` rows and the last `retention` others for
    /// (rollout, phase_index, metric).
    pub retention: i64,
}

/// Where a target step is in its life: recorded before it runs, marked after.
///
/// The intent is committed with the transition that needs the step; a runner resuming
/// after a crash finds intents without an outcome and knows exactly which steps to check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StepStatus {
    /// Committed, not known to be applied.
    Intent,
    /// Applied.
    Applied,
    /// Applying it failed.
    Failed,
}

impl StepStatus {
    /// The word stored and serialised.
    pub fn as_str(self) -> &'static str {
        match self {
            StepStatus::Intent => "intent",
            StepStatus::Applied => "applied",
            StepStatus::Failed => "failed",
        }
    }
}

impl fmt::Display for StepStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl TryFrom<String> for StepStatus {
    type Error = StoreError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl FromStr for StepStatus {
    type Err = StoreError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "intent" => Ok(StepStatus::Intent),
            "applied" => Ok(StepStatus::Applied),
            "failed" => Ok(StepStatus::Failed),
            other => Err(StoreError::Db(format!(
                "unknown step status {other:?} in the store (expected intent, applied or failed)"
            ))),
        }
    }
}

/// One target step of a rollout and what became of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
pub struct StepRow {
    /// The engine's id for the step, unique per rollout row.
    pub step_id: String,
    /// The step (JSON).
    pub step: String,
    /// Where it is.
    #[sqlx(try_from = "String")]
    pub status: StepStatus,
    /// The outcome (output or error), once known.
    pub result: Option<String>,
    /// When the status last changed.
    pub updated_ms: i64,
}

/// An operator's request (promote, pause, abort, …) waiting for the runner of a rollout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
pub struct ActionRequest {
    /// Store-wide id; a commit consumes it by id.
    pub id: i64,
    /// The run (rollout row) it is for.
    pub rollout_id: i64,
    /// The rollout's name.
    pub rollout: String,
    /// The action.
    pub action: String,
    /// Who asked.
    pub actor: String,
    /// Why.
    pub reason: String,
    /// When.
    pub at_ms: i64,
}

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

/// Everything one transition writes, committed atomically by [`Store::commit`].
#[derive(Debug, Clone, Copy)]
pub struct Commit<'a> {
    /// The new checkpoint (JSON).
    pub checkpoint: &'a str,
    /// The new state name.
    pub state: &'a str,
    /// Whether the state is final.
    pub finished: bool,
    /// Audit events to append, in order.
    pub events: &'a [AuditEvent],
    /// Measurements to record (older non-failures beyond retention are pruned).
    pub measurements: &'a [MeasurementRow],
    /// (step_id, step JSON) recorded as intents; an existing step keeps its status.
    pub step_intents: &'a [(String, String)],
    /// Action requests this transition acted on.
    pub consumed_actions: &'a [i64],
    /// A new resolved spec for the run (JSON), when it adopted a newer configuration.
    pub spec: Option<&'a str>,
}

/// A run created right after a given run ([`Store::create_after`],
/// [`Store::commit_with_successor`]): if another run was created since, nothing is written.
#[derive(Debug, Clone, Copy)]
pub struct NewRow<'a> {
    /// The rollout's name.
    pub name: &'a str,
    /// The resolved spec (JSON).
    pub spec: &'a str,
    /// The first checkpoint (JSON).
    pub checkpoint: &'a str,
    /// Its state name.
    pub state: &'a str,
    /// The audit event of its creation.
    pub event: &'a AuditEvent,
    /// The latest run of `name` now: the new row is run `after + 1`.
    pub after: i64,
}

/// A handle on one store file; cheap to clone, safe to share between tasks, and other
/// processes may open the same file at the same time.
#[derive(Debug, Clone)]
pub struct Store {
    pool: SqlitePool,
    path: PathBuf,
}

/// The statements of the store's dialect (see [`sql`]).
const SQL: &Sql = &sql::SQLITE;

/// How [`Store::connect`] opens the file.
#[derive(Debug, Clone, Copy)]
enum Mode {
    /// Create the file if missing, with this `synchronous` setting, and migrate.
    Create(SqliteSynchronous),
    /// Open an existing file as it is: no creation, no migration.
    Existing,
}

impl Store {
    /// Open (creating if missing) the store file and bring its schema up to date.
    pub async fn open(path: &Path) -> Result<Store, StoreError> {
        Store::open_durable(path, true).await
    }

    /// [`Store::open`], choosing whether every commit is synced to disk (`synchronous=FULL`)
    /// or only at WAL checkpoints (`NORMAL`: a crash of the process loses nothing, a power
    /// cut may lose the last commits; many times more commits a second).
    pub async fn open_durable(path: &Path, full_sync: bool) -> Result<Store, StoreError> {
        if path.is_dir() {
            return Err(StoreError::Open {
                path: path.display().to_string(),
                message: "it is a directory, not a file".into(),
            });
        }
        let sync = if full_sync {
            SqliteSynchronous::Full
        } else {
            SqliteSynchronous::Normal
        };
        let store = Store::connect(path, Mode::Create(sync)).await?;
        if let Err(e) = sqlx::migrate!("./migrations").run(&store.pool).await {
            store.pool.close().await;
            return Err(migrate_error(&path.display().to_string(), e));
        }
        Ok(store)
    }

    /// Open an existing store to read it (`rollgate get`, `history`): no file is created
    /// and no migration runs. A reader that migrated could race a runner opening the same
    /// new store — both would apply the first migration, and the loser (possibly the
    /// runner) would fail; a store a runner has not migrated yet just reads as empty.
    pub async fn open_existing(path: &Path) -> Result<Store, StoreError> {
        Store::connect(path, Mode::Existing).await
    }

    /// The one connection-options builder: WAL, foreign keys and the busy timeout for every
    /// mode; creation and the `synchronous` setting only when opening to write.
    async fn connect(path: &Path, mode: Mode) -> Result<Store, StoreError> {
        let mut options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(matches!(mode, Mode::Create(_)))
            .journal_mode(SqliteJournalMode::Wal);
        if let Mode::Create(sync) = mode {
            options = options.synchronous(sync);
        }
        let options = options.foreign_keys(true).busy_timeout(BUSY_TIMEOUT);
        let pool = SqlitePoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .connect_with(options)
            .await
            .map_err(|e| StoreError::Open {
                path: path.display().to_string(),
                message: e.to_string(),
            })?;
        Ok(Store {
            pool,
            path: path.to_path_buf(),
        })
    }

    /// The file this store lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Create the next run of rollout `name` (run = last run of that name + 1) and write
    /// its first audit event in the same transaction.
    pub async fn create_rollout(
        &self,
        name: &str,
        spec: &str,
        checkpoint: &str,
        state: &str,
        event: &AuditEvent,
        now_ms: i64,
    ) -> Result<RolloutRow, StoreError> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        let rollout: RolloutRow = sqlx::query_as(SQL.create_rollout)
            .bind(name)
            .bind(spec)
            .bind(checkpoint)
            .bind(state)
            .bind(now_ms)
            .bind(now_ms)
            .bind(name)
            .fetch_one(&mut *tx)
            .await
            .map_err(db)?;
        append_events(&mut tx, rollout.id, std::slice::from_ref(event)).await?;
        tx.commit().await.map_err(db)?;
        Ok(rollout)
    }

    /// The rollout row with this id.
    pub async fn get(&self, id: i64) -> Result<Option<RolloutRow>, StoreError> {
        Ok(self.rollouts(Filter::Id(id)).await?.pop())
    }

    /// The latest run (highest `run`) of rollout `name`.
    pub async fn latest(&self, name: &str) -> Result<Option<RolloutRow>, StoreError> {
        Ok(self.rollouts(Filter::Latest(name)).await?.pop())
    }

    /// Rollout rows not in a final state, oldest first: what a restarted runner resumes.
    pub async fn unfinished(&self) -> Result<Vec<RolloutRow>, StoreError> {
        self.rollouts(Filter::Unfinished).await
    }

    /// Every rollout row, oldest first.
    pub async fn list(&self) -> Result<Vec<RolloutRow>, StoreError> {
        self.rollouts(Filter::All).await
    }

    /// Every run of the rollout `name`, by run number.
    pub async fn runs(&self, name: &str) -> Result<Vec<RolloutRow>, StoreError> {
        self.rollouts(Filter::Runs(name)).await
    }

    /// The one filtered query behind [`get`](Store::get), [`latest`](Store::latest),
    /// [`unfinished`](Store::unfinished), [`list`](Store::list) and [`runs`](Store::runs).
    async fn rollouts(&self, filter: Filter<'_>) -> Result<Vec<RolloutRow>, StoreError> {
        let query = sqlx::query_as(SQL.rollouts.query(filter));
        let query = match filter {
            Filter::Id(id) => query.bind(id),
            Filter::Runs(name) | Filter::Latest(name) => query.bind(name),
            Filter::All | Filter::Unfinished => query,
        };
        query.fetch_all(&self.pool).await.map_err(db)
    }

    /// Commit one transition in one transaction: check and bump the generation, store the
    /// checkpoint, append the audit events, record (and prune) measurements, record step
    /// intents and consume actions. Returns the new generation.
    ///
    /// Fails with [`StoreError::Conflict`] (writing nothing) when the rollout's generation
    /// is not `expected_generation`.
    pub async fn commit(
        &self,
        id: i64,
        expected_generation: i64,
        commit: Commit<'_>,
        now_ms: i64,
    ) -> Result<i64, StoreError> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        let generation = commit_in(&mut tx, id, expected_generation, commit, now_ms).await?;
        tx.commit().await.map_err(db)?;
        Ok(generation)
    }

    /// Create run `row.after + 1` of `row.name`, with its first audit event, in one
    /// transaction — unless the latest run is no longer `row.after`
    /// ([`StoreError::RunTaken`], nothing written): a run that follows a given one (a
    /// rollback after success) is never created twice, nor after another run.
    pub async fn create_after(
        &self,
        row: NewRow<'_>,
        now_ms: i64,
    ) -> Result<RolloutRow, StoreError> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        let created = insert_after(&mut tx, row, now_ms).await?;
        tx.commit().await.map_err(db)?;
        Ok(created)
    }

    /// [`Store::commit`] a run's transition and create the run that follows it
    /// ([`Store::create_after`]) in the same transaction: a crash leaves both or neither,
    /// so the successor is created exactly once. Returns the new generation and the row.
    pub async fn commit_with_successor(
        &self,
        id: i64,
        expected_generation: i64,
        commit: Commit<'_>,
        successor: NewRow<'_>,
        now_ms: i64,
    ) -> Result<(i64, RolloutRow), StoreError> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        let generation = commit_in(&mut tx, id, expected_generation, commit, now_ms).await?;
        let created = insert_after(&mut tx, successor, now_ms).await?;
        tx.commit().await.map_err(db)?;
        Ok((generation, created))
    }

    /// Record a step's outcome (after its intent was committed).
    pub async fn step_done(
        &self,
        id: i64,
        step_id: &str,
        status: StepStatus,
        result: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let updated = sqlx::query(SQL.step_done)
            .bind(status.as_str())
            .bind(result)
            .bind(now_ms)
            .bind(id)
            .bind(step_id)
            .execute(&self.pool)
            .await
            .map_err(db)?
            .rows_affected();
        if updated == 0 {
            return Err(StoreError::NotFound(format!(
                "step {step_id:?} of rollout id {id} (commit its intent first)"
            )));
        }
        Ok(())
    }

    /// The rollout row's steps, in the order their intents were committed.
    pub async fn steps(&self, id: i64) -> Result<Vec<StepRow>, StoreError> {
        sqlx::query_as(SQL.steps)
            .bind(id)
            .fetch_all(&self.pool)
            .await
            .map_err(db)
    }

    /// The rollout row's audit log, by seq.
    pub async fn audit(&self, id: i64) -> Result<Vec<AuditRow>, StoreError> {
        let records: Vec<AuditRecord> = sqlx::query_as(SQL.audit)
            .bind(id)
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        records
            .into_iter()
            .map(|record| {
                let AuditRecord {
                    seq,
                    event,
                    progress,
                } = record;
                let progress = serde_json::from_str(&progress).map_err(|e| {
                    StoreError::Db(format!(
                        "audit event {seq} of rollout id {id} has unreadable progress: {e}"
                    ))
                })?;
                Ok(AuditRow {
                    seq,
                    event: AuditEvent { progress, ..event },
                })
            })
            .collect()
    }

    /// The rollout row's kept measurements, in the order they were recorded.
    pub async fn measurements(&self, id: i64) -> Result<Vec<MeasurementRow>, StoreError> {
        sqlx::query_as(SQL.measurements)
            .bind(id)
            .fetch_all(&self.pool)
            .await
            .map_err(db)
    }

    /// Leave an action for the runner of the run `rollout_id`; returns its id. Fails with
    /// [`StoreError::NotFound`] when there is no such run.
    pub async fn request_action(
        &self,
        rollout_id: i64,
        action: &str,
        actor: &str,
        reason: &str,
        now_ms: i64,
    ) -> Result<i64, StoreError> {
        sqlx::query_scalar(SQL.request_action)
            .bind(action)
            .bind(actor)
            .bind(reason)
            .bind(now_ms)
            .bind(rollout_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?
            .ok_or_else(|| StoreError::NotFound(format!("rollout row {rollout_id}")))
    }

    /// Actions requested for the run `rollout_id` and not yet consumed, oldest first.
    pub async fn pending_actions(&self, rollout_id: i64) -> Result<Vec<ActionRequest>, StoreError> {
        sqlx::query_as(SQL.pending_actions)
            .bind(rollout_id)
            .fetch_all(&self.pool)
            .await
            .map_err(db)
    }

    /// Record a runner that starts driving runs on this store, its first heartbeat at
    /// `now_ms`; its row.
    pub async fn register_runner(
        &self,
        runner: NewRunner<'_>,
        now_ms: i64,
    ) -> Result<RunnerRow, StoreError> {
        sqlx::query_as(SQL.register_runner)
            .bind(runner.host)
            .bind(runner.pid)
            .bind(runner.command)
            .bind(runner.version)
            .bind(now_ms)
            .bind(now_ms)
            .bind(runner.period_ms)
            .fetch_one(&self.pool)
            .await
            .map_err(db)
    }

    /// The runner `id` is alive at `now_ms`. Fails with [`StoreError::NotFound`] when there
    /// is no such runner or it was marked stopped.
    pub async fn heartbeat(&self, id: i64, now_ms: i64) -> Result<(), StoreError> {
        let updated = sqlx::query(SQL.heartbeat)
            .bind(now_ms)
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(db)?
            .rows_affected();
        if updated == 0 {
            return Err(StoreError::NotFound(format!("running runner {id}")));
        }
        Ok(())
    }

    /// The runner `id` stopped cleanly at `now_ms` (its last heartbeat too).
    pub async fn runner_stopped(&self, id: i64, now_ms: i64) -> Result<(), StoreError> {
        sqlx::query(SQL.runner_stopped)
            .bind(now_ms)
            .bind(now_ms)
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(())
    }

    /// The runner `runner` drives the run `rollout_id` from now on (whoever drove it
    /// before). Not a transition: neither the generation nor `updated_ms` changes.
    pub async fn claim_run(&self, rollout_id: i64, runner: i64) -> Result<(), StoreError> {
        let updated = sqlx::query(SQL.claim_run)
            .bind(runner)
            .bind(rollout_id)
            .execute(&self.pool)
            .await
            .map_err(db)?
            .rows_affected();
        if updated == 0 {
            return Err(StoreError::NotFound(format!("rollout row {rollout_id}")));
        }
        Ok(())
    }

    /// The runner `runner` no longer drives the run `rollout_id` (its driver gave up on
    /// it); a claim another runner made since is left alone.
    pub async fn release_run(&self, rollout_id: i64, runner: i64) -> Result<(), StoreError> {
        sqlx::query(SQL.release_run)
            .bind(rollout_id)
            .bind(runner)
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(())
    }

    /// Whether this store records runners. A store written before runners were recorded
    /// and opened with [`Store::open_existing`] (which does not migrate) does not.
    pub async fn tracks_runners(&self) -> Result<bool, StoreError> {
        let tables: i64 = sqlx::query_scalar(SQL.tracks_runners)
            .fetch_one(&self.pool)
            .await
            .map_err(db)?;
        Ok(tables > 0)
    }

    /// The runner that drives (or last drove) the run `rollout_id`; `None` when no runner
    /// claimed it, or the store does not record runners.
    pub async fn runner_of(&self, rollout_id: i64) -> Result<Option<RunnerRow>, StoreError> {
        if !self.tracks_runners().await? {
            return Ok(None);
        }
        sqlx::query_as(SQL.runner_of)
            .bind(rollout_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)
    }

    /// The runner of every unfinished run that has one, by rollout row id (empty when the
    /// store does not record runners).
    pub async fn drivers(&self) -> Result<BTreeMap<i64, RunnerRow>, StoreError> {
        if !self.tracks_runners().await? {
            return Ok(BTreeMap::new());
        }
        let rows: Vec<Driver> = sqlx::query_as(SQL.drivers)
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        Ok(rows.into_iter().map(|d| (d.rollout_id, d.runner)).collect())
    }
}

/// A row of the `drivers` query: a run's id and its runner.
#[derive(sqlx::FromRow)]
struct Driver {
    rollout_id: i64,
    #[sqlx(flatten)]
    runner: RunnerRow,
}

/// [`Store::commit`]'s writes, inside the caller's transaction (the generation check is
/// its first statement, a write, so the transaction holds the write lock from there on).
async fn commit_in(
    tx: &mut Tx<'_>,
    id: i64,
    expected_generation: i64,
    commit: Commit<'_>,
    now_ms: i64,
) -> Result<i64, StoreError> {
    let bumped = sqlx::query(SQL.bump_generation)
        .bind(commit.checkpoint)
        .bind(commit.state)
        .bind(i64::from(commit.finished))
        .bind(now_ms)
        .bind(id)
        .bind(expected_generation)
        .execute(&mut **tx)
        .await
        .map_err(db)?
        .rows_affected();
    if bumped != 1 {
        let found: Option<(String, i64)> = sqlx::query_as(SQL.generation_of)
            .bind(id)
            .fetch_optional(&mut **tx)
            .await
            .map_err(db)?;
        // Dropping the transaction rolls it back; nothing was written.
        return Err(match found {
            None => StoreError::NotFound(format!("rollout id {id}")),
            Some((rollout, found)) => StoreError::Conflict {
                rollout,
                expected: expected_generation,
                found,
            },
        });
    }

    if let Some(spec) = commit.spec {
        sqlx::query(SQL.replace_spec)
            .bind(spec)
            .bind(id)
            .execute(&mut **tx)
            .await
            .map_err(db)?;
    }
    append_events(tx, id, commit.events).await?;
    insert_measurements(tx, id, commit.measurements).await?;
    insert_intents(tx, id, commit.step_intents, now_ms).await?;
    consume_actions(tx, id, commit.consumed_actions, now_ms).await?;

    Ok(expected_generation + 1)
}

/// Insert run `row.after + 1` with its first audit event, or fail with
/// [`StoreError::RunTaken`] (the caller's transaction is then dropped: nothing written).
async fn insert_after(
    tx: &mut Tx<'_>,
    row: NewRow<'_>,
    now_ms: i64,
) -> Result<RolloutRow, StoreError> {
    let created: RolloutRow = sqlx::query_as(SQL.create_rollout)
        .bind(row.name)
        .bind(row.spec)
        .bind(row.checkpoint)
        .bind(row.state)
        .bind(now_ms)
        .bind(now_ms)
        .bind(row.name)
        .fetch_one(&mut **tx)
        .await
        .map_err(db)?;
    if Some(created.run) != row.after.checked_add(1) {
        return Err(StoreError::RunTaken {
            rollout: row.name.to_string(),
            run: row.after.saturating_add(1),
            latest: created.run.saturating_sub(1),
        });
    }
    append_events(tx, created.id, std::slice::from_ref(row.event)).await?;
    Ok(created)
}

/// An audit row as stored: the event with its progress still JSON text.
#[derive(sqlx::FromRow)]
struct AuditRecord {
    seq: i64,
    #[sqlx(flatten)]
    event: AuditEvent,
    progress: String,
}

type Tx<'c> = sqlx::Transaction<'c, sqlx::Sqlite>;

/// Append events with the next gapless seqs (the caller holds the write lock).
async fn append_events(tx: &mut Tx<'_>, id: i64, events: &[AuditEvent]) -> Result<(), StoreError> {
    for event in events {
        let progress = serde_json::to_string(&event.progress)
            .map_err(|e| StoreError::Db(format!("cannot serialise audit progress: {e}")))?;
        sqlx::query(SQL.append_event)
            .bind(id)
            .bind(event.at_ms)
            .bind(&event.actor)
            .bind(&event.action)
            .bind(&event.reason)
            .bind(&event.state_before)
            .bind(&event.state_after)
            .bind(progress)
            .bind(id)
            .execute(&mut **tx)
            .await
            .map_err(db)?;
    }
    Ok(())
}

/// Insert measurements, then prune each touched (phase, metric) to its failures plus the
/// last `retention` others (the retention of the batch's last row for that key wins).
async fn insert_measurements(
    tx: &mut Tx<'_>,
    id: i64,
    measurements: &[MeasurementRow],
) -> Result<(), StoreError> {
    let mut touched: BTreeMap<(i64, &str), i64> = BTreeMap::new();
    for m in measurements {
        sqlx::query(SQL.insert_measurement)
            .bind(id)
            .bind(m.phase_index)
            .bind(&m.metric)
            .bind(m.index)
            .bind(m.at_ms)
            .bind(&m.verdict)
            .bind(m.value)
            .bind(&m.message)
            .bind(&m.details)
            .bind(m.retention)
            .execute(&mut **tx)
            .await
            .map_err(db)?;
        touched.insert((m.phase_index, m.metric.as_str()), m.retention.max(0));
    }
    for ((phase_index, metric), retention) in touched {
        sqlx::query(SQL.prune_measurements)
            .bind(id)
            .bind(phase_index)
            .bind(metric)
            .bind(id)
            .bind(phase_index)
            .bind(metric)
            .bind(retention)
            .execute(&mut **tx)
            .await
            .map_err(db)?;
    }
    Ok(())
}

/// Record step intents; a step already known (intent, applied or failed) is left alone.
async fn insert_intents(
    tx: &mut Tx<'_>,
    id: i64,
    intents: &[(String, String)],
    now_ms: i64,
) -> Result<(), StoreError> {
    if intents.is_empty() {
        return Ok(());
    }
    let mut ordinal: i64 = sqlx::query_scalar(SQL.last_ordinal)
        .bind(id)
        .fetch_one(&mut **tx)
        .await
        .map_err(db)?;
    for (step_id, step) in intents {
        let inserted = sqlx::query(SQL.insert_intent)
            .bind(id)
            .bind(step_id)
            .bind(ordinal + 1)
            .bind(step)
            .bind(now_ms)
            .execute(&mut **tx)
            .await
            .map_err(db)?
            .rows_affected();
        ordinal += i64::try_from(inserted).unwrap_or(1);
    }
    Ok(())
}

/// Mark actions consumed by rollout row `id`; an action consumed already stays as it was.
async fn consume_actions(
    tx: &mut Tx<'_>,
    id: i64,
    actions: &[i64],
    now_ms: i64,
) -> Result<(), StoreError> {
    for &action in actions {
        let updated = sqlx::query(SQL.consume_action)
            .bind(id)
            .bind(now_ms)
            .bind(action)
            .bind(id)
            .execute(&mut **tx)
            .await
            .map_err(db)?
            .rows_affected();
        if updated == 0 {
            let found: Option<(i64, Option<i64>)> = sqlx::query_as(SQL.action_owner)
                .bind(action)
                .fetch_optional(&mut **tx)
                .await
                .map_err(db)?;
            let Some((target, consumed_by)) = found else {
                return Err(StoreError::NotFound(format!("action request {action}")));
            };
            // Taking one's own request twice is harmless; another run's request never is.
            if target != id || consumed_by.is_some_and(|c| c != id) {
                return Err(StoreError::Db(format!(
                    "action request {action} is for rollout row {target}, not {id}"
                )));
            }
        }
    }
    Ok(())
}

/// Turn a migration failure into a message that names the fix.
fn migrate_error(path: &str, e: sqlx::migrate::MigrateError) -> StoreError {
    use sqlx::migrate::MigrateError as M;
    StoreError::Migrate(match e {
        M::VersionMissing(n) => format!(
            "the store at {path} is from a newer rollgate (migration {n} unknown): \
             upgrade rollgate or use another --store file"
        ),
        M::VersionMismatch(n) => format!(
            "the store at {path} was written by a different build of rollgate \
             (migration {n} differs): use the rollgate that created it or another --store file"
        ),
        M::Dirty(n) => format!(
            "the store at {path} has a half-applied migration {n} (an upgrade was interrupted): \
             restore it from a backup or use another --store file"
        ),
        other => format!(
            "cannot update the schema of the store at {path}: {other}; \
             check the file is a rollgate store and writable, or use another --store file"
        ),
    })
}

#[cfg(test)]
mod tests;
