//! Clean stops and closed pipes, as Kubernetes, `docker stop`, systemd and a shell's `| head`
//! make them: SIGTERM finishes the work in progress and exits 0, and a reader that closes the
//! pipe early ends the command quietly with exit 0.

mod common;

use std::io::{BufRead, BufReader};
use std::process::Output;

use common::{synth_bad_count, synth_good_count, Project, Spawned};
use tweetlake::produce::synth::{self, SynthOptions};

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn sigterm(child: &Spawned) {
    // SAFETY: signalling our own child process, not yet waited for.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
}

fn assert_clean_exit(output: &Output) {
    assert!(output.status.success(), "{:?}: {}", output.status, stderr(output));
}

#[tokio::test]
async fn sigterm_finishes_the_batch_in_progress_and_a_rerun_completes_the_lake_once() {
    let project = Project::new();
    let posts = synth::jsonl(
        SynthOptions {
            malformed_share: 0.05,
            ..Default::default()
        },
        400,
    );
    project.write_posts(&posts);
    project.write_config("trigger_interval = \"200ms\"\nmax_records_per_batch = 50");
    let (runner, lines) = Spawned::with_stdout_lines(
        project
            .command(&["run"])
            .env("TWEETLAKE_PIPELINE__PROGRESS_LOG", "-")
            .spawn()
            .unwrap(),
    );
    // The first batch is reported; the second is under way (there are 8 batches' worth).
    lines.next_line();
    sigterm(&runner);
    let output = runner.wait();
    assert_clean_exit(&output);
    let log = stderr(&output);
    assert!(log.contains("SIGTERM: stopping after the current batch"), "{log}");
    let batches = project
        .count("SELECT count(DISTINCT _batch_id) FROM bronze")
        .await;
    assert!(batches < 8, "stopped before the end: {batches} batches");

    // What the stopped run committed is there once; the next run adds the rest, once.
    let committed = project.count("SELECT count(*) FROM bronze").await;
    let distinct = project.count("SELECT count(DISTINCT _offset) FROM bronze").await;
    assert_eq!(committed, distinct);
    let rerun = project.run(&["run", "--once"], &[]);
    assert_clean_exit(&rerun);
    let reports = project.progress();
    assert!(
        reports.iter().all(|r| r["rerun"] == false),
        "the stopped run finished the batch it had planned: nothing to re-run"
    );
    assert_eq!(
        project.count("SELECT count(*) FROM bronze").await,
        synth_good_count(&posts)
    );
    assert_eq!(
        project.count("SELECT count(DISTINCT _offset) FROM bronze").await,
        synth_good_count(&posts)
    );
    assert_eq!(
        project.count("SELECT count(*) FROM dlq").await,
        synth_bad_count(&posts)
    );
}

/// Starts `args`, reads three whole lines of its stdout, sends SIGTERM and returns the exit
/// and every line written after those.
fn stop_after_three_lines(project: &Project, args: &[&str]) -> (Output, Vec<String>) {
    let (child, lines) = Spawned::with_stdout_lines(project.command(args).spawn().unwrap());
    let first: Vec<String> = (0..3).map(|_| lines.next_line()).collect();
    sigterm(&child);
    let rest = lines.remaining();
    let output = child.wait();
    (output, first.into_iter().chain(rest).collect())
}

fn assert_whole_messages(lines: &[String]) {
    for line in lines {
        let message: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: a cut message: {line}"));
        assert!(message["data"]["id"].is_string(), "{line}");
    }
}

#[test]
fn sigterm_stops_produce_synth_and_replay_with_every_message_whole() {
    let project = Project::new();
    let (output, lines) = stop_after_three_lines(
        &project,
        &["produce", "synth", "--count", "100000", "--rate", "200"],
    );
    assert_clean_exit(&output);
    assert!(
        stderr(&output).contains("SIGTERM: stopping"),
        "{}",
        stderr(&output)
    );
    assert!(lines.len() < 100_000, "stopped early: {} lines", lines.len());
    assert_whole_messages(&lines);

    project.write_posts(&synth::jsonl(SynthOptions::default(), 10));
    let posts = project.posts_path().display().to_string();
    let (output, lines) = stop_after_three_lines(
        &project,
        &["produce", "replay", &posts, "--loop", "--rate", "200"],
    );
    assert_clean_exit(&output);
    assert!(lines.len() >= 3);
    assert_whole_messages(&lines);
}

/// Runs `args` with a reader that takes `lines` lines of its stdout, then closes the pipe.
fn with_stdout_closed_after(project: &Project, args: &[&str], lines: usize) -> Output {
    let mut command = project.command(&[&["--log", "off"], args].concat());
    // `run`'s progress lines go to stdout too.
    command.env("TWEETLAKE_PIPELINE__PROGRESS_LOG", "-");
    let mut child = command.spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    // Killed if it outlives the test's patience; its stderr is collected meanwhile.
    let child = Spawned::new(child);
    let reader = std::thread::spawn(move || {
        let mut stdout = BufReader::new(stdout);
        for _ in 0..lines {
            let mut line = String::new();
            stdout.read_line(&mut line).unwrap();
        }
        // Dropped here: the child's next write finds the pipe closed.
    });
    let output = child.wait();
    reader.join().unwrap();
    output
}

#[tokio::test]
async fn a_closed_stdout_ends_every_command_quietly_with_exit_0() {
    let project = Project::new();
    let posts = synth::jsonl(SynthOptions::default(), 300);
    project.write_posts(&posts);
    project.write_config("");
    let sql = ["sql", "-e", "SELECT _offset, _raw FROM bronze", "--format", "csv"];
    let init_dir = project.path("init").display().to_string();
    // Commands whose output outgrows the pipe (64 KiB) are read a little first; the others
    // find the pipe closed before they write.
    let cases: [(&[&str], usize); 7] = [
        (&["run", "--once"], 0),
        (&sql, 5),
        (&["produce", "synth", "--count", "100000"], 5),
        (&["plan"], 0),
        (&["demo", "--lake", "demo-lake"], 0),
        (&["init", &init_dir], 0),
        (&["test"], 0),
    ];
    for (args, lines) in cases {
        let output = with_stdout_closed_after(&project, args, lines);
        assert!(
            output.status.success(),
            "{args:?}: {:?}: {}",
            output.status,
            stderr(&output)
        );
        assert_eq!(stderr(&output), "", "{args:?}");
    }
    // `run` went on without its progress lines: the lake is complete.
    assert_eq!(
        project.count("SELECT count(*) FROM bronze").await,
        synth_good_count(&posts)
    );
}
