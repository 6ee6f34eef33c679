//! Fault injection for crash tests: `TWEETLAKE_FAULT=<point>` kills the process with SIGKILL
//! when the pipeline reaches that point, exactly as `kill -9` would, so tests can prove that a
//! restart still writes every record exactly once.
//!
//! Pipeline points: `after_plan`, `after_decode`, `after_commit:<table>` and `before_marker`;
//! add `#<batch id>` to fire in one batch only (`after_commit:silver.tweets#2`). Maintenance
//! point: `during_vacuum:<table>` (after the vacuum's start commit, before it deletes).

use std::sync::OnceLock;

pub const ENV: &str = "TWEETLAKE_FAULT";

/// Kills the process if `TWEETLAKE_FAULT` names this point (in this batch).
pub fn point(name: &str, batch_id: u64) {
    static CHOSEN: OnceLock<Option<String>> = OnceLock::new();
    let Some(chosen) = CHOSEN.get_or_init(|| std::env::var(ENV).ok()) else {
        return;
    };
    let (point, batch) = chosen.split_once('#').unwrap_or((chosen, ""));
    if point == name && (batch.is_empty() || batch == batch_id.to_string()) {
        tracing::warn!("{ENV}={name}: killing the process here");
        // SAFETY: kill(2) on our own pid has no memory-safety preconditions.
        unsafe {
            libc::kill(libc::getpid(), libc::SIGKILL);
        }
    }
}
