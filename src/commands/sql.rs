use std::io::{IsTerminal, Read};
use std::path::{Path, PathBuf};

use anyhow::Context;

use tweetlake::repl::{self, Format, Options, ReplError, Session};

use super::{company_map, load_config};

/// What `tweetlake sql` runs: a script (from -e, -f or piped stdin) or the interactive prompt.
pub enum SqlScript {
    Text(String),
    Interactive,
}

impl SqlScript {
    pub fn from_args(execute: Option<String>, file: Option<PathBuf>) -> anyhow::Result<Self> {
        if let Some(text) = execute {
            return Ok(Self::Text(text));
        }
        if let Some(path) = file {
            let text =
                std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
            return Ok(Self::Text(text));
        }
        if std::io::stdin().is_terminal() {
            return Ok(Self::Interactive);
        }
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("reading SQL from stdin")?;
        Ok(Self::Text(text))
    }
}

pub async fn sql(
    config_path: Option<&Path>,
    script: SqlScript,
    format: Option<Format>,
    output: Option<PathBuf>,
) -> anyhow::Result<()> {
    let config = load_config(config_path)?;
    let lake = config.lake.open()?;
    let options = Options {
        interactive: matches!(script, SqlScript::Interactive),
        format,
        output,
    };
    let companies = company_map(&config)?;
    let mut session = Session::open(lake, &config.repl, options, &companies)
        .await
        .with_context(|| format!("opening the lake at {}", config.lake.uri))?;
    // `dlq replay` makes its queue on first use; saved queries (dlq_triage) read it before.
    let replays = tweetlake::dlq::queue_table(&config.dlq.table);
    session
        .expect_table(&replays, tweetlake::dlq::replay::queue_schema())
        .await?;
    match script {
        SqlScript::Text(text) => {
            session.run_text(&text).await.map_err(script_error)?;
        }
        SqlScript::Interactive => {
            repl::interactive(&mut session, repl::history_path(&config.repl).as_deref()).await?
        }
    }
    Ok(())
}

/// A script's error on one line, as the prompt shows it; a write to stdout keeps its type, so
/// that a closed pipe (`| head`) ends the command quietly.
fn script_error(error: ReplError) -> anyhow::Error {
    match error {
        ReplError::Stdout(error) => error.into(),
        other => anyhow::anyhow!(repl::one_line(&other)),
    }
}
