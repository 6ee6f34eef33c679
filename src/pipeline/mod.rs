//! The micro-batch loop: read -> plan (offset log) -> decode -> SQL models -> Delta -> marker.
//!
//! Exactly once comes from two facts: a batch's ranges are logged before it runs, so a re-run
//! reads the same records; and every Delta commit carries the batch id as a `txn` version, so
//! a table that already holds the batch is skipped.

pub mod checkpoint;
mod config;
pub mod progress;
pub mod retry;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::Utc;
use deltalake::arrow::array::RecordBatch;
use tokio::sync::watch;

use crate::decode::{bronze_schema, dead_letter_schema, BatchContext, DecodeError, Decoded, MessageDecoder};
use crate::dlq::DeadLetters;
use crate::fault;
use crate::kafka::PublishError;
use crate::lake::{Lake, LakeError};
use crate::maintain::AutoMaintenance;
use crate::memory::FreedMemory;
use crate::sink::{CommitOutcome, DeltaSink, SinkError, TableCommit, TableSpec, TableWrite};
use crate::source::{self, Positions, ReadLimits, Source, SourceError};
use crate::telemetry;
use crate::transform::dedup::ModelBatch;
use crate::transform::{Model, ModelOutput, ModelSet, TransformError, BRONZE};
use checkpoint::{BatchPlan, CheckpointError, Claim, OffsetLog, PartitionState};
use progress::{millis, BatchReport, DedupReport, ProgressLog, StageDurations, TableOutcome, TableReport};
use retry::Backoff;

pub use config::PipelineConfig;

/// Partition column of the bronze and dead-letter tables.
pub const INGEST_PARTITION: &str = crate::decode::batch_columns::INGEST_DATE;

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error(transparent)]
    Transform(#[from] TransformError),
    #[error(transparent)]
    Lake(#[from] LakeError),
    #[error(transparent)]
    Sink(#[from] SinkError),
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error("progress log {target}: {source}")]
    Progress { target: String, source: std::io::Error },
    #[error("dead-letter topic: {0}")]
    DeadLetterTopic(#[from] PublishError),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunMode {
    /// A batch every trigger interval (or sooner when a size limit is reached), until stopped.
    Continuous,
    /// Available-now: snapshot the end offsets at start, process up to them, then return.
    Once,
}

/// Whether a batch runs for the first time, or again because the log holds its plan but not
/// its commit (a crash, a failed attempt, another instance's unfinished work).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Attempt {
    First,
    Rerun,
}

/// Totals of one `run`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RunSummary {
    pub batches: u64,
    pub input_rows: usize,
    pub dead_letters: usize,
    /// The longest ingestion waited between two batches for automatic maintenance.
    pub longest_maintenance_pause: Duration,
}

pub struct Pipeline<S: Source> {
    name: String,
    source: S,
    models: ModelSet,
    sink: DeltaSink,
    log: OffsetLog,
    decoder: MessageDecoder,
    progress: ProgressLog,
    dead_letters: DeadLetters,
    max_records: usize,
    max_bytes: usize,
    trigger_interval: Duration,
    log_retention: usize,
    retry: Backoff,
    maintenance: Option<AutoMaintenance>,
    freed_memory: FreedMemory,
}

impl<S: Source> Pipeline<S> {
    /// A pipeline reading `source` through `models` into `lake`, with the batch settings of
    /// `config`; records that fail to decode go to `dead_letters`.
    pub fn new(
        config: &PipelineConfig,
        lake: Lake,
        dead_letters: DeadLetters,
        source: S,
        models: ModelSet,
    ) -> Result<Self, PipelineError> {
        let (store, root) = lake.object_store()?;
        let progress = ProgressLog::open(&config.progress_log).map_err(|source| PipelineError::Progress {
            target: config.progress_log.clone(),
            source,
        })?;
        Ok(Self {
            name: config.name.clone(),
            source,
            models,
            sink: DeltaSink::new(lake, &config.name),
            log: OffsetLog::new(store, &root, &config.name),
            decoder: MessageDecoder::new(config.max_message_bytes),
            progress,
            dead_letters,
            max_records: config.max_records_per_batch,
            max_bytes: config.max_bytes_per_batch,
            trigger_interval: config.trigger_interval,
            log_retention: config.log_retention_batches,
            retry: Backoff::new(config.retry_policy()),
            maintenance: None,
            freed_memory: FreedMemory::default(),
        })
    }

    /// Maintains the tables between batches (compaction, vacuum, checkpoints).
    pub fn with_maintenance(mut self, maintenance: AutoMaintenance) -> Self {
        self.maintenance = Some(maintenance);
        self
    }

    pub fn lake(&self) -> &Lake {
        self.sink.lake()
    }

    /// Runs until `stop` turns true (continuous) or the start snapshot is processed (once).
    /// A stop request lets the batch in progress finish; a read in progress is abandoned,
    /// which loses nothing because nothing was planned for it yet.
    pub async fn run(
        &mut self,
        mode: RunMode,
        mut stop: watch::Receiver<bool>,
    ) -> Result<RunSummary, PipelineError> {
        let mut summary = RunSummary::default();
        let mut generation = self.source.assignment_generation();
        // Not retried: a store that cannot be reached at start is most often a setup mistake,
        // and the one-line error should say so at once.
        let started = Instant::now();
        let mut positions = self.resync(&mut summary).await?;
        tracing::debug!(
            "start: {} partitions positioned in {} ms",
            positions.len(),
            started.elapsed().as_millis()
        );
        let until = match mode {
            RunMode::Once => {
                let end = self.source.end_positions().await?;
                tracing::debug!("start: end offsets found in {} ms", started.elapsed().as_millis());
                self.progress.start_bar(remaining(&positions, &end));
                Some(end)
            }
            RunMode::Continuous => None,
        };
        while !*stop.borrow() && !until.as_ref().is_some_and(|u| reached(&positions, u)) {
            if self.source.assignment_generation() != generation {
                generation = self.source.assignment_generation();
                positions = self.resync_with_retry(&mut summary).await?;
                continue;
            }
            let limits = ReadLimits {
                max_records: self.max_records,
                max_bytes: self.max_bytes,
                deadline: (mode == RunMode::Continuous).then(|| Instant::now() + self.trigger_interval),
                until: until.clone(),
            };
            let started = Instant::now();
            let read = tokio::select! {
                read = self.source.read_next(&positions, &limits) => read,
                _ = stop.changed() => break,
            };
            let read = match read {
                Ok(read) => read,
                Err(e) => {
                    self.retry.wait_out("reading the source", e.into()).await?;
                    continue;
                }
            };
            if read.ranges.iter().all(|r| r.end == r.start) {
                telemetry::record_idle_poll();
                self.freed_memory.idle();
                if mode == RunMode::Once && self.source.assignment_generation() == generation {
                    break; // nothing more can be read below the snapshot
                }
                summary.add_pause(self.maintain(None, &mut stop).await);
                continue;
            }
            let ranges = with_idle_partitions(read.ranges, &positions);
            match self.run_batch(ranges, read.records, started.elapsed()).await {
                Ok(Some(report)) => {
                    summary.add(&report);
                    positions = report_positions(&report);
                    summary.add_pause(self.maintain(Some(&report), &mut stop).await);
                }
                Ok(None) => positions = self.resync_with_retry(&mut summary).await?,
                // Planning failed (a batch that failed later has used up its retries): what the
                // log holds now, a claim written or not, is where to go on from.
                Err(e) => {
                    self.retry.wait_out("planning a batch", e).await?;
                    positions = self.resync_with_retry(&mut summary).await?;
                }
            }
        }
        self.progress.finish();
        Ok(summary)
    }

    /// Runs the maintenance due after `batch` (or after an idle read), for at most
    /// `maintenance.max_pause`, and not past a stop request: a cancelled step is safe.
    /// Returns how long ingestion waited for it.
    async fn maintain(&mut self, batch: Option<&BatchReport>, stop: &mut watch::Receiver<bool>) -> Duration {
        let Some(maintenance) = &mut self.maintenance else {
            return Duration::ZERO;
        };
        let started = Instant::now();
        let committed: Vec<String> = batch
            .iter()
            .flat_map(|report| &report.tables)
            .filter(|(_, table)| table.outcome == progress::TableOutcome::Committed)
            .map(|(name, _)| name.clone())
            .collect();
        let tables = self.sink.cached_tables();
        let bound = maintenance.max_pause();
        tokio::select! {
            step = tokio::time::timeout(bound, maintenance.between_batches(tables, &committed)) => match step {
                Ok(step) if step.did_anything() => tracing::info!(
                    "maintenance: {} compactions ({} files), {} vacuums ({} files) in {} ms{}",
                    step.compactions,
                    step.files_compacted,
                    step.vacuums,
                    step.files_vacuumed,
                    step.elapsed.as_millis(),
                    if step.cut_short { "; the rest after the next batch" } else { "" }
                ),
                Ok(_) => {}
                Err(_) => tracing::info!("maintenance: stopped at maintenance.max_pause ({bound:?}); goes on after the next batch"),
            },
            _ = stop.changed() => {}
        }
        started.elapsed()
    }

    /// Plans and processes one new batch. `None`: another instance took over some of its
    /// partitions first, so this one dropped the batch and must read the log again.
    async fn run_batch(
        &mut self,
        ranges: Vec<source::OffsetRange>,
        records: RecordBatch,
        read_time: Duration,
    ) -> Result<Option<BatchReport>, PipelineError> {
        let plan = match self.log.plan(Utc::now(), self.source.describe(), ranges).await {
            Err(e @ CheckpointError::ClaimTaken { .. }) => {
                tracing::warn!("{e}: dropping this read and resuming from the offset log");
                return Ok(None);
            }
            plan => plan?,
        };
        fault::point("after_plan", plan.batch_id);
        match self
            .process_with_retry(&plan, records, read_time, Attempt::First)
            .await
        {
            Err(PipelineError::Sink(e @ SinkError::PartlyCommitted { .. })) => {
                tracing::warn!("batch {}: {e}", plan.batch_id);
                Ok(None)
            }
            report => report.map(Some),
        }
    }

    /// Reads the log for every owned partition: pins where a new partition starts, re-runs
    /// ranges left pending by a crash (grouped by the batch that planned them, so rows keep
    /// their batch id), and returns the positions the next batch starts from.
    async fn resync(&mut self, summary: &mut RunSummary) -> Result<Positions, PipelineError> {
        let mut positions = self.source.initial_positions().await?;
        let states = self.log.partition_states(positions.keys()).await?;
        let mut pending: BTreeMap<u64, Vec<Claim>> = BTreeMap::new();
        for ((tp, position), state) in positions.iter_mut().zip(states) {
            match state {
                PartitionState::Fresh => *position = self.log.pin_origin(tp, *position).await?,
                PartitionState::Committed { next } => *position = next,
                PartitionState::Pending(claim) => {
                    *position = claim.range.end;
                    pending.entry(claim.batch_id).or_default().push(claim);
                }
            }
        }
        for (batch_id, claims) in pending {
            let plan = BatchPlan {
                batch_id,
                planned_at: claims[0].planned_at.clone(),
                source: self.source.describe(),
                ranges: claims.into_iter().map(|c| c.range).collect(),
            };
            let ranges: Vec<String> = plan.ranges.iter().map(ToString::to_string).collect();
            tracing::warn!(
                "batch {batch_id} was planned but not committed: re-running {} with the same offsets",
                ranges.join(", ")
            );
            let started = Instant::now();
            let records = self.source.read_ranges(&plan.ranges).await?;
            let report = self
                .process_with_retry(&plan, records, started.elapsed(), Attempt::Rerun)
                .await?;
            summary.add(&report);
        }
        telemetry::record_owned_partitions(positions.len());
        Ok(positions)
    }

    /// [`Self::process`], retried with exponential backoff while the error is transient (an
    /// unreachable store or broker). Safe because a batch is idempotent.
    async fn process_with_retry(
        &mut self,
        plan: &BatchPlan,
        records: RecordBatch,
        read_time: Duration,
        attempt: Attempt,
    ) -> Result<BatchReport, PipelineError> {
        loop {
            match self.process(plan, records.clone(), read_time, attempt).await {
                Ok(report) => {
                    self.retry.reset();
                    return Ok(report);
                }
                Err(e) => {
                    self.retry
                        .wait_out(format_args!("batch {}", plan.batch_id), e)
                        .await?;
                    telemetry::record_commit_retry();
                }
            }
        }
    }

    /// [`Self::resync`], retried like a batch: the log lives in the same store.
    async fn resync_with_retry(&mut self, summary: &mut RunSummary) -> Result<Positions, PipelineError> {
        loop {
            match self.resync(summary).await {
                Err(e) => self.retry.wait_out("reading the offset log", e).await?,
                positions => return positions,
            }
        }
    }

    /// Decodes, transforms and commits one planned batch, then marks it committed.
    async fn process(
        &mut self,
        plan: &BatchPlan,
        records: RecordBatch,
        read_time: Duration,
        attempt: Attempt,
    ) -> Result<BatchReport, PipelineError> {
        let started = Instant::now() - read_time;
        let input_rows = records.num_rows();
        let input_bytes = source::value_bytes(&records);
        let ctx = BatchContext {
            batch_id: plan.batch_id,
            planned_at_micros: plan.planned_at_micros(),
        };

        let stage = Instant::now();
        let decoded = self.decoder.decode_parallel(&records, ctx)?;
        drop(records);
        let decode_time = stage.elapsed();
        fault::point("after_decode", plan.batch_id);

        // Bronze and the dead letters are written while the models run, and each model's
        // output as soon as it is computed: the writes use the cores the SQL leaves idle.
        let stage = Instant::now();
        let dead_letters = decoded.dead_letters.num_rows();
        if let Some(topic) = &self.dead_letters.topic {
            topic.publish(&decoded.dead_letters)?;
        }
        let stored = self.sink.stored_tables(&self.models.insert_new_tables()).await?;
        let model_batch = ModelBatch {
            id: plan.batch_id as i64,
            planned_on: plan.planned_on(),
            stored: &stored,
        };
        let batch_id = plan.batch_id;
        let mut commits = self.sink.begin(&plan.ranges, move |table| {
            fault::point(&format!("after_commit:{table}"), batch_id)
        });
        let bronze = decoded.bronze.clone();
        for write in ingest_writes(decoded, &self.dead_letters.table) {
            commits.start(write);
        }
        let mut dedups = BTreeMap::new();
        let transformed = self
            .models
            .run_each(bronze, &model_batch, |model, output| {
                if let Some(dedup) = output.dedup {
                    dedups.insert(model.name.clone(), DedupReport::from(dedup));
                }
                commits.start(model_write(model, output))
            })
            .await;
        let transform_time = stage.elapsed();

        let stage = Instant::now();
        // Awaited before a model error is returned: no commit may outlive its batch.
        let committed = commits.finish().await;
        transformed?;
        let tables = committed?
            .into_iter()
            .map(|c| {
                let dedup = dedups.remove(&c.table);
                (c.table.clone(), table_report(c, dedup))
            })
            .collect();
        let write_time = stage.elapsed();

        fault::point("before_marker", plan.batch_id);
        self.log.mark_done(plan).await?;
        let next = plan.next_positions();
        self.source.commit_positions(&next).await?;
        if plan.batch_id % 10 == 0 {
            let owned: Vec<_> = next.keys().cloned().collect();
            self.log.purge(owned.iter(), self.log_retention).await?;
        }

        let total = started.elapsed();
        let report = BatchReport {
            pipeline: self.name.clone(),
            batch_id: plan.batch_id,
            rerun: attempt == Attempt::Rerun,
            input_rows,
            input_bytes,
            dead_letters,
            tables,
            durations: StageDurations {
                read_ms: millis(read_time),
                decode_ms: millis(decode_time),
                transform_ms: millis(transform_time),
                write_ms: millis(write_time),
                total_ms: millis(total),
            },
            offsets: plan.ranges.clone(),
            lag: self.source.lag(&next),
            rows_per_sec: input_rows as f64 / total.as_secs_f64().max(1e-9),
            mb_per_sec: input_bytes as f64 / 1e6 / total.as_secs_f64().max(1e-9),
        };
        // Metrics first: whoever sees the progress line finds the batch in them.
        report.record_metrics(&self.dead_letters.table);
        self.progress.report(&report);
        self.freed_memory.batch_done(input_bytes);
        Ok(report)
    }
}

/// What one batch writes: bronze, the dead letters, then each model.
pub fn table_writes(
    models: &ModelSet,
    decoded: Decoded,
    outputs: Vec<ModelOutput>,
    dlq_table: &str,
) -> Vec<TableWrite> {
    let mut writes = Vec::from(ingest_writes(decoded, dlq_table));
    for (model, output) in models.models().iter().zip(outputs) {
        writes.push(model_write(model, output));
    }
    writes
}

/// The decoded batch's own tables: bronze and the dead letters.
fn ingest_writes(decoded: Decoded, dlq_table: &str) -> [TableWrite; 2] {
    [
        TableWrite {
            spec: TableSpec::append(BRONZE, &[INGEST_PARTITION]),
            schema: bronze_schema(),
            batches: decoded.bronze,
        },
        TableWrite {
            spec: TableSpec::append(dlq_table, &[INGEST_PARTITION]),
            schema: dead_letter_schema(),
            batches: vec![decoded.dead_letters],
        },
    ]
}

/// One model's output as a write to its table.
fn model_write(model: &Model, output: ModelOutput) -> TableWrite {
    TableWrite {
        spec: TableSpec {
            name: model.name.clone(),
            materialization: model.materialization.clone(),
            partition_by: model.partition_by.clone(),
        },
        schema: output.schema,
        batches: output.batches,
    }
}

impl RunSummary {
    fn add(&mut self, report: &BatchReport) {
        self.batches += 1;
        self.input_rows += report.input_rows;
        self.dead_letters += report.dead_letters;
    }

    fn add_pause(&mut self, pause: Duration) {
        self.longest_maintenance_pause = self.longest_maintenance_pause.max(pause);
    }
}

fn table_report(commit: TableCommit, dedup: Option<DedupReport>) -> TableReport {
    let (outcome, version) = match commit.outcome {
        CommitOutcome::Committed { version } => (TableOutcome::Committed, Some(version)),
        CommitOutcome::AlreadyCommitted => (TableOutcome::AlreadyCommitted, None),
        CommitOutcome::Empty => (TableOutcome::Empty, None),
    };
    TableReport {
        rows: commit.rows,
        outcome,
        version,
        write_ms: millis(commit.elapsed),
        dedup,
    }
}

/// True when every owned partition has been read up to its end in the snapshot.
fn reached(positions: &Positions, until: &Positions) -> bool {
    positions
        .iter()
        .all(|(tp, position)| until.get(tp).is_none_or(|end| position >= end))
}

/// Records between the positions and the snapshot, for the progress bar.
fn remaining(positions: &Positions, until: &Positions) -> u64 {
    positions
        .iter()
        .map(|(tp, position)| until.get(tp).map_or(0, |end| (end - position).max(0)))
        .sum::<i64>() as u64
}

/// Where the batch after a reported one starts.
fn report_positions(report: &BatchReport) -> Positions {
    report
        .offsets
        .iter()
        .map(|r| (r.topic_partition(), r.end))
        .collect()
}

/// Adds an empty range for each known partition the read did not touch, so every plan holds
/// the full set of positions and the log alone says where to resume.
fn with_idle_partitions(
    mut ranges: Vec<source::OffsetRange>,
    positions: &Positions,
) -> Vec<source::OffsetRange> {
    for (tp, &position) in positions {
        if !ranges.iter().any(|r| r.topic_partition() == *tp) {
            ranges.push(source::OffsetRange {
                topic: tp.topic.clone(),
                partition: tp.partition,
                start: position,
                end: position,
            });
        }
    }
    ranges.sort_by_key(source::OffsetRange::topic_partition);
    ranges
}
