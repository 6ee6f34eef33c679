//! `tweetlake dlq replay`: dead letters decoded again with today's decoder and run through
//! today's models, exactly once. Two steps, each safe to repeat or to cut short with `kill -9`:
//!
//! 1. Queue ([`Replay::queue`]): the chosen dead letters that today's decoder accepts and that
//!    were not queued before are appended, in one Delta commit, to the queue table
//!    `<dlq table>_replays`, numbered by `replay_offset` after the queue's largest. A dead letter
//!    is known by its lineage and batch (`_topic`, `_partition`, `_offset`, `_batch_id`): one
//!    that is queued is never queued again.
//! 2. Replay: the pipeline runs over [`ReplaySource`], the queue read as one partition. Its offset
//!    log and the tables' `txn` versions give exactly once: a crash re-runs the planned range, a
//!    second replay finds nothing new.
//!
//! A dead letter that today's decoder still rejects is not queued: it stays as it is, and a later
//! replay (after another fix) tries it again. Replaying it now would only write it to the
//! dead-letter table a second time.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use chrono::Utc;
use deltalake::arrow::array::{
    ArrayRef, AsArray, BooleanArray, Int64Array, RecordBatch, TimestampMicrosecondArray,
};
use deltalake::arrow::compute::{cast, concat_batches, filter_record_batch};
use deltalake::arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef, TimeUnit};
use deltalake::arrow::error::ArrowError;
use deltalake::datafusion::catalog::TableProvider;
use deltalake::datafusion::datasource::MemTable;
use deltalake::datafusion::error::DataFusionError;
use deltalake::datafusion::prelude::SessionContext;
use deltalake::kernel::transaction::CommitProperties;
use deltalake::kernel::Transaction;
use deltalake::protocol::SaveMode;
use deltalake::{DeltaTable, DeltaTableError};

use crate::decode::{batch_columns, dead_letter_schema, BatchContext, DecodeError, MessageDecoder};
use crate::lake::{self, Lake, LakeError};
use crate::source::replay::queue_columns;
use crate::source::{columns, raw_schema, ReplaySource, SourceError};
use crate::transform::table_reference;

/// The queue table of dead-letter table `dlq_table`: `dlq` -> `dlq_replays`.
pub fn queue_table(dlq_table: &str) -> String {
    format!("{dlq_table}_replays")
}

/// The `txn` app id of queue commits: two replays queueing at once conflict on it in Delta.
const QUEUE_APP_ID: &str = "tweetlake-dlq-replay-queue";

/// The queue table's name in the selection's session.
const QUEUED: &str = "replay_queued";

/// How many reasons a summary names.
const SAMPLE_REASONS: usize = 3;

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error(transparent)]
    Lake(#[from] LakeError),
    #[error("--where `{filter}` is not a valid filter on the dead letters: {source}")]
    Where { filter: String, source: DataFusionError },
    #[error("reading the dead letters: {0}")]
    Select(#[from] DataFusionError),
    #[error("arrow: {0}")]
    Arrow(#[from] ArrowError),
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error("queueing into {table}: {source} (another `dlq replay` at the same time? run it again)")]
    Queue { table: String, source: DeltaTableError },
}

/// Schema of the queue table: the queue's own columns, then the dead letter's lineage and batch,
/// the reason it was rejected with, and its bytes.
pub fn queue_schema() -> SchemaRef {
    static SCHEMA: OnceLock<SchemaRef> = OnceLock::new();
    SCHEMA
        .get_or_init(|| {
            let utc = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
            let mut fields = vec![
                Field::new(queue_columns::REPLAY_OFFSET, DataType::Int64, false),
                Field::new(queue_columns::QUEUED_AT, utc, false),
            ];
            fields.extend(dead_letter_fields().iter().cloned());
            Arc::new(Schema::new(fields))
        })
        .clone()
}

/// The dead-letter columns a replay needs, in the order the queue keeps them.
fn dead_letter_fields() -> Vec<Field> {
    let names = [
        columns::TOPIC,
        columns::PARTITION,
        columns::OFFSET,
        batch_columns::BATCH_ID,
        columns::TIMESTAMP,
        columns::KEY,
        batch_columns::ERROR,
        batch_columns::RAW_BYTES,
    ];
    let schema = dead_letter_schema();
    names
        .iter()
        .map(|name| {
            schema
                .field_with_name(name)
                .expect("a dead-letter column")
                .clone()
        })
        .collect()
}

/// The chosen dead letters not queued before, in replay order, and what today's decoder says.
pub struct Selection {
    rows: RecordBatch,
    /// Per row: why today's decoder still rejects it, or `None`.
    verdicts: Vec<Option<String>>,
}

impl Selection {
    pub fn matched(&self) -> usize {
        self.rows.num_rows()
    }

    /// How many decode with today's decoder.
    pub fn decodable(&self) -> usize {
        self.verdicts.iter().filter(|v| v.is_none()).count()
    }

    pub fn still_failing(&self) -> usize {
        self.matched() - self.decodable()
    }

    /// The most frequent reasons the chosen dead letters were rejected with, with their counts.
    pub fn reasons_then(&self) -> Vec<(String, usize)> {
        let errors = column(&self.rows, batch_columns::ERROR).as_string::<i32>();
        most_frequent(errors.iter().flatten())
    }

    /// The most frequent reasons today's decoder gives, with their counts.
    pub fn reasons_now(&self) -> Vec<(String, usize)> {
        most_frequent(self.verdicts.iter().flatten().map(String::as_str))
    }

    fn decodable_rows(&self) -> Result<RecordBatch, ArrowError> {
        let keep: BooleanArray = self.verdicts.iter().map(|v| Some(v.is_none())).collect();
        filter_record_batch(&self.rows, &keep)
    }
}

fn most_frequent<'a>(reasons: impl Iterator<Item = &'a str>) -> Vec<(String, usize)> {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for reason in reasons {
        *counts.entry(reason).or_default() += 1;
    }
    let mut sorted: Vec<(String, usize)> = counts.into_iter().map(|(r, n)| (r.to_string(), n)).collect();
    sorted.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    sorted.truncate(SAMPLE_REASONS);
    sorted
}

/// What [`Replay::queue`] appended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Queued {
    pub rows: usize,
    /// The replay offset of the first one.
    pub first_offset: i64,
}

/// The replay of the dead letters of one lake.
pub struct Replay {
    lake: Lake,
    dlq_table: String,
    queue_table: String,
    decoder: MessageDecoder,
}

impl Replay {
    /// Replays table `dlq_table` of `lake`, decoding with messages up to `max_message_bytes`.
    pub fn new(lake: Lake, dlq_table: &str, max_message_bytes: usize) -> Self {
        Self {
            lake,
            dlq_table: dlq_table.to_string(),
            queue_table: queue_table(dlq_table),
            decoder: MessageDecoder::new(max_message_bytes),
        }
    }

    pub fn queue_table(&self) -> &str {
        &self.queue_table
    }

    /// The dead letters `filter` (a SQL condition on the dead-letter table; all when `None`)
    /// chooses that were not queued before, decoded with today's decoder. Writes nothing.
    pub async fn select(&self, filter: Option<&str>) -> Result<Selection, ReplayError> {
        let ctx = SessionContext::new();
        let dlq = self.provider(&ctx, &self.dlq_table, dead_letter_schema()).await?;
        let reference = table_reference(&ctx, &self.dlq_table)?;
        ctx.register_table(reference, dlq)?;
        let queued = self.provider(&ctx, &self.queue_table, queue_schema()).await?;
        ctx.register_table(QUEUED, queued)?;
        let condition = filter.unwrap_or("TRUE");
        let check = format!("SELECT 1 FROM {} WHERE {condition}", self.dlq_table);
        if let (Some(filter), Err(source)) = (filter, ctx.sql(&check).await) {
            return Err(ReplayError::Where {
                filter: filter.to_string(),
                source,
            });
        }
        let batches = ctx.sql(&self.selection_sql(condition)).await?.collect().await?;
        let rows = canonical(&batches)?;
        let verdicts = self.verdicts(&rows)?;
        Ok(Selection { rows, verdicts })
    }

    /// Appends the selection's decodable dead letters to the queue, in one commit.
    pub async fn queue(&self, selection: &Selection) -> Result<Queued, ReplayError> {
        let rows = selection.decodable_rows()?;
        if rows.num_rows() == 0 {
            return Ok(Queued {
                rows: 0,
                first_offset: 0,
            });
        }
        let table = self.lake.open_table(&self.queue_table).await?;
        // From the version this commit is made on: a replay queueing in between conflicts.
        let first_offset = match table.version() {
            Some(_) => self.source_of(&table).await?.end().await?,
            None => 0,
        };
        let count = rows.num_rows();
        let end = first_offset + count as i64;
        let mut arrays: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from_iter_values(first_offset..end)),
            Arc::new(
                TimestampMicrosecondArray::from(vec![Utc::now().timestamp_micros(); count])
                    .with_timezone("UTC"),
            ),
        ];
        arrays.extend(rows.columns().iter().cloned());
        let batch = RecordBatch::try_new(queue_schema(), arrays)?;
        let properties = CommitProperties::default()
            .with_application_transactions(vec![Transaction::new(QUEUE_APP_ID, end)]);
        table
            .write(vec![batch])
            .with_save_mode(SaveMode::Append)
            .with_commit_properties(properties)
            .await
            .map_err(|source| ReplayError::Queue {
                table: self.queue_table.clone(),
                source,
            })?;
        Ok(Queued {
            rows: count,
            first_offset,
        })
    }

    /// The queue as a source for the pipeline; `None` while nothing was ever queued.
    pub async fn source(&self) -> Result<Option<ReplaySource>, ReplayError> {
        match self.lake.load_if_exists(&self.queue_table).await? {
            Some(table) => Ok(Some(self.source_of(&table).await?)),
            None => Ok(None),
        }
    }

    async fn source_of(&self, table: &DeltaTable) -> Result<ReplaySource, ReplayError> {
        let ctx = SessionContext::new();
        let provider = lake::table_provider(&ctx, table, &self.queue_table).await?;
        Ok(ReplaySource::new(&self.queue_table, ctx, provider)?)
    }

    /// Table `name` for reading, or an empty one of `schema` when it does not exist yet.
    async fn provider(
        &self,
        ctx: &SessionContext,
        name: &str,
        schema: SchemaRef,
    ) -> Result<Arc<dyn TableProvider>, ReplayError> {
        match self.lake.load_if_exists(name).await? {
            Some(table) => Ok(lake::table_provider(ctx, &table, name).await?),
            None => Ok(Arc::new(MemTable::try_new(schema, vec![vec![]])?)),
        }
    }

    /// The chosen dead letters that no queue row has the identity of, oldest batch first.
    fn selection_sql(&self, condition: &str) -> String {
        let fields = dead_letter_fields();
        let names: Vec<String> = fields.iter().map(|f| format!("d.\"{}\"", f.name())).collect();
        let same = [
            columns::TOPIC,
            columns::PARTITION,
            columns::OFFSET,
            batch_columns::BATCH_ID,
        ]
        .map(|c| format!("q.\"{c}\" = d.\"{c}\""))
        .join(" AND ");
        format!(
            "SELECT {} FROM (SELECT * FROM {} WHERE {condition}) d \
             WHERE NOT EXISTS (SELECT 1 FROM {QUEUED} q WHERE {same}) \
             ORDER BY d.\"{}\", d.\"{}\", d.\"{}\", d.\"{}\"",
            names.join(", "),
            self.dlq_table,
            batch_columns::BATCH_ID,
            columns::TOPIC,
            columns::PARTITION,
            columns::OFFSET,
        )
    }

    /// Per row: today's decoder's reason to reject it, or `None`. The rows are decoded as one
    /// batch whose offsets are the row numbers, so each dead letter names its row.
    fn verdicts(&self, rows: &RecordBatch) -> Result<Vec<Option<String>>, ReplayError> {
        let count = rows.num_rows();
        let mut verdicts = vec![None; count];
        if count == 0 {
            return Ok(verdicts);
        }
        let raw = RecordBatch::try_new(
            raw_schema(),
            vec![
                column(rows, columns::TOPIC).clone(),
                column(rows, columns::PARTITION).clone(),
                Arc::new(Int64Array::from_iter_values(0..count as i64)),
                column(rows, columns::TIMESTAMP).clone(),
                column(rows, columns::KEY).clone(),
                column(rows, batch_columns::RAW_BYTES).clone(),
            ],
        )?;
        let ctx = BatchContext {
            batch_id: 0,
            planned_at_micros: Utc::now().timestamp_micros(),
        };
        let rejected = self.decoder.decode(&raw, ctx)?.dead_letters;
        let rows = rejected
            .column_by_name(columns::OFFSET)
            .expect("dead letters have offsets")
            .as_primitive::<Int64Type>();
        let reasons = rejected
            .column_by_name(batch_columns::ERROR)
            .expect("dead letters have reasons")
            .as_string::<i32>();
        for (row, reason) in rows.iter().zip(reasons.iter()) {
            if let (Some(row), Some(reason)) = (row, reason) {
                verdicts[row as usize] = Some(reason.to_string());
            }
        }
        Ok(verdicts)
    }
}

/// Column `name` of a batch of [`dead_letter_fields`].
fn column<'a>(rows: &'a RecordBatch, name: &str) -> &'a ArrayRef {
    rows.column_by_name(name).expect("a dead-letter column")
}

/// The selected rows as one batch of exactly [`dead_letter_fields`]' types (a Delta scan may
/// hand strings back as views).
fn canonical(batches: &[RecordBatch]) -> Result<RecordBatch, ArrowError> {
    let schema = Arc::new(Schema::new(dead_letter_fields()));
    let cast_batch = |batch: &RecordBatch| {
        let arrays = schema
            .fields()
            .iter()
            .zip(batch.columns())
            .map(|(field, column)| cast(column, field.data_type()))
            .collect::<Result<Vec<_>, _>>()?;
        RecordBatch::try_new(schema.clone(), arrays)
    };
    let batches = batches.iter().map(cast_batch).collect::<Result<Vec<_>, _>>()?;
    concat_batches(&schema, &batches)
}
