#!/usr/bin/env bash
# The aarch64 (Jetson) checks, as CI runs them:
#  1. build the tests and the binary for aarch64 with zig, against a glibc floor (2.31 =
#     JetPack 5 / Ubuntu 20.04), and run them under qemu-user through cargo's target runner
#     (cross/cargo-config.toml): every unit test, and the integration tests of bad input
#     (`errors::`). The other integration tests run the models frame by frame, about 80x slower
#     under emulation, so they run natively only (scripts/test.sh);
#  2. check that the binary needs no GLIBC symbol above the floor.
set -euo pipefail
cd "$(dirname "$0")/.."
. cross/env.sh
# Cortex-A76 rather than QEMU's default `max` CPU, whose SVE2 sends tract down paths that are
# very slow under emulation (and that Orin's A78AE does not have).
export QEMU_CPU="${QEMU_CPU:-cortex-a76}"
# The integration tests start the binary themselves; this runs it under emulation too.
export STEADYFACE_BIN_RUNNER="qemu-aarch64 -L /usr/aarch64-linux-gnu"
test=(cargo-zigbuild test --config cross/cargo-config.toml --release --locked
      --target "aarch64-unknown-linux-gnu.$floor")
# qemu-user 7.2 can deadlock a child forked by a multi-threaded guest before it execs (seen
# here: 1 run in 3 of the bad-input tests hung with two test threads, none in 19 with one),
# so the tests that start the binary run one at a time; and a hang still ends in minutes,
# named, rather than at CI's own limit.
guard() {
  local limit=$1; shift
  timeout --kill-after=10 "$limit" "$@" || {
    rc=$?
    [ "$rc" -ge 124 ] && echo "cross: '$*' did not finish within ${limit}s under qemu-user (rc $rc)" >&2
    return "$rc"
  }
}
"${test[@]}" --lib --no-run
"${test[@]}" --test it --no-run
guard 900 "${test[@]}" --lib
guard 900 "${test[@]}" --test it errors:: -- --test-threads=1
cross/glibc-check.sh "$bin" "$floor"
echo "cross: aarch64 tests passed under qemu-user"
