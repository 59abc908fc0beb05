//! The `rollgate` binary: everything lives in the library; see `rollgate::cli`.

/// jemalloc, not glibc's allocator: a server's measurements allocate and free many
/// short-lived buffers (a query's samples, a plugin call's details, a checkpoint's JSON)
/// among a large, long-lived heap, and glibc spent a quarter of the CPU of `rollgate serve`
/// at 100,000 rollouts in `_int_malloc`, bin unlinking and consolidation. With jemalloc
/// the same server measured 10,000 times a second (its schedule) at 1.38 cores and
/// 1.09 GB, against 6,580 at 1.56 cores and 1.29 GB (README, Performance).
#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    rollgate::cli::main()
}
