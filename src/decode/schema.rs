//! The declared Arrow schema of one X API v2 filtered-stream message.
//!
//! Declared, not inferred: every batch has the same columns whatever its posts happen to
//! contain, so Delta tables never drift. Fields the X API adds later are ignored until they are
//! declared here; fields a message omits (v2 omits nulls) decode as nulls.
//!
//! One field is tweetlake's own: `platform`, next to `data`, names where a post comes from
//! (`bluesky` from `produce bluesky`). X never sends it: X's posts decode it as null.

use std::sync::{Arc, OnceLock};

use deltalake::arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};

fn utf8(name: &str) -> Field {
    Field::new(name, DataType::Utf8, true)
}

fn int32(name: &str) -> Field {
    Field::new(name, DataType::Int32, true)
}

fn int64(name: &str) -> Field {
    Field::new(name, DataType::Int64, true)
}

fn boolean(name: &str) -> Field {
    Field::new(name, DataType::Boolean, true)
}

/// Timestamps are microseconds in UTC: the precision Delta Lake's `timestamp` type stores.
pub fn timestamp_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

fn timestamp(name: &str) -> Field {
    Field::new(name, timestamp_type(), true)
}

fn structure(name: &str, fields: Vec<Field>) -> Field {
    Field::new(name, DataType::Struct(Fields::from(fields)), true)
}

fn list_of(name: &str, item: DataType) -> Field {
    Field::new(
        name,
        DataType::List(Arc::new(Field::new("element", item, true))),
        true,
    )
}

fn list_of_structs(name: &str, fields: Vec<Field>) -> Field {
    list_of(name, DataType::Struct(Fields::from(fields)))
}

fn span(mut fields: Vec<Field>) -> Vec<Field> {
    fields.insert(0, int32("start"));
    fields.insert(1, int32("end"));
    fields
}

/// Which entities a text carries: a post's own text has X's named-entity annotations, a long
/// post's `note_tweet` does not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Annotations {
    Included,
    Omitted,
}

fn entities(annotations: Annotations) -> Field {
    let mut fields = vec![
        list_of_structs("hashtags", span(vec![utf8("tag")])),
        list_of_structs("cashtags", span(vec![utf8("tag")])),
        list_of_structs("mentions", span(vec![utf8("username"), utf8("id")])),
        list_of_structs(
            "urls",
            span(vec![
                utf8("url"),
                utf8("expanded_url"),
                utf8("display_url"),
                utf8("unwound_url"),
                utf8("title"),
                utf8("description"),
                int32("status"),
                utf8("media_key"),
            ]),
        ),
    ];
    if annotations == Annotations::Included {
        fields.push(list_of_structs(
            "annotations",
            span(vec![
                Field::new("probability", DataType::Float64, true),
                utf8("type"),
                utf8("normalized_text"),
            ]),
        ));
    }
    structure("entities", fields)
}

fn point(name: &str) -> Field {
    structure(
        name,
        vec![utf8("type"), list_of("coordinates", DataType::Float64)],
    )
}

/// Fields of a post: the message's `data`, and each of `includes.tweets`.
fn tweet_fields() -> Vec<Field> {
    vec![
        utf8("id"),
        utf8("text"),
        list_of("edit_history_tweet_ids", DataType::Utf8),
        utf8("author_id"),
        timestamp("created_at"),
        utf8("lang"),
        utf8("conversation_id"),
        utf8("in_reply_to_user_id"),
        boolean("possibly_sensitive"),
        utf8("reply_settings"),
        utf8("source"),
        structure("geo", vec![utf8("place_id"), point("coordinates")]),
        entities(Annotations::Included),
        structure(
            "public_metrics",
            vec![
                int64("retweet_count"),
                int64("reply_count"),
                int64("like_count"),
                int64("quote_count"),
                int64("impression_count"),
                int64("bookmark_count"),
            ],
        ),
        list_of_structs("referenced_tweets", vec![utf8("type"), utf8("id")]),
        structure("note_tweet", vec![utf8("text"), entities(Annotations::Omitted)]),
        structure(
            "attachments",
            vec![
                list_of("media_keys", DataType::Utf8),
                list_of("poll_ids", DataType::Utf8),
            ],
        ),
    ]
}

fn user_fields() -> Vec<Field> {
    vec![
        utf8("id"),
        utf8("name"),
        utf8("username"),
        utf8("location"),
        utf8("description"),
        timestamp("created_at"),
        boolean("protected"),
        boolean("verified"),
        utf8("verified_type"),
        utf8("url"),
        utf8("profile_image_url"),
        structure(
            "public_metrics",
            vec![
                int64("followers_count"),
                int64("following_count"),
                int64("tweet_count"),
                int64("listed_count"),
                int64("like_count"),
            ],
        ),
    ]
}

fn place_fields() -> Vec<Field> {
    vec![
        utf8("id"),
        utf8("full_name"),
        utf8("name"),
        utf8("country"),
        utf8("country_code"),
        utf8("place_type"),
        list_of("contained_within", DataType::Utf8),
        structure(
            "geo",
            vec![
                utf8("type"),
                list_of("bbox", DataType::Float64),
                point("geometry"),
            ],
        ),
    ]
}

fn media_fields() -> Vec<Field> {
    vec![
        utf8("media_key"),
        utf8("type"),
        utf8("url"),
        utf8("preview_image_url"),
        int32("width"),
        int32("height"),
        utf8("alt_text"),
    ]
}

fn problem_fields() -> Vec<Field> {
    vec![
        utf8("title"),
        utf8("detail"),
        utf8("type"),
        utf8("disconnect_type"),
        utf8("connection_issue"),
        utf8("resource_type"),
        utf8("resource_id"),
        utf8("parameter"),
    ]
}

/// The top-level fields of a stream message, in column order.
pub fn message_schema() -> SchemaRef {
    static SCHEMA: OnceLock<SchemaRef> = OnceLock::new();
    SCHEMA
        .get_or_init(|| {
            Arc::new(Schema::new(vec![
                structure("data", tweet_fields()),
                structure(
                    "includes",
                    vec![
                        list_of_structs("users", user_fields()),
                        list_of_structs("places", place_fields()),
                        list_of_structs("tweets", tweet_fields()),
                        list_of_structs("media", media_fields()),
                    ],
                ),
                list_of_structs("matching_rules", vec![utf8("id"), utf8("tag")]),
                list_of_structs("errors", problem_fields()),
                utf8("platform"),
            ]))
        })
        .clone()
}
