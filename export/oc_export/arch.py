"""Reads a Hugging Face model folder and describes its text decoder: the layer/KV-cache layout that the graph,
the dummy inputs and the manifest all derive from.

Everything architecture-specific lives here, so supporting a new decoder family means adding it to
`SUPPORTED` and (only if its cache is unusual) to `decoder_layout`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ExportError

# top-level config model_type -> the model_type of its text decoder. A multimodal folder (Gemma 4's
# `Gemma4ForConditionalGeneration`, Gemma 3's 4B+) is exported as its text decoder only.
SUPPORTED = {
    "gemma4": "gemma4_text",
    "gemma4_text": "gemma4_text",
    "gemma3": "gemma3_text",
    "gemma3_text": "gemma3_text",
    "qwen3": "qwen3",
    "llama": "llama",
}

WEIGHT_SUFFIXES = (".safetensors", ".bin")


def supported_list() -> str:
    return ", ".join(sorted(SUPPORTED))


@dataclass
class KvEntry:
    """One past/present pair of the graph: the cache of one cache-owning decoder layer."""

    layer: int
    num_heads: int
    head_dim: int
    attention: str  # "sliding" | "full"


@dataclass
class DecoderLayout:
    model_type: str  # text decoder model_type
    num_layers: int
    hidden_size: int
    vocab_size: int
    max_position_embeddings: int | None
    sliding_window: int | None
    attention: list[str]  # per decoder layer: "sliding" | "full"
    kv: list[KvEntry]
    shared_kv: list[tuple[int, int]] = field(default_factory=list)  # (layer, uses_kv_of)
    final_logit_softcapping: float | None = None

    @property
    def kv_index_of_layer(self) -> dict[int, int]:
        return {entry.layer: i for i, entry in enumerate(self.kv)}


def read_config_json(model_dir: Path) -> dict:
    path = model_dir / "config.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ExportError(f"cannot read {path}: {exc}") from None


def check_model_dir(model_dir: Path) -> dict:
    """Validates the source folder before anything heavy is imported; returns its raw config.json."""
    if not model_dir.exists():
        raise ExportError(f"model folder {model_dir} does not exist")
    if not model_dir.is_dir():
        raise ExportError(f"{model_dir} is not a folder (expected a Hugging Face model folder)")
    if not (model_dir / "config.json").is_file():
        raise ExportError(f"{model_dir} is not a Hugging Face model folder: it has no config.json")
    raw = read_config_json(model_dir)
    model_type = raw.get("model_type")
    if model_type not in SUPPORTED:
        arch = ", ".join(raw.get("architectures") or []) or "unknown class"
        raise ExportError(
            f"unsupported architecture: model_type {model_type!r} ({arch}) in {model_dir}; "
            f"supported model types: {supported_list()}"
        )
    if not weight_files(model_dir):
        raise ExportError(f"{model_dir} has no weights (*.safetensors or *.bin)")
    if not (model_dir / "tokenizer.json").is_file():
        raise ExportError(f"{model_dir} has no tokenizer.json (the exported folder needs the fast tokenizer)")
    return raw


def raw_num_layers(raw: dict) -> int:
    """Decoder layer count straight from config.json, so `--layers` is checked before transformers is imported."""
    text = raw.get("text_config") or raw
    count = text.get("num_hidden_layers", raw.get("num_hidden_layers"))
    if not isinstance(count, int):
        raise ExportError("config.json has no num_hidden_layers for its text decoder")
    return count


def weight_files(model_dir: Path) -> list[Path]:
    files = sorted(p for p in model_dir.iterdir() if p.is_file() and p.name.endswith(".safetensors"))
    if not files:  # legacy PyTorch checkpoints only when there is no safetensors copy
        files = sorted(p for p in model_dir.iterdir() if p.is_file() and p.name.endswith(".bin")
                       and p.name.startswith("pytorch_model"))
    return files


def text_config_of(config):
    return config.get_text_config(decoder=True)


def decoder_layout(config) -> DecoderLayout:
    """The decoder's layer and KV layout from a transformers config (top-level or text config)."""
    text = text_config_of(config)
    model_type = text.model_type
    if model_type not in SUPPORTED.values():
        raise ExportError(
            f"unsupported text decoder {model_type!r}; supported model types: {supported_list()}")
    if model_type == "gemma4_text" and getattr(text, "use_bidirectional_attention", None) == "all":
        raise ExportError("Gemma 4 with use_bidirectional_attention='all' is not a causal decoder; not supported")
    n = text.num_hidden_layers
    layer_types = list(getattr(text, "layer_types", None) or ["full_attention"] * n)
    attention = ["sliding" if t == "sliding_attention" else "full" for t in layer_types]
    if any(t not in ("sliding_attention", "full_attention") for t in layer_types):
        raise ExportError(f"unsupported layer types {sorted(set(layer_types))} in {model_type}")
    # Gemma 4: layers whose KV-sharing mode is "reuse" own no cache and read the K/V of the last
    # non-shared layer of the same attention type (transformers' `kv_sharing_modes`).
    modes = list(getattr(text, "kv_sharing_modes", None) or [None] * n)
    per_layer = text.per_layer_config
    kv, shared = [], []
    for i in range(n):
        if modes[i] == "reuse":
            first_shared = n - text.num_kv_shared_layers
            owners = [j for j in range(first_shared) if layer_types[j] == layer_types[i]]
            shared.append((i, owners[-1]))
            continue
        layer_cfg = per_layer[i]
        heads = layer_cfg.num_key_value_heads or text.num_attention_heads
        head_dim = getattr(layer_cfg, "head_dim", None) or text.hidden_size // text.num_attention_heads
        kv.append(KvEntry(layer=i, num_heads=int(heads), head_dim=int(head_dim), attention=attention[i]))
    sliding = getattr(text, "sliding_window", None) if "sliding" in attention else None
    return DecoderLayout(
        model_type=model_type,
        num_layers=n,
        hidden_size=text.hidden_size,
        vocab_size=text.vocab_size,
        max_position_embeddings=getattr(text, "max_position_embeddings", None),
        sliding_window=sliding,
        attention=attention,
        kv=kv,
        shared_kv=shared,
        final_logit_softcapping=getattr(text, "final_logit_softcapping", None),
    )


def placeholder_token_ids(config) -> tuple[list[int], int | None]:
    """Multimodal placeholder ids that the source model embeds as the pad token for text input, and that pad id.

    transformers' Gemma4Model replaces image/video/audio placeholder ids by `pad_token_id` before both embedding
    lookups; the exported text decoder must do the same to match the conditional-generation model. Gemma 3 only
    does it for out-of-vocabulary ids, which cannot reach the graph.
    """
    if config.model_type != "gemma4":
        return [], None
    ids = [getattr(config, k, None) for k in ("image_token_id", "video_token_id", "audio_token_id")]
    return sorted({int(i) for i in ids if i is not None}), text_config_of(config).pad_token_id


def resolve_layers(spec: str | None, num_layers: int) -> list[int]:
    """`all` (or None) -> 0..L; otherwise a comma list of indices, negative ones counting from the end
    like Python over the L+1 hidden states (-1 = L, the final-norm output)."""
    if spec is None or spec.strip().lower() == "all":
        return list(range(num_layers + 1))
    out = []
    for part in spec.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            idx = int(part)
        except ValueError:
            raise ExportError(f"bad layer index {part!r} in --layers {spec!r}: expected integers or 'all'") from None
        absolute = idx + num_layers + 1 if idx < 0 else idx
        if not 0 <= absolute <= num_layers:
            raise ExportError(
                f"layer index {idx} is out of range: this model has {num_layers} layers, "
                f"so indices go from 0 to {num_layers} (or -{num_layers + 1} to -1)")
        out.append(absolute)
    if not out:
        raise ExportError(f"--layers {spec!r} selects no layer")
    return sorted(set(out))


def hidden_state_meaning(index: int, num_layers: int) -> str:
    if index == 0:
        return "embeddings"
    if index == num_layers:
        return f"layer {index} output after the final norm"
    return f"layer {index} output"
