#!/usr/bin/env bash
# Soak test (not run in CI): two resound nodes sharing a redis-server, on free loopback ports,
# under a mixed load for SECONDS (default 3600), with Redis restarted every ~10 minutes and one
# node SIGKILLed (and restarted) at half time. The load and the check are bench/soak.mjs; this
# script owns the processes: it builds, starts them, makes the faults, writes what it did to
# events.log (the check reads it), and stops everything it started, by PID, on exit.
#
#   bench/soak.sh            # one hour
#   bench/soak.sh 180        # a 3-minute validation run (faults scaled: Redis at 1/3 and 2/3, kill at 1/2)
#                            (below ~2 minutes, slow consumers and abuse are left out: they would outlive the run)
#
# Results (soak.csv, summary.txt, gaps.csv, the servers' logs) go to SOAK_DIR, by default a
# new directory under /tmp. Exit status: 0 clean; 1 a reading client lost or got twice an
# event while connected; 2 the run itself failed. The load's knobs (SOAK_READERS,
# SOAK_RATE, ...) are read by bench/soak/common.mjs.
set -euo pipefail
cd "$(dirname "$0")/.."

duration=${1:-3600}
[[ $duration =~ ^[0-9]+$ ]] && [ "$duration" -ge 60 ] || { echo "usage: bench/soak.sh [SECONDS >= 60]" >&2; exit 2; }
redis_down=${SOAK_REDIS_DOWN:-3} # seconds Redis stays down at each restart
node_down=${SOAK_NODE_DOWN:-2}   # seconds the killed node stays down

command -v redis-server >/dev/null || { echo "soak: redis-server is needed" >&2; exit 2; }
[ "$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)" -ge 20 ] \
  || { echo "soak: Node.js 20 or newer is needed" >&2; exit 2; }

cargo build --release --locked -p resound >&2
bin=${CARGO_TARGET_DIR:-target}/release/resound
# The driver borrows ws and pusher from the conformance suite's pinned install.
if [ ! -d conformance/node_modules/ws ] || [ ! -d conformance/node_modules/pusher ]; then
  (cd conformance && npm ci --no-audit --no-fund --loglevel=error >&2)
fi

dir=${SOAK_DIR:-$(mktemp -d -t resound-soak.XXXXXX)}
mkdir -p "$dir"
: >"$dir/events.log"
ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)"

APP_ID=558412 APP_KEY=q7h2x9v4m1n8b3c6z5k0 APP_SECRET=w3e8r1t6y9u4i2o7p5a0
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
now_ms() { date +%s%3N; }
event() { echo "$(now_ms) $*" >>"$dir/events.log"; }

redis_port=$(free_port)
ports=("$(free_port)" "$(free_port)")
redis_pid='' node_pids=('' '') driver_pid=''

write_pids() {
  {
    [ -z "$redis_pid" ] || echo "redis $redis_pid"
    for i in 0 1; do [ -z "${node_pids[$i]}" ] || echo "node$((i + 1)) ${node_pids[$i]}"; done
  } >"$dir/pids.tmp"
  mv "$dir/pids.tmp" "$dir/pids"
}

# Waits for PID to exit, at most $2 seconds; then SIGKILL.
stop_pid() {
  local pid=$1 grace=$2
  kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq $((grace * 10))); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

cleanup() {
  trap - EXIT INT TERM
  [ -z "$driver_pid" ] || stop_pid "$driver_pid" 5
  for i in 0 1; do [ -z "${node_pids[$i]}" ] || stop_pid "${node_pids[$i]}" 12; done
  [ -z "$redis_pid" ] || stop_pid "$redis_pid" 5
  rm -f "$dir/pids"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

start_redis() {
  redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no >>"$dir/redis.log" 2>&1 &
  redis_pid=$!
  for _ in $(seq 100); do (echo >"/dev/tcp/127.0.0.1/$redis_port") 2>/dev/null && break; sleep 0.05; done
  write_pids
}

start_node() {
  local i=$1 port=${ports[$1]}
  env -i PATH="$PATH" REVERB_SERVER_HOST=127.0.0.1 REVERB_SERVER_PORT="$port" \
    REVERB_APP_ID=$APP_ID REVERB_APP_KEY=$APP_KEY REVERB_APP_SECRET=$APP_SECRET \
    REVERB_SCALING_ENABLED=true REDIS_PORT="$redis_port" \
    RESOUND_SCALING_BEAT_INTERVAL=1 RESOUND_SCALING_PEER_TIMEOUT=4 \
    "$bin" >>"$dir/node$((i + 1)).log" 2>&1 &
  node_pids[$i]=$!
  write_pids
  for _ in $(seq 200); do
    curl -sf "http://127.0.0.1:$port/up" >/dev/null 2>&1 && return 0
    sleep 0.05
  done
  echo "soak: node$((i + 1)) did not start; see $dir/node$((i + 1)).log" >&2
  exit 2
}

restart_redis() {
  echo "soak: stopping Redis (pid $redis_pid) for $redis_down s" >&2
  event redis-down
  kill -TERM "$redis_pid"
  wait "$redis_pid" 2>/dev/null || true
  redis_pid=''
  write_pids
  sleep "$redis_down"
  start_redis
  event redis-up
}

kill_node() {
  local i=$1
  echo "soak: SIGKILL node$((i + 1)) (pid ${node_pids[$i]}), restart in $node_down s" >&2
  event kill "node$((i + 1))"
  kill -KILL "${node_pids[$i]}"
  wait "${node_pids[$i]}" 2>/dev/null || true
  node_pids[$i]=''
  write_pids
  sleep "$node_down"
  start_node "$i"
  event node-up "node$((i + 1))"
}

driver_alive() { kill -0 "$driver_pid" 2>/dev/null; }

start_redis
start_node 0
start_node 1
sleep 1 # the nodes say hello to each other through Redis (milliseconds here)
echo "soak: redis $redis_port (pid $redis_pid), node1 ${ports[0]} (pid ${node_pids[0]}), node2 ${ports[1]} (pid ${node_pids[1]}); results in $dir" >&2

SOAK_DIR=$dir SOAK_SECONDS=$duration SOAK_PORTS="${ports[0]},${ports[1]}" \
  SOAK_APP_ID=$APP_ID SOAK_APP_KEY=$APP_KEY SOAK_APP_SECRET=$APP_SECRET \
  node bench/soak.mjs > >(tee -a "$dir/driver.log") 2>&1 &
driver_pid=$!

# The load starts once the driver's reading clients are connected (it writes `ready`).
for _ in $(seq 600); do
  [ -s "$dir/ready" ] && break
  driver_alive || break
  sleep 0.1
done
[ -s "$dir/ready" ] || { echo "soak: the driver did not get ready" >&2; exit 2; }
ready_ms=$(cat "$dir/ready")

# The faults, at times proportional to the run: Redis restarts at i/(n+1) for an even n of
# about one per 10 minutes (at least 2), so none falls on the kill at 1/2.
n=$((duration / 600)); [ "$n" -ge 2 ] || n=2; n=$(((n + 1) / 2 * 2))
schedule=()
for i in $(seq "$n"); do schedule+=("$((duration * 1000 * i / (n + 1))) redis"); done
schedule+=("$((duration * 1000 / 2)) kill")
mapfile -t schedule < <(printf '%s\n' "${schedule[@]}" | sort -n)
for item in "${schedule[@]}"; do
  at=$((ready_ms + ${item% *}))
  while driver_alive && [ "$(now_ms)" -lt "$at" ]; do sleep 0.2; done
  driver_alive || break
  case "${item#* }" in
    redis) restart_redis ;;
    kill) kill_node 1 ;;
  esac
done

rc=0
wait "$driver_pid" || rc=$?
driver_pid=''
echo "soak: events in $dir/events.log, samples in $dir/soak.csv, summary in $dir/summary.txt" >&2
exit "$rc"
