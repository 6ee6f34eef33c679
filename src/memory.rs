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

/// Input bytes the batches read between two trims. A trim takes about 30 ms: a batch of 48 MiB
/// still trims after itself, a trigger's worth of a few hundred posts does not pay it each time.
const TRIM_AFTER_BYTES: usize = 32 << 20;

/// Hands the pages finished batches freed back to the system once they read enough since the
/// last time, and whenever the pipeline goes idle, so resident memory between batches is what is
/// live, not the last batches' peak.
#[derive(Debug, Default)]
pub struct FreedMemory {
    read_since_trim: usize,
}

impl FreedMemory {
    /// A batch that read `input_bytes` finished. Returns whether memory was handed back.
    pub fn batch_done(&mut self, input_bytes: usize) -> bool {
        self.read_since_trim += input_bytes;
        self.read_since_trim >= TRIM_AFTER_BYTES && self.trim()
    }

    /// A read found nothing new: a good moment to hand back what batches freed since the last trim.
    pub fn idle(&mut self) -> bool {
        self.read_since_trim > 0 && self.trim()
    }

    fn trim(&mut self) -> bool {
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        // SAFETY: malloc_trim only returns free heap pages to the kernel.
        unsafe {
            libc::malloc_trim(0);
        }
        self.read_since_trim = 0;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_batches_trim_once_they_add_up_and_when_idle() {
        let mut freed = FreedMemory::default();
        let small = TRIM_AFTER_BYTES / 4;
        assert_eq!([small, small, small].map(|b| freed.batch_done(b)), [false; 3]);
        assert!(freed.batch_done(small), "the fourth reaches the threshold");
        assert!(!freed.idle(), "nothing read since that trim");
        assert!(!freed.batch_done(10));
        assert!(freed.idle());
        assert!(
            freed.batch_done(TRIM_AFTER_BYTES),
            "a large batch trims after itself"
        );
    }
}
