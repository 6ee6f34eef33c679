//! Publishing stream messages to a Kafka topic: idempotent producer, `acks=all`, compressed.
//!
//! librdkafka retries failed deliveries itself (idempotence keeps retries from duplicating or
//! reordering); a message it finally gives up on is counted and reported by [`flush`], never
//! dropped silently.
//!
//! [`flush`]: KafkaPublisher::flush

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::ClientContext;

use super::{KafkaConnection, KafkaFailure};

/// How long `flush` waits for outstanding deliveries.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("cannot create the Kafka producer for {bootstrap}: {source} (check source.kafka_options)")]
    Create { bootstrap: String, source: KafkaError },
    #[error("cannot queue a message for topic `{topic}`: {source}{hint}", hint = KafkaFailure::of(source).hint())]
    Queue { topic: String, source: KafkaError },
    #[error("{failed} messages could not be delivered to `{topic}` (first error: {first_error}); check that the broker at {bootstrap} runs and the topic exists")]
    Undelivered {
        failed: u64,
        topic: String,
        bootstrap: String,
        first_error: Box<KafkaError>,
    },
    #[error(
        "flushing to `{topic}` timed out after {FLUSH_TIMEOUT:?}: is the broker at {bootstrap} reachable?"
    )]
    FlushTimeout { topic: String, bootstrap: String },
}

impl PublishError {
    /// A broker that is down or slow is waited out; refused credentials, a missing topic or a
    /// bad option are not.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Create { source, .. } | Self::Queue { source, .. } => {
                !KafkaFailure::of(source).is_permanent()
            }
            Self::Undelivered { first_error, .. } => !KafkaFailure::of(first_error).is_permanent(),
            Self::FlushTimeout { .. } => true,
        }
    }
}

/// Counts deliveries; keeps the first failure for the report.
#[derive(Default)]
pub struct DeliveryCounter {
    delivered: AtomicU64,
    failed: AtomicU64,
    first_error: Mutex<Option<KafkaError>>,
}

impl ClientContext for DeliveryCounter {}

impl ProducerContext for DeliveryCounter {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _opaque: ()) {
        match result {
            Ok(_) => drop(self.delivered.fetch_add(1, Ordering::Relaxed)),
            Err((error, _)) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                let mut first = self.first_error.lock().expect("error lock");
                if first.is_none() {
                    tracing::error!("kafka: delivery failed: {error}");
                    *first = Some(error.clone());
                }
            }
        }
    }
}

pub struct KafkaPublisher {
    producer: ThreadedProducer<DeliveryCounter>,
    topic: String,
    bootstrap: String,
}

impl KafkaPublisher {
    /// An idempotent producer for `topic` on `connection`; its options override the defaults.
    pub fn connect(connection: &KafkaConnection, topic: &str) -> Result<Self, PublishError> {
        let bootstrap = &connection.bootstrap_servers;
        let producer = connection
            .client_config(&[
                ("enable.idempotence", "true"),
                ("acks", "all"),
                ("compression.type", "lz4"),
                ("linger.ms", "20"),
                ("batch.size", "1000000"),
            ])
            .create_with_context(DeliveryCounter::default())
            .map_err(|source| PublishError::Create {
                bootstrap: bootstrap.clone(),
                source,
            })?;
        Ok(Self {
            producer,
            topic: topic.to_string(),
            bootstrap: bootstrap.clone(),
        })
    }

    /// Queues one message; waits while librdkafka's queue is full.
    pub fn publish(&self, key: &[u8], payload: &[u8]) -> Result<(), PublishError> {
        self.publish_with_headers(key, payload, &[])
    }

    /// [`Self::publish`] with message headers.
    pub fn publish_with_headers(
        &self,
        key: &[u8],
        payload: &[u8],
        headers: &[(&str, &[u8])],
    ) -> Result<(), PublishError> {
        let mut record = BaseRecord::to(&self.topic).key(key).payload(payload);
        if !headers.is_empty() {
            let owned = headers.iter().fold(OwnedHeaders::new(), |all, (key, value)| {
                all.insert(Header {
                    key,
                    value: Some(*value),
                })
            });
            record = record.headers(owned);
        }
        loop {
            match self.producer.send(record) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    self.producer.poll(Duration::from_millis(10));
                }
                Err((source, _)) => {
                    return Err(PublishError::Queue {
                        topic: self.topic.clone(),
                        source,
                    })
                }
            }
        }
    }

    pub fn delivered(&self) -> u64 {
        self.producer.context().delivered.load(Ordering::Relaxed)
    }

    /// Waits for every queued message; fails if any could not be delivered.
    pub fn flush(&self) -> Result<u64, PublishError> {
        self.producer
            .flush(FLUSH_TIMEOUT)
            .map_err(|_| PublishError::FlushTimeout {
                topic: self.topic.clone(),
                bootstrap: self.bootstrap.clone(),
            })?;
        self.check_deliveries()?;
        Ok(self.delivered())
    }

    /// Fails once librdkafka has given up on delivering any message so far.
    pub fn check_deliveries(&self) -> Result<(), PublishError> {
        let context = self.producer.context();
        let failed = context.failed.load(Ordering::Relaxed);
        let first_error = context.first_error.lock().expect("error lock").clone();
        match first_error {
            Some(first_error) if failed > 0 => Err(PublishError::Undelivered {
                failed,
                topic: self.topic.clone(),
                bootstrap: self.bootstrap.clone(),
                first_error: Box::new(first_error),
            }),
            _ => Ok(()),
        }
    }
}
