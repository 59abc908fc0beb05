//! Where the engine's time comes from.
//!
//! Rollouts wait a lot: between measurements, through timed pauses, between batches. The
//! engine never reads the system clock or sleeps directly; it asks a [`Clock`]. The
//! [`SystemClock`] is real time. The [`SimClock`] is a simulated clock that *jumps to the
//! next timer* once every registered actor (one per rollout) is waiting, so a one-hour
//! rollout over recorded metrics replays in milliseconds, and several rollouts on one
//! simulated clock still see one consistent time.
//!
//! The simulated clock deliberately is not tokio's paused time: the plugin host's call
//! supervisor uses tokio timers, and a paused tokio clock would fire them while a plugin
//! is running.

use crate::metrics::BoxFuture;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;

/// A source of time for the engine.
pub trait Clock: Send + Sync {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> i64;
    /// Resolve once `now_ms() >= at_ms`.
    fn sleep_until(&self, at_ms: i64) -> BoxFuture<'static, ()>;
    /// True for a simulated clock (nothing outside the process can act while it runs).
    fn is_simulated(&self) -> bool;
}

/// The wall clock in milliseconds since the Unix epoch (0 before 1970): the one reading of
/// real time that the engine ([`SystemClock`]), the server and the CLI share.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Milliseconds since the Unix epoch as RFC 3339 in UTC (`2026-01-01T00:05:00Z`, with
/// milliseconds only when there are some).
pub fn rfc3339_ms(ms: i64) -> String {
    let seconds = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let days = seconds.div_euclid(86_400);
    let secs = seconds.rem_euclid(86_400);
    // The civil date from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let (h, m, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
    if millis == 0 {
        format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}Z")
    } else {
        format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}.{millis:03}Z")
    }
}

/// Real time.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        now_ms()
    }

    fn sleep_until(&self, at_ms: i64) -> BoxFuture<'static, ()> {
        let wait = at_ms.saturating_sub(self.now_ms()).max(0) as u64;
        Box::pin(tokio::time::sleep(std::time::Duration::from_millis(wait)))
    }

    fn is_simulated(&self) -> bool {
        false
    }
}

#[derive(Debug, Default)]
struct SimState {
    now: i64,
    actors: usize,
    next_id: u64,
    waiting: BTreeMap<(i64, u64), oneshot::Sender<()>>,
}

impl SimState {
    /// Jump to the earliest timer while every actor waits.
    fn advance(&mut self) {
        while !self.waiting.is_empty() && self.waiting.len() >= self.actors {
            let Some((&(at, _), _)) = self.waiting.first_key_value() else {
                return;
            };
            self.now = self.now.max(at);
            while let Some(entry) = self.waiting.first_entry() {
                if entry.key().0 > self.now {
                    break;
                }
                let _ = entry.remove().send(());
            }
        }
    }
}

/// A simulated clock that jumps to the next timer when every actor is waiting.
///
/// With no registered actors (a single sequential user) every sleep returns at once after
/// moving the clock forward.
#[derive(Debug, Clone, Default)]
pub struct SimClock {
    state: Arc<Mutex<SimState>>,
}

/// An actor registered with a [`SimClock`]; time only jumps while every live actor sleeps.
#[derive(Debug)]
pub struct Actor {
    state: Arc<Mutex<SimState>>,
}

impl Drop for Actor {
    fn drop(&mut self) {
        if let Ok(mut s) = self.state.lock() {
            s.actors = s.actors.saturating_sub(1);
            s.advance();
        }
    }
}

/// Removes a sleeper whose future was dropped before it fired.
struct Sleeper {
    state: Arc<Mutex<SimState>>,
    key: (i64, u64),
}

impl Drop for Sleeper {
    fn drop(&mut self) {
        if let Ok(mut s) = self.state.lock()
            && s.waiting.remove(&self.key).is_some()
        {
            s.advance();
        }
    }
}

impl SimClock {
    /// A simulated clock starting at `start_ms`.
    pub fn new(start_ms: i64) -> SimClock {
        SimClock {
            state: Arc::new(Mutex::new(SimState {
                now: start_ms,
                ..SimState::default()
            })),
        }
    }

    /// Register an actor (one per concurrently running rollout).
    pub fn actor(&self) -> Actor {
        if let Ok(mut s) = self.state.lock() {
            s.actors += 1;
        }
        Actor {
            state: self.state.clone(),
        }
    }
}

impl Clock for SimClock {
    fn now_ms(&self) -> i64 {
        self.state.lock().map(|s| s.now).unwrap_or(0)
    }

    fn sleep_until(&self, at_ms: i64) -> BoxFuture<'static, ()> {
        let state = self.state.clone();
        Box::pin(async move {
            let (rx, key) = {
                let Ok(mut s) = state.lock() else { return };
                if at_ms <= s.now {
                    return;
                }
                let (tx, rx) = oneshot::channel();
                s.next_id += 1;
                let key = (at_ms, s.next_id);
                s.waiting.insert(key, tx);
                s.advance();
                (rx, key)
            };
            let _sleeper = Sleeper {
                state: state.clone(),
                key,
            };
            let _ = rx.await;
        })
    }

    fn is_simulated(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_lone_sleeper_jumps_at_once() {
        let clock = SimClock::new(1_000);
        clock.sleep_until(3_601_000).await;
        assert_eq!(clock.now_ms(), 3_601_000);
        // Sleeping into the past does not move time back.
        clock.sleep_until(5).await;
        assert_eq!(clock.now_ms(), 3_601_000);
    }

    #[tokio::test]
    async fn time_waits_for_every_actor() {
        let clock = SimClock::new(0);
        let a = clock.actor();
        let b = clock.actor();
        let order = Arc::new(Mutex::new(Vec::new()));
        let (c1, o1) = (clock.clone(), order.clone());
        let first = tokio::spawn(async move {
            let _a = a;
            c1.sleep_until(100).await;
            o1.lock().unwrap().push((1, c1.now_ms()));
            c1.sleep_until(300).await;
            o1.lock().unwrap().push((3, c1.now_ms()));
        });
        let (c2, o2) = (clock.clone(), order.clone());
        let second = tokio::spawn(async move {
            let _b = b;
            c2.sleep_until(200).await;
            o2.lock().unwrap().push((2, c2.now_ms()));
        });
        first.await.unwrap();
        second.await.unwrap();
        assert_eq!(*order.lock().unwrap(), vec![(1, 100), (2, 200), (3, 300)]);
    }

    #[tokio::test]
    async fn a_busy_actor_holds_time_still() {
        let clock = SimClock::new(0);
        let busy = clock.actor();
        let sleeper = clock.actor();
        let c = clock.clone();
        let task = tokio::spawn(async move {
            let _s = sleeper;
            c.sleep_until(1_000).await;
        });
        tokio::task::yield_now().await;
        // One actor is still "working": the clock must not have jumped.
        assert_eq!(clock.now_ms(), 0);
        assert!(!task.is_finished());
        drop(busy);
        task.await.unwrap();
        assert_eq!(clock.now_ms(), 1_000);
    }
}
