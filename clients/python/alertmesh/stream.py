"""``Subscribe`` as a Python iterator that survives gateway restarts.

A stream that has an end time or no end at all is *resumable*: when the connection fails
transiently (the gateway restarts, the network resets it), the iterator reopens it with
capped exponential backoff. The reopened request asks each partition already delivered to
resume at the offset after its last delivered alert (the ``resume`` field), each partition
whose start offset the gateway announced (``AlertBatch.starts``: every partition of a
``latest`` stream) to resume there, and any other partition at the original start. Alerts at offsets already delivered are dropped on the
client as well, so nothing repeats even if the gateway replays more than asked. Given the
replicas of a gateway, each reopening goes to the next replica, so a stream whose replica
dies continues on another.
"""

from __future__ import annotations

import logging
import random
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:  # typing.Self is Python 3.11; the package supports 3.10
    from typing import Self

import grpc

from alertmesh._proto import alertmesh_pb2 as pb
from alertmesh._proto import alertmesh_pb2_grpc as pb_grpc
from alertmesh.decode import decode_payload, from_gateway_json, mesh_key, omit_cutouts, shown
from alertmesh.errors import DecodeError, from_rpc_error, is_transient
from alertmesh.models import Alert, Skipped
from alertmesh.positions import offsets_pb, timestamp

log = logging.getLogger("alertmesh")

#: ``gateway``: the gateway decodes (``OUTPUT_JSON``); ``local``: native bytes decoded here
#: with fastavro; ``none``: native bytes only.
Decode = Literal["gateway", "local", "none"]

#: The most partitions whose start offsets a stream keeps from its gateway
#: (``AlertBatch.starts``); Kafka topics have far fewer.
MAX_PARTITIONS = 1 << 16

#: How many of the latest skipped records (and a runner's published refs) are kept: a
#: stream may run for months.
KEPT = 1000


@dataclass
class Backoff:
    """Capped exponential backoff with jitter, in seconds."""

    initial: float = 0.2
    maximum: float = 10.0
    factor: float = 2.0
    _next: float = field(default=0.0, init=False)

    def reset(self) -> None:
        """Starts over from ``initial`` (after a successful reconnect)."""
        self._next = 0.0

    def delay(self) -> float:
        """The next delay to wait."""
        self._next = self.initial if self._next == 0.0 else min(self._next * self.factor, self.maximum)
        return self._next * random.uniform(0.8, 1.0)


class CancellableStream:
    """What every server-streaming iterator of the client shares: iterate once, close from
    any thread (cancelling the call in flight), end a ``with`` block by closing, and
    cancel the call as soon as nothing refers to the stream (a loop left by ``break``).

    The stream is its own iterator; the generator it drives holds it through a weak proxy.
    A generator holding it strongly would make a cycle that only the garbage collector
    frees, keeping the gateway's subscription open until it runs.
    """

    def __init__(self, stub: pb_grpc.AlertMeshStub, replicas: Sequence[pb_grpc.AlertMeshStub] = ()) -> None:
        self._stub = stub
        # The other replicas of the gateway, tried in turn after each transient failure.
        self._replicas = list(replicas)
        self._call: Any = None
        self._closed = threading.Event()
        self._iter: Iterator[Alert] | None = None

    def _run(self) -> Iterator[Alert]:
        raise NotImplementedError

    def _next_replica(self) -> None:
        """After a transient failure: reopen on the next replica, if there are several."""
        if self._replicas:
            self._replicas.append(self._stub)
            self._stub = self._replicas.pop(0)

    def __iter__(self) -> Self:
        return self

    def __next__(self) -> Alert:
        it = self._iter
        if it is None:
            # Through the class: `proxy._run` would bind the method to this object itself.
            it = self._iter = type(self)._run(weakref.proxy(self))
        return next(it)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Cancels the stream; iteration stops. Safe to call from another thread."""
        self._closed.set()
        call = self._call
        if call is not None:
            call.cancel()


class Subscription(CancellableStream):
    """An iterator over the alerts of one ``Subscribe`` stream.

    Created by :meth:`alertmesh.Gateway.subscribe`. Iterate it to receive :class:`Alert`
    objects; call :meth:`close` (or leave a ``with`` block) to end it early.

    Attributes:
        positions: per partition, the offset after the last alert delivered, or for a
            partition that delivered nothing yet, where the gateway said the stream starts
            there (``AlertBatch.starts``): what to commit with
            :meth:`alertmesh.Gateway.commit_cursor` once they are processed.
        skipped: the latest records (at most :data:`KEPT`, 1000) the gateway could not
            decode, as it reported them, oldest first.
        skipped_count: how many records the gateway reported skipped in all.
        delivered: how many alerts were yielded.
        reconnects: how many times the stream was reopened.
    """

    def __init__(
        self,
        stub: pb_grpc.AlertMeshStub,
        request: pb.SubscribeRequest,
        *,
        metadata: Sequence[tuple[str, str]],
        decode: Decode,
        reconnect: bool,
        backoff: Backoff | None = None,
        on_skipped: Callable[[Skipped], None] | None = None,
        replicas: Sequence[pb_grpc.AlertMeshStub] = (),
    ) -> None:
        super().__init__(stub, replicas)
        self._request = request
        self._metadata = tuple(metadata)
        self._decode = decode
        self._limit = request.limit if request.HasField("limit") else None
        end_kind = request.end.WhichOneof("position") if request.HasField("end") else None
        # `end=now` is re-evaluated by every request, so only live and time-bounded
        # streams can be reopened without changing their meaning.
        self._resumable = reconnect and end_kind != "now"
        self._backoff = backoff or Backoff()
        self._on_skipped = on_skipped
        self._started_at = datetime.now(timezone.utc)
        self.positions: dict[int, int] = {}
        self.skipped: deque[Skipped] = deque(maxlen=KEPT)
        self.skipped_count = 0
        self.delivered = 0
        self.reconnects = 0

    def _reopen_request(self) -> pb.SubscribeRequest:
        """The request that continues where the delivered alerts stopped."""
        req = pb.SubscribeRequest()
        req.CopyFrom(self._request)
        if self._limit is not None:
            req.limit = self._limit - self.delivered
        start_kind = req.start.WhichOneof("position") if req.HasField("start") else None
        if start_kind in (None, "latest"):
            # "latest" now would skip what arrived while disconnected on partitions that
            # have delivered nothing yet: start those where the stream first started.
            req.start.CopyFrom(pb.Start(time=timestamp(self._started_at)))
        del req.resume[:]
        req.resume.extend(offsets_pb(self.positions))
        return req

    def _open(self, request: pb.SubscribeRequest) -> Any:
        call = self._stub.Subscribe(request, metadata=self._metadata)
        self._call = call
        if self._closed.is_set():
            call.cancel()
        return call

    def _run(self) -> Iterator[Alert]:
        request = self._request
        self._started_at = datetime.now(timezone.utc)
        while not self._closed.is_set():
            call = self._open(request)
            try:
                for batch in call:
                    self._backoff.reset()
                    self._started(batch.starts)
                    for s in batch.skipped:
                        self._skip(Skipped(s.ref, s.reason))
                    for m in batch.alerts:
                        if m.offset < self.positions.get(m.partition, -1):
                            continue  # already delivered before a reconnect
                        alert = self._convert(m)
                        self.positions[m.partition] = m.offset + 1
                        self.delivered += 1
                        yield alert
                        if self._limit is not None and self.delivered >= self._limit:
                            return
                return  # the stream ended with OK
            except grpc.RpcError as err:
                if self._closed.is_set() and err.code() == grpc.StatusCode.CANCELLED:
                    return
                if not (self._resumable and is_transient(err)):
                    raise from_rpc_error(err) from None
                delay = self._backoff.delay()
                log.warning(
                    "alertmesh: stream of %s interrupted (%s: %s); reconnecting in %.1fs",
                    request.topic, err.code().name, shown(err.details()), delay,
                )
                self.reconnects += 1
                # The same stream from another replica: positions are Kafka offsets.
                self._next_replica()
                if self._closed.wait(delay):
                    return
                request = self._reopen_request()
            finally:
                call.cancel()

    def _started(self, starts: Any) -> None:
        """Records where the stream starts on partitions that delivered nothing yet: a
        reopened stream resumes them there. A new ``latest``, or the time the stream opened,
        would pass over records that arrived in between with older timestamps (a mirror's
        copies keep their source's). Bounded, so a gateway cannot grow the map without end.
        """
        for s in starts:
            if s.partition < 0 or s.offset < 0:
                continue
            if len(self.positions) >= MAX_PARTITIONS and s.partition not in self.positions:
                continue
            self.positions.setdefault(s.partition, s.offset)

    def _skip(self, s: Skipped) -> None:
        self.skipped.append(s)
        self.skipped_count += 1
        if self._on_skipped is not None:
            self._on_skipped(s)
        else:
            log.warning("alertmesh: gateway skipped %s: %s", shown(s.ref), shown(s.reason))

    def _convert(self, m: pb.Alert) -> Alert:
        alert = Alert.from_pb(m)
        if self._decode == "gateway":
            alert.record = from_gateway_json(m.json, bare_nonfinite=m.json_bare_nonfinite)
        elif self._decode == "local":
            try:
                record = decode_payload(m.payload, m.format)
            except DecodeError as e:
                raise DecodeError(f"{m.ref}: {e.message}") from e
            alert.record = omit_cutouts(record) if self._request.omit_cutouts else record
            if alert.key is None:
                alert.key = mesh_key(alert.namespace, record)
        return alert

