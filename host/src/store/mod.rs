//! The store: rollouts, their checkpoints, the audit log, measurements, the step ledger and
//! pending operator actions, in one SQLite file or one PostgreSQL database.
//!
//! The engine commits every transition *before* applying its effect, so after a crash the
//! runner resumes every unfinished rollout from its last checkpoint, applies no step twice
//! and loses no audit event. This module is what makes that promise hold:
//!
//! - every [`Store::commit`] in a transaction: the checkpoint, its audit events,
//!   measurements (and their series' points), step intents and consumed actions land
//!   together or not at all — the commits queued at once share one transaction (group
//!   commit, [`group`]), each still checked and refused alone;
//! - an optimistic `generation` per rollout: a commit names the generation it started from,
//!   so two runners can never both advance one rollout ([`StoreError::Conflict`]);
//! - durable writes (WAL, `synchronous=FULL`) and a busy timeout, so a second process (the
//!   CLI requesting an action) can write while a runner commits;
//! - two connection pools: writes (and every transaction) on one, reads on the other, so a
//!   reader (the API, the web view) never queues behind the commits of a busy fleet.
//!
//! The queries are plain SQL with portable types (64-bit integers, TEXT, one nullable
//! float, booleans as 0/1) so that SQLite and PostgreSQL share them ([`db`]); the pool type
//! stays private to [`Store`]. This module knows nothing about what a checkpoint or a step
//! *means*: both are JSON text the engine owns.
//!
//! Files:
//! - `mod.rs`: the rows ([`RolloutRow`], [`AuditRow`], … read with `sqlx::FromRow`), the
//!   [`StoreError`], and [`Store`] — opening (one connection-options builder), the one
//!   filtered query behind every listing of rollouts, and the smaller reads/writes;
//! - `commit.rs`: the commit path ([`Store::commit`], [`Commit`], a run created after
//!   another with [`NewRow`]): one transaction for a transition's every write;
//! - `group.rs`: the committer task that writes the commits and creations queued while its
//!   previous transaction was in flight in one transaction, and answers each alone;
//! - `runners.rs`: runners, their heartbeat and the runs they claim ([`RunnerRow`]);
//! - `leases.rs`: which runner holds each unfinished run, until when on the database's
//!   clock, under which epoch ([`Lease`]); commits are fenced by the epoch;
//! - `invalid.rs`: rollouts in the state `invalid-spec` ([`InvalidSpec`]) and the
//!   numbered configurations runners loaded;
//! - `outbox.rs`: the webhook outbox ([`OutboxItem`], [`Store::claim_outbox`]): the
//!   notifications commits queue, claimed and marked by every runner's deliverer;
//! - `series.rs`: the series of every metric of a run ([`SeriesPoint`], [`Store::series`]):
//!   a point per measurement, appended by the commit, at most 1,000 per metric;
//! - `listing.rs`: what changed since a time, for the web view's list and events
//!   ([`ListedRow`], [`Changed`]);
//! - `sql.rs`: the SQL text of every statement, one field per statement in a `Sql` value
//!   per dialect (SQLite and PostgreSQL); `db.rs` runs a statement on either;
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

mod commit;
mod db;
mod group;
mod invalid;
mod leases;
mod listing;
mod notices;
mod outbox;
mod runners;
mod series;
mod sql;

pub use commit::{Commit, NewRow};
pub use invalid::InvalidSpec;
pub use leases::{Lease, LeaseState};
pub use listing::{Changed, ListedRow};
pub use notices::{Listener, Notice};
pub use outbox::{Claimed, OutboxItem, OutboxRow};
pub use runners::{Claims, NewRunner, RunnerRow};
pub use series::{CAP as SERIES_CAP, SeriesPoint};

use commit::append_events;
use db::{Pool, Scalar, query, query_as, query_scalar};

use serde::{Deserialize, Serialize};
use sql::Filter;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

/// How long a writer waits for another connection or process holding the write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Connections per [`Store`] for writes; SQLite serialises writers anyway.
const MAX_CONNECTIONS: u32 = 4;

/// Connections per [`Store`] for reads: their own pool, so that a read never waits in line
/// behind the commits of a busy fleet (in WAL mode SQLite readers do not wait for writers).
const MAX_READERS: u32 = 4;

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
    /// A row with the same key exists (another process wrote it first): a query failed
    /// on a unique constraint. Said like [`StoreError::Db`]; callers that expect the race
    /// turn it into what it means (a run created twice: [`StoreError::RunTaken`]).
    #[error("store database error: {0}")]
    Duplicate(String),
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
    /// The runner's lease on the run is gone: another runner claimed it since (a new
    /// epoch), so this runner must stop driving it; nothing was written.
    #[error(
        "rollout {rollout} is driven by another runner now (lease epoch {holder}; this runner \
         held epoch {epoch}, its lease expired or was taken): this runner stops driving it and \
         wrote nothing"
    )]
    Fenced {
        /// The rollout's name.
        rollout: String,
        /// The epoch the writer held.
        epoch: i64,
        /// The run's epoch in the store.
        holder: i64,
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
    match &e {
        sqlx::Error::Database(d) if d.is_unique_violation() => StoreError::Duplicate(e.to_string()),
        _ => StoreError::Db(e.to_string()),
    }
}

/// A driver's error text with the URL's password removed, should the driver quote it.
fn redact_error(message: &str, url: &str) -> String {
    let password = url
        .split_once("://")
        .and_then(|(_, rest)| rest.rsplit_once('@'))
        .and_then(|(user_info, _)| user_info.split_once(':'))
        .map(|(_, password)| password)
        .filter(|p| !p.is_empty());
    match password {
        Some(p) => message.replace(p, "***"),
        None => message.to_string(),
    }
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

/// A handle on one store — a SQLite file or a PostgreSQL database; cheap to clone, safe to
/// share between tasks, and other processes may use the same store at the same time.
#[derive(Debug, Clone)]
pub struct Store {
    /// Reads (every query outside a transaction that writes nothing).
    pool: Pool,
    /// Writes and transactions: commits, creations, actions, runners, migrations. For
    /// PostgreSQL the same pool as `pool` (its readers never wait for writers).
    writer: Pool,
    /// Leases and heartbeats: their own connection (opened when first used), so that a
    /// renewal never waits in line behind thousands of commits — a renewal that came back
    /// late would make the runner stop driving its own runs.
    liveness: Pool,
    /// The file, or the database URL without its password.
    location: Location,
    /// The group committer: every commit and creation of this process, batched.
    committer: std::sync::Arc<group::Committer>,
    /// SQLite: connections on blocking threads for the liveness statements that return a
    /// row per run held (see [`db::DirectPool`]); PostgreSQL: `None` (`liveness`).
    bulk: Option<std::sync::Arc<db::DirectPool>>,
}

/// Where a store lives, as `--store FILE` or `--db URL` names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A SQLite file (created when a runner opens it).
    File(PathBuf),
    /// A PostgreSQL database: `postgres://USER[:PASSWORD]@HOST[:PORT]/DB[?…]`.
    Postgres(String),
}

impl Location {
    /// `--store`/`--db`'s value: a `postgres://` (or `postgresql://`) URL, else a SQLite
    /// file path (`sqlite:PATH` and `sqlite://PATH` are accepted too).
    pub fn parse(text: &str) -> Location {
        if text.starts_with("postgres://") || text.starts_with("postgresql://") {
            Location::Postgres(text.to_string())
        } else {
            let path = text
                .strip_prefix("sqlite://")
                .or_else(|| text.strip_prefix("sqlite:"))
                .unwrap_or(text);
            Location::File(PathBuf::from(path))
        }
    }

    /// Whether there is a store to read: a file that exists, or any database (whether it
    /// answers is known when it is opened).
    pub fn exists(&self) -> bool {
        match self {
            Location::File(path) => path.exists(),
            Location::Postgres(_) => true,
        }
    }
}

impl FromStr for Location {
    type Err = String;

    /// [`Location::parse`], refusing an empty path and a URL of another database.
    fn from_str(text: &str) -> Result<Location, String> {
        let location = Location::parse(text);
        match &location {
            Location::File(path) if path.as_os_str().is_empty() => Err(format!(
                "{text:?} names no store: give a file path (rollgate.db) or a \
                 postgres://USER@HOST/DATABASE URL"
            )),
            Location::File(path) if path.to_string_lossy().contains("://") => Err(format!(
                "{}: only SQLite files and PostgreSQL (postgres://…) stores are supported",
                redact_url(text)
            )),
            _ => Ok(location),
        }
    }
}

impl fmt::Display for Location {
    /// The file's path, or the URL with its password replaced by `***` (what errors and
    /// logs may show).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::File(path) => write!(f, "{}", path.display()),
            Location::Postgres(url) => f.write_str(&redact_url(url)),
        }
    }
}

/// A database URL with any password replaced by `***`: `postgres://u:***@h/db`. A URL
/// that cannot be read is shown as its scheme only.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "<database URL>".into();
    };
    // Credentials end at the *last* '@': a password may hold an unencoded '@', '/' or '?'
    // (a URL parser would refuse it, but the error must not show it either). When a query
    // value holds an '@', more is hidden than needed, never less.
    match rest.rsplit_once('@') {
        Some((user_info, host_and_tail)) => {
            let user = user_info.split_once(':').map_or(user_info, |(u, _)| u);
            let user = user.split(['/', '?', '#']).next().unwrap_or_default();
            let tail = redact_query(host_and_tail);
            if user_info.contains(':') {
                format!("{scheme}://{user}:***@{tail}")
            } else {
                format!("{scheme}://{user}@{tail}")
            }
        }
        None => format!("{scheme}://{}", redact_query(rest)),
    }
}

/// A URL's path and query with the value of any `password` parameter replaced.
fn redact_query(tail: &str) -> String {
    let Some((path, query)) = tail.split_once('?') else {
        return tail.to_string();
    };
    let params: Vec<String> = query
        .split('&')
        .map(|p| match p.split_once('=') {
            Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
            _ => p.to_string(),
        })
        .collect();
    format!("{path}?{}", params.join("&"))
}

/// Connections per [`Store`] on PostgreSQL (reads and writes share them).
const PG_CONNECTIONS: u32 = 10;

/// How long a PostgreSQL transaction of the store may sit idle before the server ends it.
const PG_IDLE_IN_TRANSACTION: &str = "5s";

/// How long opening a PostgreSQL store waits for its first connection.
const PG_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

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
        store.migrate().await?;
        Ok(store)
    }

    /// Open the store at `location` to run rollouts: a SQLite file ([`Store::open_durable`])
    /// or a PostgreSQL database ([`Store::open_postgres`]), brought up to date.
    pub async fn open_at(location: &Location, full_sync: bool) -> Result<Store, StoreError> {
        match location {
            Location::File(path) => Store::open_durable(path, full_sync).await,
            Location::Postgres(url) => Store::open_postgres(url, true).await,
        }
    }

    /// Open the store at `location` to read it ([`Store::open_existing`] for a file; a
    /// PostgreSQL database is opened without migrating).
    pub async fn open_existing_at(location: &Location) -> Result<Store, StoreError> {
        match location {
            Location::File(path) => Store::open_existing(path).await,
            Location::Postgres(url) => Store::open_postgres(url, false).await,
        }
    }

    /// Connect to a PostgreSQL database and, when `migrate`, bring its schema up to date
    /// (PostgreSQL migrations take a lock: several runners starting at once are safe).
    pub async fn open_postgres(url: &str, migrate: bool) -> Result<Store, StoreError> {
        let location = Location::Postgres(url.to_string());
        let open_error = |message: String| StoreError::Open {
            path: location.to_string(),
            message,
        };
        let options = PgConnectOptions::from_str(url).map_err(|e| {
            open_error(format!(
                "not a PostgreSQL URL ({}); expected postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE",
                redact_error(&e.to_string(), url)
            ))
        })?;
        // A runner frozen (SIGSTOP, a VM pause) in the middle of a transaction would keep
        // its row locks, and no other runner could take those runs over; the server ends
        // such a transaction instead (the store's transactions never idle for long).
        let options = options.options([(
            "idle_in_transaction_session_timeout",
            PG_IDLE_IN_TRANSACTION,
        )]);
        let options_for_liveness = options.clone();
        let pool = PgPoolOptions::new()
            .max_connections(PG_CONNECTIONS)
            .acquire_timeout(PG_CONNECT_TIMEOUT)
            .connect_with(options)
            .await
            .map_err(|e| open_error(redact_error(&e.to_string(), url)))?;
        let liveness = Pool::Postgres(
            PgPoolOptions::new()
                .max_connections(2)
                .acquire_timeout(PG_CONNECT_TIMEOUT)
                .connect_lazy_with(options_for_liveness),
        );
        let pool = Pool::Postgres(pool);
        let store = Store {
            pool: pool.clone(),
            committer: std::sync::Arc::new(group::Committer::new(pool.clone(), None)),
            bulk: None,
            writer: pool,
            liveness,
            location: location.clone(),
        };
        if migrate {
            store.migrate().await?;
        }
        Ok(store)
    }

    /// Bring the schema up to date with the dialect's migrations (closing the store when
    /// that fails).
    async fn migrate(&self) -> Result<(), StoreError> {
        let result = match &self.writer {
            Pool::Sqlite(p) => sqlx::migrate!("./migrations").run(p).await,
            Pool::Postgres(p) => sqlx::migrate!("./pg-migrations").run(p).await,
        };
        if let Err(e) = result {
            self.pool.close().await;
            self.writer.close().await;
            return Err(migrate_error(&self.location.to_string(), e));
        }
        Ok(())
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
        let open = |max: u32, options: SqliteConnectOptions| async move {
            SqlitePoolOptions::new()
                .max_connections(max)
                .connect_with(options)
                .await
                .map_err(|e| StoreError::Open {
                    path: path.display().to_string(),
                    message: e.to_string(),
                })
        };
        // The writer first: it creates the file.
        let writer = open(MAX_CONNECTIONS, options.clone()).await?;
        let pool = match open(MAX_READERS, options.clone().create_if_missing(false)).await {
            Ok(pool) => pool,
            Err(e) => {
                writer.close().await;
                return Err(e);
            }
        };
        let liveness = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_lazy_with(options.clone().create_if_missing(false));
        let writer = Pool::Sqlite(writer);
        let direct = group::DirectOptions {
            path: path.to_path_buf(),
            full_sync: !matches!(mode, Mode::Create(SqliteSynchronous::Normal)),
            busy_timeout: BUSY_TIMEOUT,
        };
        Ok(Store {
            pool: Pool::Sqlite(pool),
            committer: std::sync::Arc::new(group::Committer::new(
                writer.clone(),
                Some(direct.clone()),
            )),
            bulk: Some(std::sync::Arc::new(db::DirectPool::new(direct))),
            writer,
            liveness: Pool::Sqlite(liveness),
            location: Location::File(path.to_path_buf()),
        })
    }

    /// Where this store lives.
    pub fn location(&self) -> &Location {
        &self.location
    }

    /// Whether every process using this store runs on this machine: a SQLite file is
    /// (a runner whose process is gone from this machine can be taken over at once); a
    /// database server is not (only an expired lease says a runner is gone).
    pub fn is_local(&self) -> bool {
        matches!(self.location, Location::File(_))
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
        let mut tx = self.writer.begin().await?;
        let rollout: RolloutRow = query_as(|s| s.create_rollout)
            .bind(name)
            .bind(spec)
            .bind(checkpoint)
            .bind(state)
            .bind(now_ms)
            .bind(now_ms)
            .bind(name)
            .fetch_one(&mut tx)
            .await?;
        append_events(&mut tx, rollout.id, std::slice::from_ref(event)).await?;
        tx.commit().await?;
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

    /// The latest run of every rollout, by id: one query for what a runner starting on a
    /// folder of thousands of rollouts would otherwise ask [`Store::latest`] one by one.
    pub async fn latest_all(&self) -> Result<Vec<RolloutRow>, StoreError> {
        self.rollouts(Filter::LatestAll).await
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
        let query = query_as(|s| s.rollouts.query(filter));
        let query = match filter {
            Filter::Id(id) => query.bind(id),
            Filter::Runs(name) | Filter::Latest(name) => query.bind(name),
            Filter::All | Filter::Unfinished | Filter::LatestAll => query,
        };
        query.fetch_all(&self.pool).await
    }

    /// Record a step's outcome (after its intent was committed), if the run's lease epoch
    /// is still `epoch` ([`StoreError::Fenced`] otherwise; `None` checks no lease).
    pub async fn step_done(
        &self,
        id: i64,
        step_id: &str,
        status: StepStatus,
        result: &str,
        now_ms: i64,
        epoch: Option<i64>,
    ) -> Result<(), StoreError> {
        let updated = query(|s| s.step_done)
            .bind(status.as_str())
            .bind(result)
            .bind(now_ms)
            .bind(id)
            .bind(step_id)
            .bind(epoch)
            .bind(epoch)
            .bind(id)
            .execute(&self.writer)
            .await?;
        if updated == 0 {
            if let Some(epoch) = epoch
                && let Some(lease) = self.lease_of(id).await?
                && lease.epoch != epoch
            {
                let rollout = self.get(id).await?.map(|r| r.name).unwrap_or_default();
                return Err(StoreError::Fenced {
                    rollout,
                    epoch,
                    holder: lease.epoch,
                });
            }
            return Err(StoreError::NotFound(format!(
                "step {step_id:?} of rollout id {id} (commit its intent first)"
            )));
        }
        Ok(())
    }

    /// The rollout row's steps, in the order their intents were committed.
    pub async fn steps(&self, id: i64) -> Result<Vec<StepRow>, StoreError> {
        query_as(|s| s.steps).bind(id).fetch_all(&self.pool).await
    }

    /// The rollout row's audit log, by seq.
    pub async fn audit(&self, id: i64) -> Result<Vec<AuditRow>, StoreError> {
        let records: Vec<AuditRecord> =
            query_as(|s| s.audit).bind(id).fetch_all(&self.pool).await?;
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
        query_as(|s| s.measurements)
            .bind(id)
            .fetch_all(&self.pool)
            .await
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
        query_scalar(|s| s.request_action)
            .bind(action)
            .bind(actor)
            .bind(reason)
            .bind(now_ms)
            .bind(rollout_id)
            .optional(&self.writer)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("rollout row {rollout_id}")))
    }

    /// Actions requested for the run `rollout_id` and not yet consumed, oldest first.
    pub async fn pending_actions(&self, rollout_id: i64) -> Result<Vec<ActionRequest>, StoreError> {
        query_as(|s| s.pending_actions)
            .bind(rollout_id)
            .fetch_all(&self.pool)
            .await
    }

    /// The rollout row id of every run with an action request not yet consumed, in one
    /// query: what a server polls for all its runs at once (requests another process wrote).
    pub async fn runs_with_actions(&self) -> Result<Vec<i64>, StoreError> {
        // On a start, every run resumed reads itself through the pool at the same moment:
        // on SQLite this one query goes on its own connection instead of queueing behind
        // them (the server is not ready until it answers).
        let ids: Vec<(i64,)> = match &self.bulk {
            Some(bulk) => {
                bulk.run(|writer| {
                    futures::executor::block_on(
                        query_as(|s| s.runs_with_actions).fetch_all(&mut *writer),
                    )
                })
                .await?
            }
            None => {
                query_as(|s| s.runs_with_actions)
                    .fetch_all(&self.pool)
                    .await?
            }
        };
        Ok(ids.into_iter().map(|(id,)| id).collect())
    }
}

/// An audit row as stored: the event with its progress still JSON text.
#[derive(sqlx::FromRow)]
struct AuditRecord {
    seq: i64,
    #[sqlx(flatten)]
    event: AuditEvent,
    progress: String,
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
