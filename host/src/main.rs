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

/// jemalloc's options, read when it starts: a background thread returns freed pages to
/// the kernel on jemalloc's decay schedule even when the process allocates nothing (an
/// idle server); without it they are returned only on later allocations, and a server
/// with one rollout kept 83 MB resident after its start's burst instead of 60 MB.
/// (jemalloc reads this C string through the symbol's first word, the slice's pointer.)
#[cfg(feature = "jemalloc")]
#[unsafe(export_name = "_rjem_malloc_conf")]
pub static MALLOC_CONF: &[u8] = b"background_thread:true\0";

fn main() -> std::process::ExitCode {
    rollgate::cli::main()
}
