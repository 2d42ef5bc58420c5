#!/usr/bin/env bash
# Compares probe methods on one `tokens` activation store (issue 13), each as a guard: per-state
# baselines (`token`, `last`, `mean` views of --layer) and streaming probes on one layer and on
# every stored layer (with the cascade). Every method's thresholds are set on the validation
# streams (<= 5 % of safe streams flagged, <= 1 % paused); the table reports the test split.
# Usage: scripts/compare_probes.sh STORE OUT_DIR LAYER [extra train flags...]
set -euo pipefail
STORE=$1 OUT=$2 LAYER=$3
shift 3
BIN=${BIN:-target/release/open-constitution}
mkdir -p "$OUT"
train() { # train NAME FLAGS...: trains once (a rerun keeps a finished probe)
  local name=$1; shift
  if [ ! -f "$OUT/$name/config.json" ]; then
    "$BIN" -q train --activations "$STORE" --out "$OUT/$name" "$@" "${EXTRA[@]}" > "$OUT/$name.txt"
  fi
}
EXTRA=("$@")
train token-lr --view token --layer "$LAYER"
train last-lr --view last --layer "$LAYER"
train mean-lr --view mean --layer "$LAYER"
train stream-1layer --layer "$LAYER" --cascade-layer "$LAYER"
train stream-all-layers
python3 - "$OUT" <<'PY'
import json, sys, os
out = sys.argv[1]
rows = [("token LR", "token-lr"), ("last-token LR", "last-lr"), ("mean LR", "mean-lr"),
        ("streaming, 1 layer", "stream-1layer"), ("streaming, all layers", "stream-all-layers")]
def f(v, d=3):
    return "-" if v is None else f"{v:.{d}f}"
print(f"{'method':<24}{'layers':<12}{'ROC-AUC':>8}{'TPR@1%':>8}{'stream AUC':>11}"
      f"{'paused unsafe':>14}{'paused safe':>12}{'median pause':>13}{'cascade':>9}")
table = []
for label, d in rows:
    c = json.load(open(os.path.join(out, d, "config.json")))
    s = c["streams"]; t = s["test"]; m = c["metrics"] if s.get("fit") is None else None
    # Per-state methods: their own per-state test metrics; streaming ones: the cascade's
    # second stage is whole-exchange, the stream metrics are the probe's.
    per_state = c["metrics"]
    sm = s["test_stream_metrics"]
    layers = c.get("feature_layers") or [c["layer_index"]]
    line = (f"{label:<24}{','.join(map(str, layers)):<12}{f(per_state['roc_auc']):>8}"
            f"{f(per_state['tpr_at_1pct_fpr']):>8}{f(sm['roc_auc']):>11}"
            f"{f(t['unsafe_paused']):>14}{f(t['safe_paused']):>12}"
            f"{str(t['median_pause_token'] if t['median_pause_token'] is not None else '-'):>13}"
            f"{'yes' if c.get('cascade') else 'no':>9}")
    print(line)
    table.append({"method": label, "dir": d, "layers": layers, "metrics": per_state,
                  "stream_metrics": sm, "test": t, "validation": s["validation"],
                  "cascade": c.get("cascade")})
json.dump(table, open(os.path.join(out, "compare.json"), "w"), indent=1)
print(f"(test split; ROC-AUC/TPR@1% per state for LR baselines, per stream for streaming probes;"
      f" wrote {out}/compare.json)")
PY
