//! The `tweetlake` command line: parses arguments and hands each subcommand to `commands`.

// Results go through `tweetlake::stdout`: see there.
#![warn(clippy::print_stdout)]

mod commands;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tweetlake::config::Config;
use tweetlake::pipeline::RunMode;
use tweetlake::repl::Format;

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
    /// Query the lake with SQL: an interactive prompt, or one-shot with -e / -f.
    Sql {
        /// Run these statements (and meta-commands) and exit.
        #[arg(short, long, conflicts_with = "file")]
        execute: Option<String>,
        /// Run the statements (and meta-commands) in this file and exit.
        #[arg(short, long)]
        file: Option<PathBuf>,
        /// Result format: table, csv, json, ndjson or markdown [default: from --output's
        /// extension, else repl.format].
        #[arg(long)]
        format: Option<Format>,
        /// Write results to this file instead of stdout.
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// Compact, vacuum and checkpoint the lake's tables and prune the offset log: what `run`
    /// does between batches (maintenance.*), on demand.
    Maintain {
        /// Only this table (dotted name, e.g. silver.tweets) [default: every table].
        #[arg(long)]
        table: Option<String>,
        /// Vacuum files removed longer ago than this, e.g. 7d, 36h, 0s [default:
        /// maintenance.retention].
        #[arg(long, value_parser = tweetlake::settings::duration_text::parse)]
        retention: Option<std::time::Duration>,
        /// Allow a retention shorter than a table's delta.deletedFileRetentionDuration (time
        /// travel to versions older than the retention then fails).
        #[arg(long)]
        force: bool,
        /// Print what would be done; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Serve the lake over the Postgres wire protocol (psql, Grafana, BI tools), read-only.
    Serve {
        /// Address and port to listen on [default: serve.listen, 127.0.0.1:5433].
        #[arg(long, value_name = "HOST:PORT")]
        listen: Option<std::net::SocketAddr>,
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
    /// Dead letters: records that failed to decode (dlq.table).
    Dlq {
        #[command(subcommand)]
        what: Dlq,
    },
    /// Produce X stream messages: from the X API, Bluesky, a file or the generator, to Kafka, a file or stdout.
    Produce {
        #[command(subcommand)]
        what: Produce,
    },
    /// Measure decode, SQL, Delta write and end-to-end throughput on generated posts.
    Bench {
        /// Number of synthetic posts [default: 1,000,000; 150,000 with --maintenance].
        #[arg(long)]
        records: Option<usize>,
        /// Records per micro-batch [default: 100,000; 150 with --maintenance].
        #[arg(long)]
        batch: Option<usize>,
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
        /// Benchmark this existing topic as it is, instead of producing --records synthetic
        /// posts to a new one (with --kafka).
        #[arg(long, requires = "kafka")]
        topic: Option<String>,
        /// Measure the tweet functions instead: rows/s of each over the posts' text, on one core.
        #[arg(long, conflicts_with = "kafka")]
        functions: bool,
        /// Also run end to end into this S3 lake, e.g. s3://bucket/prefix (with --kafka;
        /// storage options come from the AWS_* environment).
        #[arg(long, requires = "kafka")]
        s3_lake: Option<String>,
        /// Measure maintenance instead: a lake of many small batches before and after
        /// `maintain` (files, bytes, query times) beside a one-batch lake, and what automatic
        /// maintenance costs the ingest rate.
        #[arg(long, conflicts_with_all = ["kafka", "functions"])]
        maintenance: bool,
        /// Measure decoding instead: a batch of --records posts [default: 22,000] clean against
        /// one with --malformed-share bad records, timed alternately.
        #[arg(long, conflicts_with_all = ["kafka", "functions", "maintenance"])]
        decode: bool,
        /// Share of malformed records in the decode benchmark's second batch [default: 0.01].
        #[arg(long, requires = "decode")]
        malformed_share: Option<f64>,
        /// Measure deduplication across batches instead: --records posts [default: 100,000] in
        /// batches of --batch [default: 1,000] with 5% copies of the previous batch, through
        /// silver as shipped (insert_new) and as a plain append, alternately.
        #[arg(long, conflicts_with_all = ["kafka", "functions", "maintenance", "decode"])]
        dedup: bool,
    },
}

#[derive(Subcommand)]
enum Dlq {
    /// Decode the chosen dead letters again with today's decoder and run the ones that decode
    /// through today's models, exactly once; they are kept in <dlq table>_replays, so a second
    /// replay of the same rows does nothing.
    Replay {
        /// Only the dead letters this SQL condition on the dead-letter table holds for, e.g.
        /// "error LIKE 'message is%'" [default: all].
        #[arg(long = "where", value_name = "SQL")]
        filter: Option<String>,
        /// Say how many would be replayed and how many decode now; write nothing.
        #[arg(long)]
        dry_run: bool,
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
    /// Stream posts from the X API v2 filtered stream to Kafka (key = post id), after syncing the
    /// rules with [x.companies]. Reconnects as X prescribes; Ctrl-C or SIGTERM flushes and exits.
    X {
        #[command(flatten)]
        kafka: KafkaArgs,
    },
    /// Stream Bluesky's new posts from Jetstream ([bluesky]) as X v2 messages (platform
    /// "bluesky", company rules from [x.companies] matched locally), resuming from the cursor
    /// kept in bluesky.cursor_file; reconnects with backoff; Ctrl-C or SIGTERM flushes and exits.
    Bluesky {
        /// Resume at this Jetstream cursor (microseconds since the epoch) instead of the one in
        /// bluesky.cursor_file.
        #[arg(long, value_name = "MICROS")]
        cursor: Option<i64>,
        #[command(flatten)]
        target: TargetArgs,
    },
    /// List the filtered-stream rules, or sync them with [x.companies] (--dry-run validates only).
    Rules {
        #[command(flatten)]
        action: RulesArgs,
    },
}

/// Which filtered-stream rules action to take.
#[derive(clap::Args)]
#[group(required = true, multiple = false)]
struct RulesArgs {
    /// Print the app's current rules: id, tag, value.
    #[arg(long)]
    list: bool,
    /// Show what a sync with [x.companies] would change and have X validate it (dry_run); change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Validate, then delete the rules [x.companies] does not ask for and add the missing ones.
    #[arg(long)]
    sync: bool,
}

/// The Kafka target of `produce x`: always the configured topic, optionally overridden.
#[derive(clap::Args)]
struct KafkaArgs {
    /// Override source.bootstrap_servers.
    #[arg(long)]
    bootstrap_servers: Option<String>,
    /// Publish to this topic instead of source.topic (or the first of source.topics).
    #[arg(long)]
    topic: Option<String>,
}

/// Where produced messages go: stdout (default), a file, or Kafka.
#[derive(clap::Args)]
struct TargetArgs {
    /// Write JSONL to this file instead of stdout.
    #[arg(short, long, conflicts_with = "kafka")]
    output: Option<PathBuf>,
    /// Publish to Kafka: the config's source.bootstrap_servers and source.topic, or the first of
    /// source.topics (key = post id).
    #[arg(long)]
    kafka: bool,
    /// Override source.bootstrap_servers (with --kafka).
    #[arg(long, requires = "kafka")]
    bootstrap_servers: Option<String>,
    /// Publish to this topic instead of the configured one (with --kafka).
    #[arg(long, requires = "kafka")]
    topic: Option<String>,
}

/// `bench`'s posts and batch size unless told otherwise.
const BENCH_RECORDS: usize = 1_000_000;
const BENCH_BATCH: usize = 100_000;

/// Warnings, delta-rs' noisy merge and statistics warnings excepted.
const QUIET_LOG: &str = "warn,deltalake_core::writer::stats=error,deltalake_core::operations::merge=error";

fn main() -> ExitCode {
    tweetlake::memory::limit_malloc_arenas();
    let cli = Cli::parse();
    commands::install_tls_provider();
    commands::quiet_caught_upload_panics();
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
            Command::Run { once } => {
                let mode = match once {
                    true => RunMode::Once,
                    false => RunMode::Continuous,
                };
                commands::run(cli.config.as_deref(), mode).await
            }
            Command::Sql {
                execute,
                file,
                format,
                output,
            } => {
                let script = commands::SqlScript::from_args(execute, file)?;
                commands::sql(cli.config.as_deref(), script, format, output).await
            }
            Command::Serve { listen } => commands::serve(cli.config.as_deref(), listen).await,
            Command::Plan => commands::plan(cli.config.as_deref()).await,
            Command::Maintain {
                table,
                retention,
                force,
                dry_run,
            } => {
                let request = commands::MaintainRequest {
                    table,
                    retention,
                    retention_check: match force {
                        true => tweetlake::maintain::RetentionCheck::Override,
                        false => tweetlake::maintain::RetentionCheck::Enforce,
                    },
                    execution: match dry_run {
                        true => tweetlake::maintain::Execution::DryRun,
                        false => tweetlake::maintain::Execution::Apply,
                    },
                };
                commands::maintain(cli.config.as_deref(), request).await
            }
            Command::Test => commands::test(cli.config.as_deref()).await,
            Command::Init { dir, force } => {
                let existing = match force {
                    true => commands::Existing::Overwrite,
                    false => commands::Existing::Keep,
                };
                commands::init(&dir, existing)
            }
            Command::Produce { what } => produce(what, cli.config.as_deref()).await,
            Command::Dlq {
                what: Dlq::Replay { filter, dry_run },
            } => {
                let execution = match dry_run {
                    true => tweetlake::maintain::Execution::DryRun,
                    false => tweetlake::maintain::Execution::Apply,
                };
                commands::dlq_replay(cli.config.as_deref(), filter.as_deref(), execution).await
            }
            Command::Bench {
                records,
                batch,
                dir,
                maintenance: true,
                ..
            } => {
                let dir = dir.unwrap_or_else(|| std::env::temp_dir().join("tweetlake-bench-maintenance"));
                commands::bench_maintenance(records.unwrap_or(150_000), batch.unwrap_or(150), &dir).await
            }
            Command::Bench {
                records,
                batch,
                dir,
                dedup: true,
                ..
            } => {
                let dir = dir.unwrap_or_else(|| std::env::temp_dir().join("tweetlake-bench-dedup"));
                commands::bench_dedup(records.unwrap_or(100_000), batch.unwrap_or(1_000), &dir).await
            }
            Command::Bench {
                records,
                functions: true,
                ..
            } => commands::bench_functions(records.unwrap_or(BENCH_RECORDS)).await,
            Command::Bench {
                records,
                decode: true,
                malformed_share,
                ..
            } => commands::bench_decode(records, malformed_share).await,
            Command::Bench {
                records,
                batch,
                dir,
                kafka: None,
                ..
            } => {
                let (records, batch) = (records.unwrap_or(BENCH_RECORDS), batch.unwrap_or(BENCH_BATCH));
                commands::bench(records, batch, dir.as_deref()).await
            }
            Command::Bench {
                records,
                batch,
                dir,
                kafka: Some(bootstrap),
                partitions,
                topic,
                s3_lake,
                ..
            } => {
                let kafka = commands::KafkaBench {
                    bootstrap: &bootstrap,
                    partitions,
                    existing_topic: topic.as_deref(),
                    s3_lake: s3_lake.as_deref(),
                };
                let (records, batch) = (records.unwrap_or(BENCH_RECORDS), batch.unwrap_or(BENCH_BATCH));
                commands::bench_kafka(records, batch, kafka, dir.as_deref()).await
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) if commands::stdout_closed(&error) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {}", commands::one_line(&error));
            // At once: clients still winding down in the background (a Kafka lookup waiting
            // out its timeout) would otherwise log after the error, which must be the last line.
            std::process::exit(1)
        }
    }
}

async fn produce(what: Produce, config_path: Option<&std::path::Path>) -> anyhow::Result<()> {
    use commands::Pace;
    let kafka_config = |bootstrap: &Option<String>, topic: &Option<String>| -> anyhow::Result<_> {
        let mut config = commands::load_config(config_path)?;
        if let Some(bootstrap) = bootstrap {
            config.source.kafka.connection.bootstrap_servers = bootstrap.clone();
        }
        if let Some(topic) = topic {
            config.source.kafka.use_only_topic(topic.clone());
        }
        Ok(config)
    };
    let target_config = |target: &TargetArgs| -> anyhow::Result<Option<Config>> {
        if !target.kafka {
            return Ok(None);
        }
        kafka_config(&target.bootstrap_servers, &target.topic).map(Some)
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
            commands::synth(count, options, target_of(&target, config.as_ref()), rate)
        }
        Produce::Replay {
            file,
            rate,
            repeat,
            target,
        } => {
            let config = target_config(&target)?;
            commands::replay(&file, target_of(&target, config.as_ref()), Pace { rate, repeat })
        }
        Produce::Bluesky { cursor, target } => {
            // Always read: the [bluesky] section and [x.companies] apply whatever the target.
            let config = kafka_config(&target.bootstrap_servers, &target.topic)?;
            let to = target_of(&target, target.kafka.then_some(&config));
            commands::produce_bluesky(&config, to, cursor).await
        }
        Produce::X { kafka } => {
            commands::produce_x(&kafka_config(&kafka.bootstrap_servers, &kafka.topic)?).await
        }
        Produce::Rules { action } => {
            let action = match (action.list, action.dry_run) {
                (true, _) => commands::RulesAction::List,
                (_, true) => commands::RulesAction::DryRun,
                _ => commands::RulesAction::Sync,
            };
            commands::rules(&commands::load_config(config_path)?, action).await
        }
    }
}

/// Kafka when a config for it is given, else the file of `--output`, else stdout.
fn target_of<'a>(args: &'a TargetArgs, config: Option<&'a Config>) -> commands::Target<'a> {
    match (config, &args.output) {
        (Some(config), _) => commands::Target::Kafka(config),
        (None, Some(path)) => commands::Target::File(path.as_path()),
        (None, None) => commands::Target::Stdout,
    }
}
