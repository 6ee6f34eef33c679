//! `\chart`: a result drawn in the terminal with Unicode, sized to it. A line chart is drawn on a
//! braille canvas (2 x 4 dots per character) over a numeric or time X; a bar chart is one
//! horizontal bar of block characters per row, in the result's order.
//!
//! Drawn here rather than with a plotting crate: `textplots` (the maintained braille plotter)
//! plots f32 (epoch timestamps lose their seconds), labels only the two ends of X and panics
//! when an end's label is wider than half the canvas, colours through `colored`, which decides
//! on colour again from the environment, and cannot tell series apart without colour.

mod axis;
mod bar;
mod line;

use deltalake::arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use deltalake::arrow::compute::{cast, concat_batches};
use deltalake::arrow::datatypes::{DataType, Float64Type, SchemaRef};
use deltalake::arrow::error::ArrowError;

use super::helper::Styling;
use super::output::TerminalSize;

/// Series beyond this many could not be told apart: there are six colours and six markers.
pub const MAX_SERIES: usize = 6;

const COLOURS: [&str; MAX_SERIES] = [
    "\x1b[34m", "\x1b[31m", "\x1b[32m", "\x1b[33m", "\x1b[35m", "\x1b[36m",
];
const MARKERS: [char; MAX_SERIES] = ['*', '+', 'o', 'x', '#', '%'];
const RESET: &str = "\x1b[0m";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChartKind {
    Line,
    Bar,
}

impl ChartKind {
    pub const ALL: [ChartKind; 2] = [ChartKind::Line, ChartKind::Bar];

    pub fn name(self) -> &'static str {
        match self {
            ChartKind::Line => "line",
            ChartKind::Bar => "bar",
        }
    }

    pub fn named(word: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.name() == word)
    }
}

/// What `\chart` draws: an X column and one series per Y column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChartSpec {
    pub kind: ChartKind,
    pub x: String,
    pub ys: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ChartError {
    #[error("no column `{name}` in the last result (columns: {known})")]
    UnknownColumn { name: String, known: String },
    #[error("column `{name}` is {data_type}, not a number: a chart's Y columns must be numeric")]
    NotNumeric { name: String, data_type: DataType },
    #[error(
        "column `{name}` is {data_type}: a line chart's X must be a number, a date or a timestamp \
         (a bar chart takes any X)"
    )]
    NotAnAxis { name: String, data_type: DataType },
    #[error("nothing to draw: no row of the last result has a value in {columns}")]
    Empty { columns: String },
    #[error("at most {MAX_SERIES} Y columns: more could not be told apart")]
    TooManySeries,
    #[error("the terminal is {columns} columns wide: too narrow for this chart")]
    TooNarrow { columns: usize },
    #[error("{0}")]
    Arrow(#[from] ArrowError),
}

/// One Y column: a value (or none) per row.
struct Series {
    name: String,
    values: Vec<Option<f64>>,
}

/// Draws `spec` over a result: the text to print, every line at most `size.columns` wide.
pub fn draw(
    spec: &ChartSpec,
    schema: &SchemaRef,
    batches: &[RecordBatch],
    size: TerminalSize,
    styling: Styling,
) -> Result<String, ChartError> {
    if spec.ys.len() > MAX_SERIES {
        return Err(ChartError::TooManySeries);
    }
    let result = concat_batches(schema, batches)?;
    let x = column(&result, &spec.x)?;
    let series = spec
        .ys
        .iter()
        .map(|name| series(&result, name))
        .collect::<Result<Vec<_>, _>>()?;
    let look = Look::new(styling, series.len());
    match spec.kind {
        ChartKind::Line => line::draw(&axis::XAxis::new(&spec.x, x)?, &series, size, look),
        ChartKind::Bar => bar::draw(&spec.x, &axis::categories(x)?, &series, size, look),
    }
}

/// The column called `name`, or else the one whose name differs only in case.
fn column<'r>(result: &'r RecordBatch, name: &str) -> Result<&'r ArrayRef, ChartError> {
    let schema = result.schema_ref();
    let index = schema.index_of(name).ok().or_else(|| {
        let mut fields = schema.fields().iter();
        fields.position(|field| field.name().eq_ignore_ascii_case(name))
    });
    index.map(|i| result.column(i)).ok_or_else(|| {
        let known: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        ChartError::UnknownColumn {
            name: name.to_string(),
            known: known.join(", "),
        }
    })
}

fn series(result: &RecordBatch, name: &str) -> Result<Series, ChartError> {
    let column = column(result, name)?;
    if !column.data_type().is_numeric() {
        return Err(ChartError::NotNumeric {
            name: name.to_string(),
            data_type: column.data_type().clone(),
        });
    }
    Ok(Series {
        name: name.to_string(),
        values: numbers(column)?,
    })
}

/// A numeric column as f64; nulls and NaN are no value.
fn numbers(column: &ArrayRef) -> Result<Vec<Option<f64>>, ArrowError> {
    let floats = cast(column, &DataType::Float64)?;
    let values = floats.as_primitive::<Float64Type>();
    Ok(values.iter().map(|v| v.filter(|v| v.is_finite())).collect())
}

/// How series are told apart: by colour at a colour terminal, else by markers at their points.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Look {
    Coloured,
    Marked,
    /// One series without colour: nothing to tell apart.
    Plain,
}

impl Look {
    fn new(styling: Styling, series: usize) -> Self {
        match (styling, series) {
            (Styling::Colored, _) => Look::Coloured,
            (Styling::Plain, 1) => Look::Plain,
            (Styling::Plain, _) => Look::Marked,
        }
    }

    /// `text` in the colour of series `index`, when colours are on.
    fn paint(self, index: usize, text: &str) -> String {
        match self {
            Look::Coloured => format!("{}{text}{RESET}", COLOURS[index]),
            Look::Marked | Look::Plain => text.to_string(),
        }
    }

    /// The character that marks series `index`'s points, when they are marked.
    fn marker(self, index: usize) -> Option<char> {
        (self == Look::Marked).then_some(MARKERS[index])
    }
}

/// `text` cut to `width` characters, with `…` when something was cut.
fn fit(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_string();
    }
    let kept: String = text.chars().take(width.saturating_sub(1)).collect();
    format!("{kept}…")
}

#[cfg(test)]
mod tests;
