"""The filter runner across three gateways with JWT + mutual TLS, killed -9 mid-run.

``lasair`` serves the survey topic; ``fink`` mirrors it from lasair with a peer token and
certificate; ``ampel`` mirrors fink's copy and has a publishable topic. The runner reads
fink's copy with a durable cursor on fink and publishes on ampel; it is killed -9 at random
moments and started again. Every source alert must end with exactly one derived record, and
a derived record's provenance must walk back across all three gateways to the survey alert
(and name fink's record unresolved, with the reason, once fink is gone)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from alertmesh import Gateway
from harness import SECURE, TOPIC, Proc, Stack, alertmesh_bin, free_port, kill_mid_run, wait_for

AT_FINK = "lasair.mesh9"
AT_AMPEL = "fink.lasair.mesh9"
CLASS = "ampel.mesh9class"
SCHEMA = {
    "type": "object",
    "required": ["class", "score"],
    "properties": {"class": {"type": "string"}, "score": {"type": "number"}},
}


class Node:
    """One secured gateway of the mesh."""

    def __init__(self, name: str, work: Path, bootstrap: str, body: str) -> None:
        self.name, self.work = name, work
        self.grpc, self.http = free_port(), free_port()
        self.config = work / f"{name}.toml"
        self.config.write_text(
            f"""[gateway]
name = "{name}"
listen = "127.0.0.1:{self.grpc}"
http_listen = "127.0.0.1:{self.http}"
shutdown_grace_ms = 1000
[kafka]
bootstrap = "{bootstrap}"
"""
            + SECURE
            + body
        )
        self.proc: Proc | None = None

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.grpc}"

    def creds(self, *args: str) -> str:
        out = subprocess.run(
            [alertmesh_bin(), "creds", args[0], "--config", str(self.config), *args[1:]],
            check=True, capture_output=True, text=True, timeout=60,
        )
        return out.stdout.strip()

    def token(self, sub: str, *scopes: str, aud: str | None = None) -> str:
        args = ["issue", "--sub", sub, "--ttl", "1h"]
        for s in scopes:
            args += ["--scope", s]
        if aud:
            args += ["--aud", aud]
        return self.creds(*args)

    def start(self, tls: dict[str, str]) -> None:
        self.proc = Proc([alertmesh_bin(), "serve", "--config", str(self.config)], self.work / f"{self.name}.log")

        def ready() -> bool:
            try:
                Gateway(self.url, **tls).describe()
                return True
            except Exception:  # noqa: BLE001 - not up yet
                return False

        try:
            wait_for(ready, f"the {self.name} gateway", timeout=60)
        except TimeoutError as e:
            raise RuntimeError(f"{e}; log:\n{self.proc.tail()}") from None


def _mirror(name: str, dest: str, source: Node, topic: str, token: Path, keys: Path) -> str:
    return f"""
[[topics]]
name = "{dest}"
namespace = "ZTF"
format = "avro-ocf"
[[mirrors]]
name = "{name}"
destination = "{dest}"
start = "earliest"
[mirrors.source]
gateway = "{source.url}"
topic = "{topic}"
token_file = "{token}"
ca = "{keys / 'mesh-ca.crt'}"
cert = "{keys / 'gateway.crt'}"
key = "{keys / 'gateway.key'}"
"""


@pytest.fixture(scope="module")
def mesh(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp("mesh9")
    work = {n: root / n for n in ("lasair", "fink", "ampel")}
    for d in work.values():
        d.mkdir()
    lasair = Node("lasair", work["lasair"], stack.bootstrap,
                  f'[[topics]]\nname = "{TOPIC}"\nnamespace = "ZTF"\nformat = "avro-ocf"\n')
    lasair.creds("init", "--dev-tls")
    ca_dir = work["lasair"] / "keys" / "mesh-ca"

    def certify(node: Node, holder: str) -> None:
        """A certificate from lasair's mesh CA for ``holder``, as ``node``'s own."""
        lasair.creds("cert", "--name", holder)
        keys = node.work / "keys"
        keys.mkdir(exist_ok=True)
        shutil.copy(ca_dir / f"{holder}.pem", keys / "gateway.crt")
        shutil.copy(ca_dir / f"{holder}.key", keys / "gateway.key")
        shutil.copy(work["lasair"] / "keys" / "mesh-ca.crt", keys / "mesh-ca.crt")

    # fink: mirrors lasair's topic with a token lasair issued for it.
    (work["fink"] / "lasair.jwt").write_text(
        lasair.token("fink", f"subscribe:{TOPIC}", "fetch:*", aud="lasair"))
    fink_body = _mirror("from-lasair", AT_FINK, lasair, TOPIC, work["fink"] / "lasair.jwt",
                        work["fink"] / "keys")
    fink = Node("fink", work["fink"], stack.bootstrap, fink_body)
    certify(fink, "fink")
    fink.creds("init")
    # ampel: mirrors fink's copy, and takes derived records on a publishable topic.
    (work["ampel"] / "fink.jwt").write_text(fink.token("ampel", "subscribe:lasair.*", "fetch:*", aud="fink"))
    (work["ampel"] / "class.json").write_text(json.dumps(SCHEMA))
    ampel_body = _mirror("from-fink", AT_AMPEL, fink, AT_FINK, work["ampel"] / "fink.jwt",
                         work["ampel"] / "keys") + f"""
[[topics]]
name = "{CLASS}"
namespace = "ZTF"
format = "json"
publish = true
schema = "class.json"
"""
    ampel = Node("ampel", work["ampel"], stack.bootstrap, ampel_body)
    certify(ampel, "ampel")
    ampel.creds("init")
    stack.create_topic(CLASS, partitions=2)
    lasair.creds("cert", "--name", "alice")
    tls = {"ca": str(work["lasair"] / "keys" / "mesh-ca.crt"),
           "cert": str(ca_dir / "alice.pem"), "key": str(ca_dir / "alice.key")}
    try:
        for node in (lasair, fink, ampel):
            node.start(tls)
        tokens = {"fink": fink.token("alice", "subscribe:*", "fetch:*"),
                  "ampel": ampel.token("alice", "publish:ampel.*", "subscribe:*", "fetch:*")}
        yield {"lasair": lasair, "fink": fink, "ampel": ampel, "tokens": tokens, "tls": tls,
               "at_fink": Gateway(fink.url, token=tokens["fink"], **tls),
               "at_ampel": Gateway(ampel.url, token=tokens["ampel"], **tls)}
    finally:
        for node in (ampel, fink, lasair):
            if node.proc is not None:
                node.proc.kill()


_RUNNER = """
import json, sys, time
from alertmesh import Activity, Gateway, run_filter
spec = json.loads(sys.argv[1])
tls = spec["tls"]
src = Gateway(spec["source"], token=spec["source_token"], **tls)
sink = Gateway(spec["sink"], token=spec["sink_token"], **tls)

def fn(alert):
    time.sleep(0.03)  # long enough that kills land mid-run
    mag = alert.record["candidate"]["magpsf"]
    return {"class": "bright" if mag < 18 else "faint", "score": mag}

stats = run_filter(fn, (src, spec["topic"]), (sink, spec["class"]), cursor="mesh9",
                   activity=Activity("mesh9", "1.0", {"cut": 18.0}), end="now", batch=4)
print(json.dumps({"alerts": stats.alerts}), flush=True)
"""


def _headers(alert: Any) -> dict[str, str]:
    return {k: (v or b"").decode() for k, v in alert.headers}


def _derived(gw: Gateway) -> list[Any]:
    return [a for a in gw.subscribe(CLASS, start="earliest", end="now")
            if json.loads(_headers(a).get("am-activity", "{}")).get("name") == "mesh9"]


def test_runner_killed_9_across_three_secured_gateways_neither_loses_nor_duplicates(
    gw: Gateway, mesh: dict[str, Any], tmp_path: Path
) -> None:
    at_fink, at_ampel = mesh["at_fink"], mesh["at_ampel"]
    total = sum(1 for _ in gw.subscribe(TOPIC, start="earliest", end="now", omit_cutouts=True))
    # The runner starts once fink holds every alert: its `end="now"` is fink's end.
    wait_for(lambda: sum(1 for _ in at_fink.subscribe(AT_FINK, start="earliest", end="now", omit_cutouts=True))
             == total, "fink's copy of every alert", timeout=60)
    spec = json.dumps({
        "source": mesh["fink"].url, "source_token": mesh["tokens"]["fink"], "topic": AT_FINK,
        "sink": mesh["ampel"].url, "sink_token": mesh["tokens"]["ampel"], "class": CLASS, "tls": mesh["tls"],
    })
    kills = kill_mid_run([sys.executable, "-c", _RUNNER, spec], lambda: len(_derived(at_ampel)), tmp_path, 9)
    assert kills >= 1, "every runner finished before it could be killed"
    done = subprocess.run([sys.executable, "-c", _RUNNER, spec], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr

    derived = _derived(at_ampel)
    sources = [_headers(a)["am-derived-from"] for a in derived]
    assert all(s.startswith(f"am://fink/{AT_FINK}/") for s in sources), sources[:3]
    assert len(set(sources)) == total, f"{len(set(sources))} of {total} source alerts have a derived record"
    assert len(derived) == total, f"{len(derived)} derived records for {total} source alerts"
    assert len({_headers(a)["am-publish-id"] for a in derived}) == total

    # Provenance of one derived record: ampel -> fink's copy -> lasair's alert.
    ref = derived[0].ref
    g = at_ampel.provenance(ref)
    assert g.root == ref
    copy = g.entity(sources[0])
    assert copy is not None and copy.resolved, g.unresolved()
    assert copy.origin.startswith(f"am://lasair/{TOPIC}/"), copy
    origin = g.entity(copy.origin)
    assert origin is not None and origin.resolved, g.unresolved()
    assert {e.kind for e in g.edges} >= {"derived_from", "generated_by"}
    assert any(a.name == "mesh9" and a.version == "1.0" for a in g.activities)

    # The real graph exports: PROV-JSON read by the W3C `prov` package, and networkx.
    prov = pytest.importorskip("prov")
    from prov.model import ProvEntity

    path = tmp_path / "prov.json"
    path.write_text(json.dumps(g.to_prov_json()))
    read = prov.read(str(path), format="json")
    uris = {e.identifier.uri for e in read.get_records(ProvEntity)}
    assert {ref, sources[0], copy.origin} <= uris, uris
    nx = pytest.importorskip("networkx")
    graph = g.to_networkx()
    assert nx.has_path(graph, ref, copy.origin)

    # fink gone: its record is an unresolved node with the reason, not an error.
    mesh["fink"].proc.kill()
    g = at_ampel.provenance(ref, timeout=5)
    gone = g.entity(sources[0])
    assert gone is not None and not gone.resolved and gone.unresolved_reason, g.entities
