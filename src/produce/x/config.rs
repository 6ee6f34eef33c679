//! The `[x]` section: the X API v2 filtered stream and its rules (`produce x`, `produce rules`).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

pub use crate::settings::Secret;
use crate::settings::{duration_text, InvalidSetting};

/// The most minutes of backfill X accepts.
pub const MAX_BACKFILL_MINUTES: u8 = 5;

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
    /// Minutes of posts X sends again on every connection (`backfill_minutes`, 0-5), to cover
    /// a disconnection: posts received before it arrive twice. Only some access levels
    /// (Enterprise) have it; 0 is off.
    pub backfill_minutes: u8,
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
            backfill_minutes: 0,
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

impl XConfig {
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        match url::Url::parse(&self.api_base) {
            Ok(url) if ["http", "https"].contains(&url.scheme()) && url.has_host() => {}
            _ => {
                let message = format!("`{}` is not an http(s) URL like https://api.x.com", self.api_base);
                return Err(InvalidSetting::new("api_base", message));
            }
        }
        if self.idle_timeout.is_zero() {
            return Err(InvalidSetting::new("idle_timeout", "must be above 0"));
        }
        if self.report_interval.is_zero() {
            return Err(InvalidSetting::new("report_interval", "must be above 0"));
        }
        if self.backfill_minutes > MAX_BACKFILL_MINUTES {
            let message = format!("must be 0 to {MAX_BACKFILL_MINUTES} (X's limit)");
            return Err(InvalidSetting::new("backfill_minutes", message));
        }
        super::rules::company_rules(self).map_err(|e| InvalidSetting::new(e.key(), e.to_string()))?;
        Ok(())
    }
}
