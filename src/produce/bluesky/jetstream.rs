//! One websocket connection to Jetstream's `/subscribe`: the URL with its cursor, the upgrade,
//! and the frames as they come. tungstenite answers the server's pings (every 30 s) on the next
//! read; ours go out every [`PING_INTERVAL`], and a connection silent for the idle timeout is
//! dead. Nothing else is sent: Jetstream closes a connection that sends it a data frame it does
//! not expect.

use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, Interval, MissedTickBehavior};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{header, HeaderValue, StatusCode};
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How often the client pings: well inside any proxy's idle timeout.
pub const PING_INTERVAL: Duration = Duration::from_secs(20);

/// The subscription URL resuming at `cursor` (microseconds); without one, the live stream.
pub fn subscribe_url(base: &url::Url, cursor: Option<i64>) -> url::Url {
    let mut url = base.clone();
    if let Some(cursor) = cursor {
        url.query_pairs_mut().append_pair("cursor", &cursor.to_string());
    }
    url
}

/// Why a connection attempt got no stream.
#[derive(Debug)]
pub enum ConnectError {
    /// No upgrade: DNS, TCP, TLS, the handshake, or no answer within the idle timeout.
    Network(String),
    /// The server answered the upgrade with an HTTP error.
    Status { status: StatusCode, detail: String },
}

/// Why an open connection ended.
#[derive(Debug)]
pub enum Ended {
    /// A close frame, or the end of the TCP stream.
    Closed(String),
    /// No frame for this long.
    Idle(Duration),
    /// A text frame that is not UTF-8: its bytes are lost (tungstenite ends the stream on it).
    InvalidText(String),
    Network(String),
}

impl std::fmt::Display for Ended {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Closed(how) => write!(f, "closed by the server ({how})"),
            Self::Idle(idle) => write!(f, "no frame for {idle:?}"),
            Self::InvalidText(error) => write!(
                f,
                "the server sent a text frame that is not UTF-8 ({error}); its bytes are lost"
            ),
            Self::Network(error) => write!(f, "network error: {error}"),
        }
    }
}

pub struct Connection {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    ping: Interval,
    idle: Duration,
    /// When the connection counts as dead: `idle` after the last frame. Kept here, so a caller
    /// that cancels and repeats `next` does not extend it.
    deadline: Instant,
}

/// Opens a subscription; waits at most `idle` for the upgrade.
pub async fn connect(url: &url::Url, idle: Duration) -> Result<Connection, ConnectError> {
    let mut request = url
        .as_str()
        .into_client_request()
        .map_err(|e| ConnectError::Network(e.to_string()))?;
    request.headers_mut().insert(
        header::USER_AGENT,
        HeaderValue::from_static(concat!("tweetlake/", env!("CARGO_PKG_VERSION"))),
    );
    let connect = tokio_tungstenite::connect_async_tls_with_config(request, None, true, None);
    let ws = match tokio::time::timeout(idle, connect).await {
        Err(_) => return Err(ConnectError::Network(format!("no upgrade within {idle:?}"))),
        Ok(Err(tungstenite::Error::Http(response))) => {
            let body = response.body().as_deref().unwrap_or_default();
            return Err(ConnectError::Status {
                status: response.status(),
                detail: String::from_utf8_lossy(&body[..body.len().min(300)])
                    .trim()
                    .to_string(),
            });
        }
        Ok(Err(e)) => return Err(ConnectError::Network(e.to_string())),
        Ok(Ok((ws, _response))) => ws,
    };
    let mut ping = tokio::time::interval_at(Instant::now() + PING_INTERVAL, PING_INTERVAL);
    ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
    Ok(Connection {
        ws,
        ping,
        idle,
        deadline: Instant::now() + idle,
    })
}

impl Connection {
    /// The next data frame's bytes (text or binary), or why the connection ended.
    pub async fn next(&mut self) -> Result<Bytes, Ended> {
        loop {
            let frame = tokio::select! {
                frame = self.ws.next() => frame,
                _ = tokio::time::sleep_until(self.deadline) => return Err(Ended::Idle(self.idle)),
                _ = self.ping.tick() => {
                    self.ws.send(Message::Ping(Bytes::new())).await.map_err(|e| Ended::Network(e.to_string()))?;
                    continue;
                }
            };
            self.deadline = Instant::now() + self.idle;
            match frame {
                None => return Err(Ended::Closed("end of stream".into())),
                Some(Ok(Message::Text(text))) => return Ok(Bytes::from(text)),
                Some(Ok(Message::Binary(bytes))) => return Ok(bytes),
                Some(Ok(Message::Close(frame))) => {
                    let how = frame.map_or("no reason".into(), |f| format!("{}: {}", f.code, f.reason));
                    return Err(Ended::Closed(how));
                }
                // Pings (answered by tungstenite), pongs.
                Some(Ok(_)) => {}
                Some(Err(tungstenite::Error::Utf8(error))) => return Err(Ended::InvalidText(error)),
                Some(Err(e)) => return Err(Ended::Network(e.to_string())),
            }
        }
    }

    /// Says goodbye; the server may already be gone.
    pub async fn close(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(1), self.ws.close(None)).await;
    }
}
