//! Raw message bytes to Arrow: the bronze batch of decoded posts and the dead letters.
//!
//! The hot path is one arrow-json tape pass over the whole batch and one columnar flush. A
//! [`screen`] pass first sets aside the records arrow-json could reject and has each judged
//! alone, so one bad record costs its own isolation, never the batch.

pub mod schema;
mod screen;

use std::sync::{Arc, OnceLock};

use deltalake::arrow::array::{
    Array, ArrayRef, AsArray, BinaryArray, Date32Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray, UInt32Array,
};
use deltalake::arrow::compute::{cast, concat_batches, take};
use deltalake::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use deltalake::arrow::error::ArrowError;

use crate::source::{columns, raw_schema};
pub use schema::message_schema;
use screen::{screen, Screen};

/// Records per flush when isolating a type error: small enough to re-decode cheaply.
const ISOLATION_CHUNK: usize = 256;
const MICROS_PER_DAY: i64 = 86_400_000_000;

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("arrow: {0}")]
    Arrow(#[from] ArrowError),
}

/// Facts about the batch that every output row carries; fixed when the batch is planned, so a
/// re-run produces identical rows.
#[derive(Debug, Clone, Copy)]
pub struct BatchContext {
    pub batch_id: u64,
    /// When the batch was planned, in microseconds since the epoch (UTC).
    pub planned_at_micros: i64,
}

/// Columns added by tweetlake to bronze and dead-letter rows.
pub mod batch_columns {
    pub const BATCH_ID: &str = "_batch_id";
    pub const INGESTED_AT: &str = "_ingested_at";
    pub const INGEST_DATE: &str = "_ingest_date";
    pub const RAW: &str = "_raw";
    pub const ERROR: &str = "error";
    pub const RAW_TEXT: &str = "raw_text";
    pub const RAW_BYTES: &str = "raw";
}

pub struct Decoded {
    /// One row per post: source metadata, batch columns, the decoded message and `_raw`. In
    /// input order, in one batch per decode thread: joining them would copy every column.
    pub bronze: Vec<RecordBatch>,
    /// One row per rejected record, with its bytes and the reason.
    pub dead_letters: RecordBatch,
}

/// Below this many records per core a batch is decoded on fewer threads: a slice must be large
/// enough to pay for its thread.
const MIN_RECORDS_PER_THREAD: usize = 4096;

/// Records one arrow-json decoder takes at a time. Its tape holds them all, and it reserves
/// room for every nested field of the message schema per record: sized to a whole 30k-post
/// batch, the decoders were a third of a drain's peak heap.
const DECODE_CHUNK: usize = 8192;

pub struct MessageDecoder {
    max_message_bytes: usize,
}

/// Per input row: `None` while the record is good, else why it was rejected.
type Verdicts = Vec<Option<String>>;

impl MessageDecoder {
    pub fn new(max_message_bytes: usize) -> Self {
        Self { max_message_bytes }
    }

    /// [`Self::decode`] on every core: the batch is cut into contiguous slices decoded side by
    /// side and joined in order, so the result equals a single-threaded decode.
    pub fn decode_parallel(&self, raw: &RecordBatch, ctx: BatchContext) -> Result<Decoded, DecodeError> {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let slices = (raw.num_rows() / MIN_RECORDS_PER_THREAD).clamp(1, cores);
        if slices == 1 {
            return self.decode(raw, ctx);
        }
        let chunk = raw.num_rows().div_ceil(slices);
        let parts = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..slices)
                .map(|i| {
                    let start = i * chunk;
                    let slice = raw.slice(start, chunk.min(raw.num_rows() - start));
                    scope.spawn(move || self.decode(&slice, ctx))
                })
                .collect();
            handles
                .into_iter()
                .map(|handle| handle.join().expect("a decode thread panicked"))
                .collect::<Result<Vec<_>, _>>()
        })?;
        join(parts)
    }

    /// Decodes `raw` in order, [`DECODE_CHUNK`] records at a time.
    pub fn decode(&self, raw: &RecordBatch, ctx: BatchContext) -> Result<Decoded, DecodeError> {
        let rows = raw.num_rows();
        let parts = (0..rows.max(1))
            .step_by(DECODE_CHUNK)
            .map(|start| self.decode_chunk(&raw.slice(start, DECODE_CHUNK.min(rows - start)), ctx))
            .collect::<Result<Vec<_>, _>>()?;
        join(parts)
    }

    fn decode_chunk(&self, raw: &RecordBatch, ctx: BatchContext) -> Result<Decoded, DecodeError> {
        let values = raw
            .column_by_name(columns::VALUE)
            .expect("raw batch has a value column")
            .as_binary::<i32>();
        let mut verdicts: Verdicts = (0..values.len())
            .map(|i| {
                self.precheck(values, i)
                    .or_else(|| screened_verdict(values.value(i)))
            })
            .collect();
        let messages = decode_messages(values, &mut verdicts)?;
        let messages = reject_non_posts(messages, &mut verdicts)?;
        let (good, bad): (Vec<u32>, Vec<u32>) =
            (0..values.len() as u32).partition(|&i| verdicts[i as usize].is_none());
        Ok(Decoded {
            bronze: vec![bronze_batch(raw, values, &good, messages, ctx)?],
            dead_letters: dead_letter_batch(raw, values, &bad, &verdicts, ctx)?,
        })
    }

    fn precheck(&self, values: &BinaryArray, i: usize) -> Option<String> {
        if values.is_null(i) || values.value(i).iter().all(u8::is_ascii_whitespace) {
            return Some("empty message: expected one JSON object".into());
        }
        let bytes = values.value(i);
        if bytes.len() > self.max_message_bytes {
            return Some(format!(
                "message is {} bytes, above pipeline.max_message_bytes = {}: raise the limit to accept it",
                bytes.len(),
                self.max_message_bytes
            ));
        }
        std::str::from_utf8(bytes)
            .err()
            .map(|e| format!("message is not valid UTF-8 ({e})"))
    }
}

/// Decoded parts of one input, in input order, as one result.
fn join(parts: Vec<Decoded>) -> Result<Decoded, DecodeError> {
    let dead_letters = concat_batches(&dead_letter_schema(), parts.iter().map(|p| &p.dead_letters))?;
    Ok(Decoded {
        bronze: parts.into_iter().flat_map(|p| p.bronze).collect(),
        dead_letters,
    })
}

fn new_json_decoder(rows: usize) -> arrow_json::reader::Decoder {
    arrow_json::ReaderBuilder::new(message_schema())
        .with_batch_size(rows.max(1))
        .build_decoder()
        .expect("the message schema is a valid arrow-json schema")
}

/// Decodes every record whose verdict is still good; records that fail get a verdict.
/// The returned batch has one row per good record, in input order.
fn decode_messages(values: &BinaryArray, verdicts: &mut Verdicts) -> Result<RecordBatch, DecodeError> {
    loop {
        let rows: Vec<usize> = (0..values.len()).filter(|&i| verdicts[i].is_none()).collect();
        let mut decoder = match tape_pass(values, &rows, verdicts) {
            Some(decoder) => decoder,
            None => continue, // syntax errors found: decode the survivors again
        };
        match decoder.flush() {
            Ok(batch) => return Ok(batch.unwrap_or_else(|| RecordBatch::new_empty(message_schema()))),
            Err(e) => isolate_type_errors(values, &rows, verdicts, &e),
        }
    }
}

/// Feeds `rows` to one decoder. Returns it if every record was exactly one JSON value;
/// otherwise marks each offending record and returns `None`.
fn tape_pass(
    values: &BinaryArray,
    rows: &[usize],
    verdicts: &mut Verdicts,
) -> Option<arrow_json::reader::Decoder> {
    let mut decoder = new_json_decoder(rows.len());
    let mut clean = true;
    for &i in rows {
        if let Some(reason) = feed(&mut decoder, values.value(i)) {
            verdicts[i] = Some(reason);
            clean = false;
            decoder = new_json_decoder(rows.len());
        }
    }
    clean.then_some(decoder)
}

/// Feeds one record to `decoder`, which is at a record boundary: why it is not exactly one
/// JSON value, if it is not. The reason depends on the record alone, not on what was fed
/// before it.
fn feed(decoder: &mut arrow_json::reader::Decoder, message: &[u8]) -> Option<String> {
    let before = decoder.len();
    let fed = decoder.decode(message).and_then(|_| decoder.decode(b"\n"));
    match fed {
        Err(e) => Some(format!("invalid JSON: {e}")),
        Ok(_) if decoder.has_partial_record() => Some("invalid JSON: truncated message".into()),
        Ok(_) if decoder.len() != before + 1 => {
            Some("invalid JSON: expected one object per message, found several".into())
        }
        Ok(_) => None,
    }
}

/// A record the screen passes is decoded with the batch; a suspect is judged alone first.
fn screened_verdict(message: &[u8]) -> Option<String> {
    match screen(message) {
        Screen::Clean => None,
        Screen::Suspect => verdict_alone(message),
    }
}

/// Why arrow-json rejects `message` decoded on its own, if it does: the same reason a batch
/// pass gives it, syntax first, then types.
fn verdict_alone(message: &[u8]) -> Option<String> {
    // Room for a second record, so a message holding several is caught at the second.
    let mut decoder = new_json_decoder(2);
    feed(&mut decoder, message).or_else(|| decoder.flush().err().map(wrong_type))
}

fn wrong_type(e: ArrowError) -> String {
    format!("wrong type: {e}")
}

/// A flush failed although the screen passed every record: a value has the wrong type. Re-flush
/// in chunks, then record by record inside the failing chunks, to name each offender.
fn isolate_type_errors(
    values: &BinaryArray,
    rows: &[usize],
    verdicts: &mut Verdicts,
    batch_error: &ArrowError,
) {
    let mut found = false;
    for chunk in rows.chunks(ISOLATION_CHUNK) {
        if flush_error(values, chunk).is_none() {
            continue;
        }
        for &i in chunk {
            if let Some(reason) = verdict_alone(values.value(i)) {
                verdicts[i] = Some(reason);
                found = true;
            }
        }
    }
    if !found {
        // No single record fails alone, yet the batch does: keep every record rather than guess.
        for &i in rows {
            verdicts[i] = Some(format!("batch failed to decode as a whole: {batch_error}"));
        }
    }
}

fn flush_error(values: &BinaryArray, rows: &[usize]) -> Option<ArrowError> {
    let mut decoder = new_json_decoder(rows.len());
    for &i in rows {
        if let Err(e) = decoder
            .decode(values.value(i))
            .and_then(|_| decoder.decode(b"\n"))
        {
            return Some(e);
        }
    }
    decoder.flush().err()
}

/// A valid message without `data` is a stream error or control message, not a post.
fn reject_non_posts(messages: RecordBatch, verdicts: &mut Verdicts) -> Result<RecordBatch, DecodeError> {
    let data = messages.column(0);
    if data.null_count() == 0 {
        return Ok(messages);
    }
    let good_rows = (0..verdicts.len())
        .filter(|&i| verdicts[i].is_none())
        .collect::<Vec<_>>();
    let mut keep = Vec::with_capacity(good_rows.len());
    for (row, &input) in good_rows.iter().enumerate() {
        if data.is_null(row) {
            verdicts[input] = Some(
                "no `data` post in this message: an X stream error or control message (see its `errors`)"
                    .into(),
            );
        } else {
            keep.push(row as u32);
        }
    }
    Ok(take_rows(&messages, &keep)?)
}

fn take_rows(batch: &RecordBatch, rows: &[u32]) -> Result<RecordBatch, ArrowError> {
    let indices = UInt32Array::from(rows.to_vec());
    let columns = batch
        .columns()
        .iter()
        .map(|c| take(c.as_ref(), &indices, None))
        .collect::<Result<Vec<_>, _>>()?;
    RecordBatch::try_new(batch.schema(), columns)
}

fn batch_fields() -> Vec<Field> {
    vec![
        Field::new(batch_columns::BATCH_ID, DataType::Int64, false),
        Field::new(batch_columns::INGESTED_AT, schema::timestamp_type(), false),
        Field::new(batch_columns::INGEST_DATE, DataType::Date32, false),
    ]
}

fn batch_arrays(ctx: BatchContext, rows: usize) -> Vec<ArrayRef> {
    let day = ctx.planned_at_micros.div_euclid(MICROS_PER_DAY) as i32;
    vec![
        Arc::new(Int64Array::from(vec![ctx.batch_id as i64; rows])),
        Arc::new(TimestampMicrosecondArray::from(vec![ctx.planned_at_micros; rows]).with_timezone("UTC")),
        Arc::new(Date32Array::from(vec![day; rows])),
    ]
}

/// Source metadata columns (all raw columns but the value).
fn metadata_fields() -> Vec<Field> {
    raw_schema()
        .fields()
        .iter()
        .filter(|f| f.name() != columns::VALUE)
        .map(|f| f.as_ref().clone())
        .collect()
}

fn metadata_arrays(raw: &RecordBatch, rows: &[u32]) -> Result<Vec<ArrayRef>, ArrowError> {
    let indices = UInt32Array::from(rows.to_vec());
    metadata_fields()
        .iter()
        .map(|f| {
            take(
                raw.column_by_name(f.name()).expect("raw column").as_ref(),
                &indices,
                None,
            )
        })
        .collect()
}

/// Schema of the `bronze` input and table.
pub fn bronze_schema() -> SchemaRef {
    static SCHEMA: OnceLock<SchemaRef> = OnceLock::new();
    SCHEMA
        .get_or_init(|| {
            let mut fields = metadata_fields();
            fields.extend(batch_fields());
            fields.extend(message_schema().fields().iter().map(|f| f.as_ref().clone()));
            fields.push(Field::new(batch_columns::RAW, DataType::Utf8, false));
            Arc::new(Schema::new(fields))
        })
        .clone()
}

/// Schema of the dead-letter table.
pub fn dead_letter_schema() -> SchemaRef {
    static SCHEMA: OnceLock<SchemaRef> = OnceLock::new();
    SCHEMA
        .get_or_init(|| {
            let mut fields = metadata_fields();
            fields.extend(batch_fields());
            fields.push(Field::new(batch_columns::ERROR, DataType::Utf8, false));
            fields.push(Field::new(batch_columns::RAW_TEXT, DataType::Utf8, true));
            fields.push(Field::new(batch_columns::RAW_BYTES, DataType::Binary, true));
            Arc::new(Schema::new(fields))
        })
        .clone()
}

fn bronze_batch(
    raw: &RecordBatch,
    values: &BinaryArray,
    good: &[u32],
    messages: RecordBatch,
    ctx: BatchContext,
) -> Result<RecordBatch, ArrowError> {
    let mut arrays = metadata_arrays(raw, good)?;
    arrays.extend(batch_arrays(ctx, good.len()));
    arrays.extend(messages.columns().iter().cloned());
    // Usually every record is good: then `_raw` shares the input's buffers instead of a copy.
    let raw_values = match good.len() == values.len() {
        true => Arc::new(values.clone()) as ArrayRef,
        false => take(values, &UInt32Array::from(good.to_vec()), None)?,
    };
    arrays.push(cast(&raw_values, &DataType::Utf8)?);
    RecordBatch::try_new(bronze_schema(), arrays)
}

fn dead_letter_batch(
    raw: &RecordBatch,
    values: &BinaryArray,
    bad: &[u32],
    verdicts: &Verdicts,
    ctx: BatchContext,
) -> Result<RecordBatch, ArrowError> {
    let mut arrays = metadata_arrays(raw, bad)?;
    arrays.extend(batch_arrays(ctx, bad.len()));
    let errors: StringArray = bad.iter().map(|&i| verdicts[i as usize].as_deref()).collect();
    let raw_text: StringArray = bad
        .iter()
        .map(|&i| {
            let i = i as usize;
            values
                .is_valid(i)
                .then(|| String::from_utf8_lossy(values.value(i)).into_owned())
        })
        .collect();
    arrays.push(Arc::new(errors));
    arrays.push(Arc::new(raw_text));
    arrays.push(take(values, &UInt32Array::from(bad.to_vec()), None)?);
    RecordBatch::try_new(dead_letter_schema(), arrays)
}

#[cfg(test)]
mod tests;
