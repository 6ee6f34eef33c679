//! Delta Lake tables under the lake root, written exactly once per batch.
//!
//! Every commit carries one Delta `txn` action per source partition in the batch (app id
//! `<pipeline>/<topic>/<partition>`, version = the end offset of the batch's range). Before
//! writing, the sink reads those versions back: a range the table already holds is skipped, so
//! re-running a batch after a crash never duplicates rows. Two instances racing to commit the same
//! range conflict in Delta itself (a concurrent `txn` with the same app id), so at most one wins.
//!
//! Appends merge schemas: a column the rows have and the table lacks is added to the table
//! (written before the column existed, its rows read NULL), so a lake outlives a new column of
//! bronze or of a model.

mod stored;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use deltalake::arrow::array::RecordBatch;
use deltalake::arrow::datatypes::SchemaRef;
use deltalake::datafusion::datasource::MemTable;
use deltalake::datafusion::error::DataFusionError;
use deltalake::datafusion::prelude::SessionContext;
use deltalake::kernel::transaction::CommitProperties;
use deltalake::kernel::Transaction;
use deltalake::operations::write::SchemaMode;
use deltalake::parquet::basic::Compression;
use deltalake::parquet::file::properties::{EnabledStatistics, WriterProperties};
use deltalake::parquet::schema::types::ColumnPath;
use deltalake::protocol::SaveMode;
use deltalake::table::config::TablePropertiesExt;
use deltalake::{DeltaTable, DeltaTableError};
use futures::future::try_join_all;
use url::Url;

use crate::lake::{Lake, LakeError, StoreFailure};
use crate::source::OffsetRange;
use crate::transform::Materialization;
pub use stored::StoredDeltaTables;

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error(transparent)]
    Lake(#[from] LakeError),
    /// Reading or writing a table's log or files at `location`.
    #[error("table {table}: {source}{hint}", hint = StoreFailure::of(source).hint_at(location))]
    Delta {
        table: String,
        location: String,
        source: DeltaTableError,
    },
    /// The batch's rows could not be made a merge source.
    #[error("table {table}: merge source: {source}")]
    MergeSource { table: String, source: DataFusionError },
    /// The merge's clauses were refused (a bad `@update` expression, say) before it ran.
    #[error("table {table}: merge: {source}")]
    MergePlan { table: String, source: DeltaTableError },
    /// Another instance committed some of these ranges: this batch overlaps its work.
    #[error("table {table} already holds part of ranges {ranges} (committed by another instance): abandoning the batch")]
    PartlyCommitted { table: String, ranges: String },
}

impl SinkError {
    /// Errors that may go away by themselves: storage I/O, unless the store refused for good
    /// (missing bucket, refused credentials, full disk).
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Lake(error) => error.is_transient(),
            Self::Delta { source, .. } => !StoreFailure::of(source).is_permanent(),
            Self::MergeSource { .. } | Self::MergePlan { .. } | Self::PartlyCommitted { .. } => false,
        }
    }
}

/// A Delta error of table `name`, stored at `location`.
fn delta_error(name: &str, location: &Url) -> impl Fn(DeltaTableError) -> SinkError {
    let (table, location) = (name.to_string(), location.to_string());
    move |source| SinkError::Delta {
        table: table.clone(),
        location: location.clone(),
        source,
    }
}

/// How one table is written.
#[derive(Debug, Clone)]
pub struct TableSpec {
    pub name: String,
    pub materialization: Materialization,
    pub partition_by: Vec<String>,
}

impl TableSpec {
    pub fn append(name: &str, partition_by: &[&str]) -> Self {
        Self {
            name: name.to_string(),
            materialization: Materialization::Append,
            partition_by: partition_by.iter().map(|s| s.to_string()).collect(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitOutcome {
    /// A new table version holds this batch's rows.
    Committed { version: i64 },
    /// The table already holds this batch (a re-run after a crash): nothing written.
    AlreadyCommitted,
    /// The batch produced no rows for this table: nothing to write.
    Empty,
}

/// One table's rows for a batch.
pub struct TableWrite {
    pub spec: TableSpec,
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
}

impl TableWrite {
    pub fn rows(&self) -> usize {
        self.batches.iter().map(RecordBatch::num_rows).sum()
    }
}

/// What [`DeltaSink::commit_all`] did to one table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableCommit {
    pub table: String,
    pub rows: usize,
    pub outcome: CommitOutcome,
    /// From [`DeltaSink::begin`] until this table's commit landed.
    pub elapsed: Duration,
}

pub struct DeltaSink {
    lake: Lake,
    pipeline: String,
    /// Tables as of their last commit here: the next batch reads only newer log entries
    /// (other writers' commits) instead of loading the whole log again.
    tables: HashMap<String, CachedTable>,
}

/// A table as of this sink's last commit to it, with the `txn` versions known at that version:
/// Delta answers a `txn` lookup by replaying the log, a cost that grows with every commit.
struct CachedTable {
    table: DeltaTable,
    txns: HashMap<String, Option<i64>>,
}

impl DeltaSink {
    pub fn new(lake: Lake, pipeline: &str) -> Self {
        Self {
            lake,
            pipeline: pipeline.to_string(),
            tables: HashMap::new(),
        }
    }

    pub fn lake(&self) -> &Lake {
        &self.lake
    }

    /// Every table this sink keeps, as of its last commit to it (maintenance plans from them
    /// without loading the logs again).
    pub fn cached_tables(&self) -> Vec<(String, DeltaTable)> {
        let tables = self.tables.iter();
        tables
            .map(|(name, cached)| (name.clone(), cached.table.clone()))
            .collect()
    }

    /// Tables `names` as they are now (those with a commit), for the models' `insert_new`
    /// checks: the kept copies brought up to date, the others loaded (and kept for the commits).
    pub async fn stored_tables(&mut self, names: &[&str]) -> Result<StoredDeltaTables, SinkError> {
        let mut stored = HashMap::new();
        for &name in names {
            let cached = refreshed(&self.lake, name, self.tables.remove(name)).await?;
            // A table without a commit is loaded again by its first write.
            if cached.table.version().is_some() {
                stored.insert(name.to_string(), cached.table.clone());
                self.tables.insert(name.to_string(), cached);
            }
        }
        Ok(StoredDeltaTables::new(stored))
    }

    /// Writes each table's rows for the batch reading `ranges`, once, all tables side by side.
    /// See [`BatchCommits`]; this starts every write at once.
    pub async fn commit_all(
        &mut self,
        writes: Vec<TableWrite>,
        ranges: &[OffsetRange],
        on_commit: impl Fn(&str) + Clone + Send + 'static,
    ) -> Result<Vec<TableCommit>, SinkError> {
        let mut commits = self.begin(ranges, on_commit);
        for write in writes {
            commits.start(write);
        }
        commits.finish().await
    }

    /// Opens the commits of the batch reading `ranges`: each table's write starts as soon as
    /// its rows are handed over, while the rest of the batch is still being computed.
    /// `on_commit` runs as each table's commit lands.
    pub fn begin<F>(&mut self, ranges: &[OffsetRange], on_commit: F) -> BatchCommits<'_, F>
    where
        F: Fn(&str) + Clone + Send + 'static,
    {
        BatchCommits {
            ranges: ranges.iter().filter(|r| r.end > r.start).cloned().collect(),
            sink: self,
            on_commit,
            started: Instant::now(),
            tasks: Vec::new(),
        }
    }
}

/// A table's commit task's result: table, rows, outcome with the table to keep, time taken.
type CommitTaskResult = (
    String,
    usize,
    Result<(CommitOutcome, Option<CachedTable>), SinkError>,
    Duration,
);

/// One batch's table commits in flight. Every table has its own log and its own `txn`
/// versions, so the commits are independent and a crash between any two of them is repaired by
/// re-running the batch. [`Self::finish`] must be awaited even when the batch failed
/// elsewhere: a commit left running could land after a re-run of the batch checked its table.
pub struct BatchCommits<'a, F> {
    sink: &'a mut DeltaSink,
    ranges: Arc<[OffsetRange]>,
    on_commit: F,
    started: Instant,
    tasks: Vec<tokio::task::JoinHandle<CommitTaskResult>>,
}

impl<F: Fn(&str) + Clone + Send + 'static> BatchCommits<'_, F> {
    /// Starts writing one table's rows in the background.
    pub fn start(&mut self, write: TableWrite) {
        let committer = TableCommitter {
            lake: self.sink.lake.clone(),
            pipeline: self.sink.pipeline.clone(),
            ranges: self.ranges.clone(),
            cached: self.sink.tables.remove(&write.spec.name),
        };
        let (on_commit, started) = (self.on_commit.clone(), self.started);
        self.tasks.push(tokio::spawn(async move {
            let (table, rows) = (write.spec.name.clone(), write.rows());
            let result = committer.commit(write).await;
            if result.is_ok() {
                on_commit(&table);
            }
            (table, rows, result, started.elapsed())
        }));
    }

    /// Waits for every started commit. After a failure the other commits still finish; the
    /// first error is returned.
    pub async fn finish(self) -> Result<Vec<TableCommit>, SinkError> {
        let mut commits = Vec::with_capacity(self.tasks.len());
        let mut first_error = None;
        for task in self.tasks {
            let (name, rows, result, elapsed) = task
                .await
                .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
            match result {
                Ok((outcome, table)) => {
                    if let Some(table) = table.filter(|t| !at_checkpoint(&t.table)) {
                        self.sink.tables.insert(name.clone(), table);
                    }
                    commits.push(TableCommit {
                        table: name,
                        rows,
                        outcome,
                        elapsed,
                    });
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        first_error.map_or(Ok(commits), Err)
    }
}

/// The current state of table `name`: `cached` brought up to date, else loaded. Its known
/// `txn` versions survive only if no other writer committed since.
async fn refreshed(lake: &Lake, name: &str, cached: Option<CachedTable>) -> Result<CachedTable, SinkError> {
    let Some(mut cached) = cached else {
        let table = lake.open_table(name).await?;
        return Ok(CachedTable {
            table,
            txns: HashMap::new(),
        });
    };
    let before = cached.table.version();
    let on_error = delta_error(name, cached.table.table_url());
    cached.table.update_incremental(None).await.map_err(on_error)?;
    if cached.table.version() != before {
        cached.txns.clear();
    }
    Ok(cached)
}

/// Whether delta-rs wrote a checkpoint with this version: it does after every
/// `delta.checkpointInterval` commits (default 100), at the version before each multiple. A
/// table kept across commits only ever grows in memory; loading it again from a fresh
/// checkpoint costs one read and brings it back to size.
fn at_checkpoint(table: &DeltaTable) -> bool {
    let (Some(version), Ok(state)) = (table.version(), table.snapshot()) else {
        return false;
    };
    let interval = state.table_config().checkpoint_interval().get();
    (version + 1) % interval == 0
}

/// Commits one table's rows: everything a commit task needs, owned.
struct TableCommitter {
    lake: Lake,
    pipeline: String,
    /// The batch's non-empty ranges.
    ranges: Arc<[OffsetRange]>,
    /// The table as of this sink's last commit to it, if any.
    cached: Option<CachedTable>,
}

impl TableCommitter {
    fn app_id(&self, range: &OffsetRange) -> String {
        format!("{}/{}/{}", self.pipeline, range.topic, range.partition)
    }

    /// How many of the ranges the table already holds (by their `txn` versions); versions not
    /// known yet are read from the log and remembered.
    async fn committed_ranges(&self, cached: &mut CachedTable, name: &str) -> Result<usize, SinkError> {
        if cached.table.version().is_none() {
            return Ok(0);
        }
        let unknown: Vec<String> = self
            .ranges
            .iter()
            .map(|r| self.app_id(r))
            .filter(|id| !cached.txns.contains_key(id))
            .collect();
        let on_error = delta_error(name, cached.table.table_url());
        let state = cached.table.snapshot().map_err(&on_error)?;
        let log_store = cached.table.log_store();
        let versions = try_join_all(
            unknown
                .iter()
                .map(|id| state.transaction_version(log_store.as_ref(), id)),
        )
        .await
        .map_err(on_error)?;
        cached.txns.extend(unknown.into_iter().zip(versions));
        Ok(self
            .ranges
            .iter()
            .filter(|r| cached.txns[&self.app_id(r)].is_some_and(|v| v >= r.end))
            .count())
    }

    /// Writes the rows unless the table already holds the ranges; returns what happened and
    /// the table to keep for the next batch.
    async fn commit(mut self, write: TableWrite) -> Result<(CommitOutcome, Option<CachedTable>), SinkError> {
        let TableWrite {
            spec,
            schema,
            batches,
        } = write;
        if batches.iter().all(|b| b.num_rows() == 0) {
            return Ok((CommitOutcome::Empty, self.cached));
        }
        let mut cached = refreshed(&self.lake, &spec.name, self.cached.take()).await?;
        match self.committed_ranges(&mut cached, &spec.name).await? {
            0 => {}
            n if n == self.ranges.len() => return Ok((CommitOutcome::AlreadyCommitted, Some(cached))),
            _ => {
                return Err(SinkError::PartlyCommitted {
                    table: spec.name.clone(),
                    ranges: self
                        .ranges
                        .iter()
                        .map(|r| r.to_string())
                        .collect::<Vec<_>>()
                        .join(", "),
                })
            }
        }
        let properties = CommitProperties::default()
            .with_application_transactions(
                self.ranges
                    .iter()
                    .map(|r| Transaction::new(self.app_id(r), r.end))
                    .collect(),
            )
            // delta-rs would list the whole `_delta_log` after every commit to remove expired
            // entries (thousands of objects after weeks of batches); maintenance does it instead.
            .with_cleanup_expired_logs(Some(false));
        let CachedTable { table, mut txns } = cached;
        let before = table.version();
        let on_error = delta_error(&spec.name, table.table_url());
        let written = match &spec.materialization {
            Materialization::Merge { keys, updates } if table.version().is_some() => {
                merge(table, &spec, schema, batches, keys, updates, properties)
                    .await?
                    .map_err(on_error)?
            }
            _ => table
                .write(batches)
                .with_save_mode(SaveMode::Append)
                // A column the batch has and the table lacks (bronze's `platform`, a model's new
                // column) joins the table's schema, nullable: rows written before read NULL.
                .with_schema_mode(SchemaMode::Merge)
                .with_partition_columns(spec.partition_by.clone())
                .with_writer_properties(writer_properties(&schema))
                .with_commit_properties(properties)
                .await
                .map_err(on_error)?,
        };
        let version = written.version().map_or(0, |v| v as i64);
        // Ours is the next version unless another writer committed first (delta-rs then
        // retried ours on top): only then are the remembered versions still complete.
        if before.map_or(0, |v| v as i64 + 1) == version {
            txns.extend(self.ranges.iter().map(|r| (self.app_id(r), Some(r.end))));
        } else {
            txns.clear();
        }
        let cached = CachedTable { table: written, txns };
        Ok((CommitOutcome::Committed { version }, Some(cached)))
    }
}

/// A column's dictionary is dropped for plain encoding once its distinct values pass this size.
/// With Parquet's default, 1 MiB, every text and id column of a batch (posts, user bios, ids:
/// nearly all distinct) interned thousands of values before giving up, and a batch's writes
/// took 7% longer. Columns with few distinct values (languages, places, tiers) stay below it.
const DICTIONARY_LIMIT_BYTES: usize = 64 * 1024;

/// How data files are encoded. Columns holding whole messages (`_raw`, and the dead letters'
/// copies) are unique per row: a dictionary or min/max statistics of them only cost time.
pub fn writer_properties(schema: &SchemaRef) -> WriterProperties {
    use crate::decode::batch_columns::{RAW, RAW_BYTES, RAW_TEXT};
    let mut builder = WriterProperties::builder()
        .set_created_by(format!("tweetlake {}", env!("CARGO_PKG_VERSION")))
        .set_compression(Compression::SNAPPY)
        .set_dictionary_page_size_limit(DICTIONARY_LIMIT_BYTES);
    for name in [RAW, RAW_BYTES, RAW_TEXT] {
        if schema.column_with_name(name).is_some() {
            let column = ColumnPath::from(name);
            builder = builder
                .set_column_dictionary_enabled(column.clone(), false)
                .set_column_statistics_enabled(column, EnabledStatistics::None);
        }
    }
    builder.build()
}

/// Upserts `batches` by `keys`: matched rows take `updates` (other columns the source value);
/// unmatched keys are inserted. Planning errors are the outer error; the merge's own run (which
/// reads and writes the store, and is retried like a write) is the inner one.
async fn merge(
    table: DeltaTable,
    spec: &TableSpec,
    schema: SchemaRef,
    batches: Vec<RecordBatch>,
    keys: &[String],
    updates: &[(String, String)],
    properties: CommitProperties,
) -> Result<Result<DeltaTable, DeltaTableError>, SinkError> {
    let source_error = |source| SinkError::MergeSource {
        table: spec.name.clone(),
        source,
    };
    let ctx = SessionContext::new();
    let predicate = merge_predicate(keys, &batches);
    let memory = MemTable::try_new(schema.clone(), vec![batches]).map_err(source_error)?;
    let source = ctx.read_table(Arc::new(memory)).map_err(source_error)?;
    let columns: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
    let update_of = |column: &str| {
        updates
            .iter()
            .find(|(c, _)| c == column)
            .map_or_else(|| format!("source.\"{column}\""), |(_, e)| e.clone())
    };
    let merged = table
        .merge(source, predicate)
        .with_source_alias("source")
        .with_target_alias("target")
        .when_matched_update(|mut update| {
            for column in columns.iter().filter(|c| !keys.contains(c)) {
                update = update.update(column.as_str(), update_of(column));
            }
            update
        })
        .and_then(|builder| {
            builder.when_not_matched_insert(|mut insert| {
                for column in &columns {
                    insert = insert.set(column.as_str(), format!("source.\"{column}\""));
                }
                insert
            })
        })
        .map_err(|source| SinkError::MergePlan {
            table: spec.name.clone(),
            source,
        })?
        .with_writer_properties(writer_properties(&schema))
        .with_commit_properties(properties)
        .await;
    Ok(merged.map(|(table, _metrics)| table))
}

/// Matches source rows to target rows by `keys`, NULL keys included.
fn merge_predicate(keys: &[String], batches: &[RecordBatch]) -> String {
    // `=` where the batch holds no NULL key (the same matches): delta-rs turns `=` into a
    // min/max range on the target and skips the files outside it, where IS NOT DISTINCT FROM
    // would make every merge read the whole table.
    let has_nulls = |key: &str| {
        batches
            .iter()
            .any(|b| b.column_by_name(key).is_some_and(|c| c.null_count() > 0))
    };
    keys.iter()
        .map(|k| match has_nulls(k) {
            true => format!("(target.\"{k}\" IS NOT DISTINCT FROM source.\"{k}\")"),
            false => format!("(target.\"{k}\" = source.\"{k}\")"),
        })
        .collect::<Vec<_>>()
        .join(" AND ")
}
