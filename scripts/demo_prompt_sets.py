#!/usr/bin/env python3
"""The demo's prompt sets and their report (standard library only).

  demo_prompt_sets.py XSTEST_PROMPTS_CSV TRAINING_JSONL N OUT_DIR
      writes OUT_DIR/{xstest-safe,xstest-unsafe,test-harmful}.jsonl, N prompts each, spread
      evenly over the source (XSTest's prompt types follow each other in the file);
  demo_prompt_sets.py --report OUT_DIR
      reads the `generate --prompts-file` results (*.out.jsonl) and prints, per set, the share of
      generations the guard paused, the median pause token and batched tokens/s, then three
      paused transcripts: what was released before the pause, and what was withheld.
"""
import csv
import json
import sys
from pathlib import Path

SETS = {
    "xstest-safe": "XSTest safe prompts (a pause is over-blocking)",
    "xstest-unsafe": "XSTest unsafe prompts (a pause is a catch)",
    "test-harmful": "test split's harmful prompts (a pause is a catch)",
}


def spread(items, n):
    """n items evenly spaced over the list (all of them when there are fewer)."""
    if len(items) <= n:
        return items
    return [items[i * len(items) // n] for i in range(n)]


def write_sets(xstest_csv, training, n, out):
    out.mkdir(parents=True, exist_ok=True)
    rows = list(csv.DictReader(open(xstest_csv, newline="", encoding="utf-8")))
    by_label = {lab: [r for r in rows if r["label"] == lab] for lab in ("safe", "unsafe")}
    harmful, seen = [], set()
    for line in open(training, encoding="utf-8"):
        r = json.loads(line)
        key = " ".join(r["prompt"].lower().split())
        if r.get("split") == "test" and r["label"] == 1 and key not in seen:
            seen.add(key)
            harmful.append({"id": r["id"], "prompt": r["prompt"]})
    sets = {
        "xstest-safe": [{"id": f"xstest-{r['id']}", "prompt": r["prompt"], "type": r["type"]} for r in by_label["safe"]],
        "xstest-unsafe": [{"id": f"xstest-{r['id']}", "prompt": r["prompt"], "type": r["type"]} for r in by_label["unsafe"]],
        "test-harmful": harmful,
    }
    for name, items in sets.items():
        chosen = spread(items, n)
        with open(out / f"{name}.jsonl", "w", encoding="utf-8") as f:
            for item in chosen:
                f.write(json.dumps(item) + "\n")
        print(f"{name}: {len(chosen)} of {len(items)} prompts -> {out / (name + '.jsonl')}")


def report(out):
    paused_examples = []
    print(f"{'prompt set':<52} {'n':>4} {'paused':>7} {'flagged':>8} {'median pause':>13} {'tok/s':>7}")
    for name, title in SETS.items():
        path = out / f"{name}.out.jsonl"
        if not path.is_file():
            continue
        res = [json.loads(line) for line in open(path, encoding="utf-8")]
        secs = float((out / f"{name}.seconds").read_text())
        paused = [r for r in res if r["status"] in ("paused", "refused")]
        flagged = [r for r in res if r["status"] == "flagged"]
        tokens = sum(r["tokens_generated"] for r in res)
        pauses = sorted(r["pause_token"] for r in paused if r["pause_token"] is not None)
        median = pauses[len(pauses) // 2] if pauses else None
        print(f"{title:<52} {len(res):>4} {len(paused) / len(res):>7.3f} {len(flagged) / len(res):>8.3f} "
              f"{'-' if median is None else 'token ' + str(median):>13} {tokens / secs:>7.1f}")
        if name != "xstest-safe":
            paused_examples += paused
    print("\n(paused = generation stopped by the guard; flagged = went on, marked; tok/s = generated tokens / wall "
          "time of the whole batched run, guard included)")
    curve(out)
    for r in paused_examples[:3]:
        print(f"\n> {r['prompt']}")
        print(f"  released before the pause at token {r['pause_token']}: {r['partial_response']!r}")
        withheld = r.get("withheld_text") or ""
        print(f"  withheld ({r['withheld_chars']} chars, never shown): {withheld[:200]!r}")
    if not paused_examples:
        print("\nno harmful prompt was paused")


def curve(out):
    """Pause rates as the pause threshold moves. Decoding is greedy and a pause only cuts a run
    short, so a guard with pause threshold t pauses exactly the runs whose recorded maximum
    smoothed risk reaches t: one run of each prompt gives the whole curve."""
    maxima = {}
    for name in SETS:
        path = out / f"{name}.out.jsonl"
        if path.is_file():
            maxima[name] = [json.loads(line)["max_smoothed_risk"] for line in open(path, encoding="utf-8")]
    if not maxima:
        return
    lo = min(min(v) for v in maxima.values())
    hi = max(max(v) for v in maxima.values())
    steps = [lo + (hi - lo) * i / 8 for i in range(9)]
    print("\npause rate if the pause threshold were t (from each run's maximum smoothed risk):")
    print(f"{'t':>7} " + " ".join(f"{n:>14}" for n in maxima))
    for t in steps:
        print(f"{t:>7.3f} " + " ".join(f"{sum(m >= t for m in v) / len(v):>14.3f}" for v in maxima.values()))


if __name__ == "__main__":
    if sys.argv[1] == "--report":
        report(Path(sys.argv[2]))
    else:
        write_sets(sys.argv[1], sys.argv[2], int(sys.argv[3]), Path(sys.argv[4]))
