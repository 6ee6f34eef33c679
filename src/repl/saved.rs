//! Saved queries: `.sql` files under `queries/` (plus the built-in ones) whose header describes
//! them and declares their parameters:
//!
//! ```sql
//! -- description: Top companies by posts in the last hours.
//! -- param: hours = 1
//! -- param: company = 'AAPL'
//! SELECT ... WHERE minute > now() - INTERVAL '${hours} hours' AND company = :company
//! ```
//!
//! `:name` is replaced in SQL code, `${name}` in code or inside quotes (never in comments), by
//! the value given to `\run name param=value`, else the declared default. Values are inserted as
//! they are typed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use deltalake::arrow::array::{RecordBatch, StringArray};
use deltalake::arrow::datatypes::{DataType, Field, Schema};

use super::ReplError;
use crate::embedded;
use crate::query::lexer::{self, Kind, Token};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Param {
    pub name: String,
    pub default: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedQuery {
    pub name: String,
    pub description: String,
    pub params: Vec<Param>,
    /// The whole file, header included.
    pub text: String,
}

impl SavedQuery {
    /// Reads the header: `-- description: ...` (continued on the comment lines right after it),
    /// `-- param: name [= default]` lines; without a description, the first comment line is it.
    pub fn parse(name: &str, text: &str) -> Result<Self, ReplError> {
        let mut description: Option<String> = None;
        let mut continued = false;
        let mut params = Vec::new();
        for line in text
            .lines()
            .map(str::trim)
            .take_while(|l| l.is_empty() || l.starts_with("--"))
        {
            let comment = line.trim_start_matches('-').trim();
            let continues = std::mem::take(&mut continued) && !comment.is_empty();
            if let Some(rest) = comment.strip_prefix("description:") {
                description = Some(rest.trim().to_string());
                continued = true;
            } else if let Some(rest) = comment.strip_prefix("param:") {
                params.push(parse_param(name, rest)?);
            } else if let Some(text) = description.as_mut().filter(|_| continues) {
                text.push(' ');
                text.push_str(comment);
                continued = true;
            } else if description.is_none() && !comment.is_empty() {
                description = Some(comment.to_string());
            }
        }
        Ok(Self {
            name: name.to_string(),
            description: description.unwrap_or_default(),
            params,
            text: text.to_string(),
        })
    }

    /// The SQL with every parameter replaced by its value from `args`, else its default.
    pub fn bind(&self, args: &[(String, String)]) -> Result<String, ReplError> {
        if let Some((unknown, _)) = args
            .iter()
            .find(|(k, _)| !self.params.iter().any(|p| &p.name == k))
        {
            return Err(self.error(format!("has no parameter `{unknown}` ({})", self.signature())));
        }
        let value = |name: &str| -> Result<String, ReplError> {
            if let Some((_, v)) = args.iter().rev().find(|(k, _)| k == name) {
                return Ok(v.clone());
            }
            match self.params.iter().find(|p| p.name == name) {
                Some(Param {
                    default: Some(default),
                    ..
                }) => Ok(default.clone()),
                Some(_) => Err(self.error(format!("needs `{name}=...` ({})", self.signature()))),
                None => Err(self.error(format!(
                    "uses `{name}` but declares no such parameter (add `-- param: {name} = <default>`)"
                ))),
            }
        };
        let tokens = lexer::tokens(&self.text);
        let mut sql = String::with_capacity(self.text.len());
        let mut i = 0;
        while i < tokens.len() {
            if let Some((name, used)) = placeholder(&tokens, i) {
                sql.push_str(&value(name)?);
                i += used;
                continue;
            }
            match tokens[i].kind {
                Kind::String | Kind::QuotedIdent => sql.push_str(&replace_braced(tokens[i].text, &value)?),
                _ => sql.push_str(tokens[i].text),
            }
            i += 1;
        }
        Ok(sql)
    }

    /// `hours=1, company (required)`.
    pub fn signature(&self) -> String {
        let params: Vec<String> = self
            .params
            .iter()
            .map(|p| match &p.default {
                Some(default) => format!("{}={default}", p.name),
                None => format!("{} (required)", p.name),
            })
            .collect();
        match params.is_empty() {
            true => "no parameters".to_string(),
            false => params.join(", "),
        }
    }

    fn error(&self, message: String) -> ReplError {
        ReplError::Usage(format!("saved query `{}` {message}", self.name))
    }
}

fn parse_param(query: &str, text: &str) -> Result<Param, ReplError> {
    let (name, default) = match text.split_once('=') {
        Some((name, default)) => (name.trim(), Some(default.trim().to_string())),
        None => (text.trim(), None),
    };
    if !is_identifier(name) {
        return Err(ReplError::Usage(format!(
            "saved query `{query}`: `-- param: {text}` must be `-- param: <name> [= <default>]`"
        )));
    }
    Ok(Param {
        name: name.to_string(),
        default,
    })
}

fn is_identifier(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// `:name` (not part of a `::` cast) or `${name}` at token `i`: the name and the tokens it spans.
fn placeholder<'a>(tokens: &[Token<'a>], i: usize) -> Option<(&'a str, usize)> {
    let at = |j: usize| tokens.get(j);
    let word = |j: usize| at(j).filter(|t| t.kind == Kind::Word).map(|t| t.text);
    let token = at(i)?;
    if token.is_punct(':') && !(i > 0 && tokens[i - 1].is_punct(':')) {
        return Some((word(i + 1)?, 2));
    }
    if token.is_punct('$') && at(i + 1)?.is_punct('{') && at(i + 3)?.is_punct('}') {
        return Some((word(i + 2)?, 4));
    }
    None
}

/// Replaces `${name}` inside a quoted token.
fn replace_braced(
    text: &str,
    value: &impl Fn(&str) -> Result<String, ReplError>,
) -> Result<String, ReplError> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        let Some(len) = rest[start + 2..].find('}') else {
            break;
        };
        let name = &rest[start + 2..start + 2 + len];
        out.push_str(&rest[..start]);
        if is_identifier(name) {
            out.push_str(&value(name)?);
        } else {
            out.push_str(&rest[start..start + 3 + len]);
        }
        rest = &rest[start + 3 + len..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The built-in queries plus the `.sql` files in a directory; a file replaces the built-in query
/// of the same name.
pub struct SavedQueries {
    dir: PathBuf,
}

impl SavedQueries {
    pub fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_path_buf(),
        }
    }

    pub fn list(&self) -> Result<Vec<SavedQuery>, ReplError> {
        let mut texts: BTreeMap<String, String> = embedded::QUERIES
            .iter()
            .map(|(file, text)| (file.trim_end_matches(".sql").to_string(), text.to_string()))
            .collect();
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return parse_all(texts),
            Err(e) => return Err(ReplError::io(&self.dir, e)),
        };
        for entry in entries {
            let path = entry.map_err(|e| ReplError::io(&self.dir, e))?.path();
            let Some(name) = path.file_stem().and_then(|s| s.to_str()) else {
                continue;
            };
            if path.extension().is_some_and(|e| e == "sql") {
                let text = std::fs::read_to_string(&path).map_err(|e| ReplError::io(&path, e))?;
                texts.insert(name.to_string(), text);
            }
        }
        parse_all(texts)
    }

    pub fn get(&self, name: &str) -> Result<SavedQuery, ReplError> {
        let all = self.list()?;
        let names: Vec<&str> = all.iter().map(|q| q.name.as_str()).collect();
        let error = ReplError::Usage(format!("no saved query `{name}` (saved: {})", names.join(", ")));
        all.iter().find(|q| q.name == name).cloned().ok_or(error)
    }

    /// Writes `sql` as `<dir>/<name>.sql` with a description header; never overwrites.
    pub fn save(&self, name: &str, sql: &str) -> Result<PathBuf, ReplError> {
        if !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-".contains(c))
            || name.is_empty()
        {
            return Err(ReplError::Usage(format!(
                "`{name}`: name a saved query with letters, digits, '-' and '_'"
            )));
        }
        let path = self.dir.join(format!("{name}.sql"));
        if path.exists() {
            return Err(ReplError::Usage(format!(
                "{} exists: choose another name or delete it first",
                path.display()
            )));
        }
        std::fs::create_dir_all(&self.dir).map_err(|e| ReplError::io(&self.dir, e))?;
        let today = chrono::Utc::now().format("%Y-%m-%d");
        let text = format!("-- description: saved from the REPL on {today}\n{sql};\n");
        std::fs::write(&path, text).map_err(|e| ReplError::io(&path, e))?;
        Ok(path)
    }

    /// `\queries`: name, description and parameters of each saved query.
    pub fn table(&self) -> Result<RecordBatch, ReplError> {
        let all = self.list()?;
        let schema = Schema::new(vec![
            Field::new("name", DataType::Utf8, false),
            Field::new("description", DataType::Utf8, false),
            Field::new("parameters", DataType::Utf8, false),
        ]);
        let column =
            |f: fn(&SavedQuery) -> String| Arc::new(StringArray::from_iter_values(all.iter().map(f)));
        Ok(RecordBatch::try_new(
            Arc::new(schema),
            vec![
                column(|q| q.name.clone()),
                column(|q| q.description.clone()),
                column(SavedQuery::signature),
            ],
        )?)
    }
}

fn parse_all(texts: BTreeMap<String, String>) -> Result<Vec<SavedQuery>, ReplError> {
    texts
        .iter()
        .map(|(name, text)| SavedQuery::parse(name, text))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const QUERY: &str = "-- description: Posts\n-- per company.\n-- param: hours = 1\n-- param: company\n\
        SELECT x::int, '10:30 ${company}', \"${company}\" FROM t -- :hours\n\
        WHERE h < :hours AND c = '${company}' AND d = ${hours}";

    fn args(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn header_declares_description_and_parameters() {
        let query = SavedQuery::parse("q", QUERY).unwrap();
        assert_eq!(query.description, "Posts per company.");
        assert_eq!(query.signature(), "hours=1, company (required)");
        let error = SavedQuery::parse("q", "-- param: 2x = 1\nSELECT 1").unwrap_err();
        assert!(error.to_string().contains("<name>"), "{error}");
    }

    #[test]
    fn parameters_are_replaced_in_code_and_inside_quotes() {
        let query = SavedQuery::parse("q", QUERY).unwrap();
        let sql = query.bind(&args(&[("company", "AAPL")])).unwrap();
        assert!(
            sql.ends_with(
                "SELECT x::int, '10:30 AAPL', \"AAPL\" FROM t -- :hours\nWHERE h < 1 AND c = 'AAPL' AND d = 1"
            ),
            "{sql}"
        );
        let sql = query.bind(&args(&[("company", "X"), ("hours", "24")])).unwrap();
        assert!(sql.ends_with("WHERE h < 24 AND c = 'X' AND d = 24"), "{sql}");
    }

    #[test]
    fn missing_unknown_and_undeclared_parameters_are_errors() {
        let query = SavedQuery::parse("q", QUERY).unwrap();
        let error = query.bind(&[]).unwrap_err().to_string();
        assert!(error.contains("needs `company=...`"), "{error}");
        let error = query
            .bind(&args(&[("company", "X"), ("days", "2")]))
            .unwrap_err()
            .to_string();
        assert!(error.contains("no parameter `days`"), "{error}");
        let undeclared = SavedQuery::parse("u", "SELECT :limit").unwrap();
        assert!(undeclared
            .bind(&[])
            .unwrap_err()
            .to_string()
            .contains("-- param: limit"));
    }

    #[test]
    fn every_built_in_query_parses_and_binds_with_defaults() {
        let queries = SavedQueries::new(Path::new("/nonexistent")).list().unwrap();
        assert_eq!(queries.len(), embedded::QUERIES.len());
        for query in queries {
            assert!(!query.description.is_empty(), "{} has no description", query.name);
            query.bind(&[]).unwrap();
        }
    }

    #[test]
    fn saved_files_add_to_and_replace_built_ins_and_are_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let saved = SavedQueries::new(dir.path());
        saved.save("dlq_triage", "SELECT 1").unwrap();
        saved.save("mine", "SELECT 2").unwrap();
        assert!(saved.save("mine", "SELECT 3").is_err());
        assert!(saved.save("../up", "SELECT 3").is_err());
        let all = saved.list().unwrap();
        assert_eq!(all.len(), embedded::QUERIES.len() + 1);
        let mine = saved.get("mine").unwrap();
        assert!(mine.text.ends_with("SELECT 2;\n"));
        assert!(mine.description.starts_with("saved from the REPL"));
        assert!(saved.get("dlq_triage").unwrap().text.contains("SELECT 1;"));
    }
}
