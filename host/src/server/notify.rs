//! Webhook notifications: every state change and decision of a rollout, POSTed as JSON to
//! the webhooks the server and the rollout name — each once per webhook, whichever of the
//! runners sharing the store delivers it.
//!
//! A notification never holds a rollout up and is never lost to a crash: the commit that
//! appends an audit event queues its notifications in the store's outbox in the same
//! transaction ([`crate::store::Commit::outbox`], rendered by [`super::Fleet::outbox`]).
//! Every runner delivers from the outbox: a worker task per webhook claims the webhook's
//! oldest due rows ([`crate::store::Store::claim_outbox`]: none while another runner's claim
//! on the webhook is live, so one runner at a time sends a webhook's rows, in order), POSTs
//! them one by one in id order, retrying a failed delivery (network error, 5xx, 429) with
//! exponential backoff before giving up on that row and going on with the next, and marks
//! each delivered or failed. Attempts and the next try are stored, so a runner that takes
//! over a dead runner's rows goes on where it stopped. A crash between a POST and its mark
//! sends that one row again after the claim expires, with the same `Idempotency-Key`
//! (`rollgate-<row id>`, also the body's `seq`), for the receiver to drop.
//!
//! A worker is woken right after a local commit queued rows for its webhook; a slow poll
//! ([`POLL`]) finds rows other runners queued and webhooks this runner has no worker for.
//! The same poll keeps the pending gauge and deletes rows delivered more than an hour ago
//! (failed: a day). Every outcome is counted in `rollgate_notifications_total`. A webhook
//! URL may carry credentials: it is logged without its user info, query and fragment.

use crate::store::{Claimed, Store};
use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tokio::sync::Notify;

/// How often the outbox is looked at for rows no local commit announced.
pub const POLL: Duration = Duration::from_secs(1);

/// How long a claim lasts on the database's clock without renewal: a dead runner's rows
/// wait this long for another runner. Renewed before every attempt and during backoff.
pub const CLAIM_TTL: Duration = Duration::from_secs(15);

/// Rows claimed at a time per webhook.
pub const BATCH: u64 = 32;

/// How long delivered rows are kept.
pub const KEEP_DELIVERED: Duration = Duration::from_secs(3600);

/// How long failed rows are kept (for an operator to look at).
pub const KEEP_FAILED: Duration = Duration::from_secs(24 * 3600);

/// How often old rows are deleted.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// How a worker retries.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    /// Attempts per event, the first included.
    pub attempts: u32,
    /// Wait before the first retry; doubled each time.
    pub first_backoff: Duration,
    /// Longest wait between attempts.
    pub max_backoff: Duration,
    /// Timeout of one attempt (shorter than [`CLAIM_TTL`]: a claim outlives an attempt).
    pub timeout: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            attempts: 6,
            first_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(30),
            timeout: Duration::from_secs(10),
        }
    }
}

impl Retry {
    /// The wait after the failed attempt number `attempt` (1 for the first).
    fn backoff(&self, attempt: u32) -> Duration {
        let mut backoff = self.first_backoff;
        for _ in 1..attempt.min(64) {
            backoff = backoff.saturating_mul(2).min(self.max_backoff);
        }
        backoff.min(self.max_backoff)
    }
}

/// Counters of one notifier (this runner's deliveries).
#[derive(Debug, Default)]
pub struct Counts {
    /// Events delivered.
    pub delivered: AtomicU64,
    /// Attempts that failed and were retried.
    pub retried: AtomicU64,
    /// Events given up on after every attempt failed.
    pub failed: AtomicU64,
}

/// What the workers share.
struct Shared {
    store: Store,
    client: reqwest::Client,
    retry: Retry,
    counts: Counts,
    /// The runner claims are made as (set by [`Notifier::start`]).
    runner: OnceLock<i64>,
    /// Rows pending in the outbox at the last poll.
    pending: AtomicI64,
}

/// The outbox's deliverer on this runner: a worker per webhook and the poll.
pub struct Notifier {
    shared: Arc<Shared>,
    /// Each webhook's worker, by URL, woken through its `Notify`.
    workers: Mutex<HashMap<String, Arc<Notify>>>,
}

impl Notifier {
    /// A notifier over `store` with the default retry policy.
    pub fn new(store: Store) -> Notifier {
        Notifier::with_retry(store, Retry::default())
    }

    /// A notifier with its own retry policy.
    pub fn with_retry(store: Store, retry: Retry) -> Notifier {
        Notifier {
            shared: Arc::new(Shared {
                store,
                client: reqwest::Client::builder()
                    .timeout(retry.timeout)
                    .build()
                    .unwrap_or_default(),
                retry,
                counts: Counts::default(),
                runner: OnceLock::new(),
                pending: AtomicI64::new(0),
            }),
            workers: Mutex::new(HashMap::new()),
        }
    }

    /// The counters.
    pub fn counts(&self) -> &Counts {
        &self.shared.counts
    }

    /// Rows pending in the outbox (every runner's) at the last poll.
    pub fn pending(&self) -> i64 {
        self.shared.pending.load(Ordering::Relaxed)
    }

    /// Start delivering as `runner` (its id in the store): the poll task, which starts a
    /// worker for each webhook with pending rows. Must be called inside a tokio runtime;
    /// a second call does nothing.
    pub fn start(self: &Arc<Self>, runner: i64) {
        if self.shared.runner.set(runner).is_err() {
            return;
        }
        let me = Arc::downgrade(self);
        super::supervise::spawn("notify", "the webhook outbox poll".into(), async move {
            let mut pruned = tokio::time::Instant::now();
            loop {
                let Some(me) = me.upgrade() else { return };
                me.poll(&mut pruned).await;
                drop(me);
                tokio::time::sleep(POLL).await;
            }
        });
    }

    /// One look at the outbox: a worker for each webhook with pending rows (woken), the
    /// pending gauge, and old rows deleted now and then.
    async fn poll(&self, pruned: &mut tokio::time::Instant) {
        let store = &self.shared.store;
        match store.outbox_endpoints().await {
            Ok(endpoints) => self.wake(endpoints.iter().map(String::as_str)),
            Err(e) => tracing::warn!("cannot read the webhook outbox: {e}"),
        }
        if let Ok(pending) = store.outbox_pending().await {
            self.shared.pending.store(pending, Ordering::Relaxed);
        }
        if pruned.elapsed() >= PRUNE_EVERY {
            *pruned = tokio::time::Instant::now();
            let keep = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
            match store
                .prune_outbox(keep(KEEP_DELIVERED), keep(KEEP_FAILED))
                .await
            {
                Ok(0) => {}
                Ok(n) => tracing::debug!(rows = n, "old webhook outbox rows deleted"),
                Err(e) => tracing::warn!("cannot delete old webhook outbox rows: {e}"),
            }
        }
    }

    /// Make the workers of these webhooks look at the outbox now (starting those not
    /// running yet). Does nothing before [`Notifier::start`].
    pub fn wake<'a>(&self, endpoints: impl IntoIterator<Item = &'a str>) {
        let Some(&runner) = self.shared.runner.get() else {
            return;
        };
        let mut workers = self.workers.lock().unwrap_or_else(|e| e.into_inner());
        for url in endpoints {
            let notify = workers.entry(url.to_string()).or_insert_with(|| {
                let notify = Arc::new(Notify::new());
                super::supervise::spawn(
                    "notify",
                    format!("webhook {}", shown(url)),
                    work(self.shared.clone(), runner, url.to_string(), notify.clone()),
                );
                notify
            });
            notify.notify_one();
        }
    }

    /// Give up this runner's claims (a clean stop): another runner may take the rows at
    /// once rather than after [`CLAIM_TTL`].
    pub async fn release(&self) -> Result<(), crate::store::StoreError> {
        match self.shared.runner.get() {
            Some(&runner) => self.shared.store.release_outbox(runner).await,
            None => Ok(()),
        }
    }
}

/// A webhook URL as logs and errors show it: scheme, host, port and path — no user info
/// (credentials), query or fragment (tokens).
pub fn shown(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(u) => {
            let host = u.host_str().unwrap_or("");
            match u.port() {
                Some(port) => format!("{}://{host}:{port}{}", u.scheme(), u.path()),
                None => format!("{}://{host}{}", u.scheme(), u.path()),
            }
        }
        Err(_) => "(a webhook URL that does not parse)".into(),
    }
}

/// The body to POST for a claimed row: the stored event with its `seq` (0 in the row) set
/// to the row's id — store-wide and increasing, the same whichever runner sends it.
pub fn body_for(body: &str, id: i64) -> String {
    match body.strip_prefix("{\"seq\":0,") {
        Some(rest) => format!("{{\"seq\":{id},{rest}"),
        None => body.to_string(),
    }
}

/// One webhook's worker: claim a batch, deliver it in order, again; wait for a wake-up or
/// the poll when nothing is due.
async fn work(shared: Arc<Shared>, runner: i64, url: String, notify: Arc<Notify>) {
    let ttl = u64::try_from(CLAIM_TTL.as_millis()).unwrap_or(u64::MAX);
    loop {
        let batch = match shared.store.claim_outbox(runner, &url, BATCH, ttl).await {
            Ok(batch) => batch,
            Err(e) => {
                tracing::warn!(webhook = %shown(&url), "cannot claim webhook notifications: {e}");
                Vec::new()
            }
        };
        if batch.is_empty() {
            let _ = tokio::time::timeout(POLL, notify.notified()).await;
            continue;
        }
        for row in batch {
            if !deliver(&shared, runner, &url, &row).await {
                // The claim is gone (or the store failed): claim afresh.
                break;
            }
        }
    }
}

/// Deliver one row, retrying; false when the row is no longer this runner's or the store
/// failed (the rest of the batch is left to a later claim).
async fn deliver(shared: &Shared, runner: i64, url: &str, row: &Claimed) -> bool {
    let telemetry = crate::telemetry::global();
    let store = &shared.store;
    let retry = shared.retry;
    let counts = &shared.counts;
    let ttl = u64::try_from(CLAIM_TTL.as_millis()).unwrap_or(u64::MAX);
    let webhook = shown(url);
    let body = body_for(&row.body, row.id);
    let action = serde_json::from_str::<serde_json::Value>(&row.body)
        .ok()
        .and_then(|v| v.get("action").and_then(|a| a.as_str()).map(str::to_string))
        .unwrap_or_default();
    let key = format!("rollgate-{}", row.id);
    let mut attempt = u32::try_from(row.attempts.max(0))
        .unwrap_or(u32::MAX)
        .saturating_add(1);
    let stored = |result: Result<(), crate::store::StoreError>| match result {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(webhook = %webhook, row = row.id, "cannot record a webhook delivery in the store (it may be sent again): {e}");
            false
        }
    };
    loop {
        // Still this runner's, for one more claim period: no other runner sends it meanwhile.
        match store.renew_outbox(runner, ttl).await {
            Ok(mine) if mine.contains(&row.id) => {}
            Ok(_) => return false,
            Err(e) => {
                tracing::warn!(webhook = %webhook, "cannot renew the claim on webhook notifications: {e}");
                return false;
            }
        }
        let outcome = shared
            .client
            .post(url)
            .header("content-type", "application/json")
            .header("x-rollgate-event", action.as_str())
            .header("idempotency-key", key.as_str())
            .body(body.clone())
            .send()
            .await;
        let why = match outcome {
            Ok(r) if r.status().is_success() => None,
            // A client error other than throttling will not get better by retrying.
            Ok(r) if r.status().is_client_error() && r.status().as_u16() != 429 => {
                counts.failed.fetch_add(1, Ordering::Relaxed);
                telemetry.count("rollgate_notifications_total", &[("outcome", "failed")], 1);
                tracing::warn!(webhook = %webhook, status = %r.status(), row = row.id, "webhook refused the event; not retried");
                return stored(
                    store
                        .outbox_failed(row.id, &format!("HTTP {}", r.status()))
                        .await,
                );
            }
            Ok(r) => Some(format!("HTTP {}", r.status())),
            // Without the URL, which may carry credentials.
            Err(e) => Some(e.without_url().to_string()),
        };
        let Some(why) = why else {
            counts.delivered.fetch_add(1, Ordering::Relaxed);
            telemetry.count(
                "rollgate_notifications_total",
                &[("outcome", "delivered")],
                1,
            );
            return stored(store.outbox_delivered(row.id).await);
        };
        if attempt >= retry.attempts {
            counts.failed.fetch_add(1, Ordering::Relaxed);
            telemetry.count("rollgate_notifications_total", &[("outcome", "failed")], 1);
            tracing::warn!(webhook = %webhook, row = row.id, attempts = attempt, "webhook delivery failed, giving up on the event: {why}");
            return stored(store.outbox_failed(row.id, &why).await);
        }
        counts.retried.fetch_add(1, Ordering::Relaxed);
        telemetry.count("rollgate_notifications_total", &[("outcome", "retried")], 1);
        let backoff = retry.backoff(attempt);
        tracing::debug!(webhook = %webhook, row = row.id, attempt, "webhook delivery failed, retrying in {backoff:?}: {why}");
        let backoff_ms = u64::try_from(backoff.as_millis()).unwrap_or(u64::MAX);
        if !stored(store.outbox_retry(row.id, backoff_ms, &why).await) {
            return false;
        }
        // Wait out the backoff, keeping the claim.
        let mut left = backoff;
        while !left.is_zero() {
            let step = left.min(CLAIM_TTL / 3);
            tokio::time::sleep(step).await;
            left = left.saturating_sub(step);
            if !left.is_zero() && store.renew_outbox(runner, ttl).await.is_err() {
                return false;
            }
        }
        attempt = attempt.saturating_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_is_shown_without_credentials_query_or_fragment() {
        for (url, want) in [
            (
                "https://user:secret@hooks.example.com/a/b?token=t0k#frag",
                "https://hooks.example.com/a/b",
            ),
            ("http://127.0.0.1:8080/hook", "http://127.0.0.1:8080/hook"),
            ("not a url secret", "(a webhook URL that does not parse)"),
        ] {
            assert_eq!(shown(url), want);
        }
    }

    #[test]
    fn the_body_gets_the_row_id_as_its_seq() {
        let event = super::super::Event {
            seq: 0,
            rollout: "r".into(),
            run: 1,
            at_ms: 5,
            actor: "rollgate".into(),
            action: "start".into(),
            kind: "decision",
            reason: "why".into(),
            state_before: "pending".into(),
            state_after: "progressing".into(),
            phase: "p".into(),
            weight: 10.0,
            progress: std::sync::Arc::new(super::super::views::invalid_progress(
                &crate::store::InvalidSpec {
                    name: "r".into(),
                    problems: Vec::new(),
                    since_ms: 0,
                    held_run: None,
                },
                None,
            )),
        };
        let stored = serde_json::to_string(&event).expect("json");
        let sent = body_for(&stored, 42);
        let mut want = event.clone();
        want.seq = 42;
        assert_eq!(sent, serde_json::to_string(&want).expect("json"));
        // A body of another shape is sent as it is.
        assert_eq!(body_for("{\"a\":1}", 42), "{\"a\":1}");
    }

    #[test]
    fn backoff_doubles_up_to_its_ceiling() {
        let retry = Retry::default();
        let got: Vec<u64> = (1..=9)
            .map(|a| u64::try_from(retry.backoff(a).as_millis()).expect("ms"))
            .collect();
        assert_eq!(got, [250, 500, 1000, 2000, 4000, 8000, 16000, 30000, 30000]);
        assert_eq!(retry.backoff(u32::MAX), retry.max_backoff);
    }
}
