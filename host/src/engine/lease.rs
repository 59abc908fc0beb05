//! Leases as a runner holds them: which runs this process may drive, under which epoch, and
//! until when on its own clock.
//!
//! The store keeps each run's lease on the database's clock ([`crate::store::Lease`]); a
//! runner cannot read that clock before every commit, so it keeps a *local deadline* per
//! run on its monotonic clock: a claim or renewal sent at instant `t0` that returns the run
//! lets it be driven until `t0 + 0.8·ttl`. The database's expiry is at least `t0 + ttl`
//! (the statement ran after `t0`), so a runner that stops at its local deadline stops
//! before the lease can expire and another runner take the run — whatever happened in
//! between (a frozen process, a lost network, a slow store). Before delivering a step and
//! before every commit a run checks its deadline ([`RunLease::check`]); the epoch fences
//! whatever still slips through (a commit under an old epoch is refused,
//! [`crate::store::StoreError::Fenced`]).
//!
//! [`Leases`] is this runner's table: it claims (by id or free runs), renews every lease in
//! one statement and says which were lost, releases. When leases are renewed, claimed and
//! spread between runners is the caller's business: `rollgate serve`'s lease manager
//! ([`crate::server`]) and `rollgate run`, which holds only its own runs. A driver stops
//! when its lease is lost or lapses, and at a *safe point* (waiting, or before a step's
//! intent — never while delivering a step) when its lease is given up
//! ([`RunLease::request`] with [`Stop::Released`]).
//!
//! This module does not decide how many runs a runner should hold.

use super::clock::now_ms;
use super::runner::{host_name, utc_text};
use crate::store::{Lease, RunnerRow, Store, StoreError};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How long a lease lasts from its claim or last renewal unless `--lease-ttl` says
/// otherwise.
pub const DEFAULT_TTL: Duration = Duration::from_secs(15);

/// The shortest `--lease-ttl`: renewals every third of it are writes to the store.
pub const MIN_TTL: Duration = Duration::from_secs(1);

/// The longest `--lease-ttl`: beyond it a dead runner's runs wait too long.
pub const MAX_TTL: Duration = Duration::from_secs(600);

/// `--lease-ttl` given as a duration (`15s`), checked against its bounds.
pub fn parse_ttl(text: &str) -> Result<Duration, String> {
    let ms = rollgate_duration::parse_ms(text)?;
    let ttl = Duration::from_millis(ms);
    if ttl < MIN_TTL || ttl > MAX_TTL {
        return Err(format!(
            "{text:?} is outside {}s..{}min: a runner renews its leases every third of it, and \
             a dead runner's runs are taken over after it",
            MIN_TTL.as_secs(),
            MAX_TTL.as_secs() / 60
        ));
    }
    Ok(ttl)
}

/// How often leases of `ttl` are renewed: every third of it, so two renewals may fail
/// before the local deadline (0.8·ttl) stops the runs.
pub fn renew_every(ttl: Duration) -> Duration {
    ttl / 3
}

/// How long after a renewal was *sent* its runs may be driven on the local clock.
fn local_span(ttl: Duration) -> Duration {
    ttl * 4 / 5
}

/// Why a runner stopped driving a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// The local deadline passed without a renewal that extended it (ms since the epoch,
    /// on this machine's clock, when it passed).
    Expired {
        /// When it passed.
        at_ms: i64,
    },
    /// A renewal did not return the run: another runner holds it now.
    Lost,
    /// This runner gave the run up (to spread the load, or a clean stop).
    Released,
    /// The store refused a commit: another runner claimed the run (epoch `holder`).
    Fenced {
        /// The run's epoch in the store.
        holder: i64,
    },
    /// This runner stops and the driver did not reach a safe point in time: it writes and
    /// delivers nothing more.
    Halted,
}

impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stop::Expired { at_ms } => write!(
                f,
                "its lease expired locally at {} without a renewal",
                utc_text_ms(*at_ms)
            ),
            Stop::Lost => f.write_str("another runner holds its lease"),
            Stop::Released => f.write_str("this runner gave its lease up"),
            Stop::Fenced { holder } => write!(
                f,
                "the store refused a commit: another runner holds the run under epoch {holder}"
            ),
            Stop::Halted => f.write_str("this runner is stopping"),
        }
    }
}

/// `2026-01-01 12:00:05.250 UTC`: an instant in a lease's log line.
pub fn utc_text_ms(ms: i64) -> String {
    let text = utc_text(ms);
    let frac = ms.rem_euclid(1000);
    text.replacen(" UTC", &format!(".{frac:03} UTC"), 1)
}

/// One run's lease as its driver sees it: the epoch, the local deadline, and whether the
/// driver was asked to stop. Shared by the driver and the runner's [`Leases`].
#[derive(Debug)]
pub struct RunLease {
    rollout_id: i64,
    epoch: i64,
    /// `NAME run N`, once the driver read the run.
    label: OnceLock<String>,
    deadline: Mutex<Instant>,
    stop: Mutex<Option<Stop>>,
    notify: tokio::sync::Notify,
}

impl RunLease {
    fn new(lease: Lease, sent: Instant, ttl: Duration) -> RunLease {
        RunLease {
            rollout_id: lease.rollout_id,
            epoch: lease.epoch,
            label: OnceLock::new(),
            deadline: Mutex::new(sent + local_span(ttl)),
            stop: Mutex::new(None),
            notify: tokio::sync::Notify::new(),
        }
    }

    /// The run (rollout row id).
    pub fn rollout_id(&self) -> i64 {
        self.rollout_id
    }

    /// The epoch every commit and delivery of this driver carries.
    pub fn epoch(&self) -> i64 {
        self.epoch
    }

    /// Name the run for log lines (`NAME run N`).
    pub fn set_label(&self, rollout: &str, run: i64) {
        let _ = self.label.set(format!("{rollout} run {run}"));
    }

    /// `NAME run N` (or `run id X` before the driver read it).
    pub fn label(&self) -> String {
        self.label
            .get()
            .cloned()
            .unwrap_or_else(|| format!("run id {}", self.rollout_id))
    }

    /// A renewal sent at `sent` returned the run: it may be driven until `sent + 0.8·ttl`
    /// (never earlier than a later renewal already allowed).
    fn extend(&self, sent: Instant, ttl: Duration) {
        let mut deadline = self.deadline.lock().unwrap_or_else(|e| e.into_inner());
        *deadline = (*deadline).max(sent + local_span(ttl));
    }

    /// Whether the run may still commit and deliver: not lost, not past its local
    /// deadline. A lease given up ([`Stop::Released`]) still may until its safe point.
    pub fn check(&self) -> Result<(), Stop> {
        if let Some(stop) = *self.stop.lock().unwrap_or_else(|e| e.into_inner())
            && stop != Stop::Released
        {
            return Err(stop);
        }
        let deadline = *self.deadline.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if now > deadline {
            return Err(Stop::Expired {
                at_ms: wall_ms(deadline, now),
            });
        }
        Ok(())
    }

    /// Why the driver was asked to stop, if it was.
    pub fn stop_requested(&self) -> Option<Stop> {
        *self.stop.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Ask the driver to stop: at once for a lost or lapsed lease (its next check fails),
    /// at its next safe point for [`Stop::Released`]. A waiting driver is woken. The first
    /// reason other than a release stays.
    pub fn request(&self, why: Stop) {
        let mut stop = self.stop.lock().unwrap_or_else(|e| e.into_inner());
        if stop.is_none() || *stop == Some(Stop::Released) {
            *stop = Some(why);
        }
        drop(stop);
        self.notify.notify_one();
    }

    /// Resolves once a stop was requested.
    pub async fn stopping(&self) {
        loop {
            let notified = self.notify.notified();
            if self.stop_requested().is_some() {
                return;
            }
            notified.await;
        }
    }

    /// The deadline has passed (for the manager's sweep).
    fn overdue(&self, now: Instant) -> Option<i64> {
        let deadline = *self.deadline.lock().unwrap_or_else(|e| e.into_inner());
        (now > deadline).then(|| wall_ms(deadline, now))
    }
}

/// The wall-clock time (ms) of the monotonic instant `at`, seen at `now`.
fn wall_ms(at: Instant, now: Instant) -> i64 {
    let ago = i64::try_from(now.saturating_duration_since(at).as_millis()).unwrap_or(i64::MAX);
    now_ms().saturating_sub(ago)
}

/// What a renewal found ([`Leases::renew`]).
#[derive(Debug, Default)]
pub struct Renewal {
    /// Leases the store says this runner holds that the table did not know (a lease
    /// whose driver stopped on its local deadline while the store was unreachable, say):
    /// their runs need a driver.
    pub new: Vec<Arc<RunLease>>,
    /// Leases another runner took: their drivers were asked to stop.
    pub lost: Vec<Arc<RunLease>>,
}

/// This runner's leases, by run.
#[derive(Debug)]
pub struct Leases {
    store: Store,
    runner: i64,
    ttl: Duration,
    held: Mutex<BTreeMap<i64, Arc<RunLease>>>,
    /// A clean stop began ([`Leases::close`]): nothing is claimed any more, and drivers
    /// that stop leave their lease for [`Leases::release_all`].
    closing: std::sync::atomic::AtomicBool,
}

impl Leases {
    /// The leases of runner `runner` (none yet), each lasting `ttl`.
    pub fn new(store: Store, runner: i64, ttl: Duration) -> Leases {
        Leases {
            store,
            runner,
            ttl,
            held: Mutex::new(BTreeMap::new()),
            closing: std::sync::atomic::AtomicBool::new(false),
        }
    }

    fn closing(&self) -> bool {
        self.closing.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// A clean stop begins: every driver is asked to stop at its next safe point, and
    /// nothing is claimed from now on.
    pub fn close(&self) {
        self.closing
            .store(true, std::sync::atomic::Ordering::SeqCst);
        for lease in self.all() {
            lease.request(Stop::Released);
        }
    }

    /// The drivers still going when a clean stop cannot wait longer stop where they are:
    /// their next check fails.
    pub fn halt(&self) {
        for lease in self.all() {
            lease.request(Stop::Halted);
        }
    }

    /// The runner these leases belong to.
    pub fn runner(&self) -> i64 {
        self.runner
    }

    /// How long a lease lasts.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    fn ttl_ms(&self) -> u64 {
        u64::try_from(self.ttl.as_millis()).unwrap_or(u64::MAX)
    }

    fn table(&self) -> std::sync::MutexGuard<'_, BTreeMap<i64, Arc<RunLease>>> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The lease held on run `id`.
    pub fn get(&self, id: i64) -> Option<Arc<RunLease>> {
        self.table().get(&id).cloned()
    }

    /// Every lease held.
    pub fn all(&self) -> Vec<Arc<RunLease>> {
        self.table().values().cloned().collect()
    }

    /// How many leases are held.
    pub fn len(&self) -> usize {
        self.table().len()
    }

    /// True when none is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Take a lease the store granted at `sent` into the table: the same epoch extends
    /// the entry there; a newer epoch replaces it (the old driver is told it lost it); an
    /// older one changes nothing (a renewal that read the run before this runner claimed
    /// it again). True when the entry is new.
    fn insert(&self, lease: Lease, sent: Instant) -> (Arc<RunLease>, bool) {
        let mut table = self.table();
        if let Some(known) = table.get(&lease.rollout_id) {
            if known.epoch == lease.epoch {
                known.extend(sent, self.ttl);
                return (known.clone(), false);
            }
            if known.epoch > lease.epoch {
                return (known.clone(), false);
            }
            known.request(Stop::Lost);
        }
        let fresh = Arc::new(RunLease::new(lease, sent, self.ttl));
        table.insert(lease.rollout_id, fresh.clone());
        (fresh, true)
    }

    /// Claim run `id` ([`Store::claim_run`]: free, expired, already this runner's, or a
    /// finished run an operator reopens); `None` when another runner holds it.
    pub async fn claim(&self, id: i64) -> Result<Option<Arc<RunLease>>, StoreError> {
        if self.closing() {
            return Ok(None);
        }
        let sent = Instant::now();
        let lease = self.store.claim_run(id, self.runner, self.ttl_ms()).await?;
        Ok(lease.map(|l| self.insert(l, sent).0))
    }

    /// The lease on run `id`: the one held (still good), else a claim.
    pub async fn acquire(&self, id: i64) -> Result<Option<Arc<RunLease>>, StoreError> {
        match self.get(id) {
            Some(lease) if lease.check().is_ok() && lease.stop_requested().is_none() => {
                Ok(Some(lease))
            }
            _ => self.claim(id).await,
        }
    }

    /// Claim up to `max` free runs ([`Store::claim_free`]).
    pub async fn claim_free(&self, max: u64) -> Result<Vec<Arc<RunLease>>, StoreError> {
        if self.closing() {
            return Ok(Vec::new());
        }
        let sent = Instant::now();
        let leases = self
            .store
            .claim_free(self.runner, max, self.ttl_ms())
            .await?;
        Ok(leases.into_iter().map(|l| self.insert(l, sent).0).collect())
    }

    /// Renew every lease in one statement ([`Store::renew_leases`]): the runs returned may
    /// be driven until `sent + 0.8·ttl`; a run in the table the store no longer gives
    /// this runner (another runner holds it, checked per run) is lost and its driver asked
    /// to stop. A run that finished, or whose lease this runner released, is not lost: its
    /// driver ends by itself.
    pub async fn renew(&self) -> Result<Renewal, StoreError> {
        let sent = Instant::now();
        let renewed = self.store.renew_leases(self.runner, self.ttl_ms()).await?;
        let mut out = Renewal::default();
        let returned: std::collections::BTreeSet<i64> =
            renewed.iter().map(|l| l.rollout_id).collect();
        for lease in renewed {
            let (entry, fresh) = self.insert(lease, sent);
            if fresh {
                out.new.push(entry);
            }
        }
        let missing: Vec<Arc<RunLease>> = self
            .table()
            .values()
            .filter(|l| !returned.contains(&l.rollout_id))
            .cloned()
            .collect();
        for lease in missing {
            let state = self.store.lease_of(lease.rollout_id).await?;
            let ours =
                state.is_some_and(|s| s.runner == Some(self.runner) && s.epoch == lease.epoch);
            if !ours {
                lease.request(Stop::Lost);
                self.forget(&lease);
                out.lost.push(lease);
            }
        }
        Ok(out)
    }

    /// Leases whose local deadline passed (no renewal extended them in time: the store is
    /// slow or unreachable, or this process was frozen): their drivers are asked to stop
    /// and they leave the table; (lease, when it passed).
    pub fn expire_overdue(&self) -> Vec<(Arc<RunLease>, i64)> {
        let now = Instant::now();
        let mut table = self.table();
        let overdue: Vec<(Arc<RunLease>, i64)> = table
            .values()
            .filter_map(|l| l.overdue(now).map(|at| (l.clone(), at)))
            .collect();
        for (lease, at_ms) in &overdue {
            lease.request(Stop::Expired { at_ms: *at_ms });
            table.remove(&lease.rollout_id);
        }
        overdue
    }

    /// Forget `lease` (its driver ended); a newer lease on the same run stays.
    pub fn forget(&self, lease: &Arc<RunLease>) {
        let mut table = self.table();
        if table
            .get(&lease.rollout_id)
            .is_some_and(|l| Arc::ptr_eq(l, lease))
        {
            table.remove(&lease.rollout_id);
        }
    }

    /// Free `lease` in the store (its driver ended: the run finished, or it was given up)
    /// so another runner may claim the run at once, and forget it.
    pub async fn release(&self, lease: &Arc<RunLease>) -> Result<(), StoreError> {
        // While closing, every lease is freed at once by release_all, after the drivers.
        if self.closing() {
            return Ok(());
        }
        self.forget(lease);
        self.store
            .release_leases(self.runner, Some(&[(lease.rollout_id, lease.epoch)]))
            .await
    }

    /// Free every lease of this runner in one statement (a clean stop, after the drivers
    /// stopped), and forget them.
    pub async fn release_all(&self) -> Result<(), StoreError> {
        let all: Vec<Arc<RunLease>> = std::mem::take(&mut *self.table()).into_values().collect();
        for lease in &all {
            lease.request(Stop::Released);
        }
        self.store.release_leases(self.runner, None).await
    }
}

/// Whether process `pid` exists on this machine (`kill(pid, 0)`: only ESRCH says it does
/// not; a process of another user answers EPERM and exists).
fn process_exists(pid: i64) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    if pid <= 0 {
        return false;
    }
    // SAFETY: signal 0 sends nothing; it only asks whether the process exists.
    let r = unsafe { libc::kill(pid, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

/// On a store only this machine uses ([`Store::is_local`]): runners registered from this
/// host whose process is gone and that never stopped died (a SIGKILL, a crash); mark them
/// stopped and free their leases at once, so a restarted runner resumes their runs now
/// rather than after the leases expire. `me` is never touched. Called when a runner
/// starts, not later: while runners run side by side, a dead one's runs are taken over by
/// lease expiry, like on a shared database. The runners released.
pub async fn release_dead_local_runners(
    store: &Store,
    me: i64,
) -> Result<Vec<RunnerRow>, StoreError> {
    if !store.is_local() {
        return Ok(Vec::new());
    }
    let host = host_name();
    let runners = store.claims().await?.runners;
    let mut gone = Vec::new();
    for runner in runners.into_values() {
        if runner.id == me
            || runner.host != host
            || runner.stopped_ms.is_some()
            || process_exists(runner.pid)
        {
            continue;
        }
        store.release_leases(runner.id, None).await?;
        store.runner_stopped(runner.id, now_ms()).await?;
        tracing::info!(
            runner = runner.id,
            pid = runner.pid,
            "runner {} ({} on this host, pid {}) is gone without stopping: its leases are free \
             at once",
            runner.id,
            runner.command,
            runner.pid
        );
        gone.push(runner);
    }
    Ok(gone)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls_are_bounded() {
        assert_eq!(parse_ttl("15s"), Ok(Duration::from_secs(15)));
        assert_eq!(parse_ttl("1s"), Ok(Duration::from_secs(1)));
        assert_eq!(parse_ttl("10m"), Ok(Duration::from_secs(600)));
        for bad in ["999ms", "11m", "soon", ""] {
            assert!(parse_ttl(bad).is_err(), "{bad}");
        }
        assert_eq!(renew_every(Duration::from_secs(15)), Duration::from_secs(5));
    }

    fn lease(id: i64, epoch: i64) -> Lease {
        Lease {
            rollout_id: id,
            epoch,
            expires_ms: 0,
        }
    }

    #[test]
    fn a_lease_lapses_at_four_fifths_of_its_ttl_after_the_renewal_was_sent() {
        let ttl = Duration::from_secs(10);
        let sent = Instant::now() - Duration::from_secs(9);
        let l = RunLease::new(lease(1, 3), sent, ttl);
        // Sent 9 s ago: 8 s passed, it lapsed about a second ago.
        let Err(Stop::Expired { at_ms }) = l.check() else {
            panic!("expired")
        };
        let ago = now_ms() - at_ms;
        assert!((900..=1_500).contains(&ago), "{ago} ms ago");
        // A renewal sent now extends it; an older one never shortens it.
        l.extend(Instant::now(), ttl);
        assert_eq!(l.check(), Ok(()));
        l.extend(sent, ttl);
        assert_eq!(l.check(), Ok(()));
        assert_eq!(l.overdue(Instant::now()), None);
        assert!(l.overdue(Instant::now() + Duration::from_secs(9)).is_some());
    }

    #[test]
    fn a_release_waits_for_the_safe_point_a_loss_does_not() {
        let l = RunLease::new(lease(1, 3), Instant::now(), Duration::from_secs(10));
        l.request(Stop::Released);
        assert_eq!(l.check(), Ok(()), "a release stops at a safe point only");
        assert_eq!(l.stop_requested(), Some(Stop::Released));
        l.request(Stop::Lost);
        assert_eq!(l.check(), Err(Stop::Lost));
        l.request(Stop::Released);
        assert_eq!(l.stop_requested(), Some(Stop::Lost), "a loss stays");
    }

    #[tokio::test]
    async fn stopping_resolves_for_a_request_made_before_or_after() {
        let l = Arc::new(RunLease::new(
            lease(1, 3),
            Instant::now(),
            Duration::from_secs(10),
        ));
        let waiter = {
            let l = l.clone();
            tokio::spawn(async move { l.stopping().await })
        };
        l.request(Stop::Released);
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("woken")
            .unwrap();
        tokio::time::timeout(Duration::from_secs(5), l.stopping())
            .await
            .expect("already requested");
    }

    #[test]
    fn this_process_exists_and_a_reaped_child_does_not() {
        assert!(process_exists(i64::from(std::process::id())));
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = i64::from(child.id());
        child.wait().unwrap();
        assert!(!process_exists(pid));
        assert!(!process_exists(-1));
        assert!(!process_exists(i64::MAX));
    }

    #[test]
    fn stops_say_why() {
        assert_eq!(
            Stop::Lost.to_string(),
            "another runner holds its lease".to_string()
        );
        assert!(
            Stop::Expired {
                at_ms: 1_767_225_605_250
            }
            .to_string()
            .contains("2026-01-01 00:00:05.250 UTC")
        );
    }
}
