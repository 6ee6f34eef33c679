#!/usr/bin/env bash
# The whole test suite: formatting, then every unit and integration test.
# Tests use real files and a real Delta lake on local disk; they need no server yet.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null 2>&1; then
  echo "error: cargo not found: install Rust from https://rustup.rs" >&2
  exit 1
fi
rustup component add rustfmt >/dev/null 2>&1 || true

cargo fmt --all -- --check
cargo test --locked "$@"
