//! `tweetlake sql`: Athena-style SQL over the lake's Delta tables, interactive or one-shot.
//!
//! A [`Session`] runs statements through the lake's query session ([`crate::query`]: every
//! table by its dotted name, brought to its latest version before each statement, time travel)
//! and prints results in the chosen format with Athena's statistics.

mod chart;
mod command;
mod config;
mod format;
mod helper;
mod output;
mod saved;
mod shell;
mod spinner;
mod watch;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use deltalake::arrow::array::RecordBatch;
use deltalake::arrow::datatypes::SchemaRef;
use deltalake::arrow::error::ArrowError;
use rustyline::error::ReadlineError;

use crate::lake::Lake;
use crate::query::lexer::{self, Input};
use crate::query::{LakeTables, Limits, Outcome, QueryError, QuerySession};
use crate::stdout::{stdout, StdoutError};
use crate::transform::functions::CompanyMap;
use chart::{ChartError, ChartSpec};
use command::Command;
use helper::{Styling, Vocabulary};
use output::{Output, Paging, TerminalSize};
use saved::SavedQueries;
use spinner::Spinner;

pub use config::ReplConfig;
pub use format::Format;
pub use shell::run as interactive;

#[derive(Debug, thiserror::Error)]
pub enum ReplError {
    #[error(transparent)]
    Query(#[from] QueryError),
    #[error("{0}")]
    Arrow(#[from] ArrowError),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Stdout(#[from] StdoutError),
    /// A mistyped meta-command, an unknown saved query, a missing parameter.
    #[error("{0}")]
    Usage(String),
    #[error("terminal: {0}")]
    Terminal(#[from] ReadlineError),
    #[error(transparent)]
    Chart(#[from] ChartError),
    #[error("cannot listen for Ctrl-C, which is what stops \\watch: {0}")]
    Interrupt(std::io::Error),
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
    query: QuerySession,
    queries: SavedQueries,
    output: Output,
    format: Format,
    timing: bool,
    interactive: bool,
    /// Colours for the prompt's highlighting and for charts; decided once, at the start.
    styling: Styling,
    last_statement: Option<String>,
    /// The last result with columns, for `\chart`.
    last_result: Option<Outcome>,
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
        let tables = LakeTables::open(lake, companies).await?;
        let limits = Limits {
            max_bytes_scanned: config.max_bytes_scanned,
            ..Limits::default()
        };
        let format = options.format.unwrap_or(config.format);
        let mut output = Output::new(&config.pager);
        if let Some(path) = &options.output {
            let format = options.format.or_else(|| Format::from_extension(path));
            output.set_file(path, format.unwrap_or(config.format))?;
        }
        let session = Self {
            query: QuerySession::new(tables, limits),
            queries: SavedQueries::new(&config.queries_dir),
            output,
            format,
            timing: config.timing && options.interactive,
            interactive: options.interactive,
            styling: Styling::detect(),
            last_statement: None,
            last_result: None,
            vocabulary: Arc::default(),
        };
        session.refresh_vocabulary().await;
        Ok(session)
    }

    /// Table `name` reads as empty, with `schema`, until the lake has it.
    pub async fn expect_table(&self, name: &str, schema: SchemaRef) -> Result<(), ReplError> {
        Ok(self.query.lake().expect_table(name, schema).await?)
    }

    async fn lake_uri(&self) -> String {
        self.query.lake().lake_uri().await
    }

    async fn table_count(&self) -> usize {
        self.query.lake().schemas().await.len()
    }

    /// What Tab completion knows; kept current by the session.
    fn vocabulary(&self) -> Arc<RwLock<Vocabulary>> {
        self.vocabulary.clone()
    }

    fn styling(&self) -> Styling {
        self.styling
    }

    /// Runs the statements and meta-commands in `text`, stopping at the first error.
    pub async fn run_text(&mut self, text: &str) -> Result<Flow, ReplError> {
        let result = self.run_inputs(lexer::split_inputs(text)).await;
        self.refresh_vocabulary().await;
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
        let ctrl_c = async {
            // Without a signal handler there is nothing to cancel with: run to the end.
            if tokio::signal::ctrl_c().await.is_err() {
                std::future::pending::<()>().await;
            }
        };
        let outcome = self.execute(sql, ctrl_c).await?;
        self.show(sql, outcome, Paging::WhenTall)
    }

    /// Runs `sql` to its result, unless `cancel` resolves first.
    async fn execute(&self, sql: &str, cancel: impl Future<Output = ()>) -> Result<Outcome, ReplError> {
        let plan = self.query.plan_sql(sql).await?;
        let progress = match self.interactive {
            true => Some(Spinner::default()),
            false => None,
        };
        Ok(self.query.run(plan, cancel, progress).await?)
    }

    /// Prints a statement's result (and its statistics when timing is on) and remembers both.
    fn show(&mut self, sql: &str, outcome: Outcome, paging: Paging) -> Result<(), ReplError> {
        self.print(&outcome.schema, &outcome.batches, paging)?;
        if self.timing {
            let destination = match self.output.file() {
                Some((path, format)) => format!(", written to {} as {format}", path.display()),
                None => String::new(),
            };
            eprintln!("({}{destination})", outcome.summary());
        }
        self.remember(sql, outcome);
        Ok(())
    }

    /// The statement for `\save` and `\watch`; its result, if it has columns, for `\chart`.
    fn remember(&mut self, sql: &str, outcome: Outcome) {
        self.last_statement = Some(sql.to_string());
        if !outcome.schema.fields().is_empty() {
            self.last_result = Some(outcome);
        }
    }

    /// Draws the last result on stdout, sized to the terminal (80 x 24 when it is not one).
    fn chart(&self, spec: &ChartSpec) -> Result<(), ReplError> {
        let result = self
            .last_result
            .as_ref()
            .ok_or_else(|| ReplError::Usage("nothing to chart yet: run a query first".to_string()))?;
        let size = TerminalSize::of_stdout().unwrap_or(TerminalSize::DEFAULT);
        let drawing = chart::draw(spec, &result.schema, &result.batches, size, self.styling)?;
        Ok(stdout().write_all(drawing.as_bytes())?)
    }

    async fn run_command(&mut self, command: Command) -> Result<Flow, ReplError> {
        match command {
            Command::Help => stdout().write_all(command::help().as_bytes())?,
            Command::Quit => return Ok(Flow::Quit),
            Command::ListTables => {
                let summary = self.query.lake().summary().await?;
                self.print_batch(summary)?;
            }
            Command::Describe(table) => {
                let (title, batch) = self.query.lake().describe(&table).await?;
                eprintln!("{title}");
                self.print_batch(batch)?;
            }
            Command::History { table, limit } => {
                let history = self.query.lake().history(&table, limit).await?;
                self.print_batch(history)?;
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
            Command::Chart(spec) => self.chart(&spec)?,
            Command::Watch { period, watched } => self.watch(period, watched).await?,
        }
        Ok(Flow::Continue)
    }

    async fn run_file(&mut self, path: &Path) -> Result<Flow, ReplError> {
        let text = std::fs::read_to_string(path).map_err(|e| ReplError::io(path, e))?;
        Box::pin(self.run_inputs(lexer::split_inputs(&text))).await
    }

    fn print_batch(&mut self, batch: RecordBatch) -> Result<(), ReplError> {
        self.print(&batch.schema(), &[batch], Paging::WhenTall)
    }

    fn print(
        &mut self,
        schema: &deltalake::arrow::datatypes::SchemaRef,
        batches: &[RecordBatch],
        paging: Paging,
    ) -> Result<(), ReplError> {
        if schema.fields().is_empty() {
            // CREATE VIEW, SET and the like return nothing to show.
            return Ok(());
        }
        let format = self.output.file().map_or(self.format, |(_, format)| format);
        let bytes = format.render(schema, batches)?;
        self.output.write(&bytes, paging)
    }

    /// Hands completion the current tables, columns, functions and saved queries.
    async fn refresh_vocabulary(&self) {
        let state = self.query.ctx().state();
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
            .query
            .lake()
            .schemas()
            .await
            .into_iter()
            .map(|(name, schema)| {
                let columns = schema.fields().iter().map(|f| f.name().clone()).collect();
                (name, columns)
            })
            .collect();
        let queries = self
            .queries
            .list()
            .unwrap_or_default()
            .into_iter()
            .map(|q| (q.name, q.params.into_iter().map(|p| p.name).collect()))
            .collect();
        let result_columns = self.last_result.as_ref().map_or_else(Vec::new, |result| {
            let fields = result.schema.fields().iter();
            fields.map(|f| f.name().clone()).collect()
        });
        *self
            .vocabulary
            .write()
            .expect("the vocabulary lock is never poisoned") = Vocabulary {
            tables,
            functions,
            queries,
            result_columns,
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
