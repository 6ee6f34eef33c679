//! `tweetlake test` as a library: the shipped tests pass on the shipped models, and broken
//! models or expectations fail with readable reports.

use std::path::Path;

use tweetlake::embedded;
use tweetlake::modeltest::{self, Outcome, Report, TestFiles};
use tweetlake::transform::{ModelSet, COMPANIES_FILE, TESTS_DIR};

fn failures(report: &Report) -> String {
    let failed = report.outcomes.iter().filter(|o| o.failure.is_some());
    let texts: Vec<String> = failed
        .map(|o| {
            format!(
                "{}: {}\n{}",
                o.origin,
                o.name,
                o.failure.as_deref().unwrap_or_default()
            )
        })
        .collect();
    texts.join("\n\n")
}

#[tokio::test]
async fn the_shipped_tests_pass_on_the_shipped_models() {
    let models = embedded::models(&["dlq"]).unwrap();
    let report = modeltest::run(&models, "dlq", &TestFiles::Embedded(embedded::TESTS))
        .await
        .unwrap();
    assert_eq!(report.failed(), 0, "{}", failures(&report));
    assert!(report.passed() > 50, "{report:?}");
    // One run per distinct (input, batch size): two inputs, each whole and in small batches.
    assert_eq!(report.runs.len(), 4, "{:?}", report.runs);
    assert!(report.runs.iter().any(|r| r.summary.batches > 5));
}

/// The shipped models and company list in `dir`, with `edit` applied to each model's SQL.
fn write_models(dir: &Path, edit: impl Fn(&str, &str) -> String) {
    for (path, sql) in embedded::MODELS {
        let file = dir.join(path);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(file, edit(path, sql)).unwrap();
    }
    std::fs::write(dir.join(COMPANIES_FILE), embedded::COMPANIES).unwrap();
}

fn outcome<'a>(report: &'a Report, name: &str) -> &'a Outcome {
    let found = report.outcomes.iter().find(|o| o.name == name);
    found.unwrap_or_else(|| panic!("no check `{name}` in {:#?}", report.outcomes))
}

/// The failure text of check `name`, with runs of spaces squeezed so tables compare simply.
fn failure(report: &Report, name: &str) -> String {
    let text = outcome(report, name)
        .failure
        .as_deref()
        .unwrap_or_else(|| panic!("`{name}` should fail"));
    text.split(' ')
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

#[tokio::test]
async fn broken_models_and_expectations_fail_with_the_rows_that_show_why() {
    let dir = tempfile::tempdir().unwrap();
    // A classic merge mistake: the batch's count replaces the stored one instead of adding.
    write_models(dir.path(), |path, sql| match path {
        "gold/company_minute.sql" => sql.replace(
            "@update: posts = target.posts + source.posts",
            "@update: posts = source.posts",
        ),
        _ => sql.to_string(),
    });
    let tests = dir.path().join(TESTS_DIR);
    std::fs::create_dir_all(&tests).unwrap();
    std::fs::write(
        tests.join("broken.toml"),
        r#"
batch_size = 40

[[model]]
name = "gold.company_minute"
equals_recompute = true
unique = ["company"]

[[model]]
name = "silver.tweets"
not_null = ["author_id"]
accepted_values.sentiment_label = ["positive", "negative"]

[[expect]]
name = "a wrong expectation"
sql = "SELECT id, geo_source FROM silver.tweets WHERE id IN ('1860000000000000002', '1860000000000000003') ORDER BY id"
rows = [{ id = "1860000000000000002", geo_source = "point" }]

[[expect]]
name = "a query that does not plan"
sql = "SELECT nope FROM silver.tweets"
rows = []
"#,
    )
    .unwrap();
    std::fs::write(
        tests.join("no_neutral.sql"),
        "-- @batch_size: 40\nSELECT id, sentiment_label FROM silver.tweets WHERE sentiment_label = 'neutral' AND id LIKE '186%'",
    )
    .unwrap();

    let models = ModelSet::load_dir(dir.path(), &["dlq"]).unwrap();
    let report = modeltest::run(&models, "dlq", &TestFiles::Dir(tests))
        .await
        .unwrap();
    assert_eq!(report.runs.len(), 1, "both files share the run");
    assert_eq!(report.passed(), 0, "{}", failures(&report));

    let recompute = failure(&report, "gold.company_minute equals a recompute over its inputs");
    assert!(
        recompute.contains("| stored ") && recompute.contains("| recomputed "),
        "{recompute}"
    );
    let unique = failure(&report, "gold.company_minute (company) is unique");
    assert!(unique.contains("| company | copies |"), "{unique}");
    let not_null = failure(&report, "silver.tweets.author_id is not null");
    assert!(
        not_null.starts_with("1 row(s) where none were expected"),
        "{not_null}"
    );
    assert!(not_null.contains("| id | author_id |"), "{not_null}");
    assert!(not_null.contains("| 1860000000000000011 | NULL |"), "{not_null}");
    let accepted = failure(
        &report,
        "silver.tweets.sentiment_label in ('positive', 'negative')",
    );
    assert!(accepted.contains("| neutral |"), "{accepted}");
    let wrong = failure(&report, "a wrong expectation");
    assert!(wrong.starts_with("expected 1 row(s), got 2"), "{wrong}");
    assert!(wrong.contains("| 1 | geo_source | point | place |"), "{wrong}");
    assert!(
        wrong.contains("| 2 | (row) | (none) | id=1860000000000000003, geo_source=point |"),
        "{wrong}"
    );
    let broken = failure(&report, "a query that does not plan");
    assert!(
        broken.starts_with("query failed: ") && broken.contains("nope"),
        "{broken}"
    );
    let assertion = failure(&report, "no_neutral.sql returns no rows");
    assert!(assertion.contains("1860000000000000004"), "{assertion}");
}

#[tokio::test]
async fn without_tests_the_models_still_run_once() {
    let dir = tempfile::tempdir().unwrap();
    write_models(dir.path(), |_, sql| sql.to_string());
    let models = ModelSet::load_dir(dir.path(), &["dlq"]).unwrap();
    let report = modeltest::run(&models, "dlq", &TestFiles::Dir(dir.path().join(TESTS_DIR)))
        .await
        .unwrap();
    assert!(report.outcomes.is_empty());
    assert_eq!(report.runs.len(), 1);
    assert_eq!(report.runs[0].summary.batches, 1);

    // A model that fails at run time is an error naming the input and the model.
    write_models(dir.path(), |path, sql| match path {
        "gold/hashtag_hour.sql" => sql.replace("count(*) AS posts", "CAST('x' AS INT) AS posts"),
        _ => sql.to_string(),
    });
    let models = ModelSet::load_dir(dir.path(), &["dlq"]).unwrap();
    let error = modeltest::run(&models, "dlq", &TestFiles::Dir(dir.path().join(TESTS_DIR)))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.starts_with("running the models over sample_posts.jsonl"),
        "{error}"
    );
    assert!(error.contains("hashtag_hour.sql"), "{error}");
}
