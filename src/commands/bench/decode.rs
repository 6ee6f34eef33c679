//! `bench --decode`: what bad records cost the decoder. A batch of clean posts and the same
//! number with a share malformed are decoded alternately, round after round, so the machine's
//! noise (+-30% on a shared 2-core box) falls on both alike and the ratio is read per round.

use std::time::Instant;

use deltalake::arrow::array::RecordBatch;
use tweetlake::decode::{BatchContext, MessageDecoder};
use tweetlake::produce::synth::{self, SynthOptions};
use tweetlake::source::FileSource;
use tweetlake::stdout::stdout;

use super::percentile;

/// Posts per batch: what a 48 MiB batch (the default) holds of 2.25 KB posts.
const RECORDS: usize = 22_000;
/// The share of bad records issue 15 sets the 1.2x target for.
const MALFORMED_SHARE: f64 = 0.01;
const ROUNDS: usize = 9;

/// Times [`MessageDecoder::decode_parallel`] (as the pipeline calls it) on a clean batch and on
/// one with `malformed_share` bad records, alternately, and prints the medians and their ratio.
pub async fn bench_decode(records: Option<usize>, malformed_share: Option<f64>) -> anyhow::Result<()> {
    let records = records.unwrap_or(RECORDS);
    let malformed_share = malformed_share.unwrap_or(MALFORMED_SHARE);
    let clean = raw_batch(0.0, records).await?;
    let malformed = raw_batch(malformed_share, records).await?;
    let decoder = MessageDecoder::new(usize::MAX);
    let context = BatchContext {
        batch_id: 0,
        planned_at_micros: 0,
    };
    let dead_letters = decoder
        .decode_parallel(&malformed, context)?
        .dead_letters
        .num_rows();
    let mut times = [Vec::new(), Vec::new()];
    for _ in 0..ROUNDS {
        for (batch, times) in [&clean, &malformed].into_iter().zip(&mut times) {
            let started = Instant::now();
            decoder.decode_parallel(batch, context)?;
            times.push(started.elapsed().as_secs_f64());
        }
    }
    let ratios: Vec<f64> = times[1]
        .iter()
        .zip(&times[0])
        .map(|(bad, good)| bad / good)
        .collect();

    let mut out = stdout();
    writeln!(
        out,
        "{records} posts per batch; {dead_letters} dead letters at {:.1}% malformed; {ROUNDS} rounds, alternating",
        100.0 * malformed_share
    )?;
    writeln!(
        out,
        "{:<12} {:>10} {:>10} {:>12}",
        "batch", "median ms", "min ms", "records/s"
    )?;
    for (name, times) in ["clean", "malformed"].into_iter().zip(times) {
        let fastest = times.iter().copied().fold(f64::INFINITY, f64::min);
        let median = percentile(&times, 0.5);
        writeln!(
            out,
            "{name:<12} {:>10.1} {:>10.1} {:>12.0}",
            median * 1e3,
            fastest * 1e3,
            records as f64 / median
        )?;
    }
    writeln!(
        out,
        "malformed / clean: {:.2} (median of the rounds' ratios; per round {})",
        percentile(&ratios, 0.5),
        ratios
            .iter()
            .map(|r| format!("{r:.2}"))
            .collect::<Vec<_>>()
            .join(" ")
    )?;
    Ok(())
}

async fn raw_batch(malformed_share: f64, records: usize) -> anyhow::Result<RecordBatch> {
    let options = SynthOptions {
        malformed_share,
        ..SynthOptions::default()
    };
    let posts = synth::jsonl(options, records);
    Ok(FileSource::from_bytes("bench.jsonl", posts).read_all().await?)
}
