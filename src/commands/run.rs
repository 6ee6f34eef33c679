use std::path::Path;

use anyhow::Context;
use tokio::sync::watch;

use deltalake::arrow::datatypes::{DataType, Schema};
use tweetlake::config::Config;
use tweetlake::decode::{bronze_schema, dead_letter_schema};
use tweetlake::pipeline::{RunMode, RunSummary};
use tweetlake::source::{FileSource, KafkaSource, Source, SourceKind};
use tweetlake::stdout::{stdout, StdoutError};
use tweetlake::telemetry;
use tweetlake::transform::{Materialization, BRONZE};

use super::stop::stop_on_signal;
use super::{load_config, load_models};

pub async fn run(config_path: Option<&Path>, mode: RunMode) -> anyhow::Result<()> {
    let config = load_config(config_path)?;
    let stop = stop_on_signal(FINISH_BATCH)?;
    serve_metrics(&config).await?;
    let summary = match config.source.kind {
        SourceKind::File => {
            let source = FileSource::open(&config.source.file.path)
                .with_context(|| "source.path (set it in tweetlake.toml or TWEETLAKE_SOURCE__PATH)")?;
            run_pipeline(&config, source, mode, stop).await?
        }
        SourceKind::Kafka => {
            let client_id = format!("tweetlake-{}", config.pipeline.name);
            let source = KafkaSource::connect(
                &config.source.kafka,
                config.pipeline.max_bytes_per_batch,
                &client_id,
            )
            .await?;
            run_pipeline(&config, source, mode, stop).await?
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

/// What `run` and `demo` do on Ctrl-C or SIGTERM.
pub const FINISH_BATCH: &str = "stopping after the current batch";

/// Serves metrics and probes on `metrics.listen`, unless it is empty.
async fn serve_metrics(config: &Config) -> anyhow::Result<()> {
    let listen = config
        .metrics
        .listen_address()
        .map_err(|e| e.in_section("metrics"))?;
    if let Some(address) = listen {
        let ready_window = telemetry::ready_window(config.pipeline.trigger_interval);
        telemetry::serve(address, ready_window).await?;
    }
    Ok(())
}

/// Runs `source` through the configured models until `stop` turns true (which lets the batch in
/// progress finish) or, with `RunMode::Once`, the data present at start is done.
pub async fn run_pipeline<S: Source>(
    config: &Config,
    source: S,
    mode: RunMode,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<RunSummary> {
    let models = load_models(config)?;
    tracing::info!(
        "pipeline `{}`: {} -> {}",
        config.pipeline.name,
        source.describe(),
        config.lake.uri
    );
    let mut pipeline = config.build_pipeline(source, models)?;
    Ok(pipeline.run(mode, stop).await?)
}

pub async fn plan(config_path: Option<&Path>) -> anyhow::Result<()> {
    let config = load_config(config_path)?;
    let models = load_models(&config)?;
    let schemas = models.plan(bronze_schema()).await?;
    let mut out = stdout();
    writeln!(
        out,
        "{BRONZE}  (built-in: each batch's decoded posts with source metadata; partitioned by _ingest_date)"
    )?;
    print_columns(&bronze_schema())?;
    writeln!(
        out,
        "{}  (built-in: records that failed to decode, with the reason; partitioned by _ingest_date)",
        config.dlq.table
    )?;
    print_columns(&dead_letter_schema())?;
    for (model, schema) in models.models().iter().zip(schemas) {
        let how = match &model.materialization {
            Materialization::Append => "append".to_string(),
            Materialization::Merge { keys, .. } => format!("merge on {}", keys.join(", ")),
            Materialization::InsertNew { keys, window } => format!(
                "insert new {}{}",
                keys.join(", "),
                window
                    .as_ref()
                    .map_or(String::new(), |w| format!(" within {} {} days", w.column, w.days))
            ),
        };
        let partitions = if model.partition_by.is_empty() {
            String::new()
        } else {
            format!(", partitioned by {}", model.partition_by.join(", "))
        };
        writeln!(
            out,
            "{} <- {}  ({how}{partitions})  {}",
            model.name,
            model.inputs.join(", "),
            model.origin
        )?;
        print_columns(&schema)?;
    }
    Ok(())
}

/// One line per column; a struct shows its fields' names, as the X message's are many.
fn print_columns(schema: &Schema) -> Result<(), StdoutError> {
    let short = |data_type: &DataType| match data_type {
        DataType::Struct(fields) => {
            let names: Vec<&str> = fields.iter().map(|f| f.name().as_str()).collect();
            format!("Struct{{{}}}", names.join(", "))
        }
        DataType::List(item) if matches!(item.data_type(), DataType::Struct(_)) => "List(Struct)".to_string(),
        other => other.to_string(),
    };
    let mut out = stdout();
    for field in schema.fields() {
        writeln!(out, "    {}: {}", field.name(), short(field.data_type()))?;
    }
    writeln!(out)
}
