//! One Jetstream frame, classified, and a new post made the X API v2 stream message the decoder
//! and the models read.
//!
//! Jetstream sends `{did, time_us, kind, commit | identity | account}` (its `/subscribe`
//! format); only `kind = commit` with `operation = create` in `app.bsky.feed.post` is a post.
//! The message:
//!
//! - `platform`: `bluesky` (a top-level field; X's messages have none, silver reads them as `x`);
//! - `data.id`: the post's AT URI, `at://<did>/app.bsky.feed.post/<rkey>`: unique and stable,
//!   and the very string replies and quotes point at; `author_id` the DID;
//! - `data.created_at`: the record's `createdAt` in UTC, as X writes times;
//! - `data.lang`: the first of `langs`, its primary subtag (`pt-BR` -> `pt`);
//! - `data.entities` from the facets ([`facets`](super::facets)); `data.referenced_tweets`
//!   `replied_to` the reply's parent and `quoted` an embedded post, `conversation_id` the reply's
//!   root (else the post itself), `in_reply_to_user_id` the parent's DID;
//! - `matching_rules` from `[x.companies]`, matched here ([`RuleMatcher`]).

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::facets::{self, Entities};
use crate::produce::x::matching::{Feature, Post, RuleMatch, RuleMatcher};

/// The collection of posts.
pub const POST_COLLECTION: &str = "app.bsky.feed.post";

/// The value of the messages' `platform` field.
pub const PLATFORM: &str = "bluesky";

/// What one Jetstream frame is.
#[derive(Debug)]
pub enum Event {
    /// A new post.
    Post(Converted),
    /// An event that is not a new post.
    Skipped { skip: Skip, time_us: Option<i64> },
    /// A frame that is no Jetstream event, or a post record that cannot be read: published as
    /// received, so that the dead-letter table keeps its bytes.
    Malformed { why: String, time_us: Option<i64> },
}

impl Event {
    /// When Jetstream saw the event, if the frame says.
    pub fn time_us(&self) -> Option<i64> {
        match self {
            Self::Post(post) => Some(post.time_us),
            Self::Skipped { time_us, .. } | Self::Malformed { time_us, .. } => *time_us,
        }
    }
}

/// Events that are not new posts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// A handle or DID document changed.
    Identity,
    /// An account was (de)activated, deleted or taken down.
    Account,
    /// A post was deleted.
    Delete,
    /// A post record was rewritten (the app has no edits; its id stays the same).
    Update,
    /// A record of another collection (likes, follows, ...).
    OtherCollection,
    /// An event kind or operation this version does not know.
    Unknown,
}

/// A new post as an X v2 stream message.
#[derive(Debug)]
pub struct Converted {
    /// `data.id`, the message's Kafka key.
    pub id: String,
    pub message: Vec<u8>,
    pub time_us: i64,
    /// How many company rules it matched.
    pub matched: usize,
    /// Why each facet that became no entity was dropped.
    pub dropped_facets: Vec<String>,
}

/// What classification reads of every frame.
#[derive(Deserialize)]
struct Envelope {
    time_us: Option<i64>,
    kind: Option<String>,
    commit: Option<CommitHead>,
}

#[derive(Deserialize)]
struct CommitHead {
    operation: Option<String>,
    collection: Option<String>,
}

/// A post's create event, with the fields a post must have.
#[derive(Deserialize)]
struct PostEvent {
    did: String,
    time_us: i64,
    commit: PostCommit,
}

#[derive(Deserialize)]
struct PostCommit {
    rkey: String,
    record: Record,
}

/// `app.bsky.feed.post`: the optional parts are read leniently, as values.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Record {
    text: String,
    created_at: String,
    #[serde(default)]
    langs: Value,
    #[serde(default)]
    facets: Value,
    #[serde(default)]
    reply: Value,
    #[serde(default)]
    embed: Value,
    /// Hashtags beyond those in the text.
    #[serde(default)]
    tags: Value,
}

/// Jetstream frames to X v2 messages, with the company rules matched.
pub struct Converter {
    matcher: RuleMatcher,
}

impl Converter {
    pub fn new(matcher: RuleMatcher) -> Self {
        Self { matcher }
    }

    /// Whether the config lists any company to match.
    pub fn has_rules(&self) -> bool {
        self.matcher.has_rules()
    }

    /// What `frame` is; a new post comes converted.
    pub fn event(&self, frame: &[u8]) -> Event {
        if let Err(e) = std::str::from_utf8(frame) {
            let why = format!("not a Jetstream event: not UTF-8 text ({e})");
            return Event::Malformed { why, time_us: None };
        }
        let envelope: Envelope = match serde_json::from_slice(frame) {
            Ok(envelope) => envelope,
            Err(e) => {
                return Event::Malformed {
                    why: format!("not a Jetstream event: {e}"),
                    time_us: None,
                }
            }
        };
        let time_us = envelope.time_us;
        let skip = match (envelope.kind.as_deref(), envelope.commit) {
            (Some("commit"), Some(commit)) => match kind_of(&commit) {
                None => return self.post(frame, time_us),
                Some(skip) => skip,
            },
            (Some("commit"), None) => {
                let why = "a commit event without its `commit`".to_string();
                return Event::Malformed { why, time_us };
            }
            (Some("identity"), _) => Skip::Identity,
            (Some("account"), _) => Skip::Account,
            (Some(_), _) => Skip::Unknown,
            (None, _) => {
                let why = "not a Jetstream event: no `kind`".to_string();
                return Event::Malformed { why, time_us };
            }
        };
        Event::Skipped { skip, time_us }
    }

    fn post(&self, frame: &[u8], time_us: Option<i64>) -> Event {
        let malformed = |why: String| Event::Malformed { why, time_us };
        let event: PostEvent = match serde_json::from_slice(frame) {
            Ok(event) => event,
            Err(e) => return malformed(format!("a post that cannot be read: {e}")),
        };
        match self.convert(event) {
            Ok(post) => Event::Post(post),
            Err(why) => malformed(why),
        }
    }

    fn convert(&self, event: PostEvent) -> Result<Converted, String> {
        let PostEvent { did, time_us, commit } = event;
        let PostCommit { rkey, record } = commit;
        check_did(&did)?;
        check_rkey(&rkey)?;
        let created_at = x_time(&record.created_at)?;
        let id = post_uri(&did, &rkey);
        let facets::Facets { entities, dropped } = facets::entities(&record.text, as_list(&record.facets));
        let lang = primary_language(&record.langs);
        let references = References::of(&record);
        let rules = self
            .matcher
            .matching(&rule_post(&record, &entities, lang.as_deref(), &references));
        let message = Message {
            platform: PLATFORM,
            data: Data {
                id: &id,
                text: &record.text,
                edit_history_tweet_ids: [&id],
                author_id: &did,
                created_at,
                lang,
                conversation_id: references.root.unwrap_or(&id),
                in_reply_to_user_id: references.parent.and_then(uri_did),
                entities: &entities,
                referenced_tweets: references.list(),
            },
            matching_rules: &rules,
        };
        let message = serde_json::to_vec(&message).expect("a message of strings serializes");
        Ok(Converted {
            id,
            message,
            time_us,
            matched: rules.len(),
            dropped_facets: dropped,
        })
    }
}

/// The operation of a commit: `None` for a new post.
fn kind_of(commit: &CommitHead) -> Option<Skip> {
    if commit.collection.as_deref() != Some(POST_COLLECTION) {
        return Some(Skip::OtherCollection);
    }
    match commit.operation.as_deref() {
        Some("create") => None,
        Some("delete") => Some(Skip::Delete),
        Some("update") => Some(Skip::Update),
        _ => Some(Skip::Unknown),
    }
}

/// The X v2 message of a post.
#[derive(Serialize)]
struct Message<'a> {
    platform: &'static str,
    data: Data<'a>,
    matching_rules: &'a [RuleMatch],
}

#[derive(Serialize)]
struct Data<'a> {
    id: &'a str,
    text: &'a str,
    edit_history_tweet_ids: [&'a str; 1],
    author_id: &'a str,
    created_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    lang: Option<String>,
    conversation_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    in_reply_to_user_id: Option<&'a str>,
    entities: &'a Entities,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    referenced_tweets: Vec<Reference<'a>>,
}

#[derive(Serialize)]
struct Reference<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    id: &'a str,
}

/// The posts a post replies to and quotes, by AT URI.
struct References<'a> {
    root: Option<&'a str>,
    parent: Option<&'a str>,
    quoted: Option<&'a str>,
    media: Media,
}

/// What a post embeds besides a quoted record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Media {
    None,
    /// Images or a video.
    Attached,
    /// A link card (`app.bsky.embed.external`).
    External,
}

impl<'a> References<'a> {
    fn of(record: &'a Record) -> Self {
        let post_uri =
            |value: Option<&'a Value>| value.and_then(Value::as_str).filter(|uri| is_post_uri(uri));
        let embed_type = record.embed.get("$type").and_then(Value::as_str);
        let quoted = match embed_type {
            Some("app.bsky.embed.record") => post_uri(record.embed.pointer("/record/uri")),
            Some("app.bsky.embed.recordWithMedia") => post_uri(record.embed.pointer("/record/record/uri")),
            _ => None,
        };
        let media = match embed_type {
            Some("app.bsky.embed.images" | "app.bsky.embed.video" | "app.bsky.embed.recordWithMedia") => {
                Media::Attached
            }
            Some("app.bsky.embed.external") => Media::External,
            _ => Media::None,
        };
        let parent = post_uri(record.reply.pointer("/parent/uri"));
        Self {
            root: parent.and(post_uri(record.reply.pointer("/root/uri"))),
            parent,
            quoted,
            media,
        }
    }

    fn list(&self) -> Vec<Reference<'a>> {
        let replied = self.parent.map(|id| Reference {
            kind: "replied_to",
            id,
        });
        let quoted = self.quoted.map(|id| Reference { kind: "quoted", id });
        replied.into_iter().chain(quoted).collect()
    }
}

/// The post as the company rules see it.
fn rule_post(record: &Record, entities: &Entities, lang: Option<&str>, references: &References) -> Post {
    let mut post = Post::new(&record.text);
    for tag in &entities.hashtags {
        post.add_hashtag(&tag.tag);
    }
    for tag in as_list(&record.tags).iter().filter_map(Value::as_str) {
        post.add_hashtag(tag);
    }
    for tag in &entities.cashtags {
        post.add_cashtag(&tag.tag);
    }
    if let Some(lang) = lang {
        post.set_lang(lang);
    }
    let features = [
        (references.parent.is_some(), Feature::Reply),
        (references.quoted.is_some(), Feature::Quote),
        (!entities.mentions.is_empty(), Feature::Mentions),
        (
            !entities.urls.is_empty() || references.media == Media::External,
            Feature::Links,
        ),
        (references.media == Media::Attached, Feature::Media),
    ];
    for (_, feature) in features.iter().filter(|(has, _)| *has) {
        post.add_feature(*feature);
    }
    post
}

fn as_list(value: &Value) -> &[Value] {
    value.as_array().map_or(&[], Vec::as_slice)
}

/// The first language's primary subtag, lower-cased: what X's `lang` holds.
fn primary_language(langs: &Value) -> Option<String> {
    let first = as_list(langs).first()?.as_str()?;
    let primary = first.split(['-', '_']).next()?;
    let valid = (2..=3).contains(&primary.len()) && primary.chars().all(|c| c.is_ascii_alphabetic());
    valid.then(|| primary.to_ascii_lowercase())
}

/// `createdAt` (RFC 3339, any offset) as X writes times: UTC, milliseconds, `Z`.
fn x_time(created_at: &str) -> Result<String, String> {
    let time = DateTime::parse_from_rfc3339(created_at)
        .map_err(|e| format!("a post whose createdAt `{created_at}` is not an RFC 3339 time ({e})"))?;
    Ok(time
        .with_timezone(&Utc)
        .to_rfc3339_opts(SecondsFormat::Millis, true))
}

/// `at://<did>/app.bsky.feed.post/<rkey>`.
pub fn post_uri(did: &str, rkey: &str) -> String {
    format!("at://{did}/{POST_COLLECTION}/{rkey}")
}

fn is_post_uri(uri: &str) -> bool {
    let Some(path) = uri.strip_prefix("at://") else {
        return false;
    };
    let mut parts = path.split('/');
    let (Some(_authority), Some(collection), Some(rkey), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    collection == POST_COLLECTION && !rkey.is_empty()
}

/// The DID of an AT URI's repository, when it names one by DID.
fn uri_did(uri: &str) -> Option<&str> {
    let authority = uri.strip_prefix("at://")?.split('/').next()?;
    authority.starts_with("did:").then_some(authority)
}

/// A DID as atproto writes them: `did:<method>:<id>`, up to 2048 characters.
fn check_did(did: &str) -> Result<(), String> {
    let mut parts = did.splitn(3, ':');
    let valid = parts.next() == Some("did")
        && parts
            .next()
            .is_some_and(|m| !m.is_empty() && m.chars().all(|c| c.is_ascii_lowercase()))
        && parts.next().is_some_and(|id| {
            !id.is_empty()
                && id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._:%-".contains(c))
        })
        && did.len() <= 2048;
    valid
        .then_some(())
        .ok_or_else(|| format!("a post whose repository `{did}` is not a DID"))
}

/// A record key: 1-512 of `A-Z a-z 0-9 . _ : ~ -`, not `.` or `..`.
fn check_rkey(rkey: &str) -> Result<(), String> {
    let valid = (1..=512).contains(&rkey.len())
        && rkey
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._:~-".contains(c))
        && rkey != "."
        && rkey != "..";
    valid
        .then_some(())
        .ok_or_else(|| format!("a post whose record key `{rkey}` is not valid"))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::produce::x::XConfig;

    fn converter(companies: &str) -> Converter {
        #[derive(Deserialize)]
        struct File {
            x: XConfig,
        }
        let file: File = toml::from_str(&format!("[x]\n{companies}")).unwrap();
        Converter::new(RuleMatcher::new(&file.x).unwrap())
    }

    fn post_event(record: Value) -> Vec<u8> {
        json!({"did": "did:plc:alice", "time_us": 1_783_175_888_172_335_i64, "kind": "commit",
               "commit": {"rev": "3mptbypoove2w", "operation": "create", "collection": POST_COLLECTION,
                          "rkey": "3mptbypfywk2v", "record": record, "cid": "bafyrei"}})
        .to_string()
        .into_bytes()
    }

    fn message(event: Event) -> Value {
        match event {
            Event::Post(post) => serde_json::from_slice(&post.message).unwrap(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_post_becomes_an_x_message() {
        let record = json!({"$type": POST_COLLECTION, "createdAt": "2026-07-04T16:38:07.323+02:00",
            "langs": ["pt-BR", "en"], "text": "$AAPL up #WWDC",
            "facets": [{"features": [{"$type": "app.bsky.richtext.facet#tag", "tag": "$AAPL"}],
                        "index": {"byteStart": 0, "byteEnd": 5}}]});
        let converter = converter("[x.companies.AAPL]\ncashtags = [\"AAPL\"]\n");
        let event = converter.event(&post_event(record));
        assert_eq!(event.time_us(), Some(1_783_175_888_172_335));
        let id = "at://did:plc:alice/app.bsky.feed.post/3mptbypfywk2v";
        assert_eq!(
            message(event),
            json!({"platform": "bluesky", "data": {"id": id, "text": "$AAPL up #WWDC",
                "edit_history_tweet_ids": [id], "author_id": "did:plc:alice",
                "created_at": "2026-07-04T14:38:07.323Z", "lang": "pt", "conversation_id": id,
                "entities": {"hashtags": [], "cashtags": [{"start": 0, "end": 5, "tag": "AAPL"}],
                             "mentions": [], "urls": []}},
              "matching_rules": [{"id": "local:AAPL", "tag": "company:AAPL"}]})
        );
    }

    #[test]
    fn replies_and_quotes_reference_posts_by_uri() {
        let parent = "at://did:plc:bob/app.bsky.feed.post/3mmojbrjwbs26";
        let root = "at://did:plc:carol/app.bsky.feed.post/3mmoaaaaaaa22";
        let quoted = "at://did:plc:dan/app.bsky.feed.post/3mmobbbbbbb22";
        let record = json!({"createdAt": "2026-05-25T14:23:28.757Z", "text": "yes",
            "reply": {"parent": {"cid": "c", "uri": parent}, "root": {"cid": "c", "uri": root}},
            "embed": {"$type": "app.bsky.embed.recordWithMedia",
                      "media": {"$type": "app.bsky.embed.images", "images": []},
                      "record": {"$type": "app.bsky.embed.record", "record": {"cid": "c", "uri": quoted}}}});
        let data = message(converter("").event(&post_event(record)))["data"].clone();
        assert_eq!(
            data["referenced_tweets"],
            json!([{"type": "replied_to", "id": parent}, {"type": "quoted", "id": quoted}])
        );
        assert_eq!(data["conversation_id"], root);
        assert_eq!(data["in_reply_to_user_id"], "did:plc:bob");
        assert!(
            data.get("lang").is_none(),
            "no langs: silver detects the language"
        );

        let feed = "at://did:plc:dan/app.bsky.feed.generator/whats-hot";
        let record = json!({"createdAt": "2026-05-25T14:23:28.757Z", "text": "see",
            "embed": {"$type": "app.bsky.embed.record", "record": {"cid": "c", "uri": feed}}});
        let data = message(converter("").event(&post_event(record)))["data"].clone();
        assert!(
            data.get("referenced_tweets").is_none(),
            "a feed is no quoted post"
        );
    }

    #[test]
    fn events_that_are_not_new_posts_are_skipped() {
        let c = converter("");
        let skip = |frame: Value| match c.event(frame.to_string().as_bytes()) {
            Event::Skipped { skip, time_us } => (skip, time_us),
            other => panic!("{other:?}"),
        };
        let commit = |operation: &str, collection: &str| {
            json!({"did": "did:plc:a", "time_us": 5, "kind": "commit",
                   "commit": {"operation": operation, "collection": collection, "rkey": "3k"}})
        };
        assert_eq!(skip(commit("delete", POST_COLLECTION)), (Skip::Delete, Some(5)));
        assert_eq!(skip(commit("update", POST_COLLECTION)).0, Skip::Update);
        assert_eq!(
            skip(commit("create", "app.bsky.feed.like")).0,
            Skip::OtherCollection
        );
        assert_eq!(
            skip(json!({"did": "did:plc:a", "time_us": 6, "kind": "identity",
                        "identity": {"did": "did:plc:a", "seq": 1, "time": "2026-05-25T14:23:29.950Z"}})),
            (Skip::Identity, Some(6))
        );
        assert_eq!(
            skip(json!({"did": "did:plc:a", "time_us": 7, "kind": "account",
                        "account": {"active": false, "did": "did:plc:a", "status": "deleted", "seq": 2}})),
            (Skip::Account, Some(7))
        );
        assert_eq!(skip(json!({"time_us": 8, "kind": "sync"})).0, Skip::Unknown);
    }

    #[test]
    fn unreadable_posts_are_malformed_with_a_reason() {
        let c = converter("");
        let why = |frame: &[u8]| match c.event(frame) {
            Event::Malformed { why, .. } => why,
            other => panic!("{other:?}"),
        };
        assert!(why(b"{not json").contains("not a Jetstream event"));
        assert!(why(b"{\"kind\":\"commit\",\"did\":\"\xff\"}").contains("not UTF-8"));
        assert!(why(br#"{"time_us": 3}"#).contains("no `kind`"));
        let no_text = post_event(json!({"createdAt": "2026-05-25T14:23:28.757Z"}));
        assert!(
            why(&no_text).contains("missing field `text`"),
            "{}",
            why(&no_text)
        );
        let bad_time = post_event(json!({"createdAt": "yesterday", "text": "hi"}));
        assert!(why(&bad_time).contains("createdAt `yesterday`"));
        let surrogate = String::from_utf8(post_event(
            json!({"createdAt": "2026-05-25T14:23:28Z", "text": "X"}),
        ))
        .unwrap()
        .replace("\"X\"", "\"\\ud800\"");
        assert!(why(surrogate.as_bytes()).contains("a post that cannot be read"));
        let bad_did = String::from_utf8(post_event(
            json!({"createdAt": "2026-05-25T14:23:28Z", "text": "x"}),
        ))
        .unwrap()
        .replace("did:plc:alice", "alice");
        assert!(why(bad_did.as_bytes()).contains("not a DID"));
    }
}
