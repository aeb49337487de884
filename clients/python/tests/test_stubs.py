"""The checked-in gRPC stubs match the contract in proto/."""

from __future__ import annotations

from pathlib import Path

from alertmesh import _codegen

PACKAGE = Path(_codegen.__file__).resolve().parent
PROTO = Path(__file__).resolve().parents[1] / ".." / ".." / "proto" / "proto" / "alertmesh" / "v1" / "alertmesh.proto"


def test_checked_in_stubs_are_up_to_date(tmp_path: Path) -> None:
    assert PROTO.is_file(), f"contract not found at {PROTO}"
    _codegen.generate(PROTO.resolve(), tmp_path)
    stale = [
        name
        for name in _codegen.GENERATED
        if (tmp_path / name).read_bytes() != (PACKAGE / "_proto" / name).read_bytes()
    ]
    assert not stale, (
        f"checked-in stubs {stale} are stale against {PROTO.resolve()}; regenerate them with "
        "`python -m alertmesh._codegen` in clients/python"
    )
