#!/usr/bin/env bash
# Build the default (tract) steadyface for aarch64 with a pinned glibc floor, and check it.
#   cross/build.sh            -> ~/.cache/steadyface/target/aarch64-unknown-linux-gnu/release/steadyface
#   GLIBC_FLOOR=2.35 cross/build.sh   (JetPack 6 only; default 2.31 = JetPack 5, Ubuntu 20.04)
set -euo pipefail
cd "$(dirname "$0")/.."
. cross/env.sh
cargo --config cross/cargo-config.toml zigbuild --release --locked --target "aarch64-unknown-linux-gnu.$floor"
# The highest GLIBC symbol version the binary needs must not exceed the floor.
cross/glibc-check.sh "$bin" "$floor"
# Smoke test under user-mode emulation. QEMU's default `max` CPU has SVE2, which makes
# tract take paths that emulate ~100x slower; a Cortex-A76 is close to Orin's A78AE.
QEMU_CPU=cortex-a76 qemu-aarch64 -L /usr/aarch64-linux-gnu "$bin" validate --config config/demo.yaml
