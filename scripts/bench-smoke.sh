#!/usr/bin/env bash
# Runs every benchmark the README shows, at smoke size on the debug build: each must run to
# completion and print its table, so a documented command cannot break unnoticed. No ratio
# is asserted (a loaded CI machine says nothing about speed); `make bench` measures.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
target=${TARGET_DIR:-$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')}
bin="$target/debug"
export ALERTMESH_BIN=${ALERTMESH_BIN:-$bin/alertmesh}
export ALERTMESH_LOG=${ALERTMESH_LOG:-warn}

run() {
  local name=$1; shift
  echo "== bench smoke: $name"
  local started=$SECONDS
  if ! "$@"; then
    echo "error: benchmark $name failed in smoke mode: $*" >&2
    exit 1
  fi
  echo "== $name done in $((SECONDS - started)) s"
}

run decode_filter env BENCH_SECONDS=0.2 cargo test -q -p alertmesh-alert --bench decode_filter
run registry_decode env BENCH_SECONDS=0.2 BENCH_REGISTRY_ROUNDS=1 cargo test -q -p alertmesh-gateway --lib registry_decode_bench -- --ignored --nocapture
run bench_subscribe "$bin/bench_subscribe" --n-1k 3000 --n-64k 60 --live-1k 300 --live-64k 20 \
  --subscribers 4 --rounds 1 --warmup 0
run bench_auth "$bin/bench_auth" --n 500 --size 8192 --rounds 1
run bench_mirror "$bin/bench_mirror" --n 3000 --size-kib 4 --rounds 1 --lag-seconds 2 \
  --lag-rate-1k 200 --lag-rate-64k 50
run bench_archive env PG_BIN="${PG_BIN:-$(./scripts/postgres.sh)}" "$bin/bench_archive" --n 500 --rounds 1
ALERTMESH_TEST_KAFKA=apache run bench_replicas "$bin/bench_replicas" --n 1000 --rounds 1
# bench_mirror --mm2 1 (MirrorMaker 2 side by side) is not run here: even at the smallest
# sizes its JVM starts (two brokers, a MirrorMaker 2 per row) take minutes. `make bench` runs it.
run bench_publish "$bin/bench_publish" --n 2000 --batch 200 --rounds 2 --warmup 0 --walks 20
run bench_query "$bin/bench_query" --rows 20000 --rounds 1 --warmup 0
run bench_read.py "$root/.venv/bin/python" clients/python/benchmarks/bench_read.py --n 300 --rounds 1
