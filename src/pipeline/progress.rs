//! Per-batch progress: one JSON line for machines (stdout or a log file) and one readable
//! summary line for people (the log), plus a progress bar for `run --once` on a terminal.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::{ErrorKind, IsTerminal, Write};
use std::path::Path;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use crate::source::OffsetRange;

#[derive(Debug, Default, Clone, Serialize)]
pub struct StageDurations {
    pub read_ms: f64,
    pub decode_ms: f64,
    pub transform_ms: f64,
    pub write_ms: f64,
    pub total_ms: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct TableReport {
    pub rows: usize,
    /// `committed`, `already_committed` (a re-run found it written) or `empty`.
    pub outcome: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<i64>,
    /// Time from the start of the batch's writes until this table's commit landed (tables
    /// are written side by side).
    pub write_ms: f64,
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
    /// Records left behind each partition's end after this batch (Kafka only), `topic[partition]`.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub lag: BTreeMap<String, i64>,
    pub rows_per_sec: f64,
    pub mb_per_sec: f64,
}

impl BatchReport {
    pub fn summary(&self) -> String {
        let tables: Vec<String> = self
            .tables
            .iter()
            .map(|(name, t)| match t.outcome {
                "committed" => format!("{name} +{}", t.rows),
                other => format!("{name} {other}"),
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
