//! Dead letters: records that failed to decode, kept with their raw bytes, the reason and their
//! source offset. The Delta table (`dlq.table`) is the record of truth; a Kafka topic
//! (`dlq.kafka_topic`) can also receive them, for teams that triage from Kafka.

pub mod replay;
pub mod topic;

use serde::Deserialize;

use crate::kafka::{KafkaConnection, PublishError};
use crate::settings::InvalidSetting;

pub use replay::{queue_table, Queued, Replay, ReplayError, Selection};
pub use topic::DeadLetterTopic;

/// The `[dlq]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DlqConfig {
    /// Name of the dead-letter Delta table under the lake.
    pub table: String,
    /// Also publish dead letters to this Kafka topic (over the source's connection); empty: off.
    pub kafka_topic: String,
}

impl Default for DlqConfig {
    fn default() -> Self {
        Self {
            table: "dlq".into(),
            kafka_topic: String::new(),
        }
    }
}

impl DlqConfig {
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        // Empty would name the lake root itself.
        let valid =
            |part: &str| !part.is_empty() && part.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !self.table.split('.').all(valid) {
            return Err(InvalidSetting::new(
                "table",
                "a table name like `dlq` or `ops.dlq`: letters, digits and '_'",
            ));
        }
        Ok(())
    }
}

/// Where a batch's dead letters go: always the table, and the topic when one is configured.
pub struct DeadLetters {
    pub table: String,
    pub topic: Option<DeadLetterTopic>,
}

impl DeadLetters {
    /// The destinations `config` names; the topic is reached over `kafka`, the source's own
    /// connection, so a secured cluster needs its options set once.
    pub fn new(config: &DlqConfig, kafka: &KafkaConnection) -> Result<Self, PublishError> {
        let topic = match config.kafka_topic.as_str() {
            "" => None,
            topic => Some(DeadLetterTopic::connect(kafka, topic)?),
        };
        Ok(Self {
            table: config.table.clone(),
            topic,
        })
    }

    /// Only the table: for runs that publish nowhere (tests, benchmarks).
    pub fn table_only(table: &str) -> Self {
        Self {
            table: table.to_string(),
            topic: None,
        }
    }
}
