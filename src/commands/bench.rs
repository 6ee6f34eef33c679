use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::sync::watch;

use tweetlake::config::Config;
use tweetlake::decode::{BatchContext, MessageDecoder};
use tweetlake::embedded;
use tweetlake::pipeline::{table_writes, Pipeline, RunMode};
use tweetlake::produce::synth::{self, SynthOptions};
use tweetlake::sink::{DeltaSink, Lake};
use tweetlake::source::{FileSource, Positions, ReadLimits, Source};

/// Throughput of one stage over the whole data set.
struct Stage {
    name: &'static str,
    elapsed: Duration,
}

/// Generates `records` posts, then times each stage alone and the whole pipeline end to end.
pub async fn bench(records: usize, batch: usize, dir: Option<&Path>) -> anyhow::Result<()> {
    let dir = dir.map_or_else(
        || std::env::temp_dir().join(format!("tweetlake-bench-{}", std::process::id())),
        PathBuf::from,
    );
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("clear {}", dir.display()))?;
    }
    eprintln!("generating {records} synthetic posts...");
    let data: std::sync::Arc<[u8]> = synth::jsonl(SynthOptions::default(), records).into();
    let megabytes = data.len() as f64 / 1e6;
    eprintln!(
        "{megabytes:.1} MB of JSON ({:.0} bytes per post); lakes under {}",
        data.len() as f64 / records as f64,
        dir.display()
    );

    let mut config = Config::default();
    config.pipeline.max_records_per_batch = batch;
    config.pipeline.name = "bench".into();
    let models = embedded::models(&[config.dlq.table.as_str()])?;

    let mut stages = stage_timings(&config, &data, &models, &dir.join("stages")).await?;

    config.lake.uri = dir.join("end_to_end").display().to_string();
    config.pipeline.progress_log = dir.join("progress.ndjson").display().to_string();
    let source = FileSource::from_bytes("bench.jsonl", data.clone());
    let mut pipeline = Pipeline::new(&config, source, models)?;
    let (_stop, stopped) = watch::channel(false);
    let started = Instant::now();
    let summary = pipeline.run(RunMode::Once, stopped).await?;
    stages.push(Stage {
        name: "end to end",
        elapsed: started.elapsed(),
    });
    anyhow::ensure!(
        summary.input_rows == records,
        "end to end read {} of {records} records",
        summary.input_rows
    );

    println!(
        "{:<12} {:>10} {:>14} {:>10}",
        "stage", "seconds", "records/s", "MB/s"
    );
    for stage in &stages {
        let secs = stage.elapsed.as_secs_f64();
        println!(
            "{:<12} {:>10.2} {:>14.0} {:>10.1}",
            stage.name,
            secs,
            records as f64 / secs,
            megabytes / secs
        );
    }
    if !dir.starts_with(std::env::temp_dir()) {
        return Ok(());
    }
    std::fs::remove_dir_all(&dir).with_context(|| format!("remove {}", dir.display()))
}

/// Times read, decode, SQL and Delta write separately, batch by batch.
async fn stage_timings(
    config: &Config,
    data: &std::sync::Arc<[u8]>,
    models: &tweetlake::transform::ModelSet,
    lake_dir: &Path,
) -> anyhow::Result<Vec<Stage>> {
    let mut source = FileSource::from_bytes("bench.jsonl", data.clone());
    let decoder = MessageDecoder::new(config.pipeline.max_message_bytes);
    let sink = DeltaSink::new(
        Lake::new(&lake_dir.display().to_string(), &Default::default())?,
        "bench",
    );
    let limits = ReadLimits {
        max_records: config.pipeline.max_records_per_batch,
        max_bytes: usize::MAX,
        deadline: None,
        until: None,
    };
    let (mut read, mut decode, mut sql, mut write) =
        (Duration::ZERO, Duration::ZERO, Duration::ZERO, Duration::ZERO);
    let mut positions: Positions = source.initial_positions().await?;
    for batch_id in 0.. {
        let t = Instant::now();
        let batch = source.read_next(&positions, &limits).await?;
        read += t.elapsed();
        if batch.records.num_rows() == 0 {
            break;
        }
        positions = batch
            .ranges
            .iter()
            .map(|r| (r.topic_partition(), r.end))
            .collect();
        let t = Instant::now();
        let decoded = decoder.decode(
            &batch.records,
            BatchContext {
                batch_id,
                planned_at_micros: 0,
            },
        )?;
        decode += t.elapsed();
        let t = Instant::now();
        let outputs = models.run(decoded.bronze.clone()).await?;
        sql += t.elapsed();
        let t = Instant::now();
        for (spec, schema, batches) in table_writes(models, decoded, outputs, &config.dlq.table) {
            sink.commit(&spec, schema, batches, &batch.ranges).await?;
        }
        write += t.elapsed();
    }
    Ok(vec![
        Stage {
            name: "read",
            elapsed: read,
        },
        Stage {
            name: "decode",
            elapsed: decode,
        },
        Stage {
            name: "sql",
            elapsed: sql,
        },
        Stage {
            name: "delta write",
            elapsed: write,
        },
    ])
}
