use std::path::Path;

use deltalake::datafusion::prelude::SessionContext;

use tweetlake::config::Config;
use tweetlake::embedded;
use tweetlake::pipeline::RunMode;
use tweetlake::source::FileSource;

use tweetlake::stdout::stdout;

use super::run::{run_pipeline, FINISH_BATCH};
use super::{print_query, stop::stop_on_signal};

const DEMO_QUERY: &str =
    "SELECT company, sum(posts) AS posts, sum(likes) AS likes, sum(retweets) AS retweets \
     FROM gold.company_minute GROUP BY company ORDER BY posts DESC, company";

/// The embedded sample through the same pipeline as production, into a local lake.
pub async fn demo(lake: &Path, sql: Option<&Path>) -> anyhow::Result<()> {
    let mut config = Config::default();
    config.lake.uri = lake.display().to_string();
    config.pipeline.name = "demo".into();
    config.pipeline.progress_log = lake.join("_tweetlake/demo/progress.ndjson").display().to_string();
    if let Some(dir) = sql {
        config.pipeline.sql_dir = dir.to_path_buf();
    }
    let source = FileSource::from_bytes(embedded::SAMPLE_POSTS_NAME, embedded::SAMPLE_POSTS);
    let stop = stop_on_signal(FINISH_BATCH)?;
    let summary = run_pipeline(&config, source, RunMode::Once, stop).await?;
    let mut out = stdout();
    writeln!(
        out,
        "demo: {} records in {} batch(es) this run, {} dead letters; lake at {}",
        summary.input_rows,
        summary.batches,
        summary.dead_letters,
        lake.display()
    )?;
    let lake = config.lake.open()?;
    let ctx = SessionContext::new();
    for table in ["bronze", "silver.tweets", "gold.company_minute", "dlq"] {
        lake.register_table(&ctx, table).await?;
    }
    writeln!(out, "\nrows per table:")?;
    print_query(
        &ctx,
        "SELECT 'bronze' AS table_name, count(*) AS row_count FROM bronze UNION ALL \
         SELECT 'silver.tweets', count(*) FROM silver.tweets UNION ALL \
         SELECT 'dlq', count(*) FROM dlq ORDER BY table_name",
    )
    .await?;
    writeln!(out, "\ngold.company_minute, per company:")?;
    print_query(&ctx, DEMO_QUERY).await?;
    Ok(())
}
