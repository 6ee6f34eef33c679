//! Retrying after a transient failure (an unreachable store or broker), with exponential
//! backoff. Safe because re-running a planned batch is idempotent, and a step that failed
//! before its batch was planned left nothing behind.

use std::fmt::Display;
use std::time::Duration;

use super::checkpoint::CheckpointError;
use super::PipelineError;
use crate::lake::StoreFailure;

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

/// The policy plus the count of transient failures since the last batch that went through:
/// an outage that moves from one step to the next (writing the log, then reading it) still
/// uses up one budget of retries.
#[derive(Debug)]
pub struct Backoff {
    policy: RetryPolicy,
    failures: u32,
}

impl Backoff {
    pub fn new(policy: RetryPolicy) -> Self {
        Self { policy, failures: 0 }
    }

    /// Waits before `step` is tried again, or gives `error` back when it is permanent or the
    /// retries are used up.
    pub async fn wait_out(&mut self, step: impl Display, error: PipelineError) -> Result<(), PipelineError> {
        if !error.is_transient() || self.failures >= self.policy.max_retries {
            return Err(error);
        }
        let delay = self.policy.delay(self.failures);
        self.failures += 1;
        tracing::warn!(
            "{step}: {error}; retrying in {:.1} s (attempt {} of {})",
            delay.as_secs_f64(),
            self.failures,
            self.policy.max_retries
        );
        tokio::time::sleep(delay).await;
        Ok(())
    }

    /// A batch went through: the next outage starts a fresh budget.
    pub fn reset(&mut self) {
        self.failures = 0;
    }
}

impl PipelineError {
    /// Errors that may go away by themselves: storage or broker I/O, unless the store or the
    /// broker refused for good. SQL, decode and log-consistency errors never do.
    pub fn is_transient(&self) -> bool {
        match self {
            PipelineError::Source(error) => error.is_transient(),
            PipelineError::Lake(error) => error.is_transient(),
            PipelineError::Sink(error) => error.is_transient(),
            PipelineError::Checkpoint(CheckpointError::Store { source, .. }) => {
                !StoreFailure::of(source).is_permanent()
            }
            PipelineError::DeadLetterTopic(error) => error.is_transient(),
            PipelineError::Transform(error) => error.is_transient(),
            PipelineError::Checkpoint(_) | PipelineError::Decode(_) | PipelineError::Progress { .. } => false,
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

    fn store_error(source: deltalake::ObjectStoreError) -> PipelineError {
        PipelineError::Checkpoint(CheckpointError::Store {
            path: "batches/1.json".into(),
            source,
        })
    }

    /// A store that went away mid-request: object_store reports it as a generic error whose
    /// cause is an I/O error of a kind no classification treats as permanent.
    fn cut() -> PipelineError {
        store_error(deltalake::ObjectStoreError::Generic {
            store: "S3",
            source: Box::new(std::io::Error::from(std::io::ErrorKind::ConnectionReset)),
        })
    }

    #[tokio::test]
    async fn backoff_spends_one_budget_until_a_batch_goes_through() {
        let mut backoff = Backoff::new(RetryPolicy {
            max_retries: 2,
            initial: Duration::ZERO,
            max: Duration::ZERO,
        });
        assert!(backoff.wait_out("planning", cut()).await.is_ok());
        assert!(backoff.wait_out("reading", cut()).await.is_ok());
        assert!(backoff.wait_out("planning", cut()).await.is_err());
        backoff.reset();
        assert!(backoff.wait_out("planning", cut()).await.is_ok());
    }

    #[tokio::test]
    async fn backoff_gives_a_permanent_error_back_at_once() {
        let mut backoff = Backoff::new(RetryPolicy {
            max_retries: 5,
            initial: Duration::ZERO,
            max: Duration::ZERO,
        });
        let corrupt = PipelineError::Checkpoint(CheckpointError::Corrupt {
            path: "batches/1.json".into(),
            message: "not json".into(),
        });
        assert!(backoff.wait_out("planning", corrupt).await.is_err());
        let no_bucket = store_error(deltalake::ObjectStoreError::NotFound {
            path: "batches/1.json".into(),
            source: "<Error><Code>NoSuchBucket</Code></Error>".into(),
        });
        assert!(backoff.wait_out("planning", no_bucket).await.is_err());
        let refused = store_error(deltalake::ObjectStoreError::PermissionDenied {
            path: "batches/1.json".into(),
            source: "SignatureDoesNotMatch".into(),
        });
        assert!(backoff.wait_out("planning", refused).await.is_err());
        let full = store_error(deltalake::ObjectStoreError::Generic {
            store: "LocalFileSystem",
            source: Box::new(std::io::Error::from(std::io::ErrorKind::StorageFull)),
        });
        assert!(backoff.wait_out("planning", full).await.is_err());
        assert!(backoff.wait_out("planning", cut()).await.is_ok());
    }
}
