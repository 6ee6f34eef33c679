//! The producer loop: keep one Jetstream subscription open, send every new post on as an X v2
//! message, keep the cursor, and reconnect after drops as [`backoff`] prescribes, until told to
//! stop.
//!
//! A connection that delivered an event and then dropped is reconnected at once, resuming from
//! the cursor, and the backoff starts over; failed attempts wait as `produce x` does (network
//! errors +250 ms per attempt up to 16 s, HTTP 5xx from 5 s doubling up to 320 s, 429 from 60 s).
//! Any other HTTP error ends the run: the URL is wrong.
//!
//! [`backoff`]: crate::produce::x::backoff

use std::time::Duration;

use tokio::sync::watch;
use tokio_tungstenite::tungstenite::http::StatusCode;

use super::cursor::Cursor;
use super::event::{Converted, Converter, Event, Skip};
use super::jetstream::{self, ConnectError, Connection, Ended};
use super::outlet::Outlet;
use super::{BlueskyError, Unmatched};
use crate::produce::throughput::Throughput;
use crate::produce::x::backoff::{Backoff, Clock, Failure};

/// How often what was sent is flushed and the cursor written (also on stop and on errors).
pub const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(5);

/// How the subscription is read.
#[derive(Debug, Clone, Copy)]
pub struct ProducerSettings {
    pub idle_timeout: Duration,
    pub report_interval: Duration,
    pub unmatched: Unmatched,
}

/// Events that were no new post, by kind.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub identity: u64,
    pub account: u64,
    pub deletes: u64,
    pub updates: u64,
    pub other_collections: u64,
    pub unknown: u64,
}

impl Skipped {
    fn count(&mut self, skip: Skip) {
        let counter = match skip {
            Skip::Identity => &mut self.identity,
            Skip::Account => &mut self.account,
            Skip::Delete => &mut self.deletes,
            Skip::Update => &mut self.updates,
            Skip::OtherCollection => &mut self.other_collections,
            Skip::Unknown => &mut self.unknown,
        };
        *counter += 1;
    }
}

/// Counters of one `produce bluesky` run.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct BlueskyStats {
    /// Posts sent on.
    pub posts: u64,
    /// ... of which matched a company rule.
    pub matched: u64,
    /// Posts no company rule matched, not sent (`bluesky.unmatched = "drop"`).
    pub unmatched_dropped: u64,
    pub bytes: u64,
    /// Frames sent on as received, for the dead-letter table.
    pub malformed: u64,
    pub skipped: Skipped,
    /// Facets that became no entity (the posts were sent without them).
    pub invalid_facets: u64,
    /// Text frames that were not UTF-8: the connection ended on them.
    pub invalid_text_frames: u64,
    pub connections: u64,
    pub failed_attempts: u64,
    /// Waits at the backoff's ceiling.
    pub backoff_at_max: u64,
}

/// How one connection attempt ended.
enum Outcome {
    Stopped,
    /// The connection delivered something and then dropped: reconnect at once.
    Dropped(String),
    Failed(Failure, String),
}

pub struct JetstreamProducer<'a, C, O> {
    subscription: url::Url,
    converter: &'a Converter,
    outlet: &'a mut O,
    clock: C,
    cursor: Cursor,
    settings: ProducerSettings,
    backoff: Backoff,
    stats: BlueskyStats,
    report: Throughput,
    checkpoint: tokio::time::Interval,
}

impl<'a, C: Clock, O: Outlet> JetstreamProducer<'a, C, O> {
    /// Call within a tokio runtime (the timers need one).
    pub fn new(
        subscription: url::Url,
        converter: &'a Converter,
        outlet: &'a mut O,
        clock: C,
        cursor: Cursor,
        settings: ProducerSettings,
    ) -> Self {
        let now = tokio::time::Instant::now();
        Self {
            subscription,
            converter,
            outlet,
            clock,
            cursor,
            settings,
            backoff: Backoff::default(),
            stats: BlueskyStats::default(),
            report: Throughput::new(settings.report_interval),
            checkpoint: tokio::time::interval_at(now + CHECKPOINT_INTERVAL, CHECKPOINT_INTERVAL),
        }
    }

    /// Runs until `stop` turns true or a fatal error (a refused subscription, an undeliverable
    /// message, an unwritable cursor file). Whatever ends it, what was sent is flushed and the
    /// cursor written.
    pub async fn run(mut self, mut stop: watch::Receiver<bool>) -> Result<BlueskyStats, BlueskyError> {
        let streamed = self.stream(&mut stop).await;
        let checkpointed = self.checkpoint();
        streamed.and(checkpointed)?;
        Ok(self.stats)
    }

    async fn stream(&mut self, stop: &mut watch::Receiver<bool>) -> Result<(), BlueskyError> {
        loop {
            let wait = match self.attempt(stop).await? {
                Outcome::Stopped => return Ok(()),
                Outcome::Dropped(why) => {
                    tracing::warn!("bluesky: connection dropped ({why}); resuming from the cursor now");
                    continue;
                }
                Outcome::Failed(failure, why) => self.wait_after(failure, &why),
            };
            tokio::select! {
                _ = self.clock.sleep(wait) => {}
                _ = stop.wait_for(|stop| *stop) => return Ok(()),
            }
        }
    }

    fn wait_after(&mut self, failure: Failure, why: &str) -> Duration {
        self.stats.failed_attempts += 1;
        let wait = self
            .backoff
            .after_logged(failure, self.clock.now(), "bluesky", why);
        self.stats.backoff_at_max += u64::from(wait.at_max);
        wait.delay
    }

    /// One connection, from the upgrade to its end.
    async fn attempt(&mut self, stop: &mut watch::Receiver<bool>) -> Result<Outcome, BlueskyError> {
        let url = jetstream::subscribe_url(&self.subscription, self.cursor.resume_at());
        let connected = tokio::select! {
            connected = jetstream::connect(&url, self.settings.idle_timeout) => connected,
            _ = stop.wait_for(|stop| *stop) => return Ok(Outcome::Stopped),
        };
        match connected {
            Ok(connection) => {
                self.stats.connections += 1;
                tracing::info!("bluesky: subscribed to {url}");
                self.read(connection, stop).await
            }
            Err(ConnectError::Network(why)) => Ok(Outcome::Failed(Failure::Network, why)),
            Err(ConnectError::Status { status, detail }) => {
                let why = format!("HTTP {status}: {detail}");
                match status {
                    StatusCode::TOO_MANY_REQUESTS => {
                        Ok(Outcome::Failed(Failure::RateLimited { reset: None }, why))
                    }
                    status if status.is_server_error() || status == StatusCode::REQUEST_TIMEOUT => {
                        Ok(Outcome::Failed(Failure::Http, why))
                    }
                    status => Err(BlueskyError::Refused { status, detail }),
                }
            }
        }
    }

    /// Sends the connection's posts on until it ends or `stop`.
    async fn read(
        &mut self,
        mut connection: Connection,
        stop: &mut watch::Receiver<bool>,
    ) -> Result<Outcome, BlueskyError> {
        let mut established = false;
        let ended = loop {
            tokio::select! {
                frame = connection.next() => match frame {
                    Ok(frame) => {
                        if !established {
                            established = true;
                            self.backoff.established();
                        }
                        self.handle(&frame)?;
                    }
                    Err(ended) => break ended,
                },
                _ = stop.wait_for(|stop| *stop) => {
                    connection.close().await;
                    return Ok(Outcome::Stopped);
                }
                _ = self.report.tick.tick() => report(&mut self.report, &self.stats),
                _ = self.checkpoint.tick() => self.checkpoint()?,
            }
        };
        if let Ended::InvalidText(_) = ended {
            self.stats.invalid_text_frames += 1;
            tracing::error!("bluesky: {ended}");
        }
        Ok(match established {
            true => Outcome::Dropped(ended.to_string()),
            false => Outcome::Failed(Failure::Network, format!("connection {ended} before any event")),
        })
    }

    /// Sends a frame's post on (or the frame itself, when malformed); counts the rest.
    fn handle(&mut self, frame: &[u8]) -> Result<(), BlueskyError> {
        let event = self.converter.event(frame);
        let time_us = event.time_us();
        match event {
            Event::Post(post) => self.post(post)?,
            Event::Skipped { skip, .. } => self.stats.skipped.count(skip),
            Event::Malformed { why, .. } => {
                tracing::warn!(
                    "bluesky: {why}; sent on as received, for the dead-letter table: {}",
                    String::from_utf8_lossy(&frame[..frame.len().min(200)])
                );
                self.send("", frame)?;
                self.stats.malformed += 1;
            }
        }
        if let Some(time_us) = time_us {
            self.cursor.observe(time_us);
        }
        Ok(())
    }

    fn post(&mut self, post: Converted) -> Result<(), BlueskyError> {
        if !post.dropped_facets.is_empty() {
            self.stats.invalid_facets += post.dropped_facets.len() as u64;
            tracing::warn!(
                "bluesky: post {}: dropped {} facet(s) that mark no text: {}",
                post.id,
                post.dropped_facets.len(),
                post.dropped_facets.join("; ")
            );
        }
        if post.matched == 0 && self.settings.unmatched == Unmatched::Drop {
            self.stats.unmatched_dropped += 1;
            return Ok(());
        }
        self.send(&post.id, &post.message)?;
        self.stats.posts += 1;
        self.stats.matched += u64::from(post.matched > 0);
        Ok(())
    }

    fn send(&mut self, key: &str, message: &[u8]) -> Result<(), BlueskyError> {
        self.outlet.send(key, message)?;
        self.stats.bytes += message.len() as u64;
        Ok(())
    }

    /// Makes everything sent so far durable, then writes the cursor past it.
    fn checkpoint(&mut self) -> Result<(), BlueskyError> {
        if !self.cursor.unsaved() {
            return Ok(());
        }
        tokio::task::block_in_place(|| self.outlet.flush())?;
        Ok(self.cursor.save()?)
    }
}

/// Periodic throughput lines.
fn report(throughput: &mut Throughput, stats: &BlueskyStats) {
    let (recent, overall) = throughput.rates(stats.posts);
    let s = &stats.skipped;
    tracing::info!(
        "bluesky: {} posts sent ({recent:.1}/s now, {overall:.1}/s overall, {:.1} MB), {} matching a company, \
         {} unmatched dropped; {} malformed, {} invalid facets; skipped {} deletes, {} updates, {} identity, \
         {} account, {} other; {} connections, {} failed attempts ({} at max backoff)",
        stats.posts,
        stats.bytes as f64 / 1e6,
        stats.matched,
        stats.unmatched_dropped,
        stats.malformed,
        stats.invalid_facets,
        s.deletes,
        s.updates,
        s.identity,
        s.account,
        s.other_collections + s.unknown,
        stats.connections,
        stats.failed_attempts,
        stats.backoff_at_max
    );
}
