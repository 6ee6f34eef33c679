//! The `[bluesky]` section: the Jetstream subscription of `produce bluesky`, where its cursor is
//! kept, and what becomes of posts no company rule matches.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::settings::{duration_text, InvalidSetting};

/// A public Jetstream instance run by Bluesky, subscribed to posts only.
pub const DEFAULT_JETSTREAM_URL: &str =
    "wss://jetstream2.us-east.bsky.network/subscribe?wantedCollections=app.bsky.feed.post";

/// Query parameters of the subscription tweetlake cannot take from the URL, and why.
const REFUSED_PARAMETERS: [(&str, &str); 4] = [
    (
        "cursor",
        "tweetlake sets it (from bluesky.cursor_file or --cursor)",
    ),
    ("compress", "zstd-compressed frames are not read: leave it out"),
    (
        "requireHello",
        "the server would wait for a message tweetlake does not send: leave it out",
    ),
    (
        "maxMessageSizeBytes",
        "Jetstream skips larger events without a trace: leave it out",
    ),
];

/// `tweetlake produce bluesky`: Bluesky posts from Jetstream, as X v2 stream messages.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BlueskyConfig {
    /// The Jetstream `/subscribe` URL with its query (`wantedCollections=app.bsky.feed.post`);
    /// `ws://` or `wss://`.
    pub jetstream_url: String,
    /// Where the cursor is kept between runs (the newest `time_us` received and delivered);
    /// empty: nowhere, a start without `--cursor` tails the live stream.
    pub cursor_file: PathBuf,
    /// How far before the cursor a connection resumes, so that no event is missed: events
    /// arrive out of `time_us` order, and another instance's clock differs. The posts of that
    /// span arrive again, with the same ids.
    #[serde(with = "duration_text")]
    pub rewind: Duration,
    /// A connection with no frame at all (Jetstream pings every 30 s) for this long is dead.
    #[serde(with = "duration_text")]
    pub idle_timeout: Duration,
    /// How often the counters and throughput are logged.
    #[serde(with = "duration_text")]
    pub report_interval: Duration,
    /// Posts that match no company rule of `[x.companies]`: kept with no rules, or dropped.
    pub unmatched: Unmatched,
}

/// What becomes of a post no company rule matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Unmatched {
    /// Published with empty `matching_rules`; silver may still find a company in its text.
    Keep,
    /// Not published (counted in the reports).
    Drop,
}

impl Default for BlueskyConfig {
    fn default() -> Self {
        Self {
            jetstream_url: DEFAULT_JETSTREAM_URL.into(),
            cursor_file: PathBuf::from("bluesky.cursor"),
            rewind: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(60),
            report_interval: Duration::from_secs(30),
            unmatched: Unmatched::Keep,
        }
    }
}

impl BlueskyConfig {
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        self.subscription()?;
        if self.idle_timeout.is_zero() {
            return Err(InvalidSetting::new("idle_timeout", "must be above 0"));
        }
        if self.report_interval.is_zero() {
            return Err(InvalidSetting::new("report_interval", "must be above 0"));
        }
        Ok(())
    }

    /// The subscription URL, checked.
    pub fn subscription(&self) -> Result<url::Url, InvalidSetting> {
        let invalid = |message: String| InvalidSetting::new("jetstream_url", message);
        let url = match url::Url::parse(&self.jetstream_url) {
            Ok(url) if ["ws", "wss"].contains(&url.scheme()) && url.has_host() => url,
            _ => {
                return Err(invalid(format!(
                    "`{}` is not a ws(s) URL like {DEFAULT_JETSTREAM_URL}",
                    self.jetstream_url
                )))
            }
        };
        for (key, _) in url.query_pairs() {
            if let Some((_, why)) = REFUSED_PARAMETERS.iter().find(|(name, _)| *name == key) {
                return Err(invalid(format!("`{key}`: {why}")));
            }
        }
        Ok(url)
    }
}
