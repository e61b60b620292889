#!/usr/bin/env bash
# The CUDA checks, in one command for a GPU machine that has no Rust and no network: a
# `--features torch` binary built elsewhere against the machine's libtorch, the fetched models,
# and a Y4M clip travel there; this script runs, for every backbone,
#   - `models parity`: each runtime (native, tract, libtorch CPU, libtorch CUDA) against the
#     native engine on the clip's face crops: largest output and landmark difference, time;
#   - `models time` on CUDA and on the CPU, and `bench` (the whole pipeline) on CUDA;
# and then a short `tune` on CUDA (2 epochs on the clip as a field clip).
# Usage: scripts/cuda-check.sh BINARY CLIP OUTDIR
# LIBTORCH_LIB (default: the torch/lib of /opt/torch/.venv) must be the libtorch the binary
# was built against; the binary needs it, and libtorch_cuda.so is preloaded so that a binary
# linked without it still registers CUDA.
set -uo pipefail
bin=$1 clip=$2 out=$3
mkdir -p "$out"
lib=${LIBTORCH_LIB:-$(ls -d /opt/torch/.venv/lib/python3*/site-packages/torch/lib | head -1)}
export LD_LIBRARY_PATH="$lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export LD_PRELOAD="$lib/libtorch_cuda.so"
run() { echo "\$ $*" | tee -a "$out/log.txt"; "$@" 2>&1 | tee -a "$out/log.txt"; }
run nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
run uname -m
for b in openseeface-lm0 openseeface-snv2; do
  set_b=(--set "models.backbone=$b" --set models.threads=1)
  run "$bin" --log warn models parity "$clip" --frames 60 "${set_b[@]}" --set models.backend=cuda
  run "$bin" --log warn models time --runs 300 "${set_b[@]}" --set models.backend=cuda
  run "$bin" --log warn models time --runs 300 "${set_b[@]}" --set models.backend=cpu
  run "$bin" --log warn bench "$clip" --json "${set_b[@]}" --set models.backend=cuda --stabilizer convlstm
  run "$bin" --log warn bench "$clip" --json "${set_b[@]}" --set models.backend=cpu --stabilizer convlstm
done
run "$bin" --log info tune --data "field:$clip" --out "$out/tune" --epochs 2 --device cuda --cache "$out/tune-cache"
cp "$out/tune/train.json" "$out/tune-train.json" 2>/dev/null
echo "done" | tee -a "$out/log.txt"
