"""The client against a real gateway over real Kafka, checked against fastavro reading the files."""

from __future__ import annotations

import base64
import math
import struct
from pathlib import Path
from typing import Any

import pytest

from alertmesh import Alert, Gateway, InvalidArgument, NotFound, Unavailable
from harness import GATEWAY_NAME, TOPIC, Stack, avro_long, free_port

ALL: dict[str, Any] = {"start": "earliest", "end": "now"}


def candids(alerts: list[Alert]) -> list[int]:
    return sorted(a.record["candid"] for a in alerts)  # type: ignore[index]


def as_gateway_json(value: Any) -> Any:
    """fastavro's decoding written the way the gateway's JSON output writes it (bytes as base64)."""
    if isinstance(value, dict):
        return {k: as_gateway_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [as_gateway_json(v) for v in value]
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    return value


def f32(x: float) -> float:
    return float(struct.unpack("f", struct.pack("f", x))[0])


def same(a: Any, b: Any) -> bool:
    """Deep equality where NaN equals NaN, and floats may differ by Avro ``float`` rounding.

    The gateway writes a 32-bit Avro float in its shortest decimal form (0.721), while
    fastavro widens it to the double nearest the float32 (0.7210000157356262).
    """
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or a == b or f32(a) == f32(b)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


def angular_distance(ra1: float, dec1: float, ra2: float, dec2: float) -> float:
    r1, d1, r2, d2 = map(math.radians, (ra1, dec1, ra2, dec2))
    h = math.sin((d2 - d1) / 2) ** 2 + math.cos(d1) * math.cos(d2) * math.sin((r2 - r1) / 2) ** 2
    return math.degrees(2 * math.asin(min(1.0, math.sqrt(h))))


def test_topics_and_describe(gw: Gateway, stack: Stack) -> None:
    (topic,) = gw.topics()
    assert (topic.name, topic.namespace, topic.format, topic.partitions) == (TOPIC, "ZTF", "avro-ocf", 3)
    info = gw.describe()
    assert info.name == GATEWAY_NAME and info.version
    assert [t.name for t in info.topics] == [TOPIC]
    assert any(e.kind == "grpc" and e.url == stack.url for e in info.endpoints)
    assert [a.kind for a in info.auth] == ["none"]


def test_bounded_subscribe_returns_every_alert_exactly(gw: Gateway, expected: dict[int, dict[str, Any]]) -> None:
    alerts = list(gw.subscribe(TOPIC, **ALL))
    assert candids(alerts) == sorted(expected)
    assert all(c > 2**53 for c in expected)
    for a in alerts:
        want = expected[a.record["candid"]]  # type: ignore[index]
        assert a.key == f"ZTF:{want['objectId']}"
        assert a.ref == f"am://{GATEWAY_NAME}/{TOPIC}/{a.partition}/{a.offset}"
        assert a.payload is None and a.format == "avro-ocf" and a.namespace == "ZTF"
        assert same(a.record, as_gateway_json(want)), a.ref
    by_partition: dict[int, list[int]] = {}
    for a in alerts:
        by_partition.setdefault(a.partition, []).append(a.offset)
    assert all(offs == sorted(offs) for offs in by_partition.values())


def test_local_decoding_matches_fastavro(gw: Gateway, expected: dict[int, dict[str, Any]], files: list[Path]) -> None:
    payloads = {f.read_bytes() for f in files}
    alerts = list(gw.subscribe(TOPIC, **ALL, decode="local"))
    assert len(alerts) == len(expected)
    for a in alerts:
        assert a.payload in payloads
        assert a.record is not None and same(a.record, expected[a.record["candid"]])
        assert a.key == f"ZTF:{a.record['objectId']}"
    raw = list(gw.subscribe(TOPIC, **ALL, decode="none", limit=3))
    assert len(raw) == 3 and all(a.record is None and a.payload in payloads for a in raw)


def test_omit_cutouts(gw: Gateway) -> None:
    (a,) = gw.subscribe(TOPIC, **ALL, limit=1, omit_cutouts=True)
    assert a.record is not None and a.record["cutoutScience"] is None
    (b,) = gw.subscribe(TOPIC, **ALL, limit=1, omit_cutouts=True, decode="local")
    assert b.record is not None and b.record["cutoutScience"] is None


def test_cone_filter(gw: Gateway, expected: dict[int, dict[str, Any]]) -> None:
    ra, dec, radius = 197.6, 7.0, 0.5
    want = sorted(
        c for c, r in expected.items() if angular_distance(ra, dec, r["candidate"]["ra"], r["candidate"]["dec"]) <= radius
    )
    assert 0 < len(want) < len(expected)
    assert candids(list(gw.subscribe(TOPIC, **ALL, cone=(ra, dec, radius)))) == want


def test_where_filter(gw: Gateway, expected: dict[int, dict[str, Any]]) -> None:
    want = sorted(c for c, r in expected.items() if r["candidate"]["magpsf"] < 15.5 and r["candidate"]["fid"] == 2)
    assert 0 < len(want) < len(expected)
    got = list(gw.subscribe(TOPIC, **ALL, where="candidate.magpsf < 15.5 && candidate.fid == 2"))
    assert candids(got) == want


def test_ids_filter(gw: Gateway, expected: dict[int, dict[str, Any]]) -> None:
    picked = sorted(expected.values(), key=lambda r: r["candid"])[:3]
    got = list(gw.subscribe(TOPIC, **ALL, ids=[f"ZTF:{r['objectId']}" for r in picked]))
    assert candids(got) == [r["candid"] for r in picked]


def test_limit_and_explicit_offsets(gw: Gateway) -> None:
    assert len(list(gw.subscribe(TOPIC, **ALL, limit=7))) == 7
    got = list(gw.subscribe(TOPIC, start={1: 10}, end="now"))
    assert [(a.partition, a.offset) for a in got] == [(1, o) for o in range(10, 15)]


def test_fetch(gw: Gateway, expected: dict[int, dict[str, Any]]) -> None:
    (a,) = gw.subscribe(TOPIC, start={0: 12}, end="now", limit=1)
    f = gw.fetch(a.ref)
    assert (f.ref, f.partition, f.offset) == (a.ref, 0, 12)
    assert f.record is not None and same(f.record, expected[a.record["candid"]])  # type: ignore[index]
    assert f.key == a.key
    with pytest.raises(NotFound):
        gw.fetch(f"am://{GATEWAY_NAME}/{TOPIC}/0/999")
    with pytest.raises(InvalidArgument):
        gw.fetch("not-a-ref")


def test_to_pandas(gw: Gateway, expected: dict[int, dict[str, Any]]) -> None:
    df = gw.to_pandas(TOPIC, start="2020-01-01T00:00:00Z", end="now")
    assert len(df) == len(expected)
    assert str(df["candid"].dtype) == "int64"
    assert sorted(df["candid"].tolist()) == sorted(expected)
    row = df.set_index("candid").loc[max(expected)]
    want = expected[max(expected)]
    assert row["objectId"] == want["objectId"] and same(float(row["candidate.magpsf"]), want["candidate"]["magpsf"])
    assert not [c for c in df.columns if "cutout" in c or "prv_candidates" in c]
    assert {"ref", "key", "timestamp", "candidate.ra", "candidate.dec", "candidate.jd"} <= set(df.columns)


def test_cursor(gw: Gateway) -> None:
    state = gw.commit_cursor("pytest-cursor", TOPIC, {0: 5, 2: 14})
    assert state == {0: 5, 2: 14}
    got = list(gw.subscribe(TOPIC, **ALL, cursor="pytest-cursor"))
    assert sorted((a.partition, a.offset) for a in got) == sorted(
        [(0, o) for o in range(5, 15)] + [(1, o) for o in range(15)] + [(2, 14)]
    )


def test_errors_carry_the_gateways_message(gw: Gateway) -> None:
    with pytest.raises(NotFound) as e:
        list(gw.subscribe("ztf", **ALL))
    assert e.value.code == "NOT_FOUND" and "ztf.alerts" in e.value.message
    with pytest.raises(InvalidArgument) as e2:
        list(gw.subscribe(TOPIC, **ALL, where="candidate.nosuchfield > 1"))
    assert e2.value.code == "INVALID_ARGUMENT" and "nosuchfield" in e2.value.message
    with pytest.raises(InvalidArgument, match="partition 7 does not exist"):
        list(gw.subscribe(TOPIC, start={7: 0}, end="now"))
    with pytest.raises(InvalidArgument):
        list(gw.subscribe(TOPIC, **ALL, where="candidate.magpsf <"))
    with Gateway(f"http://127.0.0.1:{free_port()}", timeout=3) as nobody, pytest.raises(Unavailable):
        nobody.topics()


def _crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def produce_raw(bootstrap: str, topic: str, partition: int, value: bytes,
                headers: list[tuple[bytes, bytes]]) -> None:
    """Produces one record with a Produce request written here (v3, record batch v2), so
    header names can be any bytes: client libraries only take text names."""
    import socket
    import struct
    import time

    def kstr(t: bytes) -> bytes:
        return struct.pack(">h", len(t)) + t

    body = b"\x00" + avro_long(0) + avro_long(0) + avro_long(-1)  # attributes, ts delta, offset delta, null key
    body += avro_long(len(value)) + value + avro_long(len(headers))
    for k, v in headers:
        body += avro_long(len(k)) + k + avro_long(len(v)) + v
    record = avro_long(len(body)) + body
    now = int(time.time() * 1000)
    after_crc = struct.pack(">hiqqqhii", 0, 0, now, now, -1, -1, -1, 1) + record
    batch_tail = struct.pack(">ib", 0, 2) + struct.pack(">I", _crc32c(after_crc)) + after_crc
    batch = struct.pack(">qi", 0, len(batch_tail)) + batch_tail
    request = struct.pack(">hhi", 0, 3, 1) + kstr(b"alertmesh-test")
    request += struct.pack(">h", -1) + struct.pack(">hi", -1, 10_000)  # no transaction, acks all
    request += struct.pack(">i", 1) + kstr(topic.encode()) + struct.pack(">i", 1)
    request += struct.pack(">ii", partition, len(batch)) + batch
    host, port = bootstrap.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(struct.pack(">i", len(request)) + request)
        size = struct.unpack(">i", sock.recv(4, socket.MSG_WAITALL))[0]
        answer = sock.recv(size, socket.MSG_WAITALL)
    # correlation id, topics (1), name, partitions (1), partition, error code
    name_len = struct.unpack(">h", answer[8:10])[0]
    at = 10 + name_len + 4
    error = struct.unpack(">h", answer[at + 4 : at + 6])[0]
    assert error == 0, f"produce error {error}"


def test_a_header_name_that_is_not_utf8_is_left_out_and_the_stream_goes_on(tmp_path: Path) -> None:
    """Any Kafka producer may write a header name that is not UTF-8 (librdkafka does not
    check). The record is served without that header, the others kept, and the topic's
    readers go on: rdkafka's unwrap of the name once killed the reader thread, so the
    stream stalled and every restart met the record again."""
    from harness import fixture_files, start_stack

    files = fixture_files()[:2]
    stack = start_stack(tmp_path, files)
    try:
        produce_raw(
            stack.bootstrap, TOPIC, 0, files[0].read_bytes(),
            [(b"\xffname", b"x"), (b"am-note", b"kept")],
        )
        with Gateway(stack.url) as gw:
            alerts = list(gw.subscribe(TOPIC, **ALL, decode="none"))
            assert len(alerts) == 3
            hostile = [a for a in alerts if ("am-note", b"kept") in a.headers]
            assert len(hostile) == 1, [a.headers for a in alerts]
            assert all(not k.startswith("\ufffd") and "name" not in k for k, _ in hostile[0].headers), hostile[0].headers
            # The gateway still serves the topic, and said what it left out.
            assert len(list(gw.subscribe(TOPIC, **ALL, decode="none"))) == 3
        log = (tmp_path / "gateway.log").read_text()
        assert "not utf-8" in log and "panicked" not in log, log[-2000:]
    finally:
        stack.stop()
