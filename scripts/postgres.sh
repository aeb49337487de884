#!/usr/bin/env bash
# Installs PostgreSQL from the distribution's packages when its server binaries are missing
# (the query tests and the demo run a real server), and prints their directory,
# /usr/lib/postgresql/<version>/bin. Installing needs root (or sudo) and apt-get.
set -euo pipefail
find_bin() {
  local dir
  dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
  if [ -n "$dir" ] && [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ] && [ -x "$dir/postgres" ]; then
    echo "$dir"
  fi
}
bin=$(find_bin)
if [ -z "$bin" ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  command -v apt-get >/dev/null || { echo "error: PostgreSQL is missing and apt-get is not available; install PostgreSQL (initdb, pg_ctl, postgres, psql)" >&2; exit 1; }
  echo "installing PostgreSQL (apt-get install postgresql)" >&2
  $sudo apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq postgresql >&2
  bin=$(find_bin)
  [ -n "$bin" ] || { echo "error: PostgreSQL was installed but no /usr/lib/postgresql/<version>/bin/initdb was found" >&2; exit 1; }
fi
echo "$bin"
