#!/usr/bin/env bash
# The stability bench: still images with landmark truth, warped along known paths by
# `steadyface synth` (still, slow sway, vibration with motion blur, low light), tracked with
# each stabilizer, and scored by `eval` against the moving truth: NME and the jitter of the
# error (mean |e_t - e_t-1| / IOD), and the lag behind moving truth in frames. Usage: scripts/stability.sh [stabilizer[,key=value...]...]
source "$(dirname "$0")/lib.sh"
stabs=("${@:-none one-euro shape-one-euro}")
read -r -a stabs <<<"${stabs[*]}"
out=out/stability
mkdir -p "$out"
printf "%-9s %-10s" image condition; for s in "${stabs[@]}"; do printf " | %-28s" "$s NME / jitter / lag"; done; echo
for img in takeo einstein; do
  bench_face "$img" "$out"
  for kind in still slow vibration lowlight; do
    clip="$out/$img-$kind"
    "$bin" --log error synth "${src[@]}" --kind "$kind" -o "$clip.y4m" --truth "$clip.json" >/dev/null
    preds=()
    for s in "${stabs[@]}"; do
      # An entry may carry config overrides after commas: shape-one-euro,stabilizer.motion=false.
      IFS=, read -r -a parts <<<"$s"
      sets=(); for kv in "${parts[@]:1}"; do sets+=(--set "$kv"); done
      label=${s//=/\~}
      "$bin" --log error track "$clip.y4m" -o "$clip-$label.jsonl" --stabilizer "${parts[0]}" "${sets[@]}" >/dev/null
      preds+=(--pred "$label=$clip-$label.jsonl")
    done
    printf "%-9s %-10s" "$img" "$kind"
    # eval keys its JSON by label (sorted); print in the order the stabilizers were given.
    "$bin" eval --json --gt "$clip.json" "${preds[@]}" | python3 -c '
import json, sys
d = json.load(sys.stdin)
order = sys.argv[1:]
rows = [d] if "nme_iod" in d else [d[s.replace("=", "~")] for s in order]
lag = lambda v: "-" if v.get("lag_frames") is None else "%.2f" % v["lag_frames"]
# No face tracked in any frame: no NME or jitter, and the row says how many frames it missed.
cell = lambda v: (" | %.4f / %.5f / %-5s " % (v["nme_iod"], v["jitter"], lag(v)) if v.get("jitter") is not None
                  else " | no face in %d of %d frames " % (v["missed"], v["samples"]))
print("".join(cell(v) for v in rows))' "${stabs[@]}"
  done
done
