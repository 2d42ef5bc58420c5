#!/usr/bin/env bash
# Installs the ONNX Runtime shared library from its PyPI wheel (no other download works offline):
#   scripts/setup-ort.sh cpu   -> .ort/cpu/libonnxruntime.so  (onnxruntime, CPU provider)
#   scripts/setup-ort.sh gpu   -> .ort/gpu/libonnxruntime.so  (onnxruntime-gpu, CUDA 13 + TensorRT providers)
# Idempotent: a present library is kept. ORT_VERSION overrides the version (must match ort's api-31).
set -euo pipefail
kind=${1:-cpu}
ver=${ORT_VERSION:-1.31.1}
root=$(cd "$(dirname "$0")/.." && pwd)
case $kind in
  cpu) pkg=onnxruntime ;;
  gpu) pkg=onnxruntime-gpu ;;
  *) echo "usage: $0 cpu|gpu" >&2; exit 2 ;;
esac
dest=$root/.ort/$kind
if [ -e "$dest/libonnxruntime.so" ]; then exit 0; fi
py=${PYTHON:-python3}
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
echo "installing ONNX Runtime $ver ($pkg) into $dest" >&2
"$py" -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: \
  --python-version 3.11 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  -d "$tmp" "$pkg==$ver"
mkdir -p "$tmp/x" "$dest"
"$py" - "$tmp" <<'PY'
import glob, sys, zipfile
tmp = sys.argv[1]
whl = glob.glob(f"{tmp}/*.whl")[0]
with zipfile.ZipFile(whl) as z:
    for n in z.namelist():
        if n.startswith("onnxruntime/capi/lib") and ".so" in n:
            z.extract(n, f"{tmp}/x")
PY
cp "$tmp"/x/onnxruntime/capi/lib*.so* "$dest/"
lib=$(ls "$dest"/libonnxruntime.so.1.* | head -1)
ln -sf "$(basename "$lib")" "$dest/libonnxruntime.so"
echo "ONNX Runtime library: $dest/libonnxruntime.so -> $(basename "$lib")" >&2
