//! `tweetlake bench --dedup`: what silver's check across batches (`insert_new` on `id`) costs
//! a batch.
//!
//! One stream of batches, each holding new posts and, first, copies of the previous batch's
//! newest posts (what a reconnect's backfill sends again), goes through the shipped models and
//! through the same models with silver a plain append. The two alternate, each round on fresh
//! lakes, so the machine's drift hits both alike.

use std::path::Path;
use std::sync::Arc;

use tokio::sync::watch;

use tweetlake::embedded;
use tweetlake::pipeline::RunMode;
use tweetlake::produce::synth;
use tweetlake::source::FileSource;
use tweetlake::stdout::stdout;

use super::{fresh_lake_config, percentile};

/// Rounds of the two variants, in alternating order.
const ROUNDS: usize = 3;
/// Share of each batch that is copies of the previous batch's posts.
const COPY_SHARE: f64 = 0.05;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Silver {
    /// As shipped: `insert_new` on `id`, 2-day window.
    InsertNew,
    /// The same SQL appended: copies across batches kept.
    Append,
}

impl Silver {
    fn label(self) -> &'static str {
        match self {
            Self::InsertNew => "insert_new (shipped)",
            Self::Append => "append",
        }
    }
}

/// One run's batches, from its progress lines.
#[derive(Default)]
struct Timings {
    batch_ms: Vec<f64>,
    check_ms: Vec<f64>,
    silver_rows: u64,
    duplicates: u64,
}

pub async fn bench_dedup(records: usize, batch: usize, dir: &Path) -> anyhow::Result<()> {
    let (stream, batches) = stream_with_copies(records, batch);
    eprintln!(
        "{batches} batches of {batch} records ({:.0}% copies of the previous batch's posts); {ROUNDS} rounds",
        COPY_SHARE * 100.0
    );
    let mut runs: Vec<(Silver, Timings)> = Vec::new();
    for round in 0..ROUNDS {
        let order = match round % 2 {
            0 => [Silver::InsertNew, Silver::Append],
            _ => [Silver::Append, Silver::InsertNew],
        };
        for silver in order {
            let lake = dir.join(format!("round{round}-{silver:?}"));
            runs.push((silver, ingest(&stream, batch, silver, &lake).await?));
        }
    }
    report(&runs)
}

/// `records` posts in batches of `batch` records: the first batch all new, each later one
/// starting with copies of the newest posts of the one before. Returns the JSONL and the number
/// of batches.
fn stream_with_copies(records: usize, batch: usize) -> (Arc<[u8]>, usize) {
    let text = synth::jsonl(Default::default(), records);
    let posts: Vec<&[u8]> = text.split(|&b| b == b'\n').filter(|l| !l.is_empty()).collect();
    let copies = ((batch as f64 * COPY_SHARE) as usize).clamp(1, batch - 1);
    let mut stream = Vec::with_capacity(text.len() * 21 / 20);
    let mut push = |line: &[u8]| {
        stream.extend_from_slice(line);
        stream.push(b'\n');
    };
    let (mut next, mut batches) = (0, 0);
    while next < posts.len() {
        let again = match batches {
            0 => &[][..],
            _ => &posts[next - copies..next],
        };
        let fresh = &posts[next..(next + batch - again.len()).min(posts.len())];
        again.iter().chain(fresh).for_each(|line| push(line));
        next += fresh.len();
        batches += 1;
    }
    (stream.into(), batches)
}

/// Runs the pipeline over `stream` into a fresh lake at `dir`, silver materialized as `silver`.
async fn ingest(stream: &Arc<[u8]>, batch: usize, silver: Silver, dir: &Path) -> anyhow::Result<Timings> {
    let config = fresh_lake_config(dir, batch)?;
    let mut files = embedded::model_sources();
    if silver == Silver::Append {
        for (_, _, sql) in &mut files {
            *sql = sql.replace("-- @materialized: insert_new", "-- @materialized: append");
            *sql = sql
                .replace("-- @unique_key: id\n", "")
                .replace("-- @dedup_window:", "-- dedup_window:");
        }
    }
    let models = embedded::models_from(files, &[config.dlq.table.as_str()])?;
    let source = FileSource::from_bytes("bench.jsonl", stream.clone());
    let mut pipeline = config.build_pipeline(source, models)?;
    let (_stop, stopped) = watch::channel(false);
    pipeline.run(RunMode::Once, stopped).await?;
    timings(Path::new(&config.pipeline.progress_log))
}

/// Each batch's total time and silver's check, from the progress lines at `path`.
fn timings(path: &Path) -> anyhow::Result<Timings> {
    let mut timings = Timings::default();
    for line in std::fs::read_to_string(path)?.lines() {
        let report: serde_json::Value = serde_json::from_str(line)?;
        let silver = &report["tables"]["silver.tweets"];
        timings
            .batch_ms
            .push(report["durations"]["total_ms"].as_f64().unwrap_or_default());
        timings.silver_rows += silver["rows"].as_u64().unwrap_or_default();
        if let Some(ms) = silver["dedup"]["ms"].as_f64() {
            timings.check_ms.push(ms);
            timings.duplicates += silver["dedup"]["duplicates"].as_u64().unwrap_or_default();
        }
    }
    Ok(timings)
}

fn report(runs: &[(Silver, Timings)]) -> anyhow::Result<()> {
    let mut out = stdout();
    writeln!(
        out,
        "{:<22} {:>7} {:>12} {:>12} {:>12} {:>11} {:>11}",
        "silver", "round", "batch p50 ms", "batch p95 ms", "silver rows", "duplicates", "check p50 ms"
    )?;
    for (i, (silver, t)) in runs.iter().enumerate() {
        let check = match t.check_ms.is_empty() {
            true => "-".to_string(),
            false => format!("{:.1}", percentile(&t.check_ms, 0.5)),
        };
        writeln!(
            out,
            "{:<22} {:>7} {:>12.1} {:>12.1} {:>12} {:>11} {:>11}",
            silver.label(),
            i / 2 + 1,
            percentile(&t.batch_ms, 0.5),
            percentile(&t.batch_ms, 0.95),
            t.silver_rows,
            t.duplicates,
            check
        )?;
    }
    let median_of = |silver: Silver| {
        let all: Vec<f64> = runs
            .iter()
            .filter(|(s, _)| *s == silver)
            .flat_map(|(_, t)| t.batch_ms.iter().copied())
            .collect();
        percentile(&all, 0.5)
    };
    let (with, without) = (median_of(Silver::InsertNew), median_of(Silver::Append));
    let checks: Vec<f64> = runs
        .iter()
        .flat_map(|(_, t)| t.check_ms.iter().copied())
        .collect();
    let last_tenth: Vec<f64> = runs
        .iter()
        .flat_map(|(_, t)| t.check_ms[t.check_ms.len() * 9 / 10..].iter().copied())
        .collect();
    writeln!(
        out,
        "median batch: {with:.1} ms with the check, {without:.1} ms without ({:+.1}%); the check itself: \
         p50 {:.1} ms, p95 {:.1} ms, max {:.1} ms, p50 over each run's last tenth of batches {:.1} ms",
        100.0 * (with / without - 1.0),
        percentile(&checks, 0.5),
        percentile(&checks, 0.95),
        percentile(&checks, 1.0),
        percentile(&last_tenth, 0.5),
    )?;
    Ok(())
}
