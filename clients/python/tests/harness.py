"""Real processes for the tests and the notebook: a Tansu broker and an alertmesh gateway.

Everything listens on free ports of 127.0.0.1 and is killed on :meth:`Stack.stop`. Binaries
come from ``$ALERTMESH_BIN`` (default ``<repo>/target/debug/alertmesh``) and ``$TANSU_BIN``
(default: the path printed by ``<repo>/scripts/devenv.sh``).

Run as a script it starts a stack loaded with the ZTF fixtures, with the publishable topic
:data:`DERIVED_TOPIC` (the demo's ``fink.lcfit``, its JSON Schema), writes the gateway URL
to ``--ready-file`` and serves until it receives SIGTERM or SIGINT (used by ``run-tests.sh``
to execute the notebooks).
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
FIXTURES = REPO / "alert" / "tests" / "fixtures" / "ztf" / "fink-ztf-public-2020-01-01"
TOPIC = "ztf.alerts"
GATEWAY_NAME = "lasair"
#: The publishable topic of the notebooks' stack, as in the demo's fink.toml.
DERIVED_TOPIC = "fink.lcfit"
DERIVED_SCHEMA = REPO / "deploy" / "demo" / "schemas" / "fink.lcfit.json"


def avro_long(n: int) -> bytes:
    """``n`` as Avro and Kafka write a long: zig-zag, then a base-128 varint."""
    z = ((n << 1) ^ (n >> 63)) & ((1 << 64) - 1)
    out = bytearray()
    while True:
        b, z = z & 0x7F, z >> 7
        if not z:
            out.append(b)
            return bytes(out)
        out.append(b | 0x80)


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def alertmesh_bin() -> str:
    """The gateway binary."""
    path = os.environ.get("ALERTMESH_BIN") or str(REPO / "target" / "debug" / "alertmesh")
    if not os.access(path, os.X_OK):
        raise RuntimeError(f"alertmesh binary not found at {path}: run `cargo build -p alertmesh-gateway` or set ALERTMESH_BIN")
    return path


def tansu_bin() -> str:
    """The Tansu binary."""
    path = os.environ.get("TANSU_BIN")
    if not path:
        path = subprocess.run(
            [str(REPO / "scripts" / "devenv.sh")], check=True, capture_output=True, text=True
        ).stdout.strip()
    if not os.access(path, os.X_OK):
        raise RuntimeError(f"tansu binary not found at {path}: set TANSU_BIN")
    return path


def wait_for(predicate: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    """Polls ``predicate`` until it holds, or raises after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")


#: A gateway's `[auth]` and `[tls]` sections for JWT + mutual TLS, with the files
#: `alertmesh creds init --dev-tls` writes (paths relative to the config's folder).
SECURE = """[auth]
keys_dir = "keys"
require = true
[tls]
cert = "keys/gateway.crt"
key = "keys/gateway.key"
client_ca = "keys/mesh-ca.crt"
"""


def kill_mid_run(
    args: list[str], progress: Callable[[], int], logs: Path, seed: int, attempts: int = 4
) -> int:
    """Starts ``args`` ``attempts`` times, each time killing it with SIGKILL once
    ``progress()`` has grown, after a random extra delay (0-0.3 s, seeded); returns how many
    runs were killed (a run may finish first). Output goes to ``logs/run-N.log``."""
    rng = random.Random(seed)
    kills = 0
    for attempt in range(attempts):
        before = progress()
        with open(logs / f"run-{attempt}.log", "w") as log:
            proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
            try:
                deadline = time.monotonic() + 60
                while proc.poll() is None and time.monotonic() < deadline:
                    if progress() > before:
                        break
                    time.sleep(0.05)
                time.sleep(rng.uniform(0, 0.3))
                if proc.poll() is None:
                    proc.send_signal(signal.SIGKILL)
                    kills += 1
            finally:
                proc.wait(30)
    return kills


def port_open(port: int) -> bool:
    """Whether something accepts connections on 127.0.0.1:``port``."""
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def http_ok(url: str) -> bool:
    """Whether ``url`` answers 200."""
    try:
        with urllib.request.urlopen(url, timeout=1) as r:
            return bool(r.status == 200)
    except (urllib.error.URLError, OSError):
        return False


class Proc:
    """A child process whose output goes to a log file, killed by :meth:`kill`."""

    def __init__(self, args: list[str], log: Path, env: dict[str, str] | None = None) -> None:
        self.args = args
        self.log = log
        with open(log, "ab") as out:
            self.popen = subprocess.Popen(
                args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=None if env is None else {**os.environ, **env},
            )

    def alive(self) -> bool:
        return self.popen.poll() is None

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Sends ``sig`` to this process (only) and reaps it."""
        if self.alive():
            self.popen.send_signal(sig)
            try:
                self.popen.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()

    def tail(self, n: int = 30) -> str:
        """The last ``n`` lines of its log, for failure messages."""
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


class Stack:
    """One Tansu broker and one gateway exposing :data:`TOPIC` (ZTF, avro-ocf)."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.kafka_port = free_port()
        self.grpc_port = free_port()
        self.http_port = free_port()
        self.tansu: Proc | None = None
        self.gateway: Proc | None = None
        self.config = workdir / "gateway.toml"
        #: TOML appended to the gateway's config (e.g. ``[[databases]]`` and ``[[queries]]``).
        self.extra_config = ""

    @property
    def url(self) -> str:
        """The gateway's gRPC URL."""
        return f"http://127.0.0.1:{self.grpc_port}"

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.kafka_port}"

    def start_kafka(self) -> None:
        """Starts Tansu with in-memory storage."""
        self.tansu = Proc(
            [
                tansu_bin(), "broker",
                "--listener-url", f"tcp://{self.bootstrap}",
                "--advertised-listener-url", f"tcp://{self.bootstrap}",
                "--storage-engine", "memory://tansu/",
                "--cluster-id", "pytest",
            ],
            self.workdir / "tansu.log",
            # Tansu logs by RUST_LOG, which may be set for the gateway; TANSU_LOG sets its own.
            env={"RUST_LOG": os.environ.get("TANSU_LOG", "warn")},
        )
        wait_for(lambda: port_open(self.kafka_port), "Tansu to listen")

    def replay(self, files: list[Path], topic: str = TOPIC, partitions: int = 3) -> None:
        """Produces each file as one record into ``topic`` (created with ``partitions``)."""
        subprocess.run(
            [alertmesh_bin(), "replay", "--bootstrap", self.bootstrap, "--topic", topic,
             "--partitions", str(partitions), *map(str, files)],
            check=True, capture_output=True, timeout=120,
        )

    def create_topic(self, name: str, partitions: int = 3) -> None:
        """Creates an empty topic (for publishing) with Tansu's own CLI."""
        subprocess.run(
            [tansu_bin(), "topic", "create", name, "--broker", f"tcp://{self.bootstrap}",
             "--partitions", str(partitions)],
            check=True, capture_output=True, timeout=60,
        )

    def start_gateway(self) -> None:
        """Starts (or restarts) the gateway on its fixed ports and waits until it is ready."""
        self.config.write_text(
            f"""[gateway]
name = "{GATEWAY_NAME}"
listen = "127.0.0.1:{self.grpc_port}"
http_listen = "127.0.0.1:{self.http_port}"
shutdown_grace_ms = 1000

[kafka]
bootstrap = "{self.bootstrap}"

[[topics]]
name = "{TOPIC}"
namespace = "ZTF"
format = "avro-ocf"
description = "ZTF public alerts of 2020-01-01"
"""
            + self.extra_config
        )
        self.gateway = Proc([alertmesh_bin(), "serve", "--config", str(self.config)], self.workdir / "gateway.log")
        try:
            wait_for(lambda: http_ok(f"http://127.0.0.1:{self.http_port}/readyz"), "the gateway to be ready")
        except TimeoutError as e:
            raise RuntimeError(f"{e}; gateway log:\n{self.gateway.tail()}") from None

    def stop_gateway(self, sig: int = signal.SIGKILL) -> None:
        """Kills the gateway process."""
        if self.gateway is not None:
            self.gateway.kill(sig)

    def stop(self) -> None:
        """Kills every process of the stack."""
        self.stop_gateway()
        if self.tansu is not None:
            self.tansu.kill()


def start_stack(workdir: Path, files: list[Path] | None = None) -> Stack:
    """A running stack with ``files`` (default: every ZTF fixture) in :data:`TOPIC`."""
    stack = Stack(workdir)
    try:
        stack.start_kafka()
        stack.replay(files if files is not None else fixture_files())
        stack.start_gateway()
    except BaseException:
        stack.stop()
        raise
    return stack


def fixture_files() -> list[Path]:
    """The 45 real ZTF alerts, sorted by name."""
    files = sorted(FIXTURES.glob("*.avro"))
    if not files:
        raise RuntimeError(f"no fixtures in {FIXTURES}")
    return files


def main() -> int:
    parser = argparse.ArgumentParser(description="Serve the ZTF fixtures from a local Tansu + gateway.")
    parser.add_argument("--ready-file", type=Path, required=True, help="written with the gateway URL once ready")
    ns = parser.parse_args()
    stop = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    with tempfile.TemporaryDirectory(prefix="alertmesh-stack-") as tmp:
        stack = Stack(Path(tmp))
        try:
            stack.start_kafka()
            stack.replay(fixture_files())
            stack.create_topic(DERIVED_TOPIC)
            stack.extra_config = f"""
[[topics]]
name = "{DERIVED_TOPIC}"
namespace = "ZTF"
format = "json"
publish = true
schema = "{DERIVED_SCHEMA}"
description = "light-curve fits published by notebooks/derived.ipynb"
"""
            stack.start_gateway()
            ns.ready_file.write_text(stack.url + "\n")
            while not stop and stack.gateway is not None and stack.gateway.alive():
                time.sleep(0.2)
        finally:
            stack.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
