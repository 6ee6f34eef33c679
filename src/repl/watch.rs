//! `\watch`: a statement run again every period and redrawn until Ctrl-C, as psql's `\watch`.
//! Every run brings the tables it reads to their latest version (as any statement does), so the
//! pipeline's commits show up in the next redraw.

use std::io::IsTerminal;
use std::time::Duration;

use tokio::signal::unix::{signal, SignalKind};
use tokio::time::MissedTickBehavior;

use super::command::Watched;
use super::output::Paging;
use super::{ReplError, Session};
use crate::query::QueryError;
use crate::stdout::stdout;

/// Moves the cursor to the top left and clears the screen.
const CLEAR_SCREEN: &str = "\x1b[H\x1b[2J";

/// How a redraw replaces the one before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Redraw {
    /// At a terminal: the screen is cleared, so the result stays in place.
    ClearScreen,
    /// Into a pipe or a file: each run follows the one before.
    Append,
}

impl Session {
    /// Runs `watched` every `period` until Ctrl-C (which also cancels a run under way); an error
    /// stops it too, as in psql.
    pub(super) async fn watch(&mut self, period: Duration, watched: Watched) -> Result<(), ReplError> {
        let sql = match &watched {
            Watched::Statement(sql) => sql.clone(),
            Watched::Last | Watched::Chart(_) => self.last_statement.clone().ok_or_else(|| {
                ReplError::Usage("nothing to watch yet: run a statement first, or give one".to_string())
            })?,
        };
        // One listener for the whole watch, so that a Ctrl-C between two runs is not lost.
        let mut interrupt = signal(SignalKind::interrupt()).map_err(ReplError::Interrupt)?;
        let redraw = self.redraw(&watched);
        let mut ticks = tokio::time::interval(period);
        // A run longer than the period starts the next one a period after it, not at once.
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                _ = interrupt.recv() => return Ok(()),
            }
            let cancel = async {
                interrupt.recv().await;
            };
            let outcome = match self.execute(&sql, cancel).await {
                Err(ReplError::Query(QueryError::Cancelled)) => return Ok(()),
                outcome => outcome?,
            };
            if redraw == Redraw::ClearScreen {
                stdout().write_all(CLEAR_SCREEN.as_bytes())?;
            }
            let now = chrono::Utc::now().format("%Y-%m-%d %H:%M:%S UTC");
            eprintln!("every {} s, {now} (Ctrl-C stops)", period.as_secs_f64());
            match &watched {
                Watched::Chart(spec) => {
                    self.remember(&sql, outcome);
                    self.chart(spec)?;
                }
                Watched::Last | Watched::Statement(_) => self.show(&sql, outcome, Paging::Never)?,
            }
        }
    }

    fn redraw(&self, watched: &Watched) -> Redraw {
        // Results sent to a file (`\o`) leave the screen alone; charts always go to the terminal.
        let on_screen = matches!(watched, Watched::Chart(_)) || self.output.file().is_none();
        match on_screen && std::io::stdout().is_terminal() {
            true => Redraw::ClearScreen,
            false => Redraw::Append,
        }
    }
}
