#!/usr/bin/env bash
# Prepares, on the CPU machine, everything the GPU run of benches/gpu/run.sh needs to carry (see
# scripts/gpu-device-run.md), from the checkout that makes the device calls:
#   .gpubin/open-constitution   the release binary, stripped (~9 MB)
#   .whl/                       optimum 2.1.0, optimum-onnx 0.1.0, transformers 5.24.0, regex (cp312) (~15 MB)
#   .ortgpu/part-* parts.sha256 onnxruntime-gpu 1.31.1 in parts sized to the tree (../shared/gpu/ort-cuda-bundle.sh)
# then checks that the last transfer (tree + last part + binary + wheels) fits in 64 MiB.
# All three folders are git-ignored. Usage: benches/gpu/prepare.sh [--skip-build]
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
if [ "${1:-}" != "--skip-build" ]; then
  cargo build --release --locked
fi
target=${CARGO_TARGET_DIR:-$root/target}
mkdir -p .gpubin
cp "$target/release/open-constitution" .gpubin/open-constitution
strip .gpubin/open-constitution
python3 -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl \
  transformers==5.24.0 optimum==2.1.0 optimum-onnx==0.1.0 regex==2026.11.19
shared=${SHARED:-$root/../shared}
"$shared/gpu/ort-cuda-bundle.sh"
tree=$(git ls-files -co --exclude-standard -z | xargs -0 -r stat -c %s | awk '{s+=$1} END {print s+0}')
last=$(ls .ortgpu/part-* | tail -1)
total=$((tree + $(stat -c %s "$last") + $(du -sb .gpubin | cut -f1) + $(du -sb .whl | cut -f1) + 300))
limit=$((64 * 1024 * 1024))
echo "last transfer: tree $tree + $(basename "$last") + .gpubin + .whl = $total bytes (limit $limit)"
if [ "$total" -ge "$limit" ]; then
  echo "too large for one transfer: send .gpubin and .whl in a call of their own (see scripts/gpu-device-run.md)" >&2
  exit 1
fi
