//! One TOML file (`tweetlake.toml`) with `TWEETLAKE_<SECTION>__<KEY>` environment overrides.
//!
//! Every key is documented in the README; unknown keys are errors so a typo never silently
//! falls back to a default.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::repl::Format;

/// Prefix of environment variables that override config keys, e.g. `TWEETLAKE_LAKE__URI`.
pub const ENV_PREFIX: &str = "TWEETLAKE_";

/// The environment variable X's own tools use for the bearer token; read when `x.bearer_token` is
/// not set, so one exported token serves both.
pub const X_TOKEN_ENV: &str = "X_BEARER_TOKEN";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source} (create one with `tweetlake init`, or pass --config)")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("config file {path} is not valid TOML: {message}")]
    Parse { path: String, message: String },
    #[error("environment variable {var}: {message}")]
    Env { var: String, message: String },
    #[error("config key {key}: {message}")]
    Invalid { key: String, message: String },
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub source: SourceConfig,
    pub lake: LakeConfig,
    pub pipeline: PipelineConfig,
    pub dlq: DlqConfig,
    pub repl: ReplConfig,
    pub x: XConfig,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    /// A JSONL(.gz) file of X stream messages: the embedded default.
    #[default]
    File,
    Kafka,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SourceConfig {
    pub kind: SourceKind,
    /// File source: the `.jsonl` or `.jsonl.gz` file to read.
    pub path: PathBuf,
    /// Kafka source: `host:port[,host:port]`.
    pub bootstrap_servers: String,
    pub topic: String,
    pub group_id: String,
    /// Where a new pipeline starts: `earliest`, `latest`, or an RFC 3339 timestamp.
    pub starting_offsets: String,
    /// Kafka source: records a batch needs were deleted by retention: fail (true) or skip
    /// ahead with a warning (false).
    pub fail_on_data_loss: bool,
    /// Kafka source: how long to wait for the group to assign partitions on start.
    #[serde(with = "duration_text")]
    pub assignment_timeout: Duration,
    /// Extra librdkafka properties, passed through as they are.
    #[serde(deserialize_with = "string_map::deserialize")]
    pub kafka_options: BTreeMap<String, String>,
}

impl Default for SourceConfig {
    fn default() -> Self {
        Self {
            kind: SourceKind::File,
            path: PathBuf::from("sample_posts.jsonl"),
            bootstrap_servers: "127.0.0.1:9092".into(),
            topic: "x-posts".into(),
            group_id: "tweetlake".into(),
            starting_offsets: "earliest".into(),
            fail_on_data_loss: true,
            assignment_timeout: Duration::from_secs(60),
            kafka_options: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LakeConfig {
    /// A local directory or `s3://bucket/prefix`.
    pub uri: String,
    /// Passed to delta-rs / object_store (`AWS_ENDPOINT_URL`, `AWS_REGION`, ...).
    #[serde(deserialize_with = "string_map::deserialize")]
    pub storage_options: BTreeMap<String, String>,
}

impl Default for LakeConfig {
    fn default() -> Self {
        Self {
            uri: "./lake".into(),
            storage_options: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PipelineConfig {
    /// Names the offset log and the Delta `txn` app ids: two pipelines with one name share progress.
    pub name: String,
    pub sql_dir: PathBuf,
    /// Continuous mode closes a batch after this long, if the size limits did not close it first.
    #[serde(with = "duration_text")]
    pub trigger_interval: Duration,
    pub max_records_per_batch: usize,
    pub max_bytes_per_batch: usize,
    /// A message larger than this goes to the dead-letter table instead of being decoded.
    pub max_message_bytes: usize,
    /// Where the per-batch JSON progress lines go: `-` for stdout, or a file path (appended).
    pub progress_log: String,
    /// How many offset-log entries to keep per partition behind the latest one.
    pub log_retention_batches: usize,
    /// How often a batch is retried after a transient error (unreachable store or broker).
    pub max_retries: u32,
    /// The first wait before a retry; it doubles on every attempt.
    #[serde(with = "duration_text")]
    pub retry_backoff: Duration,
    /// The longest wait between retries.
    #[serde(with = "duration_text")]
    pub retry_backoff_max: Duration,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        Self {
            name: "tweetlake".into(),
            sql_dir: PathBuf::from("sql"),
            trigger_interval: Duration::from_secs(10),
            max_records_per_batch: 100_000,
            // 48 MiB keeps a 10M-post backlog's drain under 1 GiB resident (1000 MiB measured;
            // 64 MiB: 1039 MiB) at about the same rate.
            max_bytes_per_batch: 48 * 1024 * 1024,
            max_message_bytes: 1024 * 1024,
            progress_log: "-".into(),
            log_retention_batches: 100,
            max_retries: 10,
            retry_backoff: Duration::from_secs(1),
            retry_backoff_max: Duration::from_secs(60),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DlqConfig {
    /// Name of the dead-letter Delta table under the lake.
    pub table: String,
    /// Also publish dead letters to this Kafka topic (on `source.bootstrap_servers`); empty: off.
    pub kafka_topic: String,
}

impl Default for DlqConfig {
    fn default() -> Self {
        Self {
            table: "dlq".into(),
            kafka_topic: String::new(),
        }
    }
}

/// `tweetlake sql`: the interactive REPL and one-shot queries over the lake.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReplConfig {
    /// The REPL's history file; empty for `<user data dir>/tweetlake/history`.
    pub history_file: PathBuf,
    /// A query that would scan more than this many bytes is stopped (`0`: no limit).
    /// A number of bytes or a size like `500MB`, `10GiB`.
    #[serde(with = "byte_size")]
    pub max_bytes_scanned: u64,
    /// The result format: `table`, `csv`, `json`, `ndjson` or `markdown`.
    pub format: Format,
    /// Saved queries (`\queries`, `\run`, `\save`), added to the built-in ones.
    pub queries_dir: PathBuf,
    /// Print time, rows and bytes scanned after each query in the REPL.
    pub timing: bool,
    /// The pager for results taller than the terminal: empty for `$PAGER`, else `less -FRX`;
    /// `off` never pages.
    pub pager: String,
}

impl Default for ReplConfig {
    fn default() -> Self {
        Self {
            history_file: PathBuf::new(),
            max_bytes_scanned: 0,
            format: Format::Table,
            queries_dir: PathBuf::from("queries"),
            timing: true,
            pager: String::new(),
        }
    }
}

/// `tweetlake produce x` and `produce rules`: the X API v2 filtered stream and its rules.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct XConfig {
    /// The app's OAuth 2.0 App-only bearer token; when empty, `X_BEARER_TOKEN` is used.
    pub bearer_token: Secret,
    /// Scheme, host and port of the X API (another value for a proxy or a test server).
    pub api_base: String,
    /// A stream connection that delivers nothing, not even a keep-alive, for this long is dead.
    /// X sends a keep-alive at least every 20 s.
    #[serde(with = "duration_text")]
    pub idle_timeout: Duration,
    /// How often `produce x` logs its counters and throughput.
    #[serde(with = "duration_text")]
    pub report_interval: Duration,
    /// The longest rule X accepts on the app's access level, in characters.
    pub max_rule_length: usize,
    /// Operators appended to every company rule, e.g. `-is:retweet lang:en`; empty: none.
    pub rule_filter: String,
    /// The companies to follow, by company id: each becomes rules tagged `company:<ID>`.
    pub companies: BTreeMap<String, CompanyTerms>,
}

impl Default for XConfig {
    fn default() -> Self {
        Self {
            bearer_token: Secret::default(),
            api_base: "https://api.x.com".into(),
            idle_timeout: Duration::from_secs(30),
            report_interval: Duration::from_secs(30),
            max_rule_length: 1024,
            rule_filter: String::new(),
            companies: BTreeMap::new(),
        }
    }
}

/// What a company's posts mention: `$cashtags`, `#hashtags` and keywords or phrases. Any one of
/// them matches (they are joined with OR).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CompanyTerms {
    pub cashtags: Vec<String>,
    pub hashtags: Vec<String>,
    pub keywords: Vec<String>,
}

/// A credential: kept out of `Debug` output, so a logged config never shows it.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
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

impl Config {
    /// Loads `path` (if given; a missing default file is fine) and applies environment overrides.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let text = match path {
            Some(p) => std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                path: p.to_path_buf(),
                source,
            })?,
            None => String::new(),
        };
        let name = path.map_or("<defaults>".to_string(), |p| p.display().to_string());
        Self::from_toml_and_env(&text, &name, std::env::vars())
    }

    pub fn from_toml_and_env(
        text: &str,
        name: &str,
        env: impl Iterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let mut root: toml::Table = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: name.to_string(),
            message: e.message().to_string(),
        })?;
        let mut x_token = None;
        for (var, value) in env {
            if var == X_TOKEN_ENV {
                x_token = Some(value);
            } else if let Some(key) = var.strip_prefix(ENV_PREFIX) {
                if key.contains("__") {
                    apply_override(&mut root, &var, key, &value)?;
                }
            }
        }
        let mut config: Config =
            serde_path_to_error::deserialize(toml::Value::Table(root)).map_err(|e| ConfigError::Invalid {
                key: e.path().to_string(),
                message: e.inner().message().to_string(),
            })?;
        if config.x.bearer_token.is_empty() {
            config.x.bearer_token = Secret(x_token.unwrap_or_default());
        }
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: &str, message: &str| ConfigError::Invalid {
            key: key.into(),
            message: message.into(),
        };
        let p = &self.pipeline;
        if p.name.is_empty()
            || !p
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_".contains(c))
        {
            return Err(invalid("pipeline.name", "use letters, digits, '-' and '_' only"));
        }
        if p.max_records_per_batch == 0 || p.max_bytes_per_batch == 0 {
            return Err(invalid(
                "pipeline.max_records_per_batch",
                "batch limits must be above 0",
            ));
        }
        if p.max_message_bytes == 0 {
            return Err(invalid("pipeline.max_message_bytes", "must be above 0"));
        }
        crate::source::kafka::StartingOffsets::parse(&self.source.starting_offsets)
            .map_err(|message| invalid("source.starting_offsets", &message))?;
        self.x.validate()
    }
}

impl XConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: String, message: String| ConfigError::Invalid { key, message };
        match url::Url::parse(&self.api_base) {
            Ok(url) if ["http", "https"].contains(&url.scheme()) && url.has_host() => {}
            _ => {
                let message = format!("`{}` is not an http(s) URL like https://api.x.com", self.api_base);
                return Err(invalid("x.api_base".into(), message));
            }
        }
        if self.idle_timeout.is_zero() {
            return Err(invalid("x.idle_timeout".into(), "must be above 0".into()));
        }
        if self.report_interval.is_zero() {
            return Err(invalid("x.report_interval".into(), "must be above 0".into()));
        }
        crate::produce::x::rules::company_rules(self).map_err(|e| invalid(e.key(), e.to_string()))?;
        Ok(())
    }
}

/// `TWEETLAKE_LAKE__STORAGE_OPTIONS__AWS_REGION=eu-west-1` sets `lake.storage_options.AWS_REGION`.
/// Section and key names are lower-cased; map keys below them keep their case.
fn apply_override(root: &mut toml::Table, var: &str, key: &str, value: &str) -> Result<(), ConfigError> {
    let parts: Vec<&str> = key.split("__").collect();
    let mut table = root;
    for (depth, part) in parts[..parts.len() - 1].iter().enumerate() {
        let name = if depth < 2 {
            part.to_ascii_lowercase()
        } else {
            part.to_string()
        };
        let entry = table
            .entry(name)
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        table = entry.as_table_mut().ok_or_else(|| ConfigError::Env {
            var: var.into(),
            message: format!("`{part}` is not a section"),
        })?;
    }
    let last = parts[parts.len() - 1];
    let leaf = if parts.len() <= 2 {
        last.to_ascii_lowercase()
    } else {
        last.to_string()
    };
    table.insert(leaf, parse_env_value(value));
    Ok(())
}

/// Numbers and booleans keep their type; anything else is a string.
fn parse_env_value(value: &str) -> toml::Value {
    if let Ok(i) = value.parse::<i64>() {
        return toml::Value::Integer(i);
    }
    match value {
        "true" => toml::Value::Boolean(true),
        "false" => toml::Value::Boolean(false),
        _ => toml::Value::String(value.to_string()),
    }
}

/// Option maps handed to librdkafka and object_store take strings; `true` or `6000` written
/// without quotes (in TOML or an environment override) mean the same there.
mod string_map {
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

/// Durations written as `500ms`, `10s`, `5m` or `1h`.
pub mod duration_text {
    use serde::{Deserialize, Deserializer};
    use std::time::Duration;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        parse(&text).map_err(serde::de::Error::custom)
    }

    pub fn parse(text: &str) -> Result<Duration, String> {
        let (n, unit) = super::number_and_unit(text, "a duration like 500ms, 10s, 5m or 1h")?;
        let seconds = match unit {
            "ms" => n / 1000.0,
            "s" | "" => n,
            "m" => n * 60.0,
            "h" => n * 3600.0,
            _ => return Err(format!("`{text}`: unit must be ms, s, m or h")),
        };
        Ok(Duration::from_secs_f64(seconds))
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Iterator<Item = (String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<Vec<_>>()
            .into_iter()
    }

    #[test]
    fn env_overrides_file_values_and_keeps_map_key_case() {
        let toml = "[lake]\nuri = \"./a\"\n[pipeline]\nmax_records_per_batch = 5\n";
        let config = Config::from_toml_and_env(
            toml,
            "t.toml",
            env(&[
                ("TWEETLAKE_LAKE__URI", "s3://b/p"),
                ("TWEETLAKE_PIPELINE__TRIGGER_INTERVAL", "250ms"),
                ("TWEETLAKE_LAKE__STORAGE_OPTIONS__AWS_REGION", "eu-west-1"),
                ("TWEETLAKE_LAKE__STORAGE_OPTIONS__AWS_ALLOW_HTTP", "true"),
                ("TWEETLAKE_SOURCE__KAFKA_OPTIONS__session.timeout.ms", "6000"),
                ("TWEETLAKE_UNRELATED", "x"),
            ]),
        )
        .unwrap();
        assert_eq!(
            config.lake.storage_options["AWS_ALLOW_HTTP"], "true",
            "a map of strings"
        );
        assert_eq!(config.source.kafka_options["session.timeout.ms"], "6000");
        assert_eq!(config.lake.uri, "s3://b/p");
        assert_eq!(config.pipeline.max_records_per_batch, 5);
        assert_eq!(config.pipeline.trigger_interval, Duration::from_millis(250));
        assert_eq!(config.lake.storage_options["AWS_REGION"], "eu-west-1");
    }

    #[test]
    fn unknown_keys_and_bad_values_are_errors_naming_the_key() {
        let err = Config::from_toml_and_env("[lake]\nurl = \"x\"\n", "t.toml", env(&[])).unwrap_err();
        assert!(err.to_string().contains("url"), "{err}");
        let err = Config::from_toml_and_env("[pipeline]\nname = \"a b\"\n", "t.toml", env(&[])).unwrap_err();
        assert!(err.to_string().contains("pipeline.name"), "{err}");
        let err = Config::from_toml_and_env("[pipeline]\ntrigger_interval = \"soon\"\n", "t.toml", env(&[]))
            .unwrap_err();
        assert!(err.to_string().contains("soon"), "{err}");
        let err = Config::from_toml_and_env("[repl]\nformat = \"xml\"\n", "t.toml", env(&[])).unwrap_err();
        assert!(err.to_string().contains("repl.format"), "{err}");
    }

    #[test]
    fn repl_sizes_take_units_and_env_overrides() {
        let config = Config::from_toml_and_env(
            "[repl]\nmax_bytes_scanned = \"1.5GB\"\n",
            "t.toml",
            env(&[
                ("TWEETLAKE_REPL__HISTORY_FILE", "/tmp/h"),
                ("TWEETLAKE_REPL__FORMAT", "csv"),
            ]),
        )
        .unwrap();
        assert_eq!(config.repl.max_bytes_scanned, 3 * 512 * 1024 * 1024);
        assert_eq!(config.repl.history_file, PathBuf::from("/tmp/h"));
        assert_eq!(config.repl.format, Format::Csv);
        assert_eq!(byte_size::parse("2048").unwrap(), 2048);
        assert_eq!(byte_size::parse("10 KiB").unwrap(), 10240);
        assert!(byte_size::parse("3 parsecs").is_err());
    }

    #[test]
    fn the_x_token_comes_from_the_config_else_x_bearer_token_and_never_shows_in_debug() {
        let token = |toml: &str, vars: &[(&str, &str)]| {
            let x = Config::from_toml_and_env(toml, "t.toml", env(vars)).unwrap().x;
            assert!(!format!("{x:?}").contains("s3cr3t"), "{x:?}");
            x.bearer_token.expose().to_string()
        };
        assert_eq!(token("", &[("X_BEARER_TOKEN", "s3cr3t-env")]), "s3cr3t-env");
        let both = [
            ("X_BEARER_TOKEN", "s3cr3t-env"),
            ("TWEETLAKE_X__BEARER_TOKEN", "s3cr3t-tl"),
        ];
        assert_eq!(token("", &both), "s3cr3t-tl");
        assert_eq!(
            token("[x]\nbearer_token = \"s3cr3t-file\"\n", &both[..1]),
            "s3cr3t-file"
        );
        assert_eq!(token("", &[]), "");
    }

    #[test]
    fn x_keys_are_validated_by_name() {
        let err = |toml: &str| {
            Config::from_toml_and_env(toml, "t.toml", env(&[]))
                .unwrap_err()
                .to_string()
        };
        assert!(err("[x]\napi_base = \"api.x.com\"\n").contains("x.api_base"));
        assert!(err("[x]\nidle_timeout = \"0s\"\n").contains("x.idle_timeout"));
        assert!(err("[x]\ntoken = \"t\"\n").contains("token"));
    }
}
