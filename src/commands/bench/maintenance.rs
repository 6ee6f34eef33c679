//! `tweetlake bench --maintenance`: what a long run of small batches does to the lake, what
//! maintenance gives back, and what automatic maintenance costs the ingest rate.
//!
//! Three lakes from the same posts: small batches without maintenance, small batches with the
//! automatic maintenance of `run`, and all posts in one batch (the reference). The first is
//! then maintained by hand (`maintain`, then `maintain --retention 0s --force`). For each,
//! data files and bytes, and the time of a silver and a gold query.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use deltalake::datafusion::prelude::SessionContext;
use tokio::sync::watch;

use tweetlake::config::Config;
use tweetlake::embedded;
use tweetlake::lake::Lake;
use tweetlake::maintain::{Execution, RetentionCheck, TableMaintenance, Usage};
use tweetlake::pipeline::RunMode;
use tweetlake::settings::human_bytes;
use tweetlake::source::FileSource;
use tweetlake::stdout::stdout;
use tweetlake::transform::functions::CompanyMap;

/// The queries timed on each lake: a silver filter-and-aggregate and a gold aggregate.
const QUERIES: [(&str, &str); 2] = [
    (
        "silver",
        "SELECT count(*), avg(sentiment) FROM silver.tweets WHERE company = 'AAPL'",
    ),
    (
        "gold",
        "SELECT company, sum(posts), sum(sentiment_sum) / sum(scored_posts) FROM gold.company_minute GROUP BY company",
    ),
];
/// Each query's time is the median of this many runs.
const QUERY_RUNS: usize = 5;

/// One lake's state: its files and the time of each query.
struct Measure {
    label: String,
    files: usize,
    bytes: u64,
    query_seconds: Vec<f64>,
}

pub async fn bench_maintenance(records: usize, batch: usize, dir: &Path) -> anyhow::Result<()> {
    eprintln!(
        "generating {records} synthetic posts; {} batches of {batch}",
        records.div_ceil(batch)
    );
    let data: Arc<[u8]> = tweetlake::produce::synth::jsonl(Default::default(), records).into();

    let (small, without, _) = ingest(&data, batch, Maintained::No, &dir.join("small")).await?;
    let (auto, with, longest_pause) = ingest(&data, batch, Maintained::Yes, &dir.join("auto")).await?;
    let (one, _, _) = ingest(&data, records, Maintained::No, &dir.join("one_batch")).await?;
    writeln!(
        stdout(),
        "ingest of {records} posts in batches of {batch}: {:.1} s without maintenance, {:.1} s with automatic \
         maintenance ({:+.1}%)",
        without.as_secs_f64(),
        with.as_secs_f64(),
        100.0 * (with.as_secs_f64() / without.as_secs_f64() - 1.0)
    )?;
    writeln!(
        stdout(),
        "longest pause of ingestion for automatic maintenance: {} ms (bound: maintenance.max_pause, {} ms)",
        longest_pause.as_millis(),
        Config::default().maintenance.max_pause.as_millis()
    )?;

    let mut rows = vec![
        measure("small batches", &small).await?,
        measure("small batches, automatic maintenance", &auto).await?,
    ];
    let started = Instant::now();
    maintain(
        &small,
        Duration::from_secs(7 * 24 * 3600),
        RetentionCheck::Enforce,
    )
    .await?;
    rows.push(
        measure(
            &format!("after maintain ({:.1} s)", started.elapsed().as_secs_f64()),
            &small,
        )
        .await?,
    );
    let started = Instant::now();
    maintain(&small, Duration::ZERO, RetentionCheck::Override).await?;
    rows.push(
        measure(
            &format!(
                "after maintain --retention 0s --force ({:.1} s)",
                started.elapsed().as_secs_f64()
            ),
            &small,
        )
        .await?,
    );
    rows.push(measure("one batch (reference)", &one).await?);
    print_table(&rows)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Maintained {
    Yes,
    No,
}

/// Runs the posts into a new lake at `dir` in batches of `batch`; returns the lake, the time
/// and the longest pause for automatic maintenance.
async fn ingest(
    data: &Arc<[u8]>,
    batch: usize,
    maintained: Maintained,
    dir: &Path,
) -> anyhow::Result<(Lake, Duration, Duration)> {
    let mut config = super::fresh_lake_config(dir, batch)?;
    config.maintenance.enabled = maintained == Maintained::Yes;
    let models = embedded::models(&[config.dlq.table.as_str()])?;
    let source = FileSource::from_bytes("bench.jsonl", data.clone());
    let mut pipeline = config.build_pipeline(source, models)?;
    let (_stop, stopped) = watch::channel(false);
    let started = Instant::now();
    let summary = pipeline.run(RunMode::Once, stopped).await?;
    Ok((
        config.lake.open()?,
        started.elapsed(),
        summary.longest_maintenance_pause,
    ))
}

async fn maintain(lake: &Lake, retention: Duration, check: RetentionCheck) -> anyhow::Result<()> {
    let models = embedded::models(&["dlq"])?;
    let config = Config::default();
    for target in config.maintenance_targets(&models) {
        if lake.table_names().await?.contains(&target.name) {
            TableMaintenance::new(lake, target, retention)
                .with_retention_check(check)
                .with_execution(Execution::Apply)
                .execute()
                .await?;
        }
    }
    Ok(())
}

async fn measure(label: &str, lake: &Lake) -> anyhow::Result<Measure> {
    let (mut files, mut bytes) = (0, 0);
    let names = lake.table_names().await?;
    for name in &names {
        let usage = Usage::of(lake, name).await?;
        files += usage.files;
        bytes += usage.bytes;
    }
    let companies = CompanyMap::from_csv_str(embedded::COMPANIES)?;
    let ctx: SessionContext = tweetlake::transform::session(&companies);
    for name in &names {
        lake.register_table(&ctx, name).await?;
    }
    let mut query_seconds = Vec::new();
    for (_, sql) in QUERIES {
        let mut times = Vec::with_capacity(QUERY_RUNS);
        for _ in 0..QUERY_RUNS {
            let started = Instant::now();
            ctx.sql(sql).await?.collect().await?;
            times.push(started.elapsed().as_secs_f64());
        }
        times.sort_by(f64::total_cmp);
        query_seconds.push(times[QUERY_RUNS / 2]);
    }
    Ok(Measure {
        label: label.to_string(),
        files,
        bytes,
        query_seconds,
    })
}

fn print_table(rows: &[Measure]) -> anyhow::Result<()> {
    let reference = rows.last().expect("the one-batch lake is measured last");
    writeln!(
        stdout(),
        "{:<52} {:>7} {:>11} {:>7} {:>10} {:>7} {:>10} {:>7}",
        "lake",
        "files",
        "size",
        "x ref",
        "silver q",
        "x ref",
        "gold q",
        "x ref"
    )?;
    for row in rows {
        let ratio = |a: f64, b: f64| a / b.max(1e-9);
        writeln!(
            stdout(),
            "{:<52} {:>7} {:>11} {:>6.2}x {:>9.3}s {:>6.2}x {:>9.3}s {:>6.2}x",
            row.label,
            row.files,
            human_bytes(row.bytes),
            ratio(row.bytes as f64, reference.bytes as f64),
            row.query_seconds[0],
            ratio(row.query_seconds[0], reference.query_seconds[0]),
            row.query_seconds[1],
            ratio(row.query_seconds[1], reference.query_seconds[1]),
        )?;
    }
    Ok(())
}
