//! Keeping the lake's tables small and fast with delta-rs's own operations: compaction
//! (a partition's small files bin-packed into target-size files, or z-ordered), vacuum (data
//! files the table no longer uses, once they are older than the retention), a checkpoint and
//! the cleanup of expired log entries. `tweetlake maintain` runs them on demand
//! ([`TableMaintenance`]); `tweetlake run` runs them a bounded step at a time between batches
//! ([`AutoMaintenance`]). A [`Lease`] in the lake keeps two maintainers from working at once.

mod auto;
mod config;
mod lease;
mod usage;

use std::collections::BTreeMap;
use std::num::NonZeroU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

use deltalake::checkpoints::{cleanup_metadata, create_checkpoint};
use deltalake::logstore::{object_store, LogStoreRef};
use deltalake::operations::optimize::OptimizeType;
use deltalake::operations::vacuum::VacuumMode;
use deltalake::operations::CustomExecuteHandler;
use deltalake::table::config::TablePropertiesExt;
use deltalake::{DeltaResult, DeltaTable, DeltaTableError, FilterOp, FilterValue};
use uuid::Uuid;

use crate::fault;
use crate::lake::{Lake, LakeError, StoreFailure};
use crate::settings::{human_bytes, humanize_duration};
use crate::sink::writer_properties;

pub use auto::{lease_owner, AutoMaintenance, StepReport};
pub use config::MaintenanceConfig;
pub use lease::{HeldLease, Holder, Lease};
pub use usage::Usage;

#[derive(Debug, thiserror::Error)]
pub enum MaintainError {
    #[error(transparent)]
    Lake(#[from] LakeError),
    #[error("table {table}: {source}{hint}", hint = StoreFailure::of(source).hint())]
    Delta { table: String, source: DeltaTableError },
    #[error("maintenance lease {path}: {source}{hint}", hint = StoreFailure::of(source).hint())]
    Store {
        path: String,
        source: object_store::Error,
    },
    #[error("maintenance lease {path} is not a valid lease entry: {source}")]
    CorruptLease { path: String, source: serde_json::Error },
    #[error(
        "--retention {requested} is shorter than {table}'s delta.deletedFileRetentionDuration ({minimum}): \
         pass --force to remove newer files anyway (time travel to versions before the retention then fails), \
         or raise the retention"
    )]
    RetentionTooShort {
        table: String,
        requested: String,
        minimum: String,
    },
    #[error("--table {name}: no such table in the lake (tables: {known})")]
    UnknownTable { name: String, known: String },
    #[error("another maintainer ({}) holds the maintenance lease until {}: try again then", holder.owner, holder.until.to_rfc3339())]
    LeaseHeld { holder: Holder },
}

impl MaintainError {
    fn delta(table: &str) -> impl Fn(DeltaTableError) -> Self + '_ {
        move |source| Self::Delta {
            table: table.to_string(),
            source,
        }
    }

    /// Another writer committed first (a merge, a compaction): this step is void, and the
    /// next one starts from the table's new state.
    fn is_conflict(&self) -> bool {
        matches!(
            self,
            Self::Delta {
                source: DeltaTableError::Transaction { .. } | DeltaTableError::VersionAlreadyExists(_),
                ..
            }
        )
    }
}

/// How one table is maintained: its name, z-order columns (`@zorder`), target file size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableTarget {
    pub name: String,
    pub zorder: Vec<String>,
    pub target_file_size: u64,
}

/// Whether a vacuum may remove files newer than the table's own minimum retention.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetentionCheck {
    /// Refuse a retention below `delta.deletedFileRetentionDuration`.
    Enforce,
    /// `--force`: vacuum with the retention given.
    Override,
}

/// Whether maintenance changes the table or reports what it would do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Execution {
    Apply,
    DryRun,
}

/// One partition's compaction: the partition's values (none for an unpartitioned table) and
/// the sizes of the small files it holds, smallest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionCompaction {
    pub partition: Vec<(String, String)>,
    pub small_sizes: Vec<u64>,
}

impl PartitionCompaction {
    /// `day=2026-12-01`, or `(unpartitioned)`.
    pub fn label(&self) -> String {
        if self.partition.is_empty() {
            return "(unpartitioned)".into();
        }
        let parts: Vec<String> = self.partition.iter().map(|(k, v)| format!("{k}={v}")).collect();
        parts.join("/")
    }
}

/// What maintaining one table did (or, in a dry run, would do).
#[derive(Debug, Clone, PartialEq)]
pub struct TableReport {
    pub table: String,
    pub execution: Execution,
    pub before: Usage,
    pub after: Usage,
    /// Small files rewritten, and the files written in their place.
    pub files_compacted: u64,
    pub files_written: u64,
    pub partitions_compacted: usize,
    pub files_vacuumed: usize,
    pub logs_removed: usize,
    pub elapsed: Duration,
}

impl std::fmt::Display for TableReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (before, after) = (&self.before, &self.after);
        match self.execution {
            Execution::DryRun => write!(
                f,
                "{}: {} files, {} on disk; would compact {} small files in {} partitions, vacuum {} files \
                 ({}), write a checkpoint and remove expired log entries",
                self.table,
                before.files,
                before.size(),
                self.files_compacted,
                self.partitions_compacted,
                self.files_vacuumed,
                human_bytes(before.bytes.saturating_sub(after.bytes)),
            ),
            Execution::Apply => write!(
                f,
                "{}: files {} -> {}, {} -> {} ({} reclaimed); compacted {} files into {} in {} partitions, \
                 vacuumed {} files, removed {} expired log files; {:.1} s",
                self.table,
                before.files,
                after.files,
                before.size(),
                after.size(),
                human_bytes(before.bytes.saturating_sub(after.bytes)),
                self.files_compacted,
                self.files_written,
                self.partitions_compacted,
                self.files_vacuumed,
                self.logs_removed,
                self.elapsed.as_secs_f64(),
            ),
        }
    }
}

/// Maintaining one table on demand, delta-rs style: configure with `with_*`, then
/// [`Self::execute`]. [`Self::check`] finds a refused retention before anything changes.
pub struct TableMaintenance<'a> {
    lake: &'a Lake,
    target: TableTarget,
    retention: Duration,
    retention_check: RetentionCheck,
    execution: Execution,
}

impl<'a> TableMaintenance<'a> {
    pub fn new(lake: &'a Lake, target: TableTarget, retention: Duration) -> Self {
        Self {
            lake,
            target,
            retention,
            retention_check: RetentionCheck::Enforce,
            execution: Execution::Apply,
        }
    }

    pub fn with_retention_check(mut self, check: RetentionCheck) -> Self {
        self.retention_check = check;
        self
    }

    pub fn with_execution(mut self, execution: Execution) -> Self {
        self.execution = execution;
        self
    }

    /// Fails when the retention is below the table's minimum and may not override it.
    pub async fn check(&self) -> Result<(), MaintainError> {
        let table = self.lake.load_table(&self.target.name).await?;
        check_retention(&table, &self.target.name, self.retention, self.retention_check)
    }

    /// Compacts every partition holding two or more small files, vacuums, writes a checkpoint
    /// and removes expired log entries; or, in a dry run, reports what that would do.
    pub async fn execute(self) -> Result<TableReport, MaintainError> {
        let started = Instant::now();
        let name = self.target.name.clone();
        let before = Usage::of(self.lake, &name).await?;
        let table = self.lake.load_table(&name).await?;
        check_retention(&table, &name, self.retention, self.retention_check)?;
        let due = compactable(&table, &name, self.target.target_file_size, 2)?;
        let mut report = TableReport {
            table: name.clone(),
            execution: self.execution,
            before: before.clone(),
            after: before.clone(),
            files_compacted: due.iter().map(|p| p.small_sizes.len() as u64).sum(),
            files_written: 0,
            partitions_compacted: due.len(),
            files_vacuumed: 0,
            logs_removed: 0,
            elapsed: Duration::ZERO,
        };
        if self.execution == Execution::DryRun {
            let vacuumed = vacuum(
                &name,
                table,
                self.retention,
                self.retention_check,
                Execution::DryRun,
            )
            .await?;
            report.files_vacuumed = vacuumed.len();
            report.after = before.without(&vacuumed);
            report.elapsed = started.elapsed();
            return Ok(report);
        }
        report.files_compacted = 0;
        for partition in &due {
            let (removed, added) = self.compact_partition(partition).await?;
            report.files_compacted += removed;
            report.files_written += added;
        }
        report.files_vacuumed = self.vacuum_table().await?;
        report.logs_removed = checkpoint(self.lake, &name).await?;
        report.after = Usage::of(self.lake, &name).await?;
        report.elapsed = started.elapsed();
        Ok(report)
    }
}

impl TableMaintenance<'_> {
    /// Compacts one partition from the table's latest state; when another writer commits
    /// first (a pipeline's merge), the step is void and tried again from the new state.
    async fn compact_partition(&self, partition: &PartitionCompaction) -> Result<(u64, u64), MaintainError> {
        let size = self.target.target_file_size;
        let mut attempt = 1;
        loop {
            let table = self.lake.load_table(&self.target.name).await?;
            match compact(table, partition, &self.target, size).await {
                Err(error) if error.is_conflict() && attempt < CONFLICT_ATTEMPTS => {
                    tracing::info!(
                        "{}: another writer committed first; compacting again",
                        self.target.name
                    );
                    attempt += 1;
                }
                result => return result.map(|(_, counts)| counts),
            }
        }
    }

    /// Vacuums from the table's latest state, again after a conflicting commit.
    async fn vacuum_table(&self) -> Result<usize, MaintainError> {
        let name = &self.target.name;
        let mut attempt = 1;
        loop {
            let table = self.lake.load_table(name).await?;
            match vacuum(
                name,
                table,
                self.retention,
                self.retention_check,
                Execution::Apply,
            )
            .await
            {
                Err(error) if error.is_conflict() && attempt < CONFLICT_ATTEMPTS => {
                    tracing::info!("{name}: another writer committed first; vacuuming again");
                    attempt += 1;
                }
                result => return result.map(|removed| removed.len()),
            }
        }
    }
}

/// How often a maintenance step is tried when other writers keep committing first.
const CONFLICT_ATTEMPTS: u32 = 5;

/// Refuses a retention below the table's `delta.deletedFileRetentionDuration` unless told to
/// override it (delta-rs would refuse too, but only in whole hours and after loading files).
fn check_retention(
    table: &DeltaTable,
    name: &str,
    retention: Duration,
    check: RetentionCheck,
) -> Result<(), MaintainError> {
    let minimum = minimum_retention(table, name)?;
    if check == RetentionCheck::Enforce && retention < minimum {
        return Err(MaintainError::RetentionTooShort {
            table: name.to_string(),
            requested: humanize_duration(retention),
            minimum: humanize_duration(minimum),
        });
    }
    Ok(())
}

/// `delta.deletedFileRetentionDuration` of `table` (7 days unless set).
fn minimum_retention(table: &DeltaTable, name: &str) -> Result<Duration, MaintainError> {
    let snapshot = table.snapshot().map_err(MaintainError::delta(name))?;
    Ok(snapshot.table_config().deleted_file_retention_duration())
}

/// The partitions of `table` (named `name`) holding at least `min_files` files smaller than
/// `small_below` bytes, with those files' count and size. Partitions with a NULL value are left
/// out: a partition filter cannot name them.
fn compactable(
    table: &DeltaTable,
    name: &str,
    small_below: u64,
    min_files: usize,
) -> Result<Vec<PartitionCompaction>, MaintainError> {
    let snapshot = table.snapshot().map_err(MaintainError::delta(name))?;
    let mut partitions: BTreeMap<Vec<(String, String)>, Vec<u64>> = BTreeMap::new();
    for file in snapshot.log_data().iter() {
        let size = file.size().max(0) as u64;
        if size >= small_below {
            continue;
        }
        let values: Option<Vec<(String, String)>> = file
            .partition_values_map()
            .into_iter()
            .map(|(column, value)| value.map(|v| (column, v)))
            .collect();
        let Some(mut values) = values else {
            continue;
        };
        values.sort();
        partitions.entry(values).or_default().push(size);
    }
    Ok(partitions
        .into_iter()
        .filter(|(_, sizes)| sizes.len() >= min_files)
        .map(|(partition, mut small_sizes)| {
            small_sizes.sort_unstable();
            PartitionCompaction {
                partition,
                small_sizes,
            }
        })
        .collect())
}

/// Bin-packs (or z-orders) one partition's files into files of about `target_size` bytes.
/// Returns the table and the files removed and added.
async fn compact(
    table: DeltaTable,
    partition: &PartitionCompaction,
    target: &TableTarget,
    target_size: u64,
) -> Result<(DeltaTable, (u64, u64)), MaintainError> {
    let name = &target.name;
    let schema = table
        .snapshot()
        .map_err(MaintainError::delta(name))?
        .snapshot()
        .arrow_schema();
    let filters: Vec<_> = partition
        .partition
        .iter()
        .map(|(column, value)| (column.as_str(), FilterOp::Eq, FilterValue::Scalar(value.as_str())))
        .collect();
    let kind = match target.zorder.is_empty() {
        true => OptimizeType::Compact,
        false => OptimizeType::ZOrder(target.zorder.clone()),
    };
    let (table, metrics) = table
        .optimize()
        .with_type(kind)
        .with_filters(&filters)
        .with_target_size(NonZeroU64::new(target_size).expect("target sizes are validated above 0"))
        .with_writer_properties(writer_properties(&schema))
        // One bin at a time: a step cancelled at its time limit leaves at most one rewrite
        // running, and what finished is committed every few seconds.
        .with_max_concurrent_tasks(1)
        .with_min_commit_interval(Duration::from_secs(5))
        .await
        .map_err(MaintainError::delta(name))?;
    Ok((table, (metrics.num_files_removed, metrics.num_files_added)))
}

/// Vacuums in full mode: every file under the table that the latest version does not use and
/// that is older than `retention` (tombstoned files, and files of writes that never committed).
/// Returns the paths removed (or, in a dry run, that would be).
async fn vacuum(
    name: &str,
    table: DeltaTable,
    retention: Duration,
    check: RetentionCheck,
    execution: Execution,
) -> Result<Vec<String>, MaintainError> {
    let retention = chrono::Duration::from_std(retention).unwrap_or(chrono::Duration::MAX);
    let (_, metrics) = table
        .vacuum()
        .with_retention_period(retention)
        .with_enforce_retention_duration(check == RetentionCheck::Enforce)
        .with_mode(VacuumMode::Full)
        .with_dry_run(execution == Execution::DryRun)
        .with_custom_execute_handler(Arc::new(FaultAfterCommit(format!("during_vacuum:{name}"))))
        .await
        .map_err(MaintainError::delta(name))?;
    Ok(metrics.files_deleted)
}

/// Fires fault point `.0` after each commit of the operation it is attached to: after a
/// vacuum's start commit, before it deletes anything (crash tests; a no-op otherwise).
struct FaultAfterCommit(String);

#[async_trait::async_trait]
impl CustomExecuteHandler for FaultAfterCommit {
    async fn pre_execute(&self, _: &LogStoreRef, _: Uuid) -> DeltaResult<()> {
        Ok(())
    }

    async fn post_execute(&self, _: &LogStoreRef, _: Uuid) -> DeltaResult<()> {
        Ok(())
    }

    async fn before_post_commit_hook(&self, _: &LogStoreRef, _: bool, _: Uuid) -> DeltaResult<()> {
        Ok(())
    }

    async fn after_post_commit_hook(&self, _: &LogStoreRef, _: bool, _: Uuid) -> DeltaResult<()> {
        fault::point(&self.0, 0);
        Ok(())
    }
}

/// Writes a checkpoint of the latest version and removes log entries older than the table's
/// `delta.logRetentionDuration` that the checkpoint makes unnecessary. Returns how many.
async fn checkpoint(lake: &Lake, name: &str) -> Result<usize, MaintainError> {
    let table = lake.load_table(name).await?;
    create_checkpoint(&table, None)
        .await
        .map_err(MaintainError::delta(name))?;
    cleanup_metadata(&table, None)
        .await
        .map_err(MaintainError::delta(name))
}
