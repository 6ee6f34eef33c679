//! `insert_new` models: a row whose key the model's table already holds is not inserted again.
//!
//! The check runs right after the model's SQL, before its output is written or read by the
//! models downstream, so they see only the rows actually inserted and a post delivered twice
//! counts once in gold. It is an anti-join of the batch against the table's keys, read with
//! filters the Delta scan prunes files by: the window's partitions, the batch's key range.
//! Rows of the batch being run are not counted as held: a re-run of a batch whose first attempt
//! committed this table finds the same new rows as that attempt did.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::NaiveDate;
use deltalake::arrow::array::RecordBatch;
use deltalake::arrow::datatypes::SchemaRef;
use deltalake::datafusion::catalog::TableProvider;
use deltalake::datafusion::common::{Column, JoinType, ScalarValue};
use deltalake::datafusion::datasource::MemTable;
use deltalake::datafusion::error::DataFusionError;
use deltalake::datafusion::functions_aggregate::expr_fn::{max, min};
use deltalake::datafusion::logical_expr::{binary_expr, lit, Expr, Operator};
use deltalake::datafusion::prelude::{DataFrame, SessionContext};
use futures::future::BoxFuture;

use super::model::DedupWindow;

/// The column of an `insert_new` model that names the batch that wrote each row.
pub const BATCH_ID_COLUMN: &str = "batch_id";

/// The tables as the lake holds them, for the check of `insert_new` models.
pub trait StoredTables: Send + Sync {
    /// Table `name`, readable in `ctx`; `None` while it has no commit yet.
    fn table<'a>(
        &'a self,
        ctx: &'a SessionContext,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<Arc<dyn TableProvider>>, DataFusionError>>;
}

/// No table holds anything yet: every row is new (`tweetlake bench --decode`, which runs the
/// models without a lake).
pub struct NothingStored;

impl StoredTables for NothingStored {
    fn table<'a>(
        &'a self,
        _: &'a SessionContext,
        _: &'a str,
    ) -> BoxFuture<'a, Result<Option<Arc<dyn TableProvider>>, DataFusionError>> {
        Box::pin(async { Ok(None) })
    }
}

/// The batch the models run over, as far as an `insert_new` check needs it.
pub struct ModelBatch<'a> {
    pub id: i64,
    /// The day the batch was planned: the window ends there, so a re-run checks the same days.
    pub planned_on: NaiveDate,
    pub stored: &'a dyn StoredTables,
}

/// What one `insert_new` check did.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Dedup {
    /// Rows of the batch whose key the table already held: not inserted.
    pub duplicates: usize,
    pub elapsed: Duration,
}

/// The rows of `partitions` whose `keys` table `name` does not hold yet (within `window`).
pub(crate) async fn keep_new(
    ctx: &SessionContext,
    name: &str,
    keys: &[String],
    window: Option<&DedupWindow>,
    batch: &ModelBatch<'_>,
    (schema, partitions): (SchemaRef, Vec<Vec<RecordBatch>>),
) -> Result<(Vec<Vec<RecordBatch>>, Dedup), DataFusionError> {
    let started = Instant::now();
    let rows = row_count(&partitions);
    let stored = match rows {
        0 => None,
        _ => batch.stored.table(ctx, name).await?,
    };
    let Some(stored) = stored else {
        return Ok((partitions, Dedup::default()));
    };
    let output = ctx.read_table(Arc::new(MemTable::try_new(schema, partitions)?))?;
    let held = ctx
        .read_table(stored)?
        .filter(held_filter(&output, keys, window, batch).await?)?
        .select(keys.iter().map(|k| column(None, k)))?
        .alias("held")?;
    let on = keys
        .iter()
        .map(|k| column(Some("batch"), k).eq(column(Some("held"), k)));
    let new = output
        .alias("batch")?
        .join_on(held, JoinType::LeftAnti, on)?
        .collect_partitioned()
        .await?;
    let dedup = Dedup {
        duplicates: rows - row_count(&new),
        elapsed: started.elapsed(),
    };
    Ok((new, dedup))
}

/// Which stored rows can hold a key of the batch: not this batch's own, inside the window,
/// and inside the batch's range of each key and of the window column. The Delta scan skips
/// the files (by partition values and min/max statistics) that cannot match.
async fn held_filter(
    output: &DataFrame,
    keys: &[String],
    window: Option<&DedupWindow>,
    batch: &ModelBatch<'_>,
) -> Result<Expr, DataFusionError> {
    let mut filter = binary_expr(
        column(None, BATCH_ID_COLUMN),
        Operator::IsDistinctFrom,
        lit(batch.id),
    );
    let ranged: Vec<&str> = keys
        .iter()
        .map(String::as_str)
        .chain(window.map(|w| w.column.as_str()))
        .filter(|name| {
            let field = output.schema().field_with_unqualified_name(name);
            field.is_ok_and(|f| !f.data_type().is_nested())
        })
        .collect();
    for (name, (low, high)) in ranged.iter().zip(ranges(output, &ranged).await?) {
        if let (Some(window), ScalarValue::Date32(Some(newest))) = (window, &high) {
            if window.column == *name {
                let first_day = window_start(*newest, batch.planned_on, window.days);
                filter = filter.and(column(None, name).gt_eq(lit(ScalarValue::Date32(Some(first_day)))));
            }
        }
        if !low.is_null() && !high.is_null() {
            filter = filter.and(column(None, name).between(lit(low), lit(high)));
        }
    }
    Ok(filter)
}

/// The first day (as a `Date32`) of a window of `days` ending at the batch's newest day, or at
/// the day the batch was planned if a row claims a later one: a replay of old posts checks
/// their own days, and a post dated in the future cannot move a live window past today.
fn window_start(newest: i32, planned_on: NaiveDate, days: u32) -> i32 {
    newest.min(days_since_epoch(planned_on)) - days as i32
}

/// The minimum and maximum of each of `columns` over the batch, in one pass.
async fn ranges(
    output: &DataFrame,
    columns: &[&str],
) -> Result<Vec<(ScalarValue, ScalarValue)>, DataFusionError> {
    if columns.is_empty() {
        return Ok(Vec::new());
    }
    let aggregates = columns
        .iter()
        .flat_map(|name| [min(column(None, name)), max(column(None, name))])
        .collect();
    let row = output.clone().aggregate(vec![], aggregates)?.collect().await?;
    let row = row.first().filter(|b| b.num_rows() == 1);
    let row = row.ok_or_else(|| DataFusionError::Internal("a global aggregate returns one row".into()))?;
    (0..columns.len())
        .map(|i| {
            let low = ScalarValue::try_from_array(row.column(2 * i), 0)?;
            let high = ScalarValue::try_from_array(row.column(2 * i + 1), 0)?;
            Ok((low, high))
        })
        .collect()
}

/// A column by its exact name (no case folding), of `relation` when given.
fn column(relation: Option<&str>, name: &str) -> Expr {
    Expr::Column(Column::new(relation, name))
}

fn row_count(partitions: &[Vec<RecordBatch>]) -> usize {
    partitions.iter().flatten().map(RecordBatch::num_rows).sum()
}

/// Arrow's `Date32`: days since 1970-01-01.
fn days_since_epoch(day: NaiveDate) -> i32 {
    (day - chrono::DateTime::UNIX_EPOCH.date_naive()).num_days() as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_ends_at_the_newest_day_but_never_after_the_batch_day() {
        let day = |d: &str| days_since_epoch(d.parse().unwrap());
        let planned_on = "2026-12-02".parse().unwrap();
        assert_eq!(window_start(day("2026-12-02"), planned_on, 2), day("2026-11-30"));
        assert_eq!(window_start(day("2026-11-21"), planned_on, 2), day("2026-11-19"));
        assert_eq!(window_start(day("2031-01-01"), planned_on, 2), day("2026-11-30"));
        assert_eq!(window_start(day("2026-12-02"), planned_on, 0), day("2026-12-02"));
    }
}
