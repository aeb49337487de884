"""Replicas of one gateway (same name and config, same Kafka) serve any subscription: a live
stream whose replica is killed with SIGKILL moves to the other, every offset exactly once."""

from __future__ import annotations

import re
import signal
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

import alertmesh
from alertmesh import Alert, Backoff
from harness import TOPIC, Stack, fixture_files
from test_reconnect import Consumer


@pytest.fixture()
def replicas(tmp_path: Path) -> Iterator[tuple[Stack, Stack]]:
    """One Tansu and two gateway replicas over it (the second shares the first's Kafka)."""
    a = Stack(tmp_path)
    (tmp_path / "b").mkdir()
    b = Stack(tmp_path / "b")
    try:
        a.start_kafka()
        b.kafka_port = a.kafka_port
        yield a, b
    finally:
        b.stop_gateway()
        a.stop()


def open_subscriptions(stack: Stack) -> float:
    """The replica's ``alertmesh_open_subscriptions`` gauge; 0 when it is down."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{stack.http_port}/metrics", timeout=2) as r:
            text = r.read().decode()
    except OSError:
        return 0.0
    m = re.search(r"^alertmesh_open_subscriptions (\S+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


def serving(pair: tuple[Stack, Stack], timeout: float = 20.0) -> int:
    """Which replica holds the one open subscription."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        opened = [open_subscriptions(s) for s in pair]
        if sorted(opened) == [0.0, 1.0]:
            return opened.index(1.0)
        time.sleep(0.05)
    raise TimeoutError(f"no single replica serving the stream: {opened}")


def positions(alerts: list[Alert]) -> list[tuple[int, int]]:
    return [(a.partition, a.offset) for a in alerts]


def test_live_stream_moves_to_another_replica_when_its_replica_is_killed(replicas: tuple[Stack, Stack]) -> None:
    a, b = replicas
    files = fixture_files()
    a.replay(files[:15])
    a.start_gateway()
    b.start_gateway()
    with alertmesh.connect([a.url, b.url]) as gw:
        consumer = Consumer(
            gw.subscribe(TOPIC, start="earliest", max_batch_alerts=4, backoff=Backoff(initial=0.1, maximum=1.0))
        )
        try:
            got = consumer.take(10)
            # Kill -9 the serving replica mid-stream, with alerts produced around the kill,
            # then bring it back as the spare and do it again on the other one.
            killed = serving((a, b))
            (a, b)[killed].stop_gateway(signal.SIGKILL)
            a.replay(files[15:25])
            got += consumer.take(15)
            now = serving((a, b))
            assert now != killed
            (a, b)[killed].start_gateway()
            (a, b)[now].stop_gateway(signal.SIGKILL)
            a.replay(files[25:])
            got += consumer.take(20)
            assert serving((a, b)) == killed
            assert consumer.nothing_more()
        finally:
            consumer.stop()
        assert consumer.sub.reconnects >= 2
    # Every offset exactly once, in order within each partition.
    seen = positions(got)
    assert len(seen) == 45 and len(set(seen)) == 45
    for p in {p for p, _ in seen}:
        offsets = [o for q, o in seen if q == p]
        assert offsets == sorted(offsets) and offsets == list(range(offsets[0], offsets[0] + len(offsets)))


def test_comma_list_and_unary_calls_use_the_replica_that_answers(replicas: tuple[Stack, Stack]) -> None:
    a, b = replicas
    a.replay(fixture_files()[:3])
    b.start_gateway()  # the first URL has no gateway
    gw = alertmesh.Gateway(f"{a.url},{b.url}", timeout=5)
    try:
        assert gw.urls == [a.url, b.url]
        assert [t.name for t in gw.topics()] == [TOPIC]
        assert gw.commit_cursor("c", TOPIC, {0: 1}) == {0: 1}
    finally:
        gw.close()
