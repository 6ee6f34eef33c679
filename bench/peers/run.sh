#!/usr/bin/env bash
# tweetlake beside the pipelines one would write instead, on the same generated posts.
#
#   bench/peers/run.sh [--records N] [--runs R] [--kafka HOST:PORT] [--partitions P]
#                      [--spark] [--only tweetlake,python,spark] [--work DIR]
#
# Generates N synthetic X v2 stream messages (`tweetlake produce synth`, seed 42), then runs each
# pipeline R times, interleaved (tweetlake, python, spark, tweetlake, ...), each into a fresh lake:
#   tweetlake  `tweetlake run --once`, the built-in models (`tweetlake init`), file source
#   python     python_pipeline.py: pyarrow JSON decode, DuckDB SQL, VADER, deltalake writes and merges
#   spark      spark_pipeline.py (--spark): Structured Streaming, file source, Parquet (no Delta jars)
# With --kafka, the posts are also produced to a fresh topic and tweetlake and python consume it.
# Each run is measured by measure.py (wall time, CPU of the whole process tree, peak resident
# memory); the table is printed at the end and kept in WORK/results.md, the raw numbers in
# WORK/results.jsonl, each run's output in WORK/logs/; WORK/parity.txt compares the silver and
# gold of tweetlake's and the Python pipeline's first file-source lakes (compare.py).
#
# Environment: TWEETLAKE (the binary; default target/release/tweetlake, else on PATH),
# PEERS_CACHE (the venv; default ~/.cache/tweetlake-peers), PYTHON (to make the venv: python3).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
records=200000
runs=2
kafka=""
partitions=1
spark=0
only="tweetlake,python,spark"
work=${TMPDIR:-/tmp}/tweetlake-peers
while [ $# -gt 0 ]; do
    case $1 in
        --records) records=$2; shift 2 ;;
        --runs) runs=$2; shift 2 ;;
        --kafka) kafka=$2; shift 2 ;;
        --partitions) partitions=$2; shift 2 ;;
        --spark) spark=1; shift ;;
        --only) only=$2; shift 2 ;;
        --work) work=$2; shift 2 ;;
        -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
        *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
done
wants() { [[ ",$only," == *",$1,"* ]]; }

tweetlake=${TWEETLAKE:-}
if [ -z "$tweetlake" ]; then
    if [ -x "$repo/target/release/tweetlake" ]; then tweetlake=$repo/target/release/tweetlake
    else tweetlake=$(command -v tweetlake || true); fi
fi
[ -x "$tweetlake" ] || { echo "no tweetlake binary: cargo build --release, or set TWEETLAKE" >&2; exit 1; }

# The Python environment, made once per requirements file.
cache=${PEERS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tweetlake-peers}
venv=$cache/venv
reqs=("$here/requirements.txt")
[ "$spark" = 1 ] && reqs+=("$here/requirements-spark.txt")
stamp=$(cat "${reqs[@]}" | sha256sum | cut -c1-16)
if [ ! -f "$venv/.stamp-$stamp" ]; then
    echo "== python environment in $venv"
    "${PYTHON:-python3}" -m venv "$venv"
    "$venv/bin/pip" install -q --upgrade pip
    for r in "${reqs[@]}"; do "$venv/bin/pip" install -q -r "$r"; done
    touch "$venv/.stamp-$stamp"
fi
py=$venv/bin/python
if [ "$spark" = 1 ]; then
    command -v java >/dev/null || { echo "--spark needs Java 17 or 21 (java on PATH)" >&2; exit 1; }
fi

mkdir -p "$work/logs"
posts=$work/posts-$records.jsonl
# The binary's own models and companies.csv: the same as the repository's sql/ for a binary built
# from this commit.
rm -rf "$work/project"
"$tweetlake" init "$work/project" --log warn >/dev/null
sql=$work/project/sql
batch_records=100000
batch_bytes=50331648  # tweetlake's defaults: pipeline.max_records_per_batch, max_bytes_per_batch
if [ ! -s "$posts" ]; then
    echo "== generating $records posts"
    "$tweetlake" produce synth --count "$records" --seed 42 -o "$posts.tmp" --log warn
    mv "$posts.tmp" "$posts"
fi

results=$work/results.jsonl
: > "$results"
stamp_now=$(date -u +%Y%m%d%H%M%S)

measure() {  # measure NAME SOURCE RUN -- COMMAND...
    local name=$1 source=$2 run=$3; shift 4
    local log=$work/logs/$name-$source-$run.log out=$work/logs/$name-$source-$run.json
    echo "== $name, $source, run $run ($(uptime | sed 's/.*load/load/'))"
    if ! "$py" "$here/measure.py" "$out" -- "$@" > "$log" 2>&1; then
        echo "   FAILED, see $log" >&2
        tail -5 "$log" >&2
        return 0
    fi
    "$py" - "$out" "$name" "$source" "$run" "$records" >> "$results" <<'EOF'
import json, sys
out, name, source, run, records = sys.argv[1:]
r = json.load(open(out))
r.update(pipeline=name, source=source, run=int(run), posts=int(records))
print(json.dumps(r))
EOF
    tail -1 "$results" | "$py" -c 'import json, sys; r = json.load(sys.stdin); print("   %.0f posts/s, %.1f CPU s, %.0f MiB peak" % (r["posts"] / r["wall_s"], r["cpu_s"], r["peak_rss_mib"]))'
}

tweetlake_config() {  # tweetlake_config LAKE [kafka TOPIC GROUP]
    cat <<EOF
[source]
kind = "${2:-file}"
path = "$posts"
EOF
    if [ "${2:-file}" = kafka ]; then
        printf 'bootstrap_servers = "%s"\ntopic = "%s"\ngroup_id = "%s"\n' "$kafka" "$3" "$4"
    fi
    cat <<EOF
[lake]
uri = "$1"
[pipeline]
name = "peers"
sql_dir = "$sql"
max_records_per_batch = $batch_records
max_bytes_per_batch = $batch_bytes
progress_log = "-"
[metrics]
listen = ""
EOF
}

if [ "$spark" = 1 ] && wants spark; then
    rm -rf "$work/spark-input"
    "$py" "$here/spark_pipeline.py" split --file "$posts" --out "$work/spark-input" \
        --max-records $batch_records --max-bytes $batch_bytes
fi

topic=""
if [ -n "$kafka" ]; then
    topic=peers-$records-$stamp_now
    echo "== producing $records posts to topic $topic ($partitions partitions) at $kafka"
    "$py" - "$kafka" "$topic" "$partitions" <<'EOF'
import sys
from confluent_kafka.admin import AdminClient, NewTopic
servers, topic, partitions = sys.argv[1], sys.argv[2], int(sys.argv[3])
admin = AdminClient({"bootstrap.servers": servers})
for t, f in admin.create_topics([NewTopic(topic, partitions, 1)]).items():
    f.result(30)
EOF
    "$tweetlake" produce synth --count "$records" --seed 42 --kafka --bootstrap-servers "$kafka" \
        --topic "$topic" --log warn
fi

for run in $(seq 1 "$runs"); do
    if wants tweetlake; then
        lake=$work/lake-tweetlake-file-$run; rm -rf "$lake"
        tweetlake_config "$lake" > "$work/tweetlake-file.toml"
        measure tweetlake file "$run" -- "$tweetlake" run --once -c "$work/tweetlake-file.toml"
    fi
    if wants python; then
        lake=$work/lake-python-file-$run; rm -rf "$lake"
        measure python file "$run" -- "$py" "$here/python_pipeline.py" --file "$posts" \
            --lake "$lake" --companies "$sql/companies.csv" \
            --max-records $batch_records --max-bytes $batch_bytes
    fi
    if [ "$spark" = 1 ] && wants spark; then
        out=$work/lake-spark-file-$run; rm -rf "$out"
        measure spark file "$run" -- "$py" "$here/spark_pipeline.py" run \
            --input "$work/spark-input" --out "$out" --companies "$sql/companies.csv"
    fi
    if [ -n "$kafka" ]; then
        if wants tweetlake; then
            lake=$work/lake-tweetlake-kafka-$run; rm -rf "$lake"
            tweetlake_config "$lake" kafka "$topic" "peers-tweetlake-$stamp_now-$run" \
                > "$work/tweetlake-kafka.toml"
            measure tweetlake kafka "$run" -- "$tweetlake" run --once -c "$work/tweetlake-kafka.toml"
        fi
        if wants python; then
            lake=$work/lake-python-kafka-$run; rm -rf "$lake"
            measure python kafka "$run" -- "$py" "$here/python_pipeline.py" --kafka "$kafka" \
                --topic "$topic" --group "peers-python-$stamp_now-$run" --lake "$lake" \
                --companies "$sql/companies.csv" \
                --max-records $batch_records --max-bytes $batch_bytes
        fi
    fi
done

TWEETLAKE_VERSION=$("$tweetlake" --version) "$py" "$here/table.py" "$results" | tee "$work/results.md"

# Do the Python pipeline's silver and gold equal tweetlake's? (first runs, file source)
if [ -d "$work/lake-tweetlake-file-1/silver" ] && [ -d "$work/lake-python-file-1/silver" ]; then
    "$py" "$here/compare.py" "$work/lake-tweetlake-file-1" "$work/lake-python-file-1" \
        > "$work/parity.txt" && echo "(silver and gold of tweetlake and python compared: $work/parity.txt)"
fi
