#!/usr/bin/env bash
# Tests of the Python client: installs it (editable, with pandas) and its test tools into the
# repository's .venv, runs pytest against a real Tansu and a real gateway, then executes
# notebooks/quickstart.ipynb and notebooks/derived.ipynb headless against a freshly loaded
# local Tansu + gateway (with a publishable topic for derived.ipynb).
#
#   clients/python/run-tests.sh                    # everything; exits non-zero on any failure
#   clients/python/run-tests.sh -k reconnect       # extra arguments go to pytest
#   UPDATE_NOTEBOOK=1 clients/python/run-tests.sh  # also rewrite the notebooks' stored outputs
#
# Binaries: $ALERTMESH_BIN (default target/debug/alertmesh, built when missing) and
# $TANSU_BIN (default: installed by scripts/devenv.sh). Works on a fresh machine with
# Python 3.10+ and PyPI.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
venv="$root/.venv"
py="$venv/bin/python"

if [ ! -x "$py" ]; then
  "$(command -v python3.11 || command -v python3)" -m venv "$venv"
fi
# Tansu (and fastavro) the way the rest of the repository installs them.
export TANSU_BIN=${TANSU_BIN:-$("$root/scripts/devenv.sh")}
export ALERTMESH_BIN=${ALERTMESH_BIN:-$root/target/debug/alertmesh}
if [ ! -x "$ALERTMESH_BIN" ]; then
  (cd "$root" && cargo build -p alertmesh-gateway)
fi

"$py" -m pip install --quiet --disable-pip-version-check -r "$here/requirements-test.txt" -e "$here[pandas,test]"

echo "== pytest clients/python/tests"
"$py" -m pytest "$here/tests" "$@"

echo "== notebooks/quickstart.ipynb, notebooks/derived.ipynb (headless)"
work=$(mktemp -d)
stack_pid=
cleanup() {
  if [ -n "$stack_pid" ]; then kill "$stack_pid" 2>/dev/null || true; wait "$stack_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
"$py" "$here/tests/harness.py" --ready-file "$work/url" &
stack_pid=$!
for _ in $(seq 300); do
  [ -s "$work/url" ] && break
  kill -0 "$stack_pid" 2>/dev/null || { echo "error: the local Tansu + gateway did not start" >&2; exit 1; }
  sleep 0.1
done
[ -s "$work/url" ] || { echo "error: the local Tansu + gateway did not become ready" >&2; exit 1; }
ALERTMESH_GATEWAY=$(cat "$work/url") UPDATE_NOTEBOOK=${UPDATE_NOTEBOOK:-} "$py" - \
  "$root/notebooks/quickstart.ipynb" "$root/notebooks/derived.ipynb" <<'PY'
import os
import sys

import nbformat
from nbclient import NotebookClient

for path in sys.argv[1:]:
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": os.path.dirname(path)}}).execute()
    if os.environ.get("UPDATE_NOTEBOOK"):
        nbformat.write(nb, path)
        print(f"{path}: executed; outputs written")
    else:
        print(f"{path}: executed without errors")
PY
