//! The live progress line of a query that runs longer than half a second at the prompt.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use crate::query::Progress;
use crate::settings::human_bytes;

/// A query running longer than this shows a progress line.
const PROGRESS_AFTER: Duration = Duration::from_millis(500);

/// The progress line on stderr, shown from half a second on; cleared when the query ends,
/// however it ends.
#[derive(Default)]
pub struct Spinner(Option<ProgressBar>);

impl Progress for Spinner {
    fn tick(&mut self, elapsed: Duration, scanned: u64) {
        if elapsed < PROGRESS_AFTER {
            return;
        }
        let bar = self.0.get_or_insert_with(|| {
            let bar = ProgressBar::new_spinner();
            bar.set_style(ProgressStyle::with_template("{spinner} {msg}").expect("a valid template"));
            bar
        });
        bar.set_message(format!(
            "running {:.1} s, {} scanned (Ctrl-C cancels)",
            elapsed.as_secs_f64(),
            human_bytes(scanned)
        ));
        bar.tick();
    }
}

impl Drop for Spinner {
    fn drop(&mut self) {
        if let Some(bar) = &self.0 {
            bar.finish_and_clear();
        }
    }
}
