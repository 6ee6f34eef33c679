//! The bar chart: one horizontal bar per row and Y column, in the result's order, its value after
//! it (and its column's name, when there are several). Bars grow right from zero in eighths of a
//! character, or left from zero in whole characters for negative values.

use super::axis::number;
use super::{fit, ChartError, Look, Series};
use crate::repl::output::TerminalSize;

const MIN_BAR_COLUMNS: usize = 8;
/// Labels take at most this share of the width (a third): the bars are what is read.
const LABEL_SHARE: usize = 3;
/// A bar's last character, by the eighths it fills (none to seven).
const EIGHTHS: [char; 8] = [' ', '▏', '▎', '▍', '▌', '▋', '▊', '▉'];
const FULL: char = '█';
const NULL: &str = "NULL";

pub(super) fn draw(
    x: &str,
    categories: &[String],
    series: &[Series],
    size: TerminalSize,
    look: Look,
) -> Result<String, ChartError> {
    let values = series.iter().flat_map(|s| s.values.iter().flatten().copied());
    let scale = Scale::of(values).ok_or_else(|| {
        let names: Vec<&str> = series.iter().map(|s| s.name.as_str()).collect();
        ChartError::Empty {
            columns: names.join(" or "),
        }
    })?;
    let texts: Vec<Vec<String>> = series
        .iter()
        .map(|s| {
            s.values
                .iter()
                .map(|v| v.map_or_else(|| NULL.to_string(), number))
                .collect()
        })
        .collect();
    let value_width = texts
        .iter()
        .flatten()
        .map(|t| t.chars().count())
        .max()
        .unwrap_or(0);
    let named = series.len() > 1;
    let name_width = match named {
        true => 1 + series.iter().map(|s| s.name.chars().count()).max().unwrap_or(0),
        false => 0,
    };
    let longest = categories.iter().map(|c| c.chars().count()).max().unwrap_or(0);
    let label_width = longest.min(size.columns / LABEL_SHARE).max(1);
    let bar_width = size
        .columns
        .saturating_sub(label_width + 2 + 1 + value_width + name_width);
    if bar_width < MIN_BAR_COLUMNS {
        return Err(ChartError::TooNarrow {
            columns: size.columns,
        });
    }

    let mut text = title(x, series, look, size.columns);
    for (row, category) in categories.iter().enumerate() {
        for (index, s) in series.iter().enumerate() {
            let label = match index {
                0 => fit(category, label_width),
                _ => String::new(),
            };
            let bar = look.paint(index, &scale.bar(s.values[row], bar_width));
            let value = &texts[index][row];
            let name = match named {
                true => look.paint(index, &format!(" {}", s.name)),
                false => String::new(),
            };
            let line = format!("{label:<label_width$} │{bar} {value:>value_width$}{name}");
            text.push_str(line.trim_end());
            text.push('\n');
        }
    }
    Ok(text)
}

/// `posts, negative by company`, each Y in its colour.
fn title(x: &str, series: &[Series], look: Look, width: usize) -> String {
    let names: Vec<&str> = series.iter().map(|s| s.name.as_str()).collect();
    let visible = format!("{} by {x}", names.join(", "));
    if visible.chars().count() > width {
        return format!("{}\n", fit(&visible, width));
    }
    let painted: Vec<String> = names
        .iter()
        .enumerate()
        .map(|(index, name)| look.paint(index, name))
        .collect();
    format!("{} by {x}\n", painted.join(", "))
}

/// Where bars start and how long they grow: from the smallest value or zero to the largest or
/// zero, so that zero is always on the scale.
struct Scale {
    low: f64,
    high: f64,
}

impl Scale {
    fn of(values: impl Iterator<Item = f64>) -> Option<Self> {
        let (low, high) = values.fold(None, |range: Option<(f64, f64)>, v| match range {
            None => Some((v.min(0.0), v.max(0.0))),
            Some((low, high)) => Some((low.min(v), high.max(v))),
        })?;
        // All zeros: any scale draws them as nothing.
        let high = if low == high { 1.0 } else { high };
        Some(Self { low, high })
    }

    /// `value`'s bar, `width` characters: from the zero column right for a positive value, left
    /// for a negative one; nothing for no value.
    fn bar(&self, value: Option<f64>, width: usize) -> String {
        let per_unit = width as f64 / (self.high - self.low);
        let zero = (-self.low * per_unit).round() as usize;
        let mut cells = vec![' '; width];
        match value {
            Some(v) if v >= 0.0 => {
                let eighths = ((v * per_unit * 8.0).round() as usize).min((width - zero) * 8);
                let full = zero + eighths / 8;
                cells[zero..full].fill(FULL);
                if eighths % 8 > 0 {
                    cells[full] = EIGHTHS[eighths % 8];
                }
            }
            Some(v) => {
                let whole = ((-v * per_unit).round() as usize).min(zero);
                cells[zero - whole..zero].fill(FULL);
            }
            None => {}
        }
        cells.into_iter().collect()
    }
}
