//! Shared test helpers: a temporary project, the real binary, and queries over the real lake.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

use deltalake::arrow::array::{Array, AsArray, RecordBatch};
use deltalake::arrow::datatypes::Int64Type;
use deltalake::datafusion::prelude::SessionContext;
use tempfile::TempDir;

use tweetlake::config::Config;
use tweetlake::decode::{BatchContext, Decoded, MessageDecoder};
use tweetlake::lake::Lake;
use tweetlake::source::FileSource;

/// A clock whose sleeps return at once and are recorded; `now` moves by each sleep: a stream
/// producer's reconnect schedule, checked without waiting it out.
pub struct FakeClock {
    pub now: std::sync::Mutex<std::time::SystemTime>,
    pub sleeps: std::sync::Mutex<Vec<Duration>>,
}

/// Where the fake clock starts: a fixed time, so `x-rate-limit-reset` values are exact.
pub const START_SECS: u64 = 1_800_000_000;

impl FakeClock {
    pub fn new() -> Self {
        Self {
            now: std::sync::Mutex::new(std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(START_SECS)),
            sleeps: std::sync::Mutex::default(),
        }
    }
}

impl tweetlake::produce::x::backoff::Clock for &FakeClock {
    fn now(&self) -> std::time::SystemTime {
        *self.now.lock().unwrap()
    }

    fn sleep(&self, duration: Duration) -> impl std::future::Future<Output = ()> + Send {
        self.sleeps.lock().unwrap().push(duration);
        *self.now.lock().unwrap() += duration;
        std::future::ready(())
    }
}

/// Every child process gets this long before the test fails.
pub const CHILD_TIMEOUT: Duration = Duration::from_secs(180);

/// Overrides `metrics.listen`: [`Project::command`] turns the server off with it.
pub const METRICS_LISTEN_ENV: &str = "TWEETLAKE_METRICS__LISTEN";

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// Good fixture posts followed by the bad ones, as one JSONL text.
pub fn fixture_lines() -> Vec<u8> {
    let mut text = std::fs::read(fixture("x_v2_stream_sample.jsonl")).unwrap();
    text.extend(std::fs::read(fixture("x_v2_stream_bad.jsonl")).unwrap());
    text
}

pub struct Project {
    pub dir: TempDir,
}

impl Project {
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn path(&self, relative: &str) -> PathBuf {
        self.dir.path().join(relative)
    }

    pub fn lake_uri(&self) -> String {
        self.path("lake").display().to_string()
    }

    pub fn posts_path(&self) -> PathBuf {
        self.path("posts.jsonl")
    }

    pub fn write_posts(&self, bytes: &[u8]) {
        std::fs::write(self.posts_path(), bytes).unwrap();
    }

    pub fn append_posts(&self, bytes: &[u8]) {
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(self.posts_path())
            .unwrap();
        file.write_all(bytes).unwrap();
    }

    /// Writes `tweetlake.toml` for a file source over `posts.jsonl`; `pipeline` adds keys to
    /// the `[pipeline]` section.
    pub fn write_config(&self, pipeline: &str) {
        let toml = format!(
            "[source]\nkind = \"file\"\npath = {:?}\n\n[lake]\nuri = {:?}\n\n[pipeline]\nname = \"test\"\n\
             progress_log = {:?}\n{pipeline}\n",
            self.posts_path().display().to_string(),
            self.lake_uri(),
            self.path("progress.ndjson").display().to_string(),
        );
        std::fs::write(self.path("tweetlake.toml"), toml).unwrap();
    }

    /// Writes `tweetlake.toml` for a Kafka source into the lake at `lake_uri` (with S3
    /// `storage_options` when given); `pipeline` adds keys to the `[pipeline]` section.
    pub fn write_kafka_config(
        &self,
        bootstrap: &str,
        topic: &str,
        lake_uri: &str,
        storage_options: &BTreeMap<String, String>,
        pipeline: &str,
    ) {
        let source = format!("topic = {topic:?}\ngroup_id = \"tweetlake-{topic}\"");
        self.write_kafka_source_config(bootstrap, &source, lake_uri, storage_options, pipeline);
    }

    /// [`Self::write_kafka_config`] for a source reading several `topics` (`source.topics`).
    pub fn write_kafka_topics_config(
        &self,
        bootstrap: &str,
        topics: &[&str],
        lake_uri: &str,
        pipeline: &str,
    ) {
        let source = format!(
            "topics = {topics:?}\ngroup_id = \"tweetlake-{}\"",
            topics.join("-")
        );
        self.write_kafka_source_config(bootstrap, &source, lake_uri, &BTreeMap::new(), pipeline);
    }

    /// `source` holds the topic and group keys.
    fn write_kafka_source_config(
        &self,
        bootstrap: &str,
        source: &str,
        lake_uri: &str,
        storage_options: &BTreeMap<String, String>,
        pipeline: &str,
    ) {
        let options: String = storage_options
            .iter()
            .map(|(k, v)| format!("{k} = {v:?}\n"))
            .collect();
        let toml = format!(
            "[source]\nkind = \"kafka\"\nbootstrap_servers = {bootstrap:?}\n{source}\n\
             assignment_timeout = \"30s\"\n\n\
             [source.kafka_options]\n\"session.timeout.ms\" = \"6000\"\n\n\
             [lake]\nuri = {lake_uri:?}\n\n[lake.storage_options]\n{options}\n\
             [pipeline]\nname = \"test\"\nprogress_log = {:?}\n{pipeline}\n",
            self.path("progress.ndjson").display().to_string(),
        );
        std::fs::write(self.path("tweetlake.toml"), toml).unwrap();
    }

    pub fn config(&self) -> Config {
        Config::load(Some(&self.path("tweetlake.toml"))).unwrap()
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_tweetlake"));
        command
            .args(args)
            .current_dir(self.dir.path())
            .env_remove("RUST_LOG")
            .env_remove(tweetlake::fault::ENV)
            // Tests run side by side: no `run` binds the default metrics port unless asked to.
            .env(METRICS_LISTEN_ENV, "")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        command
    }

    /// Runs the binary to completion (bounded by CHILD_TIMEOUT).
    pub fn run(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut command = self.command(args);
        command.envs(env.iter().copied());
        wait_bounded(command.spawn().unwrap())
    }

    pub async fn query(&self, sql: &str) -> Vec<RecordBatch> {
        query_lake(&self.lake_uri(), sql).await
    }

    pub async fn count(&self, sql: &str) -> i64 {
        scalar_i64(&self.query(sql).await)
    }

    /// Progress lines the runs wrote, parsed.
    pub fn progress(&self) -> Vec<serde_json::Value> {
        let text = std::fs::read_to_string(self.path("progress.ndjson")).unwrap_or_default();
        text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    }
}

/// Waits for `child`, killing it and failing the test after CHILD_TIMEOUT.
pub fn wait_bounded(child: Child) -> Output {
    Spawned::new(child).wait()
}

/// Runs `sql` over every table of the local lake at `uri`.
pub async fn query_lake(uri: &str, sql: &str) -> Vec<RecordBatch> {
    query_lake_with(uri, &BTreeMap::new(), sql).await
}

/// A session over bronze, the dead letters and every shipped model's table in the lake at `uri`.
pub async fn lake_session(uri: &str) -> SessionContext {
    lake_session_with(uri, &BTreeMap::new()).await
}

/// A session over every table of the lake at `uri` reached with `options`, with the tweet functions.
pub async fn lake_session_with(uri: &str, options: &BTreeMap<String, String>) -> SessionContext {
    let lake = Lake::new(uri, options).unwrap();
    let models = tweetlake::embedded::models(&["dlq"]).unwrap();
    let ctx = tweetlake::transform::session(models.companies());
    let tables = ["bronze", "dlq"].into_iter().map(String::from);
    for table in tables.chain(models.models().iter().map(|m| m.name.clone())) {
        lake.register_table(&ctx, &table).await.unwrap();
    }
    ctx
}

/// The single integer a query returned.
pub fn scalar_i64(batches: &[RecordBatch]) -> i64 {
    let batch = batches.iter().find(|b| b.num_rows() > 0).expect("one row");
    let column =
        deltalake::arrow::compute::cast(batch.column(0), &deltalake::arrow::datatypes::DataType::Int64)
            .unwrap();
    let values = column.as_primitive::<Int64Type>();
    assert!(values.is_valid(0));
    values.value(0)
}

/// All values of the first column as strings, in result order.
pub fn strings(batches: &[RecordBatch]) -> Vec<String> {
    let mut out = Vec::new();
    for batch in batches {
        let column =
            deltalake::arrow::compute::cast(batch.column(0), &deltalake::arrow::datatypes::DataType::Utf8)
                .unwrap();
        let values = column.as_string::<i32>();
        out.extend((0..values.len()).map(|i| values.value(i).to_string()));
    }
    out
}

/// `jsonl` read whole and decoded as batch 0, on one thread (messages up to 1 MiB).
pub async fn decode_whole(jsonl: Vec<u8>) -> Decoded {
    let raw = FileSource::from_bytes("posts.jsonl", jsonl)
        .read_all()
        .await
        .unwrap();
    let ctx = BatchContext {
        batch_id: 0,
        planned_at_micros: 0,
    };
    MessageDecoder::new(1 << 20).decode(&raw, ctx).unwrap()
}

/// Lines of a JSONL text that are synthetic good posts (malformed ones lack the annotations).
pub fn synth_good_count(text: &[u8]) -> i64 {
    text.split(|&b| b == b'\n')
        .filter(|l| l.windows(21).any(|w| w == b"\"context_annotations\""))
        .count() as i64
}

/// Lines that are neither blank nor good synthetic posts.
pub fn synth_bad_count(text: &[u8]) -> i64 {
    let lines = text.split(|&b| b == b'\n').filter(|l| !l.is_empty()).count() as i64;
    lines - synth_good_count(text)
}

/// The test broker (`scripts/services.sh` exports it), or `None` to skip outside CI.
pub fn kafka_bootstrap() -> Option<String> {
    service_env("TWEETLAKE_TEST_KAFKA")
}

/// A Python with the reference Prometheus text parser (`prometheus_client`; `scripts/services.sh`
/// installs it), or `None` to skip outside CI.
pub fn test_python() -> Option<String> {
    service_env("TWEETLAKE_TEST_PYTHON")
}

/// S3 endpoint, bucket and options of the test object store, or `None` to skip outside CI.
pub fn s3_lake(prefix: &str) -> Option<(String, BTreeMap<String, String>)> {
    let endpoint = service_env("TWEETLAKE_TEST_S3_ENDPOINT")?;
    let bucket = std::env::var("TWEETLAKE_TEST_S3_BUCKET").unwrap_or_else(|_| "tweetlake-test".into());
    let unique = format!("{prefix}-{}-{}", std::process::id(), unique_suffix());
    let options = BTreeMap::from([
        ("AWS_ENDPOINT_URL".to_string(), endpoint),
        ("AWS_ALLOW_HTTP".to_string(), "true".to_string()),
        (
            "AWS_VIRTUAL_HOSTED_STYLE_REQUEST".to_string(),
            "false".to_string(),
        ),
        (
            "AWS_REGION".to_string(),
            std::env::var("AWS_REGION").unwrap_or_else(|_| "us-east-1".into()),
        ),
    ]);
    Some((format!("s3://{bucket}/{unique}"), options))
}

/// A name no other test of this run uses.
pub fn unique_suffix() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{nanos:x}{}", NEXT.fetch_add(1, Ordering::SeqCst))
}

pub fn service_env(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(value) if !value.is_empty() => Some(value),
        _ if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!(
                "{var} is not set: CI must run the tests through scripts/test.sh, which starts the services"
            )
        }
        _ => {
            eprintln!("skipping: {var} is not set (run scripts/test.sh, which starts the services)");
            None
        }
    }
}

/// Runs `sql` over every table of the lake at `uri` reached with `options` (S3 when given).
pub async fn query_lake_with(uri: &str, options: &BTreeMap<String, String>, sql: &str) -> Vec<RecordBatch> {
    let ctx = lake_session_with(uri, options).await;
    ctx.sql(sql).await.unwrap().collect().await.unwrap()
}

pub mod kafka {
    use std::time::{Duration, Instant};

    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::producer::{FutureProducer, FutureRecord};
    use rdkafka::ClientConfig;

    /// Reading a whole test topic takes at most this long.
    const READ_TIMEOUT: Duration = Duration::from_secs(60);

    pub async fn create_topic(bootstrap: &str, topic: &str, partitions: i32) {
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .create()
            .unwrap();
        let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
        let results = admin.create_topics([&new], &AdminOptions::new()).await.unwrap();
        for result in results {
            result.unwrap();
        }
    }

    /// Produces every non-blank line of `jsonl`, spreading them over `partitions` in turn, and
    /// waits for every delivery.
    pub async fn produce_lines(bootstrap: &str, topic: &str, partitions: i32, jsonl: &[u8]) -> usize {
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("linger.ms", "5")
            .create()
            .unwrap();
        let lines: Vec<&[u8]> = jsonl.split(|&b| b == b'\n').filter(|l| !l.is_empty()).collect();
        let deliveries: Vec<_> = lines
            .iter()
            .enumerate()
            .map(|(i, line)| {
                let key = i.to_string();
                let record = FutureRecord::to(topic)
                    .partition(i as i32 % partitions)
                    .key(&key)
                    .payload(*line);
                producer.send_result(record).unwrap()
            })
            .collect();
        for delivery in deliveries {
            delivery.await.unwrap().unwrap();
        }
        lines.len()
    }

    /// Every record of a one-partition topic: key and the `tweetlake.error` header.
    pub fn read_all(bootstrap: &str, topic: &str) -> Vec<(String, String)> {
        read_records(bootstrap, topic)
            .into_iter()
            .map(|r| (r.key, r.error))
            .collect()
    }

    pub struct Record {
        pub key: String,
        pub payload: Vec<u8>,
        /// The `tweetlake.error` header, empty when absent.
        pub error: String,
    }

    /// Every record of a one-partition topic, in order, read within READ_TIMEOUT.
    pub fn read_records(bootstrap: &str, topic: &str) -> Vec<Record> {
        use rdkafka::message::{Headers, Message};
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("group.id", format!("{topic}-reader"))
            .set("enable.partition.eof", "true")
            .create()
            .unwrap();
        let mut list = rdkafka::TopicPartitionList::new();
        list.add_partition_offset(topic, 0, rdkafka::Offset::Beginning)
            .unwrap();
        consumer.assign(&list).unwrap();
        let deadline = Instant::now() + READ_TIMEOUT;
        let mut records = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match consumer
                .poll(left)
                .unwrap_or_else(|| panic!("{topic}: not read to its end within {READ_TIMEOUT:?}"))
            {
                Ok(message) => {
                    let key = String::from_utf8_lossy(message.key().unwrap_or_default()).into_owned();
                    let error = message
                        .headers()
                        .and_then(|h| h.iter().find(|h| h.key == "tweetlake.error"))
                        .and_then(|h| h.value)
                        .map(|v| String::from_utf8_lossy(v).into_owned())
                        .unwrap_or_default();
                    let payload = message.payload().unwrap_or_default().to_vec();
                    records.push(Record { key, payload, error });
                }
                Err(rdkafka::error::KafkaError::PartitionEOF(_)) => return records,
                Err(e) => panic!("reading {topic}: {e}"),
            }
        }
    }

    /// The group's committed offset per partition (-1 when none).
    pub fn committed_offsets(bootstrap: &str, group: &str, topic: &str, partitions: i32) -> Vec<i64> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("group.id", group)
            .create()
            .unwrap();
        let mut list = rdkafka::TopicPartitionList::new();
        for p in 0..partitions {
            list.add_partition(topic, p);
        }
        let committed = consumer.committed_offsets(list, Duration::from_secs(10)).unwrap();
        let offsets = committed
            .elements()
            .iter()
            .map(|e| e.offset().to_raw().unwrap_or(-1))
            .collect();
        drop(committed); // before the consumer: rdkafka blocks on drop otherwise
        offsets
    }
}

/// A TCP forwarder to a real server that a test can cut (refusing and dropping every
/// connection) and restore, to make the server unreachable for a while.
pub mod proxy {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    use tokio::net::{TcpListener, TcpStream};
    use tokio::sync::watch;

    pub struct Proxy {
        pub port: u16,
        cut: watch::Sender<bool>,
        refused: Arc<AtomicU64>,
    }

    impl Proxy {
        /// Forwards 127.0.0.1:<port> to `target` (host:port) on its own thread and runtime.
        pub fn start(target: String) -> Self {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.set_nonblocking(true).unwrap();
            let port = listener.local_addr().unwrap().port();
            let (cut, watching) = watch::channel(false);
            let refused = Arc::new(AtomicU64::new(0));
            let counter = Arc::clone(&refused);
            std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                runtime.block_on(async {
                    let listener = TcpListener::from_std(listener).unwrap();
                    serve(listener, target, watching, counter).await
                });
            });
            Self { port, cut, refused }
        }

        /// Cuts (drops every connection and refuses new ones) or restores the forwarding.
        pub fn set_cut(&self, cut: bool) {
            self.cut.send_replace(cut);
        }

        /// Connections refused while cut: each is a client trying again.
        pub fn refused(&self) -> u64 {
            self.refused.load(Ordering::SeqCst)
        }
    }

    async fn serve(
        listener: TcpListener,
        target: String,
        cut: watch::Receiver<bool>,
        refused: Arc<AtomicU64>,
    ) {
        loop {
            let Ok((mut client, _)) = listener.accept().await else {
                continue;
            };
            if *cut.borrow() {
                refused.fetch_add(1, Ordering::SeqCst);
                continue; // dropped: the client sees a reset
            }
            let (target, mut cut) = (target.clone(), cut.clone());
            tokio::spawn(async move {
                let Ok(mut server) = TcpStream::connect(&target).await else {
                    return;
                };
                tokio::select! {
                    _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                    _ = cut.wait_for(|cut| *cut) => {}
                }
            });
        }
    }
}

/// A child process that is killed if the test ends, or panics, before waiting for it: a failed
/// test never leaves a runner behind. Its output is drained while it runs, so a child writing
/// more than a pipe buffer never blocks.
pub struct Spawned {
    child: Option<Child>,
    /// Threads collecting stdout and stderr until the child closes them.
    drains: Option<[std::thread::JoinHandle<Vec<u8>>; 2]>,
}

impl Spawned {
    pub fn new(mut child: Child) -> Self {
        fn drain(pipe: Option<impl std::io::Read + Send + 'static>) -> std::thread::JoinHandle<Vec<u8>> {
            std::thread::spawn(move || {
                let mut bytes = Vec::new();
                if let Some(mut pipe) = pipe {
                    pipe.read_to_end(&mut bytes).unwrap();
                }
                bytes
            })
        }
        let drains = [drain(child.stdout.take()), drain(child.stderr.take())];
        Self {
            child: Some(child),
            drains: Some(drains),
        }
    }

    /// Like [`Spawned::new`], with the child's stdout handed out line by line as it writes,
    /// for a test that follows a long-running child; `wait` then returns no stdout.
    pub fn with_stdout_lines(mut child: Child) -> (Self, StdoutLines) {
        let stdout = child.stdout.take().expect("stdout is piped");
        (Self::new(child), StdoutLines::read(stdout))
    }

    /// Like [`Spawned::with_stdout_lines`], with stderr (its log) handed out line by line too;
    /// `wait` then returns neither.
    pub fn with_stdout_and_stderr_lines(mut child: Child) -> (Self, StdoutLines, StdoutLines) {
        let stderr = child.stderr.take().expect("stderr is piped");
        let (spawned, stdout) = Self::with_stdout_lines(child);
        (spawned, stdout, StdoutLines::read(stderr))
    }

    fn child(&mut self) -> &mut Child {
        self.child.as_mut().expect("not waited for yet")
    }

    pub fn id(&self) -> u32 {
        self.child.as_ref().expect("not waited for yet").id()
    }

    /// Whether the child has exited.
    pub fn exited(&mut self) -> bool {
        self.child().try_wait().unwrap().is_some()
    }

    /// Waits for the child, killing it and failing the test after CHILD_TIMEOUT.
    pub fn wait(mut self) -> Output {
        let deadline = Instant::now() + CHILD_TIMEOUT;
        let status = loop {
            if let Some(status) = self.child().try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                self.child().kill().unwrap();
                panic!("child process did not finish within {CHILD_TIMEOUT:?}");
            }
            std::thread::park_timeout(Duration::from_millis(20));
        };
        self.child = None;
        let [stdout, stderr] = self.drains.take().expect("waited for once");
        Output {
            status,
            stdout: stdout.join().unwrap(),
            stderr: stderr.join().unwrap(),
        }
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A running child's stdout (or stderr), line by line; every line is due within CHILD_TIMEOUT of the start,
/// so a test reading it cannot wait forever on a child that hangs.
pub struct StdoutLines {
    lines: mpsc::Receiver<String>,
    deadline: Instant,
}

impl StdoutLines {
    fn read(stdout: impl std::io::Read + Send + 'static) -> Self {
        let (sender, lines) = mpsc::channel();
        // Ends when the child closes its stdout (exits or is killed) or the test stops reading.
        std::thread::spawn(move || {
            let _ = BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
                .try_for_each(|line| sender.send(line));
        });
        Self {
            lines,
            deadline: Instant::now() + CHILD_TIMEOUT,
        }
    }

    /// The next line; fails the test when the child closes its stdout first or time is up.
    pub fn next_line(&self) -> String {
        let left = self.deadline.saturating_duration_since(Instant::now());
        match self.lines.recv_timeout(left) {
            Ok(line) => line,
            Err(RecvTimeoutError::Timeout) => {
                panic!("the child wrote no further line within {CHILD_TIMEOUT:?} of its start")
            }
            Err(RecvTimeoutError::Disconnected) => panic!("the child closed its stdout (it exited early)"),
        }
    }

    /// Every line still to come, until the child closes its stdout; fails the test when that
    /// takes past the deadline.
    pub fn remaining(&self) -> Vec<String> {
        let mut lines = Vec::new();
        loop {
            let left = self.deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => lines.push(line),
                Err(RecvTimeoutError::Disconnected) => return lines,
                Err(RecvTimeoutError::Timeout) => {
                    panic!("the child kept its stdout open past {CHILD_TIMEOUT:?} of its start")
                }
            }
        }
    }
}

pub fn assert_success(output: &std::process::Output) {
    assert!(
        output.status.success(),
        "exit {:?}: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The end offset per partition that the progress lines reached.
pub fn reached_offsets(reports: &[serde_json::Value]) -> BTreeMap<i64, i64> {
    let mut ends = BTreeMap::new();
    for range in reports.iter().flat_map(|r| r["offsets"].as_array().unwrap()) {
        let end = ends.entry(range["partition"].as_i64().unwrap()).or_insert(0);
        *end = range["end"].as_i64().unwrap().max(*end);
    }
    ends
}

/// Polls `condition` until it holds, failing the test after five minutes (a loaded CI machine).
pub fn wait_for(mut condition: impl FnMut() -> bool, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(300);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::park_timeout(Duration::from_millis(100));
    }
}

pub fn interrupt(child: &Spawned) {
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
}

/// The last stderr line of a failed run: the one-line error.
pub fn error_line(output: &std::process::Output) -> String {
    assert!(!output.status.success(), "the run should fail");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("error: "),
        "the error is the last line: {stderr}"
    );
    last.to_string()
}

/// A fake remote service on 127.0.0.1: `serve` runs on its own thread and current-thread
/// runtime (so the test may block while it serves) with the listener it binds here, made inside
/// that runtime (a tokio listener needs its runtime's reactor). Returns the bound address.
pub fn serve_in_background<F, Fut>(serve: F) -> std::net::SocketAddr
where
    F: FnOnce(tokio::net::TcpListener) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()>,
{
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let address = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async { serve(tokio::net::TcpListener::from_std(listener).unwrap()).await });
    });
    address
}
