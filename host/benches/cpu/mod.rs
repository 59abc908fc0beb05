//! CPU time, as more than one bench measures it (a module of each bench that says `mod cpu;`).

use std::time::Duration;

/// CPU time (user + system) of `clock`: `CLOCK_THREAD_CPUTIME_ID` for the calling thread,
/// `CLOCK_PROCESS_CPUTIME_ID` for the whole process. Unlike wall time, it does not count the
/// time other processes on a shared machine take the core away, so ratios stay comparable.
pub fn cpu_time(clock: libc::clockid_t) -> Duration {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec it is given.
    let rc = unsafe { libc::clock_gettime(clock, &mut t) };
    assert_eq!(rc, 0, "clock_gettime({clock})");
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}
