//! `tweetlake serve`: the real binary over a lake written by the pipeline (`tweetlake demo`),
//! driven by the real clients: psql (Debian's postgresql-client 15) and Python's psycopg 3
//! (tests/clients/psycopg_checks.py), and Grafana's query texts replayed through psycopg.
//! `scripts/services.sh` installs both and exports TWEETLAKE_TEST_PSQL and
//! TWEETLAKE_TEST_PYTHON; without them the tests skip (and fail under CI=true).

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{service_env, wait_bounded, Project, Spawned, StdoutLines};

/// A query that runs for minutes unless something stops it.
const ENDLESS: &str = "SELECT count(*) FROM generate_series(1, 20000000000)";
/// A typical dashboard panel query.
const PANEL: &str = "SELECT company, sum(posts) AS posts, avg(sentiment_mean) AS sentiment \
                     FROM gold.company_minute GROUP BY company ORDER BY company";

/// The clients, or `None` to skip.
struct Clients {
    psql: String,
    python: String,
}

fn clients() -> Option<Clients> {
    Some(Clients {
        psql: service_env("TWEETLAKE_TEST_PSQL")?,
        python: service_env("TWEETLAKE_TEST_PYTHON")?,
    })
}

/// A project whose lake `tweetlake demo` wrote, with `serve_keys` in its `[serve]` section.
fn lake_project(serve_keys: &str) -> Project {
    let project = Project::new();
    let demo = project.run(&["demo", "--lake", "lake"], &[]);
    assert!(demo.status.success(), "{}", String::from_utf8_lossy(&demo.stderr));
    let toml = format!(
        "[lake]\nuri = {:?}\n\n[serve]\n{serve_keys}\n",
        project.lake_uri()
    );
    std::fs::write(project.path("tweetlake.toml"), toml).unwrap();
    project
}

/// A running `tweetlake serve` on a free loopback port, killed when dropped.
struct Server {
    child: Spawned,
    port: u16,
    /// The server's log (stderr) as it writes it, and the lines a test has read of it.
    log: StdoutLines,
    log_read: Vec<String>,
}

impl Server {
    fn start(project: &Project, env: &[(&str, &str)]) -> Self {
        // Debug lines say when a statement arrives: what a test waits on before it cancels one.
        let mut command = project.command(&["serve", "--listen", "127.0.0.1:0", "--log", "tweetlake=debug"]);
        command.envs(env.iter().copied());
        let (child, lines, log) = Spawned::with_stdout_and_stderr_lines(command.spawn().unwrap());
        let ready = lines.next_line();
        let port = ready
            .split("postgres://127.0.0.1:")
            .nth(1)
            .and_then(|rest| rest.split(' ').next())
            .and_then(|port| port.parse().ok())
            .unwrap_or_else(|| panic!("no address in {ready:?}"));
        Self {
            child,
            port,
            log,
            log_read: Vec::new(),
        }
    }

    /// Waits (bounded) until the server logs that `sql` arrived by the simple query protocol.
    fn await_statement(&mut self, sql: &str) {
        loop {
            let line = self.log.next_line();
            let arrived = line.contains("statement received") && line.ends_with(sql);
            self.log_read.push(line);
            if arrived {
                return;
            }
        }
    }

    fn port(&self) -> String {
        self.port.to_string()
    }

    /// Stops the server and returns what it logged.
    fn stop(mut self) -> String {
        assert!(!self.child.exited(), "the server died");
        // SAFETY: kill only sends SIGTERM to our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let output = self.child.wait();
        self.log_read.extend(self.log.remaining());
        let log = self.log_read.join("\n");
        assert!(output.status.success(), "{log}");
        log
    }
}

fn checks_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/psycopg_checks.py")
}

/// Runs check `name` of psycopg_checks.py against `server`; fails the test if it fails.
fn psycopg(clients: &Clients, server: &Server, name: &str, args: &[&str]) -> String {
    let mut command = Command::new(&clients.python);
    command
        .arg(checks_script())
        .arg(name)
        .arg(server.port())
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let output = wait_bounded(command.spawn().unwrap());
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "psycopg check {name} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

fn psql_command(clients: &Clients, server: &Server, args: &[&str]) -> Command {
    let mut command = Command::new(&clients.psql);
    command
        .args([
            "-X",
            "-h",
            "127.0.0.1",
            "-p",
            &server.port(),
            "-U",
            "grafana",
            "-d",
            "lake",
        ])
        .args(args)
        .env_remove("PGPASSWORD")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

fn psql(clients: &Clients, server: &Server, args: &[&str]) -> Output {
    wait_bounded(psql_command(clients, server, args).spawn().unwrap())
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Every file under the lake's Delta logs: what a write would change.
fn delta_logs(project: &Project) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut dirs = vec![project.path("lake")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.to_string_lossy().contains("_delta_log") {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

#[test]
fn psql_lists_describes_and_queries_the_lake() {
    let Some(clients) = clients() else { return };
    let project = lake_project("");
    let server = Server::start(&project, &[]);
    let tables = psql(&clients, &server, &["-c", "\\dt silver.*"]);
    let listed = text(&tables.stdout);
    assert!(tables.status.success(), "{}", text(&tables.stderr));
    assert!(
        listed.lines().any(|l| l
            .split('|')
            .map(str::trim)
            .take(3)
            .eq(["silver", "tweets", "table"])),
        "{listed}"
    );
    let described = psql(&clients, &server, &["-c", "\\d silver.tweets"]);
    let columns = text(&described.stdout);
    assert!(columns.contains("Table \"silver.tweets\""), "{columns}");
    for line in [
        "created_at | timestamp with time zone",
        "text       | text",
        "sentiment  | double precision",
    ] {
        let wanted: Vec<&str> = line.split('|').map(str::trim).collect();
        assert!(
            columns
                .lines()
                .any(|l| l.split('|').map(str::trim).take(2).eq(wanted.iter().copied())),
            "{line} in {columns}"
        );
    }
    let counted = psql(
        &clients,
        &server,
        &["-At", "-c", "SELECT count(*) FROM silver.tweets"],
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    let expected = rt.block_on(project.count("SELECT count(*) FROM silver.tweets"));
    assert_eq!(text(&counted.stdout).trim(), expected.to_string());
    server.stop();
}

#[test]
fn psycopg_simple_and_extended_protocols_parameters_and_cursors() {
    let Some(clients) = clients() else { return };
    let project = lake_project("");
    let server = Server::start(&project, &[]);
    psycopg(&clients, &server, "protocols", &[]);
    server.stop();
}

#[test]
fn grafana_data_source_queries_replayed_as_sent() {
    let Some(clients) = clients() else { return };
    let project = lake_project("");
    let server = Server::start(&project, &[]);
    let replay = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/grafana_queries.json");
    let out = psycopg(&clients, &server, "grafana", &[replay.to_str().unwrap()]);
    assert!(out.contains("G3 tables"), "{out}");
    server.stop();
}

#[test]
fn every_dashboard_panel_returns_rows_with_its_columns() {
    let Some(clients) = clients() else { return };
    let project = lake_project("");
    let server = Server::start(&project, &[]);
    let board = Path::new(env!("CARGO_MANIFEST_DIR")).join("docker/grafana/dashboards/lake-sentiment.json");
    let out = psycopg(&clients, &server, "dashboard", &[board.to_str().unwrap()]);
    assert!(out.contains("Dead letters per hour"), "{out}");
    server.stop();
}

#[test]
fn writes_are_refused_the_lake_is_unchanged_and_views_stay_with_their_connection() {
    let Some(clients) = clients() else { return };
    let project = lake_project("");
    let before = delta_logs(&project);
    let server = Server::start(&project, &[]);
    psycopg(&clients, &server, "read_only", &[]);
    let refused = psql(&clients, &server, &["-c", "DELETE FROM silver.tweets"]);
    assert!(!refused.status.success());
    assert!(
        text(&refused.stderr).contains("read-only"),
        "{}",
        text(&refused.stderr)
    );
    server.stop();
    assert_eq!(delta_logs(&project), before, "a Delta log changed");
    assert!(!Path::new("/tmp/tweetlake-copy.csv").exists());
}

#[test]
fn cancel_requests_stop_the_running_query() {
    let Some(clients) = clients() else { return };
    let project = lake_project("");
    let mut server = Server::start(&project, &[]);
    psycopg(&clients, &server, "cancel", &[ENDLESS]);
    // psql's Ctrl-C: SIGINT makes it send a CancelRequest on a new connection.
    let endless = format!("{ENDLESS} -- psql's Ctrl-C");
    let child = psql_command(&clients, &server, &["-c", &endless])
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    let started = Instant::now();
    server.await_statement(&endless);
    // SAFETY: kill only signals our own child.
    unsafe { libc::kill(pid, libc::SIGINT) };
    let output = wait_bounded(child);
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("canceling statement due to user request"),
        "{stderr}"
    );
    server.stop();
}

#[test]
fn a_heavy_query_stops_at_its_limits_while_twenty_clients_get_answers() {
    let Some(clients) = clients() else { return };
    let project = lake_project("query_timeout = \"4s\"\nmax_concurrent_queries = 4");
    let server = Server::start(&project, &[]);
    // The endless query holds a turn until its time limit, while 20 clients query at once.
    let heavy = {
        let (python, port) = (clients.python.clone(), server.port());
        std::thread::spawn(move || {
            let mut command = Command::new(python);
            command
                .arg(checks_script())
                .args(["error_code", &port, ENDLESS, "57014", "time limit"]);
            wait_bounded(
                command
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap(),
            )
        })
    };
    let out = psycopg(&clients, &server, "concurrent", &["20", PANEL]);
    assert!(out.contains("20 clients"), "{out}");
    let heavy = heavy.join().unwrap();
    assert!(
        heavy.status.success(),
        "{}{}",
        text(&heavy.stdout),
        text(&heavy.stderr)
    );
    server.stop();
    // Tiny limits: a query needing more memory, or scanning more, fails; the next one runs.
    let limited = lake_project("memory_limit = \"1MiB\"");
    let server = Server::start(&limited, &[("TWEETLAKE_REPL__MAX_BYTES_SCANNED", "1KB")]);
    let memory = "SELECT count(DISTINCT value) FROM generate_series(1, 3000000)";
    psycopg(
        &clients,
        &server,
        "error_code",
        &[memory, "53200", "serve.memory_limit"],
    );
    let scan = "SELECT max(length(_raw)) FROM bronze";
    psycopg(
        &clients,
        &server,
        "error_code",
        &[scan, "54000", "repl.max_bytes_scanned"],
    );
    server.stop();
}

#[test]
fn a_password_is_required_when_set_and_never_logged_and_tls_works() {
    let Some(clients) = clients() else { return };
    let project = lake_project("");
    let cert = project.path("server.crt");
    let key = project.path("server.key");
    let openssl = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    assert!(wait_bounded(openssl).status.success());
    let password = "s3cr3t-Pa55";
    let env = [
        ("TWEETLAKE_SERVE__PASSWORD", password),
        ("TWEETLAKE_SERVE__TLS_CERT", cert.to_str().unwrap()),
        ("TWEETLAKE_SERVE__TLS_KEY", key.to_str().unwrap()),
        ("RUST_LOG", "debug"),
    ];
    let server = Server::start(&project, &env);
    psycopg(&clients, &server, "login", &["wrong", "refused"]);
    psycopg(&clients, &server, "login", &[password, "ok"]);
    let mut wrong = psql_command(&clients, &server, &["-c", "SELECT 1"]);
    let refused = wait_bounded(wrong.env("PGPASSWORD", "nope").spawn().unwrap());
    assert_eq!(refused.status.code(), Some(2));
    assert!(
        text(&refused.stderr)
            .to_lowercase()
            .contains("password authentication failed"),
        "{}",
        text(&refused.stderr)
    );
    let mut secure = psql_command(&clients, &server, &["-At", "-c", "SELECT count(*) FROM bronze"]);
    secure.env("PGPASSWORD", password).env("PGSSLMODE", "require");
    let output = wait_bounded(secure.spawn().unwrap());
    assert!(output.status.success(), "{}", text(&output.stderr));
    let log = server.stop();
    assert!(!log.contains(password), "the password is in the log");
}

/// Runs `tweetlake serve` expecting it to fail at start: its one stderr line.
fn failed_start(project: &Project, args: &[&str], env: &[(&str, &str)]) -> String {
    let mut all = vec!["serve"];
    all.extend_from_slice(args);
    let output = project.run(&all, env);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stdout));
    let stderr = text(&output.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    lines[0].to_string()
}

#[test]
fn a_port_in_use_a_bad_certificate_or_no_password_off_loopback_is_one_line_and_exit_1() {
    let project = lake_project("");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap().to_string();
    let line = failed_start(&project, &["--listen", &address], &[]);
    assert!(
        line.contains(&address) && line.contains("another program uses the port"),
        "{line}"
    );
    std::fs::write(project.path("bad.pem"), "not a certificate").unwrap();
    let bad = project.path("bad.pem");
    let env = [
        ("TWEETLAKE_SERVE__TLS_CERT", bad.to_str().unwrap()),
        ("TWEETLAKE_SERVE__TLS_KEY", bad.to_str().unwrap()),
    ];
    let line = failed_start(&project, &["--listen", "127.0.0.1:0"], &env);
    assert!(line.contains("TLS") && line.contains("bad.pem"), "{line}");
    let line = failed_start(&project, &["--listen", "0.0.0.0:0"], &[]);
    assert!(
        line.contains("serve.password") && line.contains("127.0.0.1"),
        "{line}"
    );
}

#[test]
fn bad_clients_get_errors_and_the_server_keeps_serving_the_others() {
    let Some(clients) = clients() else { return };
    let project = lake_project("");
    let before = delta_logs(&project);
    let mut server = Server::start(&project, &[]);
    // A malformed startup packet: a length that is a lie, then garbage.
    let mut raw = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    raw.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    raw.write_all(&[0, 0, 0, 12, 0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4])
        .unwrap();
    let mut answer = Vec::new();
    let _ = raw.read_to_end(&mut answer);
    // A client that disconnects mid-query.
    let endless = format!("{ENDLESS} -- a client that quits");
    let mut quitter = psql_command(&clients, &server, &["-c", &endless])
        .spawn()
        .unwrap();
    server.await_statement(&endless);
    quitter.kill().unwrap();
    quitter.wait().unwrap();
    // An unknown table: the Postgres error, to that client only.
    let unknown = psql(&clients, &server, &["-c", "SELECT * FROM silver.nope"]);
    assert!(!unknown.status.success());
    assert!(
        text(&unknown.stderr).contains("silver.nope"),
        "{}",
        text(&unknown.stderr)
    );
    // The others go on.
    let out = psycopg(&clients, &server, "concurrent", &["5", PANEL]);
    assert!(out.contains("5 clients"), "{out}");
    server.stop();
    assert_eq!(delta_logs(&project), before);
}
