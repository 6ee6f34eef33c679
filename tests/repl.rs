//! `tweetlake sql`: the real binary in a pseudo-terminal against a lake written by the pipeline,
//! and its one-shot `-e` / `-f` outputs byte for byte.

mod common;

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{fixture_lines, Project};
use deltalake::arrow::array::{Int64Array, RecordBatch};
use deltalake::arrow::datatypes::{DataType, Field, Schema};
use rexpect::reader::Options;
use rexpect::session::{spawn_with_options, PtySession};
use tweetlake::lake::Lake;
use tweetlake::sink::{DeltaSink, TableSpec, TableWrite};
use tweetlake::source::OffsetRange;

/// Every expectation fails the test after this long.
const EXPECT_TIMEOUT: Duration = Duration::from_secs(30);
/// The pseudo-terminal's size.
const PTY_ROWS: usize = 50;
const PTY_COLUMNS: usize = 200;
/// rustyline switches bracketed paste on each time it starts reading a line, and off when the
/// line is accepted: the first marks a fresh prompt, the second the end of the echoed input.
const READING: &str = "\x1b[?2004h";
const ACCEPTED: &str = "\x1b[?2004l";

/// A lake written by `tweetlake run --once` from the fixture posts in two batches, so bronze has
/// versions 0 and 1, with a `tweetlake.toml` pointing at it.
fn lake_project() -> Project {
    let project = Project::new();
    project.write_posts(&fixture_lines());
    project.write_config("max_records_per_batch = 10");
    let run = project.run(&["run", "--once"], &[]);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    project
}

/// The single number `sql` returns, read through delta-rs + DataFusion.
fn count(project: &Project, sql: &str) -> i64 {
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(project.count(sql))
}

/// What the terminal printed, as text: rexpect hands over each byte as one char, so a character
/// outside ASCII (a chart's braille and box drawing) arrives as several.
fn decoded(printed: &str) -> String {
    let bytes: Vec<u8> = printed
        .chars()
        .map(|c| u8::try_from(c).expect("rexpect gives one char per byte"))
        .collect();
    String::from_utf8(bytes).expect("the REPL writes UTF-8")
}

/// `text` without ANSI escape sequences.
fn plain(text: &str) -> String {
    let text = decoded(text);
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            // CSI: ESC [ parameters final-letter; the only kind rustyline and indicatif write.
            chars.by_ref().find(|c| c.is_ascii_alphabetic() || *c == '~');
        } else {
            out.push(c);
        }
    }
    out
}

/// The REPL in a PTY_ROWS x PTY_COLUMNS pseudo-terminal.
struct Repl {
    pty: PtySession,
}

impl Repl {
    fn start(project: &Project, env: &[(&str, &str)]) -> Self {
        let mut command = Command::new("sh");
        command
            .args([
                "-c",
                &format!("stty rows {PTY_ROWS} cols {PTY_COLUMNS} && exec \"$0\" sql"),
            ])
            .arg(env!("CARGO_BIN_EXE_tweetlake"))
            .current_dir(project.dir.path())
            .env("TERM", "xterm")
            .env("TWEETLAKE_REPL__HISTORY_FILE", project.path("history"))
            .env_remove("RUST_LOG")
            .env_remove("PAGER")
            .envs(env.iter().copied());
        let options = Options::new().timeout_ms(Some(EXPECT_TIMEOUT.as_millis() as u64));
        let mut repl = Self {
            pty: spawn_with_options(command, options).unwrap(),
        };
        let banner = repl.prompt();
        assert!(banner.contains("tweetlake sql on"), "{banner}");
        repl
    }

    /// Types `keys` (the pty's writer is line-buffered: flush, as there may be no newline).
    fn send(&mut self, keys: &str) {
        self.pty.send(keys).unwrap();
        self.pty.flush().unwrap();
    }

    /// Waits for the next fresh prompt; returns everything printed before it, plain.
    fn prompt(&mut self) -> String {
        plain(&self.pty.exp_string(READING).unwrap())
    }

    /// Types `input` and Enter, waits for the next prompt; returns what the input printed.
    fn run(&mut self, input: &str) -> String {
        self.send(&format!("{input}\r"));
        self.output()
    }

    /// What was printed between accepting the input and the next prompt.
    fn output(&mut self) -> String {
        let printed = self.pty.exp_string(READING).unwrap();
        let after_input = printed
            .rsplit_once(ACCEPTED)
            .map_or(printed.as_str(), |(_, out)| out);
        plain(after_input)
    }

    fn quit(mut self) {
        self.send("\\q\r");
        self.pty.exp_eof().unwrap();
    }
}

#[test]
fn tab_completes_a_table_name_and_a_column_of_it() {
    let project = lake_project();
    let mut repl = Repl::start(&project, &[]);
    repl.send("SELECT count(*) AS n FROM silver.tw\t");
    repl.pty.exp_string("silver.tweets").unwrap();
    repl.send(" WHERE compa\t");
    repl.pty.exp_string("company").unwrap();
    let output = repl.run(" IS NOT NULL;");
    let expected = count(
        &project,
        "SELECT count(*) FROM silver.tweets WHERE company IS NOT NULL",
    );
    assert!(expected > 0);
    assert!(
        output.contains(&format!("| {expected} |")),
        "expected {expected}: {output}"
    );
    assert!(!output.contains("error"), "{output}");
    repl.quit();
}

#[test]
fn a_statement_spans_lines_until_its_semicolon() {
    let project = lake_project();
    let mut repl = Repl::start(&project, &[]);
    repl.send("SELECT\r  40 + 2\r  AS answer;\r");
    let printed = repl.pty.exp_string(READING).unwrap();
    // The first two Enters continued the statement: one input was accepted, at the `;`.
    assert_eq!(printed.matches(ACCEPTED).count(), 1, "{printed:?}");
    let output = plain(printed.rsplit_once(ACCEPTED).unwrap().1);
    assert!(
        output.contains("| answer |\r\n+--------+\r\n| 42     |"),
        "{output:?}"
    );
    repl.quit();
}

#[test]
fn history_survives_a_restart_and_ctrl_r_finds_it() {
    let project = lake_project();
    let mut first = Repl::start(&project, &[]);
    first.run("SELECT 'remember me' AS note;");
    first.run("SELECT 1 AS other;");
    first.pty.send_control('d').unwrap();
    first.pty.exp_eof().unwrap();
    let history = std::fs::read_to_string(project.path("history")).unwrap();
    assert!(history.contains("SELECT 'remember me' AS note;"), "{history}");

    let mut second = Repl::start(&project, &[]);
    // Up arrow: the last statement of the previous session.
    let output = second.run("\x1b[A");
    assert!(output.contains("| 1     |"), "{output}");
    // Ctrl-R: search back for an older one.
    second.pty.send_control('r').unwrap();
    second.send("remember");
    second.pty.exp_string("remember me").unwrap();
    let output = second.run("");
    assert!(output.contains("| remember me |"), "{output}");
    second.quit();
}

#[test]
fn tables_are_described_with_versions_and_commit_history() {
    let project = lake_project();
    let mut repl = Repl::start(&project, &[]);
    let help = repl.run("\\?");
    for command in [
        "\\d [table]",
        "\\history table [n]",
        "\\run name",
        "\\chart [line|bar] x y [y ...]",
        "\\watch seconds [statement]",
        "VERSION AS OF",
    ] {
        assert!(help.contains(command), "{command} missing from help: {help}");
    }
    let tables = repl.run("\\d");
    for table in [
        "bronze",
        "dlq",
        "silver.tweets",
        "gold.company_minute",
        "gold.hashtag_hour",
    ] {
        assert!(
            tables.contains(&format!("| {table} ")),
            "{table} missing: {tables}"
        );
    }
    let bronze = tables.lines().find(|l| l.starts_with("| bronze ")).unwrap();
    let cells: Vec<&str> = bronze.split('|').map(str::trim).collect();
    assert_eq!(&cells[2..5], ["1", "2", "12"], "version, files, rows: {bronze}");

    // silver.tweets has more columns than the terminal has lines: no pager for this check.
    repl.run("\\pager off");
    let described = repl.run("\\d silver.tweets");
    assert!(described.contains("silver.tweets: version 1"), "{described}");
    assert!(described.contains("partitioned by created_date"), "{described}");
    let partition = described
        .lines()
        .find(|l| l.starts_with("| created_date "))
        .unwrap();
    assert!(partition.trim_end().ends_with("| true      |"), "{partition}");
    assert!(described.contains("| company "), "{described}");

    let history = repl.run("\\history bronze");
    let rows: Vec<&str> = history.lines().filter(|l| l.contains("| WRITE ")).collect();
    assert_eq!(rows.len(), 2, "{history}");
    assert!(rows[0].starts_with("| 1 "), "newest first: {history}");
    let added: i64 = project
        .progress()
        .iter()
        .map(|p| p["tables"]["bronze"]["rows"].as_i64().unwrap())
        .sum();
    let logged: i64 = rows
        .iter()
        .map(|r| r.split('|').nth(4).unwrap().trim().parse::<i64>().unwrap())
        .sum();
    assert_eq!(logged, added, "rows added per commit: {history}");
    let usage = repl.run("\\history");
    assert!(usage.contains("usage: \\history table [n]"), "{usage}");
    repl.quit();
}

#[test]
fn output_settings_timing_format_files_scripts_and_pager() {
    let project = lake_project();
    let mut repl = Repl::start(&project, &[("PAGER", "sed 's/^/paged: /'")]);
    let timed = repl.run("SELECT 1 AS one;");
    assert!(timed.contains("(1 row in "), "{timed}");
    assert!(timed.contains("scanned)"), "{timed}");
    repl.run("\\timing off");
    let untimed = repl.run("SELECT 1 AS one;");
    assert!(
        untimed.contains("| 1   |") && !untimed.contains("row in"),
        "{untimed}"
    );

    repl.run("\\format csv");
    let csv = repl.run("SELECT 1 AS a, 'x' AS b;");
    assert!(csv.contains("a,b\r\n1,x\r\n"), "{csv:?}");
    repl.run("\\format table");

    let file = project.path("out.json");
    repl.run(&format!("\\o {}", file.display()));
    let quiet = repl.run("SELECT 2 AS b;");
    assert!(!quiet.contains("| 2 |"), "results go to the file: {quiet}");
    repl.run("\\o");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "[{\"b\":2}]\n");

    let script = project.path("script.sql");
    std::fs::write(
        &script,
        "\\format markdown\nSELECT 'from'\n  || ' file' AS src;\n",
    )
    .unwrap();
    let included = repl.run(&format!("\\i {}", script.display()));
    assert!(
        included.contains("| src |\r\n| --- |\r\n| from file |"),
        "{included:?}"
    );
    repl.run("\\format table");

    // 100 rows do not fit in 50 lines: the pager shows them.
    let paged = repl.run("SELECT value FROM range(100);");
    assert!(paged.contains("paged: | 99    |"), "{paged}");
    repl.run("\\pager off");
    let direct = repl.run("SELECT value FROM range(100);");
    assert!(
        direct.contains("| 99    |") && !direct.contains("paged:"),
        "{direct}"
    );
    repl.quit();
}

#[test]
fn saved_queries_are_listed_run_with_parameters_and_saved() {
    let project = lake_project();
    let mut repl = Repl::start(&project, &[]);
    let listed = repl.run("\\queries");
    for name in [
        "top_companies",
        "company_trend",
        "dlq_triage",
        "pipeline_progress",
    ] {
        assert!(listed.contains(name), "{name} missing: {listed}");
    }
    assert!(listed.contains("hours=1, limit=20"), "{listed}");

    let all = repl.run("\\run dlq_triage");
    let one = repl.run("\\run dlq_triage limit=1");
    let rows = |text: &str| {
        text.lines()
            .filter(|l| l.starts_with("| ") && !l.contains("| error "))
            .count()
    };
    assert!(rows(&all) > 1, "{all}");
    assert_eq!(rows(&one), 1, "{one}");
    let wrong = repl.run("\\run dlq_triage days=2");
    assert!(
        wrong.contains("error: saved query `dlq_triage` has no parameter `days`"),
        "{wrong}"
    );

    repl.run("SELECT count(*) AS posts FROM silver.tweets WHERE lang = 'en';");
    let saved = repl.run("\\save english");
    assert!(saved.contains("saved to queries/english.sql"), "{saved}");
    let text = std::fs::read_to_string(project.path("queries/english.sql")).unwrap();
    assert!(text.starts_with("-- description: saved from the REPL"), "{text}");
    let rerun = repl.run("\\run english");
    assert!(rerun.contains("| posts |"), "{rerun}");
    repl.quit();
}

#[test]
fn version_as_of_reads_the_old_row_count() {
    let project = lake_project();
    let progress = project.progress();
    let first: i64 = progress[0]["tables"]["bronze"]["rows"].as_i64().unwrap();
    let total: i64 = progress
        .iter()
        .map(|p| p["tables"]["bronze"]["rows"].as_i64().unwrap())
        .sum();
    assert!(first < total);
    let mut repl = Repl::start(&project, &[]);
    let old = repl.run("SELECT count(*) AS n FROM bronze VERSION AS OF 0;");
    assert!(old.contains(&format!("| {first} ")), "expected {first}: {old}");
    let now = repl.run("SELECT count(*) AS n FROM bronze;");
    assert!(now.contains(&format!("| {total} ")), "expected {total}: {now}");
    let later = repl.run("SELECT count(*) AS n FROM bronze TIMESTAMP AS OF '2999-01-01T00:00:00Z';");
    assert!(
        later.contains(&format!("| {total} ")),
        "expected {total}: {later}"
    );
    let missing = repl.run("SELECT count(*) FROM bronze VERSION AS OF 7;");
    assert!(
        missing.contains("error: time travel: bronze has no version 7: its latest version is 1"),
        "{missing}"
    );
    repl.quit();
}

#[test]
fn ctrl_c_cancels_a_long_query_and_the_prompt_still_works() {
    let project = lake_project();
    let mut repl = Repl::start(&project, &[]);
    repl.send("SELECT sum(value % 7) FROM range(100000000000);\r");
    // The progress line appears once the query has run for a while: it is running now.
    repl.pty.exp_string("Ctrl-C cancels").unwrap();
    repl.pty.send_control('c').unwrap();
    let cancelled = repl.output();
    assert!(cancelled.contains("error: query cancelled"), "{cancelled}");
    let after = repl.run("SELECT 'still here' AS status;");
    assert!(after.contains("| still here |"), "{after}");
    repl.quit();
}

#[test]
fn bad_sql_gives_a_one_line_error_and_the_prompt_keeps_working() {
    let project = lake_project();
    let mut repl = Repl::start(&project, &[]);
    let typo = repl.run("SELEC 1;");
    let lines: Vec<&str> = typo.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{typo:?}");
    assert!(
        lines[0].starts_with("error: ") && lines[0].contains("SELEC"),
        "{typo}"
    );
    let unknown = repl.run("SELECT * FROM silver.nope;");
    assert!(
        unknown.contains("error: ") && unknown.contains("silver.nope"),
        "{unknown}"
    );
    let write = repl.run("DELETE FROM bronze;");
    assert!(write.contains("the lake is read-only"), "{write}");
    let fine = repl.run("SELECT 7 * 6 AS ok;");
    assert!(fine.contains("| 42 |"), "{fine}");
    repl.quit();
}

#[test]
fn each_statement_sees_new_versions_and_new_tables_without_a_restart() {
    let project = lake_project();
    let mut repl = Repl::start(&project, &[]);
    let before = repl.run("SELECT count(*) AS n FROM bronze;");
    assert!(before.contains("| 12 |"), "{before}");
    // A new batch arrives while the REPL is open.
    project.append_posts(&std::fs::read(common::fixture("x_v2_stream_sample.jsonl")).unwrap());
    let run = project.run(&["run", "--once"], &[]);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let after = repl.run("SELECT count(*) AS n FROM bronze;");
    assert!(after.contains("| 24 |"), "{after}");
    // A table (in a schema) that did not exist at startup.
    write_tables(&project, 1);
    let new = repl.run("SELECT sum(n) AS total FROM s0.t0;");
    assert!(new.contains("| 6     |"), "{new}");
    repl.quit();
}

/// The single text `sql` returns, read through delta-rs + DataFusion.
fn text(project: &Project, sql: &str) -> String {
    let batches = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(project.query(sql));
    let mut values = common::strings(&batches);
    assert_eq!(values.len(), 1, "{sql}: {values:?}");
    values.remove(0)
}

/// The lines the terminal shows, without their carriage returns.
fn screen_lines(output: &str) -> Vec<&str> {
    output.lines().map(|l| l.trim_end_matches('\r')).collect()
}

fn width(line: &str) -> usize {
    line.chars().count()
}

const PER_MINUTE: &str = "SELECT date_trunc('minute', created_at) AS minute, count(*) AS posts, \
     count(*) FILTER (WHERE sentiment_label = 'negative') AS negative \
     FROM silver.tweets GROUP BY 1 ORDER BY 1";

#[test]
fn a_line_chart_of_the_last_result_fits_the_terminal_and_labels_its_range() {
    let project = lake_project();
    let mut repl = Repl::start(&project, &[]);
    let nothing = repl.run("\\chart line minute posts");
    assert!(
        nothing.contains("error: nothing to chart yet: run a query first"),
        "{nothing}"
    );
    repl.run(&format!("{PER_MINUTE};"));
    let output = repl.run("\\chart line minute posts negative");
    let lines = screen_lines(&output);
    assert!(!output.contains("error"), "{output}");
    assert!(
        lines.iter().all(|l| width(l) <= PTY_COLUMNS),
        "wider than the terminal:\n{output}"
    );
    let axis = lines.iter().position(|l| l.contains('└')).unwrap();
    assert_eq!(
        width(lines[axis]),
        PTY_COLUMNS,
        "the axis spans the width: {output}"
    );
    let legend = lines.iter().find(|l| l.contains("by minute (UTC)")).unwrap();
    assert!(
        legend.contains("posts") && legend.contains("negative"),
        "{legend}"
    );
    let plot: String = lines[..axis].concat();
    assert!(
        plot.chars().any(|c| ('\u{2801}'..='\u{28ff}').contains(&c)),
        "braille dots: {output}"
    );

    // Y from the smallest count of either series to the largest, X from the first minute to
    // the last, as the lake has them.
    let per_minute = format!("({PER_MINUTE}) AS m");
    let top = count(&project, &format!("SELECT max(posts) FROM {per_minute}"));
    let bottom = count(
        &project,
        &format!("SELECT min(least(posts, negative)) FROM {per_minute}"),
    );
    assert!(top > bottom, "{top} {bottom}");
    let y_labels: Vec<&str> = lines
        .iter()
        .filter_map(|l| l.split_once('┤'))
        .map(|(label, _)| label.trim())
        .collect();
    assert_eq!(y_labels.first(), Some(&top.to_string().as_str()), "{output}");
    assert_eq!(y_labels.last(), Some(&bottom.to_string().as_str()), "{output}");
    let days = count(
        &project,
        &format!("SELECT count(DISTINCT CAST(minute AS DATE)) FROM {per_minute}"),
    );
    assert_eq!(
        days, 1,
        "the fixture posts fall on one day, so labels are clock times"
    );
    let first = text(
        &project,
        &format!("SELECT to_char(min(minute), '%H:%M') FROM {per_minute}"),
    );
    let last = text(
        &project,
        &format!("SELECT to_char(max(minute), '%H:%M') FROM {per_minute}"),
    );
    let x_labels = lines[axis + 1].trim();
    assert!(
        x_labels.starts_with(&format!("{first} ")) && x_labels.ends_with(&format!(" {last}")),
        "from {first} to {last}: {x_labels}"
    );
    repl.quit();
}

#[test]
fn a_bar_chart_of_the_last_result_and_its_mistakes() {
    let project = lake_project();
    let mut repl = Repl::start(&project, &[]);
    let per_company = "SELECT company, count(*) AS posts FROM silver.tweets \
                       WHERE company IS NOT NULL GROUP BY company ORDER BY posts DESC, company";
    repl.run(&format!("{per_company};"));
    let output = repl.run("\\chart bar company posts");
    let lines = screen_lines(&output);
    assert!(
        lines.iter().all(|l| width(l) <= PTY_COLUMNS),
        "wider than the terminal:\n{output}"
    );
    let expected: Vec<(String, i64)> = common::strings(&tokio::runtime::Runtime::new().unwrap().block_on(
        project.query(&format!(
            "SELECT concat(company, ',', CAST(posts AS VARCHAR)) FROM ({per_company}) AS c ORDER BY posts DESC, company"
        )),
    ))
    .into_iter()
    .map(|row| {
        let (company, posts) = row.rsplit_once(',').unwrap();
        (company.to_string(), posts.parse().unwrap())
    })
    .collect();
    assert!(expected.len() > 1, "{expected:?}");
    let bars: Vec<&str> = lines.iter().copied().filter(|l| l.contains('│')).collect();
    assert_eq!(bars.len(), expected.len(), "one bar per company: {output}");
    // In eighths of a character: the longest bar fills its area, the others in proportion.
    let eighths = |bar: &str| -> usize {
        bar.chars()
            .map(|c| match c {
                '█' => 8,
                '▏' => 1,
                '▎' => 2,
                '▍' => 3,
                '▌' => 4,
                '▋' => 5,
                '▊' => 6,
                '▉' => 7,
                _ => 0,
            })
            .sum()
    };
    let (_, most) = expected[0];
    assert_eq!(
        width(bars[0]),
        PTY_COLUMNS,
        "the longest bar spans the width: {output}"
    );
    let full = eighths(bars[0]);
    for ((company, posts), line) in expected.iter().zip(&bars) {
        assert!(line.starts_with(company.as_str()), "{company}: {line}");
        assert!(line.ends_with(&format!(" {posts}")), "{company} {posts}: {line}");
        let wanted = full as f64 * *posts as f64 / most as f64;
        let drawn = eighths(line) as f64;
        assert!(
            (drawn - wanted).abs() <= 0.5,
            "{company}: {drawn} eighths, not {wanted}: {line}"
        );
    }

    let wrong_y = repl.run("\\chart bar posts company");
    assert_eq!(
        screen_lines(&wrong_y)
            .iter()
            .filter(|l| !l.trim().is_empty())
            .count(),
        1,
        "{wrong_y}"
    );
    assert!(
        // DataFusion's strings are Utf8View.
        wrong_y.contains("error: column `company` is Utf8View, not a number"),
        "{wrong_y}"
    );
    let unknown = repl.run("\\chart line minute posts");
    assert!(
        unknown.contains("error: no column `minute` in the last result (columns: company, posts)"),
        "{unknown}"
    );

    // A chart redrawn by \watch from the last statement, until Ctrl-C.
    let (top_company, top_posts) = &expected[0];
    let top_bar = format!("{top_company} ");
    repl.send("\\watch 1 \\chart bar company posts\r");
    for _ in 0..2 {
        let redraw = plain(&repl.pty.exp_string("(Ctrl-C stops)").unwrap());
        assert!(redraw.contains("every 1 s"), "{redraw}");
        let drawn = plain(&repl.pty.exp_string(&format!(" {top_posts}\r\n")).unwrap());
        assert!(drawn.contains(&top_bar), "{drawn}");
    }
    repl.pty.send_control('c').unwrap();
    repl.prompt();
    let after = repl.run("SELECT 'still here' AS status;");
    assert!(after.contains("| still here |"), "{after}");
    repl.quit();
}

#[test]
fn watch_redraws_a_count_as_the_pipeline_writes_until_ctrl_c() {
    let project = lake_project();
    let mut repl = Repl::start(&project, &[]);
    repl.send("\\watch 1 SELECT count(*) AS n FROM bronze\r");
    // Two redraws of the lake as it is: the statement runs again.
    for _ in 0..2 {
        let redraw = plain(&repl.pty.exp_string("(Ctrl-C stops)").unwrap());
        assert!(redraw.contains("every 1 s"), "{redraw}");
        let shown = plain(&repl.pty.exp_string("| 12 |").unwrap());
        assert!(shown.contains("| n  |"), "the table, redrawn: {shown}");
    }
    // Another process writes to the lake while the watch runs: a later redraw shows it.
    project.append_posts(&std::fs::read(common::fixture("x_v2_stream_sample.jsonl")).unwrap());
    let run = project.run(&["run", "--once"], &[]);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let later = plain(&repl.pty.exp_string("| 24 |").unwrap());
    assert!(later.contains("(Ctrl-C stops)"), "a redraw: {later}");
    // Ctrl-C stops the watch, not the REPL.
    repl.pty.send_control('c').unwrap();
    let stopped = repl.prompt();
    assert!(!stopped.contains("error"), "{stopped}");
    let after = repl.run("SELECT count(*) AS n FROM bronze;");
    assert!(after.contains("| 24 |"), "{after}");
    repl.quit();
}

fn sql(project: &Project, args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let mut all = vec!["sql"];
    all.extend_from_slice(args);
    let output = project.run(&all, env);
    let text = |b: &[u8]| String::from_utf8(b.to_vec()).unwrap();
    (
        output.status.success(),
        text(&output.stdout),
        text(&output.stderr),
    )
}

const VALUES: &str =
    "SELECT * FROM (VALUES (1, 'a|b', 1.5), (2, NULL, NULL)) AS t(id, name, score) ORDER BY id";

#[tokio::test]
async fn one_shot_output_is_exact_in_every_format() {
    let project = lake_project();
    let expected = [
        (
            "table",
            "+----+------+-------+\n| id | name | score |\n+----+------+-------+\n\
             | 1  | a|b  | 1.5   |\n| 2  | NULL | NULL  |\n+----+------+-------+\n",
        ),
        ("csv", "id,name,score\n1,a|b,1.5\n2,,\n"),
        (
            "json",
            "[{\"id\":1,\"name\":\"a|b\",\"score\":1.5},{\"id\":2,\"name\":null,\"score\":null}]\n",
        ),
        (
            "ndjson",
            "{\"id\":1,\"name\":\"a|b\",\"score\":1.5}\n{\"id\":2,\"name\":null,\"score\":null}\n",
        ),
        (
            "markdown",
            "| id | name | score |\n| --- | --- | --- |\n| 1 | a\\|b | 1.5 |\n| 2 | NULL | NULL |\n",
        ),
    ];
    for (format, text) in expected {
        let (ok, stdout, stderr) = sql(&project, &["-e", VALUES, "--format", format], &[]);
        assert!(ok, "{format}: {stderr}");
        assert_eq!(stdout, text, "{format}");
        assert_eq!(stderr, "", "{format}");
    }
    // A stable aggregate over the lake, from a file, into a file named .csv.
    let script = project.path("q.sql");
    let query = "-- per language\nSELECT lang, count(*) AS posts\nFROM silver.tweets\n\
                 GROUP BY lang\nORDER BY lang;\n";
    std::fs::write(&script, query).unwrap();
    let out = project.path("langs.csv");
    let (ok, stdout, stderr) = sql(
        &project,
        &["-f", script.to_str().unwrap(), "--output", out.to_str().unwrap()],
        &[],
    );
    assert!(ok, "{stderr}");
    assert_eq!(stdout, "");
    let lines =
        "SELECT concat(lang, ',', CAST(count(*) AS VARCHAR)) FROM silver.tweets GROUP BY lang ORDER BY lang";
    let expected = common::strings(&project.query(lines).await);
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        format!("lang,posts\n{}\n", expected.join("\n"))
    );
}

#[test]
fn one_shot_errors_exit_non_zero_with_one_line() {
    let project = lake_project();
    for (query, needle) in [
        ("SELECT * FROM nope", "nope"),
        ("SELEC 1", "SELEC"),
        ("\\frobnicate", "unknown meta-command"),
        ("SELECT count(*) FROM bronze VERSION AS OF x", "version number"),
    ] {
        let (ok, stdout, stderr) = sql(&project, &["-e", query], &[]);
        assert!(!ok, "{query} must fail");
        assert_eq!(stdout, "", "{query}");
        assert_eq!(stderr.lines().count(), 1, "{query}: {stderr}");
        assert!(
            stderr.starts_with("error: ") && stderr.contains(needle),
            "{query}: {stderr}"
        );
    }
    // Stops at the first error: the second statement never runs.
    let (ok, stdout, _) = sql(
        &project,
        &["-e", "SELECT 1 AS a; SELEC 2; SELECT 3 AS c", "--format", "csv"],
        &[],
    );
    assert!(!ok);
    assert_eq!(stdout, "a\n1\n");
}

#[test]
fn the_bytes_scanned_limit_stops_a_query_with_a_clear_message() {
    let project = lake_project();
    let limit = [("TWEETLAKE_REPL__MAX_BYTES_SCANNED", "1KiB")];
    let (ok, _, stderr) = sql(&project, &["-e", "SELECT max(length(_raw)) FROM bronze"], &limit);
    assert!(!ok);
    assert!(stderr.contains("query stopped after scanning"), "{stderr}");
    assert!(
        stderr.contains("the limit is 1.0 KiB per query (repl.max_bytes_scanned)"),
        "{stderr}"
    );
    let (ok, stdout, stderr) = sql(&project, &["-e", "SELECT 1 AS fine", "--format", "csv"], &limit);
    assert!(ok, "{stderr}");
    assert_eq!(stdout, "fine\n1\n");
}

#[test]
fn explain_and_explain_analyze_show_plans() {
    let project = lake_project();
    let (ok, stdout, stderr) = sql(
        &project,
        &[
            "-e",
            "EXPLAIN SELECT count(*) FROM silver.tweets WHERE lang = 'en'",
        ],
        &[],
    );
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("logical_plan") && stdout.contains("physical_plan"),
        "{stdout}"
    );
    let (ok, stdout, stderr) = sql(
        &project,
        &[
            "-e",
            "EXPLAIN ANALYZE SELECT max(length(text)) FROM silver.tweets",
        ],
        &[],
    );
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("Plan with Metrics") && stdout.contains("bytes_scanned="),
        "{stdout}"
    );
}

/// Startup on a lake of 20 tables whose data files are all garbage: the REPL must reach its
/// prompt (and list every table with its row count) without reading any of them.
#[test]
fn startup_with_20_tables_reads_only_logs() {
    let project = Project::new();
    project.write_config("");
    write_tables(&project, 20);
    for entry in walk(&project.path("lake")) {
        if entry.extension().is_some_and(|e| e == "parquet") {
            std::fs::write(&entry, b"not parquet").unwrap();
        }
    }

    let started = Instant::now();
    let mut repl = Repl::start(&project, &[]);
    let startup = started.elapsed();
    eprintln!(
        "startup to first prompt with 20 tables: {} ms",
        startup.as_millis()
    );
    let tables = repl.run("\\d");
    assert_eq!(
        tables.lines().filter(|l| l.contains("| 3    |")).count(),
        20,
        "{tables}"
    );
    let corrupt = repl.run("SELECT sum(n) FROM s0.t0;");
    assert!(
        corrupt.contains("error: "),
        "the data really is unreadable: {corrupt}"
    );
    repl.quit();
    assert!(startup < Duration::from_secs(10), "startup took {startup:?}");
}

/// `count` tables `s<i % 4>.t<i>` of three rows each, written by the pipeline's sink.
fn write_tables(project: &Project, count: usize) {
    let lake = Lake::new(&project.lake_uri(), &Default::default()).unwrap();
    let mut sink = DeltaSink::new(lake, "test");
    let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)]));
    let batch =
        RecordBatch::try_new(schema.clone(), vec![Arc::new(Int64Array::from(vec![1, 2, 3]))]).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let range = OffsetRange {
        topic: "test".into(),
        partition: 0,
        start: 0,
        end: 3,
    };
    let writes = (0..count)
        .map(|i| TableWrite {
            spec: TableSpec::append(&format!("s{}.t{i}", i % 4), &[]),
            schema: schema.clone(),
            batches: vec![batch.clone()],
        })
        .collect();
    runtime
        .block_on(sink.commit_all(writes, &[range], |_| {}))
        .unwrap();
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

/// rustyline paints the prompt and the line in synchronized updates; this ends each one.
const PAINTED: &str = "\x1b[?2026l";

/// What the terminal showed from the painted prompt until `input` and Enter were accepted,
/// escape sequences kept; then waits for the next prompt.
fn raw_echo(repl: &mut Repl, input: &str) -> String {
    repl.pty.exp_string(PAINTED).unwrap();
    repl.send(&format!("{input}\r"));
    let echoed = repl.pty.exp_string(ACCEPTED).unwrap();
    repl.prompt();
    echoed
}

/// Whether `text` holds an SGR sequence (ESC [ digits and `;` m): a colour or a style.
fn has_colour(text: &str) -> bool {
    text.split("\x1b[").skip(1).any(|after| {
        let parameters = after.trim_start_matches(|c: char| c.is_ascii_digit() || c == ';');
        parameters.starts_with('m') && parameters.len() < after.len()
    })
}

/// A project whose lake has no tables yet: enough for the prompt.
fn empty_project() -> Project {
    let project = Project::new();
    project.write_posts(b"");
    project.write_config("");
    project
}

const TYPED: &str = "SELECT 'lit' AS s, 42 AS n; -- note";

#[test]
fn no_color_turns_highlighting_off() {
    let project = empty_project();
    let mut repl = Repl::start(&project, &[("NO_COLOR", "1")]);
    let echoed = raw_echo(&mut repl, TYPED);
    assert!(echoed.contains(TYPED), "the input is echoed as typed: {echoed:?}");
    assert!(!echoed.contains('\x1b'), "no escape sequence: {echoed:?}");
    repl.quit();
}

/// What `input` printed, escape sequences kept, up to the next prompt's text.
fn raw_output(repl: &mut Repl, input: &str) -> String {
    repl.send(&format!("{input}\r"));
    let printed = repl.pty.exp_string(READING).unwrap();
    let after_input = printed
        .rsplit_once(ACCEPTED)
        .map_or(printed.as_str(), |(_, out)| out);
    // The prompt may be painted before the line editor starts reading: leave it out.
    let before_prompt = after_input.split("tweetlake> ").next().unwrap_or_default();
    before_prompt.to_string()
}

const TWO_SERIES: &str = "SELECT * FROM (VALUES (1, 10, 3), (2, 12, 5), (3, 8, 1)) AS t(x, posts, negative);";

#[test]
fn charts_tell_series_apart_by_colour_at_a_terminal_and_by_markers_with_no_color() {
    let project = empty_project();
    let mut coloured = Repl::start(&project, &[("NO_COLOR", "")]);
    coloured.run(TWO_SERIES);
    let chart = raw_output(&mut coloured, "\\chart x posts negative");
    assert!(has_colour(&chart), "{chart:?}");
    assert!(
        plain(&chart).contains("── posts   ── negative   by x"),
        "{chart:?}"
    );
    coloured.quit();

    let mut plain_repl = Repl::start(&project, &[("NO_COLOR", "1")]);
    plain_repl.run(TWO_SERIES);
    let chart = raw_output(&mut plain_repl, "\\chart x posts negative");
    assert!(!chart.contains('\x1b'), "no escape sequence: {chart:?}");
    assert!(chart.contains("* posts   + negative   by x"), "{chart:?}");
    let bars = raw_output(&mut plain_repl, "\\chart bar x posts negative");
    assert!(!bars.contains('\x1b'), "no escape sequence: {bars:?}");
    assert!(
        bars.contains(" 12 posts") && bars.contains("  5 negative"),
        "{bars:?}"
    );
    plain_repl.quit();
}

#[test]
fn typed_sql_is_highlighted_at_a_terminal() {
    let project = empty_project();
    // An empty NO_COLOR asks for nothing (no-color.org).
    let mut repl = Repl::start(&project, &[("NO_COLOR", "")]);
    let echoed = raw_echo(&mut repl, TYPED);
    assert!(
        has_colour(&echoed),
        "keywords, strings, numbers coloured: {echoed:?}"
    );
    assert!(plain(&echoed).contains(TYPED), "{echoed:?}");
    let meta = raw_echo(&mut repl, "\\quer");
    assert!(has_colour(&meta), "the meta-command's name coloured: {meta:?}");
    repl.quit();
}

#[test]
fn every_meta_command_alias_works_at_the_prompt() {
    let project = empty_project();
    let mut repl = Repl::start(&project, &[]);
    let help = repl.run("\\h");
    assert!(help.contains("this help (also \\h, \\help)"), "{help}");
    assert_eq!(repl.run("\\help"), help);
    repl.send("\\quit\r");
    repl.pty.exp_eof().unwrap();
}
