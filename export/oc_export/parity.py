"""Parity measurements of an exported folder against transformers (PyTorch fp32, eager attention).

Used by the tests (which assert tolerances) and by `oc_export gemma3-270m` (which reports the numbers). Errors are
reported both absolute and relative to the reference's largest magnitude: Gemma's residual stream reaches ~1e5,
where only a relative comparison is meaningful.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from .runtime import OrtDecoder, position_ids_for


def errors(got, ref) -> dict:
    got, ref = np.asarray(got, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    if got.shape != ref.shape:
        raise AssertionError(f"shape {got.shape} != reference {ref.shape}")
    diff = float(np.abs(got - ref).max()) if got.size else 0.0
    scale = float(np.abs(ref).max()) if ref.size else 0.0
    return {"abs": diff, "rel": diff / max(scale, 1e-30), "nan": bool(np.isnan(got).any())}


def worst(items) -> dict:
    items = list(items)
    return {"abs": max(i["abs"] for i in items), "rel": max(i["rel"] for i in items),
            "nan": any(i["nan"] for i in items)}


def against_goldens(folder, decoder: OrtDecoder | None = None) -> dict:
    """ORT on every golden exchange vs the stored PyTorch tensors, and ORT greedy decoding vs HF generate."""
    from safetensors.numpy import load_file

    folder = Path(folder)
    decoder = decoder or OrtDecoder(folder)
    goldens = json.loads((folder / "goldens.json").read_text())
    tensors = load_file(str(folder / "goldens.safetensors"))
    eos = set(decoder.manifest["special_tokens"]["eos"])
    hidden, logits = [], []
    for e, record in enumerate(goldens["exchanges"]):
        out = decoder.forward(record["input_ids"])
        r0, r1 = record["response_token_range"]
        for j in goldens["layers"]:
            states = out[f"hidden_states.{j}"][0].astype(np.float64)
            hidden.append(errors(states[-1], tensors[f"exchange.{e}.last.{j}"]))
            hidden.append(errors(states.mean(axis=0), tensors[f"exchange.{e}.mean.{j}"]))
            hidden.append(errors(states[r0:r1].mean(axis=0), tensors[f"exchange.{e}.response_mean.{j}"]))
        logits.append(errors(out["logits"][0, -1], tensors[f"exchange.{e}.logits"]))
    greedy = []
    for record in goldens["generations"]:
        got = decoder.greedy(record["input_ids"], len(record["greedy_ids"]), eos)
        greedy.append({"prompt": record["prompt"], "match": got == record["greedy_ids"], "ort": got,
                       "hf": record["greedy_ids"]})
    return {"hidden": worst(hidden), "logits": worst(logits), "greedy": greedy,
            "greedy_all_match": all(g["match"] for g in greedy)}


@torch.no_grad()
def torch_forward(model, ids, mask=None):
    ids = torch.as_tensor(np.asarray(ids, dtype=np.int64))
    kwargs = {}
    if mask is not None:
        kwargs = {"attention_mask": torch.as_tensor(mask), "position_ids": torch.as_tensor(position_ids_for(mask))}
    out = model(input_ids=ids, output_hidden_states=True, **kwargs)
    return [h.float().numpy() for h in out.hidden_states], out.logits[:, -1:].float().numpy()


def against_torch(decoder: OrtDecoder, model, ids, split: int | None = None) -> dict:
    """One sequence, every exported hidden state: full prefill, incremental decoding (prefill `split` tokens then
    one token per call), chunked prefill (two chunks), and a left-padded batch (the sequence next to a shorter one)."""
    ids = np.asarray(ids, dtype=np.int64).reshape(1, -1)
    n = ids.shape[1]
    split = split or n // 2
    ref_hidden, ref_logits = torch_forward(model, ids)
    names = [name for name in decoder.output_names if name.startswith("hidden_states.")]
    index = {name: int(name.split(".")[1]) for name in names}
    full = decoder.forward(ids)
    result = {"full_hidden": worst(errors(full[k], ref_hidden[index[k]]) for k in names),
              "full_logits": errors(full["logits"], ref_logits)}
    # incremental: the last position of each step must match the full forward at that position
    mask = np.ones((1, split), dtype=np.int64)
    out = decoder.run(ids[:, :split], mask, decoder.empty_past(1))
    steps = []
    for t in range(split, n):
        mask = np.ones((1, t + 1), dtype=np.int64)
        out = decoder.run(ids[:, t:t + 1], mask, decoder.next_past(out))
        steps += [errors(out[k][0, -1], ref_hidden[index[k]][0, t]) for k in names]
    result["incremental_hidden"] = worst(steps)
    result["incremental_logits"] = errors(out["logits"], ref_logits)
    # chunked prefill: two chunks of the prompt
    first = decoder.run(ids[:, :split], np.ones((1, split), dtype=np.int64), decoder.empty_past(1))
    second = decoder.run(ids[:, split:], np.ones((1, n), dtype=np.int64), decoder.next_past(first))
    result["chunked_hidden"] = worst(errors(second[k][0], ref_hidden[index[k]][0, split:]) for k in names)
    result["chunked_logits"] = errors(second["logits"], ref_logits)
    # left-padded batch: row 0 = the sequence, row 1 = its last 60% left-padded; then 3 decode steps each
    short = ids[:, n - max(2, (3 * n) // 5):]
    batch = np.zeros((2, n), dtype=np.int64)
    pad_mask = np.zeros((2, n), dtype=np.int64)
    batch[0], pad_mask[0] = ids[0], 1
    batch[1, n - short.shape[1]:], pad_mask[1, n - short.shape[1]:] = short[0], 1
    out = decoder.forward(batch, pad_mask)
    ref_short_hidden, ref_short_logits = torch_forward(model, short)
    padded = [errors(out["logits"][0], ref_logits[0]), errors(out["logits"][1], ref_short_logits[0])]
    padded += [errors(out[k][1, n - short.shape[1]:], ref_short_hidden[index[k]][0]) for k in names]
    tokens = np.array([[ids[0, 1]], [ids[0, 2]]], dtype=np.int64)  # arbitrary next tokens, decoded batched
    seqs = [np.concatenate([ids[0], tokens[0]]), np.concatenate([short[0], tokens[1]])]
    for _ in range(3):
        pad_mask = np.concatenate([pad_mask, np.ones((2, 1), dtype=np.int64)], axis=1)
        out = decoder.run(tokens, pad_mask, decoder.next_past(out))
        for row, seq in enumerate(seqs):
            _, ref_step = torch_forward(model, seq[None])
            padded.append(errors(out["logits"][row], ref_step[0]))
        seqs = [np.concatenate([s, t]) for s, t in zip(seqs, tokens)]
    result["batched_left_padded"] = worst(padded)
    return result
