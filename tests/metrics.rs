//! `run` serves Prometheus metrics and the Kubernetes probes on `metrics.listen`: scraped with a
//! real HTTP client, parsed by the reference Prometheus text parser (Python's
//! `prometheus_client`, which `scripts/services.sh` installs) and checked against the lake.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::kafka::{create_topic, produce_lines};
use common::{kafka_bootstrap, synth_bad_count, synth_good_count, test_python, unique_suffix};
use common::{wait_bounded, Project, Spawned, METRICS_LISTEN_ENV};
use tweetlake::produce::synth::{self, SynthOptions};

/// Every wait on the child's endpoints or lake ends by then.
const WAIT: Duration = Duration::from_secs(120);

/// Reads the exposition text on stdin and prints every sample as JSON.
const PARSER: &str = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
samples = []
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        samples.append({"family": family.name, "kind": family.type, "name": s.name,
                        "labels": s.labels, "value": s.value})
print(json.dumps(samples))
"#;

#[derive(Debug, serde::Deserialize)]
struct Sample {
    family: String,
    kind: String,
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// One scrape, as the reference parser read it.
#[derive(Debug)]
struct Scrape(Vec<Sample>);

impl Scrape {
    fn parse(python: &str, text: &str) -> Self {
        let mut child = Command::new(python)
            .args(["-c", PARSER])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // The parser reads all of stdin before it writes: no deadlock on the pipes.
        child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
        let output = wait_bounded(child);
        assert!(
            output.status.success(),
            "the parser refused the scrape: {}\n{text}",
            String::from_utf8_lossy(&output.stderr)
        );
        Self(serde_json::from_slice(&output.stdout).unwrap())
    }

    /// The value of the sample `name` with exactly these labels.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let labels: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.0
            .iter()
            .find(|s| s.name == name && s.labels == labels)
            .map(|s| s.value)
    }

    fn expect(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.value(name, labels)
            .unwrap_or_else(|| panic!("no sample {name}{labels:?} in {self:#?}"))
    }

    /// The type of the family `family` (`_total` is not part of a counter family's name).
    fn kind(&self, family: &str) -> &str {
        let sample = self.0.iter().find(|s| s.family == family);
        &sample.unwrap_or_else(|| panic!("no family {family}")).kind
    }
}

/// A loopback port that is free now; the child binds it a moment later.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The child's endpoints, reached with a real HTTP client.
struct Endpoints {
    base: String,
    client: reqwest::Client,
}

struct Answer {
    status: u16,
    content_type: String,
    body: String,
}

impl Endpoints {
    fn new(port: u16) -> Self {
        Self {
            base: format!("http://127.0.0.1:{port}"),
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap(),
        }
    }

    /// `None` while nothing answers on the port.
    async fn try_get(&self, path: &str) -> Option<Answer> {
        let response = self
            .client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .ok()?;
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        let body = response.text().await.ok()?;
        Some(Answer {
            status,
            content_type,
            body,
        })
    }

    async fn get(&self, path: &str) -> Answer {
        self.try_get(path)
            .await
            .unwrap_or_else(|| panic!("{}{path} did not answer", self.base))
    }

    /// Waits for the server to listen (the child binds it at start).
    async fn wait_until_up(&self, child: &mut Spawned) {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(answer) = self.try_get("/healthz").await {
                assert_eq!((answer.status, answer.body.as_str()), (200, "ok\n"));
                return;
            }
            assert!(!child.exited(), "the runner exited before serving {}", self.base);
            assert!(Instant::now() < deadline, "{} never answered", self.base);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn scrape(&self, python: &str) -> Scrape {
        let answer = self.get("/metrics").await;
        assert_eq!(answer.status, 200);
        assert_eq!(answer.content_type, "text/plain; version=0.0.4; charset=utf-8");
        Scrape::parse(python, &answer.body)
    }
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

fn sigterm(child: &Spawned) {
    // SAFETY: signalling our own child process, not yet waited for.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
}

const STAGES: [&str; 5] = ["read", "decode", "transform", "write", "total"];

#[tokio::test(flavor = "multi_thread")]
async fn run_serves_metrics_that_match_the_lake_and_probes_that_follow_the_batches() {
    let Some(python) = test_python() else {
        return;
    };
    const BATCH: usize = 50;
    let project = Project::new();
    project.write_posts(b"");
    // An hour's trigger: the first read of the empty file ends only when a batch's worth of
    // posts arrives, so no batch can finish before the test appends them.
    project.write_config(&format!(
        "trigger_interval = \"1h\"\nmax_records_per_batch = {BATCH}"
    ));
    let port = free_port();
    let started = unix_now();
    let mut runner = Spawned::new(
        project
            .command(&["run"])
            .env(METRICS_LISTEN_ENV, format!("127.0.0.1:{port}"))
            .spawn()
            .unwrap(),
    );
    let endpoints = Endpoints::new(port);
    endpoints.wait_until_up(&mut runner).await;

    let not_ready = endpoints.get("/readyz").await;
    assert_eq!(not_ready.status, 503, "{}", not_ready.body);
    assert!(not_ready.body.contains("no batch finished"), "{}", not_ready.body);
    let before = endpoints.scrape(&python).await;
    assert_eq!(before.expect("tweetlake_batches_total", &[]), 0.0);
    assert_eq!(before.expect("tweetlake_dead_letters_total", &[]), 0.0);
    let version = [("version", env!("CARGO_PKG_VERSION"))];
    assert_eq!(before.expect("tweetlake_build_info", &version), 1.0);
    assert_eq!(before.kind("tweetlake_build_info"), "gauge");
    assert_eq!(endpoints.get("/nope").await.status, 404);

    let posts = synth::jsonl(
        SynthOptions {
            malformed_share: 0.1,
            ..Default::default()
        },
        4 * BATCH,
    );
    project.append_posts(&posts);
    let deadline = Instant::now() + WAIT;
    while project
        .progress()
        .iter()
        .map(|r| r["input_rows"].as_u64().unwrap())
        .sum::<u64>()
        < 4 * BATCH as u64
    {
        assert!(Instant::now() < deadline, "the batches did not finish in time");
        assert!(!runner.exited(), "the runner exited");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let reports = project.progress();
    assert_eq!(reports.len(), 4, "batches closed at {BATCH} records");
    // Recorded before each progress line is written: this scrape holds every batch.
    let after = endpoints.scrape(&python).await;
    let ready = endpoints.get("/readyz").await;
    assert_eq!((ready.status, ready.body.as_str()), (200, "ready\n"));

    let batches = reports.len() as f64;
    assert_eq!(after.expect("tweetlake_batches_total", &[]), batches);
    assert_eq!(after.kind("tweetlake_batches"), "counter");
    let (good, bad) = (synth_good_count(&posts), synth_bad_count(&posts));
    assert!(good > 0 && bad > 0, "posts and dead letters both");
    for (table, rows) in [("bronze", good), ("silver.tweets", good), ("dlq", bad)] {
        let lake_rows = project.count(&format!("SELECT count(*) FROM {table}")).await;
        assert_eq!(lake_rows, rows, "{table} in the lake");
        assert_eq!(
            after.expect("tweetlake_records_total", &[("table", table)]),
            rows as f64,
            "tweetlake_records_total of {table}"
        );
    }
    assert_eq!(after.expect("tweetlake_dead_letters_total", &[]), bad as f64);
    // Merge tables count the rows each batch merged in, as its progress line says.
    let merged: u64 = reports
        .iter()
        .map(|r| &r["tables"]["gold.company_minute"])
        .filter(|t| t["outcome"] == "committed")
        .map(|t| t["rows"].as_u64().unwrap())
        .sum();
    assert_eq!(
        after.expect("tweetlake_records_total", &[("table", "gold.company_minute")]),
        merged as f64
    );

    assert_eq!(after.kind("tweetlake_batch_duration_seconds"), "histogram");
    for stage in STAGES {
        let stage_label = [("stage", stage)];
        assert_eq!(
            after.expect("tweetlake_batch_duration_seconds_count", &stage_label),
            batches,
            "{stage}"
        );
        let every = [("stage", stage), ("le", "+Inf")];
        assert_eq!(
            after.expect("tweetlake_batch_duration_seconds_bucket", &every),
            batches
        );
    }
    let total_seconds: f64 = reports
        .iter()
        .map(|r| r["durations"]["total_ms"].as_f64().unwrap() / 1000.0)
        .sum();
    let recorded = after.expect("tweetlake_batch_duration_seconds_sum", &[("stage", "total")]);
    assert!(
        (recorded - total_seconds).abs() < 0.001 * batches,
        "histogram sum {recorded} s, progress lines {total_seconds} s"
    );
    let last_commit = after.expect("tweetlake_last_commit_timestamp_seconds", &[]);
    assert!((started..=unix_now()).contains(&last_commit), "{last_commit}");
    assert_eq!(after.expect("tweetlake_commit_retries_total", &[]), 0.0);
    assert!(
        after.value("tweetlake_consumer_lag", &[]).is_none(),
        "a file source has no consumer lag"
    );

    sigterm(&runner);
    let output = runner.wait();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{:?}: {stderr}", output.status);
    assert!(
        stderr.contains("SIGTERM: stopping after the current batch"),
        "{stderr}"
    );
    assert_eq!(
        project.count("SELECT count(DISTINCT _offset) FROM bronze").await,
        good
    );
}

#[test]
fn a_port_in_use_is_a_one_line_error_naming_metrics_listen() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap().to_string();
    let project = Project::new();
    project.write_posts(&synth::jsonl(SynthOptions::default(), 5));
    project.write_config("");
    let output = project.run(&["run", "--once"], &[(METRICS_LISTEN_ENV, &address)]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with(&format!(
            "error: cannot serve metrics on {address} (metrics.listen)"
        )) && stderr.contains("in use")
            && stderr.contains("set metrics.listen to a free address"),
        "{stderr}"
    );
    assert!(!project.path("lake/bronze").exists(), "nothing ran");
}

/// A `run` and its endpoints.
struct Runner {
    process: Spawned,
    endpoints: Endpoints,
}

/// Polls both runners' /readyz until one is ready and the other owns no partition; returns
/// (the ready one, the other).
async fn one_owner(a: Runner, b: Runner) -> (Runner, Runner) {
    let deadline = Instant::now() + WAIT;
    let unassigned = |answer: &Answer| answer.status == 503 && answer.body.contains("no partitions assigned");
    loop {
        let (a_ready, b_ready) = (a.endpoints.get("/readyz").await, b.endpoints.get("/readyz").await);
        if a_ready.status == 200 && unassigned(&b_ready) {
            return (a, b);
        }
        if b_ready.status == 200 && unassigned(&a_ready) {
            return (b, a);
        }
        assert!(
            Instant::now() < deadline,
            "no single owner: A {} {}, B {} {}",
            a_ready.status,
            a_ready.body,
            b_ready.status,
            b_ready.body
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn kafka_readiness_follows_the_assignment_and_lag_is_per_partition() {
    let Some(python) = test_python() else {
        return;
    };
    let Some(bootstrap) = kafka_bootstrap() else {
        return;
    };
    let topic = format!("metrics-{}", unique_suffix());
    create_topic(&bootstrap, &topic, 1).await;
    let posts = synth::jsonl(SynthOptions::default(), 60);
    produce_lines(&bootstrap, &topic, 1, &posts).await;
    let project = Project::new();
    let lake = project.lake_uri();
    project.write_kafka_config(
        &bootstrap,
        &topic,
        &lake,
        &BTreeMap::new(),
        "trigger_interval = \"500ms\"",
    );
    let start = |name: &str| {
        let port = free_port();
        let mut command = project.command(&["run"]);
        command
            .env(METRICS_LISTEN_ENV, format!("127.0.0.1:{port}"))
            .env("TWEETLAKE_PIPELINE__PROGRESS_LOG", project.path(name))
            // An instance the group gives nothing stops waiting for it soon.
            .env("TWEETLAKE_SOURCE__ASSIGNMENT_TIMEOUT", "3s");
        Runner {
            process: Spawned::new(command.spawn().unwrap()),
            endpoints: Endpoints::new(port),
        }
    };
    let mut a = start("a.ndjson");
    a.endpoints.wait_until_up(&mut a.process).await;
    let deadline = Instant::now() + WAIT;
    loop {
        let scrape = a.endpoints.scrape(&python).await;
        let lag = [("topic", topic.as_str()), ("partition", "0")];
        if scrape.value("tweetlake_records_total", &[("table", "bronze")]) == Some(60.0) {
            assert_eq!(scrape.expect("tweetlake_consumer_lag", &lag), 0.0);
            assert_eq!(scrape.kind("tweetlake_consumer_lag"), "gauge");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "A did not commit the 60 posts: {scrape:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let mut b = start("b.ndjson");
    b.endpoints.wait_until_up(&mut b.process).await;
    let (owner, other) = one_owner(a, b).await;
    sigterm(&owner.process);
    let output = owner.process.wait();
    assert!(
        output.status.success(),
        "{:?}: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let deadline = Instant::now() + WAIT;
    loop {
        let answer = other.endpoints.get("/readyz").await;
        if answer.status == 200 {
            break;
        }
        if Instant::now() >= deadline {
            sigterm(&other.process);
            let output = other.process.wait();
            panic!(
                "the remaining runner never took the partition: {}; its log: {}",
                answer.body,
                String::from_utf8_lossy(&output.stderr)
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    sigterm(&other.process);
    let output = other.process.wait();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(project.count("SELECT count(*) FROM bronze").await, 60);
    assert_eq!(
        project.count("SELECT count(DISTINCT _offset) FROM bronze").await,
        60
    );
}
