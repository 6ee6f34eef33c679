//! `bench --kafka`'s `run --once` start times: the real binary, started as a scheduler starts
//! it, in each `source.assignment` mode. The modes take turns within every round, so the shared
//! machine's noise falls on both alike.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use tweetlake::kafka::{KafkaConnection, KafkaPublisher};
use tweetlake::stdout::stdout;

use super::{percentile, produce_synthetic};

/// The `source.assignment` modes timed, as written in the config file.
const MODES: [&str; 2] = ["group", "manual"];
const ROUNDS: usize = 3;
/// New posts produced before each timed run that has something to read.
const NEW_POSTS: usize = 500;

/// The topic the timed runs read, and where their lakes and logs go.
pub(super) struct StartBench {
    pub connection: KafkaConnection,
    pub topic: String,
    pub dir: PathBuf,
}

/// What one `run --once` took, from its spawn.
struct OnceRun {
    /// Until the first batch's records were read; `None` when no batch ran.
    first_batch: Option<Duration>,
    /// Until the process exited.
    whole: Duration,
}

/// Seconds per mode: until the first batch was read, and of a whole run with nothing new.
#[derive(Default)]
struct ModeTimes {
    first_batch: Vec<f64>,
    nothing_new: Vec<f64>,
}

/// Times `run --once` with nothing new, then with `NEW_POSTS` new posts, round after round, in
/// every mode; prints the medians. Each mode has its own lake, starting at the topic's end.
pub(super) fn bench_once_start(bench: &StartBench) -> anyhow::Result<()> {
    let configs = MODES
        .iter()
        .map(|mode| write_config(bench, mode))
        .collect::<anyhow::Result<Vec<_>>>()?;
    for config in &configs {
        timed_once_run(config, &bench.dir)?; // pins where each lake starts: the topic's end
    }
    let publisher = KafkaPublisher::connect(&bench.connection, &bench.topic)?;
    let mut times: Vec<ModeTimes> = MODES.iter().map(|_| ModeTimes::default()).collect();
    for _ in 0..ROUNDS {
        for (config, mode) in configs.iter().zip(&mut times) {
            mode.nothing_new
                .push(timed_once_run(config, &bench.dir)?.whole.as_secs_f64());
        }
        produce_synthetic(&publisher, NEW_POSTS)?;
        for (config, mode) in configs.iter().zip(&mut times) {
            let run = timed_once_run(config, &bench.dir)?;
            let first_batch = run
                .first_batch
                .context("a run --once with new posts ran no batch")?;
            mode.first_batch.push(first_batch.as_secs_f64());
        }
    }
    print_times(&times)
}

fn print_times(times: &[ModeTimes]) -> anyhow::Result<()> {
    let build = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    let mut out = stdout();
    writeln!(
        out,
        "run --once start, from the process spawn ({build} build, median of {ROUNDS}, {NEW_POSTS} new posts)"
    )?;
    writeln!(
        out,
        "{:<24} {:>18} {:>14}",
        "assignment", "first batch read s", "nothing new s"
    )?;
    for (mode, times) in MODES.iter().zip(times) {
        writeln!(
            out,
            "{:<24} {:>18.2} {:>14.2}",
            format!("once start, {mode}"),
            percentile(&times.first_batch, 0.5),
            percentile(&times.nothing_new, 0.5)
        )?;
    }
    Ok(())
}

/// A config file for `mode`: its own lake, pipeline and group, starting at the topic's end,
/// progress lines on stdout, no metrics server (ports stay free).
fn write_config(bench: &StartBench, mode: &str) -> anyhow::Result<PathBuf> {
    let dir = bench.dir.join(format!("start-{mode}"));
    std::fs::create_dir_all(&dir)?;
    let toml = format!(
        "[source]\nkind = \"kafka\"\nbootstrap_servers = {:?}\ntopic = {:?}\ngroup_id = {:?}\n\
         assignment = {mode:?}\nstarting_offsets = \"latest\"\n\n\
         [lake]\nuri = {:?}\n\n[pipeline]\nname = \"bench-start-{mode}\"\nprogress_log = \"-\"\n\n\
         [metrics]\nlisten = \"\"\n",
        bench.connection.bootstrap_servers,
        bench.topic,
        format!("{}-start-{mode}", bench.topic),
        dir.join("lake").display().to_string(),
    );
    let path = dir.join("tweetlake.toml");
    std::fs::write(&path, toml).with_context(|| format!("write {}", path.display()))?;
    Ok(path)
}

/// Runs this binary's `run --once` with `config`, in `dir` (which has no `sql` directory: the
/// built-in models), timing it from the spawn.
fn timed_once_run(config: &Path, dir: &Path) -> anyhow::Result<OnceRun> {
    let log_path = dir.join("once-start.log");
    let log = std::fs::File::create(&log_path)?;
    let started = Instant::now();
    let mut child = Command::new(std::env::current_exe()?)
        .args(["run", "--once", "--log", "warn", "--config"])
        .arg(config)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .context("start run --once")?;
    let progress = child.stdout.take().context("run --once's stdout")?;
    let mut first_batch = None;
    for line in BufReader::new(progress).lines() {
        let line = line?;
        if first_batch.is_none() {
            first_batch = Some(read_done_at(&line, started.elapsed())?);
        }
    }
    let status = child.wait()?;
    let whole = started.elapsed();
    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
    anyhow::ensure!(status.success(), "run --once failed ({status}): {log}");
    Ok(OnceRun { first_batch, whole })
}

/// When a batch had read its records, from its progress line (printed once the batch is
/// committed) and the moment the line `arrived`: the arrival less the time spent after the read.
fn read_done_at(line: &str, arrived: Duration) -> anyhow::Result<Duration> {
    let report: serde_json::Value = serde_json::from_str(line).context("a progress line")?;
    let ms = |stage: &str| {
        report["durations"][stage]
            .as_f64()
            .with_context(|| format!("no {stage} in the progress line {line}"))
    };
    let after_read = Duration::from_secs_f64((ms("total_ms")? - ms("read_ms")?).max(0.0) / 1000.0);
    Ok(arrived.saturating_sub(after_read))
}
