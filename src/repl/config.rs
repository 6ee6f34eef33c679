//! The `[repl]` section: `tweetlake sql`, interactive and one-shot.

use std::path::PathBuf;

use serde::Deserialize;

use super::format::Format;
use crate::settings::byte_size;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReplConfig {
    /// The REPL's history file; empty for `<user data dir>/tweetlake/history`.
    pub history_file: PathBuf,
    /// A query that would scan more than this many bytes is stopped (`0`: no limit).
    /// A number of bytes or a size like `500MB`, `10GiB`.
    #[serde(with = "byte_size")]
    pub max_bytes_scanned: u64,
    /// The result format: `table`, `csv`, `json`, `ndjson` or `markdown`.
    pub format: Format,
    /// Saved queries (`\queries`, `\run`, `\save`), added to the built-in ones.
    pub queries_dir: PathBuf,
    /// Print time, rows and bytes scanned after each query in the REPL.
    pub timing: bool,
    /// The pager for results taller than the terminal: empty for `$PAGER`, else `less -FRX`;
    /// `off` never pages.
    pub pager: String,
}

impl Default for ReplConfig {
    fn default() -> Self {
        Self {
            history_file: PathBuf::new(),
            max_bytes_scanned: 0,
            format: Format::Table,
            queries_dir: PathBuf::from("queries"),
            timing: true,
            pager: String::new(),
        }
    }
}
