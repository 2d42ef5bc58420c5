#!/usr/bin/env bash
# Submits a sharded extraction as a Slurm job array, then training once every shard succeeded:
#   deploy/slurm/submit.sh N                 shards 0..N-1, then training
#   OC_ARRAY=3,5 deploy/slurm/submit.sh N    only shards 3 and 5 again (a retry), then training
# Settings, exported to the jobs: OC_RUN_DIR (required, on a filesystem every node sees),
# OC_MODEL (exported model folder), OC_DATA (training JSONL), OC_LAYERS (-4), OC_POOLING (last),
# OC_DEVICE (cuda), OC_TRAIN_LAYER (-4), OC_IMAGE + OC_BIND (Apptainer) or OC_BIN (binary),
# OC_MAX_PARALLEL (at most this many shards at once), OC_SBATCH_ARGS ("--partition=gpu ...").
set -euo pipefail
n=${1:-}
[[ $n =~ ^[1-9][0-9]*$ ]] || { awk 'NR > 1 && !/^#/ { exit } NR > 1' "$0" >&2; exit 2; }
cd "$(dirname "$0")/../.."     # the jobs run from the repository root
: "${OC_RUN_DIR:?set OC_RUN_DIR to a directory on a shared filesystem}"
: "${OC_MODEL:?set OC_MODEL to the exported model folder}" "${OC_DATA:?set OC_DATA to the JSONL}"
export OC_SHARDS=$n
array=${OC_ARRAY:-0-$((n - 1))}${OC_MAX_PARALLEL:+%$OC_MAX_PARALLEL}
read -r -a extra <<<"${OC_SBATCH_ARGS:-}"
mkdir -p "$OC_RUN_DIR/logs"

# --parsable prints "JOBID" or "JOBID;CLUSTER".
ext=$(sbatch --parsable "${extra[@]}" --array="$array" \
  --output="$OC_RUN_DIR/logs/extract-%A_%a.log" deploy/slurm/extract.sbatch)
ext=${ext%%;*}
# afterok on an array job waits for all its tasks; if one fails, training is cancelled.
trn=$(sbatch --parsable "${extra[@]}" --dependency="afterok:$ext" --kill-on-invalid-dep=yes \
  --output="$OC_RUN_DIR/logs/train-%j.log" deploy/slurm/train.sbatch)
trn=${trn%%;*}
echo "extraction: array job $ext (tasks $array of $n shards); training: job $trn after it"
echo "watch: squeue -j $ext,$trn    logs: $OC_RUN_DIR/logs/    stores: $OC_RUN_DIR/activations/"
