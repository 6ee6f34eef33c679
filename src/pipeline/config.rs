//! The `[pipeline]` section: the batch loop's limits, progress, retention and retries.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::retry::RetryPolicy;
use crate::settings::{duration_text, InvalidSetting};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PipelineConfig {
    /// Names the offset log and the Delta `txn` app ids: two pipelines with one name share progress.
    pub name: String,
    pub sql_dir: PathBuf,
    /// Continuous mode closes a batch after this long, if the size limits did not close it first.
    #[serde(with = "duration_text")]
    pub trigger_interval: Duration,
    pub max_records_per_batch: usize,
    pub max_bytes_per_batch: usize,
    /// A message larger than this goes to the dead-letter table instead of being decoded.
    pub max_message_bytes: usize,
    /// Where the per-batch JSON progress lines go: `-` for stdout, or a file path (appended).
    pub progress_log: String,
    /// How many offset-log entries to keep per partition behind the latest one.
    pub log_retention_batches: usize,
    /// How often a batch is retried after a transient error (unreachable store or broker).
    pub max_retries: u32,
    /// The first wait before a retry; it doubles on every attempt.
    #[serde(with = "duration_text")]
    pub retry_backoff: Duration,
    /// The longest wait between retries.
    #[serde(with = "duration_text")]
    pub retry_backoff_max: Duration,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        Self {
            name: "tweetlake".into(),
            sql_dir: PathBuf::from("sql"),
            trigger_interval: Duration::from_secs(10),
            max_records_per_batch: 100_000,
            // 48 MiB keeps a 10M-post backlog's drain under 1 GiB resident (1000 MiB measured;
            // 64 MiB: 1039 MiB) at about the same rate.
            max_bytes_per_batch: 48 * 1024 * 1024,
            max_message_bytes: 1024 * 1024,
            progress_log: "-".into(),
            log_retention_batches: 100,
            max_retries: 10,
            retry_backoff: Duration::from_secs(1),
            retry_backoff_max: Duration::from_secs(60),
        }
    }
}

impl PipelineConfig {
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        let name_char = |c: char| c.is_ascii_alphanumeric() || "-_".contains(c);
        if self.name.is_empty() || !self.name.chars().all(name_char) {
            return Err(InvalidSetting::new(
                "name",
                "use letters, digits, '-' and '_' only",
            ));
        }
        if self.max_records_per_batch == 0 || self.max_bytes_per_batch == 0 {
            return Err(InvalidSetting::new(
                "max_records_per_batch",
                "batch limits must be above 0",
            ));
        }
        if self.max_message_bytes == 0 {
            return Err(InvalidSetting::new("max_message_bytes", "must be above 0"));
        }
        Ok(())
    }

    pub fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy {
            max_retries: self.max_retries,
            initial: self.retry_backoff,
            max: self.retry_backoff_max,
        }
    }
}
