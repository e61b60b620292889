#!/usr/bin/env bash
# The figures of docs/stabilizers.md and the README, from the bundled clip, with the documented commands:
#   scripts/figures/compare.png: `render` of none vs one-euro (frame 60, 8-frame trails), drawn with
#                      --no-video: the clip's own pixels may not be redistributed, our points may;
#   scripts/figures/ellipses.png: `eval --plots`: 95% error ellipses per landmark against the dlib pseudo-labels;
#   scripts/figures/stability-ellipses.png, stability-error.png: the stability bench's low-light
#                      einstein clip (exact truth), none / shape-one-euro / convlstm / the default
#                      (convlstm+one-euro with motion compensation).
# Also writes out/figures/compare-video.png (the same frame over the video) for local viewing.
source "$(dirname "$0")/lib.sh"
out=out/figures
mkdir -p "$out" scripts/figures
"$bin" --log warn track data/carphone_pristine.mp4 --stabilizer none -o "$out/none.jsonl"
"$bin" --log warn track data/carphone_pristine.mp4 --stabilizer one-euro -o "$out/one-euro.jsonl"
sets=(--landmarks "none=$out/none.jsonl" --landmarks "one-euro=$out/one-euro.jsonl")
"$bin" render data/carphone_pristine.mp4 "${sets[@]}" --trail 8 --frames 60:61 --no-video -o scripts/figures/compare.png
"$bin" render data/carphone_pristine.mp4 "${sets[@]}" --trail 8 --frames 60:61 -o "$out/compare-video.png"
# dlib's 68-point pseudo-labels as truth: {"frames": [[[x, y], ...], ...]}.
python3 - "$out/truth.json" <<'PY'
import json, sys
rows = open("data/carphone_pristine.dlib68_pseudolabels.csv").read().split("\n")[1:]
frames = []
for r in rows:
    if r.strip():
        v = [float(x) for x in r.split(",")[1:]]
        frames.append([[v[i], v[i + 1]] for i in range(0, len(v), 2)])
json.dump({"frames": frames}, open(sys.argv[1], "w"))
PY
"$bin" eval --gt "$out/truth.json" --pred "none=$out/none.jsonl" --pred "one-euro=$out/one-euro.jsonl" --plots "$out/plots"
cp "$out/plots/ellipses.png" scripts/figures/ellipses.png
# The stabilizers on a clip with exact truth (scripts/stability.sh makes and tracks it).
# shape-one-euro uncompensated at its own settings; the default is convlstm+one-euro with motion.
plain=shape-one-euro,stabilizer.motion=false,stabilizer.one_euro.min_cutoff=1,stabilizer.one_euro.beta=40
scripts/stability.sh none "$plain" convlstm convlstm+one-euro >/dev/null
st=out/stability/einstein-lowlight
preds=(--pred "none=$st-none.jsonl" --pred "shape-one-euro=$st-${plain//=/\~}.jsonl"
  --pred "convlstm=$st-convlstm.jsonl" --pred "convlstm+one-euro+motion (default)=$st-convlstm+one-euro.jsonl")
"$bin" eval --gt "$st.json" "${preds[@]}" --plots "$out/stability-plots" >/dev/null
cp "$out/stability-plots/ellipses.png" scripts/figures/stability-ellipses.png
cp "$out/stability-plots/error_over_time.png" scripts/figures/stability-error.png
echo "figures: scripts/figures/{compare,ellipses,stability-ellipses,stability-error}.png ($out/ has the rest)"
