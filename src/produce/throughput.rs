//! The periodic throughput lines of the stream producers (`produce x`, `produce bluesky`).

use std::time::{Duration, Instant};

/// A report timer, and the rates since the last report and since the start.
pub struct Throughput {
    /// Ticks every report interval, the first one interval after the start.
    pub tick: tokio::time::Interval,
    started: Instant,
    last: Instant,
    last_count: u64,
}

impl Throughput {
    /// Call within a tokio runtime.
    pub fn new(every: Duration) -> Self {
        let now = Instant::now();
        Self {
            tick: tokio::time::interval_at((now + every).into(), every),
            started: now,
            last: now,
            last_count: 0,
        }
    }

    /// Items per second since the last call and since the start, with `count` items so far.
    pub fn rates(&mut self, count: u64) -> (f64, f64) {
        let now = Instant::now();
        let recent = count.saturating_sub(self.last_count) as f64 / (now - self.last).as_secs_f64();
        let overall = count as f64 / (now - self.started).as_secs_f64();
        self.last = now;
        self.last_count = count;
        (recent, overall)
    }
}
