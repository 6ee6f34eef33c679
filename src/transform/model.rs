//! One SQL model: a `.sql` file holding a SELECT, its table name and its header directives.
//!
//! Directives are SQL comments of the form `-- @key: value`:
//! - `@materialized: append | merge | insert_new` (default `append`)
//! - `@partition_by: col[, col]`
//! - `@unique_key: col[, col]` (required by `merge` and `insert_new`)
//! - `@dedup_window: col N days` (`insert_new` only: the check reads only these recent days)
//! - `@update: col = expression` (merge only; repeatable; `target.` and `source.` name the rows)
//! - `@zorder: col[, col]` (maintenance clusters the table's files by these columns)

use std::path::Path;

use super::TransformError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Materialization {
    /// Each batch's rows are appended.
    Append,
    /// Each batch's rows are upserted by `keys`: matching rows get `updates` (other columns take
    /// the source value), new keys are inserted.
    Merge {
        keys: Vec<String>,
        updates: Vec<(String, String)>,
    },
    /// Each batch's rows are appended, except those whose `keys` the table already holds (within
    /// `window`, when given): a post delivered again in a later batch is not inserted twice.
    InsertNew {
        keys: Vec<String>,
        window: Option<DedupWindow>,
    },
}

/// How far back an `insert_new` model looks for keys it already holds: `column` (a date, best
/// the partition column) no older than `days` before the batch's newest date (or the day the
/// batch was planned, if earlier). Rows older than that are inserted without a check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DedupWindow {
    pub column: String,
    pub days: u32,
}

#[derive(Debug, Clone)]
pub struct Model {
    /// Dotted table name: `sql/silver/tweets.sql` is `silver.tweets`.
    pub name: String,
    /// Where the SQL came from, for error messages (`sql/silver/tweets.sql`).
    pub origin: String,
    pub sql: String,
    pub materialization: Materialization,
    pub partition_by: Vec<String>,
    /// Tables this model reads, as dotted names.
    pub inputs: Vec<String>,
    /// Columns maintenance clusters the table's files by (`@zorder`), if any.
    pub zorder: Option<ZOrder>,
}

/// A model's `@zorder` directive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZOrder {
    pub columns: Vec<String>,
    /// The directive's 1-based line, for errors.
    pub line: usize,
}

/// The dotted table name of a model file relative to the SQL directory.
pub fn table_name_for(relative: &Path, origin: &str) -> Result<String, TransformError> {
    let parts: Vec<String> = relative
        .with_extension("")
        .components()
        .map(|c| c.as_os_str().to_string_lossy().to_lowercase())
        .collect();
    let valid = |p: &String| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if parts.is_empty() || parts.len() > 2 || !parts.iter().all(valid) {
        return Err(TransformError::Layout {
            origin: origin.to_string(),
        });
    }
    Ok(parts.join("."))
}

struct Directives {
    materialized: Option<(usize, String)>,
    partition_by: Vec<String>,
    unique_key: Vec<String>,
    updates: Vec<(String, String)>,
    zorder: Option<ZOrder>,
    dedup_window: Option<(usize, DedupWindow)>,
}

fn list(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

/// Every `-- @key: value` comment of `sql`, in order, as `(1-based line, key, value)`.
///
/// Shared by the models and `tweetlake test`'s SQL files; each reader knows its own keys.
pub fn directives(sql: &str, origin: &str) -> Result<Vec<(usize, String, String)>, TransformError> {
    let mut found = Vec::new();
    for (index, line) in sql.lines().enumerate() {
        let Some(rest) = line.trim_start().strip_prefix("--") else {
            continue;
        };
        let Some(directive) = rest.trim_start().strip_prefix('@') else {
            continue;
        };
        let (key, value) = directive
            .split_once(':')
            .ok_or_else(|| TransformError::Directive {
                origin: origin.to_string(),
                line: index + 1,
                message: format!("`@{directive}` needs the form `-- @key: value`"),
            })?;
        found.push((index + 1, key.trim().to_string(), value.trim().to_string()));
    }
    Ok(found)
}

fn parse_directives(sql: &str, origin: &str) -> Result<Directives, TransformError> {
    let mut d = Directives {
        materialized: None,
        partition_by: Vec::new(),
        unique_key: Vec::new(),
        updates: Vec::new(),
        zorder: None,
        dedup_window: None,
    };
    for (line, key, value) in directives(sql, origin)? {
        let error = |message: String| TransformError::Directive {
            origin: origin.to_string(),
            line,
            message,
        };
        match key.as_str() {
            "materialized" => d.materialized = Some((line, value.to_lowercase())),
            "partition_by" => d.partition_by = list(&value),
            "unique_key" => d.unique_key = list(&value),
            "zorder" => {
                let columns = list(&value);
                if columns.is_empty() {
                    return Err(error("`@zorder` needs one or more columns: `-- @zorder: company, minute`".into()));
                }
                d.zorder = Some(ZOrder { columns, line });
            }
            "dedup_window" => d.dedup_window = Some((line, parse_window(&value).map_err(error)?)),
            "update" => {
                let (column, expression) = value.split_once('=').ok_or_else(|| {
                    error(format!("`@update: {value}` needs the form `column = expression`"))
                })?;
                d.updates
                    .push((column.trim().to_string(), expression.trim().to_string()));
            }
            other => {
                return Err(error(format!(
                    "unknown directive `@{other}` (known: materialized, partition_by, unique_key, update, zorder, dedup_window)"
                )))
            }
        }
    }
    Ok(d)
}

/// `created_date 2 days`: a column and a whole number of days.
fn parse_window(value: &str) -> Result<DedupWindow, String> {
    let usage = || format!("`@dedup_window: {value}` needs the form `column N days` (`created_date 2 days`)");
    let words: Vec<&str> = value.split_whitespace().collect();
    let [column, days, unit] = words[..] else {
        return Err(usage());
    };
    let days: u32 = days.parse().map_err(|_| usage())?;
    if !matches!(unit.to_lowercase().as_str(), "day" | "days") {
        return Err(usage());
    }
    Ok(DedupWindow {
        column: column.to_string(),
        days,
    })
}

impl Model {
    /// Builds a model from its SQL; `inputs` are filled in by the model set, which parses the SQL.
    pub fn new(name: String, origin: String, sql: String) -> Result<Self, TransformError> {
        let d = parse_directives(&sql, &origin)?;
        let directive_error = |line: usize, message: &str| TransformError::Directive {
            origin: origin.clone(),
            line,
            message: message.to_string(),
        };
        let needs_keys = |line: usize, m: &str| {
            directive_error(
                line,
                &format!("`@materialized: {m}` needs `-- @unique_key: col, ...`"),
            )
        };
        let materialization = match d.materialized {
            None => Materialization::Append,
            Some((_, m)) if m == "append" => Materialization::Append,
            Some((line, m)) if d.unique_key.is_empty() && (m == "merge" || m == "insert_new") => {
                return Err(needs_keys(line, &m))
            }
            Some((_, m)) if m == "merge" => Materialization::Merge {
                keys: d.unique_key,
                updates: d.updates,
            },
            Some((_, m)) if m == "insert_new" => Materialization::InsertNew {
                keys: d.unique_key,
                window: d.dedup_window.clone().map(|(_, window)| window),
            },
            Some((line, m)) => {
                return Err(directive_error(
                    line,
                    &format!("materialized is `{m}`: use append, merge or insert_new"),
                ))
            }
        };
        if let (Some((line, _)), false) = (
            &d.dedup_window,
            matches!(materialization, Materialization::InsertNew { .. }),
        ) {
            return Err(directive_error(
                *line,
                "`@dedup_window` needs `-- @materialized: insert_new`",
            ));
        }
        Ok(Self {
            name,
            origin,
            sql,
            materialization,
            partition_by: d.partition_by,
            inputs: Vec::new(),
            zorder: d.zorder,
        })
    }

    /// 1-based line of the first mention of `table` in the SQL (outside comments), for errors.
    pub fn line_of(&self, table: &str) -> usize {
        self.find_line(table).unwrap_or(1)
    }

    /// 1-based line of the first mention of `name` as a whole word outside comments, if any.
    pub fn find_line(&self, name: &str) -> Option<usize> {
        let needle = name.to_lowercase();
        self.sql
            .lines()
            .position(|l| {
                let code = l.split("--").next().unwrap_or("").to_lowercase();
                code.match_indices(&needle).any(|(at, _)| {
                    let before = code[..at].chars().last();
                    let after = code[at + needle.len()..].chars().next();
                    let ident =
                        |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '.');
                    !ident(before) && !ident(after)
                })
            })
            .map(|i| i + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directives_configure_merge_and_partitions() {
        let sql = "-- doc\n-- @materialized: merge\n-- @unique_key: company, minute\n\
                   -- @update: posts = target.posts + source.posts\n-- @partition_by: day\nSELECT 1";
        let m = Model::new("gold.x".into(), "sql/gold/x.sql".into(), sql.into()).unwrap();
        assert_eq!(m.partition_by, vec!["day"]);
        assert_eq!(
            m.materialization,
            Materialization::Merge {
                keys: vec!["company".into(), "minute".into()],
                updates: vec![("posts".into(), "target.posts + source.posts".into())],
            }
        );
    }

    #[test]
    fn bad_directives_name_file_and_line() {
        let err = Model::new(
            "a".into(),
            "sql/a.sql".into(),
            "SELECT 1\n-- @materialised: merge".into(),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string().split(':').take(2).collect::<Vec<_>>(),
            ["sql/a.sql", "2"]
        );
        let err = Model::new(
            "a".into(),
            "sql/a.sql".into(),
            "-- @materialized: merge\nSELECT 1".into(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("unique_key"), "{err}");
    }

    #[test]
    fn insert_new_takes_keys_and_a_window_in_days() {
        let sql = "-- @materialized: insert_new\n-- @unique_key: id\n-- @dedup_window: created_date 2 days\nSELECT 1";
        let m = Model::new("silver.t".into(), "sql/silver/t.sql".into(), sql.into()).unwrap();
        assert_eq!(
            m.materialization,
            Materialization::InsertNew {
                keys: vec!["id".into()],
                window: Some(DedupWindow {
                    column: "created_date".into(),
                    days: 2
                }),
            }
        );
        let model = |sql: &str| Model::new("t".into(), "sql/t.sql".into(), sql.into());
        let err = model("-- @materialized: insert_new\nSELECT 1").unwrap_err();
        assert!(err.to_string().contains("unique_key"), "{err}");
        let err = model("-- @materialized: insert_new\n-- @unique_key: id\n-- @dedup_window: created_date 2 weeks\nSELECT 1").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("sql/t.sql:3: `@dedup_window: created_date 2 weeks` needs"),
            "{err}"
        );
        let err = model("-- @unique_key: id\n-- @dedup_window: created_date 1 day\nSELECT 1").unwrap_err();
        assert!(
            err.to_string().contains("needs `-- @materialized: insert_new`"),
            "{err}"
        );
    }

    #[test]
    fn table_names_follow_the_path() {
        let name = |p: &str| table_name_for(Path::new(p), p);
        assert_eq!(name("silver/tweets.sql").unwrap(), "silver.tweets");
        assert_eq!(name("top.sql").unwrap(), "top");
        assert!(name("a/b/c.sql").is_err());
        assert!(name("a/b-c.sql").is_err());
    }
}
