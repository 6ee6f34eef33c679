use std::net::SocketAddr;
use std::path::Path;

use anyhow::Context;

use tweetlake::serve::Server;
use tweetlake::stdout::stdout;

use super::stop::stop_on_signal;
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
    let mut stopped = stop_on_signal("stopping: no new connections")?;
    // The one line on stdout: scripts and tests wait for it.
    writeln!(
        stdout(),
        "tweetlake serve: {} on {}",
        config.lake.uri,
        server.describe()
    )?;
    server
        .run(async move { drop(stopped.wait_for(|stop| *stop).await) })
        .await;
    tracing::info!("stopped");
    Ok(())
}
