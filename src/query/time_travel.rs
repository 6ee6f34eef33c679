//! Athena's time travel syntax: `FROM silver.tweets VERSION AS OF 12` and
//! `FROM silver.tweets TIMESTAMP AS OF '2026-11-01T10:00:00Z'`. The statement is rewritten to read
//! a hidden table, `"__time_travel"."silver.tweets@v12"`, that the catalog registers with that
//! version of the Delta table loaded.

use chrono::{DateTime, NaiveDate, NaiveDateTime, SecondsFormat, Utc};
use deltalake::datafusion::common::TableReference;

use super::lexer::{self, Kind, Token};
use super::QueryError;

#[derive(Debug, thiserror::Error)]
pub enum TimeTravelError {
    #[error("VERSION AS OF needs a version number like `VERSION AS OF 3`, found `{found}`")]
    BadVersion { found: String },
    #[error("TIMESTAMP AS OF needs a quoted time like '2026-11-01T10:00:00Z', found `{found}`")]
    BadTime { found: String },
    #[error("{table} has no version {version}: its latest version is {latest}")]
    NoSuchVersion {
        table: String,
        version: u64,
        latest: u64,
    },
    #[error("{table} did not exist yet at {}: its first version was committed at {}", time.to_rfc3339(), first.to_rfc3339())]
    BeforeFirstCommit {
        table: String,
        time: DateTime<Utc>,
        first: DateTime<Utc>,
    },
}

/// The schema holding the versions registered for time travel.
pub const SCHEMA: &str = "__time_travel";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AsOf {
    Version(u64),
    /// The version that was current at this time.
    Timestamp(DateTime<Utc>),
}

/// One table read as of a version or time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pin {
    pub table: String,
    pub as_of: AsOf,
}

impl Pin {
    fn label(&self) -> String {
        match self.as_of {
            AsOf::Version(version) => format!("{}@v{version}", self.table),
            AsOf::Timestamp(time) => format!(
                "{}@{}",
                self.table,
                time.to_rfc3339_opts(SecondsFormat::AutoSi, true)
            ),
        }
    }

    /// The hidden table's name.
    pub fn reference(&self) -> TableReference {
        TableReference::partial(SCHEMA, self.label())
    }

    fn sql(&self) -> String {
        format!("\"{SCHEMA}\".\"{}\"", self.label())
    }
}

/// Replaces every `<table> VERSION AS OF <n>` / `<table> TIMESTAMP AS OF '<time>'` in `sql` by the
/// hidden table of that version; returns the new SQL and the versions it needs.
pub fn rewrite(sql: &str) -> Result<(String, Vec<Pin>), QueryError> {
    let tokens = lexer::tokens(sql);
    let mut rewritten = String::with_capacity(sql.len());
    let mut pins = Vec::new();
    let (mut copied, mut next_token) = (0, 0);
    for name in lexer::dotted_names(&tokens) {
        if name.first < next_token {
            continue;
        }
        let Some((as_of, last)) = as_of_clause(&tokens, name.after)? else {
            continue;
        };
        let pin = Pin {
            table: name.name,
            as_of,
        };
        rewritten.push_str(&sql[copied..tokens[name.first].start]);
        rewritten.push_str(&pin.sql());
        copied = tokens[last].end();
        next_token = last + 1;
        pins.push(pin);
    }
    rewritten.push_str(&sql[copied..]);
    Ok((rewritten, pins))
}

/// `VERSION AS OF <n>` or `TIMESTAMP AS OF '<time>'` starting after token `after`: the version
/// and the index of the clause's last token.
fn as_of_clause(tokens: &[Token], after: usize) -> Result<Option<(AsOf, usize)>, QueryError> {
    let mut position = after;
    let mut next = || {
        let index = lexer::next_significant(tokens, position)?;
        position = index + 1;
        Some(index)
    };
    let Some(kind) = next() else {
        return Ok(None);
    };
    let is_version = tokens[kind].is_keyword("VERSION");
    if !is_version && !tokens[kind].is_keyword("TIMESTAMP") {
        return Ok(None);
    }
    for keyword in ["AS", "OF"] {
        match next() {
            Some(i) if tokens[i].is_keyword(keyword) => {}
            _ => return Ok(None),
        }
    }
    let value = next().map(|i| (i, tokens[i]));
    let as_of = match (is_version, value) {
        (true, Some((_, token))) if token.kind == Kind::Number => token
            .text
            .parse()
            .map(AsOf::Version)
            .map_err(|_| bad_version(token.text))?,
        (true, other) => return Err(bad_version(other.map_or("", |(_, t)| t.text))),
        (false, Some((_, token))) if token.kind == Kind::String && token.closed => AsOf::Timestamp(
            parse_time(&token.text[1..token.text.len() - 1].replace("''", "'"))?,
        ),
        (false, other) => return Err(bad_time(other.map_or("", |(_, t)| t.text))),
    };
    Ok(Some((as_of, value.expect("matched above").0)))
}

/// RFC 3339 (`2026-11-01T10:00:00Z`), or a UTC `2026-11-01 10:00:00` or `2026-11-01`.
fn parse_time(text: &str) -> Result<DateTime<Utc>, QueryError> {
    if let Ok(time) = DateTime::parse_from_rfc3339(text) {
        return Ok(time.with_timezone(&Utc));
    }
    ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"]
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(text, f).ok())
        .or_else(|| {
            NaiveDate::parse_from_str(text, "%Y-%m-%d")
                .ok()?
                .and_hms_opt(0, 0, 0)
        })
        .map(|naive| naive.and_utc())
        .ok_or_else(|| bad_time(text))
}

fn bad_version(found: &str) -> QueryError {
    TimeTravelError::BadVersion {
        found: found.to_string(),
    }
    .into()
}

fn bad_time(found: &str) -> QueryError {
    TimeTravelError::BadTime {
        found: found.to_string(),
    }
    .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_and_timestamps_become_hidden_tables() {
        let (sql, pins) = rewrite(
            "SELECT count(*) FROM silver.tweets VERSION AS OF 3 t \
             JOIN gold.x TIMESTAMP as of '2026-11-01 10:00:00' USING (id) -- VERSION AS OF 9",
        )
        .unwrap();
        assert_eq!(
            sql,
            "SELECT count(*) FROM \"__time_travel\".\"silver.tweets@v3\" t \
             JOIN \"__time_travel\".\"gold.x@2026-11-01T10:00:00Z\" USING (id) -- VERSION AS OF 9"
        );
        assert_eq!(pins[0].as_of, AsOf::Version(3));
        assert_eq!(pins[1].table, "gold.x");
        assert_eq!(pins[1].reference().table(), "gold.x@2026-11-01T10:00:00Z");
    }

    #[test]
    fn other_sql_is_untouched_and_bad_clauses_are_explained() {
        let sql = "SELECT 'x VERSION AS OF 1', version FROM bronze";
        assert_eq!(rewrite(sql).unwrap(), (sql.to_string(), vec![]));
        let error = rewrite("SELECT * FROM bronze VERSION AS OF latest").unwrap_err();
        assert!(error.to_string().contains("version number"), "{error}");
        let error = rewrite("SELECT * FROM bronze TIMESTAMP AS OF 'yesterday'").unwrap_err();
        assert!(error.to_string().contains("2026-11-01T10:00:00Z"), "{error}");
        assert_eq!(
            parse_time("2026-11-01T10:00:00+02:00").unwrap().to_rfc3339(),
            "2026-11-01T08:00:00+00:00"
        );
    }
}
