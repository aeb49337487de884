"""Publishing derived records: the request a :meth:`Gateway.publish` call sends.

A derived record says what it came from (``derived_from``: alert refs on any gateway),
what produced it (:class:`Activity`), which non-alert inputs it used (``used``, e.g.
``catalog:gaia-dr3/4295806720``) and carries a publish id: the gateway writes each publish
id of a principal on a topic once, so retrying a publish never duplicates a record.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Union

from alertmesh._proto import alertmesh_pb2 as pb
from alertmesh.models import Alert


@dataclass(frozen=True)
class Activity:
    """What produced a derived record: an algorithm, its version and its parameters."""

    name: str
    version: str = ""
    parameters: Mapping[str, Any] = field(default_factory=dict)


#: An activity as a dict ``{"name": .., "version": .., "parameters": {..}}`` or an
#: :class:`Activity`.
ActivityLike = Union[Activity, Mapping[str, Any]]
#: An alert read from a gateway, or its ref ``am://<gateway>/<topic>/<partition>/<offset>``.
Source = Union[Alert, str]


def activity_of(a: ActivityLike) -> Activity:
    """An :class:`Activity` from either form."""
    if isinstance(a, Activity):
        return a
    if isinstance(a, Mapping):
        unknown = set(a) - {"name", "version", "parameters"}
        if unknown or "name" not in a:
            raise ValueError(
                f"activity must have a name, and optionally version and parameters; got keys {sorted(a)}"
            )
        return Activity(str(a["name"]), str(a.get("version", "")), dict(a.get("parameters") or {}))
    raise TypeError(f"activity must be an Activity or a dict, not {type(a).__name__}")


def refs_of(derived_from: Source | Iterable[Source]) -> list[str]:
    """The refs of alerts or ref strings (one, or several)."""
    items: Iterable[Source] = [derived_from] if isinstance(derived_from, (Alert, str)) else derived_from
    out = []
    for d in items:
        if isinstance(d, Alert):
            out.append(d.ref)
        elif isinstance(d, str):
            out.append(d)
        else:
            raise TypeError(f"derived_from takes alerts or ref strings, not {type(d).__name__}")
    return out


def payload_of(record: Any) -> bytes:
    """A record as payload bytes: bytes unchanged, anything else as compact JSON."""
    if isinstance(record, (bytes, bytearray, memoryview)):
        return bytes(record)
    return json.dumps(record, separators=(",", ":"), allow_nan=False).encode()


def content_id(topic: str, key: str, payload: bytes, refs: list[str], activity: Activity, used: list[str]) -> str:
    """A publish id derived from everything published: the same call publishes once."""
    h = hashlib.sha256()
    for part in (topic, key, *refs, "\0", activity.name, activity.version,
                 json.dumps(dict(activity.parameters), sort_keys=True), "\0", *used):
        h.update(part.encode())
        h.update(b"\0")
    h.update(payload)
    return "sha256:" + h.hexdigest()[:40]


def record_pb(
    topic: str,
    record: Any,
    *,
    key: str | None,
    derived_from: Source | Iterable[Source],
    activity: ActivityLike,
    used: Iterable[str] = (),
    publish_id: str | None = None,
) -> pb.PublishRecord:
    """One record of a ``PublishRequest``; ``key`` defaults to the first source alert's."""
    sources = [derived_from] if isinstance(derived_from, (Alert, str)) else list(derived_from)
    refs = refs_of(sources)
    if key is None:
        key = next((s.key for s in sources if isinstance(s, Alert) and s.key), None)
        if key is None:
            raise ValueError("key is needed (a mesh key NS:id) when derived_from holds no alert with a key")
    act = activity_of(activity)
    used = [str(u) for u in used]
    payload = payload_of(record)
    pid = publish_id if publish_id is not None else content_id(topic, key, payload, refs, act, used)
    return pb.PublishRecord(
        key=key,
        payload=payload,
        derived_from=refs,
        activity=pb.Activity(
            name=act.name,
            version=act.version,
            parameters_json=json.dumps(dict(act.parameters), separators=(",", ":"), allow_nan=False),
        ),
        used=used,
        publish_id=pid,
    )


#: A batch stays under the gateway's 1 MiB request limit.
MAX_BATCH_BYTES = 900_000
MAX_BATCH_RECORDS = 500


def batches(records: list[pb.PublishRecord]) -> Iterable[list[pb.PublishRecord]]:
    """``records`` split into requests the gateway accepts."""
    batch: list[pb.PublishRecord] = []
    size = 0
    for r in records:
        n = r.ByteSize() + 16
        if batch and (size + n > MAX_BATCH_BYTES or len(batch) >= MAX_BATCH_RECORDS):
            yield batch
            batch, size = [], 0
        batch.append(r)
        size += n
    if batch:
        yield batch
