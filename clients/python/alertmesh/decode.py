"""Decoding alert content: the gateway's JSON output, or native payloads with fastavro."""

from __future__ import annotations

import bz2
import io
import json
import lzma
import re
import zlib
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
    floats. Otherwise (gateways that predate the option) they are the strings
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
        check_container(payload)
        try:
            record = next(iter(fastavro.reader(io.BytesIO(payload))), None)
        except Exception as e:  # fastavro raises several unrelated types
            raise DecodeError(f"not a valid Avro object container file: {e}") from e
        if record is None:
            raise DecodeError("the Avro object container file holds no record")
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


#: Most bytes one container block may decompress to (as the gateway's decoder allows).
MAX_BLOCK_BYTES = 64 << 20

_MAGIC = b"Obj\x01"


class _Bytes:
    """Avro's binary encoding, read from the front of a payload."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def long(self) -> int:
        shift, n = 0, 0
        while True:
            if self.pos >= len(self.data) or shift > 63:
                raise DecodeError("truncated or overlong Avro number")
            b = self.data[self.pos]
            self.pos += 1
            n |= (b & 0x7F) << shift
            if not b & 0x80:
                return (n >> 1) ^ -(n & 1)
            shift += 7

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise DecodeError("truncated Avro object container file")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out


_PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})


def _full_name(schema: dict[str, Any], namespace: str) -> tuple[str, str]:
    """(namespace its fields name types in, full name) of a named definition, as Avro
    (and fastavro) resolve them: a dotted name is full, else the ``namespace`` given,
    else the enclosing one."""
    name = schema["name"]
    if "." in name:
        return name.rsplit(".", 1)[0], name
    ns = schema.get("namespace", namespace)
    return (str(ns), f"{ns}.{name}") if ns else ("", name)


def _needs(schema: Any, namespace: str, names: dict[int, str], defined: set[str]) -> set[str] | None:
    """The named types that must all take no bytes for a value of ``schema`` to take none
    (an empty set for a null), or ``None`` when it always takes a byte."""
    while True:
        if isinstance(schema, str):
            if schema in _PRIMITIVES:
                return set() if schema == "null" else None
            if "." not in schema and namespace and f"{namespace}.{schema}" in defined:
                return {f"{namespace}.{schema}"}
            return {schema}  # an undefined name is never zero-byte: nothing defines it
        if not isinstance(schema, dict):
            return None  # a union's branch index takes a byte
        kind = schema.get("type")
        if kind in ("record", "error", "fixed"):
            return {names[id(schema)]}
        if isinstance(kind, (str, dict)) and kind not in ("array", "map", "enum"):
            schema = kind  # {"type": "null"} and the like
            continue
        return None  # a count, an enum's index, a union's branch index: a byte at least


def _arrays_of_nothing(schema: Any) -> bool:
    """Whether ``schema`` has an array or map whose items may take no bytes: a null, a
    fixed of size 0, or a named type that comes to those (a record whose fields do), named
    wherever in the schema it is defined."""
    # Every definition and every array's items or map's values, with their namespace,
    # where fastavro reads them.
    names: dict[int, str] = {}  # id of a defining dict -> its full name
    definitions: list[tuple[str, dict[str, Any], str]] = []
    contents: list[tuple[Any, str]] = []
    stack: list[tuple[Any, str]] = [(schema, "")]
    while stack:
        s, ns = stack.pop()
        if isinstance(s, list):
            stack.extend((b, ns) for b in s)
            continue
        if not isinstance(s, dict):
            continue
        kind = s.get("type")
        inner = ns
        if kind in ("record", "error", "enum", "fixed"):
            if isinstance(s.get("name"), str):
                inner, full = _full_name(s, ns)
            else:
                full = f"#{id(s)}"  # anonymous (not valid Avro), still judged
            names[id(s)] = full
            definitions.append((full, s, inner))
        if isinstance(kind, (list, dict)):
            stack.append((kind, ns))
        fields = s.get("fields")
        if kind in ("record", "error") and isinstance(fields, list):
            stack.extend((f.get("type"), inner) for f in fields if isinstance(f, dict))
        key = "items" if kind == "array" else "values" if kind == "map" else None
        if key is not None and key in s:
            contents.append((s[key], ns))
            stack.append((s[key], ns))
    defined = {full for full, _, _ in definitions}

    # Which named types take no bytes: the least fixed point, found in one pass over the
    # dependencies (a record that contains itself never ends, so takes bytes).
    waiting: list[tuple[str, int]] = []  # (name, dependencies not yet known zero-byte)
    dependents: dict[str, list[int]] = {}
    ready: list[str] = []
    for full, s, ns in definitions:
        kind = s.get("type")
        needs: set[str] | None
        if kind == "fixed":
            size = s.get("size")
            needs = None if isinstance(size, int) and size > 0 else set()
        elif kind in ("record", "error"):
            needs = set()
            fields = s.get("fields", [])
            for f in fields if isinstance(fields, list) else ():
                n = _needs(f.get("type"), ns, names, defined) if isinstance(f, dict) else None
                if n is None:
                    needs = None
                    break
                needs |= n
        else:
            needs = None
        if needs is None:
            continue
        for n in needs:
            dependents.setdefault(n, []).append(len(waiting))
        waiting.append((full, len(needs)))
        if not needs:
            ready.append(full)
    zero: set[str] = set()
    while ready:
        full = ready.pop()
        if full in zero:
            continue
        zero.add(full)
        for i in dependents.get(full, ()):
            name, left = waiting[i]
            waiting[i] = (name, left - 1)
            if left == 1:
                ready.append(name)

    for items, ns in contents:
        n = _needs(items, ns, names, defined)
        if n is not None and n <= zero:
            return True
    return False


def _inflated(codec: str, block: bytes) -> int:
    """The decompressed size of ``block``, at most ``MAX_BLOCK_BYTES + 1``."""
    limit = MAX_BLOCK_BYTES + 1
    try:
        if codec == "null":
            return len(block)
        if codec == "deflate":
            return len(zlib.decompressobj(-15).decompress(block, limit))
        if codec == "bzip2":
            return len(bz2.BZ2Decompressor().decompress(block, limit))
        if codec == "xz":
            return len(lzma.LZMADecompressor().decompress(block, limit))
        if codec == "snappy":
            # The block starts with its decompressed length, as a varint.
            n, shift = 0, 0
            for b in block[:5]:
                n |= (b & 0x7F) << shift
                if not b & 0x80:
                    return n
                shift += 7
            raise DecodeError("malformed snappy block")
    except (zlib.error, OSError, lzma.LZMAError, EOFError) as e:
        raise DecodeError(f"a compressed block does not decompress: {e}") from e
    raise DecodeError(
        f"cannot check blocks of codec {codec!r} on the client; use decode='gateway'"
    )


def check_container(payload: bytes) -> None:
    """Refuses an Avro container file that fastavro could not decode in bounded memory.

    The payload comes from Kafka through a gateway: anyone who may write to the topic
    chose it. fastavro inflates every block whole and believes every count, so a few bytes
    can ask it for gigabytes: a block that decompresses past ``MAX_BLOCK_BYTES``, a block
    announcing more records than it has bytes (records of an empty schema take none), or a
    schema with arrays or maps of items that take no bytes (nulls, empty records, fixed of
    size 0, named or inline) are refused here, as the gateway's own decoder refuses them;
    ``decode="gateway"`` decodes on the gateway.
    """
    r = _Bytes(payload)
    if r.take(4) != _MAGIC:
        raise DecodeError("not an Avro object container file (bad magic)")
    meta: dict[str, bytes] = {}
    while True:
        count = r.long()
        if count == 0:
            break
        if count < 0:
            r.long()
            count = -count
        for _ in range(count):
            key = r.take(r.long())
            meta[key.decode("utf-8", "replace")] = r.take(r.long())
    sync = r.take(16)
    codec = meta.get("avro.codec", b"null").decode("utf-8", "replace") or "null"
    try:
        schema = json.loads(meta.get("avro.schema", b""))
    except ValueError as e:
        raise DecodeError(f"the container's schema is not JSON: {e}") from e
    except RecursionError as e:
        raise DecodeError("the container's schema is nested too deeply to read") from e
    if _arrays_of_nothing(schema):
        raise DecodeError(
            "the writer schema has an array or map of values that take no bytes (such as "
            "null or an empty record), whose counts cannot be bounded on the client; use decode='gateway'"
        )
    while r.pos < len(payload):
        records = r.long()
        size = r.long()
        block = r.take(size)
        if r.take(16) != sync:
            raise DecodeError("sync marker mismatch after a block")
        inflated = _inflated(codec, block)
        if inflated > MAX_BLOCK_BYTES:
            raise DecodeError(f"a block decompresses past {MAX_BLOCK_BYTES} bytes")
        if records < 0 or records > max(inflated, 1):
            raise DecodeError(f"a block announces {records} records in {inflated} bytes")


def shown(text: object, limit: int = 256) -> str:
    """Text from a gateway as a log line shows it: quoted and escaped (no control
    characters reach a terminal), cut after ``limit`` characters."""
    text = "" if text is None else str(text)
    cut = text[:limit]
    return repr(cut) + (f"...({len(text)} chars)" if len(text) > limit else "")
