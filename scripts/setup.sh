#!/usr/bin/env bash
# Prepare a fresh Debian/Ubuntu machine: system packages, the release build, models and
# test data. Safe to re-run: every step skips work that is already done.
#
#   STEADYFACE_MIRROR=DIR  take models/data from this directory instead of ../shared/assets
#   SKIP_APT=1             do not install system packages
set -euo pipefail
cd "$(dirname "$0")/.."

# System packages, by package (scripts/packages.txt): the demo's, and with
# STEADYFACE_TEST_DEPS=1 also the tests' (a real broker, QEMU + busybox + kmod for the vivid
# camera VM, systemd-analyze).
groups=(demo); [ "${STEADYFACE_TEST_DEPS:-0}" = 1 ] && groups+=(test)
scripts/packages.sh install "${groups[@]}"
# bindgen loads exactly the libclang that the declared package ships, not whatever else the
# machine has.
LIBCLANG_PATH=$(scripts/packages.sh libclang); export LIBCLANG_PATH

# A shared target dir outside the clone lets a second clone (or CI run) reuse the build.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/steadyface/target}"
cargo build --release --locked
"$CARGO_TARGET_DIR/release/steadyface" models fetch --data data
