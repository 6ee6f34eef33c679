//! The lake's Delta tables: found by listing the lake, registered by dotted name, and brought to
//! their latest version before each statement that reads them. Only Delta logs are read here,
//! never data files.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use deltalake::arrow::array::{
    ArrayRef, BooleanArray, Int64Array, RecordBatch, StringArray, TimestampMillisecondArray,
};
use deltalake::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use deltalake::datafusion::catalog::TableProvider;
use deltalake::datafusion::common::TableReference;
use deltalake::datafusion::datasource::MemTable;
use deltalake::datafusion::prelude::SessionContext;
use deltalake::kernel::CommitInfo;
use deltalake::DeltaTable;
use futures::{StreamExt, TryStreamExt};

use super::overlay::lake_schema;
use super::time_travel::{AsOf, Pin, TimeTravelError};
use super::QueryError;
use super::DEFAULT_SCHEMA;
use crate::lake::{self, Lake};
use crate::settings::human_bytes;

/// How many tables are loaded at once.
const CONCURRENCY: usize = 16;

/// `operationMetrics` keys for rows added and updated: delta-rs's names, then Spark's.
const ROWS_ADDED: &[&str] = &[
    "num_added_rows",
    "num_target_rows_inserted",
    "numTargetRowsInserted",
    "numOutputRows",
];
const ROWS_UPDATED: &[&str] = &["num_target_rows_updated", "numTargetRowsUpdated"];

struct Entry {
    table: DeltaTable,
    provider: Arc<dyn TableProvider>,
}

pub struct Catalog {
    lake: Lake,
    tables: BTreeMap<String, Entry>,
    /// Tables registered empty until the lake has them (see [`Self::expect`]).
    placeholders: BTreeSet<String>,
}

impl Catalog {
    /// Finds and registers every table of the lake.
    pub async fn open(lake: Lake, ctx: &SessionContext) -> Result<Self, QueryError> {
        let mut catalog = Self {
            lake,
            tables: BTreeMap::new(),
            placeholders: BTreeSet::new(),
        };
        catalog.discover(ctx).await?;
        Ok(catalog)
    }

    pub fn lake(&self) -> &Lake {
        &self.lake
    }

    /// Every table's name and current schema, by name.
    pub fn schemas(&self) -> impl Iterator<Item = (&str, SchemaRef)> {
        self.tables.iter().map(|(n, e)| (n.as_str(), e.provider.schema()))
    }

    /// Lists the lake and registers the tables not known yet.
    pub async fn discover(&mut self, ctx: &SessionContext) -> Result<(), QueryError> {
        let found = self.lake.table_names().await?;
        // Each load replays a Delta log: spawned, so they use every core.
        let loads = found
            .into_iter()
            .filter(|name| !self.tables.contains_key(name))
            .map(|name| {
                let lake = self.lake.clone();
                tokio::spawn(async move {
                    let table = lake.load_table(&name).await;
                    (name, table)
                })
            });
        let loaded: Vec<_> = futures::stream::iter(loads)
            .buffer_unordered(CONCURRENCY)
            .try_collect()
            .await
            .expect("loading a table does not panic");
        for (name, table) in loaded {
            match table {
                Ok(table) => {
                    let provider = register(ctx, &name, &table).await?;
                    self.placeholders.remove(&name);
                    self.tables.insert(name, Entry { table, provider });
                }
                // E.g. a table whose first commit is still being written.
                Err(error) => tracing::warn!("skipping table {name}: {error}"),
            }
        }
        Ok(())
    }

    /// Registers table `name` as an empty table of `schema` until the lake has it (a table that
    /// its writer makes on first use, read by saved queries before that). Each statement naming
    /// it lists the lake again until then.
    pub fn expect(&mut self, ctx: &SessionContext, name: &str, schema: SchemaRef) -> Result<(), QueryError> {
        if self.tables.contains_key(name) {
            return Ok(());
        }
        let empty = MemTable::try_new(schema, vec![vec![]])?;
        replace_table(ctx, TableReference::parse_str(name), Arc::new(empty))?;
        self.placeholders.insert(name.to_string());
        Ok(())
    }

    /// Brings tables `names` to their latest version, reading only log entries newer than the
    /// loaded one. A name that is neither a known table nor a session table (a view, say)
    /// triggers one listing of the lake, so tables created since startup appear.
    pub async fn refresh(&mut self, ctx: &SessionContext, names: &[String]) -> Result<(), QueryError> {
        // `table_exist` fails for a schema the session does not have yet: not a session table.
        let unknown = |name: &String| {
            let session_table = ctx.table_exist(name.as_str()).unwrap_or(false);
            (!self.tables.contains_key(name) && !session_table) || self.placeholders.contains(name)
        };
        if names.iter().any(unknown) {
            self.discover(ctx).await?;
        }
        let updates = self
            .tables
            .iter_mut()
            .filter(|(name, _)| names.contains(name))
            .map(|(name, entry)| async move {
                let before = entry.table.version();
                entry
                    .table
                    .update_incremental(None)
                    .await
                    .map_err(lake::delta_error(name))?;
                if entry.table.version() != before {
                    entry.provider = register(ctx, name, &entry.table).await?;
                }
                Ok::<_, QueryError>(())
            });
        futures::future::try_join_all(updates).await?;
        Ok(())
    }

    /// Registers the old version `pin` asks for under its hidden name. A version never changes, so
    /// one registered before is reused; a timestamp is resolved again each time.
    pub async fn pin(&mut self, ctx: &SessionContext, pin: &Pin) -> Result<(), QueryError> {
        self.refresh(ctx, std::slice::from_ref(&pin.table)).await?;
        let latest = self.entry(&pin.table)?.table.version().unwrap_or(0);
        let reference = pin.reference();
        if matches!(pin.as_of, AsOf::Version(_)) && ctx.table_exist(reference.clone()).unwrap_or(false) {
            return Ok(());
        }
        let table = match pin.as_of {
            AsOf::Version(version) if version > latest => {
                return Err(TimeTravelError::NoSuchVersion {
                    table: pin.table.clone(),
                    version,
                    latest,
                }
                .into())
            }
            AsOf::Version(version) => self.lake.load_version(&pin.table, version).await?,
            AsOf::Timestamp(time) => self.load_at(&pin.table, time).await?,
        };
        let provider = lake::table_provider(ctx, &table, &pin.table).await?;
        replace_table(ctx, reference, provider)
    }

    async fn load_at(&self, name: &str, time: DateTime<Utc>) -> Result<DeltaTable, QueryError> {
        let table = self.lake.load_at(name, time).await?;
        let version = table.version().unwrap_or(0);
        let committed = table.snapshot()?.version_timestamp(version);
        match committed.and_then(DateTime::from_timestamp_millis) {
            Some(first) if first > time => Err(TimeTravelError::BeforeFirstCommit {
                table: name.to_string(),
                time,
                first,
            }
            .into()),
            _ => Ok(table),
        }
    }

    fn entry(&self, name: &str) -> Result<&Entry, QueryError> {
        self.tables.get(name).ok_or_else(|| {
            let known: Vec<&str> = self.tables.keys().map(String::as_str).collect();
            QueryError::NoSuchTable {
                name: name.to_string(),
                known: known.join(", "),
            }
        })
    }

    /// `\d`: one row per table with its version, files, rows and size, from the Delta log.
    pub fn summary(&self) -> Result<RecordBatch, QueryError> {
        let mut columns = SummaryColumns::default();
        for (name, entry) in &self.tables {
            let snapshot = entry.table.snapshot()?;
            let files = snapshot.log_data();
            columns.name.push(name.clone());
            columns.version.push(entry.table.version().map(|v| v as i64));
            columns.files.push(files.num_files() as i64);
            let rows: Option<usize> = files.iter().map(|f| f.num_records()).sum();
            columns.rows.push(rows.map(|r| r as i64));
            columns
                .size
                .push(human_bytes(files.iter().map(|f| f.size().max(0) as u64).sum()));
            columns
                .partitioned_by
                .push(snapshot.metadata().partition_columns().join(", "));
        }
        columns.into_batch()
    }

    /// `\d table`: columns and types, which are partition columns, and a line about the version.
    pub fn describe(&self, name: &str) -> Result<(String, RecordBatch), QueryError> {
        let entry = self.entry(name)?;
        let snapshot = entry.table.snapshot()?;
        let partitions = snapshot.metadata().partition_columns();
        let schema = entry.provider.schema();
        let fields = schema.fields();
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from_iter_values(fields.iter().map(|f| f.name()))),
            Arc::new(StringArray::from_iter_values(
                fields.iter().map(|f| short_type(f.data_type())),
            )),
            Arc::new(BooleanArray::from_iter(
                fields.iter().map(|f| Some(f.is_nullable())),
            )),
            Arc::new(BooleanArray::from_iter(
                fields.iter().map(|f| Some(partitions.contains(f.name()))),
            )),
        ];
        let batch = RecordBatch::try_new(
            Arc::new(Schema::new(vec![
                Field::new("column", DataType::Utf8, false),
                Field::new("type", DataType::Utf8, false),
                Field::new("nullable", DataType::Boolean, false),
                Field::new("partition", DataType::Boolean, false),
            ])),
            columns,
        )?;
        let partitioned = match partitions.is_empty() {
            true => String::new(),
            false => format!(", partitioned by {}", partitions.join(", ")),
        };
        let title = format!(
            "{name}: version {}, {} files{partitioned}, at {}",
            entry.table.version().unwrap_or(0),
            snapshot.log_data().num_files(),
            entry.table.table_url()
        );
        Ok((title, batch))
    }

    /// `\history table`: the latest `limit` commits, newest first.
    pub async fn history(&self, name: &str, limit: usize) -> Result<RecordBatch, QueryError> {
        let entry = self.entry(name)?;
        let commits: Vec<CommitInfo> = entry.table.history(Some(limit)).try_collect().await?;
        let latest = entry.table.version().unwrap_or(0) as i64;
        let metric = |c: &CommitInfo, keys: &[&str]| {
            let metrics = c.info.get("operationMetrics")?;
            keys.iter().find_map(|k| metrics.get(*k)?.as_i64())
        };
        let columns: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from_iter_values(
                (0..commits.len() as i64).map(|i| latest - i),
            )),
            Arc::new(
                TimestampMillisecondArray::from_iter(commits.iter().map(|c| c.timestamp))
                    .with_timezone("UTC"),
            ),
            Arc::new(StringArray::from_iter(
                commits.iter().map(|c| c.operation.clone()),
            )),
            Arc::new(Int64Array::from_iter(
                commits.iter().map(|c| metric(c, ROWS_ADDED)),
            )),
            Arc::new(Int64Array::from_iter(
                commits.iter().map(|c| metric(c, ROWS_UPDATED)),
            )),
        ];
        Ok(RecordBatch::try_new(history_schema(), columns)?)
    }
}

/// A type as `\d` shows it: structs by their field names only, so nested posts stay readable.
fn short_type(data_type: &DataType) -> String {
    match data_type {
        DataType::Struct(fields) => {
            let names: Vec<&str> = fields.iter().map(|f| f.name().as_str()).collect();
            format!("Struct({})", names.join(", "))
        }
        DataType::List(item) | DataType::LargeList(item) | DataType::ListView(item) => {
            format!("List({})", short_type(item.data_type()))
        }
        other => other.to_string(),
    }
}

fn history_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("version", DataType::Int64, false),
        Field::new(
            "timestamp",
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            true,
        ),
        Field::new("operation", DataType::Utf8, true),
        Field::new("rows_added", DataType::Int64, true),
        Field::new("rows_updated", DataType::Int64, true),
    ]))
}

#[derive(Default)]
struct SummaryColumns {
    name: Vec<String>,
    version: Vec<Option<i64>>,
    files: Vec<i64>,
    rows: Vec<Option<i64>>,
    size: Vec<String>,
    partitioned_by: Vec<String>,
}

impl SummaryColumns {
    fn into_batch(self) -> Result<RecordBatch, QueryError> {
        let schema = Schema::new(vec![
            Field::new("table", DataType::Utf8, false),
            Field::new("version", DataType::Int64, true),
            Field::new("files", DataType::Int64, false),
            Field::new("rows", DataType::Int64, true),
            Field::new("size", DataType::Utf8, false),
            Field::new("partitioned_by", DataType::Utf8, false),
        ]);
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(self.name)),
            Arc::new(Int64Array::from(self.version)),
            Arc::new(Int64Array::from(self.files)),
            Arc::new(Int64Array::from(self.rows)),
            Arc::new(StringArray::from(self.size)),
            Arc::new(StringArray::from(self.partitioned_by)),
        ];
        Ok(RecordBatch::try_new(Arc::new(schema), columns)?)
    }
}

/// Registers the loaded version of `table` as `name` and returns its provider.
async fn register(
    ctx: &SessionContext,
    name: &str,
    table: &DeltaTable,
) -> Result<Arc<dyn TableProvider>, QueryError> {
    let provider = lake::table_provider(ctx, table, name).await?;
    replace_table(ctx, TableReference::parse_str(name), provider.clone())?;
    Ok(provider)
}

/// Registers `provider` as `reference` in its lake schema (made on first use), replacing the
/// provider registered before, if any, in one step.
fn replace_table(
    ctx: &SessionContext,
    reference: TableReference,
    provider: Arc<dyn TableProvider>,
) -> Result<(), QueryError> {
    let schema = lake_schema(ctx, reference.schema().unwrap_or(DEFAULT_SCHEMA))?;
    schema.register_table(reference.table().to_string(), provider)?;
    Ok(())
}
