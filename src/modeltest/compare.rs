//! Query results as text, and expected rows against them.

use deltalake::arrow::array::{ArrayRef, RecordBatch, StringArray};
use deltalake::arrow::datatypes::Schema;
use deltalake::arrow::error::ArrowError;
use deltalake::arrow::util::display::{ArrayFormatter, FormatOptions};
use deltalake::arrow::util::pretty::pretty_format_batches;

/// Rows printed under a failure, at most.
const SHOWN_ROWS: usize = 20;

/// How far an expected float may be from the result: absolute up to 1, relative above.
const FLOAT_TOLERANCE: f64 = 1e-6;

/// A query result as text: each cell as tables print it, NULL as `NULL`.
pub struct TextTable {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

impl TextTable {
    pub fn new(schema: &Schema, batches: &[RecordBatch]) -> Result<Self, ArrowError> {
        let options = FormatOptions::new().with_null("NULL");
        let mut rows = Vec::new();
        for batch in batches {
            let formatters = batch
                .columns()
                .iter()
                .map(|column| ArrayFormatter::try_new(column.as_ref(), &options))
                .collect::<Result<Vec<_>, _>>()?;
            for row in 0..batch.num_rows() {
                rows.push(formatters.iter().map(|f| f.value(row).to_string()).collect());
            }
        }
        Ok(Self {
            columns: schema.fields().iter().map(|f| f.name().clone()).collect(),
            rows,
        })
    }

    fn column(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.eq_ignore_ascii_case(name))
    }

    /// The first rows as a boxed table, with a note when some are left out.
    pub fn render(&self) -> String {
        let shown = self.rows.len().min(SHOWN_ROWS);
        let columns: Vec<(&str, ArrayRef)> = self
            .columns
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let cells = self.rows[..shown].iter().map(|row| row[i].as_str());
                (
                    name.as_str(),
                    std::sync::Arc::new(StringArray::from_iter_values(cells)) as ArrayRef,
                )
            })
            .collect();
        let table = RecordBatch::try_from_iter(columns)
            .and_then(|batch| pretty_format_batches(&[batch]))
            .map_or_else(|e| format!("(cannot print the rows: {e})"), |t| t.to_string());
        match self.rows.len() - shown {
            0 => table,
            more => format!("{table}\n... and {more} more row(s)"),
        }
    }

    /// Only the named columns, in the result's order, for showing what was compared.
    fn project(&self, names: &[String]) -> Self {
        let indexes: Vec<usize> = (0..self.columns.len())
            .filter(|&i| names.iter().any(|n| n.eq_ignore_ascii_case(&self.columns[i])))
            .collect();
        Self {
            columns: indexes.iter().map(|&i| self.columns[i].clone()).collect(),
            rows: self
                .rows
                .iter()
                .map(|row| indexes.iter().map(|&i| row[i].clone()).collect())
                .collect(),
        }
    }
}

/// Compares a result with expected rows, position by position, in the columns each expected
/// row names. None when they agree; else the differences and the result, as tables.
pub fn diff_rows(actual: &TextTable, expected: &[toml::Table]) -> Option<String> {
    let mut compared: Vec<String> = Vec::new();
    for name in expected.iter().flat_map(|row| row.keys()) {
        if !compared.contains(name) {
            compared.push(name.clone());
        }
    }
    let mut differences = Vec::new();
    for index in 0..expected.len().max(actual.rows.len()) {
        let row = (index + 1).to_string();
        match (expected.get(index), actual.rows.get(index)) {
            (Some(wanted), Some(got)) => {
                // In the result's column order; columns it lacks last.
                let mut wanted: Vec<_> = wanted.iter().collect();
                wanted.sort_by_key(|(column, _)| actual.column(column).unwrap_or(usize::MAX));
                for (column, value) in wanted {
                    let cell = actual.column(column).map(|i| got[i].as_str());
                    if !cell.is_some_and(|cell| matches(value, cell)) {
                        let cell = cell.unwrap_or("(no such column)").to_string();
                        differences.push(vec![row.clone(), column.clone(), text(value), cell]);
                    }
                }
            }
            (Some(wanted), None) => {
                let wanted = wanted
                    .iter()
                    .map(|(c, v)| format!("{c}={}", text(v)))
                    .collect::<Vec<_>>();
                differences.push(vec![row, "(row)".into(), wanted.join(", "), "(missing)".into()]);
            }
            (None, Some(_)) => {
                let projected = actual.project(&compared);
                let cells = projected.columns.iter().zip(&projected.rows[index]);
                let got = cells.map(|(c, v)| format!("{c}={v}")).collect::<Vec<_>>();
                differences.push(vec![row, "(row)".into(), "(none)".into(), got.join(", ")]);
            }
            (None, None) => unreachable!("index is below one of the lengths"),
        }
    }
    if differences.is_empty() {
        return None;
    }
    let table = TextTable {
        columns: ["row", "column", "expected", "actual"].map(String::from).to_vec(),
        rows: differences,
    };
    Some(format!(
        "expected {} row(s), got {}; differences:\n{}\nresult:\n{}",
        expected.len(),
        actual.rows.len(),
        table.render(),
        actual.project(&compared).render()
    ))
}

/// Whether a result cell matches an expected TOML value: numbers by value (floats within
/// FLOAT_TOLERANCE), everything else by its text.
fn matches(expected: &toml::Value, cell: &str) -> bool {
    let number = cell.parse::<f64>();
    match expected {
        toml::Value::Float(e) => number.is_ok_and(|a| (a - e).abs() <= FLOAT_TOLERANCE * e.abs().max(1.0)),
        toml::Value::Integer(e) => number.is_ok_and(|a| a == *e as f64),
        other => text(other) == cell,
    }
}

/// A TOML value written the way tables print Arrow values: an array as `[a, b]`. (A struct is
/// written as a string, `"{lon: 1.5, lat: 2.0}"`: TOML tables do not keep their key order.)
fn text(value: &toml::Value) -> String {
    match value {
        toml::Value::String(s) => s.clone(),
        toml::Value::Array(items) => format!("[{}]", items.iter().map(text).collect::<Vec<_>>().join(", ")),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(columns: &[&str], rows: &[&[&str]]) -> TextTable {
        TextTable {
            columns: columns.iter().map(|c| c.to_string()).collect(),
            rows: rows
                .iter()
                .map(|r| r.iter().map(|c| c.to_string()).collect())
                .collect(),
        }
    }

    fn rows(toml: &str) -> Vec<toml::Table> {
        #[derive(serde::Deserialize)]
        struct Rows {
            rows: Vec<toml::Table>,
        }
        toml::from_str::<Rows>(toml).unwrap().rows
    }

    #[test]
    fn values_match_by_number_or_text() {
        let actual = table(
            &["id", "lon", "tags", "n", "label", "c"],
            &[&[
                "1",
                "-0.14893600000001",
                "[a, b]",
                "42",
                "NULL",
                "{lon: 1.5, lat: 2.0}",
            ]],
        );
        let expected = rows(
            r#"rows = [{ id = "1", lon = -0.148936, tags = ["a", "b"], n = 42, label = "NULL", c = "{lon: 1.5, lat: 2.0}" }]"#,
        );
        assert_eq!(diff_rows(&actual, &expected), None);
    }

    #[test]
    fn differences_name_row_column_and_both_values() {
        let actual = table(&["id", "geo"], &[&["1", "none"], &["2", "place"]]);
        let report = diff_rows(&actual, &rows(r#"rows = [{ id = "1", geo = "point" }]"#)).unwrap();
        assert!(report.starts_with("expected 1 row(s), got 2"), "{report}");
        assert!(report.contains("| 1   | geo    | point    | none "), "{report}");
        assert!(
            report.contains("| 2   | (row)  | (none)   | id=2, geo=place |"),
            "{report}"
        );

        let report = diff_rows(
            &actual,
            &rows(r#"rows = [{ nope = 1 }, { id = "2" }, { id = "3" }]"#),
        );
        let report = report.unwrap();
        assert!(report.contains("(no such column)"), "{report}");
        assert!(
            report.contains("| 3   | (row)  | id=3     | (missing)"),
            "{report}"
        );
    }

    #[test]
    fn long_results_are_cut() {
        let many: Vec<Vec<String>> = (0..25).map(|i| vec![i.to_string()]).collect();
        let actual = TextTable {
            columns: vec!["n".into()],
            rows: many,
        };
        assert!(actual.render().ends_with("... and 5 more row(s)"));
    }
}
