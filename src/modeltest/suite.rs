//! Test files into checks: TOML suites (`*.toml`) and SQL assertions (`*.sql`).

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{Input, ModelTestError, TestFiles};
use crate::transform::model::directives;
use crate::transform::{Materialization, Model, ModelSet, BRONZE};

/// The checks of one test file and the run they read.
#[derive(Debug)]
pub struct Suite {
    /// The file, for messages (`sql/tests/silver_tweets.toml`).
    pub origin: String,
    pub run: RunKey,
    pub checks: Vec<Check>,
}

/// What a run is made of: the input file (None: the bundled sample posts) and the batch size
/// (None: the whole input in one batch). Suites with the same key share one run.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct RunKey {
    pub input: Option<String>,
    pub batch_size: Option<usize>,
}

#[derive(Debug)]
pub struct Check {
    /// What the check says, for the report (`silver.tweets.id is not null`).
    pub name: String,
    pub kind: CheckKind,
}

#[derive(Debug)]
pub enum CheckKind {
    /// A query that must return no rows; the rows it returns are the failures.
    NoRows { sql: String },
    /// No NULL in `column` of `table`.
    NotNull { table: String, column: String },
    /// A query whose rows must be `rows`, in order (only the columns a row names are compared).
    Rows { sql: String, rows: Vec<toml::Table> },
    /// A merge model's table equals its own SELECT (`sql`) run over its inputs' whole tables.
    EqualsRecompute { table: String, sql: String },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SuiteFile {
    input: Option<String>,
    batch_size: Option<usize>,
    #[serde(default)]
    model: Vec<ModelChecks>,
    #[serde(default)]
    expect: Vec<Expectation>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ModelChecks {
    name: String,
    #[serde(default)]
    not_null: Vec<String>,
    #[serde(default)]
    unique: Vec<String>,
    #[serde(default)]
    accepted_values: BTreeMap<String, Vec<toml::Value>>,
    #[serde(default)]
    equals_recompute: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Expectation {
    name: String,
    sql: String,
    rows: Vec<toml::Table>,
}

/// Reads every `*.toml` and `*.sql` test file, in name order.
pub fn load(files: &TestFiles, models: &ModelSet, dlq_table: &str) -> Result<Vec<Suite>, ModelTestError> {
    let tables = Tables { models, dlq_table };
    let mut suites = Vec::new();
    for name in files.names()? {
        let origin = files.origin(&name);
        let text = String::from_utf8(files.read(&name)?).map_err(|_| ModelTestError::Invalid {
            origin: origin.clone(),
            message: "not UTF-8".into(),
        })?;
        let suite = match name.ends_with(".toml") {
            true => toml_suite(&text, origin, &tables)?,
            false => sql_suite(&text, &name, origin)?,
        };
        suites.push(suite);
    }
    Ok(suites)
}

/// The tables a check may name.
struct Tables<'a> {
    models: &'a ModelSet,
    dlq_table: &'a str,
}

impl Tables<'_> {
    fn model(&self, name: &str) -> Option<&Model> {
        self.models.models().iter().find(|m| m.name == name)
    }

    fn known(&self, name: &str) -> bool {
        name == BRONZE || name == self.dlq_table || self.model(name).is_some()
    }
}

fn toml_suite(text: &str, origin: String, tables: &Tables) -> Result<Suite, ModelTestError> {
    let file: SuiteFile = toml::from_str(text).map_err(|e| ModelTestError::Invalid {
        origin: origin.clone(),
        message: e.to_string(),
    })?;
    let invalid = |message: String| ModelTestError::Invalid {
        origin: origin.clone(),
        message,
    };
    if file.batch_size == Some(0) {
        return Err(invalid("batch_size must be at least 1".into()));
    }
    let mut checks = Vec::new();
    for model in &file.model {
        model_checks(model, tables, &mut checks).map_err(invalid)?;
    }
    checks.extend(file.expect.into_iter().map(|e| Check {
        name: e.name,
        kind: CheckKind::Rows {
            sql: e.sql,
            rows: e.rows,
        },
    }));
    Ok(Suite {
        origin,
        run: RunKey {
            input: file.input,
            batch_size: file.batch_size,
        },
        checks,
    })
}

/// The column checks of one `[[model]]` table, in the order they are written in the docs.
fn model_checks(model: &ModelChecks, tables: &Tables, checks: &mut Vec<Check>) -> Result<(), String> {
    let table = &model.name;
    if !tables.known(table) {
        return Err(format!(
            "[[model]] `{table}` is no model (nor bronze or {})",
            tables.dlq_table
        ));
    }
    for column in &model.not_null {
        checks.push(Check {
            name: format!("{table}.{column} is not null"),
            kind: CheckKind::NotNull {
                table: table.clone(),
                column: identifier(column)?,
            },
        });
    }
    for columns in &model.unique {
        let columns = columns
            .split(',')
            .map(identifier)
            .collect::<Result<Vec<_>, _>>()?
            .join(", ");
        checks.push(Check {
            name: format!("{table} ({columns}) is unique"),
            kind: CheckKind::NoRows {
                sql: format!(
                    "SELECT {columns}, count(*) AS copies FROM {table} GROUP BY {columns} HAVING count(*) > 1"
                ),
            },
        });
    }
    for (column, values) in &model.accepted_values {
        let column = identifier(column)?;
        let literals = values
            .iter()
            .map(literal)
            .collect::<Result<Vec<_>, _>>()?
            .join(", ");
        checks.push(Check {
            name: format!("{table}.{column} in ({literals})"),
            kind: CheckKind::NoRows {
                sql: format!(
                    "SELECT {column}, count(*) AS posts FROM {table} \
                     WHERE {column} IS NOT NULL AND {column} NOT IN ({literals}) GROUP BY {column}"
                ),
            },
        });
    }
    if model.equals_recompute {
        let model = tables
            .model(table)
            .filter(|m| matches!(m.materialization, Materialization::Merge { .. }));
        let model = model.ok_or_else(|| format!("equals_recompute: `{table}` is not a merge model"))?;
        checks.push(Check {
            name: format!("{table} equals a recompute over its inputs"),
            kind: CheckKind::EqualsRecompute {
                table: table.clone(),
                sql: model.sql.clone(),
            },
        });
    }
    Ok(())
}

/// A column name as written: letters, digits and `_`, so it can go into SQL as it is.
fn identifier(name: &str) -> Result<String, String> {
    let name = name.trim();
    match !name.is_empty() && name.chars().all(|c| c.is_alphanumeric() || c == '_') {
        true => Ok(name.to_string()),
        false => Err(format!("`{name}` is not a column name")),
    }
}

/// An accepted value as a SQL literal.
fn literal(value: &toml::Value) -> Result<String, String> {
    match value {
        toml::Value::String(s) => Ok(format!("'{}'", s.replace('\'', "''"))),
        toml::Value::Integer(_) | toml::Value::Float(_) | toml::Value::Boolean(_) => Ok(value.to_string()),
        other => Err(format!(
            "accepted value {other} must be a string, a number or a boolean"
        )),
    }
}

/// A SQL assertion file: one query that must return no rows, with optional `-- @input:` and
/// `-- @batch_size:` directives.
fn sql_suite(sql: &str, name: &str, origin: String) -> Result<Suite, ModelTestError> {
    let mut run = RunKey::default();
    for (line, key, value) in directives(sql, &origin)? {
        let invalid = |message: String| ModelTestError::Invalid {
            origin: format!("{origin}:{line}"),
            message,
        };
        match key.as_str() {
            "input" => run.input = Some(value),
            "batch_size" => {
                let size = value.parse().ok().filter(|&n: &usize| n > 0);
                run.batch_size =
                    Some(size.ok_or_else(|| {
                        invalid(format!("batch_size `{value}`: expected a whole number >= 1"))
                    })?);
            }
            other => {
                return Err(invalid(format!(
                    "unknown directive `@{other}` (known: input, batch_size)"
                )))
            }
        }
    }
    Ok(Suite {
        origin,
        run,
        checks: vec![Check {
            name: format!("{name} returns no rows"),
            kind: CheckKind::NoRows { sql: sql.to_string() },
        }],
    })
}

impl RunKey {
    /// The input's messages: the named file next to the tests, else the bundled sample posts.
    pub fn input(&self, files: &TestFiles) -> Result<Input, ModelTestError> {
        match &self.input {
            Some(name) => Ok(Input {
                name: name.clone(),
                bytes: files.read(name)?.into(),
            }),
            None => Ok(Input {
                name: format!("{} (bundled)", crate::embedded::SAMPLE_POSTS_NAME),
                bytes: crate::embedded::SAMPLE_POSTS.into(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_one(name: &str, text: &str) -> Result<Vec<Suite>, ModelTestError> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(name), text).unwrap();
        let models = crate::embedded::models(&["dlq"]).unwrap();
        load(&TestFiles::Dir(dir.path().to_path_buf()), &models, "dlq")
    }

    fn error(name: &str, text: &str) -> String {
        load_one(name, text).unwrap_err().to_string()
    }

    #[test]
    fn suites_become_checks_in_order() {
        let suites = load_one(
            "a.toml",
            "input = \"x.jsonl\"\nbatch_size = 5\n[[model]]\nname = \"gold.company_minute\"\n\
             not_null = [\"posts\"]\nunique = [\"company, minute\"]\naccepted_values.company = [\"AAPL\", 1]\n\
             equals_recompute = true\n[[expect]]\nname = \"e\"\nsql = \"SELECT 1 AS x\"\nrows = [{ x = 1 }]\n",
        )
        .unwrap();
        let suite = &suites[0];
        assert!(suite.origin.ends_with("/a.toml"), "{}", suite.origin);
        assert_eq!(
            suite.run,
            RunKey {
                input: Some("x.jsonl".into()),
                batch_size: Some(5)
            }
        );
        let names: Vec<&str> = suite.checks.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "gold.company_minute.posts is not null",
                "gold.company_minute (company, minute) is unique",
                "gold.company_minute.company in ('AAPL', 1)",
                "gold.company_minute equals a recompute over its inputs",
                "e",
            ]
        );
    }

    #[test]
    fn sql_files_are_assertions_with_directives() {
        let suites = load_one("b.sql", "-- @batch_size: 7\nSELECT * FROM dlq").unwrap();
        assert_eq!(suites[0].run.batch_size, Some(7));
        assert!(matches!(&suites[0].checks[0].kind, CheckKind::NoRows { sql } if sql.contains("FROM dlq")));
    }

    #[test]
    fn mistakes_name_the_file_and_what_is_wrong() {
        let unknown = error("a.toml", "[[model]]\nname = \"gold.nope\"\n");
        assert!(
            unknown.contains("a.toml: [[model]] `gold.nope` is no model"),
            "{unknown}"
        );
        let typo = error(
            "a.toml",
            "[[model]]\nname = \"bronze\"\nnot_nul = [\"_offset\"]\n",
        );
        assert!(typo.contains("/a.toml: ") && typo.contains("not_nul"), "{typo}");
        assert!(typo.contains("line 3"), "{typo}");
        let column = error(
            "a.toml",
            "[[model]]\nname = \"bronze\"\nnot_null = [\"a; DROP\"]\n",
        );
        assert!(column.contains("`a; DROP` is not a column name"), "{column}");
        let append = error(
            "a.toml",
            "[[model]]\nname = \"silver.tweets\"\nequals_recompute = true\n",
        );
        assert!(
            append.contains("`silver.tweets` is not a merge model"),
            "{append}"
        );
        assert!(error("a.toml", "batch_size = 0\n").contains("batch_size must be at least 1"));
        let directive = error("b.sql", "SELECT 1\n-- @inputs: x.jsonl\n");
        assert!(
            directive.contains("b.sql:2: unknown directive `@inputs`"),
            "{directive}"
        );
        let size = error("b.sql", "-- @batch_size: many\nSELECT 1");
        assert!(size.contains("/b.sql:1: batch_size `many`"), "{size}");
    }
}
