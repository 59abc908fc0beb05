//! What other processes tell a runner through the database, at once: PostgreSQL's
//! `LISTEN/NOTIFY`. An action request (`rollgate_actions`, the run's id) wakes the run's
//! holder wherever the request was made; each audit event a commit appends
//! (`rollgate_events`, `id:seq`) tells every runner that a run another runner drives
//! moved, so each can show and stream it. (A commit that only measured says nothing: the
//! runners' views catch up at their next look.) Both are sent by the statement that writes them ([`super::sql`]) and delivered only
//! when its transaction commits.
//!
//! A SQLite store has no notifications ([`Store::listen`] answers `None`): its runners poll
//! (`--action-poll`). A listener whose connection drops reconnects by itself; what was
//! notified meanwhile is lost, so it yields [`Notice::Reconnected`] and the caller looks
//! at the store once (every pending action, every run) rather than trusting the stream.

use super::db::Pool;
use super::{Store, StoreError, db};
use sqlx::postgres::PgListener;

/// The channel of action requests (payload: the run's id).
pub const ACTIONS: &str = "rollgate_actions";
/// The channel of audit events (payload: `id:seq`).
pub const EVENTS: &str = "rollgate_events";

/// One notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notice {
    /// An action was requested for the run (rollout row id).
    Action(i64),
    /// The run (rollout row id) committed the audit event with this seq.
    Event(i64, i64),
    /// The connection was lost and made again: notifications may have been missed.
    Reconnected,
}

/// A connection listening to [`ACTIONS`] and [`EVENTS`].
pub struct Listener {
    inner: PgListener,
    /// Whether the last `recv` failed (the next success follows a reconnection).
    broken: bool,
    /// A notice received with a reconnection, returned by the next call.
    pending: Option<Notice>,
}

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listener")
            .field("broken", &self.broken)
            .finish()
    }
}

impl Store {
    /// Listen to what other processes write, if the database can tell (PostgreSQL);
    /// `None` for a SQLite file.
    pub async fn listen(&self) -> Result<Option<Listener>, StoreError> {
        let Pool::Postgres(pool) = &self.writer else {
            return Ok(None);
        };
        let mut inner = PgListener::connect_with(pool).await.map_err(db)?;
        inner.listen_all([ACTIONS, EVENTS]).await.map_err(db)?;
        Ok(Some(Listener {
            inner,
            broken: false,
            pending: None,
        }))
    }
}

impl Listener {
    /// The next notification. A payload that cannot be read is skipped (logged); a lost
    /// connection is retried (the driver reconnects and listens again) after a pause, and
    /// the first notice after it is [`Notice::Reconnected`].
    pub async fn next(&mut self) -> Notice {
        if let Some(notice) = self.pending.take() {
            return notice;
        }
        loop {
            match self.inner.try_recv().await {
                Ok(Some(n)) => {
                    if std::mem::take(&mut self.broken) {
                        // What arrived first is still read on the next call; first say
                        // that some may have been lost.
                        if let Some(notice) = parse(n.channel(), n.payload()) {
                            self.pending = Some(notice);
                        }
                        return Notice::Reconnected;
                    }
                    match parse(n.channel(), n.payload()) {
                        Some(notice) => return notice,
                        None => tracing::warn!(
                            channel = n.channel(),
                            "ignored a notification whose payload is not rollgate's"
                        ),
                    }
                }
                // The connection closed: the next try_recv reconnects.
                Ok(None) => self.broken = true,
                Err(e) => {
                    if !self.broken {
                        tracing::warn!("lost the database notification channel: {e}; reconnecting");
                    }
                    self.broken = true;
                    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                }
            }
        }
    }
}

/// A notification's meaning, from its channel and payload.
fn parse(channel: &str, payload: &str) -> Option<Notice> {
    match channel {
        ACTIONS => payload.parse().ok().map(Notice::Action),
        EVENTS => {
            let (id, generation) = payload.split_once(':')?;
            Some(Notice::Event(id.parse().ok()?, generation.parse().ok()?))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads() {
        assert_eq!(parse(ACTIONS, "42"), Some(Notice::Action(42)));
        assert_eq!(parse(EVENTS, "42:7"), Some(Notice::Event(42, 7)));
        assert_eq!(parse(EVENTS, "42"), None);
        assert_eq!(parse(ACTIONS, "x"), None);
        assert_eq!(parse("other", "1"), None);
    }
}
