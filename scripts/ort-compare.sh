#!/usr/bin/env bash
# Side-by-side inference time: steadyface's native engine and tract against onnxruntime, for
# both backbones and the detector, on the same model files, machine and run, 1 thread by
# default. Rounds alternate the runtimes so that drift on a shared machine hits all of them.
# Prints medians and the ratios.
#
#   scripts/ort-compare.sh [ROUNDS=3] [THREADS=1]
#
# onnxruntime comes from PyPI into a venv under ~/.cache/steadyface (made on first use).
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}; threads=${2:-1}
venv="$HOME/.cache/steadyface/ort-venv"
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import onnxruntime" 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q "onnxruntime>=1.18" numpy
fi
sf="${CARGO_TARGET_DIR:-$HOME/.cache/steadyface/target}/release/steadyface"
[ -x "$sf" ] || { echo "build first: scripts/setup.sh" >&2; exit 1; }
t=$(mktemp -d); trap 'rm -rf "$t"' EXIT
# backbone name, model file, input shape (from models/manifest.yaml)
backbones=("openseeface-lm0 models/lm_model0_opt.stdops.onnx 1,3,224,224"
           "openseeface-snv2 models/snv2_opt_fast.stdops.onnx 1,1,112,112")
for r in $(seq "$rounds"); do
  for line in "${backbones[@]}"; do
    read -r name file shape <<<"$line"
    "$sf" --log warn models time --runs 200 --threads "$threads" --set "models.backbone=$name" > "$t/native.$name.$r.json"
    "$sf" --log warn models time --runs 200 --threads "$threads" --set "models.backbone=$name" --set models.cpu_engine=tract > "$t/tract.$name.$r.json"
    "$venv/bin/python" - "$threads" "$file" "$shape" > "$t/ort.$name.$r.json" <<'PY'
import json, sys, time
import numpy as np, onnxruntime as ort
threads, model, shape = int(sys.argv[1]), sys.argv[2], tuple(int(v) for v in sys.argv[3].split(","))
def med(model, shape, runs=200):
    o = ort.SessionOptions(); o.intra_op_num_threads = threads; o.inter_op_num_threads = 1
    s = ort.InferenceSession(model, o, providers=["CPUExecutionProvider"])
    x = (np.random.default_rng(0).random(shape, dtype=np.float32) - 0.5) * 2
    name = s.get_inputs()[0].name
    for _ in range(10): s.run(None, {name: x})
    t = []
    for _ in range(runs):
        a = time.perf_counter(); s.run(None, {name: x}); t.append((time.perf_counter() - a) * 1e3)
    t.sort()
    return {"median_ms": t[len(t)//2], "p90_ms": t[int(len(t)*0.9)]}
print(json.dumps({"backbone": med(model, shape),
                  "detector": med("models/yunet_n_320_320.onnx", (1,3,320,320)),
                  "version": ort.__version__}))
PY
  done
done
python3 - "$t" "$rounds" "$threads" <<'PY'
import json, statistics, sys
d, n, th = sys.argv[1], int(sys.argv[2]), sys.argv[3]
load = lambda rt, b: [json.load(open(f"{d}/{rt}.{b}.{r}.json")) for r in range(1, n+1)]
print(f"threads={th}, {n} alternating rounds of 200 runs; onnxruntime {load('ort', 'openseeface-lm0')[0]['version']}")
print("| model | steadyface native ms | tract ms | onnxruntime ms | native / ort | tract / ort |")
print("|---|---|---|---|---|---|")
rows = [("openseeface-lm0", "backbone", "lm0 (224x224 RGB)"), ("openseeface-snv2", "backbone", "snv2 (112x112 grey)"),
        ("openseeface-lm0", "detector", "YuNet n 320 (incl. our letterbox and decoding)")]
for b, m, label in rows:
    med = lambda xs: statistics.median(x[m]["median_ms"] for x in xs)
    a, t, o = med(load("native", b)), med(load("tract", b)), med(load("ort", b))
    print(f"| {label} | {a:.2f} | {t:.2f} | {o:.2f} | {a/o:.2f}x | {t/o:.2f}x |")
PY
