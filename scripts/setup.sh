#!/usr/bin/env bash
# Prepare a fresh Debian/Ubuntu machine: system packages, the release build, models and
# test data. Safe to re-run: every step skips work that is already done.
#
#   STEADYFACE_MIRROR=DIR  take models/data from this directory instead of ../shared/assets
#   SKIP_APT=1             do not install system packages
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v ffmpeg >/dev/null || need+=(ffmpeg)       # decodes MP4/H.264 input (the demo clip)
# bindgen for the v4l crate's kernel-header bindings.
ls /usr/lib/llvm-*/lib/libclang.so* >/dev/null 2>&1 || ls /usr/lib/*/libclang*.so* >/dev/null 2>&1 || need+=(libclang-dev)
if [ "${STEADYFACE_TEST_DEPS:-0}" = 1 ]; then
  # Only the tests need these: a real broker and clients, and QEMU + busybox + kmod to boot a
  # kernel with the vivid camera driver.
  command -v mosquitto >/dev/null || need+=(mosquitto)
  command -v mosquitto_sub >/dev/null || need+=(mosquitto-clients)
  command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
  # Static: it runs in the VM's initramfs without any libraries.
  dpkg -s busybox-static >/dev/null 2>&1 || need+=(busybox-static)
  command -v depmod >/dev/null || need+=(kmod)
  command -v systemd-analyze >/dev/null || need+=(systemd)
fi
if [ "${#need[@]}" -gt 0 ] && [ "${SKIP_APT:-0}" != 1 ]; then
  sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  echo "setup: installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# A shared target dir outside the clone lets a second clone (or CI run) reuse the build.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/steadyface/target}"
cargo build --release --locked
"$CARGO_TARGET_DIR/release/steadyface" models fetch --data data
