"""A live iterator survives the gateway being killed and restarted, without gaps or repeats."""

from __future__ import annotations

import queue
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from alertmesh import Alert, Backoff, Gateway, Subscription
from harness import TOPIC, Stack, fixture_files


@pytest.fixture()
def own_stack(tmp_path: Path) -> Iterator[Stack]:
    """A Tansu of this test only; the test loads it and starts the gateway."""
    s = Stack(tmp_path)
    try:
        s.start_kafka()
        yield s
    finally:
        s.stop()


class Consumer:
    """Iterates a subscription on a thread, handing alerts over through a queue."""

    def __init__(self, sub: Subscription) -> None:
        self.sub = sub
        self.q: queue.Queue[Alert | BaseException] = queue.Queue()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            for a in self.sub:
                self.q.put(a)
        except BaseException as e:  # handed to the test thread
            self.q.put(e)

    def take(self, n: int, timeout: float = 60.0) -> list[Alert]:
        out: list[Alert] = []
        deadline = time.monotonic() + timeout
        while len(out) < n:
            item = self.q.get(timeout=max(0.01, deadline - time.monotonic()))
            if isinstance(item, BaseException):
                raise item
            out.append(item)
        return out

    def nothing_more(self, wait: float = 2.0) -> bool:
        try:
            self.q.get(timeout=wait)
        except queue.Empty:
            return True
        return False

    def stop(self) -> None:
        self.sub.close()
        self.thread.join(timeout=10)


def keys(alerts: list[Alert]) -> list[Any]:
    return sorted(a.record["candid"] for a in alerts)  # type: ignore[index]


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["kill", "term"])
def test_live_stream_survives_gateway_restart(
    own_stack: Stack, expected: dict[int, dict[str, Any]], sig: signal.Signals
) -> None:
    """Killed (connections reset) or stopped (streams end with UNAVAILABLE), then restarted."""
    files = fixture_files()
    own_stack.replay(files[:15])
    own_stack.start_gateway()
    with Gateway(own_stack.url) as gw:
        consumer = Consumer(gw.subscribe(TOPIC, start="earliest", backoff=Backoff(initial=0.1, maximum=1.0)))
        try:
            got = consumer.take(15)
            own_stack.stop_gateway(sig)
            own_stack.replay(files[15:30])  # produced while the gateway is down
            own_stack.start_gateway()
            own_stack.replay(files[30:])
            got += consumer.take(30)
            assert consumer.nothing_more()
        finally:
            consumer.stop()
        assert consumer.sub.reconnects >= 1
        assert keys(got) == sorted(expected)  # every alert, exactly once
        assert len({(a.partition, a.offset) for a in got}) == 45


def test_live_stream_from_latest_resumes_unseen_partitions(own_stack: Stack, expected: dict[int, dict[str, Any]]) -> None:
    """Partitions that delivered nothing before the restart resume where the stream began."""
    files = fixture_files()
    own_stack.replay(files[:5])
    own_stack.start_gateway()
    by_file = {f: r for f in files for r in expected.values() if f.stem == str(r["candid"])}
    wanted = [by_file[f] for f in files[10:40:3]]  # some produced while down, some after
    with Gateway(own_stack.url) as gw:
        sub = gw.subscribe(TOPIC, ids=[f"ZTF:{r['objectId']}" for r in wanted], backoff=Backoff(initial=0.1, maximum=1.0))
        consumer = Consumer(sub)
        try:
            time.sleep(1.5)  # the subscription joins the live tail
            own_stack.replay(files[5:10])  # none of these match
            time.sleep(0.5)
            own_stack.stop_gateway()
            own_stack.replay(files[10:25])
            own_stack.start_gateway()
            own_stack.replay(files[25:])
            got = consumer.take(len(wanted))
            assert consumer.nothing_more()
        finally:
            consumer.stop()
        assert sub.reconnects >= 1
        assert keys(got) == sorted(r["candid"] for r in wanted)


def test_latest_stream_resumes_quiet_partitions_at_their_start(own_stack: Stack) -> None:
    """A partition that delivered nothing before the gateway went away resumes where the
    stream began: records stamped before the stream opened (a mirror catching up keeps its
    source's timestamps) that reach it meanwhile still come, and nothing it held before."""
    from confluent_kafka import Producer

    files = fixture_files()
    own_stack.replay(files[:6])  # history in every partition
    own_stack.start_gateway()
    producer = Producer({"bootstrap.servers": own_stack.bootstrap})

    def produce(paths: list[Path], partition: int, timestamp_ms: int) -> None:
        for f in paths:
            producer.produce(TOPIC, value=f.read_bytes(), partition=partition, timestamp=timestamp_ms)
        assert producer.flush(30) == 0

    with Gateway(own_stack.url) as gw:
        sub = gw.subscribe(TOPIC, backoff=Backoff(initial=0.1, maximum=1.0))  # latest
        consumer = Consumer(sub)
        try:
            time.sleep(1.5)  # the subscription joins the live tail
            opened_ms = int(time.time() * 1000)
            produce(files[6:8], 0, opened_ms)
            got = consumer.take(2)
            own_stack.stop_gateway()
            produce(files[8:12], 1, opened_ms - 3_600_000)
            produce(files[12:14], 0, int(time.time() * 1000))
            own_stack.start_gateway()
            got += consumer.take(6)
            assert consumer.nothing_more()
        finally:
            consumer.stop()
        assert sub.reconnects >= 1
        assert keys(got) == sorted(int(f.stem) for f in files[6:14])
