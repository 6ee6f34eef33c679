//! What every component's configuration type shares: durations and sizes as users write them
//! (`10s`, `500MB`), option maps handed to librdkafka and object_store, option maps that may hold
//! credentials, secrets, and the error a component's `validate()` returns.
//!
//! A leaf module: components use it for their own config types, so none of them has to import
//! the composition in `config.rs`.

use std::collections::BTreeMap;

/// A setting a component refused: `key` is relative to the component's section (`api_base`);
/// the composition prefixes the section (`x.api_base`) for the user.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("config key {key}: {message}")]
pub struct InvalidSetting {
    pub key: String,
    pub message: String,
}

impl InvalidSetting {
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            message: message.into(),
        }
    }

    /// The same error with its key placed under `section`.
    pub fn in_section(self, section: &str) -> Self {
        Self {
            key: format!("{section}.{}", self.key),
            message: self.message,
        }
    }
}

/// A credential: kept out of `Debug` output, so a logged config never shows it.
#[derive(Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Self {
        Self(value)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_empty() {
            "<unset>"
        } else {
            "<redacted>"
        })
    }
}

/// Durations written as `500ms`, `10s`, `5m`, `1h` or `7d`.
pub mod duration_text {
    use serde::{Deserialize, Deserializer};
    use std::time::Duration;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        parse(&text).map_err(serde::de::Error::custom)
    }

    pub fn parse(text: &str) -> Result<Duration, String> {
        let (n, unit) = super::number_and_unit(text, "a duration like 500ms, 10s, 5m, 1h or 7d")?;
        let seconds = match unit {
            "ms" => n / 1000.0,
            "s" | "" => n,
            "m" => n * 60.0,
            "h" => n * 3600.0,
            "d" => n * 86_400.0,
            _ => return Err(format!("`{text}`: unit must be ms, s, m, h or d")),
        };
        Ok(Duration::from_secs_f64(seconds))
    }
}

/// A duration as `duration_text` reads it back: `7d`, `36h`, `90s`, `250ms`.
pub fn humanize_duration(duration: std::time::Duration) -> String {
    let millis = duration.as_millis();
    let units: [(u128, &str); 4] = [(86_400_000, "d"), (3_600_000, "h"), (60_000, "m"), (1000, "s")];
    units
        .iter()
        .find(|(size, _)| millis >= *size && millis % size == 0)
        .map_or_else(
            || format!("{millis}ms"),
            |(size, unit)| format!("{}{unit}", millis / size),
        )
}

/// `10s` or `500 MB` split into the number and its unit (trimmed); `what` names the expected form.
fn number_and_unit<'a>(text: &'a str, what: &str) -> Result<(f64, &'a str), String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n = number.parse().map_err(|_| format!("`{text}` is not {what}"))?;
    Ok((n, unit.trim()))
}

/// Sizes written as a number of bytes or `500MB`, `10GiB` (`KB`/`MB`/`GB`/`TB` and the `iB` forms
/// are all powers of 1024, as data volumes are usually meant).
pub mod byte_size {
    use serde::{Deserialize, Deserializer};

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Size {
        Bytes(u64),
        Text(String),
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        match Size::deserialize(d)? {
            Size::Bytes(n) => Ok(n),
            Size::Text(text) => parse(&text).map_err(serde::de::Error::custom),
        }
    }

    pub fn parse(text: &str) -> Result<u64, String> {
        let (n, unit) = super::number_and_unit(text, "a size like 1048576, 500MB or 10GiB")?;
        let unit = unit.to_ascii_uppercase();
        let prefix = unit
            .strip_suffix("IB")
            .or_else(|| unit.strip_suffix('B'))
            .unwrap_or(&unit);
        let power = match prefix {
            "" => 0,
            "K" => 1,
            "M" => 2,
            "G" => 3,
            "T" => 4,
            _ => return Err(format!("`{text}`: unit must be B, KB, MB, GB or TB")),
        };
        Ok((n * 1024f64.powi(power)) as u64)
    }
}

/// `1536` -> `1.5 KiB`.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    match unit {
        0 => format!("{bytes} B"),
        _ => format!("{value:.1} {}", UNITS[unit]),
    }
}

/// Option maps handed to librdkafka and object_store take strings; `true` or `6000` written
/// without quotes (in TOML or an environment override) mean the same there.
pub mod string_map {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer};

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Scalar {
        Text(String),
        Integer(i64),
        Float(f64),
        Boolean(bool),
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
        let map = BTreeMap::<String, Scalar>::deserialize(d)?;
        Ok(map
            .into_iter()
            .map(|(k, v)| {
                let text = match v {
                    Scalar::Text(s) => s,
                    Scalar::Integer(i) => i.to_string(),
                    Scalar::Float(f) => f.to_string(),
                    Scalar::Boolean(b) => b.to_string(),
                };
                (k, text)
            })
            .collect())
    }
}

/// A list of names (Kafka topics), written as a TOML array or as one comma-separated string:
/// the form an environment override takes (`TWEETLAKE_SOURCE__TOPICS=x-posts,bsky-posts`).
/// Names are trimmed; a comma never appears in a topic name, so the split is unambiguous.
pub mod name_list {
    use serde::de::{Deserializer, SeqAccess, Visitor};

    struct Names;

    impl<'de> Visitor<'de> for Names {
        type Value = Vec<String>;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a list of names, or one string of comma-separated names")
        }

        fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Vec<String>, E> {
            Ok(split(text))
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<String>, A::Error> {
            let mut names = Vec::new();
            while let Some(name) = seq.next_element::<String>()? {
                names.push(name.trim().to_string());
            }
            Ok(names)
        }
    }

    /// `"a, b"` -> `["a", "b"]`; an empty text is an empty list.
    fn split(text: &str) -> Vec<String> {
        text.split(',')
            .map(str::trim)
            .filter(|name| !name.is_empty())
            .map(str::to_string)
            .collect()
    }

    /// For a key that may be left out: present means `Some`, even if the list is empty.
    pub fn deserialize_some<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
        d.deserialize_any(Names).map(Some)
    }
}

/// Option names whose values are credentials: librdkafka's `sasl.password`, `ssl.key.password`,
/// `sasl.oauthbearer.client.secret`, `ssl.key.pem`; object_store's `AWS_SECRET_ACCESS_KEY`,
/// `AWS_SESSION_TOKEN`.
fn is_credential(option: &str) -> bool {
    let option = option.to_ascii_lowercase();
    ["password", "secret", "token", "key.pem", "private"]
        .iter()
        .any(|marker| option.contains(marker))
}

/// An option map shown with its credentials replaced, for `Debug` output and logs.
pub struct Redacted<'a>(pub &'a BTreeMap<String, String>);

impl std::fmt::Debug for Redacted<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(self.0.iter().map(|(key, value)| {
                let shown = if is_credential(key) { "<redacted>" } else { value };
                (key, shown)
            }))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations_take_units() {
        assert_eq!(byte_size::parse("2048").unwrap(), 2048);
        assert_eq!(byte_size::parse("10 KiB").unwrap(), 10240);
        assert!(byte_size::parse("3 parsecs").is_err());
        assert_eq!(
            duration_text::parse("250ms").unwrap(),
            std::time::Duration::from_millis(250)
        );
        assert!(duration_text::parse("soon").is_err());
        for text in ["7d", "36h", "90s", "250ms", "5m"] {
            assert_eq!(humanize_duration(duration_text::parse(text).unwrap()), text);
        }
        assert_eq!(human_bytes(1536), "1.5 KiB");
    }

    #[test]
    fn credentials_never_show_in_debug_output() {
        let options: BTreeMap<String, String> = [
            ("sasl.password", "s3cr3t-1"),
            ("ssl.key.password", "s3cr3t-2"),
            ("AWS_SECRET_ACCESS_KEY", "s3cr3t-3"),
            ("sasl.oauthbearer.client.secret", "s3cr3t-4"),
            ("security.protocol", "SASL_SSL"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let shown = format!("{:?}", Redacted(&options));
        assert!(!shown.contains("s3cr3t"), "{shown}");
        assert!(shown.contains("SASL_SSL"), "{shown}");
    }
}
