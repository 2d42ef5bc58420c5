#!/usr/bin/env bash
# Tests of the deployment files with no cluster, container engine or Slurm:
#  - validate.sh passes on deploy/ and FAILS on copies broken in one place each (so the check is
#    known to be able to fail), naming the problem;
#  - submit.sh, extract.sbatch and run.sh drive stub sbatch/kubectl/binary commands correctly.
# Ends with "N passed, N failed"; exits 1 if any test failed.
# The sed expressions below hold $(VAR) and $var literally, on purpose:
# shellcheck disable=SC2016
set -uo pipefail
deploy=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
passed=0 failed=0
ok() { echo "PASS  $1"; passed=$((passed + 1)); }
ko() { echo "FAIL  $1"; failed=$((failed + 1)); sed 's/^/      | /' "$tmp/out" | tail -20; }

# broken NAME FILE SED_EXPR EXPECTED_TEXT: a copy of deploy/ with one edit must fail validation,
# and the output must contain EXPECTED_TEXT.
broken() {
  local name=$1 file=$2 expr=$3 want=$4 copy=$tmp/$1
  cp -r "$deploy" "$copy"
  rm -rf "$copy/tests"
  sed -i -e "$expr" "$copy/$file"
  if cmp -s "$deploy/$file" "$copy/$file"; then ko "$name (the edit changed nothing)"; return; fi
  if "$deploy/validate.sh" "$copy" >"$tmp/out" 2>&1; then ko "$name: validate passed a broken copy"
  elif ! grep -qF -- "$want" "$tmp/out"; then ko "$name: failed without naming '$want'"
  else ok "$name"; fi
}

if "$deploy/validate.sh" >"$tmp/out" 2>&1; then ok "deploy/ as committed validates"; else ko "deploy/ as committed validates"; fi

broken misspelt-field k8s/extract-job.yaml 's/backoffLimitPerIndex:/backofLimitPerIndex:/' "'backofLimitPerIndex' was unexpected"
broken wrong-type k8s/train-job.yaml 's/ttlSecondsAfterFinished: 86400/ttlSecondsAfterFinished: one-day/' "'one-day' is not of type 'integer'"
broken missing-required k8s/extract-job.yaml 's/^        - name: extract$/        - tty: false/' "'name' is a required property"
broken bad-shards k8s/kustomization.yaml 's/SHARDS=8 /SHARDS=eight /' "cannot decode !!str \`eight\` as a !!int"
broken no-gpu-toleration k8s/extract-job.yaml 's/key: nvidia.com\/gpu/key: gpu/' "toleration for the nvidia.com/gpu taint"
broken no-shard-arg k8s/extract-job.yaml 's|--shard=$(JOB_COMPLETION_INDEX)/$(SHARDS)|--shard=0/$(SHARDS)|' "args must contain --shard"
broken runs-as-root k8s/train-job.yaml 's/runAsNonRoot: true/runAsNonRoot: false/' "oc-train: runAsNonRoot"
broken train-not-suspended k8s/train-job.yaml 's/suspend: true/suspend: false/' "created suspended"
broken serve-probe-path k8s/serve/deployment.yaml 's|path: /ready|path: /readyz|' "readinessProbe must GET /ready"
broken serve-gpu-missing k8s/serve-gpu/kustomization.yaml 's|requests/nvidia.com~1gpu|requests/nvidia.com~1gpus|' "resources.requests must hold nvidia.com/gpu"
broken serve-localhost k8s/serve/deployment.yaml 's|--host=0.0.0.0|--host=127.0.0.1|' "--host=0.0.0.0"
broken missing-resource k8s/kustomization.yaml 's/- pvc.yaml/- pvcs.yaml/' "FAIL  kustomize render"
broken shell-syntax slurm/submit.sh 's/^set -euo pipefail$/if then/' "FAIL  bash -n slurm/submit.sh"
broken shellcheck k8s/run.sh 's/sleep "$poll"/sleep $poll/' "SC2086"
broken hadolint Dockerfile 's|^WORKDIR /home/oc$|RUN cd /home/oc|' "DL3003"

# Stubs: sbatch prints a "JOBID;CLUSTER" id and records its arguments; the binary prints its own.
mkdir -p "$tmp/bin" "$tmp/run"
cat >"$tmp/bin/sbatch" <<'EOF'
#!/usr/bin/env bash
n=$(($(wc -l <"$STUB_LOG" 2>/dev/null || echo 0) + 4242))
echo "sbatch $*" >>"$STUB_LOG"; echo "$n;cluster1"
EOF
printf '#!/usr/bin/env bash\necho "oc $*"\n' >"$tmp/bin/oc"
chmod +x "$tmp/bin/"*
export STUB_LOG=$tmp/sbatch.log

if PATH=$tmp/bin:$PATH OC_RUN_DIR=$tmp/run OC_MODEL=/m OC_DATA=/d.jsonl "$deploy/slurm/submit.sh" 4 >"$tmp/out" 2>&1 \
  && grep -q -- "--array=0-3 .*extract.sbatch" "$STUB_LOG" \
  && grep -q -- "--dependency=afterok:4242 .*train.sbatch" "$STUB_LOG"; then
  ok "slurm: submit.sh submits the array 0-3, then training afterok on its parsed job id"
else cat "$STUB_LOG" >>"$tmp/out"; ko "slurm: submit.sh"; fi

if SLURM_ARRAY_TASK_ID=2 OC_SHARDS=4 OC_BIN=$tmp/bin/oc OC_RUN_DIR=/r OC_MODEL=/m OC_DATA=/d.jsonl \
  bash "$deploy/slurm/extract.sbatch" >"$tmp/out" 2>&1 \
  && grep -qF -- "oc extract --model=/m --data=/d.jsonl --out=/r/activations/shard-2 --layers=-4 --pooling=last --device=cuda --shard=2/4" "$tmp/out"; then
  ok "slurm: array task 2 of 4 runs extract --shard=2/4 into shard-2"
else ko "slurm: extract.sbatch command line"; fi

if SLURM_ARRAY_TASK_ID=4 OC_SHARDS=4 OC_BIN=$tmp/bin/oc OC_RUN_DIR=/r OC_MODEL=/m OC_DATA=/d \
  bash "$deploy/slurm/extract.sbatch" >"$tmp/out" 2>&1; then ko "slurm: task 4 of 4 must be refused"
else ok "slurm: an array task outside 0..N-1 is refused"; fi

# run.sh against a stub kubectl whose extraction Job is in state $JOB_STATE.
cat >"$tmp/bin/kubectl" <<'EOF'
#!/usr/bin/env bash
echo "kubectl $*" >>"$STUB_LOG"
case "$*" in
  *"get job oc-extract -o jsonpath={range"*) echo "$JOB_STATE " ;;
  *"get job oc-train -o jsonpath={range"*) echo "Complete " ;;
  *failedIndexes*) echo "3,5" ;;
esac
EOF
chmod +x "$tmp/bin/kubectl"
: >"$STUB_LOG"
if PATH=$tmp/bin:$PATH JOB_STATE=Failed "$deploy/k8s/run.sh" start >"$tmp/out" 2>&1; then ko "k8s: run.sh start must fail when a shard failed"
elif grep -q "failed shards: 3,5" "$tmp/out" && ! grep -q "suspend" "$STUB_LOG"; then
  ok "k8s: a failed extraction names its shards and does not start training"
else ko "k8s: run.sh on a failed extraction"; fi
: >"$STUB_LOG"
if PATH=$tmp/bin:$PATH JOB_STATE=Complete "$deploy/k8s/run.sh" start >"$tmp/out" 2>&1 \
  && grep -q "apply -k $deploy/k8s --selector app.kubernetes.io/component in (config,extract,train)" "$STUB_LOG" \
  && grep -q 'patch job oc-train --type=merge -p {"spec":{"suspend":false}}' "$STUB_LOG" \
  && grep -q "probe: /data/runs/run1/probe" "$tmp/out"; then
  ok "k8s: run.sh start applies the Jobs, then resumes training once extraction is Complete"
else cat "$STUB_LOG" >>"$tmp/out"; ko "k8s: run.sh start"; fi

echo "$passed passed, $failed failed"
((failed == 0))
