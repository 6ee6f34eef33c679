//! The lake's SQL session, shared by `tweetlake sql` (the REPL) and `tweetlake serve` (the
//! Postgres wire protocol): one place that rewrites time travel, brings the tables a statement
//! reads to their latest version, refuses writes to the lake, and runs a plan under the limits
//! (bytes scanned, time, memory).
//!
//! [`LakeTables`] holds the lake's Delta tables, loaded once and shared; each client (the REPL,
//! or one connection of the server) gets a [`QuerySession`]: its own DataFusion context whose
//! views, temporary tables and settings only it sees, over the shared tables.

mod catalog;
mod execute;
pub mod lexer;
mod overlay;
mod time_travel;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use deltalake::arrow::array::RecordBatch;
use deltalake::arrow::datatypes::SchemaRef;
use deltalake::arrow::error::ArrowError;
use deltalake::datafusion::catalog::{CatalogProviderList, MemoryCatalogProviderList};
use deltalake::datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use deltalake::datafusion::common::TableReference;
use deltalake::datafusion::error::DataFusionError;
use deltalake::datafusion::execution::SessionStateBuilder;
use deltalake::datafusion::logical_expr::{DdlStatement, LogicalPlan};
use deltalake::datafusion::prelude::SessionContext;
use deltalake::datafusion::sql::parser::Statement;
use deltalake::DeltaTableError;
use tokio::sync::Mutex;

use crate::lake::{Lake, LakeError};
use crate::transform;
use crate::transform::functions::CompanyMap;
use catalog::Catalog;
use overlay::ConnectionCatalog;

pub use execute::{Outcome, Progress};
pub use time_travel::TimeTravelError;

/// The catalog every session's tables live in (DataFusion's default).
const CATALOG: &str = "datafusion";
/// The schema of tables named without one (`bronze`, `dlq`).
const DEFAULT_SCHEMA: &str = "public";

#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error(transparent)]
    Lake(Box<LakeError>),
    #[error("{0}")]
    Delta(Box<DeltaTableError>),
    #[error("{0}")]
    Sql(Box<DataFusionError>),
    #[error("{0}")]
    Arrow(#[from] ArrowError),
    #[error("no table `{name}` in the lake (tables: {known})")]
    NoSuchTable { name: String, known: String },
    #[error("time travel: {0}")]
    TimeTravel(#[from] TimeTravelError),
    #[error("{what} is not allowed: the lake is read-only here (the pipeline writes it)")]
    ReadOnly { what: String },
    #[error(
        "query stopped after scanning {scanned}: the limit is {limit} per query (repl.max_bytes_scanned); \
         filter on partition columns or raise the limit"
    )]
    ScanLimit { scanned: String, limit: String },
    #[error("query stopped at the time limit of {} s per query (serve.query_timeout)", .0.as_secs_f64())]
    Timeout(Duration),
    #[error("query cancelled")]
    Cancelled,
}

// The library errors are large: boxed, so every `Result` stays small.
impl From<LakeError> for QueryError {
    fn from(error: LakeError) -> Self {
        Self::Lake(Box::new(error))
    }
}

impl From<DeltaTableError> for QueryError {
    fn from(error: DeltaTableError) -> Self {
        Self::Delta(Box::new(error))
    }
}

impl From<DataFusionError> for QueryError {
    fn from(error: DataFusionError) -> Self {
        Self::Sql(Box::new(error))
    }
}

/// What stops a running query besides cancelling it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Limits {
    /// Parquet bytes a query may read (`0`: no limit).
    pub max_bytes_scanned: u64,
    /// How long a query may run, planning included.
    pub timeout: Option<Duration>,
    /// The memory pool of each query (hash tables, sorts, joins); `None`: unbounded.
    pub memory: Option<u64>,
}

/// The lake's tables, loaded once and shared by every session: found by listing the lake,
/// brought to their latest version before each statement that reads them.
pub struct LakeTables {
    /// Holds the tables (and the time-travel versions) and the runtime every session shares.
    ctx: SessionContext,
    catalog: Mutex<Catalog>,
}

impl LakeTables {
    /// Registers every table of the lake (reading only Delta logs), with the tweet functions
    /// (`company_of` reading `companies`).
    pub async fn open(lake: Lake, companies: &CompanyMap) -> Result<Arc<Self>, QueryError> {
        let ctx = transform::session(companies);
        overlay::make_lake_schemas_replaceable(&ctx)?;
        let catalog = Catalog::open(lake, &ctx).await?;
        Ok(Arc::new(Self {
            ctx,
            catalog: Mutex::new(catalog),
        }))
    }

    /// Table `name` reads as empty, with `schema`, until the lake has it.
    pub async fn expect_table(&self, name: &str, schema: SchemaRef) -> Result<(), QueryError> {
        self.catalog.lock().await.expect(&self.ctx, name, schema)
    }

    pub async fn lake_uri(&self) -> String {
        self.catalog.lock().await.lake().root().to_string()
    }

    /// Every table's dotted name and current schema, by name.
    pub async fn schemas(&self) -> Vec<(String, SchemaRef)> {
        let catalog = self.catalog.lock().await;
        catalog.schemas().map(|(n, s)| (n.to_string(), s)).collect()
    }

    /// Lists the lake for new tables and brings every table to its latest version.
    pub async fn refresh_all(&self) -> Result<(), QueryError> {
        let mut catalog = self.catalog.lock().await;
        catalog.discover(&self.ctx).await?;
        let names: Vec<String> = catalog.schemas().map(|(n, _)| n.to_string()).collect();
        catalog.refresh(&self.ctx, &names).await
    }

    /// One row per table: version, files, rows, size, partition columns.
    pub async fn summary(&self) -> Result<RecordBatch, QueryError> {
        self.refresh_all().await?;
        self.catalog.lock().await.summary()
    }

    /// Table `name`'s columns and a line about its version.
    pub async fn describe(&self, name: &str) -> Result<(String, RecordBatch), QueryError> {
        let mut catalog = self.catalog.lock().await;
        catalog.refresh(&self.ctx, &[name.to_string()]).await?;
        catalog.describe(name)
    }

    /// The latest `limit` commits of table `name`, newest first.
    pub async fn history(&self, name: &str, limit: usize) -> Result<RecordBatch, QueryError> {
        let mut catalog = self.catalog.lock().await;
        catalog.refresh(&self.ctx, &[name.to_string()]).await?;
        catalog.history(name, limit).await
    }

    /// Whether `reference` names a lake table (or a time-travel version of one).
    fn holds(&self, reference: &TableReference) -> bool {
        let schema = reference.schema().unwrap_or(DEFAULT_SCHEMA);
        self.ctx
            .catalog(CATALOG)
            .and_then(|catalog| catalog.schema(schema))
            .is_some_and(|schema| schema.table_exist(reference.table()))
    }
}

/// One client's session over the shared lake tables: its own views, temporary tables and
/// settings, the lake's tables read-only.
pub struct QuerySession {
    lake: Arc<LakeTables>,
    ctx: SessionContext,
    overlay: Arc<ConnectionCatalog>,
    limits: Limits,
}

impl QuerySession {
    pub fn new(lake: Arc<LakeTables>, limits: Limits) -> Self {
        let lake_catalog = lake.ctx.catalog(CATALOG).expect("the default catalog exists");
        let overlay = Arc::new(ConnectionCatalog::new(lake_catalog));
        let catalogs = MemoryCatalogProviderList::new();
        catalogs.register_catalog(CATALOG.to_string(), overlay.clone());
        let state = SessionStateBuilder::new_from_existing(lake.ctx.state())
            .with_catalog_list(Arc::new(catalogs) as Arc<dyn CatalogProviderList>)
            .build();
        Self {
            ctx: SessionContext::new_with_state(state),
            lake,
            overlay,
            limits,
        }
    }

    /// This session's DataFusion context: the tables, functions and settings it plans with.
    pub fn ctx(&self) -> &SessionContext {
        &self.ctx
    }

    pub fn lake(&self) -> &Arc<LakeTables> {
        &self.lake
    }

    /// Replaces every `<table> VERSION AS OF n` / `TIMESTAMP AS OF '...'` in `sql` by a hidden
    /// table holding that version, loading the versions it names.
    pub async fn rewrite_time_travel(&self, sql: &str) -> Result<String, QueryError> {
        let (rewritten, pins) = time_travel::rewrite(sql)?;
        if !pins.is_empty() {
            let mut catalog = self.lake.catalog.lock().await;
            for pin in &pins {
                catalog.pin(&self.lake.ctx, pin).await?;
            }
        }
        Ok(rewritten)
    }

    /// Time travel, then DataFusion's own parser, then [`Self::plan`]: the REPL's way in.
    pub async fn plan_sql(&self, sql: &str) -> Result<LogicalPlan, QueryError> {
        let rewritten = self.rewrite_time_travel(sql).await?;
        let state = self.ctx.state();
        let dialect = state.config().options().sql_parser.dialect;
        let statement = state.sql_to_statement(&rewritten, &dialect)?;
        self.plan(statement).await
    }

    /// Brings the lake tables `statement` reads to their latest version and plans it; writes to
    /// the lake are refused.
    pub async fn plan(&self, statement: Statement) -> Result<LogicalPlan, QueryError> {
        let state = self.ctx.state();
        let tables: Vec<String> = state
            .resolve_table_references(&statement)?
            .iter()
            .filter(|reference| !self.overlay.holds_own(reference))
            .map(transform::dotted_name)
            .collect();
        if !tables.is_empty() {
            let mut catalog = self.lake.catalog.lock().await;
            catalog.refresh(&self.lake.ctx, &tables).await?;
        }
        let plan = self.ctx.state().statement_to_plan(statement).await?;
        self.check_read_only(&plan)?;
        Ok(plan)
    }

    /// Runs `plan` to completion under the session's limits, unless `cancel` resolves first.
    /// `progress` is told the elapsed time and bytes scanned while it runs.
    pub async fn run(
        &self,
        plan: LogicalPlan,
        cancel: impl Future<Output = ()>,
        progress: impl Progress,
    ) -> Result<Outcome, QueryError> {
        execute::run(&self.ctx, plan, &self.limits, cancel, progress).await
    }

    /// The first step of `plan` that would change the lake, or read or write files beside it.
    fn check_read_only(&self, plan: &LogicalPlan) -> Result<(), QueryError> {
        let mut refused = None;
        plan.apply(|node| {
            refused = self.refusal(node);
            Ok(match refused {
                Some(_) => TreeNodeRecursion::Stop,
                None => TreeNodeRecursion::Continue,
            })
        })?;
        match refused {
            Some(what) => Err(QueryError::ReadOnly { what }),
            None => Ok(()),
        }
    }

    fn refusal(&self, node: &LogicalPlan) -> Option<String> {
        let lake = |reference: &TableReference| self.lake.holds(reference);
        match node {
            LogicalPlan::Dml(dml) if lake(&dml.table_name) => {
                Some(format!("{} on {}", dml.op, dml.table_name))
            }
            LogicalPlan::Copy(copy) => Some(format!("COPY ... TO '{}'", copy.output_url)),
            LogicalPlan::Ddl(DdlStatement::CreateExternalTable(table)) => {
                Some(format!("CREATE EXTERNAL TABLE {}", table.name))
            }
            LogicalPlan::Ddl(DdlStatement::DropTable(drop)) if lake(&drop.name) => {
                Some(format!("DROP TABLE {}", drop.name))
            }
            LogicalPlan::Ddl(DdlStatement::DropView(drop)) if lake(&drop.name) => {
                Some(format!("DROP VIEW {}", drop.name))
            }
            LogicalPlan::Ddl(DdlStatement::CreateView(view)) if lake(&view.name) => {
                Some(format!("CREATE VIEW {}", view.name))
            }
            LogicalPlan::Ddl(DdlStatement::CreateMemoryTable(table)) if lake(&table.name) => {
                Some(format!("CREATE TABLE {}", table.name))
            }
            LogicalPlan::Ddl(DdlStatement::DropCatalogSchema(drop))
                if self.overlay.is_lake_schema(drop.name.schema_name()) =>
            {
                Some(format!("DROP SCHEMA {}", drop.name.schema_name()))
            }
            _ => None,
        }
    }
}
