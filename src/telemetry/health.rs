//! What `/readyz` answers: the batch loop's heartbeat and the partitions it owns.
//!
//! Ready means the instance owns partitions and its loop made progress lately: a batch finished,
//! or a read came back empty. An idle topic commits nothing, so commits alone would call a
//! healthy idle pipeline unready; a loop stuck in retries, or in one endless batch, stops beating.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

/// The loop's state as the probes see it: one per process, like the metrics recorder.
pub(super) static HEALTH: Health = Health::new();

/// Ready within this many trigger intervals of the last heartbeat ...
const READY_TRIGGERS: u32 = 3;
/// ... but never less than this: a short trigger must not make a slow batch look stuck.
const READY_WINDOW_MIN: Duration = Duration::from_secs(30);

/// How long after its last heartbeat a pipeline with this trigger interval still counts as
/// ready: three trigger intervals, at least 30 s.
pub fn ready_window(trigger_interval: Duration) -> Duration {
    (trigger_interval * READY_TRIGGERS).max(READY_WINDOW_MIN)
}

pub(super) struct Health {
    /// Partitions owned now; -1 until the loop first read the source's assignment.
    owned_partitions: AtomicI64,
    /// `monotonic_millis` of the last heartbeat; 0: none yet.
    last_beat: AtomicU64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    Ready,
    /// Why not, for the probe's body and the person reading it.
    NotReady(String),
}

impl Health {
    const fn new() -> Self {
        Self {
            owned_partitions: AtomicI64::new(-1),
            last_beat: AtomicU64::new(0),
        }
    }

    pub(super) fn beat(&self) {
        self.last_beat.store(super::monotonic_millis(), Ordering::Relaxed);
    }

    pub(super) fn set_owned_partitions(&self, count: usize) {
        self.owned_partitions.store(count as i64, Ordering::Relaxed);
    }

    pub(super) fn readiness(&self, window: Duration) -> Readiness {
        self.readiness_at(super::monotonic_millis(), window)
    }

    fn readiness_at(&self, now_millis: u64, window: Duration) -> Readiness {
        if self.owned_partitions.load(Ordering::Relaxed) == 0 {
            return Readiness::NotReady(
                "no partitions assigned: other members of the consumer group hold them all".into(),
            );
        }
        let last = self.last_beat.load(Ordering::Relaxed);
        if last == 0 {
            return Readiness::NotReady("starting: no batch finished and no read completed yet".into());
        }
        let quiet = Duration::from_millis(now_millis.saturating_sub(last));
        if quiet > window {
            return Readiness::NotReady(format!(
                "no batch finished and no read completed for {:.0} s (ready within {:.0} s): \
                 retrying a failure, or a batch is taking that long",
                quiet.as_secs_f64(),
                window.as_secs_f64()
            ));
        }
        Readiness::Ready
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW: Duration = Duration::from_secs(30);

    fn not_ready(readiness: Readiness) -> String {
        match readiness {
            Readiness::NotReady(why) => why,
            Readiness::Ready => panic!("ready"),
        }
    }

    #[test]
    fn ready_needs_partitions_and_a_recent_heartbeat() {
        let health = Health::new();
        assert!(not_ready(health.readiness_at(10, WINDOW)).contains("starting"));
        health.last_beat.store(1_000, Ordering::Relaxed);
        assert_eq!(
            health.readiness_at(1_000, WINDOW),
            Readiness::Ready,
            "the assignment is not known yet; the loop beats"
        );
        health.set_owned_partitions(0);
        assert!(not_ready(health.readiness_at(1_000, WINDOW)).contains("no partitions assigned"));
        health.set_owned_partitions(3);
        assert_eq!(health.readiness_at(31_000, WINDOW), Readiness::Ready);
        let stale = not_ready(health.readiness_at(31_001, WINDOW));
        assert!(stale.contains("for 30 s (ready within 30 s)"), "{stale}");
    }

    #[test]
    fn the_window_is_three_triggers_and_at_least_30_s() {
        assert_eq!(ready_window(Duration::from_secs(10)), Duration::from_secs(30));
        assert_eq!(ready_window(Duration::from_millis(200)), Duration::from_secs(30));
        assert_eq!(ready_window(Duration::from_secs(60)), Duration::from_secs(180));
    }
}
