//! `tweetlake maintain` and the automatic maintenance in `run`, on real lakes (local disk and
//! the S3 server from `scripts/services.sh`): compaction and vacuum lose and duplicate
//! nothing, even beside a running pipeline or when killed, vacuum never removes a file the
//! latest version uses, and time travel inside the retention still works.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use common::kafka::{create_topic, produce_lines};
use common::{assert_success, error_line, interrupt, reached_offsets, wait_for};
use common::{kafka_bootstrap, query_lake_with, s3_lake, scalar_i64, synth_bad_count, synth_good_count};
use common::{unique_suffix, Project, Spawned};
use futures::TryStreamExt;
use tweetlake::lake::Lake;
use tweetlake::produce::synth::{self, SynthOptions};

/// Every table the shipped models and the pipeline write, as dotted names.
const TABLES: [&str; 7] = [
    "bronze",
    "dlq",
    "silver.tweets",
    "gold.company_minute",
    "gold.hashtag_hour",
    "gold.cashtag_hour",
    "gold.country_hour",
];

fn posts(count: usize, seed: u64) -> Vec<u8> {
    let options = SynthOptions {
        malformed_share: 0.05,
        seed,
        first_sequence: seed * 1_000_000,
        ..Default::default()
    };
    synth::jsonl(options, count)
}

/// A lake at `uri` with `options`, as the tests read it.
struct LakeView {
    uri: String,
    options: BTreeMap<String, String>,
}

impl LakeView {
    fn local(project: &Project) -> Self {
        Self {
            uri: project.lake_uri(),
            options: BTreeMap::new(),
        }
    }

    async fn count(&self, sql: &str) -> i64 {
        scalar_i64(&query_lake_with(&self.uri, &self.options, sql).await)
    }

    fn lake(&self) -> Lake {
        Lake::new(&self.uri, &self.options).unwrap()
    }

    /// The data files in the store under table `name` (paths relative to the table).
    async fn stored_files(&self, name: &str) -> BTreeSet<String> {
        let (store, root) = self.lake().object_store().unwrap();
        let dir = name.split('.').fold(root, |dir, part| dir.join(part));
        let listed: Vec<_> = store.list(Some(&dir)).try_collect().await.unwrap();
        listed
            .iter()
            .filter_map(|meta| {
                let parts: Vec<String> = meta
                    .location
                    .prefix_match(&dir)?
                    .map(|p| p.as_ref().to_string())
                    .collect();
                let path = parts.join("/");
                (path.ends_with(".parquet") && !path.starts_with("_delta_log")).then_some(path)
            })
            .collect()
    }

    /// The data files the latest version of table `name` uses.
    async fn live_files(&self, name: &str) -> BTreeSet<String> {
        let table = self.lake().load_table(name).await.unwrap();
        let snapshot = table.snapshot().unwrap();
        snapshot
            .log_data()
            .iter()
            .map(|file| file.path().to_string())
            .collect()
    }

    /// Every table that exists holds what `posts` should give: each good post once in bronze
    /// and silver, each bad one in the dead letters, and gold equal to a recompute over silver.
    async fn assert_holds_each_post_once(&self, posts: &[u8]) {
        let (good, bad) = (synth_good_count(posts), synth_bad_count(posts));
        assert_eq!(
            self.count("SELECT count(*) FROM bronze").await,
            good,
            "bronze rows"
        );
        assert_eq!(
            self.count("SELECT count(DISTINCT (_partition, _offset)) FROM bronze")
                .await,
            good
        );
        assert_eq!(
            self.count("SELECT count(*) FROM silver.tweets").await,
            good,
            "silver rows"
        );
        assert_eq!(
            self.count("SELECT count(DISTINCT id) FROM silver.tweets").await,
            good
        );
        assert_eq!(self.count("SELECT count(*) FROM dlq").await, bad, "dead letters");
        self.assert_gold_equals_recompute().await;
    }

    /// gold.company_minute's counts equal the same counts computed from all of silver.
    async fn assert_gold_equals_recompute(&self) {
        let recompute = "SELECT company, minute, posts, positive, negative FROM ( \
             SELECT company, date_trunc('minute', created_at) AS minute, count(*) AS posts, \
             count(*) FILTER (WHERE sentiment_label = 'positive') AS positive, \
             count(*) FILTER (WHERE sentiment_label = 'negative') AS negative \
             FROM silver.tweets WHERE company IS NOT NULL GROUP BY 1, 2)";
        let stored = "SELECT company, minute, posts, positive, negative FROM gold.company_minute";
        for (a, b) in [(stored, recompute), (recompute, stored)] {
            let differ = format!("SELECT count(*) FROM ({a} EXCEPT ALL {b})");
            assert_eq!(self.count(&differ).await, 0, "gold differs from a recompute: {a}");
        }
    }
}

/// A count through `tweetlake sql` (which knows the time travel syntax).
fn sql_count(project: &Project, sql: &str) -> i64 {
    let output = project.run(&["sql", "-e", sql, "--format", "csv"], &[]);
    assert_success(&output);
    let text = stdout(&output);
    text.lines()
        .last()
        .and_then(|l| l.parse().ok())
        .unwrap_or_else(|| panic!("{sql}: {text}"))
}

/// How a spawned command ended: by which signal, if one ended it.
fn killed_by(output: &std::process::Output) -> Option<i32> {
    std::os::unix::process::ExitStatusExt::signal(&output.status)
}

fn stdout(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Every file under the project's lake with its size: what "nothing changed" compares.
fn lake_files(project: &Project) -> BTreeMap<String, u64> {
    let root = project.path("lake");
    let mut found = BTreeMap::new();
    let mut dirs = vec![root.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                let relative = path.strip_prefix(&root).unwrap().display().to_string();
                found.insert(relative, path.metadata().unwrap().len());
            }
        }
    }
    found
}

/// A local project whose lake holds `posts` written in batches of 40 without maintenance:
/// many small files per table.
fn fragmented_project(posts: &[u8]) -> Project {
    let project = Project::new();
    project.write_posts(posts);
    project.write_config("max_records_per_batch = 40\n\n[maintenance]\nenabled = false");
    assert_success(&project.run(&["run", "--once"], &[]));
    project
}

#[tokio::test(flavor = "multi_thread")]
async fn maintain_compacts_and_vacuums_keeping_every_row_and_time_travel() {
    let posts = posts(1200, 1);
    let project = fragmented_project(&posts);
    let lake = LakeView::local(&project);
    let early_count = sql_count(&project, "SELECT count(*) FROM silver.tweets VERSION AS OF 3");
    assert!(early_count > 0);
    let before_maintenance = chrono::Utc::now().to_rfc3339();
    let bronze_files = lake.live_files("bronze").await.len();
    assert!(
        bronze_files >= 25,
        "1200 posts in batches of 40: {bronze_files} files"
    );

    let dry = project.run(&["maintain", "--dry-run"], &[]);
    assert_success(&dry);
    let text = stdout(&dry);
    assert!(
        text.contains("bronze:") && text.contains("would compact"),
        "{text}"
    );
    let unchanged = lake_files(&project);

    let output = project.run(&["maintain"], &[]);
    assert_success(&output);
    let text = stdout(&output);
    for table in TABLES {
        assert!(
            text.contains(&format!("{table}: files ")),
            "a line per table: {text}"
        );
    }
    assert_ne!(lake_files(&project), unchanged, "maintenance wrote something");
    assert_eq!(
        lake.live_files("bronze").await.len(),
        1,
        "bronze's one partition packed into one file"
    );
    lake.assert_holds_each_post_once(&posts).await;
    // Inside the retention (7 days), every version is still readable.
    let at_version = sql_count(&project, "SELECT count(*) FROM silver.tweets VERSION AS OF 3");
    assert_eq!(at_version, early_count);
    let at_time = format!("SELECT count(*) FROM silver.tweets TIMESTAMP AS OF '{before_maintenance}'");
    assert_eq!(sql_count(&project, &at_time), synth_good_count(&posts));

    assert_success(&project.run(&["maintain", "--retention", "0s", "--force"], &[]));
    for table in TABLES {
        assert_eq!(
            lake.stored_files(table).await,
            lake.live_files(table).await,
            "{table}: exactly the live files are left"
        );
    }
    lake.assert_holds_each_post_once(&posts).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn dry_runs_and_refused_requests_change_nothing() {
    let posts = posts(400, 2);
    let project = fragmented_project(&posts);
    let before = lake_files(&project);

    assert_success(&project.run(&["maintain", "--dry-run"], &[]));
    assert_success(&project.run(&["maintain", "--dry-run", "--retention", "0s", "--force"], &[]));
    assert_eq!(lake_files(&project), before, "a dry run changes nothing");

    let line = error_line(&project.run(&["maintain", "--retention", "1h"], &[]));
    assert!(
        line.contains("--retention 1h") && line.contains("--force"),
        "{line}"
    );
    let line = error_line(&project.run(&["maintain", "--table", "silver.nope"], &[]));
    assert!(
        line.contains("--table silver.nope") && line.contains("silver.tweets"),
        "{line}"
    );

    let sql = project.path("sql");
    let init = project.run(&["init", project.dir.path().to_str().unwrap(), "--force"], &[]);
    assert_success(&init);
    let model = sql.join("gold").join("company_minute.sql");
    let text = std::fs::read_to_string(&model).unwrap();
    std::fs::write(&model, format!("-- @zorder: company, no_such_column\n{text}")).unwrap();
    // init wrote its own tweetlake.toml: point it at this project's lake again.
    project.write_config("max_records_per_batch = 40");
    let line = error_line(&project.run(&["maintain"], &[]));
    assert!(
        line.contains("company_minute.sql:1") && line.contains("no_such_column"),
        "{line}"
    );
    assert_eq!(lake_files(&project), before, "refused requests change nothing");
}

/// Runs `tweetlake` with `args` and `env` again while another maintainer holds the lease (a
/// runner's own maintenance, or a killed maintainer's lease until it expires).
fn when_lease_free(project: &Project, args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let output = project.run(args, env);
        let stderr = String::from_utf8_lossy(&output.stderr);
        if output.status.success() || !stderr.contains("holds the maintenance lease") {
            return output;
        }
        assert!(Instant::now() < deadline, "the lease never came free: {stderr}");
        std::thread::park_timeout(Duration::from_millis(200));
    }
}

/// `tweetlake maintain` with `args`, once the lease is free; it must succeed.
fn maintain_when_free(project: &Project, args: &[&str]) {
    assert_success(&when_lease_free(project, args, &[]));
}

#[tokio::test(flavor = "multi_thread")]
async fn maintenance_beside_a_running_pipeline_on_s3_loses_and_duplicates_nothing() {
    let Some(bootstrap) = kafka_bootstrap() else {
        return;
    };
    let Some((uri, options)) = s3_lake("maintain-beside") else {
        return;
    };
    let topic = format!("posts-{}", unique_suffix());
    create_topic(&bootstrap, &topic, 2).await;
    let project = Project::new();
    // Small batches, so every table gets many files; automatic compaction as soon as a
    // partition holds three small files, and the whole-table passes every few seconds.
    let settings = "max_records_per_batch = 40\ntrigger_interval = \"300ms\"\n\n[maintenance]\n\
                    compact_min_files = 2\ncompact_interval = \"3s\"\nvacuum_interval = \"4s\"\n\
                    max_pause = \"2s\"\nlease_ttl = \"10s\"";
    project.write_kafka_config(&bootstrap, &topic, &uri, &options, settings);
    let runner = Spawned::new(project.command(&["run"]).spawn().unwrap());
    let mut everything = Vec::new();
    for wave in 0..3 {
        let more = posts(240, 10 + wave);
        produce_lines(&bootstrap, &topic, 2, &more).await;
        everything.extend_from_slice(&more);
        wait_for(|| !project.progress().is_empty(), "the first batch");
        // Compaction and a vacuum with a short (forced) retention beside the running writer.
        // A minute is longer than any batch takes from writing a file to committing it.
        maintain_when_free(&project, &["maintain", "--retention", "60s", "--force"]);
    }
    let total = synth_good_count(&everything) + synth_bad_count(&everything);
    wait_for(
        || reached_offsets(&project.progress()).values().sum::<i64>() >= total,
        "every offset committed",
    );
    interrupt(&runner);
    let output = runner.wait();
    assert_success(&output);
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(
        log.contains("maintenance: ") && log.contains("compacted"),
        "the runner maintained too: {log}"
    );

    let lake = LakeView { uri, options };
    lake.assert_holds_each_post_once(&everything).await;
    maintain_when_free(&project, &["maintain", "--retention", "0s", "--force"]);
    for table in TABLES {
        assert_eq!(
            lake.stored_files(table).await,
            lake.live_files(table).await,
            "{table}: exactly the live files are left"
        );
    }
    lake.assert_holds_each_post_once(&everything).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_during_compaction_or_vacuum_on_s3_leaves_every_row_once() {
    let Some((uri, options)) = s3_lake("maintain-kill") else {
        return;
    };
    let posts = posts(1500, 4);
    let project = Project::new();
    project.write_posts(&posts);
    let storage: String = options.iter().map(|(k, v)| format!("{k} = {v:?}\n")).collect();
    let toml = format!(
        "[source]\npath = {:?}\n\n[lake]\nuri = {uri:?}\n\n[lake.storage_options]\n{storage}\n\
         [pipeline]\nname = \"test\"\nmax_records_per_batch = 100\nprogress_log = {:?}\n\n\
         [maintenance]\nenabled = false\nmax_pause = \"1s\"\nlease_ttl = \"4s\"\n\n\
         [maintenance.target_file_sizes]\nbronze = \"1MiB\"\n",
        project.posts_path().display().to_string(),
        project.path("progress.ndjson").display().to_string(),
    );
    std::fs::write(project.path("tweetlake.toml"), toml).unwrap();
    assert_success(&project.run(&["run", "--once"], &[]));
    let lake = LakeView { uri, options };

    // Compaction: bronze's small files make several 1 MiB bins, written one after the other
    // before the commit. The kill comes as soon as one of them is in the store, uncommitted.
    let stored = lake.stored_files("bronze").await;
    let mut maintain = Spawned::new(
        project
            .command(&["maintain", "--table", "bronze"])
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        assert!(
            !maintain.exited(),
            "maintain finished before a rewritten file showed up"
        );
        assert!(Instant::now() < deadline, "no rewritten file showed up");
        let now = lake.stored_files("bronze").await;
        if now.iter().any(|f| !stored.contains(f)) {
            break;
        }
    }
    unsafe { libc::kill(maintain.id() as i32, libc::SIGKILL) };
    let killed = maintain.wait();
    assert_eq!(killed_by(&killed), Some(libc::SIGKILL));
    lake.assert_holds_each_post_once(&posts).await;

    // Vacuum: killed after its start commit, before it deletes anything.
    let fault = [("TWEETLAKE_FAULT", "during_vacuum:bronze")];
    // The killed maintainer's lease blocks the next one until it expires (4 s here).
    let args = ["maintain", "--table", "bronze", "--retention", "0s", "--force"];
    let killed = when_lease_free(&project, &args, &fault);
    assert_eq!(killed_by(&killed), Some(libc::SIGKILL));
    lake.assert_holds_each_post_once(&posts).await;

    // Run again: it finishes what was left and leaves exactly the live files.
    maintain_when_free(&project, &["maintain", "--retention", "0s", "--force"]);
    for table in TABLES {
        assert_eq!(
            lake.stored_files(table).await,
            lake.live_files(table).await,
            "{table}"
        );
    }
    lake.assert_holds_each_post_once(&posts).await;
}

/// The `files` column of the `bench --maintenance` row whose label starts with `label`.
fn bench_files(text: &str, label: &str) -> usize {
    let row = text
        .lines()
        .find(|line| line.starts_with(label))
        .unwrap_or_else(|| panic!("no row {label:?}: {text}"));
    row[52..]
        .split_whitespace()
        .next()
        .and_then(|files| files.parse().ok())
        .unwrap_or_else(|| panic!("no file count: {row}"))
}

#[test]
fn bench_maintenance_reports_the_lakes_before_and_after_and_the_longest_pause() {
    let project = Project::new();
    let dir = project.path("bench");
    let args = ["bench", "--maintenance", "--records", "300", "--batch", "30"];
    let output = project.run(&[&args[..], &["--dir", dir.to_str().unwrap()]].concat(), &[]);
    assert_success(&output);
    let text = stdout(&output);
    assert!(
        text.contains("longest pause of ingestion for automatic maintenance: ")
            && text.contains("bound: maintenance.max_pause, 2000 ms"),
        "{text}"
    );
    let fragmented = bench_files(&text, "small batches ");
    let vacuumed = bench_files(&text, "after maintain --retention 0s --force");
    let reference = bench_files(&text, "one batch (reference)");
    assert!(fragmented >= 40, "10 batches leave many files: {text}");
    assert!(vacuumed < fragmented / 4, "maintain leaves few files: {text}");
    assert!(vacuumed >= reference, "{text}");
}
