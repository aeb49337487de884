#!/usr/bin/env bash
# Runs every benchmark the README shows at full size on the release build and writes
# target/bench/report.md: one summary table (median ratios, per-round range), the machine's
# cores and load averages, and each benchmark's own table, so the README quotes numbers that
# were generated, not retyped. Each benchmark's full output stays in target/bench/<name>.log.
#
# Sizes are the benchmarks' documented defaults; their environment variables change them
# (BENCH_ROUNDS, BENCH_N_1K, ... for bench_subscribe; BENCH_MIRROR_N, ... for bench_mirror;
# BENCH_SECONDS for decode_filter and registry_decode; BENCH_REGISTRY_ROUNDS for
# registry_decode; BENCH_AUTH_N, BENCH_AUTH_SIZE, BENCH_AUTH_ROUNDS, BENCH_AUTH_WARMUP for
# bench_auth, BENCH_AUTH_N_64K for bench_auth_64k (the same at 64 KB); BENCH_ARCHIVE_N, BENCH_ARCHIVE_ROUNDS for bench_archive; BENCH_REPLICAS_N,
# BENCH_REPLICAS_SIZE_KIB, BENCH_REPLICAS_ROUNDS for bench_replicas, which runs on Apache Kafka;
# BENCH_MIRROR_MM2_N_1K, ... for bench_mirror_mm2; BENCH_PUBLISH_N, BENCH_PUBLISH_BATCH,
# BENCH_PUBLISH_IN_FLIGHT, BENCH_PUBLISH_WALKS for bench_publish; BENCH_QUERY_ROWS, BENCH_QUERY_ROUNDS for bench_query;
# BENCH_READ_N, BENCH_READ_ROUNDS for bench_read, the Python client against confluent-kafka + fastavro).
# BENCH_ONLY="bench_subscribe bench_mirror"
# runs a subset.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
cargo=${CARGO:-cargo}
target=${TARGET_DIR:-$($cargo metadata --format-version 1 --no-deps | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')}
bin="$target/release"
out="$target/bench"
report="$out/report.md"
export ALERTMESH_BIN=${ALERTMESH_BIN:-$bin/alertmesh}
if [ -z "${TANSU_BIN:-}" ]; then
  TANSU_BIN=$(./scripts/devenv.sh)
  export TANSU_BIN
fi
# bench_replicas and bench_mirror_mm2 (bench_mirror --mm2 1: MirrorMaker 2 side by side) run on
# Apache Kafka: they need java and the Kafka jars (scripts/apache-kafka.sh jars) and are left
# out when java is missing.
default_only="decode_filter registry_decode bench_subscribe bench_auth bench_auth_64k bench_mirror bench_archive bench_publish bench_query bench_read"
if command -v java >/dev/null; then default_only="$default_only bench_replicas bench_mirror_mm2"; fi
only=${BENCH_ONLY:-$default_only}
if [ -z "${PG_BIN:-}" ]; then
  PG_BIN=$(./scripts/postgres.sh)
  export PG_BIN
fi

mkdir -p "$out"
echo "== bench: building the release gateway and benchmarks" >&2
$cargo build --release -p alertmesh-gateway --bin alertmesh -p alertmesh-tests --bins
case " $only " in
  *" bench_read "*)
    # The Python client and its benchmark's baseline (confluent-kafka, fastavro), as
    # clients/python/run-tests.sh installs them.
    py="$root/.venv/bin/python"
    [ -x "$py" ] || "$(command -v python3.11 || command -v python3)" -m venv "$root/.venv"
    "$py" -m pip install --quiet --disable-pip-version-check \
      -r clients/python/requirements-test.txt -e "clients/python[pandas,test]"
    ;;
esac

load() { cut -d' ' -f1-3 /proc/loadavg; }

summary="$out/summary.tmp"
details="$out/details.tmp"
: > "$summary"
: > "$details"

# run NAME COMMAND...: runs one benchmark, its stdout (the table) into NAME.out and the
# details, stdout and stderr into NAME.log.
run() {
  local name=$1; shift
  case " $only " in *" $name "*) ;; *) return 0 ;; esac
  echo "== bench: $name ($*)" >&2
  local before started
  before=$(load)
  started=$(date -u +%H:%M:%S)
  if ! "$@" > "$out/$name.out" 2> "$out/$name.log"; then
    cat "$out/$name.out" >> "$out/$name.log"
    echo "error: benchmark $name failed: $*; see $out/$name.log" >&2
    tail -20 "$out/$name.log" >&2
    exit 1
  fi
  {
    echo "### $name"
    echo
    echo "\`$*\`, $started–$(date -u +%H:%M:%S) UTC, load average before: $before, after: $(load)"
    echo
    echo '```'
    # Drop the blank lines the benchmarks print between sections' leading newline.
    sed '/./,$!d' "$out/$name.out"
    echo '```'
    echo
  } >> "$details"
  cat "$out/$name.out" >> "$out/$name.log"
  summarize "$name" "$out/$name.out" >> "$summary"
}

# summarize NAME FILE: summary table rows (benchmark | what | median | per round) from a
# benchmark's own table; the column layouts are those the benchmarks print.
summarize() {
  local name=$1 file=$2
  case $name in
    decode_filter)
      awk -F': *' '/^ratio /{ sub(/^ratio /, "", $1); r = $2; sub(/x.*/, "", r);
        printf "| decode_filter | %s, per core | %s× | |\n", $1, r }' "$file"
      ;;
    registry_decode)
      # "ratio registry/dir: M median (target >= 0.95); per round: r1 r2 ...".
      awk '/^ratio registry\/dir: /{ m = $3; r = $0; sub(/.*per round: /, "", r);
        n = split(r, f, " "); lo = f[1]; hi = f[1];
        for (i = 2; i <= n; i++) { if (f[i] + 0 < lo + 0) lo = f[i]; if (f[i] + 0 > hi + 0) hi = f[i] }
        printf "| registry_decode | LSST Confluent decode, registry ids (cached) / schema directory | %s× | %s–%s |\n", m, lo, hi }' "$file"
      ;;
    bench_subscribe)
      # "{what:<26} direct/s MB/s gateway/s MB/s ratio r1 r2 ...".
      awk '/^(past|live) /{ what = substr($0, 1, 26); sub(/ +$/, "", what);
        n = split(substr($0, 27), f, " "); lo = f[6]; hi = f[6];
        for (i = 7; i <= n; i++) { if (f[i] + 0 < lo + 0) lo = f[i]; if (f[i] + 0 > hi + 0) hi = f[i] }
        printf "| bench_subscribe | %s, gateway / direct | %s× | %s–%s |\n", what, f[5], lo, hi }
        /^relay floor /{ what = substr($0, 13, 14); sub(/ +$/, "", what);
        n = split(substr($0, 27), f, " "); lo = f[6]; hi = f[6];
        for (i = 7; i <= n; i++) { if (f[i] + 0 < lo + 0) lo = f[i]; if (f[i] + 0 > hi + 0) hi = f[i] }
        printf "| bench_subscribe | past %s, bare relay (payloads over loopback TCP) / direct: the floor for the row above | %s× | %s–%s |\n", what, f[5], lo, hi }' "$file"
      ;;
    bench_auth|bench_auth_64k)
      awk '/^ratio /{ m = $0; sub(/.*rounds: /, "", m); sub(/ .*/, "", m);
        r = $0; sub(/.*per round: /, "", r); n = split(r, f, " "); lo = f[1]; hi = f[1];
        for (i = 2; i <= n; i++) { if (f[i] + 0 < lo + 0) lo = f[i]; if (f[i] + 0 > hi + 0) hi = f[i] }
        printf "| bench_auth | %s, JWT + mTLS / plaintext | %s× | %s–%s |\n", what, m, lo, hi }
        /^past /{ what = $1 " " $2 " " $3 " " $4 " " $5 }' "$file"
      ;;
    bench_mirror)
      # Throughput rows: "{copier:<24} alerts/s MB/s ratio r1 .. rR w/start ratio RSS";
      # lag rows: "N KB target/s sent/s MB/s p50 p90 p99 max ...".
      awk '/^(raw Kafka|gateway) -> gateway /{ what = substr($0, 1, 24); sub(/ +$/, "", what);
          n = split(substr($0, 25), f, " "); lo = f[4]; hi = f[4];
          for (i = 5; i <= n - 3; i++) { if (f[i] + 0 < lo + 0) lo = f[i]; if (f[i] + 0 > hi + 0) hi = f[i] }
          printf "| bench_mirror | %s mirror / copy loop (%s alerts/s) | %s× | %s–%s |\n", what, f[1], f[3], lo, hi }
        /^[0-9]+ KB +[0-9]/{ printf "| bench_mirror | lag, %s %s at %s/s sent | p50 %s ms, p99 %s ms, max %s ms | |\n",
          $1, $2, $4, $6, $8, $9 }' "$file"
      ;;
    bench_archive)
      # "| archive (topic -> PostgreSQL) | alerts/s | ratio× (lo–hi) |"
      awk -F' *\\| *' '/^\| archive /{ r = $4; sub(/× .*/, "", r); range = $4; sub(/.*\(/, "", range); sub(/\).*/, "", range);
        printf "| bench_archive | archive ingest / mirror (%s alerts/s) | %s× | %s |\n", $3, r, range }' "$file"
      ;;
    bench_replicas)
      # Rows: "{copier:<24} alerts/s ratio per-round ratios".
      awk '/^[0-9] (shared|gateway)/{ what = substr($0, 1, 24); sub(/ +$/, "", what);
          n = split(substr($0, 25), f, " "); lo = f[3]; hi = f[3];
          for (i = 4; i <= n; i++) { if (f[i] + 0 < lo + 0) lo = f[i]; if (f[i] + 0 > hi + 0) hi = f[i] }
          printf "| bench_replicas | %s / 1 unshared gateway (%s alerts/s) | %s | %s–%s |\n", what, f[1], f[2], lo, hi }' "$file"
      ;;
    bench_mirror_mm2)
      # Throughput rows: "N KB {copier:<28} alerts/s MB/s vs-MM2 r1 .. rR w/start CPU RSS";
      # lag rows: "N KB {copier:<28} target/s sent/s p50 p99 max RSS";
      # kill rows: "{copier:<28} at-kill written duplicates secs".
      awk '/^alertmesh mirror vs/{ t = 1 } /^end-to-end lag/{ t = 2 } /^kill -9/{ t = 3 }
        t == 1 && /^[0-9]+ KB /{ what = substr($0, 9, 28); sub(/ +$/, "", what);
          n = split(substr($0, 37), f, " ");
          printf "| bench_mirror --mm2 | %s %s, %s (%s alerts/s, %s us CPU/alert) | %s× MM2 | |\n", $1, $2, what, f[1], f[n - 1], f[3] }
        t == 2 && /^[0-9]+ KB /{ what = substr($0, 9, 28); sub(/ +$/, "", what);
          split(substr($0, 37), f, " ");
          printf "| bench_mirror --mm2 | lag, %s %s at %s/s sent, %s | p50 %s ms, p99 %s ms, max %s ms | |\n", $1, $2, f[2], what, f[3], f[4], f[5] }
        t == 3 && /^(alertmesh|MirrorMaker)/{ what = substr($0, 1, 28); sub(/ +$/, "", what);
          split(substr($0, 29), f, " ");
          printf "| bench_mirror --mm2 | kill -9 mid-run, %s | %s duplicates | |\n", what, f[3] }' "$file"
      ;;
    bench_publish)
      # Throughput row: "{what:<34} direct/s MB/s gateway/s MB/s ratio r1 r2 ...";
      # walk row: "3 gateways, N entities  walks p50 p99 max first".
      awk '/^1 KB JSON x /{ what = substr($0, 1, 44); sub(/ +$/, "", what);
          n = split(substr($0, 45), f, " "); lo = f[6]; hi = f[6];
          for (i = 7; i <= n; i++) { if (f[i] + 0 < lo + 0) lo = f[i]; if (f[i] + 0 > hi + 0) hi = f[i] }
          printf "| bench_publish | publish %s, gateway / direct producer | %s× | %s–%s |\n", what, f[5], lo, hi }
        /^3 gateways, /{ printf "| bench_publish | provenance walk, 3-gateway chain (%s walks) | p50 %s ms, p99 %s ms | |\n",
          $5, $6, $7 }' "$file"
      ;;
    bench_query)
      # "{what:<28} direct/s MB/s gateway/s MB/s ratio r1 r2 ..."; then the peak RSS line.
      awk '/^[0-9]+ rows, /{ what = substr($0, 1, 28); sub(/ +$/, "", what);
          n = split(substr($0, 29), f, " "); lo = f[6]; hi = f[6];
          for (i = 7; i <= n; i++) { if (f[i] + 0 < lo + 0) lo = f[i]; if (f[i] + 0 > hi + 0) hi = f[i] }
          printf "| bench_query | %s, gateway Query / COPY TO STDOUT (%s rows/s direct) | %s× | %s–%s |\n", what, f[1], f[5], lo, hi }
        /^gateway peak RSS/{ sub(/^gateway peak RSS: /, ""); printf "| bench_query | gateway peak RSS | %s | |\n", $0 }' "$file"
      ;;
    bench_read)
      # "{reader:<36} alerts/s ratio r1 r2 ..."; direct is the baseline row.
      awk '/^(gateway|local) /{ what = substr($0, 1, 36); sub(/ +$/, "", what);
          n = split(substr($0, 37), f, " "); lo = f[3]; hi = f[3];
          for (i = 4; i <= n; i++) { if (f[i] + 0 < lo + 0) lo = f[i]; if (f[i] + 0 > hi + 0) hi = f[i] }
          r = f[2]; sub(/x$/, "", r);
          printf "| bench_read | Python dicts, %s / confluent-kafka + fastavro (%s alerts/s) | %s× | %s–%s |\n", what, f[1], r, lo, hi }' "$file"
      ;;
  esac
}

started=$(date -u '+%Y-%m-%d %H:%M')
load_start=$(load)
run decode_filter $cargo bench -q -p alertmesh-alert --bench decode_filter
run registry_decode $cargo test --release -q -p alertmesh-gateway --lib registry_decode_bench -- --ignored --nocapture
run bench_subscribe "$bin/bench_subscribe"
run bench_auth "$bin/bench_auth" --n ${BENCH_AUTH_N:-100000} --size ${BENCH_AUTH_SIZE:-1024} --rounds ${BENCH_AUTH_ROUNDS:-9}
run bench_auth_64k "$bin/bench_auth" --n ${BENCH_AUTH_N_64K:-2000} --size 65536 --rounds ${BENCH_AUTH_ROUNDS:-9}
run bench_mirror "$bin/bench_mirror"
run bench_archive "$bin/bench_archive"
ALERTMESH_TEST_KAFKA=apache run bench_replicas "$bin/bench_replicas"
run bench_mirror_mm2 "$bin/bench_mirror" --mm2 1
run bench_publish "$bin/bench_publish"
run bench_query "$bin/bench_query"
run bench_read "$root/.venv/bin/python" clients/python/benchmarks/bench_read.py \
  --n ${BENCH_READ_N:-3000} --rounds ${BENCH_READ_ROUNDS:-5}

commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
dirty=
if [ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]; then dirty=", with uncommitted changes"; fi
{
  echo "# alertmesh benchmarks"
  echo
  echo "Commit $commit$dirty, $started UTC; $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //'))," \
    "$(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo) memory; load average" \
    "(1/5/15 min) at the start: $load_start, at the end: $(load). Broker, gateways and" \
    "clients share these cores; every ratio compares two paths measured in the same run."
  echo
  echo "| benchmark | what | median | per round |"
  echo "|---|---|---|---|"
  cat "$summary"
  echo
  cat "$details"
} > "$report"
rm -f "$summary" "$details"
echo "== bench: report in $report" >&2
cat "$report"
