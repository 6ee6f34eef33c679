//! Shared test helpers: a temporary project, the real binary, and queries over the real lake.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use deltalake::arrow::array::{Array, AsArray, RecordBatch};
use deltalake::arrow::datatypes::Int64Type;
use deltalake::datafusion::prelude::SessionContext;
use tempfile::TempDir;

use tweetlake::config::Config;
use tweetlake::sink::Lake;

/// Every child process gets this long before the test fails.
pub const CHILD_TIMEOUT: Duration = Duration::from_secs(180);

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// Good fixture posts followed by the bad ones, as one JSONL text.
pub fn fixture_lines() -> Vec<u8> {
    let mut text = std::fs::read(fixture("x_v2_stream_sample.jsonl")).unwrap();
    text.extend(std::fs::read(fixture("x_v2_stream_bad.jsonl")).unwrap());
    text
}

pub struct Project {
    pub dir: TempDir,
}

impl Project {
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn path(&self, relative: &str) -> PathBuf {
        self.dir.path().join(relative)
    }

    pub fn lake_uri(&self) -> String {
        self.path("lake").display().to_string()
    }

    pub fn posts_path(&self) -> PathBuf {
        self.path("posts.jsonl")
    }

    pub fn write_posts(&self, bytes: &[u8]) {
        std::fs::write(self.posts_path(), bytes).unwrap();
    }

    pub fn append_posts(&self, bytes: &[u8]) {
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(self.posts_path())
            .unwrap();
        file.write_all(bytes).unwrap();
    }

    /// Writes `tweetlake.toml` for a file source over `posts.jsonl`; `pipeline` adds keys to
    /// the `[pipeline]` section.
    pub fn write_config(&self, pipeline: &str) {
        let toml = format!(
            "[source]\nkind = \"file\"\npath = {:?}\n\n[lake]\nuri = {:?}\n\n[pipeline]\nname = \"test\"\n\
             progress_log = {:?}\n{pipeline}\n",
            self.posts_path().display().to_string(),
            self.lake_uri(),
            self.path("progress.ndjson").display().to_string(),
        );
        std::fs::write(self.path("tweetlake.toml"), toml).unwrap();
    }

    pub fn config(&self) -> Config {
        Config::load(Some(&self.path("tweetlake.toml"))).unwrap()
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_tweetlake"));
        command
            .args(args)
            .current_dir(self.dir.path())
            .env_remove("RUST_LOG")
            .env_remove(tweetlake::pipeline::fault::ENV)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        command
    }

    /// Runs the binary to completion (bounded by CHILD_TIMEOUT).
    pub fn run(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut command = self.command(args);
        command.envs(env.iter().copied());
        wait_bounded(command.spawn().unwrap())
    }

    pub async fn query(&self, sql: &str) -> Vec<RecordBatch> {
        query_lake(&self.lake_uri(), sql).await
    }

    pub async fn count(&self, sql: &str) -> i64 {
        scalar_i64(&self.query(sql).await)
    }

    /// Progress lines the runs wrote, parsed.
    pub fn progress(&self) -> Vec<serde_json::Value> {
        let text = std::fs::read_to_string(self.path("progress.ndjson")).unwrap_or_default();
        text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    }
}

/// Waits for `child`, killing it and failing the test after CHILD_TIMEOUT. Its output is
/// drained while it runs, so a child writing more than a pipe buffer never blocks.
pub fn wait_bounded(mut child: Child) -> Output {
    fn drain(pipe: Option<impl std::io::Read + Send + 'static>) -> std::thread::JoinHandle<Vec<u8>> {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut pipe) = pipe {
                pipe.read_to_end(&mut bytes).unwrap();
            }
            bytes
        })
    }
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let deadline = Instant::now() + CHILD_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("child process did not finish within {CHILD_TIMEOUT:?}");
        }
        std::thread::park_timeout(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    }
}

/// Runs `sql` over every table of the lake at `uri`.
pub async fn query_lake(uri: &str, sql: &str) -> Vec<RecordBatch> {
    let lake = Lake::new(uri, &Default::default()).unwrap();
    let ctx = SessionContext::new();
    for table in [
        "bronze",
        "dlq",
        "silver.tweets",
        "gold.company_minute",
        "gold.hashtag_hour",
        "gold.country_hour",
    ] {
        lake.register_table(&ctx, table).await.unwrap();
    }
    ctx.sql(sql).await.unwrap().collect().await.unwrap()
}

/// The single integer a query returned.
pub fn scalar_i64(batches: &[RecordBatch]) -> i64 {
    let batch = batches.iter().find(|b| b.num_rows() > 0).expect("one row");
    let column =
        deltalake::arrow::compute::cast(batch.column(0), &deltalake::arrow::datatypes::DataType::Int64)
            .unwrap();
    let values = column.as_primitive::<Int64Type>();
    assert!(values.is_valid(0));
    values.value(0)
}

/// All values of the first column as strings, in result order.
pub fn strings(batches: &[RecordBatch]) -> Vec<String> {
    let mut out = Vec::new();
    for batch in batches {
        let column =
            deltalake::arrow::compute::cast(batch.column(0), &deltalake::arrow::datatypes::DataType::Utf8)
                .unwrap();
        let values = column.as_string::<i32>();
        out.extend((0..values.len()).map(|i| values.value(i).to_string()));
    }
    out
}

/// Lines of a JSONL text that are synthetic good posts (malformed ones lack the annotations).
pub fn synth_good_count(text: &[u8]) -> i64 {
    text.split(|&b| b == b'\n')
        .filter(|l| l.windows(21).any(|w| w == b"\"context_annotations\""))
        .count() as i64
}

/// Lines that are neither blank nor good synthetic posts.
pub fn synth_bad_count(text: &[u8]) -> i64 {
    let lines = text.split(|&b| b == b'\n').filter(|l| !l.is_empty()).count() as i64;
    lines - synth_good_count(text)
}
