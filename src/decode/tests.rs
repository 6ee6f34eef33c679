//! Mixed batches: bad records anywhere cost only themselves, keep arrow-json's own reasons, and
//! leave the good records' rows exactly as a batch of the good records alone decodes them.

use deltalake::arrow::array::{AsArray, RecordBatch};
use deltalake::arrow::compute::concat_batches;
use deltalake::arrow::datatypes::Int64Type;

use super::*;
use crate::source::RawBatchBuilder;

const CONTEXT: BatchContext = BatchContext {
    batch_id: 3,
    planned_at_micros: 1_795_000_000_000_000,
};

/// Records keep their offset in every batch built from them, so rows compare whole.
fn raw(records: &[(i64, &[u8])]) -> RecordBatch {
    let mut builder = RawBatchBuilder::default();
    for &(offset, message) in records {
        builder.push("posts", 0, offset, Some(offset), None, Some(message));
    }
    builder.finish()
}

fn decode(records: &[(i64, &[u8])]) -> Decoded {
    MessageDecoder::new(1 << 20)
        .decode(&raw(records), CONTEXT)
        .unwrap()
}

fn bronze(decoded: &Decoded) -> RecordBatch {
    concat_batches(&bronze_schema(), &decoded.bronze).unwrap()
}

/// (offset, error) of each dead letter, in order.
fn dead_letters(decoded: &Decoded) -> Vec<(i64, String)> {
    let batch = &decoded.dead_letters;
    let offsets = batch
        .column_by_name(columns::OFFSET)
        .unwrap()
        .as_primitive::<Int64Type>();
    let errors = batch
        .column_by_name(batch_columns::ERROR)
        .unwrap()
        .as_string::<i32>();
    offsets
        .values()
        .iter()
        .copied()
        .zip(errors.iter().map(|e| e.unwrap().to_owned()))
        .collect()
}

/// Good posts in the X v2 filtered stream's shape: the shared sample of its messages. (Not the
/// synthetic generator: `produce` sits above `decode`, and tests keep the imports one way too.)
pub(super) const SAMPLE_POSTS: &str = include_str!("../../tests/fixtures/x_v2_stream_sample.jsonl");

/// `count` good posts: the sample, repeated.
fn posts(count: usize) -> Vec<String> {
    SAMPLE_POSTS
        .lines()
        .cycle()
        .take(count)
        .map(str::to_owned)
        .collect()
}

/// Malformed and wrong-typed records, each with the start of the reason arrow-json gives it.
const BAD: [(&str, &str); 9] = [
    (
        r#"{"data":{"id":"1","text":"truncated"#,
        "invalid JSON: truncated message",
    ),
    ("not json at all", "invalid JSON: "),
    (
        r#"{"data":{}} {"data":{}}"#,
        "invalid JSON: expected one object per message, found several",
    ),
    (r#"{"data":{"id":1860000000000000102}}"#, "wrong type: "),
    (r#"{"data":{"created_at":"yesterday-ish"}}"#, "wrong type: "),
    (
        r#"{"data":{"public_metrics":{"like_count":"many"}}}"#,
        "wrong type: ",
    ),
    (r#"{"data":{"edit_history_tweet_ids":{"0":"1"}}}"#, "wrong type: "),
    ("[1,2,3]", "wrong type: "),
    (
        r#"{"errors":[{"title":"operational-disconnect"}]}"#,
        "no `data` post in this message",
    ),
];

/// Puts `BAD[k]` at each position `at[k]` (cycling) among `good` posts; returns the records
/// and the positions of the bad ones.
fn mixed<'a>(good: &'a [String], at: &[usize]) -> Vec<(i64, &'a [u8])> {
    let mut posts = good.iter();
    (0..good.len() + at.len())
        .map(|position| {
            let message = match at.iter().position(|&p| p == position) {
                Some(k) => BAD[k % BAD.len()].0.as_bytes(),
                None => posts.next().unwrap().as_bytes(),
            };
            (position as i64, message)
        })
        .collect()
}

/// Checks a mixed batch against the good records alone and each bad record alone.
fn assert_costs_only_the_bad(records: &[(i64, &[u8])], bad_at: &[usize]) {
    let decoded = decode(records);
    let (bad, good): (Vec<_>, Vec<_>) = records
        .iter()
        .copied()
        .enumerate()
        .partition(|(position, _)| bad_at.contains(position));
    let good: Vec<_> = good.into_iter().map(|(_, record)| record).collect();
    assert_eq!(
        bronze(&decoded),
        bronze(&decode(&good)),
        "good rows as if alone, in order"
    );

    let alone: Vec<(i64, String)> = bad
        .iter()
        .flat_map(|&(_, record)| dead_letters(&decode(&[record])))
        .collect();
    assert_eq!(
        dead_letters(&decoded),
        alone,
        "each bad record with its own reason"
    );
    for ((_, reason), &position) in alone.iter().zip(bad_at) {
        let expected = BAD[bad_at.iter().position(|&p| p == position).unwrap() % BAD.len()].1;
        assert!(
            reason.starts_with(expected),
            "{reason:?} should start with {expected:?}"
        );
    }
}

#[test]
fn bad_records_at_the_start_middle_and_end_cost_only_themselves() {
    let good = posts(40);
    for bad_at in [vec![0], vec![20], vec![40], vec![0, 21, 42]] {
        assert_costs_only_the_bad(&mixed(&good, &bad_at), &bad_at);
    }
}

#[test]
fn adjacent_bad_records_of_every_kind_cost_only_themselves() {
    let good = posts(30);
    let bad_at: Vec<usize> = (10..10 + BAD.len()).collect();
    assert_costs_only_the_bad(&mixed(&good, &bad_at), &bad_at);
}

#[test]
fn a_batch_of_only_bad_records_is_all_dead_letters() {
    let bad_at: Vec<usize> = (0..BAD.len()).collect();
    let records = mixed(&[], &bad_at);
    assert_costs_only_the_bad(&records, &bad_at);
    let decoded = decode(&records);
    assert_eq!(bronze(&decoded).num_rows(), 0);
    assert_eq!(decoded.dead_letters.num_rows(), BAD.len());
}

#[test]
fn reasons_are_arrow_jsons_own() {
    let reasons: Vec<String> = [
        r#"{"data":{"id":1860000000000000102}}"#,
        r#"{"data":{"edit_history_tweet_ids":{"0":"1"}}}"#,
        "not json at all",
    ]
    .iter()
    .enumerate()
    .flat_map(|(i, m)| dead_letters(&decode(&[(i as i64, m.as_bytes())])))
    .map(|(_, reason)| reason)
    .collect();
    assert_eq!(
        reasons,
        [
            "wrong type: Json error: whilst decoding field 'data': whilst decoding field 'id': \
             expected string got 1860000000000000102",
            "wrong type: Json error: whilst decoding field 'data': whilst decoding field \
             'edit_history_tweet_ids': expected [ got {\"0\": \"1\"}",
            "invalid JSON: Json error: Encountered unexpected 'o' whilst parsing literal",
        ]
    );
}

#[test]
fn a_record_the_screen_passes_but_arrow_json_rejects_is_still_isolated() {
    // A lone surrogate in an undeclared field: valid to the screen, not to arrow-json's tape.
    let lone_surrogate = r#"{"data":{"id":"1"},"note":"\ud800"}"#;
    assert_eq!(screen(lone_surrogate.as_bytes()), Screen::Clean);
    let good = posts(10);
    let mut records = mixed(&good, &[]);
    records.insert(5, (100, lone_surrogate.as_bytes()));
    let decoded = decode(&records);
    let reasons = dead_letters(&decoded);
    assert_eq!(reasons.len(), 1, "{reasons:?}");
    assert_eq!(reasons[0].0, 100);
    assert!(reasons[0].1.starts_with("invalid JSON: "), "{reasons:?}");
    assert_eq!(bronze(&decoded).num_rows(), 10);
}
