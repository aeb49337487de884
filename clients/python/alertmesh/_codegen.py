"""Generates the gRPC stubs in ``alertmesh/_proto/`` from the alertmesh.v1 contract.

The stubs are checked in, so users need neither ``protoc`` nor ``grpcio-tools``. After the
contract changes, regenerate them (``grpcio-tools`` must be installed, at the version
pinned in ``pyproject.toml``'s ``test`` extra)::

    python -m alertmesh._codegen            # from clients/python, writes alertmesh/_proto/

The test suite regenerates into a temporary directory and fails when the checked-in files
differ.

The contract is compiled from a staged copy at ``alertmesh/_proto/alertmesh.proto`` so the
generated service module imports its messages as ``alertmesh._proto.alertmesh_pb2``,
inside this package, instead of as a top-level ``alertmesh.v1`` module.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
#: The contract, relative to a source checkout: ``../../proto/proto/alertmesh/v1/alertmesh.proto``
#: from ``clients/python``.
DEFAULT_PROTO = PACKAGE_DIR.parents[2] / "proto" / "proto" / "alertmesh" / "v1" / "alertmesh.proto"
#: The files :func:`generate` writes.
GENERATED = ("alertmesh_pb2.py", "alertmesh_pb2.pyi", "alertmesh_pb2_grpc.py")


def generate(proto: Path, out_dir: Path) -> list[Path]:
    """Compiles ``proto`` into ``out_dir`` and returns the written files (see :data:`GENERATED`)."""
    from grpc_tools import protoc  # a development dependency only
    import grpc_tools

    includes = Path(grpc_tools.__file__).resolve().parent / "_proto"
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        staged_rel = Path("alertmesh") / "_proto" / "alertmesh.proto"
        staged = Path(tmp) / "src" / staged_rel
        staged.parent.mkdir(parents=True)
        shutil.copyfile(proto, staged)
        build = Path(tmp) / "out"
        build.mkdir()
        args = [
            "grpc_tools.protoc",
            f"-I{Path(tmp) / 'src'}",
            f"-I{includes}",
            f"--python_out={build}",
            f"--pyi_out={build}",
            f"--grpc_python_out={build}",
            str(staged_rel),
        ]
        if protoc.main(args) != 0:
            raise RuntimeError(f"protoc failed on {proto}")
        written = []
        for name in GENERATED:
            target = out_dir / name
            shutil.copyfile(build / "alertmesh" / "_proto" / name, target)
            written.append(target)
    return written


def main(argv: list[str] | None = None) -> int:
    """Command line entry point: regenerate the checked-in stubs."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--proto", type=Path, default=DEFAULT_PROTO, help="the alertmesh.proto to compile")
    parser.add_argument("--out", type=Path, default=PACKAGE_DIR / "_proto", help="output directory")
    ns = parser.parse_args(argv)
    for path in generate(ns.proto, ns.out):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
