"""Numerical parity of our `extract` on the benchmark's device against the PyTorch fp32 goldens of the committed tiny
models (fp32 graphs with TF32 off, and the fp16 export of tiny-gemma3): the relative error ||ours - golden|| /
||golden|| of pooled hidden states (last token and response mean) of every golden chat exchange.

    python benches/gpu/parity.py --bin BIN --device cuda --work DIR [--models tiny-gemma3,tiny-gemma3-fp16:tiny-gemma3]

`name:golden` compares model `name` with the goldens of `golden`. Prints one JSON object on the last stdout line.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file

REPO = Path(__file__).resolve().parents[2]


def exchanges(golden_dir: Path) -> tuple[list[tuple[int, dict]], dict]:
    g = json.loads((golden_dir / "goldens.json").read_text())
    # Chat-template exchanges; the control-token one tokenizes differently by design (tests/parity.rs).
    return [(i, e) for i, e in enumerate(g["exchanges"]) if e["chat_template"] and "control_token_test" not in e], g


def store_rows(store: Path) -> tuple[dict[str, dict[int, np.ndarray]], dict]:
    meta = json.loads((store / "meta.json").read_text())
    ids = [json.loads(line)["id"] for line in (store / "rows.jsonl").read_text().splitlines() if line.strip()]
    layers = {j: [] for j in meta["layers"]}
    for shard in sorted(store.glob("shard-*.safetensors")):
        t = load_file(str(shard))
        for j in layers:
            layers[j].append(t[f"layer.{j}"])
    stacked = {j: np.concatenate(v) for j, v in layers.items()}
    return {rid: {j: stacked[j][k] for j in stacked} for k, rid in enumerate(ids)}, meta


def check(binary: str, model: str, golden: str, device: str, work: Path, env: dict) -> dict:
    model_dir, golden_dir = REPO / "models" / model, REPO / "models" / golden
    rows, g = exchanges(golden_dir)
    tensors = load_file(str(golden_dir / "goldens.safetensors"))
    data = work / f"{model}.jsonl"
    data.write_text("".join(json.dumps({"id": f"e{i}", "prompt": e["prompt"], "response": e["response"],
                                        "label": 0}) + "\n" for i, e in rows))
    layers = ",".join(map(str, g["layers"]))
    result = {}
    for pooling, key in (("last", "last"), ("mean", "response_mean")):
        out = work / f"{model}-{pooling}"
        shutil.rmtree(out, ignore_errors=True)
        cmd = [binary, "-q", "extract", "--model", str(model_dir), "--data", str(data), "--out", str(out),
               "--layers", layers, "--pooling", pooling, "--device", device]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            raise RuntimeError(f"{model}: {proc.stderr.strip()[-1500:]}")
        got, _ = store_rows(out)
        worst = 0.0
        for i, _ in rows:
            for j in g["layers"]:
                want = tensors[f"exchange.{i}.{key}.{j}"]
                have = got[f"e{i}"][j]
                if not np.all(np.isfinite(have)):
                    worst = float("inf")
                    continue
                worst = max(worst, float(np.linalg.norm(have - want) / max(np.linalg.norm(want), 1e-30)))
        result[f"{pooling}_rel"] = worst
        result["provider"] = proc.stdout.strip().rsplit("provider ", 1)[-1].rstrip(")")
    result["exchanges"] = len(rows)
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bin", required=True)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--work", required=True)
    ap.add_argument("--models", default="tiny-gemma3,tiny-gemma4,tiny-qwen3,tiny-gemma3-fp16:tiny-gemma3")
    a = ap.parse_args()
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    # bench.py hands ONNX Runtime's library path over this way: it must not reach this Python process.
    if env.get("OC_CHILD_LD_LIBRARY_PATH"):
        env["LD_LIBRARY_PATH"] = env.pop("OC_CHILD_LD_LIBRARY_PATH")
    out = {}
    for spec in a.models.split(","):
        model, _, golden = spec.partition(":")
        out[model] = check(a.bin, model, golden or model, a.device, work, env)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
