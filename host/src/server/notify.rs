//! Webhook notifications: every state change and decision of a rollout, POSTed as JSON to
//! the webhooks the server and the rollout name.
//!
//! A notification must never hold a rollout up, so the rollout's task only puts the event
//! on a bounded queue per webhook (a full queue drops the event and counts it); a worker
//! task per webhook delivers the queue in order, retrying a failed delivery (network error,
//! 5xx, 429) with exponential backoff before giving up on that event and going on with the
//! next. Every outcome is counted in `rollgate_notifications_total`.

use super::Event;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;

/// Events waiting per webhook before new ones are dropped.
pub const QUEUE: usize = 10_000;

/// How a worker retries.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    /// Attempts per event, the first included.
    pub attempts: u32,
    /// Wait before the first retry; doubled each time.
    pub first_backoff: Duration,
    /// Longest wait between attempts.
    pub max_backoff: Duration,
    /// Timeout of one attempt.
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

/// Counters of one notifier.
#[derive(Debug, Default)]
pub struct Counts {
    /// Events delivered.
    pub delivered: AtomicU64,
    /// Attempts that failed and were retried.
    pub retried: AtomicU64,
    /// Events given up on after every attempt failed.
    pub failed: AtomicU64,
    /// Events dropped because a webhook's queue was full.
    pub dropped: AtomicU64,
}

/// The webhook queues and their workers.
pub struct Notifier {
    queues: Mutex<HashMap<String, mpsc::Sender<Arc<Event>>>>,
    client: reqwest::Client,
    retry: Retry,
    counts: Arc<Counts>,
}

impl Default for Notifier {
    fn default() -> Self {
        Notifier::new()
    }
}

impl Notifier {
    /// A notifier with the default retry policy.
    pub fn new() -> Notifier {
        Notifier::with_retry(Retry::default())
    }

    /// A notifier with its own retry policy.
    pub fn with_retry(retry: Retry) -> Notifier {
        Notifier {
            queues: Mutex::new(HashMap::new()),
            client: reqwest::Client::builder()
                .timeout(retry.timeout)
                .build()
                .unwrap_or_default(),
            retry,
            counts: Arc::new(Counts::default()),
        }
    }

    /// The counters.
    pub fn counts(&self) -> &Counts {
        &self.counts
    }

    /// Queue `event` for `url`; never waits. Must be called inside a tokio runtime (the
    /// first event for a URL starts its worker).
    pub fn send(&self, url: &str, event: Arc<Event>) {
        let mut queues = self.queues.lock().unwrap_or_else(|e| e.into_inner());
        let tx = queues.entry(url.to_string()).or_insert_with(|| {
            let (tx, rx) = mpsc::channel(QUEUE);
            super::supervise::spawn(
                "notify",
                format!("webhook {url}"),
                deliver(
                    self.client.clone(),
                    url.to_string(),
                    rx,
                    self.retry,
                    self.counts.clone(),
                ),
            );
            tx
        });
        if tx.try_send(event).is_err() {
            self.counts.dropped.fetch_add(1, Ordering::Relaxed);
            crate::telemetry::global().count(
                "rollgate_notifications_total",
                &[("outcome", "dropped")],
                1,
            );
            tracing::warn!(webhook = url, "notification queue full; event dropped");
        }
    }
}

async fn deliver(
    client: reqwest::Client,
    url: String,
    mut rx: mpsc::Receiver<Arc<Event>>,
    retry: Retry,
    counts: Arc<Counts>,
) {
    let telemetry = crate::telemetry::global();
    while let Some(event) = rx.recv().await {
        let mut backoff = retry.first_backoff;
        let mut attempt = 1;
        loop {
            let outcome = client
                .post(&url)
                .header("content-type", "application/json")
                .header("x-rollgate-event", event.action.as_str())
                .json(&*event)
                .send()
                .await;
            let why = match outcome {
                Ok(r) if r.status().is_success() => None,
                // A client error other than throttling will not get better by retrying.
                Ok(r) if r.status().is_client_error() && r.status().as_u16() != 429 => {
                    counts.failed.fetch_add(1, Ordering::Relaxed);
                    telemetry.count("rollgate_notifications_total", &[("outcome", "failed")], 1);
                    tracing::warn!(webhook = %url, status = %r.status(), seq = event.seq, "webhook refused the event; not retried");
                    break;
                }
                Ok(r) => Some(format!("HTTP {}", r.status())),
                Err(e) => Some(e.to_string()),
            };
            let Some(why) = why else {
                counts.delivered.fetch_add(1, Ordering::Relaxed);
                telemetry.count(
                    "rollgate_notifications_total",
                    &[("outcome", "delivered")],
                    1,
                );
                break;
            };
            if attempt >= retry.attempts {
                counts.failed.fetch_add(1, Ordering::Relaxed);
                telemetry.count("rollgate_notifications_total", &[("outcome", "failed")], 1);
                tracing::warn!(webhook = %url, seq = event.seq, attempts = attempt, "webhook delivery failed, giving up on the event: {why}");
                break;
            }
            counts.retried.fetch_add(1, Ordering::Relaxed);
            telemetry.count("rollgate_notifications_total", &[("outcome", "retried")], 1);
            tracing::debug!(webhook = %url, seq = event.seq, attempt, "webhook delivery failed, retrying in {backoff:?}: {why}");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(retry.max_backoff);
            attempt += 1;
        }
    }
}
