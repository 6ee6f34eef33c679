//! The `tweetlake` command line: parses arguments and hands each subcommand to `commands`.

mod commands;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Stream X (Twitter) posts through SQL models into Delta Lake, exactly once.
#[derive(Parser)]
#[command(name = "tweetlake", version, about, long_about = None)]
struct Cli {
    /// Configuration file [default: ./tweetlake.toml when it exists, else built-in defaults].
    #[arg(short, long, global = true, env = "TWEETLAKE_CONFIG")]
    config: Option<PathBuf>,

    /// Log filter, e.g. `debug` or `tweetlake=debug,deltalake=info` (RUST_LOG works too)
    /// [default: tweetlake's info lines and warnings; `test`: warnings only].
    #[arg(long, global = true)]
    log: Option<String>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the bundled sample posts through the built-in models into a local lake and print a
    /// gold table. Needs no server.
    Demo {
        /// The lake directory to write.
        #[arg(long, default_value = "./lake")]
        lake: PathBuf,
        /// Use the models in this directory instead of the built-in ones.
        #[arg(long)]
        sql: Option<PathBuf>,
    },
    /// Run the pipeline: continuously, or with --once until the data present at start is done.
    Run {
        /// Available-now: snapshot the end offsets, process up to them in bounded batches, exit 0.
        #[arg(long)]
        once: bool,
    },
    /// Print the model DAG and each model's output schema, type-checking every model.
    Plan,
    /// Run every model over fixture posts (no Kafka, no S3) and check the expectations in the
    /// tests/ directory next to the models; non-zero exit when one fails.
    Test,
    /// Write an editable project (tweetlake.toml, sql/, queries/, sample posts) into DIR.
    Init {
        /// Target directory.
        #[arg(default_value = ".")]
        dir: PathBuf,
        /// Overwrite files that already exist.
        #[arg(long)]
        force: bool,
    },
    /// Produce X stream messages (to a file or stdout; Kafka comes with the Kafka source).
    Produce {
        #[command(subcommand)]
        what: Produce,
    },
    /// Measure decode, SQL, Delta write and end-to-end throughput on generated posts.
    Bench {
        /// Number of synthetic posts.
        #[arg(long, default_value_t = 1_000_000)]
        records: usize,
        /// Records per micro-batch.
        #[arg(long, default_value_t = 100_000)]
        batch: usize,
        /// Where to write the benchmark lakes [default: a temporary directory].
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Benchmark Kafka -> SQL -> Delta against this broker instead (host:port), beside the
        /// raw consume rate of the same topic.
        #[arg(long)]
        kafka: Option<String>,
        /// Partitions of the benchmark topic (with --kafka).
        #[arg(long, default_value_t = 6, requires = "kafka")]
        partitions: i32,
        /// Also run end to end into this S3 lake, e.g. s3://bucket/prefix (with --kafka;
        /// storage options come from the AWS_* environment).
        #[arg(long, requires = "kafka")]
        s3_lake: Option<String>,
    },
}

#[derive(Subcommand)]
enum Produce {
    /// Generate realistic synthetic X v2 stream messages, deterministic for a seed.
    Synth {
        /// Number of messages.
        #[arg(long, default_value_t = 1000)]
        count: usize,
        /// Seed of the generator: the same seed gives the same messages.
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Share of malformed records (bad JSON, wrong types), 0.0 to 1.0.
        #[arg(long, default_value_t = 0.0)]
        malformed_share: f64,
        /// Messages per second [default: as fast as possible].
        #[arg(long)]
        rate: Option<f64>,
        #[command(flatten)]
        target: TargetArgs,
    },
    /// Replay a JSONL(.gz) file of stream messages, one message per line.
    Replay {
        /// The file to replay.
        file: PathBuf,
        /// Messages per second [default: as fast as possible].
        #[arg(long)]
        rate: Option<f64>,
        /// Start over after the last line, until interrupted.
        #[arg(long = "loop")]
        repeat: bool,
        #[command(flatten)]
        target: TargetArgs,
    },
}

/// Where produced messages go: stdout (default), a file, or Kafka.
#[derive(clap::Args)]
struct TargetArgs {
    /// Write JSONL to this file instead of stdout.
    #[arg(short, long, conflicts_with = "kafka")]
    output: Option<PathBuf>,
    /// Publish to Kafka: the config's source.bootstrap_servers and source.topic (key = post id).
    #[arg(long)]
    kafka: bool,
    /// Override source.bootstrap_servers (with --kafka).
    #[arg(long, requires = "kafka")]
    bootstrap_servers: Option<String>,
    /// Override source.topic (with --kafka).
    #[arg(long, requires = "kafka")]
    topic: Option<String>,
}

/// Warnings, delta-rs' noisy merge and statistics warnings excepted.
const QUIET_LOG: &str = "warn,deltalake_core::writer::stats=error,deltalake_core::operations::merge=error";

fn main() -> ExitCode {
    let cli = Cli::parse();
    // `test` prints its own report; the per-batch lines of its runs would only bury it.
    let default_log = match cli.command {
        Command::Test => QUIET_LOG.to_string(),
        _ => format!("{QUIET_LOG},tweetlake=info"),
    };
    commands::init_logging(cli.log.as_deref().unwrap_or(&default_log));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let result = runtime.block_on(async {
        match cli.command {
            Command::Demo { lake, sql } => commands::demo(&lake, sql.as_deref()).await,
            Command::Run { once } => commands::run(cli.config.as_deref(), once).await,
            Command::Plan => commands::plan(cli.config.as_deref()).await,
            Command::Test => commands::test(cli.config.as_deref()).await,
            Command::Init { dir, force } => commands::init(&dir, force),
            Command::Produce { what } => produce(what, cli.config.as_deref()),
            Command::Bench {
                records,
                batch,
                dir,
                kafka: None,
                ..
            } => commands::bench(records, batch, dir.as_deref()).await,
            Command::Bench {
                records,
                batch,
                dir,
                kafka: Some(bootstrap),
                partitions,
                s3_lake,
            } => {
                let kafka = commands::KafkaBench {
                    bootstrap: &bootstrap,
                    partitions,
                    s3_lake: s3_lake.as_deref(),
                };
                commands::bench_kafka(records, batch, kafka, dir.as_deref()).await
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {}", commands::one_line(&error));
            ExitCode::FAILURE
        }
    }
}

fn produce(what: Produce, config_path: Option<&std::path::Path>) -> anyhow::Result<()> {
    use commands::Pace;
    let target_config = |target: &TargetArgs| -> anyhow::Result<Option<tweetlake::config::Config>> {
        if !target.kafka {
            return Ok(None);
        }
        let mut config = commands::load_config(config_path)?;
        if let Some(bootstrap) = &target.bootstrap_servers {
            config.source.bootstrap_servers = bootstrap.clone();
        }
        if let Some(topic) = &target.topic {
            config.source.topic = topic.clone();
        }
        Ok(Some(config))
    };
    match what {
        Produce::Synth {
            count,
            seed,
            malformed_share,
            rate,
            target,
        } => {
            let config = target_config(&target)?;
            let options = tweetlake::produce::synth::SynthOptions {
                seed,
                malformed_share,
                ..Default::default()
            };
            commands::synth(count, options, target_of(&target, &config), rate)
        }
        Produce::Replay {
            file,
            rate,
            repeat,
            target,
        } => {
            let config = target_config(&target)?;
            commands::replay(&file, target_of(&target, &config), Pace { rate, repeat })
        }
    }
}

fn target_of<'a>(
    args: &'a TargetArgs,
    config: &'a Option<tweetlake::config::Config>,
) -> commands::Target<'a> {
    match (config, &args.output) {
        (Some(config), _) => commands::Target::Kafka(config),
        (None, Some(path)) => commands::Target::File(path.as_path()),
        (None, None) => commands::Target::Stdout,
    }
}
