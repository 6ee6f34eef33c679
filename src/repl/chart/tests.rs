use std::sync::Arc;

use deltalake::arrow::array::{
    ArrayRef, Date32Array, Float64Array, Int64Array, StringArray, TimestampMillisecondArray,
};
use deltalake::arrow::datatypes::{Field, Schema};

use super::axis::number;
use super::*;

/// A result of one batch with these columns.
fn result(columns: Vec<(&str, ArrayRef)>) -> (SchemaRef, Vec<RecordBatch>) {
    let fields: Vec<Field> = columns
        .iter()
        .map(|(name, array)| Field::new(*name, array.data_type().clone(), true))
        .collect();
    let schema = Arc::new(Schema::new(fields));
    let arrays = columns.into_iter().map(|(_, array)| array).collect();
    let batch = RecordBatch::try_new(schema.clone(), arrays).unwrap();
    (schema, vec![batch])
}

fn ints(values: &[i64]) -> ArrayRef {
    Arc::new(Int64Array::from(values.to_vec()))
}

/// x = 0..=10 and its square.
fn squares() -> (SchemaRef, Vec<RecordBatch>) {
    let x: Vec<i64> = (0..=10).collect();
    let y: Vec<i64> = x.iter().map(|v| v * v).collect();
    result(vec![("x", ints(&x)), ("y", ints(&y))])
}

/// Minutes from 2026-11-20 14:01 UTC, `step` minutes apart.
fn minutes(count: i64, step: i64) -> ArrayRef {
    let start = 1_795_183_260_000; // 2026-11-20T14:01:00Z
    let values: Vec<i64> = (0..count).map(|i| start + i * step * 60_000).collect();
    Arc::new(TimestampMillisecondArray::from(values).with_timezone("UTC"))
}

fn spec(kind: ChartKind, x: &str, ys: &[&str]) -> ChartSpec {
    ChartSpec {
        kind,
        x: x.into(),
        ys: ys.iter().map(|y| y.to_string()).collect(),
    }
}

fn size(columns: usize) -> TerminalSize {
    TerminalSize { columns, rows: 24 }
}

fn draw_with(
    spec: &ChartSpec,
    (schema, batches): &(SchemaRef, Vec<RecordBatch>),
    columns: usize,
    styling: Styling,
) -> Result<String, ChartError> {
    draw(spec, schema, batches, size(columns), styling)
}

fn plain(spec: &ChartSpec, data: &(SchemaRef, Vec<RecordBatch>), columns: usize) -> String {
    let text = draw_with(spec, data, columns, Styling::Plain).unwrap();
    assert!(!text.contains('\x1b'), "no escape codes without colours: {text}");
    text
}

fn width(line: &str) -> usize {
    line.chars().count()
}

/// The line with the X labels: the one after the axis.
fn x_labels(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let axis = lines.iter().position(|l| l.contains('└')).unwrap();
    lines[axis + 1].trim().to_string()
}

/// The Y label of each labelled plot row, top to bottom.
fn y_labels(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.split_once('┤'))
        .map(|(label, _)| label.trim().to_string())
        .collect()
}

#[test]
fn a_line_chart_fills_the_width_and_never_passes_it() {
    let data = squares();
    for columns in [30, 80, 200] {
        let text = plain(&spec(ChartKind::Line, "x", &["y"]), &data, columns);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines.iter().all(|l| width(l) <= columns), "{columns}:\n{text}");
        let axis = lines.iter().find(|l| l.contains('└')).unwrap();
        assert_eq!(width(axis), columns, "{axis}");
        // 24 rows: 19 for the plot, with the legend, the axis and its labels.
        assert_eq!(lines.len(), 1 + 19 + 2, "{text}");
    }
    let tall = draw(
        &spec(ChartKind::Line, "x", &["y"]),
        &data.0,
        &data.1,
        TerminalSize {
            columns: 80,
            rows: 200,
        },
        Styling::Plain,
    )
    .unwrap();
    assert_eq!(tall.lines().count(), 1 + 20 + 2, "at most 20 plot rows");
}

#[test]
fn the_axes_show_the_range_of_the_values() {
    let text = plain(&spec(ChartKind::Line, "x", &["y"]), &squares(), 80);
    assert_eq!(y_labels(&text), ["100", "50", "0"], "{text}");
    let labels = x_labels(&text);
    assert!(labels.starts_with("0 ") && labels.ends_with(" 10"), "{labels}");
    // The first point is at the bottom left, the last at the top right.
    let rows: Vec<&str> = text
        .lines()
        .filter(|l| l.contains('┤') || l.contains('│'))
        .collect();
    let plot = |row: &str| row.split_once(['┤', '│']).unwrap().1.to_string();
    assert!(
        plot(rows[rows.len() - 1]).starts_with(|c: char| c != ' '),
        "{text}"
    );
    assert_eq!(width(plot(rows[0]).trim_end()), 80 - 5, "{text}");
}

#[test]
fn times_on_x_are_labelled_by_what_changes_across_them() {
    let posts = || ints(&[3, 1, 4, 1, 5, 9, 2, 6, 5]);
    let line = spec(ChartKind::Line, "minute", &["posts"]);
    let within_a_day = plain(
        &line,
        &result(vec![("minute", minutes(9, 1)), ("posts", posts())]),
        80,
    );
    let labels = x_labels(&within_a_day);
    assert!(
        labels.starts_with("14:01 ") && labels.ends_with(" 14:09"),
        "{labels}"
    );
    assert!(
        within_a_day.starts_with("posts   by minute (UTC)\n"),
        "{within_a_day}"
    );

    let over_days = plain(
        &line,
        &result(vec![("minute", minutes(9, 600)), ("posts", posts())]),
        80,
    );
    let labels = x_labels(&over_days);
    assert!(
        labels.starts_with("11-20 14:01 ") && labels.ends_with(" 11-23 22:01"),
        "{labels}"
    );

    let seconds = Arc::new(TimestampMillisecondArray::from(vec![0, 30_000, 61_000]));
    let close = result(vec![("t", seconds), ("posts", ints(&[1, 2, 3]))]);
    let labels = x_labels(&plain(&spec(ChartKind::Line, "t", &["posts"]), &close, 80));
    assert!(
        labels.starts_with("00:00:00 ") && labels.ends_with(" 00:01:01"),
        "{labels}"
    );

    let days = Arc::new(Date32Array::from(vec![20_393, 20_394, 20_400]));
    let daily = result(vec![("day", days), ("posts", ints(&[1, 2, 3]))]);
    let text = plain(&spec(ChartKind::Line, "day", &["posts"]), &daily, 80);
    let labels = x_labels(&text);
    assert!(
        labels.starts_with("2025-11-01 ") && labels.ends_with(" 2025-11-08"),
        "{labels}"
    );
    assert!(text.starts_with("posts   by day\n"), "a date has no zone: {text}");
}

#[test]
fn several_series_are_told_apart_by_markers_or_by_colours() {
    let data = result(vec![
        ("minute", minutes(5, 1)),
        ("posts", ints(&[10, 12, 8, 15, 11])),
        ("negative", ints(&[2, 5, 1, 7, 3])),
    ]);
    let two = spec(ChartKind::Line, "minute", &["posts", "negative"]);
    let text = plain(&two, &data, 80);
    assert!(
        text.starts_with("* posts   + negative   by minute (UTC)\n"),
        "{text}"
    );
    let plot: String = text.lines().skip(1).filter(|l| l.contains(['┤', '│'])).collect();
    assert_eq!(plot.matches('*').count(), 5, "one marker per point: {text}");
    assert_eq!(plot.matches('+').count(), 5, "{text}");

    let coloured = draw_with(&two, &data, 80, Styling::Colored).unwrap();
    assert!(
        coloured.contains(&format!("{}── {RESET}posts", COLOURS[0])),
        "{coloured}"
    );
    assert!(
        coloured.contains(&format!("{}── {RESET}negative", COLOURS[1])),
        "{coloured}"
    );
    let plot: String = coloured.lines().skip(1).collect();
    assert!(
        plot.contains(COLOURS[0]) && plot.contains(COLOURS[1]),
        "{coloured}"
    );
    assert!(!plot.contains('*'), "colours need no markers: {coloured}");
}

#[test]
fn bars_grow_from_zero_in_proportion_and_fit_the_width() {
    let companies = Arc::new(StringArray::from(vec!["Apple", "Tesla", "Nvidia"]));
    let data = result(vec![("company", companies), ("posts", ints(&[12, 6, 3]))]);
    let text = plain(&spec(ChartKind::Bar, "company", &["posts"]), &data, 60);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "posts by company");
    assert!(lines.iter().all(|l| width(l) <= 60), "{text}");
    // 60 columns: a label of 6, " │", the bar, " " and a value of 2: 49 for the bar.
    assert_eq!(lines[1], format!("Apple  │{} 12", "█".repeat(49)));
    assert_eq!(width(lines[1]), 60);
    let half = format!("Tesla  │{}▌", "█".repeat(24));
    assert!(lines[2].starts_with(&half), "{text}");
    assert!(lines[2].ends_with(" 6"), "{text}");
    let quarter = format!("Nvidia │{}▎", "█".repeat(12));
    assert!(lines[3].starts_with(&quarter), "{text}");
}

#[test]
fn negative_bars_grow_left_of_zero() {
    let companies = Arc::new(StringArray::from(vec!["up", "down"]));
    let sentiment = Arc::new(Float64Array::from(vec![0.5, -0.25]));
    let data = result(vec![("company", companies), ("mean", sentiment)]);
    let text = plain(&spec(ChartKind::Bar, "company", &["mean"]), &data, 40);
    let bars: Vec<&str> = text
        .lines()
        .skip(1)
        .map(|l| l.split_once('│').unwrap().1)
        .collect();
    // 40 - ("down" + " │" + " " + "-0.25") = 28 columns for -0.25 to 0.5: zero after 9 of them,
    // 0.5 in 18 5/8 columns (149 eighths) right of it, -0.25 in all 9 left of it.
    let (up, down) = (bars[0], bars[1]);
    assert_eq!(
        up,
        format!("{}{}▋   0.5", " ".repeat(9), "█".repeat(18)),
        "{text}"
    );
    assert_eq!(
        down,
        format!("{}{} -0.25", "█".repeat(9), " ".repeat(19)),
        "{text}"
    );
    assert!(text.lines().all(|l| width(l) <= 40), "{text}");
}

#[test]
fn several_bar_series_are_named_on_their_bars() {
    let companies = Arc::new(StringArray::from(vec!["Apple", "Tesla"]));
    let data = result(vec![
        ("company", companies),
        ("posts", ints(&[12, 6])),
        ("negative", ints(&[3, 4])),
    ]);
    let text = plain(
        &spec(ChartKind::Bar, "company", &["posts", "negative"]),
        &data,
        50,
    );
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 5, "{text}");
    assert!(
        lines[1].starts_with("Apple │") && lines[1].ends_with(" 12 posts"),
        "{text}"
    );
    assert!(
        lines[2].starts_with("      │") && lines[2].ends_with("  3 negative"),
        "{text}"
    );
    assert!(
        lines[3].starts_with("Tesla │") && lines[3].ends_with("  6 posts"),
        "{text}"
    );
    assert!(lines.iter().all(|l| width(l) <= 50), "{text}");
    let coloured = draw_with(
        &spec(ChartKind::Bar, "company", &["posts", "negative"]),
        &data,
        50,
        Styling::Colored,
    )
    .unwrap();
    assert!(
        coloured.contains(&format!("{} negative{RESET}", COLOURS[1])),
        "{coloured}"
    );
}

#[test]
fn bars_over_time_are_labelled_as_the_line_chart_labels_them() {
    let data = result(vec![("minute", minutes(3, 1)), ("posts", ints(&[1, 2, 3]))]);
    let text = plain(&spec(ChartKind::Bar, "minute", &["posts"]), &data, 40);
    let labels: Vec<&str> = text
        .lines()
        .skip(1)
        .map(|l| l.split(' ').next().unwrap())
        .collect();
    assert_eq!(labels, ["14:01", "14:02", "14:03"], "{text}");
}

#[test]
fn mistakes_are_one_clear_error() {
    let error = |spec: &ChartSpec, data: &(SchemaRef, Vec<RecordBatch>), columns: usize| {
        draw_with(spec, data, columns, Styling::Plain)
            .unwrap_err()
            .to_string()
    };
    let data = result(vec![
        ("company", Arc::new(StringArray::from(vec!["Apple"])) as ArrayRef),
        ("posts", ints(&[12])),
    ]);
    assert_eq!(
        error(&spec(ChartKind::Bar, "company", &["nope"]), &data, 80),
        "no column `nope` in the last result (columns: company, posts)"
    );
    assert_eq!(
        error(&spec(ChartKind::Bar, "posts", &["company"]), &data, 80),
        "column `company` is Utf8, not a number: a chart's Y columns must be numeric"
    );
    assert!(error(&spec(ChartKind::Line, "company", &["posts"]), &data, 80)
        .starts_with("column `company` is Utf8: a line chart's X must be a number, a date or a timestamp"));
    let empty = result(vec![("x", ints(&[])), ("y", ints(&[]))]);
    assert_eq!(
        error(&spec(ChartKind::Line, "x", &["y"]), &empty, 80),
        "nothing to draw: no row of the last result has a value in both x and y"
    );
    let nulls = result(vec![
        ("x", ints(&[1])),
        ("y", Arc::new(Int64Array::from(vec![None]))),
    ]);
    assert_eq!(
        error(&spec(ChartKind::Bar, "x", &["y"]), &nulls, 80),
        "nothing to draw: no row of the last result has a value in y"
    );
    assert_eq!(
        error(&spec(ChartKind::Line, "x", &["y"]), &squares(), 20),
        "the terminal is 20 columns wide: too narrow for this chart"
    );
    let seven = spec(ChartKind::Line, "x", &["y"; 7]);
    assert!(error(&seven, &squares(), 80).starts_with("at most 6 Y columns"));
    // Names differ from what was typed only in case: found.
    plain(&spec(ChartKind::Bar, "COMPANY", &["Posts"]), &data, 80);
}

#[test]
fn numbers_keep_four_significant_digits() {
    assert_eq!(number(12.0), "12");
    assert_eq!(number(-3.0), "-3");
    assert_eq!(number(0.287_34), "0.2873");
    assert_eq!(number(-0.000_123_4), "-0.0001234");
    assert_eq!(number(1234.567), "1235");
    assert_eq!(number(2.5), "2.5");
    assert_eq!(number(-0.000_001_234_5), "-0.000001234");
}
