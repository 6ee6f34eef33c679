//! `tweetlake sql`: Athena-style SQL over the lake's Delta tables, interactive or one-shot.
//!
//! A [`Session`] registers every table of the lake by its dotted name, brings the tables a
//! statement reads to their latest version before running it, rewrites time travel, and prints
//! results in the chosen format with Athena's statistics.

mod catalog;
mod command;
mod config;
mod execute;
mod format;
mod helper;
mod lexer;
mod output;
mod saved;
mod shell;
mod time_travel;

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use deltalake::arrow::array::RecordBatch;
use deltalake::arrow::error::ArrowError;
use deltalake::datafusion::error::DataFusionError;
use deltalake::datafusion::logical_expr::LogicalPlan;
use deltalake::datafusion::prelude::SessionContext;
use deltalake::DeltaTableError;
use rustyline::error::ReadlineError;

use crate::lake::{Lake, LakeError};
use crate::stdout::{stdout, StdoutError};
use crate::transform;
use crate::transform::functions::CompanyMap;
use catalog::Catalog;
use command::Command;
use helper::Vocabulary;
use lexer::Input;
use output::Output;
use saved::SavedQueries;

pub use config::ReplConfig;
pub use format::Format;
pub use shell::run as interactive;
pub use time_travel::TimeTravelError;

#[derive(Debug, thiserror::Error)]
pub enum ReplError {
    #[error(transparent)]
    Lake(Box<LakeError>),
    #[error("{0}")]
    Delta(Box<DeltaTableError>),
    #[error("{0}")]
    Sql(Box<DataFusionError>),
    #[error("{0}")]
    Arrow(#[from] ArrowError),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Stdout(#[from] StdoutError),
    /// A mistyped meta-command, an unknown table or saved query, a missing parameter.
    #[error("{0}")]
    Usage(String),
    #[error("time travel: {0}")]
    TimeTravel(#[from] TimeTravelError),
    #[error(
        "query stopped after scanning {scanned}: the limit is {limit} per query (repl.max_bytes_scanned); \
         filter on partition columns or raise the limit"
    )]
    ScanLimit { scanned: String, limit: String },
    #[error("query cancelled")]
    Cancelled,
    #[error("terminal: {0}")]
    Terminal(#[from] ReadlineError),
}

// The library errors are large: boxed, so every `Result` stays small.
impl From<LakeError> for ReplError {
    fn from(error: LakeError) -> Self {
        Self::Lake(Box::new(error))
    }
}

impl From<DeltaTableError> for ReplError {
    fn from(error: DeltaTableError) -> Self {
        Self::Delta(Box::new(error))
    }
}

impl From<DataFusionError> for ReplError {
    fn from(error: DataFusionError) -> Self {
        Self::Sql(Box::new(error))
    }
}

impl ReplError {
    fn io(path: &Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// An error on one line, as the prompt shows it.
pub fn one_line(error: &ReplError) -> String {
    error.to_string().split_whitespace().collect::<Vec<_>>().join(" ")
}

/// What to do after an input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    Quit,
}

/// How a session was started.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// A person at a terminal: statistics and progress are shown, results may be paged.
    pub interactive: bool,
    /// Overrides `repl.format`.
    pub format: Option<Format>,
    /// Results go to this file; the format follows its extension unless `format` is given.
    pub output: Option<PathBuf>,
}

/// The default history file: `<user data dir>/tweetlake/history`.
pub fn history_path(config: &ReplConfig) -> Option<PathBuf> {
    if !config.history_file.as_os_str().is_empty() {
        return Some(config.history_file.clone());
    }
    dirs::data_dir().map(|dir| dir.join("tweetlake").join("history"))
}

pub struct Session {
    ctx: SessionContext,
    catalog: Catalog,
    queries: SavedQueries,
    output: Output,
    format: Format,
    timing: bool,
    interactive: bool,
    max_bytes_scanned: u64,
    last_statement: Option<String>,
    vocabulary: Arc<RwLock<Vocabulary>>,
}

impl Session {
    /// Registers every table of the lake (reading only Delta logs), with the tweet functions
    /// (`company_of` reading `companies`).
    pub async fn open(
        lake: Lake,
        config: &ReplConfig,
        options: Options,
        companies: &CompanyMap,
    ) -> Result<Self, ReplError> {
        let ctx = transform::session(companies);
        let catalog = Catalog::open(lake, &ctx).await?;
        let format = options.format.unwrap_or(config.format);
        let mut output = Output::new(&config.pager);
        if let Some(path) = &options.output {
            let format = options.format.or_else(|| Format::from_extension(path));
            output.set_file(path, format.unwrap_or(config.format))?;
        }
        let session = Self {
            ctx,
            catalog,
            queries: SavedQueries::new(&config.queries_dir),
            output,
            format,
            timing: config.timing && options.interactive,
            interactive: options.interactive,
            max_bytes_scanned: config.max_bytes_scanned,
            last_statement: None,
            vocabulary: Arc::default(),
        };
        session.refresh_vocabulary();
        Ok(session)
    }

    fn lake_uri(&self) -> String {
        self.catalog.lake().root().to_string()
    }

    fn table_count(&self) -> usize {
        self.catalog.schemas().count()
    }

    /// What Tab completion knows; kept current by the session.
    fn vocabulary(&self) -> Arc<RwLock<Vocabulary>> {
        self.vocabulary.clone()
    }

    /// Runs the statements and meta-commands in `text`, stopping at the first error.
    pub async fn run_text(&mut self, text: &str) -> Result<Flow, ReplError> {
        let result = self.run_inputs(lexer::split_inputs(text)).await;
        self.refresh_vocabulary();
        result
    }

    async fn run_inputs(&mut self, inputs: Vec<Input>) -> Result<Flow, ReplError> {
        for input in inputs {
            let flow = match input {
                Input::Meta(line) => self.run_command(command::parse(&line)?).await?,
                Input::Sql(sql) => self.run_sql(&sql).await.map(|()| Flow::Continue)?,
            };
            if flow == Flow::Quit {
                return Ok(Flow::Quit);
            }
        }
        Ok(Flow::Continue)
    }

    async fn run_sql(&mut self, sql: &str) -> Result<(), ReplError> {
        let plan = self.plan(sql).await?;
        let frame = self.ctx.execute_logical_plan(plan).await?;
        let progress = match self.interactive {
            true => execute::ProgressLine::Shown,
            false => execute::ProgressLine::Hidden,
        };
        let outcome = execute::run(frame, self.max_bytes_scanned, progress).await?;
        self.print(&outcome.schema, &outcome.batches)?;
        if self.timing {
            let destination = match self.output.file() {
                Some((path, format)) => format!(", written to {} as {format}", path.display()),
                None => String::new(),
            };
            eprintln!("({}{destination})", outcome.summary());
        }
        self.last_statement = Some(sql.to_string());
        Ok(())
    }

    /// Rewrites time travel, brings the tables `sql` reads to their latest version, and plans it.
    async fn plan(&mut self, sql: &str) -> Result<LogicalPlan, ReplError> {
        let (rewritten, pins) = time_travel::rewrite(sql)?;
        for pin in &pins {
            self.catalog.pin(&self.ctx, pin).await?;
        }
        let state = self.ctx.state();
        let dialect = state.config().options().sql_parser.dialect;
        let statement = state.sql_to_statement(&rewritten, &dialect)?;
        let tables: Vec<String> = state
            .resolve_table_references(&statement)?
            .iter()
            .map(transform::dotted_name)
            .collect();
        self.catalog.refresh(&self.ctx, &tables).await?;
        let plan = self.ctx.state().statement_to_plan(statement).await?;
        if let LogicalPlan::Dml(dml) = &plan {
            return Err(ReplError::Usage(format!(
                "{} on {} is not allowed: the lake is read-only in tweetlake sql (the pipeline writes it)",
                dml.op, dml.table_name
            )));
        }
        Ok(plan)
    }

    async fn run_command(&mut self, command: Command) -> Result<Flow, ReplError> {
        match command {
            Command::Help => stdout().write_all(command::help().as_bytes())?,
            Command::Quit => return Ok(Flow::Quit),
            Command::ListTables => {
                self.catalog.discover(&self.ctx).await?;
                let names: Vec<String> = self.catalog.schemas().map(|(n, _)| n.to_string()).collect();
                self.catalog.refresh(&self.ctx, &names).await?;
                self.print_batch(self.catalog.summary()?)?;
            }
            Command::Describe(table) => {
                self.catalog
                    .refresh(&self.ctx, std::slice::from_ref(&table))
                    .await?;
                let (title, batch) = self.catalog.describe(&table)?;
                eprintln!("{title}");
                self.print_batch(batch)?;
            }
            Command::History { table, limit } => {
                self.catalog
                    .refresh(&self.ctx, std::slice::from_ref(&table))
                    .await?;
                self.print_batch(self.catalog.history(&table, limit).await?)?;
            }
            Command::Timing(on) => {
                self.timing = on.unwrap_or(!self.timing);
                eprintln!("timing is {}", on_off(self.timing));
            }
            Command::Format(Some(format)) => {
                self.format = format;
                eprintln!("format is {format}");
            }
            Command::Format(None) => eprintln!("format is {}", self.format),
            Command::Output(Some(path)) => {
                let format = Format::from_extension(&path).unwrap_or(self.format);
                self.output.set_file(&path, format)?;
                eprintln!("results go to {} as {format}", path.display());
            }
            Command::Output(None) => {
                self.output.reset();
                eprintln!("results go to the terminal");
            }
            Command::Pager(on) => {
                let on = self.output.set_paging(on);
                eprintln!("pager is {}", on_off(on));
            }
            Command::Include(path) => return self.run_file(&path).await,
            Command::Queries => self.print_batch(self.queries.table()?)?,
            Command::Run { name, args } => {
                let sql = self.queries.get(&name)?.bind(&args)?;
                return Box::pin(self.run_inputs(lexer::split_inputs(&sql))).await;
            }
            Command::Save(name) => {
                let sql = self.last_statement.as_deref().ok_or_else(|| {
                    ReplError::Usage("nothing to save yet: run a statement first".to_string())
                })?;
                let path = self.queries.save(&name, sql)?;
                eprintln!("saved to {} (run it with \\run {name})", path.display());
            }
        }
        Ok(Flow::Continue)
    }

    async fn run_file(&mut self, path: &Path) -> Result<Flow, ReplError> {
        let text = std::fs::read_to_string(path).map_err(|e| ReplError::io(path, e))?;
        Box::pin(self.run_inputs(lexer::split_inputs(&text))).await
    }

    fn print_batch(&mut self, batch: RecordBatch) -> Result<(), ReplError> {
        self.print(&batch.schema(), &[batch])
    }

    fn print(
        &mut self,
        schema: &deltalake::arrow::datatypes::SchemaRef,
        batches: &[RecordBatch],
    ) -> Result<(), ReplError> {
        if schema.fields().is_empty() {
            // CREATE VIEW, SET and the like return nothing to show.
            return Ok(());
        }
        let format = self.output.file().map_or(self.format, |(_, format)| format);
        let bytes = format.render(schema, batches)?;
        self.output.write(&bytes)
    }

    /// Hands completion the current tables, columns, functions and saved queries.
    fn refresh_vocabulary(&self) {
        let state = self.ctx.state();
        let mut functions: Vec<String> = state
            .scalar_functions()
            .keys()
            .chain(state.aggregate_functions().keys())
            .chain(state.window_functions().keys())
            .chain(state.table_functions().keys())
            .cloned()
            .collect();
        functions.sort();
        functions.dedup();
        let tables = self
            .catalog
            .schemas()
            .map(|(name, schema)| {
                let columns = schema.fields().iter().map(|f| f.name().clone()).collect();
                (name.to_string(), columns)
            })
            .collect();
        let queries = self
            .queries
            .list()
            .unwrap_or_default()
            .into_iter()
            .map(|q| (q.name, q.params.into_iter().map(|p| p.name).collect()))
            .collect();
        *self
            .vocabulary
            .write()
            .expect("the vocabulary lock is never poisoned") = Vocabulary {
            tables,
            functions,
            queries,
        };
    }
}

fn on_off(on: bool) -> &'static str {
    if on {
        "on"
    } else {
        "off"
    }
}
