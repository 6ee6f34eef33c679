#!/usr/bin/env bash
# The whole test suite: formatting, then every unit and integration test.
# Integration tests also use a real Kafka broker and a real S3 store: scripts/services.sh starts
# local ones on 127.0.0.1 (installing them on first use) and they are stopped again at the end,
# unless they were already running before this script.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null 2>&1; then
  echo "error: cargo not found: install Rust from https://rustup.rs" >&2
  exit 1
fi
rustup component add rustfmt clippy >/dev/null 2>&1 || true

cargo fmt --all -- --check

if scripts/services.sh status >/dev/null 2>&1; then
  echo "test.sh: using the services that already run (scripts/services.sh status)" >&2
else
  trap 'scripts/services.sh stop' EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  scripts/services.sh start
fi
# TWEETLAKE_TEST_KAFKA, TWEETLAKE_TEST_S3_ENDPOINT, TWEETLAKE_TEST_S3_BUCKET and the AWS_* keys.
eval "$(scripts/services.sh env)"

cargo clippy --all-targets --locked -- -D warnings
cargo test --locked "$@"
# The Kubernetes manifests, compose file and dashboards, validated offline.
scripts/check-deploy.sh
