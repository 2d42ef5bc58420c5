"""Shared pieces of the GPU benchmark: the model config (full E2B shape or a tiny CPU stand-in), the token-id
workload, and the id <-> text mapping of the benchmark's word-level tokenizer (token `t{i}` is id i)."""

from __future__ import annotations

import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
E2B_CONFIG = HERE / "gemma4_e2b_text_config.json"
SLIDING, FULL = "sliding_attention", "full_attention"

# A tiny model with every E2B feature (sliding/full mix with different head dims, KV-shared layers, per-layer
# inputs, double-wide MLP, softcap), for the CPU dry run of the whole script.
TINY_OVERRIDES = dict(
    vocab_size=512, vocab_size_per_layer_input=512, hidden_size=64, intermediate_size=128, num_hidden_layers=6,
    num_attention_heads=2, num_key_value_heads=1, head_dim=16, global_head_dim=32, hidden_size_per_layer_input=16,
    num_kv_shared_layers=3, sliding_window=16, layer_types=[SLIDING, SLIDING, FULL, SLIDING, SLIDING, FULL],
    max_position_embeddings=4096,
)


def text_config(tiny: bool) -> dict:
    """Gemma4TextConfig kwargs (the '_' note keys of the JSON dropped)."""
    cfg = {k: v for k, v in json.loads(E2B_CONFIG.read_text()).items() if not k.startswith("_")}
    if tiny:
        cfg.update(TINY_OVERRIDES)
    return cfg


def ids_to_text(ids) -> str:
    return " ".join(f"t{i}" for i in ids)


def load_workload(path: Path, vocab: int, max_examples: int | None, max_prompts: int | None) -> dict:
    """Token-id exchanges and generation prompts; ids are folded into a smaller vocabulary (tiny mode only)."""
    w = json.loads(Path(path).read_text())
    fold = (lambda ids: [i % vocab for i in ids]) if vocab < w["meta"]["vocab_size"] else (lambda ids: list(ids))
    examples = w["examples"][:max_examples] if max_examples else w["examples"]
    prompts = w["gen_prompts"][:max_prompts] if max_prompts else w["gen_prompts"]
    return {
        # The response start is found on the original ids (folding would hide the turn marker).
        "examples": [{"id": e["id"], "label": e["label"], "ids": fold(e["ids"]), "cut": response_start(e["ids"])}
                     for e in examples],
        "prompts": [fold(p["ids"]) for p in prompts],
        "meta": w["meta"],
    }


def response_start(ids: list[int], marker=(105, 4368, 107)) -> int:
    """Index of the first response token: after the last `<start_of_turn>model\\n` (Gemma 3 ids), else the middle."""
    n = len(marker)
    for i in range(len(ids) - n, -1, -1):
        if tuple(ids[i:i + n]) == marker and i + n < len(ids):
            return i + n
    return max(1, len(ids) // 2)
