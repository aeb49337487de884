"""``Query`` as a Python iterator: the rows of a gateway's declared database query.

Every batch carries a resume token. When the stream fails transiently (the gateway
restarts, the network resets it) the iterator reopens it with the last token, so rows
continue after the last one delivered, without gaps or repeats. Given the replicas of a
gateway, each reopening goes to the next replica (a token binds to the gateway's name and
the query, which replicas share), so a stream whose replica dies continues on another.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import grpc

from alertmesh._proto import alertmesh_pb2 as pb
from alertmesh._proto import alertmesh_pb2_grpc as pb_grpc
from alertmesh.decode import from_gateway_json, shown
from alertmesh.errors import from_rpc_error, is_transient
from alertmesh.models import Alert
from alertmesh.stream import Backoff, CancellableStream

if TYPE_CHECKING:
    import pandas

log = logging.getLogger("alertmesh")


class QueryStream(CancellableStream):
    """An iterator over the rows of one ``Query`` stream, as :class:`Alert` objects whose
    ``record`` is the row (a dict of the declared columns; integers exact).

    Created by :meth:`alertmesh.Gateway.query`. Call :meth:`close` (or leave a ``with``
    block) to end it early.

    Attributes:
        resume_token: resumes after the last row delivered (give it to ``query(resume=...)``).
        delivered: how many rows were yielded.
        reconnects: how many times the stream was reopened.
    """

    def __init__(
        self,
        stub: pb_grpc.AlertMeshStub,
        request: pb.QueryRequest,
        *,
        metadata: Sequence[tuple[str, str]],
        reconnect: bool,
        backoff: Backoff | None = None,
        replicas: Sequence[pb_grpc.AlertMeshStub] = (),
    ) -> None:
        super().__init__(stub, replicas)
        self._request = request
        self._metadata = tuple(metadata)
        self._limit = request.limit if request.HasField("limit") else None
        self._reconnect = reconnect
        self._backoff = backoff or Backoff()
        self.resume_token = request.resume_token
        # Rows delivered after the last resume token taken: a reconnect resumes at that
        # token, so this many rows come again and are skipped. (Counted rather than compared
        # by offset: an archive's rows carry their Kafka offsets, not the query's order.)
        self._since_token = 0
        self.delivered = 0
        self.reconnects = 0

    def to_pandas(self) -> pandas.DataFrame:
        """The rows as a DataFrame: ``ref``, ``key`` and the declared columns; 64-bit
        integers stay exact (``int64``, or ``Int64`` with nulls). Needs a stream that ends
        (no ``follow``) and ``pip install alertmesh[pandas]``."""
        from alertmesh.frames import alerts_to_frame

        if self._request.follow:
            raise ValueError("to_pandas needs a stream that ends: query without follow")
        return alerts_to_frame(self)

    def _request_now(self) -> pb.QueryRequest:
        req = pb.QueryRequest()
        req.CopyFrom(self._request)
        req.resume_token = self.resume_token
        if self._limit is not None:
            # Rows after the token taken that were delivered come again (and are skipped).
            req.limit = self._limit - self.delivered + self._since_token
        return req

    def _run(self) -> Iterator[Alert]:
        while not self._closed.is_set():
            if self._limit is not None and self.delivered >= self._limit:
                return
            call = self._stub.Query(self._request_now(), metadata=self._metadata)
            self._call = call
            if self._closed.is_set():
                call.cancel()
            skip = self._since_token
            try:
                for batch in call:
                    self._backoff.reset()
                    for m in batch.alerts:
                        if skip:
                            skip -= 1
                            continue  # delivered before a reconnect
                        self._since_token += 1
                        alert = Alert.from_pb(m)
                        alert.record = from_gateway_json(
                            m.json if m.json else m.payload, bare_nonfinite=m.json_bare_nonfinite
                        )
                        self.delivered += 1
                        yield alert
                    # Only once every row of the batch was taken: a token past rows the
                    # caller never saw would lose them on a reconnect.
                    if batch.resume_token and not skip:
                        self.resume_token = batch.resume_token
                        self._since_token = 0
                return  # the stream ended with OK
            except grpc.RpcError as err:
                if self._closed.is_set() and err.code() == grpc.StatusCode.CANCELLED:
                    return
                if not (self._reconnect and is_transient(err)):
                    raise from_rpc_error(err) from None
                delay = self._backoff.delay()
                log.warning(
                    "alertmesh: query %s interrupted (%s: %s); resuming in %.1fs",
                    self._request.name, err.code().name, shown(err.details()), delay,
                )
                self.reconnects += 1
                self._next_replica()
                if self._closed.wait(delay):
                    return
            finally:
                call.cancel()
