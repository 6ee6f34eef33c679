//! The analysts' SQL models, run in DataFusion over one micro-batch at a time.
//!
//! Each model sees only the current batch of its inputs (streaming semantics): `bronze` is the
//! decoded batch, and a model's name refers to that model's output for this batch.

pub mod dag;
pub mod dedup;
pub mod functions;
pub mod model;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use deltalake::arrow::array::RecordBatch;
use deltalake::arrow::datatypes::{DataType, SchemaRef};
use deltalake::datafusion::catalog::MemorySchemaProvider;
use deltalake::datafusion::common::TableReference;
use deltalake::datafusion::datasource::MemTable;
use deltalake::datafusion::error::DataFusionError;
use deltalake::datafusion::prelude::{SessionConfig, SessionContext};
use deltalake::datafusion::sql::parser::DFParser;
use deltalake::datafusion::sql::resolve::resolve_table_references;
use deltalake::datafusion::sql::sqlparser::dialect::GenericDialect;

use dedup::{Dedup, ModelBatch, NothingStored, BATCH_ID_COLUMN};
use functions::{CompanyMap, CompanyMapError};
pub use model::{DedupWindow, Materialization, Model, ZOrder};

/// The built-in input: the current micro-batch, decoded.
pub const BRONZE: &str = "bronze";

/// The company list `company_of` reads, next to the models (`sql/companies.csv`).
pub const COMPANIES_FILE: &str = "companies.csv";

/// The directory next to the models holding `tweetlake test`'s files: never models.
pub const TESTS_DIR: &str = "tests";

#[derive(Debug, thiserror::Error)]
pub enum TransformError {
    #[error(
        "cannot read SQL models from {path}: {source} (run `tweetlake init` to write the default models)"
    )]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{origin}: a model is `<name>.sql` or `<schema>/<name>.sql` with letters, digits and '_' only")]
    Layout { origin: String },
    #[error("{origin}: `{name}` is reserved for tweetlake's own table; rename the file")]
    Reserved { origin: String, name: String },
    #[error("{origin}:{line}: {message}")]
    Directive {
        origin: String,
        line: usize,
        message: String,
    },
    #[error("{origin}: {message}")]
    Parse { origin: String, message: String },
    #[error("{origin}:{line}: unknown table `{table}` (known: {known})")]
    UnknownTable {
        origin: String,
        line: usize,
        table: String,
        known: String,
    },
    #[error("{origin}:{line}: models depend on each other in a cycle: {chain}")]
    Cycle {
        origin: String,
        line: usize,
        chain: String,
    },
    #[error("{origin}: {source}")]
    Sql { origin: String, source: DataFusionError },
    /// Reading the keys an `insert_new` model's table holds failed (the store, mostly).
    #[error("{origin}: checking which rows {table} already holds: {source}")]
    Stored {
        origin: String,
        table: String,
        source: DataFusionError,
    },
    #[error("no SQL models found in {path}: add a .sql file (see `tweetlake init`)")]
    Empty { path: PathBuf },
    #[error(transparent)]
    Companies(#[from] CompanyMapError),
}

impl TransformError {
    /// Errors that may go away by themselves: reading the lake for an `insert_new` check (the
    /// models' SQL was planned at start, so what fails there is the store).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::Stored { source, .. } if matches!(
                source.find_root(),
                DataFusionError::ObjectStore(_) | DataFusionError::IoError(_) | DataFusionError::External(_)
            )
        )
    }
}

/// All models of a pipeline, in dependency order, and the company list their functions use.
#[derive(Debug, Clone)]
pub struct ModelSet {
    models: Vec<Model>,
    companies: CompanyMap,
}

/// One model's rows for the current batch.
pub struct ModelOutput {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
    /// What an `insert_new` model's check left out (`None` for other models).
    pub dedup: Option<Dedup>,
}

impl ModelOutput {
    pub fn num_rows(&self) -> usize {
        self.batches.iter().map(RecordBatch::num_rows).sum()
    }
}

impl ModelSet {
    /// Loads every `.sql` file under `dir` (one level of schema directories, `tests/` excluded)
    /// and `dir/companies.csv` when present (else `company_of` knows no company).
    pub fn load_dir(dir: &Path, reserved: &[&str]) -> Result<Self, TransformError> {
        let read_error = |path: &Path, source| TransformError::Read {
            path: path.to_path_buf(),
            source,
        };
        let mut files = Vec::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(current) = stack.pop() {
            for entry in std::fs::read_dir(&current).map_err(|e| read_error(&current, e))? {
                let path = entry.map_err(|e| read_error(&current, e))?.path();
                if path.is_dir() {
                    if path.file_name().is_some_and(|n| n != TESTS_DIR) {
                        stack.push(path);
                    }
                } else if path.extension().is_some_and(|e| e == "sql") {
                    let sql = std::fs::read_to_string(&path).map_err(|e| read_error(&path, e))?;
                    let relative = path.strip_prefix(dir).expect("under dir").to_path_buf();
                    files.push((relative, path.display().to_string(), sql));
                }
            }
        }
        if files.is_empty() {
            return Err(TransformError::Empty {
                path: dir.to_path_buf(),
            });
        }
        let companies = dir.join(COMPANIES_FILE);
        let companies = match companies.exists() {
            true => CompanyMap::load(&companies)?,
            false => CompanyMap::default(),
        };
        Self::from_sources(files, companies, reserved)
    }

    /// Builds the set from `(path relative to the sql dir, origin for messages, SQL)`.
    pub fn from_sources(
        files: Vec<(PathBuf, String, String)>,
        companies: CompanyMap,
        reserved: &[&str],
    ) -> Result<Self, TransformError> {
        let mut models = Vec::with_capacity(files.len());
        for (relative, origin, sql) in files {
            let name = model::table_name_for(&relative, &origin)?;
            if name == BRONZE || reserved.contains(&name.as_str()) {
                return Err(TransformError::Reserved { origin, name });
            }
            let mut model = Model::new(name, origin, sql)?;
            model.inputs = table_references(&model)?;
            models.push(model);
        }
        Ok(Self {
            models: dag::order(models, &[BRONZE])?,
            companies,
        })
    }

    pub fn models(&self) -> &[Model] {
        &self.models
    }

    /// The tables of the `insert_new` models: the ones their checks read before each batch.
    pub fn insert_new_tables(&self) -> Vec<&str> {
        let models = self.models.iter();
        models
            .filter(|m| matches!(m.materialization, Materialization::InsertNew { .. }))
            .map(|m| m.name.as_str())
            .collect()
    }

    /// The company list the models' `company_of` reads.
    pub fn companies(&self) -> &CompanyMap {
        &self.companies
    }

    /// Runs every model over one decoded batch, with no table holding anything yet; outputs
    /// are in model order. See [`Self::run_each`].
    pub async fn run(&self, bronze: Vec<RecordBatch>) -> Result<Vec<ModelOutput>, TransformError> {
        let mut outputs = Vec::with_capacity(self.models.len());
        let batch = ModelBatch {
            id: 0,
            planned_on: chrono::Utc::now().date_naive(),
            stored: &NothingStored,
        };
        self.run_each(bronze, &batch, |_, output| outputs.push(output))
            .await?;
        Ok(outputs)
    }

    /// Runs every model over one decoded batch, in model order, handing each output to
    /// `on_output` as soon as it is computed (so it can be written while the next model runs).
    /// The batch is cut into one partition per core, and each model's output keeps its
    /// partitions, so every model (and its functions) runs on all cores. An `insert_new`
    /// model's output is checked against `batch.stored` first: what follows sees only its new rows.
    pub async fn run_each(
        &self,
        bronze: Vec<RecordBatch>,
        batch: &ModelBatch<'_>,
        mut on_output: impl FnMut(&Model, ModelOutput),
    ) -> Result<(), TransformError> {
        let ctx = session(&self.companies);
        let schema = bronze
            .first()
            .map_or_else(crate::decode::bronze_schema, RecordBatch::schema);
        let partitions = partition(&bronze, ctx.copied_config().target_partitions());
        register(&ctx, BRONZE, schema, partitions, "<bronze>")?;
        for model in &self.models {
            let sql_error = |source| sql_error(model, source);
            let frame = ctx.sql(&model.sql).await.map_err(sql_error)?;
            let planned: SchemaRef = Arc::new(frame.schema().as_arrow().clone());
            let partitions = frame.collect_partitioned().await.map_err(sql_error)?;
            // Execution may refine nullability: the batches' own schema is the one that fits them.
            let schema = partitions
                .iter()
                .flatten()
                .next()
                .map_or(planned, RecordBatch::schema);
            let (partitions, dedup) = match &model.materialization {
                Materialization::InsertNew { keys, window } => {
                    let output = (schema.clone(), partitions);
                    let checked = dedup::keep_new(&ctx, &model.name, keys, window.as_ref(), batch, output);
                    let (partitions, dedup) = checked.await.map_err(|source| TransformError::Stored {
                        origin: model.origin.clone(),
                        table: model.name.clone(),
                        source,
                    })?;
                    // An anti-join emits its rows from one partition: cut them again so the
                    // models downstream still run on every core.
                    let rows: Vec<RecordBatch> = partitions.into_iter().flatten().collect();
                    (
                        partition(&rows, ctx.copied_config().target_partitions()),
                        Some(dedup),
                    )
                }
                _ => (partitions, None),
            };
            register(
                &ctx,
                &model.name,
                schema.clone(),
                partitions.clone(),
                &model.origin,
            )?;
            let batches = partitions.into_iter().flatten().collect();
            on_output(
                model,
                ModelOutput {
                    schema,
                    batches,
                    dedup,
                },
            );
        }
        Ok(())
    }

    /// Plans every model against an empty input of `bronze_schema`: type-checks the SQL and
    /// returns each model's output schema without reading any data.
    pub async fn plan(&self, bronze_schema: SchemaRef) -> Result<Vec<SchemaRef>, TransformError> {
        let ctx = session(&self.companies);
        register(&ctx, BRONZE, bronze_schema, vec![vec![]], "<bronze>")?;
        let mut schemas = Vec::with_capacity(self.models.len());
        for model in &self.models {
            let frame = ctx
                .sql(&model.sql)
                .await
                .map_err(|source| sql_error(model, source))?;
            let schema: SchemaRef = Arc::new(frame.schema().as_arrow().clone());
            check_zorder(model, &schema)?;
            check_insert_new(model, &schema)?;
            register(&ctx, &model.name, schema.clone(), vec![vec![]], &model.origin)?;
            schemas.push(schema);
        }
        Ok(schemas)
    }
}

/// A model's `@zorder` columns must be columns of its output, and not partition columns (a
/// partition holds one value of those already).
fn check_zorder(model: &Model, schema: &SchemaRef) -> Result<(), TransformError> {
    let Some(zorder) = &model.zorder else {
        return Ok(());
    };
    for column in &zorder.columns {
        let message = if model.partition_by.contains(column) {
            format!("@zorder column `{column}` is a partition column: order by the others")
        } else if schema.column_with_name(column).is_none() {
            let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
            format!(
                "@zorder column `{column}` is not a column of {} (columns: {})",
                model.name,
                names.join(", ")
            )
        } else {
            continue;
        };
        return Err(TransformError::Directive {
            origin: model.origin.clone(),
            line: zorder.line,
            message,
        });
    }
    Ok(())
}

/// An `insert_new` model's keys and window column must be columns of its output, and so must
/// `batch_id`, which tells a re-run batch's own rows apart from those it must not insert again;
/// the window column is a date.
fn check_insert_new(model: &Model, schema: &SchemaRef) -> Result<(), TransformError> {
    let Materialization::InsertNew { keys, window } = &model.materialization else {
        return Ok(());
    };
    let directive_error = |key: &str, message: String| {
        let directives = model::directives(&model.sql, &model.origin)?;
        let line = directives.iter().find(|(_, k, _)| k == key);
        Err(TransformError::Directive {
            origin: model.origin.clone(),
            line: line.map_or(1, |(line, _, _)| *line),
            message,
        })
    };
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    let missing = |column: &str| {
        format!(
            "`{column}` is not a column of {} (columns: {})",
            model.name,
            names.join(", ")
        )
    };
    if let Some(key) = keys.iter().find(|k| schema.column_with_name(k).is_none()) {
        return directive_error("unique_key", missing(key));
    }
    if schema.column_with_name(BATCH_ID_COLUMN).is_none() {
        let why =
            "insert_new tells a re-run batch's own rows by it: select `_batch_id AS batch_id` from bronze";
        return directive_error("materialized", format!("{}; {why}", missing(BATCH_ID_COLUMN)));
    }
    let Some(window) = window else {
        return Ok(());
    };
    match schema.column_with_name(&window.column) {
        None => directive_error("dedup_window", missing(&window.column)),
        Some((_, field)) if field.data_type() != &DataType::Date32 => directive_error(
            "dedup_window",
            format!(
                "`{}` is {}: the window column is a date (CAST(... AS DATE))",
                window.column,
                field.data_type()
            ),
        ),
        Some(_) => Ok(()),
    }
}

/// A DataFusion session as the models see it: the tweet functions registered (`company_of`
/// reading `companies`), identifiers case-insensitive as in most SQL engines, and source
/// positions kept so errors can name the line. The pipeline, `tweetlake test` and the REPL
/// all query through this.
pub fn session(companies: &CompanyMap) -> SessionContext {
    let mut config = SessionConfig::new()
        .with_information_schema(true)
        .with_target_partitions(std::thread::available_parallelism().map_or(2, |n| n.get()));
    config.options_mut().sql_parser.collect_spans = true;
    let ctx = SessionContext::new_with_config(config);
    functions::register_all(&ctx, companies);
    ctx
}

/// A model's SQL error, at `file:line` when the line is known: the position DataFusion
/// recorded, else the first line naming something the message quotes (a function, say).
fn sql_error(model: &Model, source: DataFusionError) -> TransformError {
    let recorded = source
        .diagnostic()
        .and_then(|d| d.span)
        .map(|span| span.start.line as usize)
        .filter(|&line| line > 0);
    let line = recorded.or_else(|| quoted_names(&source.to_string()).find_map(|n| model.find_line(n)));
    TransformError::Sql {
        origin: match line {
            Some(line) => format!("{}:{line}", model.origin),
            None => model.origin.clone(),
        },
        source,
    }
}

/// The names an error message quotes, in order: `'name'`, `"name"` or `` `name` ``.
fn quoted_names(message: &str) -> impl Iterator<Item = &str> {
    message
        .split(['\'', '"', '`'])
        .skip(1)
        .step_by(2)
        .filter(|name| !name.is_empty())
}

/// Registers `partitions` as table `name` (dotted names create their schema on first use).
pub(crate) fn register(
    ctx: &SessionContext,
    name: &str,
    schema: SchemaRef,
    partitions: Vec<Vec<RecordBatch>>,
    origin: &str,
) -> Result<(), TransformError> {
    let sql_error = |source| TransformError::Sql {
        origin: origin.to_string(),
        source,
    };
    let reference = table_reference(ctx, name).map_err(sql_error)?;
    let table = MemTable::try_new(schema, partitions).map_err(sql_error)?;
    ctx.register_table(reference, Arc::new(table))
        .map_err(sql_error)?;
    Ok(())
}

/// Rows per batch inside a partition: DataFusion's own batch size, so operators work on
/// cache-sized pieces.
const ROWS_PER_SLICE: usize = 8192;

/// Cuts `batches` into `count` partitions of contiguous, zero-copy slices.
fn partition(batches: &[RecordBatch], count: usize) -> Vec<Vec<RecordBatch>> {
    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
    let per_partition = rows.div_ceil(count.max(1)).max(1);
    let mut partitions = vec![Vec::new()];
    let mut filled = 0;
    for batch in batches {
        let mut offset = 0;
        while offset < batch.num_rows() {
            if filled == per_partition {
                partitions.push(Vec::new());
                filled = 0;
            }
            let length = (batch.num_rows() - offset)
                .min(ROWS_PER_SLICE)
                .min(per_partition - filled);
            partitions
                .last_mut()
                .expect("one partition at least")
                .push(batch.slice(offset, length));
            offset += length;
            filled += length;
        }
    }
    partitions
}

/// The DataFusion reference of a dotted table name, creating its schema on first use.
pub fn table_reference(ctx: &SessionContext, name: &str) -> Result<TableReference, DataFusionError> {
    let reference = TableReference::parse_str(name);
    if let Some(schema_name) = reference.schema() {
        ensure_schema(ctx, schema_name)?;
    }
    Ok(reference)
}

/// Creates schema `name` in the default catalog unless it exists.
pub fn ensure_schema(ctx: &SessionContext, name: &str) -> Result<(), DataFusionError> {
    let catalog = ctx.catalog("datafusion").expect("the default catalog exists");
    if catalog.schema(name).is_none() {
        catalog.register_schema(name, Arc::new(MemorySchemaProvider::new()))?;
    }
    Ok(())
}

/// The dotted names of the tables a model reads (CTE names excluded).
fn table_references(model: &Model) -> Result<Vec<String>, TransformError> {
    let parse_error = |message: String| TransformError::Parse {
        origin: model.origin.clone(),
        message,
    };
    let statements = DFParser::parse_sql_with_dialect(&model.sql, &GenericDialect {}).map_err(|e| {
        let message = e.to_string();
        match parser_position(&message) {
            Some((line, column)) => TransformError::Parse {
                origin: format!("{}:{line}:{column}", model.origin),
                message,
            },
            None => parse_error(message),
        }
    })?;
    if statements.len() != 1 {
        return Err(parse_error(format!(
            "a model holds exactly one SELECT statement, found {}",
            statements.len()
        )));
    }
    let (tables, _ctes) =
        resolve_table_references(&statements[0], true).map_err(|e| parse_error(e.to_string()))?;
    let mut names: Vec<String> = tables.iter().map(dotted_name).collect();
    names.sort();
    names.dedup();
    Ok(names)
}

/// The `Line: L, Column: C` that sqlparser puts in its messages.
fn parser_position(message: &str) -> Option<(usize, usize)> {
    let rest = &message[message.find("Line: ")? + 6..];
    let (line, rest) = rest.split_once(", Column: ")?;
    let column: String = rest.chars().take_while(char::is_ascii_digit).collect();
    Some((line.parse().ok()?, column.parse().ok()?))
}

/// `schema.table`, or `table` for a bare reference (the catalog part is dropped).
pub fn dotted_name(reference: &TableReference) -> String {
    match reference.schema() {
        Some(schema) => format!("{schema}.{}", reference.table()),
        None => reference.table().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use deltalake::arrow::array::{AsArray, Int64Array};
    use deltalake::arrow::datatypes::{DataType, Field, Int64Type, Schema};

    fn numbers(range: std::ops::Range<i64>) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)]));
        RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from_iter_values(range))]).unwrap()
    }

    fn values(batches: &[RecordBatch]) -> Vec<i64> {
        batches
            .iter()
            .flat_map(|b| b.column(0).as_primitive::<Int64Type>().values().to_vec())
            .collect()
    }

    #[test]
    fn partitions_are_even_contiguous_slices_in_order() {
        let input = [numbers(0..20_000), numbers(20_000..25_001)];
        let partitions = partition(&input, 2);
        assert_eq!(partitions.len(), 2);
        let sizes: Vec<usize> = partitions
            .iter()
            .map(|p| p.iter().map(RecordBatch::num_rows).sum())
            .collect();
        assert_eq!(sizes, [12_501, 12_500]);
        assert!(partitions
            .iter()
            .flatten()
            .all(|b| b.num_rows() <= ROWS_PER_SLICE));
        let joined: Vec<i64> = partitions.iter().flat_map(|p| values(p)).collect();
        assert_eq!(joined, (0..25_001).collect::<Vec<_>>());
    }

    #[test]
    fn an_empty_input_is_one_empty_partition() {
        let partitions = partition(&[numbers(0..0)], 4);
        assert_eq!(partitions.len(), 1);
        assert!(partitions[0].iter().all(|b| b.num_rows() == 0));
    }
}
