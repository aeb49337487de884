"""Plain data classes for what a gateway returns (converted from the protobuf messages)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from alertmesh._proto import alertmesh_pb2 as pb

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
#: The seconds of 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z, what datetime holds.
_MIN_SECONDS, _MAX_SECONDS = -62_135_596_800, 253_402_300_799


def datetime_of(t: Any) -> datetime | None:
    """A protobuf ``Timestamp`` as an aware UTC datetime (nanoseconds cut to microseconds),
    or ``None`` when it is no valid time datetime can hold: before year 1, past year 9999,
    or nanos outside 0..999999999. A Kafka timestamp is the producer's choice, so this
    must not raise (it would stop every reader of the stream at that record)."""
    seconds, nanos = t.seconds, t.nanos
    if not (_MIN_SECONDS <= seconds <= _MAX_SECONDS and 0 <= nanos <= 999_999_999):
        return None
    # Not fromtimestamp: platforms refuse some in-range times (negative ones on Windows).
    return _EPOCH + timedelta(seconds=seconds, microseconds=nanos // 1000)


@dataclass(frozen=True)
class TopicInfo:
    """One topic a gateway exposes."""

    name: str
    namespace: str
    format: str
    description: str
    #: Partition count as Kafka reports it; 0 when the gateway cannot reach Kafka.
    partitions: int
    #: Confluent schema ids known for the topic, ascending (Confluent-framed or translated topics).
    schema_ids: tuple[int, ...] = ()
    #: Base URL of the gateway's Confluent-compatible registry API serving them; "" without ids.
    schema_registry: str = ""
    #: Derived records may be written to it with ``Gateway.publish`` (in ``format``).
    publishable: bool = False
    #: The schema ``publish`` checks payloads against (a JSON Schema, or an Avro schema in
    #: Parsing Canonical Form); "" when the topic names none.
    publish_schema: str = ""

    @classmethod
    def from_pb(cls, m: pb.TopicInfo) -> TopicInfo:
        return cls(
            m.name, m.namespace, m.format, m.description, m.partitions,
            tuple(m.schema_ids), m.schema_registry, m.publishable, m.publish_schema,
        )


@dataclass(frozen=True)
class SchemaInfo:
    """A topic's Avro schema under a Confluent schema id (``Gateway.schema``)."""

    topic: str
    #: The registry subject, ``<topic>-value``.
    subject: str
    id: int
    #: The schema language, ``AVRO``.
    format: str
    #: The schema as JSON text (``json.loads`` it, or hand it to ``fastavro.parse_schema``).
    schema: str
    #: Rabin fingerprint of its canonical form, 16 hex digits (as in the ``am-schema`` header).
    fingerprint: str

    @classmethod
    def from_pb(cls, m: pb.SchemaInfo) -> SchemaInfo:
        return cls(m.topic, m.subject, m.id, m.format, m.schema, m.fingerprint)


@dataclass(frozen=True)
class Endpoint:
    """Where a gateway listens: ``kind`` is ``grpc`` or ``http``."""

    kind: str
    url: str


@dataclass(frozen=True)
class AuthMethod:
    """How to authenticate: ``kind`` is ``none``, ``jwt`` or ``mtls``."""

    kind: str
    params: dict[str, str]


@dataclass(frozen=True)
class Peer:
    """A gateway this one knows (a mirror source or a trusted peer)."""

    name: str
    url: str
    relation: str


@dataclass(frozen=True)
class GatewayInfo:
    """A gateway's self-description (``DescribeGateway``)."""

    name: str
    version: str
    endpoints: list[Endpoint]
    topics: list[TopicInfo]
    auth: list[AuthMethod]
    peers: list[Peer]

    @classmethod
    def from_pb(cls, m: pb.GatewayDescription) -> GatewayInfo:
        return cls(
            name=m.name,
            version=m.version,
            endpoints=[Endpoint(e.kind, e.url) for e in m.endpoints],
            topics=[TopicInfo.from_pb(t) for t in m.topics],
            auth=[AuthMethod(a.kind, dict(a.params)) for a in m.auth],
            peers=[Peer(p.name, p.url, p.relation) for p in m.peers],
        )


@dataclass(frozen=True)
class Skipped:
    """A record the gateway could not decode (for a filter or JSON output) and left out."""

    ref: str
    reason: str


@dataclass
class Alert:
    """One alert: a Kafka record as the mesh sees it, with its decoded content.

    Attributes:
        ref: the provenance link ``am://<gateway>/<topic>/<partition>/<offset>``.
        key: the mesh key (``ZTF:ZTF20aabaesm``): the gateway's ``mesh_key``, else the Kafka
            key as text, else (for ZTF and LSST alerts decoded on the client) built from the
            record's object id; ``None`` when unknown.
        record: the decoded alert (``None`` with ``decode="none"``). Integers are exact;
            ``NaN`` and infinities are floats; with gateway decoding, bytes are base64 text.
        timestamp: the Kafka timestamp, in UTC; ``None`` when the record has none or its
            time is outside years 1 to 9999 (the producer chose it).
        payload: the Kafka value, byte for byte (``None`` with gateway decoding).
        kafka_key: the Kafka key as bytes, ``None`` when the record has none.
        headers: Kafka headers in order, values ``None`` when null.
    """

    ref: str
    topic: str
    partition: int
    offset: int
    timestamp: datetime | None
    key: str | None
    format: str
    namespace: str
    schema: str
    record: dict[str, Any] | None = None
    payload: bytes | None = None
    kafka_key: bytes | None = None
    headers: list[tuple[str, bytes | None]] = field(default_factory=list)

    @classmethod
    def from_pb(cls, m: pb.Alert) -> Alert:
        """Builds an alert from the wire message, without decoding its content."""
        kafka_key = m.key if m.HasField("key") else None
        key = m.mesh_key or None
        if key is None and kafka_key is not None:
            try:
                key = kafka_key.decode("utf-8")
            except UnicodeDecodeError:
                key = None
        ts = datetime_of(m.timestamp) if m.HasField("timestamp") else None
        return cls(
            ref=m.ref,
            topic=m.topic,
            partition=m.partition,
            offset=m.offset,
            timestamp=ts,
            key=key,
            format=m.format,
            namespace=m.namespace,
            schema=m.schema,
            payload=m.payload if m.payload else None,
            kafka_key=kafka_key,
            headers=[(h.key, h.value if h.HasField("value") else None) for h in m.headers],
        )


@dataclass(frozen=True)
class MirrorStatus:
    """One mirror job of a gateway (``MirrorStatus``): where it copies from and to, and how it fares."""

    name: str
    #: ``am://<gateway>/<topic>`` for a gateway source, ``kafka://<bootstrap>/<topic>`` for Kafka.
    source: str
    destination: str
    #: ``starting``, ``recovering``, ``running``, ``backoff`` (or ``failed``; ``standby``
    #: for a replica sharing the mirror that copies no partition).
    state: str
    #: The last error, while the mirror is not running; empty otherwise.
    error: str
    #: Per source partition, the next offset to copy.
    positions: dict[int, int]
    #: Seconds between now and the Kafka timestamp of the last alert copied.
    lag_seconds: float
    copied: int
    #: Records not copied because their ``am-hops`` already named this gateway.
    cycles_dropped: int
    #: Records sent to ``<destination>.dlq``.
    dead_lettered: int
    errors: int
    reconnects: int
    #: The replica of the gateway that answered.
    replica: str = ""
    #: With ``gateway.share_mirrors``: each replica of the group and the source partitions
    #: it copies.
    replicas: dict[str, list[int]] = field(default_factory=dict)

    @classmethod
    def from_pb(cls, m: pb.MirrorInfo) -> MirrorStatus:
        return cls(
            name=m.name,
            source=m.source,
            destination=m.destination,
            state=m.state,
            error=m.error,
            positions={p.partition: p.offset for p in m.positions},
            lag_seconds=m.lag_seconds,
            copied=m.copied,
            cycles_dropped=m.cycles_dropped,
            dead_lettered=m.dead_lettered,
            errors=m.errors,
            reconnects=m.reconnects,
            replica=m.replica,
            replicas={r.replica: list(r.partitions) for r in m.replicas},
        )


@dataclass(frozen=True)
class Directory:
    """The gateways reachable from one gateway through its mirror sources (``Gateway.directory``).

    Iterating yields the descriptions, nearest first.
    """

    #: ``(url it was reached at, its description)``, breadth-first from the starting gateway.
    gateways: list[tuple[str, GatewayInfo]]
    #: ``(url, reason)`` of peers that could not be described.
    unreachable: list[tuple[str, str]]

    def __iter__(self) -> Iterator[GatewayInfo]:
        return iter(info for _, info in self.gateways)

    def __len__(self) -> int:
        return len(self.gateways)

    def names(self) -> list[str]:
        """The gateways' names, nearest first."""
        return [info.name for _, info in self.gateways]
