//! How a running pipeline shows its state to monitoring: Prometheus metrics and the health
//! probes, served over HTTP on `metrics.listen` (see [`serve`]).
//!
//! Metrics are recorded through the `metrics` facade into one process-wide Prometheus recorder;
//! until [`serve`] installs it, recording costs next to nothing (demo, bench and tests record
//! into no recorder). The functions below are the only places that name a metric, so the names,
//! labels and units stay the ones the README documents. Everything here is recorded per batch or
//! per maintenance step, never per record.

mod config;
mod health;
mod server;

use std::time::{Duration, Instant};

use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder};

pub use config::MetricsConfig;
pub use health::ready_window;
pub use server::{serve, TelemetryError};

const BATCHES: &str = "tweetlake_batches_total";
const RECORDS: &str = "tweetlake_records_total";
const DEAD_LETTERS: &str = "tweetlake_dead_letters_total";
const DUPLICATES: &str = "tweetlake_duplicates_total";
const BATCH_DURATION: &str = "tweetlake_batch_duration_seconds";
const COMMIT_RETRIES: &str = "tweetlake_commit_retries_total";
const CONSUMER_LAG: &str = "tweetlake_consumer_lag";
const LAST_COMMIT: &str = "tweetlake_last_commit_timestamp_seconds";
const BUILD_INFO: &str = "tweetlake_build_info";
const MAINTENANCE_RUNS: &str = "tweetlake_maintenance_runs_total";
const MAINTENANCE_RECLAIMED: &str = "tweetlake_maintenance_reclaimed_bytes_total";
const MAINTENANCE_DURATION: &str = "tweetlake_maintenance_duration_seconds";

/// Bucket bounds of a batch stage, in seconds: from a small batch's decode (tens of ms) to a
/// large backlog batch with gold merges (a minute).
const BATCH_SECONDS_BUCKETS: &[f64] = &[0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0];

/// Bucket bounds of one maintenance step, in seconds: a checkpoint takes well under a second,
/// a compaction or vacuum of a large table many minutes.
const MAINTENANCE_SECONDS_BUCKETS: &[f64] = &[0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0];

/// One stage of a batch, as the `stage` label of `tweetlake_batch_duration_seconds` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Read,
    Decode,
    Transform,
    Write,
    /// The whole batch, read to offset-log marker.
    Total,
}

impl Stage {
    fn label(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Decode => "decode",
            Self::Transform => "transform",
            Self::Write => "write",
            Self::Total => "total",
        }
    }
}

/// A batch finished: its plan is marked done in the offset log. Also tells /readyz the loop
/// is making progress.
pub fn record_batch_done() {
    counter!(BATCHES).increment(1);
    gauge!(LAST_COMMIT).set(unix_seconds_now());
    health::HEALTH.beat();
}

/// `rows` rows of a batch landed in `table` in a new version (a re-run that found the table
/// already holding the batch records nothing).
pub fn record_table_commit(table: &str, rows: usize) {
    counter!(RECORDS, "table" => table.to_string()).increment(rows as u64);
}

/// An `insert_new` table's check left out `rows` rows it already held.
pub fn record_duplicates(table: &str, rows: usize) {
    counter!(DUPLICATES, "table" => table.to_string()).increment(rows as u64);
}

/// `rows` records that failed to decode were committed to the dead-letter table.
pub fn record_dead_letters(rows: usize) {
    counter!(DEAD_LETTERS).increment(rows as u64);
}

pub fn record_stage_time(stage: Stage, took: Duration) {
    histogram!(BATCH_DURATION, "stage" => stage.label()).record(took.as_secs_f64());
}

/// Records between the last committed position of a partition and its end.
pub fn record_consumer_lag(topic: &str, partition: i32, records: i64) {
    let labels = [("topic", topic.to_string()), ("partition", partition.to_string())];
    gauge!(CONSUMER_LAG, &labels).set(records as f64);
}

/// A batch is tried again after a transient failure (store or broker unreachable); its Delta
/// commits are idempotent, so the retry writes nothing twice.
pub fn record_commit_retry() {
    counter!(COMMIT_RETRIES).increment(1);
}

/// A read found nothing new: on an idle topic this is how /readyz knows the loop still runs.
pub fn record_idle_poll() {
    health::HEALTH.beat();
}

/// The partitions this instance owns now (after start and after every rebalance).
pub fn record_owned_partitions(count: usize) {
    health::HEALTH.set_owned_partitions(count);
}

/// One maintenance step of one table: `operation` names it (`compact`, `vacuum`, `checkpoint`,
/// ...), `outcome` how it ended (`ok`, `failed`, `skipped`, ...), `reclaimed_bytes` what it freed
/// in the store, `took` how long it ran.
pub fn record_maintenance(
    table: &str,
    operation: &'static str,
    outcome: &'static str,
    reclaimed_bytes: u64,
    took: Duration,
) {
    let labels = [
        ("table", table.to_string()),
        ("operation", operation.to_string()),
        ("outcome", outcome.to_string()),
    ];
    counter!(MAINTENANCE_RUNS, &labels).increment(1);
    counter!(MAINTENANCE_RECLAIMED, "table" => table.to_string()).increment(reclaimed_bytes);
    histogram!(MAINTENANCE_DURATION, "operation" => operation).record(took.as_secs_f64());
}

/// The exporter, with real histograms (buckets) for the durations: rendered as summaries
/// otherwise, which cannot be aggregated across instances.
fn prometheus() -> Result<PrometheusBuilder, BuildError> {
    PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Full(BATCH_DURATION.into()), BATCH_SECONDS_BUCKETS)?
        .set_buckets_for_metric(
            Matcher::Full(MAINTENANCE_DURATION.into()),
            MAINTENANCE_SECONDS_BUCKETS,
        )
}

/// Help texts and the series that exist from the start: a counter that reads 0 is clearer to a
/// dashboard than one that is missing until its first event.
fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(
        BATCHES,
        "Batches finished (committed to every table and marked done)."
    );
    describe_counter!(RECORDS, "Rows committed to each table in new versions.");
    describe_counter!(
        DUPLICATES,
        "Rows an insert_new table already held (a post delivered again): not inserted."
    );
    describe_counter!(
        DEAD_LETTERS,
        "Records that failed to decode, committed to the dead-letter table."
    );
    describe_histogram!(BATCH_DURATION, Unit::Seconds, "Time of each stage of a batch.");
    describe_counter!(
        COMMIT_RETRIES,
        "Batches tried again after a transient store or broker failure."
    );
    describe_gauge!(
        CONSUMER_LAG,
        "Records behind the end of each owned Kafka partition after the last batch."
    );
    describe_gauge!(
        LAST_COMMIT,
        Unit::Seconds,
        "Unix time of the last finished batch."
    );
    describe_gauge!(BUILD_INFO, "Always 1; the labels tell the running version.");
    describe_counter!(
        MAINTENANCE_RUNS,
        "Maintenance steps run, per table, operation and outcome."
    );
    describe_counter!(
        MAINTENANCE_RECLAIMED,
        Unit::Bytes,
        "Bytes maintenance removed from the store."
    );
    describe_histogram!(
        MAINTENANCE_DURATION,
        Unit::Seconds,
        "Time of each maintenance step."
    );
    counter!(BATCHES).absolute(0);
    counter!(DEAD_LETTERS).absolute(0);
    counter!(COMMIT_RETRIES).absolute(0);
    gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
}

fn unix_seconds_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

/// Monotonic milliseconds since the first call, starting at 1 (0 stays free for "never").
fn monotonic_millis() -> u64 {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u64 + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the functions above record, as a scrape shows it.
    fn rendered(record: impl FnOnce()) -> String {
        let recorder = prometheus().unwrap().build_recorder();
        metrics::with_local_recorder(&recorder, || {
            describe();
            record();
        });
        recorder.handle().render()
    }

    fn has_line(text: &str, line: &str) -> bool {
        text.lines().any(|l| l == line)
    }

    #[test]
    fn batch_metrics_render_with_their_names_labels_and_buckets() {
        let text = rendered(|| {
            record_table_commit("bronze", 40);
            record_table_commit("bronze", 2);
            record_table_commit("silver.tweets", 7);
            record_dead_letters(3);
            record_stage_time(Stage::Decode, Duration::from_millis(300));
            record_stage_time(Stage::Decode, Duration::from_millis(70));
            record_consumer_lag("x-posts", 3, 17);
            record_commit_retry();
            record_batch_done();
        });
        for line in [
            "tweetlake_batches_total 1",
            "tweetlake_records_total{table=\"bronze\"} 42",
            "tweetlake_records_total{table=\"silver.tweets\"} 7",
            "tweetlake_dead_letters_total 3",
            "tweetlake_commit_retries_total 1",
            "tweetlake_consumer_lag{topic=\"x-posts\",partition=\"3\"} 17",
            "tweetlake_build_info{version=\"0.1.0\"} 1",
            "# TYPE tweetlake_batch_duration_seconds histogram",
            "tweetlake_batch_duration_seconds_bucket{stage=\"decode\",le=\"0.1\"} 1",
            "tweetlake_batch_duration_seconds_bucket{stage=\"decode\",le=\"0.5\"} 2",
            "tweetlake_batch_duration_seconds_bucket{stage=\"decode\",le=\"+Inf\"} 2",
            "tweetlake_batch_duration_seconds_count{stage=\"decode\"} 2",
            "# TYPE tweetlake_records_total counter",
        ] {
            assert!(has_line(&text, line), "no line `{line}` in:\n{text}");
        }
        let last_commit = text
            .lines()
            .find_map(|l| l.strip_prefix("tweetlake_last_commit_timestamp_seconds "))
            .expect("the last commit time");
        let seconds: f64 = last_commit.parse().unwrap();
        assert!((seconds - unix_seconds_now()).abs() < 60.0, "{seconds}");
    }

    #[test]
    fn maintenance_metrics_count_runs_bytes_and_time_per_operation() {
        let text = rendered(|| {
            record_maintenance("silver.tweets", "vacuum", "ok", 4096, Duration::from_secs(2));
            record_maintenance("silver.tweets", "vacuum", "ok", 1024, Duration::from_secs(20));
            record_maintenance("bronze", "compact", "failed", 0, Duration::from_millis(300));
        });
        for line in [
            "tweetlake_maintenance_runs_total{table=\"silver.tweets\",operation=\"vacuum\",outcome=\"ok\"} 2",
            "tweetlake_maintenance_runs_total{table=\"bronze\",operation=\"compact\",outcome=\"failed\"} 1",
            "tweetlake_maintenance_reclaimed_bytes_total{table=\"silver.tweets\"} 5120",
            "tweetlake_maintenance_reclaimed_bytes_total{table=\"bronze\"} 0",
            "tweetlake_maintenance_duration_seconds_bucket{operation=\"vacuum\",le=\"5\"} 1",
            "tweetlake_maintenance_duration_seconds_bucket{operation=\"vacuum\",le=\"60\"} 2",
            "tweetlake_maintenance_duration_seconds_count{operation=\"compact\"} 1",
        ] {
            assert!(has_line(&text, line), "no line `{line}` in:\n{text}");
        }
    }
}
