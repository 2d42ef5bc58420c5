"""Python baselines for `open-constitution bench generate`, on the same prompt token ids.

seed:     the seed's guarded loop: no KV cache; every new token re-runs the whole sequence with
          `output_hidden_states=True`, scores the newest token's hidden state, appends the argmax.
generate: Hugging Face `generate` with its KV cache (greedy), for reference.

Input: JSON {"prompts": [[ids...], ...], "new_tokens": N, "layer": L}.
Output (stdout, last line): JSON {"seed": {...}, "generate": {...}} with tokens and seconds.
"""

import argparse
import json
import time

import torch
from transformers import AutoModelForCausalLM


def seed_loop(model, prompts, new_tokens, layer, probe_w):
    tokens = 0
    for ids in prompts:
        seq = torch.tensor([ids])
        for _ in range(new_tokens):
            with torch.no_grad():
                out = model(input_ids=seq, output_hidden_states=True)
            h = out.hidden_states[layer][0, -1]
            torch.sigmoid(h.float() @ probe_w)  # the seed scores every token it emits
            nxt = out.logits[0, -1].argmax().view(1, 1)
            seq = torch.cat([seq, nxt], dim=1)
            tokens += 1
    return tokens


def hf_generate(model, prompts, new_tokens):
    tokens = 0
    for ids in prompts:
        x = torch.tensor([ids])
        with torch.no_grad():
            out = model.generate(
                x, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False
            )
        tokens += out.shape[1] - x.shape[1]
    return tokens


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--hf-dir", required=True)
    p.add_argument("--input", required=True)
    p.add_argument("--methods", default="seed,generate")
    args = p.parse_args()
    spec = json.load(open(args.input))
    model = AutoModelForCausalLM.from_pretrained(
        args.hf_dir, dtype=torch.float32, attn_implementation="sdpa", local_files_only=True
    ).eval()
    probe_w = torch.randn(model.config.hidden_size, generator=torch.Generator().manual_seed(0))
    result = {}
    for m in args.methods.split(","):
        start = time.perf_counter()
        if m == "seed":
            n = seed_loop(model, spec["prompts"], spec["new_tokens"], spec["layer"], probe_w)
        else:
            n = hf_generate(model, spec["prompts"], spec["new_tokens"])
        result[m] = {"prompts": len(spec["prompts"]), "tokens": n, "seconds": time.perf_counter() - start}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
