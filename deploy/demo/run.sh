#!/usr/bin/env bash
# The demo mesh: three institutions on this machine, each with its own Tansu broker and
# gateway on 127.0.0.1 (configurations in this folder):
#
#   replay --rate R --rounds 0 (real ZTF alerts, forever)
#     -> survey  ztf.raw                                   Kafka 19091  gRPC 29051  HTTP 29461
#     -> lasair  ztf.alerts, ztf.bright (filtered at the survey)
#                served with JWT + mutual TLS              Kafka 19092  gRPC 29052  HTTPS 29462
#     -> fink    ztf.alerts (mirrored from lasair with a token
#                and a client certificate lasair issued)   Kafka 19093  gRPC 29053  HTTP 29463
#                lasair.bright-history: a query result of lasair's archive (ztf.history
#                where magpsf < 16), mirrored with the same credentials
#                fink.lcfit, fink.xmatch, fink.class: what fink's science filters
#                (fink_filters.py, alertmesh.run_filter) derive from its copy
#
# lasair also archives its ztf.alerts in PostgreSQL (a throwaway cluster on :15432, in a
# temporary directory, deleted on exit) and serves the archive as the query ztf.history.
#
# Then a live summary every 2 s until Ctrl-C (or SIGTERM), which stops everything.
# Environment: DEMO_SECONDS=N stops by itself after about N seconds and exits 0 only if
# every hop copied alerts and a classification's provenance walks back to the survey
# (derived_check.py); DEMO_RATE (alerts/s, default 10); ALERTMESH_BIN; TANSU_BIN;
# PG_BIN (PostgreSQL's server binaries; scripts/postgres.sh installs them when missing).
# Generated keys, certificates, tokens and logs go to .demo/ (git-ignored).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
am=${ALERTMESH_BIN:-$root/target/debug/alertmesh}
tansu=${TANSU_BIN:-$(./scripts/devenv.sh)}
pg_bin=${PG_BIN:-$(./scripts/postgres.sh)}
pg_port=15432
seconds=${DEMO_SECONDS:-0}
rate=${DEMO_RATE:-10}
demo=deploy/demo
work=$root/.demo
# survey, lasair, fink (keep in step with the .toml files)
kafka_ports=(19091 19092 19093)
grpc_ports=(29051 29052 29053)
http_ports=(29461 29462 29463)
names=(survey lasair fink)
# fink's filters run on the project's .venv (scripts/devenv.sh installs grpcio and protobuf
# there) with the Python client from this tree.
py=$root/.venv/bin/python
derived=(fink.lcfit fink.xmatch fink.class)
ztf=(alert/tests/fixtures/ztf/fink-ztf-public-2020-01-01/*.avro)

[ -x "$am" ] || { echo "error: $am not found; run 'make build' first" >&2; exit 1; }
"$py" -c 'import grpc, google.protobuf, fastavro' 2>/dev/null ||
  { echo "error: $py lacks grpcio, protobuf or fastavro; run ./scripts/devenv.sh" >&2; exit 1; }
for port in "${kafka_ports[@]}" "${grpc_ports[@]}" "${http_ports[@]}" "$pg_port"; do
  if (exec 3<>/dev/tcp/127.0.0.1/"$port") 2>/dev/null; then
    echo "error: port $port on 127.0.0.1 is in use (another demo running?); stop what listens there and retry" >&2
    exit 2
  fi
done

# Started processes by role, stopped in this order: the summary, fink's filters and the
# gateways (mirroring ones first) while their Kafka is still up, then the feeds, then the
# brokers. Each runs in
# its own session (setsid), so Ctrl-C reaches only this script, which stops them in order.
gateways=() feeds=() brokers=()
cleaned=
pg_dir=
# Sends SIGTERM to the given pids and waits up to 5 s for them, then SIGKILL.
stop() {
  [ $# -eq 0 ] && return
  for ((i = $#; i >= 1; i--)); do kill -TERM "${!i}" 2>/dev/null || true; done
  for _ in $(seq 50); do
    alive=
    for pid in "$@"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [ -z "$alive" ] && break
    sleep 0.1
  done
  for pid in "$@"; do kill -KILL "$pid" 2>/dev/null || true; done
}
cleanup() {
  [ -n "$cleaned" ] && return
  cleaned=1
  trap '' INT TERM
  [ $((${#gateways[@]} + ${#feeds[@]} + ${#brokers[@]})) -eq 0 ] && return
  echo "stopping the demo mesh: gateways, then feeds, then brokers ..." >&2
  stop "${gateways[@]}"
  stop "${feeds[@]}"
  stop "${brokers[@]}"
  wait 2>/dev/null || true
  if [ -n "$pg_dir" ]; then rm -rf "$pg_dir"; fi
  echo "stopped; logs in .demo/*.log" >&2
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

step() { printf '\033[1m== %s\033[0m\n' "$*"; }
# Waits until $1 answers (an http(s) URL; https is checked against the CA in $2).
wait_http() {
  python3 - "$1" "${2:-}" <<'EOF'
import ssl, sys, time, urllib.request
url, ca = sys.argv[1], sys.argv[2]
ctx = ssl.create_default_context(cafile=ca) if ca else None
for _ in range(150):
    try:
        urllib.request.urlopen(url, timeout=1, context=ctx).read()
        sys.exit(0)
    except Exception:
        time.sleep(0.1)
sys.exit(1)
EOF
}
# Waits until a Kafka listener accepts connections.
wait_port() {
  for _ in $(seq 100); do
    (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "error: nothing listens on 127.0.0.1:$1; see .demo/*.log" >&2
  return 1
}

rm -rf "$work"
mkdir -p "$work/fink"

step "three Tansu brokers (Kafka-compatible, in memory): survey :19091, lasair :19092, fink :19093"
for i in 0 1 2; do
  url=tcp://127.0.0.1:${kafka_ports[i]}
  # Tansu logs by RUST_LOG; keep it quiet unless TANSU_LOG asks otherwise.
  RUST_LOG="${TANSU_LOG:-warn}" setsid "$tansu" broker --listener-url "$url" --advertised-listener-url "$url" \
    --storage-engine memory://tansu/ --cluster-id "demo-${names[i]}" >"$work/tansu-${names[i]}.log" 2>&1 &
  brokers+=($!)
done
for p in "${kafka_ports[@]}"; do wait_port "$p"; done
for t in "${derived[@]}"; do
  "$tansu" topic create "$t" --broker "tcp://127.0.0.1:${kafka_ports[2]}" --partitions 3 >>"$work/tansu-fink.log" 2>&1
done

step "lasair's archive database: a throwaway PostgreSQL cluster on :$pg_port (user lasair, database lasair)"
# In /tmp rather than .demo: the server may run as user postgres (initdb refuses root),
# which must be able to reach its data directory.
pg_dir=$(mktemp -d /tmp/alertmesh-demo-pg.XXXXXX)
as_pg=()
if [ "$(id -u)" -eq 0 ]; then
  chown postgres: "$pg_dir"
  # setpriv executes the server in place (no parent left between), so stopping the pid
  # stops PostgreSQL.
  as_pg=(setpriv --reuid=postgres --regid=postgres --init-groups)
fi
"${as_pg[@]}" "$pg_bin/initdb" -D "$pg_dir/data" -U postgres --auth-host=scram-sha-256 --auth-local=trust \
  --encoding=UTF8 --no-sync >"$work/initdb.log" 2>&1
setsid "${as_pg[@]}" "$pg_bin/postgres" -D "$pg_dir/data" -c listen_addresses=127.0.0.1 -c port=$pg_port \
  -c unix_socket_directories="$pg_dir" -c log_min_messages=warning >"$work/postgres.log" 2>&1 &
brokers+=($!)
mkdir -p "$work/lasair"
pg_password=$(python3 -c 'import secrets; print(secrets.token_urlsafe(18))')
printf '%s\n' "$pg_password" >"$work/lasair/pg-password"
chmod 600 "$work/lasair/pg-password"
for _ in $(seq 100); do
  "$pg_bin/pg_isready" -q -h "$pg_dir" -p $pg_port && break
  sleep 0.1
done
"${as_pg[@]}" "$pg_bin/psql" -X -q -h "$pg_dir" -p $pg_port -U postgres -d postgres -v ON_ERROR_STOP=1 \
  -v pw="$pg_password" >>"$work/initdb.log" 2>&1 <<'SQL'
CREATE ROLE lasair LOGIN PASSWORD :'pw';
CREATE DATABASE lasair OWNER lasair;
SQL

step "lasair's credentials (.demo/lasair/keys): signing key, dev mesh CA, gateway certificate"
"$am" creds init --config $demo/lasair.toml --dev-tls 2>>"$work/creds.log"
ca=$work/lasair/keys/mesh-ca.crt
# For fink's mirror: a token lasair signs for subject fink (lasair trusts its own keys, so
# no trusted_peers entry is needed) and a client certificate from lasair's mesh CA; they are
# handed to fink (here: copied into .demo/fink, which fink.toml names). fetch:ztf.* lets a
# provenance walk at fink read lasair's copies; query:ztf.* lets fink's query-sourced mirror
# read lasair's archive (the query ztf.history).
"$am" creds issue --config $demo/lasair.toml --sub fink --scope 'subscribe:ztf.*' --scope 'fetch:ztf.*' \
  --scope 'query:ztf.*' --aud lasair --ttl 12h \
  >"$work/fink/lasair.jwt" 2>>"$work/creds.log"
"$am" creds cert --config $demo/lasair.toml --name fink 2>>"$work/creds.log"
install -m 600 "$work/lasair/keys/mesh-ca/fink.key" "$work/fink/fink.key"
install -m 644 "$work/lasair/keys/mesh-ca/fink.pem" "$work/fink/fink.pem"
install -m 644 "$ca" "$work/fink/lasair-ca.crt"
# For you (Python, CLI): alice reads ztf.*; the operator (this script) reads mirror status.
"$am" creds issue --config $demo/lasair.toml --sub alice --scope 'subscribe:ztf.*' --scope 'fetch:ztf.*' \
  --scope 'query:ztf.*' --ttl 12h \
  >"$work/alice.jwt" 2>>"$work/creds.log"
"$am" creds cert --config $demo/lasair.toml --name alice 2>>"$work/creds.log"
"$am" creds issue --config $demo/lasair.toml --sub operator --scope admin --ttl 12h \
  >"$work/operator.jwt" 2>>"$work/creds.log"
"$am" creds cert --config $demo/lasair.toml --name operator 2>>"$work/creds.log"
for who in alice operator; do
  install -m 600 "$work/lasair/keys/mesh-ca/$who.key" "$work/$who.key"
  install -m 644 "$work/lasair/keys/mesh-ca/$who.pem" "$work/$who.pem"
done

step "survey: live feed of ${#ztf[@]} real ZTF alerts at $rate alerts/s into ztf.raw (alertmesh replay --rounds 0)"
setsid "$am" replay --bootstrap 127.0.0.1:${kafka_ports[0]} --topic ztf.raw --partitions 3 --rate "$rate" --rounds 0 \
  "${ztf[@]}" >"$work/replay.log" 2>&1 &
feeds+=($!)
step "survey: live feed of 10 real Rubin alerts (schema 7.1) in Confluent wire format into lsst.raw"
setsid "$am" replay --bootstrap 127.0.0.1:${kafka_ports[0]} --topic lsst.raw --partitions 3 --rate 2 --rounds 0 \
  --confluent alert/tests/fixtures/lsst/ampel_usdf_dev_v7_1/schema_701.avro >"$work/replay-lsst.log" 2>&1 &
feeds+=($!)

step "gateways, each once its source is up: survey :29051, lasair :29052 (JWT + mTLS), fink :29053"
for i in 0 1 2; do
  setsid "$am" serve --config "$demo/${names[i]}.toml" >"$work/gateway-${names[i]}.log" 2>&1 &
  gateways+=($!)
  scheme=http cafile=
  [ "${names[i]}" = lasair ] && scheme=https cafile=$ca
  if ! wait_http "$scheme://127.0.0.1:${http_ports[i]}/healthz" "$cafile"; then
    echo "error: gateway ${names[i]} did not become healthy; see .demo/gateway-${names[i]}.log:" >&2
    tail -n 20 "$work/gateway-${names[i]}.log" >&2
    exit 1
  fi
done

step "fink's science filters (deploy/demo/fink_filters.py): light-curve fit, Gaia DR3 cross-match, classification"
PYTHONPATH="$root/clients/python${PYTHONPATH:+:$PYTHONPATH}" setsid "$py" -u $demo/fink_filters.py \
  "http://127.0.0.1:${grpc_ports[2]}" >"$work/fink-filters.log" 2>&1 &
gateways+=($!)

cat <<EOF

Subscribe from Python (pip install ./clients/python):

    from alertmesh import Gateway
    gw = Gateway("http://127.0.0.1:29053")                  # fink: open
    next(iter(gw.subscribe("ztf.alerts"))).record["objectId"]
  fink's copy of a query result of lasair's archive (ztf.history where magpsf < 16):
    [a.record["candidate"]["magpsf"] for a in gw.subscribe("lasair.bright-history", start="earliest", end="now")]

  lasair's filtered topic needs alice's token and client certificate:
    gw = Gateway("https://127.0.0.1:29052", token=".demo/alice.jwt", ca=".demo/lasair/keys/mesh-ca.crt",
                 cert=".demo/alice.pem", key=".demo/alice.key"); next(iter(gw.subscribe("ztf.bright")))

  lasair's archive of ztf.alerts in PostgreSQL, as the query ztf.history (original alerts):
    [a.record["objectId"] for a in gw.query("ztf.history", where="magpsf < 18", limit=5)]

  or the CLI: $am subscribe --gateway http://127.0.0.1:29053 --topic ztf.alerts --omit-cutouts
    $am query ztf.history --where 'magpsf < 18' --limit 5 --gateway https://127.0.0.1:29052 \
      --token .demo/alice.jwt --ca .demo/lasair/keys/mesh-ca.crt --cert .demo/alice.pem --key .demo/alice.key
  fink's copy of the archive's rows with magpsf < 16 (a query-sourced mirror):
    $am subscribe --gateway http://127.0.0.1:29053 --topic lasair.bright-history --from earliest --until now --omit-cutouts
  fink's derived records, and the provenance of a classification back to the survey alert:
    $am subscribe --gateway http://127.0.0.1:29053 --topic fink.class --from earliest --until now
    $am provenance --gateway http://127.0.0.1:29053 am://fink/fink.class/0/0

  metrics: http://127.0.0.1:29461/metrics (survey), https://127.0.0.1:29462/metrics (lasair), http://127.0.0.1:29463/metrics (fink)

EOF
if [ "$seconds" -gt 0 ]; then
  step "live summary every 2 s for ${seconds}s"
else
  step "live summary every 2 s (Ctrl-C stops the mesh)"
fi
export ALERTMESH_BIN=$am DEMO_WORK=$work DEMO_RATE=$rate
export DEMO_HTTP_PORTS="${http_ports[*]}" DEMO_GRPC_PORTS="${grpc_ports[*]}"
# In the background and waited for, so that SIGTERM reaches the trap at once.
python3 $demo/summary.py "$seconds" &
summary=$!
gateways+=("$summary")
status=0
wait "$summary" || status=$?
if [ "$seconds" -gt 0 ]; then
  step "fink's derived records and the provenance of a classification"
  PYTHONPATH="$root/clients/python${PYTHONPATH:+:$PYTHONPATH}" "$py" $demo/derived_check.py \
    "http://127.0.0.1:${grpc_ports[2]}" || status=1
fi
exit "$status"
