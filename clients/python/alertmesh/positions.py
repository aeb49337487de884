"""Conversion of Python start/end positions into the contract's ``Start`` and ``End``."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Literal, Union

from google.protobuf.timestamp_pb2 import Timestamp

from alertmesh._proto import alertmesh_pb2 as pb

#: Where a subscription starts: ``"earliest"``, ``"latest"``, a time (``datetime`` or RFC
#: 3339 text, the first alert per partition at or after it) or ``{partition: offset}``
#: (only those partitions are streamed).
StartSpec = Union[Literal["earliest", "latest"], datetime, str, Mapping[int, int]]
#: Where a subscription ends: ``None`` (live), ``"now"`` (what is stored when the gateway
#: reaches it) or a time (``datetime`` or RFC 3339 text).
EndSpec = Union[None, Literal["now"], datetime, str]


def parse_time(value: datetime | str) -> datetime:
    """Returns ``value`` as an aware UTC datetime; naive datetimes are taken as UTC.

    Raises:
        ValueError: ``value`` is text but not an RFC 3339 / ISO 8601 time.
    """
    if isinstance(value, str):
        text = value.strip()
        if text.endswith(("z", "Z")):
            text = text[:-1] + "+00:00"
        try:
            value = datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(
                f"invalid time {value!r}: expected an RFC 3339 time such as 2020-01-01T00:00:00Z"
            ) from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)


def timestamp(value: datetime | str) -> Timestamp:
    """Converts a time into a protobuf ``Timestamp`` (microsecond precision)."""
    dt = parse_time(value)
    delta = dt - datetime(1970, 1, 1, tzinfo=timezone.utc)
    seconds = delta.days * 86400 + delta.seconds
    return Timestamp(seconds=seconds, nanos=delta.microseconds * 1000)


def offsets_pb(offsets: Mapping[int, int]) -> list[pb.PartitionOffset]:
    """Converts ``{partition: offset}`` into wire ``PartitionOffset`` messages, sorted."""
    return [pb.PartitionOffset(partition=int(p), offset=int(o)) for p, o in sorted(offsets.items())]


def to_start(start: StartSpec) -> pb.Start:
    """Converts a :data:`StartSpec` into the wire ``Start``.

    Raises:
        ValueError: an unknown keyword or malformed time.
    """
    if isinstance(start, Mapping):
        return pb.Start(offsets=pb.PartitionOffsets(offsets=offsets_pb(start)))
    if start == "earliest":
        return pb.Start(earliest=pb.Earliest())
    if start == "latest":
        return pb.Start(latest=pb.Latest())
    if isinstance(start, (datetime, str)):
        try:
            return pb.Start(time=timestamp(start))
        except ValueError:
            raise ValueError(
                f"invalid start {start!r}: expected 'earliest', 'latest', a datetime, an RFC 3339 "
                "time or {partition: offset}"
            ) from None
    raise TypeError(f"invalid start {start!r}")


def to_end(end: EndSpec) -> pb.End | None:
    """Converts an :data:`EndSpec` into the wire ``End`` (``None``: a live stream)."""
    if end is None:
        return None
    if end == "now":
        return pb.End(now=pb.Now())
    if isinstance(end, (datetime, str)):
        try:
            return pb.End(time=timestamp(end))
        except ValueError:
            raise ValueError(
                f"invalid end {end!r}: expected None, 'now', a datetime or an RFC 3339 time"
            ) from None
    raise TypeError(f"invalid end {end!r}")
