"""A filter runner: consume a topic with a durable cursor, publish what a function
derives from each alert, and commit the cursor only once the publish is acknowledged.

Publish ids are derived from the activity's name and the source alert's ref, so a runner
killed at any moment and started again re-derives the alerts after its last commit under
the same ids: the gateway writes none of them twice, and none is lost.
"""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from alertmesh.client import Gateway
from alertmesh.models import Alert
from alertmesh.positions import EndSpec, StartSpec
from alertmesh.publish import ActivityLike, Source, activity_of
from alertmesh.stream import KEPT


@dataclass
class Derived:
    """A derived record with its own key, sources or inputs, for a filter function to
    return instead of a bare record (whose key and source are the alert's)."""

    record: Any
    key: str | None = None
    derived_from: list[Source] | None = None
    used: list[str] = field(default_factory=list)


@dataclass
class RunStats:
    """What one :func:`run_filter` run did.

    Attributes:
        alerts: how many alerts were read.
        published: how many records were published.
        commits: how many times the cursor was committed.
        refs: the refs of the latest records published (at most 1000, oldest first): a
            live run may publish without end.
    """

    alerts: int = 0
    published: int = 0
    commits: int = 0
    refs: deque[str] = field(default_factory=lambda: deque(maxlen=KEPT))


def _gateway(g: Gateway | str) -> Gateway:
    return g if isinstance(g, Gateway) else Gateway(g)


def _outputs(out: Any) -> list[Any]:
    if out is None:
        return []
    if isinstance(out, (dict, bytes, bytearray, Derived)):
        return [out]
    if isinstance(out, Iterable) and not isinstance(out, str):
        return list(out)
    return [out]


def publish_id(activity_name: str, source_ref: str, index: int) -> str:
    """The id of the ``index``-th record derived from ``source_ref`` by an activity."""
    pid = f"{activity_name}/{source_ref}#{index}"
    if len(pid) <= 200:
        return pid
    return "sha256:" + hashlib.sha256(pid.encode()).hexdigest()


def run_filter(
    fn: Callable[[Alert], Any],
    source: tuple[Gateway | str, str],
    sink: tuple[Gateway | str, str],
    cursor: str,
    activity: ActivityLike,
    *,
    where: str | None = None,
    cone: tuple[float, float, float] | None = None,
    ids: Iterable[str] | None = None,
    start: StartSpec = "earliest",
    end: EndSpec = None,
    limit: int | None = None,
    used: Iterable[str] = (),
    batch: int = 1,
) -> RunStats:
    """Runs ``fn`` over ``source = (gateway, topic)`` and publishes what it returns to
    ``sink = (gateway, topic)``.

    ``fn(alert)`` returns nothing, a record (a dict, sent as JSON, or payload bytes), a
    :class:`Derived`, or a list of these; each is published with ``derived_from`` the
    alert (unless a :class:`Derived` says otherwise), its key the alert's, and the
    ``activity``. The filters ``where``, ``cone`` and ``ids`` run in the source gateway.

    Progress is the durable ``cursor`` on the source gateway: partitions it has a position
    for resume there, others start at ``start``. The cursor is committed after every
    ``batch`` alerts, once what they produced is published and acknowledged (``batch=1``,
    the default, publishes each alert's records as soon as they are derived; larger
    batches publish fewer, bigger requests). ``end="now"`` stops at the end of what is
    stored, ``limit`` after that many alerts; otherwise the run is live.
    """
    if batch < 1:
        raise ValueError("batch must be at least 1")
    act = activity_of(activity)
    src, src_topic = _gateway(source[0]), source[1]
    dst, dst_topic = _gateway(sink[0]), sink[1]
    used = list(used)
    stats = RunStats()
    pending: list[dict[str, Any]] = []
    since_commit = 0
    sub = src.subscribe(src_topic, start=start, end=end, where=where, cone=cone, ids=ids, limit=limit, cursor=cursor)

    def flush() -> None:
        nonlocal pending, since_commit
        if pending:
            refs = dst.publish_many(dst_topic, pending, activity=act)
            stats.refs.extend(refs)
            stats.published += len(refs)
            pending = []
        if since_commit and sub.positions:
            # Only now: what the committed alerts derived is in Kafka.
            src.commit_cursor(cursor, src_topic, dict(sub.positions))
            stats.commits += 1
        since_commit = 0

    with sub:
        for alert in sub:
            stats.alerts += 1
            for i, out in enumerate(_outputs(fn(alert))):
                d = out if isinstance(out, Derived) else Derived(out)
                pending.append(
                    {
                        "record": d.record,
                        "key": d.key or alert.key,
                        "derived_from": d.derived_from if d.derived_from is not None else [alert],
                        "used": [*used, *d.used],
                        "publish_id": publish_id(act.name, alert.ref, i),
                    }
                )
            since_commit += 1
            if since_commit >= batch:
                flush()
        flush()
    return stats
