"""Reading N real ZTF alerts into Python dicts: a direct Kafka consumer against the client.

One Tansu broker and one gateway (started here, on free ports) hold N alerts: the 45 real
ZTF fixtures produced round after round. Each round reads the same N alerts, in the same
run, on the same broker:

- ``direct``: confluent-kafka consumes the topic and fastavro decodes every value (what a
  Python user of a survey's Kafka writes);
- ``gateway json``: ``Gateway.subscribe`` with the gateway's JSON decoding (the default);
- ``gateway json, no cutouts``: the same with ``omit_cutouts=True``;
- ``local fastavro``: ``decode="local"``: native payloads over gRPC, decoded here.

Prints alerts per second per reader (median of the rounds) and each one's ratio to direct.

    .venv/bin/python clients/python/benchmarks/bench_read.py --n 3000 --rounds 3

Needs the alertmesh binary ($ALERTMESH_BIN, default target/debug/alertmesh; build with
--release for numbers worth quoting), Tansu ($TANSU_BIN or scripts/devenv.sh) and
``pip install confluent-kafka`` (clients/python/requirements-test.txt).
"""

from __future__ import annotations

import argparse
import io
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import fastavro
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from harness import TOPIC, Stack, alertmesh_bin, fixture_files  # noqa: E402

from alertmesh import Gateway  # noqa: E402

PARTITIONS = 3


def direct(bootstrap: str, n: int) -> list[dict[str, Any]]:
    """Reads ``n`` alerts of every partition from the start with confluent-kafka + fastavro."""
    consumer = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": f"bench-{uuid.uuid4()}",
        "enable.auto.commit": False,
        # Fetch sizes as large as the gateway's readers use.
        "max.partition.fetch.bytes": 10 << 20,
        "fetch.max.bytes": 50 << 20,
    })
    try:
        consumer.assign([TopicPartition(TOPIC, p, OFFSET_BEGINNING) for p in range(PARTITIONS)])
        out: list[dict[str, Any]] = []
        deadline = time.monotonic() + 120
        while len(out) < n:
            if time.monotonic() > deadline:
                raise TimeoutError(f"direct consumer read {len(out)} of {n} alerts in 120 s")
            for msg in consumer.consume(num_messages=min(1000, n - len(out)), timeout=1.0):
                if msg.error():
                    raise KafkaException(msg.error())
                (record,) = fastavro.reader(io.BytesIO(msg.value() or b""))
                out.append(record)  # type: ignore[arg-type]
        return out
    finally:
        consumer.close()


def through_gateway(url: str, n: int, **kwargs: Any) -> list[dict[str, Any]]:
    """Reads ``n`` alerts from the start through the client, decoded as ``kwargs`` ask."""
    with Gateway(url) as gw:
        out = [a.record for a in gw.subscribe(TOPIC, "earliest", "now", limit=n, **kwargs)]
    if len(out) != n or any(r is None for r in out):
        raise RuntimeError(f"the client read {len(out)} of {n} alerts")
    return out  # type: ignore[return-value]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=3000, help="alerts each reader reads (default 3000)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of every reader (default 3)")
    ns = parser.parse_args()
    files = fixture_files()
    produce_rounds = math.ceil(ns.n / len(files))
    readers: list[tuple[str, Callable[[Stack], list[dict[str, Any]]]]] = [
        ("direct confluent-kafka + fastavro", lambda s: direct(s.bootstrap, ns.n)),
        ("gateway json", lambda s: through_gateway(s.url, ns.n)),
        ("gateway json, no cutouts", lambda s: through_gateway(s.url, ns.n, omit_cutouts=True)),
        ("local fastavro", lambda s: through_gateway(s.url, ns.n, decode="local")),
    ]
    rates: dict[str, list[float]] = {name: [] for name, _ in readers}
    with tempfile.TemporaryDirectory(prefix="alertmesh-bench-py-") as tmp:
        stack = Stack(Path(tmp))
        try:
            stack.start_kafka()
            subprocess.run(
                [alertmesh_bin(), "replay", "--bootstrap", stack.bootstrap, "--topic", TOPIC,
                 "--partitions", str(PARTITIONS), "--rounds", str(produce_rounds), *map(str, files)],
                check=True, capture_output=True, timeout=600,
            )
            stack.start_gateway()
            print(f"{ns.n} real ZTF alerts ({len(files)} files x {produce_rounds}) into dicts, "
                  f"{ns.rounds} round(s), {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}")
            for r in range(ns.rounds):
                for name, read in readers:
                    started = time.perf_counter()
                    records = read(stack)
                    rates[name].append(len(records) / (time.perf_counter() - started))
                    if not all(isinstance(rec.get("candid"), int) for rec in records):
                        raise RuntimeError(f"{name}: an alert without its candid")
                print(f"round {r + 1}: " + ", ".join(f"{name} {rates[name][-1]:,.0f}/s" for name, _ in readers))
        finally:
            stack.stop()
    base = statistics.median(rates[readers[0][0]])
    print(f"\n{'reader':<36} {'alerts/s':>10} {'vs direct':>10}   rounds")
    for name, _ in readers:
        med = statistics.median(rates[name])
        each = " ".join(f"{x / base:.2f}" for x in rates[name])
        print(f"{name:<36} {med:>10,.0f} {med / base:>9.2f}x   {each}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
