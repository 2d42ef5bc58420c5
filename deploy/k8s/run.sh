#!/usr/bin/env bash
# Runs a sharded extraction and then probe training on Kubernetes, in stages:
#   run.sh setup                 create the shared volume and the loader pod
#   run.sh copy MODEL_DIR DATA   copy an exported model folder and a training JSONL onto it
#   run.sh start                 launch the N extraction shards, wait, then train (= extract + train)
#   run.sh extract               launch the shards (and the suspended training Job), wait for them
#   run.sh train                 resume the training Job and wait for it
#   run.sh status                shard progress and failed indexes
#   run.sh logs K                logs of shard K
#   run.sh fetch DEST            copy the trained probe from the volume to DEST
#   run.sh retry                 re-run the extraction Job after it failed (finished shards resume
#                                at their end at once; only the unfinished ones do work)
#   run.sh cleanup               delete the Jobs and the loader pod (the volume and its data stay)
# Parameters (N, image, run name, volume size) live in kustomization.yaml. OC_NAMESPACE selects a
# namespace (else kubectl's current one); OC_POLL sets the seconds between status checks (30).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
k=(kubectl ${OC_NAMESPACE:+--namespace "$OC_NAMESPACE"})
poll=${OC_POLL:-30}
comp=app.kubernetes.io/component

# Applies only the resources whose component label is in the given list.
apply() { "${k[@]}" apply -k "$here" --selector "$comp in ($1)"; }

# The value of a literal in kustomization.yaml (e.g. RUN).
config() { sed -n "s/^ *- $1=\([^ #]*\).*/\1/p" "$here/kustomization.yaml"; }

# Waits until a Job is Complete (exit 0) or Failed (exit 1), printing progress. (`kubectl wait
# --for=condition=complete` alone would hang until its timeout when the Job fails.)
wait_job() {
  local job=$1 conds
  while :; do
    conds=$("${k[@]}" get job "$job" -o jsonpath='{range .status.conditions[?(@.status=="True")]}{.type}{" "}{end}')
    case " $conds " in
      *" Complete "*) echo "$job: complete"; return 0 ;;
      *" Failed "*)
        echo "$job: FAILED; failed shards: $("${k[@]}" get job "$job" -o jsonpath='{.status.failedIndexes}')" >&2
        echo "  inspect: $0 logs K; after fixing the cause: $0 retry" >&2
        return 1 ;;
    esac
    "${k[@]}" get job "$job" -o jsonpath='{.metadata.name}: active={.status.active} done={.status.completedIndexes} failed={.status.failedIndexes}{"\n"}'
    sleep "$poll"
  done
}

case ${1:-} in
  setup)
    # The loader sleeps for a day and then ends; an ended one is replaced.
    case $("${k[@]}" get pod oc-loader -o jsonpath='{.status.phase}' 2>/dev/null || true) in
      Succeeded | Failed) "${k[@]}" delete pod oc-loader --wait=true ;;
    esac
    apply storage,loader
    "${k[@]}" wait --for=condition=Ready pod/oc-loader --timeout=10m ;;
  copy)
    [[ $# -eq 3 ]] || { echo "usage: $0 copy MODEL_DIR DATA_FILE" >&2; exit 2; }
    # Destinations must match MODEL_DIR and DATA_FILE in kustomization.yaml.
    "${k[@]}" exec oc-loader -- mkdir -p /data/models /data/data /data/runs
    "${k[@]}" cp "$2" "oc-loader:/data/models/$(basename "$2")"
    "${k[@]}" cp "$3" "oc-loader:/data/data/$(basename "$3")"
    "${k[@]}" exec oc-loader -- ls -lR /data/models /data/data ;;
  extract)
    apply config,extract,train
    wait_job oc-extract ;;
  train)
    "${k[@]}" patch job oc-train --type=merge -p '{"spec":{"suspend":false}}'
    wait_job oc-train
    echo "probe: /data/runs/$(config RUN)/probe on the shared volume" ;;
  start)
    "$0" extract
    "$0" train ;;
  status)
    "${k[@]}" get jobs,pods --selector "$comp in (extract,train)" -o wide
    "${k[@]}" get job oc-extract -o jsonpath='done={.status.completedIndexes} failed={.status.failedIndexes}{"\n"}' ;;
  logs)
    [[ $# -eq 2 ]] || { echo "usage: $0 logs K" >&2; exit 2; }
    "${k[@]}" logs --tail=-1 --selector "job-name=oc-extract,batch.kubernetes.io/job-completion-index=$2" ;;
  fetch)
    [[ $# -eq 2 ]] || { echo "usage: $0 fetch DEST" >&2; exit 2; }
    run=$(config RUN)
    "$0" setup
    "${k[@]}" cp "oc-loader:/data/runs/$run/probe" "$2"
    echo "probe of run $run: $2" ;;
  retry)
    # A Job cannot re-run an index once it failed: replace the Job. Its template is unchanged, so
    # each shard runs the same command again and resumes from its store on the volume.
    "${k[@]}" delete job oc-extract --ignore-not-found --cascade=foreground --wait=true
    "$0" extract ;;
  cleanup)
    "${k[@]}" delete job oc-extract oc-train --ignore-not-found
    "${k[@]}" delete pod oc-loader --ignore-not-found ;;
  *)
    awk 'NR > 1 && !/^#/ { exit } NR > 1' "$0" >&2
    exit 2 ;;
esac
