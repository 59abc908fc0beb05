//! The webhook outbox (migration 7): each notification a commit causes, one row per (event,
//! endpoint), so that a crash after the commit loses none and every runner on the store
//! can deliver them — each to each endpoint once while a claim is live.
//!
//! Rows are written by the commit that appends their audit events, in its transaction
//! ([`super::Commit::outbox`]): a fenced or conflicting commit writes none. Events that are
//! not audit events (invalid-spec, spec-valid) are queued on their own ([`Store::enqueue`]).
//! A deliverer claims an endpoint's oldest pending rows ([`Store::claim_outbox`]) only while
//! no other runner holds a live claim on that endpoint and the oldest row is due, so an
//! endpoint's rows go out in id order through one runner at a time; it renews its claims
//! while it works ([`Store::renew_outbox`]) and marks each row delivered, due again after a
//! backoff, or failed. A runner that dies leaves claims that expire on the database's
//! clock; then another runner claims the rows. How often, how long and how many are the
//! caller's ([`crate::server::notify`]) business; this module only keeps the rows. It
//! knows nothing of HTTP: a body is text and an endpoint a string.

use super::db::{Scalar, Tx, query, query_as, query_scalar};
use super::{Store, StoreError};

/// One notification a commit queues: its event (an index into the commit's
/// [`events`](super::Commit::events)), where it goes and what is POSTed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxItem {
    /// Which of the commit's audit events it tells of (its seq is stored with the row).
    pub event: usize,
    /// The webhook URL (it may carry credentials: never log it as it is).
    pub endpoint: String,
    /// The JSON body.
    pub body: String,
}

/// A row a deliverer claimed.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Claimed {
    /// Store-wide, increasing: the row's id (its idempotency key).
    pub id: i64,
    /// The run whose event it is (`None`: not a run's audit event).
    pub rollout_id: Option<i64>,
    /// The audit event's seq in its run.
    pub seq: Option<i64>,
    /// The JSON body.
    pub body: String,
    /// Attempts so far (by any runner).
    pub attempts: i64,
}

/// A whole row, for diagnostics and tests.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct OutboxRow {
    /// Store-wide id.
    pub id: i64,
    /// The run whose event it is.
    pub rollout_id: Option<i64>,
    /// The audit event's seq in its run.
    pub seq: Option<i64>,
    /// The webhook URL.
    pub endpoint: String,
    /// The JSON body.
    pub body: String,
    /// When it was queued (the database's clock).
    pub created_ms: i64,
    /// Attempts so far.
    pub attempts: i64,
    /// When it may be tried next.
    pub next_try_ms: i64,
    /// The runner that claimed it last.
    pub claimed_by: Option<i64>,
    /// Until when that claim holds (`None`: no claim).
    pub claimed_until_ms: Option<i64>,
    /// When it was delivered.
    pub delivered_ms: Option<i64>,
    /// When it was given up on.
    pub failed_ms: Option<i64>,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
}

/// A duration in ms as the statements bind it (callers pass durations they chose).
fn ms(ms: u64) -> i64 {
    i64::try_from(ms).unwrap_or(i64::MAX / 4)
}

/// Queue `items` of the commit whose audit events got `seqs`, inside its transaction.
pub(super) async fn insert(
    tx: &mut Tx<'_>,
    rollout_id: i64,
    seqs: &[i64],
    items: &[OutboxItem],
) -> Result<(), StoreError> {
    for item in items {
        let Some(&seq) = seqs.get(item.event) else {
            return Err(StoreError::Db(format!(
                "a notification names event {} of a commit of {} events (a bug; please report it)",
                item.event,
                seqs.len()
            )));
        };
        query(|s| s.outbox.insert)
            .bind(rollout_id)
            .bind(seq)
            .bind(item.endpoint.as_str())
            .bind(item.body.as_str())
            .execute(&mut *tx)
            .await?;
    }
    Ok(())
}

impl Store {
    /// Queue notifications that are not a commit's audit events (`rollout_id`: the run
    /// they concern, if any): (endpoint, body) pairs, in one transaction.
    pub async fn enqueue(
        &self,
        rollout_id: Option<i64>,
        items: &[(String, String)],
    ) -> Result<(), StoreError> {
        if items.is_empty() {
            return Ok(());
        }
        let mut tx = self.writer.begin().await?;
        for (endpoint, body) in items {
            query(|s| s.outbox.insert)
                .bind(rollout_id)
                .bind(None::<i64>)
                .bind(endpoint)
                .bind(body)
                .execute(&mut tx)
                .await?;
        }
        tx.commit().await
    }

    /// Claim up to `max` of `endpoint`'s pending rows, oldest first, for `ttl_ms` of the
    /// database's clock — none while another runner holds a live claim on the endpoint or
    /// while its oldest pending row waits for its next try. By id.
    pub async fn claim_outbox(
        &self,
        runner: i64,
        endpoint: &str,
        max: u64,
        ttl_ms: u64,
    ) -> Result<Vec<Claimed>, StoreError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let mut tx = self.writer.begin().await?;
        query(|s| s.outbox.claim_lock)
            .bind(endpoint)
            .execute(&mut tx)
            .await?;
        let mut claimed: Vec<Claimed> = query_as(|s| s.outbox.claim)
            .bind(runner)
            .bind(ms(ttl_ms))
            .bind(endpoint)
            .bind(i64::try_from(max).unwrap_or(i64::MAX))
            .fetch_all(&mut tx)
            .await?;
        tx.commit().await?;
        claimed.sort_by_key(|c| c.id);
        Ok(claimed)
    }

    /// Extend `runner`'s claims on pending rows to `ttl_ms` from the database's now; the
    /// ids it still holds. A row missing from the answer is no longer the runner's: it must
    /// not be sent.
    pub async fn renew_outbox(&self, runner: i64, ttl_ms: u64) -> Result<Vec<i64>, StoreError> {
        let ids: Vec<(i64,)> = query_as(|s| s.outbox.renew)
            .bind(runner)
            .bind(ms(ttl_ms))
            .fetch_all(&self.writer)
            .await?;
        Ok(ids.into_iter().map(|(id,)| id).collect())
    }

    /// Row `id` was delivered.
    pub async fn outbox_delivered(&self, id: i64) -> Result<(), StoreError> {
        query(|s| s.outbox.delivered)
            .bind(id)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    /// An attempt at row `id` failed with `error`: it is due again after `backoff_ms`.
    pub async fn outbox_retry(
        &self,
        id: i64,
        backoff_ms: u64,
        error: &str,
    ) -> Result<(), StoreError> {
        query(|s| s.outbox.retry)
            .bind(ms(backoff_ms))
            .bind(error)
            .bind(id)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    /// Row `id` is given up on after its last attempt failed with `error`.
    pub async fn outbox_failed(&self, id: i64, error: &str) -> Result<(), StoreError> {
        query(|s| s.outbox.failed)
            .bind(error)
            .bind(id)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    /// End `runner`'s claims on pending rows (a clean stop, the end of a batch): another
    /// runner may claim them at once.
    pub async fn release_outbox(&self, runner: i64) -> Result<(), StoreError> {
        query(|s| s.outbox.release)
            .bind(runner)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    /// The endpoints with pending rows.
    pub async fn outbox_endpoints(&self) -> Result<Vec<String>, StoreError> {
        let rows: Vec<(String,)> = query_as(|s| s.outbox.endpoints)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.into_iter().map(|(e,)| e).collect())
    }

    /// How many rows are pending (neither delivered nor failed).
    pub async fn outbox_pending(&self) -> Result<i64, StoreError> {
        query_scalar(|s| s.outbox.pending).one(&self.pool).await
    }

    /// Delete rows delivered more than `delivered_ms` ago and rows failed more than
    /// `failed_ms` ago; how many.
    pub async fn prune_outbox(&self, delivered_ms: u64, failed_ms: u64) -> Result<u64, StoreError> {
        query(|s| s.outbox.prune)
            .bind(ms(delivered_ms))
            .bind(ms(failed_ms))
            .execute(&self.writer)
            .await
    }

    /// Every row, by id (diagnostics and tests: bodies and endpoints as stored).
    pub async fn outbox_rows(&self) -> Result<Vec<OutboxRow>, StoreError> {
        query_as(|s| s.outbox.rows).fetch_all(&self.pool).await
    }
}

#[cfg(test)]
#[path = "outbox_tests.rs"]
mod tests;
