//! The runner: the process that drives runs on a store (`rollgate run` or `rollgate
//! serve`), and its heartbeat.
//!
//! A runner registers in the store when it starts driving runs ([`Runner::register`]): its
//! host, process id, command, version and heartbeat period. While it lives, a task of its
//! own ([`Runner::beat`]) writes a heartbeat every period; every run it drives records it
//! ([`crate::store::Store::claim_run`], done by [`super::Engine::drive`]); a clean stop
//! marks it stopped ([`Runner::stop`]). Whoever reads the store (`rollgate get`, the API)
//! can then tell a run that is being driven from one whose runner died: a heartbeat older
//! than [`STALE_AFTER`] periods, without a stop, is a runner that stopped reporting
//! ([`RunnerView::of`]).
//!
//! Heartbeats are read on the reader's clock ([`super::clock::now_ms`]), so readers and
//! runners on different machines need clocks that agree to well within three periods. One
//! runner drives a run at a time; a runner that starts on a store claims the runs it
//! resumes, whoever drove them before (several runners with leases on one database are a
//! later step: their lease columns sit beside these).

use super::clock::{now_ms, rfc3339_ms};
use crate::store::{NewRunner, RunnerRow, Store, StoreError};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The heartbeat period unless `--heartbeat` says otherwise.
pub const DEFAULT_PERIOD: Duration = Duration::from_secs(5);

/// The shortest period `--heartbeat` accepts: a heartbeat is a write to the store.
pub const MIN_PERIOD: Duration = Duration::from_millis(100);

/// The longest period `--heartbeat` accepts: beyond it a dead runner goes unnoticed for
/// hours.
pub const MAX_PERIOD: Duration = Duration::from_secs(3600);

/// A runner whose last heartbeat is older than this many periods (and that did not stop
/// cleanly) stopped reporting: it died, hangs, or cannot reach the store.
pub const STALE_AFTER: i64 = 3;

/// The heartbeat period given as a duration (`5s`, `200ms`), checked against its bounds.
pub fn parse_period(text: &str) -> Result<Duration, String> {
    let ms = rollgate_duration::parse_ms(text)?;
    let period = Duration::from_millis(ms);
    if period < MIN_PERIOD || period > MAX_PERIOD {
        return Err(format!(
            "{text:?} is outside {}ms..{}s: a heartbeat is a write to the store, and a runner is \
             reported stopped after {STALE_AFTER} periods without one",
            MIN_PERIOD.as_millis(),
            MAX_PERIOD.as_secs()
        ));
    }
    Ok(period)
}

/// A registered runner: this process, as the store knows it.
#[derive(Debug, Clone)]
pub struct Runner {
    store: Store,
    row: RunnerRow,
    period: Duration,
}

impl Runner {
    /// Register this process as a runner of `command` (`run` or `serve`) on `store`, with
    /// its first heartbeat now. Nothing beats until [`Runner::beat`] is spawned.
    pub async fn register(
        store: &Store,
        command: &str,
        period: Duration,
    ) -> Result<Runner, StoreError> {
        let host = host_name();
        let new = NewRunner {
            host: &host,
            pid: i64::from(std::process::id()),
            command,
            version: env!("CARGO_PKG_VERSION"),
            period_ms: i64::try_from(period.as_millis()).unwrap_or(i64::MAX),
        };
        let row = store.register_runner(new, now_ms()).await?;
        tracing::info!(
            runner = row.id,
            host = %row.host,
            pid = row.pid,
            period_ms = row.period_ms,
            "registered as the runner of this store's runs"
        );
        Ok(Runner {
            store: store.clone(),
            row,
            period,
        })
    }

    /// The store's id of this runner (what each run it drives records).
    pub fn id(&self) -> i64 {
        self.row.id
    }

    /// The heartbeat: one write every period, for as long as the future is polled. Spawn
    /// it, and abort it before [`Runner::stop`]. A write that fails is logged and the next
    /// one tried: a runner that cannot reach its store is shown as stopped reporting,
    /// which is the truth.
    pub fn beat(&self) -> impl Future<Output = ()> + Send + 'static {
        let store = self.store.clone();
        let id = self.row.id;
        let period = self.period;
        async move {
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            // The first tick is now: registering wrote the first heartbeat.
            tick.tick().await;
            loop {
                tick.tick().await;
                if let Err(e) = store.heartbeat(id, now_ms()).await {
                    tracing::warn!(runner = id, "cannot record this runner's heartbeat: {e}");
                }
            }
        }
    }

    /// Mark this runner stopped cleanly (after its heartbeat was aborted): the runs it
    /// leaves unfinished are shown as waiting for a runner, not as driven by a dead one.
    pub async fn stop(self) -> Result<(), StoreError> {
        self.store.runner_stopped(self.row.id, now_ms()).await
    }
}

/// This machine's name, as `hostname` prints it (`unknown-host` when it cannot be read).
pub fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname writes at most that many
    // bytes and the name is cut at the first NUL below (or at the end, when truncated).
    let ok = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } == 0;
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    let name = String::from_utf8_lossy(&buf[..end]).trim().to_string();
    if ok && !name.is_empty() {
        name
    } else {
        "unknown-host".to_string()
    }
}

/// Who drives an unfinished run, as `rollgate get` and the API show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunnerView {
    /// The store's id of the runner.
    pub id: i64,
    /// The machine it runs on.
    pub host: String,
    /// Its process id there.
    pub pid: i64,
    /// `run` or `serve`.
    pub command: String,
    /// When it registered.
    pub started_ms: i64,
    /// Its last heartbeat.
    pub heartbeat_ms: i64,
    /// Its heartbeat period.
    pub period_ms: i64,
    /// When it stopped cleanly, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped_ms: Option<i64>,
    /// True when it stopped reporting: no heartbeat for over [`STALE_AFTER`] periods and
    /// no clean stop (it died, hangs or lost the store).
    pub stale: bool,
    /// What that means, in a sentence; when the run is not progressing, what to do.
    pub message: String,
}

impl RunnerView {
    /// The view of a runner at `now` (ms, the reader's clock). Stopped wins over stale: a
    /// runner that stopped cleanly is not reported as one that died.
    pub fn of(row: &RunnerRow, now: i64) -> RunnerView {
        let silent_ms = now.saturating_sub(row.heartbeat_ms);
        let stale = row.stopped_ms.is_none()
            && silent_ms > row.period_ms.max(0).saturating_mul(STALE_AFTER);
        let restart = format!(
            "the run is not progressing — restart `rollgate {}` on this store",
            row.command
        );
        let message = match row.stopped_ms {
            Some(at) => format!(
                "runner on {} was stopped at {}; {restart}",
                row.host,
                utc_text(at)
            ),
            None if stale => format!(
                "runner on {} stopped reporting at {}; {restart}",
                row.host,
                utc_text(row.heartbeat_ms)
            ),
            None => format!(
                "driven by `rollgate {}` on {} (pid {}, runner {}), heartbeat every {}",
                row.command,
                row.host,
                row.pid,
                row.id,
                super::human_ms(u64::try_from(row.period_ms).unwrap_or(0))
            ),
        };
        RunnerView {
            id: row.id,
            host: row.host.clone(),
            pid: row.pid,
            command: row.command.clone(),
            started_ms: row.started_ms,
            heartbeat_ms: row.heartbeat_ms,
            period_ms: row.period_ms,
            stopped_ms: row.stopped_ms,
            stale,
            message,
        }
    }

    /// True when the run is not progressing: its runner stopped reporting or was stopped.
    pub fn is_gone(&self) -> bool {
        self.stale || self.stopped_ms.is_some()
    }
}

/// `2026-01-01 12:00:05 UTC`: an instant for people, to the second.
pub fn utc_text(ms: i64) -> String {
    let text = rfc3339_ms(ms.saturating_sub(ms.rem_euclid(1000)));
    format!("{} UTC", text.trim_end_matches('Z').replacen('T', " ", 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row() -> RunnerRow {
        RunnerRow {
            id: 7,
            host: "build-3".into(),
            pid: 4242,
            command: "run".into(),
            version: "0.1.0".into(),
            started_ms: 1_767_225_600_000,
            heartbeat_ms: 1_767_225_605_000,
            period_ms: 5_000,
            stopped_ms: None,
        }
    }

    #[test]
    fn fresh_until_three_periods_pass() {
        let r = row();
        for (now, stale) in [
            (r.heartbeat_ms, false),
            (r.heartbeat_ms + 15_000, false),
            (r.heartbeat_ms + 15_001, true),
            // A reader whose clock is behind the runner's is not misled into "stale".
            (r.heartbeat_ms - 60_000, false),
        ] {
            let v = RunnerView::of(&r, now);
            assert_eq!(v.stale, stale, "at +{} ms", now - r.heartbeat_ms);
            assert_eq!(v.is_gone(), stale);
        }
        let fresh = RunnerView::of(&r, r.heartbeat_ms);
        assert_eq!(
            fresh.message,
            "driven by `rollgate run` on build-3 (pid 4242, runner 7), heartbeat every 5s"
        );
    }

    #[test]
    fn the_sentences_say_what_happened_and_what_to_do() {
        let r = row();
        let stale = RunnerView::of(&r, r.heartbeat_ms + 60_000);
        assert_eq!(
            stale.message,
            "runner on build-3 stopped reporting at 2026-01-01 00:00:05 UTC; the run is not \
             progressing — restart `rollgate run` on this store"
        );
        let stopped = RunnerView::of(
            &RunnerRow {
                stopped_ms: Some(1_767_225_606_500),
                command: "serve".into(),
                ..r.clone()
            },
            r.heartbeat_ms + 3_600_000,
        );
        assert!(!stopped.stale, "a clean stop is not a crash");
        assert!(stopped.is_gone());
        assert_eq!(
            stopped.message,
            "runner on build-3 was stopped at 2026-01-01 00:00:06 UTC; the run is not \
             progressing — restart `rollgate serve` on this store"
        );
    }

    #[test]
    fn rows_from_outside_cannot_overflow() {
        let odd = RunnerRow {
            heartbeat_ms: i64::MIN,
            period_ms: i64::MAX,
            started_ms: i64::MAX,
            ..row()
        };
        assert!(!RunnerView::of(&odd, i64::MAX).stale);
        let negative = RunnerRow {
            period_ms: -5,
            ..row()
        };
        assert!(RunnerView::of(&negative, negative.heartbeat_ms + 1).stale);
        let _ = utc_text(i64::MIN);
        let _ = utc_text(i64::MAX);
    }

    #[test]
    fn periods_are_bounded() {
        assert_eq!(parse_period("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_period("200ms"), Ok(Duration::from_millis(200)));
        for bad in ["10ms", "2h", "soon"] {
            assert!(parse_period(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_host_has_a_name() {
        assert!(!host_name().is_empty());
    }
}
