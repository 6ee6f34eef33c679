use std::net::SocketAddr;
use std::path::Path;

use anyhow::Context;

use tweetlake::serve::Server;

use super::{company_map, load_config};

/// `tweetlake serve`: the lake over the Postgres wire protocol until Ctrl-C or SIGTERM.
pub async fn serve(config_path: Option<&Path>, listen: Option<SocketAddr>) -> anyhow::Result<()> {
    let mut config = load_config(config_path)?;
    if let Some(listen) = listen {
        config.serve.listen = listen;
    }
    let lake = config.lake.open()?;
    let companies = company_map(&config)?;
    let server = Server::bind(&config.serve, config.repl.max_bytes_scanned, lake, &companies)
        .await
        .with_context(|| format!("serving the lake at {}", config.lake.uri))?;
    // The one line on stdout: scripts and tests wait for it.
    println!("tweetlake serve: {} on {}", config.lake.uri, server.describe());
    server.run(shutdown()).await;
    tracing::info!("stopped");
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("a SIGTERM handler installs");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
