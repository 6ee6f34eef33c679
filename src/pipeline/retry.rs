//! Retrying a batch after a transient failure (an unreachable store or broker), with
//! exponential backoff. Safe because re-running a planned batch is idempotent.

use std::time::Duration;

use super::PipelineError;
use crate::sink::SinkError;
use crate::source::SourceError;

#[derive(Debug, Clone)]
pub struct RetryPolicy {
    pub max_retries: u32,
    pub initial: Duration,
    pub max: Duration,
}

impl RetryPolicy {
    /// Wait before retry `attempt` (0-based): `initial * 2^attempt`, capped at `max`.
    pub fn delay(&self, attempt: u32) -> Duration {
        self.initial
            .saturating_mul(1u32.checked_shl(attempt).unwrap_or(u32::MAX))
            .min(self.max)
    }
}

impl PipelineError {
    /// Errors that may go away by themselves: storage or broker I/O. SQL, decode and
    /// log-consistency errors never do.
    pub fn is_transient(&self) -> bool {
        match self {
            PipelineError::Sink(SinkError::Delta { .. }) => true,
            PipelineError::Checkpoint(super::checkpoint::CheckpointError::Store { .. }) => true,
            PipelineError::Source(SourceError::Kafka(_)) => true,
            PipelineError::DeadLetterTopic(_) => true,
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delay_doubles_up_to_the_cap() {
        let policy = RetryPolicy {
            max_retries: 10,
            initial: Duration::from_millis(500),
            max: Duration::from_secs(5),
        };
        let delays: Vec<u64> = (0..6).map(|a| policy.delay(a).as_millis() as u64).collect();
        assert_eq!(delays, [500, 1000, 2000, 4000, 5000, 5000]);
        assert_eq!(policy.delay(40), Duration::from_secs(5));
    }
}
