#!/usr/bin/env bash
# The whole test suite, as CI runs it: setup, formatting, lints, then every test.
set -euo pipefail
cd "$(dirname "$0")/.."
STEADYFACE_TEST_DEPS=1 scripts/setup.sh
# Every tool and library the tests use must come from a package that scripts/packages.txt
# declares (resolved through dpkg, so a hand-installed package cannot hide a missing line).
scripts/packages.sh check demo test
LIBCLANG_PATH=$(scripts/packages.sh libclang); export LIBCLANG_PATH
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/steadyface/target}"
cargo fmt --all -- --check
cargo clippy --locked --all-targets -- -D warnings
# The API docs build without a broken or private link.
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --locked --quiet
log=$(mktemp); trap 'rm -f "$log"' EXIT
cargo test --release --locked 2>&1 | tee "$log"
# The libtorch build (`--features torch`): lints, then the tests that need it (crates/torch:
# tch against the CPU kernel, the trainer; then `tune` end to end and the ConvLSTM tests
# again through the binary built with it). libtorch is a CPU one
# made from PyPI wheels by scripts/libtorch-cpu.sh, cached beside the target dir.
# STEADYFACE_SKIP_TORCH=1 skips it locally.
if [ "${STEADYFACE_SKIP_TORCH:-0}" != 1 ]; then
  LIBTORCH=$(scripts/libtorch-cpu.sh)
  export LIBTORCH LD_LIBRARY_PATH="$LIBTORCH/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  cargo clippy --locked --workspace --all-targets --features torch -- -D warnings
  RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --locked --quiet -p steadyface-torch
  cargo test --release --locked -p steadyface-torch 2>&1 | tee -a "$log"
  cargo test --release --locked --features torch -- torch convlstm every_runtime 2>&1 | tee -a "$log"
fi
# aarch64 (Jetson): build for the glibc floor, run the unit and bad-input tests under
# qemu-user, check the binary's GLIBC symbols. STEADYFACE_SKIP_CROSS=1 skips it locally.
if [ "${STEADYFACE_SKIP_CROSS:-0}" != 1 ]; then
  cross/test.sh 2>&1 | tee -a "$log"
fi
# Coverage-guided fuzzing of the parsers, 15 s per target (scripts/fuzz.sh; the seeds and
# past crashes are also replayed by the suite above). STEADYFACE_SKIP_FUZZ=1 skips it locally.
if [ "${STEADYFACE_SKIP_FUZZ:-0}" != 1 ]; then
  scripts/fuzz.sh 15 2>&1 | tee -a "$log"
fi
# One closing line over every test binary.
awk '/^test result:/ { p += $4; f += $6; s += $8 } END { printf "all tests: %d passed, %d failed, %d skipped\n", p, f, s }' "$log"
