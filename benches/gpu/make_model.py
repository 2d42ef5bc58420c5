"""Builds the benchmark's Hugging Face model folder: Gemma 4 E2B's text decoder shape with seeded random weights
(bf16 on a GPU, fp32 for the tiny CPU run), plus a word-level tokenizer whose token `t{i}` is id i for the full
vocabulary, so token-id workloads pass through our text pipeline unchanged, and a chat template that renders the
messages' contents joined by spaces (the workload's ids already hold Gemma's turn markers).

    python benches/gpu/make_model.py OUT_DIR [--tiny] [--seed 0] [--device cuda|cpu]

Writes OUT_DIR/{config.json, model.safetensors, tokenizer.json, tokenizer_config.json, chat_template.jinja,
generation_config.json, bench_meta.json}; bench_meta.json holds parameter counts and FLOPs per token.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from common import text_config

TEMPLATE = "{% for m in messages %}{{ m['content'] }}{% if not loop.last %} {% endif %}{% endfor %}"


def write_tokenizer(out: Path, vocab: int) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers

    tok = Tokenizer(models.WordLevel({f"t{i}": i for i in range(vocab)}, unk_token="t3"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.save(str(out / "tokenizer.json"))
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "t2", "eos_token": "t1",
              "pad_token": "t0", "unk_token": "t3", "add_bos_token": False, "add_eos_token": False}
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")
    (out / "chat_template.jinja").write_text(TEMPLATE)
    (out / "generation_config.json").write_text(
        json.dumps({"bos_token_id": 2, "eos_token_id": [1, 106], "pad_token_id": 0}, indent=2) + "\n")


def count(model) -> dict:
    """Parameters; FLOPs per token = 2 x the parameters outside the embedding lookups (the LM head is not counted:
    extraction computes no logits)."""
    total = sum(p.numel() for p in model.parameters())
    embed = sum(p.numel() for n, p in model.named_parameters() if "embed_tokens" in n)
    return {"params": total, "embedding_params": embed, "flops_per_token": 2 * (total - embed)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--tiny", action="store_true", help="2-5 layer stand-in for the CPU dry run")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    from transformers import Gemma4ForCausalLM, Gemma4TextConfig

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    cfg = text_config(args.tiny)
    config = Gemma4TextConfig(**cfg)
    config.architectures = ["Gemma4ForCausalLM"]
    dtype = torch.bfloat16 if args.device == "cuda" else torch.float32
    torch.manual_seed(args.seed)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    with torch.device(args.device):  # initialise where it is fast: 4.6B parameters on a GPU take seconds
        model = Gemma4ForCausalLM(config).eval()
    torch.set_default_dtype(previous)
    meta = count(model) | {"config": cfg, "dtype": str(dtype).removeprefix("torch."), "seed": args.seed,
                           "tiny": args.tiny}
    model.save_pretrained(out, safe_serialization=True)
    (out / "generation_config.json").unlink(missing_ok=True)
    write_tokenizer(out, cfg["vocab_size"])
    meta["build_seconds"] = time.monotonic() - started
    (out / "bench_meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    print(json.dumps({k: meta[k] for k in ("params", "embedding_params", "flops_per_token", "build_seconds")}))


if __name__ == "__main__":
    main()
