"""Exceptions raised for gateway errors, one class per gRPC status the gateway uses."""

from __future__ import annotations

import re

import grpc


class AlertmeshError(Exception):
    """A call to a gateway failed.

    Attributes:
        code: the gRPC status code name, e.g. ``"NOT_FOUND"``.
        message: the gateway's explanation (command-line flags it suggests are named as
            :class:`~alertmesh.Gateway` arguments).
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class NotFound(AlertmeshError):
    """The topic is not exposed, or the alert ref names no record of this gateway."""


class InvalidArgument(AlertmeshError):
    """A bad start, end, limit, offsets, filter, cone, mesh key or ref; the message says which."""


class Unavailable(AlertmeshError):
    """The gateway (or its Kafka) cannot be reached, or it is shutting down."""


class Unauthenticated(AlertmeshError):
    """The gateway needs a (valid) token or client certificate."""


class PermissionDenied(AlertmeshError):
    """The credentials are valid but do not allow this call (e.g. a topic outside their scope)."""


class ResourceExhausted(AlertmeshError):
    """The gateway serves too many subscriptions at once; retry later."""


class FailedPrecondition(AlertmeshError):
    """The call is valid but the target does not allow it (e.g. a topic that is not publishable)."""


class DecodeError(AlertmeshError):
    """A payload could not be decoded on the client."""

    def __init__(self, message: str) -> None:
        super().__init__("DECODE", message)


_BY_CODE: dict[grpc.StatusCode, type[AlertmeshError]] = {
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhausted,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition,
}


#: Command-line flags a gateway's hint may name, and the Gateway argument that does the same.
_CLI_FLAGS = re.compile(r"--(cert|key|token|ca)\b")


def python_hint(message: str) -> str:
    """The gateway's message with the command-line flags it suggests (``pass --cert and
    --key``) named as :class:`~alertmesh.Gateway` arguments (``pass cert= and key=``)."""
    hint, n = _CLI_FLAGS.subn(r"\1=", message)
    return f"{hint} (arguments of alertmesh.Gateway)" if n else message


def from_rpc_error(err: grpc.RpcError) -> AlertmeshError:
    """Converts a failed gRPC call into the matching :class:`AlertmeshError` subclass."""
    code = err.code() if isinstance(err, grpc.Call) else grpc.StatusCode.UNKNOWN
    details = err.details() if isinstance(err, grpc.Call) else str(err)
    cls = _BY_CODE.get(code, AlertmeshError)
    return cls(code.name, python_hint(details or ""))


def is_transient(err: grpc.RpcError) -> bool:
    """Whether a failed stream is worth reopening: the gateway went away or restarted, or
    ended the stream because this program took nothing from it for a while.

    ``UNAVAILABLE`` covers refused connections and gateway shutdowns; a connection reset
    mid-stream surfaces as ``INTERNAL`` or ``UNKNOWN`` with an HTTP/2 or socket message.
    A gateway ends a stream whose client read nothing for ``limits.unread_drop_ms`` (to
    free its buffers) with ``RESOURCE_EXHAUSTED``: a notebook that paused between alerts
    resumes where it stopped when it reads again.
    """
    if not isinstance(err, grpc.Call):
        return False
    code = err.code()
    if code == grpc.StatusCode.UNAVAILABLE:
        return True
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        return "read nothing for" in (err.details() or "")
    if code in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN):
        details = (err.details() or "").lower()
        return any(
            s in details
            for s in ("rst_stream", "reset", "socket closed", "goaway", "connection", "stream removed", "eof")
        )
    return False
