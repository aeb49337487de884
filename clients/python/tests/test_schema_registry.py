"""Stock Confluent clients against a mesh topic: confluent-kafka's ``SchemaRegistryClient``
and ``AvroDeserializer``, pointed at the gateway's registry API, decode Rubin alerts framed
with their real schema ids (7.1, 9.0, 11.0) field for field as fastavro reads the original
files; ``Gateway.schema`` and the topic listing name the same ids."""

from __future__ import annotations

import io
import json
import math
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import fastavro
import pytest

from alertmesh import Gateway, NotFound
from harness import REPO, Proc, Stack, alertmesh_bin, http_ok, wait_for

LSST = REPO / "alert" / "tests" / "fixtures" / "lsst"
TOPIC = "lsst.alerts"
FILES = [
    LSST / "ampel_usdf_dev_v7_1" / "schema_701.avro",
    LSST / "sample_data" / "9" / "0" / "fakeAlert.avro",
    LSST / "sample_data" / "11" / "0" / "fakeAlert.avro",
]


def originals() -> list[tuple[int, dict[str, Any]]]:
    """Every alert of the fixture files as fastavro reads them, with its Rubin schema id."""
    out = []
    for f in FILES:
        with open(f, "rb") as fh:
            reader = fastavro.reader(fh)
            name = reader.writer_schema["name"]  # e.g. lsst.v7_1.alert
            major, minor = name.split(".")[1][1:].split("_")
            for record in reader:
                assert isinstance(record, dict)
                out.append((int(major) * 100 + int(minor), record))
    return out


@pytest.fixture(scope="module")
def lsst_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Tansu with the Rubin alerts in Confluent wire format, and a gateway that holds the
    schema files and exposes the topic."""
    stack = Stack(tmp_path_factory.mktemp("lsst"))
    try:
        stack.start_kafka()
        subprocess.run(
            [alertmesh_bin(), "replay", "--bootstrap", stack.bootstrap, "--topic", TOPIC,
             "--partitions", "1", "--confluent", *map(str, FILES)],
            check=True, capture_output=True, timeout=120,
        )
        stack.config.write_text(
            f"""[gateway]
name = "rubin"
listen = "127.0.0.1:{stack.grpc_port}"
http_listen = "127.0.0.1:{stack.http_port}"
shutdown_grace_ms = 1000

[kafka]
bootstrap = "{stack.bootstrap}"

[alert]
schema_dir = "{LSST / 'schema'}"

[[topics]]
name = "{TOPIC}"
namespace = "LSST:dia"
format = "avro-confluent"
public = true
"""
        )
        stack.gateway = Proc([alertmesh_bin(), "serve", "--config", str(stack.config)], stack.workdir / "gateway.log")
        wait_for(lambda: http_ok(f"http://127.0.0.1:{stack.http_port}/readyz"), "the gateway to be ready")
        yield stack
    finally:
        stack.stop()


def differences(a: Any, b: Any, path: str = "") -> list[str]:
    """Where ``a`` and ``b`` differ, field by field (NaN equals NaN: Rubin uses it for "no
    measurement")."""
    if isinstance(a, dict) and isinstance(b, dict):
        if a.keys() != b.keys():
            return [f"{path}: fields {sorted(a)} != {sorted(b)}"]
        return [d for k in a for d in differences(a[k], b[k], f"{path}.{k}")]
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{path}: {len(a)} != {len(b)} items"]
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in differences(x, y, f"{path}[{i}]")]
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return []
    if type(a) is not type(b) or a != b:
        return [f"{path}: {a!r} != {b!r}"]
    return []


def read_topic(bootstrap: str, n: int) -> list[bytes]:
    """The first ``n`` payloads of the topic, read with a stock confluent-kafka consumer."""
    from confluent_kafka import Consumer

    consumer = Consumer({
        "bootstrap.servers": bootstrap, "group.id": f"pytest-{time.time_ns()}",
        "auto.offset.reset": "earliest", "enable.auto.commit": False,
    })
    consumer.subscribe([TOPIC])
    out: list[bytes] = []
    deadline = time.monotonic() + 60
    try:
        while len(out) < n and time.monotonic() < deadline:
            msg = consumer.poll(1.0)
            if msg is None or msg.error():
                continue
            value = msg.value()
            assert value is not None
            out.append(value)
    finally:
        consumer.close()
    return out


def test_stock_deserializer_decodes_rubin_alerts_through_the_gateway_registry(lsst_stack: Stack) -> None:
    from confluent_kafka.schema_registry import SchemaRegistryClient
    from confluent_kafka.schema_registry.avro import AvroDeserializer
    from confluent_kafka.serialization import MessageField, SerializationContext

    want = originals()
    assert sorted({i for i, _ in want}) == [701, 900, 1100]
    payloads = read_topic(lsst_stack.bootstrap, len(want))
    assert len(payloads) == len(want)
    registry = SchemaRegistryClient({"url": f"http://127.0.0.1:{lsst_stack.http_port}"})
    deserialize = AvroDeserializer(registry)
    ctx = SerializationContext(TOPIC, MessageField.VALUE)
    for payload, (schema_id, record) in zip(payloads, want):
        assert payload[0] == 0 and int.from_bytes(payload[1:5], "big") == schema_id
        decoded = deserialize(payload, ctx)
        assert differences(decoded, record) == []
    # The registry answers as Confluent's does.
    assert registry.get_subjects() == [f"{TOPIC}-value"]
    assert registry.get_versions(f"{TOPIC}-value") == [1, 2, 3]
    latest = registry.get_latest_version(f"{TOPIC}-value")
    assert latest.schema_id == 1100
    assert json.loads(latest.schema.schema_str)["namespace"] == "lsst.v11_0"


def test_gateway_schema_and_topic_listing_name_the_ids(lsst_stack: Stack) -> None:
    with Gateway(lsst_stack.url) as gw:
        s = gw.schema(TOPIC, 701)
        assert (s.id, s.subject, s.format) == (701, f"{TOPIC}-value", "AVRO")
        parsed = fastavro.parse_schema(json.loads(s.schema))
        with open(FILES[0], "rb") as fh:
            (first, *_) = list(fastavro.reader(fh))
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, parsed, first)
        back = fastavro.schemaless_reader(io.BytesIO(buf.getvalue()), parsed, None)
        assert differences(back, first) == []
        assert len(s.fingerprint) == 16
        assert gw.schema(TOPIC).id == 1100
        with pytest.raises(NotFound):
            gw.schema(TOPIC, 4242)
        (topic,) = gw.topics()
        assert topic.schema_ids == (701, 900, 1100)
        assert topic.schema_registry == f"http://127.0.0.1:{lsst_stack.http_port}"
