//! The `[serve]` section: `tweetlake serve`, the lake over the Postgres wire protocol.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::settings::{byte_size, duration_text, InvalidSetting, Secret};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServeConfig {
    /// Address and port to listen on; a non-loopback address needs `password`.
    pub listen: SocketAddr,
    /// Clients must give this password (SCRAM-SHA-256); empty: loopback clients need none.
    pub password: Secret,
    /// PEM certificate chain offered to clients asking for TLS (with `tls_key`); empty: no TLS.
    pub tls_cert: PathBuf,
    /// PEM private key of `tls_cert` (PKCS#8, PKCS#1 or SEC1).
    pub tls_key: PathBuf,
    /// The memory pool of each running query (hash tables, sorts, joins): a query that needs
    /// more fails, the others go on. `0`: unbounded.
    #[serde(with = "byte_size")]
    pub memory_limit: u64,
    /// A query running longer than this is stopped (`0s`: no limit).
    #[serde(with = "duration_text")]
    pub query_timeout: Duration,
    /// Queries running at once; the others wait for their turn.
    pub max_concurrent_queries: usize,
    /// Client connections at once; more are refused.
    pub max_connections: usize,
}

impl Default for ServeConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 5433)),
            password: Secret::default(),
            tls_cert: PathBuf::new(),
            tls_key: PathBuf::new(),
            memory_limit: 512 * 1024 * 1024,
            query_timeout: Duration::from_secs(60),
            max_concurrent_queries: 4,
            max_connections: 100,
        }
    }
}

/// Whether clients may speak TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tls {
    Off,
    On { cert: PathBuf, key: PathBuf },
}

impl ServeConfig {
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        if self.tls_cert.as_os_str().is_empty() != self.tls_key.as_os_str().is_empty() {
            return Err(InvalidSetting::new(
                "tls_cert",
                "tls_cert and tls_key go together: set both (PEM files) or neither",
            ));
        }
        for (key, value) in [
            ("max_concurrent_queries", self.max_concurrent_queries),
            ("max_connections", self.max_connections),
        ] {
            if value == 0 {
                return Err(InvalidSetting::new(key, "must be at least 1"));
            }
        }
        Ok(())
    }

    pub fn tls(&self) -> Tls {
        match self.tls_cert.as_os_str().is_empty() {
            true => Tls::Off,
            false => Tls::On {
                cert: self.tls_cert.clone(),
                key: self.tls_key.clone(),
            },
        }
    }

    /// `query_timeout`, unless it is `0s`.
    pub fn timeout(&self) -> Option<Duration> {
        (!self.query_timeout.is_zero()).then_some(self.query_timeout)
    }

    /// `memory_limit`, unless it is `0`.
    pub fn memory(&self) -> Option<u64> {
        (self.memory_limit > 0).then_some(self.memory_limit)
    }
}
