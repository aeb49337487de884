#!/usr/bin/env bash
# Runs every cargo-fuzz target for a bounded time (FUZZ_SECONDS each, default 20) on the
# stable toolchain: libFuzzer with coverage instrumentation, no sanitizer (sanitizers need
# nightly). Seed corpora come from the fixtures, the shipped configs and the inputs kept in
# <crate>/fuzz/crashes/<target>-*. A crash fails the run (FUZZ_STRICT=0: only reports it)
# and leaves its input under <crate>/fuzz/artifacts/<target>/ to reproduce with
# `cargo fuzz run <target> <file>`.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
seconds=${FUZZ_SECONDS:-20}
target_dir=${TARGET_DIR:-$root/target}/fuzz
corpus_root=$target_dir/corpus

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "== installing cargo-fuzz (crates.io)"
  cargo install --locked --quiet cargo-fuzz
fi

seed() { # seed <corpus dir> <files...>: copies seed files into a corpus
  local dir=$1; shift
  mkdir -p "$dir"
  for f in "$@"; do
    [ -f "$f" ] && cp "$f" "$dir/$(echo "$f" | tr '/' '_')"
  done
  return 0
}

# Seeds that are not files in the repository.
text_seeds=$target_dir/seeds
mkdir -p "$text_seeds"
printf '%s' 'candidate.magpsf < 18.5 && candidate.ndethist >= 3' >"$text_seeds/filter1"
printf '%s' '(diaSource.psfFlux > 1e4 || candidate.isdiffpos == "t") && !(x is null)' >"$text_seeds/filter2"
printf '%s' 'LSST:dia:170587115523932323' >"$text_seeds/key1"
printf '%s' '{"keys":[{"kty":"OKP","crv":"Ed25519","kid":"k1","alg":"EdDSA","use":"sig","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}' >"$text_seeds/jwks1"
printf '%s' 'eyJhbGciOiJFZERTQSIsImtpZCI6ImsxIn0.eyJpc3MiOiJsYXNhaXIiLCJzdWIiOiJhbGljZSIsImF1ZCI6Imxhc2FpciIsImV4cCI6OTk5OTk5OTk5OX0.c2ln' >"$text_seeds/token1"

seed "$corpus_root/alert/decode" $(find alert/tests/fixtures tests/fixtures -name '*.avro' 2>/dev/null | head -200)
# Inputs that once crashed a target stay in its corpus, so every run replays them.
for crashes in */fuzz/crashes; do
  [ -d "$crashes" ] || continue
  c=${crashes%%/*}
  for f in "$crashes"/*; do
    t=$(basename "$f"); t=${t%%-*}
    seed "$corpus_root/$c/$t" "$f"
  done
done
seed "$corpus_root/alert/filter_parse" "$text_seeds/filter1" "$text_seeds/filter2" "$text_seeds/key1"
printf '%s' '{"type":"object","required":["class"],"properties":{"class":{"type":"string"}}}' >"$text_seeds/schema1"
printf '%s' '{"class":"SN Ia","score":0.93,"bands":[{"mag":18.2}]}' >"$text_seeds/doc1"
seed "$corpus_root/alert/publish_check" "$text_seeds/schema1" "$text_seeds/doc1" $(find alert/tests/fixtures tests/fixtures -name '*.avro' 2>/dev/null | head -20)
seed "$corpus_root/auth/parse_jwks" "$text_seeds/jwks1"
seed "$corpus_root/auth/verify_token" "$text_seeds/token1"
seed "$corpus_root/proto/requests"
seed "$corpus_root/proto/batch_view"
seed "$corpus_root/gateway/config" $(find deploy -name '*.toml')

failed=0
for crate_target in alert/decode alert/filter_parse alert/publish_check auth/parse_jwks auth/verify_token \
  proto/requests proto/batch_view gateway/config; do
  crate=${crate_target%/*}
  target=${crate_target#*/}
  echo "== fuzz $crate/$target for ${seconds}s"
  log=$target_dir/$crate-$target.log
  if (cd "$crate/fuzz" && CARGO_TARGET_DIR=$target_dir cargo fuzz run --sanitizer none -O \
        "$target" "$corpus_root/$crate/$target" -- \
        -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1) >"$log" 2>&1; then
    grep -E '^(Done|stat::number_of_executed_units|stat::peak_rss_mb)' "$log" || true
  else
    echo "error: fuzz target $crate/$target failed; its log follows" >&2
    tail -60 "$log" >&2
    failed=1
  fi
done
if [ "$failed" != 0 ]; then
  echo "fuzz: a target crashed or could not be built (see above; inputs under <crate>/fuzz/artifacts/)" >&2
  # FUZZ_STRICT=0 reports a crash without failing the run (to look at several at once).
  if [ "${FUZZ_STRICT:-1}" != 0 ]; then exit 1; fi
fi
exit 0
