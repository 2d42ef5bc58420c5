"""manifest.json (schema_version 1, CONTRACT.md): identity of the weights, the graph's names and shapes, special
tokens, tokenizer and chat-template files, exporter versions. Written as stable JSON (fixed key order, 2-space
indent, trailing newline) so reruns diff cleanly.
"""

from __future__ import annotations

import hashlib
import json
from importlib import metadata
from pathlib import Path

from . import __version__
from .arch import hidden_state_meaning, weight_files

FORMAT = "open-constitution/onnx-decoder"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "special_tokens_map.json")
# End-of-turn markers of the chat formats we know; the one a template writes is a stop token for generation.
END_OF_TURN_TOKENS = ("<turn|>", "<end_of_turn>", "<|im_end|>", "<|eot_id|>", "<|end|>")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def model_hash(weights: list[dict]) -> str:
    """sha256 of the lines `{file}\\t{sha256}\\n` over the weight files sorted by name (CONTRACT.md)."""
    text = "".join(f"{w['file']}\t{w['sha256']}\n" for w in sorted(weights, key=lambda w: w["file"]))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def dump_json(obj, path: Path) -> None:
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def source_path_for(source: Path, out_dir: Path) -> str:
    """Relative to the exported folder when both live in one repository checkout (committed manifests then work
    in any clone), absolute otherwise."""
    source, out_dir = source.resolve(), out_dir.resolve()
    root = next((p for p in [out_dir, *out_dir.parents] if (p / ".git").exists()), None)
    if root is not None and source.is_relative_to(root):
        import os

        return Path(os.path.relpath(source, out_dir)).as_posix()
    return source.as_posix()


def chat_template_ref(source: Path) -> dict | None:
    if (source / "chat_template.jinja").is_file():
        return {"file": "chat_template.jinja", "key": None}
    config = source / "tokenizer_config.json"
    if config.is_file() and json.loads(config.read_text(encoding="utf-8")).get("chat_template"):
        return {"file": "tokenizer_config.json", "key": "chat_template"}
    return None


def chat_template_text(tokenizer) -> str:
    template = getattr(tokenizer, "chat_template", None) or ""
    return template if isinstance(template, str) else json.dumps(template)


def _ids(value) -> list[int]:
    if value is None:
        return []
    return [int(v) for v in (value if isinstance(value, (list, tuple)) else [value])]


def special_tokens(tokenizer, config, generation_config) -> dict:
    """bos/pad/unk ids and every id that ends a generation: the generation config's eos list, the config's eos,
    the tokenizer's eos and the end-of-turn token the chat template writes."""
    eos = set(_ids(getattr(generation_config, "eos_token_id", None)))
    eos |= set(_ids(getattr(config, "eos_token_id", None)))
    eos |= set(_ids(getattr(config.get_text_config(decoder=True), "eos_token_id", None)))
    eos |= set(_ids(tokenizer.eos_token_id))
    template = chat_template_text(tokenizer)
    vocab = tokenizer.get_vocab()
    for token in END_OF_TURN_TOKENS:
        if token in template and token in vocab:
            eos.add(int(vocab[token]))
    return {"bos": tokenizer.bos_token_id, "pad": tokenizer.pad_token_id, "unk": tokenizer.unk_token_id,
            "eos": sorted(eos)}


def exporter_versions() -> dict:
    versions = {"open_constitution": __version__}
    for key, dist in (("torch", "torch"), ("transformers", "transformers"), ("optimum", "optimum"),
                      ("optimum_onnx", "optimum-onnx"), ("onnx", "onnx"), ("onnxruntime", "onnxruntime")):
        try:
            versions[key] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[key] = None
    return versions


def graph_info(out_dir: Path, dtype: str) -> dict:
    import onnx

    graph = out_dir / "model.onnx"
    data = out_dir / "model.onnx_data"
    proto = onnx.load(str(graph), load_external_data=False)
    opset = next(op.version for op in proto.opset_import if op.domain in ("", "ai.onnx"))
    size = graph.stat().st_size + (data.stat().st_size if data.is_file() else 0)
    return {
        "file": graph.name,
        "external_data": data.name if data.is_file() else None,
        "sha256": sha256_file(graph),
        "external_data_sha256": sha256_file(data) if data.is_file() else None,
        "size_bytes": size,
        "dtype": {"fp32": "float32", "fp16": "float16"}[dtype],
        "opset": opset,
    }


def build(*, source: Path, out_dir: Path, config, layout, hidden_layers, dtype, tokenizer, generation_config,
          tokenizer_files, hub_id, goldens: bool) -> dict:
    weights = [{"file": p.name, "sha256": sha256_file(p)} for p in weight_files(source)]
    graph = graph_info(out_dir, dtype)
    text = config.get_text_config(decoder=True)
    architectures = getattr(config, "architectures", None) or []
    return {
        "schema_version": 1,
        "format": FORMAT,
        "model_hash": model_hash(weights),
        "source": {"path": source_path_for(source, out_dir), "hub_id": hub_id, "weights": weights},
        "architecture": {
            "model_type": text.model_type,
            "source_model_type": config.model_type,
            "source_class": architectures[0] if architectures else None,
        },
        "num_layers": layout.num_layers,
        "hidden_size": layout.hidden_size,
        "vocab_size": layout.vocab_size,
        "max_position_embeddings": layout.max_position_embeddings,
        "sliding_window": layout.sliding_window,
        "graph": graph,
        "inputs": {"input_ids": "input_ids", "attention_mask": "attention_mask", "position_ids": "position_ids"},
        "logits": {"name": "logits", "last_position_only": True},
        "hidden_states": [
            {"index": j, "name": f"hidden_states.{j}", "meaning": hidden_state_meaning(j, layout.num_layers)}
            for j in hidden_layers
        ],
        "kv_cache": [
            {"layer": e.layer, "past_key": f"past_key_values.{i}.key", "past_value": f"past_key_values.{i}.value",
             "present_key": f"present.{i}.key", "present_value": f"present.{i}.value",
             "num_heads": e.num_heads, "head_dim": e.head_dim, "dtype": graph["dtype"], "attention": e.attention}
            for i, e in enumerate(layout.kv)
        ],
        "shared_kv_layers": [{"layer": layer, "uses_kv_of": owner} for layer, owner in layout.shared_kv],
        "special_tokens": special_tokens(tokenizer, config, generation_config),
        "chat_template": chat_template_ref(source),
        "tokenizer": {"files": list(tokenizer_files)},
        "exporter": exporter_versions(),
        "goldens": {"json": "goldens.json", "tensors": "goldens.safetensors"} if goldens else None,
    }
