//! Runs one planned statement: Ctrl-C cancels it, the bytes-scanned limit stops it, a slow one
//! shows a live progress line, and the statistics Athena prints come back with the rows.

use std::sync::Arc;
use std::time::{Duration, Instant};

use deltalake::arrow::array::RecordBatch;
use deltalake::arrow::datatypes::SchemaRef;
use deltalake::datafusion::dataframe::DataFrame;
use deltalake::datafusion::physical_plan::{collect, ExecutionPlan};
use indicatif::{ProgressBar, ProgressStyle};

use super::ReplError;
use crate::settings::human_bytes;

/// How often the scan metrics are read while a query runs.
const TICK: Duration = Duration::from_millis(50);
/// A query running longer than this shows a progress line (interactive sessions only).
const PROGRESS_AFTER: Duration = Duration::from_millis(500);

pub struct Outcome {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
    pub elapsed: Duration,
    pub bytes_scanned: u64,
}

impl Outcome {
    pub fn rows(&self) -> usize {
        self.batches.iter().map(RecordBatch::num_rows).sum()
    }

    /// `3 rows in 0.042 s, 1.2 MiB scanned`.
    pub fn summary(&self) -> String {
        let rows = self.rows();
        format!(
            "{rows} row{} in {:.3} s, {} scanned",
            if rows == 1 { "" } else { "s" },
            self.elapsed.as_secs_f64(),
            human_bytes(self.bytes_scanned)
        )
    }
}

/// Whether a running query shows a live progress line (for a person at the prompt).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressLine {
    Shown,
    Hidden,
}

/// Runs `frame` to completion, unless Ctrl-C or `max_bytes_scanned` (0: no limit) stops it.
pub async fn run(
    frame: DataFrame,
    max_bytes_scanned: u64,
    progress: ProgressLine,
) -> Result<Outcome, ReplError> {
    let start = Instant::now();
    let task = Arc::new(frame.task_ctx());
    let plan = frame.create_physical_plan().await?;
    let batches = tokio::select! {
        result = collect(plan.clone(), task) => result?,
        _ = tokio::signal::ctrl_c() => return Err(ReplError::Cancelled),
        error = watch(&plan, max_bytes_scanned, (progress == ProgressLine::Shown).then_some(start)) => {
            return Err(error)
        }
    };
    let bytes_scanned = bytes_scanned(plan.as_ref());
    check_limit(bytes_scanned, max_bytes_scanned)?;
    Ok(Outcome {
        schema: plan.schema(),
        batches,
        elapsed: start.elapsed(),
        bytes_scanned,
    })
}

/// Returns only when the running plan passes the limit; shows progress from `progress_since`.
async fn watch(plan: &Arc<dyn ExecutionPlan>, limit: u64, progress_since: Option<Instant>) -> ReplError {
    let mut ticker = tokio::time::interval(TICK);
    let mut spinner: Option<Spinner> = None;
    loop {
        ticker.tick().await;
        let scanned = bytes_scanned(plan.as_ref());
        if let Err(error) = check_limit(scanned, limit) {
            return error;
        }
        if let Some(start) = progress_since.filter(|s| s.elapsed() >= PROGRESS_AFTER) {
            spinner
                .get_or_insert_with(Spinner::new)
                .show(start.elapsed(), scanned);
        }
    }
}

fn check_limit(scanned: u64, limit: u64) -> Result<(), ReplError> {
    match limit > 0 && scanned > limit {
        true => Err(ReplError::ScanLimit {
            scanned: human_bytes(scanned),
            limit: human_bytes(limit),
        }),
        false => Ok(()),
    }
}

/// The `bytes_scanned` metric of every scan in the plan (Parquet reads), summed.
pub fn bytes_scanned(plan: &dyn ExecutionPlan) -> u64 {
    let own = plan
        .metrics()
        .and_then(|m| m.sum_by_name("bytes_scanned"))
        .map_or(0, |v| v.as_usize() as u64);
    own + plan
        .children()
        .into_iter()
        .map(|child| bytes_scanned(child.as_ref()))
        .sum::<u64>()
}

/// The progress line on stderr; cleared when the query ends, however it ends.
struct Spinner(ProgressBar);

impl Spinner {
    fn new() -> Self {
        let bar = ProgressBar::new_spinner();
        bar.set_style(ProgressStyle::with_template("{spinner} {msg}").expect("a valid template"));
        Self(bar)
    }

    fn show(&self, elapsed: Duration, scanned: u64) {
        self.0.set_message(format!(
            "running {:.1} s, {} scanned (Ctrl-C cancels)",
            elapsed.as_secs_f64(),
            human_bytes(scanned)
        ));
        self.0.tick();
    }
}

impl Drop for Spinner {
    fn drop(&mut self) {
        self.0.finish_and_clear();
    }
}
