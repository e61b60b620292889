#!/usr/bin/env bash
# The demo: set up, then track the face in the bundled in-car clip. No camera, no broker.
# Writes out/demo.jsonl (one JSON line per frame) and out/demo-summary.json.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/steadyface/target}"
sf="$CARGO_TARGET_DIR/release/steadyface"
mkdir -p out
"$sf" track data/carphone_pristine.mp4 --output out/demo.jsonl --summary out/demo-summary.json
echo "first frame:"
head -c 300 out/demo.jsonl; echo " ..."
echo "summary: out/demo-summary.json"
