#!/usr/bin/env bash
# Runs every fuzz target in fuzz/ for SECONDS each (default 30), one after another, starting
# from the committed seeds (fuzz/seeds/<target>) and the local corpus (fuzz/corpus/<target>,
# not committed). Fails if any target crashes; a crashing input is saved under
# fuzz/artifacts/<target>/ and the command to reproduce it is printed.
#
#   scripts/fuzz.sh [SECONDS]
#
# Needs the nightly toolchain (cargo fuzz builds with sanitizers and libFuzzer): without it
# the script says so and exits 0. Installs cargo-fuzz with `cargo install --locked` when it is
# missing. One target runs at a time: libFuzzer uses one core per run.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-30}"
if ! [[ $seconds =~ ^[0-9]+$ ]] || [ "$seconds" -eq 0 ]; then
  echo "usage: scripts/fuzz.sh [SECONDS]  (a whole number above 0)" >&2
  exit 2
fi
targets=(ws_message http_api cluster_message config)

if ! command -v rustup >/dev/null 2>&1 || ! rustup run nightly rustc --version >/dev/null 2>&1; then
  echo "fuzz: skipped, no nightly toolchain (cargo fuzz needs one: rustup toolchain install nightly)"
  exit 0
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "== installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi

# The fuzz crate has its own lock file (it is not in the server's workspace). Building must
# not change it: check it first, as `--locked` would (cargo fuzz has no such flag).
if ! rustup run nightly cargo fetch --locked --manifest-path fuzz/Cargo.toml >/dev/null; then
  echo "fuzz/Cargo.lock is out of date with the server's dependencies; update it with" >&2
  echo "  rustup run nightly cargo update --manifest-path fuzz/Cargo.toml --workspace" >&2
  exit 1
fi

echo "== cargo fuzz build (every target)"
rustup run nightly cargo fuzz build 2>&1

failed=()
for t in "${targets[@]}"; do
  echo "== fuzz $t for ${seconds}s"
  mkdir -p "fuzz/corpus/$t"
  log=$(mktemp)
  # -timeout: an input that runs for 10 s counts as a hang (a crash), not as slow.
  if rustup run nightly cargo fuzz run "$t" "fuzz/corpus/$t" "fuzz/seeds/$t" -- \
    -max_total_time="$seconds" -timeout=10 >"$log" 2>&1; then
    grep -E '^#[0-9]+[[:space:]]+DONE' "$log" || tail -n 3 "$log"
  else
    tail -n 40 "$log"
    echo "fuzz: $t crashed; the input is in fuzz/artifacts/$t/. Reproduce with" >&2
    echo "  rustup run nightly cargo fuzz run $t fuzz/artifacts/$t/<file>" >&2
    failed+=("$t")
  fi
  rm -f "$log"
done

if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: crashes in: ${failed[*]}" >&2
  exit 1
fi
echo "fuzz: no crashes (${#targets[@]} targets, ${seconds}s each)"
