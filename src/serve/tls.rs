//! TLS for clients that ask for it (`sslmode=require`), from a PEM certificate chain and key.

use std::path::Path;
use std::sync::Arc;

use datafusion_postgres::pgwire::tokio::tokio_rustls::rustls::{self, ServerConfig};
use datafusion_postgres::pgwire::tokio::TlsAcceptor;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::ServeError;

/// The ALPN protocol of Postgres' direct TLS (libpq 17 `sslnegotiation=direct`).
const ALPN_POSTGRESQL: &[u8] = b"postgresql";

/// A TLS acceptor serving `cert` with `key`; any problem with either is an error naming the file.
pub fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, ServeError> {
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| ServeError::tls(cert, e))?;
    if certs.is_empty() {
        return Err(ServeError::tls(cert, "no certificate in the file"));
    }
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| ServeError::tls(key, e))?;
    // The build has two crypto providers (ring and aws-lc-rs): name one.
    let mut config = ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| ServeError::tls(cert, e))?
        .with_no_client_auth()
        .with_single_cert(certs, key_der)
        .map_err(|e| ServeError::tls(cert, format!("{e} (does {} belong to it?)", key.display())))?;
    config.alpn_protocols = vec![ALPN_POSTGRESQL.to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}
