//! Waiting and wake-ups: the [`Wakers`] a server uses to tell a waiting run that an
//! operator acted, and [`Run::wait`], which waits for a time while taking background
//! measurements, asking rollback gates and looking for operator actions.

use super::state::State;
use super::verification::Which;
use super::{EngineError, Run};
use std::collections::HashMap;
use std::sync::Arc;

/// Wakes waiting rollouts when an operator acts, so a server with thousands of waiting
/// rollouts does not poll the store for each of them every `action_poll`: a rollout only
/// looks for action requests after [`Wakers::wake`]. Requests written to the store by
/// another process are found by one query for all runs every `action_poll`
/// ([`Wakers::poll_store`]), which wakes the runs they are for.
#[derive(Debug, Default)]
pub struct Wakers {
    map: std::sync::Mutex<HashMap<i64, Arc<Wake>>>,
    /// While set, a run claimed or registered does not look for requests first (the
    /// server that starts thousands of runs asks the store once for all of them instead,
    /// [`Wakers::set_quiet`]).
    quiet: std::sync::atomic::AtomicBool,
}

/// One rollout's wake-up: a flag that says "look for requests" and a notification.
#[derive(Debug)]
pub(super) struct Wake {
    pub(super) pending: std::sync::atomic::AtomicBool,
    pub(super) notify: tokio::sync::Notify,
}

impl Wakers {
    pub(super) fn register(&self, id: i64) -> Arc<Wake> {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(id)
            .or_insert_with(|| {
                Arc::new(Wake {
                    // A run (re)started by a server looks once: requests may predate it.
                    pending: std::sync::atomic::AtomicBool::new(self.looks_first()),
                    notify: tokio::sync::Notify::new(),
                })
            })
            .clone()
    }

    fn looks_first(&self) -> bool {
        !self.quiet.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// While `quiet`, runs claimed or registered do not look for action requests when they
    /// start; the caller wakes those that have requests ([`Wakers::wake`]) after asking
    /// the store once, *after* clearing it (so a request written meanwhile is not missed).
    pub fn set_quiet(&self, quiet: bool) {
        self.quiet.store(quiet, std::sync::atomic::Ordering::SeqCst);
    }

    fn unregister(&self, id: i64) {
        self.map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
    }

    /// Tell the run `id` that an action request waits for it. False when no task drives
    /// that run (the caller must start one).
    pub fn wake(&self, id: i64) -> bool {
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        match map.get(&id) {
            Some(w) => {
                w.pending.store(true, std::sync::atomic::Ordering::SeqCst);
                w.notify.notify_one();
                true
            }
            None => false,
        }
    }

    /// Poll the store for action requests another process wrote (a CLI on the same SQLite
    /// file; another runner on PostgreSQL, should its notice be lost) every `every`, for
    /// every run driven here in one query, and wake the runs they are for. Runs until the
    /// task is aborted; a failed poll is logged and tried again next time.
    pub async fn poll_store(
        self: Arc<Self>,
        store: crate::store::Store,
        every: std::time::Duration,
    ) {
        let every = every.max(std::time::Duration::from_millis(10));
        loop {
            tokio::time::sleep(every).await;
            match store.runs_with_actions().await {
                Ok(ids) => {
                    for id in ids {
                        self.wake(id);
                    }
                }
                Err(e) => tracing::warn!("cannot look for operator actions in the store: {e}"),
            }
        }
    }

    /// Tell every run driven here to look at its action requests (after notifications of
    /// new requests may have been lost).
    pub fn wake_all(&self) {
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        for w in map.values() {
            w.pending.store(true, std::sync::atomic::Ordering::SeqCst);
            w.notify.notify_one();
        }
    }

    /// Claim the run `id` for a new driver task: false when one drives it already. The
    /// claim is released when that driver's [`Engine::drive`](super::Engine::drive) ends.
    pub fn claim(&self, id: i64) -> bool {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if map.contains_key(&id) {
            return false;
        }
        map.insert(
            id,
            Arc::new(Wake {
                pending: std::sync::atomic::AtomicBool::new(self.looks_first()),
                notify: tokio::sync::Notify::new(),
            }),
        );
        true
    }

    /// True while a task drives the run `id`.
    pub fn is_driving(&self, id: i64) -> bool {
        self.map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(&id)
    }

    /// How many runs are being driven.
    pub fn len(&self) -> usize {
        self.map.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// True when no run is being driven.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Unregisters a run from [`Wakers`] when its driver ends, however it ends.
pub(super) struct Registered<'a> {
    pub(super) wakers: &'a Wakers,
    pub(super) id: i64,
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        self.wakers.unregister(self.id);
    }
}

/// What a wait ended with.
pub(super) enum Woke {
    /// The time came.
    Time,
    /// Something else needs attention (an operator action, a decision changed the state).
    Interrupted,
    /// Simulated clock, nothing scheduled: only an operator could move this rollout.
    Stuck,
}

impl Run<'_> {
    /// Whether action requests may be waiting: always without wake-ups; with them, only
    /// after a wake-up (the flag is cleared by looking).
    pub(super) fn may_have_actions(&self) -> bool {
        self.wake
            .as_ref()
            .is_none_or(|w| w.pending.swap(false, std::sync::atomic::Ordering::SeqCst))
    }

    /// Wait until `until` (or, with `None`, until something happens), taking background
    /// measurements and asking rollback gates meanwhile, and returning early for operator
    /// actions or when a decision moved the rollout.
    pub(super) async fn wait(&mut self, until: Option<i64>) -> Result<Woke, EngineError> {
        let state = self.cp.state;
        let stage = self.cp.stage;
        let phase = self.cp.phase;
        let mut next_poll: Option<i64> = None;
        loop {
            // Waiting is a safe point: a driver asked to stop (its lease given up, lost or
            // lapsed) stops here.
            self.safe_point()?;
            let now = self.now();
            if until.is_some_and(|u| now >= u) {
                return Ok(Woke::Time);
            }
            if self.cp.state != state || self.cp.stage != stage || self.cp.phase != phase {
                return Ok(Woke::Interrupted);
            }
            // Background measurements run while the rollout progresses or holds.
            let bg_due = match (&self.cp.background, self.cp.state) {
                (Some(b), State::Progressing | State::Paused(_)) => b.next_due(),
                _ => None,
            };
            if let Some((metric, at)) = bg_due
                && at <= now
            {
                Box::pin(self.measure(Which::Background, metric)).await?;
                continue;
            }
            let gate_due = self.rollback_gate_due(now);
            if let Some((g, at)) = &gate_due
                && *at <= now
            {
                Box::pin(self.ask_rollback_gate(g.clone())).await?;
                continue;
            }
            let next = [until, bg_due.map(|(_, at)| at), gate_due.map(|(_, at)| at)]
                .into_iter()
                .flatten()
                .min();
            if self.engine.clock.is_simulated() {
                // Nothing outside the process acts on simulated time: a wait only an
                // operator can end (background metrics and rollback gates aside) ends here,
                // instead of measuring a hold forever.
                match (until, next) {
                    (Some(_), Some(at)) => self.engine.clock.sleep_until(at).await,
                    _ => return Ok(Woke::Stuck),
                }
                continue;
            }
            // Without wake-ups this run looks for operator actions itself every poll
            // interval; with them (a server) it is woken, and the server polls the store
            // for the requests of all its runs at once ([`Wakers::poll_store`]).
            let poll = match &self.wake {
                None => {
                    let poll_ms =
                        i64::try_from(self.engine.action_poll.as_millis()).unwrap_or(i64::MAX);
                    Some(*next_poll.get_or_insert(now.saturating_add(poll_ms)))
                }
                Some(_) => None,
            };
            let at = match (next, poll) {
                (Some(n), Some(p)) => Some(n.min(p)),
                (n, p) => n.or(p),
            };
            let lease = self.lease.clone();
            let stopping = async {
                match &lease {
                    Some(lease) => lease.stopping().await,
                    None => std::future::pending().await,
                }
            };
            let sleep = async {
                match at {
                    Some(at) => self.engine.clock.sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            match &self.wake {
                Some(wake) => {
                    let wake = wake.clone();
                    tokio::select! {
                        _ = sleep => {}
                        _ = wake.notify.notified() => return Ok(Woke::Interrupted),
                        _ = stopping => continue,
                    }
                }
                None => tokio::select! {
                    _ = sleep => {}
                    _ = stopping => continue,
                },
            }
            // How late the timer fired: the scheduler's lag, for `/metrics`.
            if let Some(at) = at {
                let late = self.now().saturating_sub(at);
                crate::telemetry::global().observe_lag(late.max(0) as f64 / 1000.0);
            }
            // Without wake-ups, operator actions are looked for every poll interval,
            // however busy the timers.
            if poll.is_some_and(|p| self.now() >= p) {
                next_poll = None;
                if !Box::pin(self.engine.store.pending_actions(self.id))
                    .await?
                    .is_empty()
                {
                    return Ok(Woke::Interrupted);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Wakers;
    use std::sync::atomic::Ordering;

    /// A run claimed while the server starts quietly does not look for requests first; a
    /// wake-up (what the server's one query sends to the runs that have some) makes it
    /// look; once the start is over, a run claimed looks first again.
    #[test]
    fn runs_claimed_quietly_look_only_when_woken() {
        let wakers = Wakers::default();
        wakers.set_quiet(true);
        assert!(wakers.claim(1) && wakers.claim(2));
        let (one, two) = (wakers.register(1), wakers.register(2));
        assert!(!one.pending.load(Ordering::SeqCst));
        assert!(!two.pending.load(Ordering::SeqCst));
        wakers.set_quiet(false);
        assert!(wakers.wake(2));
        assert!(!one.pending.load(Ordering::SeqCst));
        assert!(two.pending.load(Ordering::SeqCst));
        assert!(wakers.claim(3));
        assert!(wakers.register(3).pending.load(Ordering::SeqCst));
        // An unknown run is not woken: its caller must start it.
        assert!(!wakers.wake(4));
    }
}
