#!/usr/bin/env bash
# Side-by-side inference time: steadyface's native engine and tract against onnxruntime, on
# the same model files, machine and run, 1 thread by default. Rounds alternate the runtimes
# so that drift on a shared machine hits all of them. Prints medians and the ratios.
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
for r in $(seq "$rounds"); do
  "$sf" --log warn models time --runs 200 --threads "$threads" > "$t/native.$r.json"
  "$sf" --log warn models time --runs 200 --threads "$threads" --set models.cpu_engine=tract > "$t/tract.$r.json"
  "$venv/bin/python" - "$threads" > "$t/ort.$r.json" <<'PY'
import json, sys, time
import numpy as np, onnxruntime as ort
threads = int(sys.argv[1])
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
print(json.dumps({"backbone": med("models/lm_model0_opt.stdops.onnx", (1,3,224,224)),
                  "detector": med("models/yunet_n_320_320.onnx", (1,3,320,320)),
                  "version": ort.__version__}))
PY
done
python3 - "$t" "$rounds" "$threads" <<'PY'
import json, statistics, sys
d, n, th = sys.argv[1], int(sys.argv[2]), sys.argv[3]
nat = [json.load(open(f"{d}/native.{r}.json")) for r in range(1, n+1)]
tr = [json.load(open(f"{d}/tract.{r}.json")) for r in range(1, n+1)]
ox = [json.load(open(f"{d}/ort.{r}.json")) for r in range(1, n+1)]
print(f"threads={th}, {n} alternating rounds of 200 runs; onnxruntime {ox[0]['version']}")
print("| model | steadyface native ms | tract ms | onnxruntime ms | native / ort | tract / ort |")
print("|---|---|---|---|---|---|")
for m, label in [("backbone", "lm0 (224x224)"), ("detector", "YuNet n 320 (incl. our letterbox and decoding)")]:
    med = lambda xs: statistics.median(x[m]["median_ms"] for x in xs)
    a, t, b = med(nat), med(tr), med(ox)
    print(f"| {label} | {a:.2f} | {t:.2f} | {b:.2f} | {a/b:.2f}x | {t/b:.2f}x |")
PY
