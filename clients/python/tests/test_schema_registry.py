"""Stock Confluent clients against a mesh topic: confluent-kafka's ``SchemaRegistryClient``
and ``AvroDeserializer``, pointed at the gateway's registry API, decode Rubin alerts framed
with their real schema ids (7.1, 9.0, 11.0) field for field as fastavro reads the original
files; ``Gateway.schema`` and the topic listing name the same ids. On a gateway whose gRPC
requires mutual TLS, the same stock clients read a public topic's schemas with only the
mesh CA, and a protected topic's with a bearer (or basic-auth) token."""

from __future__ import annotations

import io
import json
import math
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fastavro
import pytest

from alertmesh import Gateway, NotFound
from harness import REPO, SECURE, Proc, Stack, alertmesh_bin, free_port, http_ok, wait_for

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
    # Its content type, and its error form for an unknown id.
    base = f"http://127.0.0.1:{lsst_stack.http_port}"
    with urllib.request.urlopen(f"{base}/schemas/ids/900", timeout=10) as r:
        assert r.headers["Content-Type"] == "application/vnd.schemaregistry.v1+json"
        assert json.loads(json.loads(r.read())["schema"])["namespace"] == "lsst.v9_0"
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(f"{base}/schemas/ids/4242", timeout=10)
    assert e.value.code == 404
    assert json.loads(e.value.read()) == {"error_code": 40403, "message": "Schema not found"}


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


@pytest.fixture(scope="module")
def secure_registry(lsst_stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A second gateway over the same Kafka whose gRPC requires a token and a client
    certificate (``[auth]``, ``[tls]`` with ``client_ca``): ``lsst.alerts`` is public,
    ``lsst.private`` needs ``subscribe:lsst.private``."""
    work = tmp_path_factory.mktemp("secure-registry")
    grpc, http = free_port(), free_port()
    config = work / "rubin.toml"
    config.write_text(
        f"""[gateway]
name = "rubin"
listen = "127.0.0.1:{grpc}"
http_listen = "127.0.0.1:{http}"
shutdown_grace_ms = 1000
[kafka]
bootstrap = "{lsst_stack.bootstrap}"
[alert]
schema_dir = "{LSST / 'schema'}"
{SECURE}[[topics]]
name = "{TOPIC}"
namespace = "LSST:dia"
format = "avro-confluent"
public = true
[[topics]]
name = "lsst.private"
namespace = "LSST:dia"
format = "avro-confluent"
"""
    )

    def creds(*args: str) -> str:
        out = subprocess.run(
            [alertmesh_bin(), "creds", args[0], "--config", str(config), *args[1:]],
            check=True, capture_output=True, text=True, timeout=60,
        )
        return out.stdout.strip()

    creds("init", "--dev-tls")
    reader = creds("issue", "--sub", "alice", "--scope", "subscribe:lsst.private", "--ttl", "1h")
    weak = creds("issue", "--sub", "bob", "--scope", "subscribe:ztf.*", "--ttl", "1h")
    creds("cert", "--name", "alice")
    ca = work / "keys" / "mesh-ca.crt"
    proc = Proc([alertmesh_bin(), "serve", "--config", str(config)], work / "gateway.log")
    url = f"https://127.0.0.1:{http}"
    try:
        wait_for(lambda: _https_ok(f"{url}/readyz", ca), "the mutual-TLS gateway to be ready")
        yield {
            "url": url, "grpc": f"https://127.0.0.1:{grpc}", "ca": str(ca),
            "cert": str(work / "keys" / "mesh-ca" / "alice.pem"),
            "key": str(work / "keys" / "mesh-ca" / "alice.key"),
            "reader": reader, "weak": weak,
        }
    finally:
        proc.kill()


def _https_ok(url: str, ca: Path) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2, context=ssl.create_default_context(cafile=str(ca))) as r:
            return bool(r.status == 200)
    except Exception:  # noqa: BLE001 - not up yet
        return False


def test_stock_clients_read_public_schemas_of_a_gateway_that_requires_mutual_tls(
    lsst_stack: Stack, secure_registry: dict[str, Any]
) -> None:
    from confluent_kafka.schema_registry import SchemaRegistryClient
    from confluent_kafka.schema_registry.avro import AvroDeserializer
    from confluent_kafka.serialization import MessageField, SerializationContext

    s = secure_registry
    # gRPC refuses a caller without a client certificate ...
    from alertmesh import Unauthenticated

    with pytest.raises(Unauthenticated):
        Gateway(s["grpc"], ca=s["ca"]).schema(TOPIC)
    want = originals()
    payloads = read_topic(lsst_stack.bootstrap, len(want))
    ctx = SerializationContext(TOPIC, MessageField.VALUE)
    # ... while the public topic's schemas need only the mesh CA (and a client
    # certificate, presented, is verified and welcome).
    for extra in ({}, {"ssl.certificate.location": s["cert"], "ssl.key.location": s["key"]}):
        registry = SchemaRegistryClient({"url": s["url"], "ssl.ca.location": s["ca"], **extra})
        deserialize = AvroDeserializer(registry)
        for payload, (_, record) in zip(payloads, want):
            assert differences(deserialize(payload, ctx), record) == []
        assert registry.get_subjects() == [f"{TOPIC}-value"]
        assert registry.get_latest_version(f"{TOPIC}-value").schema_id == 1100


def test_a_protected_topics_schemas_need_a_token_with_its_scope(secure_registry: dict[str, Any]) -> None:
    from confluent_kafka.schema_registry import SchemaRegistryClient
    from confluent_kafka.schema_registry.error import SchemaRegistryError

    s = secure_registry
    subject = "lsst.private-value"

    def client(**conf: str) -> SchemaRegistryClient:
        return SchemaRegistryClient({"url": s["url"], "ssl.ca.location": s["ca"], **conf})

    def bearer(token: str) -> SchemaRegistryClient:
        # logical.cluster is required by the client and ignored by the gateway.
        return client(**{
            "bearer.auth.credentials.source": "STATIC_TOKEN", "bearer.auth.token": token,
            "bearer.auth.logical.cluster": "alertmesh",
        })

    for registry in (bearer(s["reader"]), client(**{"basic.auth.user.info": f"alice:{s['reader']}"})):
        assert registry.get_subjects() == [f"{TOPIC}-value", subject]
        assert registry.get_versions(subject) == [1, 2, 3]
        latest = registry.get_latest_version(subject)
        assert latest.schema_id == 1100
        assert json.loads(latest.schema.schema_str)["namespace"] == "lsst.v11_0"
    # No token, a token without the scope, a token that does not verify: refused in the
    # registry's error form, and the token is never echoed.
    forged = s["reader"][:-2] + ("AA" if not s["reader"].endswith("AA") else "BB")
    for registry, status, code, token in (
        (client(), 401, 40101, None),
        (bearer(s["weak"]), 403, 40301, s["weak"]),
        (bearer(forged), 401, 40101, forged),
    ):
        with pytest.raises(SchemaRegistryError) as e:
            registry.get_versions(subject)
        assert (e.value.http_status_code, e.value.error_code) == (status, code), str(e.value)
        assert token is None or token not in e.value.error_message
    # Without a token only the public topic is listed.
    assert client().get_subjects() == [f"{TOPIC}-value"]


def same_as_gateway_json(got: Any, want: Any, path: str = "") -> list[str]:
    """Where a record decoded by the gateway differs from fastavro's: bytes are base64 text
    in gateway JSON, and a 32-bit Avro float is written in its shortest form, which fastavro
    widens to the nearest double; NaN equals NaN, and both must be floats."""
    import base64
    import struct

    if isinstance(want, bytes):
        want = base64.b64encode(want).decode()
    if isinstance(want, dict) and isinstance(got, dict):
        if got.keys() != want.keys():
            return [f"{path}: fields {sorted(got)} != {sorted(want)}"]
        return [d for k in want for d in same_as_gateway_json(got[k], want[k], f"{path}.{k}")]
    if isinstance(want, list) and isinstance(got, list) and len(got) == len(want):
        return [d for i, (x, y) in enumerate(zip(got, want)) for d in same_as_gateway_json(x, y, f"{path}[{i}]")]
    if isinstance(want, float) and isinstance(got, float):
        def f32(x: float) -> float:
            return float(struct.unpack("f", struct.pack("f", x))[0])

        if (math.isnan(got) and math.isnan(want)) or got == want or f32(got) == f32(want):
            return []
    elif type(got) is type(want) and got == want:
        return []
    return [f"{path}: {got!r} != {want!r}"]


def nonfinite_count(value: Any) -> int:
    if isinstance(value, float):
        return int(not math.isfinite(value))
    if isinstance(value, dict):
        return sum(nonfinite_count(v) for v in value.values())
    if isinstance(value, list):
        return sum(nonfinite_count(v) for v in value)
    return 0


def test_rubin_nan_values_arrive_as_floats_with_gateway_decoding(lsst_stack: Stack) -> None:
    # Rubin writes NaN for "no measurement": the 7.1 alerts hold hundreds of them.
    want = [record for _, record in originals()]
    assert sum(nonfinite_count(r) for r in want) > 100
    with Gateway(lsst_stack.url) as gw:
        got = [a.record for a in gw.subscribe(TOPIC, "earliest", "now")]
        assert len(got) == len(want)
        for g, w in zip(got, want):
            assert same_as_gateway_json(g, w) == []
        # On the wire: the client asks for bare tokens and every JSON alert says it carries
        # them; a request without the option (an older client) gets standard JSON, strings.
        from alertmesh._proto import alertmesh_pb2 as pb
        from alertmesh.positions import to_end, to_start

        stub = gw._replicas()[0]
        for bare in (True, False):
            req = pb.SubscribeRequest(
                topic=TOPIC, start=to_start("earliest"), end=to_end("now"),
                output=pb.OUTPUT_JSON, json_bare_nonfinite=bare,
            )
            docs = [(m.json, m.json_bare_nonfinite) for b in stub.Subscribe(req) for m in b.alerts]
            assert len(docs) == len(want) and all(flag == bare for _, flag in docs)
            joined = b"".join(d for d, _ in docs)
            assert (b":NaN" in joined) == bare and (b':"NaN"' in joined) == (not bare)
            if not bare:
                for d, _ in docs:
                    # Standard JSON: a strict parser reads every document.
                    json.loads(d, parse_constant=lambda c: pytest.fail(f"bare {c} in standard JSON"))
