"""The PyTorch/transformers side of the GPU benchmark, on the same token ids and the same random weights:

  batched   what a careful transformers user writes: length-sorted batches of B rows (best of --batch-sizes),
            right padding, sdpa attention, `output_hidden_states=True`, logits for the last position only, and the
            last real token of every hidden state gathered and copied to the host;
  seed      the seed's loop: one example per forward, `output_hidden_states=True`, full logits (first
            --seed-examples examples; its rate is what matters);
  generate  HF `generate` at batch 1 with its KV cache, greedy, exactly --new-tokens tokens per prompt.

    python benches/gpu/hf_baselines.py MODEL_DIR IDS_JSON [--device cuda] [--dtype bf16] > hf.json

Prints one JSON object (examples/s, tokens/s, seconds, peak GPU memory per method) on the last stdout line.
"""

from __future__ import annotations

import argparse
import json
import time

import torch


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def peak_reset(device: str) -> None:
    if device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def peak_gib(device: str):
    return torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else None


def batched(model, seqs, batch, device, pad_id=0):
    order = sorted(range(len(seqs)), key=lambda i: -len(seqs[i]))
    pooled = [None] * len(seqs)
    for start in range(0, len(order), batch):
        rows = order[start:start + batch]
        width = len(seqs[rows[0]])
        x = torch.full((len(rows), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for r, k in enumerate(rows):
            x[r, :len(seqs[k])] = torch.tensor(seqs[k])
            mask[r, :len(seqs[k])] = 1
        x, mask = x.to(device), mask.to(device)
        out = model(input_ids=x, attention_mask=mask, output_hidden_states=True, logits_to_keep=1)
        last, idx = (mask.sum(1) - 1).long(), torch.arange(len(rows), device=device)
        h = torch.stack([layer[idx, last] for layer in out.hidden_states], 1).float().cpu()  # [rows, L+1, hidden]
        for r, k in enumerate(rows):
            pooled[k] = h[r]
    return pooled


def seed_loop(model, seqs, device):
    for ids in seqs:
        out = model(input_ids=torch.tensor([ids], device=device), output_hidden_states=True)
        [h[0, -1].float().cpu() for h in out.hidden_states]


def timed(fn, device):
    peak_reset(device)
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start, peak_gib(device)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model_dir")
    ap.add_argument("ids_json")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--dtype", default=None, help="bf16 (GPU default) or fp32 (CPU default)")
    ap.add_argument("--batch-sizes", default="64,128")
    ap.add_argument("--seed-examples", type=int, default=64)
    ap.add_argument("--gen-prompts", type=int, default=2)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--methods", default="batched,seed,generate")
    args = ap.parse_args()
    from transformers import AutoModelForCausalLM

    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[
        args.dtype or ("bf16" if args.device == "cuda" else "fp32")]
    data = json.load(open(args.ids_json))
    seqs, prompts = data["examples"], data["prompts"][:args.gen_prompts]
    started = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(args.model_dir, dtype=dtype, attn_implementation="sdpa",
                                                 local_files_only=True).to(args.device).eval()
    result = {"device": args.device, "dtype": str(dtype).removeprefix("torch."), "torch": torch.__version__,
              "load_seconds": time.perf_counter() - started, "examples": len(seqs),
              "tokens": sum(map(len, seqs))}
    if args.device == "cuda":
        result["gpu"] = torch.cuda.get_device_name()
    methods = args.methods.split(",")
    with torch.inference_mode():
        if "batched" in methods:
            batched(model, seqs[:8], 8, args.device)  # warm-up: kernels, allocator
            runs = {}
            for b in map(int, args.batch_sizes.split(",")):
                secs, peak = timed(lambda: batched(model, seqs, b, args.device), args.device)
                runs[b] = {"seconds": secs, "examples_per_s": len(seqs) / secs,
                           "tokens_per_s": result["tokens"] / secs, "peak_gib": peak}
            best = max(runs, key=lambda b: runs[b]["tokens_per_s"])
            result["batched"] = {"by_batch": runs, "best_batch": best} | runs[best]
        if "seed" in methods:
            sub = seqs[:args.seed_examples]
            seed_loop(model, sub[:2], args.device)
            secs, peak = timed(lambda: seed_loop(model, sub, args.device), args.device)
            result["seed"] = {"examples": len(sub), "tokens": sum(map(len, sub)), "seconds": secs,
                              "examples_per_s": len(sub) / secs, "tokens_per_s": sum(map(len, sub)) / secs,
                              "peak_gib": peak}
        if "generate" in methods:
            gen = dict(do_sample=False, max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens,
                       use_cache=True, pad_token_id=0)
            x = torch.tensor([prompts[0]], device=args.device)
            model.generate(x, **gen | {"max_new_tokens": 4, "min_new_tokens": 4})
            secs, peak = timed(lambda: [model.generate(torch.tensor([p], device=args.device), **gen)
                                        for p in prompts], args.device)
            n = args.new_tokens * len(prompts)
            result["generate"] = {"prompts": len(prompts), "new_tokens": n, "seconds": secs,
                                  "tokens_per_s": n / secs, "ms_per_token": 1e3 * secs / n, "peak_gib": peak}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
