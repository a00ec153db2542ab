#!/usr/bin/env bash
# Runs every test: Rust unit and integration tests, then the conformance suite with the real
# third-party clients (pusher-js, laravel-echo, the Node and Python Pusher SDKs) against the
# built binary. Installs what it needs (redis-server from Debian when absent; npm packages and
# a Python venv inside the project); every server it starts (resound, redis-server) listens on
# a free loopback port and is stopped at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

# The scaling tests run real redis-server processes (on free loopback ports, stopped by the
# tests). Install Debian's package when it is missing; a daemon the install itself started is
# stopped again, so nothing is left running. Only that one: its PIDs are those running after
# the install and not before, and each is signalled by PID, never by name, so a redis-server
# someone else runs on this machine is left alone.
if ! command -v redis-server >/dev/null 2>&1; then
  echo "== installing redis-server (Debian package)"
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  running_before=$(pgrep -x redis-server | sort || true)
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq redis-server >/dev/null
  running_after=$(pgrep -x redis-server | sort || true)
  started=$(comm -13 <(echo "$running_before") <(echo "$running_after") | grep . || true)
  # A live redis-server (an exited one may linger as a zombie until its parent reaps it).
  is_redis() {
    local s
    s=$(ps -o comm=,stat= -p "$1" 2>/dev/null) || return 1
    [[ $s == redis-server* && $s != *Z* ]]
  }
  for pid in $started; do
    if is_redis "$pid"; then $sudo kill -TERM "$pid" 2>/dev/null || true; fi
  done
  for pid in $started; do
    for _ in $(seq 50); do
      if ! is_redis "$pid"; then break; fi
      sleep 0.1
    done
    if is_redis "$pid"; then
      echo "redis-server $pid, started by the install, is still running" >&2
    fi
  done
fi
command -v redis-server >/dev/null || { echo "redis-server is required and could not be installed" >&2; exit 1; }

# The TLS conformance test makes its CA with the openssl command line (Debian's package).
if ! command -v openssl >/dev/null 2>&1; then
  echo "== installing openssl (Debian package)"
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq openssl >/dev/null
fi

echo "== module shape (no import cycle, no file over 600 lines, the cluster wired only at startup)"
python3 scripts/check-modules.py

echo "== cargo test (unit and integration, server and bench)"
cargo test --locked --workspace --all-targets 2>&1

# Each fuzz target for 20 s from the committed seeds: a smoke test that the targets build and
# that nothing the seeds lead to crashes. Skipped (exit 0) without a nightly toolchain.
# Cost on a fresh 2-core machine: about 4.5 min (installing cargo-fuzz ~40 s, building the
# targets with sanitizers ~2.5 min, then 4 x 20 s); longer runs: scripts/fuzz.sh SECONDS.
echo "== fuzz (scripts/fuzz.sh 20)"
scripts/fuzz.sh 20

echo "== cargo build (binary for the conformance suite)"
cargo build --locked --bin resound 2>&1

echo "== conformance suite (real clients)"
RESOUND_BIN="$PWD/target/debug/resound" conformance/run.sh

# The Dockerfile, built for real and run as a container with podman (installed when absent),
# on base-image stand-ins made from Debian's packages: no registry is reachable from here.
# About 3 minutes on 2 cores (the release build). See the script's header and docs/deployment.md.
echo "== container image (scripts/test-image.sh)"
scripts/test-image.sh
