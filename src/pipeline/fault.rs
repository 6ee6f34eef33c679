//! Fault injection for crash tests: `TWEETLAKE_FAULT=<point>` kills the process with SIGKILL
//! when the pipeline reaches that point, exactly as `kill -9` would, so tests can prove that a
//! restart still writes every record exactly once.
//!
//! Points: `after_plan`, `after_decode`, `after_commit:<table>` and `before_marker`.

use std::sync::OnceLock;

pub const ENV: &str = "TWEETLAKE_FAULT";

/// Kills the process if `TWEETLAKE_FAULT` names this point.
pub fn point(name: &str) {
    static CHOSEN: OnceLock<Option<String>> = OnceLock::new();
    let chosen = CHOSEN.get_or_init(|| std::env::var(ENV).ok());
    if chosen.as_deref() == Some(name) {
        tracing::warn!("{ENV}={name}: killing the process here");
        // SAFETY: kill(2) on our own pid has no memory-safety preconditions.
        unsafe {
            libc::kill(libc::getpid(), libc::SIGKILL);
        }
    }
}
