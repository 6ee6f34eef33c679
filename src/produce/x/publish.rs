//! The producer loop: keep one stream connection open, publish every post as it arrives, and
//! reconnect after drops as [`backoff`](super::backoff) prescribes, until told to stop.

use std::time::Duration;

use reqwest::StatusCode;
use tokio::sync::watch;

use super::backoff::{Backoff, Clock, Failure, Wait};
use super::stream::{self, ConnectError, Connection, Ended, Event};
use super::{XApi, XError};
use crate::kafka::{KafkaPublisher, PublishError};
use crate::produce::throughput::Throughput;

/// Where posts go: Kafka in production, a list in tests.
pub trait Publish {
    /// Queues one message.
    fn publish(&self, key: &[u8], payload: &[u8]) -> Result<(), PublishError>;
    /// Fails once a message could not be delivered.
    fn check_deliveries(&self) -> Result<(), PublishError>;
    /// Messages acknowledged so far.
    fn delivered(&self) -> u64;
}

impl Publish for KafkaPublisher {
    fn publish(&self, key: &[u8], payload: &[u8]) -> Result<(), PublishError> {
        KafkaPublisher::publish(self, key, payload)
    }

    fn check_deliveries(&self) -> Result<(), PublishError> {
        KafkaPublisher::check_deliveries(self)
    }

    fn delivered(&self) -> u64 {
        KafkaPublisher::delivered(self)
    }
}

/// Counters of one `produce x` run.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct StreamStats {
    pub posts: u64,
    pub bytes: u64,
    /// Lines that were not JSON objects, published for the dead-letter table.
    pub malformed: u64,
    pub keep_alives: u64,
    /// In-stream error messages without data.
    pub errors: u64,
    pub disconnect_messages: u64,
    /// Successful connections (HTTP 200).
    pub connections: u64,
    /// Connection attempts that failed.
    pub failed_attempts: u64,
    /// Waits at the policy's ceiling.
    pub backoff_at_max: u64,
    /// Messages cut off by a dropped connection.
    pub partial_messages: u64,
}

/// How the stream is read.
#[derive(Debug, Clone, Copy)]
pub struct StreamSettings {
    pub idle_timeout: Duration,
    pub report_interval: Duration,
    /// `x.backfill_minutes`, sent on every connection; 0 is none.
    pub backfill_minutes: u8,
}

/// What ended a connection that had been opened.
enum End {
    /// An in-stream disconnect message, with its problem.
    Message(String),
    Connection(Ended),
}

/// How one connection attempt ended.
enum Outcome {
    Stopped,
    /// The connection delivered something and then dropped: reconnect at once.
    Dropped(String),
    Failed(Failure, String),
}

pub struct StreamProducer<'a, C, P> {
    api: &'a XApi,
    publisher: &'a P,
    clock: C,
    settings: StreamSettings,
    backoff: Backoff,
    stats: StreamStats,
    report: Throughput,
}

impl<'a, C: Clock, P: Publish> StreamProducer<'a, C, P> {
    /// Call within a tokio runtime (the report timer needs one).
    pub fn new(api: &'a XApi, publisher: &'a P, clock: C, settings: StreamSettings) -> Self {
        Self {
            api,
            publisher,
            clock,
            settings,
            backoff: Backoff::default(),
            stats: StreamStats::default(),
            report: Throughput::new(settings.report_interval),
        }
    }

    /// Runs until `stop` turns true or a fatal error (credentials, no rules, Kafka delivery).
    pub async fn run(mut self, mut stop: watch::Receiver<bool>) -> Result<StreamStats, XError> {
        loop {
            let wait = match self.attempt(&mut stop).await? {
                Outcome::Stopped => return Ok(self.stats),
                Outcome::Dropped(why) => {
                    tracing::warn!("x stream: connection dropped ({why}); reconnecting now");
                    continue;
                }
                Outcome::Failed(failure, why) => self.wait_after(failure, &why),
            };
            tokio::select! {
                _ = self.clock.sleep(wait) => {}
                _ = stop.wait_for(|stop| *stop) => return Ok(self.stats),
            }
        }
    }

    fn wait_after(&mut self, failure: Failure, why: &str) -> Duration {
        self.stats.failed_attempts += 1;
        let Wait { delay, at_max } = self
            .backoff
            .after_logged(failure, self.clock.now(), "x stream", why);
        self.stats.backoff_at_max += u64::from(at_max);
        delay
    }

    /// One connection, from the request to its end.
    async fn attempt(&mut self, stop: &mut watch::Receiver<bool>) -> Result<Outcome, XError> {
        let connected = tokio::select! {
            connected = stream::connect(self.api, &self.settings) => connected,
            _ = stop.wait_for(|stop| *stop) => return Ok(Outcome::Stopped),
        };
        match connected {
            Ok(connection) => {
                self.stats.connections += 1;
                tracing::info!("x stream: connected");
                self.read(connection, stop).await
            }
            Err(ConnectError::Network(why)) => Ok(Outcome::Failed(Failure::Network, why)),
            Err(ConnectError::Status(failure)) => {
                let why = format!("HTTP {}: {}", failure.status, failure.detail);
                match failure.status {
                    StatusCode::TOO_MANY_REQUESTS => {
                        let reset = failure.rate_limit_reset;
                        Ok(Outcome::Failed(Failure::RateLimited { reset }, why))
                    }
                    StatusCode::CONFLICT => Err(XError::NoRules),
                    status if status.is_server_error() || status == StatusCode::REQUEST_TIMEOUT => {
                        Ok(Outcome::Failed(Failure::Http, why))
                    }
                    _ => Err(self.refused(failure)),
                }
            }
        }
    }

    /// The error for a connection X refused for good. With backfill asked for, a 400 or 403 may
    /// be about it: the error says so.
    fn refused(&self, failure: super::HttpFailure) -> XError {
        let minutes = self.settings.backfill_minutes;
        let maybe_backfill =
            minutes > 0 && [StatusCode::BAD_REQUEST, StatusCode::FORBIDDEN].contains(&failure.status);
        let error = failure.into_error("connect to the filtered stream");
        if !maybe_backfill {
            return error;
        }
        XError::BackfillRefused {
            minutes,
            source: Box::new(error),
        }
    }

    /// Publishes the connection's posts until it ends or `stop`.
    async fn read(
        &mut self,
        mut connection: Connection,
        stop: &mut watch::Receiver<bool>,
    ) -> Result<Outcome, XError> {
        let mut established = false;
        let end = loop {
            let event = tokio::select! {
                event = connection.next() => event,
                _ = stop.wait_for(|stop| *stop) => return Ok(Outcome::Stopped),
                _ = self.report.tick.tick() => {
                    report(&mut self.report, &self.stats, self.publisher.delivered());
                    continue;
                }
            };
            match event {
                Ok(event) => {
                    if matches!(event, Event::KeepAlive | Event::Post { .. }) && !established {
                        established = true;
                        self.backoff.established();
                    }
                    if let Some(problem) = self.handle(event)? {
                        break End::Message(problem);
                    }
                }
                Err(ended) => break End::Connection(ended),
            }
        };
        if connection.partial_bytes() > 0 {
            self.stats.partial_messages += 1;
            tracing::warn!(
                "x stream: the connection ended inside a message; its {} bytes are lost",
                connection.partial_bytes()
            );
        }
        Ok(match (established, end) {
            (true, End::Message(problem)) => Outcome::Dropped(format!("disconnect message: {problem}")),
            (true, End::Connection(ended)) => Outcome::Dropped(ended.to_string()),
            // Turned away in-stream before any data: like an HTTP error.
            (false, End::Message(problem)) => Outcome::Failed(
                Failure::Http,
                format!("disconnect message before any data: {problem}"),
            ),
            (false, End::Connection(ended)) => {
                Outcome::Failed(Failure::Network, format!("connection {ended} before any data"))
            }
        })
    }

    /// Publishes a post; returns the problem of a disconnect message.
    fn handle(&mut self, event: Event) -> Result<Option<String>, XError> {
        match event {
            Event::KeepAlive => self.stats.keep_alives += 1,
            Event::Post { key, message } => {
                self.publish(key.as_deref().unwrap_or_default(), &message)?;
                self.stats.posts += 1;
            }
            Event::Malformed(line) => {
                tracing::warn!(
                    "x stream: a line is not a JSON object; published for the dead-letter table: {}",
                    String::from_utf8_lossy(&line[..line.len().min(200)])
                );
                self.publish("", &line)?;
                self.stats.malformed += 1;
            }
            Event::Problems(problems) => {
                self.stats.errors += 1;
                for problem in problems {
                    tracing::warn!("x stream: error message: {problem}");
                }
            }
            Event::Disconnect(problem) => {
                self.stats.disconnect_messages += 1;
                return Ok(Some(problem.to_string()));
            }
            Event::Unknown => tracing::debug!("x stream: skipped a message of an unknown type"),
        }
        Ok(None)
    }

    fn publish(&mut self, key: &str, message: &[u8]) -> Result<(), XError> {
        self.publisher.publish(key.as_bytes(), message)?;
        self.stats.bytes += message.len() as u64;
        // A delivery librdkafka gave up on is a post lost: stop rather than lose more.
        Ok(self.publisher.check_deliveries()?)
    }
}

/// Periodic throughput lines.
fn report(throughput: &mut Throughput, stats: &StreamStats, delivered: u64) {
    let (recent, overall) = throughput.rates(stats.posts);
    tracing::info!(
        "x stream: {} posts ({recent:.1}/s now, {overall:.1}/s overall, {:.1} MB), {delivered} delivered; \
         {} keep-alives, {} connections, {} failed attempts ({} at max backoff), {} disconnect messages, \
         {} error messages, {} malformed, {} cut off",
        stats.posts,
        stats.bytes as f64 / 1e6,
        stats.keep_alives,
        stats.connections,
        stats.failed_attempts,
        stats.backoff_at_max,
        stats.disconnect_messages,
        stats.errors,
        stats.malformed,
        stats.partial_messages
    );
}
