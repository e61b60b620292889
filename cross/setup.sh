#!/usr/bin/env bash
# Toolchain for aarch64 (Jetson) builds on a Debian/Ubuntu x86_64 host. Safe to re-run.
#  - the Rust target, Debian's cross gcc + glibc headers (bindgen, ring), qemu-user;
#  - zig from PyPI (ziglang) and cargo-zigbuild, which link against an older glibc than the
#    host's cross glibc (Debian 12: 2.36; JetPack 5/6: Ubuntu 20.04/22.04, glibc 2.31/2.35).
# Everything lands under ~/.cache/steadyface so a second run (or CI) reuses it.
set -euo pipefail
cd "$(dirname "$0")/.."
cache="$HOME/.cache/steadyface"
rustup target add aarch64-unknown-linux-gnu
# Debian's cross gcc, glibc headers and qemu-user, and libclang for bindgen (scripts/packages.txt).
scripts/packages.sh install cross demo
scripts/packages.sh check cross >&2
[ -x "$cache/zig-venv/bin/python" ] || python3 -m venv "$cache/zig-venv"
"$cache/zig-venv/bin/python" -c 'import ziglang' 2>/dev/null ||
  "$cache/zig-venv/bin/pip" install -q "ziglang==0.17.1"
[ -x "$cache/tools/bin/cargo-zigbuild" ] ||
  cargo install --locked --root "$cache/tools" cargo-zigbuild --version 0.24.1
echo "cross toolchain ready: source the PATH from cross/build.sh"
