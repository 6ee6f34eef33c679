//! Where results go: the terminal, through a pager when taller than the screen, or a file.

use std::fs::File;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::stdout::stdout;

use super::format::Format;
use super::ReplError;

/// Used when neither `repl.pager` nor `$PAGER` names a pager.
const DEFAULT_PAGER: &str = "less -FRX";

/// Whether a result taller than the terminal may go through the pager.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Paging {
    WhenTall,
    /// `\watch` redraws on its own: a pager would stop it until the user quits the pager.
    Never,
}

/// The size of the terminal stdout writes to, in characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TerminalSize {
    pub columns: usize,
    pub rows: usize,
}

impl TerminalSize {
    /// What a terminal of unknown size (or a pipe) is taken to be.
    pub const DEFAULT: Self = Self {
        columns: 80,
        rows: 24,
    };

    /// Stdout's terminal, if stdout is a terminal that knows its size.
    pub fn of_stdout() -> Option<Self> {
        // SAFETY: TIOCGWINSZ only writes a `winsize` into the struct it is given.
        let mut size: libc::winsize = unsafe { std::mem::zeroed() };
        let ok = unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut size) } == 0;
        (ok && size.ws_row > 0 && size.ws_col > 0).then_some(Self {
            columns: usize::from(size.ws_col),
            rows: usize::from(size.ws_row),
        })
    }
}

pub struct Output {
    file: Option<(PathBuf, File, Format)>,
    pager: String,
    paging: bool,
}

impl Output {
    /// `pager`: the `repl.pager` setting: empty for `$PAGER` or `less -FRX`, `off` for none.
    pub fn new(pager: &str) -> Self {
        let command = match pager {
            "" | "off" => std::env::var("PAGER")
                .ok()
                .filter(|p| !p.trim().is_empty())
                .unwrap_or_else(|| DEFAULT_PAGER.to_string()),
            command => command.to_string(),
        };
        Self {
            file: None,
            pager: command,
            paging: pager != "off",
        }
    }

    /// Sends results to `path` (truncated) in `format` until [`Output::reset`].
    pub fn set_file(&mut self, path: &Path, format: Format) -> Result<(), ReplError> {
        let file = File::create(path).map_err(|e| ReplError::io(path, e))?;
        self.file = Some((path.to_path_buf(), file, format));
        Ok(())
    }

    pub fn reset(&mut self) {
        self.file = None;
    }

    /// The file results go to, and its format.
    pub fn file(&self) -> Option<(&Path, Format)> {
        self.file
            .as_ref()
            .map(|(path, _, format)| (path.as_path(), *format))
    }

    /// Turns paging on or off (`None` toggles); returns the new state.
    pub fn set_paging(&mut self, on: Option<bool>) -> bool {
        self.paging = on.unwrap_or(!self.paging);
        self.paging
    }

    pub fn write(&mut self, bytes: &[u8], paging: Paging) -> Result<(), ReplError> {
        if let Some((path, file, _)) = &mut self.file {
            return file.write_all(bytes).map_err(|e| ReplError::io(path, e));
        }
        let may_page = self.paging && paging == Paging::WhenTall;
        if may_page && taller_than_terminal(bytes) && page(&self.pager, bytes).is_ok() {
            return Ok(());
        }
        Ok(stdout().write_all(bytes)?)
    }
}

fn taller_than_terminal(bytes: &[u8]) -> bool {
    if !std::io::stdout().is_terminal() {
        return false;
    }
    let lines = bytes.iter().filter(|&&b| b == b'\n').count();
    // Keep a line for the statistics and one for the next prompt.
    TerminalSize::of_stdout().is_some_and(|size| lines + 2 > size.rows)
}

/// Shows `bytes` in `pager` (a shell command line) and waits for the user to leave it.
fn page(pager: &str, bytes: &[u8]) -> std::io::Result<()> {
    let mut child = Command::new("sh")
        .args(["-c", pager])
        .stdin(Stdio::piped())
        .spawn()?;
    if let Some(mut stdin) = child.stdin.take() {
        // The user may quit the pager before reading everything: a broken pipe is fine.
        let _ = stdin.write_all(bytes);
    }
    child.wait()?;
    Ok(())
}
