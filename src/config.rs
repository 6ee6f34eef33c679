//! One TOML file (`tweetlake.toml`) with `TWEETLAKE_<SECTION>__<KEY>` environment overrides.
//!
//! Every key is documented in the README; unknown keys are errors so a typo never silently
//! falls back to a default.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::dlq::{DeadLetters, DlqConfig};
use crate::lake::LakeConfig;
use crate::maintain::{AutoMaintenance, MaintenanceConfig, TableTarget};
use crate::pipeline::{Pipeline, PipelineConfig, PipelineError};
use crate::produce::bluesky::BlueskyConfig;
use crate::produce::x::{Secret, XConfig};
use crate::repl::ReplConfig;
use crate::serve::ServeConfig;
use crate::settings::InvalidSetting;
use crate::source::{Source, SourceConfig};
use crate::telemetry::MetricsConfig;
use crate::transform::{ModelSet, BRONZE};

/// Prefix of environment variables that override config keys, e.g. `TWEETLAKE_LAKE__URI`.
pub const ENV_PREFIX: &str = "TWEETLAKE_";

/// The environment variable X's own tools use for the bearer token; read when `x.bearer_token` is
/// not set, so one exported token serves both.
pub const X_TOKEN_ENV: &str = "X_BEARER_TOKEN";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source} (create one with `tweetlake init`, or pass --config)")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("config file {path} is not valid TOML: {}", source.message())]
    Parse { path: String, source: toml::de::Error },
    #[error("environment variable {var}: `{part}` is not a section")]
    Env { var: String, part: String },
    #[error(transparent)]
    Invalid(#[from] InvalidSetting),
}

/// The whole configuration: one section per component, each owning its keys, defaults and
/// validation.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub source: SourceConfig,
    pub lake: LakeConfig,
    pub pipeline: PipelineConfig,
    pub dlq: DlqConfig,
    pub repl: ReplConfig,
    pub serve: ServeConfig,
    pub x: XConfig,
    pub bluesky: BlueskyConfig,
    pub maintenance: MaintenanceConfig,
    pub metrics: MetricsConfig,
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
        let mut root: toml::Table = toml::from_str(text).map_err(|source| ConfigError::Parse {
            path: name.to_string(),
            source,
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
        let mut config: Config = serde_path_to_error::deserialize(toml::Value::Table(root))
            .map_err(|e| InvalidSetting::new(e.path().to_string(), e.inner().message().to_string()))?;
        if config.x.bearer_token.is_empty() {
            config.x.bearer_token = Secret::new(x_token.unwrap_or_default());
        }
        config.validate()?;
        Ok(config)
    }

    /// The pipeline this configuration describes, reading `source` through `models`. Dead
    /// letters published to Kafka go over the source's connection.
    pub fn build_pipeline<S: Source>(
        &self,
        source: S,
        models: ModelSet,
    ) -> Result<Pipeline<S>, PipelineError> {
        let lake = self.lake.open()?;
        let dead_letters = DeadLetters::new(&self.dlq, &self.source.kafka.connection)?;
        let targets = self.maintenance_targets(&models);
        let pipeline = Pipeline::new(&self.pipeline, lake.clone(), dead_letters, source, models)?;
        if !self.maintenance.enabled {
            return Ok(pipeline);
        }
        let maintenance = AutoMaintenance::new(lake, &self.pipeline.name, self.maintenance.clone(), targets)?;
        Ok(pipeline.with_maintenance(maintenance))
    }

    /// How each table the pipeline writes is maintained: bronze, the dead letters, every model
    /// (with its `@zorder` columns).
    pub fn maintenance_targets(&self, models: &ModelSet) -> Vec<TableTarget> {
        let target = |name: &str, zorder: Vec<String>| TableTarget {
            name: name.to_string(),
            zorder,
            target_file_size: self.maintenance.target_for(name),
        };
        let mut targets = vec![target(BRONZE, Vec::new()), target(&self.dlq.table, Vec::new())];
        targets.extend(models.models().iter().map(|model| {
            let zorder = model
                .zorder
                .as_ref()
                .map(|z| z.columns.clone())
                .unwrap_or_default();
            target(&model.name, zorder)
        }));
        targets
    }

    /// Each component checks its own section.
    fn validate(&self) -> Result<(), InvalidSetting> {
        let in_section = |section: &'static str| move |e: InvalidSetting| e.in_section(section);
        self.source.validate().map_err(in_section("source"))?;
        self.pipeline.validate().map_err(in_section("pipeline"))?;
        self.dlq.validate().map_err(in_section("dlq"))?;
        self.maintenance.validate().map_err(in_section("maintenance"))?;
        self.serve.validate().map_err(in_section("serve"))?;
        self.x.validate().map_err(in_section("x"))?;
        self.bluesky.validate().map_err(in_section("bluesky"))?;
        self.metrics.validate().map_err(in_section("metrics"))
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
            part: part.to_string(),
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::repl::Format;
    use crate::source::PartitionAssignment;

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
        assert_eq!(
            config.source.kafka.connection.options["session.timeout.ms"],
            "6000"
        );
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
    fn source_topics_is_a_list_and_source_topic_still_names_one() {
        let kafka = |toml: &str, vars: &[(&str, &str)]| {
            let toml = format!("[source]\nkind = \"kafka\"\n{toml}");
            Config::from_toml_and_env(&toml, "t.toml", env(vars)).map(|c| c.source.kafka)
        };
        let default = kafka("", &[]).unwrap();
        assert_eq!(default.topic_names(), ["x-posts"]);
        let one = kafka("topic = \"a\"\n", &[]).unwrap();
        assert_eq!(
            (one.topic_names(), one.topics_key()),
            (vec!["a".to_string()], "topic")
        );
        let two = kafka("topics = [\"a\", \"b\"]\n", &[]).unwrap();
        assert_eq!(
            (two.topic_names(), two.topics_key()),
            (vec!["a".into(), "b".into()], "topics")
        );
        assert_eq!(two.publish_topic(), "a", "produce --kafka publishes to the first");
        let from_env = kafka("", &[("TWEETLAKE_SOURCE__TOPICS", "a, b")]).unwrap();
        assert_eq!(from_env.topic_names(), ["a", "b"]);

        let error = |toml: &str| kafka(toml, &[]).unwrap_err().to_string();
        let both = error("topic = \"a\"\ntopics = [\"b\"]\n");
        assert!(
            both.contains("source.topics") && both.contains("source.topic "),
            "{both}"
        );
        for (toml, why) in [
            ("topics = []\n", "at least one"),
            ("topics = [\"a\", \"b\", \"a\"]\n", "`a` is listed twice"),
            ("topics = [\"a\", \"\"]\n", "empty"),
            ("topics = 3\n", "list of names"),
        ] {
            let e = error(toml);
            assert!(
                e.starts_with("config key source.topics") && e.contains(why),
                "{toml}: {e}"
            );
            assert_eq!(e.lines().count(), 1, "{e}");
        }
        assert!(error("topic = \"\"\n").contains("config key source.topic:"));
    }

    #[test]
    fn source_assignment_is_group_unless_set_to_manual() {
        let assignment = |toml: &str, vars: &[(&str, &str)]| {
            Config::from_toml_and_env(&format!("[source]\n{toml}"), "t.toml", env(vars))
                .map(|c| c.source.kafka.assignment)
        };
        assert_eq!(assignment("", &[]).unwrap(), PartitionAssignment::Group);
        assert_eq!(
            assignment("assignment = \"manual\"\n", &[]).unwrap(),
            PartitionAssignment::Manual
        );
        let from_env = assignment(
            "assignment = \"manual\"\n",
            &[("TWEETLAKE_SOURCE__ASSIGNMENT", "group")],
        );
        assert_eq!(from_env.unwrap(), PartitionAssignment::Group);
        let error = assignment("assignment = \"static\"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("source.assignment") && error.contains("manual"),
            "{error}"
        );
    }

    #[test]
    fn metrics_listen_is_checked_and_empty_turns_the_server_off() {
        let err =
            Config::from_toml_and_env("[metrics]\nlisten = \"localhost\"\n", "t.toml", env(&[])).unwrap_err();
        assert!(err.to_string().contains("config key metrics.listen"), "{err}");
        let off = Config::from_toml_and_env("", "t.toml", env(&[("TWEETLAKE_METRICS__LISTEN", "")])).unwrap();
        assert_eq!(off.metrics.listen_address().unwrap(), None);
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
    fn serve_keys_take_units_env_overrides_and_keep_the_password_out_of_debug() {
        let config = Config::from_toml_and_env(
            "[serve]\nlisten = \"0.0.0.0:6543\"\nmemory_limit = \"64MiB\"\nquery_timeout = \"90s\"\n",
            "t.toml",
            env(&[("TWEETLAKE_SERVE__PASSWORD", "s3cr3t-pw")]),
        )
        .unwrap();
        assert_eq!(config.serve.listen.port(), 6543);
        assert_eq!(config.serve.memory_limit, 64 * 1024 * 1024);
        assert_eq!(config.serve.query_timeout, Duration::from_secs(90));
        assert_eq!(config.serve.password.expose(), "s3cr3t-pw");
        assert!(!format!("{config:?}").contains("s3cr3t"));
        let err = |toml: &str| {
            Config::from_toml_and_env(toml, "t.toml", env(&[]))
                .unwrap_err()
                .to_string()
        };
        assert!(err("[serve]\ntls_cert = \"c.pem\"\n").contains("serve.tls_cert"));
        assert!(err("[serve]\nlisten = \"localhost\"\n").contains("serve.listen"));
        assert!(err("[serve]\nmax_concurrent_queries = 0\n").contains("serve.max_concurrent_queries"));
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
        assert!(err("[x]\nbackfill_minutes = 6\n").contains("x.backfill_minutes"));
        let ok = Config::from_toml_and_env("[x]\nbackfill_minutes = 5\n", "t.toml", env(&[])).unwrap();
        assert_eq!(ok.x.backfill_minutes, 5);
    }

    #[test]
    fn bluesky_keys_are_validated_by_name() {
        let config = |toml: &str| Config::from_toml_and_env(toml, "t.toml", env(&[]));
        let default = config("").unwrap().bluesky;
        assert!(default
            .jetstream_url
            .contains("wantedCollections=app.bsky.feed.post"));
        assert_eq!(default.unmatched, crate::produce::bluesky::Unmatched::Keep);
        let err = |toml: &str| config(toml).unwrap_err().to_string();
        assert!(err("[bluesky]\njetstream_url = \"https://x\"\n").contains("bluesky.jetstream_url"));
        let cursor = err("[bluesky]\njetstream_url = \"wss://h/subscribe?cursor=5\"\n");
        assert!(
            cursor.contains("bluesky.jetstream_url") && cursor.contains("cursor"),
            "{cursor}"
        );
        assert!(err("[bluesky]\njetstream_url = \"ws://h/s?compress=true\"\n").contains("compress"));
        assert!(err("[bluesky]\nidle_timeout = \"0s\"\n").contains("bluesky.idle_timeout"));
        assert!(err("[bluesky]\nunmatched = \"maybe\"\n").contains("bluesky.unmatched"));
        let dropping = config("[bluesky]\nunmatched = \"drop\"\nrewind = \"10s\"\n")
            .unwrap()
            .bluesky;
        assert_eq!(dropping.unmatched, crate::produce::bluesky::Unmatched::Drop);
        assert_eq!(dropping.rewind, Duration::from_secs(10));
    }

    #[test]
    fn x_company_errors_name_the_key() {
        let error = |toml: &str| {
            Config::from_toml_and_env(&format!("[x]\n{toml}"), "t.toml", std::iter::empty())
                .unwrap_err()
                .to_string()
        };
        let e = error("[x.companies.AAPL]\nhashtags = [\"two words\"]\n");
        assert!(
            e.contains("x.companies.AAPL.hashtags") && e.contains("two words"),
            "{e}"
        );
        let e = error("[x.companies.AAPL]\n");
        assert!(
            e.contains("x.companies.AAPL") && e.contains("at least one"),
            "{e}"
        );
        let e = error("[x.companies.\"A B\"]\ncashtags = [\"A\"]\n");
        assert!(e.contains("x.companies.A B"), "{e}");
        let e = error("max_rule_length = 4\n[x.companies.A]\ncashtags = [\"ABCDE\"]\n");
        assert!(
            e.contains("x.max_rule_length (4)") && e.contains("x.companies.A"),
            "{e}"
        );
        let e = error("[x.companies.A]\nkeywords = [\"say \\\"hi\\\"\"]\n");
        assert!(e.contains("x.companies.A.keywords"), "{e}");
        let e = error("[x.companies.A]\nticker = [\"A\"]\n");
        assert!(e.contains("ticker"), "{e}");
    }
}
