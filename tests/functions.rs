//! The tweet functions through real DataFusion sessions: VADER scores against the Python
//! reference, every function in SQL, and a throughput benchmark (`--ignored`).

use std::path::Path;
use std::sync::Arc;

use deltalake::arrow::array::{
    ArrayRef, AsArray, Float64Array, Float64Builder, Int64Array, LargeStringArray, ListBuilder, RecordBatch,
    StringArray, StringViewArray,
};
use deltalake::arrow::datatypes::{DataType, Field, Float64Type};
use deltalake::arrow::util::display::{ArrayFormatter, FormatOptions};
use deltalake::datafusion::datasource::MemTable;
use deltalake::datafusion::prelude::SessionContext;

use tweetlake::produce::synth::Rng;
use tweetlake::transform::functions::CompanyMap;
use tweetlake::transform::session;

fn companies() -> CompanyMap {
    CompanyMap::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("sql/companies.csv")).unwrap()
}

fn context() -> SessionContext {
    session(&companies())
}

fn register(ctx: &SessionContext, name: &str, columns: Vec<(&str, ArrayRef)>) {
    let batch = RecordBatch::try_from_iter(columns).unwrap();
    let table = MemTable::try_new(batch.schema(), vec![vec![batch]]).unwrap();
    ctx.register_table(name, Arc::new(table)).unwrap();
}

/// Every cell of the result, formatted, row by row (NULL as `NULL`).
async fn rows(ctx: &SessionContext, sql: &str) -> Vec<Vec<String>> {
    let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
    let options = FormatOptions::new().with_null("NULL");
    let mut rows = Vec::new();
    for batch in &batches {
        let formatters: Vec<_> = batch
            .columns()
            .iter()
            .map(|column| ArrayFormatter::try_new(column.as_ref(), &options).unwrap())
            .collect();
        for row in 0..batch.num_rows() {
            rows.push(formatters.iter().map(|f| f.value(row).to_string()).collect());
        }
    }
    rows
}

/// The single value of a one-row, one-column query.
/// Each `(expression, expected)`: `SELECT expression` prints `expected`.
async fn assert_values(ctx: &SessionContext, cases: &[(impl AsRef<str>, &str)]) {
    for (expression, expected) in cases {
        let expression = expression.as_ref();
        assert_eq!(
            value(ctx, &format!("SELECT {expression}")).await,
            *expected,
            "{expression}"
        );
    }
}

async fn value(ctx: &SessionContext, sql: &str) -> String {
    let rows = rows(ctx, sql).await;
    assert_eq!(rows.len(), 1, "{sql}");
    rows[0][0].clone()
}

#[tokio::test]
async fn sentiment_matches_python_vader() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/vader_reference.jsonl");
    let mut texts = Vec::new();
    let mut expected = Vec::new();
    for line in std::fs::read_to_string(fixture).unwrap().lines() {
        let row: serde_json::Value = serde_json::from_str(line).unwrap();
        texts.push(row["text"].as_str().unwrap().to_string());
        expected.push(row["compound"].as_f64().unwrap());
    }
    assert!(texts.len() >= 250, "the reference has {} sentences", texts.len());
    let ctx = context();
    let ids = Int64Array::from_iter_values(0..texts.len() as i64);
    register(
        &ctx,
        "sentences",
        vec![
            ("id", Arc::new(ids)),
            ("text", Arc::new(StringArray::from(texts.clone()))),
        ],
    );
    let batches = ctx
        .sql("SELECT id, sentiment(text) AS score FROM sentences ORDER BY id")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let mut scores = Vec::new();
    for batch in &batches {
        scores.extend(
            batch
                .column(1)
                .as_primitive::<Float64Type>()
                .iter()
                .map(Option::unwrap),
        );
    }
    assert_eq!(scores.len(), texts.len());
    let mut failures = Vec::new();
    let mut max_error: f64 = 0.0;
    for ((text, expected), got) in texts.iter().zip(&expected).zip(&scores) {
        let error = (expected - got).abs();
        max_error = max_error.max(error);
        if error > 1e-3 {
            failures.push(format!("{text:?}: expected {expected}, got {got}"));
        }
    }
    println!("{} sentences, max abs error {max_error}", texts.len());
    assert!(
        failures.is_empty(),
        "{} differ from Python:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[tokio::test]
async fn text_functions_in_sql() {
    let ctx = context();
    let cases = [
        (
            "clean_text('RT @bob: Q3 beat &amp; raised 🚀 https://t.co/x1 #earnings')",
            "Q3 beat & raised 🚀 #earnings",
        ),
        ("clean_text('  مرحبا   @user  بالعالم ')", "مرحبا بالعالم"),
        ("clean_text('')", ""),
        ("clean_text(NULL)", "NULL"),
        (
            "clean_text(arrow_cast('a  @b c', 'Dictionary(Int32, Utf8)'))",
            "a c",
        ),
        (
            "extract_hashtags('Loving #WWDC and #日本 #wwdc #100')",
            "[wwdc, 日本]",
        ),
        ("extract_hashtags('#שלום #مرحبا #한국')", "[שלום, مرحبا, 한국]"),
        ("extract_hashtags('')", "[]"),
        ("extract_hashtags(NULL)", "NULL"),
        (
            "extract_cashtags('$AAPL up, $BRK.B flat, paid $100, $aapl again')",
            "[aapl, brk.b]",
        ),
        (
            "extract_mentions('RT @Bob: thanks @alice and @BOB, mail me@x.com')",
            "[bob, alice]",
        ),
        (
            "extract_urls('see https://t.co/AbC1. (www.example.com/a) https://t.co/AbC1')",
            "[https://t.co/AbC1, www.example.com/a]",
        ),
        (
            "extract_urls('a &lt;https://x.co/q?a=1&amp;b=2&gt;')",
            "[https://x.co/q?a=1&b=2]",
        ),
        ("detect_lang('¡Me encanta el nuevo producto de Apple!')", "es"),
        ("detect_lang('Appleの新製品、とても良いです！最高')", "ja"),
        ("detect_lang('أخبار سيئة عن Apple اليوم')", "ar"),
        ("detect_lang('שלום עולם')", "he"),
        ("detect_lang('🚀🚀')", "und"),
        ("detect_lang(NULL)", "NULL"),
        (
            "sentiment('$TSLA is NOT doing great, but the new model is AMAZING!!! 🚀')",
            "0.7923",
        ),
        ("sentiment('')", "0.0"),
        ("sentiment(NULL)", "NULL"),
        ("sentiment_label(sentiment('I love it'))", "positive"),
        ("sentiment_label(-1)", "negative"),
        ("sentiment_label(0)", "neutral"),
        ("sentiment_label(CAST('NaN' AS DOUBLE))", "NULL"),
        ("sentiment_label(NULL)", "NULL"),
    ];
    assert_values(&ctx, &cases).await;
}

#[tokio::test]
async fn company_of_in_sql() {
    let ctx = context();
    let cases = [
        ("company_of('$AAPL')", "AAPL"),
        ("company_of('#Apple')", "AAPL"),
        ("company_of('apple')", "AAPL"),
        ("company_of('Huge quarter for Microsoft, $NVDA next')", "MSFT"),
        ("company_of('nothing here')", "NULL"),
        ("company_of(NULL)", "NULL"),
        ("company_of(extract_cashtags('Loving $XYZ and $tsla'))", "TSLA"),
        ("company_of(extract_hashtags('#cybertruck'))", "TSLA"),
        ("company_of(make_array('nope', '#Netflix'))", "NFLX"),
        ("company_of(make_array('nope'))", "NULL"),
        ("company_of(extract_cashtags(''))", "NULL"),
    ];
    assert_values(&ctx, &cases).await;
}

#[tokio::test]
async fn geo_functions_in_sql() {
    let ctx = context();
    let manhattan = "[-74.026675, 40.683935, -73.910408, 40.877483]";
    let cases = [
        (
            format!("bbox_centroid({manhattan})"),
            "{lon: -73.9685415, lat: 40.780709}",
        ),
        (format!("bbox_centroid({manhattan})['lat']"), "40.780709"),
        (
            "bbox_centroid([177, -19, -179, -16])".into(),
            "{lon: 179.0, lat: -17.5}",
        ),
        ("bbox_centroid([1, 2, 3])".into(), "NULL"),
        ("bbox_centroid(NULL)".into(), "NULL"),
        (
            "bbox_centroid(arrow_cast([0, 0, 2, 4], 'LargeList(Float32)'))".into(),
            "{lon: 1.0, lat: 2.0}",
        ),
        (
            "bbox_centroid(arrow_cast([0, 0, 2, 4], 'FixedSizeList(4, Int32)'))".into(),
            "{lon: 1.0, lat: 2.0}",
        ),
        (format!("point_in_bbox(-73.99596, 40.74118, {manhattan})"), "true"),
        (format!("point_in_bbox(0, 0, {manhattan})"), "false"),
        (format!("point_in_bbox(NULL, 0, {manhattan})"), "NULL"),
        ("point_in_bbox(0, 95, [-1, -1, 1, 1])".into(), "NULL"),
        (
            "round(haversine_km(-73.99596, 40.74118, -0.1278, 51.5074), 2)".into(),
            "5567.59",
        ),
        ("haversine_km(0, 0, 0, 0)".into(), "0.0"),
        ("haversine_km(0, 91, 0, 0)".into(), "NULL"),
        ("haversine_km(0, NULL, 0, 0)".into(), "NULL"),
    ];
    assert_values(&ctx, &cases).await;
}

/// Columns typed as the decoder and Parquet readers make them: Utf8View and LargeUtf8 text, and
/// a bbox list whose item field is called `element`.
#[tokio::test]
async fn functions_read_columns_of_every_string_and_list_type() {
    let ctx = context();
    let texts = [Some("RT @a: $AAPL #Up https://t.co/x 😀 great"), None, Some("")];
    let mut boxes = ListBuilder::new(Float64Builder::new()).with_field(Arc::new(Field::new(
        "element",
        DataType::Float64,
        true,
    )));
    for bbox in [Some([-1.0, -1.0, 1.0, 1.0]), None, Some([10.0, 10.0, 5.0, 5.0])] {
        if let Some(bbox) = bbox {
            boxes.values().append_slice(&bbox);
        }
        boxes.append(bbox.is_some());
    }
    register(
        &ctx,
        "posts",
        vec![
            ("utf8", Arc::new(StringArray::from(texts.to_vec()))),
            ("view", Arc::new(StringViewArray::from(texts.to_vec()))),
            ("large", Arc::new(LargeStringArray::from(texts.to_vec()))),
            (
                "lon",
                Arc::new(Float64Array::from(vec![Some(0.5), Some(0.0), None])),
            ),
            ("bbox", Arc::new(boxes.finish())),
        ],
    );
    let functions = [
        "clean_text",
        "extract_hashtags",
        "extract_cashtags",
        "extract_mentions",
        "extract_urls",
        "sentiment",
        "detect_lang",
        "company_of",
    ];
    for function in functions {
        let sql = format!("SELECT {function}(utf8), {function}(view), {function}(large) FROM posts");
        let rows = rows(&ctx, &sql).await;
        assert_eq!(rows.len(), 3);
        for row in &rows {
            assert!(row.iter().all(|cell| cell == &row[0]), "{function}: {row:?}");
        }
        assert_eq!(rows[1][0], "NULL", "{function} of NULL");
    }
    assert_eq!(
        rows(&ctx, "SELECT clean_text(view), extract_urls(large) FROM posts").await[0],
        ["$AAPL #Up 😀 great", "[https://t.co/x]"]
    );
    let geo = rows(
        &ctx,
        "SELECT bbox_centroid(bbox), point_in_bbox(lon, 0.5, bbox) FROM posts",
    )
    .await;
    assert_eq!(
        geo,
        [
            ["{lon: 0.0, lat: 0.0}", "true"],
            ["NULL", "NULL"],
            ["NULL", "NULL"]
        ]
    );
}

#[tokio::test]
async fn wrong_arguments_are_plan_errors() {
    let ctx = context();
    for (sql, message) in [
        (
            "SELECT clean_text(1)",
            "clean_text: argument 1 must be a string, got Int64",
        ),
        (
            "SELECT haversine_km(1, 2, 3)",
            "haversine_km takes 4 argument(s), got 3",
        ),
        (
            "SELECT bbox_centroid('x')",
            "bbox_centroid: argument 1 must be a list of numbers",
        ),
        (
            "SELECT company_of(make_array(1, 2))",
            "company_of: argument 1 must be a string or a list",
        ),
        (
            "SELECT pluck(make_array(1, 2), 'id')",
            "pluck: argument 1 must be a list of structs",
        ),
        (
            "SELECT pluck([named_struct('id', 'a')], 'name')",
            "pluck: the elements have no field `name` (they have id)",
        ),
        (
            "SELECT find_by([named_struct('id', 'a')], concat('i', 'd'), 'a')",
            "find_by: argument 2 must be a constant field name",
        ),
    ] {
        let error = match ctx.sql(sql).await {
            Ok(frame) => frame.collect().await.unwrap_err(),
            Err(error) => error,
        };
        assert!(error.to_string().contains(message), "{sql}: {error}");
    }
}

/// X's expansions as arrow-json decodes them: lists of structs, some NULL or empty.
#[tokio::test]
async fn nested_functions_read_lists_of_structs_in_sql() {
    let ctx = context();
    ctx.sql(
        "CREATE TABLE messages AS SELECT * FROM (VALUES \
           (1, [named_struct('id', 'u1', 'name', 'Ann'), named_struct('id', 'u2', 'name', 'Bo')], 'u2', \
               ['topic:earnings', 'Company:aapl', 'company:MSFT']), \
           (2, [named_struct('id', 'u1', 'name', 'Ann')], 'u9', ['company:']), \
           (3, [named_struct('id', 'u1', 'name', 'Ann')], NULL, []), \
           (4, NULL, 'u1', NULL) \
         ) AS t(n, users, author, tags)",
    )
    .await
    .unwrap()
    .collect()
    .await
    .unwrap();
    let sql = "SELECT pluck(users, 'name'), find_by(users, 'id', author)['name'], \
               tag_value(tags, 'company') FROM messages ORDER BY n";
    assert_eq!(
        rows(&ctx, sql).await,
        [
            ["[Ann, Bo]", "Bo", "aapl"],
            ["[Ann]", "NULL", "NULL"],
            ["[Ann]", "NULL", "NULL"],
            ["NULL", "NULL", "NULL"],
        ]
    );
    assert_values(
        &ctx,
        &[
            ("tag_value('company:TSLA', 'company')", "TSLA"),
            ("tag_value('companyTSLA', 'company')", "NULL"),
        ],
    )
    .await;
}

/// Random strings of the characters that the parsers branch on: every function must answer,
/// and clean_text must leave single spaces only.
#[tokio::test]
async fn odd_text_never_fails() {
    #[rustfmt::skip]
    const PIECES: &[&str] = &[
        "#", "＃", "@", "＠", "$", "&", "&#", "&#x", ";", "amp;", "lt;", "RT ", "rt", "http://", "https://",
        "www.", "t.co/", "(", ")", "]", ".", ":", "_", "-", "'", "a", "Z", "é", "\u{301}", "0", "9", "x", "F",
        "日本", "カ", "한", "مرحبا", "שלום", "हि\u{94d}", "ภา", "Σ", "İ", "ǅ", "😀", "❤\u{fe0f}",
        "1\u{fe0f}\u{20e3}",
        "\u{200d}", "\u{200b}", " ", "  ", "\t", "\n", "\u{3000}", "\u{a0}", "\u{1c}", "\u{0}", "\u{10ffff}",
        "good", "not", "but", "kind of", "!!", "??", ":)",
    ];
    let mut rng = Rng::new(3);
    let texts: Vec<String> = (0..5000)
        .map(|_| (0..rng.below(12)).map(|_| *rng.pick(PIECES)).collect())
        .collect();
    let ctx = context();
    register(&ctx, "odd", vec![("text", Arc::new(StringArray::from(texts)))]);
    let all = "clean_text(text), extract_hashtags(text), extract_cashtags(text), extract_mentions(text), \
               extract_urls(text), sentiment(text), sentiment_label(sentiment(text)), detect_lang(text), \
               company_of(text), company_of(extract_hashtags(text))";
    let rows = rows(&ctx, &format!("SELECT {all} FROM odd")).await;
    assert_eq!(rows.len(), 5000);
    for row in rows {
        let cleaned = &row[0];
        assert!(
            !cleaned.contains("  ") && cleaned.trim() == cleaned,
            "{cleaned:?}"
        );
    }
}
