//! The production path against the real broker and object store from `scripts/services.sh`:
//! Kafka in, Delta out (local disk and S3), exactly once through crashes, outages and rebalances.

mod common;

use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::process::Child;
use std::time::{Duration, Instant};

use common::kafka::{committed_offsets, create_topic, produce_lines};
use common::{assert_success, error_line, interrupt, reached_offsets, wait_for};
use common::{kafka_bootstrap, query_lake_with, s3_lake, scalar_i64, synth_bad_count, synth_good_count};
use common::{unique_suffix, Project, Spawned};
use tweetlake::produce::synth::{self, SynthOptions};

const PARTITIONS: i32 = 4;

struct Topic {
    bootstrap: String,
    name: String,
}

/// A fresh topic of PARTITIONS partitions holding `count` synthetic posts (5% malformed).
async fn topic_with_posts(count: usize, seed: u64) -> Option<(Topic, Vec<u8>)> {
    let bootstrap = kafka_bootstrap()?;
    let name = format!("posts-{}", unique_suffix());
    create_topic(&bootstrap, &name, PARTITIONS).await;
    let posts = posts(count, seed);
    produce_lines(&bootstrap, &name, PARTITIONS, &posts).await;
    Some((Topic { bootstrap, name }, posts))
}

/// A project reading `topic` into the lake at `uri`, with `settings` in `[pipeline]`.
fn kafka_project(topic: &Topic, uri: &str, options: &BTreeMap<String, String>, settings: &str) -> Project {
    let project = Project::new();
    project.write_kafka_config(&topic.bootstrap, &topic.name, uri, options, settings);
    project
}

/// A project reading `topic` into a local lake of its own, with `settings` in `[pipeline]`.
fn local_kafka_project(topic: &Topic, settings: &str) -> Project {
    let project = Project::new();
    let lake = project.lake_uri();
    project.write_kafka_config(&topic.bootstrap, &topic.name, &lake, &BTreeMap::new(), settings);
    project
}

/// The group's committed offsets (group `tweetlake-<topic>`, as the test configs name it) equal
/// the ends the offset log reached, partition by partition: what lag tools read.
fn assert_group_offsets_mirror(topic: &Topic, ends: &BTreeMap<i64, i64>) {
    let group = format!("tweetlake-{}", topic.name);
    let committed = committed_offsets(&topic.bootstrap, &group, &topic.name, PARTITIONS);
    assert_eq!(
        committed,
        ends.values().copied().collect::<Vec<_>>(),
        "group offsets mirror the offset log, for lag tools"
    );
}

fn posts(count: usize, seed: u64) -> Vec<u8> {
    let options = SynthOptions {
        malformed_share: 0.05,
        seed,
        first_sequence: seed * 1_000_000, // distinct post ids for every seed
        ..Default::default()
    };
    synth::jsonl(options, count)
}

/// Every table holds each post of `posts` exactly once.
async fn assert_exactly_once(uri: &str, options: &BTreeMap<String, String>, posts: &[u8]) {
    let count = |sql: &'static str| async move { scalar_i64(&query_lake_with(uri, options, sql).await) };
    let (good, bad) = (synth_good_count(posts), synth_bad_count(posts));
    assert_eq!(count("SELECT count(*) FROM bronze").await, good, "bronze rows");
    assert_eq!(
        count("SELECT count(DISTINCT (_topic, _partition, _offset)) FROM bronze").await,
        good,
        "bronze offsets"
    );
    assert_eq!(
        count("SELECT count(*) FROM silver.tweets").await,
        good,
        "silver rows"
    );
    assert_eq!(
        count("SELECT count(DISTINCT id) FROM silver.tweets").await,
        good,
        "silver ids"
    );
    assert_eq!(count("SELECT count(*) FROM dlq").await, bad, "dead letters");
    assert_eq!(
        count("SELECT sum(posts) FROM gold.company_minute").await,
        count("SELECT count(*) FROM silver.tweets WHERE company IS NOT NULL").await,
        "gold sums equal silver"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn once_drains_the_topic_exactly_once_and_mirrors_group_offsets() {
    let Some((topic, posts)) = topic_with_posts(800, 5).await else {
        return;
    };
    let project = Project::new();
    let lake = project.lake_uri();
    let dlq_topic = format!("{}-dlq", topic.name);
    create_topic(&topic.bootstrap, &dlq_topic, 1).await;
    let settings = format!("max_records_per_batch = 300\n\n[dlq]\nkafka_topic = {dlq_topic:?}");
    project.write_kafka_config(&topic.bootstrap, &topic.name, &lake, &BTreeMap::new(), &settings);

    assert_success(&project.run(&["run", "--once"], &[]));
    assert_exactly_once(&lake, &BTreeMap::new(), &posts).await;
    let published = common::kafka::read_all(&topic.bootstrap, &dlq_topic);
    let in_lake = common::strings(
        &query_lake_with(
            &lake,
            &BTreeMap::new(),
            "SELECT concat(_topic, '/', _partition, '/', _offset) FROM dlq ORDER BY _partition, _offset",
        )
        .await,
    );
    let mut keys: Vec<String> = published.iter().map(|(key, _)| key.clone()).collect();
    keys.sort_by_key(|k| {
        let mut parts = k.rsplitn(3, '/');
        let offset: i64 = parts.next().unwrap().parse().unwrap();
        let partition: i64 = parts.next().unwrap().parse().unwrap();
        (partition, offset)
    });
    assert_eq!(
        keys, in_lake,
        "the DLQ topic holds the dead-letter table's records"
    );
    assert!(
        published.iter().all(|(_, error)| !error.is_empty()),
        "each carries its error"
    );
    let reports = project.progress();
    assert!(reports.len() >= 3, "800 records in batches of at most 300");
    let ends = reached_offsets(&reports);
    assert_eq!(
        ends.values().sum::<i64>(),
        800,
        "every offset of every partition was read"
    );
    assert_group_offsets_mirror(&topic, &ends);
    let lag = reports.last().unwrap()["lag"]
        .as_object()
        .expect("a lag per partition")
        .clone();
    assert_eq!(lag.len(), PARTITIONS as usize);
    assert!(
        lag.values().all(|l| l == 0),
        "nothing left behind after the last batch: {lag:?}"
    );

    assert_success(&project.run(&["run", "--once"], &[]));
    assert_eq!(
        project.progress().len(),
        reports.len(),
        "a second run finds nothing new"
    );
    assert_exactly_once(&lake, &BTreeMap::new(), &posts).await;
}

/// Bronze rows read from `topic`.
async fn bronze_rows_of(lake: &str, topic: &str) -> i64 {
    let sql = format!("SELECT count(*) FROM bronze WHERE _topic = '{topic}'");
    scalar_i64(&query_lake_with(lake, &BTreeMap::new(), &sql).await)
}

/// Produces `count` more posts (seeded by `seed`) to each of `topics`, of `partitions` each;
/// returns them all, in order, and adds each topic's to `per_topic`.
async fn produce_to_each(
    bootstrap: &str,
    topics: &[(&str, i32)],
    count: usize,
    seed: u64,
    per_topic: &mut BTreeMap<String, Vec<u8>>,
) -> Vec<u8> {
    let mut all = Vec::new();
    for (i, &(topic, partitions)) in topics.iter().enumerate() {
        let more = posts(count, seed + i as u64);
        produce_lines(bootstrap, topic, partitions, &more).await;
        per_topic
            .entry(topic.to_string())
            .or_default()
            .extend_from_slice(&more);
        all.extend_from_slice(&more);
    }
    all
}

#[tokio::test(flavor = "multi_thread")]
async fn several_topics_feed_one_pipeline_exactly_once_through_a_crash() {
    let Some(bootstrap) = kafka_bootstrap() else {
        return;
    };
    let suffix = unique_suffix();
    let (x, bsky) = (format!("x-posts-{suffix}"), format!("bsky-posts-{suffix}"));
    // Partition numbers 0 and 1 exist in both topics: each must keep its own offsets.
    create_topic(&bootstrap, &x, PARTITIONS).await;
    create_topic(&bootstrap, &bsky, 2).await;
    let topics = [(x.as_str(), PARTITIONS), (bsky.as_str(), 2)];
    let project = Project::new();
    let lake = project.lake_uri();

    let missing = format!("missing-{suffix}");
    project.write_kafka_topics_config(&bootstrap, &[&x, &missing], &lake, "");
    let line = error_line(&project.run(&["run", "--once"], &[]));
    assert!(
        line.contains(&format!("topic `{missing}` does not exist")) && line.contains("source.topics"),
        "{line}"
    );

    let mut per_topic = BTreeMap::new();
    let mut everything = produce_to_each(&bootstrap, &topics, 300, 30, &mut per_topic).await;
    project.write_kafka_topics_config(&bootstrap, &[&x, &bsky], &lake, "max_records_per_batch = 200");
    assert_success(&project.run(&["run", "--once"], &[]));
    assert_exactly_once(&lake, &BTreeMap::new(), &everything).await;
    for (topic, posts) in &per_topic {
        assert_eq!(
            bronze_rows_of(&lake, topic).await,
            synth_good_count(posts),
            "{topic}"
        );
    }
    let silver_topics = common::strings(
        &query_lake_with(
            &lake,
            &BTreeMap::new(),
            "SELECT DISTINCT source_topic FROM silver.tweets ORDER BY source_topic",
        )
        .await,
    );
    assert_eq!(silver_topics, [bsky.clone(), x.clone()], "silver holds both");

    let batches_before = project.progress().len() as u64;
    everything.extend(produce_to_each(&bootstrap, &topics, 300, 40, &mut per_topic).await);
    let fault = format!("after_commit:silver.tweets#{}", batches_before + 1);
    let crashed = project.run(&["run", "--once"], &[("TWEETLAKE_FAULT", &fault)]);
    assert_eq!(crashed.status.signal(), Some(9), "{crashed:?}");
    assert_success(&project.run(&["run", "--once"], &[]));
    let reports = project.progress();
    assert!(
        reports.iter().any(|r| r["rerun"] == true),
        "the crashed batch was re-run"
    );
    let topics_of = |report: &serde_json::Value| -> std::collections::BTreeSet<String> {
        let ranges = report["offsets"].as_array().unwrap();
        ranges
            .iter()
            .map(|r| r["topic"].as_str().unwrap().to_string())
            .collect()
    };
    assert!(
        reports.iter().any(|r| topics_of(r).len() == 2),
        "a batch spans both topics, through one offset log"
    );
    assert_exactly_once(&lake, &BTreeMap::new(), &everything).await;
    for (topic, posts) in &per_topic {
        assert_eq!(
            bronze_rows_of(&lake, topic).await,
            synth_good_count(posts),
            "{topic}"
        );
    }
    let lag = reports.last().unwrap()["lag"].as_object().unwrap().clone();
    assert_eq!(
        lag.len(),
        PARTITIONS as usize + 2,
        "a lag per partition of each topic: {lag:?}"
    );
    assert!(lag.values().all(|l| l == 0), "{lag:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn once_writes_an_s3_lake_exactly_once() {
    let Some((uri, options)) = s3_lake("once") else {
        return;
    };
    let Some((topic, posts)) = topic_with_posts(500, 6).await else {
        return;
    };
    let project = kafka_project(&topic, &uri, &options, "max_records_per_batch = 200");
    assert_success(&project.run(&["run", "--once"], &[]));
    assert_exactly_once(&uri, &options, &posts).await;
}

/// `--once` killed at `point` in batch 1, then run again; `env` configures both runs.
async fn crash_then_recover(
    point: &str,
    uri: String,
    options: BTreeMap<String, String>,
    env: &[(&str, &str)],
) {
    let Some((topic, posts)) = topic_with_posts(600, 7).await else {
        return;
    };
    let project = kafka_project(&topic, &uri, &options, "max_records_per_batch = 200");
    let fault = format!("{point}#1");
    let crashing_env = [env, &[("TWEETLAKE_FAULT", fault.as_str())]].concat();
    let crashed = project.run(&["run", "--once"], &crashing_env);
    assert_eq!(crashed.status.signal(), Some(9), "{point}: {crashed:?}");
    assert_success(&project.run(&["run", "--once"], env));
    let reports = project.progress();
    assert!(
        reports.iter().any(|r| r["rerun"] == true),
        "{point}: batch 1 was re-run"
    );
    assert_exactly_once(&uri, &options, &posts).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_mid_decode_between_tables_and_before_the_marker_keeps_exactly_once() {
    for point in [
        "after_decode",
        "after_commit:bronze",
        "after_commit:silver.tweets",
        "before_marker",
    ] {
        let project = Project::new();
        crash_then_recover(point, project.lake_uri(), BTreeMap::new(), &[]).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_between_table_commits_on_s3_keeps_exactly_once() {
    let Some((uri, options)) = s3_lake("crash") else {
        return;
    };
    crash_then_recover("after_commit:silver.tweets", uri, options, &[]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_s3_outage_is_retried_with_backoff_and_loses_nothing() {
    let Some((_, mut options)) = s3_lake("outage") else {
        return;
    };
    let Some((topic, posts)) = topic_with_posts(600, 8).await else {
        return;
    };
    let endpoint = options["AWS_ENDPOINT_URL"]
        .trim_start_matches("http://")
        .to_string();
    let proxy = common::proxy::Proxy::start(endpoint);
    options.insert(
        "AWS_ENDPOINT_URL".into(),
        format!("http://127.0.0.1:{}", proxy.port),
    );
    // object_store's own request retries would ride out the outage; keep them short so the
    // pipeline's batch-level retry is what recovers.
    options.insert("max_retries".into(), "1".into());
    options.insert("retry_timeout".into(), "1s".into());
    let bucket = std::env::var("TWEETLAKE_TEST_S3_BUCKET").unwrap_or_else(|_| "tweetlake-test".into());
    let uri = format!("s3://{bucket}/outage-{}", unique_suffix());
    let project = Project::new();
    project.write_kafka_config(
        &topic.bootstrap,
        &topic.name,
        &uri,
        &options,
        "max_records_per_batch = 50\nretry_backoff = \"200ms\"\nretry_backoff_max = \"1s\"\nmax_retries = 30",
    );
    // The runner's log goes to a file, so the test can wait on what it says while it runs.
    let log = project.dir.path().join("runner.log");
    let mut runner = Spawned::new(
        project
            .command(&["run", "--once"])
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    wait_for(|| !project.progress().is_empty(), "the first batch");
    proxy.set_cut(true);
    // Restore once the pipeline itself has retried a batch twice, with backoff: object_store's
    // own short retry alone is not what this test is about.
    let runner_log = || std::fs::read_to_string(&log).unwrap_or_default();
    wait_for(
        || {
            let retried = runner_log().contains("(attempt 2 of");
            assert!(
                retried || !runner.exited(),
                "the runner ended during the outage instead of retrying: {}",
                runner_log()
            );
            retried
        },
        "the pipeline retrying a batch against the cut store",
    );
    proxy.set_cut(false);
    let output = runner.wait();
    assert!(
        output.status.success(),
        "exit {:?}: {}",
        output.status,
        runner_log()
    );
    assert!(proxy.refused() > 0, "the runner came back to the cut store");
    assert_exactly_once(&uri, &options, &posts).await;
}

/// Messages in a JSONL text.
fn lines_in(jsonl: &[u8]) -> i64 {
    jsonl.split(|&b| b == b'\n').filter(|l| !l.is_empty()).count() as i64
}

#[tokio::test(flavor = "multi_thread")]
async fn two_runners_share_the_partitions_through_a_rebalance_exactly_once() {
    // On S3, so that the two writers' Delta commits race through conditional puts.
    let Some((lake, options)) = s3_lake("two-runners") else {
        return;
    };
    let Some((topic, first)) = topic_with_posts(400, 9).await else {
        return;
    };
    let settings = "max_records_per_batch = 100\ntrigger_interval = \"500ms\"";
    let project = kafka_project(&topic, &lake, &options, settings);
    let progress_of = |name: &str| project.path(name).display().to_string();
    // Each runner's log goes to a file, so a failure can show what both runners saw.
    let log_of = |name: &str| project.path(&format!("{name}.log"));
    let start = |name: &str| {
        let mut command = project.command(&["run"]);
        command.env("TWEETLAKE_PIPELINE__PROGRESS_LOG", progress_of(name));
        command.stderr(std::fs::File::create(log_of(name)).unwrap());
        Spawned::new(command.spawn().unwrap())
    };
    let logs = || {
        let read = |name: &str| std::fs::read_to_string(log_of(name)).unwrap_or_default();
        format!(
            "\n--- runner A:\n{}\n--- runner B:\n{}",
            read("a.ndjson"),
            read("b.ndjson")
        )
    };
    let lines = |name: &str| {
        std::fs::read_to_string(project.path(name))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .collect::<Vec<_>>()
    };
    let a = start("a.ndjson");
    wait_for(|| lines("a.ndjson").len() >= 2, "runner A's first batches");
    let b = start("b.ndjson");
    // Keep posts coming until B, after the rebalance, has some of them to process.
    let mut everything = first;
    let mut seed = 100;
    let deadline = Instant::now() + Duration::from_secs(120);
    while lines("b.ndjson").is_empty() {
        assert!(
            Instant::now() < deadline,
            "runner B never got a partition with data{}",
            logs()
        );
        let more = posts(40, seed);
        produce_lines(&topic.bootstrap, &topic.name, PARTITIONS, &more).await;
        everything.extend_from_slice(&more);
        seed += 1;
        let produced = lines_in(&everything);
        wait_for(
            || {
                let mut all = lines("a.ndjson");
                all.extend(lines("b.ndjson"));
                reached_offsets(&all).values().sum::<i64>() >= produced
            },
            "the runners to commit what was produced",
        );
    }
    interrupt(&a);
    assert!(a.wait().status.success(), "runner A failed{}", logs());

    let last = posts(600, 10);
    produce_lines(&topic.bootstrap, &topic.name, PARTITIONS, &last).await;
    everything.extend_from_slice(&last);
    let total = lines_in(&everything);
    wait_for(
        || {
            let mut all = lines("a.ndjson");
            all.extend(lines("b.ndjson"));
            reached_offsets(&all).values().sum::<i64>() >= total
        },
        "every offset committed by A or B",
    );
    interrupt(&b);
    assert!(b.wait().status.success(), "runner B failed{}", logs());

    assert_exactly_once(&lake, &options, &everything).await;
    let b_partitions: std::collections::BTreeSet<i64> = lines("b.ndjson")
        .iter()
        .flat_map(|r| r["offsets"].as_array().unwrap().clone())
        .filter(|r| r["end"].as_i64() > r["start"].as_i64())
        .map(|r| r["partition"].as_i64().unwrap())
        .collect();
    assert_eq!(
        b_partitions.len(),
        PARTITIONS as usize,
        "B took over every partition after A left"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn unreachable_broker_missing_topic_missing_bucket_and_bad_credentials_are_one_line_errors() {
    let Some(bootstrap) = kafka_bootstrap() else {
        return;
    };
    let Some((uri, options)) = s3_lake("errors") else {
        return;
    };
    let project = Project::new();
    project.write_posts(&posts(5, 1));

    project.write_kafka_config("127.0.0.1:1", "posts", &project.lake_uri(), &BTreeMap::new(), "");
    let line = error_line(&project.run(&["run", "--once"], &[]));
    assert!(
        line.starts_with("error: kafka: cannot reach Kafka at 127.0.0.1:1"),
        "{line}"
    );
    assert!(line.contains("check source.bootstrap_servers"), "{line}");

    let missing = format!("missing-{}", unique_suffix());
    project.write_kafka_config(&bootstrap, &missing, &project.lake_uri(), &BTreeMap::new(), "");
    let line = error_line(&project.run(&["run", "--once"], &[]));
    assert!(
        line.contains(&format!("topic `{missing}` does not exist")),
        "{line}"
    );

    project.write_config("");
    let no_bucket = uri.replacen("s3://", "s3://no-such-bucket-", 1);
    let mut env: Vec<(String, String)> = options
        .iter()
        .map(|(k, v)| (format!("TWEETLAKE_LAKE__STORAGE_OPTIONS__{k}"), v.clone()))
        .collect();
    env.push(("TWEETLAKE_LAKE__URI".into(), no_bucket));
    let run = |env: Vec<(String, String)>| {
        let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        project.run(&["run", "--once"], &pairs)
    };
    let line = error_line(&run(env.clone()));
    assert!(line.contains("the bucket does not exist"), "{line}");

    env.pop();
    env.push(("TWEETLAKE_LAKE__URI".into(), uri));
    env.push(("AWS_SECRET_ACCESS_KEY".into(), "not-the-secret".into()));
    let line = error_line(&run(env));
    assert!(line.contains("credentials refused"), "{line}");
    assert_eq!(line.lines().count(), 1);
}

/// A broker of this test's own, reached only through a proxy it advertises, so that cutting
/// the proxy cuts every client off it (as a broker restart does) while its data stays.
struct OwnBroker {
    process: Child,
    proxy: common::proxy::Proxy,
}

impl OwnBroker {
    /// A broker started with `extra` arguments besides its listener and storage.
    fn start(extra: &[&str]) -> Option<Self> {
        let tansu = std::env::var("TWEETLAKE_TEST_TANSU_BIN").ok().or_else(|| {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "TWEETLAKE_TEST_TANSU_BIN is not set"
            );
            None
        })?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let proxy = common::proxy::Proxy::start(format!("127.0.0.1:{port}"));
        let process = std::process::Command::new(tansu)
            .args([
                "broker",
                "--cluster-id",
                "cut-test",
                "--storage-engine",
                "memory://tansu/",
            ])
            .args(extra)
            .arg(format!("--listener-url=tcp://127.0.0.1:{port}"))
            .arg(format!(
                "--advertised-listener-url=tcp://127.0.0.1:{}",
                proxy.port
            ))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // Built before the wait, so that its Drop kills the broker if it never listens.
        let broker = Self { process, proxy };
        wait_for(
            || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok(),
            "the test broker to listen",
        );
        Some(broker)
    }

    fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.proxy.port)
    }
}

impl Drop for OwnBroker {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_run_resumes_after_the_broker_is_unreachable_for_a_while() {
    if kafka_bootstrap().is_none() {
        return;
    }
    let Some(broker) = OwnBroker::start(&[]) else {
        return;
    };
    let bootstrap = broker.bootstrap();
    let topic = format!("posts-{}", unique_suffix());
    create_topic(&bootstrap, &topic, PARTITIONS).await;
    let mut everything = posts(400, 20);
    produce_lines(&bootstrap, &topic, PARTITIONS, &everything).await;

    let project = Project::new();
    let lake = project.lake_uri();
    let batch = "max_records_per_batch = 100\ntrigger_interval = \"500ms\"";
    project.write_kafka_config(&bootstrap, &topic, &lake, &BTreeMap::new(), batch);
    let runner = Spawned::new(project.command(&["run"]).spawn().unwrap());
    wait_for(|| !project.progress().is_empty(), "the first batch");
    broker.proxy.set_cut(true);
    wait_for(
        || broker.proxy.refused() >= 3,
        "the runner reconnecting to the cut broker",
    );
    broker.proxy.set_cut(false);
    let more = posts(200, 21);
    produce_lines(&bootstrap, &topic, PARTITIONS, &more).await;
    everything.extend_from_slice(&more);
    wait_for(
        || reached_offsets(&project.progress()).values().sum::<i64>() >= 600,
        "every offset committed after the outage",
    );
    interrupt(&runner);
    let output = runner.wait();
    assert_success(&output);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        ["brokers are down", "Connection refused", "Disconnected"]
            .iter()
            .any(|m| stderr.contains(m)),
        "the runner lost the broker during the outage: {stderr}"
    );
    assert_exactly_once(&lake, &BTreeMap::new(), &everything).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn refused_credentials_stop_the_run_at_once_with_one_line_naming_the_fix() {
    if kafka_bootstrap().is_none() {
        return;
    }
    // A broker that requires SASL, asked by a user it does not know: a refusal only the user
    // can fix, so the run must not retry it.
    let Some(broker) = OwnBroker::start(&["--authentication"]) else {
        return;
    };
    let project = Project::new();
    let lake = project.lake_uri();
    project.write_kafka_config(&broker.bootstrap(), "posts", &lake, &BTreeMap::new(), "");
    let sasl = [
        (
            "TWEETLAKE_SOURCE__KAFKA_OPTIONS__security.protocol",
            "SASL_PLAINTEXT",
        ),
        ("TWEETLAKE_SOURCE__KAFKA_OPTIONS__sasl.mechanism", "SCRAM-SHA-256"),
        ("TWEETLAKE_SOURCE__KAFKA_OPTIONS__sasl.username", "nobody"),
        ("TWEETLAKE_SOURCE__KAFKA_OPTIONS__sasl.password", "not-a-password"),
    ];
    let output = project.run(&["run", "--once"], &sasl);
    let line = error_line(&output);
    assert!(line.contains("refused the credentials"), "{line}");
    assert!(line.contains("source.kafka_options"), "{line}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("retrying"), "a refusal is not retried: {stderr}");
    assert!(
        !stderr.contains("not-a-password"),
        "the password is never shown: {stderr}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_dead_letter_topic_is_published_with_the_sources_kafka_options() {
    let Some(bootstrap) = kafka_bootstrap() else {
        return;
    };
    let name = format!("posts-{}", unique_suffix());
    create_topic(&bootstrap, &name, 1).await;
    // One dead letter of 3 KB; the source's options cap produced messages at 2 KB, which only
    // a publisher given those options refuses.
    let mut lines = posts(20, 7);
    lines.extend_from_slice(format!("{{\"data\": {}\n", "x".repeat(3000)).as_bytes());
    produce_lines(&bootstrap, &name, 1, &lines).await;
    let dlq_topic = format!("{name}-dlq");
    create_topic(&bootstrap, &dlq_topic, 1).await;
    let project = Project::new();
    let settings = format!("\n[dlq]\nkafka_topic = {dlq_topic:?}");
    project.write_kafka_config(
        &bootstrap,
        &name,
        &project.lake_uri(),
        &BTreeMap::new(),
        &settings,
    );

    let capped = [("TWEETLAKE_SOURCE__KAFKA_OPTIONS__message.max.bytes", "2000")];
    let output = project.run(&["run", "--once"], &capped);
    let line = error_line(&output);
    assert!(line.contains("dead-letter topic"), "{line}");
    assert!(line.contains("too large"), "{line}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !stderr.contains("retrying"),
        "a refused setting is not retried: {stderr}"
    );

    // Without the cap the same run goes through: the failure came from the option.
    assert_success(&project.run(&["run", "--once"], &[]));
    // At least once: a dead letter queued before the failure may be there twice.
    let published = common::kafka::read_all(&bootstrap, &dlq_topic);
    let keys: std::collections::BTreeSet<&String> = published.iter().map(|(key, _)| key).collect();
    assert_eq!(
        keys.len() as i64,
        synth_bad_count(&lines),
        "every dead letter published"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bench_kafka_reports_raw_consume_and_end_to_end_over_the_whole_topic() {
    let Some(bootstrap) = kafka_bootstrap() else {
        return;
    };
    let project = Project::new();
    let dir = project.path("bench");
    let output = project.run(
        &[
            "bench",
            "--kafka",
            &bootstrap,
            "--records",
            "3000",
            "--batch",
            "1000",
            "--partitions",
            "3",
            "--dir",
            dir.to_str().unwrap(),
        ],
        &[],
    );
    assert_success(&output);
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(
        !log.contains("ERROR"),
        "reaching the end of a partition is no error: {log}"
    );
    let table = String::from_utf8_lossy(&output.stdout);
    assert!(table.starts_with("3000 posts"), "{table}");
    for stage in ["generate + produce", "raw consume", "end to end, local disk"] {
        let row = table.lines().find(|l| l.starts_with(stage));
        let rate = row.and_then(|r| r[24..].split_whitespace().nth(1)?.parse::<f64>().ok());
        assert!(rate.is_some_and(|r| r > 0.0), "no rate for {stage}: {table}");
    }
    for mode in ["group", "manual"] {
        let row = table
            .lines()
            .find(|l| l.starts_with(&format!("once start, {mode}")));
        let seconds: Vec<f64> = row
            .map(|r| {
                r[24..]
                    .split_whitespace()
                    .filter_map(|s| s.parse().ok())
                    .collect()
            })
            .unwrap_or_default();
        assert!(
            seconds.len() == 2 && seconds.iter().all(|&s| s > 0.0),
            "no run --once start times for {mode}: {table}"
        );
    }
    let progress = std::fs::read_to_string(dir.join("progress.ndjson")).unwrap();
    let rows: i64 = progress
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["input_rows"]
                .as_i64()
                .unwrap()
        })
        .sum();
    assert_eq!(rows, 3000, "the end-to-end run read every post once");
}

/// `source.assignment = manual`, set the way a deployment overrides a key.
const MANUAL: (&str, &str) = ("TWEETLAKE_SOURCE__ASSIGNMENT", "manual");

#[tokio::test(flavor = "multi_thread")]
async fn manual_assignment_drains_every_partition_exactly_once_without_joining_the_group() {
    let Some((topic, posts)) = topic_with_posts(800, 21).await else {
        return;
    };
    let project = local_kafka_project(&topic, "max_records_per_batch = 300");
    let lake = project.lake_uri();

    let output = project.run(&["run", "--once"], &[MANUAL]);
    assert_success(&output);
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(log.contains("manual assignment: no group join"), "{log}");
    assert!(
        !log.contains("kafka: assigned partitions"),
        "the group assigned nothing: {log}"
    );
    assert_exactly_once(&lake, &BTreeMap::new(), &posts).await;
    let reports = project.progress();
    assert!(reports.len() >= 3, "800 records in batches of at most 300");
    let ends = reached_offsets(&reports);
    assert_eq!(ends.len(), PARTITIONS as usize, "every partition was read");
    assert_eq!(ends.values().sum::<i64>(), 800);
    assert_group_offsets_mirror(&topic, &ends);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_manual_once_run_with_nothing_new_exits_0_and_writes_nothing() {
    let Some((topic, posts)) = topic_with_posts(300, 22).await else {
        return;
    };
    let project = local_kafka_project(&topic, "");
    let lake = project.lake_uri();
    assert_success(&project.run(&["run", "--once"], &[MANUAL]));
    let batches = project.progress().len();
    let log_files = files_under(&project.path("lake"));

    let output = project.run(&["run", "--once"], &[MANUAL]);
    assert_success(&output);
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("done: 0 batches, 0 records"),
        "{output:?}"
    );
    assert_eq!(project.progress().len(), batches, "no batch");
    assert_eq!(
        files_under(&project.path("lake")),
        log_files,
        "nothing written to the lake"
    );
    assert_exactly_once(&lake, &BTreeMap::new(), &posts).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_then_a_manual_rerun_keeps_exactly_once() {
    for point in ["after_commit:bronze", "before_marker"] {
        let project = Project::new();
        crash_then_recover(point, project.lake_uri(), BTreeMap::new(), &[MANUAL]).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn switching_a_lake_from_group_to_manual_assignment_resumes_where_the_offset_log_says() {
    let Some((topic, mut all_posts)) = topic_with_posts(600, 24).await else {
        return;
    };
    let project = local_kafka_project(&topic, "max_records_per_batch = 200");
    let lake = project.lake_uri();
    // The group's run commits batch 0 and dies in batch 1: one range finished, one pending.
    let crashed = project.run(
        &["run", "--once"],
        &[("TWEETLAKE_FAULT", "after_commit:bronze#1")],
    );
    assert_eq!(crashed.status.signal(), Some(9), "{crashed:?}");
    let more = posts(400, 25);
    produce_lines(&topic.bootstrap, &topic.name, PARTITIONS, &more).await;
    all_posts.extend_from_slice(&more);

    assert_success(&project.run(&["run", "--once"], &[MANUAL]));
    let reports = project.progress();
    assert!(
        reports.iter().any(|r| r["rerun"] == true),
        "batch 1 was re-run: {reports:?}"
    );
    assert_eq!(
        reached_offsets(&reports).values().sum::<i64>(),
        1000,
        "every record was read"
    );
    assert_exactly_once(&lake, &BTreeMap::new(), &all_posts).await;
}

/// Every file under `dir`, with its size: what a run that writes nothing leaves unchanged.
fn files_under(dir: &std::path::Path) -> BTreeMap<std::path::PathBuf, u64> {
    let mut files = BTreeMap::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            let metadata = entry.metadata().unwrap();
            if metadata.is_dir() {
                pending.push(entry.path());
            } else {
                files.insert(entry.path(), metadata.len());
            }
        }
    }
    files
}

/// What the docs promise a misconfigured deployment: two manual instances of one pipeline both
/// read every partition, and the offset log's claims and the Delta `txn` versions still keep
/// each record once.
#[tokio::test(flavor = "multi_thread")]
async fn two_manual_instances_of_one_pipeline_still_write_each_record_once() {
    let Some((topic, posts)) = topic_with_posts(1000, 26).await else {
        return;
    };
    let project = local_kafka_project(&topic, "max_records_per_batch = 200");
    let lake = project.lake_uri();
    let spawn = || {
        let mut command = project.command(&["run", "--once"]);
        command.env(MANUAL.0, MANUAL.1);
        command.spawn().unwrap()
    };
    let (first, second) = (spawn(), spawn());
    assert_success(&common::wait_bounded(first));
    assert_success(&common::wait_bounded(second));
    assert_exactly_once(&lake, &BTreeMap::new(), &posts).await;
}
