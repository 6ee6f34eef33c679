use std::path::Path;

use anyhow::bail;

use tweetlake::embedded;
use tweetlake::modeltest::{self, Report, TestFiles};
use tweetlake::stdout::{stdout, StdoutError};
use tweetlake::transform::TESTS_DIR;

use super::{builtin_models, load_config, load_models};

/// Runs the model tests of the configured SQL directory (the built-in ones with the built-in
/// models), prints every outcome, the failures as tables and a summary line; fails if any
/// check failed.
pub async fn test(config_path: Option<&Path>) -> anyhow::Result<()> {
    let config = load_config(config_path)?;
    let models = load_models(&config)?;
    let files = match builtin_models(&config) {
        true => TestFiles::Embedded(embedded::TESTS),
        false => TestFiles::Dir(config.pipeline.sql_dir.join(TESTS_DIR)),
    };
    let report = modeltest::run(&models, &config.dlq.table, &files).await?;
    print_report(&report)?;
    if report.outcomes.is_empty() {
        writeln!(
            stdout(),
            "no tests found: add *.toml or *.sql files to {TESTS_DIR}/ next to the models (see README)"
        )?;
    }
    let failed = report.failed();
    if failed > 0 {
        bail!("{failed} of {} model tests failed", report.outcomes.len());
    }
    Ok(())
}

fn print_report(report: &Report) -> Result<(), StdoutError> {
    let mut out = stdout();
    for run in &report.runs {
        let batches = match run.batch_size {
            Some(size) => format!(" in batches of {size}"),
            None => String::new(),
        };
        writeln!(
            out,
            "ran the models over {}{batches}: {} records, {} batch(es), {} dead letters",
            run.input, run.summary.input_rows, run.summary.batches, run.summary.dead_letters
        )?;
    }
    writeln!(out)?;
    for outcome in &report.outcomes {
        let status = if outcome.failure.is_some() { "FAIL" } else { "ok  " };
        writeln!(out, "{status}  {}: {}", outcome.origin, outcome.name)?;
        if let Some(failure) = &outcome.failure {
            for line in failure.lines() {
                writeln!(out, "      {line}")?;
            }
        }
    }
    writeln!(out, "\n{} passed, {} failed", report.passed(), report.failed())
}
