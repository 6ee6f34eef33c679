//! The model DAG: ordering from the SQL's own table references, and its errors; and the
//! shipped models over generated posts, checked against what each post's JSON says.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use deltalake::arrow::util::display::{ArrayFormatter, FormatOptions};
use deltalake::datafusion::datasource::MemTable;
use deltalake::datafusion::prelude::SessionContext;
use serde_json::Value;

use tweetlake::decode::bronze_schema;
use tweetlake::produce::synth::{self, SynthOptions};
use tweetlake::transform::functions::CompanyMap;
use tweetlake::transform::{session, table_reference, ModelSet, TransformError};

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

/// Runs the shipped models over `jsonl` as one batch, in memory, and returns a session where
/// each model's output is a table.
async fn run_shipped_models(jsonl: &[u8]) -> SessionContext {
    let decoded = common::decode_whole(jsonl.to_vec()).await;
    let models = tweetlake::embedded::models(&["dlq"]).unwrap();
    let outputs = models.run(decoded.bronze).await.unwrap();
    let ctx = session(models.companies());
    for (model, output) in models.models().iter().zip(outputs) {
        let table = MemTable::try_new(output.schema, vec![output.batches]).unwrap();
        let reference = table_reference(&ctx, &model.name).unwrap();
        ctx.register_table(reference, Arc::new(table)).unwrap();
    }
    ctx
}

/// Each row of a query as `column -> value as printed` (NULL as `NULL`).
async fn rows_by_column(ctx: &SessionContext, sql: &str) -> Vec<BTreeMap<String, String>> {
    let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
    let options = FormatOptions::new().with_null("NULL");
    let mut rows = Vec::new();
    for batch in &batches {
        let schema = batch.schema();
        for row in 0..batch.num_rows() {
            let cells = schema
                .fields()
                .iter()
                .zip(batch.columns())
                .map(|(field, column)| {
                    let formatter = ArrayFormatter::try_new(column.as_ref(), &options).unwrap();
                    (field.name().clone(), formatter.value(row).to_string())
                });
            rows.push(cells.collect());
        }
    }
    rows
}

/// What silver.tweets must say about one generated post, worked out from its JSON alone.
fn expected_silver(message: &Value) -> BTreeMap<String, String> {
    let data = &message["data"];
    let user = &message["includes"]["users"][0];
    let followers = user["public_metrics"]["followers_count"].as_i64().unwrap();
    let tier = match followers {
        1_000_000.. => "mega",
        100_000.. => "macro",
        10_000.. => "micro",
        _ => "nano",
    };
    let geo_source = if data["geo"]["coordinates"].is_object() {
        "point"
    } else if data["geo"]["place_id"].is_string() {
        "place"
    } else if user["location"].as_str().is_some_and(|l| !l.trim().is_empty()) {
        "profile"
    } else {
        "none"
    };
    let reference = data["referenced_tweets"][0]["type"].as_str();
    let tag = message["matching_rules"][0]["tag"].as_str().unwrap();
    let text = |v: &Value| v.as_str().unwrap().to_string();
    let full_text = data["note_tweet"]["text"]
        .as_str()
        .map_or_else(|| text(&data["text"]), str::to_string);
    let country = message["includes"]["places"][0]["country_code"]
        .as_str()
        .unwrap_or("NULL");
    [
        ("author_tier", tier.to_string()),
        ("geo_source", geo_source.to_string()),
        ("country_code", country.to_string()),
        ("is_retweet", (reference == Some("retweeted")).to_string()),
        ("is_quote", (reference == Some("quoted")).to_string()),
        ("is_long", data["note_tweet"].is_object().to_string()),
        ("full_text", full_text),
        ("company", tag.strip_prefix("company:").unwrap().to_string()),
        ("lang", text(&data["lang"])),
        (
            "cashtag",
            text(&data["entities"]["cashtags"][0]["tag"]).to_lowercase(),
        ),
        (
            "hashtag",
            text(&data["entities"]["hashtags"][0]["tag"]).to_lowercase(),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

#[tokio::test]
async fn silver_agrees_with_the_generated_posts() {
    let posts = synth::jsonl(SynthOptions::default(), 600);
    let ctx = run_shipped_models(&posts).await;
    let silver = rows_by_column(
        &ctx,
        "SELECT id, author_tier, geo_source, country_code, CAST(is_retweet AS VARCHAR) AS is_retweet, \
         CAST(is_quote AS VARCHAR) AS is_quote, CAST(is_long AS VARCHAR) AS is_long, full_text, company, \
         company_source, lang, cashtags[1] AS cashtag, hashtags[1] AS hashtag, \
         lon IS NOT NULL AS located, sentiment, sentiment_label FROM silver.tweets",
    )
    .await;
    let silver: BTreeMap<&str, &BTreeMap<String, String>> =
        silver.iter().map(|row| (row["id"].as_str(), row)).collect();
    assert_eq!(silver.len(), 600);
    let mut seen = BTreeMap::new();
    for line in posts.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let message: Value = serde_json::from_slice(line).unwrap();
        let row = silver[message["data"]["id"].as_str().unwrap()];
        for (column, value) in expected_silver(&message) {
            assert_eq!(&row[&column], &value, "{column} of {}", row["id"]);
        }
        assert_eq!(row["company_source"], "rule");
        assert_eq!(
            row["located"] == "true",
            ["point", "place"].contains(&row["geo_source"].as_str())
        );
        let score: f64 = row["sentiment"].parse().unwrap();
        let label = match score {
            s if s >= 0.05 => "positive",
            s if s <= -0.05 => "negative",
            _ => "neutral",
        };
        assert_eq!(row["sentiment_label"], label, "{}", row["id"]);
        *seen.entry(row["geo_source"].clone()).or_insert(0) += 1;
        *seen.entry(row["author_tier"].clone()).or_insert(0) += 1;
        *seen.entry(row["sentiment_label"].clone()).or_insert(0) += 1;
    }
    // The generator covers every case this test distinguishes.
    for case in [
        "point", "place", "profile", "none", "mega", "macro", "micro", "nano", "positive", "neutral",
        "negative",
    ] {
        assert!(
            seen.get(case).is_some_and(|&n| n > 0),
            "no {case} post in {seen:?}"
        );
    }
}

#[tokio::test]
async fn gold_of_one_batch_adds_up_to_silver() {
    let ctx = run_shipped_models(&synth::jsonl(SynthOptions::default(), 400)).await;
    let totals = rows_by_column(
        &ctx,
        "SELECT (SELECT sum(posts) FROM gold.company_minute) AS gold_posts, \
                (SELECT count(*) FROM silver.tweets) AS silver_posts, \
                (SELECT sum(positive + neutral + negative) FROM gold.company_minute) AS labelled, \
                (SELECT sum(distinct_authors) FROM gold.company_minute) AS authors, \
                (SELECT sum(cardinality(authors)) FROM gold.company_minute) AS author_ids, \
                (SELECT sum(posts) FROM gold.cashtag_hour) AS cashtag_posts, \
                (SELECT count(*) FROM (SELECT unnest(cashtags) FROM silver.tweets)) AS cashtags, \
                (SELECT sum(posts) FROM gold.country_hour) AS country_posts, \
                (SELECT count(country_code) FROM silver.tweets) AS placed",
    )
    .await;
    let t = &totals[0];
    assert_eq!(t["gold_posts"], t["silver_posts"]);
    assert_eq!(t["labelled"], t["silver_posts"]);
    assert_eq!(t["authors"], t["author_ids"]);
    assert_eq!(t["cashtag_posts"], t["cashtags"]);
    assert_eq!(t["country_posts"], t["placed"]);
}
