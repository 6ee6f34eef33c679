//! The pipeline against real files and a real Delta lake on disk, read back through
//! delta-rs + DataFusion.

mod common;

use std::path::PathBuf;

use common::{
    decode_whole, fixture_lines, lake_session, strings, synth_bad_count, synth_good_count, Project,
};
use deltalake::arrow::array::RecordBatch;
use deltalake::arrow::compute::concat_batches;
use deltalake::arrow::datatypes::DataType;
use deltalake::datafusion::prelude::SessionContext;
use tokio::sync::watch;
use tweetlake::config::Config;
use tweetlake::decode::{BatchContext, MessageDecoder};
use tweetlake::embedded;
use tweetlake::lake::Lake;
use tweetlake::pipeline::{RunMode, RunSummary};
use tweetlake::produce::synth::{self, SynthOptions};
use tweetlake::source::{FileSource, OffsetRange, Positions, ReadLimits, Source, SourceBatch, SourceError};
use tweetlake::transform::functions::CompanyMap;
use tweetlake::transform::{Materialization, ModelSet};

async fn run_once<S: Source>(config: &Config, source: S) -> RunSummary {
    let models = embedded::models(&[config.dlq.table.as_str()]).unwrap();
    let mut pipeline = config.build_pipeline(source, models).unwrap();
    let (_stop, stopped) = watch::channel(false);
    pipeline.run(RunMode::Once, stopped).await.unwrap()
}

fn project_with(posts: &[u8], pipeline: &str) -> (Project, Config) {
    let project = Project::new();
    project.write_posts(posts);
    project.write_config(pipeline);
    let config = project.config();
    (project, config)
}

#[tokio::test]
async fn fixtures_decode_and_every_bad_record_lands_in_the_dead_letter_table() {
    let (project, config) = project_with(&fixture_lines(), "");
    let summary = run_once(&config, FileSource::open(&project.posts_path()).unwrap()).await;
    // 12 good lines, 8 bad lines of which one is blank (a keep-alive, not a record).
    assert_eq!(summary.input_rows, 19);
    assert_eq!(summary.dead_letters, 7);

    assert_eq!(project.count("SELECT count(*) FROM bronze").await, 12);
    assert_eq!(
        project.count("SELECT count(DISTINCT _offset) FROM bronze").await,
        12
    );
    assert_eq!(
        project
            .count("SELECT count(*) FROM bronze WHERE _raw LIKE '{%'")
            .await,
        12
    );
    // One post id is delivered twice: silver keeps it once.
    assert_eq!(project.count("SELECT count(*) FROM silver.tweets").await, 11);
    assert_eq!(
        project
            .count("SELECT count(DISTINCT id) FROM silver.tweets")
            .await,
        11
    );

    let reasons = strings(
        &project
            .query("SELECT concat(CAST(_offset AS VARCHAR), ' ', error) FROM dlq ORDER BY _offset")
            .await,
    );
    let expected_prefixes = [
        "12 invalid JSON",
        "13 invalid JSON",
        "14 wrong type",
        "15 wrong type",
        "16 wrong type",
        "18 no `data` post",
        "19 wrong type",
    ];
    assert_eq!(reasons.len(), expected_prefixes.len(), "{reasons:#?}");
    for (reason, prefix) in reasons.iter().zip(expected_prefixes) {
        assert!(
            reason.starts_with(prefix),
            "{reason:?} should start with {prefix:?}"
        );
    }
    // The raw bytes are kept exactly.
    let raw = strings(&project.query("SELECT raw_text FROM dlq WHERE _offset = 13").await);
    assert_eq!(raw, ["not json at all"]);
}

#[tokio::test]
async fn silver_flattens_fixture_posts() {
    let (project, config) = project_with(&fixture_lines(), "");
    run_once(&config, FileSource::open(&project.posts_path()).unwrap()).await;
    let row = |id: &str, column: &str| {
        format!("SELECT CAST({column} AS VARCHAR) FROM silver.tweets WHERE id = '18600000000000000{id}'")
    };
    let value = |batches: Vec<RecordBatch>| strings(&batches).pop().unwrap_or_default();
    assert_eq!(value(project.query(&row("02", "geo_source")).await), "place");
    assert_eq!(value(project.query(&row("03", "geo_source")).await), "point");
    assert_eq!(value(project.query(&row("03", "lon")).await), "-122.0096");
    assert_eq!(value(project.query(&row("01", "company")).await), "AAPL");
    assert_eq!(value(project.query(&row("05", "is_retweet")).await), "true");
    assert_eq!(value(project.query(&row("06", "is_quote")).await), "true");
    assert_eq!(value(project.query(&row("09", "is_reply")).await), "true");
    assert_eq!(value(project.query(&row("07", "is_long")).await), "true");
    assert_eq!(
        value(project.query(&row("01", "author_username")).await),
        "danaquant"
    );
    assert_eq!(value(project.query(&row("02", "country_code")).await), "GB");
    assert_eq!(value(project.query(&row("02", "lon")).await), "-0.148936");
    assert_eq!(
        value(project.query(&row("01", "hashtags")).await),
        "[apple, tech]"
    );
    assert_eq!(value(project.query(&row("07", "company")).await), "NVDA");
    assert_eq!(
        value(project.query(&row("09", "clean_text")).await),
        "is $AAPL overpriced here?? & what about services > hardware"
    );
    assert_eq!(
        value(project.query(&row("02", "sentiment_label")).await),
        "negative"
    );
    assert_eq!(value(project.query(&row("02", "author_tier")).await), "mega");
    assert_eq!(value(project.query(&row("08", "lang")).await), "ar");
    assert_eq!(value(project.query(&row("06", "geo_source")).await), "none");
    assert_eq!(value(project.query(&row("11", "author_tier")).await), "");
}

/// A file source whose file grows while the run is going on.
struct GrowingSource {
    inner: FileSource,
    project_posts: std::path::PathBuf,
    extra: Option<Vec<u8>>,
}

impl Source for GrowingSource {
    fn describe(&self) -> String {
        self.inner.describe()
    }
    async fn initial_positions(&mut self) -> Result<Positions, SourceError> {
        self.inner.initial_positions().await
    }
    async fn end_positions(&mut self) -> Result<Positions, SourceError> {
        self.inner.end_positions().await
    }
    async fn read_next(&mut self, from: &Positions, limits: &ReadLimits) -> Result<SourceBatch, SourceError> {
        if let Some(extra) = self.extra.take() {
            use std::io::Write;
            let mut file = std::fs::OpenOptions::new()
                .append(true)
                .open(&self.project_posts)
                .unwrap();
            file.write_all(&extra).unwrap();
        }
        self.inner.read_next(from, limits).await
    }
    async fn read_ranges(&mut self, ranges: &[OffsetRange]) -> Result<RecordBatch, SourceError> {
        self.inner.read_ranges(ranges).await
    }
}

#[tokio::test]
async fn once_stops_at_the_snapshot_taken_at_start() {
    let first = synth::jsonl(SynthOptions::default(), 300);
    let more = synth::jsonl(
        SynthOptions {
            seed: 7,
            ..Default::default()
        },
        200,
    );
    let (project, config) = project_with(&first, "max_records_per_batch = 64");
    let source = GrowingSource {
        inner: FileSource::open(&project.posts_path()).unwrap(),
        project_posts: project.posts_path(),
        extra: Some(more.clone()),
    };
    let summary = run_once(&config, source).await;
    assert_eq!(
        summary.input_rows, 300,
        "records appended after the snapshot wait for the next run"
    );
    assert_eq!(summary.batches, 5);
    assert_eq!(project.count("SELECT count(*) FROM bronze").await, 300);

    let summary = run_once(&config, FileSource::open(&project.posts_path()).unwrap()).await;
    assert_eq!(summary.input_rows, 200);
    assert_eq!(project.count("SELECT count(*) FROM bronze").await, 500);
    assert_eq!(
        project.count("SELECT count(DISTINCT _offset) FROM bronze").await,
        500
    );

    let summary = run_once(&config, FileSource::open(&project.posts_path()).unwrap()).await;
    assert_eq!(summary, RunSummary::default(), "nothing new: nothing runs");
}

/// A one-model set: `silver.posts` selecting `column` from each post.
fn posts_model(column: &str) -> ModelSet {
    let sql = format!("SELECT data['id'] AS id, {column} AS n FROM bronze");
    let file = (
        PathBuf::from("silver/posts.sql"),
        "silver/posts.sql".to_string(),
        sql,
    );
    ModelSet::from_sources(vec![file], CompanyMap::default(), &["dlq"]).unwrap()
}

#[tokio::test]
async fn a_model_failing_while_bronze_is_written_leaves_each_post_once_after_the_fix() {
    let posts = synth::jsonl(SynthOptions::default(), 200);
    let (project, config) = project_with(&posts, "max_records_per_batch = 80");
    let (_stop, stopped) = watch::channel(false);

    // Bronze's write starts before the models run; the cast fails on the first post's text.
    let broken = posts_model("CAST(data['text'] AS INT)");
    let source = FileSource::open(&project.posts_path()).unwrap();
    let mut pipeline = config.build_pipeline(source, broken).unwrap();
    let error = pipeline.run(RunMode::Once, stopped.clone()).await.unwrap_err();
    assert!(error.to_string().starts_with("silver/posts.sql: "), "{error}");
    assert_eq!(project.count("SELECT count(*) FROM bronze").await, 80);
    drop(pipeline);

    let fixed = posts_model("length(data['text'])");
    let source = FileSource::open(&project.posts_path()).unwrap();
    let mut pipeline = config.build_pipeline(source, fixed).unwrap();
    let summary = pipeline.run(RunMode::Once, stopped).await.unwrap();
    assert_eq!(summary.input_rows, 200, "the failed batch is re-run");
    assert_eq!(project.count("SELECT count(*) FROM bronze").await, 200);
    assert_eq!(
        project.count("SELECT count(DISTINCT _offset) FROM bronze").await,
        200
    );
    let ctx = SessionContext::new();
    let lake = Lake::new(&project.lake_uri(), &Default::default()).unwrap();
    lake.register_table(&ctx, "silver.posts").await.unwrap();
    let posts = "SELECT concat(count(*), ' rows, ', count(DISTINCT id), ' ids') FROM silver.posts";
    let counts = ctx.sql(posts).await.unwrap().collect().await.unwrap();
    assert_eq!(strings(&counts), ["200 rows, 200 ids"]);
}

#[tokio::test]
async fn merge_models_equal_a_full_recompute_after_many_batches() {
    let posts = synth::jsonl(
        SynthOptions {
            malformed_share: 0.05,
            ..Default::default()
        },
        1500,
    );
    let (project, config) = project_with(&posts, "max_records_per_batch = 97");
    let summary = run_once(&config, FileSource::open(&project.posts_path()).unwrap()).await;
    assert_eq!(summary.batches, 16);
    assert_eq!(
        project.count("SELECT count(*) FROM silver.tweets").await,
        synth_good_count(&posts)
    );
    assert_eq!(
        project.count("SELECT count(*) FROM dlq").await,
        synth_bad_count(&posts)
    );

    let ctx = lake_session(&project.lake_uri()).await;
    let models = embedded::models(&["dlq"]).unwrap();
    let merged: Vec<_> = models
        .models()
        .iter()
        .filter(|m| matches!(m.materialization, Materialization::Merge { .. }))
        .collect();
    assert_eq!(merged.len(), 4, "every gold model merges");
    for model in merged {
        assert_equals_recompute(&ctx, &model.name, &model.sql).await;
    }
    assert!(project.count("SELECT count(*) FROM gold.company_minute").await > 10);
    assert_eq!(
        project.count("SELECT sum(posts) FROM gold.hashtag_hour").await,
        project
            .count("SELECT count(*) FROM (SELECT unnest(hashtags) FROM silver.tweets)")
            .await
    );
    // Authors post in many batches: the merged set must not count one twice.
    let authors = "SELECT count(*) FROM gold.company_minute WHERE distinct_authors <> cardinality(authors) \
                   OR distinct_authors > posts";
    assert_eq!(project.count(authors).await, 0);
}

/// Asserts the lake's `table` holds exactly the rows of its model's SELECT run over the whole
/// silver table. Lists (the author sets) compare sorted, as merges union them in another order.
async fn assert_equals_recompute(ctx: &SessionContext, table: &str, sql: &str) {
    let schema = ctx.table(table).await.unwrap().schema().as_arrow().clone();
    let columns: Vec<String> = schema
        .fields()
        .iter()
        .map(|f| match f.data_type() {
            DataType::List(_) => format!("array_sort({0}) AS {0}", f.name()),
            _ => f.name().clone(),
        })
        .collect();
    let columns = columns.join(", ");
    let stored = format!("SELECT {columns} FROM {table}");
    let recomputed = format!("SELECT {columns} FROM ({sql}\n)");
    for (a, b) in [(&stored, &recomputed), (&recomputed, &stored)] {
        let differences = format!("SELECT count(*) FROM ({a} EXCEPT ALL {b})");
        let batches = ctx.sql(&differences).await.unwrap().collect().await.unwrap();
        assert_eq!(
            strings(&batches),
            ["0"],
            "{table} differs from a recompute over silver"
        );
    }
    let rows = ctx.sql(&format!("SELECT count(*) FROM {table}")).await.unwrap();
    assert!(
        strings(&rows.collect().await.unwrap())[0] != "0",
        "{table} is empty"
    );
}

#[tokio::test]
async fn rereading_the_same_ranges_returns_the_same_records() {
    let posts = synth::jsonl(SynthOptions::default(), 50);
    let mut with_blank = posts.clone();
    with_blank.extend_from_slice(b"\n\n");
    with_blank.extend(synth::jsonl(
        SynthOptions {
            seed: 3,
            ..Default::default()
        },
        10,
    ));
    let project = Project::new();
    let gz = project.path("posts.jsonl.gz");
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut encoder, &with_blank).unwrap();
    std::fs::write(&gz, encoder.finish().unwrap()).unwrap();
    std::fs::write(project.posts_path(), &with_blank).unwrap();

    for path in [project.posts_path(), gz] {
        let mut source = FileSource::open(&path).unwrap();
        let start = source.initial_positions().await.unwrap();
        let limits = ReadLimits {
            max_records: 30,
            max_bytes: usize::MAX,
            deadline: None,
            until: None,
        };
        let first = source.read_next(&start, &limits).await.unwrap();
        let next: Positions = first
            .ranges
            .iter()
            .map(|r| (r.topic_partition(), r.end))
            .collect();
        let second = source.read_next(&next, &limits).await.unwrap();
        assert_eq!(first.records.num_rows(), 30);
        assert_eq!(
            second.records.num_rows(),
            30,
            "blank lines are skipped, not counted as records"
        );
        assert_eq!(
            second.ranges[0].end, 62,
            "offsets are line numbers, blank lines included"
        );

        let mut again = FileSource::open(&path).unwrap();
        assert_eq!(again.read_ranges(&second.ranges).await.unwrap(), second.records);
        assert_eq!(again.read_ranges(&first.ranges).await.unwrap(), first.records);
        let end = again.end_positions().await.unwrap();
        assert_eq!(end.values().copied().collect::<Vec<_>>(), [62]);
    }
}

#[tokio::test]
async fn parallel_decode_equals_single_threaded_decode() {
    let mut posts = synth::jsonl(
        SynthOptions {
            malformed_share: 0.05,
            seed: 3,
            ..Default::default()
        },
        20_000,
    );
    posts.extend(fixture_lines());
    let raw = FileSource::from_bytes("posts.jsonl", posts)
        .read_all()
        .await
        .unwrap();
    let decoder = MessageDecoder::new(1 << 20);
    let ctx = BatchContext {
        batch_id: 7,
        planned_at_micros: 1,
    };
    let single = decoder.decode(&raw, ctx).unwrap();
    let parallel = decoder.decode_parallel(&raw, ctx).unwrap();
    assert!(single.dead_letters.num_rows() > 900, "the input has bad records");
    let schema = tweetlake::decode::bronze_schema();
    let joined = |parts: &[RecordBatch]| concat_batches(&schema, parts).unwrap();
    assert!(
        parallel.bronze.len() > 1,
        "the batch was decoded on several threads"
    );
    assert_eq!(joined(&parallel.bronze), joined(&single.bronze));
    assert_eq!(parallel.dead_letters, single.dead_letters);
}

#[tokio::test]
async fn decode_keeps_every_record_once_in_order_across_its_chunks() {
    let posts = synth::jsonl(
        SynthOptions {
            malformed_share: 0.05,
            seed: 4,
            ..Default::default()
        },
        20_000,
    );
    let decoded = decode_whole(posts).await;
    assert!(
        decoded.bronze.len() >= 3,
        "20k records span several decode chunks"
    );
    let offsets = |batch: &RecordBatch| -> Vec<i64> {
        let column = batch.column_by_name("_offset").unwrap();
        let values = column
            .as_any()
            .downcast_ref::<deltalake::arrow::array::Int64Array>()
            .unwrap();
        values.values().to_vec()
    };
    let good: Vec<i64> = decoded.bronze.iter().flat_map(offsets).collect();
    assert!(good.windows(2).all(|w| w[0] < w[1]), "bronze keeps input order");
    let mut every: Vec<i64> = good
        .iter()
        .copied()
        .chain(offsets(&decoded.dead_letters))
        .collect();
    every.sort_unstable();
    assert_eq!(every, (0..20_000).collect::<Vec<i64>>(), "each record lands once");
    assert!(decoded.dead_letters.num_rows() > 900, "the input has bad records");
}
