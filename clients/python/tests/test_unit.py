"""Client-side pieces that need no gateway: positions, decoding, errors, metadata."""

from __future__ import annotations

import gc
import math
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path

import grpc
import pytest

from alertmesh import Backoff, Gateway, NotFound, run_filter
from alertmesh._proto import alertmesh_pb2 as pb
from alertmesh._proto import alertmesh_pb2_grpc as pb_grpc
from alertmesh.decode import from_gateway_json, omit_cutouts
from alertmesh.positions import to_end, to_start


def test_start_positions() -> None:
    assert to_start("earliest").WhichOneof("position") == "earliest"
    assert to_start("latest").WhichOneof("position") == "latest"
    t = to_start("2020-01-01T00:00:00Z").time
    assert (t.seconds, t.nanos) == (1577836800, 0)
    aware = datetime(2020, 1, 1, 1, 0, 0, 500, tzinfo=timezone(timedelta(hours=1)))
    t = to_start(aware).time
    assert (t.seconds, t.nanos) == (1577836800, 500_000)
    offs = to_start({2: 7, 0: 3}).offsets.offsets
    assert [(o.partition, o.offset) for o in offs] == [(0, 3), (2, 7)]
    with pytest.raises(ValueError, match="invalid start 'yesterday'"):
        to_start("yesterday")


def test_end_positions() -> None:
    assert to_end(None) is None
    assert to_end("now").WhichOneof("position") == "now"  # type: ignore[union-attr]
    assert to_end(datetime(2020, 1, 1)).time.seconds == 1577836800  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="invalid end"):
        to_end("soon")


def test_gateway_json_is_exact_and_restores_nonfinite() -> None:
    rec = from_gateway_json(b'{"candid":1095578115815010001,"x":"NaN","y":["Infinity","-Infinity",1.5],"s":"t"}')
    assert rec["candid"] == 1095578115815010001
    assert math.isnan(rec["x"])
    assert rec["y"] == [math.inf, -math.inf, 1.5]
    assert rec["s"] == "t"


def test_gateway_json_leaves_keys_and_other_strings_alone() -> None:
    # Only whole string values are non-finite numbers: keys, longer strings, escaped quotes
    # inside strings, and cutout-like base64 ending in the same letters stay strings.
    doc = (b'{"NaN": {"Infinity": "NaN"}, "a": "x\\"NaN\\"", "b": "NaNa", "c": "abcNaN",'
           b' "d": [ "-Infinity" , {"e": "Infinity"}], "f": ",\\"Infinity\\"]"}')
    rec = from_gateway_json(doc)
    assert list(rec) == ["NaN", "a", "b", "c", "d", "f"]
    assert list(rec["NaN"]) == ["Infinity"] and math.isnan(rec["NaN"]["Infinity"])
    assert rec["a"] == 'x"NaN"' and rec["b"] == "NaNa" and rec["c"] == "abcNaN"
    assert rec["d"] == [-math.inf, {"e": math.inf}]
    assert rec["f"] == ',"Infinity"]'
    assert from_gateway_json(b'{"s": "t"}') == {"s": "t"}


def test_gateway_json_with_bare_tokens_reads_floats_and_leaves_strings_alone() -> None:
    doc = b'{"x":NaN,"y":[Infinity,-Infinity,1.5],"s":"NaN","candid":1095578115815010001}'
    rec = from_gateway_json(doc, bare_nonfinite=True)
    assert math.isnan(rec["x"]) and rec["y"] == [math.inf, -math.inf, 1.5]
    # A genuine string field holding the word stays a string in this mode.
    assert rec["s"] == "NaN" and rec["candid"] == 1095578115815010001


def test_gateway_json_keeps_integers_beyond_64_bits_exact() -> None:
    big = 2**70 + 1
    assert from_gateway_json(b'{"n": %d, "m": -9223372036854775808, "f": 0.1}' % big) == {
        "n": big, "m": -(2**63), "f": 0.1,
    }


def test_local_omit_cutouts_matches_gateway_rule() -> None:
    rec = {"cutoutScience": {"stampData": b"x"}, "candidate": {"ra": 1.0}, "other": b"y"}
    assert omit_cutouts(rec) == {"cutoutScience": None, "candidate": {"ra": 1.0}, "other": b"y"}


class _Recorder(pb_grpc.AlertMeshServicer):
    def __init__(self) -> None:
        self.metadata: list[dict[str, str]] = []

    def ListTopics(self, request: pb.ListTopicsRequest, context: grpc.ServicerContext) -> pb.ListTopicsResponse:
        self.metadata.append({m.key: m.value for m in context.invocation_metadata()})
        return pb.ListTopicsResponse(topics=[pb.TopicInfo(name="t", partitions=1)])

    def Fetch(self, request: pb.FetchRequest, context: grpc.ServicerContext) -> pb.Alert:
        context.abort(grpc.StatusCode.NOT_FOUND, f"no record {request.ref}")
        raise AssertionError  # abort raises


def test_token_is_sent_as_bearer_metadata(tmp_path: Path) -> None:
    recorder = _Recorder()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    pb_grpc.add_AlertMeshServicer_to_server(recorder, server)  # type: ignore[no-untyped-call]
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        token_file = tmp_path / "token"
        token_file.write_text("from-file\n")
        for token, sent in (("inline-jwt", "Bearer inline-jwt"), (str(token_file), "Bearer from-file"), (None, None)):
            with Gateway(f"http://127.0.0.1:{port}", token=token) as gw:
                assert [t.name for t in gw.topics()] == ["t"]
            assert recorder.metadata[-1].get("authorization") == sent
        with Gateway(f"127.0.0.1:{port}") as gw, pytest.raises(NotFound) as e:
            gw.fetch("am://x/t/0/0")
        assert e.value.code == "NOT_FOUND" and e.value.message == "no record am://x/t/0/0"
    finally:
        server.stop(None)


def test_bad_url() -> None:
    with pytest.raises(ValueError, match="invalid gateway URL"):
        Gateway("ftp://x:1")


@pytest.mark.parametrize(
    ("url", "match"),
    [
        ("http://alice:s3cret@127.0.0.1:1", "user or password"),
        (["http://127.0.0.1:1", "https://bob:s3cret@h:2/x"], "user or password"),
        ("http://127.0.0.1:1,,http://127.0.0.1:2", "entry 2 of 3 is empty"),
        ("http://127.0.0.1:1,", "entry 2 of 2 is empty"),
        (",".join(f"http://127.0.0.1:{p}" for p in range(1, 5001)), "5000 URLs given"),
        ("http://127.0.0.1:1/\x00", "control characters"),
        ("http://h\n:1", "control characters"),
        ("http://" + "a" * 3000 + ":1", "longer than 2048"),
        ("gopher://s3cret@h:1", "user or password"),
    ],
)
def test_hostile_url_lists_are_clear_errors_without_credentials(url: object, match: str) -> None:
    with pytest.raises(ValueError, match=match) as e:
        Gateway(url)  # type: ignore[arg-type]
    assert "s3cret" not in str(e.value)
    assert len(str(e.value)) < 400


def test_gateway_hints_name_python_arguments_not_cli_flags() -> None:
    from alertmesh.errors import python_hint

    msg = "gateway lasair requires a client certificate signed by its mesh ca; pass --cert and --key"
    assert python_hint(msg) == (
        "gateway lasair requires a client certificate signed by its mesh ca; pass cert= and key= "
        "(arguments of alertmesh.Gateway)"
    )
    assert python_hint("topic ztf.x is not exposed") == "topic ztf.x is not exposed"
    assert python_hint("a --cathedral") == "a --cathedral"


class _Describer(pb_grpc.AlertMeshServicer):
    """A gateway description naming ``peers``, recording the metadata of each call."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.peers: list[str] = []
        self.metadata: list[dict[str, str]] = []

    def DescribeGateway(self, request: pb.DescribeGatewayRequest, context: grpc.ServicerContext) -> pb.GatewayDescription:
        self.metadata.append({m.key: m.value for m in context.invocation_metadata()})
        peers = [pb.Peer(name=f"peer{i}", url=u, relation="mirror-source") for i, u in enumerate(self.peers)]
        return pb.GatewayDescription(name=self.name, version=self.version, peers=peers)

    version = "x"


@contextmanager
def _serving(servicer: pb_grpc.AlertMeshServicer) -> Iterator[str]:
    """``servicer`` as a gateway on a free port of 127.0.0.1: its URL."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    pb_grpc.add_AlertMeshServicer_to_server(servicer, server)  # type: ignore[no-untyped-call]
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop(None)


def test_directory_sends_the_token_only_to_the_configured_gateway(monkeypatch: pytest.MonkeyPatch) -> None:
    home, peer = _Describer("home"), _Describer("peer")
    with _serving(home) as home_url, _serving(peer) as peer_url:
        # The peer names the home gateway back, an address where nothing listens, and no
        # address at all (which must not mean $ALERTMESH_GATEWAY: the user's own gateway).
        home.peers = [peer_url]
        peer.peers = [home_url, "http://127.0.0.1:1", ""]
        monkeypatch.setenv("ALERTMESH_GATEWAY", home_url.replace("127.0.0.1", "localhost"))
        with Gateway(home_url, token="secret-token") as gw:
            d = gw.directory()
        assert d.names() == ["home", "peer"]
        assert [u for u, _ in d.unreachable] == ["http://127.0.0.1:1", ""]
        assert d.unreachable[1][1] == "the peer entry has no URL"
        assert [m.get("authorization") for m in home.metadata] == ["Bearer secret-token"]
        assert [m.get("authorization") for m in peer.metadata] == [None]
        # A peer's description is taken up to 2 MiB (the walk keeps each one it gets).
        peer.version = "v" * (3 << 20)
        with Gateway(home_url) as gw:
            d = gw.directory()
        assert d.names() == ["home"]
        assert [u for u, _ in d.unreachable] == [peer_url], d.unreachable


def _ocf(schema: str, blocks: list[tuple[int, bytes]], codec: str = "null") -> bytes:
    """An Avro container file of ``schema`` whose blocks are (record count, data)."""
    from harness import avro_long as long

    def text(t: bytes) -> bytes:
        return long(len(t)) + t

    sync = bytes([7] * 16)
    out = b"Obj\x01" + long(2) + text(b"avro.schema") + text(schema.encode())
    out += text(b"avro.codec") + text(codec.encode()) + long(0) + sync
    for count, data in blocks:
        out += long(count) + long(len(data)) + data + sync
    return out


def test_hostile_containers_are_refused_before_fastavro_reads_them() -> None:
    """Payloads of a few bytes that once asked fastavro for gigabytes (anyone who may write
    to a topic chooses them): a clear DecodeError each, in bounded memory."""
    import zlib

    from alertmesh.decode import decode_payload
    from alertmesh.errors import DecodeError

    empty = '{"type":"record","name":"r","fields":[]}'
    with pytest.raises(DecodeError, match="announces"):
        decode_payload(_ocf(empty, [(1 << 62, b"")]), "avro-ocf")
    nulls = '{"type":"record","name":"r","fields":[{"name":"xs","type":{"type":"array","items":"null"}}]}'
    with pytest.raises(DecodeError, match="take no bytes"):
        decode_payload(_ocf(nulls, [(1, bytes([0xFE, 0xFF, 0xFF, 0x03]) * 250 + b"\0")]), "avro-ocf")
    # 100 MB of zeros in a bytes field, deflated to about 100 KB.
    blob = '{"type":"record","name":"r","fields":[{"name":"b","type":"bytes"}]}'
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15)
    n = 100 << 20
    datum = bytes([0x80, 0x80, 0x80, 0x64]) + bytes(n)  # zigzag varint of 100 MiB, then the bytes
    block = deflate.compress(datum) + deflate.flush()
    assert len(block) < 200_000
    with pytest.raises(DecodeError, match="decompresses past"):
        decode_payload(_ocf(blob, [(1, block)], "deflate"), "avro-ocf")
    # A real alert still decodes, and only its first record is read.
    fixtures = Path(__file__).resolve().parents[3] / "alert" / "tests" / "fixtures"
    for path in sorted(fixtures.rglob("*.avro"))[:20]:
        assert isinstance(decode_payload(path.read_bytes(), "avro-ocf"), dict), path


class _Ended(grpc.RpcError, grpc.Call):  # type: ignore[misc]
    """A stream's final status, as gRPC raises it."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details

    def initial_metadata(self) -> None:
        return None

    def trailing_metadata(self) -> None:
        return None

    def is_active(self) -> bool:
        return False

    def time_remaining(self) -> None:
        return None

    def cancel(self) -> bool:
        return False

    def add_callback(self, callback: object) -> bool:
        return False


def test_a_stream_ended_for_not_reading_is_resumed() -> None:
    """A notebook that pauses longer than the gateway's unread deadline gets its stream
    back where it stopped; other RESOURCE_EXHAUSTED answers are errors."""
    from alertmesh.errors import is_transient

    paused = _Ended(
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "the client read nothing for 120 s (limits.unread_drop_ms); the query stream was ended",
    )
    assert is_transient(paused)
    full = _Ended(grpc.StatusCode.RESOURCE_EXHAUSTED, "gateway lasair serves at most 1000 subscriptions")
    assert not is_transient(full)
    assert is_transient(_Ended(grpc.StatusCode.UNAVAILABLE, "connection refused"))


def test_announced_starts_resume_partitions_that_delivered_nothing() -> None:
    """The offsets a gateway announces as the stream's starts become the resume positions
    of partitions that delivered nothing; nonsense and excess entries are dropped."""
    from alertmesh.stream import MAX_PARTITIONS, Subscription

    sub = Subscription(None, pb.SubscribeRequest(topic="t"), metadata=(), decode="none", reconnect=True)  # type: ignore[arg-type]
    sub.positions[0] = 12  # delivered up to offset 11
    po = pb.PartitionOffset
    sub._started([po(partition=0, offset=2), po(partition=1, offset=3), po(partition=-1, offset=5),
                  po(partition=2, offset=-4)])
    assert sub.positions == {0: 12, 1: 3}
    req = sub._reopen_request()
    assert {(p.partition, p.offset) for p in req.resume} == {(0, 12), (1, 3)}
    sub._started([po(partition=p, offset=0) for p in range(2 * MAX_PARTITIONS)])
    assert len(sub.positions) == MAX_PARTITIONS


def _record(fields: list[str], namespace: str = "") -> str:
    ns = f'"namespace":"{namespace}",' if namespace else ""
    return '{"type":"record","name":"r",%s"fields":[%s]}' % (ns, ",".join(fields))


EMPTY_E = '{"name":"e","type":{"type":"record","name":"E","fields":[]}}'


@pytest.mark.parametrize(
    "schema",
    [
        # An empty record defined in one field, an array of it by name in another.
        _record([EMPTY_E, '{"name":"xs","type":{"type":"array","items":"E"}}']),
        # The same by full name and by short name, in a namespace.
        _record([EMPTY_E, '{"name":"xs","type":{"type":"array","items":"ns.E"}}'], "ns"),
        _record([EMPTY_E, '{"name":"xs","type":{"type":"array","items":"E"}}'], "ns"),
        # A fixed of size 0, as the values of a map.
        _record(['{"name":"z","type":{"type":"fixed","name":"Z","size":0}}',
                 '{"name":"m","type":{"type":"map","values":"Z"}}']),
        # A record whose fields take no bytes themselves (a nested empty record, a null),
        # named before its definition.
        _record(['{"name":"xs","type":{"type":"array","items":"o.E"}}',
                 '{"name":"e","type":{"type":"record","name":"E","namespace":"o","fields":['
                 '{"name":"f","type":{"type":"record","name":"F","fields":[]}},'
                 '{"name":"n","type":"null"},{"name":"g","type":"F"}]}}']),
        # A dotted name is a full name, whatever the enclosing namespace.
        _record(['{"name":"e","type":["null",{"type":"record","name":"a.b.E","fields":[]}]}',
                 '{"name":"m","type":{"type":"map","values":{"type":"array","items":"a.b.E"}}}'], "ns"),
        # Defined inside the array's items, named again in a map.
        _record(['{"name":"xs","type":{"type":"array","items":{"type":"record","name":"E","fields":[]}}}',
                 '{"name":"m","type":{"type":"map","values":"E"}}']),
    ],
    ids=["by-name", "full-name", "short-name-in-namespace", "fixed-0-map", "nested-forward",
         "dotted-name", "inline-then-named"],
)
def test_arrays_of_named_types_that_take_no_bytes_are_refused(schema: str) -> None:
    """A count of 2**62 items that take no bytes would have fastavro build 2**62 values."""
    from harness import avro_long

    from alertmesh.decode import check_container
    from alertmesh.errors import DecodeError

    block = avro_long(1 << 62) * 4 + avro_long(0)
    with pytest.raises(DecodeError, match="take no bytes"):
        check_container(_ocf(schema, [(1, block)]))


def test_named_types_resolve_by_namespace_as_avro_does() -> None:
    """``E`` inside namespace ``a`` is ``a.E`` (a long), not the empty ``b.E``."""
    from harness import avro_long

    from alertmesh.decode import decode_payload

    schema = _record([
        '{"name":"e","type":{"type":"record","name":"E","namespace":"b","fields":[]}}',
        '{"name":"g","type":{"type":"record","name":"E","fields":[{"name":"x","type":"long"}]}}',
        '{"name":"xs","type":{"type":"array","items":"E"}}',
        '{"name":"k","type":{"type":"enum","name":"K","symbols":["only"]}}',
        '{"name":"ks","type":{"type":"map","values":"K"}}',
    ], "a")
    data = avro_long(5) + avro_long(1) + avro_long(7) + avro_long(0) + avro_long(0) + avro_long(0)
    assert decode_payload(_ocf(schema, [(1, data)]), "avro-ocf") == {
        "e": {}, "g": {"x": 5}, "xs": [{"x": 7}], "k": "only", "ks": {},
    }


@pytest.mark.parametrize(
    ("seconds", "nanos"),
    [
        (253_402_300_800, 0),  # 10000-01-01
        (-62_135_596_801, 0),  # before 0001-01-01
        (1 << 62, 0),
        (-(1 << 62), 0),
        (1_577_836_800, -1),
        (1_577_836_800, 1_000_000_000),
    ],
)
def test_timestamps_out_of_range_are_none(seconds: int, nanos: int) -> None:
    """The Kafka timestamp is the producer's choice: one that datetime cannot hold must not
    stop the stream."""
    from alertmesh.models import Alert
    from alertmesh.provenance import ProvenanceGraph

    alert = pb.Alert(ref="am://g/t/0/0")
    alert.timestamp.seconds, alert.timestamp.nanos = seconds, nanos
    assert Alert.from_pb(alert).timestamp is None
    graph = pb.ProvenanceGraph(root="am://g/t/0/0", entities=[pb.ProvEntity(id="am://g/t/0/0")])
    graph.entities[0].timestamp.seconds, graph.entities[0].timestamp.nanos = seconds, nanos
    assert ProvenanceGraph.from_pb(graph).entities[0].timestamp is None


def test_timestamps_in_range_are_exact() -> None:
    from alertmesh.models import Alert
    from alertmesh.provenance import ProvenanceGraph

    utc = timezone.utc
    for (seconds, nanos), expected in [
        ((1_577_836_800, 123_456_789), datetime(2020, 1, 1, 0, 0, 0, 123_456, tzinfo=utc)),
        ((253_402_300_799, 999_999_999), datetime(9999, 12, 31, 23, 59, 59, 999_999, tzinfo=utc)),
        ((-62_135_596_800, 0), datetime(1, 1, 1, tzinfo=utc)),
        ((-1, 500_000_000), datetime(1969, 12, 31, 23, 59, 59, 500_000, tzinfo=utc)),
    ]:
        alert = pb.Alert(ref="am://g/t/0/0")
        alert.timestamp.seconds, alert.timestamp.nanos = seconds, nanos
        assert Alert.from_pb(alert).timestamp == expected
        graph = pb.ProvenanceGraph(root="am://g/t/0/0", entities=[pb.ProvEntity(id="am://g/t/0/0")])
        graph.entities[0].timestamp.seconds, graph.entities[0].timestamp.nanos = seconds, nanos
        assert ProvenanceGraph.from_pb(graph).entities[0].timestamp == expected
    assert Alert.from_pb(pb.Alert(ref="am://g/t/0/0")).timestamp is None


def test_a_directory_peer_url_is_one_address() -> None:
    """A hostile directory entry listing many addresses (as a replica list would) is not
    tried: it is listed as unreachable, as an entry without a URL is."""
    home, peer = _Describer("home"), _Describer("peer")
    with _serving(home) as home_url, _serving(peer) as peer_url:
        home.peers = ["http://127.0.0.1:1," + peer_url, f" {peer_url}", f"{peer_url}\t"]
        with Gateway(home_url) as gw:
            d = gw.directory()
        assert d.names() == ["home"], d.gateways
        assert [u for u, _ in d.unreachable] == home.peers
        assert all("one address" in reason for _, reason in d.unreachable), d.unreachable
        assert peer.metadata == []


def test_a_schema_nested_past_the_recursion_limit_is_a_decode_error() -> None:
    """json.loads of a deeply nested schema raises RecursionError; the check says what is
    wrong instead."""
    from alertmesh.decode import check_container
    from alertmesh.errors import DecodeError

    deep = '{"type":"array","items":' * 100_000 + '"long"' + "}" * 100_000
    with pytest.raises(DecodeError, match="nested too deeply"):
        check_container(_ocf(deep, []))


def test_a_frame_of_times_pandas_cannot_hold_has_nat_there() -> None:
    """pandas holds 1677-2262: a producer's year-3000 timestamp is NaT in that row, not an
    error that loses the whole frame."""
    pd = pytest.importorskip("pandas")
    from alertmesh.frames import alerts_to_frame
    from alertmesh.models import Alert

    alerts = []
    for seconds in (1_577_836_800, 32_503_680_000):
        m = pb.Alert(ref=f"am://g/t/0/{seconds}")
        m.timestamp.seconds = seconds
        alerts.append(Alert.from_pb(m))
    frame = alerts_to_frame(alerts)
    assert frame["timestamp"][0] == pd.Timestamp("2020-01-01", tz="UTC")
    assert pd.isna(frame["timestamp"][1])


def _row(i: int) -> pb.Alert:
    return pb.Alert(ref=f"am://g/q/{i}", offset=i, json=b'{"id": %d}' % i)


class _QueryReplica(pb_grpc.AlertMeshServicer):
    """A replica serving rows 0-5 of a query, two per batch, and only ``batches`` batches in
    all: then it is gone (UNAVAILABLE to every call). The batch ending at row 3 carries no
    token, as a gateway need not give one with every batch."""

    def __init__(self, batches: int) -> None:
        self.batches = batches
        self.tokens: list[str] = []

    def Query(self, request: pb.QueryRequest, context: grpc.ServicerContext) -> Iterator[pb.QueryBatch]:
        self.tokens.append(request.resume_token)
        start = int(request.resume_token[1:]) if request.resume_token else 0
        for first in range(start, 6, 2):
            if self.batches == 0:
                context.abort(grpc.StatusCode.UNAVAILABLE, "replica gone")
            self.batches -= 1
            end = first + 2
            yield pb.QueryBatch(alerts=[_row(i) for i in range(first, end)], resume_token="" if end == 4 else f"t{end}")


def test_a_query_whose_replica_dies_resumes_on_the_next_replica() -> None:
    a, b = _QueryReplica(batches=2), _QueryReplica(batches=100)
    with _serving(a) as url_a, _serving(b) as url_b, Gateway([url_a, url_b]) as gw:
        stream = gw.query("q", follow=True, backoff=Backoff(initial=0.01, maximum=0.05))
        got: list[int] = []
        reader = threading.Thread(target=lambda: got.extend(r.record["id"] for r in stream), daemon=True)
        reader.start()
        reader.join(5)
        stream.close()
        reader.join(5)
    # Rows 2-3 came after the last token: the next replica sends them again, dropped here.
    assert got == [0, 1, 2, 3, 4, 5]
    assert b.tokens == ["t2"] and stream.reconnects == 1


class _NonFiniteRows(pb_grpc.AlertMeshServicer):
    """Answers as a gateway does: bare tokens when asked for (and says so), else strings."""

    def __init__(self) -> None:
        self.asked: list[bool] = []

    def Query(self, request: pb.QueryRequest, context: grpc.ServicerContext) -> Iterator[pb.QueryBatch]:
        self.asked.append(request.json_bare_nonfinite)
        if request.json_bare_nonfinite:
            row = pb.Alert(ref="am://g/q/1", json=b'{"name":"NaN","mag":NaN}', json_bare_nonfinite=True)
        else:
            row = pb.Alert(ref="am://g/q/1", json=b'{"name":"NaN","mag":"NaN"}')
        yield pb.QueryBatch(alerts=[row])


def test_query_rows_keep_a_text_nan_a_string_and_a_double_nan_a_float() -> None:
    gateway = _NonFiniteRows()
    with _serving(gateway) as url, Gateway(url) as gw:
        (row,) = list(gw.query("q"))
    assert gateway.asked == [True]
    assert row.record["name"] == "NaN"
    assert isinstance(row.record["mag"], float) and math.isnan(row.record["mag"])


class _Prov(pb_grpc.AlertMeshServicer):
    def Provenance(self, request: pb.ProvenanceRequest, context: grpc.ServicerContext) -> pb.ProvenanceGraph:
        return pb.ProvenanceGraph(root=request.ref, entities=[pb.ProvEntity(id=request.ref)])


def test_provenance_moves_to_the_next_replica_as_other_calls_do() -> None:
    with _serving(_Prov()) as url, Gateway(["http://127.0.0.1:1", url], timeout=5) as gw:
        assert gw.provenance("am://g/t/0/0").root == "am://g/t/0/0"


class _Feed(pb_grpc.AlertMeshServicer):
    """``Subscribe``: ``skipped`` records reported in batches of 500, then ``alerts`` alerts
    in batches of 500. ``Publish`` and ``CommitCursor`` accept everything."""

    def __init__(self, alerts: int = 0, skipped: int = 0) -> None:
        self.alerts, self.skipped = alerts, skipped
        self.published = 0

    def Subscribe(self, request: pb.SubscribeRequest, context: grpc.ServicerContext) -> Iterator[pb.AlertBatch]:
        for first in range(0, self.skipped, 500):
            n = range(first, min(first + 500, self.skipped))
            yield pb.AlertBatch(skipped=[pb.Skipped(ref=f"am://g/t/0/{i}", reason="bad") for i in n])
        for first in range(0, self.alerts, 500):
            n = range(first, min(first + 500, self.alerts))
            yield pb.AlertBatch(alerts=[pb.Alert(ref=f"am://g/t/0/{i}", offset=i, mesh_key="ZTF:x", json=b"{}") for i in n])

    def Publish(self, request: pb.PublishRequest, context: grpc.ServicerContext) -> pb.PublishResponse:
        first, self.published = self.published, self.published + len(request.records)
        return pb.PublishResponse(results=[pb.PublishResult(ref=f"am://g/d/0/{i}") for i in range(first, self.published)])

    def CommitCursor(self, request: pb.CommitCursorRequest, context: grpc.ServicerContext) -> pb.CommitCursorResponse:
        return pb.CommitCursorResponse(offsets=request.offsets)


def test_skipped_records_and_published_refs_keep_a_count_and_the_latest_only() -> None:
    KEPT = 1000  # the documented bound
    with _serving(_Feed(alerts=2 * KEPT, skipped=3 * KEPT)) as url, Gateway(url) as gw:
        sub = gw.subscribe("t", end="now", decode="none", on_skipped=lambda s: None)
        assert sum(1 for _ in sub) == 2 * KEPT
        assert sub.skipped_count == 3 * KEPT and len(sub.skipped) == KEPT
        assert [s.ref for s in sub.skipped][::KEPT - 1] == [f"am://g/t/0/{2 * KEPT}", f"am://g/t/0/{3 * KEPT - 1}"]
        stats = run_filter(lambda a: {"x": 1}, (gw, "t"), (gw, "d"), "c", {"name": "f"}, end="now", batch=KEPT // 2)
    assert stats.published == 2 * KEPT and len(stats.refs) == KEPT
    assert (stats.refs[0], stats.refs[-1]) == (f"am://g/d/0/{KEPT}", f"am://g/d/0/{2 * KEPT - 1}")


class _Endless(pb_grpc.AlertMeshServicer):
    """One row or alert, then nothing until the client goes; ``ended`` is set when the call ends."""

    def __init__(self) -> None:
        self.ended = threading.Event()

    def _one(self, context: grpc.ServicerContext, batch: object) -> Iterator[object]:
        context.add_callback(self.ended.set)
        yield batch
        while context.is_active():
            time.sleep(0.01)

    def Subscribe(self, request: pb.SubscribeRequest, context: grpc.ServicerContext) -> Iterator[object]:
        return self._one(context, pb.AlertBatch(alerts=[pb.Alert(ref="am://g/t/0/0")]))

    def Query(self, request: pb.QueryRequest, context: grpc.ServicerContext) -> Iterator[object]:
        return self._one(context, pb.QueryBatch(alerts=[_row(0)], resume_token="t1"))


@pytest.mark.parametrize("kind", ["subscribe", "query"])
def test_leaving_a_loop_over_a_stream_cancels_its_call_without_the_garbage_collector(kind: str) -> None:
    """A notebook cell ``for a in gw.subscribe(...): break`` frees its gateway slot at once."""
    servicer = _Endless()
    gc.disable()
    try:
        with _serving(servicer) as url, Gateway(url) as gw:
            for _ in gw.subscribe("t", decode="none") if kind == "subscribe" else gw.query("q", follow=True):
                break
            assert servicer.ended.wait(3)
    finally:
        gc.enable()
