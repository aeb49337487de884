"""Decoding alert content: the gateway's JSON output, or native payloads with fastavro."""

from __future__ import annotations

import io
import json
import re
from typing import Any

import fastavro

from alertmesh.errors import DecodeError

# A non-finite double as the gateway writes it: the string "NaN", "Infinity" or "-Infinity"
# in value position (after `:`, `,` or `[`, before `,`, `}` or `]`). An unescaped quote
# never occurs inside a JSON string, so this matches only whole string values, never keys.
_NONFINITE = re.compile(rb'(?<=[:,\[])(\s*)"(NaN|Infinity|-Infinity)"(?=\s*[,}\]])')


def from_gateway_json(data: bytes, *, bare_nonfinite: bool = False) -> dict[str, Any]:
    """Parses an alert decoded by the gateway (``OUTPUT_JSON``).

    ``json`` keeps integers as Python ints, so 64-bit ids stay exact. Non-finite doubles
    come as the tokens ``NaN``, ``Infinity`` and ``-Infinity`` when the alert says so
    (``bare_nonfinite``: asked for with ``json_bare_nonfinite``), which ``json`` reads as
    floats. Otherwise (query rows, gateways that predate the option) they are the strings
    ``"NaN"``, ``"Infinity"`` and ``"-Infinity"``, since JSON has no literal for them: those
    are turned into the tokens before parsing, and only when the document holds one (a
    genuine string field holding exactly one of those words is converted too; alert schemas
    have none). Even that check costs most of a parse on an alert with cutouts, hence the
    tokens.
    """
    if not bare_nonfinite and (b'NaN"' in data or b'Infinity"' in data):
        data = _NONFINITE.sub(rb"\1\2", data)
    record = json.loads(data)
    if not isinstance(record, dict):
        raise DecodeError(f"the gateway's JSON alert is a {type(record).__name__}, not an object")
    return record


def is_cutout_field(name: str) -> bool:
    """Whether a field holds an image cutout (the gateway's rule for ``omit_cutouts``)."""
    return name.startswith("cutout") or name == "stampData"


def omit_cutouts(value: Any) -> Any:
    """Sets every cutout field to ``None``, recursively, as the gateway does."""
    if isinstance(value, dict):
        return {k: None if is_cutout_field(k) else omit_cutouts(v) for k, v in value.items()}
    if isinstance(value, list):
        return [omit_cutouts(v) for v in value]
    return value


def _dig(record: dict[str, Any], path: str) -> Any:
    value: Any = record
    for part in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


#: Where the object id sits, per namespace (as in the gateway's namespace registry).
_ID_FIELDS = {"ZTF": "objectId", "LSST:dia": "diaObject.diaObjectId", "LSST:ss": "ssSource.ssObjectId"}


def mesh_key(namespace: str, record: dict[str, Any]) -> str | None:
    """The mesh key ``<namespace>:<id>`` of a decoded alert of a well-known namespace, else ``None``."""
    path = _ID_FIELDS.get(namespace)
    value = _dig(record, path) if path else None
    return f"{namespace}:{value}" if value is not None else None


def decode_payload(payload: bytes, fmt: str) -> dict[str, Any]:
    """Decodes a native payload on the client.

    Args:
        payload: the Kafka value.
        fmt: the alert's format: ``avro-ocf`` (decoded with fastavro, the writer schema is
            embedded) or ``json``.

    Raises:
        DecodeError: the payload is malformed, holds no record, or is ``avro-confluent``
            (its schema lives in a registry; subscribe with ``decode="gateway"``).
    """
    if fmt == "avro-ocf":
        try:
            records = list(fastavro.reader(io.BytesIO(payload)))
        except Exception as e:  # fastavro raises several unrelated types
            raise DecodeError(f"not a valid Avro object container file: {e}") from e
        if not records:
            raise DecodeError("the Avro object container file holds no record")
        record = records[0]
        if not isinstance(record, dict):
            raise DecodeError("the Avro record is not a record type")
        return record
    if fmt == "json":
        try:
            record = json.loads(payload)
        except ValueError as e:
            raise DecodeError(f"not valid JSON: {e}") from e
        if not isinstance(record, dict):
            raise DecodeError("the JSON alert is not an object")
        return record
    raise DecodeError(
        f"cannot decode format {fmt!r} on the client (Confluent-framed Avro needs the "
        "registry's schema); use decode='gateway'"
    )
