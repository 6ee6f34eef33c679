//! Bluesky posts from Jetstream (its public websocket stream of the network's records), made the
//! X API v2 stream messages the rest of tweetlake reads: the [`jetstream`] connection, each
//! frame's [`event`] (posts converted, their [`facets`] made entities), the [`cursor`] a
//! subscription resumes from, the [`outlet`] messages go to, and the [`producer`] loop.

mod config;
pub mod cursor;
pub mod event;
pub mod facets;
pub mod jetstream;
pub mod outlet;
pub mod producer;

use tokio_tungstenite::tungstenite::http::StatusCode;

pub use config::{BlueskyConfig, Unmatched, DEFAULT_JETSTREAM_URL};

#[derive(Debug, thiserror::Error)]
pub enum BlueskyError {
    #[error("Jetstream refused the subscription (HTTP {status}: {detail}): check bluesky.jetstream_url")]
    Refused { status: StatusCode, detail: String },
    #[error(transparent)]
    Outlet(#[from] outlet::OutletError),
    #[error(transparent)]
    Cursor(#[from] cursor::CursorError),
}
