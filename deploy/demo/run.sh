#!/usr/bin/env bash
# The local demo: one Tansu broker and one gateway on 127.0.0.1, loaded with the real ZTF
# fixture alerts; then a bounded replay from storage and a live subscription.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
am=${ALERTMESH_BIN:-$root/target/debug/alertmesh}
tansu=${TANSU_BIN:-$(./scripts/devenv.sh)}
work=$root/.demo
mkdir -p "$work"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

for port in 19092 50051 9464; do
  if (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null; then
    echo "error: port $port on 127.0.0.1 is in use; stop what listens there and retry" >&2
    exit 1
  fi
done

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
# JSON lines with the (base64, ~60 KB) payload shortened, to keep the terminal readable.
short() { python3 -c '
import json, sys
for line in sys.stdin:
    a = json.loads(line)
    a["payload"] = "<%d bytes of base64>" % len(a["payload"])
    print(json.dumps(a), flush=True)'; }

step "starting Tansu (Kafka-compatible, in memory) on 127.0.0.1:19092"
"$tansu" broker --listener-url tcp://127.0.0.1:19092 --advertised-listener-url tcp://127.0.0.1:19092 \
  --storage-engine memory://tansu/ --cluster-id demo >"$work/tansu.log" 2>&1 &
pids+=($!)
sleep 1

step "loading 45 real ZTF alerts into topic ztf.alerts (3 partitions)"
"$am" replay --bootstrap 127.0.0.1:19092 --topic ztf.alerts --partitions 3 alert/tests/fixtures/ztf/fink-ztf-public-2020-01-01/*.avro

step "starting gateway lasair (gRPC 127.0.0.1:50051, metrics http://127.0.0.1:9464/metrics)"
"$am" serve --config deploy/demo/lasair.toml >"$work/gateway.log" 2>&1 &
pids+=($!)
for _ in $(seq 50); do
  python3 -c 'import urllib.request; urllib.request.urlopen("http://127.0.0.1:9464/healthz", timeout=1)' 2>/dev/null && break
  sleep 0.2
done

step "alertmesh topics"
"$am" topics --gateway http://127.0.0.1:50051

step "alertmesh subscribe --from earliest --until now --limit 5   (a stream generated from stored data)"
"$am" subscribe --gateway http://127.0.0.1:50051 --topic ztf.alerts --from earliest --until now --limit 5 | short

step "alertmesh subscribe --from latest --limit 3   (live), while 3 new alerts arrive"
"$am" subscribe --gateway http://127.0.0.1:50051 --topic ztf.alerts --from latest --limit 3 | short &
sub=$!
sleep 1
"$am" replay --bootstrap 127.0.0.1:19092 --topic ztf.alerts --rate 2 \
  alert/tests/fixtures/ztf/fink-ztf-public-2020-01-01/1095578116015010001.avro alert/tests/fixtures/ztf/fink-ztf-public-2020-01-01/1095578116115010003.avro \
  alert/tests/fixtures/ztf/fink-ztf-public-2020-01-01/1095578116215010002.avro
wait "$sub"

step "served so far (from /metrics)"
python3 -c 'import urllib.request; print(urllib.request.urlopen("http://127.0.0.1:9464/metrics").read().decode())' \
  | grep -E '^alertmesh_(alerts_served|open_subscriptions|kafka_readers_started)'
echo
echo "done; logs in .demo/. Try: $am subscribe --topic ztf.alerts --from earliest --until now --format raw --out /tmp/alerts"
