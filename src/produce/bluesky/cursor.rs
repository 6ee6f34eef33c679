//! Where a Jetstream subscription resumes: the newest `time_us` received, rewound a little.
//!
//! Jetstream replays from any `cursor` (microseconds) in its lookback window (36 h by default),
//! every event at or after it. Events arrive out of `time_us` order (by tens of milliseconds),
//! so the cursor is the newest time seen over every event, skipped ones included, and a
//! connection resumes [`rewind`](super::BlueskyConfig::rewind) before it: the events of that
//! span arrive twice, never zero times.
//!
//! The cursor file holds that newest time as a decimal number. It is written only after what
//! was received before it has been delivered (a Kafka flush, a file flush), so a kill at any
//! moment loses nothing: the next run starts before every post it had not delivered.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum CursorError {
    #[error("cursor file {}: {source} (bluesky.cursor_file)", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("cursor file {} holds `{text}`, not a time in microseconds: fix or delete it (bluesky.cursor_file)", path.display())]
    Invalid { path: PathBuf, text: String },
}

/// Where the next connection starts, and the file that keeps it.
#[derive(Debug)]
pub struct Cursor {
    /// The newest `time_us` received so far (from the file at start).
    newest: Option<i64>,
    /// Where to start before anything is received: `--cursor`, exactly.
    start: Option<i64>,
    rewind: i64,
    file: Option<PathBuf>,
    /// What the file holds.
    saved: Option<i64>,
}

impl Cursor {
    /// `--cursor` when given (taken as it is), else the file's cursor (rewound), else none: the
    /// live stream. An empty `file` path keeps no file.
    pub fn load(file: &Path, start: Option<i64>, rewind: Duration) -> Result<Self, CursorError> {
        let file = (!file.as_os_str().is_empty()).then(|| file.to_path_buf());
        let saved = match &file {
            Some(path) => read(path)?,
            None => None,
        };
        Ok(Self {
            newest: if start.is_some() { None } else { saved },
            start,
            rewind: i64::try_from(rewind.as_micros()).unwrap_or(i64::MAX),
            file,
            saved,
        })
    }

    /// An event's `time_us` was received.
    pub fn observe(&mut self, time_us: i64) {
        self.newest = Some(self.newest.map_or(time_us, |newest| newest.max(time_us)));
    }

    /// The `cursor` of the next connection; `None` for the live stream.
    pub fn resume_at(&self) -> Option<i64> {
        match self.newest {
            Some(newest) => Some(newest.saturating_sub(self.rewind).max(0)),
            None => self.start,
        }
    }

    /// Whether the newest time is not in the file yet.
    pub fn unsaved(&self) -> bool {
        self.file.is_some() && self.newest.is_some() && self.newest != self.saved
    }

    /// Writes the newest time to the file (a new file renamed over the old one). Call only
    /// once everything received so far is delivered.
    pub fn save(&mut self) -> Result<(), CursorError> {
        let (Some(path), Some(newest)) = (&self.file, self.newest) else {
            return Ok(());
        };
        if self.saved == Some(newest) {
            return Ok(());
        }
        write(path, newest).map_err(|source| CursorError::Io {
            path: path.clone(),
            source,
        })?;
        self.saved = Some(newest);
        Ok(())
    }
}

fn read(path: &Path) -> Result<Option<i64>, CursorError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(CursorError::Io {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    match text.trim().parse::<i64>() {
        Ok(time_us) if time_us >= 0 => Ok(Some(time_us)),
        _ => Err(CursorError::Invalid {
            path: path.to_path_buf(),
            text: text.trim().chars().take(40).collect(),
        }),
    }
}

fn write(path: &Path, time_us: i64) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let mut file = tempfile::NamedTempFile::new_in(dir)?;
    writeln!(file, "{time_us}")?;
    file.as_file().sync_all()?;
    file.persist(path).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const REWIND: Duration = Duration::from_secs(5);

    #[test]
    fn the_newest_time_is_kept_and_a_connection_resumes_before_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cursor");
        let mut cursor = Cursor::load(&path, None, REWIND).unwrap();
        assert_eq!(cursor.resume_at(), None, "no file, no flag: the live stream");
        assert!(!cursor.unsaved());
        cursor.observe(20_000_000);
        cursor.observe(19_000_000); // out of order
        assert_eq!(cursor.resume_at(), Some(15_000_000));
        assert!(cursor.unsaved());
        cursor.save().unwrap();
        assert!(!cursor.unsaved());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "20000000\n");

        let again = Cursor::load(&path, None, REWIND).unwrap();
        assert_eq!(
            again.resume_at(),
            Some(15_000_000),
            "a restart resumes from the file"
        );
        let flagged = Cursor::load(&path, Some(7), REWIND).unwrap();
        assert_eq!(flagged.resume_at(), Some(7), "--cursor wins, taken as it is");
        let early = Cursor::load(Path::new(""), None, REWIND).map(|mut c| {
            c.observe(1_000);
            c.resume_at()
        });
        assert_eq!(early.unwrap(), Some(0), "never below 0");
    }

    #[test]
    fn no_file_keeps_nothing_and_a_bad_file_names_itself() {
        let mut cursor = Cursor::load(Path::new(""), None, REWIND).unwrap();
        cursor.observe(9);
        assert!(!cursor.unsaved());
        cursor.save().unwrap();

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cursor");
        std::fs::write(&path, "soon").unwrap();
        let error = Cursor::load(&path, None, REWIND).unwrap_err().to_string();
        assert!(
            error.contains("soon") && error.contains("bluesky.cursor_file"),
            "{error}"
        );
    }
}
