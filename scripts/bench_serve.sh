#!/usr/bin/env bash
# Benchmarks `tweetlake serve`: queries/s and p50/p99 latency of a typical dashboard panel query
# with 1 and 20 clients (psycopg, each client on its own connection, back to back), over a lake
# written by `tweetlake demo`.
#
#   scripts/bench_serve.sh [SECONDS]         default 20 s per run
#
# Uses TWEETLAKE_BIN (default target/release/tweetlake, built when missing) and the psycopg venv
# scripts/services.sh installs (TWEETLAKE_TEST_PYTHON; eval "$(scripts/services.sh env)").
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
SECONDS_PER_RUN="${1:-20}"
BIN="${TWEETLAKE_BIN:-$ROOT/target/release/tweetlake}"
PYTHON="${TWEETLAKE_TEST_PYTHON:?run scripts/services.sh start, then eval \"\$(scripts/services.sh env)\"}"
PANEL="SELECT floor(extract(epoch from minute)/60)*60 AS \"time\", company AS metric, \
CAST(sum(sentiment_sum) AS DOUBLE) / nullif(sum(scored_posts), 0) AS sentiment \
FROM gold.company_minute WHERE minute BETWEEN '2026-11-18T10:00:00Z' AND '2026-11-18T12:00:00Z' \
GROUP BY 1, 2 ORDER BY 1"

if [[ ! -x $BIN ]]; then
  (cd "$ROOT" && cargo build --release --locked)
fi
WORK="$(mktemp -d)"
SERVER=""
cleanup() {
  [[ -n $SERVER ]] && kill "$SERVER" 2>/dev/null && wait "$SERVER" 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT

"$BIN" demo --lake "$WORK/lake" >/dev/null
TWEETLAKE_LAKE__URI="$WORK/lake" "$BIN" serve --listen 127.0.0.1:0 >"$WORK/serve.out" 2>"$WORK/serve.err" &
SERVER=$!
for _ in $(seq 100); do
  grep -q 'postgres://' "$WORK/serve.out" && break
  sleep 0.1
done
PORT="$(sed -n 's|.*postgres://127.0.0.1:\([0-9]*\).*|\1|p' "$WORK/serve.out")"
[[ -n $PORT ]] || { cat "$WORK/serve.err" >&2; echo "bench_serve: the server did not start" >&2; exit 1; }

echo "panel query: $PANEL"
for clients in 1 20; do
  "$PYTHON" "$ROOT/tests/clients/psycopg_checks.py" bench "$PORT" "$clients" "$SECONDS_PER_RUN" "$PANEL"
done
