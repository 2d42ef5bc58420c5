"""Prints the benchmark table with the ratios from RESULTS_DIR/*.json and writes RESULTS_DIR/report.md.

    python benches/gpu/report.py RESULTS_DIR
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

TARGETS = {"extract": 1.5, "decode": 10.0, "probe_overhead_pct": 2.0}


def load(d: Path, name: str):
    f = d / f"{name}.json"
    return json.loads(f.read_text()) if f.exists() else None


def fmt(v, spec=",.1f"):
    return "-" if v is None else format(v, spec)


def extraction_rows(ex, hf, flops):
    rows = []
    if ex:
        rows.append(("ours: `extract` (ONNX Runtime, fp16)", ex["examples_per_s"], ex["tokens_per_s"], ex["tflops"],
                     ex.get("peak_gpu_gib")))
    if hf and "batched" in hf:
        b = hf["batched"]
        rows.append((f"transformers batched {hf['dtype']}, batch {b['best_batch']} (best of "
                     f"{'/'.join(b['by_batch'])})", b["examples_per_s"], b["tokens_per_s"],
                     b["tokens_per_s"] * flops / 1e12, b["peak_gib"]))
        for size, r in b["by_batch"].items():
            rows.append((f"  transformers batched, batch {size}", r["examples_per_s"], r["tokens_per_s"],
                         r["tokens_per_s"] * flops / 1e12, r["peak_gib"]))
    if hf and "seed" in hf:
        s = hf["seed"]
        rows.append((f"the seed's loop (1 example per forward; {s['examples']} examples)", s["examples_per_s"],
                     s["tokens_per_s"], s["tokens_per_s"] * flops / 1e12, s["peak_gib"]))
    return rows


def main() -> None:
    d = Path(sys.argv[1])
    ex, dec, hf = load(d, "extract"), load(d, "decode"), load(d, "hf")
    errors, run, placement = load(d, "errors") or {}, load(d, "run") or {}, load(d, "placement")
    flops = None
    for meta in (d.parent / "src" / "bench_meta.json",):
        if meta.exists():
            flops = json.loads(meta.read_text())["flops_per_token"]
    flops = flops or 3.754e9
    card = (hf or {}).get("gpu") or run.get("device_name", "?")
    out = [f"# GPU benchmark ({card}; {flops / 1e9:.3g} GFLOP/token)", ""]
    out += ["## Extraction", "", "| method | examples/s | tokens/s | TFLOP/s | peak GPU GiB |", "|---|---|---|---|---|"]
    for name, e, t, tf, mem in extraction_rows(ex, hf, flops):
        out.append(f"| {name} | {fmt(e)} | {fmt(t, ',.0f')} | {fmt(tf, '.3g')} | {fmt(mem, '.1f')} |")
    ratios = []
    if ex and hf and "batched" in hf:
        r = ex["tokens_per_s"] / hf["batched"]["tokens_per_s"]
        ratios.append(f"extraction vs transformers batched: **{r:.2f}x** (target >= {TARGETS['extract']}x)")
    if ex and hf and "seed" in hf:
        ratios.append(f"extraction vs the seed's loop: **{ex['tokens_per_s'] / hf['seed']['tokens_per_s']:.1f}x**")
    out += ["", "## Decoding at batch 1", "", "| method | tokens/s | ms/token |", "|---|---|---|"]
    if dec:
        for key, label in (("unguarded", "ours, unguarded"), ("guarded", "ours, guarded (probe every token)"),
                           ("guarded_without_io_binding", "ours, guarded, without IoBinding (KV cache via host)"),
                           ("guarded_with_io_binding", "ours, guarded, with IoBinding")):
            if key in dec:
                out.append(f"| {label} | {fmt(dec[key]['tokens_per_s'])} | {fmt(dec[key]['ms_per_token'], '.2f')} |")
    if hf and "generate" in hf:
        g = hf["generate"]
        out.append(f"| HF `generate` ({hf['dtype']}, KV cache) | {fmt(g['tokens_per_s'])} | {fmt(g['ms_per_token'], '.2f')} |")
    if dec and hf and "generate" in hf:
        for key in ("unguarded", "guarded"):
            r = dec[key]["tokens_per_s"] / hf["generate"]["tokens_per_s"]
            ratios.append(f"decode ({key}) vs HF generate: **{r:.1f}x** (target >= {TARGETS['decode']}x)")
    if dec:
        ratios.append(f"probe overhead: **{dec['probe_overhead_pct']:.2f} %** (target <= "
                      f"{TARGETS['probe_overhead_pct']} %; probe every {dec['probe_every_n_tokens']} token(s))")
        on, off = (("guarded", "guarded_without_io_binding") if dec["io_binding"]
                   else ("guarded_with_io_binding", "guarded"))
        if on in dec and off in dec:
            r = dec[on]["tokens_per_s"] / dec[off]["tokens_per_s"]
            ratios.append(f"IoBinding vs plain runs (guarded decode): {r:.2f}x")
    out += ["", "## Ratios", ""] + [f"- {r}" for r in ratios]
    parity = load(d, "parity")
    if parity:
        out += ["", "## Parity on this device (our extract vs PyTorch fp32 goldens, relative error)", "",
                "| model | last token | response mean | provider |", "|---|---|---|---|"]
        for name, r in parity.items():
            out.append(f"| {name} | {r['last_rel']:.2e} | {r['mean_rel']:.2e} | {r['provider']} |")
    if placement:
        out += ["", "## Node placement (ONNX Runtime profile of an 8-row extract)", "", "```", placement["report"], "```"]
    notes = []
    if ex:
        notes.append(f"extract: {ex['examples']} examples, {ex['tokens']:,} tokens, layers `{ex['layers']}`, "
                     f"--batch-tokens {ex['batch_tokens']} --max-batch {ex['max_batch']}; session load + run "
                     f"{ex['wall_seconds_with_load']:.0f} s wall")
    if dec:
        notes.append(f"decode: {dec['prompts']} prompts x {dec['max_new_tokens']} tokens, provider {dec['provider']}, "
                     f"IoBinding {dec['io_binding']}, probe layer {dec['probe_layer']}")
    if hf:
        notes.append(f"transformers side: torch {hf['torch']}, {hf['dtype']}, load {hf['load_seconds']:.0f} s")
    if run:
        notes.append(f"whole run {run['total_seconds']:.0f} s"
                     + ("; the transformers baselines ran while the export ran" if run.get("overlap_hf_with_export")
                        else ""))
    for stage, err in errors.items():
        notes.append(f"FAILED {stage}: {err}")
    out += ["", "## Notes", ""] + [f"- {n}" for n in notes]
    text = "\n".join(out) + "\n"
    (d / "report.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
