"""Fixtures: a real Tansu broker and a real gateway loaded with 45 real ZTF alerts."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fastavro
import pytest

from alertmesh import Gateway
from harness import Stack, fixture_files, start_stack


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Tansu + gateway shared by the read-only tests; killed at the end of the session."""
    s = start_stack(tmp_path_factory.mktemp("stack"))
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture()
def gw(stack: Stack) -> Iterator[Gateway]:
    """A client of the shared gateway."""
    with Gateway(stack.url) as g:
        yield g


@pytest.fixture(scope="session")
def files() -> list[Path]:
    """The fixture alert files."""
    return fixture_files()


@pytest.fixture(scope="session")
def expected(files: list[Path]) -> dict[int, dict[str, Any]]:
    """The fixture alerts read directly with fastavro, by candid."""
    out: dict[int, dict[str, Any]] = {}
    for f in files:
        (record,) = fastavro.reader(io.BytesIO(f.read_bytes()))
        assert isinstance(record, dict)
        out[record["candid"]] = record
    return out
