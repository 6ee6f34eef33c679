//! A Kafka topic, consumed as a member of a consumer group, or (manual assignment) reading
//! every partition directly, without joining the group.
//!
//! The group (or, manually, the topic's metadata) decides which partitions this instance owns;
//! the offset log in the lake decides where each one is read from (the group's committed
//! offsets are only a mirror, for lag tools).
//! On every read the consumer is sought (manually: assigned) to the positions the pipeline asks
//! for, and records outside them are dropped, so a re-delivery after a rebalance never enters a
//! batch twice.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::DateTime;
use deltalake::arrow::array::RecordBatch;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::topic_partition_list::TopicPartitionListElem;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use serde::Deserialize;
use tokio::sync::Notify;

use super::{
    OffsetRange, Positions, RawBatchBuilder, ReadLimits, Source, SourceBatch, SourceError, TopicPartition,
};
use crate::kafka::{KafkaConnection, KafkaFailure};
use crate::settings::InvalidSetting;

/// Network calls to the broker (metadata, watermarks, seeks) give up after this long.
const BROKER_TIMEOUT: Duration = Duration::from_secs(10);
/// A read with no deadline (available-now) stops when the broker stays silent this long.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a failed lookup waits for the error events that explain it.
const EVENT_WAIT: Duration = Duration::from_millis(200);

/// How soon librdkafka fetches again after its read-ahead queue was full.
const FETCH_QUEUE_BACKOFF_MS: &str = "20";

/// How long the end probe's fetches wait at a partition's end before the broker answers empty:
/// that answer is the end-of-partition event the probe waits for, and librdkafka's default
/// (500 ms) would be spent at every `run --once` start.
const PROBE_FETCH_WAIT_MS: &str = "10";

/// The topic read when neither `source.topic` nor `source.topics` is set.
pub const DEFAULT_TOPIC: &str = "x-posts";

/// The Kafka source's settings (`source.*` keys in the config file).
#[derive(Debug, Clone)]
pub struct KafkaSourceConfig {
    /// `source.bootstrap_servers` and `source.kafka_options`: shared with every Kafka client.
    pub connection: KafkaConnection,
    /// `source.topic`: the one topic read.
    pub topic: Option<String>,
    /// `source.topics`: several topics read as one pipeline, through one offset log. Set this or
    /// `topic`, not both.
    pub topics: Option<Vec<String>>,
    pub group_id: String,
    /// Where a partition the offset log has never seen starts.
    pub starting_offsets: StartingOffsets,
    /// Records a batch needs were deleted by retention: fail (true) or skip ahead with a
    /// warning (false).
    pub fail_on_data_loss: bool,
    /// How long to wait for the group to assign partitions on start.
    pub assignment_timeout: Duration,
    /// Whether the group assigns the partitions, or this instance takes them all.
    pub assignment: PartitionAssignment,
}

/// Who decides which partitions an instance reads (`source.assignment`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PartitionAssignment {
    /// The consumer group splits the partitions between the running instances. Joining takes
    /// a few seconds at every start (about half of `session.timeout.ms`).
    #[default]
    Group,
    /// This instance reads every partition of its topics, assigned directly from the topic's
    /// metadata: no group join, so a start is immediate. For one instance per pipeline: a
    /// second one would read the same records again and lose every race for the offset log's
    /// claims (exactly once still holds, the work is wasted). Partitions added to a topic are
    /// read from the next start.
    Manual,
}

impl Default for KafkaSourceConfig {
    fn default() -> Self {
        Self {
            connection: KafkaConnection::default(),
            topic: None,
            topics: None,
            group_id: "tweetlake".into(),
            starting_offsets: StartingOffsets::Earliest,
            fail_on_data_loss: true,
            assignment_timeout: Duration::from_secs(60),
            assignment: PartitionAssignment::Group,
        }
    }
}

impl KafkaSourceConfig {
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        self.validate_topics()?;
        if self.group_id.is_empty() {
            return Err(InvalidSetting::new("group_id", "name the consumer group"));
        }
        Ok(())
    }

    /// One of `topic` and `topics`, naming topics that exist at most once each.
    pub fn validate_topics(&self) -> Result<(), InvalidSetting> {
        match (&self.topic, &self.topics) {
            (Some(_), Some(_)) => Err(InvalidSetting::new(
                "topics",
                "source.topic is set too: set one of them (list every topic in source.topics)",
            )),
            (Some(topic), None) if topic.is_empty() => {
                Err(InvalidSetting::new("topic", "name the topic to read"))
            }
            (None, Some(topics)) => {
                check_topic_list(topics).map_err(|message| InvalidSetting::new("topics", message))
            }
            _ => Ok(()),
        }
    }

    /// The topics to read, in the order configured.
    pub fn topic_names(&self) -> Vec<String> {
        match (&self.topics, &self.topic) {
            (Some(topics), _) => topics.clone(),
            (None, Some(topic)) => vec![topic.clone()],
            (None, None) => vec![DEFAULT_TOPIC.to_string()],
        }
    }

    /// The key that named the topics (`topic` or `topics`), for errors that say what to fix.
    pub fn topics_key(&self) -> &'static str {
        match self.topics {
            Some(_) => "topics",
            None => "topic",
        }
    }

    /// Where `produce --kafka` publishes: the one topic, or the first of `source.topics`.
    pub fn publish_topic(&self) -> String {
        let first = self.topic_names().into_iter().next();
        first.unwrap_or_else(|| DEFAULT_TOPIC.to_string())
    }

    /// Reads, and publishes to, `topic` alone: what a `--topic` option asks for.
    pub fn use_only_topic(&mut self, topic: String) {
        self.topic = Some(topic);
        self.topics = None;
    }
}

/// Why a `source.topics` list is refused: empty, an empty name, or a topic listed twice.
fn check_topic_list(topics: &[String]) -> Result<(), String> {
    if topics.is_empty() {
        return Err("name at least one topic".into());
    }
    let mut seen = BTreeSet::new();
    for topic in topics {
        if topic.is_empty() {
            return Err("a topic name is empty".into());
        }
        if !seen.insert(topic) {
            return Err(format!("`{topic}` is listed twice"));
        }
    }
    Ok(())
}

/// Where a partition with no offset-log entry starts: `earliest`, `latest` or an RFC 3339 time.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum StartingOffsets {
    Earliest,
    Latest,
    /// The first record at or after this time (milliseconds since the epoch).
    Timestamp(i64),
}

impl TryFrom<String> for StartingOffsets {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        match text.as_str() {
            "earliest" => Ok(Self::Earliest),
            "latest" => Ok(Self::Latest),
            other => DateTime::parse_from_rfc3339(other)
                .map(|t| Self::Timestamp(t.timestamp_millis()))
                .map_err(|_| format!("`{other}` is not earliest, latest or an RFC 3339 timestamp")),
        }
    }
}

/// Permanent failures librdkafka reports in the background, through a client's error callback
/// rather than as the result of a call (refused credentials, say): kept, so that the next read,
/// or a lookup that timed out meanwhile, stops with the real cause.
#[derive(Default)]
pub struct Refusals {
    first: Mutex<Option<(KafkaError, String)>>,
    reported: Notify,
}

impl Refusals {
    /// Keeps `error` if it is a refusal; `reason` is librdkafka's explanation, when it gave
    /// one. An unknown topic is not a refusal here: Kafka calls it retriable (metadata can lag
    /// behind a new topic), and a read confirms it first.
    fn record(&self, error: &KafkaError, reason: Option<&str>) {
        let failure = KafkaFailure::of(error);
        if !failure.is_permanent() || failure == KafkaFailure::TopicMissing {
            return;
        }
        let mut first = self.first.lock().expect("refusal lock");
        if first.is_none() {
            let reason = reason.map_or_else(|| error.to_string(), str::to_string);
            *first = Some((error.clone(), reason));
            self.reported.notify_one();
        }
    }

    /// Serves the events a failed lookup's client has queued (a consumer gets its errors only
    /// when it polls) and keeps the refusals among them.
    fn collect(&self, client: &BaseConsumer<ProbeContext>) {
        let deadline = Instant::now() + EVENT_WAIT;
        while let Some(wait) = deadline.checked_duration_since(Instant::now()) {
            match client.poll(wait) {
                Some(Err(error)) => self.record(&error, None),
                Some(Ok(_)) => {}
                None => break,
            }
        }
    }

    /// The first permanent failure reported so far, as an error.
    fn error(&self) -> Option<SourceError> {
        let first = self.first.lock().expect("refusal lock");
        first.as_ref().map(|(error, reason)| SourceError::Refused {
            reason: reason.clone(),
            source: error.clone(),
        })
    }

    /// Waits until a permanent failure is reported.
    async fn reported(&self) -> SourceError {
        loop {
            if let Some(error) = self.error() {
                return error;
            }
            self.reported.notified().await;
        }
    }
}

/// Logs a client's errors (end-of-partition is an expected event here) and keeps the
/// permanent ones.
fn client_error(refusals: &Refusals, error: KafkaError, reason: &str) {
    let end_of_partition = matches!(
        error,
        KafkaError::PartitionEOF(_) | KafkaError::Global(RDKafkaErrorCode::PartitionEOF)
    );
    if !end_of_partition {
        tracing::warn!("kafka: {error}: {reason}");
        refusals.record(&error, Some(reason));
    }
}

/// Tracks the partitions the group gave this member; rebalance callbacks run inside `recv`.
#[derive(Default)]
pub struct GroupContext {
    assigned: Mutex<BTreeSet<TopicPartition>>,
    generation: AtomicU64,
    /// Wakes a wait for the assignment: the callback runs inside `recv`, which itself returns
    /// only with a record or an event (at an idle partition's end, after a whole fetch wait).
    rebalanced: Notify,
    refusals: Arc<Refusals>,
}

impl ClientContext for GroupContext {
    fn error(&self, error: KafkaError, reason: &str) {
        client_error(&self.refusals, error, reason);
    }
}

/// The client of probes and plain reads: logs real errors, keeps permanent ones.
#[derive(Default)]
pub struct ProbeContext {
    refusals: Arc<Refusals>,
}

impl ClientContext for ProbeContext {
    fn error(&self, error: KafkaError, reason: &str) {
        client_error(&self.refusals, error, reason);
    }
}

impl ConsumerContext for ProbeContext {}

impl ConsumerContext for GroupContext {
    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let mut assigned = self.assigned.lock().expect("assignment lock");
        match rebalance {
            Rebalance::Assign(list) => {
                assigned.extend(list.elements().iter().map(element_partition));
                tracing::info!("kafka: assigned partitions {}", listed(&assigned));
            }
            Rebalance::Revoke(list) => {
                for element in list.elements() {
                    assigned.remove(&element_partition(&element));
                }
                tracing::info!("kafka: partitions revoked, now own {}", listed(&assigned));
            }
            Rebalance::Error(e) => tracing::warn!("kafka: rebalance failed: {e}"),
        }
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.rebalanced.notify_one();
    }
}

fn element_partition(element: &TopicPartitionListElem<'_>) -> TopicPartition {
    TopicPartition {
        topic: element.topic().to_string(),
        partition: element.partition(),
    }
}

/// `x-posts[0], x-posts[1]` (or `none`), for logs.
fn listed(partitions: &BTreeSet<TopicPartition>) -> String {
    if partitions.is_empty() {
        return "none".into();
    }
    let names: Vec<String> = partitions.iter().map(ToString::to_string).collect();
    names.join(", ")
}

/// A partition of one of the source's topics, the topic given by its index in the source's
/// list: cheap to copy and compare for every record, where a `TopicPartition` clones a name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct PartitionKey {
    topic: usize,
    partition: i32,
}

impl PartitionKey {
    fn topic_in(self, topics: &[String]) -> &str {
        &topics[self.topic]
    }
}

pub struct KafkaSource {
    consumer: Arc<StreamConsumer<GroupContext>>,
    /// Metadata, watermark and offset lookups go through their own connection: on the
    /// consumer's, they would queue behind its long-polling fetches.
    lookup: Arc<BaseConsumer<ProbeContext>>,
    client_config: ClientConfig,
    /// Shared by every client of this source.
    refusals: Arc<Refusals>,
    /// Every topic read, in the configured order; a [`PartitionKey`] indexes it.
    topics: Vec<String>,
    /// The setting that named the topics (`topic` or `topics`), for errors.
    topics_key: &'static str,
    bootstrap: String,
    starting_offsets: StartingOffsets,
    fail_on_data_loss: bool,
    assignment_timeout: Duration,
    assignment: PartitionAssignment,
    /// The offset the consumer delivers next per partition, where this source is sure of it
    /// (after a seek or a delivered record); others are sought before reading.
    fetch_positions: HashMap<PartitionKey, i64>,
    lag: BTreeMap<TopicPartition, i64>,
}

/// A failed broker call, with what it was doing.
fn kafka_error(context: &'static str) -> impl FnOnce(KafkaError) -> SourceError {
    move |source| SourceError::Kafka { context, source }
}

impl KafkaSource {
    /// Joins the consumer group for the configured topics, after checking the broker answers
    /// and every topic exists (both are one-line errors naming the setting to fix). librdkafka
    /// fetches up to `batch_bytes` ahead in the background, so the next batch arrives while
    /// this one is processed.
    pub async fn connect(
        config: &KafkaSourceConfig,
        batch_bytes: usize,
        client_id: &str,
    ) -> Result<Self, SourceError> {
        let prefetch = prefetch_kbytes(batch_bytes);
        let client_config = config.connection.client_config(&[
            ("client.id", client_id),
            ("enable.partition.eof", "true"),
            ("session.timeout.ms", "10000"),
            ("auto.offset.reset", "earliest"),
            ("queued.max.messages.kbytes", &prefetch),
            // The read-ahead queue is full whenever a batch is being processed; librdkafka then
            // waits this long before fetching again (1 s by default), and the next read, which
            // empties the queue in about 0.1 s, would sit out the rest of that second.
            ("fetch.queue.backoff.ms", FETCH_QUEUE_BACKOFF_MS),
        ]);
        let mut group_config = client_config.clone();
        group_config
            .set("group.id", &config.group_id)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false");
        let refusals = Arc::new(Refusals::default());
        let context = GroupContext {
            refusals: refusals.clone(),
            ..GroupContext::default()
        };
        let consumer: StreamConsumer<GroupContext> = group_config
            .create_with_context(context)
            .map_err(kafka_error("cannot create the Kafka consumer"))?;
        let lookup = quiet_consumer(&client_config, "lookup", refusals.clone())?;
        let source = Self {
            consumer: Arc::new(consumer),
            lookup: Arc::new(lookup),
            client_config,
            refusals,
            topics: config.topic_names(),
            topics_key: config.topics_key(),
            bootstrap: config.connection.bootstrap_servers.clone(),
            starting_offsets: config.starting_offsets.clone(),
            fail_on_data_loss: config.fail_on_data_loss,
            assignment_timeout: config.assignment_timeout,
            assignment: config.assignment,
            fetch_positions: HashMap::new(),
            lag: BTreeMap::new(),
        };
        let partitions = source.all_partitions().await?;
        source.take_partitions(partitions)?;
        Ok(source)
    }

    /// Subscribes to the topics (the group assigns partitions later, inside `recv`), or, with
    /// manual assignment, owns every one of `partitions` at once. The consumer itself is
    /// assigned them at the first read, at the offsets the pipeline asks for.
    fn take_partitions(&self, partitions: Vec<PartitionKey>) -> Result<(), SourceError> {
        match self.assignment {
            PartitionAssignment::Group => {
                let topics: Vec<&str> = self.topics.iter().map(String::as_str).collect();
                self.consumer
                    .subscribe(&topics)
                    .map_err(kafka_error("cannot subscribe"))
            }
            PartitionAssignment::Manual => {
                let mut assigned = self.consumer.context().assigned.lock().expect("assignment lock");
                assigned.extend(partitions.into_iter().map(|key| self.topic_partition(key)));
                tracing::info!(
                    "kafka: reading partitions {} (manual assignment: no group join)",
                    listed(&assigned)
                );
                Ok(())
            }
        }
    }

    /// The key of `topic`'s `partition`; `None` for a topic this source does not read.
    fn key_of(&self, topic: &str, partition: i32) -> Option<PartitionKey> {
        let topic = self.topics.iter().position(|t| t == topic)?;
        Some(PartitionKey { topic, partition })
    }

    fn topic_partition(&self, key: PartitionKey) -> TopicPartition {
        TopicPartition {
            topic: self.topics[key.topic].clone(),
            partition: key.partition,
        }
    }

    /// Runs a blocking lookup off the async threads. When it fails, the refusal behind it (the
    /// broker refused the credentials), if a client reported one, is the error: the lookup
    /// itself only sees a broken connection or a timeout.
    async fn blocking<T: Send + 'static>(
        &self,
        call: impl FnOnce(&BaseConsumer<ProbeContext>) -> Result<T, SourceError> + Send + 'static,
    ) -> Result<T, SourceError> {
        let (consumer, refusals) = (Arc::clone(&self.lookup), Arc::clone(&self.refusals));
        let lookup = tokio::task::spawn_blocking(move || {
            let result = call(&consumer);
            if result.is_err() {
                refusals.collect(&consumer);
            }
            result
        });
        let result = tokio::select! {
            joined = lookup => joined.unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic())),
            refused = self.refusals.reported() => Err(refused),
        };
        result.map_err(|error| self.refusals.error().unwrap_or(error))
    }

    /// Every partition of every topic, which also proves the broker answers and each topic
    /// exists.
    async fn all_partitions(&self) -> Result<Vec<PartitionKey>, SourceError> {
        let (topics, key, bootstrap) = (self.topics.clone(), self.topics_key, self.bootstrap.clone());
        self.blocking(move |consumer| {
            let mut all = Vec::new();
            for (index, topic) in topics.iter().enumerate() {
                let partitions = partitions_of(consumer, topic, &bootstrap)?;
                if partitions.is_empty() {
                    return Err(SourceError::TopicMissing {
                        topic: topic.clone(),
                        key,
                        bootstrap,
                    });
                }
                all.extend(partitions.into_iter().map(|partition| PartitionKey {
                    topic: index,
                    partition,
                }));
            }
            Ok(all)
        })
        .await
    }

    /// The partitions the group gave this member.
    fn assigned(&self) -> BTreeSet<PartitionKey> {
        let assigned = self.consumer.context().assigned.lock().expect("assignment lock");
        assigned
            .iter()
            .filter_map(|tp| self.key_of(&tp.topic, tp.partition))
            .collect()
    }

    /// Polls the consumer (which runs rebalance callbacks) until the group assigns partitions.
    /// Records delivered meanwhile are dropped: every read seeks first. Returns at once with
    /// manual assignment, which owns its partitions from the start.
    async fn await_assignment(&mut self) -> Result<BTreeSet<PartitionKey>, SourceError> {
        let deadline = Instant::now() + self.assignment_timeout;
        while self.assigned().is_empty() && Instant::now() < deadline {
            let wait = deadline.saturating_duration_since(Instant::now());
            let received = tokio::select! {
                received = tokio::time::timeout(wait, self.consumer.recv()) => received,
                () = self.consumer.context().rebalanced.notified() => continue,
                refused = self.refusals.reported() => return Err(refused),
            };
            if let Ok(Ok(message)) = received {
                if let Some(key) = self.key_of(message.topic(), message.partition()) {
                    self.fetch_positions.remove(&key);
                }
            }
        }
        let assigned = self.assigned();
        if assigned.is_empty() {
            tracing::warn!(
                "kafka: no partition of `{}` assigned within {:?}: other members of the group hold them all",
                self.topics.join("`, `"),
                self.assignment_timeout
            );
        }
        Ok(assigned)
    }

    /// The offset where each partition ends now. Asks for the high watermark, then reads on
    /// to the partition's end-of-file event: some brokers under-report the watermark.
    async fn true_ends(&self, partitions: Vec<PartitionKey>) -> Result<Positions, SourceError> {
        let (config, topics) = (self.client_config.clone(), self.topics.clone());
        let refusals = self.refusals.clone();
        let ends = self
            .blocking(move |_| probe_ends(&config, &topics, &partitions, refusals))
            .await?;
        Ok(ends
            .into_iter()
            .map(|(key, end)| (self.topic_partition(key), end))
            .collect())
    }

    async fn starting_positions(&self, partitions: Vec<PartitionKey>) -> Result<Positions, SourceError> {
        match self.starting_offsets {
            StartingOffsets::Latest => self.true_ends(partitions).await,
            StartingOffsets::Earliest => {
                let lows = self.watermarks(partitions).await?;
                Ok(lows
                    .into_iter()
                    .map(|(key, (low, _))| (self.topic_partition(key), low))
                    .collect())
            }
            StartingOffsets::Timestamp(millis) => {
                let topics = self.topics.clone();
                let found = self
                    .blocking(move |consumer| {
                        let mut list = TopicPartitionList::new();
                        for key in &partitions {
                            list.add_partition_offset(
                                key.topic_in(&topics),
                                key.partition,
                                Offset::Offset(millis),
                            )
                            .map_err(kafka_error("offsets for timestamp"))?;
                        }
                        consumer
                            .offsets_for_times(list, BROKER_TIMEOUT)
                            .map_err(kafka_error("offsets for timestamp"))
                    })
                    .await?;
                let mut positions = Positions::new();
                let mut past_end = Vec::new();
                for element in found.elements() {
                    match element.offset() {
                        Offset::Offset(o) => drop(positions.insert(element_partition(&element), o)),
                        _ => past_end.extend(self.key_of(element.topic(), element.partition())),
                    }
                }
                positions.extend(self.true_ends(past_end).await?);
                Ok(positions)
            }
        }
    }

    async fn watermarks(
        &self,
        partitions: Vec<PartitionKey>,
    ) -> Result<BTreeMap<PartitionKey, (i64, i64)>, SourceError> {
        let topics = self.topics.clone();
        self.blocking(move |consumer| {
            partitions
                .iter()
                .map(|&key| {
                    consumer
                        .fetch_watermarks(key.topic_in(&topics), key.partition, BROKER_TIMEOUT)
                        .map(|w| (key, w))
                        .map_err(kafka_error("watermarks"))
                })
                .collect()
        })
        .await
    }

    /// Seeks every partition whose fetch position is not `from`; checks no record the batch
    /// needs was deleted by retention.
    async fn seek_all(
        &mut self,
        from: &BTreeMap<PartitionKey, i64>,
    ) -> Result<BTreeMap<PartitionKey, i64>, SourceError> {
        let stale: Vec<PartitionKey> = from
            .iter()
            .filter(|(key, o)| self.fetch_positions.get(key) != Some(o))
            .map(|(key, _)| *key)
            .collect();
        let mut from = from.clone();
        if stale.is_empty() {
            return Ok(from);
        }
        for (key, (low, _)) in self.watermarks(stale.clone()).await? {
            let wanted = from[&key];
            if wanted < low {
                let lost = format!("{} offsets {wanted}..{low}", self.topic_partition(key));
                if self.fail_on_data_loss {
                    return Err(SourceError::DataLost(lost));
                }
                tracing::warn!("kafka: {lost} were deleted by retention before being read: skipping them");
                from.insert(key, low);
            }
        }
        match self.assignment {
            PartitionAssignment::Group => self.seek_each(stale, &from),
            PartitionAssignment::Manual => self.assign_at(&from)?,
        }
        Ok(from)
    }

    /// Moves each of `stale` to its offset in `from`; a partition that cannot be sought is
    /// read from where it stands, and records before its offset are filtered out.
    fn seek_each(&mut self, stale: Vec<PartitionKey>, from: &BTreeMap<PartitionKey, i64>) {
        for key in stale {
            let offset = from[&key];
            let topic = key.topic_in(&self.topics);
            match self
                .consumer
                .seek(topic, key.partition, Offset::Offset(offset), BROKER_TIMEOUT)
            {
                Ok(()) => drop(self.fetch_positions.insert(key, offset)),
                Err(e) => tracing::debug!(
                    "kafka: seek {topic}[{}] to {offset} failed, filtering instead: {e}",
                    key.partition
                ),
            }
        }
    }

    /// Manual assignment: assigns the consumer every owned partition, at its offset in `from`
    /// or where it stands. A local call that cannot fail the way a seek can, where a
    /// partition never assigned has no position to filter from. A partition with neither
    /// waits at the end, fetching nothing old, until a read asks for it.
    fn assign_at(&mut self, from: &BTreeMap<PartitionKey, i64>) -> Result<(), SourceError> {
        let mut list = TopicPartitionList::new();
        let mut positions = HashMap::new();
        for key in self.assigned() {
            let known = from.get(&key).or_else(|| self.fetch_positions.get(&key));
            let offset = known.map_or(Offset::End, |&o| Offset::Offset(o));
            list.add_partition_offset(key.topic_in(&self.topics), key.partition, offset)
                .map_err(kafka_error("assign"))?;
            positions.extend(known.map(|&o| (key, o)));
        }
        self.consumer.assign(&list).map_err(kafka_error("assign"))?;
        self.fetch_positions = positions;
        Ok(())
    }

    /// The high watermark of the latest fetch response: no round trip, and right even on
    /// brokers whose ListOffsets answer is not.
    fn cached_high_watermark(&self, key: PartitionKey) -> Option<i64> {
        let topic = std::ffi::CString::new(key.topic_in(&self.topics)).ok()?;
        let (mut low, mut high) = (-1i64, -1i64);
        // SAFETY: the client pointer lives as long as `self.consumer`; the out pointers are
        // valid locals; librdkafka only reads the topic name.
        let code = unsafe {
            rdkafka::bindings::rd_kafka_get_watermark_offsets(
                self.consumer.client().native_ptr(),
                topic.as_ptr(),
                key.partition,
                &mut low,
                &mut high,
            )
        };
        (code == rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR && high >= 0)
            .then_some(high)
    }

    /// The positions of this source's topics, by key.
    fn partition_offsets(&self, positions: &Positions) -> BTreeMap<PartitionKey, i64> {
        positions
            .iter()
            .filter_map(|(tp, o)| Some((self.key_of(&tp.topic, tp.partition)?, *o)))
            .collect()
    }
}

/// The partition numbers of `topic`; none when it does not exist.
fn partitions_of(
    consumer: &BaseConsumer<ProbeContext>,
    topic: &str,
    bootstrap: &str,
) -> Result<Vec<i32>, SourceError> {
    let metadata = consumer
        .fetch_metadata(Some(topic), BROKER_TIMEOUT)
        .map_err(|source| SourceError::Unreachable {
            bootstrap: bootstrap.to_string(),
            source,
        })?;
    Ok(metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic && t.error().is_none())
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect())
}

/// librdkafka's local queue size for a read-ahead of one batch, within librdkafka's bounds
/// (its default, 64 MiB, is the floor).
fn prefetch_kbytes(batch_bytes: usize) -> String {
    (batch_bytes / 1024).clamp(65_536, 2_097_151).to_string()
}

/// A consumer outside the group, for lookups and probes. librdkafka needs a group id to
/// assign partitions; this one never joins or commits.
pub fn quiet_consumer(
    config: &ClientConfig,
    purpose: &str,
    refusals: Arc<Refusals>,
) -> Result<BaseConsumer<ProbeContext>, SourceError> {
    config
        .clone()
        .set("group.id", format!("tweetlake-{purpose}"))
        .set("enable.auto.commit", "false")
        .create_with_context(ProbeContext { refusals })
        .map_err(kafka_error("cannot create the Kafka lookup client"))
}

/// Where each of `partitions` ends, probed topic by topic: the end-of-file event names only
/// the partition number.
fn probe_ends(
    config: &ClientConfig,
    topics: &[String],
    partitions: &[PartitionKey],
    refusals: Arc<Refusals>,
) -> Result<BTreeMap<PartitionKey, i64>, SourceError> {
    let mut ends = BTreeMap::new();
    for (index, topic) in topics.iter().enumerate() {
        let numbers: Vec<i32> = partitions
            .iter()
            .filter(|key| key.topic == index)
            .map(|key| key.partition)
            .collect();
        if numbers.is_empty() {
            continue;
        }
        let found = probe_topic_ends(config, topic, &numbers, refusals.clone())?;
        ends.extend(found.into_iter().map(|(partition, end)| {
            let key = PartitionKey {
                topic: index,
                partition,
            };
            (key, end)
        }));
    }
    Ok(ends)
}

/// Reads from each partition's high watermark to its end-of-file event.
fn probe_topic_ends(
    config: &ClientConfig,
    topic: &str,
    partitions: &[i32],
    refusals: Arc<Refusals>,
) -> Result<BTreeMap<i32, i64>, SourceError> {
    let mut eager = config.clone();
    eager.set("fetch.wait.max.ms", PROBE_FETCH_WAIT_MS);
    let probe = quiet_consumer(&eager, "end-probe", refusals)?;
    let mut ends = BTreeMap::new();
    let mut list = TopicPartitionList::new();
    for &p in partitions {
        let (_, high) = probe
            .fetch_watermarks(topic, p, BROKER_TIMEOUT)
            .map_err(kafka_error("watermarks"))?;
        ends.insert(p, high);
        list.add_partition_offset(topic, p, Offset::Offset(high))
            .map_err(kafka_error("end probe"))?;
    }
    probe.assign(&list).map_err(kafka_error("end probe"))?;
    let mut open: BTreeSet<i32> = partitions.iter().copied().collect();
    let deadline = Instant::now() + BROKER_TIMEOUT * 3;
    while !open.is_empty() {
        if Instant::now() > deadline {
            return Err(SourceError::NoEndOfPartition {
                topic: topic.to_string(),
                partitions: format!("{open:?}"),
            });
        }
        match probe.poll(Duration::from_millis(100)) {
            Some(Ok(message)) => {
                let end = ends.entry(message.partition()).or_default();
                *end = (*end).max(message.offset() + 1);
            }
            Some(Err(KafkaError::PartitionEOF(p))) => drop(open.remove(&p)),
            Some(Err(e)) => tracing::debug!("kafka: end probe: {e}"),
            None => {}
        }
    }
    Ok(ends)
}

/// Per-partition progress of one read.
struct ReadState {
    builder: RawBatchBuilder,
    expected: BTreeMap<PartitionKey, i64>,
    /// Partitions that need nothing more in this read (snapshot or range end, or end of data).
    done: BTreeSet<PartitionKey>,
}

impl ReadState {
    fn new(from: BTreeMap<PartitionKey, i64>) -> Self {
        Self {
            builder: RawBatchBuilder::default(),
            expected: from,
            done: BTreeSet::new(),
        }
    }

    fn all_done(&self) -> bool {
        self.expected.keys().all(|key| self.done.contains(key))
    }
}

/// When a read stops waiting for more records.
#[derive(Debug, Clone, Copy)]
enum ReadEnd {
    /// Continuous mode: wait for new records until then.
    Deadline(Instant),
    /// Available-now: a partition is done at its end-of-partition event (or after
    /// [`IDLE_TIMEOUT`] of silence).
    EndOfData,
}

impl KafkaSource {
    /// Receives records into `state` until `full` says so, every partition is done, the
    /// assignment changes, or `read_end` comes. `end_of` gives each partition's exclusive end.
    async fn fill(
        &mut self,
        state: &mut ReadState,
        end_of: impl Fn(PartitionKey) -> i64,
        read_end: ReadEnd,
        full: impl Fn(&RawBatchBuilder) -> bool,
    ) -> Result<(), SourceError> {
        let generation = self.assignment_generation();
        // A message borrows the consumer: a handle of its own leaves `self` free to update.
        let consumer = Arc::clone(&self.consumer);
        // A member the group gave no partition still polls until the deadline: rebalance
        // callbacks run only inside a poll, so it would never learn of a partition given to it
        // later, and returning at once would spin the batch loop.
        let unassigned = state.expected.is_empty() && matches!(read_end, ReadEnd::Deadline(_));
        while (unassigned || !state.all_done())
            && !full(&state.builder)
            && self.assignment_generation() == generation
        {
            let wait = match read_end {
                ReadEnd::Deadline(deadline) => deadline.saturating_duration_since(Instant::now()),
                ReadEnd::EndOfData => IDLE_TIMEOUT,
            };
            let received = tokio::select! {
                received = tokio::time::timeout(wait, consumer.recv()) => received,
                refused = self.refusals.reported() => return Err(refused),
            };
            let Ok(received) = received else {
                break;
            };
            match received {
                Ok(message) => self.accept(state, &message, &end_of),
                Err(KafkaError::PartitionEOF(p)) => {
                    if matches!(read_end, ReadEnd::EndOfData) {
                        let ended = self.ended_partitions(state, p);
                        state.done.extend(ended);
                    }
                }
                Err(error) => self.consume_error(error).await?,
            }
        }
        Ok(())
    }

    /// The partitions of the read that an end-of-partition event for partition number `p`
    /// ends: those read up to where the consumer stands. rdkafka's event keeps the number but
    /// not the topic, so with several topics the high watermark of the latest fetch confirms
    /// which of them is really at its end.
    fn ended_partitions(&self, state: &ReadState, p: i32) -> Vec<PartitionKey> {
        let one_topic = self.topics.len() == 1;
        state
            .expected
            .iter()
            .filter(|&(&key, &offset)| {
                key.partition == p
                    && self.fetch_positions.get(&key) == Some(&offset)
                    && (one_topic || self.cached_high_watermark(key).is_some_and(|high| high <= offset))
            })
            .map(|(&key, _)| key)
            .collect()
    }

    /// Adds `message` to the read if it is the next record a partition needs.
    fn accept(
        &mut self,
        state: &mut ReadState,
        message: &BorrowedMessage<'_>,
        end_of: impl Fn(PartitionKey) -> i64,
    ) {
        let Some(key) = self.key_of(message.topic(), message.partition()) else {
            return;
        };
        let Some(&expected) = state.expected.get(&key) else {
            self.fetch_positions.remove(&key); // not asked for: its position is now unknown
            return;
        };
        let offset = message.offset();
        if offset < expected || state.done.contains(&key) {
            if offset >= expected {
                self.fetch_positions.remove(&key);
            }
            return;
        }
        if offset >= end_of(key) {
            self.fetch_positions.remove(&key);
            state.done.insert(key);
            return;
        }
        let timestamp = message.timestamp().to_millis().map(|ms| ms * 1000);
        state.builder.push(
            message.topic(),
            key.partition,
            offset,
            timestamp,
            message.key(),
            message.payload(),
        );
        state.expected.insert(key, offset + 1);
        self.fetch_positions.insert(key, offset + 1);
        if offset + 1 >= end_of(key) {
            state.done.insert(key);
        }
    }

    /// A consumer error during a read: permanent ones end the read. Kafka itself calls an
    /// unknown topic retriable (metadata can lag behind a new topic), so that one counts only
    /// once a lookup confirms the topic is gone.
    async fn consume_error(&self, error: KafkaError) -> Result<(), SourceError> {
        match KafkaFailure::of(&error) {
            KafkaFailure::Transient => {}
            KafkaFailure::TopicMissing => self.all_partitions().await.map(drop)?,
            _ => return Err(kafka_error("reading")(error)),
        }
        tracing::warn!("kafka: {error}");
        Ok(())
    }
}

impl Source for KafkaSource {
    fn describe(&self) -> String {
        format!("kafka:{}/{}", self.bootstrap, self.topics.join(","))
    }

    async fn initial_positions(&mut self) -> Result<Positions, SourceError> {
        let assigned = self.await_assignment().await?;
        self.starting_positions(assigned.into_iter().collect()).await
    }

    async fn end_positions(&mut self) -> Result<Positions, SourceError> {
        let partitions = self.all_partitions().await?;
        self.true_ends(partitions).await
    }

    fn assignment_generation(&self) -> u64 {
        self.consumer.context().generation.load(Ordering::SeqCst)
    }

    async fn read_next(&mut self, from: &Positions, limits: &ReadLimits) -> Result<SourceBatch, SourceError> {
        let start = self.seek_all(&self.partition_offsets(from)).await?;
        let until = limits.until.as_ref().map(|u| self.partition_offsets(u));
        let mut state = ReadState::new(start.clone());
        let end_of = |key: PartitionKey| {
            until
                .as_ref()
                .and_then(|u| u.get(&key).copied())
                .unwrap_or(i64::MAX)
        };
        for (&key, &offset) in &start {
            if offset >= end_of(key) {
                state.done.insert(key);
            }
        }
        let (max_records, max_bytes) = (limits.max_records, limits.max_bytes);
        let full = |b: &RawBatchBuilder| b.len() >= max_records || b.bytes() >= max_bytes;
        let read_end = limits.deadline.map_or(ReadEnd::EndOfData, ReadEnd::Deadline);
        self.fill(&mut state, end_of, read_end, full).await?;
        let ranges = start
            .iter()
            .map(|(&key, &start)| OffsetRange {
                topic: self.topics[key.topic].clone(),
                partition: key.partition,
                start,
                end: state.expected[&key],
            })
            .collect();
        Ok(SourceBatch {
            records: state.builder.finish(),
            ranges,
        })
    }

    async fn read_ranges(&mut self, ranges: &[OffsetRange]) -> Result<RecordBatch, SourceError> {
        let wanted: BTreeMap<PartitionKey, (i64, i64)> = ranges
            .iter()
            .filter(|r| r.end > r.start)
            .filter_map(|r| Some((self.key_of(&r.topic, r.partition)?, (r.start, r.end))))
            .collect();
        let starts: BTreeMap<PartitionKey, i64> = wanted.iter().map(|(&key, &(s, _))| (key, s)).collect();
        let fail_on_data_loss = std::mem::replace(&mut self.fail_on_data_loss, true);
        let sought = self.seek_all(&starts).await;
        self.fail_on_data_loss = fail_on_data_loss;
        let start = sought?;
        let mut state = ReadState::new(start);
        self.fill(&mut state, |key| wanted[&key].1, ReadEnd::EndOfData, |_| false)
            .await?;
        if let Some((key, _)) = state
            .expected
            .iter()
            .find(|(key, o)| **o < wanted[key].1 && !state.done.contains(key))
        {
            let (start, end) = wanted[key];
            return Err(SourceError::RangeUnreadable {
                range: format!("{} {start}..{end}", self.topic_partition(*key)),
                within: IDLE_TIMEOUT,
            });
        }
        Ok(state.builder.finish())
    }

    async fn commit_positions(&mut self, positions: &Positions) -> Result<(), SourceError> {
        let offsets = self.partition_offsets(positions);
        let mut list = TopicPartitionList::new();
        for (&key, &o) in &offsets {
            list.add_partition_offset(key.topic_in(&self.topics), key.partition, Offset::Offset(o))
                .map_err(kafka_error("commit offsets"))?;
        }
        if let Err(e) = self.consumer.commit(&list, CommitMode::Async) {
            // Only a mirror of the lake's log: a failed commit costs lag accuracy, not data.
            tracing::warn!("kafka: committing group offsets failed: {e}");
        }
        self.lag = offsets
            .iter()
            .filter_map(|(&key, &position)| {
                let high = self.cached_high_watermark(key)?;
                Some((self.topic_partition(key), (high - position).max(0)))
            })
            .collect();
        Ok(())
    }

    fn lag(&self, _positions: &Positions) -> BTreeMap<TopicPartition, i64> {
        self.lag.clone()
    }
}
