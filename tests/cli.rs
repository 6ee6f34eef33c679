//! The binary as a user runs it: demo, init, plan, run (once and continuous) and its errors.

mod common;

use common::{synth_good_count, Project, Spawned, StdoutLines};
use tweetlake::produce::synth::{self, SynthOptions};

fn stdout(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[tokio::test]
async fn demo_needs_no_server_prints_gold_and_is_idempotent() {
    let project = Project::new();
    let first = project.run(&["demo"], &[]);
    assert!(first.status.success(), "{}", stderr(&first));
    let text = stdout(&first);
    assert!(text.contains("gold.company_minute, per company"), "{text}");
    let aapl = text.lines().find(|l| l.contains("| AAPL")).expect("an AAPL row");
    let embedded_posts = tweetlake::embedded::SAMPLE_POSTS
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .count();
    assert!(
        text.contains(&format!("demo: {embedded_posts} records")),
        "{text}"
    );

    let second = project.run(&["demo"], &[]);
    assert!(second.status.success(), "{}", stderr(&second));
    let again = stdout(&second);
    assert!(again.contains("demo: 0 records in 0 batch(es)"), "{again}");
    assert!(
        again.contains(aapl),
        "the second demo run must not change gold: {again}"
    );
    let bronze = project.count("SELECT count(*) FROM bronze").await;
    assert_eq!(
        bronze,
        project.count("SELECT count(DISTINCT _offset) FROM bronze").await
    );
}

#[test]
fn init_writes_an_editable_project_that_plans() {
    let project = Project::new();
    let init = project.run(&["init"], &[]);
    assert!(init.status.success(), "{}", stderr(&init));
    for file in [
        "tweetlake.toml",
        "sample_posts.jsonl",
        "sql/silver/tweets.sql",
        "sql/companies.csv",
        "sql/tests/edge_cases.toml",
        "sql/tests/edge_cases.jsonl",
        "queries/top_companies.sql",
    ] {
        assert!(project.path(file).exists(), "{file} missing");
    }
    let again = project.run(&["init"], &[]);
    assert!(!again.status.success());
    assert!(stderr(&again).contains("--force"), "{}", stderr(&again));

    // The written sql/ is what `plan` now reads: a model added there shows up.
    std::fs::write(
        project.path("sql/gold/langs.sql"),
        "SELECT lang, count(*) AS n FROM silver.tweets GROUP BY lang",
    )
    .unwrap();
    let plan = project.run(&["plan"], &[]);
    assert!(plan.status.success(), "{}", stderr(&plan));
    let text = stdout(&plan);
    let silver = text.find("silver.tweets <- bronze").expect("silver in the plan");
    let langs = text
        .find("gold.langs <- silver.tweets")
        .expect("the new model in the plan");
    assert!(silver < langs, "dependencies first:\n{text}");
    assert!(text.contains("    n: Int64"), "{text}");

    // The written project runs as it is.
    let run = project.run(
        &["run", "--once"],
        &[("TWEETLAKE_PIPELINE__PROGRESS_LOG", "progress.ndjson")],
    );
    assert!(run.status.success(), "{}", stderr(&run));
    assert_eq!(project.progress().len(), 1);
}

#[test]
fn test_checks_the_written_project_and_fails_readably_on_a_broken_expectation() {
    let project = Project::new();
    assert!(project.run(&["init"], &[]).status.success());
    // One wrong expectation: 1,000,000 followers is mega, not macro.
    let suite = project.path("sql/tests/edge_cases.toml");
    let text = std::fs::read_to_string(&suite).unwrap();
    let wrong = r#"author_followers = 1000000, author_tier = "macro""#;
    let edited = text.replace(r#"author_followers = 1000000, author_tier = "mega""#, wrong);
    assert_ne!(edited, text);
    std::fs::write(&suite, edited).unwrap();

    let out = project.run(&["test"], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let text = stdout(&out);
    let squeezed = |s: &str| {
        s.split(' ')
            .filter(|w| !w.is_empty())
            .collect::<Vec<_>>()
            .join(" ")
    };
    let failed: Vec<&str> = text.lines().filter(|l| l.starts_with("FAIL")).collect();
    assert_eq!(
        failed,
        ["FAIL  sql/tests/edge_cases.toml: author tiers at their thresholds (1M mega, 100k macro, 10k micro), NULL without followers"],
        "{text}"
    );
    assert!(
        squeezed(&text).contains("| 2 | author_tier | macro | mega |"),
        "the diff names row, column, expected and actual:\n{text}"
    );
    assert!(
        text.lines().filter(|l| l.starts_with("ok")).count() > 50,
        "{text}"
    );
    assert!(
        text.contains("ran the models over edge_cases.jsonl in batches of 3"),
        "{text}"
    );
    let summary = text.lines().last().unwrap();
    assert!(summary.ends_with("passed, 1 failed"), "{summary}");
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("error: 1 of ") && err.contains("model tests failed"),
        "{err}"
    );
}

#[test]
fn broken_sql_is_a_one_line_error_naming_the_file_and_line() {
    let project = Project::new();
    project.write_posts(b"");
    project.write_config("sql_dir = \"models\"");
    std::fs::create_dir_all(project.path("models/silver")).unwrap();
    std::fs::write(
        project.path("models/silver/t.sql"),
        "SELECT data['id'] AS id\nFROM bronze\nJOIN gold.nope ON true",
    )
    .unwrap();
    for args in [&["plan"][..], &["run", "--once"][..]] {
        let out = project.run(args, &[]);
        assert_eq!(out.status.code(), Some(1));
        let err = stderr(&out);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.contains("models/silver/t.sql:3: unknown table `gold.nope`"),
            "{err}"
        );
    }
}

#[test]
fn config_and_source_errors_name_the_key_or_file() {
    let project = Project::new();
    project.write_config("max_records_per_batch = \"many\"");
    let out = project.run(&["run", "--once"], &[]);
    assert!(
        stderr(&out).contains("config key pipeline.max_records_per_batch"),
        "{}",
        stderr(&out)
    );

    project.write_config("");
    let out = project.run(&["run", "--once"], &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("posts.jsonl") && err.contains("No such file"),
        "{err}"
    );
}

/// Reads progress JSON lines from a running child until `want` batches have been reported
/// (each read bounded: see `StdoutLines`).
fn wait_for_reports(lines: &StdoutLines, want: usize) -> Vec<serde_json::Value> {
    let mut reports = Vec::new();
    while reports.len() < want {
        if let Ok(report) = serde_json::from_str::<serde_json::Value>(&lines.next_line()) {
            reports.push(report);
        }
    }
    reports
}

#[tokio::test]
async fn continuous_run_picks_up_new_lines_and_stops_cleanly_on_ctrl_c() {
    let project = Project::new();
    let first = synth::jsonl(SynthOptions::default(), 120);
    // Other posts: ids after the first ones' (silver keeps one row per post id).
    let more = synth::jsonl(
        SynthOptions {
            seed: 5,
            first_sequence: 1_000,
            ..Default::default()
        },
        80,
    );
    project.write_posts(&first);
    project.write_config("trigger_interval = \"200ms\"");
    // Killed when the test fails before it stops the runner.
    let (runner, lines) = Spawned::with_stdout_lines(
        project
            .command(&["run"])
            .env("TWEETLAKE_PIPELINE__PROGRESS_LOG", "-")
            .spawn()
            .unwrap(),
    );

    let reports = wait_for_reports(&lines, 1);
    assert_eq!(reports[0]["input_rows"], 120);
    assert!(reports[0]["durations"]["total_ms"].as_f64().unwrap() > 0.0);
    assert_eq!(reports[0]["tables"]["silver.tweets"]["rows"], 120);

    project.append_posts(&more);
    // The append may straddle a trigger: the 80 lines arrive in one or more batches.
    let mut appended = 0;
    let mut batch_ids = Vec::new();
    while appended < 80 {
        let report = wait_for_reports(&lines, 1).remove(0);
        appended += report["input_rows"].as_i64().unwrap();
        batch_ids.push(report["batch_id"].as_i64().unwrap());
    }
    assert_eq!(appended, 80);
    assert_eq!(batch_ids[0], 1);

    // SAFETY: signalling our own child process, not yet waited for.
    unsafe { libc::kill(runner.id() as i32, libc::SIGINT) };
    let output = runner.wait();
    assert!(output.status.success(), "{}", stderr(&output));
    let total = synth_good_count(&first) + synth_good_count(&more);
    assert_eq!(project.count("SELECT count(*) FROM silver.tweets").await, total);
}

#[test]
fn produce_synth_is_deterministic_for_a_seed() {
    let project = Project::new();
    let run = |seed: &str| project.run(&["produce", "synth", "--count", "25", "--seed", seed], &[]);
    let (a, b, c) = (run("1"), run("1"), run("2"));
    assert!(a.status.success(), "{}", stderr(&a));
    assert_eq!(stdout(&a).lines().count(), 25);
    assert_eq!(a.stdout, b.stdout);
    assert_ne!(a.stdout, c.stdout);
    for line in stdout(&a).lines() {
        let message: serde_json::Value = serde_json::from_str(line).unwrap();
        assert!(
            message["data"]["id"].is_string() && message["includes"]["users"].is_array(),
            "{line}"
        );
    }
}
