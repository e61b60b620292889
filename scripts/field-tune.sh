#!/usr/bin/env bash
# Field fine-tuning measured: four unlabelled field clips of einstein (held out of every
# training set; still, slow sway, vibration, low light, made by `synth` with another seed than
# the bench's), the shipped lm0 stabilizer fine-tuned on them with `tune`, and both weights
# scored on the stability bench's four einstein clips (NME / error jitter, `convlstm` alone
# and the default chain). Needs the libtorch build (scripts/libtorch-cpu.sh).
# Usage: scripts/field-tune.sh [tune flags...] (default: the flags docs/stabilizers.md measured)
source "$(dirname "$0")/lib.sh"
LIBTORCH=$(scripts/libtorch-cpu.sh); export LIBTORCH LD_LIBRARY_PATH=$LIBTORCH/lib
cargo build --release --locked --quiet --features torch
flags=("$@")
if [ ${#flags[@]} -eq 0 ]; then
  flags=(--seq-len 96 --warmup 16 --trainable memory --label-sigma 2 --nu 128 --epochs 20 --lr 3e-2 --lr-schedule cosine --batch 4 --val-fraction 0 --field-degradations all --lost-frames 12)
fi
out=out/field-tune
mkdir -p "$out"
bench_face einstein "$out"
data=()
for kind in still slow vibration lowlight; do
  # A daemon-style clip directory: frames and the tracker's records, no truth.
  clip="$out/field-$kind"
  mkdir -p "$clip"
  "$bin" --log error synth "${src[@]}" --kind "$kind" --frames 384 --seed 7 -o "$clip/frames.y4m" --truth "$out/field-$kind-truth.json" >/dev/null
  "$bin" --log error track "$clip/frames.y4m" -o "$clip/landmarks.jsonl" >/dev/null
  data+=(--data "field:$clip")
done
"$bin" tune "${data[@]}" --from models/lm0-convlstm/stabilizer.safetensors -o "$out/tuned" --cache "$out/cache" "${flags[@]}"
printf "%-10s | %-27s | %-27s\n" condition "shipped: cell / default" "fine-tuned: cell / default"
for kind in still slow vibration lowlight; do
  clip="$out/bench-$kind"
  "$bin" --log error synth "${src[@]}" --kind "$kind" -o "$clip.y4m" --truth "$clip.json" >/dev/null
  preds=()
  for w in shipped:"$PWD/models/lm0-convlstm" tuned:"$PWD/$out/tuned"; do
    for s in convlstm convlstm+one-euro; do
      p="$clip-${w%%:*}-$s.jsonl"
      "$bin" --log error track "$clip.y4m" -o "$p" --stabilizer "$s" --set "stabilizer.weights=${w#*:}/stabilizer.safetensors" >/dev/null
      preds+=(--pred "${w%%:*}-$s=$p")
    done
  done
  printf "%-10s" "$kind"
  "$bin" eval --json --gt "$clip.json" "${preds[@]}" | python3 -c '
import json, sys
d = json.load(sys.stdin)
f = lambda k: "%.4f / %.5f" % (d[k]["nme_iod"], d[k]["jitter"])
print(" | %s, %s | %s, %s" % (f("shipped-convlstm"), f("shipped-convlstm+one-euro"), f("tuned-convlstm"), f("tuned-convlstm+one-euro")))'
done
