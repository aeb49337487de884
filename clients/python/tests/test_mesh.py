"""Mesh calls against real gateways: a second gateway, `fink`, mirrors the shared gateway's
topic over gRPC and names it as a peer; one more mirror points at an address where nothing
listens."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from alertmesh import Gateway, MirrorStatus
from harness import GATEWAY_NAME, TOPIC, Proc, Stack, alertmesh_bin, free_port, http_ok, wait_for

MIRRORED = "ztf.mirrored"


@pytest.fixture(scope="module")
def fink(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    work = tmp_path_factory.mktemp("fink")
    grpc, http, dead = free_port(), free_port(), free_port()
    config = work / "fink.toml"
    config.write_text(
        f"""[gateway]
name = "fink"
listen = "127.0.0.1:{grpc}"
http_listen = "127.0.0.1:{http}"
shutdown_grace_ms = 1000
[kafka]
bootstrap = "{stack.bootstrap}"
[[topics]]
name = "{MIRRORED}"
namespace = "ZTF"
format = "avro-ocf"
[[mirrors]]
name = "from-lasair"
destination = "{MIRRORED}"
start = "earliest"
[mirrors.source]
gateway = "{stack.url}"
topic = "{TOPIC}"
[[mirrors]]
name = "from-nowhere"
destination = "ztf.nowhere"
start = "earliest"
[mirrors.source]
gateway = "http://127.0.0.1:{dead}"
topic = "{TOPIC}"
"""
    )
    proc = Proc([alertmesh_bin(), "serve", "--config", str(config)], work / "gateway.log")
    try:
        wait_for(lambda: http_ok(f"http://127.0.0.1:{http}/readyz"), "the fink gateway")
        yield {"url": f"http://127.0.0.1:{grpc}", "dead": f"http://127.0.0.1:{dead}"}
    finally:
        proc.kill()


def _mirrors(gw: Gateway) -> dict[str, MirrorStatus]:
    return {m.name: m for m in gw.mirror_status()}


def test_mirror_status_reports_copies_positions_and_errors(fink: dict[str, str], stack: Stack) -> None:
    with Gateway(fink["url"]) as gw:
        wait_for(lambda: _mirrors(gw)["from-lasair"].copied == 45, "the mirror to copy 45 alerts")
        ok = _mirrors(gw)["from-lasair"]
        assert ok.state == "running", ok
        assert ok.source == f"am://{GATEWAY_NAME}/{TOPIC}" and ok.destination == MIRRORED
        assert sorted(ok.positions) == [0, 1, 2] and sum(ok.positions.values()) == 45
        assert ok.error == "" and ok.dead_lettered == 0 and ok.cycles_dropped == 0
        wait_for(lambda: _mirrors(gw)["from-nowhere"].error != "", "the dead mirror to report its error")
        dead = _mirrors(gw)["from-nowhere"]
        assert dead.state != "running" and dead.copied == 0, dead
        # What was copied is served: the same alerts as the source.
        assert len(list(gw.subscribe(MIRRORED, start="earliest", end="now", omit_cutouts=True))) == 45


def test_directory_walks_mirror_sources_and_lists_unreachable_peers(fink: dict[str, str], stack: Stack) -> None:
    with Gateway(fink["url"]) as gw:
        d = gw.directory()
    assert d.names() == ["fink", GATEWAY_NAME]
    assert [url for url, _ in d.gateways] == [fink["url"], stack.url]
    (fink_info, lasair_info) = list(d)
    assert [t.name for t in fink_info.topics] == [MIRRORED]
    assert [t.name for t in lasair_info.topics] == [TOPIC]
    assert [url for url, _ in d.unreachable] == [fink["dead"]]
    # The walk starts from the shared gateway too: it has no peers.
    with Gateway(stack.url) as gw:
        assert gw.directory().names() == [GATEWAY_NAME]
    with Gateway(fink["url"]) as gw:
        assert gw.directory(max_gateways=1).names() == ["fink"]
