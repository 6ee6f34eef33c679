//! Results written to stdout, with the write's error returned instead of a panic.
//!
//! SIGPIPE stays ignored (Rust's default), so when the reader of a pipe goes away
//! (`tweetlake sql -e ... | head`), the next write fails with `BrokenPipe`. `println!` would
//! panic on that; these writes return a [`StdoutError`], and the binary's edge takes a closed
//! pipe as a normal end: exit 0, nothing on stderr (what ripgrep does). Restoring SIGPIPE's
//! default action instead would exit 141, and would let any socket write through OpenSSL kill a
//! running pipeline.

use std::fmt;
use std::io::{self, Write};

/// A failed write to stdout.
#[derive(Debug, thiserror::Error)]
#[error("writing to stdout: {source}")]
pub struct StdoutError {
    source: io::Error,
}

impl StdoutError {
    /// The reader closed its end of the pipe: it has read all it wanted.
    pub fn is_closed_pipe(&self) -> bool {
        self.source.kind() == io::ErrorKind::BrokenPipe
    }
}

impl From<io::Error> for StdoutError {
    fn from(source: io::Error) -> Self {
        Self { source }
    }
}

/// Stdout for `write!` / `writeln!`: every write is flushed, and its error returned.
pub struct Stdout(io::Stdout);

/// The process's stdout, for `writeln!(stdout(), ...)?`.
pub fn stdout() -> Stdout {
    Stdout(io::stdout())
}

impl Stdout {
    /// What `write!` calls.
    pub fn write_fmt(&mut self, args: fmt::Arguments<'_>) -> Result<(), StdoutError> {
        let mut out = self.0.lock();
        out.write_fmt(args)?;
        Ok(out.flush()?)
    }

    pub fn write_all(&mut self, bytes: &[u8]) -> Result<(), StdoutError> {
        let mut out = self.0.lock();
        out.write_all(bytes)?;
        Ok(out.flush()?)
    }
}
