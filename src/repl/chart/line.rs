//! The line chart: each series' points, in X order, joined on a braille canvas; Y labelled on the
//! left (top, middle, bottom), X ticked and labelled below, a legend above.

use std::iter::once;

use super::axis::{number, Labeller, XAxis};
use super::{fit, ChartError, Look, Series};
use crate::repl::output::TerminalSize;

/// Terminal lines left to the rest: the legend, the X axis and its labels, the statistics line
/// and the next prompt.
const RESERVED_ROWS: usize = 5;
const MIN_PLOT_ROWS: usize = 4;
/// A taller chart is no easier to read, and pushes its legend off the screen.
const MAX_PLOT_ROWS: usize = 20;
const MIN_PLOT_COLUMNS: usize = 16;
const MAX_X_LABELS: usize = 8;
/// Between legend entries.
const GAP: &str = "   ";

pub(super) fn draw(
    x: &XAxis,
    series: &[Series],
    size: TerminalSize,
    look: Look,
) -> Result<String, ChartError> {
    let lines: Vec<Vec<(f64, f64)>> = series.iter().map(|s| points(&x.values, &s.values)).collect();
    let all = || lines.iter().flatten();
    let (Some(x_range), Some(y_range)) = (Range::of(all().map(|p| p.0)), Range::of(all().map(|p| p.1)))
    else {
        let names: Vec<&str> = series.iter().map(|s| s.name.as_str()).collect();
        return Err(ChartError::Empty {
            columns: format!("both {} and {}", x.name, names.join(" or ")),
        });
    };
    let rows = (size.rows.saturating_sub(RESERVED_ROWS)).clamp(MIN_PLOT_ROWS, MAX_PLOT_ROWS);
    let y_labels = y_labels(&y_range, rows);
    let label_width = y_labels
        .iter()
        .flatten()
        .map(|l| l.chars().count())
        .max()
        .unwrap_or(0);
    let columns = size.columns.saturating_sub(label_width + 2);
    if columns < MIN_PLOT_COLUMNS {
        return Err(ChartError::TooNarrow {
            columns: size.columns,
        });
    }

    let mut canvas = Canvas::new(columns, rows);
    for (index, points) in lines.iter().enumerate() {
        let dots: Vec<(usize, usize)> = points
            .iter()
            .map(|&(px, py)| {
                (
                    x_range.dot(px, canvas.width()),
                    y_range.dot_from_top(py, canvas.height()),
                )
            })
            .collect();
        canvas.polyline(&dots, index, look.marker(index));
    }

    let labeller = x.labeller(x_range.min, x_range.max);
    let (axis, labels) = x_axis(columns, &x_ticks(&x_range, labeller, columns));
    let indent = " ".repeat(label_width);
    let mut text = legend(x, series, look, size.columns);
    for (row, label) in y_labels.iter().enumerate() {
        let tick = if label.is_some() { '┤' } else { '│' };
        let label = label.as_deref().unwrap_or_default();
        let cells = canvas.row(row, look);
        text.push_str(format!("{label:>label_width$} {tick}{cells}").trim_end());
        text.push('\n');
    }
    text.push_str(&format!("{indent} └{axis}\n"));
    text.push_str(format!("{indent}  {labels}").trim_end());
    text.push('\n');
    Ok(text)
}

/// The rows with both an X and a Y value, in X order.
fn points(xs: &[Option<f64>], ys: &[Option<f64>]) -> Vec<(f64, f64)> {
    let mut points: Vec<(f64, f64)> = xs
        .iter()
        .zip(ys)
        .filter_map(|(x, y)| Some(((*x)?, (*y)?)))
        .collect();
    points.sort_by(|a, b| a.0.total_cmp(&b.0));
    points
}

/// The values an axis spans; never empty, so that every value has a place.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Range {
    min: f64,
    max: f64,
}

impl Range {
    /// From the smallest to the largest value, widened by one on each side when they are equal.
    fn of(values: impl Iterator<Item = f64>) -> Option<Self> {
        let (min, max) = values.fold(None, |range: Option<(f64, f64)>, v| match range {
            None => Some((v, v)),
            Some((min, max)) => Some((min.min(v), max.max(v))),
        })?;
        Some(match min < max {
            true => Self { min, max },
            false => Self {
                min: min - 1.0,
                max: max + 1.0,
            },
        })
    }

    /// The dot of `value` among `dots` dots, counted from the left.
    fn dot(&self, value: f64, dots: usize) -> usize {
        let share = (value - self.min) / (self.max - self.min);
        (share * (dots - 1) as f64).round() as usize
    }

    /// The dot of `value` among `dots` dots, counted from the top (the largest value).
    fn dot_from_top(&self, value: f64, dots: usize) -> usize {
        dots - 1 - self.dot(value, dots)
    }
}

/// The label of each plot row, if it has one: the top, the middle and the bottom of the range.
fn y_labels(y: &Range, rows: usize) -> Vec<Option<String>> {
    let mut labels = vec![None; rows];
    let middle = (y.min + y.max) / 2.0;
    labels[y.dot_from_top(middle, rows * 4) / 4] = Some(number(middle));
    labels[0] = Some(number(y.max));
    labels[rows - 1] = Some(number(y.min));
    labels
}

/// The first X, the last, and round values between, as many as have room for their labels;
/// each with the column of its tick.
fn x_ticks(x: &Range, labeller: Labeller, columns: usize) -> Vec<(usize, String)> {
    let widest = [x.min, x.max]
        .map(|v| labeller.label(v).chars().count())
        .into_iter()
        .max()
        .unwrap_or(0);
    let most = (columns / (widest + 4)).clamp(1, MAX_X_LABELS);
    let inner = labeller.ticks(x.min, x.max, most);
    let inner = inner.into_iter().filter(|v| *v > x.min && *v < x.max);
    once(x.min)
        .chain(inner)
        .chain(once(x.max))
        .map(|value| (x.dot(value, columns * 2) / 2, labeller.label(value)))
        .collect()
}

/// The axis line (`─`, with `┬` over each label shown) and the labels under it, `width` wide.
/// The first label starts at its tick, the last ends at its tick, the others are centred; the
/// first and the last are placed first, and a label that would touch another is left out.
fn x_axis(width: usize, ticks: &[(usize, String)]) -> (String, String) {
    let mut axis = vec!['─'; width];
    let mut labels = vec![' '; width];
    let mut taken = vec![false; width];
    let last = ticks.len() - 1;
    for i in once(0).chain(once(last)).chain(1..last) {
        let (tick, text) = &ticks[i];
        let text: Vec<char> = fit(text, width).chars().collect();
        let start = match i {
            0 => *tick,
            i if i == last => (tick + 1).saturating_sub(text.len()),
            _ => tick.saturating_sub(text.len() / 2),
        }
        .min(width - text.len());
        let around = start.saturating_sub(1)..(start + text.len() + 1).min(width);
        if taken[around].contains(&true) {
            continue;
        }
        labels[start..start + text.len()].copy_from_slice(&text);
        taken[start..start + text.len()].fill(true);
        axis[*tick] = '┬';
    }
    (axis.into_iter().collect(), labels.into_iter().collect())
}

/// `── posts   ── negative   by minute (UTC)`: each series' colour or marker, and X; as many
/// entries as fit in `width`.
fn legend(x: &XAxis, series: &[Series], look: Look, width: usize) -> String {
    let entries = series.iter().enumerate().map(|(index, s)| {
        let swatch = match (look, look.marker(index)) {
            (_, Some(marker)) => format!("{marker} "),
            (Look::Coloured, None) => "── ".to_string(),
            _ => String::new(),
        };
        let visible = format!("{swatch}{}", s.name);
        let painted = format!("{}{}", look.paint(index, &swatch), s.name);
        (visible, painted)
    });
    let caption = format!("by {}", x.caption());
    let mut text = String::new();
    let mut used = 0;
    for (visible, painted) in entries.chain(once((caption.clone(), caption))) {
        let needed = visible.chars().count() + if used == 0 { 0 } else { GAP.len() };
        if used + needed > width {
            if used == 0 {
                text = fit(&visible, width);
            }
            break;
        }
        if used > 0 {
            text.push_str(GAP);
        }
        text.push_str(&painted);
        used += needed;
    }
    text.push('\n');
    text
}

/// Braille characters, each holding 2 x 4 dots; a cell takes the colour of the last series that
/// drew in it, and a marked point shows its series' marker instead.
struct Canvas {
    columns: usize,
    cells: Vec<Cell>,
}

#[derive(Debug, Clone, Copy, Default)]
struct Cell {
    dots: u8,
    series: usize,
    marker: Option<char>,
}

/// The bit of each dot in a braille character (U+2800 + bits), by column then row.
const BRAILLE_BITS: [[u8; 4]; 2] = [[0x01, 0x02, 0x04, 0x40], [0x08, 0x10, 0x20, 0x80]];

impl Canvas {
    fn new(columns: usize, rows: usize) -> Self {
        Self {
            columns,
            cells: vec![Cell::default(); columns * rows],
        }
    }

    /// Dots across.
    fn width(&self) -> usize {
        self.columns * 2
    }

    /// Dots down.
    fn height(&self) -> usize {
        self.cells.len() / self.columns * 4
    }

    fn cell(&mut self, (x, y): (usize, usize)) -> &mut Cell {
        &mut self.cells[y / 4 * self.columns + x / 2]
    }

    fn set(&mut self, dot: (usize, usize), series: usize) {
        let bit = BRAILLE_BITS[dot.0 % 2][dot.1 % 4];
        let cell = self.cell(dot);
        cell.dots |= bit;
        cell.series = series;
    }

    /// Joins `dots` in order; a single dot is drawn alone. `marker` marks each of them.
    fn polyline(&mut self, dots: &[(usize, usize)], series: usize, marker: Option<char>) {
        if let [only] = dots {
            self.set(*only, series);
        }
        for pair in dots.windows(2) {
            self.segment(pair[0], pair[1], series);
        }
        if let Some(marker) = marker {
            for &dot in dots {
                let cell = self.cell(dot);
                cell.marker = Some(marker);
                cell.series = series;
            }
        }
    }

    /// Bresenham's line from `from` to `to`, both ends included.
    fn segment(&mut self, from: (usize, usize), to: (usize, usize), series: usize) {
        let (mut x, mut y) = (from.0 as i64, from.1 as i64);
        let (x1, y1) = (to.0 as i64, to.1 as i64);
        let (dx, dy) = ((x1 - x).abs(), -(y1 - y).abs());
        let (step_x, step_y) = ((x1 - x).signum(), (y1 - y).signum());
        let mut error = dx + dy;
        loop {
            self.set((x as usize, y as usize), series);
            if (x, y) == (x1, y1) {
                return;
            }
            let doubled = 2 * error;
            if doubled >= dy {
                error += dy;
                x += step_x;
            }
            if doubled <= dx {
                error += dx;
                y += step_y;
            }
        }
    }

    fn row(&self, row: usize, look: Look) -> String {
        self.cells[row * self.columns..(row + 1) * self.columns]
            .iter()
            .map(|cell| match (cell.marker, cell.dots) {
                (Some(marker), _) => look.paint(cell.series, &marker.to_string()),
                (None, 0) => " ".to_string(),
                (None, dots) => {
                    let braille = char::from_u32(0x2800 + u32::from(dots)).expect("braille is in Unicode");
                    look.paint(cell.series, &braille.to_string())
                }
            })
            .collect()
    }
}
