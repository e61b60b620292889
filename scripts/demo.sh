#!/usr/bin/env bash
# The demo: set up, then run the daemon on the bundled in-car clip (config/demo.yaml): no
# camera, no broker. It prints one landmark JSON line per frame; we keep them in
# out/demo.jsonl and show the first. The daemon's log (fps, latency, drops) goes to stderr.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/steadyface/target}"
sf="$CARGO_TARGET_DIR/release/steadyface"
mkdir -p out
"$sf" run --config config/demo.yaml > out/demo.jsonl
echo "$(wc -l < out/demo.jsonl) frames in out/demo.jsonl; the first:"
head -c 300 out/demo.jsonl; echo " ..."
