"""Publishing derived records through a gateway with JWT + mutual TLS: refs back, the
provenance read back through subscribe, retries that write nothing, typed errors."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from alertmesh import Activity, FailedPrecondition, Gateway, InvalidArgument, PermissionDenied, run_filter
from harness import SECURE, TOPIC, Proc, Stack, alertmesh_bin, free_port, kill_mid_run, wait_for

CLASS = "fink.pyclass"
SCHEMA = {
    "type": "object",
    "required": ["class", "score"],
    "properties": {"class": {"type": "string"}, "score": {"type": "number"}},
}


@pytest.fixture(scope="module")
def fink(stack: Stack, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """A gateway `fink` over the stack's Kafka, with [auth], [tls] and a publishable topic."""
    admin = AdminClient({"bootstrap.servers": stack.bootstrap})
    for f in admin.create_topics([NewTopic(CLASS, num_partitions=2, replication_factor=1)]).values():
        f.result(30)
    work = tmp_path_factory.mktemp("fink")
    (work / "class.json").write_text(json.dumps(SCHEMA))
    grpc, http = free_port(), free_port()
    config = work / "fink.toml"
    config.write_text(
        f"""[gateway]
name = "fink"
listen = "127.0.0.1:{grpc}"
http_listen = "127.0.0.1:{http}"
shutdown_grace_ms = 1000
[kafka]
bootstrap = "{stack.bootstrap}"
{SECURE}[[topics]]
name = "{TOPIC}"
namespace = "ZTF"
format = "avro-ocf"
[[topics]]
name = "{CLASS}"
namespace = "ZTF"
format = "json"
publish = true
schema = "class.json"
"""
    )

    def creds(*args: str) -> str:
        out = subprocess.run(
            [alertmesh_bin(), "creds", args[0], "--config", str(config), *args[1:]],
            check=True, capture_output=True, text=True, timeout=60,
        )
        return out.stdout.strip()

    creds("init", "--dev-tls")
    token = creds("issue", "--sub", "alice", "--scope", "publish:fink.*", "--scope", "subscribe:*", "--ttl", "1h")
    weak = creds("issue", "--sub", "alice", "--scope", "subscribe:*", "--ttl", "1h")
    creds("cert", "--name", "alice")
    proc = Proc([alertmesh_bin(), "serve", "--config", str(config)], work / "gateway.log")
    tls: dict[str, Any] = {
        "ca": str(work / "keys" / "mesh-ca.crt"),
        "cert": str(work / "keys" / "mesh-ca" / "alice.pem"),
        "key": str(work / "keys" / "mesh-ca" / "alice.key"),
    }
    url = f"https://127.0.0.1:{grpc}"
    try:
        wait_for(lambda: _ready(url, tls), "the fink gateway")
        yield {
            "gw": Gateway(url, token=token, **tls),
            "weak": Gateway(url, token=weak, **tls),
            # For runners in other processes.
            "spec": {"url": url, "token": token, **tls},
        }
    finally:
        proc.kill()


def _ready(url: str, tls: dict[str, Any]) -> bool:
    try:
        Gateway(url, **tls).describe()
        return True
    except Exception:  # noqa: BLE001 - not up yet
        return False


def _headers(alert: Any) -> dict[str, str]:
    return {k: (v or b"").decode() for k, v in alert.headers}


def test_publish_returns_the_ref_and_a_retry_writes_nothing(gw: Gateway, fink: dict[str, Gateway]) -> None:
    pub = fink["gw"]
    sources = list(gw.subscribe(TOPIC, start="earliest", end="now", limit=2, omit_cutouts=True))
    assert len(sources) == 2
    args = dict(
        derived_from=sources,
        activity={"name": "snclass", "version": "1.0", "parameters": {"threshold": 0.5}},
        used=["catalog:gaia-dr3/4295806720"],
    )
    ref = pub.publish(CLASS, {"class": "SN Ia", "score": 0.9}, **args)
    assert ref.startswith(f"am://fink/{CLASS}/")
    # The same call again (as after a timeout): the first ref, nothing written.
    assert pub.publish(CLASS, {"class": "SN Ia", "score": 0.9}, **args) == ref
    [alert] = [a for a in pub.subscribe(CLASS, start="earliest", end="now") if a.ref == ref]
    assert alert.key == sources[0].key
    assert alert.record == {"class": "SN Ia", "score": 0.9}
    h = _headers(alert)
    assert h["am-derived-from"] == ",".join(s.ref for s in sources)
    assert json.loads(h["am-activity"]) == {"name": "snclass", "version": "1.0", "parameters": {"threshold": 0.5}}
    assert json.loads(h["am-used"]) == ["catalog:gaia-dr3/4295806720"]
    assert json.loads(h["am-agent"]) == {"sub": "alice", "iss": "fink"}
    assert h["am-publish-id"].startswith("sha256:")
    assert "am-origin" not in h
    assert sum(1 for a in pub.subscribe(CLASS, start="earliest", end="now") if a.ref == ref) == 1


def test_topic_listing_shows_what_is_publishable_and_its_schema(fink: dict[str, Gateway]) -> None:
    topics = {t.name: t for t in fink["gw"].topics()}
    assert topics[CLASS].publishable and topics[CLASS].format == "json"
    assert json.loads(topics[CLASS].publish_schema) == SCHEMA
    assert not topics[TOPIC].publishable and topics[TOPIC].publish_schema == ""
    described = {t.name: t for t in fink["gw"].describe().topics}
    assert described[CLASS].publishable and not described[TOPIC].publishable


def test_publish_many_batches_and_explicit_ids_deduplicate(fink: dict[str, Gateway]) -> None:
    pub = fink["gw"]
    fit = Activity("lcfit", "0.3", {"bands": ["g", "r"]})
    items = [
        {"record": {"class": "var", "score": n / 10}, "key": f"ZTF:ZTF20pub{n:04d}",
         "derived_from": [f"am://lasair/ztf.alerts/0/{n}"], "publish_id": f"many/{n}"}
        for n in range(7)
    ]
    before = len(list(pub.subscribe(CLASS, start="earliest", end="now")))
    refs = pub.publish_many(CLASS, items, activity=fit)
    assert len(set(refs)) == 7
    assert pub.publish_many(CLASS, items, activity=fit) == refs
    after = list(pub.subscribe(CLASS, start="earliest", end="now"))
    assert len(after) == before + 7
    by_ref = {a.ref: a for a in after}
    assert json.loads(_headers(by_ref[refs[3]])["am-activity"])["name"] == "lcfit"
    assert _headers(by_ref[refs[3]])["am-publish-id"] == "many/3"


def test_bad_publishes_raise_typed_errors_naming_the_problem(fink: dict[str, Gateway]) -> None:
    pub = fink["gw"]
    act = {"name": "snclass", "version": "1.0"}
    src = ["am://lasair/ztf.alerts/0/1"]
    with pytest.raises(InvalidArgument) as e:
        pub.publish(CLASS, {"class": "SN", "score": "high"}, key="ZTF:ZTF20x", derived_from=src, activity=act)
    assert "records[0].payload: score: expected number, found string" in e.value.message
    with pytest.raises(InvalidArgument) as e:
        pub.publish(CLASS, {"class": "SN", "score": 1}, key="ZTF:ZTF20x", derived_from=["nope"], activity=act)
    assert "derived_from[0]" in e.value.message
    with pytest.raises(FailedPrecondition):
        pub.publish(TOPIC, {"class": "SN", "score": 1}, key="ZTF:ZTF20x", derived_from=src, activity=act)
    with pytest.raises(PermissionDenied) as e2:
        fink["weak"].publish(CLASS, {"class": "SN", "score": 1}, key="ZTF:ZTF20x", derived_from=src, activity=act)
    assert f"publish:{CLASS}" in e2.value.message
    with pytest.raises(ValueError, match="key is needed"):
        pub.publish(CLASS, {"class": "SN", "score": 1}, derived_from=src, activity=act)


class _Crash(Exception):
    pass


def _derived_by(pub: Gateway, name: str) -> list[Any]:
    return [
        a for a in pub.subscribe(CLASS, start="earliest", end="now")
        if json.loads(_headers(a).get("am-activity", "{}")).get("name") == name
    ]


def test_run_filter_restarted_after_crashes_neither_loses_nor_duplicates(gw: Gateway, fink: dict[str, Gateway]) -> None:
    pub = fink["gw"]
    act = Activity("brightness", "1.0", {"cut": 18.0})

    def classify(alert: Any) -> dict[str, Any]:
        mag = alert.record["candidate"]["magpsf"]
        return {"class": "bright" if mag < 18 else "faint", "score": mag}

    seen = 0

    def crash_at_20(alert: Any) -> dict[str, Any]:
        nonlocal seen
        seen += 1
        if seen == 20:
            raise _Crash()
        return classify(alert)

    # Killed mid-batch: what was derived but not yet published is derived again.
    with pytest.raises(_Crash):
        run_filter(crash_at_20, (gw, TOPIC), (pub, CLASS), cursor="rf-brightness", activity=act, end="now", batch=7)
    first = len(_derived_by(pub, "brightness"))
    assert first == 14

    # Killed after a publish, before its cursor commit: the next run publishes the same
    # records again under the same ids, and the gateway writes none of them twice.
    commits = 0
    real_commit = gw.commit_cursor

    def failing_commit(*args: Any, **kwargs: Any) -> dict[int, int]:
        nonlocal commits
        commits += 1
        if commits == 2:
            raise _Crash()
        return real_commit(*args, **kwargs)

    gw.commit_cursor = failing_commit  # type: ignore[method-assign]
    try:
        with pytest.raises(_Crash):
            run_filter(classify, (gw, TOPIC), (pub, CLASS), cursor="rf-brightness", activity=act, end="now", batch=7)
    finally:
        del gw.commit_cursor
    assert len(_derived_by(pub, "brightness")) == 28

    stats = run_filter(classify, (gw, TOPIC), (pub, CLASS), cursor="rf-brightness", activity=act, end="now", batch=7)
    assert stats.alerts == 45 - 21, stats  # resumes after the last commit (3 batches of 7)
    derived = _derived_by(pub, "brightness")
    sources = [_headers(a)["am-derived-from"] for a in derived]
    assert len(derived) == 45, len(derived)
    assert len(set(sources)) == 45, "one derived record per source alert"
    assert all(_headers(a)["am-publish-id"].startswith("brightness/am://") for a in derived)


# A filter runner in its own process, so it can be killed -9: slow enough per alert that a
# kill lands mid-run (between fetching, publishing and committing the cursor).
_RUNNER = """
import json, sys, time
from alertmesh import Activity, Gateway, run_filter
spec = json.loads(sys.argv[1])
src = Gateway(spec["source"])
sink = Gateway(spec["url"], token=spec["token"], ca=spec["ca"], cert=spec["cert"], key=spec["key"])

def fn(alert):
    time.sleep(0.01)
    mag = alert.record["candidate"]["magpsf"]
    return {"class": "bright" if mag < 18 else "faint", "score": mag}

stats = run_filter(fn, (src, spec["topic"]), (sink, spec["sink"]), cursor="rf-kill9",
                   activity=Activity("kill9", "1.0", {"cut": 18.0}), end="now", batch=4)
print(json.dumps({"alerts": stats.alerts}), flush=True)
"""


def test_run_filter_killed_9_mid_run_neither_loses_nor_duplicates(
    gw: Gateway, fink: dict[str, Any], tmp_path: Any
) -> None:
    pub = fink["gw"]
    total = sum(1 for _ in gw.subscribe(TOPIC, start="earliest", end="now", omit_cutouts=True))
    spec = json.dumps({**fink["spec"], "source": gw.url, "topic": TOPIC, "sink": CLASS})
    kills = kill_mid_run([sys.executable, "-c", _RUNNER, spec], lambda: len(_derived_by(pub, "kill9")), tmp_path, 12)
    assert kills >= 1, "every runner finished before it could be killed"
    # A last run to completion.
    done = subprocess.run([sys.executable, "-c", _RUNNER, spec], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    derived = _derived_by(pub, "kill9")
    sources = [_headers(a)["am-derived-from"] for a in derived]
    assert len(set(sources)) == total, f"{len(set(sources))} of {total} source alerts have a derived record"
    assert len(derived) == total, f"{len(derived)} derived records for {total} source alerts"
    assert len({_headers(a)["am-publish-id"] for a in derived}) == total
