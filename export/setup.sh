#!/usr/bin/env bash
# Creates the export step's virtualenv (.venv at the project root) once; reruns are no-ops unless the
# requirements changed. Usage: export/setup.sh [VENV_DIR]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv=${1:-$root/.venv}
stamp=$venv/.oc-requirements.sha256
want=$(cat "$root/export/requirements.txt" "$root/export/requirements-nodeps.txt" | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then exit 0; fi
py=${PYTHON:-python3}
"$py" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "export step needs Python >= 3.11")'
echo "setting up the export environment in $venv (torch is a ~2.8 GB download; a few minutes)" >&2
"$py" -m venv "$venv"
"$venv/bin/pip" install -q --disable-pip-version-check -r "$root/export/requirements.txt"
"$venv/bin/pip" install -q --disable-pip-version-check --no-deps -r "$root/export/requirements-nodeps.txt"
echo "$want" > "$stamp"
