"""Python baselines for `open-constitution bench extract`, run on the same token ids.

(a) the seed's method: one example per forward, `output_hidden_states=True`, final token;
(b) what a careful transformers user writes: length-sorted batches under a token budget,
    right padding, logits for the last position only, hidden states gathered per row.

Input: a JSON file {"ids": [[...], ...], "layers": [absolute hidden-state indices]}.
Output (stdout, last line): JSON {"a": {...}, "b": {...}} with examples, tokens and seconds.
"""

import argparse
import json
import time

import torch
from transformers import AutoModelForCausalLM


def seed_method(model, seqs, layers):
    out = []
    for ids in seqs:
        x = torch.tensor([ids])
        with torch.no_grad():
            h = model(input_ids=x, output_hidden_states=True).hidden_states
        out.append([h[j][0, -1].float() for j in layers])
    return out


def batched_method(model, seqs, layers, budget, pad_id):
    order = sorted(range(len(seqs)), key=lambda i: -len(seqs[i]))
    out = [None] * len(seqs)
    i = 0
    while i < len(order):
        width = len(seqs[order[i]])
        n = max(1, min(len(order) - i, budget // max(width, 1)))
        batch = order[i : i + n]
        x = torch.full((n, width), pad_id, dtype=torch.long)
        mask = torch.zeros((n, width), dtype=torch.long)
        for r, k in enumerate(batch):
            x[r, : len(seqs[k])] = torch.tensor(seqs[k])
            mask[r, : len(seqs[k])] = 1
        with torch.no_grad():
            h = model(
                input_ids=x, attention_mask=mask, output_hidden_states=True, logits_to_keep=1
            ).hidden_states
        for r, k in enumerate(batch):
            out[k] = [h[j][r, len(seqs[k]) - 1].float() for j in layers]
        i += n
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--hf-dir", required=True, help="Hugging Face model folder (the export source)")
    p.add_argument("--input", required=True, help="JSON with ids and layers")
    p.add_argument("--methods", default="a,b")
    p.add_argument("--batch-tokens", type=int, default=4096)
    p.add_argument("--threads", type=int, default=0)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    spec = json.load(open(args.input))
    seqs, layers = spec["ids"], spec["layers"]
    model = AutoModelForCausalLM.from_pretrained(
        args.hf_dir, dtype=torch.float32, attn_implementation="sdpa", local_files_only=True
    ).eval()
    pad_id = model.config.pad_token_id or 0
    tokens = sum(len(s) for s in seqs)
    result = {}
    for m in args.methods.split(","):
        start = time.perf_counter()
        if m == "a":
            seed_method(model, seqs, layers)
        else:
            batched_method(model, seqs, layers, args.batch_tokens, pad_id)
        result[m] = {"examples": len(seqs), "tokens": tokens, "seconds": time.perf_counter() - start}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
