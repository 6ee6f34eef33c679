//! `produce x` and `produce rules` against a fake X API of our own that speaks the real protocol
//! (chunked ndjson, `\r\n` keep-alives, drops, disconnect messages, 429 with rate-limit headers,
//! 401), with the real broker from `scripts/services.sh` for what arrives in Kafka.

mod common;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::kafka::{create_topic, read_records};
use common::{kafka_bootstrap, unique_suffix, wait_bounded, FakeClock, Project, START_SECS};
use fake_x::{End, FakeX, Reply};
use serde_json::json;
use tweetlake::config::Config;
use tweetlake::kafka::PublishError;
use tweetlake::produce::x::publish::{Publish, StreamProducer, StreamSettings, StreamStats};
use tweetlake::produce::x::XConfig;
use tweetlake::produce::x::{rules, XApi, XError};

const TOKEN: &str = "AAAAtest%2Ftoken";
/// Every wait for the other side (server, producer, child process) fails the test after this.
const WAIT: Duration = Duration::from_secs(60);

/// Real-shaped posts: the fixture's stream messages.
fn posts() -> Vec<Vec<u8>> {
    let text = std::fs::read(common::fixture("x_v2_stream_sample.jsonl")).unwrap();
    text.split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(<[u8]>::to_vec)
        .collect()
}

fn id_of(post: &[u8]) -> String {
    tweetlake::produce::post_id(post).unwrap()
}

/// A message as X frames it: the JSON and `\r\n`.
fn line(message: &[u8]) -> Vec<u8> {
    [message, b"\r\n"].concat()
}

const KEEP_ALIVE: &[u8] = b"\r\n";
const DISCONNECT: &[u8] = br#"{"errors":[{"title":"operational-disconnect","disconnect_type":"UpstreamOperationalDisconnect","detail":"This stream has been disconnected upstream for operational reasons.","type":"https://api.x.com/2/problems/operational-disconnect"}]}"#;
const NOT_FOUND: &[u8] = br#"{"errors":[{"parameter":"author_id","resource_id":"42","value":"42","resource_type":"user","title":"Not Found Error","detail":"Could not find user with author_id: [42].","type":"https://api.x.com/2/problems/resource-not-found"}]}"#;
const MALFORMED: &[u8] = b"not json at all";

fn x_config(fake: &FakeX, extra: &str) -> XConfig {
    let toml = format!(
        "[x]\napi_base = {:?}\nbearer_token = {TOKEN:?}\nidle_timeout = \"500ms\"\n{extra}",
        fake.base
    );
    Config::from_toml_and_env(&toml, "test.toml", std::iter::empty())
        .unwrap()
        .x
}

/// Collects what the producer publishes.
struct Collected {
    messages: Mutex<Vec<(String, Vec<u8>)>>,
    count: tokio::sync::watch::Sender<usize>,
}

impl Publish for Collected {
    fn publish(&self, key: &[u8], payload: &[u8]) -> Result<(), PublishError> {
        let mut messages = self.messages.lock().unwrap();
        messages.push((String::from_utf8(key.to_vec()).unwrap(), payload.to_vec()));
        self.count.send_replace(messages.len());
        Ok(())
    }

    fn check_deliveries(&self) -> Result<(), PublishError> {
        Ok(())
    }

    fn delivered(&self) -> u64 {
        self.messages.lock().unwrap().len() as u64
    }
}

#[tokio::test]
async fn the_producer_follows_x_reconnect_policy_and_publishes_only_posts() {
    let posts = posts();
    let reset_header = (START_SECS + 5 + 10 + 200).to_string(); // 200 s after the 429 arrives
    let unavailable =
        r#"{"title":"Service Unavailable","detail":"Service Unavailable","type":"about:blank","status":503}"#;
    let too_many = r#"{"title":"ConnectionException","detail":"This stream is currently at the maximum allowed connection limit.","connection_issue":"TooManyConnections","type":"https://api.x.com/2/problems/streaming-connection"}"#;
    let (half, rest) = posts[1].split_at(40);
    let script = vec![
        Reply::status(503, &[], unavailable),
        Reply::status(503, &[], unavailable),
        Reply::status(
            429,
            &[
                ("x-rate-limit-limit", "50"),
                ("x-rate-limit-remaining", "0"),
                ("x-rate-limit-reset", &reset_header),
            ],
            too_many,
        ),
        Reply::status(429, &[], too_many),
        Reply::Refuse,
        // Established: a message split across chunks, an error message among the posts.
        Reply::Stream(
            vec![
                [KEEP_ALIVE, &line(&posts[0]), half].concat(),
                [rest, b"\r\n", &line(NOT_FOUND), &line(&posts[2])].concat(),
            ],
            End::Clean,
        ),
        // Turned away in-stream before any data.
        Reply::Stream(vec![line(DISCONNECT)], End::Clean),
        // Dropped before any data.
        Reply::Stream(vec![], End::Cut),
        // A keep-alive, then silence: the idle timeout.
        Reply::Stream(vec![KEEP_ALIVE.to_vec()], End::Silent),
        // Cut inside a message.
        Reply::Stream(vec![line(&posts[3]), posts[4][..30].to_vec()], End::Cut),
        Reply::Stream(
            vec![
                line(&posts[4]),
                line(MALFORMED),
                line(br#"{"meta":{"new":"type"}}"#),
            ],
            End::Hold,
        ),
    ];
    let fake = FakeX::start(script);
    let api = XApi::new(&x_config(&fake, "")).unwrap();
    let clock = FakeClock::new();
    let collected = Collected {
        messages: Mutex::default(),
        count: tokio::sync::watch::Sender::new(0),
    };
    let settings = StreamSettings {
        idle_timeout: Duration::from_millis(500),
        // Reports more often than the idle timeout must not keep a silent connection alive.
        report_interval: Duration::from_millis(100),
        backfill_minutes: 0,
    };
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let producer = StreamProducer::new(&api, &collected, &clock, settings);
    let all_published = async {
        let mut count = collected.count.subscribe();
        count.wait_for(|n| *n >= 6).await.unwrap();
        stop.send(true).unwrap();
    };
    let (stats, ()) =
        tokio::time::timeout(WAIT, async { tokio::join!(producer.run(stopped), all_published) })
            .await
            .expect("all posts within the wait");
    let stats = stats.unwrap();

    let secs = |s: f64| Duration::from_secs_f64(s);
    assert_eq!(
        *clock.sleeps.lock().unwrap(),
        [
            secs(5.0),
            secs(10.0),
            secs(200.0),
            secs(120.0),
            secs(0.25),
            secs(5.0),
            secs(0.25)
        ],
        "503 twice, 429 until its later reset, 429 doubled, a refused connection; after data: reconnect at \
         once, then a disconnect-only and an empty connection start their kinds over"
    );
    let published = collected.messages.lock().unwrap().clone();
    let mut expected: Vec<(String, Vec<u8>)> = posts[..5].iter().map(|p| (id_of(p), p.clone())).collect();
    expected.push((String::new(), MALFORMED.to_vec()));
    assert_eq!(
        published, expected,
        "posts as received, keyed by id; no errors or keep-alives"
    );
    assert_eq!(
        StreamStats {
            keep_alives: 0,
            bytes: 0,
            ..stats.clone()
        },
        StreamStats {
            posts: 5,
            malformed: 1,
            errors: 1,
            disconnect_messages: 1,
            connections: 6,
            failed_attempts: 7,
            partial_messages: 1,
            ..Default::default()
        }
    );
    assert!(stats.keep_alives >= 2, "{stats:?}");

    let requests = fake.requests();
    let streams: Vec<_> = requests.iter().filter(|r| r.path() == fake_x::STREAM).collect();
    assert_eq!(streams.len(), 11);
    for request in streams {
        assert_eq!(request.authorization, format!("Bearer {TOKEN}"));
        assert!(
            request.user_agent.starts_with("tweetlake/"),
            "{}",
            request.user_agent
        );
        let query = request.query();
        let list = |name: &str| -> Vec<String> {
            let value = query.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
            value.unwrap_or_default().split(',').map(String::from).collect()
        };
        for field in [
            "created_at",
            "author_id",
            "lang",
            "entities",
            "public_metrics",
            "referenced_tweets",
            "geo",
            "note_tweet",
            "conversation_id",
            "in_reply_to_user_id",
            "context_annotations",
        ] {
            assert!(
                list("tweet.fields").iter().any(|f| f == field),
                "tweet.fields lacks {field}"
            );
        }
        for expansion in [
            "author_id",
            "geo.place_id",
            "referenced_tweets.id",
            "attachments.media_keys",
        ] {
            assert!(
                list("expansions").iter().any(|f| f == expansion),
                "expansions lack {expansion}"
            );
        }
        assert!(list("user.fields").contains(&"location".to_string()));
        assert!(list("place.fields").contains(&"country_code".to_string()));
        assert!(
            !query.iter().any(|(k, _)| k == "backfill_minutes"),
            "no backfill unless asked"
        );
    }
}

#[tokio::test]
async fn backfill_minutes_goes_with_every_connection_and_a_refusal_names_the_key() {
    let posts = posts();
    let forbidden = r#"{"title":"Forbidden","detail":"Your access level does not include backfill_minutes","type":"about:blank","status":403}"#;
    let fake = FakeX::start(vec![
        Reply::Stream(vec![line(&posts[0])], End::Clean),
        // The backfill of the reconnection sends post 0 again.
        Reply::Stream(vec![line(&posts[0]), line(&posts[1])], End::Clean),
        Reply::status(403, &[], forbidden),
    ]);
    let config = x_config(&fake, "backfill_minutes = 3\n");
    let api = XApi::new(&config).unwrap();
    let clock = FakeClock::new();
    let collected = Collected {
        messages: Mutex::default(),
        count: tokio::sync::watch::Sender::new(0),
    };
    let settings = StreamSettings {
        idle_timeout: Duration::from_millis(500),
        report_interval: Duration::from_secs(30),
        backfill_minutes: config.backfill_minutes,
    };
    let (_stop, stopped) = tokio::sync::watch::channel(false);
    let producer = StreamProducer::new(&api, &collected, &clock, settings);
    let error = tokio::time::timeout(WAIT, producer.run(stopped))
        .await
        .expect("the refusal ends the run")
        .unwrap_err();
    assert!(
        matches!(error, XError::BackfillRefused { minutes: 3, .. }),
        "{error:?}"
    );
    let text = error.to_string();
    assert!(
        text.contains("HTTP 403") && text.contains("x.backfill_minutes = 3"),
        "{text}"
    );
    let ids: Vec<String> = collected
        .messages
        .lock()
        .unwrap()
        .iter()
        .map(|(k, _)| k.clone())
        .collect();
    assert_eq!(
        ids,
        [id_of(&posts[0]), id_of(&posts[0]), id_of(&posts[1])],
        "a backfilled post is published again: silver drops the copy"
    );
    let streams: Vec<_> = fake
        .requests()
        .into_iter()
        .filter(|r| r.path() == fake_x::STREAM)
        .collect();
    assert_eq!(streams.len(), 3, "a 4xx is not retried");
    for request in streams {
        assert!(
            request.query().contains(&("backfill_minutes".into(), "3".into())),
            "{}",
            request.target
        );
    }
}

fn companies() -> &'static str {
    "[x.companies.AAPL]\ncashtags = [\"AAPL\"]\n\
     [x.companies.MSFT]\ncashtags = [\"MSFT\"]\n\
     [x.companies.TSLA]\ncashtags = [\"TSLA\"]\nhashtags = [\"tesla\"]\n"
}

#[tokio::test]
async fn a_sync_validates_first_then_deletes_stale_rules_and_adds_missing_ones() {
    let fake = FakeX::start(vec![]);
    // Kept; the same value under an old tag; someone else's rule.
    let ids = fake.set_rules(&[
        ("$AAPL", "company:AAPL"),
        ("$TSLA OR #tesla", "company:TESLA"),
        ("cats has:media", "cats"),
    ]);
    let api = XApi::new(&x_config(&fake, companies())).unwrap();
    let desired = rules::company_rules(&x_config(&fake, companies())).unwrap();

    let plan = rules::sync(&api, &desired, rules::SyncMode::Apply).await.unwrap();
    assert_eq!((plan.keep.len(), plan.add.len(), plan.delete.len()), (1, 2, 2));
    let path = fake_x::RULES;
    let delete = json!({"delete": {"ids": [ids[1], ids[2]]}});
    let msft = json!({"value": "$MSFT", "tag": "company:MSFT"});
    let tsla = json!({"value": "$TSLA OR #tesla", "tag": "company:TSLA"});
    assert_eq!(
        fake.request_summary(),
        [
            ("GET".into(), format!("{path}?max_results=1000"), json!(null)),
            (
                "GET".into(),
                format!("{path}?max_results=1000&pagination_token=2"),
                json!(null)
            ),
            // The whole change is validated first; the retagged rule's value was valid already
            // and would be a duplicate until its old rule is gone.
            ("POST".into(), format!("{path}?dry_run=true"), delete.clone()),
            (
                "POST".into(),
                format!("{path}?dry_run=true"),
                json!({"add": [msft]})
            ),
            ("POST".into(), path.into(), delete),
            ("POST".into(), path.into(), json!({"add": [msft, tsla]})),
        ]
    );
    let mut now: Vec<(String, String)> = fake.rules().into_iter().map(|(_, v, t)| (t, v)).collect();
    now.sort();
    let mut wanted: Vec<(String, String)> =
        desired.iter().map(|r| (r.tag.clone(), r.value.clone())).collect();
    wanted.sort();
    assert_eq!(now, wanted);

    let before = fake.requests().len();
    let again = rules::sync(&api, &desired, rules::SyncMode::Apply).await.unwrap();
    assert!(again.is_empty(), "{again:?}");
    assert!(
        fake.requests()[before..].iter().all(|r| r.method == "GET"),
        "a second sync only lists"
    );
}

#[tokio::test]
async fn a_rule_x_rejects_changes_nothing_and_the_error_says_why() {
    let fake = FakeX::start(vec![]);
    fake.set_rules(&[("cats has:media", "cats")]);
    fake.state().invalid.push("#bad".into());
    let config = x_config(
        &fake,
        "[x.companies.A]\ncashtags = [\"A\"]\n[x.companies.B]\nhashtags = [\"bad\"]\n",
    );
    let api = XApi::new(&config).unwrap();
    let error = rules::sync(
        &api,
        &rules::company_rules(&config).unwrap(),
        rules::SyncMode::Apply,
    )
    .await
    .unwrap_err();
    assert!(matches!(error, XError::RulesRejected { .. }), "{error:?}");
    let text = error.to_string();
    assert!(
        text.contains("Invalid Rule") && text.contains("#bad") && text.contains("non-negation"),
        "{text}"
    );
    assert!(
        fake.requests()
            .iter()
            .all(|r| r.method == "GET" || r.target.contains("dry_run=true")),
        "only validation requests"
    );
    assert_eq!(fake.rules().len(), 1, "the rules are as they were");
}

fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[tokio::test]
async fn produce_x_publishes_every_post_once_per_delivery_to_kafka() {
    let Some(bootstrap) = kafka_bootstrap() else {
        return;
    };
    let topic = format!("x-stream-{}", unique_suffix());
    create_topic(&bootstrap, &topic, 1).await;
    let posts = posts();
    let (head, tail) = posts[2].split_at(25);
    let fake = FakeX::start(vec![
        Reply::Stream(
            vec![
                KEEP_ALIVE.to_vec(),
                [line(&posts[0]), line(&posts[1])].concat(),
                head.to_vec(),
                [tail, b"\r\n", KEEP_ALIVE].concat(),
            ],
            End::Clean,
        ),
        // X delivers a post again (as after a backfill): it is published again.
        Reply::Stream(
            vec![
                line(&posts[3]),
                line(NOT_FOUND),
                line(&posts[0]),
                line(DISCONNECT),
            ],
            End::Clean,
        ),
        Reply::Stream(vec![line(&posts[4]), posts[5][..50].to_vec()], End::Cut),
        Reply::Stream(vec![line(&posts[5]), line(MALFORMED)], End::Clean),
    ]);
    let project = Project::new();
    let toml = format!(
        "[source]\nbootstrap_servers = {bootstrap:?}\ntopic = \"not-this-one\"\n\n\
         [x]\napi_base = {:?}\nidle_timeout = \"10s\"\nreport_interval = \"1s\"\n{}",
        fake.base,
        companies()
    );
    std::fs::write(project.path("tweetlake.toml"), toml).unwrap();
    let mut command = project.command(&["produce", "x", "--topic", &topic]);
    command
        .env("TWEETLAKE_X__BEARER_TOKEN", TOKEN)
        .env_remove("X_BEARER_TOKEN");
    // Killed when the test fails before it stops the producer.
    let mut child = common::Spawned::new(command.spawn().unwrap());

    // A connection after the script means every earlier one was read to its end.
    let deadline = Instant::now() + WAIT;
    while fake.state().after_script == 0 {
        if child.exited() {
            panic!("produce x exited early: {}", stderr(&child.wait()));
        }
        assert!(
            Instant::now() < deadline,
            "produce x did not reconnect after the script"
        );
        fake.changed_within(Duration::from_millis(200)).await;
    }
    // SAFETY: kill(2) with a pid this test spawned and still owns.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
    let output = child.wait();
    let log = stderr(&output);
    assert!(output.status.success(), "{log}");
    assert!(
        log.contains("7 posts and 1 malformed lines received, 8 delivered to"),
        "{log}"
    );

    let mut expected: Vec<(String, Vec<u8>)> = [0, 1, 2, 3, 0, 4, 5]
        .iter()
        .map(|&i| (id_of(&posts[i]), posts[i].clone()))
        .collect();
    expected.push((String::new(), MALFORMED.to_vec()));
    let records: Vec<(String, Vec<u8>)> = read_records(&bootstrap, &topic)
        .into_iter()
        .map(|r| (r.key, r.payload))
        .collect();
    assert_eq!(records, expected, "{log}");

    let requests = fake.request_summary();
    let first_stream = requests
        .iter()
        .position(|(_, t, _)| t.split('?').next() == Some(fake_x::STREAM))
        .unwrap();
    let rule_requests: Vec<String> = requests[..first_stream]
        .iter()
        .map(|(method, target, _)| format!("{method} {target}"))
        .collect();
    let rules = fake_x::RULES;
    assert_eq!(
        rule_requests,
        [
            format!("GET {rules}?max_results=1000"),
            format!("POST {rules}?dry_run=true"),
            format!("POST {rules}"),
        ],
        "rules are synced before streaming"
    );
    assert_eq!(fake.rules().len(), 3);
}

#[tokio::test]
async fn a_refused_or_missing_token_is_one_fatal_line_naming_the_credential() {
    let fake = FakeX::start(vec![]);
    let project = Project::new();
    let toml = format!(
        "[source]\nbootstrap_servers = \"127.0.0.1:1\"\n\n[x]\napi_base = {:?}\n",
        fake.base
    );
    std::fs::write(project.path("tweetlake.toml"), toml).unwrap();
    let run = |args: &[&str], token: Option<&str>| {
        let mut command = project.command(args);
        command
            .env_remove("X_BEARER_TOKEN")
            .env_remove("TWEETLAKE_X__BEARER_TOKEN");
        if let Some(token) = token {
            command.env("X_BEARER_TOKEN", token);
        }
        let output = wait_bounded(command.spawn().unwrap());
        assert!(!output.status.success());
        let log = stderr(&output);
        let errors: Vec<&str> = log.lines().filter(|l| l.starts_with("error:")).collect();
        assert_eq!(errors.len(), 1, "{log}");
        assert_eq!(
            log.lines().last(),
            Some(errors[0]),
            "the error is the last line: {log}"
        );
        for credential in ["x.bearer_token", "TWEETLAKE_X__BEARER_TOKEN", "X_BEARER_TOKEN"] {
            assert!(errors[0].contains(credential), "{log}");
        }
        errors[0].to_string()
    };

    let refused = run(&["produce", "x"], Some("wrong"));
    assert!(
        refused.contains("HTTP 401") && refused.contains("refused"),
        "{refused}"
    );
    let streams = |fake: &FakeX| {
        fake.requests()
            .iter()
            .filter(|r| r.path() == fake_x::STREAM)
            .count()
    };
    assert_eq!(streams(&fake), 1, "a refused token is not retried");

    let listing = run(&["produce", "rules", "--list"], Some("wrong"));
    assert!(
        listing.contains("HTTP 401") && listing.contains("list the stream rules"),
        "{listing}"
    );

    let before = fake.requests().len();
    let missing = run(&["produce", "x"], None);
    assert!(missing.contains("no X bearer token"), "{missing}");
    assert_eq!(fake.requests().len(), before, "nothing is sent without a token");
}

#[tokio::test]
async fn produce_rules_lists_dry_runs_and_syncs() {
    let fake = FakeX::start(vec![]);
    let ids = fake.set_rules(&[("cats has:media", "cats")]);
    let project = Project::new();
    let toml = format!("[x]\napi_base = {:?}\n{}", fake.base, companies());
    std::fs::write(project.path("tweetlake.toml"), toml).unwrap();
    let run = |action: &str| {
        let output = project.run(
            &["produce", "rules", action],
            &[("TWEETLAKE_X__BEARER_TOKEN", TOKEN)],
        );
        assert!(output.status.success(), "{}", stderr(&output));
        (String::from_utf8(output.stdout.clone()).unwrap(), stderr(&output))
    };

    let (plan, log) = run("--dry-run");
    assert_eq!(
        plan,
        format!(
            "- {}\tcats\tcats has:media\n+ \tcompany:AAPL\t$AAPL\n+ \tcompany:MSFT\t$MSFT\n\
             + \tcompany:TSLA\t$TSLA OR #tesla\n",
            ids[0]
        )
    );
    assert!(log.contains("0 to keep, 3 to add, 1 to delete (dry run"), "{log}");
    assert_eq!(fake.rules().len(), 1, "a dry run changes nothing");

    let (_, log) = run("--sync");
    assert!(log.contains("0 kept, 3 added, 1 deleted"), "{log}");
    let (list, log) = run("--list");
    let tags: Vec<&str> = list.lines().map(|l| l.split('\t').nth(1).unwrap()).collect();
    assert_eq!(tags, ["company:AAPL", "company:MSFT", "company:TSLA"]);
    assert!(log.contains("3 rules"), "{log}");

    let output = project.run(&["produce", "rules"], &[]);
    assert!(
        !output.status.success(),
        "one of --list, --dry-run, --sync is required"
    );
}

/// A fake X API on 127.0.0.1: the filtered stream from a script, the rules endpoints over an
/// in-memory rule set, a bearer token check; every request recorded.
mod fake_x {
    use std::collections::VecDeque;
    use std::sync::{Arc, Mutex, MutexGuard};
    use std::time::Duration;

    use serde_json::{json, Value};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    use super::{TOKEN, WAIT};

    pub const STREAM: &str = "/2/tweets/search/stream";
    pub const RULES: &str = "/2/tweets/search/stream/rules";
    /// Rules per page of `GET .../rules`, small so listing pages.
    const PAGE: usize = 2;
    const SENT: &str = "2026-11-20T14:00:00.000Z";

    /// How the server answers one stream connection.
    pub enum Reply {
        /// 200, these chunks (one HTTP chunk each), then `End`.
        Stream(Vec<Vec<u8>>, End),
        /// An error status with extra headers and a JSON body.
        Status(u16, Vec<(String, String)>, String),
        /// Read the request, then close without a response.
        Refuse,
    }

    impl Reply {
        pub fn status(status: u16, headers: &[(&str, &str)], body: &str) -> Self {
            let headers = headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            Reply::Status(status, headers, body.to_string())
        }
    }

    pub enum End {
        /// The zero-length chunk: the body ends cleanly.
        Clean,
        /// Close the socket where it is: a mid-stream disconnect.
        Cut,
        /// Stay open and silent until the client leaves.
        Silent,
        /// A keep-alive every 100 ms until the client leaves: a stream between posts.
        Hold,
    }

    #[derive(Debug, Clone)]
    pub struct Request {
        pub method: String,
        pub target: String,
        pub authorization: String,
        pub user_agent: String,
        pub body: String,
    }

    impl Request {
        pub fn path(&self) -> &str {
            self.target.split('?').next().unwrap()
        }

        pub fn query(&self) -> Vec<(String, String)> {
            let query = self.target.split_once('?').map_or("", |(_, q)| q);
            url::form_urlencoded::parse(query.as_bytes())
                .into_owned()
                .collect()
        }

        fn json(&self) -> Value {
            if self.body.is_empty() {
                return Value::Null;
            }
            serde_json::from_str(&self.body).unwrap()
        }
    }

    #[derive(Default)]
    pub struct State {
        requests: Vec<Request>,
        script: VecDeque<Reply>,
        /// id, value, tag
        rules: Vec<(String, String, String)>,
        next_rule_id: u64,
        /// Rule values the server calls invalid.
        pub invalid: Vec<String>,
        /// Stream connections answered after the script ran out (with `End::Hold`).
        pub after_script: usize,
    }

    struct Shared {
        state: Mutex<State>,
        changed: tokio::sync::watch::Sender<()>,
    }

    pub struct FakeX {
        /// `http://127.0.0.1:<port>`, for `x.api_base`.
        pub base: String,
        shared: Arc<Shared>,
    }

    impl FakeX {
        /// Serves on its own thread and runtime, so a test can block while it runs.
        pub fn start(script: Vec<Reply>) -> Self {
            let shared = Arc::new(Shared {
                state: Mutex::new(State {
                    script: script.into(),
                    ..Default::default()
                }),
                changed: tokio::sync::watch::Sender::new(()),
            });
            let server = Arc::clone(&shared);
            let address = crate::common::serve_in_background(|listener| serve(listener, server));
            let base = format!("http://{address}");
            Self { base, shared }
        }

        pub fn state(&self) -> MutexGuard<'_, State> {
            self.shared.state.lock().unwrap()
        }

        pub fn requests(&self) -> Vec<Request> {
            self.state().requests.clone()
        }

        /// Method, target (query decoded) and JSON body of every request.
        pub fn request_summary(&self) -> Vec<(String, String, Value)> {
            self.requests()
                .iter()
                .map(|r| {
                    let query: Vec<String> = r.query().iter().map(|(k, v)| format!("{k}={v}")).collect();
                    let target = match query.is_empty() {
                        true => r.path().to_string(),
                        false => format!("{}?{}", r.path(), query.join("&")),
                    };
                    (r.method.clone(), target, r.json())
                })
                .collect()
        }

        /// Replaces the rules; returns their ids.
        pub fn set_rules(&self, rules: &[(&str, &str)]) -> Vec<String> {
            let mut state = self.state();
            state.rules.clear();
            rules
                .iter()
                .map(|(value, tag)| state.add_rule(value, tag, true))
                .collect()
        }

        pub fn rules(&self) -> Vec<(String, String, String)> {
            self.state().rules.clone()
        }

        /// Returns after the next request, or after `timeout`.
        pub async fn changed_within(&self, timeout: Duration) {
            let mut changed = self.shared.changed.subscribe();
            let _ = tokio::time::timeout(timeout, changed.changed()).await;
        }
    }

    impl State {
        fn route(&mut self, request: &Request) -> Reply {
            if request.authorization != format!("Bearer {TOKEN}") {
                let body =
                    r#"{"title":"Unauthorized","type":"about:blank","status":401,"detail":"Unauthorized"}"#;
                return Reply::status(401, &[], body);
            }
            match (request.method.as_str(), request.path()) {
                ("GET", STREAM) => self.script.pop_front().unwrap_or_else(|| {
                    self.after_script += 1;
                    Reply::Stream(vec![], End::Hold)
                }),
                ("GET", RULES) => self.list_rules(request),
                ("POST", RULES) => self.change_rules(request),
                _ => Reply::status(404, &[], r#"{"title":"Not Found Error"}"#),
            }
        }

        fn add_rule(&mut self, value: &str, tag: &str, apply: bool) -> String {
            self.next_rule_id += 1;
            let id = (1_800_000_000_000_000_100 + self.next_rule_id).to_string();
            if apply {
                self.rules.push((id.clone(), value.into(), tag.into()));
            }
            id
        }

        fn list_rules(&self, request: &Request) -> Reply {
            let token = request.query().into_iter().find(|(k, _)| k == "pagination_token");
            let start: usize = token.map_or(0, |(_, v)| v.parse().unwrap());
            let page = &self.rules[start.min(self.rules.len())..(start + PAGE).min(self.rules.len())];
            let data: Vec<Value> = page
                .iter()
                .map(|(id, value, tag)| json!({"id": id, "value": value, "tag": tag}))
                .collect();
            let mut body = json!({"meta": {"sent": SENT, "result_count": data.len()}});
            if start + PAGE < self.rules.len() {
                body["meta"]["next_token"] = json!((start + PAGE).to_string());
            }
            if !data.is_empty() {
                body["data"] = json!(data); // X leaves `data` out when there are no rules
            }
            ok(body)
        }

        fn change_rules(&mut self, request: &Request) -> Reply {
            let apply = !request.query().contains(&("dry_run".into(), "true".into()));
            let body = request.json();
            let Some(add) = body["add"].as_array() else {
                let ids: Vec<&str> = body["delete"]["ids"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_str().unwrap())
                    .collect();
                if apply {
                    self.rules.retain(|(id, _, _)| !ids.contains(&id.as_str()));
                }
                return ok(
                    json!({"meta": {"sent": SENT, "summary": {"deleted": ids.len(), "not_deleted": 0}}}),
                );
            };
            let errors: Vec<Value> = add
                .iter()
                .filter_map(|rule| self.rule_error(rule["value"].as_str().unwrap()))
                .collect();
            if !errors.is_empty() {
                let summary = json!({"created": 0, "not_created": add.len(), "valid": add.len() - errors.len(), "invalid": errors.len()});
                return ok(json!({"meta": {"sent": SENT, "summary": summary}, "errors": errors}));
            }
            let data: Vec<Value> = add
                .iter()
                .map(|rule| {
                    let (value, tag) = (rule["value"].as_str().unwrap(), rule["tag"].as_str().unwrap());
                    json!({"id": self.add_rule(value, tag, apply), "value": value, "tag": tag})
                })
                .collect();
            let created = if apply { data.len() } else { 0 };
            let summary = json!({"created": created, "not_created": 0, "valid": data.len(), "invalid": 0});
            ok(json!({"data": data, "meta": {"sent": SENT, "summary": summary}}))
        }

        /// X's answer to an invalid or duplicate rule.
        fn rule_error(&self, value: &str) -> Option<Value> {
            if self.invalid.iter().any(|v| v == value) {
                return Some(
                    json!({"value": value, "details": ["Rules must contain a non-negation term (at position 1)"], "title": "Invalid Rule", "type": "https://api.twitter.com/2/problems/invalid-rules"}),
                );
            }
            let (id, _, _) = self.rules.iter().find(|(_, v, _)| v == value)?;
            Some(
                json!({"value": value, "id": id, "title": "DuplicateRule", "type": "https://api.twitter.com/2/problems/duplicate-rules"}),
            )
        }
    }

    fn ok(body: Value) -> Reply {
        Reply::status(200, &[], &body.to_string())
    }

    async fn serve(listener: TcpListener, shared: Arc<Shared>) {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                continue;
            };
            let shared = Arc::clone(&shared);
            tokio::spawn(async move {
                let Some(request) = read_request(&mut socket).await else {
                    return;
                };
                let reply = {
                    let mut state = shared.state.lock().unwrap();
                    state.requests.push(request.clone());
                    state.route(&request)
                };
                shared.changed.send_replace(());
                respond(socket, reply).await;
            });
        }
    }

    async fn read_request(socket: &mut TcpStream) -> Option<Request> {
        let mut bytes = Vec::new();
        let mut buffer = [0u8; 4096];
        let head_end = loop {
            if let Some(at) = bytes.windows(4).position(|w| w == b"\r\n\r\n") {
                break at;
            }
            let n = socket.read(&mut buffer).await.ok().filter(|&n| n > 0)?;
            bytes.extend_from_slice(&buffer[..n]);
        };
        let head = String::from_utf8(bytes[..head_end].to_vec()).ok()?;
        let mut lines = head.split("\r\n");
        let mut request_line = lines.next()?.split(' ');
        let (method, target) = (request_line.next()?.to_string(), request_line.next()?.to_string());
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let header = |name: &str| {
            let value = headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
            value.unwrap_or_default()
        };
        let length: usize = header("content-length").parse().unwrap_or(0);
        let mut body = bytes[head_end + 4..].to_vec();
        while body.len() < length {
            let n = socket.read(&mut buffer).await.ok().filter(|&n| n > 0)?;
            body.extend_from_slice(&buffer[..n]);
        }
        Some(Request {
            method,
            target,
            authorization: header("authorization"),
            user_agent: header("user-agent"),
            body: String::from_utf8(body).ok()?,
        })
    }

    async fn respond(mut socket: TcpStream, reply: Reply) {
        match reply {
            Reply::Refuse => {}
            Reply::Status(status, headers, body) => {
                let extra: String = headers.iter().map(|(k, v)| format!("{k}: {v}\r\n")).collect();
                let reason = match status {
                    200 => "OK",
                    401 => "Unauthorized",
                    404 => "Not Found",
                    429 => "Too Many Requests",
                    _ => "Service Unavailable",
                };
                let response = format!(
                    "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json; charset=utf-8\r\n\
                     content-length: {}\r\nconnection: close\r\n{extra}\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(response.as_bytes()).await;
                let _ = socket.shutdown().await;
            }
            Reply::Stream(chunks, end) => {
                let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json; charset=utf-8\r\n\
                            transfer-encoding: chunked\r\nconnection: close\r\nx-rate-limit-limit: 50\r\n\
                            x-rate-limit-remaining: 49\r\n\r\n";
                if socket.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                for chunk in chunks {
                    if write_chunk(&mut socket, &chunk).await.is_err() {
                        return;
                    }
                }
                match end {
                    End::Clean => {
                        let _ = socket.write_all(b"0\r\n\r\n").await;
                        let _ = socket.shutdown().await;
                    }
                    End::Cut => {}
                    End::Silent => {
                        let mut byte = [0u8; 1];
                        let _ = tokio::time::timeout(WAIT, socket.read(&mut byte)).await;
                    }
                    End::Hold => {
                        while write_chunk(&mut socket, b"\r\n").await.is_ok() {
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            // X's pacing, not a sync
                        }
                    }
                }
            }
        }
    }

    async fn write_chunk(socket: &mut TcpStream, data: &[u8]) -> std::io::Result<()> {
        socket
            .write_all(format!("{:x}\r\n", data.len()).as_bytes())
            .await?;
        socket.write_all(data).await?;
        socket.write_all(b"\r\n").await?;
        socket.flush().await
    }
}
