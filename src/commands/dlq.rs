//! `tweetlake dlq replay`: the chosen dead letters decoded again with today's decoder and run
//! through today's models, exactly once (see `tweetlake::dlq::replay`).

use std::path::Path;

use tweetlake::dlq::{Queued, Replay, Selection};
use tweetlake::maintain::Execution;
use tweetlake::pipeline::RunMode;
use tweetlake::stdout::{stdout, StdoutError};

use super::load_config;
use super::run::{run_pipeline, FINISH_BATCH};
use super::stop::stop_on_signal;

/// Queues the dead letters `filter` chooses that decode now, then replays the queue; with
/// `Execution::DryRun`, only says what that would do.
pub async fn dlq_replay(
    config_path: Option<&Path>,
    filter: Option<&str>,
    execution: Execution,
) -> anyhow::Result<()> {
    let config = load_config(config_path)?;
    let replay = Replay::new(
        config.lake.open()?,
        &config.dlq.table,
        config.pipeline.max_message_bytes,
    );
    let selection = replay.select(filter).await?;
    if execution == Execution::DryRun {
        print_dry_run(&selection)?;
        return Ok(());
    }
    let stop = stop_on_signal(FINISH_BATCH)?;
    let queued = replay.queue(&selection).await?;
    // Always run: a replay cut short before leaves queued records that this one finishes.
    let replayed = match replay.source().await? {
        Some(source) => {
            run_pipeline(&config, source, RunMode::Once, stop)
                .await?
                .input_rows
        }
        None => 0,
    };
    print_summary(&selection, queued, replayed, replay.queue_table())?;
    Ok(())
}

fn print_dry_run(selection: &Selection) -> Result<(), StdoutError> {
    writeln!(
        stdout(),
        "dry run: {} dead letters chosen and not replayed yet; {} decode now, {} still fail; nothing written",
        selection.matched(),
        selection.decodable(),
        selection.still_failing()
    )?;
    print_reasons("rejected with", &selection.reasons_then())?;
    print_reasons("still failing with", &selection.reasons_now())
}

fn print_summary(
    selection: &Selection,
    queued: Queued,
    replayed: usize,
    queue: &str,
) -> Result<(), StdoutError> {
    let range = match queued.rows {
        0 => String::new(),
        n => format!(
            " (into {queue}, replay offsets {}..{})",
            queued.first_offset,
            queued.first_offset + n as i64
        ),
    };
    writeln!(
        stdout(),
        "dlq replay: queued {}{range}, replayed {replayed}, decoded now {}, still failing {}",
        queued.rows,
        selection.decodable(),
        selection.still_failing()
    )?;
    print_reasons("still failing with", &selection.reasons_now())
}

fn print_reasons(what: &str, reasons: &[(String, usize)]) -> Result<(), StdoutError> {
    for (reason, count) in reasons {
        writeln!(stdout(), "  {what}: {reason} ({count})")?;
    }
    Ok(())
}
