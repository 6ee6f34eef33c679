//! Deduplication across batches (`silver.tweets` is `insert_new` on `id`): a post delivered
//! again, in another partition of the same batch or in a later batch, is one silver row and
//! counts once in gold, also when the batch holding the copy crashed and ran again.

mod common;

use std::os::unix::process::ExitStatusExt;

use common::kafka::{create_topic, produce_lines};
use common::{assert_success, kafka_bootstrap, unique_suffix, Project};
use tweetlake::produce::synth::{self, SynthOptions};

/// `count` clean synthetic posts, ids continuing after `first_sequence`, one per line.
fn posts(count: usize, first_sequence: u64) -> Vec<Vec<u8>> {
    let options = SynthOptions {
        first_sequence,
        ..Default::default()
    };
    let text = synth::jsonl(options, count);
    text.split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(<[u8]>::to_vec)
        .collect()
}

fn jsonl(lines: &[Vec<u8>]) -> Vec<u8> {
    let mut text = Vec::new();
    for line in lines {
        text.extend_from_slice(line);
        text.push(b'\n');
    }
    text
}

/// Silver holds each post once, and gold counted each silver post with a company once.
async fn assert_each_post_once(project: &Project, distinct_posts: i64) {
    let count = |sql: &'static str| project.count(sql);
    assert_eq!(
        count("SELECT count(*) FROM silver.tweets").await,
        distinct_posts,
        "silver rows"
    );
    assert_eq!(
        count("SELECT count(DISTINCT id) FROM silver.tweets").await,
        distinct_posts,
        "silver ids"
    );
    let with_company = count("SELECT count(*) FROM silver.tweets WHERE company IS NOT NULL").await;
    assert!(with_company > 0, "the synthetic posts name companies");
    assert_eq!(
        count("SELECT CAST(sum(posts) AS BIGINT) FROM gold.company_minute").await,
        with_company,
        "gold.company_minute counts each post once"
    );
}

/// The duplicates silver's check reported in each progress line.
fn reported_duplicates(project: &Project) -> Vec<u64> {
    project
        .progress()
        .iter()
        .map(|line| {
            line["tables"]["silver.tweets"]["dedup"]["duplicates"]
                .as_u64()
                .unwrap_or(0)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_post_in_two_partitions_of_a_batch_and_again_in_a_later_batch_is_one_silver_row() {
    let Some(bootstrap) = kafka_bootstrap() else {
        return;
    };
    let topic = format!("dedup-{}", unique_suffix());
    create_topic(&bootstrap, &topic, 2).await;
    let first = posts(60, 0);
    // Lines alternate between partitions 0 and 1: the first 20 posts go to both.
    let both: Vec<Vec<u8>> = first[..20].iter().flat_map(|p| [p.clone(), p.clone()]).collect();
    produce_lines(&bootstrap, &topic, 2, &jsonl(&both)).await;
    produce_lines(&bootstrap, &topic, 1, &jsonl(&first[20..])).await;
    let project = Project::new();
    let lake = project.lake_uri();
    project.write_kafka_config(&bootstrap, &topic, &lake, &Default::default(), "");

    let run = project.run(&["run", "--once"], &[]);
    assert_success(&run);
    assert_eq!(project.progress().len(), 1, "one batch read both partitions");
    assert_each_post_once(&project, 60).await;

    // Later: 20 of those posts again (in both partitions) and 10 new ones.
    let again: Vec<Vec<u8>> = first[30..50].to_vec();
    produce_lines(&bootstrap, &topic, 2, &jsonl(&again)).await;
    produce_lines(&bootstrap, &topic, 2, &jsonl(&posts(10, 1_000))).await;
    let run = project.run(&["run", "--once"], &[]);
    assert_success(&run);
    assert_each_post_once(&project, 70).await;
    assert_eq!(
        project.count("SELECT count(*) FROM bronze").await,
        20 * 2 + 40 + 20 + 10,
        "bronze keeps every delivery"
    );
    let duplicates: u64 = reported_duplicates(&project).iter().sum();
    assert_eq!(
        duplicates, 20,
        "the later batches' progress lines count the copies silver held"
    );
    let first_delivery = project
        .count("SELECT count(*) FROM silver.tweets WHERE batch_id = 0")
        .await;
    assert_eq!(
        first_delivery, 60,
        "each post kept from the batch that delivered it first"
    );
}

/// Batch 2 holds copies of posts of batch 0 and new posts; the run is killed at `point` of
/// batch 2 and run again.
async fn copies_in_a_crashed_batch(point: &str) {
    let originals = posts(300, 0);
    let mut lines = originals.clone();
    lines.extend_from_slice(&originals[..50]);
    lines.extend(posts(50, 10_000));
    let project = Project::new();
    project.write_posts(&jsonl(&lines));
    project.write_config("max_records_per_batch = 150");

    let fault = format!("{point}#2");
    let crashed = project.run(&["run", "--once"], &[("TWEETLAKE_FAULT", &fault)]);
    assert_eq!(crashed.status.signal(), Some(9), "{point}: killed: {crashed:?}");
    let recovered = project.run(&["run", "--once"], &[]);
    assert_success(&recovered);
    let reports = project.progress();
    assert_eq!(
        reports.last().unwrap()["rerun"],
        true,
        "{point}: batch 2 ran again"
    );
    assert_eq!(reports.last().unwrap()["batch_id"], 2);
    assert_each_post_once(&project, 350).await;
    assert_eq!(
        reported_duplicates(&project).last(),
        Some(&50),
        "{point}: the re-run found the same 50 copies as the first attempt"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_crashed_batch_with_copies_runs_again_and_leaves_each_post_once() {
    for point in [
        "after_decode",
        "after_commit:silver.tweets",
        "after_commit:gold.company_minute",
        "before_marker",
    ] {
        copies_in_a_crashed_batch(point).await;
    }
}

#[test]
fn bench_dedup_compares_insert_new_with_append_on_the_same_copies() {
    let project = Project::new();
    let dir = project.path("bench");
    let output = project.run(
        &[
            "bench",
            "--dedup",
            "--records",
            "600",
            "--batch",
            "100",
            "--dir",
            dir.to_str().unwrap(),
        ],
        &[],
    );
    assert_success(&output);
    let stdout = String::from_utf8(output.stdout).unwrap();
    // 600 posts: a first batch of 100, then 6 batches of 5 copies and up to 95 new posts.
    let rows: Vec<Vec<&str>> = stdout
        .lines()
        .filter(|l| l.starts_with("insert_new") || l.starts_with("append"))
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows.len(), 6, "3 rounds of both: {stdout}");
    for row in &rows {
        let (silver_rows, duplicates) = (row[row.len() - 3], row[row.len() - 2]);
        match row[0] {
            "insert_new" => assert_eq!((silver_rows, duplicates), ("600", "30"), "{stdout}"),
            _ => assert_eq!((silver_rows, duplicates), ("630", "0"), "{stdout}"),
        }
    }
    assert!(stdout.contains("the check itself: p50"), "{stdout}");
}
