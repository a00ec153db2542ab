#!/usr/bin/env bash
# Runs every test: Rust unit and integration tests, then the conformance suite with the real
# third-party clients (pusher-js, laravel-echo, the Node and Python Pusher SDKs) against the
# built binary. Installs what it needs inside the project (npm packages, a Python venv); every
# server it starts listens on a free loopback port and is stopped at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== cargo test (unit and integration)"
cargo test --locked --all-targets 2>&1

echo "== cargo build (binary for the conformance suite)"
cargo build --locked --bin resound 2>&1

echo "== conformance suite (real clients)"
RESOUND_BIN="$PWD/target/debug/resound" conformance/run.sh
