//! `tweetlake serve`: the lake over the Postgres wire protocol, for psql, Grafana, BI tools
//! and drivers.
//!
//! The protocol is pgwire's (through datafusion-postgres, which adds pg_catalog, the SQL
//! rewrites clients' catalog queries need, and Arrow encoding); every statement runs through
//! the same query session as `tweetlake sql` ([`crate::query`]). Each connection has its own
//! session (views, temporary tables and settings stay with it) over the lake's tables, loaded
//! once. Queries run a few at a time, each with its own memory pool and time limit.

mod auth;
mod config;
mod connection;
mod functions;
mod sqlstate;
mod tls;

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use datafusion_postgres::datafusion_pg_catalog::pg_catalog::context::EmptyContextProvider;
use datafusion_postgres::datafusion_pg_catalog::setup_pg_catalog;
use datafusion_postgres::pgwire::api::auth::StartupHandler;
use datafusion_postgres::pgwire::api::cancel::{CancelHandler, DefaultCancelHandler};
use datafusion_postgres::pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use datafusion_postgres::pgwire::api::{ClientInfo, ErrorHandler, PgWireServerHandlers};
use datafusion_postgres::pgwire::error::PgWireError;
use datafusion_postgres::pgwire::tokio::{process_socket, TlsAcceptor};
use deltalake::datafusion::error::DataFusionError;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use crate::lake::Lake;
use crate::query::{LakeTables, Limits, QueryError, QuerySession};
use crate::transform::functions::CompanyMap;
use auth::{Login, Registry, Startup};
use connection::{Planner, Queries};

pub use config::{ServeConfig, Tls};

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(
        "refusing to listen on {listen} without a password: clients on other hosts could read the \
         whole lake. Set serve.password (or TWEETLAKE_SERVE__PASSWORD), or listen on 127.0.0.1"
    )]
    NoPassword { listen: SocketAddr },
    #[error("cannot listen on {listen}: {source}{}", bind_hint(source))]
    Bind {
        listen: SocketAddr,
        source: std::io::Error,
    },
    #[error("TLS: {path}: {reason} (serve.tls_cert and serve.tls_key are PEM files)")]
    Tls { path: PathBuf, reason: String },
    #[error("opening the lake: {0}")]
    Lake(#[from] QueryError),
    /// Setting up pg_catalog for a connection.
    #[error("pg_catalog: {0}")]
    Catalog(Box<DataFusionError>),
}

impl ServeError {
    fn tls(path: &Path, reason: impl std::fmt::Display) -> Self {
        Self::Tls {
            path: path.to_path_buf(),
            reason: reason.to_string(),
        }
    }
}

fn bind_hint(error: &std::io::Error) -> &'static str {
    match error.kind() {
        std::io::ErrorKind::AddrInUse => {
            " (another program uses the port: stop it, or choose another with --listen HOST:PORT or serve.listen)"
        }
        _ => "",
    }
}

/// What every connection shares.
struct Shared {
    lake: Arc<LakeTables>,
    limits: Limits,
    login: Login,
    registry: Arc<Registry>,
    /// Turns to run a query (`serve.max_concurrent_queries`).
    turns: Arc<Semaphore>,
    /// Open connections (`serve.max_connections`).
    slots: Arc<Semaphore>,
    tls: Option<TlsAcceptor>,
}

/// A bound server, ready to accept clients.
pub struct Server {
    listener: TcpListener,
    shared: Arc<Shared>,
}

impl Server {
    /// Checks the setup (password for a non-loopback address, TLS files), binds the address and
    /// registers the lake's tables. `max_bytes_scanned` is the REPL's limit, which applies here
    /// too.
    pub async fn bind(
        config: &ServeConfig,
        max_bytes_scanned: u64,
        lake: Lake,
        companies: &CompanyMap,
    ) -> Result<Self, ServeError> {
        if config.password.is_empty() && !config.listen.ip().is_loopback() {
            return Err(ServeError::NoPassword {
                listen: config.listen,
            });
        }
        let tls = match config.tls() {
            Tls::Off => None,
            Tls::On { cert, key } => Some(tls::acceptor(&cert, &key)?),
        };
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|source| ServeError::Bind {
                listen: config.listen,
                source,
            })?;
        let limits = Limits {
            max_bytes_scanned,
            timeout: config.timeout(),
            memory: config.memory(),
        };
        let shared = Shared {
            lake: LakeTables::open(lake, companies).await?,
            limits,
            login: Login::new(&config.password),
            registry: Registry::new(),
            turns: Arc::new(Semaphore::new(config.max_concurrent_queries)),
            slots: Arc::new(Semaphore::new(config.max_connections)),
            tls,
        };
        Ok(Self {
            listener,
            shared: Arc::new(shared),
        })
    }

    /// The address clients connect to (the port chosen when `serve.listen` asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// `postgres://host:port`, and how clients get in.
    pub fn describe(&self) -> String {
        let login = match self.shared.login {
            Login::Trust => "no password: loopback clients, any user",
            Login::Password(_) => "password required (SCRAM-SHA-256)",
        };
        let tls = match self.shared.tls {
            Some(_) => "TLS on request",
            None => "no TLS",
        };
        format!("postgres://{} ({login}; {tls})", self.local_addr())
    }

    /// Serves clients until `shutdown` resolves. A client's failure (a malformed message, a
    /// disconnect) ends only its connection.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                accepted = self.listener.accept() => match accepted {
                    Ok((socket, peer)) => self.spawn(socket, peer),
                    Err(error) => tracing::warn!("accepting a connection: {error}"),
                },
                () = &mut shutdown => return,
            }
        }
    }

    fn spawn(&self, socket: TcpStream, peer: SocketAddr) {
        let Ok(slot) = self.shared.slots.clone().try_acquire_owned() else {
            tracing::warn!("refusing {peer}: serve.max_connections connections are open");
            return;
        };
        let handlers = match Handlers::new(&self.shared) {
            Ok(handlers) => handlers,
            Err(error) => {
                tracing::warn!("refusing {peer}: {error}");
                return;
            }
        };
        let tls = self.shared.tls.clone();
        tokio::spawn(async move {
            tracing::debug!("{peer} connected");
            if let Err(error) = process_socket(socket, tls, handlers).await {
                tracing::info!("{peer}: connection ended: {error}");
            }
            drop(slot);
        });
    }
}

/// One connection's handlers: its own session, a fresh login exchange, the shared cancel
/// registry.
struct Handlers {
    queries: Arc<Queries>,
    startup: Arc<Startup>,
    cancel: Arc<DefaultCancelHandler>,
}

impl Handlers {
    fn new(shared: &Shared) -> Result<Self, ServeError> {
        let session = QuerySession::new(shared.lake.clone(), shared.limits);
        setup_pg_catalog(session.ctx(), "datafusion", EmptyContextProvider).map_err(ServeError::Catalog)?;
        session.ctx().register_udf(functions::current_setting());
        Ok(Self {
            queries: Arc::new(Queries::new(Planner::new(session), shared.turns.clone())),
            startup: Arc::new(shared.login.handler(&shared.registry)),
            cancel: Arc::new(DefaultCancelHandler::new(shared.registry.connections.clone())),
        })
    }
}

impl PgWireServerHandlers for Handlers {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        self.queries.clone()
    }

    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        self.queries.clone()
    }

    fn startup_handler(&self) -> Arc<impl StartupHandler> {
        self.startup.clone()
    }

    fn cancel_handler(&self) -> Arc<impl CancelHandler> {
        self.cancel.clone()
    }

    fn error_handler(&self) -> Arc<impl ErrorHandler> {
        Arc::new(ErrorLog)
    }
}

/// Logs what a client is told went wrong (texts never hold the password).
struct ErrorLog;

impl ErrorHandler for ErrorLog {
    fn on_error<C: ClientInfo>(&self, client: &C, error: &mut PgWireError) {
        tracing::debug!("{}: {error}", client.socket_addr());
    }
}
