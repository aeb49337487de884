#!/usr/bin/env python3
"""The demo's check of fink's science filters (run by run.sh at the end of a DEMO_SECONDS
run, while the mesh is still up): counts what each filter published, checks fink's copy
of a query result of lasair's archive (lasair.bright-history), then walks the
provenance of a classification of an alert near a catalog star with `alertmesh provenance`
(printed as is) and checks, on the graph the gateway returned, that it reaches back
through fink's derived records and copy, lasair's copy, to the survey's alert, and names
the catalog row and the three algorithms with their versions.

Usage: derived_check.py FINK_GRPC_URL ($ALERTMESH_BIN is the CLI). Exits 0 only if every
check holds; each check prints one `derived:` line.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Any

from alertmesh import Gateway

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fink_filters import CLASS, CLASS_ACTIVITY, LCFIT, LCFIT_ACTIVITY, XMATCH, XMATCH_ACTIVITY  # noqa: E402

WAIT_S = 45.0
# fink's query-sourced mirror (fink.toml): its destination and its `where = "magpsf < 16"`.
QUERY_COPY = "lasair.bright-history"
BRIGHT = 16.0


def header(alert: Any, name: str) -> str:
    return next(((v or b"").decode() for k, v in alert.headers if k == name), "")


def check_query_mirror(gw: Gateway, check: Any) -> None:
    """fink's copy of a query result (the mirror lasair-bright-history of fink.toml): rows of
    lasair's archive ztf.history with magpsf < BRIGHT, each an original alert, each once.
    An archive row's ref is that of the alert archived (lasair's ztf.alerts), and a copy of
    a query row carries am-resume (where the query goes on after it)."""
    rows = list(gw.subscribe(QUERY_COPY, start="earliest", end="now"))
    check(len(rows) > 0, f"{QUERY_COPY}: {len(rows)} records")
    sources = [header(a, "am-source") for a in rows]
    check(all(s.startswith("am://lasair/ztf.alerts/") and header(a, "am-resume") for s, a in zip(sources, rows)),
          f"{QUERY_COPY}: every record was copied from a row of lasair's query ztf.history")
    check(len(set(sources)) == len(sources), f"{QUERY_COPY}: every row was copied once")
    faint = [a.record["candidate"]["magpsf"] for a in rows if not a.record["candidate"]["magpsf"] < BRIGHT]
    check(not faint, f"{QUERY_COPY}: every alert has magpsf < {BRIGHT:g} (fainter: {faint[:3]})")


def main() -> int:
    url = sys.argv[1]
    gw = Gateway(url)
    ok = True

    def check(cond: bool, what: str) -> None:
        nonlocal ok
        ok = ok and cond
        print(f"derived: {'ok  ' if cond else 'FAIL'} {what}", flush=True)

    # The filters may still be catching up on a busy machine: wait for a classification of
    # an alert near a catalog star (3 of the 45 objects), up to WAIT_S.
    deadline = time.monotonic() + WAIT_S
    while True:
        records = {t: list(gw.subscribe(t, start="earliest", end="now")) for t in (LCFIT, XMATCH, CLASS)}
        near = [a for a in records[CLASS] if a.record["class"] == "near-bright-star"]
        if near or time.monotonic() > deadline:
            break
        time.sleep(1)
    for t, rs in records.items():
        check(len(rs) > 0, f"{t}: {len(rs)} records")
    check_query_mirror(gw, check)
    xmatch_by_ref = {a.ref: a for a in records[XMATCH]}
    check(len(near) > 0, f"{CLASS}: {len(near)} near-bright-star classifications")
    if not near:
        return 1
    cls = near[0]
    refs = header(cls, "am-derived-from").split(",")
    xm = next((xmatch_by_ref[r] for r in refs if r in xmatch_by_ref), None)
    check(xm is not None, f"{cls.ref} is derived from a {XMATCH} record")
    if xm is None:
        return 1
    row = json.loads(header(xm, "am-used"))[0]
    print(f"derived: the provenance of {cls.ref} ({cls.key}: {cls.record['class']}, {cls.record['reason']})",
          flush=True)
    am = os.environ.get("ALERTMESH_BIN", "alertmesh")
    p = subprocess.run([am, "provenance", "--gateway", url, cls.ref], capture_output=True, text=True, timeout=60)
    print(p.stdout, end="", flush=True)
    if p.returncode != 0:
        print(p.stderr, file=sys.stderr, flush=True)
    check(p.returncode == 0, "alertmesh provenance answered")

    g = gw.provenance(cls.ref)
    ents = {e.id: e for e in g.entities}
    kinds = {(e.gateway, e.topic) for e in g.entities if e.resolved}
    for gateway, topic in [("fink", CLASS), ("fink", LCFIT), ("fink", XMATCH), ("fink", "ztf.alerts"),
                           ("lasair", "ztf.alerts"), ("survey", "ztf.raw")]:
        check((gateway, topic) in kinds, f"the walk resolved a record of {gateway} {topic}")
    edges = {(e.kind, e.source, e.target) for e in g.edges}
    fit_ref = next(r for r in refs if r.startswith(f"am://fink/{LCFIT}/"))
    alert_ref = next(r for r in refs if r.startswith("am://fink/ztf.alerts/"))
    check(all(("derived_from", cls.ref, r) in edges for r in refs),
          f"{CLASS} is derived from {LCFIT}, {XMATCH} and the alert")
    lasair = [t for k, s, t in edges if k == "copied_from" and s == alert_ref]
    check(bool(lasair) and lasair[0].startswith("am://lasair/ztf.alerts/"), f"{alert_ref} was copied from lasair")
    survey = [t for k, s, t in edges if k == "copied_from" and lasair and s == lasair[0]]
    check(bool(survey) and survey[0].startswith("am://survey/ztf.raw/")
          and ents.get(survey[0]) is not None and ents[survey[0]].resolved,
          f"{lasair[0] if lasair else '?'} was copied from the survey's alert")
    check(row in g.used and row.startswith("catalog:gaia-dr3/"), f"the catalog row {row} is named")
    acts = {(a.name, a.version) for a in g.activities}
    for a in (CLASS_ACTIVITY, LCFIT_ACTIVITY, XMATCH_ACTIVITY):
        check((a.name, a.version) in acts, f"the activity {a.name} {a.version} is named")
    check(all(e.resolved for e in g.entities), "every entity resolved")
    check(ents[fit_ref].key == cls.key, f"the fit and the classification share the key {cls.key}")
    print(f"derived: {'every check holds' if ok else 'NOT every check holds'}", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
