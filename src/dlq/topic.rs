//! Dead letters also published to a Kafka topic (`dlq.kafka_topic`), for teams that triage
//! from Kafka. The Delta dead-letter table stays the record of truth: publishing is at least
//! once (a re-run batch publishes its dead letters again), and the key, the source record's
//! `topic/partition/offset`, identifies repeats.

use deltalake::arrow::array::{Array, AsArray, RecordBatch};
use deltalake::arrow::datatypes::{Int32Type, Int64Type};

use crate::decode::batch_columns;
use crate::kafka::{KafkaConnection, KafkaPublisher, PublishError};
use crate::source::columns;

pub struct DeadLetterTopic {
    publisher: KafkaPublisher,
}

impl DeadLetterTopic {
    /// A publisher to `topic` over the same connection (brokers, security options) as the source.
    pub fn connect(connection: &KafkaConnection, topic: &str) -> Result<Self, PublishError> {
        Ok(Self {
            publisher: KafkaPublisher::connect(connection, topic)?,
        })
    }

    /// Publishes every row of a dead-letter batch (raw bytes, with the error as a header) and
    /// waits until the broker has them all.
    pub fn publish(&self, dead_letters: &RecordBatch) -> Result<(), PublishError> {
        if dead_letters.num_rows() == 0 {
            return Ok(());
        }
        let column = |name: &str| {
            dead_letters
                .column_by_name(name)
                .unwrap_or_else(|| panic!("dead letters have `{name}`"))
        };
        let topics = column(columns::TOPIC).as_string::<i32>();
        let partitions = column(columns::PARTITION).as_primitive::<Int32Type>();
        let offsets = column(columns::OFFSET).as_primitive::<Int64Type>();
        let errors = column(batch_columns::ERROR).as_string::<i32>();
        let raw = column(batch_columns::RAW_BYTES).as_binary::<i32>();
        for row in 0..dead_letters.num_rows() {
            let key = format!(
                "{}/{}/{}",
                topics.value(row),
                partitions.value(row),
                offsets.value(row)
            );
            let payload = if raw.is_null(row) { &[][..] } else { raw.value(row) };
            let headers = [("tweetlake.error", errors.value(row).as_bytes())];
            self.publisher
                .publish_with_headers(key.as_bytes(), payload, &headers)?;
        }
        self.publisher.flush().map(|_| ())
    }
}
