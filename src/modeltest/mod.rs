//! `tweetlake test`: the analysts' tests of their SQL models, dbt-style, without Kafka or S3.
//!
//! Tests live next to the models, in `<sql dir>/tests/`:
//!
//! - `*.toml`, a suite: optional `input` (a JSONL file of stream messages, relative to the
//!   tests directory; default: the bundled sample posts) and `batch_size` (records per
//!   micro-batch; default: the whole input in one batch, smaller values exercise merges);
//!   `[[model]]` tables with `name` and column checks: `not_null = [columns]`,
//!   `unique = ["col" or "col_a, col_b"]`, `accepted_values.<column> = [values]`,
//!   `equals_recompute = true` (a merge model equals its own SELECT over its inputs' whole
//!   tables); and `[[expect]]` tables with `name`, `sql` and `rows`: the query must return
//!   exactly these rows in this order, compared in the columns each row names (numbers by
//!   value, floats within 1e-6; other values by their printed text, `NULL` for null).
//! - `*.sql`, an assertion: one query that must return no rows (the rows it returns are
//!   printed as the failure); `-- @input:` and `-- @batch_size:` as in a suite.
//!
//! Each distinct (input, batch size) is run once through the real pipeline into a temporary
//! local lake (bronze, the dead-letter table, every model), then the checks query its tables
//! in a session with the tweet functions.

mod compare;
mod suite;

use std::path::PathBuf;
use std::sync::Arc;

use deltalake::datafusion::arrow::datatypes::DataType;
use deltalake::datafusion::prelude::SessionContext;
use tempfile::TempDir;
use tokio::sync::watch;

use crate::decode::{bronze_schema, dead_letter_schema};
use crate::dlq::DeadLetters;
use crate::lake::{Lake, LakeError};
use crate::pipeline::{Pipeline, PipelineConfig, PipelineError, RunMode, RunSummary};
use crate::source::FileSource;
use crate::transform::{self, ModelSet, TransformError, BRONZE, TESTS_DIR};
use compare::TextTable;
use suite::{Check, CheckKind, RunKey};

#[derive(Debug, thiserror::Error)]
pub enum ModelTestError {
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{origin}: {message}")]
    Invalid { origin: String, message: String },
    #[error(transparent)]
    Transform(#[from] TransformError),
    #[error("running the models over {input}: {source}")]
    Run { input: String, source: PipelineError },
    #[error("reading the test lake of {input}: {source}")]
    Lake { input: String, source: LakeError },
    #[error("cannot create a temporary lake: {0}")]
    TempDir(std::io::Error),
}

/// Where test files come from.
pub enum TestFiles {
    /// `<sql dir>/tests/` on disk.
    Dir(PathBuf),
    /// Files shipped in the binary, by path under the tests directory (the built-in models').
    Embedded(&'static [(&'static str, &'static [u8])]),
}

impl TestFiles {
    /// The suites and assertions (`*.toml`, `*.sql`) directly in the directory, sorted.
    fn names(&self) -> Result<Vec<String>, ModelTestError> {
        let mut names: Vec<String> = match self {
            Self::Dir(dir) if !dir.exists() => Vec::new(),
            Self::Dir(dir) => std::fs::read_dir(dir)
                .and_then(|entries| {
                    let names = entries.map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()));
                    names.collect::<Result<Vec<_>, _>>()
                })
                .map_err(|source| ModelTestError::Read {
                    path: dir.display().to_string(),
                    source,
                })?,
            Self::Embedded(files) => files.iter().map(|(name, _)| name.to_string()).collect(),
        };
        names.retain(|n| n.ends_with(".toml") || n.ends_with(".sql"));
        names.sort();
        Ok(names)
    }

    fn read(&self, name: &str) -> Result<Vec<u8>, ModelTestError> {
        let missing = |source| ModelTestError::Read {
            path: self.origin(name),
            source,
        };
        match self {
            Self::Dir(dir) => std::fs::read(dir.join(name)).map_err(missing),
            Self::Embedded(files) => files
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, bytes)| bytes.to_vec())
                .ok_or_else(|| missing(std::io::ErrorKind::NotFound.into())),
        }
    }

    /// A file's name for messages.
    fn origin(&self, name: &str) -> String {
        match self {
            Self::Dir(dir) => dir.join(name).display().to_string(),
            Self::Embedded(_) => format!("<built-in>/sql/{TESTS_DIR}/{name}"),
        }
    }
}

/// Stream messages to run the models over.
struct Input {
    name: String,
    bytes: Arc<[u8]>,
}

/// One run of the models over an input.
#[derive(Debug)]
pub struct RunReport {
    pub input: String,
    pub batch_size: Option<usize>,
    pub summary: RunSummary,
}

/// One check's result.
#[derive(Debug)]
pub struct Outcome {
    /// The test file.
    pub origin: String,
    pub name: String,
    /// What went wrong, readable (tables of rows); None when the check passed.
    pub failure: Option<String>,
}

#[derive(Debug, Default)]
pub struct Report {
    pub runs: Vec<RunReport>,
    /// In file order, then in the order each file lists its checks.
    pub outcomes: Vec<Outcome>,
}

impl Report {
    pub fn failed(&self) -> usize {
        self.outcomes.iter().filter(|o| o.failure.is_some()).count()
    }

    pub fn passed(&self) -> usize {
        self.outcomes.len() - self.failed()
    }
}

/// Runs the models over every input the tests name and evaluates every check. Errors are
/// problems with the test files or models (a model that fails to run, say); a check that
/// does not hold, or whose own SQL fails, is a failed outcome.
pub async fn run(models: &ModelSet, dlq_table: &str, files: &TestFiles) -> Result<Report, ModelTestError> {
    let suites = suite::load(files, models, dlq_table)?;
    let mut keys: Vec<RunKey> = suites.iter().map(|s| s.run.clone()).collect();
    keys.sort();
    keys.dedup();
    if keys.is_empty() {
        // No tests: the models still run once over the default input.
        keys.push(RunKey::default());
    }
    let mut report = Report::default();
    let mut outcomes = Vec::new();
    for key in keys {
        let input = key.input(files)?;
        let (lake, summary) = TestLake::run(models, dlq_table, &input, key.batch_size).await?;
        report.runs.push(RunReport {
            input: input.name,
            batch_size: key.batch_size,
            summary,
        });
        for (index, suite) in suites.iter().enumerate().filter(|(_, s)| s.run == key) {
            for check in &suite.checks {
                let outcome = Outcome {
                    origin: suite.origin.clone(),
                    name: check.name.clone(),
                    failure: lake.evaluate(check).await,
                };
                outcomes.push((index, outcome));
            }
        }
    }
    // Stable: checks of one file keep their order.
    outcomes.sort_by_key(|(index, _)| *index);
    report.outcomes = outcomes.into_iter().map(|(_, o)| o).collect();
    Ok(report)
}

/// The lake one run wrote, and a session over its tables.
struct TestLake {
    ctx: SessionContext,
    /// Removed when the checks are done.
    _dir: TempDir,
}

impl TestLake {
    async fn run(
        models: &ModelSet,
        dlq_table: &str,
        input: &Input,
        batch_size: Option<usize>,
    ) -> Result<(Self, RunSummary), ModelTestError> {
        let dir = tempfile::tempdir().map_err(ModelTestError::TempDir)?;
        let defaults = PipelineConfig::default();
        let config = PipelineConfig {
            name: "test".into(),
            progress_log: dir.path().join("progress.ndjson").display().to_string(),
            max_records_per_batch: batch_size.unwrap_or(defaults.max_records_per_batch),
            ..defaults
        };
        let run_error = |source| ModelTestError::Run {
            input: input.name.clone(),
            source,
        };
        let lake_dir = dir.path().join("lake").display().to_string();
        let lake = Lake::new(&lake_dir, &Default::default()).map_err(|e| run_error(e.into()))?;
        let source = FileSource::from_bytes(&input.name, input.bytes.clone());
        let dead_letters = DeadLetters::table_only(dlq_table);
        let mut pipeline =
            Pipeline::new(&config, lake, dead_letters, source, models.clone()).map_err(run_error)?;
        let (_stop, stopped) = watch::channel(false);
        let summary = pipeline.run(RunMode::Once, stopped).await.map_err(run_error)?;
        let ctx = transform::session(models.companies());
        register_tables(&ctx, pipeline.lake(), models, dlq_table, &input.name).await?;
        Ok((Self { ctx, _dir: dir }, summary))
    }

    /// None when the check holds, else what went wrong.
    async fn evaluate(&self, check: &Check) -> Option<String> {
        match &check.kind {
            CheckKind::NoRows { sql } => self.no_rows(sql).await,
            CheckKind::NotNull { table, column } => {
                let key = match self.columns(table).await {
                    Ok(columns) => columns
                        .into_iter()
                        .map(|(name, _)| name)
                        .next()
                        .filter(|c| c != column),
                    Err(failure) => return Some(failure),
                };
                let shown = key.map_or(column.clone(), |key| format!("{key}, {column}"));
                self.no_rows(&format!("SELECT {shown} FROM {table} WHERE {column} IS NULL"))
                    .await
            }
            CheckKind::Rows { sql, rows } => match self.query(sql).await {
                Ok(actual) => compare::diff_rows(&actual, rows),
                Err(failure) => Some(failure),
            },
            CheckKind::EqualsRecompute { table, sql } => match self.recompute_differences(table, sql).await {
                Ok(sql) => self.no_rows(&sql).await,
                Err(failure) => Some(failure),
            },
        }
    }

    async fn query(&self, sql: &str) -> Result<TextTable, String> {
        let frame = self
            .ctx
            .sql(sql)
            .await
            .map_err(|e| format!("query failed: {e}"))?;
        let schema = frame.schema().as_arrow().clone();
        let batches = frame.collect().await.map_err(|e| format!("query failed: {e}"))?;
        TextTable::new(&schema, &batches).map_err(|e| format!("cannot print the result: {e}"))
    }

    async fn no_rows(&self, sql: &str) -> Option<String> {
        match self.query(sql).await {
            Err(failure) => Some(failure),
            Ok(table) if table.rows.is_empty() => None,
            Ok(table) => Some(format!(
                "{} row(s) where none were expected:\n{}",
                table.rows.len(),
                table.render()
            )),
        }
    }

    async fn columns(&self, table: &str) -> Result<Vec<(String, DataType)>, String> {
        let frame = self
            .ctx
            .table(table)
            .await
            .map_err(|e| format!("query failed: {e}"))?;
        let fields = frame.schema().fields().iter();
        Ok(fields
            .map(|f| (f.name().clone(), f.data_type().clone()))
            .collect())
    }

    /// A query for the rows where the stored table and a recompute of its SELECT over the
    /// inputs' whole tables differ, each row tagged `stored` or `recomputed`. Lists compare
    /// sorted, as merges may union them in another order.
    async fn recompute_differences(&self, table: &str, sql: &str) -> Result<String, String> {
        let columns: Vec<String> = self
            .columns(table)
            .await?
            .into_iter()
            .map(|(name, data_type)| match data_type {
                DataType::List(_) | DataType::LargeList(_) => format!("array_sort(\"{name}\") AS \"{name}\""),
                _ => format!("\"{name}\""),
            })
            .collect();
        let columns = columns.join(", ");
        let stored = format!("SELECT {columns} FROM {table}");
        // The newline ends a `--` comment the model may end with.
        let sql = sql.trim_end().trim_end_matches(';');
        let recomputed = format!("SELECT {columns} FROM ({sql}\n)");
        Ok(format!(
            "SELECT 'stored' AS side, * FROM ({stored} EXCEPT ALL {recomputed}) \
             UNION ALL SELECT 'recomputed' AS side, * FROM ({recomputed} EXCEPT ALL {stored})"
        ))
    }
}

/// Registers bronze, the dead-letter table and every model's table in `ctx`. A table the run
/// never created (it had no rows) is registered empty with its planned schema, so checks on
/// it see no rows rather than no table.
async fn register_tables(
    ctx: &SessionContext,
    lake: &Lake,
    models: &ModelSet,
    dlq_table: &str,
    input: &str,
) -> Result<(), ModelTestError> {
    let planned = models.plan(bronze_schema()).await?;
    let mut tables = vec![
        (BRONZE.to_string(), bronze_schema()),
        (dlq_table.to_string(), dead_letter_schema()),
    ];
    tables.extend(models.models().iter().map(|m| m.name.clone()).zip(planned));
    for (name, schema) in tables {
        let registered = lake
            .register_table(ctx, &name)
            .await
            .map_err(|source| ModelTestError::Lake {
                input: input.to_string(),
                source,
            })?;
        if !registered {
            transform::register(ctx, &name, schema, vec![Vec::new()], &name)?;
        }
    }
    Ok(())
}
