//! Runs one planned statement to completion under the limits: cancelling it, the time limit or
//! the bytes-scanned limit stops it (dropping DataFusion's stream, which aborts its tasks), and
//! a memory pool of its own bounds what it holds. The statistics Athena prints come back with
//! the rows.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use deltalake::arrow::array::RecordBatch;
use deltalake::arrow::datatypes::SchemaRef;
use deltalake::datafusion::execution::memory_pool::GreedyMemoryPool;
use deltalake::datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use deltalake::datafusion::logical_expr::LogicalPlan;
use deltalake::datafusion::physical_plan::{collect, ExecutionPlan};
use deltalake::datafusion::prelude::SessionContext;

use super::{Limits, QueryError};
use crate::settings::human_bytes;

/// How often the scan metrics are read while a query runs.
const TICK: Duration = Duration::from_millis(50);

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

/// Told how a running query goes, every tick: time so far and bytes scanned.
pub trait Progress {
    fn tick(&mut self, elapsed: Duration, scanned: u64);
}

/// No one watches.
impl Progress for () {
    fn tick(&mut self, _elapsed: Duration, _scanned: u64) {}
}

/// Someone watches, or no one.
impl<P: Progress> Progress for Option<P> {
    fn tick(&mut self, elapsed: Duration, scanned: u64) {
        if let Some(progress) = self {
            progress.tick(elapsed, scanned);
        }
    }
}

/// Runs `plan` in `ctx` to completion, unless `cancel`, the time limit or the scan limit stops it.
pub async fn run(
    ctx: &SessionContext,
    plan: LogicalPlan,
    limits: &Limits,
    cancel: impl Future<Output = ()>,
    progress: impl Progress,
) -> Result<Outcome, QueryError> {
    let start = Instant::now();
    let timeout = async {
        match limits.timeout {
            Some(limit) => {
                tokio::time::sleep(limit).await;
                QueryError::Timeout(limit)
            }
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        outcome = run_unbounded(ctx, plan, limits, start, progress) => outcome,
        () = cancel => Err(QueryError::Cancelled),
        error = timeout => Err(error),
    }
}

async fn run_unbounded(
    ctx: &SessionContext,
    plan: LogicalPlan,
    limits: &Limits,
    start: Instant,
    progress: impl Progress,
) -> Result<Outcome, QueryError> {
    let frame = ctx.execute_logical_plan(plan).await?;
    let task = frame.task_ctx();
    let task = match limits.memory {
        Some(bytes) => {
            let shared = task.runtime_env();
            task.with_runtime(own_memory_pool(&shared, bytes))
        }
        None => task,
    };
    let plan = frame.create_physical_plan().await?;
    let batches = tokio::select! {
        result = collect(plan.clone(), Arc::new(task)) => result?,
        error = watch(&plan, limits.max_bytes_scanned, start, progress) => return Err(error),
    };
    let bytes_scanned = bytes_scanned(plan.as_ref());
    check_limit(bytes_scanned, limits.max_bytes_scanned)?;
    Ok(Outcome {
        schema: plan.schema(),
        batches,
        elapsed: start.elapsed(),
        bytes_scanned,
    })
}

/// `shared` with a memory pool of `bytes` for one query alone: a query that needs more fails,
/// and no query can take the memory of the others.
fn own_memory_pool(shared: &RuntimeEnv, bytes: u64) -> Arc<RuntimeEnv> {
    let pool = GreedyMemoryPool::new(usize::try_from(bytes).unwrap_or(usize::MAX));
    Arc::new(
        RuntimeEnvBuilder::from_runtime_env(shared)
            .with_memory_pool(Arc::new(pool))
            .build()
            .expect("a runtime from a working one builds"),
    )
}

/// Returns only when the running plan passes the limit; reports progress every tick.
async fn watch(
    plan: &Arc<dyn ExecutionPlan>,
    limit: u64,
    start: Instant,
    mut progress: impl Progress,
) -> QueryError {
    let mut ticker = tokio::time::interval(TICK);
    loop {
        ticker.tick().await;
        let scanned = bytes_scanned(plan.as_ref());
        if let Err(error) = check_limit(scanned, limit) {
            return error;
        }
        progress.tick(start.elapsed(), scanned);
    }
}

fn check_limit(scanned: u64, limit: u64) -> Result<(), QueryError> {
    match limit > 0 && scanned > limit {
        true => Err(QueryError::ScanLimit {
            scanned: human_bytes(scanned),
            limit: human_bytes(limit),
        }),
        false => Ok(()),
    }
}

/// The `bytes_scanned` metric of every scan in the plan (Parquet reads), summed.
fn bytes_scanned(plan: &dyn ExecutionPlan) -> u64 {
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
