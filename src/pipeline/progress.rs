//! Per-batch progress: one JSON line for machines (stdout or a log file) and one readable
//! summary line for people (the log), plus a progress bar for `run --once` on a terminal.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::{ErrorKind, IsTerminal, Write};
use std::path::Path;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use crate::source::{OffsetRange, TopicPartition};
use crate::telemetry::{self, Stage};
use crate::transform::dedup::Dedup;

#[derive(Debug, Default, Clone, Serialize)]
pub struct StageDurations {
    pub read_ms: f64,
    pub decode_ms: f64,
    pub transform_ms: f64,
    pub write_ms: f64,
    pub total_ms: f64,
}

impl StageDurations {
    fn by_stage(&self) -> [(Stage, f64); 5] {
        [
            (Stage::Read, self.read_ms),
            (Stage::Decode, self.decode_ms),
            (Stage::Transform, self.transform_ms),
            (Stage::Write, self.write_ms),
            (Stage::Total, self.total_ms),
        ]
    }
}

/// What a batch did to one table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TableOutcome {
    Committed,
    /// A re-run found the table already holding the batch.
    AlreadyCommitted,
    Empty,
}

#[derive(Debug, Clone, Serialize)]
pub struct TableReport {
    pub rows: usize,
    pub outcome: TableOutcome,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<i64>,
    /// Time from the start of the batch's writes until this table's commit landed (tables
    /// are written side by side).
    pub write_ms: f64,
    /// An `insert_new` table's check: rows it already held, and the time the check took.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dedup: Option<DedupReport>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct DedupReport {
    pub duplicates: usize,
    pub ms: f64,
}

impl From<Dedup> for DedupReport {
    fn from(dedup: Dedup) -> Self {
        Self {
            duplicates: dedup.duplicates,
            ms: millis(dedup.elapsed),
        }
    }
}

impl TableReport {
    /// ` (3 duplicates)` when an `insert_new` check left rows out.
    fn duplicates_note(&self) -> String {
        match self.dedup {
            Some(DedupReport { duplicates, .. }) if duplicates > 0 => format!(" ({duplicates} duplicates)"),
            _ => String::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct BatchReport {
    pub pipeline: String,
    pub batch_id: u64,
    /// True when this batch was planned by an earlier run that did not finish it.
    pub rerun: bool,
    pub input_rows: usize,
    pub input_bytes: usize,
    pub dead_letters: usize,
    pub tables: BTreeMap<String, TableReport>,
    pub durations: StageDurations,
    pub offsets: Vec<OffsetRange>,
    /// Records left behind each partition's end after this batch (Kafka only), written as
    /// `topic[partition]`.
    #[serde(
        skip_serializing_if = "BTreeMap::is_empty",
        serialize_with = "by_partition_name"
    )]
    pub lag: BTreeMap<TopicPartition, i64>,
    pub rows_per_sec: f64,
    pub mb_per_sec: f64,
}

impl BatchReport {
    pub fn summary(&self) -> String {
        let tables: Vec<String> = self
            .tables
            .iter()
            .map(|(name, t)| match t.outcome {
                TableOutcome::Committed => format!("{name} +{}{}", t.rows, t.duplicates_note()),
                TableOutcome::AlreadyCommitted => format!("{name} already_committed"),
                TableOutcome::Empty => format!("{name} empty"),
            })
            .collect();
        format!(
            "batch {}{}: {} records ({} dead letters) -> {} in {:.0} ms ({:.0} records/s)",
            self.batch_id,
            if self.rerun { " (re-run)" } else { "" },
            self.input_rows,
            self.dead_letters,
            tables.join(", "),
            self.durations.total_ms,
            self.rows_per_sec
        )
    }

    /// Adds this batch to the process's metrics; rows committed to `dead_letter_table` count as
    /// dead letters.
    pub fn record_metrics(&self, dead_letter_table: &str) {
        for (table, report) in &self.tables {
            if report.outcome == TableOutcome::Committed {
                telemetry::record_table_commit(table, report.rows);
                if let Some(dedup) = report.dedup {
                    telemetry::record_duplicates(table, dedup.duplicates);
                }
                if table == dead_letter_table {
                    telemetry::record_dead_letters(report.rows);
                }
            }
        }
        for (stage, ms) in self.durations.by_stage() {
            telemetry::record_stage_time(stage, Duration::from_secs_f64(ms / 1000.0));
        }
        for (tp, &records) in &self.lag {
            telemetry::record_consumer_lag(&tp.topic, tp.partition, records);
        }
        telemetry::record_batch_done();
    }
}

/// Lag keys as the progress lines have always written them: `x-posts[0]`.
fn by_partition_name<S: serde::Serializer>(
    lag: &BTreeMap<TopicPartition, i64>,
    out: S,
) -> Result<S::Ok, S::Error> {
    out.collect_map(lag.iter().map(|(tp, records)| (tp.to_string(), records)))
}

pub fn millis(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0 * 100.0).round() / 100.0
}

/// Where JSON progress lines go.
pub struct ProgressLog {
    /// `None` once stdout's reader went away (`tweetlake run | head`): the pipeline goes on.
    out: Option<Box<dyn Write + Send>>,
    bar: Option<ProgressBar>,
}

impl ProgressLog {
    /// `-` is stdout; anything else is a file, appended to.
    pub fn open(target: &str) -> std::io::Result<Self> {
        let out: Box<dyn Write + Send> = if target == "-" {
            Box::new(std::io::stdout())
        } else {
            if let Some(dir) = Path::new(target).parent() {
                std::fs::create_dir_all(dir)?;
            }
            Box::new(OpenOptions::new().create(true).append(true).open(target)?)
        };
        Ok(Self {
            out: Some(out),
            bar: None,
        })
    }

    /// Shows a bar over `total` records when stderr is a terminal.
    pub fn start_bar(&mut self, total: u64) {
        if std::io::stderr().is_terminal() && total > 0 {
            let bar = ProgressBar::new(total);
            bar.set_style(
                ProgressStyle::with_template("{bar:40} {pos}/{len} records  {per_sec}  eta {eta}")
                    .expect("static template"),
            );
            self.bar = Some(bar);
        }
    }

    pub fn report(&mut self, report: &BatchReport) {
        if let Some(out) = &mut self.out {
            let line = serde_json::to_string(report).expect("reports serialize");
            match writeln!(out, "{line}").and_then(|_| out.flush()) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::BrokenPipe => {
                    tracing::info!("stdout was closed: no more progress lines");
                    self.out = None;
                }
                Err(e) => tracing::warn!("cannot write the progress line: {e}"),
            }
        }
        match &self.bar {
            Some(bar) => {
                bar.inc(report.offsets.iter().map(|r| (r.end - r.start) as u64).sum());
                bar.println(report.summary());
            }
            None => tracing::info!("{}", report.summary()),
        }
    }

    pub fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}
