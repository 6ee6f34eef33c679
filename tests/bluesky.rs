//! `produce bluesky` against a Jetstream of our own on 127.0.0.1 (tokio-tungstenite). It speaks
//! the `/subscribe` protocol of github.com/bluesky-social/jetstream (its v1 README, and the v2
//! repository's `internal/subscribe`, which keeps it wire-compatible): one JSON event per text
//! frame, `{did, time_us, kind, commit | identity | account}`, identity and account events
//! whatever `wantedCollections` says, a replay of every event at or after `cursor`, pings. The
//! events are written here in the shape of that repository's captured production events
//! (`internal/corpus/testdata/expected_v1.jsonl`, `internal/subscribe/testdata/golden_v1.jsonl`),
//! not copied from them. Then the real binary, the pipeline and the lake.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{kafka_bootstrap, unique_suffix, wait_for, FakeClock, Project, Spawned};
use fake_jetstream::{End, FakeJetstream, Frame, Reply};
use serde_json::{json, Value};
use tweetlake::config::Config;
use tweetlake::produce::bluesky::cursor::Cursor;
use tweetlake::produce::bluesky::event::Converter;
use tweetlake::produce::bluesky::outlet::{Outlet, OutletError};
use tweetlake::produce::bluesky::producer::{BlueskyStats, JetstreamProducer, ProducerSettings, Skipped};
use tweetlake::produce::bluesky::{BlueskyError, Unmatched};
use tweetlake::produce::x::matching::RuleMatcher;

/// Every wait for the other side (server, producer, child process) fails the test after this.
const WAIT: Duration = Duration::from_secs(60);

/// `time_us` of the first event: 2026-07-04, when the fixtures' posts were made.
const T0: i64 = 1_783_175_888_000_000;

fn at(second: i64) -> i64 {
    T0 + second * 1_000_000
}

const ALICE: &str = "did:plc:tn3hni2jpphsgl6amfbb7ja6";
const BOB: &str = "did:plc:q235v55g5unth4zjjdpacfdr";
const CAROL: &str = "did:plc:j76trmiofvaxxpvx2vnb2vwf";

fn uri(did: &str, rkey: &str) -> String {
    format!("at://{did}/app.bsky.feed.post/{rkey}")
}

fn commit(
    did: &str,
    time_us: i64,
    operation: &str,
    collection: &str,
    rkey: &str,
    record: Option<Value>,
) -> Value {
    let mut commit =
        json!({"rev": "3mptbypoove2w", "operation": operation, "collection": collection, "rkey": rkey});
    if let Some(record) = record {
        commit["record"] = record;
        commit["cid"] = json!("bafyreifjsh3dec2j6d7nqh7l4ipfd6xbtpv5tf6lqk2fpsx77aa4uyypim");
    }
    json!({"did": did, "time_us": time_us, "kind": "commit", "commit": commit})
}

fn post(did: &str, rkey: &str, time_us: i64, record: Value) -> Value {
    commit(did, time_us, "create", "app.bsky.feed.post", rkey, Some(record))
}

fn record(text: &str, facets: Vec<Value>) -> Value {
    json!({"$type": "app.bsky.feed.post", "createdAt": "2026-07-04T14:38:07.323Z", "langs": ["en"],
           "text": text, "facets": facets})
}

/// A facet over the bytes of `part` in `text`.
fn facet(text: &str, part: &str, feature: Value) -> Value {
    let start = text.find(part).unwrap_or_else(|| panic!("{part} in {text}"));
    facet_bytes(start, start + part.len(), feature)
}

fn facet_bytes(start: usize, end: usize, feature: Value) -> Value {
    json!({"features": [feature], "index": {"byteEnd": end, "byteStart": start}})
}

fn tag(tag: &str) -> Value {
    json!({"$type": "app.bsky.richtext.facet#tag", "tag": tag})
}

fn mention(did: &str) -> Value {
    json!({"$type": "app.bsky.richtext.facet#mention", "did": did})
}

fn link(uri: &str) -> Value {
    json!({"$type": "app.bsky.richtext.facet#link", "uri": uri})
}

fn identity(time_us: i64) -> Value {
    json!({"did": CAROL, "time_us": time_us, "kind": "identity",
           "identity": {"did": CAROL, "seq": 30340180350_i64, "time": "2026-07-04T14:38:07.950Z"}})
}

fn account(time_us: i64) -> Value {
    json!({"did": CAROL, "time_us": time_us, "kind": "account",
           "account": {"active": false, "did": CAROL, "seq": 30340180351_i64, "status": "deactivated",
                       "time": "2026-07-04T14:38:07.950Z"}})
}

/// A post whose text has an emoji before its facets: a tag, a cashtag written as a tag facet (as
/// Bluesky's apps write them), a mention and a shortened link.
fn tagged_post(time_us: i64) -> Value {
    let text = "🚀 #WWDC $AAPL with @bob.bsky.social: www.apple.com/vision-pro…";
    let facets = vec![
        facet(text, "#WWDC", tag("WWDC")),
        facet(text, "$AAPL", tag("$AAPL")),
        facet(text, "@bob.bsky.social", mention(BOB)),
        facet(
            text,
            "www.apple.com/vision-pro…",
            link("https://www.apple.com/apple-vision-pro/"),
        ),
    ];
    post(ALICE, "3mptbypfywk2v", time_us, record(text, facets))
}

fn reply_post(time_us: i64) -> Value {
    let mut record = record("Try RSV for a good time !!", vec![]);
    let parent = json!({"cid": "bafyreiainko5un5pbcdosvxpbisjnjzemojnry6nsgtdftdgslbu37kxai",
                        "uri": uri(ALICE, "3mptbypfywk2v")});
    record["reply"] = json!({"parent": parent, "root": parent});
    post(BOB, "3mmoojp4cd223", time_us, record)
}

fn quote_post(time_us: i64) -> Value {
    let mut record = record("the Vision Pro, again", vec![]);
    record["embed"] = json!({"$type": "app.bsky.embed.record",
                             "record": {"cid": "bafyreic", "uri": uri(ALICE, "3mptbypfywk2v")}});
    post(CAROL, "3mptc2aaaaa2a", time_us, record)
}

/// Facets past the end of the text and inside the rocket's four bytes, beside a good one.
fn bad_facets_post(time_us: i64) -> Value {
    let text = "🚀 launch #space";
    let facets = vec![
        facet_bytes(1, 3, tag("split")),
        facet_bytes(12, 400, tag("outside")),
        facet(text, "#space", tag("space")),
    ];
    post(CAROL, "3mptc3bbbbb2b", time_us, record(text, facets))
}

/// A post record without its text: nothing to publish but the frame.
fn textless_post(time_us: i64) -> Value {
    post(
        CAROL,
        "3mptc4ccccc2c",
        time_us,
        json!({"$type": "app.bsky.feed.post", "createdAt": "2026-07-04T14:38:07.323Z"}),
    )
}

fn plain_post(rkey: &str, time_us: i64, text: &str) -> Value {
    post(ALICE, rkey, time_us, record(text, vec![]))
}

const NOT_JSON: &str = "{\"did\": \"did:plc:cut-off";
/// A binary frame whose bytes are not UTF-8 (a text frame like it would end the connection).
const NOT_UTF8: &[u8] = b"{\"did\":\"did:plc:\xff\xfe\",\"time_us\":1}";

fn event(value: Value) -> (i64, Frame) {
    (value["time_us"].as_i64().unwrap(), Frame::Text(value.to_string()))
}

fn companies() -> &'static str {
    "[x.companies.AAPL]\ncashtags = [\"AAPL\"]\nhashtags = [\"wwdc\"]\nkeywords = [\"vision pro\"]\n\
     [x.companies.NASA]\nhashtags = [\"space\"]\n"
}

fn converter(x: &str) -> Converter {
    let config = Config::from_toml_and_env(&format!("[x]\n{x}"), "test.toml", std::iter::empty()).unwrap();
    Converter::new(RuleMatcher::new(&config.x).unwrap())
}

fn settings() -> ProducerSettings {
    ProducerSettings {
        idle_timeout: Duration::from_secs(30),
        // Reports more often than anything else happens: they must change nothing.
        report_interval: Duration::from_millis(50),
        unmatched: Unmatched::Keep,
    }
}

/// Collects what the producer sends.
struct Collected {
    messages: Vec<(String, Vec<u8>)>,
    flushes: usize,
    count: tokio::sync::watch::Sender<usize>,
}

impl Collected {
    fn new() -> Self {
        Self {
            messages: Vec::new(),
            flushes: 0,
            count: tokio::sync::watch::Sender::new(0),
        }
    }

    fn keys(&self) -> Vec<&str> {
        self.messages.iter().map(|(k, _)| k.as_str()).collect()
    }

    fn message(&self, key: &str) -> Value {
        let (_, bytes) = self.messages.iter().find(|(k, _)| k == key).unwrap();
        serde_json::from_slice(bytes).unwrap()
    }
}

impl Outlet for Collected {
    fn send(&mut self, key: &str, message: &[u8]) -> Result<(), OutletError> {
        self.messages.push((key.to_string(), message.to_vec()));
        self.count.send_replace(self.messages.len());
        Ok(())
    }

    fn flush(&mut self) -> Result<(), OutletError> {
        self.flushes += 1;
        Ok(())
    }
}

/// Runs a producer over `fake` until `collected` holds `messages` and the server saw a pong to
/// its ping, then stops it.
async fn run_until(
    fake: &FakeJetstream,
    converter: &Converter,
    collected: &mut Collected,
    clock: &FakeClock,
    cursor: Cursor,
    messages: usize,
) -> Result<BlueskyStats, BlueskyError> {
    let mut count = collected.count.subscribe();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let subscription = url::Url::parse(&fake.url).unwrap();
    let producer = JetstreamProducer::new(subscription, converter, collected, clock, cursor, settings());
    let stopper = async {
        count.wait_for(|n| *n >= messages).await.unwrap();
        fake.wait_until("a pong to the server's ping", |s| s.pongs > 0)
            .await;
        stop.send(true).unwrap();
    };
    let (result, ()) = tokio::time::timeout(WAIT, async { tokio::join!(producer.run(stopped), stopper) })
        .await
        .unwrap_or_else(|_| {
            panic!(
                "{messages} messages and a pong within {WAIT:?}: {:?}",
                fake.requests()
            )
        });
    result
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn posts_become_x_messages_other_events_are_skipped_and_drops_resume_from_the_cursor() {
    let tagged = uri(ALICE, "3mptbypfywk2v");
    let reply = uri(BOB, "3mmoojp4cd223");
    let quote = uri(CAROL, "3mptc2aaaaa2a");
    let bad_facets = uri(CAROL, "3mptc3bbbbb2b");
    let (f, g, h) = (
        uri(ALICE, "3mptc5f"),
        uri(ALICE, "3mptc6g"),
        uri(ALICE, "3mptc7h"),
    );
    let log = vec![
        event(identity(at(0))),
        event(account(at(1))),
        event(tagged_post(at(2))),
        event(commit(
            BOB,
            at(3),
            "delete",
            "app.bsky.feed.post",
            "3mpt73z3ejc2p",
            None,
        )),
        event(commit(
            BOB,
            at(4),
            "create",
            "app.bsky.feed.like",
            "3mptl1",
            Some(json!({"subject": {"uri": tagged}})),
        )),
        event(reply_post(at(5))),
        event(quote_post(at(6))),
        (at(7), Frame::Text(NOT_JSON.into())),
        event(bad_facets_post(at(8))),
        event(textless_post(at(9))),
        (at(10), Frame::Binary(NOT_UTF8.to_vec())),
        event(commit(
            ALICE,
            at(11),
            "update",
            "app.bsky.feed.post",
            "3mptbypfywk2v",
            Some(record("edited", vec![])),
        )),
        event(plain_post("3mptc5f", at(12), "f")),
        event(plain_post("3mptc6g", at(13), "g")),
        event(plain_post("3mptc7h", at(14), "h")),
    ];
    let fake = FakeJetstream::start(
        log,
        vec![
            Reply::Status(503),
            Reply::Status(503),
            // Opened, then dropped before any event.
            Reply::Stream {
                upto: 0,
                end: End::Drop,
            },
            // The live stream from the start, dropped (no close frame) after the bad-facets post.
            Reply::Stream {
                upto: 9,
                end: End::Drop,
            },
            Reply::Status(503),
            Reply::Stream {
                upto: 12,
                end: End::Drop,
            },
            Reply::Stream {
                upto: 15,
                end: End::Hold,
            },
        ],
    );
    let converter = converter(companies());
    let clock = FakeClock::new();
    let mut collected = Collected::new();
    let cursor = Cursor::load(Path::new(""), None, Duration::from_secs(5)).unwrap();
    let stats = run_until(&fake, &converter, &mut collected, &clock, cursor, 19)
        .await
        .unwrap();

    let secs = Duration::from_secs_f64;
    assert_eq!(
        *clock.sleeps.lock().unwrap(),
        [secs(5.0), secs(10.0), secs(0.25), secs(5.0)],
        "503s back off from 5 s doubling, an empty connection 250 ms; after a connection with events, \
         the next failure starts over and a drop reconnects at once"
    );
    let cursors: Vec<Option<i64>> = fake.cursors();
    assert_eq!(
        cursors,
        [
            None,
            None,
            None,
            None,
            Some(at(8) - 5_000_000),
            Some(at(8) - 5_000_000),
            Some(at(11) - 5_000_000)
        ],
        "each reconnection resumes 5 s before the newest event received, skipped events included"
    );
    assert!(
        fake.requests()
            .iter()
            .all(|r| r.contains("wantedCollections=app.bsky.feed.post")),
        "{:?}",
        fake.requests()
    );
    assert!(
        fake.state()
            .user_agents
            .iter()
            .all(|ua| ua.starts_with("tweetlake/")),
        "{:?}",
        fake.state().user_agents
    );

    // The rewinds send some events twice: the same post gives the same id and the same bytes.
    let keys = collected.keys();
    let expected = [
        &tagged,
        &reply,
        &quote,
        "",
        &bad_facets, // the first connection
        &reply,
        &quote,
        "",
        &bad_facets,
        "",
        "", // from at(3)
        &quote,
        "",
        &bad_facets,
        "",
        "",
        &f,
        &g,
        &h, // from at(6)
    ];
    assert_eq!(
        keys,
        expected
            .map(|k| k.to_string())
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
    );
    for (key, message) in collected.messages.iter().filter(|(k, _)| !k.is_empty()) {
        let first = &collected.messages.iter().find(|(k, _)| k == key).unwrap().1;
        assert_eq!(message, first, "every copy of {key:?} is the same message");
    }
    let raw: Vec<&[u8]> = collected.messages[..11]
        .iter()
        .filter(|(k, _)| k.is_empty())
        .map(|(_, m)| m.as_slice())
        .collect();
    let textless = textless_post(at(9)).to_string();
    assert_eq!(
        raw,
        [
            NOT_JSON.as_bytes(),
            NOT_JSON.as_bytes(),
            textless.as_bytes(),
            NOT_UTF8
        ],
        "malformed frames are sent on as received, with no key"
    );

    let message = collected.message(&tagged);
    assert_eq!(message["platform"], "bluesky");
    assert_eq!(
        message["data"],
        json!({"id": tagged, "text": "🚀 #WWDC $AAPL with @bob.bsky.social: www.apple.com/vision-pro…",
               "edit_history_tweet_ids": [tagged], "author_id": ALICE,
               "created_at": "2026-07-04T14:38:07.323Z", "lang": "en", "conversation_id": tagged,
               "entities": {
                   "hashtags": [{"start": 2, "end": 7, "tag": "WWDC"}],
                   "cashtags": [{"start": 8, "end": 13, "tag": "AAPL"}],
                   "mentions": [{"start": 19, "end": 35, "username": "bob.bsky.social", "id": BOB}],
                   "urls": [{"start": 37, "end": 62, "url": "https://www.apple.com/apple-vision-pro/",
                             "expanded_url": "https://www.apple.com/apple-vision-pro/",
                             "display_url": "www.apple.com/vision-pro…"}]}}),
        "offsets count characters: the rocket is one"
    );
    assert_eq!(
        message["matching_rules"],
        json!([{"id": "local:AAPL", "tag": "company:AAPL"}])
    );
    let reply_data = &collected.message(&reply)["data"];
    assert_eq!(
        reply_data["referenced_tweets"],
        json!([{"type": "replied_to", "id": tagged}])
    );
    assert_eq!(reply_data["in_reply_to_user_id"], ALICE);
    assert_eq!(reply_data["conversation_id"], tagged.as_str());
    let quote_message = collected.message(&quote);
    assert_eq!(
        quote_message["data"]["referenced_tweets"],
        json!([{"type": "quoted", "id": tagged}])
    );
    assert_eq!(
        quote_message["matching_rules"],
        json!([{"id": "local:AAPL", "tag": "company:AAPL"}]),
        "the phrase \"vision pro\""
    );
    let bad = collected.message(&bad_facets);
    assert_eq!(
        bad["data"]["entities"]["hashtags"],
        json!([{"start": 9, "end": 15, "tag": "space"}]),
        "only the good facet is kept"
    );
    assert_eq!(
        bad["matching_rules"],
        json!([{"id": "local:NASA", "tag": "company:NASA"}])
    );
    assert_eq!(
        collected.message(&f)["matching_rules"],
        json!([]),
        "kept with no rules"
    );

    assert_eq!(
        stats,
        BlueskyStats {
            bytes: stats.bytes,
            posts: 12,
            matched: 7,
            unmatched_dropped: 0,
            malformed: 7,
            skipped: Skipped {
                identity: 1,
                account: 1,
                deletes: 2,
                updates: 2,
                other_collections: 2,
                unknown: 0
            },
            invalid_facets: 6,
            invalid_text_frames: 0,
            connections: 4,
            failed_attempts: 4,
            backoff_at_max: 0,
        }
    );
    assert_eq!(collected.flushes, 0, "no cursor file, nothing to flush for");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_resumes_from_the_cursor_file_rewound_and_loses_no_post() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bluesky.cursor");
    let rewind = Duration::from_secs(3);
    let rkeys: Vec<String> = (0..10).map(|i| format!("3mpt{i}aaaaaa2a")).collect();
    let log: Vec<(i64, Frame)> = rkeys
        .iter()
        .enumerate()
        .map(|(i, rkey)| event(plain_post(rkey, at(i as i64), &format!("post {i}"))))
        .collect();
    let fake = FakeJetstream::start(
        log,
        vec![
            Reply::Stream {
                upto: 6,
                end: End::Hold,
            },
            Reply::Stream {
                upto: 10,
                end: End::Hold,
            },
        ],
    );
    let converter = converter("");
    let clock = FakeClock::new();

    let mut first = Collected::new();
    let cursor = Cursor::load(&file, None, rewind).unwrap();
    run_until(&fake, &converter, &mut first, &clock, cursor, 6)
        .await
        .unwrap();
    assert_eq!(
        std::fs::read_to_string(&file).unwrap().trim(),
        at(5).to_string(),
        "the newest time delivered"
    );
    assert!(first.flushes >= 1, "flushed before the cursor was written");

    let mut second = Collected::new();
    let cursor = Cursor::load(&file, None, rewind).unwrap();
    run_until(&fake, &converter, &mut second, &clock, cursor, 7)
        .await
        .unwrap();
    assert_eq!(
        fake.cursors(),
        [None, Some(at(5) - 3_000_000)],
        "the restart asked for 3 s before"
    );
    let ids = |c: &Collected| -> Vec<String> { c.keys().iter().map(|k| k.to_string()).collect() };
    let all: Vec<String> = rkeys.iter().map(|rkey| uri(ALICE, rkey)).collect();
    assert_eq!(ids(&first), all[..6]);
    assert_eq!(
        ids(&second),
        all[2..],
        "posts 2-5 again (the rewind), with their ids, then the rest"
    );
    for (key, message) in &second.messages[..4] {
        let earlier = first.messages.iter().find(|(k, _)| k == key).unwrap();
        assert_eq!(&earlier.1, message, "a post sent twice is the same message");
    }
    assert_eq!(std::fs::read_to_string(&file).unwrap().trim(), at(9).to_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_subscription_ends_the_run_naming_the_url_key() {
    let fake = FakeJetstream::start(vec![], vec![Reply::Status(400)]);
    let converter = converter("");
    let clock = FakeClock::new();
    let mut collected = Collected::new();
    let (_stop, stopped) = tokio::sync::watch::channel(false);
    let cursor = Cursor::load(Path::new(""), None, Duration::from_secs(5)).unwrap();
    let subscription = url::Url::parse(&fake.url).unwrap();
    let producer = JetstreamProducer::new(
        subscription,
        &converter,
        &mut collected,
        &clock,
        cursor,
        settings(),
    );
    let error = tokio::time::timeout(WAIT, producer.run(stopped))
        .await
        .unwrap()
        .unwrap_err();
    let text = error.to_string();
    assert!(
        text.contains("HTTP 400") && text.contains("bluesky.jetstream_url"),
        "{text}"
    );
    assert_eq!(fake.requests().len(), 1, "not retried");
    assert!(clock.sleeps.lock().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unmatched_posts_are_dropped_when_asked() {
    let log = vec![
        event(plain_post("3mptd1", at(0), "nothing to see")),
        event(plain_post("3mptd2", at(1), "the new vision pro")),
    ];
    let fake = FakeJetstream::start(
        log,
        vec![Reply::Stream {
            upto: 2,
            end: End::Hold,
        }],
    );
    let converter = converter(companies());
    let clock = FakeClock::new();
    let mut collected = Collected::new();
    let cursor = Cursor::load(Path::new(""), None, Duration::from_secs(5)).unwrap();
    let mut count = collected.count.subscribe();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let subscription = url::Url::parse(&fake.url).unwrap();
    let dropping = ProducerSettings {
        unmatched: Unmatched::Drop,
        ..settings()
    };
    let producer = JetstreamProducer::new(subscription, &converter, &mut collected, &clock, cursor, dropping);
    let stopper = async {
        count.wait_for(|n| *n >= 1).await.unwrap();
        fake.wait_until("a pong", |s| s.pongs > 0).await;
        stop.send(true).unwrap();
    };
    let (stats, ()) = tokio::time::timeout(WAIT, async { tokio::join!(producer.run(stopped), stopper) })
        .await
        .unwrap();
    let stats = stats.unwrap();
    assert_eq!(collected.keys(), [uri(ALICE, "3mptd2")]);
    assert_eq!((stats.posts, stats.unmatched_dropped), (1, 1));
}

/// The config of a project whose source is `posts.jsonl`, subscribed to `fake`.
fn write_bluesky_config(project: &Project, fake: &FakeJetstream) {
    project.write_config("");
    let bluesky = format!(
        "\n[bluesky]\njetstream_url = {:?}\ncursor_file = \"bluesky.cursor\"\nreport_interval = \"1s\"\n\n[x]\n{}",
        fake.url,
        companies()
    );
    let mut toml = std::fs::read_to_string(project.path("tweetlake.toml")).unwrap();
    toml.push_str(&bluesky);
    std::fs::write(project.path("tweetlake.toml"), toml).unwrap();
}

/// The events of the end-to-end tests; the last one is the newest.
fn end_to_end_log() -> Vec<(i64, Frame)> {
    vec![
        event(identity(at(0))),
        event(tagged_post(at(1))),
        event(commit(
            BOB,
            at(2),
            "delete",
            "app.bsky.feed.post",
            "3mpt73z3ejc2p",
            None,
        )),
        event(reply_post(at(3))),
        (at(3), Frame::Text(NOT_JSON.into())),
        event(quote_post(at(4))),
        event(bad_facets_post(at(5))),
        (at(5), Frame::Binary(NOT_UTF8.to_vec())),
        event(textless_post(at(6))),
        event(account(at(7))),
    ]
}

/// Runs `produce bluesky` with `args` until the cursor file holds the newest event's time (all
/// is delivered), then stops it with Ctrl-C; returns its stderr.
fn produce_until_the_cursor_is_kept(project: &Project, args: &[&str]) -> String {
    let newest = at(7).to_string();
    let mut child = Spawned::new(project.command(args).spawn().unwrap());
    let cursor_file = project.path("bluesky.cursor");
    wait_for(
        || {
            assert!(!child.exited(), "produce bluesky exited early");
            std::fs::read_to_string(&cursor_file).is_ok_and(|t| t.trim() == newest)
        },
        "the cursor file to hold the newest event",
    );
    common::interrupt(&child);
    let output = child.wait();
    let log = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "{log}");
    log
}

#[tokio::test]
async fn produce_bluesky_to_a_file_then_run_once_fills_silver_and_the_dead_letters() {
    let fake = FakeJetstream::start(
        end_to_end_log(),
        vec![Reply::Stream {
            upto: 10,
            end: End::Hold,
        }],
    );
    let project = Project::new();
    write_bluesky_config(&project, &fake);
    let log = produce_until_the_cursor_is_kept(&project, &["produce", "bluesky", "-o", "posts.jsonl"]);
    assert!(
        log.contains("4 posts sent (3 matching a company, 0 unmatched dropped), 3 malformed frames"),
        "{log}"
    );
    assert!(
        log.contains("dropped 2 facet(s)"),
        "a clear line for the bad facets: {log}"
    );
    assert!(
        log.contains("not UTF-8"),
        "a clear line for the binary frame: {log}"
    );
    assert!(log.contains("not a Jetstream event"), "{log}");
    assert_eq!(fake.cursors(), [None]);

    // X's posts beside them: they have no platform field.
    let x_posts = std::fs::read(common::fixture("x_v2_stream_sample.jsonl")).unwrap();
    project.append_posts(&x_posts);
    let output = project.run(&["run", "--once"], &[]);
    common::assert_success(&output);

    let batches = project
        .query(
            "SELECT id, hashtags, cashtags, mentions, company, company_source, replied_to_id, quoted_id, lang \
             FROM silver.tweets WHERE platform = 'bluesky' ORDER BY id",
        )
        .await;
    let tagged = uri(ALICE, "3mptbypfywk2v");
    assert_eq!(
        json_rows(&batches),
        json!([
            {"id": uri(CAROL, "3mptc2aaaaa2a"), "hashtags": [], "cashtags": [], "mentions": [],
             "company": "AAPL", "company_source": "rule", "quoted_id": tagged, "lang": "en"},
            {"id": uri(CAROL, "3mptc3bbbbb2b"), "hashtags": ["space"], "cashtags": [], "mentions": [],
             "company": "NASA", "company_source": "rule", "lang": "en"},
            {"id": uri(BOB, "3mmoojp4cd223"), "hashtags": [], "cashtags": [], "mentions": [],
             "replied_to_id": tagged, "lang": "en"},
            {"id": tagged, "hashtags": ["wwdc"], "cashtags": ["aapl"], "mentions": ["bob.bsky.social"],
             "company": "AAPL", "company_source": "rule", "lang": "en"},
        ])
    );
    let x_rows = project
        .count("SELECT count(*) FROM silver.tweets WHERE platform = 'x' AND id NOT LIKE 'at://%'")
        .await;
    assert!(x_rows >= 10, "X's posts are platform x: {x_rows}");

    let dead = project
        .query("SELECT arrow_cast(raw, 'Binary') AS raw, error FROM dlq WHERE _topic = 'posts.jsonl' ORDER BY _offset")
        .await;
    let raws = dead_letter_bytes(&dead);
    let textless = textless_post(at(6)).to_string();
    assert_eq!(
        raws[..3],
        [
            NOT_JSON.as_bytes().to_vec(),
            NOT_UTF8.to_vec(),
            textless.into_bytes()
        ],
        "the malformed frames, byte for byte"
    );
}

/// Query results as JSON rows (NULL columns left out).
fn json_rows(batches: &[deltalake::arrow::array::RecordBatch]) -> Value {
    let mut writer = arrow_json::ArrayWriter::new(Vec::new());
    for batch in batches {
        writer.write(batch).unwrap();
    }
    writer.finish().unwrap();
    serde_json::from_slice(&writer.into_inner()).unwrap()
}

/// The `raw` bytes of dead letters.
fn dead_letter_bytes(batches: &[deltalake::arrow::array::RecordBatch]) -> Vec<Vec<u8>> {
    use deltalake::arrow::array::{Array, AsArray};
    batches
        .iter()
        .flat_map(|b| {
            let raw = b.column(0).as_binary::<i32>();
            (0..raw.len()).map(|i| raw.value(i).to_vec()).collect::<Vec<_>>()
        })
        .collect()
}

#[tokio::test]
async fn produce_bluesky_to_kafka_keys_posts_by_uri() {
    let Some(bootstrap) = kafka_bootstrap() else {
        return;
    };
    let topic = format!("bsky-{}", unique_suffix());
    common::kafka::create_topic(&bootstrap, &topic, 1).await;
    let fake = FakeJetstream::start(
        end_to_end_log(),
        vec![Reply::Stream {
            upto: 10,
            end: End::Hold,
        }],
    );
    let project = Project::new();
    write_bluesky_config(&project, &fake);
    let args = [
        "produce",
        "bluesky",
        "--kafka",
        "--bootstrap-servers",
        &bootstrap,
        "--topic",
        &topic,
    ];
    let log = produce_until_the_cursor_is_kept(&project, &args);
    assert!(log.contains("4 posts sent"), "{log}");
    let records = common::kafka::read_records(&bootstrap, &topic);
    let keys: Vec<&str> = records.iter().map(|r| r.key.as_str()).collect();
    let (tagged, reply, quote, bad) = (
        uri(ALICE, "3mptbypfywk2v"),
        uri(BOB, "3mmoojp4cd223"),
        uri(CAROL, "3mptc2aaaaa2a"),
        uri(CAROL, "3mptc3bbbbb2b"),
    );
    assert_eq!(keys, [tagged.as_str(), &reply, "", &quote, &bad, "", ""]);
    assert_eq!(records[5].payload, NOT_UTF8, "raw bytes, no key");
    let message: Value = serde_json::from_slice(&records[0].payload).unwrap();
    assert_eq!(message["platform"], "bluesky");

    assert_eq!(
        std::fs::read_to_string(project.path("bluesky.cursor"))
            .unwrap()
            .trim(),
        at(7).to_string(),
        "written after Kafka acknowledged every message"
    );
}

/// A Jetstream on 127.0.0.1: a log of frames, each with a `time_us`; every connection is served
/// from a script (an HTTP error, or the log from its cursor (or where the last connection
/// stopped: the live stream) up to an index, then an end); every request recorded.
mod fake_jetstream {
    use std::collections::VecDeque;
    use std::sync::{Arc, Mutex, MutexGuard};

    use futures::{SinkExt, StreamExt};
    use tokio::net::{TcpListener, TcpStream};
    use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
    use tokio_tungstenite::tungstenite::Message;

    use super::WAIT;

    #[derive(Debug, Clone)]
    pub enum Frame {
        Text(String),
        Binary(Vec<u8>),
    }

    /// How the server answers one connection.
    pub enum Reply {
        /// Refuse the upgrade with this HTTP status.
        Status(u16),
        /// Upgrade, send the log from the connection's start up to `upto` (exclusive), then `end`.
        Stream { upto: usize, end: End },
    }

    pub enum End {
        /// Close the TCP connection without a close frame.
        Drop,
        /// Ping, then stay open until the client leaves (the live stream with nothing new).
        Hold,
    }

    #[derive(Default)]
    pub struct State {
        log: Vec<(i64, Frame)>,
        script: VecDeque<Reply>,
        /// Where a connection without a cursor starts: the live stream.
        live: usize,
        /// Request targets (path and query), in order.
        pub requests: Vec<String>,
        pub user_agents: Vec<String>,
        /// Pongs received (answers to the pings of `End::Hold`).
        pub pongs: usize,
    }

    impl State {
        /// The reply to a request for `target`, and the frames it sends.
        fn answer(&mut self, target: &str) -> (Reply, Vec<Frame>) {
            let reply = self.script.pop_front().unwrap_or(Reply::Stream {
                upto: self.live,
                end: End::Hold,
            });
            let Reply::Stream { upto, .. } = &reply else {
                return (reply, Vec::new());
            };
            let start = match cursor_of(target) {
                Some(cursor) => self
                    .log
                    .iter()
                    .position(|(t, _)| *t >= cursor)
                    .unwrap_or(self.log.len()),
                None => self.live,
            };
            let frames = self.log[start.min(*upto)..*upto]
                .iter()
                .map(|(_, f)| f.clone())
                .collect();
            self.live = self.live.max(*upto);
            (reply, frames)
        }
    }

    pub fn cursor_of(target: &str) -> Option<i64> {
        let query = target.split_once('?').map_or("", |(_, q)| q);
        url::form_urlencoded::parse(query.as_bytes())
            .find(|(k, _)| k == "cursor")
            .map(|(_, v)| v.parse().unwrap())
    }

    struct Shared {
        state: Mutex<State>,
        changed: tokio::sync::watch::Sender<()>,
    }

    impl Shared {
        fn update(&self, change: impl FnOnce(&mut State)) {
            change(&mut self.state.lock().unwrap());
            self.changed.send_replace(());
        }
    }

    pub struct FakeJetstream {
        /// `ws://127.0.0.1:<port>/subscribe?wantedCollections=app.bsky.feed.post`.
        pub url: String,
        shared: Arc<Shared>,
    }

    impl FakeJetstream {
        /// Serves on its own thread and runtime, so a test can block while it runs.
        pub fn start(log: Vec<(i64, Frame)>, script: Vec<Reply>) -> Self {
            let shared = Arc::new(Shared {
                state: Mutex::new(State {
                    log,
                    script: script.into(),
                    ..State::default()
                }),
                changed: tokio::sync::watch::Sender::new(()),
            });
            let server = Arc::clone(&shared);
            let address = crate::common::serve_in_background(|listener| serve(listener, server));
            let url = format!("ws://{address}/subscribe?wantedCollections=app.bsky.feed.post");
            Self { url, shared }
        }

        pub fn state(&self) -> MutexGuard<'_, State> {
            self.shared.state.lock().unwrap()
        }

        pub fn requests(&self) -> Vec<String> {
            self.state().requests.clone()
        }

        /// The `cursor` of every request.
        pub fn cursors(&self) -> Vec<Option<i64>> {
            self.requests().iter().map(|t| cursor_of(t)).collect()
        }

        /// Returns once `condition` holds; fails the test after WAIT.
        pub async fn wait_until(&self, what: &str, condition: impl Fn(&State) -> bool) {
            let mut changed = self.shared.changed.subscribe();
            let wait = async {
                while !condition(&self.state()) {
                    changed.changed().await.unwrap();
                }
            };
            tokio::time::timeout(WAIT, wait)
                .await
                .unwrap_or_else(|_| panic!("no {what} within {WAIT:?}"));
        }
    }

    async fn serve(listener: TcpListener, shared: Arc<Shared>) {
        loop {
            let Ok((socket, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(connection(socket, Arc::clone(&shared)));
        }
    }

    // tungstenite's handshake callback returns its `ErrorResponse` by value: not ours to box.
    #[allow(clippy::result_large_err)]
    async fn connection(socket: TcpStream, shared: Arc<Shared>) {
        let mut plan = None;
        let accepted =
            tokio_tungstenite::accept_hdr_async(socket, |request: &Request, response: Response| {
                let target = request.uri().to_string();
                let agent = request
                    .headers()
                    .get("user-agent")
                    .map(|v| v.to_str().unwrap().to_string());
                let (reply, frames) = {
                    let mut state = shared.state.lock().unwrap();
                    state.requests.push(target.clone());
                    state.user_agents.push(agent.unwrap_or_default());
                    state.answer(&target)
                };
                shared.changed.send_replace(());
                match reply {
                    Reply::Status(status) => {
                        let body = format!("{{\"error\":\"status {status}\"}}");
                        let refusal: ErrorResponse =
                            Response::builder().status(status).body(Some(body)).unwrap();
                        Err(refusal)
                    }
                    Reply::Stream { end, .. } => {
                        plan = Some((frames, end));
                        Ok(response)
                    }
                }
            })
            .await;
        let (Ok(ws), Some((frames, end))) = (accepted, plan) else {
            return;
        };
        let (mut sender, mut receiver) = ws.split();
        let reader_shared = Arc::clone(&shared);
        let reader = tokio::spawn(async move {
            while let Some(Ok(message)) = receiver.next().await {
                if let Message::Pong(_) = message {
                    reader_shared.update(|s| s.pongs += 1);
                }
            }
        });
        for frame in frames {
            let message = match frame {
                Frame::Text(text) => Message::text(text),
                Frame::Binary(bytes) => Message::binary(bytes),
            };
            if sender.send(message).await.is_err() {
                return;
            }
        }
        match end {
            End::Drop => {
                reader.abort();
                let _ = reader.await;
            }
            End::Hold => {
                if sender.send(Message::Ping("are you there".into())).await.is_ok() {
                    let _ = tokio::time::timeout(WAIT, reader).await;
                }
            }
        }
    }
}
