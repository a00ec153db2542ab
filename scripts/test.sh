#!/usr/bin/env bash
# Runs every test: Rust unit and integration tests, then the conformance suite with the real
# third-party clients (pusher-js, laravel-echo, the Node and Python Pusher SDKs) against the
# built binary. Installs what it needs (redis-server from Debian when absent; npm packages and
# a Python venv inside the project); every server it starts (resound, redis-server) listens on
# a free loopback port and is stopped at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

# The scaling tests run real redis-server processes (on free loopback ports, stopped by the
# tests). Install Debian's package when it is missing; a daemon the package may start is
# stopped again, so nothing is left running.
if ! command -v redis-server >/dev/null 2>&1; then
  echo "== installing redis-server (Debian package)"
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  running_before=$(pgrep -x redis-server || true)
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq redis-server >/dev/null
  if [ -z "$running_before" ] && pgrep -x redis-server >/dev/null; then
    $sudo service redis-server stop >/dev/null 2>&1 || $sudo pkill -x redis-server || true
  fi
fi
command -v redis-server >/dev/null || { echo "redis-server is required and could not be installed" >&2; exit 1; }

echo "== cargo test (unit and integration, server and bench)"
cargo test --locked --workspace --all-targets 2>&1

echo "== cargo build (binary for the conformance suite)"
cargo build --locked --bin resound 2>&1

echo "== conformance suite (real clients)"
RESOUND_BIN="$PWD/target/debug/resound" conformance/run.sh
