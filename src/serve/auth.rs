//! Who may connect: with `serve.password` set, any user name with that password
//! (SCRAM-SHA-256, so it never crosses the wire); without, anyone (the server then listens on
//! loopback only). Either way each connection is registered for cancel requests.

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion_postgres::pgwire::api::auth::noop::NoopStartupHandler;
use datafusion_postgres::pgwire::api::auth::sasl::scram::{gen_salted_password, random_nonce, ScramAuth};
use datafusion_postgres::pgwire::api::auth::sasl::SASLAuthStartupHandler;
use datafusion_postgres::pgwire::api::auth::{
    AuthSource, DefaultServerParameterProvider, LoginInfo, Password, StartupHandler,
};
use datafusion_postgres::pgwire::api::{
    ClientInfo, ConnectionManager, PidSecretKeyGenerator, RandomPidSecretKeyGenerator,
};
use datafusion_postgres::pgwire::error::{PgWireError, PgWireResult};
use datafusion_postgres::pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use futures::Sink;

use crate::settings::Secret;

/// PBKDF2 rounds of the SCRAM exchange (Postgres' default).
const SCRAM_ITERATIONS: usize = 4096;

/// How clients prove who they are; shared by every connection.
pub enum Login {
    /// No password configured: every client is let in.
    Trust,
    /// The configured password, salted and hashed once at start.
    Password(Arc<SaltedPassword>),
}

impl Login {
    pub fn new(password: &Secret) -> Self {
        match password.is_empty() {
            true => Self::Trust,
            false => {
                let salt = random_nonce().into_bytes();
                let hash = gen_salted_password(password.expose(), &salt, SCRAM_ITERATIONS);
                Self::Password(Arc::new(SaltedPassword(Password::new(Some(salt), hash))))
            }
        }
    }

    /// A fresh startup handler for one connection (a SCRAM exchange keeps state).
    pub fn handler(&self, registry: &Arc<Registry>) -> Startup {
        match self {
            Self::Trust => Startup::Trust(TrustStartup(registry.clone())),
            Self::Password(password) => {
                let mut scram = ScramAuth::new(password.clone());
                scram.set_iterations(SCRAM_ITERATIONS);
                let handler =
                    SASLAuthStartupHandler::new(Arc::new(DefaultServerParameterProvider::default()))
                        .with_scram(scram)
                        .with_pid_secret_key_generator(registry.pids.clone())
                        .with_connection_manager(registry.connections.clone());
                Startup::Password(Box::new(handler))
            }
        }
    }
}

/// The server's connections, by the process id and secret key a cancel request names.
pub struct Registry {
    pub connections: Arc<ConnectionManager>,
    pids: Arc<RandomPidSecretKeyGenerator>,
}

impl Registry {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            connections: Arc::new(ConnectionManager::new()),
            pids: Arc::new(RandomPidSecretKeyGenerator::default()),
        })
    }
}

/// The password every user name logs in with. Its `Debug` shows nothing of it.
pub struct SaltedPassword(Password);

impl Debug for SaltedPassword {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SaltedPassword(<redacted>)")
    }
}

#[async_trait]
impl AuthSource for SaltedPassword {
    async fn get_password(&self, _login: &LoginInfo) -> PgWireResult<Password> {
        Ok(self.0.clone())
    }
}

/// One connection's startup handler.
pub enum Startup {
    Trust(TrustStartup),
    Password(Box<SASLAuthStartupHandler<DefaultServerParameterProvider>>),
}

#[async_trait]
impl StartupHandler for Startup {
    async fn on_startup<C>(&self, client: &mut C, message: PgWireFrontendMessage) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        match self {
            Self::Trust(handler) => handler.on_startup(client, message).await,
            Self::Password(handler) => handler.on_startup(client, message).await,
        }
    }
}

/// Lets the client in without a password.
pub struct TrustStartup(Arc<Registry>);

impl NoopStartupHandler for TrustStartup {
    fn connection_manager(&self) -> Option<Arc<ConnectionManager>> {
        Some(self.0.connections.clone())
    }

    fn pid_secret_key_generator(&self) -> &dyn PidSecretKeyGenerator {
        self.0.pids.as_ref()
    }
}
