#!/usr/bin/env bash
# Make the eye refiner's ONNX file from upstream's TFLite, as `models fetch` would without a
# mirror: download MediaPipe's iris_landmark.tflite (pinned release), check its sha256, convert
# it with tflite2onnx 0.4.1 (from PyPI, in a venv under ~/.cache/steadyface), and check the
# result against the manifest.
#
#   scripts/derive-eye-refiner.sh [OUT]        (default models/iris_landmark.onnx)
#   TFLITE=FILE scripts/derive-eye-refiner.sh  convert a local copy instead of downloading
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-models/iris_landmark.onnx}
entry() { awk -v k="$1" '/- name: mediapipe-iris/{f=1} f && $1==k":"{print $2; exit}' models/manifest.yaml; }
url=$(entry url); up_sha=$(entry upstream_sha256); sha=$(entry derived_sha256)
venv="${STEADYFACE_CACHE:-$HOME/.cache/steadyface}/tflite2onnx-venv"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
if [ -n "${TFLITE:-}" ]; then
  cp "$TFLITE" "$tmp/iris.tflite"
else
  python3 - "$url" "$tmp/iris.tflite" <<'PY' || { echo "derive-eye-refiner: cannot download $url (offline? use a mirror: STEADYFACE_MIRROR)" >&2; exit 1; }
import sys, urllib.request
urllib.request.urlretrieve(sys.argv[1], sys.argv[2])
PY
fi
got=$(sha256sum "$tmp/iris.tflite" | cut -d' ' -f1)
[ "$got" = "$up_sha" ] || { echo "derive-eye-refiner: upstream sha256 $got, expected $up_sha" >&2; exit 1; }
[ -x "$venv/bin/tflite2onnx" ] || {
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q "tflite2onnx==0.4.1" ||
    { echo "derive-eye-refiner: cannot install tflite2onnx from PyPI (offline?)" >&2; exit 1; }
}
"$venv/bin/tflite2onnx" "$tmp/iris.tflite" "$tmp/raw.onnx" >/dev/null
# tflite2onnx writes the initializers in a different order on every run; sorted by name, the
# bytes are the same every time (and the same as the mirror's file sorted likewise).
"$venv/bin/python" - "$tmp/raw.onnx" "$tmp/iris.onnx" <<'PY'
import sys, onnx
m = onnx.load(sys.argv[1])
for field in ("initializer", "value_info"):
    items = sorted(getattr(m.graph, field), key=lambda t: t.name)
    del getattr(m.graph, field)[:]
    getattr(m.graph, field).extend(items)
onnx.save(m, sys.argv[2])
PY
got=$(sha256sum "$tmp/iris.onnx" | cut -d' ' -f1)
[ "$got" = "$sha" ] || { echo "derive-eye-refiner: converted file has sha256 $got, the manifest says $sha" >&2; exit 1; }
mkdir -p "$(dirname "$out")"; mv "$tmp/iris.onnx" "$out"
echo "derive-eye-refiner: wrote $out"
