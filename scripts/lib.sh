# Sourced by the measuring scripts: go to the repository root, build the release binary
# (into the shared cache dir), fetch the models and data, and set $bin to the binary.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/steadyface/target}"
LIBCLANG_PATH=$(scripts/packages.sh libclang); export LIBCLANG_PATH
cargo build --release --locked --quiet
bin="$CARGO_TARGET_DIR/release/steadyface"
"$bin" models fetch --data data >/dev/null

# A face of the stability bench, as `synth` takes it: sets src=(IMAGE --pts PTS). takeo
# (150x225) as it is; einstein halved (408x512) into DIR, its .pts scaled to match.
# Usage: bench_face takeo|einstein DIR
bench_face() {
  if [ "$1" = takeo ]; then src=(data/takeo.ppm --pts data/takeo.pts); return; fi
  ffmpeg -loglevel error -y -i data/einstein.jpg -vf scale=408:512 "$2/einstein.png"
  python3 - "$2/einstein.pts" <<'PY'
import re, sys
body = open("data/einstein.pts").read().split("{")[1].split("}")[0]
pts = re.findall(r"([-0-9.eE]+)\s+([-0-9.eE]+)", body)
# .pts is 1-based: scale the 0-based pixel centres, then back to 1-based.
rows = ["%f %f" % ((float(x) - 1) * 0.5 + 1, (float(y) - 1) * 0.5 + 1) for x, y in pts]
open(sys.argv[1], "w").write("version: 1\nn_points: %d\n{\n%s\n}\n" % (len(rows), "\n".join(rows)))
PY
  src=("$2/einstein.png" --pts "$2/einstein.pts")
}
