#!/usr/bin/env bash
# Benchmarks resound on this machine: builds the release binaries of the server and of the load
# generator (the resound-bench package in bench/, sharing the workspace's target/), then for
# every scenario and run starts a fresh resound on a free loopback port and drives it with
# resound-bench, which prints one JSON line per run. Bounded: each scenario runs for a fixed
# number of seconds.
#
#   bench/run.sh                  # every scenario, 3 runs each
#   RUNS=1 bench/run.sh fanout-100 trigger
#   RESOUND_METRICS_ENABLED=true bench/run.sh fanout-flat whisper   # with /metrics on
#
# Scenarios: idle fanout-100 fanout-flat channels trigger whisper, and on request
# presence (900 members with 1,000-byte user_info join one presence channel while a probe member
# hears a trigger every 5 ms: join cost, and whether joins stall the channel's traffic),
# fanout-flat-4 and fanout-flat-1 (flat out with 4 or 1 publishers instead of 16) and floor (no server: the kernel's
# own cost of one small write per socket, the lower bound for unbatched fan-out) and
# floor-sparse (the same, 5 sockets per round at 10,000 rounds/s, read by a thread that sleeps in
# epoll_wait between messages, as in `channels`), and
# fanout-2node-100 / fanout-2node-rate-N / fanout-2node-flat (two resound nodes sharing a
# redis-server: subscribers on one node, every trigger sent to the other at 100/s, N/s or flat
# out, so each message crosses Redis), and channels-2node (the channels scenario the same way).
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-3}
DURATION=${DURATION:-10}
scenarios=("$@")
[ ${#scenarios[@]} -gt 0 ] || scenarios=(idle fanout-100 fanout-flat channels trigger whisper)

cargo build --release --locked -p resound -p resound-bench >&2
# Where cargo put them: the workspace's target/, unless CARGO_TARGET_DIR says otherwise.
bin=${CARGO_TARGET_DIR:-target}/release
ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
log=$(mktemp -d)/resound.log
start_server() {
  port=$(free_port)
  env -i PATH="$PATH" REVERB_SERVER_HOST=127.0.0.1 REVERB_SERVER_PORT="$port" \
    REVERB_APP_ID=558412 REVERB_APP_KEY=q7h2x9v4m1n8b3c6z5k0 REVERB_APP_SECRET=w3e8r1t6y9u4i2o7p5a0 \
    REVERB_APP_ACCEPT_CLIENT_EVENTS_FROM=members REVERB_MAX_REQUEST_SIZE=100000 \
    RESOUND_WORKERS="${RESOUND_WORKERS:-0}" RESOUND_METRICS_ENABLED="${RESOUND_METRICS_ENABLED:-false}" "${SCALING[@]}" \
    "$bin/resound" >>"$log" 2>&1 &
  pid=$!
  for _ in $(seq 100); do
    curl -sf "http://127.0.0.1:$port/up" >/dev/null 2>&1 && return 0
    sleep 0.05
  done
  echo "resound did not start; log:" >&2; cat "$log" >&2; exit 1
}
stop_server() { kill -TERM "$pid"; wait "$pid" || true; }

# Two nodes sharing a redis-server: node A (api_port/api_pid) takes the triggers, node B
# (port/pid) the subscribers.
start_pair() {
  command -v redis-server >/dev/null || { echo "redis-server is needed for $scenario" >&2; exit 1; }
  redis_port=$(free_port)
  redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no >/dev/null &
  redis_pid=$!
  for _ in $(seq 100); do (echo > "/dev/tcp/127.0.0.1/$redis_port") 2>/dev/null && break; sleep 0.05; done
  SCALING=(REVERB_SCALING_ENABLED=true REDIS_PORT="$redis_port")
  start_server; api_port=$port; api_pid=$pid
  start_server
  SCALING=()
  # Give the nodes a moment to say hello to each other through Redis (milliseconds here).
  sleep 1
}
stop_pair() {
  stop_server
  kill -TERM "$api_pid"; wait "$api_pid" || true
  kill -TERM "$redis_pid"; wait "$redis_pid" || true
}
SCALING=()
bench_pair() { bench --api-addr "127.0.0.1:$api_port" --api-pid "$api_pid" "$@"; }

bench() { "$bin/resound-bench" --addr "127.0.0.1:$port" --server-pid "$pid" --label "run $run" "$@"; }

echo "# $(date -u +%FT%TZ) $(nproc) cores, load: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
for scenario in "${scenarios[@]}"; do
  for run in $(seq "$RUNS"); do
    case "$scenario" in
      fanout-2node-*|channels-2node) start_pair ;;
      *) start_server ;;
    esac
    case "$scenario" in
      idle) bench idle --connections 19000 ;;
      fanout-100) bench fanout --subscribers 1000 --rate 100 --size 100 --duration "$DURATION" ;;
      fanout-flat) bench fanout --subscribers 1000 --rate 0 --size 100 --duration "$DURATION" --publishers 16 --publisher-thread ;;
      fanout-flat-4) bench fanout --subscribers 1000 --rate 0 --size 100 --duration "$DURATION" --publishers 4 --publisher-thread ;;
      fanout-flat-1) bench fanout --subscribers 1000 --rate 0 --size 100 --duration "$DURATION" --publishers 1 --publisher-thread ;;
      channels) bench channels --channels 1000 --per-channel 5 --size 100 --duration "$DURATION" ;;
      trigger) bench trigger --concurrency 16 --duration "$DURATION" ;;
      whisper) bench whisper --pairs 200 --rate 5 --duration "$DURATION" ;;
      presence) bench presence --members 900 --info 1000 --concurrency 8 ;;
      floor) "$bin/resound-bench" --label "run $run" floor --sockets 1000 --rate 100 --size 100 --duration 5 ;;
      floor-sparse) "$bin/resound-bench" --label "run $run" floor --sockets 1000 --rate 10000 --per-round 5 --epoll-reader --size 100 --duration 5 ;;
      fanout-2node-100) bench_pair fanout --subscribers 1000 --rate 100 --size 100 --duration "$DURATION" ;;
      fanout-2node-flat) bench_pair fanout --subscribers 1000 --rate 0 --size 100 --duration "$DURATION" --publishers 16 --publisher-thread ;;
      channels-2node) bench_pair channels --channels 1000 --per-channel 5 --size 100 --duration "$DURATION" ;;
      fanout-2node-rate-*) bench_pair fanout --subscribers 1000 --rate "${scenario#fanout-2node-rate-}" --size 100 --duration "$DURATION" --publishers 16 --publisher-thread ;;
      *) echo "unknown scenario $scenario" >&2; exit 2 ;;
    esac
    case "$scenario" in
      fanout-2node-*|channels-2node) stop_pair ;;
      *) stop_server ;;
    esac
  done
done
