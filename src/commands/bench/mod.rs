use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::sync::watch;

mod decode;
mod dedup;
mod maintenance;
mod start;

use tweetlake::config::Config;
use tweetlake::decode::{BatchContext, MessageDecoder};
use tweetlake::embedded;
use tweetlake::kafka::KafkaPublisher;
use tweetlake::lake::Lake;
use tweetlake::pipeline::{table_writes, RunMode};
use tweetlake::produce::synth::{self, SynthOptions};
use tweetlake::sink::DeltaSink;
use tweetlake::source::{FileSource, KafkaSource, Positions, ReadLimits, Source};
use tweetlake::stdout::stdout;

pub use decode::bench_decode;
pub use dedup::bench_dedup;
pub use maintenance::bench_maintenance;

/// The configuration of a bench run into a fresh lake at `dir` (removed first, with its progress
/// log `dir.ndjson`) in batches of `batch` records.
fn fresh_lake_config(dir: &Path, batch: usize) -> anyhow::Result<Config> {
    let progress = dir.with_extension("ndjson");
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("remove {}", dir.display()))?;
    }
    if progress.exists() {
        std::fs::remove_file(&progress).with_context(|| format!("remove {}", progress.display()))?;
    }
    let mut config = Config::default();
    config.lake.uri = dir.display().to_string();
    config.pipeline.name = "bench".into();
    config.pipeline.max_records_per_batch = batch;
    config.pipeline.progress_log = progress.display().to_string();
    Ok(config)
}

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
    let mut pipeline = config.build_pipeline(source, models)?;
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

    writeln!(
        stdout(),
        "{:<12} {:>10} {:>14} {:>10}",
        "stage",
        "seconds",
        "records/s",
        "MB/s"
    )?;
    for stage in &stages {
        let secs = stage.elapsed.as_secs_f64();
        writeln!(
            stdout(),
            "{:<12} {:>10.2} {:>14.0} {:>10.1}",
            stage.name,
            secs,
            records as f64 / secs,
            megabytes / secs
        )?;
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
    let mut sink = DeltaSink::new(
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
        let decoded = decoder.decode_parallel(
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
        let writes = table_writes(models, decoded, outputs, &config.dlq.table);
        sink.commit_all(writes, &batch.ranges, |_| {}).await?;
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

/// Where the Kafka benchmark runs: a broker, and optionally an S3 lake besides local disk.
pub struct KafkaBench<'a> {
    pub bootstrap: &'a str,
    pub partitions: i32,
    /// A topic to measure as it is; else a new one with generated posts.
    pub existing_topic: Option<&'a str>,
    pub s3_lake: Option<&'a str>,
}

/// Kafka -> SQL -> Delta end to end on the real broker, beside the raw consume rate of the
/// same topic, so the ratio to the limit is visible.
pub async fn bench_kafka(
    records: usize,
    batch: usize,
    kafka: KafkaBench<'_>,
    dir: Option<&Path>,
) -> anyhow::Result<()> {
    let dir = dir.map_or_else(
        || std::env::temp_dir().join(format!("tweetlake-bench-{}", std::process::id())),
        PathBuf::from,
    );
    let topic = match kafka.existing_topic {
        Some(topic) => topic.to_string(),
        None => format!("tweetlake-bench-{}", std::process::id()),
    };
    let mut config = Config::default();
    config.source.kafka.connection.bootstrap_servers = kafka.bootstrap.to_string();
    config.source.kafka.use_only_topic(topic.clone());
    config.pipeline.max_records_per_batch = batch;
    config.pipeline.progress_log = dir.join("progress.ndjson").display().to_string();
    std::fs::create_dir_all(&dir)?;

    let mut rows = Vec::new();
    reset_peak_rss();
    if kafka.existing_topic.is_none() {
        create_topic(kafka.bootstrap, &topic, kafka.partitions).await?;
        eprintln!("generating and producing {records} synthetic posts to {topic}...");
        let started = Instant::now();
        tokio::task::spawn_blocking({
            let publisher = KafkaPublisher::connect(&config.source.kafka.connection, &topic)?;
            move || produce_synthetic(&publisher, records)
        })
        .await??;
        rows.push((
            "generate + produce".to_string(),
            started.elapsed(),
            reset_peak_rss(),
        ));
    }

    eprintln!("reading {topic} with a plain consumer...");
    let started = Instant::now();
    let (consumed, bytes) = tokio::task::spawn_blocking({
        let (bootstrap, topic) = (kafka.bootstrap.to_string(), topic.clone());
        move || raw_consume(&bootstrap, &topic)
    })
    .await??;
    let raw_elapsed = started.elapsed();
    rows.push(("raw consume".to_string(), raw_elapsed, reset_peak_rss()));
    anyhow::ensure!(
        kafka.existing_topic.is_some() || consumed == records,
        "raw consumer read {consumed} of {records} records"
    );
    let records = consumed;
    let megabytes = bytes as f64 / 1e6;

    let mut lakes = vec![("local disk".to_string(), dir.join("lake").display().to_string())];
    if let Some(uri) = kafka.s3_lake {
        lakes.push((
            "s3".to_string(),
            format!("{}/{}", uri.trim_end_matches('/'), topic),
        ));
    }
    for (name, uri) in lakes {
        config.lake.uri = uri;
        config.pipeline.name = format!("bench-{}", name.replace(' ', "-"));
        config.source.kafka.group_id = format!("{topic}-{}", config.pipeline.name);
        let source = KafkaSource::connect(
            &config.source.kafka,
            config.pipeline.max_bytes_per_batch,
            "tweetlake-bench",
        )
        .await?;
        let models = embedded::models(&[config.dlq.table.as_str()])?;
        let mut pipeline = config.build_pipeline(source, models)?;
        let (_stop, stopped) = watch::channel(false);
        let started = Instant::now();
        let summary = pipeline.run(RunMode::Once, stopped).await?;
        rows.push((format!("end to end, {name}"), started.elapsed(), reset_peak_rss()));
        anyhow::ensure!(
            summary.input_rows == records,
            "{name}: read {} of {records}",
            summary.input_rows
        );
    }

    writeln!(
        stdout(),
        "{records} posts, {megabytes:.1} MB, topic {topic} ({} partitions)",
        kafka.partitions
    )?;
    writeln!(
        stdout(),
        "{:<24} {:>10} {:>14} {:>10} {:>8} {:>14}",
        "stage",
        "seconds",
        "records/s",
        "MB/s",
        "vs raw",
        "peak RSS MiB"
    )?;
    for (name, elapsed, peak_rss) in &rows {
        let secs = elapsed.as_secs_f64();
        writeln!(
            stdout(),
            "{name:<24} {secs:>10.2} {:>14.0} {:>10.1} {:>7.0}% {peak_rss:>14.0}",
            records as f64 / secs,
            megabytes / secs,
            100.0 * raw_elapsed.as_secs_f64() / secs
        )?;
    }
    if kafka.existing_topic.is_some() {
        // Timing starts needs new posts, and an existing topic is not the bench's to write to.
        eprintln!("run --once start times are measured on a topic the bench creates (without --topic)");
        return Ok(());
    }
    let start = start::StartBench {
        connection: config.source.kafka.connection.clone(),
        topic,
        dir,
    };
    tokio::task::spawn_blocking(move || start::bench_once_start(&start)).await?
}

async fn create_topic(bootstrap: &str, topic: &str, partitions: i32) -> anyhow::Result<()> {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    let admin: AdminClient<rdkafka::client::DefaultClientContext> = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()?;
    let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    for result in admin.create_topics([&new], &AdminOptions::new()).await? {
        result.map_err(|(topic, code)| anyhow::anyhow!("create topic {topic}: {code}"))?;
    }
    Ok(())
}

/// How long the raw consumer waits for a record before giving up: a broker holding a large
/// backlog in memory can take seconds to answer the first fetch.
const RAW_IDLE_LIMIT: Duration = Duration::from_secs(60);

/// Reads the whole topic with a plain consumer, doing nothing with the records: the limit.
/// Returns the records and their payload bytes.
fn raw_consume(bootstrap: &str, topic: &str) -> anyhow::Result<(usize, u64)> {
    use rdkafka::consumer::Consumer;
    use rdkafka::error::KafkaError;
    let mut config = rdkafka::ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        // The end is the end-of-partition event: Tansu's high watermark can lag behind it.
        .set("enable.partition.eof", "true")
        .set("auto.offset.reset", "earliest");
    let consumer =
        tweetlake::source::kafka::quiet_consumer(&config, &format!("bench-raw-{topic}"), Default::default())?;
    let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let partitions = metadata.topics()[0].partitions().len();
    let mut list = rdkafka::TopicPartitionList::new();
    for p in 0..partitions as i32 {
        // From the low watermark, as the pipeline seeks a new partition.
        let (low, _) = consumer.fetch_watermarks(topic, p, Duration::from_secs(10))?;
        list.add_partition_offset(topic, p, rdkafka::Offset::Offset(low))?;
    }
    consumer.assign(&list)?;
    let (mut count, mut bytes, mut at_end) = (0, 0, 0);
    let mut last_news = Instant::now();
    while at_end < partitions {
        // `None` is not only a timeout: rdkafka also returns it after handling an event that
        // is no message (the assignment itself, before the first fetch of a large topic).
        match consumer.poll(Duration::from_secs(1)) {
            Some(Ok(message)) => {
                let payload = rdkafka::Message::payload(&message);
                count += usize::from(payload.is_some());
                bytes += payload.map_or(0, |p| p.len() as u64);
            }
            Some(Err(KafkaError::PartitionEOF(_))) => at_end += 1,
            Some(Err(e)) => anyhow::bail!("raw consume: {e}"),
            None if last_news.elapsed() > RAW_IDLE_LIMIT => {
                anyhow::bail!("raw consume: no record for {RAW_IDLE_LIMIT:?}")
            }
            None => continue,
        }
        last_news = Instant::now();
    }
    Ok((count, bytes))
}

/// The process's peak resident set size since the last call, in MiB, then a reset of the peak
/// so each stage reports its own (Linux; 0 elsewhere).
fn reset_peak_rss() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let peak = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0);
    // "5" resets the peak to the current resident size (proc(5), clear_refs).
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    peak
}

/// Posts per generated chunk: small enough that the data set never sits in memory whole.
const SYNTH_CHUNK: usize = 10_000;

/// Generates `records` synthetic posts on every core, chunk by chunk (distinct post ids), and
/// publishes them as they come.
fn produce_synthetic(publisher: &KafkaPublisher, records: usize) -> anyhow::Result<()> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let chunks = records.div_ceil(SYNTH_CHUNK);
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let next_chunk = AtomicUsize::new(0);
    let (sender, receiver) = std::sync::mpsc::sync_channel::<Vec<u8>>(workers * 2);
    std::thread::scope(|scope| {
        for _ in 0..workers {
            let (sender, next_chunk) = (sender.clone(), &next_chunk);
            scope.spawn(move || loop {
                let chunk = next_chunk.fetch_add(1, Ordering::Relaxed);
                if chunk >= chunks {
                    break;
                }
                let options = SynthOptions {
                    seed: 42 + chunk as u64,
                    first_sequence: (chunk * SYNTH_CHUNK) as u64,
                    ..SynthOptions::default()
                };
                let count = SYNTH_CHUNK.min(records - chunk * SYNTH_CHUNK);
                if sender.send(synth::jsonl(options, count)).is_err() {
                    break; // the publisher failed and stopped listening
                }
            });
        }
        drop(sender);
        for chunk in receiver {
            for line in chunk.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                publisher.publish(b"", line)?;
            }
        }
        publisher.flush()?;
        Ok(())
    })
}

/// Rows/s of each tweet function over the text of `records` synthetic posts, on one core
/// (`scan only` is the baseline of reading the column).
pub async fn bench_functions(records: usize) -> anyhow::Result<()> {
    use deltalake::datafusion::datasource::MemTable;
    use deltalake::datafusion::prelude::{SessionConfig, SessionContext};
    use tweetlake::transform::functions::{register_all, CompanyMap};

    let data: std::sync::Arc<[u8]> = synth::jsonl(SynthOptions::default(), records).into();
    let raw = FileSource::from_bytes("bench.jsonl", data).read_all().await?;
    let context = BatchContext {
        batch_id: 0,
        planned_at_micros: 0,
    };
    let bronze = MessageDecoder::new(usize::MAX)
        .decode_parallel(&raw, context)?
        .bronze;
    let ctx = SessionContext::new_with_config(SessionConfig::new().with_target_partitions(1));
    register_all(&ctx, &CompanyMap::from_csv_str(embedded::COMPANIES)?);
    ctx.register_table(
        "bronze",
        std::sync::Arc::new(MemTable::try_new(
            tweetlake::decode::bronze_schema(),
            vec![bronze],
        )?),
    )?;
    ctx.sql(
        "CREATE TABLE posts AS SELECT data['text'] AS text, \
         CAST(_offset % 360 - 180 AS DOUBLE) AS lon, CAST(_offset % 180 - 90 AS DOUBLE) AS lat, \
         CAST(_offset % 200 AS DOUBLE) / 100.0 - 1.0 AS score FROM bronze",
    )
    .await?
    .collect()
    .await?;
    let bbox = "[-74.026675, 40.683935, -73.910408, 40.877483]";
    let cases = [
        ("scan only", "text".to_string()),
        ("clean_text", "clean_text(text)".into()),
        ("extract_hashtags", "extract_hashtags(text)".into()),
        ("extract_cashtags", "extract_cashtags(text)".into()),
        ("extract_mentions", "extract_mentions(text)".into()),
        ("extract_urls", "extract_urls(text)".into()),
        ("sentiment", "sentiment(text)".into()),
        ("sentiment_label", "sentiment_label(score)".into()),
        ("detect_lang", "detect_lang(text)".into()),
        ("company_of", "company_of(text)".into()),
        (
            "bbox_centroid",
            "bbox_centroid(make_array(lon - 1, lat - 1, lon + 1, lat + 1))".into(),
        ),
        ("point_in_bbox", format!("point_in_bbox(lon, lat, {bbox})")),
        (
            "haversine_km",
            "haversine_km(lon, lat, -73.99596, 40.74118)".into(),
        ),
    ];
    writeln!(stdout(), "{:<18} {:>14}", "function", "rows/s")?;
    for (name, expression) in cases {
        let started = Instant::now();
        ctx.sql(&format!("SELECT count({expression}) FROM posts"))
            .await?
            .collect()
            .await?;
        writeln!(
            stdout(),
            "{name:<18} {:>14.0}",
            records as f64 / started.elapsed().as_secs_f64()
        )?;
    }
    Ok(())
}

/// The `q` quantile (0 to 1) of `values`, nearest rank; 0 for none.
pub(super) fn percentile(values: &[f64], q: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len().max(1));
    sorted.get(rank - 1).copied().unwrap_or_default()
}
