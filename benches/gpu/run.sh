#!/usr/bin/env bash
# The GPU benchmark of issue 7 in one command: builds the Gemma-4-E2B-shaped model with seeded random weights,
# exports it (fp16) with our exporter, and measures our `extract` (examples/s, tokens/s, TFLOP/s, peak GPU memory)
# against transformers batched bf16 (best of batch 64/128) and the seed's loop, and our guarded decode at batch 1
# (with and without the probe, with and without IoBinding) against HF `generate`; prints the table with the ratios.
#
#   benches/gpu/run.sh                          # on the GPU host (see scripts/gpu-device-run.md for the setup)
#   benches/gpu/run.sh --tiny --device cpu      # CPU dry run of every stage: tiny E2B-like model, 24 examples
#   benches/gpu/run.sh --help                   # all options (batch sizes, layers, prompts, timeouts, --skip)
#
# Environment: PY (a python3 with torch; default: python3, else .venv/bin/python), OC_BIN (our binary; default
# target/release/open-constitution), ORT_DYLIB_PATH (libonnxruntime.so.1.31.1), ORT_LD_LIBRARY_PATH (set as
# LD_LIBRARY_PATH for our binary only: the host's Python breaks with it), WHEELS (a folder of .whl files that are
# installed into /tmp/oc-site first and put on PYTHONPATH: optimum, optimum-onnx, transformers 5.24),
# OUT (write results.json and report.md there). Work files go to --work (default /tmp/ocbench); a rerun on the same
# machine reuses the finished model, export and data and reruns only the measurements.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
py=${PY:-python3}
if [ -z "${PY:-}" ] && ! python3 -c 'import torch' 2>/dev/null && [ -x "$root/.venv/bin/python" ]; then
  py=$root/.venv/bin/python
fi
if [ -n "${WHEELS:-}" ]; then
  "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/oc-site "$WHEELS"/*.whl
  export PYTHONPATH=/tmp/oc-site${PYTHONPATH:+:$PYTHONPATH}
fi
bin=${OC_BIN:-$root/target/release/open-constitution}
[ -x "$bin" ] || { echo "run.sh: no binary at $bin: cargo build --release (or set OC_BIN)" >&2; exit 2; }
args=(--bin "$bin" --python "$py" --workload "$root/benches/gpu/workload_gemma3_tokens.json")
[ -n "${OUT:-}" ] && args+=(--out "$OUT")
exec "$py" "$root/benches/gpu/bench.py" "${args[@]}" "$@"
