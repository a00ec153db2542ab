#!/usr/bin/env bash
# The restart of docs/deployment.md, measured: 2,000 WebSocket clients (reconnecting as
# pusher-js does) on a resound; a second resound starts on the same port (SO_REUSEPORT);
# the first gets SIGTERM and drains. Prints where every client ended up, failed attempts,
# and the largest number of reconnects in any 100 ms.
#
#   bench/handover.sh [clients=2000] [drain_seconds=10]
#   bench/handover.sh resets [rounds=20]     # accept-queue resets at close (see the docs)
#
# Needs Node 20 and conformance/node_modules (conformance/run.sh installs them); uses
# RESOUND_BIN, by default target/release/resound. Loopback only; stops what it started.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
export RESOUND_BIN="${RESOUND_BIN:-$root/target/release/resound}"
if [ ! -d "$root/conformance/node_modules" ]; then
  (cd "$root/conformance" && npm ci --no-audit --no-fund --loglevel=error)
fi
cd "$root/conformance"
if [ "${1:-}" = resets ]; then
  exec node lib/handover.mjs resets "${2:-20}"
fi
exec node lib/handover.mjs "${1:-2000}" "${2:-10}"
