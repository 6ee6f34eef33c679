//! `produce bluesky`: Bluesky posts from Jetstream, as X v2 messages, to Kafka, a file or stdout.

use tweetlake::config::Config;
use tweetlake::produce::bluesky::cursor::Cursor;
use tweetlake::produce::bluesky::event::Converter;
use tweetlake::produce::bluesky::outlet::{FileLines, Outlet, StdoutLines};
use tweetlake::produce::bluesky::producer::{BlueskyStats, JetstreamProducer, ProducerSettings};
use tweetlake::produce::bluesky::Unmatched;
use tweetlake::produce::x::backoff::SystemClock;
use tweetlake::produce::x::matching::RuleMatcher;

use super::produce::{kafka_publisher, Target};
use super::stop::stop_on_signal;

/// Streams Jetstream's new posts to `target` until Ctrl-C or SIGTERM, resuming at `cursor`
/// (microseconds) when given, else where `bluesky.cursor_file` says; flushes, keeps the cursor.
pub async fn produce_bluesky(config: &Config, target: Target<'_>, cursor: Option<i64>) -> anyhow::Result<()> {
    let bluesky = &config.bluesky;
    let matcher = RuleMatcher::new(&config.x)?;
    anyhow::ensure!(
        matcher.has_rules() || bluesky.unmatched == Unmatched::Keep,
        "bluesky.unmatched = \"drop\" would drop every post: [x.companies] lists no company"
    );
    let converter = Converter::new(matcher);
    let cursor = Cursor::load(&bluesky.cursor_file, cursor, bluesky.rewind)?;
    match cursor.resume_at() {
        Some(at) => tracing::info!("bluesky: resuming at cursor {at}"),
        None => tracing::info!("bluesky: no cursor (bluesky.cursor_file, --cursor): the live stream"),
    }
    let stats = match target {
        Target::Kafka(config) => {
            tracing::info!(
                "bluesky -> {} on {}",
                config.source.kafka.publish_topic(),
                config.source.kafka.connection.bootstrap_servers
            );
            stream(config, &converter, &mut kafka_publisher(config)?, cursor).await?
        }
        // Appended: a restart resumes where the file ends.
        Target::File(path) => stream(config, &converter, &mut FileLines::append(path)?, cursor).await?,
        Target::Stdout => stream(config, &converter, &mut StdoutLines::new(), cursor).await?,
    };
    let skipped = &stats.skipped;
    eprintln!(
        "{} posts sent ({} matching a company, {} unmatched dropped), {} malformed frames sent for the \
         dead-letter table; skipped {} deletes, {} updates, {} identity and {} account events, {} others; \
         {} connections, {} failed attempts",
        stats.posts,
        stats.matched,
        stats.unmatched_dropped,
        stats.malformed,
        skipped.deletes,
        skipped.updates,
        skipped.identity,
        skipped.account,
        skipped.other_collections + skipped.unknown,
        stats.connections,
        stats.failed_attempts
    );
    Ok(())
}

async fn stream(
    config: &Config,
    converter: &Converter,
    outlet: &mut impl Outlet,
    cursor: Cursor,
) -> anyhow::Result<BlueskyStats> {
    let bluesky = &config.bluesky;
    let settings = ProducerSettings {
        idle_timeout: bluesky.idle_timeout,
        report_interval: bluesky.report_interval,
        unmatched: bluesky.unmatched,
    };
    let stopped = stop_on_signal("stopping: flushing what was received and keeping the cursor")?;
    let subscription = bluesky.subscription()?;
    let producer = JetstreamProducer::new(subscription, converter, outlet, SystemClock, cursor, settings);
    Ok(producer.run(stopped).await?)
}
