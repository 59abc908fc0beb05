//! Group commit: the commits ([`Store::commit`]) and creations ([`Store::create_after`]) of
//! every run a process drives go through one committer task, which writes all those queued
//! while its previous transaction was in flight in one transaction.
//!
//! A busy fleet commits thousands of transitions a second; one transaction each costs a
//! `BEGIN`/`COMMIT` pair, a write-lock round and (SQLite) the WAL frames of every page it
//! touched — the same pages (the `rollouts` table, the indexes) rewritten by each. In one
//! transaction they are written once. What each caller sees does not change:
//!
//! - each commit is still checked and fenced alone: its generation check (and lease epoch)
//!   is its first statement, and a commit refused there ([`StoreError::Conflict`],
//!   [`StoreError::Fenced`], [`StoreError::NotFound`]) has written nothing, so it fails
//!   alone while the others of the batch land;
//! - a commit's writes (checkpoint, audit events, outbox, measurements, intents, actions)
//!   are in the same transaction as its generation bump: they land together or not at all;
//! - a caller is answered only after the batch's `COMMIT` returned, so its commit is as
//!   durable as the store's `synchronous` setting (or PostgreSQL's) makes any commit;
//! - any other failure inside a batch (a database error, a creation that met another run)
//!   rolls the whole batch back and each of its jobs is then written alone, in its own
//!   transaction, so that the error reaches only the caller it belongs to — until one of
//!   them fails alone on a database error (not a refusal: the database busy past its
//!   timeout, I/O, a lost connection), which then answers every job left at once rather
//!   than making each wait its own timeout (a server drives those runs again from their
//!   checkpoints). No job is lost
//!   (each is written or answered with its error) or doubled (a batch either committed, and
//!   its jobs were answered, or it did not, and they are retried; a retry of a commit that
//!   did land, had a `COMMIT` failed after writing, meets its own bumped generation and is
//!   refused as a [`StoreError::Conflict`] instead of writing twice).
//!
//! On PostgreSQL the committer is a task, started by the first commit (in that commit's
//! tokio runtime) and started again if its runtime ended; it holds one writer connection
//! only while it writes. A store may have several such lanes (a run's jobs always on the
//! same one): see `PG_LANES`.
//!
//! On SQLite the committer is a thread with its own connection ([`Writer::Direct`]),
//! started by the first commit and ending when the store's last handle is dropped. Every
//! statement of a batch runs in place on that thread: through sqlx's SQLite driver each
//! one (5–7 a commit) was handed to the driver's worker thread and its answer handed back,
//! and at 100,000 rollouts those hand-offs — not SQLite — were most of the process's CPU
//! and capped it at ~4,000 commits a second. Other writes (leases, actions, tools) keep
//! their sqlx connections and meet the committer's at SQLite's write lock, each waiting for
//! the other up to the busy timeout as before.

use super::commit::{Commit, NewRow, bump, insert_after, write_rest};
use super::db::{Pool, Tx, Writer};
use super::{AuditEvent, MeasurementRow, OutboxItem, RolloutRow, StoreError};
use std::path::PathBuf;
use tokio::sync::{mpsc, oneshot};

/// At most this many jobs per transaction, so that the write lock is given up now and then
/// (another process — the CLI asking for an action — waits for it).
const MAX_BATCH: usize = 512;

/// Committers per PostgreSQL store (a run's jobs always go to the same lane, by row id, so
/// its commits stay in order; SQLite has one writer at a time: one lane). Each statement
/// is a round trip, so more lanes could keep up with more commits — but in the shared
/// PostgreSQL bench (3 runners and the database on one loaded 2-core machine) four lanes
/// were worse than one on every figure (ready in 53–60 s against 22 s, takeover 16.6–20.4 s
/// against 13.8 s, lag p99 467–787 ms against 239 ms): one, until a quieter measurement
/// says otherwise.
const PG_LANES: usize = 1;

/// The sending side of the committers, shared by every clone of a [`super::Store`].
#[derive(Debug)]
pub(super) struct Committer {
    writer: Pool,
    /// A SQLite store's file and settings: its committer writes on its own connection.
    direct: Option<DirectOptions>,
    lanes: Vec<std::sync::Mutex<Option<mpsc::UnboundedSender<Job>>>>,
}

/// The committer connection's page cache, KiB (filled only as pages are used).
const DIRECT_CACHE_KIB: i64 = 64 << 10;
/// How much of the file the committer's connection reads through a mapping.
const DIRECT_MMAP_BYTES: i64 = 1 << 30;

/// How a SQLite store's committer opens its own connection: the file (which the store's
/// pools created and migrated) and the settings they use.
#[derive(Debug, Clone)]
pub(super) struct DirectOptions {
    pub path: PathBuf,
    /// `synchronous=FULL` (every commit synced) or `NORMAL` (at WAL checkpoints).
    pub full_sync: bool,
    pub busy_timeout: std::time::Duration,
}

/// Open a connection of the store's own — its committer's, or its leases'
/// ([`super::db::DirectPool`]) — to an existing SQLite store, with the pools' settings:
/// foreign keys on, the busy timeout, `synchronous` (WAL mode is the file's, set when the
/// pools opened it).
pub(super) fn open_direct(options: &DirectOptions) -> Result<rusqlite::Connection, StoreError> {
    use rusqlite::OpenFlags;
    let fail = |e: rusqlite::Error| StoreError::Open {
        path: options.path.display().to_string(),
        message: format!("a connection of the store's own (its committer's or its leases'): {e}"),
    };
    let conn = rusqlite::Connection::open_with_flags(
        &options.path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(fail)?;
    conn.busy_timeout(options.busy_timeout).map_err(fail)?;
    conn.pragma_update(None, "foreign_keys", true)
        .map_err(fail)?;
    let sync = if options.full_sync { "FULL" } else { "NORMAL" };
    conn.pragma_update(None, "synchronous", sync)
        .map_err(fail)?;
    // The pages a batch touches (the runs' rows, the indexes, the measurements' and
    // series' tails) stay in the committer's own cache, and pages it has not cached are
    // read through a mapping instead of a `pread` each: at 20,000 rollouts the thread's
    // kernel time was half its CPU, mostly copying pages it had read before.
    conn.pragma_update(None, "cache_size", -DIRECT_CACHE_KIB)
        .map_err(fail)?;
    conn.pragma_update(None, "mmap_size", DIRECT_MMAP_BYTES)
        .map_err(fail)?;
    Ok(conn)
}

/// A [`Commit`] owned by the queue.
#[derive(Debug)]
pub(super) struct OwnedCommit {
    checkpoint: String,
    state: String,
    finished: bool,
    events: Vec<AuditEvent>,
    measurements: Vec<MeasurementRow>,
    step_intents: Vec<(String, String)>,
    consumed_actions: Vec<i64>,
    spec: Option<String>,
    outbox: Vec<OutboxItem>,
    epoch: Option<i64>,
}

impl OwnedCommit {
    pub(super) fn new(c: Commit<'_>) -> OwnedCommit {
        OwnedCommit {
            checkpoint: c.checkpoint.to_owned(),
            state: c.state.to_owned(),
            finished: c.finished,
            events: c.events.to_vec(),
            measurements: c.measurements.to_vec(),
            step_intents: c.step_intents.to_vec(),
            consumed_actions: c.consumed_actions.to_vec(),
            spec: c.spec.map(str::to_owned),
            outbox: c.outbox.to_vec(),
            epoch: c.epoch,
        }
    }

    fn commit(&self) -> Commit<'_> {
        Commit {
            checkpoint: &self.checkpoint,
            state: &self.state,
            finished: self.finished,
            events: &self.events,
            measurements: &self.measurements,
            step_intents: &self.step_intents,
            consumed_actions: &self.consumed_actions,
            spec: self.spec.as_deref(),
            outbox: &self.outbox,
            epoch: self.epoch,
        }
    }
}

/// A [`NewRow`] owned by the queue.
#[derive(Debug)]
pub(super) struct OwnedRow {
    name: String,
    spec: String,
    checkpoint: String,
    state: String,
    event: AuditEvent,
    after: i64,
}

impl OwnedRow {
    pub(super) fn new(r: NewRow<'_>) -> OwnedRow {
        OwnedRow {
            name: r.name.to_owned(),
            spec: r.spec.to_owned(),
            checkpoint: r.checkpoint.to_owned(),
            state: r.state.to_owned(),
            event: r.event.clone(),
            after: r.after,
        }
    }

    fn row(&self) -> NewRow<'_> {
        NewRow {
            name: &self.name,
            spec: &self.spec,
            checkpoint: &self.checkpoint,
            state: &self.state,
            event: &self.event,
            after: self.after,
        }
    }
}

/// One write waiting for the committer, and where its answer goes.
#[derive(Debug)]
pub(super) enum Job {
    Commit {
        id: i64,
        expected: i64,
        commit: Box<OwnedCommit>,
        now_ms: i64,
        done: oneshot::Sender<Result<i64, StoreError>>,
    },
    Create {
        row: Box<OwnedRow>,
        now_ms: i64,
        done: oneshot::Sender<Result<RolloutRow, StoreError>>,
    },
}

/// What a job wrote.
enum Done {
    Generation(i64),
    Row(Box<RolloutRow>),
}

impl Job {
    /// Give the caller its answer (a caller that stopped waiting is not told).
    fn answer(self, result: Result<Done, StoreError>) {
        match self {
            Job::Commit { done, .. } => {
                let _ = done.send(result.and_then(|d| match d {
                    Done::Generation(g) => Ok(g),
                    Done::Row(_) => Err(mismatch()),
                }));
            }
            Job::Create { done, .. } => {
                let _ = done.send(result.and_then(|d| match d {
                    Done::Row(row) => Ok(*row),
                    Done::Generation(_) => Err(mismatch()),
                }));
            }
        }
    }
}

fn mismatch() -> StoreError {
    StoreError::Db("the store's committer answered a job with another's result (a bug)".into())
}

/// What a caller is told when the committer went away before answering (its runtime is
/// shutting down): the write may or may not have landed.
pub(super) fn gone() -> StoreError {
    StoreError::Db(
        "the store's committer stopped before answering (the process is shutting down); the \
         write may or may not have landed: the run resumes from what the store holds"
            .into(),
    )
}

impl Committer {
    /// The committer of a store whose other writes go to `writer`; `direct`: a SQLite
    /// store's file, written by a committer thread on its own connection.
    pub(super) fn new(writer: Pool, direct: Option<DirectOptions>) -> Committer {
        let lanes = match writer {
            Pool::Sqlite(_) => 1,
            Pool::Postgres(_) => PG_LANES,
        };
        Committer {
            writer,
            direct,
            lanes: (0..lanes).map(|_| std::sync::Mutex::new(None)).collect(),
        }
    }

    /// Queue a job on its lane, starting that lane's committer task when there is none
    /// (or its runtime ended).
    pub(super) fn send(&self, job: Job) {
        let key = match &job {
            Job::Commit { id, .. } => id.unsigned_abs(),
            // Creations of one name on one lane (their run numbers follow each other).
            Job::Create { row, .. } => row
                .name
                .bytes()
                .fold(0_u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b))),
        };
        let lane = usize::try_from(key % self.lanes.len().max(1) as u64).unwrap_or(0);
        let Some(queue) = self.lanes.get(lane) else {
            // Not reached: `lane` is below the number of lanes, at least one.
            job.answer(Err(gone()));
            return;
        };
        let mut queue = queue.lock().unwrap_or_else(|e| e.into_inner());
        let job = match queue.as_ref() {
            Some(tx) => match tx.send(job) {
                Ok(()) => return,
                Err(mpsc::error::SendError(job)) => job,
            },
            None => job,
        };
        let (tx, rx) = mpsc::unbounded_channel();
        match &self.direct {
            Some(options) => {
                let options = options.clone();
                let started = std::thread::Builder::new()
                    .name("rollgate-committer".into())
                    .spawn(move || run_direct(&options, rx));
                if let Err(e) = started {
                    job.answer(Err(StoreError::Db(format!(
                        "cannot start the store's committer thread: {e}"
                    ))));
                    return;
                }
            }
            None => {
                tokio::spawn(run(Writer::Pool(self.writer.clone()), rx));
            }
        }
        // The receiver is alive (the committer was just given it): this cannot fail; a
        // job it returned anyway is dropped, and its caller told the committer is gone.
        let _ = tx.send(job);
        *queue = Some(tx);
    }
}

/// The committer task: every job queued while it wrote the previous batch, in one
/// transaction.
async fn run(mut writer: Writer, mut rx: mpsc::UnboundedReceiver<Job>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        write(&mut writer, &mut batch).await;
    }
}

/// The committer thread of a SQLite store: likewise, on its own connection (opened at its
/// first batch, and again at the next batch if that failed). It ends when every sender
/// is gone (the store's last handle dropped), closing its connection.
fn run_direct(options: &DirectOptions, mut rx: mpsc::UnboundedReceiver<Job>) {
    let mut writer: Option<Writer> = None;
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while let Some(job) = rx.blocking_recv() {
        batch.push(job);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let writer = match &mut writer {
            Some(writer) => writer,
            None => match open_direct(options) {
                Ok(conn) => writer.insert(Writer::Direct(conn)),
                Err(e) => {
                    let message = e.to_string();
                    for job in batch.drain(..) {
                        job.answer(Err(StoreError::Db(message.clone())));
                    }
                    continue;
                }
            },
        };
        // Every statement runs in place: the future completes without waiting.
        futures::executor::block_on(write(writer, &mut batch));
    }
}

/// Write a batch (emptying it) and answer each job.
async fn write(writer: &mut Writer, batch: &mut Vec<Job>) {
    if batch.len() > 1 {
        match together(writer, batch).await {
            Ok(results) => {
                for (job, result) in batch.drain(..).zip(results) {
                    job.answer(result);
                }
                return;
            }
            Err(e) => {
                tracing::debug!(
                    jobs = batch.len(),
                    "a group commit failed ({e}); writing its jobs one by one"
                );
            }
        }
    }
    // A database error that is not a refusal of the job (busy or locked past the busy
    // timeout, I/O, a lost connection) would most likely fail every other job the same
    // way, each after its own wait: once one job alone fails so, the rest get the same
    // error at once (their drivers try again from their checkpoints) instead of stalling
    // the committer for the batch's length times the busy timeout.
    let mut failing: Option<String> = None;
    for job in batch.drain(..) {
        if let Some(message) = &failing {
            job.answer(Err(StoreError::Db(message.clone())));
            continue;
        }
        let result = alone(writer, &job).await;
        if let Err(StoreError::Db(message)) = &result {
            failing = Some(message.clone());
        }
        job.answer(result);
    }
}

/// Every job of the batch in one transaction: the jobs' own results, or the error that
/// rolled the whole batch back.
async fn together(
    writer: &mut Writer,
    batch: &[Job],
) -> Result<Vec<Result<Done, StoreError>>, StoreError> {
    let mut tx = writer.begin().await?;
    let mut results = Vec::with_capacity(batch.len());
    for job in batch {
        results.push(write_job(&mut tx, job).await?);
    }
    tx.commit().await?;
    Ok(results)
}

/// One job in its own transaction.
async fn alone(writer: &mut Writer, job: &Job) -> Result<Done, StoreError> {
    let mut tx = writer.begin().await?;
    // Refused: nothing written, the transaction is rolled back as it drops.
    let done = write_job(&mut tx, job).await??;
    tx.commit().await?;
    Ok(done)
}

/// Write one job in `tx`: `Ok(Err(refused))` when its check refused it (a commit's
/// generation or lease epoch: nothing of it was written, the others may go on), `Err` when
/// a statement failed (the transaction must be rolled back).
async fn write_job(tx: &mut Tx<'_>, job: &Job) -> Result<Result<Done, StoreError>, StoreError> {
    match job {
        Job::Commit {
            id,
            expected,
            commit,
            now_ms,
            ..
        } => {
            let commit = commit.commit();
            if let Err(refused) = bump(tx, *id, *expected, commit, *now_ms).await? {
                return Ok(Err(refused));
            }
            write_rest(tx, *id, commit, *now_ms).await?;
            Ok(Ok(Done::Generation(expected.saturating_add(1))))
        }
        Job::Create { row, now_ms, .. } => {
            let created = insert_after(tx, row.row(), *now_ms).await?;
            Ok(Ok(Done::Row(Box::new(created))))
        }
    }
}
