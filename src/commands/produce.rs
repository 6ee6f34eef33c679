use std::io::{BufRead, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::sync::watch;

use tweetlake::config::Config;
use tweetlake::kafka::KafkaPublisher;
use tweetlake::produce::post_id;
use tweetlake::produce::synth::{Synth, SynthOptions};
use tweetlake::stdout::StdoutError;

use super::stop::stop_on_signal;

/// How often a paced send looks for a stop request while it waits for a message's turn.
const STOP_CHECK: Duration = Duration::from_millis(100);

/// Where produced messages go.
pub enum Target<'a> {
    Stdout,
    File(&'a Path),
    /// The configured Kafka topic (`source.bootstrap_servers`; `source.topic`, or the first of
    /// `source.topics`).
    Kafka(&'a Config),
}

/// Pacing and repetition of a stream of messages.
#[derive(Clone, Copy)]
pub struct Pace {
    /// Messages per second; `None` is as fast as possible.
    pub rate: Option<f64>,
    /// Start again at the first message after the last (replay only).
    pub repeat: bool,
}

/// Writes `count` synthetic messages to `target`.
pub fn synth(
    count: usize,
    options: SynthOptions,
    target: Target<'_>,
    rate: Option<f64>,
) -> anyhow::Result<()> {
    anyhow::ensure!(
        (0.0..=1.0).contains(&options.malformed_share),
        "--malformed-share must be between 0 and 1"
    );
    let mut synth = Synth::new(options);
    let messages = (0..count).map(move |_| synth.next_message().into_bytes());
    send_all(messages, target, Pace { rate, repeat: false })
}

/// Replays the JSONL(.gz) file at `path` (one stream message per line) to `target`.
pub fn replay(path: &Path, target: Target<'_>, pace: Pace) -> anyhow::Result<()> {
    let read_lines = || -> anyhow::Result<Vec<Vec<u8>>> {
        let file = std::fs::File::open(path).with_context(|| format!("open {}", path.display()))?;
        let reader: Box<dyn BufRead> = if path.extension().is_some_and(|e| e == "gz") {
            Box::new(std::io::BufReader::new(flate2::read::MultiGzDecoder::new(file)))
        } else {
            Box::new(std::io::BufReader::new(file))
        };
        let mut lines = Vec::new();
        for line in reader.split(b'\n') {
            let mut line = line.with_context(|| format!("read {}", path.display()))?;
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            if !line.iter().all(u8::is_ascii_whitespace) {
                lines.push(line);
            }
        }
        Ok(lines)
    };
    let lines = read_lines()?;
    anyhow::ensure!(!lines.is_empty(), "{} holds no messages", path.display());
    let rounds = if pace.repeat { usize::MAX } else { 1 };
    let messages = std::iter::repeat_n(lines, rounds).flatten();
    send_all(messages, target, pace)
}

/// Sends `messages` to `target` at `pace`; Ctrl-C or SIGTERM ends the stream after the message
/// being sent, and what was sent is flushed (or delivered) before this returns.
fn send_all(messages: impl Iterator<Item = Vec<u8>>, target: Target<'_>, pace: Pace) -> anyhow::Result<()> {
    let stop = stop_on_signal("stopping: flushing the messages sent so far")?;
    let started = Instant::now();
    let mut paced = messages.enumerate().map_while(|(i, message)| {
        if let Some(rate) = pace.rate {
            wait_until(started + Duration::from_secs_f64(i as f64 / rate), &stop);
        }
        (!*stop.borrow()).then_some(message)
    });
    match target {
        Target::Stdout => write_lines(&mut paced, std::io::stdout().lock()).map_err(StdoutError::from)?,
        Target::File(path) => {
            let file = std::fs::File::create(path).with_context(|| format!("create {}", path.display()))?;
            write_lines(&mut paced, file).with_context(|| format!("write {}", path.display()))?
        }
        Target::Kafka(config) => publish(&mut paced, config)?,
    }
    Ok(())
}

/// Sleeps until `due`, or until a stop is requested.
fn wait_until(due: Instant, stop: &watch::Receiver<bool>) {
    while !*stop.borrow() {
        let left = due.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        std::thread::sleep(left.min(STOP_CHECK));
    }
}

fn write_lines(messages: &mut dyn Iterator<Item = Vec<u8>>, out: impl Write) -> std::io::Result<()> {
    let mut out = std::io::BufWriter::new(out);
    for message in messages {
        out.write_all(&message)?;
        out.write_all(b"\n")?;
    }
    out.flush()
}

/// A publisher to the configured topic (`source.topic`, or the first of `source.topics`) over
/// the source's connection.
pub fn kafka_publisher(config: &Config) -> anyhow::Result<KafkaPublisher> {
    let kafka = &config.source.kafka;
    Ok(KafkaPublisher::connect(
        &kafka.connection,
        &kafka.publish_topic(),
    )?)
}

/// Publishes to the configured topic, key = post id; reports throughput every few seconds.
fn publish(messages: &mut dyn Iterator<Item = Vec<u8>>, config: &Config) -> anyhow::Result<()> {
    let publisher = kafka_publisher(config)?;
    let started = Instant::now();
    let mut last_report = started;
    let (mut sent, mut bytes) = (0u64, 0u64);
    for message in messages {
        let key = post_id(&message).unwrap_or_default();
        publisher.publish(key.as_bytes(), &message)?;
        sent += 1;
        bytes += message.len() as u64;
        if last_report.elapsed() >= Duration::from_secs(5) {
            last_report = Instant::now();
            let secs = started.elapsed().as_secs_f64();
            tracing::info!(
                "produced {sent} messages ({:.0}/s, {:.1} MB/s), {} acknowledged",
                sent as f64 / secs,
                bytes as f64 / 1e6 / secs,
                publisher.delivered()
            );
        }
    }
    let delivered = publisher.flush()?;
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "{delivered} messages delivered to {} in {secs:.1} s ({:.0} messages/s, {:.1} MB/s)",
        config.source.kafka.publish_topic(),
        delivered as f64 / secs,
        bytes as f64 / 1e6 / secs
    );
    Ok(())
}
