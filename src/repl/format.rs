//! Result formats: an ASCII table for people, CSV / JSON / NDJSON / Markdown for everything else.

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use deltalake::arrow::array::RecordBatch;
use deltalake::arrow::datatypes::SchemaRef;
use deltalake::arrow::error::ArrowError;
use deltalake::arrow::util::display::{ArrayFormatter, FormatOptions};
use deltalake::arrow::util::pretty::pretty_format_batches_with_options;
use deltalake::arrow::{csv, json};
use serde::Deserialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Table,
    Csv,
    Json,
    Ndjson,
    Markdown,
}

impl Format {
    pub const ALL: [Format; 5] = [
        Format::Table,
        Format::Csv,
        Format::Json,
        Format::Ndjson,
        Format::Markdown,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Format::Table => "table",
            Format::Csv => "csv",
            Format::Json => "json",
            Format::Ndjson => "ndjson",
            Format::Markdown => "markdown",
        }
    }

    /// The format a file name asks for: `.csv`, `.json`, `.ndjson` / `.jsonl`, `.md`.
    pub fn from_extension(path: &Path) -> Option<Format> {
        let extension = path.extension()?.to_str()?.to_ascii_lowercase();
        match extension.as_str() {
            "csv" => Some(Format::Csv),
            "json" => Some(Format::Json),
            "ndjson" | "jsonl" => Some(Format::Ndjson),
            "md" => Some(Format::Markdown),
            "txt" => Some(Format::Table),
            _ => None,
        }
    }

    /// Renders a whole result; every format ends with a newline.
    pub fn render(self, schema: &SchemaRef, batches: &[RecordBatch]) -> Result<Vec<u8>, ArrowError> {
        let mut out = Vec::new();
        match self {
            Format::Table => {
                let empty = [RecordBatch::new_empty(schema.clone())];
                let batches = if batches.is_empty() { &empty[..] } else { batches };
                let table = pretty_format_batches_with_options(batches, &display_options())?;
                out.extend(format!("{table}\n").into_bytes());
            }
            Format::Csv => {
                let mut writer = csv::WriterBuilder::new().with_header(true).build(&mut out);
                if batches.is_empty() {
                    writer.write(&RecordBatch::new_empty(schema.clone()))?;
                }
                batches.iter().try_for_each(|b| writer.write(b))?;
            }
            Format::Json => {
                let mut writer = json::WriterBuilder::new()
                    .with_explicit_nulls(true)
                    .build::<_, json::writer::JsonArray>(&mut out);
                batches.iter().try_for_each(|b| writer.write(b))?;
                writer.finish()?;
                out.push(b'\n');
            }
            Format::Ndjson => {
                let mut writer = json::WriterBuilder::new()
                    .with_explicit_nulls(true)
                    .build::<_, json::writer::LineDelimited>(&mut out);
                batches.iter().try_for_each(|b| writer.write(b))?;
                writer.finish()?;
            }
            Format::Markdown => markdown(&mut out, schema, batches)?,
        }
        Ok(out)
    }
}

fn display_options() -> FormatOptions<'static> {
    FormatOptions::default()
        .with_display_error(true)
        .with_null("NULL")
}

/// A GitHub-flavoured Markdown table; `|` and line breaks inside values are escaped.
fn markdown(out: &mut Vec<u8>, schema: &SchemaRef, batches: &[RecordBatch]) -> Result<(), ArrowError> {
    let row = |cells: Vec<String>| format!("| {} |\n", cells.join(" | "));
    let names = schema.fields().iter().map(|f| escape_cell(f.name())).collect();
    out.extend(row(names).into_bytes());
    out.extend(row(vec!["---".to_string(); schema.fields().len()]).into_bytes());
    let options = display_options();
    for batch in batches {
        let formatters = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
            .collect::<Result<Vec<_>, _>>()?;
        for i in 0..batch.num_rows() {
            let cells = formatters
                .iter()
                .map(|f| escape_cell(&f.value(i).to_string()))
                .collect();
            out.extend(row(cells).into_bytes());
        }
    }
    Ok(())
}

fn escape_cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', "<br>")
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Format {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Format::ALL
            .into_iter()
            .find(|f| f.name().eq_ignore_ascii_case(text.trim()))
            .ok_or_else(|| {
                let names: Vec<&str> = Format::ALL.iter().map(|f| f.name()).collect();
                format!("unknown format `{text}` (use {})", names.join(", "))
            })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use deltalake::arrow::array::{Int64Array, StringArray};
    use deltalake::arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    fn sample() -> (SchemaRef, Vec<RecordBatch>) {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("name", DataType::Utf8, true),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from(vec![1, 2])),
                Arc::new(StringArray::from(vec![Some("a|b"), None])),
            ],
        )
        .unwrap();
        (schema, vec![batch])
    }

    fn render(format: Format, empty: bool) -> String {
        let (schema, batches) = sample();
        let batches = if empty { vec![] } else { batches };
        String::from_utf8(format.render(&schema, &batches).unwrap()).unwrap()
    }

    #[test]
    fn every_format_renders_rows_and_nulls() {
        assert_eq!(
            render(Format::Table, false),
            "+----+------+\n| id | name |\n+----+------+\n| 1  | a|b  |\n| 2  | NULL |\n+----+------+\n"
        );
        assert_eq!(render(Format::Csv, false), "id,name\n1,a|b\n2,\n");
        assert_eq!(
            render(Format::Json, false),
            "[{\"id\":1,\"name\":\"a|b\"},{\"id\":2,\"name\":null}]\n"
        );
        assert_eq!(
            render(Format::Ndjson, false),
            "{\"id\":1,\"name\":\"a|b\"}\n{\"id\":2,\"name\":null}\n"
        );
        assert_eq!(
            render(Format::Markdown, false),
            "| id | name |\n| --- | --- |\n| 1 | a\\|b |\n| 2 | NULL |\n"
        );
    }

    #[test]
    fn empty_results_keep_their_header() {
        assert_eq!(
            render(Format::Table, true),
            "+----+------+\n| id | name |\n+----+------+\n+----+------+\n"
        );
        assert_eq!(render(Format::Csv, true), "id,name\n");
        assert_eq!(render(Format::Json, true), "[]\n");
        assert_eq!(render(Format::Ndjson, true), "");
    }

    #[test]
    fn names_and_extensions() {
        assert_eq!("CSV".parse::<Format>().unwrap(), Format::Csv);
        assert!("xml".parse::<Format>().unwrap_err().contains("markdown"));
        assert_eq!(
            Format::from_extension(Path::new("a/b.JSONL")),
            Some(Format::Ndjson)
        );
        assert_eq!(Format::from_extension(Path::new("out")), None);
    }
}
