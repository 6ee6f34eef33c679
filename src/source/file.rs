//! A JSONL (or `.jsonl.gz`) file of X stream messages, one message per line.
//!
//! The file is one partition (0) of a topic named after the file; a record's offset is its
//! 0-based line number. Blank lines (stream keep-alives) are skipped but still counted, so an
//! offset always points at the line a user can open in an editor.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use deltalake::arrow::array::RecordBatch;

use super::{
    OffsetRange, Positions, RawBatchBuilder, ReadLimits, Source, SourceBatch, SourceError, TopicPartition,
};

/// The file source's settings (`source.path`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSourceConfig {
    /// The `.jsonl` or `.jsonl.gz` file to read.
    pub path: PathBuf,
}

impl Default for FileSourceConfig {
    fn default() -> Self {
        Self {
            path: PathBuf::from("sample_posts.jsonl"),
        }
    }
}

/// How often a tailing read looks for lines appended to the file.
const TAIL_POLL: Duration = Duration::from_millis(100);

enum Content {
    Path(PathBuf),
    /// Bytes embedded in the binary (the demo's sample posts).
    Bytes(Arc<[u8]>),
}

pub struct FileSource {
    content: Content,
    name: String,
    gzip: bool,
    reader: Option<Box<dyn BufRead + Send>>,
    /// Line number of the next line `reader` yields.
    next_line: i64,
    /// A last line without its newline yet, held back while tailing a growing file.
    pending: Vec<u8>,
}

impl FileSource {
    pub fn open(path: &Path) -> Result<Self, SourceError> {
        std::fs::metadata(path).map_err(|source| SourceError::Io {
            path: path.display().to_string(),
            source,
        })?;
        let name = path.file_name().map_or_else(
            || path.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        Ok(Self::new(Content::Path(path.to_path_buf()), name))
    }

    pub fn from_bytes(name: &str, bytes: impl Into<Arc<[u8]>>) -> Self {
        Self::new(Content::Bytes(bytes.into()), name.to_string())
    }

    /// Every record, as one batch: for benchmarks and tests that decode a whole file at once.
    pub async fn read_all(&mut self) -> Result<RecordBatch, SourceError> {
        let everything = ReadLimits {
            max_records: usize::MAX,
            max_bytes: usize::MAX,
            deadline: None,
            until: None,
        };
        let start = self.initial_positions().await?;
        Ok(self.read_next(&start, &everything).await?.records)
    }

    fn new(content: Content, name: String) -> Self {
        let gzip = name.ends_with(".gz");
        Self {
            content,
            name,
            gzip,
            reader: None,
            next_line: 0,
            pending: Vec::new(),
        }
    }

    fn topic_partition(&self) -> TopicPartition {
        TopicPartition {
            topic: self.name.clone(),
            partition: 0,
        }
    }

    fn path_text(&self) -> String {
        match &self.content {
            Content::Path(p) => p.display().to_string(),
            Content::Bytes(_) => format!("<embedded {}>", self.name),
        }
    }

    fn io_error(&self, source: std::io::Error) -> SourceError {
        SourceError::Io {
            path: self.path_text(),
            source,
        }
    }

    fn fresh_reader(&self) -> Result<Box<dyn BufRead + Send>, SourceError> {
        let raw: Box<dyn Read + Send> = match &self.content {
            Content::Path(p) => Box::new(std::fs::File::open(p).map_err(|e| self.io_error(e))?),
            Content::Bytes(b) => Box::new(std::io::Cursor::new(Arc::clone(b))),
        };
        let decoded: Box<dyn Read + Send> = if self.gzip {
            Box::new(flate2::read::MultiGzDecoder::new(raw))
        } else {
            raw
        };
        Ok(Box::new(BufReader::with_capacity(1 << 20, decoded)))
    }

    /// Positions the reader so that the next line it yields is `line`.
    fn seek_line(&mut self, line: i64) -> Result<(), SourceError> {
        if self.reader.is_some() && self.next_line == line {
            return Ok(());
        }
        self.reader = Some(self.fresh_reader()?);
        self.next_line = 0;
        self.pending.clear();
        let mut skipped = Vec::new();
        while self.next_line < line {
            skipped.clear();
            if self.read_line(&mut skipped, PartialLine::Accept)? == LineRead::Eof {
                break;
            }
        }
        Ok(())
    }

    /// Reads the next line into `buf` (without its line ending).
    fn read_line(&mut self, buf: &mut Vec<u8>, partial: PartialLine) -> Result<LineRead, SourceError> {
        buf.append(&mut self.pending);
        let reader = self.reader.as_mut().expect("seek_line opened the reader");
        let read = reader.read_until(b'\n', buf);
        let n = read.map_err(|e| self.io_error(e))?;
        if n == 0 && buf.is_empty() {
            return Ok(LineRead::Eof);
        }
        if buf.last() != Some(&b'\n') && partial == PartialLine::HoldBack {
            std::mem::swap(&mut self.pending, buf);
            return Ok(LineRead::Eof);
        }
        while matches!(buf.last(), Some(b'\n' | b'\r')) {
            buf.pop();
        }
        self.next_line += 1;
        Ok(LineRead::Line)
    }
}

/// What to do with a last line that has no line ending yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PartialLine {
    /// Tailing a file: its writer may still be appending to the line, so it waits for the
    /// next read.
    HoldBack,
    /// The line is complete as it is.
    Accept,
}

#[derive(PartialEq, Eq)]
enum LineRead {
    Line,
    Eof,
}

fn is_blank(line: &[u8]) -> bool {
    line.iter().all(u8::is_ascii_whitespace)
}

impl Source for FileSource {
    fn describe(&self) -> String {
        format!("file:{}", self.path_text())
    }

    async fn initial_positions(&mut self) -> Result<Positions, SourceError> {
        Ok(Positions::from([(self.topic_partition(), 0)]))
    }

    async fn end_positions(&mut self) -> Result<Positions, SourceError> {
        let mut reader = self.fresh_reader()?;
        let mut lines = 0i64;
        let mut buf = Vec::new();
        loop {
            buf.clear();
            let n = reader.read_until(b'\n', &mut buf).map_err(|e| self.io_error(e))?;
            if n == 0 {
                break;
            }
            lines += 1;
        }
        Ok(Positions::from([(self.topic_partition(), lines)]))
    }

    async fn read_next(&mut self, from: &Positions, limits: &ReadLimits) -> Result<SourceBatch, SourceError> {
        let tp = self.topic_partition();
        let start = from.get(&tp).copied().unwrap_or(0);
        let until = limits
            .until
            .as_ref()
            .and_then(|u| u.get(&tp).copied())
            .unwrap_or(i64::MAX);
        self.seek_line(start)?;
        let partial = match limits.deadline {
            Some(_) => PartialLine::HoldBack,
            None => PartialLine::Accept,
        };
        let mut builder = RawBatchBuilder::default();
        let mut line = Vec::with_capacity(4096);
        while builder.len() < limits.max_records
            && builder.bytes() < limits.max_bytes
            && self.next_line < until
        {
            line.clear();
            let offset = self.next_line;
            match self.read_line(&mut line, partial)? {
                LineRead::Line if is_blank(&line) => {}
                LineRead::Line => builder.push(&tp.topic, 0, offset, None, None, Some(&line)),
                LineRead::Eof => match limits.deadline {
                    Some(deadline) if Instant::now() + TAIL_POLL < deadline => {
                        tokio::time::sleep(TAIL_POLL).await;
                    }
                    _ => break,
                },
            }
        }
        let range = OffsetRange {
            topic: tp.topic.clone(),
            partition: 0,
            start,
            end: self.next_line,
        };
        Ok(SourceBatch {
            records: builder.finish(),
            ranges: vec![range],
        })
    }

    async fn read_ranges(&mut self, ranges: &[OffsetRange]) -> Result<RecordBatch, SourceError> {
        let tp = self.topic_partition();
        let mut builder = RawBatchBuilder::default();
        let mut line = Vec::with_capacity(4096);
        for range in ranges.iter().filter(|r| r.topic_partition() == tp) {
            self.seek_line(range.start)?;
            while self.next_line < range.end {
                line.clear();
                let offset = self.next_line;
                if self.read_line(&mut line, PartialLine::Accept)? == LineRead::Eof {
                    return Err(SourceError::RangeGone {
                        path: self.path_text(),
                        range: range.to_string(),
                    });
                }
                if !is_blank(&line) {
                    builder.push(&tp.topic, 0, offset, None, None, Some(&line));
                }
            }
        }
        Ok(builder.finish())
    }
}
