"""Flattening alerts into a pandas DataFrame."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from alertmesh.decode import is_cutout_field
from alertmesh.models import Alert

if TYPE_CHECKING:
    import pandas

#: Nested records whose fields become columns ``<name>.<field>``.
FLATTENED = ("candidate", "diaSource", "diaObject", "ssSource")


def flatten(alert: Alert) -> dict[str, Any]:
    """One row: the envelope, the scalar top-level fields and the flattened records of :data:`FLATTENED`.

    Lists (e.g. ``prv_candidates``) and cutouts are left out.
    """
    row: dict[str, Any] = {
        "ref": alert.ref,
        "partition": alert.partition,
        "offset": alert.offset,
        "timestamp": alert.timestamp,
        "key": alert.key,
    }
    for name, value in (alert.record or {}).items():
        if is_cutout_field(name) or isinstance(value, list):
            continue
        if name in FLATTENED and isinstance(value, dict):
            for sub, v in value.items():
                if not isinstance(v, (dict, list)):
                    row[f"{name}.{sub}"] = v
        elif not isinstance(value, dict):
            row[name] = value
    return row


def alerts_to_frame(alerts: Iterable[Alert]) -> pandas.DataFrame:
    """Builds a DataFrame with one row per alert (see :func:`flatten`).

    Integer columns are ``int64``, or pandas' nullable ``Int64`` when some rows lack the
    value, so 64-bit ids never pass through a float. ``timestamp`` is ``NaT`` for a time
    pandas cannot hold (before 1677 or after 2262).
    """
    try:
        import pandas as pd
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("to_pandas needs pandas: pip install 'alertmesh[pandas]'") from e
    rows = [flatten(a) for a in alerts]
    columns: dict[str, Any] = {}
    for name in dict.fromkeys(k for row in rows for k in row):
        values = [row.get(name) for row in rows]
        present = [v for v in values if v is not None]
        is_int = bool(present) and all(isinstance(v, int) and not isinstance(v, bool) for v in present)
        if is_int:
            columns[name] = pd.array(values, dtype="int64" if len(present) == len(values) else "Int64")
        else:
            columns[name] = values
    frame = pd.DataFrame(columns, index=pd.RangeIndex(len(rows)))
    if "timestamp" in frame:
        # pandas holds 1677-2262 only; a producer's time outside that is NaT, not an error
        # that loses the whole frame.
        frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True, errors="coerce")
    return frame
