//! The subcommands. This is the binary's edge: errors become `anyhow` with context here.

mod bench;
mod bluesky;
mod demo;
mod dlq;
mod init;
mod maintain;
mod produce;
mod run;
mod serve;
mod sql;
mod stop;
mod test;
mod x;

use std::path::Path;

use anyhow::Context;
use deltalake::arrow::util::pretty::pretty_format_batches;
use deltalake::datafusion::prelude::SessionContext;
use tracing_subscriber::EnvFilter;

use tweetlake::config::Config;
use tweetlake::embedded;
use tweetlake::stdout::{stdout, StdoutError};
use tweetlake::transform::functions::CompanyMap;
use tweetlake::transform::{ModelSet, COMPANIES_FILE};

pub use bench::bench_decode;
pub use bench::{bench, bench_dedup, bench_functions, bench_kafka, bench_maintenance, KafkaBench};
pub use bluesky::produce_bluesky;
pub use demo::demo;
pub use dlq::dlq_replay;
pub use init::{init, Existing};
pub use maintain::{maintain, MaintainRequest};
pub use produce::{replay, synth, Pace, Target};
pub use run::{plan, run};
pub use serve::serve;
pub use sql::{sql, SqlScript};
pub use test::test;
pub use x::{produce_x, rules, RulesAction};

/// The config file used when `--config` is not given, if it exists.
const DEFAULT_CONFIG: &str = "tweetlake.toml";

pub fn init_logging(filter: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(filter));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .compact()
        .init();
}

/// Picks the process's TLS crypto provider, once, before any TLS is used. rustls is built with
/// both ring and aws-lc-rs here (by different dependencies), so it cannot pick one itself, and a
/// client that asks for the process default (Jetstream's websocket) would panic. ring is what
/// reqwest (the X API, S3) picks on its own.
pub fn install_tls_provider() {
    // An error means a provider is installed already: that one stays.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Keeps one known, harmless panic off the terminal: when a Parquet upload fails (a full disk,
/// say), delta-rs aborts object_store's buffered writer, which panics by design once it began
/// its final flush. delta-rs catches that panic and returns the upload's own error, which the
/// run reports in one line; printed, the panic only looks like a crash.
pub fn quiet_caught_upload_panics() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let in_buffered_writer = info
            .location()
            .is_some_and(|l| l.file().contains("object_store") && l.file().ends_with("buffered.rs"));
        let message = info.payload().downcast_ref::<&str>().copied();
        if in_buffered_writer && message == Some("Already shut down") {
            return;
        }
        default(info)
    }));
}

/// An error and its causes on one line: `what failed: why: root cause`.
pub fn one_line(error: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in error.chain() {
        let text = cause.to_string().replace('\n', " ");
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
    }
    parts.join(": ")
}

/// Whether `error` is a write to stdout whose reader closed the pipe (`tweetlake ... | head`):
/// the reader has what it wanted, so this is a normal end.
pub fn stdout_closed(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<StdoutError>()
            .is_some_and(StdoutError::is_closed_pipe)
    })
}

pub fn load_config(path: Option<&Path>) -> anyhow::Result<Config> {
    let default = Path::new(DEFAULT_CONFIG);
    let path = path.or_else(|| default.exists().then_some(default));
    Ok(Config::load(path)?)
}

/// Whether the built-in models stand in for `pipeline.sql_dir`: the default directory is absent.
pub fn builtin_models(config: &Config) -> bool {
    let dir = &config.pipeline.sql_dir;
    !dir.exists() && dir == Path::new("sql")
}

/// The models in `pipeline.sql_dir`; the built-in ones when the default directory is absent.
pub fn load_models(config: &Config) -> anyhow::Result<ModelSet> {
    let replays = tweetlake::dlq::queue_table(&config.dlq.table);
    let reserved = [config.dlq.table.as_str(), replays.as_str()];
    let dir = &config.pipeline.sql_dir;
    if builtin_models(config) {
        tracing::info!(
            "no ./sql directory: using the built-in models (`tweetlake init` writes them out to edit)"
        );
        return Ok(embedded::models(&reserved)?);
    }
    Ok(ModelSet::load_dir(dir, &reserved)?)
}

/// The company list next to the configured models, else the built-in one (`company_of`).
pub fn company_map(config: &Config) -> anyhow::Result<CompanyMap> {
    let path = config.pipeline.sql_dir.join(COMPANIES_FILE);
    if path.exists() {
        return Ok(CompanyMap::load(&path)?);
    }
    Ok(CompanyMap::from_csv_str(embedded::COMPANIES)?)
}

/// Runs `sql` and prints its result as a table.
pub async fn print_query(ctx: &SessionContext, sql: &str) -> anyhow::Result<()> {
    let batches = ctx
        .sql(sql)
        .await
        .with_context(|| format!("query `{sql}`"))?
        .collect()
        .await?;
    writeln!(stdout(), "{}", pretty_format_batches(&batches)?)?;
    Ok(())
}
