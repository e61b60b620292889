#!/usr/bin/env bash
# A CPU-only libtorch for `--features torch`, made from PyPI wheels (no GPU, no CUDA toolkit).
#
# tch 0.26 wants libtorch 2.13.0, and the `torch==2.13.0` wheel carries it. We unpack its
# `torch/lib` and `torch/include`, leave out `libtorch_cuda*.so` (torch-sys links torch_cuda
# only when that file exists), and add `libcudart.so.13` and `libcupti.so.13`, which
# libtorch_cpu.so lists as needed, from NVIDIA's two small runtime wheels (13 MB together).
# `libtorch.so` also lists libtorch_cuda.so, but the linker's --as-needed drops it.
#
# Prints the directory; use it as LIBTORCH, and put its lib/ on LD_LIBRARY_PATH at run time:
#   export LIBTORCH=$(scripts/libtorch-cpu.sh) LD_LIBRARY_PATH=$LIBTORCH/lib
# Cached under $STEADYFACE_CACHE (default ~/.cache/steadyface): a second run does nothing.
# On a machine with a GPU, use a CUDA libtorch instead (LIBTORCH pointing at it).
set -euo pipefail
cache="${STEADYFACE_CACHE:-$HOME/.cache/steadyface}"
dir="$cache/libtorch-2.13.0-cpu"
if [ -f "$dir/.complete" ]; then echo "$dir"; exit 0; fi
wheels="$cache/wheels"
mkdir -p "$wheels"
if ! ls "$wheels"/torch-2.13.0-*.whl >/dev/null 2>&1 \
  || ! ls "$wheels"/nvidia_cuda_runtime-13.0.96*.whl >/dev/null 2>&1 \
  || ! ls "$wheels"/nvidia_cuda_cupti-13.0.85*.whl >/dev/null 2>&1; then
  echo "libtorch-cpu: downloading torch==2.13.0 (~530 MB) and two NVIDIA runtime wheels from PyPI" >&2
  # For this machine's Python and platform (the wheels' manylinux tags differ, so no --platform).
  python3 -m pip download --quiet --no-deps --only-binary=:all: -d "$wheels" \
    torch==2.13.0 "nvidia-cuda-runtime==13.0.96.*" "nvidia-cuda-cupti==13.0.85.*" >&2 || {
    echo "libtorch-cpu: cannot download the wheels from PyPI (offline?). Put torch-2.13.0-*.whl," >&2
    echo "  nvidia_cuda_runtime-13.0.96*.whl and nvidia_cuda_cupti-13.0.85*.whl in $wheels and re-run." >&2
    exit 1
  }
fi
tmp="$dir.tmp"
rm -rf "$tmp"
mkdir -p "$tmp/lib"
python3 - "$wheels" "$tmp" <<'PY'
import glob, os, shutil, sys, zipfile
wheels, out = sys.argv[1], sys.argv[2]
torch = glob.glob(os.path.join(wheels, "torch-2.13.0-*.whl"))[0]
with zipfile.ZipFile(torch) as z:
    for n in z.namelist():
        if n.endswith("/"):
            continue
        if n.startswith("torch/include/"):
            rel = n[len("torch/"):]
        elif n.startswith("torch/lib/") and n.count("/") == 2:
            name = os.path.basename(n)
            # CPU only: without these files torch-sys does not link CUDA.
            if name.startswith(("libtorch_cuda", "libc10_cuda", "libcaffe2_nvrtc", "libtorch_nvshmem", "libtorch_python")):
                continue
            rel = "lib/" + name
        else:
            continue
        dst = os.path.join(out, rel)
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        with z.open(n) as src, open(dst, "wb") as f:
            shutil.copyfileobj(src, f)
for pat in ("nvidia_cuda_runtime-13.0.96*.whl", "nvidia_cuda_cupti-13.0.85*.whl"):
    with zipfile.ZipFile(glob.glob(os.path.join(wheels, pat))[0]) as z:
        for n in z.namelist():
            if "/lib/" in n and ".so" in os.path.basename(n):
                with z.open(n) as src, open(os.path.join(out, "lib", os.path.basename(n)), "wb") as f:
                    shutil.copyfileobj(src, f)
PY
for need in libtorch_cpu.so libc10.so libcudart.so.13 libcupti.so.13; do
  [ -f "$tmp/lib/$need" ] || { echo "libtorch-cpu: $need is missing from the wheels" >&2; exit 1; }
done
touch "$tmp/.complete"
rm -rf "$dir"
mv "$tmp" "$dir"
echo "$dir"
