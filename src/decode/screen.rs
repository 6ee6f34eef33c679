//! A fast screen for records arrow-json could reject, so one bad record never fails a batch.
//!
//! arrow-json names a syntax error's record but fails a whole flush on one wrong-typed value
//! without saying which; finding it meant decoding the batch again, record by record. The
//! screen walks each record once against the declared schema and passes only the canonical
//! forms (a string where a string is declared, an integer in range where one is declared, ...).
//! Anything else is a suspect, which arrow-json then judges alone: the screen decides which
//! records to look at, never what becomes of them, so the dead letters and their errors are
//! arrow-json's own.

use std::fmt;
use std::sync::OnceLock;

use deltalake::arrow::array::timezone::Tz;
use deltalake::arrow::compute::kernels::cast_utils::string_to_datetime;
use deltalake::arrow::datatypes::DataType;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::message_schema;

/// What the screen makes of a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Screen {
    /// Valid JSON whose every declared field has its canonical form: arrow-json decodes it.
    Clean,
    /// Anything else: arrow-json, on the record alone, says whether and why it is rejected.
    Suspect,
}

pub fn screen(message: &[u8]) -> Screen {
    let mut json = serde_json::Deserializer::from_slice(message);
    let checked = json
        .deserialize_map(Check(message_shape()))
        .and_then(|()| json.end());
    match checked {
        Ok(()) => Screen::Clean,
        Err(_) => Screen::Suspect,
    }
}

/// The values a declared type accepts without doubt. Every declared field is nullable, so
/// `null` passes anywhere below the message itself.
enum Shape {
    Utf8,
    Int32,
    Int64,
    Float64,
    Boolean,
    Timestamp(Tz),
    List(Box<Shape>),
    Struct(Vec<(String, Shape)>),
    /// A type the screen does not model: any valid JSON passes, arrow-json judges it.
    Unmodelled,
}

impl Shape {
    fn of(data_type: &DataType) -> Self {
        match data_type {
            DataType::Utf8 => Self::Utf8,
            DataType::Int32 => Self::Int32,
            DataType::Int64 => Self::Int64,
            DataType::Float64 => Self::Float64,
            DataType::Boolean => Self::Boolean,
            DataType::Timestamp(_, Some(tz)) => tz.parse().map_or(Self::Unmodelled, Self::Timestamp),
            DataType::List(item) => Self::List(Box::new(Self::of(item.data_type()))),
            DataType::Struct(fields) => Self::Struct(
                fields
                    .iter()
                    .map(|f| (f.name().clone(), Self::of(f.data_type())))
                    .collect(),
            ),
            _ => Self::Unmodelled,
        }
    }

    fn field<'s>(fields: &'s [(String, Shape)], name: &str) -> Option<&'s Shape> {
        fields
            .iter()
            .find(|(field, _)| field == name)
            .map(|(_, shape)| shape)
    }
}

fn message_shape() -> &'static Shape {
    static SHAPE: OnceLock<Shape> = OnceLock::new();
    SHAPE.get_or_init(|| Shape::of(&DataType::Struct(message_schema().fields().clone())))
}

/// Checks one value against its shape; any error makes the record a suspect, so the error
/// itself carries nothing.
struct Check<'s>(&'s Shape);

impl<'de> DeserializeSeed<'de> for Check<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        match self.0 {
            Shape::Unmodelled => deserializer.deserialize_ignored_any(IgnoredAny).map(drop),
            _ => deserializer.deserialize_any(self),
        }
    }
}

fn passes<E: de::Error>(pass: bool) -> Result<(), E> {
    match pass {
        true => Ok(()),
        false => Err(E::custom("not in its canonical form")),
    }
}

impl<'de> Visitor<'de> for Check<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a value of its declared type")
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        passes(matches!(self.0, Shape::Boolean))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        passes(match self.0 {
            Shape::Int32 => i32::try_from(v).is_ok(),
            Shape::Int64 | Shape::Float64 => true,
            _ => false,
        })
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        passes(match self.0 {
            Shape::Int32 => i32::try_from(v).is_ok(),
            Shape::Int64 => i64::try_from(v).is_ok(),
            Shape::Float64 => true,
            _ => false,
        })
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        passes(matches!(self.0, Shape::Float64))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        passes(match self.0 {
            Shape::Utf8 => true,
            Shape::Timestamp(tz) => string_to_datetime(tz, v).is_ok(),
            _ => false,
        })
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let Shape::List(item) = self.0 else {
            return passes(false);
        };
        while seq.next_element_seed(Check(item))?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let Shape::Struct(fields) = self.0 else {
            return passes(false);
        };
        while let Some(shape) = map.next_key_seed(FieldOf(fields))? {
            match shape {
                Some(shape) => map.next_value_seed(Check(shape))?,
                // arrow-json ignores undeclared fields.
                None => map.next_value::<IgnoredAny>().map(drop)?,
            }
        }
        Ok(())
    }
}

/// A key of an object: the shape of the declared field it names, if any.
struct FieldOf<'s>(&'s [(String, Shape)]);

impl<'de, 's> DeserializeSeed<'de> for FieldOf<'s> {
    type Value = Option<&'s Shape>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'s> Visitor<'_> for FieldOf<'s> {
    type Value = Option<&'s Shape>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a field name")
    }

    fn visit_str<E: de::Error>(self, name: &str) -> Result<Self::Value, E> {
        Ok(Shape::field(self.0, name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::tests::SAMPLE_POSTS;

    fn screened(message: &str) -> Screen {
        screen(message.as_bytes())
    }

    #[test]
    fn sample_posts_are_clean() {
        // A suspect costs a decode of its own: every good post must pass.
        for post in SAMPLE_POSTS.lines() {
            assert_eq!(screen(post.as_bytes()), Screen::Clean, "{post}");
        }
    }

    #[test]
    fn canonical_values_nulls_and_undeclared_fields_are_clean() {
        for message in [
            r#"{}"#,
            r#"{"data":null,"includes":null}"#,
            r#"{"data":{"id":"1","lang":null,"created_at":"2026-11-20T14:10:00.000Z"}}"#,
            r#"{"data":{"public_metrics":{"like_count":9007199254740993,"reply_count":-1}}}"#,
            r#"{"data":{"geo":{"coordinates":{"coordinates":[1,-2.5e3]}}}}"#,
            r#"{"data":{"entities":{"hashtags":[{"start":0,"end":2147483647,"tag":"x"}]}}}"#,
            r#"{"data":{"possibly_sensitive":false},"undeclared":[{"any":["thing",1,{}]}]}"#,
            r#"{"data":{"text":"escaped \" \\ \u00e9 \ud83d\ude00"}}"#,
            " {\"data\":{}} \n",
        ] {
            assert_eq!(screened(message), Screen::Clean, "{message}");
        }
    }

    #[test]
    fn anything_else_is_a_suspect() {
        for message in [
            // Syntax.
            r#"{"data":{"id":"1","text":"truncated"#,
            "not json at all",
            r#"{"data":{}} {"data":{}}"#,
            r#"{"data":{"id":"1",}}"#,
            // Not an object.
            "null",
            "[1,2,3]",
            r#""a string""#,
            // A number where a string is declared, and the reverse.
            r#"{"data":{"id":1860000000000000102}}"#,
            r#"{"data":{"public_metrics":{"like_count":"many"}}}"#,
            r#"{"data":{"public_metrics":{"like_count":"12"}}}"#,
            // Out of range, or not whole, for an integer.
            r#"{"data":{"entities":{"hashtags":[{"start":2147483648}]}}}"#,
            r#"{"data":{"public_metrics":{"like_count":9223372036854775808}}}"#,
            r#"{"data":{"public_metrics":{"like_count":1.5}}}"#,
            // Not a time.
            r#"{"data":{"created_at":"yesterday-ish"}}"#,
            r#"{"data":{"created_at":1795000000}}"#,
            // An object where a list is declared, a list where an object is, a scalar for either.
            r#"{"data":{"edit_history_tweet_ids":{"0":"1"}}}"#,
            r#"{"data":{"public_metrics":[1,2]}}"#,
            r#"{"matching_rules":"all"}"#,
            r#"{"data":{"possibly_sensitive":"no"}}"#,
            r#"{"data":{"text":true}}"#,
            // A wrong type deep in a list of objects.
            r#"{"includes":{"users":[{"id":"1"},{"id":"2","public_metrics":{"tweet_count":"x"}}]}}"#,
        ] {
            assert_eq!(screened(message), Screen::Suspect, "{message}");
        }
    }
}
