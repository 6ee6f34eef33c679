//! Allocator settings for long runs. A batch allocates hundreds of MiB of short-lived Arrow
//! and Parquet buffers on several threads; glibc keeps what they free, so without these a
//! drain's resident memory follows its busiest moment and then creeps up with fragmentation.

/// glibc gives each allocating thread its own heap arena (up to eight per core): two per core
/// cost no measured throughput and bound how many heaps fragment. Call before any thread starts.
pub fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        // SAFETY: mallopt only sets an allocator parameter; no thread has allocated yet.
        unsafe { libc::mallopt(libc::M_ARENA_MAX, (2 * cores).min(64) as libc::c_int) };
    }
}

/// Hands the pages a finished batch freed back to the system (about 30 ms), so resident
/// memory between batches is what is live, not the last batch's peak.
pub fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free heap pages to the kernel.
    unsafe {
        libc::malloc_trim(0);
    }
}
