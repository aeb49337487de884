"""The :class:`Gateway` client: gRPC channels to one alertmesh gateway (one per replica)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

import grpc

from alertmesh._proto import alertmesh_pb2 as pb
from alertmesh._proto import alertmesh_pb2_grpc as pb_grpc
from alertmesh.decode import decode_payload, mesh_key
from alertmesh.errors import AlertmeshError, from_rpc_error, is_transient
from alertmesh.models import Alert, Directory, GatewayInfo, MirrorStatus, SchemaInfo, Skipped, TopicInfo
from alertmesh.positions import EndSpec, StartSpec, offsets_pb, to_end, to_start
from alertmesh.provenance import ProvenanceGraph
from alertmesh.publish import ActivityLike, Source, batches, record_pb
from alertmesh.query import QueryStream
from alertmesh.stream import Backoff, Decode, Subscription

if TYPE_CHECKING:
    import pandas

T = TypeVar("T")

#: Keep reconnecting quickly after a gateway restart (gRPC's own default backs off to 2 min).
_CHANNEL_OPTIONS: list[tuple[str, Any]] = [
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.min_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 5000),
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    # Batches arrive in a few large HTTP/2 frames rather than many of 16 KiB.
    ("grpc.http2.max_frame_size", 1024 * 1024),
]

DEFAULT_URL = "http://127.0.0.1:50051"

#: Most gateways a directory walk visits: a hostile gateway can name any number of peers.
MAX_GATEWAYS = 256

#: Largest answer taken from a gateway another gateway named (a description of thousands
#: of topics takes a few hundred KB; a walk keeps up to MAX_GATEWAYS of them).
MAX_PEER_ANSWER_BYTES = 2 << 20

PathLike = str | os.PathLike[str]


def _read(path: PathLike | None) -> bytes | None:
    return Path(path).read_bytes() if path is not None else None


def _token(token: str | os.PathLike[str] | None) -> str | None:
    """A token given inline, or the contents of the file it names."""
    if token is None:
        return None
    if isinstance(token, os.PathLike):
        return Path(token).read_text().strip()
    try:
        is_file = len(str(token)) < 4096 and Path(str(token)).is_file()
    except OSError:  # an inline JWT is longer than a file name may be
        is_file = False
    return Path(token).read_text().strip() if is_file else str(token).strip()


def _normalized(url: str) -> str:
    """A gateway URL with its scheme, for comparing the addresses a walk meets."""
    return url if "://" in url else f"http://{url}"


def connect(
    urls: str | Sequence[str] | None = None,
    token: str | os.PathLike[str] | None = None,
    **kwargs: Any,
) -> Gateway:
    """A :class:`Gateway` client of ``urls``: one URL, or the replicas of one gateway as a
    list or a comma-separated string, e.g. ``connect(["https://a:50051", "https://b:50051"])``."""
    return Gateway(urls, token, **kwargs)


#: The most URLs one gateway's replica list may hold: they are tried in turn, each within
#: the connect timeout, so thousands would take hours to fail (as the Rust client).
MAX_REPLICA_URLS = 32
_MAX_URL_CHARS = 2048
_SHOWN_URL_CHARS = 200


def _shown(url: str) -> str:
    """A URL as an error shows it: without user info (``user:password@`` becomes ``***@``), cut."""
    scheme, sep, rest = url.partition("://")
    if sep:
        end = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
        at = rest.rfind("@", 0, end)
        if at >= 0:
            url = f"{scheme}://***{rest[at:]}"
    return url if len(url) <= _SHOWN_URL_CHARS else url[:_SHOWN_URL_CHARS] + "…"


def _check_url(u: str) -> None:
    """Refuses what no gateway URL holds, before anything else sees it: overlong URLs,
    whitespace or control characters, and a user or password (credentials go in a token,
    and a URL is echoed in errors and logs)."""
    def bad(reason: str) -> ValueError:
        return ValueError(f"invalid gateway URL {_shown(u)!r}: {reason}")

    if len(u) > _MAX_URL_CHARS:
        raise bad(f"longer than {_MAX_URL_CHARS} characters")
    if any(c.isspace() or not c.isprintable() for c in u):
        raise bad("it contains whitespace or control characters")
    authority = u.partition("://")[2] if "://" in u else u
    for c in "/?#":
        authority = authority.split(c, 1)[0]
    if "@" in authority:
        raise bad("a user or password in the URL is refused (it would be shown in errors and logs); pass token=")


def _urls(url: str | Sequence[str] | None) -> list[str]:
    """The replica URLs given as one URL, a comma list or a sequence (default:
    ``$ALERTMESH_GATEWAY``, itself possibly a comma list): 1 to :data:`MAX_REPLICA_URLS`,
    none empty (a doubled or trailing comma is an error, not a replica fewer)."""
    if url is None or (isinstance(url, str) and not url.strip()):
        url = os.environ.get("ALERTMESH_GATEWAY") or DEFAULT_URL
    items = url.split(",") if isinstance(url, str) else list(url)
    if len(items) > MAX_REPLICA_URLS:
        raise ValueError(f"{len(items)} URLs given; a gateway's replicas are at most {MAX_REPLICA_URLS}")
    urls = [str(u).strip() for u in items]
    if not urls:
        raise ValueError("no gateway URL given")
    for i, u in enumerate(urls):
        if not u:
            raise ValueError(f"entry {i + 1} of {len(urls)} is empty (a doubled or trailing comma?)")
        _check_url(u)
    return urls


class Gateway:
    """A client of one alertmesh gateway, possibly run as several replicas.

    Args:
        url: ``http://host:port`` (plaintext) or ``https://host:port`` (TLS). Without a
            scheme, plaintext is assumed. Default: ``$ALERTMESH_GATEWAY``, else
            ``http://127.0.0.1:50051`` (as the ``alertmesh`` command line). Several
            replicas of one gateway (same name and config over the same Kafka cluster): a
            list of URLs or a comma-separated string. Calls go to one replica and move to
            the next when it is unreachable; a live subscription whose replica dies
            continues on another from the last delivered alert, without a gap or a repeat.
        token: a bearer token (JWT), or the path of a file holding one; sent as
            ``authorization: Bearer <token>`` with every call (to every replica).
        ca: PEM file of the CA that signed the gateway's certificate (default: system roots).
        cert, key: PEM files of a client certificate and its key, for mutual TLS.
        timeout: seconds allowed for each unary call (streams have no deadline).
        options: extra gRPC channel options.

    Giving ``ca``, ``cert`` or ``key`` implies TLS. Use as a context manager, or call
    :meth:`close`, to release the channel.
    """

    def __init__(
        self,
        url: str | Sequence[str] | None = None,
        token: str | os.PathLike[str] | None = None,
        ca: PathLike | None = None,
        cert: PathLike | None = None,
        key: PathLike | None = None,
        *,
        timeout: float = 30.0,
        options: Sequence[tuple[str, Any]] = (),
    ) -> None:
        urls = _urls(url)
        if (cert is None) != (key is None):
            raise ValueError("a client certificate needs both cert and key")
        # One value per key, the caller's over the defaults (gRPC takes the first of two).
        opts = list({**dict(_CHANNEL_OPTIONS), **dict(options)}.items())
        self._channels: list[grpc.Channel] = []
        for u in urls:
            parts = urlsplit(u if "://" in u else f"http://{u}")
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError(f"invalid gateway URL {_shown(u)!r}: expected http://host:port or https://host:port")
            secure = parts.scheme == "https" or ca is not None or cert is not None
            port = parts.port or (443 if secure else 80)
            target = f"{parts.hostname}:{port}" if ":" not in parts.hostname else f"[{parts.hostname}]:{port}"
            if secure:
                creds = grpc.ssl_channel_credentials(
                    root_certificates=_read(ca), private_key=_read(key), certificate_chain=_read(cert)
                )
                self._channels.append(grpc.secure_channel(target, creds, options=opts))
            else:
                self._channels.append(grpc.insecure_channel(target, options=opts))
        #: The first URL given; :attr:`urls` holds every replica's.
        self.url = urls[0]
        self.urls = urls
        self.timeout = timeout
        # Kept for peers found by `directory`: TLS files go to https:// peers, never the token.
        self._tls = (ca, cert, key)
        self._options = tuple(options)
        tok = _token(token)
        self._metadata: tuple[tuple[str, str], ...] = (("authorization", f"Bearer {tok}"),) if tok else ()
        self._stubs = [pb_grpc.AlertMeshStub(c) for c in self._channels]  # type: ignore[no-untyped-call]
        self._current = 0

    @property
    def _stub(self) -> pb_grpc.AlertMeshStub:
        """The replica calls go to now."""
        return self._stubs[self._current]

    def _next_replica(self) -> None:
        """After a transient failure: the next call goes to the next replica."""
        self._current = (self._current + 1) % len(self._stubs)

    def _replicas(self) -> list[pb_grpc.AlertMeshStub]:
        """Every replica, the current one first: the order a stream tries them in."""
        return self._stubs[self._current :] + self._stubs[: self._current]

    def __repr__(self) -> str:
        return f"Gateway({self.url!r})" if len(self.urls) == 1 else f"Gateway({self.urls!r})"

    def __enter__(self) -> Gateway:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Closes the channels; open subscriptions end."""
        for c in self._channels:
            c.close()

    def _unary(self, method: Callable[..., T], request: Any, timeout: float | None = None) -> T:
        # `method` is bound to the current replica's stub: the same RPC of the others.
        name = next((n for n, m in vars(self._stub).items() if m is method), None)
        for attempt in range(len(self._stubs)):
            try:
                return method(request, metadata=self._metadata, timeout=self.timeout if timeout is None else timeout)
            except grpc.RpcError as err:
                if name is None or attempt + 1 == len(self._stubs) or not is_transient(err):
                    raise from_rpc_error(err) from None
                self._next_replica()
                method = getattr(self._stub, name)
        raise AssertionError("unreachable")

    def topics(self) -> list[TopicInfo]:
        """The topics this gateway exposes."""
        resp = self._unary(self._stub.ListTopics, pb.ListTopicsRequest())
        return [TopicInfo.from_pb(t) for t in resp.topics]

    def queries(self) -> list[dict[str, Any]]:
        """The database queries this gateway serves: name, namespace, description, the
        columns ``where`` may name, and the key, order and ra/dec columns."""
        resp = self._unary(self._stub.ListTopics, pb.ListTopicsRequest())
        return [
            {
                "name": q.name,
                "namespace": q.namespace,
                "description": q.description,
                "columns": list(q.columns),
                "key": q.key,
                "order": q.order,
                "ra": q.ra or None,
                "dec": q.dec or None,
            }
            for q in resp.queries
        ]

    def query(
        self,
        name: str,
        *,
        where: str | None = None,
        cone: tuple[float, float, float] | None = None,
        ids: Iterable[str] | str | None = None,
        limit: int | None = None,
        follow: bool = False,
        resume: str | None = None,
        reconnect: bool = True,
        max_batch_alerts: int = 0,
        backoff: Backoff | None = None,
    ) -> QueryStream:
        """Streams the rows of the declared database query ``name`` (see :meth:`queries`),
        in the order of its order column, as alerts whose ``record`` is the row.

        Args:
            where: a filter over the query's columns, e.g. ``"mag < 18 && ndet >= 3"``.
            cone: ``(ra, dec, radius)`` in degrees: only rows inside.
            ids: only rows of these mesh keys, e.g. ``["ZTF:ZTF20aabaesm"]``.
            limit: stop after this many rows.
            follow: after the existing rows, go on with rows inserted later.
            resume: a ``resume_token`` of an earlier stream with the same arguments: start
                after its last row.
            reconnect: reopen the stream after a transient failure, after the last row
                delivered.

        ``QueryStream.to_pandas()`` gives the rows as a DataFrame. Errors such as an
        unknown query (:class:`NotFound`) or an undeclared column (:class:`InvalidArgument`)
        are raised when iteration starts.
        """
        req = pb.QueryRequest(
            name=name,
            where=where or "",
            ids=[ids] if isinstance(ids, str) else list(ids or ()),
            output=pb.OUTPUT_JSON,
            resume_token=resume or "",
            follow=follow,
            max_batch_alerts=max_batch_alerts,
            # NaN and infinities as tokens json.loads reads as floats, so that a text
            # column holding "NaN" stays a string.
            json_bare_nonfinite=True,
        )
        if limit is not None:
            req.limit = limit
        if cone is not None:
            ra, dec, radius = cone
            req.cone.CopyFrom(pb.Cone(ra=ra, dec=dec, radius=radius))
        stub, *replicas = self._replicas()
        return QueryStream(
            stub, req, replicas=replicas, metadata=self._metadata, reconnect=reconnect, backoff=backoff
        )

    def describe(self) -> GatewayInfo:
        """The gateway's name, version, endpoints, topics, auth methods and peers."""
        return GatewayInfo.from_pb(self._unary(self._stub.DescribeGateway, pb.DescribeGatewayRequest()))

    def schema(self, topic: str, id: int | None = None) -> SchemaInfo:
        """The Avro schema of ``topic`` under Confluent schema id ``id`` (the topic's latest
        id when ``None``), as ``alertmesh schema`` prints it. Needs read access to the topic.
        """
        req = pb.GetSchemaRequest(topic=topic)
        if id is not None:
            req.id = id
        return SchemaInfo.from_pb(self._unary(self._stub.GetSchema, req))

    def mirror_status(self) -> list[MirrorStatus]:
        """The gateway's mirror jobs: state, positions, lag and counters (as ``alertmesh mirror status``).

        On a gateway with ``[auth]`` this needs a token with the ``admin`` scope.
        """
        resp = self._unary(self._stub.MirrorStatus, pb.MirrorStatusRequest())
        return [MirrorStatus.from_pb(m) for m in resp.mirrors]

    def directory(self, *, max_gateways: int = MAX_GATEWAYS) -> Directory:
        """Every gateway reachable from this one through mirror sources, breadth-first
        (as ``alertmesh directory``).

        This gateway is described with its token, so its description shows what the token
        may see. Peers are addresses other gateways supplied: they are described without
        the token (a hostile gateway could name any address), with the TLS files only
        when their URL is ``https://``. Peers that cannot be reached, or whose entry has no
        URL or more than one address, are listed in ``Directory.unreachable``; at most
        ``max_gateways`` are visited.
        """
        found: list[tuple[str, GatewayInfo]] = [(self.url, self.describe())]
        unreachable: list[tuple[str, str]] = []
        seen = {_normalized(self.url)}
        queue = [self._peer_urls(found[0][1], seen, max_gateways)]
        while queue:
            for url in queue.pop(0):
                if not url.strip():
                    # An empty address would mean $ALERTMESH_GATEWAY or the local default:
                    # a peer entry must not make the walk describe the user's own gateway.
                    unreachable.append((url, "the peer entry has no URL"))
                    continue
                if "," in url or any(c.isspace() for c in url):
                    # A replica list would have one hostile entry send the walk to many
                    # addresses, past `max_gateways`.
                    unreachable.append(
                        (url, "the peer URL is not one address (it holds a comma or whitespace)")
                    )
                    continue
                try:
                    with self._peer(url) as peer:
                        info = peer.describe()
                except (AlertmeshError, ValueError, OSError) as e:
                    unreachable.append((url, str(e)))
                    continue
                found.append((url, info))
                queue.append(self._peer_urls(info, seen, max_gateways))
        return Directory(found, unreachable)

    def _peer_urls(self, info: GatewayInfo, seen: set[str], limit: int) -> list[str]:
        """The mirror sources ``info`` names that the walk has not queued yet."""
        urls = []
        for p in info.peers:
            url = _normalized(p.url)
            if p.relation == "mirror-source" and url not in seen and len(seen) < limit:
                seen.add(url)
                urls.append(p.url)
        return urls

    def _peer(self, url: str) -> Gateway:
        """A client of ``url``, an address another gateway supplied: never with this
        gateway's token; with its TLS files only when ``url`` is https://; taking answers
        of at most ``MAX_PEER_ANSWER_BYTES`` (a walk keeps every description it gets)."""
        ca, cert, key = self._tls if url.startswith("https://") else (None, None, None)
        options = [*self._options, ("grpc.max_receive_message_length", MAX_PEER_ANSWER_BYTES)]
        # As a list of one, so it is never split into replicas.
        return Gateway([url], ca=ca, cert=cert, key=key, timeout=self.timeout, options=options)

    def provenance(self, ref: str, *, depth: int | None = None, timeout: float | None = None) -> ProvenanceGraph:
        """The provenance graph behind an alert ref (as ``alertmesh provenance``): the records
        it was copied and derived from, their activities, agents and non-alert inputs,
        followed across gateways by the gateways themselves.

        ``depth`` bounds the links followed (gateway default 16), ``timeout`` the seconds
        the whole walk may take (default 10). Records that cannot be reached are entities
        with ``resolved`` false and the reason; the graph's flags say whether the walk met
        its depth limit, a cycle or its time budget. Export with
        :meth:`~alertmesh.provenance.ProvenanceGraph.to_prov_json` or
        :meth:`~alertmesh.provenance.ProvenanceGraph.to_networkx`.

        Raises:
            NotFound: no such record. PermissionDenied: the token may not fetch it.
        """
        request = pb.ProvenanceRequest(ref=ref, timeout_ms=int((timeout or 0) * 1000))
        if depth is not None:
            request.max_depth = depth
        rpc_timeout = max(self.timeout or 0, (timeout or 10) + 5)
        return ProvenanceGraph.from_pb(self._unary(self._stub.Provenance, request, timeout=rpc_timeout))

    def fetch(self, ref: str, *, decode: bool = True) -> Alert:
        """Resolves an alert ref ``am://<gateway>/<topic>/<partition>/<offset>``.

        The payload is returned as is; with ``decode`` (the default) an Avro OCF or JSON
        payload is also decoded locally into ``record``.

        Raises:
            NotFound: no such record on this gateway. InvalidArgument: a malformed ref.
        """
        alert = Alert.from_pb(self._unary(self._stub.Fetch, pb.FetchRequest(ref=ref)))
        if decode and alert.payload is not None and alert.format in ("avro-ocf", "json"):
            alert.record = decode_payload(alert.payload, alert.format)
            if alert.key is None:
                alert.key = mesh_key(alert.namespace, alert.record)
        return alert

    def publish(
        self,
        topic: str,
        record: Any,
        key: str | None = None,
        derived_from: Source | Iterable[Source] = (),
        activity: ActivityLike | None = None,
        used: Iterable[str] = (),
        publish_id: str | None = None,
    ) -> str:
        """Publishes one derived record to ``topic`` (declared ``publish = true``) and
        returns its ref ``am://<gateway>/<topic>/<partition>/<offset>``.

        Args:
            record: a dict (sent as JSON) or the payload bytes in the topic's format.
            key: the mesh key ``NS:id``; default: the key of the first alert in
                ``derived_from``.
            derived_from: the alerts (or their refs, on any gateway) it was computed from.
            activity: what produced it: ``{"name", "version", "parameters"}`` or an
                :class:`~alertmesh.Activity`.
            used: non-alert inputs, e.g. ``"catalog:gaia-dr3/4295806720"``.
            publish_id: the id that makes a retry a no-op. Default: a hash of everything
                published (topic, key, payload, derived_from, activity, used), so calling
                again with the same arguments, after a timeout or a crash, returns the
                first ref and writes nothing; pass distinct ids to publish identical
                content twice.

        A call that fails with a transient error (the gateway restarting) is retried with
        the same publish id, so it never writes twice.
        """
        if activity is None:
            raise ValueError("activity is needed: say what produced the record (name, version, parameters)")
        rec = record_pb(
            topic, record, key=key, derived_from=derived_from, activity=activity, used=used, publish_id=publish_id
        )
        return self._publish(topic, [rec])[0]

    def publish_many(
        self,
        topic: str,
        records: Iterable[Mapping[str, Any]],
        *,
        activity: ActivityLike | None = None,
        used: Iterable[str] = (),
    ) -> list[str]:
        """Publishes many derived records in few requests; returns their refs in order.

        Each item is a dict of :meth:`publish`'s arguments: ``record`` and
        ``derived_from``, optionally ``key``, ``activity``, ``used`` and ``publish_id``;
        ``activity`` and ``used`` given here apply to items without their own. Each
        request is validated whole by the gateway: a bad record refuses its request.
        """
        used = list(used)
        recs = []
        for i, item in enumerate(records):
            unknown = set(item) - {"record", "key", "derived_from", "activity", "used", "publish_id"}
            if unknown or "record" not in item:
                raise ValueError(f"records[{i}]: needs 'record', and takes key, derived_from, activity, used, publish_id; got {sorted(item)}")
            act = item.get("activity", activity)
            if act is None:
                raise ValueError(f"records[{i}]: activity is needed (here or as publish_many's activity=)")
            recs.append(
                record_pb(
                    topic,
                    item["record"],
                    key=item.get("key"),
                    derived_from=item.get("derived_from", ()),
                    activity=act,
                    used=item.get("used", used),
                    publish_id=item.get("publish_id"),
                )
            )
        refs: list[str] = []
        for batch in batches(recs):
            refs.extend(self._publish(topic, batch))
        return refs

    def _publish(self, topic: str, records: list[pb.PublishRecord], attempts: int = 5) -> list[str]:
        req = pb.PublishRequest(topic=topic, records=records)
        for attempt in range(attempts):
            try:
                resp = self._stub.Publish(req, metadata=self._metadata, timeout=self.timeout)
                return [r.ref for r in resp.results]
            except grpc.RpcError as err:
                # Same publish ids: a retry after an unknown outcome cannot duplicate.
                if attempt + 1 < attempts and is_transient(err):
                    self._next_replica()
                    time.sleep(min(0.2 * 2**attempt, 3.0))
                    continue
                raise from_rpc_error(err) from None
        raise AssertionError("unreachable")

    def commit_cursor(self, name: str, topic: str, offsets: Mapping[int, int]) -> dict[int, int]:
        """Stores the durable cursor ``name`` of ``topic``: per partition, the next offset to read.

        Positions merge per partition with those already stored; returns the full state.
        A later ``subscribe(..., cursor=name)`` resumes there.
        """
        req = pb.CommitCursorRequest(name=name, topic=topic, offsets=offsets_pb(offsets))
        resp = self._unary(self._stub.CommitCursor, req)
        return {po.partition: po.offset for po in resp.offsets}

    def subscribe(
        self,
        topic: str,
        start: StartSpec = "latest",
        end: EndSpec = None,
        *,
        cone: tuple[float, float, float] | None = None,
        where: str | None = None,
        ids: Iterable[str] | str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
        omit_cutouts: bool = False,
        decode: Decode = "gateway",
        reconnect: bool = True,
        max_batch_alerts: int = 0,
        max_batch_bytes: int = 0,
        backoff: Backoff | None = None,
        on_skipped: Callable[[Skipped], None] | None = None,
    ) -> Subscription:
        """Streams the alerts of ``topic``, in offset order per partition.

        Args:
            topic: an exposed topic (see :meth:`topics`).
            start: ``"earliest"``, ``"latest"``, a ``datetime`` or RFC 3339 text (the first
                alert per partition at or after it), or ``{partition: offset}`` (only those
                partitions).
            end: ``None`` for a live stream, ``"now"`` for what is stored, or a time.
            cone: ``(ra, dec, radius)`` in degrees: only alerts inside.
            where: a gateway filter expression, e.g. ``"candidate.magpsf < 18"``.
            ids: only alerts of these mesh keys, e.g. ``["ZTF:ZTF20aabaesm"]`` (one key may
                be given as a string).
            limit: stop after this many alerts.
            cursor: a durable cursor name; its partitions resume where it was committed.
            omit_cutouts: leave cutout images out (``None``).
            decode: ``"gateway"`` (JSON decoded by the gateway, the default), ``"local"``
                (native payload, decoded here with fastavro) or ``"none"`` (payload only).
            reconnect: reopen a live or time-bounded stream after a transient failure,
                without gaps or repeats.
            max_batch_alerts, max_batch_bytes: batch bounds asked of the gateway (0: its default).
            backoff: reconnection delays (default 0.2 s doubling up to 10 s).
            on_skipped: called for each record the gateway could not decode (default: a
                logged warning); the latest 1000 are also kept in ``Subscription.skipped``,
                their number in ``Subscription.skipped_count``.

        The request is sent when iteration starts; errors such as an unknown topic
        (:class:`NotFound`) or a bad filter (:class:`InvalidArgument`) are raised then.
        """
        if decode not in ("gateway", "local", "none"):
            raise ValueError(f"invalid decode {decode!r}: expected 'gateway', 'local' or 'none'")
        req = pb.SubscribeRequest(
            topic=topic,
            start=to_start(start),
            cursor=cursor or "",
            ids=[ids] if isinstance(ids, str) else list(ids or ()),
            filter=where or "",
            output=pb.OUTPUT_JSON if decode == "gateway" else pb.OUTPUT_NATIVE,
            omit_cutouts=omit_cutouts,
            # NaN and infinities as tokens json.loads reads as floats: no pass over the text.
            json_bare_nonfinite=decode == "gateway",
            max_batch_alerts=max_batch_alerts,
            max_batch_bytes=max_batch_bytes,
        )
        end_pb = to_end(end)
        if end_pb is not None:
            req.end.CopyFrom(end_pb)
        if limit is not None:
            req.limit = limit
        if cone is not None:
            ra, dec, radius = cone
            req.cone.CopyFrom(pb.Cone(ra=ra, dec=dec, radius=radius))
        stub, *replicas = self._replicas()
        return Subscription(
            stub,
            req,
            replicas=replicas,
            metadata=self._metadata,
            decode=decode,
            reconnect=reconnect,
            backoff=backoff,
            on_skipped=on_skipped,
        )

    def to_pandas(
        self,
        topic: str,
        start: StartSpec = "earliest",
        end: EndSpec = "now",
        **kwargs: Any,
    ) -> pandas.DataFrame:
        """A bounded subscription as a DataFrame: one row per alert, no cutouts.

        Columns: ``ref``, ``partition``, ``offset``, ``timestamp``, ``key``, the alert's
        scalar top-level fields, and the fields of its ``candidate`` (ZTF) or ``diaSource``
        (LSST) record as ``candidate.<name>``. 64-bit ids are exact (``int64`` columns).
        Needs ``pip install alertmesh[pandas]``. Other arguments as in :meth:`subscribe`.
        """
        from alertmesh.frames import alerts_to_frame

        if end is None:
            raise ValueError("to_pandas needs a bounded stream: give end='now' or a time")
        kwargs.setdefault("omit_cutouts", True)
        return alerts_to_frame(self.subscribe(topic, start, end, **kwargs))

    def lightcurve(
        self,
        key: str,
        *,
        topic: str,
        start: StartSpec = "earliest",
        end: EndSpec = "now",
        **kwargs: Any,
    ) -> pandas.DataFrame:
        """Every detection and upper limit known for one object, one row per epoch and band.

        Reads every alert of ``key`` in ``topic`` (an ``ids`` filter, run by the gateway)
        and gathers the points each carries: ZTF ``candidate`` and ``prv_candidates``, LSST
        ``diaSource``, ``prvDiaSources`` and ``prvDiaForcedSources``. Alerts repeat their
        object's history (and a replayed feed repeats alerts), so each epoch and band is
        kept once: a detection before forced photometry before an upper limit.

        Args:
            key: the mesh key (``ZTF:ZTF20aabaesm``), or the object id alone
                (``ZTF20aabaesm``), then prefixed with the topic's namespace.
            topic: the topic to read.
            start, end: the time range, as in :meth:`subscribe` (default: everything stored).

        Returns:
            A DataFrame sorted by time with columns ``mjd``, ``band``, ``kind``
            (``detection``, ``forced`` or ``upper_limit``), ``mag``, ``mag_err``,
            ``limit_mag`` (ZTF's 5-sigma depth), ``flux`` and ``flux_err`` (LSST, nJy),
            ``id`` (``candid`` / ``diaSourceId`` / ``diaForcedSourceId``) and ``ref`` (the
            alert it was read from); ``attrs["key"]`` is the mesh key. Draw it with
            :func:`alertmesh.plot_lightcurve`. Needs ``pip install alertmesh[pandas]``.
        """
        from alertmesh.lightcurve import points, to_frame

        if end is None:
            raise ValueError("lightcurve needs a bounded stream: give end='now' or a time")
        if ":" not in key:
            namespace = next((t.namespace for t in self.topics() if t.name == topic), None)
            if namespace is None:
                raise ValueError(f"topic {topic!r} is not exposed by {self.url}: give a full mesh key")
            key = f"{namespace}:{key}"
        kwargs.setdefault("omit_cutouts", True)
        alerts = self.subscribe(topic, start, end, ids=[key], **kwargs)
        return to_frame(points((a.record, a.ref) for a in alerts if a.record is not None), key)
