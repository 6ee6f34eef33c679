"""Checks `tweetlake serve` with the real psycopg 3 client; run by tests/serve.rs.

    python psycopg_checks.py CHECK PORT [ARGS...]

Each check asserts what it expects and exits 0, or fails with a message (exit 1). Every wait
is bounded: connections and statements time out.
"""

import datetime
import json
import re
import sys
import threading
import time

import psycopg
from psycopg import errors

TIMEOUT = 60


def connect(port, autocommit=False, password=None, **options):
    conninfo = f"host=127.0.0.1 port={port} user=grafana dbname=lake connect_timeout=30"
    if password is not None:
        conninfo += f" password={password}"
    return psycopg.connect(conninfo, autocommit=autocommit, **options)


def one(cursor):
    rows = cursor.fetchall()
    assert len(rows) == 1, rows
    return rows[0]


def expect_error(conn, sql, sqlstate, contains=""):
    try:
        conn.execute(sql)
    except psycopg.Error as error:
        assert error.sqlstate == sqlstate, f"{sql}: {error.sqlstate} {error}"
        assert contains in str(error), f"{sql}: {error}"
        if not conn.autocommit:
            conn.rollback()
        return str(error)
    raise AssertionError(f"{sql}: no error, expected {sqlstate}")


def protocols(port):
    """Simple and extended protocol, %s and timestamp parameters, prepared statements,
    client-side binding, server-side (named) cursors."""
    with connect(port) as conn:  # autocommit off: psycopg sends BEGIN first
        total = one(conn.execute("SELECT count(*) FROM gold.company_minute"))[0]
        assert total > 0, total
        company, posts = conn.execute(
            "SELECT company, sum(posts) FROM gold.company_minute GROUP BY company ORDER BY 2 DESC LIMIT 1"
        ).fetchone()
        # Extended protocol: a text parameter of unknown type.
        bound = conn.execute(
            "SELECT sum(posts) FROM gold.company_minute WHERE company = %s", (company,)
        ).fetchone()[0]
        assert bound == posts, (bound, posts)
        # Timestamp parameters: aware (timestamptz) and naive (timestamp), sent binary.
        first, last = conn.execute("SELECT min(minute), max(minute) FROM gold.company_minute").fetchone()
        assert isinstance(first, datetime.datetime) and first.tzinfo is not None, first
        between = conn.execute(
            "SELECT count(*) FROM gold.company_minute WHERE minute >= %s AND minute <= %s",
            (first, last.replace(tzinfo=None)),
        ).fetchone()[0]
        assert between == total, (between, total)
        # int2, float8 and bool parameters (sent binary).
        assert conn.execute("SELECT %s::int + 1", (41,)).fetchone() == (42,)
        typed = conn.execute(
            "SELECT count(*) FROM gold.company_minute WHERE posts > %s AND coalesce(sentiment_mean, 0) > %s AND %s",
            (0, -2.0, True),
        ).fetchone()[0]
        assert typed == total, (typed, total)
        # The sixth execution of a query goes through a named prepared statement.
        for n in range(8):
            assert conn.execute("SELECT count(*) + %s FROM gold.company_minute", (n,)).fetchone()[0] == total + n
        # Client-side binding: the simple protocol with literals inlined.
        client = psycopg.ClientCursor(conn)
        client.execute(
            "SELECT count(*) FROM gold.company_minute WHERE minute >= %s AND company = %s", (first, company)
        )
        assert client.fetchone()[0] > 0
        conn.commit()
        # A server-side cursor with a parameter: DECLARE, then FETCH.
        with conn.cursor(name="panel") as named:
            named.itersize = 2
            named.execute("SELECT company FROM gold.company_minute WHERE posts > %s ORDER BY company", (0,))
            head = named.fetchmany(3)
            rest = named.fetchall()
            assert len(head) == 3 and len(head) + len(rest) == total, (head, len(rest), total)
        conn.commit()
    with connect(port, autocommit=True) as conn:
        assert conn.execute("SELECT 2").fetchone() == (2,)
        # The REPL's time travel syntax works over the wire.
        versions = conn.execute("SELECT count(*) FROM bronze VERSION AS OF 0").fetchone()[0]
        assert versions > 0, versions
    print("protocols ok")


def read_only(port):
    """Writes to the lake are refused with 25006; views, temporary tables and SET are per
    connection."""
    with connect(port, autocommit=True) as conn, connect(port, autocommit=True) as other:
        before = conn.execute("SELECT count(*) FROM bronze").fetchone()[0]
        for sql in [
            "INSERT INTO bronze SELECT * FROM bronze",
            "DELETE FROM dlq",
            "UPDATE silver.tweets SET text = 'x'",
            "DROP TABLE bronze",
            "DROP TABLE silver.tweets",
            "CREATE OR REPLACE VIEW gold.company_minute AS SELECT 1",
            "COPY (SELECT 1) TO '/tmp/tweetlake-copy.csv'",
            "EXPLAIN ANALYZE INSERT INTO bronze SELECT * FROM bronze",
        ]:
            message = expect_error(conn, sql, "25006", "read-only")
            print(f"refused: {sql}: {message}")
        # DataFusion's syntax for reading server files does not even parse here.
        expect_error(conn, "CREATE EXTERNAL TABLE leak STORED AS CSV LOCATION '/etc/passwd'", "42601")
        conn.execute("SET datafusion.execution.batch_size = 1024")
        conn.execute("CREATE VIEW mine AS SELECT company, count(*) AS n FROM silver.tweets GROUP BY company")
        conn.execute("CREATE TABLE scratch AS SELECT 1 AS one")
        assert conn.execute("SELECT count(*) FROM mine").fetchone()[0] > 0
        assert conn.execute("SELECT one FROM scratch").fetchone() == (1,)
        expect_error(other, "SELECT * FROM mine", "42P01", "mine")
        expect_error(other, "SELECT * FROM scratch", "42P01", "scratch")
        expect_error(other, "SELECT * FROM no_such_table", "42P01", "no_such_table")
        after = conn.execute("SELECT count(*) FROM bronze").fetchone()[0]
        assert after == before, (before, after)
        # The time-travel schema is nowhere in the catalogs.
        schemas = [r[0] for r in conn.execute("SELECT schema_name FROM information_schema.schemata").fetchall()]
        namespaces = [r[0] for r in conn.execute("SELECT nspname FROM pg_catalog.pg_namespace").fetchall()]
        assert "__time_travel" not in schemas + namespaces, (schemas, namespaces)
        assert {"public", "silver", "gold"} <= set(schemas), schemas
    print("read_only ok")


def grafana(port, replay_file):
    """Replays the queries Grafana's PostgreSQL data source sends, as it sends them (the simple
    protocol, no parameters)."""
    replay = json.load(open(replay_file))
    with connect(port, autocommit=True) as conn:
        for name, check in replay.items():
            cursor = conn.execute(check["sql"])
            rows = cursor.fetchall() if cursor.description else []
            columns = [c.name for c in cursor.description] if cursor.description else []
            assert columns == check["columns"], (name, columns)
            for row in check.get("contains", []):
                assert tuple(row) in rows, (name, row, rows[:10])
            assert len(rows) >= check.get("min_rows", 0), (name, rows)
            print(f"{name}: {len(rows)} rows {columns}")
    print("grafana ok")


# Grafana's postgres macro engine (pkg/tsdb/grafana-postgresql-datasource/macros.go), for a
# fixed time range: `$__name(args)` with the same regex, then `$__interval`-style globals.
MACRO = re.compile(r"\$([_a-zA-Z0-9]+)\(([^\)]*)\)")
INTERVALS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def rfc3339(t):
    text = t.strftime("%Y-%m-%dT%H:%M:%S")
    if t.microsecond:
        text += ("%.6f" % (t.microsecond / 1e6))[1:].rstrip("0")
    return text + "Z"


def seconds(interval):
    interval = interval.strip().strip("'\"")
    return int(interval[:-1]) * INTERVALS[interval[-1]]


def go_number(value):
    """Go's %v for a float64 of whole seconds."""
    return str(int(value)) if float(value).is_integer() else repr(value)


def expand(sql, start, end):
    def macro(match):
        name, args = match.group(1), [a.strip() for a in match.group(2).split(",")]
        if name == "__timeFilter":
            return f"{args[0]} BETWEEN '{rfc3339(start)}' AND '{rfc3339(end)}'"
        if name == "__timeFrom":
            return f"'{rfc3339(start)}'"
        if name == "__timeTo":
            return f"'{rfc3339(end)}'"
        if name in ("__timeGroup", "__timeGroupAlias"):
            step = go_number(seconds(args[1]))
            group = f"floor(extract(epoch from {args[0]})/{step})*{step}"
            return group + (' AS "time"' if name == "__timeGroupAlias" else "")
        if name == "__time":
            return f'{args[0]} AS "time"'
        if name == "__timeEpoch":
            return f'extract(epoch from {args[0]}) as "time"'
        if name == "__unixEpochFilter":
            return f"{args[0]} >= {int(start.timestamp())} AND {args[0]} <= {int(end.timestamp())}"
        raise AssertionError(f"macro ${name} is not expanded by this test")

    expanded = MACRO.sub(macro, sql)
    return expanded.replace("$__interval_ms", "60000").replace("$__interval", "1m")


def dashboard(port, dashboard_file):
    """Every panel query of the dashboard, its macros expanded as Grafana does over the lake's
    whole time range, returns rows with the columns Grafana needs."""
    board = json.load(open(dashboard_file))
    with connect(port, autocommit=True) as conn:
        # The whole span of the data: the posts' times and the dead letters' ingestion times.
        first, last = conn.execute(
            "SELECT least(min(minute), (SELECT min(_ingested_at) FROM dlq)), "
            "greatest(max(minute), (SELECT max(_ingested_at) FROM dlq)) FROM gold.company_minute"
        ).fetchone()
        start = (first - datetime.timedelta(hours=1)).astimezone(datetime.timezone.utc).replace(tzinfo=None)
        end = (last + datetime.timedelta(hours=1)).astimezone(datetime.timezone.utc).replace(tzinfo=None)
        panels = [p for p in board["panels"] if p.get("targets")]
        assert len(panels) >= 6, [p.get("title") for p in panels]
        for panel in panels:
            assert panel["datasource"]["uid"] == "tweetlake-lake", panel["title"]
            for target in panel["targets"]:
                sql = expand(target["rawSql"], start, end)
                assert "$__" not in sql, sql
                cursor = conn.execute(sql)
                rows = cursor.fetchall()
                columns = [c.name for c in cursor.description]
                assert rows, f"{panel['title']}: no rows from {sql}"
                if target.get("format") == "time_series":
                    assert columns[0] == "time", (panel["title"], columns)
                    assert all(isinstance(r[0], (int, float, datetime.datetime)) for r in rows), panel["title"]
                    numeric = [i for i, v in enumerate(rows[0]) if isinstance(v, (int, float)) and i > 0]
                    assert numeric, (panel["title"], rows[0])
                print(f"{panel['title']}: {len(rows)} rows {columns}")
    print("dashboard ok")


def cancel(port, slow_sql):
    """cancel_safe() during a long query stops it with 57014, and the connection goes on."""
    with connect(port, autocommit=True) as conn:
        outcome = {}

        def run():
            started = time.monotonic()
            try:
                conn.execute(slow_sql)
                outcome["error"] = None
            except psycopg.Error as error:
                outcome["error"] = error
            outcome["seconds"] = time.monotonic() - started

        worker = threading.Thread(target=run)
        worker.start()
        time.sleep(1.5)
        conn.cancel_safe(timeout=10)
        worker.join(TIMEOUT)
        assert not worker.is_alive(), "the query went on after the cancel"
        error = outcome["error"]
        assert isinstance(error, errors.QueryCanceled), repr(error)
        assert error.sqlstate == "57014", error.sqlstate
        assert conn.execute("SELECT 1").fetchone() == (1,)
        print(f"cancel ok after {outcome['seconds']:.1f} s: {error}")


def error_code(port, sql, sqlstate, contains):
    """`sql` fails with `sqlstate` and a message holding `contains`."""
    with connect(port, autocommit=True) as conn:
        print(expect_error(conn, sql, sqlstate, contains))
        assert conn.execute("SELECT 1").fetchone() == (1,)


def concurrent(port, clients, sql):
    """`clients` connections run `sql` at once; all get the same rows."""
    results, failures = [], []
    barrier = threading.Barrier(clients, timeout=TIMEOUT)

    def client():
        try:
            with connect(port, autocommit=True) as conn:
                barrier.wait()
                results.append(conn.execute(sql).fetchall())
        except Exception as error:  # noqa: BLE001 - reported below
            failures.append(repr(error))

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(TIMEOUT * 2)
    assert not failures, failures
    assert len(results) == clients, len(results)
    assert all(r == results[0] and r for r in results), "clients got different rows"
    print(f"concurrent ok: {clients} clients, {len(results[0])} rows each")


def login(port, password, expect):
    """A connection with `password` succeeds (`ok`) or is refused as a wrong password (`refused`)."""
    try:
        with connect(port, autocommit=True, password=password) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
            outcome = "ok"
    except psycopg.OperationalError as error:
        assert "password authentication failed" in str(error).lower(), str(error)
        outcome = "refused"
    assert outcome == expect, (outcome, expect)
    print(f"login {outcome}")


def bench(port, clients, seconds, sql):
    """Queries/s and latency percentiles of `sql` with `clients` connections for `seconds`."""
    latencies, failures = [], []
    deadline = time.monotonic() + seconds

    def client():
        try:
            with connect(port, autocommit=True) as conn:
                while time.monotonic() < deadline:
                    started = time.monotonic()
                    conn.execute(sql).fetchall()
                    latencies.append(time.monotonic() - started)
        except Exception as error:  # noqa: BLE001 - reported below
            failures.append(repr(error))

    started = time.monotonic()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(seconds + TIMEOUT)
    elapsed = time.monotonic() - started
    assert not failures, failures
    latencies.sort()
    pick = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000  # noqa: E731
    print(
        f"{clients} client(s): {len(latencies) / elapsed:.1f} queries/s, "
        f"p50 {pick(0.50):.1f} ms, p99 {pick(0.99):.1f} ms ({len(latencies)} queries in {elapsed:.1f} s)"
    )


CHECKS = {
    "protocols": lambda port: protocols(port),
    "read_only": lambda port: read_only(port),
    "grafana": lambda port, replay: grafana(port, replay),
    "dashboard": lambda port, board: dashboard(port, board),
    "cancel": lambda port, sql: cancel(port, sql),
    "error_code": lambda port, sql, code, contains: error_code(port, sql, code, contains),
    "concurrent": lambda port, n, sql: concurrent(port, int(n), sql),
    "login": lambda port, password, expect: login(port, password, expect),
    "bench": lambda port, n, s, sql: bench(port, int(n), float(s), sql),
}

if __name__ == "__main__":
    CHECKS[sys.argv[1]](*sys.argv[2:])
