# Sourced by cross/build.sh and cross/test.sh: the toolchain (cross/setup.sh), zig and
# cargo-zigbuild on PATH, the shared target dir, and the glibc floor.
cache="$HOME/.cache/steadyface"
floor="${GLIBC_FLOOR:-2.31}"
cross/setup.sh >/dev/null
LIBCLANG_PATH=$(scripts/packages.sh libclang); export LIBCLANG_PATH
export PATH="$cache/zig-venv/bin:$cache/tools/bin:$PATH"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$cache/target}"
bin="$CARGO_TARGET_DIR/aarch64-unknown-linux-gnu/release/steadyface"
