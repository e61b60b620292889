#!/usr/bin/env bash
# Coverage-guided fuzzing of every parser that reads outside data (src/fuzz.rs), with
# libFuzzer on the stable toolchain: the harness (crates/fuzz) is built with the same
# sanitizer-coverage flags cargo-fuzz passes, without a sanitizer (which would need nightly).
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]     (default 20 s, every target)
#
# Each target starts from its seeds in crates/fuzz/corpus/TARGET plus what earlier runs found
# (kept in the cache dir), and stops at its time, at an RSS over 2 GiB (what a 4 GB board could
# not spare), or on a crash. Prints executions, corpus size and findings per target; a crash
# or a slow input is saved under $CACHE/fuzz/artifacts and fails the run. Add the input to
# crates/fuzz/corpus/TARGET once fixed: the test suite replays every file there.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-20}; shift || true
scripts/packages.sh install fuzz >/dev/null
scripts/packages.sh check fuzz
cache="$HOME/.cache/steadyface"
export CARGO_TARGET_DIR="$cache/target-fuzz"
LIBCLANG_PATH=$(scripts/packages.sh libclang); export LIBCLANG_PATH
host=$(rustc -vV | sed -n 's/^host: //p')
# --target keeps these flags off build scripts and proc macros (as cargo-fuzz does).
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing"
cargo build --release --locked --quiet --manifest-path crates/fuzz/Cargo.toml --target "$host"
fuzzer="$CARGO_TARGET_DIR/$host/release/steadyface-fuzz"
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(config manifest y4m onnx weights truth predictions command)
scratch=$(mktemp -d /dev/shm/steadyface-fuzz.XXXXXX 2>/dev/null || mktemp -d)
trap 'rm -rf "$scratch"' EXIT
mkdir -p "$cache/fuzz/artifacts"
failed=0
printf '%-12s %10s %8s %7s %s\n' target executions exec/s corpus findings
for t in "${targets[@]}"; do
  work="$cache/fuzz/corpus/$t"; mkdir -p "$work"
  log="$cache/fuzz/$t.log"
  set +e
  STEADYFACE_FUZZ_TARGET=$t STEADYFACE_FUZZ_DIR="$scratch" "$fuzzer" "$work" "crates/fuzz/corpus/$t" \
    -max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 -max_len=65536 \
    -artifact_prefix="$cache/fuzz/artifacts/$t-" -print_final_stats=1 >"$log" 2>&1
  rc=$?
  set -e
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  found=$(grep -oE '(deadly signal|ERROR: libFuzzer: [a-z-]+|panicked at [^ ]+)' "$log" | head -3 | paste -sd';' - || true)
  printf '%-12s %10s %8s %7s %s\n' "$t" "${runs:-?}" "${rate:-?}" "$(ls "$work" | wc -l)" "${found:-none}"
  if [ "$rc" -ne 0 ]; then
    failed=1
    echo "fuzz: $t failed (rc $rc); the input is under $cache/fuzz/artifacts/, the log in $log:" >&2
    grep -E 'panicked|ERROR|SUMMARY|Test unit written' "$log" | head -8 >&2
  fi
done
exit $failed
