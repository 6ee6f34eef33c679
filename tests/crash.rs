//! Exactly once through crashes: the real binary is killed with SIGKILL at chosen points of a
//! batch (`TWEETLAKE_FAULT`), restarted, and every table must hold each record exactly once.

mod common;

use std::os::unix::process::ExitStatusExt;

use common::{synth_bad_count, synth_good_count, Project};
use tweetlake::produce::synth::{self, SynthOptions};

async fn crash_then_recover(point: &str) {
    let posts = synth::jsonl(
        SynthOptions {
            malformed_share: 0.05,
            seed: 11,
            ..Default::default()
        },
        400,
    );
    let project = Project::new();
    project.write_posts(&posts);
    project.write_config("max_records_per_batch = 150");

    let fault = format!("{point}#1");
    let crashed = project.run(&["run", "--once"], &[("TWEETLAKE_FAULT", &fault)]);
    assert_eq!(
        crashed.status.signal(),
        Some(9),
        "{point}: the run should die by SIGKILL: {crashed:?}"
    );
    let reports_before = project.progress().len();
    assert_eq!(reports_before, 1, "batch 0 finished before the crash in batch 1");

    let recovered = project.run(&["run", "--once"], &[]);
    assert!(
        recovered.status.success(),
        "{}",
        String::from_utf8_lossy(&recovered.stderr)
    );
    let reports = project.progress();
    assert_eq!(reports.len(), 3, "the restart re-runs batch 1, then runs batch 2");
    assert_eq!(reports[1]["batch_id"], 1);
    assert_eq!(reports[1]["rerun"], true);
    let range = &reports[1]["offsets"][0];
    assert_eq!(
        (range["start"].as_i64(), range["end"].as_i64()),
        (Some(150), Some(300)),
        "the planned range"
    );

    let good = synth_good_count(&posts);
    let bad = synth_bad_count(&posts);
    assert_eq!(
        project.count("SELECT count(*) FROM bronze").await,
        good,
        "{point}: bronze"
    );
    assert_eq!(
        project.count("SELECT count(DISTINCT _offset) FROM bronze").await,
        good
    );
    assert_eq!(
        project.count("SELECT count(*) FROM silver.tweets").await,
        good,
        "{point}: silver"
    );
    assert_eq!(
        project
            .count("SELECT count(DISTINCT id) FROM silver.tweets")
            .await,
        good
    );
    assert_eq!(
        project.count("SELECT count(*) FROM dlq").await,
        bad,
        "{point}: dlq"
    );
    assert_eq!(
        project.count("SELECT count(DISTINCT _offset) FROM dlq").await,
        bad
    );
    assert_eq!(
        project.count("SELECT sum(posts) FROM gold.company_minute").await,
        good,
        "{point}: gold"
    );
    assert_eq!(
        project.count("SELECT count(*) FROM gold.company_minute").await,
        project
            .count("SELECT count(*) FROM (SELECT DISTINCT company, minute FROM gold.company_minute)")
            .await,
        "{point}: one gold row per key"
    );
}

macro_rules! crash_tests {
    ($($name:ident => $point:expr),* $(,)?) => {$(
        #[tokio::test]
        async fn $name() {
            crash_then_recover($point).await;
        }
    )*};
}

crash_tests! {
    killed_after_planning => "after_plan",
    killed_mid_batch_after_decode => "after_decode",
    killed_after_bronze_commit => "after_commit:bronze",
    killed_after_dead_letter_commit => "after_commit:dlq",
    killed_between_silver_and_gold_commits => "after_commit:silver.tweets",
    killed_between_two_gold_commits => "after_commit:gold.company_minute",
    killed_after_all_commits_before_the_marker => "before_marker",
}
