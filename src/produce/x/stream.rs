//! One connection to `GET /2/tweets/search/stream`: the request with the fields and expansions
//! the models read, and its chunked body split into messages (one JSON object per `\r\n`-ended
//! line; a bare `\r\n` is a keep-alive).

use std::time::Duration;

use futures::stream::BoxStream;
use futures::StreamExt;
use reqwest::{Method, StatusCode};
use serde::de::IgnoredAny;
use serde::Deserialize;
use tokio::time::Instant;

use super::publish::StreamSettings;
use super::{HttpFailure, Problem, XApi};
use crate::produce::post_id;

pub const STREAM_PATH: &str = "/2/tweets/search/stream";

/// What the decoder's schema and the SQL models read (author, place, geo, entities, metrics,
/// referenced posts, long `note_tweet` text, media), beyond X's minimal defaults.
pub const QUERY: &[(&str, &str)] = &[
    (
        "tweet.fields",
        "attachments,author_id,context_annotations,conversation_id,created_at,edit_history_tweet_ids,\
         entities,geo,id,in_reply_to_user_id,lang,note_tweet,possibly_sensitive,public_metrics,\
         referenced_tweets,reply_settings,source,text",
    ),
    (
        "expansions",
        "attachments.media_keys,author_id,geo.place_id,referenced_tweets.id",
    ),
    (
        "user.fields",
        "created_at,description,id,location,name,profile_image_url,protected,public_metrics,url,\
         username,verified,verified_type",
    ),
    (
        "place.fields",
        "contained_within,country,country_code,full_name,geo,id,name,place_type",
    ),
    (
        "media.fields",
        "alt_text,height,media_key,preview_image_url,type,url,width",
    ),
];

/// Why a connection attempt got no stream.
#[derive(Debug)]
pub enum ConnectError {
    /// No HTTP response: DNS, TCP, TLS, or no headers within the idle timeout.
    Network(String),
    Status(HttpFailure),
}

/// One stream message, classified.
#[derive(Debug, PartialEq)]
pub enum Event {
    KeepAlive,
    /// A message with `data`: published as received; `key` is its post id.
    Post {
        key: Option<String>,
        message: Vec<u8>,
    },
    /// An operational disconnect: X closes the stream after it.
    Disconnect(Problem),
    /// Errors without data, e.g. a post that could not be hydrated.
    Problems(Vec<Problem>),
    /// A line that is not a JSON object: published, so the pipeline's dead-letter table keeps it.
    Malformed(Vec<u8>),
    /// A JSON object with neither `data` nor `errors`: a message type this version does not know.
    Unknown,
}

/// Why a connection ended.
#[derive(Debug)]
pub enum Ended {
    /// The server closed the body.
    Closed,
    /// Nothing arrived, not even a keep-alive, for this long.
    Idle(Duration),
    Network(String),
}

impl std::fmt::Display for Ended {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ended::Closed => f.write_str("closed by the server"),
            Ended::Idle(idle) => write!(f, "no data or keep-alive for {idle:?}"),
            Ended::Network(error) => write!(f, "network error: {error}"),
        }
    }
}

pub struct Connection {
    body: BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    buffer: Vec<u8>,
    /// Where the next message starts in `buffer`.
    start: usize,
    /// How far past `start` there is no line end yet, so long messages are scanned once.
    scanned: usize,
    idle: Duration,
    /// When the connection counts as dead: `idle` after the last bytes. Kept here, not in a
    /// timeout per call, so a caller that cancels and repeats `next` does not extend it.
    deadline: Instant,
}

/// The query parameter asking X to send the posts of the last minutes again.
pub const BACKFILL_PARAMETER: &str = "backfill_minutes";

/// Opens the stream, asking for `backfill_minutes` when above 0; waits at most the idle timeout
/// for the response headers.
pub async fn connect(api: &XApi, settings: &StreamSettings) -> Result<Connection, ConnectError> {
    let idle = settings.idle_timeout;
    let mut request = api.request(Method::GET, STREAM_PATH).query(QUERY);
    if settings.backfill_minutes > 0 {
        request = request.query(&[(BACKFILL_PARAMETER, settings.backfill_minutes)]);
    }
    let response = match tokio::time::timeout(idle, request.send()).await {
        Err(_) => return Err(ConnectError::Network(format!("no response within {idle:?}"))),
        Ok(Err(error)) => return Err(ConnectError::Network(super::error_chain(&error))),
        Ok(Ok(response)) => response,
    };
    if response.status() != StatusCode::OK {
        return Err(ConnectError::Status(HttpFailure::read(response).await));
    }
    Ok(Connection {
        body: response.bytes_stream().boxed(),
        buffer: Vec::new(),
        start: 0,
        scanned: 0,
        idle,
        deadline: Instant::now() + idle,
    })
}

impl Connection {
    /// The next message, or why the connection ended.
    pub async fn next(&mut self) -> Result<Event, Ended> {
        loop {
            if let Some(line) = self.take_line() {
                return Ok(classify(line));
            }
            match tokio::time::timeout_at(self.deadline, self.body.next()).await {
                Err(_) => return Err(Ended::Idle(self.idle)),
                Ok(None) => return Err(Ended::Closed),
                Ok(Some(Err(error))) => return Err(Ended::Network(super::error_chain(&error))),
                Ok(Some(Ok(chunk))) => self.push(&chunk),
            }
        }
    }

    /// Bytes of a message the connection ended in the middle of: they cannot be published.
    pub fn partial_bytes(&self) -> usize {
        self.buffer.len() - self.start
    }

    fn push(&mut self, chunk: &[u8]) {
        self.deadline = Instant::now() + self.idle;
        self.buffer.drain(..self.start);
        self.start = 0;
        self.buffer.extend_from_slice(chunk);
    }

    /// The next complete line without its `\r\n`.
    fn take_line(&mut self) -> Option<&[u8]> {
        let from = self.start + self.scanned;
        let Some(at) = self.buffer[from..].iter().position(|&b| b == b'\n') else {
            self.scanned = self.buffer.len() - self.start;
            return None;
        };
        let end = from + at;
        let line = &self.buffer[self.start..end];
        self.start = end + 1;
        self.scanned = 0;
        Some(line.strip_suffix(b"\r").unwrap_or(line))
    }
}

/// What one line of the stream is.
pub fn classify(line: &[u8]) -> Event {
    #[derive(Deserialize)]
    struct Envelope {
        data: Option<IgnoredAny>,
        errors: Option<Vec<Problem>>,
    }
    if line.iter().all(u8::is_ascii_whitespace) {
        return Event::KeepAlive;
    }
    match serde_json::from_slice::<Envelope>(line) {
        Err(_) => Event::Malformed(line.to_vec()),
        Ok(Envelope { data: Some(_), .. }) => Event::Post {
            key: post_id(line),
            message: line.to_vec(),
        },
        Ok(Envelope {
            errors: Some(problems),
            ..
        }) => match problems.iter().find(|p| is_disconnect(p)) {
            Some(disconnect) => Event::Disconnect(disconnect.clone()),
            None => Event::Problems(problems),
        },
        Ok(_) => Event::Unknown,
    }
}

fn is_disconnect(problem: &Problem) -> bool {
    problem.disconnect_type.is_some()
        || problem.title.as_deref() == Some("operational-disconnect")
        || problem
            .kind
            .as_deref()
            .is_some_and(|t| t.ends_with("/operational-disconnect"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_classified_and_only_data_is_a_post() {
        assert_eq!(classify(b""), Event::KeepAlive);
        assert_eq!(classify(b"  "), Event::KeepAlive);
        let post =
            br#"{"data":{"id":"186","text":"$AAPL"},"matching_rules":[{"id":"1","tag":"company:AAPL"}]}"#;
        assert_eq!(
            classify(post),
            Event::Post {
                key: Some("186".into()),
                message: post.to_vec()
            }
        );
        let hydration =
            br#"{"data":{"id":"7"},"errors":[{"title":"Not Found Error","resource_type":"user"}]}"#;
        assert!(matches!(classify(hydration), Event::Post { key: Some(k), .. } if k == "7"));
        let disconnect = br#"{"errors":[{"title":"operational-disconnect","disconnect_type":"UpstreamOperationalDisconnect","detail":"This stream has been disconnected upstream for operational reasons.","type":"https://api.x.com/2/problems/operational-disconnect"}]}"#;
        match classify(disconnect) {
            Event::Disconnect(problem) => assert_eq!(
                problem.to_string(),
                "operational-disconnect: UpstreamOperationalDisconnect: This stream has been disconnected \
                 upstream for operational reasons."
            ),
            other => panic!("{other:?}"),
        }
        let problem = br#"{"errors":[{"title":"Not Found Error","detail":"Could not find tweet 1"}]}"#;
        assert!(matches!(classify(problem), Event::Problems(p) if p.len() == 1));
        assert_eq!(classify(b"{truncated"), Event::Malformed(b"{truncated".to_vec()));
        assert_eq!(classify(b"[1,2,3]"), Event::Malformed(b"[1,2,3]".to_vec()));
        assert_eq!(classify(br#"{"meta":{"new":"type"}}"#), Event::Unknown);
    }

    #[tokio::test]
    async fn messages_are_reassembled_across_chunks_and_a_partial_tail_is_reported() {
        let chunks: Vec<reqwest::Result<bytes::Bytes>> = [
            &b"\r\n{\"data\":{\"id\":\"1\"}}\r\n{\"da"[..],
            b"ta\":{\"id\":",
            b"\"2\"}}\r\n\r\n{\"data\":{\"id\":\"3\"",
        ]
        .into_iter()
        .map(|c| Ok(bytes::Bytes::copy_from_slice(c)))
        .collect();
        let mut connection = Connection {
            body: futures::stream::iter(chunks).boxed(),
            buffer: Vec::new(),
            start: 0,
            scanned: 0,
            idle: Duration::from_secs(5),
            deadline: Instant::now() + Duration::from_secs(5),
        };
        let mut keys = Vec::new();
        let ended = loop {
            match connection.next().await {
                Ok(Event::Post { key, .. }) => keys.push(key.unwrap()),
                Ok(Event::KeepAlive) => keys.push("keep-alive".into()),
                Ok(other) => panic!("{other:?}"),
                Err(ended) => break ended,
            }
        };
        assert_eq!(keys, ["keep-alive", "1", "2", "keep-alive"]);
        assert!(matches!(ended, Ended::Closed));
        assert_eq!(connection.partial_bytes(), br#"{"data":{"id":"3""#.len());
    }
}
