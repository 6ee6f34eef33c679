//! One client connection: its own query session over the shared lake tables, answering the
//! simple and the extended query protocol.
//!
//! Every statement goes the way `tweetlake sql` runs it (time travel, refresh of the tables it
//! reads, read-only check, limits) and runs to completion inside the handler, so a cancel
//! request drops the running DataFusion stream. `SET`/`SHOW`, `BEGIN`/`COMMIT` and
//! `FETCH`/`CLOSE` are answered by datafusion-postgres' hooks; `DECLARE ... CURSOR` here, so its
//! bound parameters count.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion_postgres::arrow_pg::datatypes::df::deserialize_parameters;
use datafusion_postgres::arrow_pg::datatypes::{arrow_schema_to_pg_fields, encode_recordbatch, into_pg_type};
use datafusion_postgres::datafusion_pg_catalog::sql::PostgresCompatibilityParser;
use datafusion_postgres::hooks::cursor::CursorStatementHook;
use datafusion_postgres::hooks::set_show::SetShowHook;
use datafusion_postgres::hooks::transactions::TransactionStatementHook;
use datafusion_postgres::hooks::{HookClient, QueryHook};
use datafusion_postgres::pgwire::api::portal::{Format, Portal};
use datafusion_postgres::pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use datafusion_postgres::pgwire::api::results::{FieldInfo, QueryResponse, Response, Tag};
use datafusion_postgres::pgwire::api::stmt::{QueryParser, StoredStatement};
use datafusion_postgres::pgwire::api::store::{MemPortalStore, PortalStore};
use datafusion_postgres::pgwire::api::{ClientInfo, ClientPortalStore, Type};
use datafusion_postgres::pgwire::error::{PgWireError, PgWireResult};
use datafusion_postgres::pgwire::messages::PgWireBackendMessage;
use datafusion_postgres::pgwire::types::format::FormatOptions;
use deltalake::arrow::datatypes::DataType;
use deltalake::datafusion::common::ParamValues;
use deltalake::datafusion::logical_expr::{DdlStatement, LogicalPlan};
use deltalake::datafusion::sql::parser::Statement as DfStatement;
use deltalake::datafusion::sql::sqlparser::ast::{DeclareType, Query, Statement};
use futures::Sink;
use tokio::sync::Semaphore;

use super::sqlstate::{pg_error, user_error, SYNTAX_ERROR};
use crate::query::{Outcome, QueryError, QuerySession};

/// A parsed statement as the portal store keeps it (datafusion-postgres' cursor hook reads
/// the same): its SQL, and the statement with its plan unless it was empty.
pub type Parsed = (String, Option<(Statement, LogicalPlan)>);

/// Parses and plans a connection's statements.
pub struct Planner {
    session: QuerySession,
    sql: PostgresCompatibilityParser,
    /// Transactions (answered, nothing to do on a read-only lake) and SET/SHOW.
    hooks: Vec<Arc<dyn QueryHook>>,
    cursors: CursorStatementHook,
}

impl Planner {
    pub fn new(session: QuerySession) -> Self {
        Self {
            session,
            sql: PostgresCompatibilityParser::new(),
            hooks: vec![Arc::new(TransactionStatementHook), Arc::new(SetShowHook)],
            cursors: CursorStatementHook,
        }
    }

    /// Rewrites time travel, then parses with the Postgres dialect and the rewrites that let
    /// DataFusion answer psql's, Grafana's and other clients' catalog queries.
    async fn parse(&self, sql: &str) -> PgWireResult<(String, Vec<Statement>)> {
        let sql = self.session.rewrite_time_travel(sql).await.map_err(pg_error)?;
        let statements = self
            .sql
            .parse(&sql)
            .map_err(|e| user_error(SYNTAX_ERROR, &e.to_string()))?;
        Ok((sql, statements))
    }

    /// Refreshes what `statement` reads and plans it.
    async fn plan(&self, statement: Statement) -> PgWireResult<LogicalPlan> {
        if let Statement::Copy { .. } = statement {
            // COPY ... TO writes files on the server; COPY ... FROM would write the lake.
            let what = "COPY".to_string();
            return Err(pg_error(QueryError::ReadOnly { what }));
        }
        let statement = DfStatement::Statement(Box::new(statement));
        self.session.plan(statement).await.map_err(pg_error)
    }

    /// Every statement hook, in the order they are asked: transactions, SET/SHOW, cursors.
    fn all_hooks(&self) -> impl Iterator<Item = &dyn QueryHook> {
        self.hooks
            .iter()
            .map(AsRef::as_ref)
            .chain([&self.cursors as &dyn QueryHook])
    }

    /// The plan a hook gives a statement it answers (SET, BEGIN, FETCH, ...), if one does.
    async fn hook_plan(
        &self,
        statement: &Statement,
        client: &(dyn ClientInfo + Send + Sync),
    ) -> Option<PgWireResult<LogicalPlan>> {
        let ctx = self.session.ctx();
        for hook in self.all_hooks() {
            if let Some(plan) = hook.handle_extended_parse_query(statement, ctx, client).await {
                return Some(plan);
            }
        }
        None
    }

    /// The answer of the hook that handles `statement`, if one does.
    async fn hook_answer(
        &self,
        statement: &Statement,
        client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        let ctx = self.session.ctx();
        for hook in self.all_hooks() {
            if let Some(answer) = hook.handle_simple_query(statement, ctx, client).await {
                return Some(answer);
            }
        }
        None
    }
}

#[async_trait]
impl QueryParser for Planner {
    type Statement = Parsed;

    async fn parse_sql<C>(
        &self,
        client: &C,
        sql: &str,
        _types: &[Option<Type>],
    ) -> PgWireResult<Option<Parsed>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        let (sql, mut statements) = self.parse(sql).await?;
        if statements.is_empty() {
            return Ok(None);
        }
        let statement = statements.remove(0);
        let plan = match cursor_query(&statement)? {
            Some((_, query)) => self.plan(Statement::Query(query)).await?,
            None => match self.hook_plan(&statement, client).await {
                Some(plan) => plan?,
                None => self.plan(statement.clone()).await?,
            },
        };
        Ok(Some((sql, Some((statement, plan)))))
    }

    fn get_parameter_types(&self, parsed: &Parsed) -> PgWireResult<Vec<Type>> {
        let (_, Some((_, plan))) = parsed else {
            return Ok(vec![]);
        };
        parameter_types(plan)?
            .iter()
            .map(|t| t.as_ref().map_or(Ok(Type::UNKNOWN), into_pg_type))
            .collect()
    }

    fn get_result_schema(&self, parsed: &Parsed, format: Option<&Format>) -> PgWireResult<Vec<FieldInfo>> {
        match parsed {
            (_, Some((statement, plan))) if returns_rows(statement, plan) => arrow_schema_to_pg_fields(
                plan.schema().as_arrow(),
                format.unwrap_or(&Format::UnifiedText),
                None,
            ),
            _ => Ok(vec![]),
        }
    }
}

/// A connection's query handlers.
pub struct Queries {
    planner: Arc<Planner>,
    /// Turns to run a query, shared by every connection.
    turns: Arc<Semaphore>,
}

impl Queries {
    pub fn new(planner: Planner, turns: Arc<Semaphore>) -> Self {
        Self {
            planner: Arc::new(planner),
            turns,
        }
    }

    /// Runs `plan` when its turn comes and answers with its rows, or its command tag.
    async fn answer(
        &self,
        plan: LogicalPlan,
        format: &Format,
        client: &(dyn ClientInfo + Send + Sync),
    ) -> PgWireResult<Response> {
        let tag = command_tag(&plan);
        let outcome = self.run(plan).await?;
        Ok(match tag {
            Some(tag) => Response::Execution(Tag::new(tag)),
            None => Response::Query(rows(outcome, format, client)?),
        })
    }

    async fn run(&self, plan: LogicalPlan) -> PgWireResult<Outcome> {
        let _turn = self.turns.acquire().await.expect("the semaphore is never closed");
        // A cancel request drops this future, and with it the running query.
        let never = std::future::pending();
        self.planner.session.run(plan, never, ()).await.map_err(pg_error)
    }

    /// Runs the cursor's query and keeps its rows as portal `name` for FETCH.
    async fn declare(
        &self,
        store: &MemPortalStore<Parsed>,
        name: String,
        query: Box<Query>,
        plan: LogicalPlan,
        client: &(dyn ClientInfo + Send + Sync),
    ) -> PgWireResult<Response> {
        let Response::Query(rows) = self.answer(plan.clone(), &Format::UnifiedText, client).await? else {
            return Err(user_error(
                SYNTAX_ERROR,
                "DECLARE CURSOR needs a query that returns rows",
            ));
        };
        let sql = query.to_string();
        let statement =
            StoredStatement::new(name.clone(), (sql, Some((Statement::Query(query), plan))), vec![]);
        let portal = Portal::new_cursor(name, Arc::new(statement));
        portal.start(rows).await;
        store.put_portal(Arc::new(portal));
        Ok(Response::Execution(Tag::new("DECLARE CURSOR")))
    }

    async fn simple_statement<C>(&self, client: &mut C, statement: Statement) -> PgWireResult<Response>
    where
        C: HookClient,
    {
        if let Some((name, query)) = cursor_query(&statement)? {
            let plan = self.planner.plan(Statement::Query(query.clone())).await?;
            let store = client.portal_store();
            return self.declare(store, name, query, plan, client).await;
        }
        if let Statement::Deallocate { name, .. } = &statement {
            return Ok(deallocate(client.portal_store(), &name.value));
        }
        if let Some(answer) = self.planner.hook_answer(&statement, client).await {
            return answer;
        }
        let plan = self.planner.plan(statement).await?;
        self.answer(plan, &Format::UnifiedText, client).await
    }
}

#[async_trait]
impl SimpleQueryHandler for Queries {
    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        tracing::debug!("{}: statement received: {query}", client.socket_addr());
        let (_, statements) = self.planner.parse(query).await?;
        if statements.is_empty() {
            // `-- ping` (Grafana's health check) and other comment-only queries.
            return Ok(vec![Response::EmptyQuery]);
        }
        let mut responses = Vec::with_capacity(statements.len());
        for statement in statements {
            responses.push(self.simple_statement(client, statement).await?);
        }
        Ok(responses)
    }
}

#[async_trait]
impl ExtendedQueryHandler for Queries {
    type Statement = Parsed;
    type QueryParser = Planner;

    fn query_parser(&self) -> Arc<Planner> {
        self.planner.clone()
    }

    async fn do_query<C>(
        &self,
        client: &mut C,
        portal: &Portal<Parsed>,
        _max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Parsed>,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let (_, Some((statement, _))) = &portal.statement.statement else {
            return Ok(Response::EmptyQuery);
        };
        if let Some((name, query)) = cursor_query(statement)? {
            // Planned again: a commit since Parse shows up, as in every statement.
            let plan = self.planner.plan(Statement::Query(query.clone())).await?;
            let bound = bind(plan, portal)?;
            let store = HookClient::portal_store(client);
            return self.declare(store, name, query, bound, client).await;
        }
        if let Some(answer) = self.planner.hook_answer(statement, client).await {
            return answer;
        }
        let plan = self.planner.plan(statement.clone()).await?;
        let plan = bind(plan, portal)?;
        self.answer(plan, &portal.result_column_format, client).await
    }
}

/// `DEALLOCATE name` forgets a prepared statement. `DEALLOCATE ALL` (psycopg sends it after a
/// rollback) forgets nothing: a client preparing a name again replaces what it held.
fn deallocate(store: &MemPortalStore<Parsed>, name: &str) -> Response {
    if !name.eq_ignore_ascii_case("all") {
        store.rm_statement(name);
    }
    Response::Execution(Tag::new("DEALLOCATE"))
}

/// The cursor name and query of `DECLARE name CURSOR FOR query`, if `statement` is one.
fn cursor_query(statement: &Statement) -> PgWireResult<Option<(String, Box<Query>)>> {
    let Statement::Declare { stmts } = statement else {
        return Ok(None);
    };
    match stmts.as_slice() {
        [declare] if declare.declare_type == Some(DeclareType::Cursor) => {
            match (declare.names.first(), &declare.for_query) {
                (Some(name), Some(query)) => Ok(Some((name.value.clone(), query.clone()))),
                _ => Err(user_error(
                    SYNTAX_ERROR,
                    "DECLARE needs a name and CURSOR FOR a query",
                )),
            }
        }
        _ => Err(user_error(
            SYNTAX_ERROR,
            "only DECLARE name CURSOR FOR query is supported",
        )),
    }
}

/// `plan` with the portal's bound parameters in place of `$1`, `$2`, ...
fn bind(plan: LogicalPlan, portal: &Portal<Parsed>) -> PgWireResult<LogicalPlan> {
    let types = parameter_types(&plan)?;
    let inferred: Vec<Option<&DataType>> = types.iter().map(Option::as_ref).collect();
    let values: ParamValues = deserialize_parameters(portal, &inferred)?;
    plan.replace_params_with_values(&values)
        .map_err(|e| pg_error(QueryError::from(e)))
}

/// The types DataFusion inferred for `$1`, `$2`, ... in order (`None`: unknown).
fn parameter_types(plan: &LogicalPlan) -> PgWireResult<Vec<Option<DataType>>> {
    let types = plan
        .get_parameter_types()
        .map_err(|e| pg_error(QueryError::from(e)))?;
    let mut numbered: Vec<(usize, Option<DataType>)> = types
        .into_iter()
        .filter_map(|(id, t)| Some((id.strip_prefix('$')?.parse().ok()?, t)))
        .collect();
    numbered.sort_by_key(|(number, _)| *number);
    Ok(numbered.into_iter().map(|(_, t)| t).collect())
}

/// Whether `statement` answers with rows (a RowDescription), not only a command tag.
fn returns_rows(statement: &Statement, plan: &LogicalPlan) -> bool {
    !matches!(statement, Statement::Declare { .. })
        && command_tag(plan).is_none()
        && !plan.schema().fields().is_empty()
}

/// The command tag of a statement that returns no rows (`CREATE VIEW`, `SET`, ...).
fn command_tag(plan: &LogicalPlan) -> Option<&'static str> {
    let tag = match plan {
        LogicalPlan::Ddl(DdlStatement::CreateView(_)) => "CREATE VIEW",
        LogicalPlan::Ddl(DdlStatement::DropView(_)) => "DROP VIEW",
        LogicalPlan::Ddl(DdlStatement::CreateMemoryTable(_)) => "CREATE TABLE",
        LogicalPlan::Ddl(DdlStatement::DropTable(_)) => "DROP TABLE",
        LogicalPlan::Ddl(DdlStatement::CreateCatalogSchema(_)) => "CREATE SCHEMA",
        LogicalPlan::Ddl(DdlStatement::DropCatalogSchema(_)) => "DROP SCHEMA",
        LogicalPlan::Ddl(_) => "OK",
        LogicalPlan::Statement(_) => "SET",
        _ => return None,
    };
    Some(tag)
}

/// The rows of `outcome` as DataRows in `format`, dates and times as the client asked.
fn rows(
    outcome: Outcome,
    format: &Format,
    client: &(dyn ClientInfo + Send + Sync),
) -> PgWireResult<QueryResponse> {
    let options = Arc::new(FormatOptions::from_client_metadata(client.metadata()));
    let fields = Arc::new(arrow_schema_to_pg_fields(&outcome.schema, format, Some(options))?);
    let encoded = fields.clone();
    let rows = outcome
        .batches
        .into_iter()
        .flat_map(move |batch| encode_recordbatch(encoded.clone(), batch));
    Ok(QueryResponse::new(fields, futures::stream::iter(rows)))
}
