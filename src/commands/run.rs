use std::path::Path;

use anyhow::Context;
use tokio::sync::watch;

use deltalake::arrow::datatypes::{DataType, Schema};
use tweetlake::config::Config;
use tweetlake::decode::{bronze_schema, dead_letter_schema};
use tweetlake::pipeline::{RunMode, RunSummary};
use tweetlake::source::{FileSource, KafkaSource, Source, SourceKind};
use tweetlake::transform::{Materialization, BRONZE};

use super::{load_config, load_models};

pub async fn run(config_path: Option<&Path>, mode: RunMode) -> anyhow::Result<()> {
    let config = load_config(config_path)?;
    let summary = match config.source.kind {
        SourceKind::File => {
            let source = FileSource::open(&config.source.file.path)
                .with_context(|| "source.path (set it in tweetlake.toml or TWEETLAKE_SOURCE__PATH)")?;
            run_pipeline(&config, source, mode).await?
        }
        SourceKind::Kafka => {
            let client_id = format!("tweetlake-{}", config.pipeline.name);
            let source = KafkaSource::connect(
                &config.source.kafka,
                config.pipeline.max_bytes_per_batch,
                &client_id,
            )
            .await?;
            run_pipeline(&config, source, mode).await?
        }
    };
    tracing::info!(
        "done: {} batches, {} records, {} dead letters",
        summary.batches,
        summary.input_rows,
        summary.dead_letters
    );
    Ok(())
}

/// Runs `source` through the configured models; Ctrl-C finishes the batch in progress.
pub async fn run_pipeline<S: Source>(
    config: &Config,
    source: S,
    mode: RunMode,
) -> anyhow::Result<RunSummary> {
    let models = load_models(config)?;
    tracing::info!(
        "pipeline `{}`: {} -> {}",
        config.pipeline.name,
        source.describe(),
        config.lake.uri
    );
    let mut pipeline = config.build_pipeline(source, models)?;
    let (stop, stopped) = watch::channel(false);
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            tracing::warn!("stopping after the current batch (Ctrl-C again to abort)");
            let _ = stop.send(true);
            if tokio::signal::ctrl_c().await.is_ok() {
                std::process::exit(130);
            }
        }
    });
    Ok(pipeline.run(mode, stopped).await?)
}

pub async fn plan(config_path: Option<&Path>) -> anyhow::Result<()> {
    let config = load_config(config_path)?;
    let models = load_models(&config)?;
    let schemas = models.plan(bronze_schema()).await?;
    println!(
        "{BRONZE}  (built-in: each batch's decoded posts with source metadata; partitioned by _ingest_date)"
    );
    print_columns(&bronze_schema());
    println!(
        "{}  (built-in: records that failed to decode, with the reason; partitioned by _ingest_date)",
        config.dlq.table
    );
    print_columns(&dead_letter_schema());
    for (model, schema) in models.models().iter().zip(schemas) {
        let how = match &model.materialization {
            Materialization::Append => "append".to_string(),
            Materialization::Merge { keys, .. } => format!("merge on {}", keys.join(", ")),
        };
        let partitions = if model.partition_by.is_empty() {
            String::new()
        } else {
            format!(", partitioned by {}", model.partition_by.join(", "))
        };
        println!(
            "{} <- {}  ({how}{partitions})  {}",
            model.name,
            model.inputs.join(", "),
            model.origin
        );
        print_columns(&schema);
    }
    Ok(())
}

/// One line per column; a struct shows its fields' names, as the X message's are many.
fn print_columns(schema: &Schema) {
    let short = |data_type: &DataType| match data_type {
        DataType::Struct(fields) => {
            let names: Vec<&str> = fields.iter().map(|f| f.name().as_str()).collect();
            format!("Struct{{{}}}", names.join(", "))
        }
        DataType::List(item) if matches!(item.data_type(), DataType::Struct(_)) => "List(Struct)".to_string(),
        other => other.to_string(),
    };
    for field in schema.fields() {
        println!("    {}: {}", field.name(), short(field.data_type()));
    }
    println!();
}
