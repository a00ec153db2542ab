#!/usr/bin/env bash
# Builds the Dockerfile for real and runs the image as a container, with podman (no Docker
# engine runs on these machines), then checks what docs/deployment.md promises of it:
#   - the HEALTHCHECK, run by the container engine, reports the container healthy (the server
#     started with a flag after the image name: the bare `resound health` reads the main
#     process's arguments), and `resound --port 1 health` in the container fails (exit 1);
#   - the server runs as the unprivileged `resound` user, and real clients work through the
#     published port (conformance/image-check.mjs: laravel-echo, pusher-js, the Node SDK);
#   - SIGTERM (`podman stop`) drains and exits 0 well within the stop timeout;
#   - the layers the Dockerfile adds on top of its base stay small (the binary is stripped).
#
# The Dockerfile's two base images (rust:1-slim-bookworm, debian:bookworm-slim) come from a
# container registry, which these machines do not reach. The script builds stand-ins the way
# those images are made, and tags them with the same names in a container store of its own:
#   - debian:bookworm-slim: debootstrap's minbase of the Debian release from this machine's
#     apt sources, with the documentation, manual pages and locales removed, as the slim
#     images are;
#   - rust:1-slim-bookworm: that base with gcc, libc6-dev and ca-certificates from Debian,
#     the machine's own Rust toolchain mounted read-only at build time, and its CA bundle
#     (cargo fetches the crates through this machine's network).
# The Dockerfile itself is used unchanged, with `--pull=never`.
#
# Everything lives under one temporary folder (podman's store, the root filesystem, the
# podman settings) that is removed at the end, with the container this script started.
# Installs podman, runc and debootstrap from Debian when absent. Needs root (debootstrap,
# rootful podman). Takes about 3-4 minutes on 2 cores, most of it the release build.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

say() { echo "== image: $*"; }
fail() { echo "image test FAILED: $*" >&2; exit 1; }

if [ "$(id -u)" != 0 ]; then
  command -v sudo >/dev/null 2>&1 || fail "needs root (debootstrap and rootful podman), and there is no sudo"
  exec sudo --preserve-env=PATH "$0" "$@"
fi

missing=()
for tool in podman runc debootstrap; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if [ ${#missing[@]} -gt 0 ]; then
  say "installing ${missing[*]} (Debian packages)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# The release the Dockerfile's runtime base is built on (debian:<codename>-slim).
codename=$(sed -nE 's/^FROM debian:([a-z]+)-slim.*/\1/p' Dockerfile | head -1)
[ -n "$codename" ] || fail "no 'FROM debian:<codename>-slim' line in the Dockerfile"
# The Debian mirror this machine's apt uses for that release (deb822 or one-line sources).
mirror=$(
  {
    cat /etc/apt/sources.list.d/*.sources 2>/dev/null
    echo
  } | awk -v suite="$codename" '
      /^[ \t]*$/ { if (uris != "" && hit) { split(uris, u, " "); print u[1]; exit } uris = ""; hit = 0; next }
      /^URIs:/ { uris = substr($0, 6) }
      /^Suites:/ { n = split(substr($0, 8), s, " "); for (i = 1; i <= n; i++) if (s[i] == suite) hit = 1 }'
)
if [ -z "$mirror" ]; then
  mirror=$(awk -v suite="$codename" '$1 == "deb" { for (i = 2; i < NF; i++) if ($(i + 1) == suite && $i ~ /:\/\//) { print $i; exit } }' \
    /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null || true)
fi
[ -n "$mirror" ] || fail "no apt source for Debian $codename on this machine"

work=$(mktemp -d /var/tmp/resound-image.XXXXXX)
container=""
cleanup() {
  if [ -n "$container" ]; then pm rm -f -t 0 "$container" >/dev/null 2>&1 || true; fi
  # Every image and layer of this script's own store (which unmounts them), then the store.
  pm rmi -af >/dev/null 2>&1 || true
  findmnt -rn -o TARGET | grep -F "$work/" | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# podman with a store of its own: nothing is read from or left in the machine's store.
# Host networking (no bridge to set up; the server's port is the host's); cgroupfs with runc,
# which works with the mixed cgroup v1/v2 layout these machines have.
cat >"$work/containers.conf" <<EOF
[containers]
netns = "host"
[engine]
cgroup_manager = "cgroupfs"
runtime = "runc"
events_logger = "file"
EOF
pm() {
  CONTAINERS_CONF="$work/containers.conf" podman --root "$work/store" --runroot "$work/run" "$@"
}
# The engine's default limits are higher than this machine lets a process set: pass its own.
limits=(--ulimit "nofile=$(ulimit -Hn):$(ulimit -Hn)" --ulimit nproc=4096:4096)

say "stand-in debian:$codename-slim (debootstrap minbase from $mirror)"
rootfs="$work/rootfs"
debootstrap --variant=minbase "$codename" "$rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 ||
  { tail -20 "$work/debootstrap.log" >&2; fail "debootstrap"; }
# What the slim images leave out: documentation (but copyrights), manual pages, info, locales;
# and what an image never keeps: downloaded packages, package lists, logs.
find "$rootfs/usr/share/doc" -mindepth 1 ! -type d ! -name copyright -delete
find "$rootfs/usr/share/doc" -mindepth 1 -type d -empty -delete
rm -rf "$rootfs"/usr/share/{man,info,groff,linda,locale}/* "$rootfs"/usr/share/lintian/overrides/* \
  "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/lib/apt/lists/* \
  "$rootfs"/var/log/*.log
tar -C "$rootfs" -c . | pm import - "localhost/debian:$codename-slim" >/dev/null 2>>"$work/run.log"
base_size=$(pm image inspect "localhost/debian:$codename-slim" --format '{{.Size}}')

say "stand-in rust:1-slim-$codename (that base, gcc and libc6-dev from Debian, this machine's toolchain)"
pm build --pull=never "${limits[@]}" -t "localhost/rust:1-slim-$codename" -f - "$work" >"$work/rust-image.log" 2>&1 <<EOF ||
FROM localhost/debian:$codename-slim
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev ca-certificates \
 && rm -rf /var/lib/apt/lists/*
ENV RUSTUP_HOME=/usr/local/rustup CARGO_HOME=/usr/local/cargo \
    PATH=/usr/local/rust/bin:/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
EOF
  { tail -20 "$work/rust-image.log" >&2; fail "building the rust stand-in"; }
sysroot=$(rustc --print sysroot)
ca_bundle=/etc/ssl/certs/ca-certificates.crt
[ -f "$ca_bundle" ] || fail "no CA bundle at $ca_bundle"

say "podman build of the Dockerfile (release build, about 2-3 minutes)"
# --format docker: the OCI image format has no HEALTHCHECK.
pm build --format docker --pull=never "${limits[@]}" \
  -v "$sysroot:/usr/local/rust:ro" -v "$ca_bundle:$ca_bundle:ro" \
  -t localhost/resound:test . >"$work/build.log" 2>&1 ||
  { tail -30 "$work/build.log" >&2; fail "podman build"; }
image_size=$(pm image inspect localhost/resound:test --format '{{.Size}}')
added=$((image_size - base_size))
mb() { awk -v b="$1" 'BEGIN { printf "%.1f MB", b / 1e6 }'; }
say "image $(mb "$image_size"): base $(mb "$base_size") + resound's layers $(mb "$added")"
# Unstripped (the release profile keeps line tables) the binary alone is over 40 MB.
[ "$added" -lt 20000000 ] || fail "the layers on top of the base are $(mb "$added"): is the binary stripped?"
health=$(pm image inspect localhost/resound:test --format '{{json .HealthCheck}}')
[[ $health == *'"/usr/local/bin/resound","health"'* ]] || fail "no HEALTHCHECK running 'resound health' in the image: $health"

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
say "container on port $port"
# The suite's app (conformance/lib/harness.mjs APP), for the clients of image-check.mjs. The
# port is a flag after the image name, the rest the environment: the HEALTHCHECK's bare
# `resound health` must find the port in the main process's arguments.
container=$(pm run -d "${limits[@]}" --name "resound-image-test-$$" \
  -e RESOUND_DRAIN_SECONDS=2 \
  -e REVERB_APP_ID=558412 -e REVERB_APP_KEY=q7h2x9v4m1n8b3c6z5k0 -e REVERB_APP_SECRET=w3e8r1t6y9u4i2o7p5a0 \
  localhost/resound:test --port "$port" 2>"$work/run.log")

# The engine runs the image's HEALTHCHECK command (on a timer where systemd runs; here on
# demand, the same check): healthy once the server is up.
healthy=""
for _ in $(seq 50); do
  if pm healthcheck run "$container" >/dev/null 2>>"$work/run.log"; then
    healthy=1
    break
  fi
  sleep 0.2
done
[ -n "$healthy" ] || { pm logs "$container" >&2 || true; fail "the HEALTHCHECK never passed"; }
status=$(pm inspect "$container" --format '{{.State.Health.Status}}')
[ "$status" = healthy ] || fail "health status '$status' after a passing check"
say "HEALTHCHECK: $status"
if pm exec "$container" /usr/local/bin/resound --port 1 health >/dev/null 2>&1; then
  fail "'resound health' passed against a port nothing serves"
fi
user=$(pm exec "$container" id -un)
[ "$user" = resound ] || fail "the server runs as '$user', not 'resound'"
top=$(pm top "$container" user comm | awk 'NR > 1 && $2 == "resound" { print $1 }')
[ "$top" = resound ] || fail "the server process runs as '$top'"

say "real clients through the container's port"
RESOUND_IMAGE_PORT=$port node conformance/image-check.mjs

say "SIGTERM (podman stop): drain and exit 0"
pm stop -t 20 "$container" >/dev/null 2>>"$work/run.log"
code=$(pm inspect "$container" --format '{{.State.ExitCode}}')
logs=$(pm logs "$container" 2>&1)
[ "$code" = 0 ] || { echo "$logs" | tail -20 >&2; fail "exit code $code after SIGTERM"; }
[[ $logs == *"resound stopped"* ]] || { echo "$logs" | tail -20 >&2; fail "no 'resound stopped' in the logs"; }
say "ok: image $(mb "$image_size") (resound's layers $(mb "$added")), healthy, clients served, clean stop"
