"""`oc_export tiny-models`: the committed tiny test models, rebuilt deterministically.

For each model this writes `models/<name>/source/` (a Hugging Face folder: config, seeded random safetensors
weights, a tokenizer trained here on export/corpus/english.txt with the `tokenizers` library, the family's chat
template, generation config) and exports it to `models/<name>/` (graph, manifest, goldens). Same library versions
give the same weights, tokenizer and goldens; the ONNX bytes may differ across torch versions.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from . import templates

SEED = 20261128
CORPUS = Path(__file__).resolve().parents[1] / "corpus" / "english.txt"
REPO = Path(__file__).resolve().parents[2]
GEMMA_VOCAB, QWEN_VOCAB = 640, 512
GEMMA_BASE = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>"]  # ids 0-4, as in real Gemma vocabularies
GEMMA4_EXTRA = ["<|turn>", "<turn|>", "<|think|>", "<|channel>", "<channel|>", "<|tool>", "<tool|>", "<|tool_call>",
                "<tool_call|>", "<|tool_response>", "<tool_response|>", "<|image>", "<image|>", "<|image|>",
                "<|audio>", "<audio|>", "<|audio|>", "<|video|>"]
GEMMA3_EXTRA = ["<start_of_turn>", "<end_of_turn>", "<start_of_image>", "<end_of_image>", "<image_soft_token>"]
QWEN_SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
QWEN_ADDED = ["<think>", "</think>"]  # added but not special, as in Qwen3
SLIDING, FULL = "sliding_attention", "full_attention"


def corpus_paragraphs() -> list[str]:
    return [p.strip() for p in CORPUS.read_text(encoding="utf-8").split("\n\n") if p.strip()]


def train_bpe(pre_tokenizer, vocab_size: int, initial_alphabet=()):
    """BPE vocabulary (tokens in id order) and merges learned on the corpus."""
    from tokenizers import Tokenizer, models, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizer
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=2, show_progress=False,
                                  initial_alphabet=list(initial_alphabet))
    tok.train_from_iterator(corpus_paragraphs(), trainer)
    tokens = [t for t, _ in sorted(tok.get_vocab().items(), key=lambda kv: kv[1])]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in json.loads(tok.to_str())["model"]["merges"]]
    return tokens, merges


def gemma_tokenizer(extra_specials: list[str]):
    """Gemma-style BPE with byte fallback: specials first, then the 256 byte tokens, then the learned pieces.

    Training splits words at spaces (SentencePiece-like `▁` prefixes), so no merge crosses a word boundary and the
    canonical Gemma pipeline (spaces -> `▁`, no pre-splitting) segments text exactly as in training.
    """
    from tokenizers import pre_tokenizers
    from transformers import GemmaTokenizer

    specials = GEMMA_BASE + extra_specials
    learned, merges = train_bpe(pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="never", split=True),
                                GEMMA_VOCAB - 256 - len(specials))
    vocab = {token: i for i, token in enumerate(specials)}
    for byte in range(256):
        vocab[f"<0x{byte:02X}>"] = len(vocab)
    for token in learned:
        vocab.setdefault(token, len(vocab))
    return GemmaTokenizer(vocab=vocab, merges=merges, extra_special_tokens=extra_specials, add_bos_token=True,
                          add_eos_token=False)


def qwen_tokenizer():
    """Qwen2/3-style byte-level BPE (every byte is a base token); special tokens follow the learned vocabulary."""
    from tokenizers import AddedToken, pre_tokenizers
    from transformers import Qwen2Tokenizer

    canonical = Qwen2Tokenizer()  # borrow the family's own pre-tokenizer (regex split + byte level) for training
    learned, merges = train_bpe(canonical.backend_tokenizer.pre_tokenizer, QWEN_VOCAB - len(QWEN_SPECIAL)
                                - len(QWEN_ADDED), initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    vocab = {token: i for i, token in enumerate(learned)}
    for token in QWEN_SPECIAL + QWEN_ADDED:
        vocab[token] = len(vocab)
    tok = Qwen2Tokenizer(vocab=vocab, merges=merges, unk_token=None, bos_token=None, eos_token="<|im_end|>",
                         pad_token="<|endoftext|>", extra_special_tokens=["<|im_start|>", "<|endoftext|>"])
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in QWEN_ADDED])
    return tok


def save_tokenizer(tok, folder: Path, template: str, standalone_template: bool, extra_config: dict) -> None:
    tok.chat_template = template
    tok.save_pretrained(folder)
    config_path = folder / "tokenizer_config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config.update(extra_config)
    for key in ("model_max_length", "is_local", "local_files_only"):  # a 1e30 sentinel and loading artefacts
        config.pop(key, None)
    if not standalone_template:  # Gemma 3 / Qwen3 ship the template inside tokenizer_config.json
        (folder / "chat_template.jinja").unlink(missing_ok=True)
        config["chat_template"] = template
    config_path.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def write_generation_config(folder: Path, **ids) -> None:
    (folder / "generation_config.json").write_text(json.dumps(ids, indent=2) + "\n", encoding="utf-8")


def save_model(model, folder: Path) -> None:
    model.save_pretrained(folder, safe_serialization=True)
    (folder / "generation_config.json").unlink(missing_ok=True)  # replaced by ours, with the full eos list


def tiny_gemma4(folder: Path) -> None:
    """Every Gemma 4 text feature at toy size: mixed sliding/full layers with different head dims and KV heads,
    K=V full layers, 2 KV-shared layers, per-layer embeddings, double-wide MLP, window 16, logit softcap."""
    from transformers import Gemma4Config, Gemma4ForConditionalGeneration

    tok = gemma_tokenizer(GEMMA4_EXTRA)
    ids = tok.convert_tokens_to_ids
    text = dict(vocab_size=GEMMA_VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=6,
                num_attention_heads=4, num_key_value_heads=1, head_dim=16, global_head_dim=32,
                num_global_key_value_heads=2, attention_k_eq_v=True, sliding_window=16, num_kv_shared_layers=2,
                layer_types=[SLIDING, SLIDING, FULL, SLIDING, SLIDING, FULL], hidden_size_per_layer_input=16,
                vocab_size_per_layer_input=GEMMA_VOCAB, use_double_wide_mlp=True, final_logit_softcapping=30.0,
                max_position_embeddings=8192, initializer_range=0.1, pad_token_id=0, bos_token_id=2, eos_token_id=1)
    vision = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                  num_key_value_heads=2, head_dim=8, patch_size=4, position_embedding_size=64)
    audio = dict(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, subsampling_conv_channels=[8, 4],
                 conv_kernel_size=3, output_proj_dims=16)
    config = Gemma4Config(text_config=text, vision_config=vision, audio_config=audio,
                          boi_token_id=ids("<|image>"), eoi_token_id=ids("<image|>"),
                          image_token_id=ids("<|image|>"), video_token_id=ids("<|video|>"),
                          boa_token_id=ids("<|audio>"), eoa_token_index=ids("<audio|>"),
                          audio_token_id=ids("<|audio|>"), tie_word_embeddings=True)
    torch.manual_seed(SEED)
    save_model(Gemma4ForConditionalGeneration(config).eval(), folder)
    save_tokenizer(tok, folder, templates.GEMMA4, standalone_template=True,
                   extra_config={"add_bos_token": True, "add_eos_token": False, "padding_side": "left"})
    write_generation_config(folder, bos_token_id=2, eos_token_id=[1, ids("<turn|>")], pad_token_id=0)


def tiny_gemma3(folder: Path) -> None:
    """A Gemma 3 text decoder (gemma3_text, like gemma-3-270m) with 5:1-style sliding layers, window 16."""
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    tok = gemma_tokenizer(GEMMA3_EXTRA)
    config = Gemma3TextConfig(vocab_size=GEMMA_VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=6,
                              num_attention_heads=4, num_key_value_heads=2, head_dim=16, query_pre_attn_scalar=16,
                              sliding_window=16, layer_types=[SLIDING, SLIDING, FULL, SLIDING, SLIDING, FULL],
                              max_position_embeddings=8192, initializer_range=0.1, pad_token_id=0, bos_token_id=2,
                              eos_token_id=1)
    config.architectures = ["Gemma3ForCausalLM"]
    torch.manual_seed(SEED)
    save_model(Gemma3ForCausalLM(config).eval(), folder)
    save_tokenizer(tok, folder, templates.GEMMA3, standalone_template=False,
                   extra_config={"add_bos_token": True, "add_eos_token": False, "padding_side": "left"})
    write_generation_config(folder, bos_token_id=2, eos_token_id=[1, tok.convert_tokens_to_ids("<end_of_turn>")],
                            pad_token_id=0)


def tiny_qwen3(folder: Path) -> None:
    """A Qwen3 decoder (q/k norms, GQA, untied lm_head): proves the design is not Gemma-only."""
    from transformers import Qwen3Config, Qwen3ForCausalLM

    tok = qwen_tokenizer()
    ids = tok.convert_tokens_to_ids
    config = Qwen3Config(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=4,
                         num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=8192,
                         tie_word_embeddings=False, initializer_range=0.1, bos_token_id=None,
                         eos_token_id=ids("<|im_end|>"), pad_token_id=ids("<|endoftext|>"))
    config.architectures = ["Qwen3ForCausalLM"]
    torch.manual_seed(SEED)
    save_model(Qwen3ForCausalLM(config).eval(), folder)
    save_tokenizer(tok, folder, templates.QWEN3, standalone_template=False, extra_config={})
    write_generation_config(folder, eos_token_id=[ids("<|im_end|>"), ids("<|endoftext|>")],
                            pad_token_id=ids("<|endoftext|>"))


BUILDERS = {"tiny-gemma4": tiny_gemma4, "tiny-gemma3": tiny_gemma3, "tiny-qwen3": tiny_qwen3}


def build(name: str, models_dir: Path) -> Path:
    from .exporter import export

    out = models_dir / name
    source = out / "source"
    if source.exists():
        shutil.rmtree(source)
    source.mkdir(parents=True)
    BUILDERS[name](source)
    export(source, out, layers="all", dtype="fp32", goldens=True)
    return out


def build_all(models_dir=None, only=None) -> None:
    import sys

    models_dir = Path(models_dir) if models_dir else REPO / "models"
    for name in only or BUILDERS:
        if name not in BUILDERS:
            from .errors import ExportError

            raise ExportError(f"unknown tiny model {name!r}; known: {', '.join(BUILDERS)}")
        out = build(name, models_dir)
        size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
        print(f"{name}: {out} ({size / 1e6:.2f} MB)", file=sys.stderr)
