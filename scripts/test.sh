#!/usr/bin/env bash
# The whole test suite, as CI runs it: setup, formatting, lints, then every test.
set -euo pipefail
cd "$(dirname "$0")/.."
STEADYFACE_TEST_DEPS=1 scripts/setup.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/steadyface/target}"
cargo fmt --all -- --check
cargo clippy --locked --all-targets -- -D warnings
log=$(mktemp); trap 'rm -f "$log"' EXIT
cargo test --release --locked 2>&1 | tee "$log"
# One closing line over every test binary.
awk '/^test result:/ { p += $4; f += $6; s += $8 } END { printf "all tests: %d passed, %d failed, %d skipped\n", p, f, s }' "$log"
