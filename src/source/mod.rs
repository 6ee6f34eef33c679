//! Sources of raw stream messages. A batch is a set of per-partition offset ranges: reading the
//! same ranges again must return the same records, which is what makes a re-run after a crash
//! produce the same rows.

pub mod file;
pub mod kafka;
pub mod replay;

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use deltalake::arrow::array::{
    ArrayBuilder, ArrayRef, BinaryBuilder, Int32Builder, Int64Builder, RecordBatch, StringBuilder,
    TimestampMicrosecondBuilder,
};
use deltalake::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use rdkafka::error::KafkaError;
use serde::{Deserialize, Serialize};

use crate::kafka::{KafkaConnection, KafkaFailure};
use crate::settings::{duration_text, name_list, string_map, InvalidSetting};

pub use file::{FileSource, FileSourceConfig};
pub use kafka::{KafkaSource, KafkaSourceConfig, PartitionAssignment, StartingOffsets};
pub use replay::ReplaySource;

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("cannot read {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{path}: batch range {range} is past the end of the file (was the file replaced or truncated?)")]
    RangeGone { path: String, range: String },
    /// A broker call failed while `context`; its code says whether waiting can help.
    #[error("kafka: {context}: {source}{hint}", hint = KafkaFailure::of(source).hint())]
    Kafka {
        context: &'static str,
        source: KafkaError,
    },
    /// librdkafka reported a permanent failure in the background (refused credentials, say).
    #[error("kafka: {reason}{hint}", hint = KafkaFailure::of(source).hint())]
    Refused { reason: String, source: KafkaError },
    #[error("kafka: cannot reach Kafka at {bootstrap}: {source} (check source.bootstrap_servers and that the broker runs)")]
    Unreachable { bootstrap: String, source: KafkaError },
    /// `key` is the setting that named the topic: `topic` or `topics`.
    #[error("kafka: topic `{topic}` does not exist on {bootstrap} (create it, or fix source.{key})")]
    TopicMissing {
        topic: String,
        key: &'static str,
        bootstrap: String,
    },
    #[error("kafka: no end-of-partition event for {topic} partitions {partitions}: cannot tell where the data ends")]
    NoEndOfPartition { topic: String, partitions: String },
    #[error("kafka: planned range {range} could not be read again within {within:?}")]
    RangeUnreadable { range: String, within: Duration },
    #[error("kafka: {0} were deleted by retention before tweetlake read them (set source.fail_on_data_loss = false to skip ahead)")]
    DataLost(String),
    /// Reading the dead-letter replay queue (`dlq replay`).
    #[error("replay queue {table}: {source}")]
    ReplayQueue {
        table: String,
        source: deltalake::datafusion::error::DataFusionError,
    },
}

impl SourceError {
    /// Errors that may go away by themselves: a broker that is down or slow. A missing file or
    /// topic, lost offsets and refused credentials never do.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Kafka { source, .. } | Self::Unreachable { source, .. } => {
                !KafkaFailure::of(source).is_permanent()
            }
            Self::NoEndOfPartition { .. } | Self::RangeUnreadable { .. } => true,
            Self::Io { .. }
            | Self::RangeGone { .. }
            | Self::Refused { .. }
            | Self::TopicMissing { .. }
            | Self::DataLost(_)
            | Self::ReplayQueue { .. } => false,
        }
    }
}

/// Which source `tweetlake run` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    /// A JSONL(.gz) file of X stream messages: the embedded default.
    #[default]
    File,
    Kafka,
}

/// The `[source]` section: which source runs, and each source's own settings. Both sources'
/// settings are always there: `produce --kafka` publishes to the Kafka topic whatever the kind.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(from = "SourceSection")]
pub struct SourceConfig {
    pub kind: SourceKind,
    pub file: FileSourceConfig,
    pub kafka: KafkaSourceConfig,
}

impl SourceConfig {
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        match self.kind {
            // `produce --kafka` publishes to the configured topic whatever the kind.
            SourceKind::File => self.kafka.validate_topics(),
            SourceKind::Kafka => self.kafka.validate(),
        }
    }
}

/// `[source]` as written in the file: one flat table whose keys belong to the file source
/// (`path`), the Kafka source (the rest) or both (`kind`). Read through this type so that an
/// unknown key is still an error naming it (serde's `flatten` would accept any key).
#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct SourceSection {
    kind: SourceKind,
    path: PathBuf,
    bootstrap_servers: String,
    topic: Option<String>,
    #[serde(deserialize_with = "name_list::deserialize_some")]
    topics: Option<Vec<String>>,
    group_id: String,
    starting_offsets: StartingOffsets,
    fail_on_data_loss: bool,
    #[serde(with = "duration_text")]
    assignment_timeout: Duration,
    assignment: PartitionAssignment,
    #[serde(deserialize_with = "string_map::deserialize")]
    kafka_options: BTreeMap<String, String>,
}

impl Default for SourceSection {
    fn default() -> Self {
        let SourceConfig { kind, file, kafka } = SourceConfig::default();
        Self {
            kind,
            path: file.path,
            bootstrap_servers: kafka.connection.bootstrap_servers,
            topic: kafka.topic,
            topics: kafka.topics,
            group_id: kafka.group_id,
            starting_offsets: kafka.starting_offsets,
            fail_on_data_loss: kafka.fail_on_data_loss,
            assignment_timeout: kafka.assignment_timeout,
            assignment: kafka.assignment,
            kafka_options: kafka.connection.options,
        }
    }
}

impl From<SourceSection> for SourceConfig {
    fn from(section: SourceSection) -> Self {
        Self {
            kind: section.kind,
            file: FileSourceConfig { path: section.path },
            kafka: KafkaSourceConfig {
                connection: KafkaConnection {
                    bootstrap_servers: section.bootstrap_servers,
                    options: section.kafka_options,
                },
                topic: section.topic,
                topics: section.topics,
                group_id: section.group_id,
                starting_offsets: section.starting_offsets,
                fail_on_data_loss: section.fail_on_data_loss,
                assignment_timeout: section.assignment_timeout,
                assignment: section.assignment,
            },
        }
    }
}

/// One partition of one topic (a file source has a single partition 0 named after the file).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TopicPartition {
    pub topic: String,
    pub partition: i32,
}

/// `x-posts[0]`, as Kafka tools write it.
impl std::fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}[{}]", self.topic, self.partition)
    }
}

/// Next offset to read, per partition.
pub type Positions = BTreeMap<TopicPartition, i64>;

/// The records of one partition in a batch: offsets `start..end` (end exclusive).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OffsetRange {
    pub topic: String,
    pub partition: i32,
    pub start: i64,
    pub end: i64,
}

impl OffsetRange {
    pub fn topic_partition(&self) -> TopicPartition {
        TopicPartition {
            topic: self.topic.clone(),
            partition: self.partition,
        }
    }
}

impl std::fmt::Display for OffsetRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}[{}] {}..{}",
            self.topic, self.partition, self.start, self.end
        )
    }
}

/// When a read stops: whichever limit is reached first.
#[derive(Debug, Clone)]
pub struct ReadLimits {
    pub max_records: usize,
    pub max_bytes: usize,
    /// Continuous mode: wait for data until then. `None`: return what is there now.
    pub deadline: Option<Instant>,
    /// `run --once`: never read at or past these offsets (the snapshot taken at start).
    pub until: Option<Positions>,
}

/// Records read for a new batch, and the ranges that describe them exactly.
pub struct SourceBatch {
    pub records: RecordBatch,
    pub ranges: Vec<OffsetRange>,
}

/// A source of X stream messages.
pub trait Source: Send {
    /// Human-readable description for logs, e.g. `file:posts.jsonl` or `kafka:x-posts`.
    fn describe(&self) -> String;

    /// Every partition this instance owns now, at the offset where it starts when the offset
    /// log knows nothing of it (`source.starting_offsets`). Kafka waits for the group's assignment
    /// (manual assignment: every partition, at once).
    fn initial_positions(&mut self) -> impl Future<Output = Result<Positions, SourceError>> + Send;

    /// One past the last offset available now, per partition: the `--once` snapshot.
    fn end_positions(&mut self) -> impl Future<Output = Result<Positions, SourceError>> + Send;

    /// Changes whenever the set of owned partitions changes (a Kafka rebalance): the pipeline
    /// then reads the offset log again for them. Sources with fixed partitions keep 0.
    fn assignment_generation(&self) -> u64 {
        0
    }

    /// Mirrors committed positions outside the lake (Kafka group offsets, for lag tools).
    fn commit_positions(
        &mut self,
        _positions: &Positions,
    ) -> impl Future<Output = Result<(), SourceError>> + Send {
        async { Ok(()) }
    }

    /// Records between each position and the end of its partition, as far as the source knows
    /// without a round trip.
    fn lag(&self, _positions: &Positions) -> BTreeMap<TopicPartition, i64> {
        BTreeMap::new()
    }

    /// Reads new records from `from`; the returned ranges start exactly at `from`.
    fn read_next(
        &mut self,
        from: &Positions,
        limits: &ReadLimits,
    ) -> impl Future<Output = Result<SourceBatch, SourceError>> + Send;

    /// Reads exactly `ranges` again, to re-run a batch that was planned but not committed.
    fn read_ranges(
        &mut self,
        ranges: &[OffsetRange],
    ) -> impl Future<Output = Result<RecordBatch, SourceError>> + Send;
}

/// Column names of the raw record batch; bronze keeps them (except the value, kept as `_raw`).
pub mod columns {
    pub const TOPIC: &str = "_topic";
    pub const PARTITION: &str = "_partition";
    pub const OFFSET: &str = "_offset";
    pub const TIMESTAMP: &str = "_timestamp";
    pub const KEY: &str = "_key";
    pub const VALUE: &str = "_value";
}

/// Schema of raw records: source metadata plus the message bytes.
pub fn raw_schema() -> SchemaRef {
    static SCHEMA: std::sync::OnceLock<SchemaRef> = std::sync::OnceLock::new();
    SCHEMA
        .get_or_init(|| {
            Arc::new(Schema::new(vec![
                Field::new(columns::TOPIC, DataType::Utf8, false),
                Field::new(columns::PARTITION, DataType::Int32, false),
                Field::new(columns::OFFSET, DataType::Int64, false),
                Field::new(
                    columns::TIMESTAMP,
                    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                    true,
                ),
                Field::new(columns::KEY, DataType::Utf8, true),
                Field::new(columns::VALUE, DataType::Binary, true),
            ]))
        })
        .clone()
}

/// Appends records column by column: one buffer per column, no allocation per record.
#[derive(Default)]
pub struct RawBatchBuilder {
    topic: StringBuilder,
    partition: Int32Builder,
    offset: Int64Builder,
    timestamp: TimestampMicrosecondBuilder,
    key: StringBuilder,
    value: BinaryBuilder,
    bytes: usize,
}

impl RawBatchBuilder {
    pub fn push(
        &mut self,
        topic: &str,
        partition: i32,
        offset: i64,
        timestamp_micros: Option<i64>,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
    ) {
        self.topic.append_value(topic);
        self.partition.append_value(partition);
        self.offset.append_value(offset);
        self.timestamp.append_option(timestamp_micros);
        match key {
            Some(k) => self.key.append_value(String::from_utf8_lossy(k)),
            None => self.key.append_null(),
        }
        self.bytes += value.map_or(0, <[u8]>::len);
        self.value.append_option(value);
    }

    pub fn len(&self) -> usize {
        self.offset.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of message values appended so far.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn finish(mut self) -> RecordBatch {
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.topic.finish()),
            Arc::new(self.partition.finish()),
            Arc::new(self.offset.finish()),
            Arc::new(self.timestamp.finish().with_timezone("UTC")),
            Arc::new(self.key.finish()),
            Arc::new(self.value.finish()),
        ];
        RecordBatch::try_new(raw_schema(), columns).expect("raw columns match raw_schema")
    }
}

/// Total value bytes of a raw batch, for MB/s figures.
pub fn value_bytes(records: &RecordBatch) -> usize {
    use deltalake::arrow::array::AsArray;
    records
        .column_by_name(columns::VALUE)
        .map_or(0, |c| c.as_binary::<i32>().values().len())
}
