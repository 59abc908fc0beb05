//! Leases: which runner drives each unfinished run, until when (on the database's clock),
//! and under which epoch.
//!
//! Several runners (`rollgate serve` processes) share one store and split its unfinished
//! runs: each claims free runs ([`Store::claim_free`]) up to what it wants to hold, renews
//! all its leases in one statement ([`Store::renew_leases`]) well before they expire, and
//! releases them when it stops cleanly ([`Store::release_leases`]). A run whose holder died
//! is claimed by another runner once the lease expired. Every claim by a runner that did
//! not hold a live lease bumps the run's `lease_epoch`; every commit of the run names the
//! epoch its runner holds ([`super::Commit::epoch`]) and lands only while it is still the
//! run's ([`StoreError::Fenced`] otherwise). How long a lease lasts, how often it is
//! renewed and when a runner stops driving on its own clock are the caller's
//! ([`crate::engine`]'s) business; this module only keeps the rows.

use super::db::{Scalar, Tx, query, query_as, query_scalar};
use super::{Store, StoreError};
use std::collections::BTreeMap;

/// A lease a runner holds on a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::FromRow)]
pub struct Lease {
    /// The run (rollout row id).
    #[sqlx(rename = "id")]
    pub rollout_id: i64,
    /// The run's lease epoch: what the holder's commits and steps carry.
    #[sqlx(rename = "lease_epoch")]
    pub epoch: i64,
    /// When the lease ends, on the database's clock (ms since the epoch).
    #[sqlx(rename = "lease_expires_ms")]
    pub expires_ms: i64,
}

/// Who holds a run's lease, as the store says now ([`Store::lease_of`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseState {
    /// The runner that holds (or last held) it.
    pub runner: Option<i64>,
    /// The run's epoch.
    pub epoch: i64,
    /// When the lease ends (`None`: free).
    pub expires_ms: Option<i64>,
    /// The database's clock when this was read.
    pub now_ms: i64,
}

impl LeaseState {
    /// Whether a runner holds a lease that has not expired.
    pub fn live(&self) -> bool {
        self.runner.is_some() && self.expires_ms.is_some_and(|t| t >= self.now_ms)
    }
}

/// A lease duration in milliseconds as the statements bind it; a duration too long for
/// an i64 of milliseconds is refused by the caller's parser long before this.
fn ttl(ttl_ms: u64) -> i64 {
    i64::try_from(ttl_ms).unwrap_or(i64::MAX / 4)
}

/// Extend `runner`'s lease — and with it every run it holds — to `ttl_ms` from the
/// database's now: one row, whatever the number of runs.
async fn runner_lease(tx: &mut Tx<'_>, runner: i64, ttl_ms: u64) -> Result<(), StoreError> {
    query(|s| s.leases.runner_lease)
        .bind(runner)
        .bind(ttl(ttl_ms))
        .execute(tx)
        .await?;
    Ok(())
}

impl Store {
    /// The database's clock (ms since the epoch): what lease expiries are measured on.
    pub async fn db_now_ms(&self) -> Result<i64, StoreError> {
        query_scalar(|s| s.leases.now).one(&self.pool).await
    }

    /// Claim up to `max` unfinished runs whose lease is free or expired, oldest first, for
    /// `ttl_ms` from the database's now; runs other claimers are taking at the same moment
    /// are skipped, not waited for. Each gets the next epoch.
    pub async fn claim_free(
        &self,
        runner: i64,
        max: u64,
        ttl_ms: u64,
    ) -> Result<Vec<Lease>, StoreError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let binds = [runner, ttl(ttl_ms), i64::try_from(max).unwrap_or(i64::MAX)];
        self.lease_rows(runner, ttl_ms, |s| s.leases.claim_free, binds.to_vec())
            .await
    }

    /// Extend `runner`'s lease and read `statement`'s leases (binds: `binds`) in one
    /// transaction on the liveness connection — on SQLite, a [`super::db::DirectPool`] connection
    /// on a blocking thread: a runner holds up to 100,000 leases. Sorted by run.
    async fn lease_rows(
        &self,
        runner: i64,
        ttl_ms: u64,
        statement: fn(&super::sql::Sql) -> &'static str,
        binds: Vec<i64>,
    ) -> Result<Vec<Lease>, StoreError> {
        async fn rows(
            tx: &mut Tx<'_>,
            runner: i64,
            ttl_ms: u64,
            statement: fn(&super::sql::Sql) -> &'static str,
            binds: &[i64],
        ) -> Result<Vec<Lease>, StoreError> {
            runner_lease(tx, runner, ttl_ms).await?;
            let mut query = query_as(statement);
            for &b in binds {
                query = query.bind(b);
            }
            query.fetch_all(tx).await
        }
        let mut leases = match &self.bulk {
            Some(bulk) => {
                bulk.run(move |writer| {
                    futures::executor::block_on(async move {
                        let mut tx = writer.begin().await?;
                        let leases = rows(&mut tx, runner, ttl_ms, statement, &binds).await?;
                        tx.commit().await?;
                        Ok(leases)
                    })
                })
                .await?
            }
            None => {
                let mut tx = self.liveness.begin().await?;
                let leases = rows(&mut tx, runner, ttl_ms, statement, &binds).await?;
                tx.commit().await?;
                leases
            }
        };
        leases.sort_by_key(|l| l.rollout_id);
        Ok(leases)
    }

    /// Claim the run `rollout_id` for `ttl_ms`, with the next epoch: if its lease is free,
    /// expired or already `runner`'s (a driver started again is told apart from the one
    /// before it). `None` when another runner
    /// holds a live lease on it, or the run is unknown. A finished run can be claimed too:
    /// an operator's request (the rollback of an aborted run) reopens it, and the runner
    /// that reopens it must hold it first ([`Store::claim_free`] never takes one).
    pub async fn claim_run(
        &self,
        rollout_id: i64,
        runner: i64,
        ttl_ms: u64,
    ) -> Result<Option<Lease>, StoreError> {
        self.claim_by(|s| s.leases.claim_one, rollout_id, runner, ttl_ms)
            .await
    }

    /// Claim the run `rollout_id` for `ttl_ms` whoever holds it, with the next epoch (the
    /// previous holder's commits are fenced from now on): for a runner that knows the
    /// holder is gone (its process died on this machine) or that the run is its own.
    /// `None` when the run is finished or unknown.
    pub async fn take_run(
        &self,
        rollout_id: i64,
        runner: i64,
        ttl_ms: u64,
    ) -> Result<Option<Lease>, StoreError> {
        self.claim_by(|s| s.leases.take_one, rollout_id, runner, ttl_ms)
            .await
    }

    /// One run claimed by `statement` (binds: runner, ttl_ms, rollout id), with the
    /// runner's own lease extended in the same transaction.
    async fn claim_by(
        &self,
        statement: fn(&super::sql::Sql) -> &'static str,
        rollout_id: i64,
        runner: i64,
        ttl_ms: u64,
    ) -> Result<Option<Lease>, StoreError> {
        let mut tx = self.liveness.begin().await?;
        runner_lease(&mut tx, runner, ttl_ms).await?;
        let lease = query_as(statement)
            .bind(runner)
            .bind(ttl(ttl_ms))
            .bind(rollout_id)
            .fetch_optional(&mut tx)
            .await?;
        tx.commit().await?;
        Ok(lease)
    }

    /// Extend every lease `runner` holds on an unfinished run to `ttl_ms` from the
    /// database's now, in one statement; the leases it still holds, by run. A run missing
    /// from the answer was taken by another runner (or finished): stop driving it.
    pub async fn renew_leases(&self, runner: i64, ttl_ms: u64) -> Result<Vec<Lease>, StoreError> {
        self.lease_rows(runner, ttl_ms, |s| s.leases.renew, vec![runner])
            .await
    }

    /// Tests: every lease `runner` holds expires now (its runner's lease and each claim's
    /// own expiry), as if it had stopped renewing them a ttl ago.
    #[cfg(test)]
    pub async fn expire_leases(&self, runner: i64) -> Result<(), StoreError> {
        let mut tx = self.liveness.begin().await?;
        runner_lease(&mut tx, runner, 0).await?;
        query(|s| s.leases.expire_claims)
            .bind(runner)
            .execute(&mut tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Free the leases `runner` holds on these runs, each under the epoch given (every one
    /// of its leases when `runs` is `None`): another runner may claim them at once. The runner stays recorded as
    /// the one that last drove them.
    pub async fn release_leases(
        &self,
        runner: i64,
        runs: Option<&[(i64, i64)]>,
    ) -> Result<(), StoreError> {
        match runs {
            None => {
                query(|s| s.leases.release_all)
                    .bind(runner)
                    .execute(&self.liveness)
                    .await?;
            }
            Some(runs) => {
                let mut tx = self.liveness.begin().await?;
                for &(run, epoch) in runs {
                    query(|s| s.leases.release_one)
                        .bind(runner)
                        .bind(run)
                        .bind(epoch)
                        .execute(&mut tx)
                        .await?;
                }
                tx.commit().await?;
            }
        }
        Ok(())
    }

    /// How many runs are unfinished (what the runners sharing this store split).
    pub async fn unfinished_count(&self) -> Result<u64, StoreError> {
        let n: i64 = query_scalar(|s| s.leases.unfinished)
            .one(&self.pool)
            .await?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// How many live leases each runner holds, by runner id.
    pub async fn leases_held(&self) -> Result<BTreeMap<i64, i64>, StoreError> {
        let rows: Vec<(i64, i64)> = query_as(|s| s.leases.held).fetch_all(&self.pool).await?;
        Ok(rows.into_iter().collect())
    }

    /// The lease of the run `rollout_id` as the store says now.
    pub async fn lease_of(&self, rollout_id: i64) -> Result<Option<LeaseState>, StoreError> {
        let row: Option<(Option<i64>, i64, Option<i64>, i64)> = query_as(|s| s.leases.of_run)
            .bind(rollout_id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|(runner, epoch, expires_ms, now_ms)| LeaseState {
            runner,
            epoch,
            expires_ms,
            now_ms,
        }))
    }
}
