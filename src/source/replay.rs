//! The dead-letter replay queue (`<dlq table>_replays`, written by `tweetlake dlq replay`) as a
//! source: one partition, 0, of a topic named after the queue table, whose offsets are the
//! queue's `replay_offset`s. The pipeline's offset log and `txn` versions then make a replay
//! exactly once, as they do for Kafka or a file.
//!
//! A record keeps the dead letter's own lineage (`_topic`, `_partition`, `_offset`, `_timestamp`,
//! `_key`): bronze shows where the post first came from; the batch's ranges, which the log and the
//! `txn` versions use, are the queue's.

use std::sync::Arc;

use deltalake::arrow::array::{Array, AsArray, RecordBatch};
use deltalake::arrow::compute::cast;
use deltalake::arrow::datatypes::{DataType, Int32Type, Int64Type, TimeUnit, TimestampMicrosecondType};
use deltalake::datafusion::catalog::TableProvider;
use deltalake::datafusion::error::DataFusionError;
use deltalake::datafusion::prelude::SessionContext;

use super::{
    columns, OffsetRange, Positions, RawBatchBuilder, ReadLimits, Source, SourceBatch, SourceError,
    TopicPartition,
};

/// Columns of the replay queue that are not a dead letter's own.
pub mod queue_columns {
    /// The record's offset in the queue: 0, 1, 2... in the order the records were queued.
    pub const REPLAY_OFFSET: &str = "replay_offset";
    /// When `dlq replay` queued the record.
    pub const QUEUED_AT: &str = "queued_at";
}

/// The name the queue table has in the source's own session.
const QUEUE: &str = "replay_queue";

/// The dead letter's raw bytes in the queue (as in the dead-letter table).
const RAW: &str = "raw";

pub struct ReplaySource {
    topic: String,
    ctx: SessionContext,
}

impl ReplaySource {
    /// Reads the queue table `topic` through `provider`, whose store `ctx` reaches.
    pub fn new(
        topic: &str,
        ctx: SessionContext,
        provider: Arc<dyn TableProvider>,
    ) -> Result<Self, SourceError> {
        ctx.register_table(QUEUE, provider)
            .map_err(|source| queue_error(topic, source))?;
        Ok(Self {
            topic: topic.to_string(),
            ctx,
        })
    }

    fn topic_partition(&self) -> TopicPartition {
        TopicPartition {
            topic: self.topic.clone(),
            partition: 0,
        }
    }

    async fn query(&self, sql: &str) -> Result<Vec<RecordBatch>, SourceError> {
        let collected = async { self.ctx.sql(sql).await?.collect().await };
        collected.await.map_err(|source| queue_error(&self.topic, source))
    }

    /// The queued records with `start <= replay_offset < end`, in offset order, at most `limit`.
    async fn rows(
        &self,
        start: i64,
        end: i64,
        limit: Option<usize>,
    ) -> Result<Vec<RecordBatch>, SourceError> {
        let limit = limit.map_or(String::new(), |n| format!(" LIMIT {n}"));
        let sql = format!(
            "SELECT {offset}, {topic}, {partition}, {source_offset}, {timestamp}, {key}, \"{RAW}\" \
             FROM {QUEUE} WHERE {offset} >= {start} AND {offset} < {end} ORDER BY {offset}{limit}",
            offset = queue_columns::REPLAY_OFFSET,
            topic = columns::TOPIC,
            partition = columns::PARTITION,
            source_offset = columns::OFFSET,
            timestamp = columns::TIMESTAMP,
            key = columns::KEY,
        );
        self.query(&sql).await
    }

    /// One past the largest queued offset (0 for an empty queue).
    pub async fn end(&self) -> Result<i64, SourceError> {
        let sql = format!("SELECT max({}) FROM {QUEUE}", queue_columns::REPLAY_OFFSET);
        let batches = self.query(&sql).await?;
        let max = batches
            .iter()
            .find(|b| b.num_rows() > 0)
            .map(|b| cast(b.column(0), &DataType::Int64))
            .transpose()
            .map_err(|e| queue_error(&self.topic, e.into()))?
            .and_then(|c| c.as_primitive::<Int64Type>().iter().next().flatten());
        Ok(max.map_or(0, |m| m + 1))
    }

    fn range(&self, start: i64, end: i64) -> OffsetRange {
        OffsetRange {
            topic: self.topic.clone(),
            partition: 0,
            start,
            end,
        }
    }
}

impl Source for ReplaySource {
    fn describe(&self) -> String {
        format!("dlq-replay:{}", self.topic)
    }

    async fn initial_positions(&mut self) -> Result<Positions, SourceError> {
        Ok(Positions::from([(self.topic_partition(), 0)]))
    }

    async fn end_positions(&mut self) -> Result<Positions, SourceError> {
        Ok(Positions::from([(self.topic_partition(), self.end().await?)]))
    }

    async fn read_next(&mut self, from: &Positions, limits: &ReadLimits) -> Result<SourceBatch, SourceError> {
        let start = from.get(&self.topic_partition()).copied().unwrap_or(0);
        let end = limits
            .until
            .as_ref()
            .and_then(|u| u.get(&self.topic_partition()).copied())
            .unwrap_or(i64::MAX);
        let batches = self.rows(start, end, Some(limits.max_records)).await?;
        let (records, last) = raw_records(&batches, limits.max_bytes)
            .map_err(|source| queue_error(&self.topic, source.into()))?;
        let end = last.map_or(start, |last| last + 1);
        Ok(SourceBatch {
            records,
            ranges: vec![self.range(start, end)],
        })
    }

    async fn read_ranges(&mut self, ranges: &[OffsetRange]) -> Result<RecordBatch, SourceError> {
        let mut batches = Vec::new();
        for range in ranges {
            batches.extend(self.rows(range.start, range.end, None).await?);
        }
        let (records, _) =
            raw_records(&batches, usize::MAX).map_err(|source| queue_error(&self.topic, source.into()))?;
        Ok(records)
    }
}

fn queue_error(table: &str, source: DataFusionError) -> SourceError {
    SourceError::ReplayQueue {
        table: table.to_string(),
        source,
    }
}

/// The queue's rows as raw records, up to `max_bytes` of values (at least one record), and the
/// last replay offset taken.
fn raw_records(
    batches: &[RecordBatch],
    max_bytes: usize,
) -> Result<(RecordBatch, Option<i64>), deltalake::arrow::error::ArrowError> {
    let mut builder = RawBatchBuilder::default();
    let mut last = None;
    for batch in batches {
        let column = |i: usize, to: &DataType| cast(batch.column(i), to);
        let offsets = column(0, &DataType::Int64)?;
        let topics = column(1, &DataType::Utf8)?;
        let partitions = column(2, &DataType::Int32)?;
        let source_offsets = column(3, &DataType::Int64)?;
        let timestamps = column(4, &DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())))?;
        let keys = column(5, &DataType::Utf8)?;
        let values = column(6, &DataType::Binary)?;
        let (topics, keys, values) = (
            topics.as_string::<i32>(),
            keys.as_string::<i32>(),
            values.as_binary::<i32>(),
        );
        let timestamps = timestamps.as_primitive::<TimestampMicrosecondType>();
        for row in 0..batch.num_rows() {
            if !builder.is_empty() && builder.bytes() >= max_bytes {
                return Ok((builder.finish(), last));
            }
            builder.push(
                topics.value(row),
                partitions.as_primitive::<Int32Type>().value(row),
                source_offsets.as_primitive::<Int64Type>().value(row),
                timestamps.is_valid(row).then(|| timestamps.value(row)),
                keys.is_valid(row).then(|| keys.value(row).as_bytes()),
                values.is_valid(row).then(|| values.value(row)),
            );
            last = Some(offsets.as_primitive::<Int64Type>().value(row));
        }
    }
    Ok((builder.finish(), last))
}

#[cfg(test)]
mod tests {
    use deltalake::arrow::array::TimestampMicrosecondArray;
    use deltalake::arrow::array::{ArrayRef, BinaryArray, Int32Array, Int64Array, StringArray};

    use super::*;

    /// Three queued records of 10 bytes each, at replay offsets 5, 6, 7.
    fn queued() -> RecordBatch {
        let columns: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from(vec![5, 6, 7])),
            Arc::new(StringArray::from(vec!["x-posts"; 3])),
            Arc::new(Int32Array::from(vec![2, 2, 3])),
            Arc::new(Int64Array::from(vec![40, 41, 9])),
            Arc::new(TimestampMicrosecondArray::from(vec![Some(1), None, Some(3)]).with_timezone("UTC")),
            Arc::new(StringArray::from(vec![Some("k"), None, None])),
            Arc::new(BinaryArray::from(vec![b"0123456789".as_ref(); 3])),
        ];
        let names = [
            "replay_offset",
            "_topic",
            "_partition",
            "_offset",
            "_timestamp",
            "_key",
            "raw",
        ];
        RecordBatch::try_from_iter(names.into_iter().zip(columns)).unwrap()
    }

    #[test]
    fn records_keep_the_dead_letters_lineage_and_stop_at_the_byte_limit() {
        let (all, last) = raw_records(&[queued()], usize::MAX).unwrap();
        assert_eq!((all.num_rows(), last), (3, Some(7)));
        let offsets = all
            .column_by_name(columns::OFFSET)
            .unwrap()
            .as_primitive::<Int64Type>();
        assert_eq!(offsets.values().to_vec(), vec![40, 41, 9], "the original offsets");
        let partitions = all
            .column_by_name(columns::PARTITION)
            .unwrap()
            .as_primitive::<Int32Type>();
        assert_eq!(partitions.values().to_vec(), vec![2, 2, 3]);
        assert!(all.column_by_name(columns::KEY).unwrap().is_null(1));

        let (two, last) = raw_records(&[queued()], 15).unwrap();
        assert_eq!(
            (two.num_rows(), last),
            (2, Some(6)),
            "stops once 15 bytes are reached"
        );
        let (one, last) = raw_records(&[queued()], 1).unwrap();
        assert_eq!((one.num_rows(), last), (1, Some(5)), "at least one record");
    }
}
