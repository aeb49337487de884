import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Output(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OUTPUT_NATIVE: _ClassVar[Output]
    OUTPUT_JSON: _ClassVar[Output]
OUTPUT_NATIVE: Output
OUTPUT_JSON: Output

class GetSchemaRequest(_message.Message):
    __slots__ = ("topic", "id")
    TOPIC_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    topic: str
    id: int
    def __init__(self, topic: _Optional[str] = ..., id: _Optional[int] = ...) -> None: ...

class SchemaInfo(_message.Message):
    __slots__ = ("topic", "id", "format", "schema", "fingerprint", "subject")
    TOPIC_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    SCHEMA_FIELD_NUMBER: _ClassVar[int]
    FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    topic: str
    id: int
    format: str
    schema: str
    fingerprint: str
    subject: str
    def __init__(self, topic: _Optional[str] = ..., id: _Optional[int] = ..., format: _Optional[str] = ..., schema: _Optional[str] = ..., fingerprint: _Optional[str] = ..., subject: _Optional[str] = ...) -> None: ...

class SubscribeRequest(_message.Message):
    __slots__ = ("topic", "start", "end", "limit", "cursor", "max_batch_alerts", "max_batch_bytes", "ids", "cone", "filter", "output", "omit_cutouts", "resume", "json_bare_nonfinite")
    TOPIC_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    MAX_BATCH_ALERTS_FIELD_NUMBER: _ClassVar[int]
    MAX_BATCH_BYTES_FIELD_NUMBER: _ClassVar[int]
    IDS_FIELD_NUMBER: _ClassVar[int]
    CONE_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    OMIT_CUTOUTS_FIELD_NUMBER: _ClassVar[int]
    RESUME_FIELD_NUMBER: _ClassVar[int]
    JSON_BARE_NONFINITE_FIELD_NUMBER: _ClassVar[int]
    topic: str
    start: Start
    end: End
    limit: int
    cursor: str
    max_batch_alerts: int
    max_batch_bytes: int
    ids: _containers.RepeatedScalarFieldContainer[str]
    cone: Cone
    filter: str
    output: Output
    omit_cutouts: bool
    resume: _containers.RepeatedCompositeFieldContainer[PartitionOffset]
    json_bare_nonfinite: bool
    def __init__(self, topic: _Optional[str] = ..., start: _Optional[_Union[Start, _Mapping]] = ..., end: _Optional[_Union[End, _Mapping]] = ..., limit: _Optional[int] = ..., cursor: _Optional[str] = ..., max_batch_alerts: _Optional[int] = ..., max_batch_bytes: _Optional[int] = ..., ids: _Optional[_Iterable[str]] = ..., cone: _Optional[_Union[Cone, _Mapping]] = ..., filter: _Optional[str] = ..., output: _Optional[_Union[Output, str]] = ..., omit_cutouts: bool = ..., resume: _Optional[_Iterable[_Union[PartitionOffset, _Mapping]]] = ..., json_bare_nonfinite: bool = ...) -> None: ...

class QueryRequest(_message.Message):
    __slots__ = ("name", "where", "cone", "ids", "limit", "output", "resume_token", "follow", "max_batch_alerts", "json_bare_nonfinite")
    NAME_FIELD_NUMBER: _ClassVar[int]
    WHERE_FIELD_NUMBER: _ClassVar[int]
    CONE_FIELD_NUMBER: _ClassVar[int]
    IDS_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    RESUME_TOKEN_FIELD_NUMBER: _ClassVar[int]
    FOLLOW_FIELD_NUMBER: _ClassVar[int]
    MAX_BATCH_ALERTS_FIELD_NUMBER: _ClassVar[int]
    JSON_BARE_NONFINITE_FIELD_NUMBER: _ClassVar[int]
    name: str
    where: str
    cone: Cone
    ids: _containers.RepeatedScalarFieldContainer[str]
    limit: int
    output: Output
    resume_token: str
    follow: bool
    max_batch_alerts: int
    json_bare_nonfinite: bool
    def __init__(self, name: _Optional[str] = ..., where: _Optional[str] = ..., cone: _Optional[_Union[Cone, _Mapping]] = ..., ids: _Optional[_Iterable[str]] = ..., limit: _Optional[int] = ..., output: _Optional[_Union[Output, str]] = ..., resume_token: _Optional[str] = ..., follow: bool = ..., max_batch_alerts: _Optional[int] = ..., json_bare_nonfinite: bool = ...) -> None: ...

class QueryBatch(_message.Message):
    __slots__ = ("alerts", "skipped", "resume_token")
    ALERTS_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_FIELD_NUMBER: _ClassVar[int]
    RESUME_TOKEN_FIELD_NUMBER: _ClassVar[int]
    alerts: _containers.RepeatedCompositeFieldContainer[Alert]
    skipped: _containers.RepeatedCompositeFieldContainer[Skipped]
    resume_token: str
    def __init__(self, alerts: _Optional[_Iterable[_Union[Alert, _Mapping]]] = ..., skipped: _Optional[_Iterable[_Union[Skipped, _Mapping]]] = ..., resume_token: _Optional[str] = ...) -> None: ...

class QueryInfo(_message.Message):
    __slots__ = ("name", "namespace", "description", "columns", "key", "order", "ra", "dec")
    NAME_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    ORDER_FIELD_NUMBER: _ClassVar[int]
    RA_FIELD_NUMBER: _ClassVar[int]
    DEC_FIELD_NUMBER: _ClassVar[int]
    name: str
    namespace: str
    description: str
    columns: _containers.RepeatedScalarFieldContainer[str]
    key: str
    order: str
    ra: str
    dec: str
    def __init__(self, name: _Optional[str] = ..., namespace: _Optional[str] = ..., description: _Optional[str] = ..., columns: _Optional[_Iterable[str]] = ..., key: _Optional[str] = ..., order: _Optional[str] = ..., ra: _Optional[str] = ..., dec: _Optional[str] = ...) -> None: ...

class Cone(_message.Message):
    __slots__ = ("ra", "dec", "radius")
    RA_FIELD_NUMBER: _ClassVar[int]
    DEC_FIELD_NUMBER: _ClassVar[int]
    RADIUS_FIELD_NUMBER: _ClassVar[int]
    ra: float
    dec: float
    radius: float
    def __init__(self, ra: _Optional[float] = ..., dec: _Optional[float] = ..., radius: _Optional[float] = ...) -> None: ...

class Start(_message.Message):
    __slots__ = ("earliest", "latest", "time", "offsets")
    EARLIEST_FIELD_NUMBER: _ClassVar[int]
    LATEST_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    OFFSETS_FIELD_NUMBER: _ClassVar[int]
    earliest: Earliest
    latest: Latest
    time: _timestamp_pb2.Timestamp
    offsets: PartitionOffsets
    def __init__(self, earliest: _Optional[_Union[Earliest, _Mapping]] = ..., latest: _Optional[_Union[Latest, _Mapping]] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., offsets: _Optional[_Union[PartitionOffsets, _Mapping]] = ...) -> None: ...

class Earliest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Latest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class End(_message.Message):
    __slots__ = ("time", "now")
    TIME_FIELD_NUMBER: _ClassVar[int]
    NOW_FIELD_NUMBER: _ClassVar[int]
    time: _timestamp_pb2.Timestamp
    now: Now
    def __init__(self, time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., now: _Optional[_Union[Now, _Mapping]] = ...) -> None: ...

class Now(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class PartitionOffsets(_message.Message):
    __slots__ = ("offsets",)
    OFFSETS_FIELD_NUMBER: _ClassVar[int]
    offsets: _containers.RepeatedCompositeFieldContainer[PartitionOffset]
    def __init__(self, offsets: _Optional[_Iterable[_Union[PartitionOffset, _Mapping]]] = ...) -> None: ...

class PartitionOffset(_message.Message):
    __slots__ = ("partition", "offset")
    PARTITION_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    partition: int
    offset: int
    def __init__(self, partition: _Optional[int] = ..., offset: _Optional[int] = ...) -> None: ...

class AlertBatch(_message.Message):
    __slots__ = ("alerts", "skipped", "starts")
    ALERTS_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_FIELD_NUMBER: _ClassVar[int]
    STARTS_FIELD_NUMBER: _ClassVar[int]
    alerts: _containers.RepeatedCompositeFieldContainer[Alert]
    skipped: _containers.RepeatedCompositeFieldContainer[Skipped]
    starts: _containers.RepeatedCompositeFieldContainer[PartitionOffset]
    def __init__(self, alerts: _Optional[_Iterable[_Union[Alert, _Mapping]]] = ..., skipped: _Optional[_Iterable[_Union[Skipped, _Mapping]]] = ..., starts: _Optional[_Iterable[_Union[PartitionOffset, _Mapping]]] = ...) -> None: ...

class Skipped(_message.Message):
    __slots__ = ("ref", "reason")
    REF_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    ref: str
    reason: str
    def __init__(self, ref: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class Alert(_message.Message):
    __slots__ = ("ref", "topic", "partition", "offset", "timestamp", "key", "headers", "payload", "format", "namespace", "schema", "json", "mesh_key", "json_bare_nonfinite")
    REF_FIELD_NUMBER: _ClassVar[int]
    TOPIC_FIELD_NUMBER: _ClassVar[int]
    PARTITION_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    HEADERS_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    SCHEMA_FIELD_NUMBER: _ClassVar[int]
    JSON_FIELD_NUMBER: _ClassVar[int]
    MESH_KEY_FIELD_NUMBER: _ClassVar[int]
    JSON_BARE_NONFINITE_FIELD_NUMBER: _ClassVar[int]
    ref: str
    topic: str
    partition: int
    offset: int
    timestamp: _timestamp_pb2.Timestamp
    key: bytes
    headers: _containers.RepeatedCompositeFieldContainer[Header]
    payload: bytes
    format: str
    namespace: str
    schema: str
    json: bytes
    mesh_key: str
    json_bare_nonfinite: bool
    def __init__(self, ref: _Optional[str] = ..., topic: _Optional[str] = ..., partition: _Optional[int] = ..., offset: _Optional[int] = ..., timestamp: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., key: _Optional[bytes] = ..., headers: _Optional[_Iterable[_Union[Header, _Mapping]]] = ..., payload: _Optional[bytes] = ..., format: _Optional[str] = ..., namespace: _Optional[str] = ..., schema: _Optional[str] = ..., json: _Optional[bytes] = ..., mesh_key: _Optional[str] = ..., json_bare_nonfinite: bool = ...) -> None: ...

class Header(_message.Message):
    __slots__ = ("key", "value")
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    key: str
    value: bytes
    def __init__(self, key: _Optional[str] = ..., value: _Optional[bytes] = ...) -> None: ...

class CommitCursorRequest(_message.Message):
    __slots__ = ("name", "topic", "offsets")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TOPIC_FIELD_NUMBER: _ClassVar[int]
    OFFSETS_FIELD_NUMBER: _ClassVar[int]
    name: str
    topic: str
    offsets: _containers.RepeatedCompositeFieldContainer[PartitionOffset]
    def __init__(self, name: _Optional[str] = ..., topic: _Optional[str] = ..., offsets: _Optional[_Iterable[_Union[PartitionOffset, _Mapping]]] = ...) -> None: ...

class CommitCursorResponse(_message.Message):
    __slots__ = ("offsets",)
    OFFSETS_FIELD_NUMBER: _ClassVar[int]
    offsets: _containers.RepeatedCompositeFieldContainer[PartitionOffset]
    def __init__(self, offsets: _Optional[_Iterable[_Union[PartitionOffset, _Mapping]]] = ...) -> None: ...

class PublishRequest(_message.Message):
    __slots__ = ("topic", "records")
    TOPIC_FIELD_NUMBER: _ClassVar[int]
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    topic: str
    records: _containers.RepeatedCompositeFieldContainer[PublishRecord]
    def __init__(self, topic: _Optional[str] = ..., records: _Optional[_Iterable[_Union[PublishRecord, _Mapping]]] = ...) -> None: ...

class PublishRecord(_message.Message):
    __slots__ = ("key", "payload", "derived_from", "activity", "used", "publish_id")
    KEY_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    DERIVED_FROM_FIELD_NUMBER: _ClassVar[int]
    ACTIVITY_FIELD_NUMBER: _ClassVar[int]
    USED_FIELD_NUMBER: _ClassVar[int]
    PUBLISH_ID_FIELD_NUMBER: _ClassVar[int]
    key: str
    payload: bytes
    derived_from: _containers.RepeatedScalarFieldContainer[str]
    activity: Activity
    used: _containers.RepeatedScalarFieldContainer[str]
    publish_id: str
    def __init__(self, key: _Optional[str] = ..., payload: _Optional[bytes] = ..., derived_from: _Optional[_Iterable[str]] = ..., activity: _Optional[_Union[Activity, _Mapping]] = ..., used: _Optional[_Iterable[str]] = ..., publish_id: _Optional[str] = ...) -> None: ...

class Activity(_message.Message):
    __slots__ = ("name", "version", "parameters_json")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_JSON_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: str
    parameters_json: str
    def __init__(self, name: _Optional[str] = ..., version: _Optional[str] = ..., parameters_json: _Optional[str] = ...) -> None: ...

class PublishResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[PublishResult]
    def __init__(self, results: _Optional[_Iterable[_Union[PublishResult, _Mapping]]] = ...) -> None: ...

class PublishResult(_message.Message):
    __slots__ = ("ref", "duplicate")
    REF_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    ref: str
    duplicate: bool
    def __init__(self, ref: _Optional[str] = ..., duplicate: bool = ...) -> None: ...

class ListTopicsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListTopicsResponse(_message.Message):
    __slots__ = ("topics", "queries")
    TOPICS_FIELD_NUMBER: _ClassVar[int]
    QUERIES_FIELD_NUMBER: _ClassVar[int]
    topics: _containers.RepeatedCompositeFieldContainer[TopicInfo]
    queries: _containers.RepeatedCompositeFieldContainer[QueryInfo]
    def __init__(self, topics: _Optional[_Iterable[_Union[TopicInfo, _Mapping]]] = ..., queries: _Optional[_Iterable[_Union[QueryInfo, _Mapping]]] = ...) -> None: ...

class TopicInfo(_message.Message):
    __slots__ = ("name", "namespace", "format", "description", "partitions", "schema_ids", "schema_registry", "publishable", "publish_schema")
    NAME_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    PARTITIONS_FIELD_NUMBER: _ClassVar[int]
    SCHEMA_IDS_FIELD_NUMBER: _ClassVar[int]
    SCHEMA_REGISTRY_FIELD_NUMBER: _ClassVar[int]
    PUBLISHABLE_FIELD_NUMBER: _ClassVar[int]
    PUBLISH_SCHEMA_FIELD_NUMBER: _ClassVar[int]
    name: str
    namespace: str
    format: str
    description: str
    partitions: int
    schema_ids: _containers.RepeatedScalarFieldContainer[int]
    schema_registry: str
    publishable: bool
    publish_schema: str
    def __init__(self, name: _Optional[str] = ..., namespace: _Optional[str] = ..., format: _Optional[str] = ..., description: _Optional[str] = ..., partitions: _Optional[int] = ..., schema_ids: _Optional[_Iterable[int]] = ..., schema_registry: _Optional[str] = ..., publishable: bool = ..., publish_schema: _Optional[str] = ...) -> None: ...

class DescribeGatewayRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GatewayDescription(_message.Message):
    __slots__ = ("name", "version", "endpoints", "topics", "auth", "peers", "queries")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    ENDPOINTS_FIELD_NUMBER: _ClassVar[int]
    TOPICS_FIELD_NUMBER: _ClassVar[int]
    AUTH_FIELD_NUMBER: _ClassVar[int]
    PEERS_FIELD_NUMBER: _ClassVar[int]
    QUERIES_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: str
    endpoints: _containers.RepeatedCompositeFieldContainer[Endpoint]
    topics: _containers.RepeatedCompositeFieldContainer[TopicInfo]
    auth: _containers.RepeatedCompositeFieldContainer[AuthMethod]
    peers: _containers.RepeatedCompositeFieldContainer[Peer]
    queries: _containers.RepeatedCompositeFieldContainer[QueryInfo]
    def __init__(self, name: _Optional[str] = ..., version: _Optional[str] = ..., endpoints: _Optional[_Iterable[_Union[Endpoint, _Mapping]]] = ..., topics: _Optional[_Iterable[_Union[TopicInfo, _Mapping]]] = ..., auth: _Optional[_Iterable[_Union[AuthMethod, _Mapping]]] = ..., peers: _Optional[_Iterable[_Union[Peer, _Mapping]]] = ..., queries: _Optional[_Iterable[_Union[QueryInfo, _Mapping]]] = ...) -> None: ...

class Peer(_message.Message):
    __slots__ = ("name", "url", "relation")
    NAME_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    RELATION_FIELD_NUMBER: _ClassVar[int]
    name: str
    url: str
    relation: str
    def __init__(self, name: _Optional[str] = ..., url: _Optional[str] = ..., relation: _Optional[str] = ...) -> None: ...

class Endpoint(_message.Message):
    __slots__ = ("kind", "url")
    KIND_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    kind: str
    url: str
    def __init__(self, kind: _Optional[str] = ..., url: _Optional[str] = ...) -> None: ...

class AuthMethod(_message.Message):
    __slots__ = ("kind", "params")
    class ParamsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    KIND_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    kind: str
    params: _containers.ScalarMap[str, str]
    def __init__(self, kind: _Optional[str] = ..., params: _Optional[_Mapping[str, str]] = ...) -> None: ...

class FetchRequest(_message.Message):
    __slots__ = ("ref",)
    REF_FIELD_NUMBER: _ClassVar[int]
    ref: str
    def __init__(self, ref: _Optional[str] = ...) -> None: ...

class ProvenanceRequest(_message.Message):
    __slots__ = ("ref", "max_depth", "timeout_ms")
    REF_FIELD_NUMBER: _ClassVar[int]
    MAX_DEPTH_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    ref: str
    max_depth: int
    timeout_ms: int
    def __init__(self, ref: _Optional[str] = ..., max_depth: _Optional[int] = ..., timeout_ms: _Optional[int] = ...) -> None: ...

class ProvenanceGraph(_message.Message):
    __slots__ = ("root", "entities", "activities", "agents", "used", "edges", "depth_limited", "cycle", "cycle_refs", "timed_out", "node_limited")
    ROOT_FIELD_NUMBER: _ClassVar[int]
    ENTITIES_FIELD_NUMBER: _ClassVar[int]
    ACTIVITIES_FIELD_NUMBER: _ClassVar[int]
    AGENTS_FIELD_NUMBER: _ClassVar[int]
    USED_FIELD_NUMBER: _ClassVar[int]
    EDGES_FIELD_NUMBER: _ClassVar[int]
    DEPTH_LIMITED_FIELD_NUMBER: _ClassVar[int]
    CYCLE_FIELD_NUMBER: _ClassVar[int]
    CYCLE_REFS_FIELD_NUMBER: _ClassVar[int]
    TIMED_OUT_FIELD_NUMBER: _ClassVar[int]
    NODE_LIMITED_FIELD_NUMBER: _ClassVar[int]
    root: str
    entities: _containers.RepeatedCompositeFieldContainer[ProvEntity]
    activities: _containers.RepeatedCompositeFieldContainer[ProvActivity]
    agents: _containers.RepeatedCompositeFieldContainer[ProvAgent]
    used: _containers.RepeatedCompositeFieldContainer[ProvUsed]
    edges: _containers.RepeatedCompositeFieldContainer[ProvEdge]
    depth_limited: bool
    cycle: bool
    cycle_refs: _containers.RepeatedScalarFieldContainer[str]
    timed_out: bool
    node_limited: bool
    def __init__(self, root: _Optional[str] = ..., entities: _Optional[_Iterable[_Union[ProvEntity, _Mapping]]] = ..., activities: _Optional[_Iterable[_Union[ProvActivity, _Mapping]]] = ..., agents: _Optional[_Iterable[_Union[ProvAgent, _Mapping]]] = ..., used: _Optional[_Iterable[_Union[ProvUsed, _Mapping]]] = ..., edges: _Optional[_Iterable[_Union[ProvEdge, _Mapping]]] = ..., depth_limited: bool = ..., cycle: bool = ..., cycle_refs: _Optional[_Iterable[str]] = ..., timed_out: bool = ..., node_limited: bool = ...) -> None: ...

class ProvEntity(_message.Message):
    __slots__ = ("id", "gateway", "topic", "partition", "offset", "key", "timestamp", "kind", "resolved", "unresolved_reason", "origin", "hops", "resolved_by")
    ID_FIELD_NUMBER: _ClassVar[int]
    GATEWAY_FIELD_NUMBER: _ClassVar[int]
    TOPIC_FIELD_NUMBER: _ClassVar[int]
    PARTITION_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    RESOLVED_FIELD_NUMBER: _ClassVar[int]
    UNRESOLVED_REASON_FIELD_NUMBER: _ClassVar[int]
    ORIGIN_FIELD_NUMBER: _ClassVar[int]
    HOPS_FIELD_NUMBER: _ClassVar[int]
    RESOLVED_BY_FIELD_NUMBER: _ClassVar[int]
    id: str
    gateway: str
    topic: str
    partition: int
    offset: int
    key: str
    timestamp: _timestamp_pb2.Timestamp
    kind: str
    resolved: bool
    unresolved_reason: str
    origin: str
    hops: str
    resolved_by: str
    def __init__(self, id: _Optional[str] = ..., gateway: _Optional[str] = ..., topic: _Optional[str] = ..., partition: _Optional[int] = ..., offset: _Optional[int] = ..., key: _Optional[str] = ..., timestamp: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., kind: _Optional[str] = ..., resolved: bool = ..., unresolved_reason: _Optional[str] = ..., origin: _Optional[str] = ..., hops: _Optional[str] = ..., resolved_by: _Optional[str] = ...) -> None: ...

class ProvActivity(_message.Message):
    __slots__ = ("id", "name", "version", "parameters")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    version: str
    parameters: str
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., version: _Optional[str] = ..., parameters: _Optional[str] = ...) -> None: ...

class ProvAgent(_message.Message):
    __slots__ = ("id", "kind", "subject", "issuer")
    ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    ISSUER_FIELD_NUMBER: _ClassVar[int]
    id: str
    kind: str
    subject: str
    issuer: str
    def __init__(self, id: _Optional[str] = ..., kind: _Optional[str] = ..., subject: _Optional[str] = ..., issuer: _Optional[str] = ...) -> None: ...

class ProvUsed(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class ProvEdge(_message.Message):
    __slots__ = ("kind", "to")
    KIND_FIELD_NUMBER: _ClassVar[int]
    FROM_FIELD_NUMBER: _ClassVar[int]
    TO_FIELD_NUMBER: _ClassVar[int]
    kind: str
    to: str
    def __init__(self, kind: _Optional[str] = ..., to: _Optional[str] = ..., **kwargs) -> None: ...

class MirrorStatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class MirrorStatusResponse(_message.Message):
    __slots__ = ("mirrors",)
    MIRRORS_FIELD_NUMBER: _ClassVar[int]
    mirrors: _containers.RepeatedCompositeFieldContainer[MirrorInfo]
    def __init__(self, mirrors: _Optional[_Iterable[_Union[MirrorInfo, _Mapping]]] = ...) -> None: ...

class MirrorInfo(_message.Message):
    __slots__ = ("name", "source", "destination", "state", "error", "positions", "lag_seconds", "copied", "cycles_dropped", "dead_lettered", "errors", "reconnects", "replica", "replicas")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    DESTINATION_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    POSITIONS_FIELD_NUMBER: _ClassVar[int]
    LAG_SECONDS_FIELD_NUMBER: _ClassVar[int]
    COPIED_FIELD_NUMBER: _ClassVar[int]
    CYCLES_DROPPED_FIELD_NUMBER: _ClassVar[int]
    DEAD_LETTERED_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    RECONNECTS_FIELD_NUMBER: _ClassVar[int]
    REPLICA_FIELD_NUMBER: _ClassVar[int]
    REPLICAS_FIELD_NUMBER: _ClassVar[int]
    name: str
    source: str
    destination: str
    state: str
    error: str
    positions: _containers.RepeatedCompositeFieldContainer[PartitionOffset]
    lag_seconds: float
    copied: int
    cycles_dropped: int
    dead_lettered: int
    errors: int
    reconnects: int
    replica: str
    replicas: _containers.RepeatedCompositeFieldContainer[MirrorReplica]
    def __init__(self, name: _Optional[str] = ..., source: _Optional[str] = ..., destination: _Optional[str] = ..., state: _Optional[str] = ..., error: _Optional[str] = ..., positions: _Optional[_Iterable[_Union[PartitionOffset, _Mapping]]] = ..., lag_seconds: _Optional[float] = ..., copied: _Optional[int] = ..., cycles_dropped: _Optional[int] = ..., dead_lettered: _Optional[int] = ..., errors: _Optional[int] = ..., reconnects: _Optional[int] = ..., replica: _Optional[str] = ..., replicas: _Optional[_Iterable[_Union[MirrorReplica, _Mapping]]] = ...) -> None: ...

class MirrorReplica(_message.Message):
    __slots__ = ("replica", "partitions")
    REPLICA_FIELD_NUMBER: _ClassVar[int]
    PARTITIONS_FIELD_NUMBER: _ClassVar[int]
    replica: str
    partitions: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, replica: _Optional[str] = ..., partitions: _Optional[_Iterable[int]] = ...) -> None: ...

class IssueCredentialRequest(_message.Message):
    __slots__ = ("subject", "scopes", "ttl_seconds", "audience")
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    SCOPES_FIELD_NUMBER: _ClassVar[int]
    TTL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    AUDIENCE_FIELD_NUMBER: _ClassVar[int]
    subject: str
    scopes: _containers.RepeatedScalarFieldContainer[str]
    ttl_seconds: int
    audience: str
    def __init__(self, subject: _Optional[str] = ..., scopes: _Optional[_Iterable[str]] = ..., ttl_seconds: _Optional[int] = ..., audience: _Optional[str] = ...) -> None: ...

class IssueCredentialResponse(_message.Message):
    __slots__ = ("token", "credential")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    CREDENTIAL_FIELD_NUMBER: _ClassVar[int]
    token: str
    credential: Credential
    def __init__(self, token: _Optional[str] = ..., credential: _Optional[_Union[Credential, _Mapping]] = ...) -> None: ...

class Credential(_message.Message):
    __slots__ = ("jti", "subject", "scopes", "audience", "issued_at", "expires_at", "issued_by", "revoked")
    JTI_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    SCOPES_FIELD_NUMBER: _ClassVar[int]
    AUDIENCE_FIELD_NUMBER: _ClassVar[int]
    ISSUED_AT_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    ISSUED_BY_FIELD_NUMBER: _ClassVar[int]
    REVOKED_FIELD_NUMBER: _ClassVar[int]
    jti: str
    subject: str
    scopes: _containers.RepeatedScalarFieldContainer[str]
    audience: str
    issued_at: int
    expires_at: int
    issued_by: str
    revoked: bool
    def __init__(self, jti: _Optional[str] = ..., subject: _Optional[str] = ..., scopes: _Optional[_Iterable[str]] = ..., audience: _Optional[str] = ..., issued_at: _Optional[int] = ..., expires_at: _Optional[int] = ..., issued_by: _Optional[str] = ..., revoked: bool = ...) -> None: ...

class ListCredentialsRequest(_message.Message):
    __slots__ = ("subject",)
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    subject: str
    def __init__(self, subject: _Optional[str] = ...) -> None: ...

class ListCredentialsResponse(_message.Message):
    __slots__ = ("credentials",)
    CREDENTIALS_FIELD_NUMBER: _ClassVar[int]
    credentials: _containers.RepeatedCompositeFieldContainer[Credential]
    def __init__(self, credentials: _Optional[_Iterable[_Union[Credential, _Mapping]]] = ...) -> None: ...

class RevokeCredentialRequest(_message.Message):
    __slots__ = ("jti", "subject")
    JTI_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    jti: str
    subject: str
    def __init__(self, jti: _Optional[str] = ..., subject: _Optional[str] = ...) -> None: ...

class RevokeCredentialResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...
