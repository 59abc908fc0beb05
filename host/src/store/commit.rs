//! The commit path: one transaction per transition (or per batch of them, through the
//! committer of [`super::group`]) (the generation check, the checkpoint,
//! its audit events and their webhook notifications, measurements, step intents, consumed
//! actions), and creating the run that follows another in the same or its own transaction.

use super::db::{Scalar, query, query_as, query_scalar};
use super::group::{Job, OwnedCommit, OwnedRow, gone};
use super::{AuditEvent, MeasurementRow, RolloutRow, Store, StoreError};
use std::collections::BTreeMap;

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
    /// Measurements to record (older non-failures beyond retention are pruned); each is
    /// also a point of its metric's series, which retention does not prune.
    pub measurements: &'a [MeasurementRow],
    /// (step_id, step JSON) recorded as intents; an existing step keeps its status.
    pub step_intents: &'a [(String, String)],
    /// Action requests this transition acted on.
    pub consumed_actions: &'a [i64],
    /// A new resolved spec for the run (JSON), when it adopted a newer configuration.
    pub spec: Option<&'a str>,
    /// Webhook notifications of these events, queued in the outbox in the same transaction
    /// (see [`super::outbox`]): a crash after the commit loses none, a refused commit
    /// queues none.
    pub outbox: &'a [super::OutboxItem],
    /// The lease epoch the committing runner holds on the run: the commit lands only while
    /// it is still the run's ([`StoreError::Fenced`] otherwise). `None` checks no lease
    /// (tools that own the store alone: `rollgate replay`, tests).
    pub epoch: Option<i64>,
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

impl Store {
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
        // Through the committer: in one transaction with every commit queued meanwhile,
        // still checked, fenced and answered alone (see [`super::group`]).
        let (done, answer) = tokio::sync::oneshot::channel();
        self.committer.send(Job::Commit {
            id,
            expected: expected_generation,
            commit: Box::new(OwnedCommit::new(commit)),
            now_ms,
            done,
        });
        answer.await.map_err(|_| gone())?
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
        let (done, answer) = tokio::sync::oneshot::channel();
        self.committer.send(Job::Create {
            row: Box::new(OwnedRow::new(row)),
            now_ms,
            done,
        });
        answer.await.map_err(|_| gone())?
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
        let mut tx = self.writer.begin().await?;
        let generation = commit_in(&mut tx, id, expected_generation, commit, now_ms).await?;
        let created = insert_after(&mut tx, successor, now_ms).await?;
        tx.commit().await?;
        Ok((generation, created))
    }
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
    bump(tx, id, expected_generation, commit, now_ms).await??;
    write_rest(tx, id, commit, now_ms).await?;
    Ok(expected_generation + 1)
}

/// A commit's first statement: check the generation (and lease epoch) and bump it, storing
/// the checkpoint. `Ok(Err(refusal))` when refused — a [`StoreError::Conflict`],
/// [`StoreError::Fenced`] or [`StoreError::NotFound`] — with nothing of the commit written
/// (the transaction may go on with other writes); `Err` when the database failed.
pub(super) async fn bump(
    tx: &mut Tx<'_>,
    id: i64,
    expected_generation: i64,
    commit: Commit<'_>,
    now_ms: i64,
) -> Result<Result<(), StoreError>, StoreError> {
    let bumped = query(|s| s.bump_generation)
        .bind(commit.checkpoint)
        .bind(commit.state)
        .bind(i64::from(commit.finished))
        .bind(now_ms)
        .bind(id)
        .bind(expected_generation)
        .bind(commit.epoch)
        .bind(commit.epoch)
        .execute(&mut *tx)
        .await?;
    if bumped != 1 {
        let found: Option<(String, i64, i64)> = query_as(|s| s.generation_of)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
        // Nothing was written.
        return Ok(Err(match found {
            None => StoreError::NotFound(format!("rollout id {id}")),
            Some((rollout, _, holder)) if commit.epoch.is_some_and(|e| e != holder) => {
                StoreError::Fenced {
                    rollout,
                    epoch: commit.epoch.unwrap_or_default(),
                    holder,
                }
            }
            Some((rollout, found, _)) => StoreError::Conflict {
                rollout,
                expected: expected_generation,
                found,
            },
        }));
    }
    Ok(Ok(()))
}

/// The rest of a commit after its [`bump`]: the spec, audit events, their outbox items,
/// measurements and series points, step intents and consumed actions.
pub(super) async fn write_rest(
    tx: &mut Tx<'_>,
    id: i64,
    commit: Commit<'_>,
    now_ms: i64,
) -> Result<(), StoreError> {
    if let Some(spec) = commit.spec {
        query(|s| s.replace_spec)
            .bind(spec)
            .bind(id)
            .execute(&mut *tx)
            .await?;
    }
    let seqs = append_events(tx, id, commit.events).await?;
    super::outbox::insert(tx, id, &seqs, commit.outbox).await?;
    insert_measurements(tx, id, commit.measurements).await?;
    super::series::append(tx, id, commit.measurements).await?;
    insert_intents(tx, id, commit.step_intents, now_ms).await?;
    consume_actions(tx, id, commit.consumed_actions, now_ms).await?;
    Ok(())
}

/// Insert run `row.after + 1` with its first audit event, or fail with
/// [`StoreError::RunTaken`] (the caller's transaction is then dropped: nothing written).
pub(super) async fn insert_after(
    tx: &mut Tx<'_>,
    row: NewRow<'_>,
    now_ms: i64,
) -> Result<RolloutRow, StoreError> {
    let inserted = query_as(|s| s.create_rollout)
        .bind(row.name)
        .bind(row.spec)
        .bind(row.checkpoint)
        .bind(row.state)
        .bind(now_ms)
        .bind(now_ms)
        .bind(row.name)
        .fetch_one(&mut *tx)
        .await;
    let created: RolloutRow = match inserted {
        Ok(created) => created,
        // On PostgreSQL two runners may compute the same next run at once; the second
        // meets the first's row: that run was taken.
        Err(StoreError::Duplicate(_)) => {
            return Err(StoreError::RunTaken {
                rollout: row.name.to_string(),
                run: row.after.saturating_add(1),
                latest: row.after.saturating_add(1),
            });
        }
        Err(e) => return Err(e),
    };
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

pub(super) use super::db::Tx;

/// Append events with the next gapless seqs (the caller holds the write lock); their seqs.
pub(super) async fn append_events(
    tx: &mut Tx<'_>,
    id: i64,
    events: &[AuditEvent],
) -> Result<Vec<i64>, StoreError> {
    let mut seqs = Vec::with_capacity(events.len());
    for event in events {
        let progress = serde_json::to_string(&event.progress)
            .map_err(|e| StoreError::Db(format!("cannot serialise audit progress: {e}")))?;
        let seq: i64 = query_scalar(|s| s.append_event)
            .bind(id)
            .bind(event.at_ms)
            .bind(&event.actor)
            .bind(&event.action)
            .bind(&event.reason)
            .bind(&event.state_before)
            .bind(&event.state_after)
            .bind(progress)
            .bind(id)
            .one(&mut *tx)
            .await?;
        seqs.push(seq);
    }
    Ok(seqs)
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
        query(|s| s.insert_measurement)
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
            .execute(&mut *tx)
            .await?;
        touched.insert((m.phase_index, m.metric.as_str()), m.retention.max(0));
    }
    for ((phase_index, metric), retention) in touched {
        query(|s| s.prune_measurements)
            .bind(id)
            .bind(phase_index)
            .bind(metric)
            .bind(id)
            .bind(phase_index)
            .bind(metric)
            .bind(retention)
            .execute(&mut *tx)
            .await?;
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
    let mut ordinal: i64 = query_scalar(|s| s.last_ordinal)
        .bind(id)
        .one(&mut *tx)
        .await?;
    for (step_id, step) in intents {
        let inserted = query(|s| s.insert_intent)
            .bind(id)
            .bind(step_id)
            .bind(ordinal + 1)
            .bind(step)
            .bind(now_ms)
            .execute(&mut *tx)
            .await?;
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
        let updated = query(|s| s.consume_action)
            .bind(id)
            .bind(now_ms)
            .bind(action)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        if updated == 0 {
            let found: Option<(i64, Option<i64>)> = query_as(|s| s.action_owner)
                .bind(action)
                .fetch_optional(&mut *tx)
                .await?;
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
