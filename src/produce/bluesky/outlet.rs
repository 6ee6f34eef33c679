//! Where `produce bluesky` sends its messages: Kafka, or one message per line (JSONL, as
//! `produce synth` writes) to a file or stdout.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::kafka::{KafkaPublisher, PublishError};
use crate::stdout::{Stdout, StdoutError};

#[derive(Debug, thiserror::Error)]
pub enum OutletError {
    #[error(transparent)]
    Publish(#[from] PublishError),
    #[error(transparent)]
    Stdout(#[from] StdoutError),
    #[error("writing {}: {source}", path.display())]
    File { path: PathBuf, source: std::io::Error },
}

/// A destination of messages.
pub trait Outlet {
    /// Sends one message, keyed by its post id (empty for a malformed one).
    fn send(&mut self, key: &str, message: &[u8]) -> Result<(), OutletError>;
    /// Returns once every message sent so far is delivered (Kafka) or written (a file): the
    /// cursor may then move past them.
    fn flush(&mut self) -> Result<(), OutletError>;
}

impl Outlet for KafkaPublisher {
    fn send(&mut self, key: &str, message: &[u8]) -> Result<(), OutletError> {
        self.publish(key.as_bytes(), message)?;
        // A delivery librdkafka gave up on is a post lost: stop rather than lose more.
        Ok(self.check_deliveries()?)
    }

    fn flush(&mut self) -> Result<(), OutletError> {
        KafkaPublisher::flush(self)?;
        Ok(())
    }
}

/// One message per line on stdout, each line flushed as it is written.
pub struct StdoutLines(Stdout);

impl StdoutLines {
    pub fn new() -> Self {
        Self(crate::stdout::stdout())
    }
}

impl Default for StdoutLines {
    fn default() -> Self {
        Self::new()
    }
}

impl Outlet for StdoutLines {
    fn send(&mut self, _key: &str, message: &[u8]) -> Result<(), OutletError> {
        self.0.write_all(&[message, b"\n"].concat())?;
        Ok(())
    }

    fn flush(&mut self) -> Result<(), OutletError> {
        Ok(())
    }
}

/// Lines in a file, buffered.
pub struct FileLines {
    path: PathBuf,
    out: std::io::BufWriter<std::fs::File>,
}

impl FileLines {
    /// Appends to the file at `path`, created when missing.
    pub fn append(path: &Path) -> Result<Self, OutletError> {
        let path = path.to_path_buf();
        match std::fs::OpenOptions::new().create(true).append(true).open(&path) {
            Ok(file) => Ok(Self {
                path,
                out: std::io::BufWriter::new(file),
            }),
            Err(source) => Err(OutletError::File { path, source }),
        }
    }

    fn error(&self, source: std::io::Error) -> OutletError {
        OutletError::File {
            path: self.path.clone(),
            source,
        }
    }
}

impl Outlet for FileLines {
    fn send(&mut self, _key: &str, message: &[u8]) -> Result<(), OutletError> {
        let written = self
            .out
            .write_all(message)
            .and_then(|_| self.out.write_all(b"\n"));
        written.map_err(|e| self.error(e))
    }

    fn flush(&mut self) -> Result<(), OutletError> {
        self.out.flush().map_err(|e| self.error(e))
    }
}
