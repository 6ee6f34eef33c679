//! Maintenance inside `tweetlake run`: after each batch, bounded steps for at most
//! `maintenance.max_pause`, so ingestion never waits longer than that for it.
//!
//! - A table the batch committed to is looked at at once: when a partition holds more than
//!   N = `compact_min_files` files under the target size, files up to the size of its N
//!   smallest together are packed into files of that size, and larger files are left alone.
//!   Each pass makes files about N times larger, so a byte is rewritten about log_N(target /
//!   batch file size) times on its way to the target (3 times for 100 KB files and N = 10);
//!   packing straight to the target would rewrite the growing packed file with every few new
//!   files (64 times in that example).
//! - Every `compact_interval`, partitions holding two or more files under the target are
//!   packed to the target (z-ordered for `@zorder` models).
//! - Every `vacuum_interval` per table: vacuum (full mode, `maintenance.retention`, never below
//!   the table's own minimum), a checkpoint and the cleanup of expired log entries.
//!
//! Planning reads no store: it works on the tables as the pipeline's own last commits left
//! them. Each step then brings its table to the latest version first: an optimize planned on
//! an older snapshot would rewrite files an earlier optimize already rewrote, and delta-rs lets
//! two rewrites of the same files both commit (every row would be there twice). Steps run only
//! while this
//! instance holds the lake's maintenance lease, taken for one call at a time so that a
//! `tweetlake maintain` beside a busy pipeline gets its turn. A step that runs out of time is
//! cancelled, which is safe (optimize commits finished bins every few seconds, and a cancelled
//! rewrite is an unused file vacuum removes later; vacuum only deletes unused files); what is
//! still due is planned again after the next batch. A step that loses a commit race to another
//! writer is void, and planned again from the table's new state.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use deltalake::DeltaTable;

use super::{
    checkpoint, compact, compactable, minimum_retention, vacuum, Execution, Lease, MaintainError,
    MaintenanceConfig, PartitionCompaction, RetentionCheck, TableTarget, Usage,
};
use crate::lake::{Lake, LakeError};
use crate::telemetry;

/// Files a pass packs into are at least this large (batch files of a few KB would otherwise
/// be packed a few times over before they matter).
const MIN_PASS_FILE_SIZE: u64 = 1024 * 1024;

/// One bounded piece of work on one table, as the pipeline last left it.
enum Task {
    Compact {
        partition: PartitionCompaction,
        file_size: u64,
    },
    /// Vacuum, checkpoint and expired-log cleanup.
    Vacuum,
}

/// What one call of [`AutoMaintenance::between_batches`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StepReport {
    pub compactions: usize,
    pub files_compacted: u64,
    pub vacuums: usize,
    pub files_vacuumed: usize,
    /// Work was left for later at `maintenance.max_pause`.
    pub cut_short: bool,
    pub elapsed: Duration,
}

impl StepReport {
    pub fn did_anything(&self) -> bool {
        self.compactions + self.vacuums > 0 || self.cut_short
    }
}

pub struct AutoMaintenance {
    lake: Lake,
    config: MaintenanceConfig,
    targets: HashMap<String, TableTarget>,
    lease: Lease,
    last_full_pass: Instant,
    last_vacuum: HashMap<String, Instant>,
}

impl Task {
    /// The operation's name in metrics.
    fn operation(&self) -> &'static str {
        match self {
            Task::Compact { .. } => "compact",
            Task::Vacuum => "vacuum",
        }
    }
}

impl AutoMaintenance {
    /// Maintenance of `targets` in `lake` for the pipeline named `pipeline`.
    pub fn new(
        lake: Lake,
        pipeline: &str,
        config: MaintenanceConfig,
        targets: Vec<TableTarget>,
    ) -> Result<Self, LakeError> {
        let (store, root) = lake.object_store()?;
        let now = Instant::now();
        Ok(Self {
            lease: Lease::new(store, &root, pipeline, lease_owner()),
            last_vacuum: targets.iter().map(|t| (t.name.clone(), now)).collect(),
            targets: targets.into_iter().map(|t| (t.name.clone(), t)).collect(),
            lake,
            config,
            last_full_pass: now,
        })
    }

    /// The longest a call of [`Self::between_batches`] should be allowed.
    pub fn max_pause(&self) -> Duration {
        self.config.max_pause
    }

    /// Runs what is due for at most `maintenance.max_pause`. `tables` are the pipeline's tables
    /// as its last commits left them; `committed` names those the last batch changed.
    pub async fn between_batches(
        &mut self,
        tables: Vec<(String, DeltaTable)>,
        committed: &[String],
    ) -> StepReport {
        let started = Instant::now();
        let deadline = started + self.config.max_pause;
        let tasks = self.plan(&tables, committed);
        let mut report = StepReport::default();
        if !tasks.is_empty() && self.take_lease().await {
            for (name, table, task) in tasks {
                let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                    report.cut_short = true;
                    break;
                };
                let step = Instant::now();
                let outcome =
                    match tokio::time::timeout(left, self.run(&name, table, &task, &mut report)).await {
                        Ok(Ok(reclaimed)) => Ok(reclaimed),
                        Ok(Err(error)) if error.is_conflict() => {
                            tracing::info!(
                                "maintenance: {name}: another writer committed first; planned again later"
                            );
                            Err("conflict")
                        }
                        Ok(Err(error)) => {
                            tracing::warn!("maintenance: {name}: {error}");
                            Err("failed")
                        }
                        Err(_) => {
                            report.cut_short = true;
                            Err("cut_short")
                        }
                    };
                let (outcome, reclaimed) = match outcome {
                    Ok(reclaimed) => ("ok", reclaimed),
                    Err(outcome) => (outcome, 0),
                };
                telemetry::record_maintenance(&name, task.operation(), outcome, reclaimed, step.elapsed());
                if report.cut_short {
                    break;
                }
            }
            self.release_lease().await;
        }
        report.elapsed = started.elapsed();
        report
    }

    /// The work due now, most urgent first: packing the tables the batch just wrote to, then
    /// the periodic full packing, then the periodic vacuums.
    fn plan(
        &mut self,
        tables: &[(String, DeltaTable)],
        committed: &[String],
    ) -> Vec<(String, DeltaTable, Task)> {
        let maintained = tables.iter().filter(|(name, _)| self.targets.contains_key(name));
        let mut tasks = Vec::new();
        let n = self.config.compact_min_files;
        for (name, table) in maintained.clone().filter(|(name, _)| committed.contains(name)) {
            let target_size = self.targets[name].target_file_size;
            for partition in self.compactable(table, name, target_size, n + 1) {
                let smallest: u64 = partition.small_sizes.iter().take(n).sum();
                let file_size = smallest.clamp(MIN_PASS_FILE_SIZE, target_size);
                tasks.push((
                    name.clone(),
                    table.clone(),
                    Task::Compact { partition, file_size },
                ));
            }
        }
        if self.last_full_pass.elapsed() >= self.config.compact_interval {
            self.last_full_pass = Instant::now();
            for (name, table) in maintained.clone() {
                let file_size = self.targets[name].target_file_size;
                for partition in self.compactable(table, name, file_size, 2) {
                    let planned = tasks.iter().any(|(n, _, task)| {
                        n == name
                            && matches!(task, Task::Compact { partition: p, .. } if p.partition == partition.partition)
                    });
                    if !planned {
                        tasks.push((
                            name.clone(),
                            table.clone(),
                            Task::Compact { partition, file_size },
                        ));
                    }
                }
            }
        }
        for (name, table) in maintained {
            let last = self.last_vacuum.entry(name.clone()).or_insert_with(Instant::now);
            if last.elapsed() >= self.config.vacuum_interval {
                *last = Instant::now();
                tasks.push((name.clone(), table.clone(), Task::Vacuum));
            }
        }
        tasks
    }

    fn compactable(
        &self,
        table: &DeltaTable,
        name: &str,
        small_below: u64,
        min_files: usize,
    ) -> Vec<PartitionCompaction> {
        compactable(table, name, small_below, min_files).unwrap_or_else(|error| {
            tracing::warn!("maintenance: {name}: {error}");
            Vec::new()
        })
    }

    async fn run(
        &self,
        name: &str,
        mut table: DeltaTable,
        task: &Task,
        report: &mut StepReport,
    ) -> Result<u64, MaintainError> {
        // The table as the pipeline left it may predate this process's own last optimize.
        table
            .update_incremental(None)
            .await
            .map_err(MaintainError::delta(name))?;
        match task {
            Task::Compact { partition, file_size } => {
                let (_, (removed, added)) =
                    compact(table, partition, &self.targets[name], *file_size).await?;
                tracing::info!(
                    "maintenance: {name} {}: compacted {removed} files into {added}",
                    partition.label()
                );
                report.compactions += 1;
                report.files_compacted += removed;
                // Compaction frees nothing itself: the files it replaced go at the next vacuum.
                Ok(0)
            }
            Task::Vacuum => {
                let retention = self.config.retention.max(minimum_retention(&table, name)?);
                let before = Usage::of(&self.lake, name).await?;
                let removed =
                    vacuum(name, table, retention, RetentionCheck::Enforce, Execution::Apply).await?;
                let reclaimed = before.bytes - before.without(&removed).bytes;
                let logs = checkpoint(&self.lake, name).await?;
                tracing::info!(
                    "maintenance: {name}: vacuumed {} files, removed {logs} expired log files",
                    removed.len()
                );
                report.vacuums += 1;
                report.files_vacuumed += removed.len();
                Ok(reclaimed)
            }
        }
    }

    /// Takes the lease for one call. False when another maintainer holds it: that one
    /// maintains the tables meanwhile.
    async fn take_lease(&mut self) -> bool {
        match self.lease.acquire(self.config.lease_ttl).await {
            Ok(Ok(())) => true,
            Ok(Err(holder)) => {
                tracing::debug!("maintenance: {} holds the lease; skipping", holder.owner);
                false
            }
            Err(error) => {
                tracing::warn!("maintenance: {error}");
                false
            }
        }
    }

    async fn release_lease(&mut self) {
        if let Err(error) = self.lease.release().await {
            tracing::debug!("maintenance: releasing the lease: {error}");
        }
    }
}

/// `host:pid`: who holds a lease, for the other maintainers' messages.
pub fn lease_owner() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into());
    format!("{host}:{}", std::process::id())
}
