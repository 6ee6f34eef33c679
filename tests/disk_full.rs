//! A full disk under the lake, made for real: a size-limited tmpfs mounted at the lake's
//! directory (root only, as in CI). The run must stop at once with one line naming where and
//! what to do, print no panic, retry nothing, commit nothing half-way; once space is freed, a
//! re-run leaves every post exactly once.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{
    assert_success, error_line, query_lake, scalar_i64, synth_bad_count, synth_good_count, Project,
};
use tweetlake::produce::synth::{self, SynthOptions};

/// A tmpfs mounted for the test's lifetime.
struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` at `dir`; `None` where this process may not mount (not root),
    /// which fails the test in CI.
    fn mount(dir: &Path, size: &str) -> Option<Self> {
        std::fs::create_dir_all(dir).unwrap();
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .is_ok_and(|status| status.success());
        if !mounted {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "cannot mount a tmpfs (the full-disk test needs root)"
            );
            eprintln!("skipping: cannot mount a tmpfs here (needs root)");
            return None;
        }
        Some(Self {
            dir: dir.to_path_buf(),
        })
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.dir).status();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_disk_stops_the_run_in_one_line_and_a_rerun_after_freeing_space_loses_nothing() {
    let posts = synth::jsonl(
        SynthOptions {
            malformed_share: 0.02,
            seed: 9,
            ..Default::default()
        },
        6000,
    );
    let project = Project::new();
    project.write_posts(&posts);
    project.write_config("max_records_per_batch = 500\n\n[maintenance]\nenabled = false");
    let lake_dir = project.path("lake");
    let Some(_tmpfs) = Tmpfs::mount(&lake_dir, "16m") else {
        return;
    };
    // Ballast leaves the lake about 5 MB, less than these posts need; removing it frees 11 MB.
    let ballast = lake_dir.join("ballast");
    std::fs::write(&ballast, vec![0u8; 11 * 1024 * 1024]).unwrap();

    let failed = project.run(&["run", "--once"], &[]);
    let line = error_line(&failed);
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert!(line.contains("no space left"), "{line}");
    assert!(line.contains(&*lake_dir.to_string_lossy()), "names where: {line}");
    assert!(line.contains("free space"), "names the fix: {line}");
    assert!(!stderr.contains("panicked"), "no panic is printed: {stderr}");
    assert!(
        !stderr.contains("retrying"),
        "a full disk is not retried: {stderr}"
    );

    std::fs::remove_file(&ballast).unwrap();
    assert_success(&project.run(&["run", "--once"], &[]));
    let count = |sql: &'static str| {
        let lake = project.lake_uri();
        async move { scalar_i64(&query_lake(&lake, sql).await) }
    };
    let (good, bad) = (synth_good_count(&posts), synth_bad_count(&posts));
    assert_eq!(count("SELECT count(*) FROM bronze").await, good);
    assert_eq!(count("SELECT count(DISTINCT _offset) FROM bronze").await, good);
    assert_eq!(count("SELECT count(*) FROM silver.tweets").await, good);
    assert_eq!(count("SELECT count(DISTINCT id) FROM silver.tweets").await, good);
    assert_eq!(count("SELECT count(*) FROM dlq").await, bad);
    assert_eq!(
        count("SELECT sum(posts) FROM gold.company_minute").await,
        count("SELECT count(*) FROM silver.tweets WHERE company IS NOT NULL").await
    );
}
