//! Publishing stream messages to a Kafka topic: idempotent producer, `acks=all`, compressed.
//!
//! librdkafka retries failed deliveries itself (idempotence keeps retries from duplicating or
//! reordering); a message it finally gives up on is counted and reported by [`flush`], never
//! dropped silently.
//!
//! [`flush`]: KafkaPublisher::flush

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::ClientContext;

/// How long `flush` waits for outstanding deliveries.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("cannot create the Kafka producer for {bootstrap}: {source} (check the producer options)")]
    Create { bootstrap: String, source: KafkaError },
    #[error("cannot queue a message for topic `{topic}`: {source}")]
    Queue { topic: String, source: KafkaError },
    #[error("{failed} messages could not be delivered to `{topic}` (first error: {first_error}); check that the broker at {bootstrap} runs and the topic exists")]
    Undelivered {
        failed: u64,
        topic: String,
        bootstrap: String,
        first_error: String,
    },
    #[error(
        "flushing to `{topic}` timed out after {FLUSH_TIMEOUT:?}: is the broker at {bootstrap} reachable?"
    )]
    FlushTimeout { topic: String, bootstrap: String },
}

/// Counts deliveries; keeps the first failure for the report.
#[derive(Default)]
pub struct DeliveryCounter {
    delivered: AtomicU64,
    failed: AtomicU64,
    first_error: Mutex<Option<String>>,
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
                    *first = Some(error.to_string());
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
    /// A producer for `topic`; `options` (librdkafka properties) override the defaults.
    pub fn connect(
        bootstrap: &str,
        topic: &str,
        options: &BTreeMap<String, String>,
    ) -> Result<Self, PublishError> {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", bootstrap)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("compression.type", "lz4")
            .set("linger.ms", "20")
            .set("batch.size", "1000000");
        for (key, value) in options {
            config.set(key, value);
        }
        let producer = config
            .create_with_context(DeliveryCounter::default())
            .map_err(|source| PublishError::Create {
                bootstrap: bootstrap.to_string(),
                source,
            })?;
        Ok(Self {
            producer,
            topic: topic.to_string(),
            bootstrap: bootstrap.to_string(),
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
        if failed == 0 {
            return Ok(());
        }
        Err(PublishError::Undelivered {
            failed,
            topic: self.topic.clone(),
            bootstrap: self.bootstrap.clone(),
            first_error: context
                .first_error
                .lock()
                .expect("error lock")
                .clone()
                .unwrap_or_default(),
        })
    }
}

/// The post id of a stream message (`data.id`), used as the Kafka key so that every delivery
/// of a post lands in one partition. `None` for messages without one (errors, bad JSON).
pub fn post_id(message: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Message<'a> {
        #[serde(borrow)]
        data: Option<Data<'a>>,
    }
    #[derive(serde::Deserialize)]
    struct Data<'a> {
        #[serde(borrow)]
        id: Option<std::borrow::Cow<'a, str>>,
    }
    let message: Message = serde_json::from_slice(message).ok()?;
    Some(message.data?.id?.into_owned())
}

#[cfg(test)]
mod tests {
    use super::post_id;

    #[test]
    fn the_key_is_the_post_id_even_after_nested_ids() {
        let message =
            br#"{"data":{"entities":{"mentions":[{"id":"9"}]},"id":"1870","text":"hi"},"includes":{}}"#;
        assert_eq!(post_id(message).as_deref(), Some("1870"));
        assert_eq!(post_id(b"{not json"), None);
        assert_eq!(post_id(br#"{"errors":[{"title":"x"}]}"#), None);
    }
}
