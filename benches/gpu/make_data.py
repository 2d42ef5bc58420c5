"""Turns the token-id workload into the inputs of both sides of the benchmark:

    python benches/gpu/make_data.py WORKLOAD OUT_DIR --vocab V [--max-examples N] [--max-prompts K]

OUT_DIR/data.jsonl   labelled exchanges for `open-constitution extract` (prompt and response are the ids as
                     `t{i}` words; our tokenizer maps them back to exactly these ids)
OUT_DIR/prompts.txt  generation prompts for `open-constitution bench decode`, one per line
OUT_DIR/ids.json     the same ids for the transformers baselines: {"examples": [[...]], "prompts": [[...]]}
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from common import ids_to_text, load_workload


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("workload")
    ap.add_argument("out")
    ap.add_argument("--vocab", type=int, required=True, help="model vocabulary (ids are folded into it if smaller)")
    ap.add_argument("--max-examples", type=int, default=None)
    ap.add_argument("--max-prompts", type=int, default=None)
    args = ap.parse_args()
    w = load_workload(Path(args.workload), args.vocab, args.max_examples, args.max_prompts)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "data.jsonl", "w") as f:
        for e in w["examples"]:
            cut = e["cut"]
            row = {"id": f"w{e['id']}", "prompt": ids_to_text(e["ids"][:cut]),
                   "response": ids_to_text(e["ids"][cut:]), "label": e["label"]}
            f.write(json.dumps(row) + "\n")
    (out / "prompts.txt").write_text("".join(ids_to_text(p) + "\n" for p in w["prompts"]))
    ids = {"examples": [e["ids"] for e in w["examples"]], "prompts": w["prompts"]}
    (out / "ids.json").write_text(json.dumps(ids))
    tokens = sum(len(e) for e in ids["examples"])
    print(json.dumps({"examples": len(ids["examples"]), "tokens": tokens, "prompts": len(ids["prompts"])}))


if __name__ == "__main__":
    main()
