#!/usr/bin/env bash
# Apache Kafka 4.x (KRaft) from Maven Central, run from its jars with `java`.
#
#   scripts/apache-kafka.sh jars            fetch the jars when missing; print their directory
#   scripts/apache-kafka.sh start DIR [N]   format and start N combined broker+controller nodes
#                                           (default 1) in DIR on free 127.0.0.1 ports; print
#                                           the bootstrap servers; the nodes run in the background
#   scripts/apache-kafka.sh stop DIR        kill the nodes started in DIR
#   scripts/apache-kafka.sh mm2 CONFIG      run MirrorMaker 2 (dedicated mode) in the foreground
#   scripts/apache-kafka.sh tool CLASS ARGS run a Kafka tool, e.g. org.apache.kafka.tools.TopicCommand
#
# The jars (deploy/kafka/pom.xml: kafka_2.13, kafka-tools, connect-mirror, connect-runtime and a
# log4j2 binding) go to $KAFKA_JARS, default target/kafka-jars, refreshed when the pom changes.
# The test harness (tests/src/apache.rs) starts nodes the same way; keep the two in step.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
pom="$root/deploy/kafka/pom.xml"
jars="${KAFKA_JARS:-$root/target/kafka-jars}"

# Short-lived JVMs on a small machine: small heap, serial GC, class-data sharing, and the
# client compiler only, which starts a broker in a few seconds rather than ten.
jvm_flags=(-Xmx512m -Xms64m -XX:+UseSerialGC -Xshare:auto -XX:TieredStopAtLevel=1
  -Djava.awt.headless=true)

fetch_jars() {
  local stamp="$jars/.pom.sha256" want
  want=$(sha256sum "$pom" | cut -d' ' -f1)
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && ls "$jars"/kafka_2.13-*.jar >/dev/null 2>&1; then
    return
  fi
  command -v mvn >/dev/null || { echo "error: mvn not found; install Maven to fetch Apache Kafka" >&2; exit 1; }
  rm -rf "$jars"
  mkdir -p "$jars"
  mvn -q -B -f "$pom" dependency:copy-dependencies -DincludeScope=runtime \
    -DoutputDirectory="$jars" >&2
  echo "$want" >"$stamp"
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

cluster_id() {
  # A KRaft cluster id is 16 random bytes, base64url without padding (it may begin with
  # '-': pass it as --cluster-id=ID).
  head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n'
}

write_log4j() {
  cat >"$1" <<'EOF'
status = error
appender.stderr.type = Console
appender.stderr.name = STDERR
appender.stderr.target = SYSTEM_ERR
appender.stderr.layout.type = PatternLayout
appender.stderr.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = warn
rootLogger.appenderRef.stderr.ref = STDERR
EOF
}

# node_config ID PORT CONTROLLER_PORT VOTERS REPLICATION DATA_DIR
node_config() {
  local rf=$5 isr=1
  [ "$rf" -ge 3 ] && isr=2
  cat <<EOF
process.roles=broker,controller
node.id=$1
controller.quorum.voters=$4
listeners=PLAINTEXT://127.0.0.1:$2,CONTROLLER://127.0.0.1:$3
advertised.listeners=PLAINTEXT://127.0.0.1:$2
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$6
# Topics exist because someone created them: nothing may rely on auto-creation.
auto.create.topics.enable=false
num.partitions=1
default.replication.factor=$rf
min.insync.replicas=$isr
offsets.topic.replication.factor=$rf
offsets.topic.num.partitions=5
transaction.state.log.replication.factor=$rf
transaction.state.log.min.isr=$isr
transaction.state.log.num.partitions=5
share.coordinator.state.topic.replication.factor=$rf
share.coordinator.state.topic.min.isr=$isr
group.initial.rebalance.delay.ms=0
# Small segments and quick checks keep a test's disk use and shutdown short.
log.segment.bytes=1048576
log.retention.check.interval.ms=60000
message.max.bytes=10485760
replica.fetch.max.bytes=10485760
num.network.threads=2
num.io.threads=2
num.recovery.threads.per.data.dir=1
EOF
}

start() {
  local dir=$1 n=${2:-1} id voters="" bootstrap="" cid
  fetch_jars
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  write_log4j "$dir/log4j2.properties"
  local ports=() cports=()
  for id in $(seq 1 "$n"); do
    ports[id]=$(free_port)
    cports[id]=$(free_port)
    voters+="${voters:+,}$id@127.0.0.1:${cports[id]}"
    bootstrap+="${bootstrap:+,}127.0.0.1:${ports[id]}"
  done
  cid=$(cluster_id)
  for id in $(seq 1 "$n"); do
    local node="$dir/node-$id"
    mkdir -p "$node"
    node_config "$id" "${ports[id]}" "${cports[id]}" "$voters" "$n" "$node/data" >"$node/server.properties"
    java "${jvm_flags[@]}" -Dlog4j2.configurationFile="$dir/log4j2.properties" -cp "$jars/*" \
      kafka.tools.StorageTool format --cluster-id="$cid" --config="$node/server.properties" --ignore-formatted >"$node/format.log" 2>&1
    java "${jvm_flags[@]}" -Dlog4j2.configurationFile="$dir/log4j2.properties" -cp "$jars/*" \
      kafka.Kafka "$node/server.properties" >"$node/stdout" 2>"$node/stderr" &
    echo $! >"$node/pid"
  done
  # Ready when every node's client port accepts connections.
  for id in $(seq 1 "$n"); do
    local tries=0
    until (exec 3<>"/dev/tcp/127.0.0.1/${ports[id]}") 2>/dev/null; do
      tries=$((tries + 1))
      if [ "$tries" -gt 600 ] || ! kill -0 "$(cat "$dir/node-$id/pid")" 2>/dev/null; then
        echo "error: kafka node $id did not start; see $dir/node-$id/stderr" >&2
        tail -20 "$dir/node-$id/stderr" >&2
        exit 1
      fi
      sleep 0.1
    done
  done
  echo "$bootstrap" >"$dir/bootstrap"
  echo "$bootstrap"
}

stop() {
  local pidfile
  for pidfile in "$1"/node-*/pid; do
    [ -f "$pidfile" ] && kill -9 "$(cat "$pidfile")" 2>/dev/null || true
  done
}

run_java() {
  fetch_jars
  local log4j
  log4j=$(mktemp --suffix=.properties)
  write_log4j "$log4j"
  exec java "${jvm_flags[@]}" -Dlog4j2.configurationFile="$log4j" -cp "$jars/*" "$@"
}

case "${1:-}" in
  jars) fetch_jars; echo "$jars" ;;
  mm2) shift; run_java org.apache.kafka.connect.mirror.MirrorMaker "$@" ;;
  tool) shift; run_java "$@" ;;
  start) shift; start "$@" ;;
  stop) shift; stop "$@" ;;
  *) echo "usage: $0 jars | start DIR [N] | stop DIR | mm2 CONFIG | tool CLASS [ARGS]" >&2; exit 2 ;;
esac
