#!/usr/bin/env bash
# Build the test suite for aarch64 (zig-linked, glibc floor 2.31) and run the unit tests under
# qemu-user, through cargo's target runner (cross/cargo-config.toml). The integration tests
# run the real models frame by frame, ~80x slower under emulation, so they stay native.
set -euo pipefail
cd "$(dirname "$0")/.."
cache="$HOME/.cache/steadyface"
cross/setup.sh >/dev/null
export PATH="$cache/zig-venv/bin:$cache/tools/bin:$PATH"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$cache/target}"
# Cortex-A76 rather than QEMU's default `max` CPU, whose SVE2 sends tract down paths that are
# very slow under emulation (and that Orin's A78AE does not have).
export QEMU_CPU="${QEMU_CPU:-cortex-a76}"
cargo-zigbuild test --config cross/cargo-config.toml --release --locked \
  --target "aarch64-unknown-linux-gnu.${GLIBC_FLOOR:-2.31}" --lib
