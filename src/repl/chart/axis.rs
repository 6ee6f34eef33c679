//! Values on an axis: X as numbers (times as epoch milliseconds) and labels that read well.

use chrono::DateTime;
use deltalake::arrow::array::{Array, ArrayRef, AsArray};
use deltalake::arrow::compute::cast;
use deltalake::arrow::datatypes::{DataType, Int64Type, TimeUnit};
use deltalake::arrow::error::ArrowError;
use deltalake::arrow::util::display::{ArrayFormatter, FormatOptions};

use super::{numbers, ChartError};

const MILLIS_PER_DAY: i64 = 86_400_000;

/// What X holds, which says how its values are labelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scale {
    Number,
    Date,
    /// A timestamp without a time zone: labelled as it reads.
    Timestamp,
    /// An instant (a timestamp with a zone): labelled in UTC.
    UtcTimestamp,
}

/// The X column of a line chart, as numbers.
pub struct XAxis {
    pub name: String,
    pub values: Vec<Option<f64>>,
    scale: Scale,
}

impl XAxis {
    pub fn new(name: &str, column: &ArrayRef) -> Result<Self, ChartError> {
        let scale = match column.data_type() {
            t if t.is_numeric() => Scale::Number,
            DataType::Date32 | DataType::Date64 => Scale::Date,
            DataType::Timestamp(_, None) => Scale::Timestamp,
            DataType::Timestamp(_, Some(_)) => Scale::UtcTimestamp,
            other => {
                return Err(ChartError::NotAnAxis {
                    name: name.to_string(),
                    data_type: other.clone(),
                })
            }
        };
        let values = match scale {
            Scale::Number => numbers(column)?,
            Scale::Date | Scale::Timestamp | Scale::UtcTimestamp => epoch_millis(column)?,
        };
        Ok(Self {
            name: name.to_string(),
            values,
            scale,
        })
    }

    /// How values from `min` to `max` are labelled: the span decides how much of a time shows.
    pub fn labeller(&self, min: f64, max: f64) -> Labeller {
        match self.scale {
            Scale::Number => Labeller::Number,
            Scale::Date => Labeller::Time(TimeFormat::Date),
            Scale::Timestamp | Scale::UtcTimestamp => {
                Labeller::Time(TimeFormat::spanning(min as i64, max as i64, &self.values))
            }
        }
    }

    /// `minute (UTC)`: the column, and the zone its times are shown in.
    pub fn caption(&self) -> String {
        match self.scale {
            Scale::UtcTimestamp => format!("{} (UTC)", self.name),
            Scale::Number | Scale::Date | Scale::Timestamp => self.name.clone(),
        }
    }
}

const MILLIS_PER_MINUTE: i64 = 60_000;
/// Tick steps below a day, in milliseconds: each divides the next larger unit evenly.
const TIME_STEPS: [i64; 17] = [
    1_000, 2_000, 5_000, 10_000, 15_000, 30_000, 60_000, 120_000, 300_000, 600_000, 900_000, 1_800_000,
    3_600_000, 7_200_000, 10_800_000, 21_600_000, 43_200_000,
];

/// How much of a time a label shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeFormat {
    Seconds,
    Minutes,
    DayAndMinutes,
    Date,
}

impl TimeFormat {
    /// The shortest format that still tells the values from `min` to `max` apart.
    fn spanning(min: i64, max: i64, values: &[Option<f64>]) -> Self {
        let whole_days = values
            .iter()
            .flatten()
            .all(|v| (*v as i64).rem_euclid(MILLIS_PER_DAY) == 0);
        let span = max - min;
        if whole_days && span > 0 {
            TimeFormat::Date
        } else if span < 2 * MILLIS_PER_MINUTE {
            TimeFormat::Seconds
        } else if min.div_euclid(MILLIS_PER_DAY) == max.div_euclid(MILLIS_PER_DAY) {
            TimeFormat::Minutes
        } else if span < 180 * MILLIS_PER_DAY {
            TimeFormat::DayAndMinutes
        } else {
            TimeFormat::Date
        }
    }

    fn pattern(self) -> &'static str {
        match self {
            TimeFormat::Seconds => "%H:%M:%S",
            TimeFormat::Minutes => "%H:%M",
            TimeFormat::DayAndMinutes => "%m-%d %H:%M",
            TimeFormat::Date => "%Y-%m-%d",
        }
    }

    /// The smallest step between ticks whose labels differ.
    fn resolution(self) -> i64 {
        match self {
            TimeFormat::Seconds => 1_000,
            TimeFormat::Minutes | TimeFormat::DayAndMinutes => MILLIS_PER_MINUTE,
            TimeFormat::Date => MILLIS_PER_DAY,
        }
    }
}

/// Turns axis values back into text, and says where ticks go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Labeller {
    Number,
    /// Epoch milliseconds.
    Time(TimeFormat),
}

impl Labeller {
    pub fn label(self, value: f64) -> String {
        match self {
            Labeller::Number => number(value),
            Labeller::Time(format) => DateTime::from_timestamp_millis(value.round() as i64).map_or_else(
                || number(value),
                |t| t.naive_utc().format(format.pattern()).to_string(),
            ),
        }
    }

    /// Round values from `min` to `max`, at most `most` steps apart in all: multiples of 1, 2 or 5
    /// times a power of ten, or of a whole second, minute, hour or day (UTC), so that each tick
    /// stands where its label says.
    pub fn ticks(self, min: f64, max: f64, most: usize) -> Vec<f64> {
        let least = (max - min) / most as f64;
        let step = match self {
            Labeller::Number => round_step(least),
            Labeller::Time(format) => {
                let step = TIME_STEPS.into_iter().find(|&s| s as f64 >= least).map_or_else(
                    || round_step(least / MILLIS_PER_DAY as f64) * MILLIS_PER_DAY as f64,
                    |s| s as f64,
                );
                step.max(format.resolution() as f64)
            }
        };
        let first = (min / step).ceil() as i64;
        let last = (max / step).floor() as i64;
        (first..=last).map(|i| i as f64 * step).collect()
    }
}

/// The smallest of 1, 2, 5 or 10 times a power of ten that is at least `least` (> 0).
fn round_step(least: f64) -> f64 {
    let power = 10f64.powf(least.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * power)
        .find(|&step| step >= least)
        .unwrap_or(10.0 * power)
}

/// A number with four significant digits at most (whole numbers in full), without trailing zeros.
pub fn number(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        return format!("{}", value as i64);
    }
    let magnitude = value.abs().log10().floor() as i32;
    let decimals = (3 - magnitude).clamp(0, 10) as usize;
    let text = format!("{value:.decimals$}");
    let text = match text.contains('.') {
        true => text.trim_end_matches('0').trim_end_matches('.'),
        false => &text,
    };
    match text {
        "-0" => "0".to_string(),
        text => text.to_string(),
    }
}

/// Dates and timestamps as milliseconds since the epoch (UTC for instants).
fn epoch_millis(column: &ArrayRef) -> Result<Vec<Option<f64>>, ArrowError> {
    let millis = match column.data_type() {
        // Date64 already counts milliseconds.
        DataType::Date32 | DataType::Date64 => cast(column, &DataType::Date64)?,
        DataType::Timestamp(_, zone) => {
            cast(column, &DataType::Timestamp(TimeUnit::Millisecond, zone.clone()))?
        }
        other => unreachable!("{other} is not a time"),
    };
    let millis = cast(&millis, &DataType::Int64)?;
    Ok(millis
        .as_primitive::<Int64Type>()
        .iter()
        .map(|v| v.map(|v| v as f64))
        .collect())
}

/// The bar chart's labels, one per row: times as a line chart labels them, anything else as
/// the table shows it.
pub fn categories(column: &ArrayRef) -> Result<Vec<String>, ChartError> {
    if matches!(
        column.data_type(),
        DataType::Date32 | DataType::Date64 | DataType::Timestamp(..)
    ) {
        let axis = XAxis::new("", column)?;
        let known = || axis.values.iter().flatten().copied();
        let min = known().fold(f64::INFINITY, f64::min);
        let max = known().fold(f64::NEG_INFINITY, f64::max);
        let labeller = axis.labeller(min, max);
        let label = |v: &Option<f64>| v.map_or_else(|| NULL.to_string(), |v| labeller.label(v));
        return Ok(axis.values.iter().map(label).collect());
    }
    let options = FormatOptions::default().with_null(NULL);
    let formatter = ArrayFormatter::try_new(column.as_ref(), &options)?;
    Ok((0..column.len())
        .map(|i| formatter.value(i).to_string())
        .collect())
}

const NULL: &str = "NULL";
