//! The X API v2 filtered stream: [`rules`] from the config, the [`stream`] connection, the
//! [`backoff`] policy between attempts, and the loop that [`publish`]es each post to Kafka.
//! [`matching`] applies the same rules locally, for posts that do not come from X.

pub mod backoff;
mod config;
pub mod matching;
pub mod publish;
pub mod rules;
pub mod stream;

use std::time::{Duration, SystemTime};

use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde::Deserialize;

use crate::kafka::PublishError;

pub use config::{CompanyTerms, Secret, XConfig};

/// Where the token can be set, for error messages.
const TOKEN_KEYS: &str = "x.bearer_token (or TWEETLAKE_X__BEARER_TOKEN / X_BEARER_TOKEN in the environment)";

/// Bounds each rules request; the stream has its own idle timeout instead.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum XError {
    #[error("no X bearer token: set {TOKEN_KEYS}")]
    MissingToken,
    #[error("X refused the bearer token ({what}: HTTP {status}: {detail}): check {TOKEN_KEYS} and that its app has filtered-stream access")]
    Unauthorized {
        what: &'static str,
        status: StatusCode,
        detail: String,
    },
    #[error("{what}: HTTP {status}: {detail}")]
    Http {
        what: &'static str,
        status: StatusCode,
        detail: String,
    },
    #[error("the filtered stream has no rules (HTTP 409): list companies under [x.companies] and run `tweetlake produce rules --sync`")]
    NoRules,
    #[error("{what}: cannot reach {base}: {source}")]
    Network {
        what: &'static str,
        base: String,
        source: reqwest::Error,
    },
    #[error("{what}: unexpected response: {message}")]
    Response { what: &'static str, message: String },
    #[error("{source}; x.backfill_minutes = {minutes} is set: backfill needs an access level that has it (Enterprise), else set it to 0")]
    BackfillRefused { minutes: u8, source: Box<XError> },
    #[error("X rejected the rules ({summary}): {errors}")]
    RulesRejected { summary: String, errors: String },
    #[error(transparent)]
    Publish(#[from] PublishError),
}

/// An authenticated client of the X API.
pub struct XApi {
    client: reqwest::Client,
    base: url::Url,
    token: Secret,
}

impl XApi {
    pub fn new(config: &XConfig) -> Result<Self, XError> {
        if config.bearer_token.is_empty() {
            return Err(XError::MissingToken);
        }
        let client = reqwest::Client::builder()
            // X asks clients to identify themselves with a versioned User-Agent.
            .user_agent(concat!("tweetlake/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|source| XError::Network {
                what: "create the HTTP client",
                base: config.api_base.clone(),
                source,
            })?;
        let base = url::Url::parse(&config.api_base).map_err(|e| XError::Response {
            what: "x.api_base",
            message: e.to_string(),
        })?;
        Ok(Self {
            client,
            base,
            token: config.bearer_token.clone(),
        })
    }

    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let url = self.base.join(path).expect("a fixed API path joins any base URL");
        self.client.request(method, url).bearer_auth(self.token.expose())
    }

    /// Sends a request and returns its successful response; any other status is an error.
    async fn send(&self, what: &'static str, request: RequestBuilder) -> Result<Response, XError> {
        let response = request
            .timeout(REQUEST_TIMEOUT)
            .send()
            .await
            .map_err(|source| self.network(what, source))?;
        if response.status().is_success() {
            return Ok(response);
        }
        Err(HttpFailure::read(response).await.into_error(what))
    }

    /// A JSON response body.
    async fn json<T: serde::de::DeserializeOwned>(
        &self,
        what: &'static str,
        response: Response,
    ) -> Result<T, XError> {
        let body = response
            .bytes()
            .await
            .map_err(|source| self.network(what, source))?;
        serde_json::from_slice(&body).map_err(|e| XError::Response {
            what,
            message: format!("{e}: {}", String::from_utf8_lossy(&body[..body.len().min(300)])),
        })
    }

    fn network(&self, what: &'static str, source: reqwest::Error) -> XError {
        XError::Network {
            what,
            base: self.base.to_string(),
            source,
        }
    }
}

/// An HTTP error response, with what X said about it.
#[derive(Debug)]
pub struct HttpFailure {
    pub status: StatusCode,
    /// `x-rate-limit-reset` (a UNIX time), when present.
    pub rate_limit_reset: Option<SystemTime>,
    pub detail: String,
}

impl HttpFailure {
    async fn read(response: Response) -> Self {
        let status = response.status();
        let rate_limit_reset = response
            .headers()
            .get("x-rate-limit-reset")
            .and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok())
            .map(|secs| SystemTime::UNIX_EPOCH + Duration::from_secs(secs));
        let body = response.bytes().await.unwrap_or_default();
        Self {
            status,
            rate_limit_reset,
            detail: problem_detail(&body),
        }
    }

    /// The error for a status that is not retried.
    fn into_error(self, what: &'static str) -> XError {
        let Self {
            status,
            mut detail,
            rate_limit_reset,
        } = self;
        if let Some(reset) = rate_limit_reset.filter(|_| status == StatusCode::TOO_MANY_REQUESTS) {
            let reset = chrono::DateTime::<chrono::Utc>::from(reset).to_rfc3339();
            detail = format!("{detail}; the rate limit resets at {reset}");
        }
        match status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => XError::Unauthorized { what, status, detail },
            _ => XError::Http { what, status, detail },
        }
    }
}

/// An RFC 7807 problem as X sends them: in error responses and in the stream.
#[derive(Debug, Default, Clone, PartialEq, Eq, Deserialize)]
pub struct Problem {
    pub title: Option<String>,
    pub detail: Option<String>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub disconnect_type: Option<String>,
    pub connection_issue: Option<String>,
    /// The rule a rules error is about.
    pub value: Option<String>,
    /// Reasons a rule is invalid.
    #[serde(default)]
    pub details: Vec<String>,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A rule error names its rule in `value`; other problems say it in their `detail`.
        let value = if self.detail.is_none() { &self.value } else { &None };
        let parts = [
            &self.title,
            &self.disconnect_type,
            &self.connection_issue,
            &self.detail,
            value,
        ];
        let mut text: Vec<&str> = Vec::new();
        // X often repeats the title as the detail ("Unauthorized: Unauthorized").
        for part in parts
            .iter()
            .filter_map(|p| p.as_deref())
            .chain(self.details.iter().map(String::as_str))
        {
            if !text.contains(&part) {
                text.push(part);
            }
        }
        if text.is_empty() {
            text.push(self.kind.as_deref().unwrap_or("unknown problem"));
        }
        f.write_str(&text.join(": "))
    }
}

/// What an error body says: its problems, else its text.
fn problem_detail(body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct Body {
        #[serde(default)]
        errors: Vec<Problem>,
        #[serde(flatten)]
        problem: Problem,
    }
    match serde_json::from_slice::<Body>(body) {
        Ok(parsed) if !parsed.errors.is_empty() => join_problems(&parsed.errors),
        Ok(parsed) => parsed.problem.to_string(),
        Err(_) if body.iter().all(u8::is_ascii_whitespace) => "no details".into(),
        Err(_) => String::from_utf8_lossy(&body[..body.len().min(300)])
            .trim()
            .to_string(),
    }
}

fn join_problems(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(Problem::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// An error and its sources on one line (reqwest hides the cause, e.g. "connection refused",
/// in its sources).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text = format!("{text}: {cause_text}");
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_bodies_read_as_one_line_without_repeats() {
        let unauthorized =
            br#"{"title":"Unauthorized","type":"about:blank","status":401,"detail":"Unauthorized"}"#;
        assert_eq!(problem_detail(unauthorized), "Unauthorized");
        let rules = br##"{"errors":[{"value":"#bad","details":["Rules must contain a non-negation term"],"title":"Invalid Rule"},{"value":"$A","id":"1","title":"DuplicateRule"}]}"##;
        assert_eq!(
            problem_detail(rules),
            "Invalid Rule: #bad: Rules must contain a non-negation term; DuplicateRule: $A"
        );
        let hydration =
            br#"{"errors":[{"value":"42","title":"Not Found Error","detail":"Could not find user 42."}]}"#;
        assert_eq!(
            problem_detail(hydration),
            "Not Found Error: Could not find user 42."
        );
        assert_eq!(problem_detail(b""), "no details");
        assert_eq!(problem_detail(b"<html>busy</html>"), "<html>busy</html>");
    }

    #[test]
    fn a_rate_limited_request_says_when_the_limit_resets() {
        let failure = HttpFailure {
            status: StatusCode::TOO_MANY_REQUESTS,
            rate_limit_reset: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000)),
            detail: "Too Many Requests".into(),
        };
        let text = failure.into_error("add stream rules").to_string();
        assert_eq!(
            text,
            "add stream rules: HTTP 429 Too Many Requests: Too Many Requests; the rate limit resets at \
             2027-01-15T08:00:00+00:00"
        );
    }
}
