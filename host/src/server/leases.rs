//! The lease manager: several `rollgate serve` processes share one store and split its
//! unfinished runs between them.
//!
//! Every renew period (a third of `--lease-ttl`), and at once when poked (a reload created
//! runs, an operator's retry), the manager of each runner:
//! 1. renews every lease it holds in one statement ([`Leases::renew`]); a run missing from
//!    the answer is driven by another runner now, and its driver stops at once;
//! 2. stops the runs whose local deadline passed without a renewal (0.8·ttl after the last
//!    renewal that returned them was sent: the store was unreachable, or this process was
//!    frozen) — before the lease can expire in the store;
//! 3. spreads the load: the live runners are the `serve` runners registered, not stopped,
//!    whose heartbeat is at most three of their periods old on the *database's* clock
//!    ([`crate::store::Store::db_now_ms`]; heartbeats are written on each runner's clock,
//!    so the runners' clocks must agree with the database's to well within three
//!    periods). Its fair share is ceil(unfinished runs not held by a `rollgate run` /
//!    live runners), capped by `--max-runs`; it claims the shortfall among free runs and
//!    drives them, and when it holds more than its share + 1 it gives the excess up: those
//!    drivers stop at a safe point (waiting, or before a step's intent — never while
//!    delivering a step) and free their leases, for a runner that joined to claim;
//! 4. starts a driver for every lease it holds that has none (a run whose driver stopped
//!    on its local deadline while the store was unreachable, then renewed).
//!
//! It also refreshes what the fleet shows of the runs other runners drive (their commits
//! do not pass through this process), so a list on any runner is current within a period.
//!
//! A clean stop ([`Fleet::shutdown`]) stops the drivers at their safe points, frees every
//! lease in one statement and marks the runner stopped: the others claim its runs at once.
//! A runner that dies keeps its leases until they expire; on a store only this machine
//! uses, a runner that starts frees at once the leases of runners of this host whose
//! process is gone ([`crate::engine::lease::release_dead_local_runners`]).

use super::Fleet;
use crate::engine::lease::{Leases, RunLease, Stop, renew_every, utc_text_ms};
use crate::engine::runner::STALE_AFTER;
use crate::store::{Notice, StoreError};
use std::sync::Arc;
use std::time::Duration;

/// How long a clean stop waits for the drivers to reach a safe point before it stops the
/// rest where they are (the step in doubt, if any, is delivered again with its id by the
/// next holder).
const STOP_WAIT: Duration = Duration::from_secs(10);

impl Fleet {
    /// This runner's leases, once it registered.
    pub(super) fn leases(&self) -> Option<&Arc<Leases>> {
        self.inner.leases.get()
    }

    /// Ask the lease manager to look now (runs were created or may be free).
    pub fn poke_leases(&self) {
        self.inner.poke.notify_one();
    }

    /// Wake the run `id` this runner drives: a request for it was written to the store,
    /// perhaps by another runner. Today the holder finds such requests by its
    /// `--action-poll`; a database that notifies (PostgreSQL's LISTEN/NOTIFY) calls this
    /// from its listener. False when this runner does not drive the run.
    pub fn wake_run(&self, id: i64) -> bool {
        self.inner.wakers.wake(id)
    }

    /// Run the lease manager until the fleet shuts down: a tick every renew period, or
    /// when poked.
    pub(super) fn spawn_lease_manager(&self) {
        let Some(leases) = self.leases().cloned() else {
            return;
        };
        let fleet = self.clone();
        let period = renew_every(leases.ttl());
        let task = super::supervise::spawn("leases", "the lease manager".into(), async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(period) => {}
                    _ = fleet.inner.poke.notified() => {}
                }
                fleet.lease_tick().await;
            }
        });
        *self.inner.manager.lock().unwrap_or_else(|e| e.into_inner()) = Some(task);
    }

    /// One look: renew, stop what was lost or lapsed, spread the load, drive what is held.
    pub(super) async fn lease_tick(&self) {
        let Some(leases) = self.leases().cloned() else {
            return;
        };
        match leases.renew().await {
            Ok(renewal) => {
                for lost in &renewal.lost {
                    tracing::warn!(
                        "lost the lease on {} (epoch {}): another runner holds it; stopped \
                         driving it",
                        lost.label(),
                        lost.epoch()
                    );
                }
            }
            Err(e) => tracing::warn!(
                "cannot renew this runner's leases: {e}; each run stops at its local deadline \
                 unless a renewal gets through first"
            ),
        }
        for (lease, at_ms) in leases.expire_overdue() {
            tracing::warn!(
                "lease on {} (epoch {}) expired locally at {} without a renewal: stopped \
                 driving it",
                lease.label(),
                lease.epoch(),
                utc_text_ms(at_ms)
            );
        }
        let others_hold = match self.spread(&leases).await {
            Ok(others_hold) => others_hold,
            Err(e) => {
                tracing::warn!("cannot share the runs with the other runners now: {e}");
                true
            }
        };
        // Runs others drive are read back while others hold runs, and once more after
        // (their last commits); a runner driving everything alone reads nothing back.
        // Read before the runs claimed now start: each of those reads itself through the
        // same pool as it starts, and this read would wait behind all of them (seconds,
        // with thousands; the server is not ready until the first tick is done).
        let others_held = self
            .inner
            .others_held
            .swap(others_hold, std::sync::atomic::Ordering::Relaxed);
        if (others_hold || others_held)
            && let Err(e) = self.refresh_others().await
        {
            tracing::warn!("cannot read the runs other runners drive: {e}");
        }
        self.drive_held(&leases);
    }

    /// This runner's fair share of the unfinished runs: claim the shortfall, give up the
    /// excess beyond share + 1. True when another runner holds runs.
    async fn spread(&self, leases: &Arc<Leases>) -> Result<bool, StoreError> {
        let store = &self.inner.store;
        let me = leases.runner();
        let now = store.db_now_ms().await?;
        let runners = store.claims().await?.runners;
        let held_by = store.leases_held().await?;
        let others_hold = held_by.keys().any(|id| *id != me);
        let unfinished = store.unfinished_count().await?;
        let sharing = |id: &i64| runners.get(id).is_some_and(|r| r.command == "serve");
        let live = runners
            .values()
            .filter(|r| {
                r.id == me
                    || (r.command == "serve"
                        && r.stopped_ms.is_none()
                        && now.saturating_sub(r.heartbeat_ms)
                            <= r.period_ms.max(0).saturating_mul(STALE_AFTER))
            })
            .count()
            .max(1);
        // Runs a `rollgate run` holds are its own: not shared.
        let pinned: i64 = held_by
            .iter()
            .filter(|(id, _)| **id != me && !sharing(id))
            .map(|(_, n)| *n)
            .sum();
        let shared = unfinished.saturating_sub(u64::try_from(pinned).unwrap_or(0));
        let live = u64::try_from(live).unwrap_or(1);
        let share = shared
            .div_ceil(live)
            .min(self.inner.config.max_runs.unwrap_or(u64::MAX));
        let mine = u64::try_from(leases.len()).unwrap_or(u64::MAX);
        if mine < share {
            let claimed = leases.claim_free(share - mine).await?;
            if !claimed.is_empty() {
                tracing::info!(
                    claimed = claimed.len(),
                    share,
                    live,
                    "claimed free runs (this runner's share of {shared} unfinished run(s) over \
                     {live} runner(s) is {share})"
                );
            }
        } else if mine > share.saturating_add(1) {
            let excess = usize::try_from(mine - share).unwrap_or(usize::MAX);
            let mut all = leases.all();
            // The newest runs go: the oldest stay where their history is.
            all.sort_by_key(|l| std::cmp::Reverse(l.rollout_id()));
            tracing::info!(
                excess,
                share,
                live,
                "giving up {excess} run(s) to the other runners (this runner's share is {share})"
            );
            for lease in all.into_iter().take(excess) {
                self.give_up(leases, &lease).await;
            }
        }
        Ok(others_hold)
    }

    /// Give `lease` up: its driver stops at its next safe point and frees it; a lease
    /// without a driver (a held run) is freed now.
    ///
    /// A driver that starts meanwhile cannot use the lease freed under it: it finds this
    /// one given up and claims the run again, which always takes the next epoch, and a
    /// release frees only the epoch it names.
    async fn give_up(&self, leases: &Arc<Leases>, lease: &Arc<RunLease>) {
        lease.request(Stop::Released);
        if !self.inner.wakers.is_driving(lease.rollout_id())
            && let Err(e) = leases.release(lease).await
        {
            tracing::warn!("cannot free the lease on {}: {e}", lease.label());
        }
    }

    /// A driver for every lease held that has none (and is not a held run's, nor given up).
    fn drive_held(&self, leases: &Arc<Leases>) {
        let Some(loaded) = self.current() else {
            return;
        };
        for lease in leases.all() {
            let id = lease.rollout_id();
            if loaded.held.contains_key(&id)
                || lease.stop_requested().is_some()
                || self.inner.wakers.is_driving(id)
            {
                continue;
            }
            self.spawn(&loaded.engine, id);
        }
    }

    /// What the fleet shows of runs driven elsewhere: the latest runs changed since the
    /// last look, read back from the store.
    async fn refresh_others(&self) -> Result<(), StoreError> {
        let since = *self.inner.seen_ms.lock().unwrap_or_else(|e| e.into_inner());
        let changed = self.inner.store.latest_changed(since).await?;
        let mut newest = since;
        for listed in changed {
            newest = newest.max(listed.row.updated_ms);
            if !self.inner.wakers.is_driving(listed.row.id) {
                self.remember_row(&listed.row);
            }
        }
        *self.inner.seen_ms.lock().unwrap_or_else(|e| e.into_inner()) = newest;
        Ok(())
    }

    /// A clean stop: the lease manager ends, the drivers stop at their safe points (at most
    /// [`STOP_WAIT`]; the rest stop where they are, writing and delivering nothing more),
    /// every lease is freed in one statement, and the runner is marked stopped — the
    /// other runners claim its runs at once.
    pub async fn shutdown(&self) -> Result<(), StoreError> {
        let manager = self
            .inner
            .manager
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(task) = manager {
            task.abort();
        }
        let listener = self
            .inner
            .listener
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(task) = listener {
            task.abort();
        }
        let poll = self
            .inner
            .action_poll
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(task) = poll {
            task.abort();
        }
        if let Some(leases) = self.leases().cloned() {
            leases.close();
            let deadline = tokio::time::Instant::now() + STOP_WAIT;
            while !self.inner.wakers.is_empty() && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            if !self.inner.wakers.is_empty() {
                tracing::warn!(
                    "{} run(s) did not reach a safe point in {}s: stopped where they are (a \
                     step in doubt is delivered again, with its id, by the next runner)",
                    self.inner.wakers.len(),
                    STOP_WAIT.as_secs()
                );
                leases.halt();
            }
            if let Err(e) = leases.release_all().await {
                tracing::warn!(
                    "cannot free this runner's leases: {e}; the other runners take its runs \
                     when the leases expire"
                );
            }
        }
        self.stop_runner().await
    }
}

impl Fleet {
    /// Follow what other processes write, when the database tells (PostgreSQL's
    /// LISTEN/NOTIFY, [`crate::store::Listener`]): an action requested for a run this runner
    /// drives wakes it at once; an audit event of a run another runner drives is shown
    /// (`GET`) and streamed (the event stream; webhooks go through the store's outbox) here
    /// too. A SQLite store has no listener: its runners look at `--action-poll` and at each
    /// lease tick.
    pub(super) fn spawn_listener(&self) {
        let fleet = self.clone();
        let task = super::supervise::spawn("notices", "the database listener".into(), async move {
            let mut listener = match fleet.inner.store.listen().await {
                Ok(Some(listener)) => listener,
                Ok(None) => return,
                Err(e) => {
                    tracing::warn!(
                        "cannot listen to the database: {e}; actions sent to other runners are \
                         seen at --action-poll and their runs at each lease renewal"
                    );
                    return;
                }
            };
            // Events of runs seen first through a notice: only those from now on.
            let started_ms = crate::engine::clock::now_ms();
            let mut streamed: std::collections::HashMap<i64, i64> = Default::default();
            loop {
                match listener.next().await {
                    Notice::Action(id) => {
                        fleet.wake_run(id);
                    }
                    Notice::Event(id, seq) => {
                        if fleet.inner.wakers.is_driving(id) {
                            continue;
                        }
                        if let Err(e) = fleet
                            .stream_remote(id, seq, started_ms, &mut streamed)
                            .await
                        {
                            tracing::warn!(run = id, "cannot read another runner's commit: {e}");
                        }
                    }
                    Notice::Reconnected => {
                        // Some notices may be lost: every run looks at its requests, and the
                        // lease manager re-reads the runs of the others.
                        fleet.inner.wakers.wake_all();
                        fleet.poke_leases();
                    }
                }
            }
        });
        *self
            .inner
            .listener
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(task);
    }

    /// Show and stream the audit events up to `seq` of the run `id` another runner drives.
    async fn stream_remote(
        &self,
        id: i64,
        seq: i64,
        started_ms: i64,
        streamed: &mut std::collections::HashMap<i64, i64>,
    ) -> Result<(), StoreError> {
        let done = streamed.get(&id).copied();
        if done.is_some_and(|d| d >= seq) {
            return Ok(());
        }
        let store = &self.inner.store;
        let Some(row) = store.get(id).await? else {
            return Ok(());
        };
        self.remember_row(&row);
        let progress = Arc::new(super::views::progress(&row));
        for audit in store.audit(id).await? {
            let new = match done {
                Some(d) => audit.seq > d,
                None => audit.event.at_ms >= started_ms,
            };
            if !new {
                continue;
            }
            let e = audit.event;
            self.inner.emit(super::Event {
                seq: 0,
                rollout: row.name.clone(),
                run: row.run,
                at_ms: e.at_ms,
                kind: super::events::kind_of(&e.action, &e.state_before, &e.state_after),
                actor: e.actor,
                action: e.action,
                reason: e.reason,
                state_before: e.state_before,
                state_after: e.state_after,
                phase: progress.phase_name.clone(),
                weight: progress.weight,
                progress: progress.clone(),
            });
            streamed.insert(id, audit.seq);
        }
        streamed.entry(id).or_insert(seq);
        Ok(())
    }
}
