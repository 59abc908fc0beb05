//! Handing freed heap memory back to the kernel.
//!
//! glibc's allocator keeps what a process frees in its arenas for later allocations and
//! returns it to the kernel only from the top of each arena. A server's start burst —
//! every run parsing its spec and checkpoint and measuring at once — leaves tens of MB
//! free but resident in the middle of the arenas, and the steady churn of measurements
//! and commits fragments them further: with 5,000 rollouts `rollgate serve` held 246 MB
//! resident of which `malloc_trim` returned 58 MB (12 KB a rollout). `serve` trims once
//! ready and then every [`TRIM_EVERY`]; each trim's duration is logged at debug level.
//! Off glibc (musl) there is nothing to trim and it does nothing.
//!
//! The `rollgate` binary's own allocations go to jemalloc (the default `jemalloc`
//! feature, see `src/main.rs`), which returns freed pages on its own (its decay); the
//! trimmer then only concerns what still uses glibc's `malloc` — SQLite, and the library
//! built without that feature.

use std::time::Duration;

/// How often a server trims its heap.
pub const TRIM_EVERY: Duration = Duration::from_secs(30);

/// Return the free memory of every arena to the kernel; whether any was returned.
pub fn trim() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: malloc_trim only walks and releases the allocator's own free lists;
        // it takes the arenas' locks like any allocation.
        unsafe { libc::malloc_trim(0) == 1 }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

/// Trim now, on a blocking thread (it holds each arena's lock while it walks it), and
/// then every `every` until the runtime stops.
pub fn spawn_trimmer(every: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let started = std::time::Instant::now();
            if let Ok(released) = tokio::task::spawn_blocking(trim).await {
                tracing::debug!(
                    released,
                    took_us = started.elapsed().as_micros() as u64,
                    "trimmed the heap"
                );
            }
        }
    })
}

#[cfg(all(test, target_os = "linux", target_env = "gnu"))]
mod tests {
    /// Resident pages of this process, in bytes.
    fn resident() -> u64 {
        let statm = std::fs::read_to_string("/proc/self/statm").expect("statm");
        let pages: u64 = statm
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse().ok())
            .expect("resident pages");
        pages * 4096
    }

    /// Memory freed in small blocks between live ones stays resident with the allocator
    /// until a trim returns it.
    #[test]
    fn a_trim_returns_freed_small_blocks() {
        // On its own thread: its blocks come from one arena.
        let (before, after) = std::thread::spawn(|| {
            let blocks: Vec<Vec<u8>> = (0..64 * 1024).map(|i| vec![i as u8; 1000]).collect();
            // Keep every 64th block: the free ones sit between live ones, where an arena
            // cannot give them back by shrinking its top.
            let kept: Vec<Vec<u8>> = blocks.into_iter().step_by(64).collect();
            let before = resident();
            super::trim();
            let after = resident();
            assert_eq!(kept.len(), 1024);
            (before, after)
        })
        .join()
        .expect("thread");
        // 63 MB were freed; other tests of this process allocate meanwhile.
        assert!(
            after + (24 << 20) < before,
            "a trim returned {} KB of the 63 MB freed",
            before.saturating_sub(after) / 1024
        );
    }
}
