//! `tweetlake dlq replay` through the real binary, on a file source and a local lake.
//!
//! The fix the tests replay after is a real one: yesterday's run had `pipeline.max_message_bytes`
//! below the size of about half the posts, which went to the dead-letter table ("message is N
//! bytes, above pipeline.max_message_bytes: raise the limit to accept it"); today's config has
//! the default limit, so those decode. The synthetic malformed records fail with either decoder
//! and must stay dead letters.

mod common;

use std::collections::BTreeSet;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Output;

use common::{assert_success, error_line, lake_session, scalar_i64, synth_bad_count, Project};
use tweetlake::lake::Lake;
use tweetlake::produce::synth::{self, SynthOptions};

/// Yesterday's `pipeline.max_message_bytes`, set for the first run only.
const LIMIT_ENV: &str = "TWEETLAKE_PIPELINE__MAX_MESSAGE_BYTES";

/// A lake whose dead letters are the malformed records plus the good posts above a too-small
/// message limit.
struct Yesterday {
    project: Project,
    /// Good posts.
    good: i64,
    /// Good posts dead-lettered for their size: what a replay brings in.
    fixable: i64,
    /// Malformed records: dead letters for good.
    bad: i64,
    /// The line numbers (source offsets) of the fixable posts.
    fixable_offsets: Vec<i64>,
}

impl Yesterday {
    fn new() -> Self {
        let posts = synth::jsonl(
            SynthOptions {
                malformed_share: 0.05,
                seed: 23,
                ..Default::default()
            },
            120,
        );
        let lines: Vec<&[u8]> = posts.split(|&b| b == b'\n').filter(|l| !l.is_empty()).collect();
        let is_good = |line: &[u8]| line.windows(21).any(|w| w == b"\"context_annotations\"");
        let mut sizes: Vec<usize> = lines.iter().filter(|l| is_good(l)).map(|l| l.len()).collect();
        sizes.sort_unstable();
        let limit = sizes[sizes.len() / 2];
        let fixable_offsets: Vec<i64> = (0..lines.len())
            .filter(|&i| is_good(lines[i]) && lines[i].len() > limit)
            .map(|i| i as i64)
            .collect();

        let project = Project::new();
        project.write_posts(&posts);
        project.write_config("max_records_per_batch = 40");
        let run = project.run(&["run", "--once"], &[(LIMIT_ENV, &limit.to_string())]);
        assert_success(&run);
        Self {
            project,
            good: sizes.len() as i64,
            fixable: fixable_offsets.len() as i64,
            bad: synth_bad_count(&posts),
            fixable_offsets,
        }
    }

    fn replay(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut all = vec!["dlq", "replay"];
        all.extend_from_slice(args);
        self.project.run(&all, env)
    }

    async fn count(&self, sql: &str) -> i64 {
        let ctx = lake_session(&self.project.lake_uri()).await;
        let lake = Lake::new(&self.project.lake_uri(), &Default::default()).unwrap();
        lake.register_table(&ctx, "dlq_replays").await.unwrap();
        scalar_i64(&ctx.sql(sql).await.unwrap().collect().await.unwrap())
    }

    /// Every table holds each post once: bronze with the dead letter's own lineage, silver,
    /// gold; the dead-letter table keeps what it had.
    async fn assert_each_post_once(&self, in_bronze: i64) {
        let count = |sql: &'static str| self.count(sql);
        assert_eq!(count("SELECT count(*) FROM bronze").await, in_bronze, "bronze");
        assert_eq!(
            count("SELECT count(DISTINCT _offset) FROM bronze WHERE _topic = 'posts.jsonl'").await,
            in_bronze,
            "bronze rows keep the lineage of the original records, once each"
        );
        assert_eq!(
            count("SELECT count(*) FROM silver.tweets").await,
            in_bronze,
            "silver"
        );
        assert_eq!(
            count("SELECT count(DISTINCT id) FROM silver.tweets").await,
            in_bronze
        );
        assert_eq!(
            count("SELECT sum(posts) FROM gold.company_minute").await,
            in_bronze,
            "gold"
        );
        assert_eq!(
            count("SELECT count(*) FROM dlq").await,
            self.bad + self.fixable,
            "dead letters stay as they were"
        );
    }

    /// Every file under the lake, offset log included.
    fn lake_files(&self) -> BTreeSet<String> {
        let mut found = BTreeSet::new();
        let mut dirs = vec![self.project.path("lake")];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    dirs.push(path.clone());
                }
                found.insert(relative(&path, &self.project.path("lake")));
            }
        }
        found
    }
}

fn relative(path: &Path, root: &Path) -> String {
    path.strip_prefix(root).unwrap().display().to_string()
}

fn stdout_text(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test]
async fn replay_after_a_fix_lands_the_dead_letters_once_and_a_second_replay_does_nothing() {
    let lake = Yesterday::new();
    assert!(lake.fixable > 10 && lake.bad > 0, "the fixture has both kinds");
    lake.assert_each_post_once(lake.good - lake.fixable).await;

    let first = lake.replay(&[], &[]);
    assert_success(&first);
    let summary = stdout_text(&first);
    let (fixable, bad) = (lake.fixable, lake.bad);
    assert!(
        summary.contains(&format!(
            "queued {fixable} (into dlq_replays, replay offsets 0..{fixable}), replayed {fixable}, \
             decoded now {fixable}, still failing {bad}"
        )),
        "{summary}"
    );
    lake.assert_each_post_once(lake.good).await;
    assert_eq!(lake.count("SELECT count(*) FROM dlq_replays").await, lake.fixable);

    let second = lake.replay(&[], &[]);
    assert_success(&second);
    let summary = stdout_text(&second);
    assert!(
        summary.contains(&format!(
            "queued 0, replayed 0, decoded now 0, still failing {bad}"
        )),
        "{summary}"
    );
    lake.assert_each_post_once(lake.good).await;
    assert_eq!(lake.count("SELECT count(*) FROM dlq_replays").await, lake.fixable);

    let triage = lake.project.run(
        &["sql", "--format", "ndjson", "-e", "\\run dlq_triage limit=1000"],
        &[],
    );
    assert_success(&triage);
    let replayed: i64 = stdout_text(&triage)
        .lines()
        .map(|line| {
            serde_json::from_str::<serde_json::Value>(line).unwrap()["replayed"]
                .as_i64()
                .unwrap()
        })
        .sum();
    assert_eq!(
        replayed, lake.fixable,
        "dlq_triage counts the replayed dead letters"
    );
}

async fn killed_during_replay_then_replayed_again(point: &str) {
    let lake = Yesterday::new();
    let crashed = lake.replay(&[], &[("TWEETLAKE_FAULT", point)]);
    assert_eq!(crashed.status.signal(), Some(9), "{point}: killed: {crashed:?}");

    let again = lake.replay(&[], &[]);
    assert_success(&again);
    let summary = stdout_text(&again);
    assert!(
        summary.contains(&format!("queued 0, replayed {}", lake.fixable)),
        "{point}: the second replay queues nothing new and finishes the queue: {summary}"
    );
    let reruns = lake
        .project
        .progress()
        .iter()
        .filter(|r| r["rerun"] == true)
        .count();
    assert_eq!(
        reruns, 1,
        "{point}: the batch cut short runs again with its own offsets"
    );
    lake.assert_each_post_once(lake.good).await;
    assert_eq!(lake.count("SELECT count(*) FROM dlq_replays").await, lake.fixable);
    assert_eq!(
        lake.count("SELECT count(DISTINCT replay_offset) FROM dlq_replays")
            .await,
        lake.fixable
    );
}

#[tokio::test]
async fn killed_after_queueing_and_planning_a_replay_then_replayed_again_each_row_once() {
    killed_during_replay_then_replayed_again("after_plan").await;
}

#[tokio::test]
async fn killed_between_table_commits_of_a_replay_then_replayed_again_each_row_once() {
    killed_during_replay_then_replayed_again("after_commit:silver.tweets").await;
}

#[tokio::test]
async fn where_chooses_a_subset_and_an_invalid_where_is_one_line_that_writes_nothing() {
    let lake = Yesterday::new();
    let before = lake.lake_files();
    let invalid = lake.replay(&["--where", "error LIKE"], &[]);
    assert_eq!(invalid.status.code(), Some(1));
    let line = error_line(&invalid);
    assert!(
        line.starts_with("error: --where `error LIKE` is not a valid filter on the dead letters:"),
        "{line}"
    );
    let unknown = lake.replay(&["--where", "no_such_column = 1"], &[]);
    assert!(error_line(&unknown).contains("--where `no_such_column = 1`"));
    assert_eq!(lake.lake_files(), before, "a refused --where writes nothing");

    let cut = lake.fixable_offsets[lake.fixable_offsets.len() / 2];
    let chosen = lake.fixable_offsets.iter().filter(|&&o| o < cut).count() as i64;
    let filter = format!("_offset < {cut} AND error LIKE 'message is %'");
    let subset = lake.replay(&["--where", &filter], &[]);
    assert_success(&subset);
    let summary = stdout_text(&subset);
    assert!(
        summary.contains(&format!("queued {chosen} ")) && summary.contains("still failing 0"),
        "{summary}"
    );
    lake.assert_each_post_once(lake.good - lake.fixable + chosen)
        .await;

    let rest = lake.replay(&[], &[]);
    assert_success(&rest);
    let summary = stdout_text(&rest);
    assert!(
        summary.contains(&format!(
            "queued {} (into dlq_replays, replay offsets {chosen}..{})",
            lake.fixable - chosen,
            lake.fixable
        )),
        "the queue goes on after the first replay's offsets: {summary}"
    );
    lake.assert_each_post_once(lake.good).await;
}

#[tokio::test]
async fn dry_run_counts_what_would_decode_and_writes_nothing() {
    let lake = Yesterday::new();
    let before = lake.lake_files();
    let dry = lake.replay(&["--dry-run"], &[]);
    assert_success(&dry);
    let text = stdout_text(&dry);
    let (fixable, bad) = (lake.fixable, lake.bad);
    assert!(
        text.contains(&format!(
            "dry run: {} dead letters chosen and not replayed yet; {fixable} decode now, {bad} still fail; nothing written",
            fixable + bad
        )),
        "{text}"
    );
    assert!(text.contains("rejected with: "), "sample reasons: {text}");
    assert_eq!(lake.lake_files(), before, "a dry run writes nothing");
    lake.assert_each_post_once(lake.good - lake.fixable).await;
}
