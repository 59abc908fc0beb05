//! The event stream: what every commit does in server mode (remember the progress, count,
//! stream, wake the webhook workers), the webhook notifications each commit queues in the
//! outbox, the [`Event`] the stream and webhooks carry, and numbering and sending events.

use super::{Fleet, Inner, Known, SERVE_ACTOR};
use crate::engine::{Committed, ENGINE_ACTOR, Progress};
use crate::store::{AuditEvent, OutboxItem};
use serde::Serialize;
use std::sync::Arc;
use tokio::sync::broadcast;

/// One committed change, as the event stream and webhooks carry it (its serde shape is
/// the v1 event and the webhook payload; [`super::v2::Event`] adds the progress after it).
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    /// Server-wide, increasing: the order events were committed in.
    pub seq: u64,
    /// The rollout.
    pub rollout: String,
    /// Its run.
    pub run: i64,
    /// When (ms since the Unix epoch).
    pub at_ms: i64,
    /// Who (`rollgate`, `policy:NAME`, `gate:NAME`, an operator's identity).
    pub actor: String,
    /// What (`start`, `pause`, `rollback`, `metric-failed`, …).
    pub action: String,
    /// `decision`, `state` (a state change that is not a decision) or `metric`.
    pub kind: &'static str,
    /// Why: the explanation, with the numbers.
    pub reason: String,
    /// State before.
    pub state_before: String,
    /// State after.
    pub state_after: String,
    /// The phase and weight after.
    pub phase: String,
    /// The weight after.
    pub weight: f64,
    /// The progress after the commit (the v2 stream carries it; v1 and webhooks do not).
    #[serde(skip)]
    #[schemars(skip)]
    pub progress: Arc<Progress>,
}

/// Audit actions that are decisions (what the failure policy, a gate, an operator or the
/// engine decided), as opposed to bookkeeping (`apply`, `metric-*`).
const DECISIONS: &[&str] = &[
    "start",
    "verified",
    "next-phase",
    "promote",
    "promote-full",
    "pause",
    "resume",
    "rollback",
    "abort",
    "succeed",
    "rolled-back",
    "deadline",
    "retry",
];

pub(super) fn kind_of(action: &str, before: &str, after: &str) -> &'static str {
    if DECISIONS.contains(&action) {
        "decision"
    } else if action.starts_with("metric-") {
        "metric"
    } else if before != after {
        "state"
    } else {
        "step"
    }
}

/// Who took a decision, from the audit actor.
fn cause_of(actor: &str) -> &'static str {
    if actor.starts_with("policy:") {
        "verification"
    } else if actor.starts_with("gate:") {
        "gate"
    } else if actor == ENGINE_ACTOR || actor == SERVE_ACTOR {
        "engine"
    } else {
        "operator"
    }
}

/// The v1 event of the audit event `e` of commit `c` (its `seq` is set when it is emitted).
fn event_of(c: &Committed<'_>, e: &AuditEvent, progress: Arc<Progress>) -> Event {
    Event {
        seq: 0,
        rollout: c.progress.rollout.clone(),
        run: c.progress.run,
        at_ms: e.at_ms,
        actor: e.actor.clone(),
        action: e.action.clone(),
        kind: kind_of(&e.action, &e.state_before, &e.state_after),
        reason: e.reason.clone(),
        state_before: e.state_before.clone(),
        state_after: e.state_after.clone(),
        phase: c.progress.phase_name.clone(),
        weight: c.progress.weight,
        progress,
    }
}

/// Whether webhooks are told of `event`: every decision and state change, and a step or a
/// measurement only when it changed the state.
fn notifies(event: &Event) -> bool {
    event.kind != "step" && event.kind != "metric" || event.state_before != event.state_after
}

/// (endpoint, body) for each of `webhooks` that wants `event`: the v1 event as JSON, its
/// `seq` as the event carries it.
pub(super) fn webhook_bodies(
    event: &Event,
    webhooks: &[crate::spec::model::NotificationSpec],
) -> Vec<(String, String)> {
    if !notifies(event) {
        return Vec::new();
    }
    let wanted: Vec<&str> = webhooks
        .iter()
        .filter(|w| w.events.is_empty() || w.events.contains(&event.action))
        .map(|w| w.url.as_str())
        .collect();
    if wanted.is_empty() {
        return Vec::new();
    }
    let body = match serde_json::to_string(event) {
        Ok(body) => body,
        Err(e) => {
            tracing::error!(rollout = %event.rollout, action = %event.action, "cannot render a webhook event (a bug; please report it): {e}");
            return Vec::new();
        }
    };
    let mut out: Vec<(String, String)> = Vec::with_capacity(wanted.len());
    for url in wanted {
        // A URL named twice (the server's and the rollout's) is told once.
        if !out.iter().any(|(u, _)| u == url) {
            out.push((url.to_string(), body.clone()));
        }
    }
    out
}

impl Fleet {
    /// What every commit does in server mode, once it landed: remember the progress, count,
    /// stream, and wake this runner's webhook workers.
    pub(super) fn sink(&self) -> crate::engine::Sink {
        let weak = Arc::downgrade(&self.inner);
        Arc::new(move |c: &Committed<'_>| {
            let Some(inner) = weak.upgrade() else {
                return;
            };
            let telemetry = crate::telemetry::global();
            for m in c.measurements {
                telemetry.count(
                    "rollgate_measurements_total",
                    &[("verdict", m.verdict.as_str())],
                    1,
                );
            }
            inner
                .known
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(
                    c.progress.rollout.clone(),
                    Known {
                        id: c.id,
                        progress: c.progress.clone(),
                    },
                );
            if c.events.is_empty() && !c.measurements.is_empty() {
                // No subscriber is not an error.
                let _ = inner
                    .measured
                    .send((c.progress.rollout.clone(), c.progress.run));
            }
            let progress = Arc::new(c.progress.clone());
            let mut notified = false;
            for e in c.events {
                let event = event_of(c, e, progress.clone());
                if event.kind == "decision" {
                    let cause = cause_of(&e.actor);
                    telemetry.count(
                        "rollgate_decisions_total",
                        &[("decision", e.action.as_str()), ("by", cause)],
                        1,
                    );
                    if e.action == "rollback"
                        || e.action == "deadline" && e.state_after == "rolling-back"
                    {
                        let cause = if e.action == "deadline" {
                            "deadline"
                        } else {
                            cause
                        };
                        telemetry.count("rollgate_rollbacks_total", &[("cause", cause)], 1);
                    }
                }
                notified |= notifies(&event);
                inner.emit(event);
            }
            // The commit queued its notifications in the outbox ([`Fleet::outbox`]): this
            // runner's workers for the rollout's webhooks look at once.
            if notified {
                let webhooks = inner.webhooks_for(&c.progress.rollout);
                inner.notifier.wake(webhooks.iter().map(|w| w.url.as_str()));
            }
        })
    }

    /// Each commit's webhook notifications, rendered before it is written and queued in the
    /// outbox in its transaction (the engine's [`crate::engine::Outbox`]): the v1 event of
    /// every audit event a webhook of the rollout wants, for each such webhook. The body's
    /// `seq` is 0 here; the outbox row's id replaces it when it is sent
    /// ([`notify::body_for`](super::notify::body_for)).
    pub(super) fn outbox(&self) -> crate::engine::Outbox {
        let weak = Arc::downgrade(&self.inner);
        Arc::new(move |c: &Committed<'_>| {
            let Some(inner) = weak.upgrade() else {
                return Vec::new();
            };
            let webhooks = inner.webhooks_for(&c.progress.rollout);
            if webhooks.is_empty() {
                return Vec::new();
            }
            let progress = Arc::new(c.progress.clone());
            let mut items = Vec::new();
            for (i, e) in c.events.iter().enumerate() {
                let event = event_of(c, e, progress.clone());
                for (endpoint, body) in webhook_bodies(&event, &webhooks) {
                    items.push(OutboxItem {
                        event: i,
                        endpoint,
                        body,
                    });
                }
            }
            items
        })
    }

    /// How many subscribers the event stream has now (API streams and actions waiting for
    /// their outcome).
    pub fn subscribers(&self) -> usize {
        self.inner.events.receiver_count()
    }

    /// Subscribe to the events committed from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.inner.events.subscribe()
    }

    /// Subscribe to the commits from now on that carry measurements but no event: (rollout,
    /// run). The web view redraws a chart on them; they are not events of the API's stream.
    pub fn subscribe_measured(&self) -> broadcast::Receiver<(String, i64)> {
        self.inner.measured.subscribe()
    }
}

impl Inner {
    /// Number an event and send it to the event stream (webhooks get theirs through the
    /// outbox).
    pub(super) fn emit(&self, mut event: Event) {
        let mut seq = self.seq.lock().unwrap_or_else(|e| e.into_inner());
        *seq += 1;
        event.seq = *seq;
        // No subscriber is not an error.
        let _ = self.events.send(Arc::new(event));
    }

    /// The webhooks for one rollout: the server's and the rollout's own (from the running
    /// configuration).
    pub(super) fn webhooks_for(&self, rollout: &str) -> Vec<crate::spec::model::NotificationSpec> {
        let mut out = self.config.global_webhooks.clone();
        if let Some(loaded) = self
            .loaded
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            && let Some(own) = loaded.webhooks.get(rollout)
        {
            out.extend(own.iter().cloned());
        }
        out
    }
}
