# Sourced by the measuring scripts: go to the repository root, build the release binary
# (into the shared cache dir), fetch the models and data, and set $bin to the binary.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/steadyface/target}"
LIBCLANG_PATH=$(scripts/packages.sh libclang); export LIBCLANG_PATH
cargo build --release --locked --quiet
bin="$CARGO_TARGET_DIR/release/steadyface"
"$bin" models fetch --data data >/dev/null
