#!/usr/bin/env bash
# Conformance suite for resound: installs its pinned client libraries and
# SDKs, then runs every test against the resound binary.
#
#   RESOUND_BIN=/path/to/resound conformance/run.sh
#
# RESOUND_BIN defaults to ../target/debug/resound; a relative path is taken
# from this folder (conformance/).
# CONFORMANCE_SKIP_INSTALL=1 skips npm ci / pip when both are already set up.
set -euo pipefail
cd "$(dirname "$0")"

node_major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
if [ "$node_major" -lt 20 ]; then
  echo "conformance: Node.js 20 or newer is required (found: $(node --version 2>/dev/null || echo none))" >&2
  exit 2
fi

if [ "${CONFORMANCE_SKIP_INSTALL:-}" != 1 ] || [ ! -d node_modules ]; then
  echo "conformance: npm ci" >&2
  npm ci --no-audit --no-fund --loglevel=error >&2
fi

venv=.venv
if [ ! -x "$venv/bin/python" ]; then
  echo "conformance: creating $venv" >&2
  if ! python3 -m venv "$venv" >&2; then
    rm -rf "$venv"
    # Debian ships ensurepip separately; install it when we are allowed to.
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      echo "conformance: installing python3-venv" >&2
      apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >&2
    fi
    if ! python3 -m venv "$venv" >&2; then
      echo "conformance: python3 -m venv failed (on Debian: apt-get install python3-venv)" >&2
      rm -rf "$venv"
      exit 2
    fi
  fi
fi
if [ "${CONFORMANCE_SKIP_INSTALL:-}" != 1 ] || ! "$venv/bin/python" -c 'import pusher' 2>/dev/null; then
  echo "conformance: pip install -r requirements.txt" >&2
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r requirements.txt >&2
fi

# The browser tests (tests/console.test.mjs, tests/browser-echo.test.mjs) drive Debian's
# chromium through playwright-core
# (which downloads no browser). Install the package when it is missing.
if [ -z "${CHROMIUM_BIN:-}" ] && ! command -v chromium >/dev/null 2>&1; then
  echo "conformance: installing chromium (Debian package)" >&2
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium >/dev/null
fi
export CHROMIUM_BIN="${CHROMIUM_BIN:-$(command -v chromium || true)}"
if [ ! -x "$CHROMIUM_BIN" ]; then
  echo "conformance: chromium is required and could not be installed (or set CHROMIUM_BIN)" >&2
  exit 2
fi

bin="${RESOUND_BIN:-../target/debug/resound}"
case "$bin" in /*) ;; *) bin="$PWD/$bin" ;; esac
if [ ! -x "$bin" ]; then
  echo "conformance: resound binary not found at $bin (build it, or set RESOUND_BIN)" >&2
  exit 2
fi
export RESOUND_BIN="$bin"
echo "conformance: testing $RESOUND_BIN" >&2

exec node --test --test-concurrency=1 --test-reporter=tap tests/
