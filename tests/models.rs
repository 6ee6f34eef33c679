//! The model DAG: ordering from the SQL's own table references, and its errors.

use std::path::PathBuf;

use tweetlake::decode::bronze_schema;
use tweetlake::transform::functions::CompanyMap;
use tweetlake::transform::{ModelSet, TransformError};

fn models(files: &[(&str, &str)]) -> Result<ModelSet, TransformError> {
    let files = files
        .iter()
        .map(|(path, sql)| (PathBuf::from(path), format!("sql/{path}"), sql.to_string()))
        .collect();
    ModelSet::from_sources(files, CompanyMap::default(), &["dlq"])
}

fn names(set: &ModelSet) -> Vec<&str> {
    set.models().iter().map(|m| m.name.as_str()).collect()
}

#[test]
fn models_run_after_the_tables_they_read() {
    let set = models(&[
        ("gold/b.sql", "SELECT x FROM silver.a"),
        (
            "gold/c.sql",
            "WITH t AS (SELECT x FROM gold.b) SELECT t.x FROM t JOIN silver.a s ON s.x = t.x",
        ),
        ("silver/a.sql", "SELECT data['id'] AS x FROM bronze"),
    ])
    .unwrap();
    assert_eq!(names(&set), ["silver.a", "gold.b", "gold.c"]);
    assert_eq!(
        set.models()[2].inputs,
        ["gold.b", "silver.a"],
        "CTE names are not inputs"
    );
}

#[test]
fn unknown_tables_name_the_file_and_line() {
    let err = models(&[(
        "silver/a.sql",
        "SELECT 1 AS x\nFROM bronze\nJOIN silver.missing m ON true",
    )])
    .unwrap_err();
    let text = err.to_string();
    assert!(
        text.starts_with("sql/silver/a.sql:3: unknown table `silver.missing`"),
        "{text}"
    );
    assert!(text.contains("known: bronze, silver.a"), "{text}");
}

#[test]
fn cycles_name_every_file_in_the_cycle() {
    let err = models(&[
        ("silver/a.sql", "SELECT x FROM bronze JOIN gold.c ON true"),
        ("gold/b.sql", "SELECT x FROM silver.a"),
        ("gold/c.sql", "SELECT x\nFROM gold.b"),
    ])
    .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("cycle"), "{text}");
    for file in ["sql/silver/a.sql", "sql/gold/b.sql", "sql/gold/c.sql"] {
        assert!(text.contains(file), "{text} should name {file}");
    }
}

#[test]
fn reserved_names_and_parse_errors_are_reported_with_the_file() {
    let err = models(&[("dlq.sql", "SELECT 1")]).unwrap_err();
    assert!(
        err.to_string().starts_with("sql/dlq.sql: `dlq` is reserved"),
        "{err}"
    );
    let err = models(&[("silver/a.sql", "SELECT 1 AS x\nFROM bronze WHERE )")]).unwrap_err();
    assert!(err.to_string().starts_with("sql/silver/a.sql:2:"), "{err}");
    let err = models(&[("silver/a.sql", "SELECT 1; SELECT 2")]).unwrap_err();
    assert!(err.to_string().contains("exactly one SELECT"), "{err}");
}

#[tokio::test]
async fn plan_type_checks_without_data_and_names_the_failing_file() {
    let set = models(&[("silver/a.sql", "SELECT data['id'] AS id, _offset FROM bronze")]).unwrap();
    let schemas = set.plan(bronze_schema()).await.unwrap();
    let fields: Vec<String> = schemas[0].fields().iter().map(|f| f.name().clone()).collect();
    assert_eq!(fields, ["id", "_offset"]);

    let set = models(&[("silver/a.sql", "SELECT no_such_column FROM bronze")]).unwrap();
    let err = set.plan(bronze_schema()).await.unwrap_err();
    assert!(err.to_string().starts_with("sql/silver/a.sql:1: "), "{err}");
    assert!(err.to_string().contains("no_such_column"), "{err}");
}

#[tokio::test]
async fn plan_names_the_line_of_type_errors_in_tweet_functions() {
    let cases = [
        (
            "SELECT data['id'] AS id,\n  sentiment(_offset) AS s\nFROM bronze",
            2,
            "sentiment",
        ),
        (
            "SELECT\n  data['id'] AS id,\n  nope_column AS x\nFROM bronze",
            3,
            "nope_column",
        ),
        (
            "SELECT\n  data['id'] AS id\nFROM bronze\nWHERE no_such_fn(data['text'])",
            4,
            "no_such_fn",
        ),
        (
            "SELECT\n  bbox_centroid(data['text']) AS c\nFROM bronze",
            2,
            "bbox_centroid",
        ),
    ];
    for (sql, line, needle) in cases {
        let set = models(&[("silver/a.sql", sql)]).unwrap();
        let err = set.plan(bronze_schema()).await.unwrap_err().to_string();
        assert!(
            err.starts_with(&format!("sql/silver/a.sql:{line}: ")),
            "{sql}\n{err}"
        );
        assert!(err.contains(needle), "{err}");
    }
    let fine = "SELECT sentiment_label(sentiment(clean_text(data['text']))) AS label,\n\
                company_of(extract_cashtags(data['text'])) AS company FROM bronze";
    let set = models(&[("silver/a.sql", fine)]).unwrap();
    let schemas = set.plan(bronze_schema()).await.unwrap();
    assert_eq!(schemas[0].fields().len(), 2);
}

#[tokio::test]
async fn shipped_models_plan_cleanly() {
    let set = tweetlake::embedded::models(&["dlq"]).unwrap();
    let schemas = set.plan(bronze_schema()).await.unwrap();
    assert_eq!(names(&set)[0], "silver.tweets");
    assert_eq!(schemas.len(), set.models().len());
}
