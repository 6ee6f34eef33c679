//! The micro-batch loop: read -> plan (offset log) -> decode -> SQL models -> Delta -> marker.
//!
//! Exactly once comes from two facts: a batch's ranges are logged before it runs, so a re-run
//! reads the same records; and every Delta commit carries the batch id as a `txn` version, so
//! a table that already holds the batch is skipped.

pub mod checkpoint;
pub mod fault;
pub mod progress;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::{SecondsFormat, Utc};
use deltalake::arrow::array::RecordBatch;
use deltalake::arrow::datatypes::SchemaRef;
use tokio::sync::watch;

use crate::config::Config;
use crate::decode::{dead_letter_schema, BatchContext, DecodeError, Decoded, MessageDecoder};
use crate::sink::{CommitOutcome, DeltaSink, Lake, SinkError, TableSpec};
use crate::source::{self, Positions, ReadLimits, Source, SourceError};
use crate::transform::{ModelOutput, ModelSet, TransformError, BRONZE};
use checkpoint::{BatchPlan, CheckpointError, CommitMarker, LogState, OffsetLog};
use progress::{millis, BatchReport, ProgressLog, StageDurations, TableReport};

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
    Sink(#[from] SinkError),
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error("progress log {target}: {source}")]
    Progress { target: String, source: std::io::Error },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunMode {
    /// A batch every trigger interval (or sooner when a size limit is reached), until stopped.
    Continuous,
    /// Available-now: snapshot the end offsets at start, process up to them, then return.
    Once,
}

/// Totals of one `run`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RunSummary {
    pub batches: u64,
    pub input_rows: usize,
    pub dead_letters: usize,
}

pub struct Pipeline<S: Source> {
    name: String,
    source: S,
    models: ModelSet,
    sink: DeltaSink,
    log: OffsetLog,
    decoder: MessageDecoder,
    progress: ProgressLog,
    dlq_table: String,
    max_records: usize,
    max_bytes: usize,
    trigger_interval: Duration,
    log_retention: u64,
}

impl<S: Source> Pipeline<S> {
    pub fn new(config: &Config, source: S, models: ModelSet) -> Result<Self, PipelineError> {
        let p = &config.pipeline;
        let lake = Lake::new(&config.lake.uri, &config.lake.storage_options)?;
        let (store, root) = lake.object_store()?;
        let progress = ProgressLog::open(&p.progress_log).map_err(|source| PipelineError::Progress {
            target: p.progress_log.clone(),
            source,
        })?;
        Ok(Self {
            name: p.name.clone(),
            source,
            models,
            sink: DeltaSink::new(lake, &p.name),
            log: OffsetLog::new(store, &root, &p.name),
            decoder: MessageDecoder::new(p.max_message_bytes),
            progress,
            dlq_table: config.dlq.table.clone(),
            max_records: p.max_records_per_batch,
            max_bytes: p.max_bytes_per_batch,
            trigger_interval: p.trigger_interval,
            log_retention: p.log_retention_batches,
        })
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
        let (mut next_id, mut positions) = self.resume(&mut summary).await?;
        let until = match mode {
            RunMode::Once => {
                let end = self.source.end_positions().await?;
                let remaining: i64 = end
                    .iter()
                    .map(|(tp, e)| (e - positions.get(tp).copied().unwrap_or(0)).max(0))
                    .sum();
                self.progress.start_bar(remaining as u64);
                Some(end)
            }
            RunMode::Continuous => None,
        };
        while !*stop.borrow() && !until.as_ref().is_some_and(|u| reached(&positions, u)) {
            let limits = ReadLimits {
                max_records: self.max_records,
                max_bytes: self.max_bytes,
                deadline: (mode == RunMode::Continuous).then(|| Instant::now() + self.trigger_interval),
                until: until.clone(),
            };
            let started = Instant::now();
            let read = tokio::select! {
                read = self.source.read_next(&positions, &limits) => read?,
                _ = stop.changed() => break,
            };
            let span: i64 = read.ranges.iter().map(|r| r.end - r.start).sum();
            if span == 0 {
                if mode == RunMode::Once {
                    break; // nothing more can be read below the snapshot
                }
                continue;
            }
            let ranges = with_idle_partitions(read.ranges, &positions);
            let plan = BatchPlan::new(next_id, Utc::now(), self.source.describe(), ranges);
            self.log.write_plan(&plan).await?;
            fault::point("after_plan", plan.batch_id);
            let report = self
                .process(&plan, read.records, started.elapsed(), false)
                .await?;
            summary.add(&report);
            positions = plan.next_positions();
            next_id += 1;
        }
        self.progress.finish();
        Ok(summary)
    }

    /// Reads the log: re-runs a batch left pending by a crash, and returns the next batch id
    /// and the positions it starts from.
    async fn resume(&mut self, summary: &mut RunSummary) -> Result<(u64, Positions), PipelineError> {
        let plan = match self.log.state().await? {
            LogState::Fresh => return Ok((0, self.source.initial_positions().await?)),
            LogState::Committed(plan) => plan,
            LogState::Pending(plan) => {
                tracing::warn!(
                    "batch {} was planned but not committed: re-running it with the same offsets",
                    plan.batch_id
                );
                let started = Instant::now();
                let records = self.source.read_ranges(&plan.ranges).await?;
                let report = self.process(&plan, records, started.elapsed(), true).await?;
                summary.add(&report);
                plan
            }
        };
        let mut positions = self.source.initial_positions().await?;
        positions.extend(plan.next_positions());
        Ok((plan.batch_id + 1, positions))
    }

    /// Decodes, transforms and commits one planned batch, then marks it committed.
    async fn process(
        &mut self,
        plan: &BatchPlan,
        records: RecordBatch,
        read_time: Duration,
        rerun: bool,
    ) -> Result<BatchReport, PipelineError> {
        let started = Instant::now() - read_time;
        let input_rows = records.num_rows();
        let input_bytes = source::value_bytes(&records);
        let ctx = BatchContext {
            batch_id: plan.batch_id,
            planned_at_micros: plan.planned_at_micros(),
        };

        let stage = Instant::now();
        let decoded = self.decoder.decode(&records, ctx)?;
        drop(records);
        let decode_time = stage.elapsed();
        fault::point("after_decode", plan.batch_id);

        let stage = Instant::now();
        let outputs = self.models.run(decoded.bronze.clone()).await?;
        let transform_time = stage.elapsed();

        let stage = Instant::now();
        let dead_letters = decoded.dead_letters.num_rows();
        let writes = table_writes(&self.models, decoded, outputs, &self.dlq_table);
        let mut tables = BTreeMap::new();
        for (spec, schema, batches) in writes {
            let rows = batches.iter().map(RecordBatch::num_rows).sum();
            let outcome = self.sink.commit(&spec, schema, batches, plan.batch_id).await?;
            fault::point(&format!("after_commit:{}", spec.name), plan.batch_id);
            tables.insert(spec.name, table_report(rows, outcome));
        }
        let write_time = stage.elapsed();

        fault::point("before_marker", plan.batch_id);
        let marker = CommitMarker {
            batch_id: plan.batch_id,
            committed_at: Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
            rows: tables.iter().map(|(name, t)| (name.clone(), t.rows)).collect(),
        };
        self.log.write_commit(&marker).await?;
        if plan.batch_id % 10 == 0 && plan.batch_id > self.log_retention {
            self.log.purge_before(plan.batch_id - self.log_retention).await?;
        }

        let total = started.elapsed();
        let report = BatchReport {
            pipeline: self.name.clone(),
            batch_id: plan.batch_id,
            rerun,
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
            rows_per_sec: input_rows as f64 / total.as_secs_f64().max(1e-9),
            mb_per_sec: input_bytes as f64 / 1e6 / total.as_secs_f64().max(1e-9),
        };
        self.progress.report(&report);
        Ok(report)
    }
}

/// What one batch writes, in commit order: bronze, the dead letters, then each model.
pub fn table_writes(
    models: &ModelSet,
    decoded: Decoded,
    outputs: Vec<ModelOutput>,
    dlq_table: &str,
) -> Vec<(TableSpec, SchemaRef, Vec<RecordBatch>)> {
    let mut writes = vec![
        (
            TableSpec::append(BRONZE, &[INGEST_PARTITION]),
            decoded.bronze.schema(),
            vec![decoded.bronze],
        ),
        (
            TableSpec::append(dlq_table, &[INGEST_PARTITION]),
            dead_letter_schema(),
            vec![decoded.dead_letters],
        ),
    ];
    for (model, output) in models.models().iter().zip(outputs) {
        let spec = TableSpec {
            name: model.name.clone(),
            materialization: model.materialization.clone(),
            partition_by: model.partition_by.clone(),
        };
        writes.push((spec, output.schema, output.batches));
    }
    writes
}

impl RunSummary {
    fn add(&mut self, report: &BatchReport) {
        self.batches += 1;
        self.input_rows += report.input_rows;
        self.dead_letters += report.dead_letters;
    }
}

fn table_report(rows: usize, outcome: CommitOutcome) -> TableReport {
    let (outcome, version) = match outcome {
        CommitOutcome::Committed { version } => ("committed", Some(version)),
        CommitOutcome::AlreadyCommitted => ("already_committed", None),
        CommitOutcome::Empty => ("empty", None),
    };
    TableReport {
        rows,
        outcome,
        version,
    }
}

/// True when every partition of the snapshot has been read up to its end.
fn reached(positions: &Positions, until: &Positions) -> bool {
    until
        .iter()
        .all(|(tp, end)| positions.get(tp).is_some_and(|p| p >= end))
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
    ranges.sort_by(|a, b| a.topic_partition().cmp(&b.topic_partition()));
    ranges
}
