#!/usr/bin/env python3
"""The live summary of the demo mesh (started by run.sh): every 2 s, alerts/s per hop from
each gateway's /metrics, mirror lag, and the mirrors' states from `alertmesh mirror status`.

Usage: summary.py SECONDS (0 = until interrupted). Everything else comes from the
environment run.sh sets (DEMO_* variables). With SECONDS > 0 it exits 0 only if every hop
copied alerts (and the survey served some), else 1.
"""

import json
import os
import re
import ssl
import subprocess
import sys
import time
import urllib.request

E = os.environ
AM = E["ALERTMESH_BIN"]
WORK = E["DEMO_WORK"]
RATE = E["DEMO_RATE"]
SURVEY_HTTP, LASAIR_HTTP, FINK_HTTP = E["DEMO_HTTP_PORTS"].split()
SURVEY_GRPC, LASAIR_GRPC, FINK_GRPC = E["DEMO_GRPC_PORTS"].split()
LASAIR_CA = os.path.join(WORK, "lasair", "keys", "mesh-ca.crt")
OPERATOR = os.path.join(WORK, "operator")  # admin token + client certificate for lasair

# (hop, gateway that runs the mirror, mirror name). Every line printed fits 80 columns.
HOPS = [
    ("survey ztf.raw  -> lasair ztf.alerts", "lasair", "survey-ztf"),
    ("survey ztf.raw  -> lasair ztf.bright", "lasair", "survey-ztf-bright"),
    ("survey lsst.raw -> lasair lsst.alerts", "lasair", "survey-lsst"),
    ("lasair ztf.alerts -> fink ztf.alerts", "fink", "lasair-ztf"),
    # A query result: the rows of lasair's archive with magpsf < 16, into
    # fink's lasair.bright-history.
    ("lasair query ztf.history -> fink", "fink", "lasair-bright-history"),
]
WIDTH = 80
METRICS = {
    "survey": f"http://127.0.0.1:{SURVEY_HTTP}/metrics",
    "lasair": f"https://127.0.0.1:{LASAIR_HTTP}/metrics",  # lasair's side port speaks HTTPS
    "fink": f"http://127.0.0.1:{FINK_HTTP}/metrics",
}
STATUS = {
    "lasair": [
        "--gateway", f"https://127.0.0.1:{LASAIR_GRPC}",
        "--token", f"{OPERATOR}.jwt", "--ca", LASAIR_CA,
        "--cert", f"{OPERATOR}.pem", "--key", f"{OPERATOR}.key",
    ],
    "fink": ["--gateway", f"http://127.0.0.1:{FINK_GRPC}"],
}
LINE = re.compile(r'^(alertmesh_[a-z_]+)(?:\{([^}]*)\})? ([-+0-9.eEinfNa]+)$')


def scrape(gateway):
    """{(metric, label value): number} of one gateway, or {} when it does not answer."""
    ctx = ssl.create_default_context(cafile=LASAIR_CA) if gateway == "lasair" else None
    try:
        with urllib.request.urlopen(METRICS[gateway], timeout=1.5, context=ctx) as r:
            text = r.read().decode()
    except Exception:
        return {}
    out = {}
    for line in text.splitlines():
        m = LINE.match(line)
        if m:
            labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
            label = labels.get("mirror") or labels.get("topic") or labels.get("archive") or ""
            out[(m.group(1), label)] = float(m.group(3))
    return out


def states(gateway):
    """{mirror: (state, error)} from `alertmesh mirror status --json`."""
    try:
        p = subprocess.run([AM, "mirror", "status", "--json", *STATUS[gateway]],
                           capture_output=True, text=True, timeout=5)
    except Exception as e:  # noqa: BLE001 - shown in the summary
        return {"?": ("unreachable", str(e))}
    if p.returncode != 0:
        return {"?": ("error", p.stderr.strip())}
    out = {}
    for line in p.stdout.splitlines():
        m = json.loads(line)
        out[m["name"]] = (m["state"], m.get("error", ""))
    return out


def main():
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 0.0
    tty = sys.stdout.isatty()
    started = time.monotonic()
    copied = {name: 0.0 for _, _, name in HOPS}
    served = 0.0
    archived = 0.0
    shown = 0
    prev, prev_t = {g: scrape(g) for g in METRICS}, started  # the baseline of the rates
    while True:
        time.sleep(max(0.0, prev_t + 2.0 - time.monotonic()))
        now = time.monotonic()
        snap = {g: scrape(g) for g in METRICS}
        st = {g: states(g) for g in STATUS}
        dt = now - prev_t

        def per_s(gw, key):
            if not snap[gw]:
                return "  down"
            return f"{max(0.0, snap[gw].get(key, 0.0) - prev[gw].get(key, 0.0)) / dt:6.1f}"

        lines = [f"-- t={now - started:5.1f}s ".ljust(WIDTH, "-")]
        key_s = ("alertmesh_alerts_served_total", "ztf.raw")
        served_now = snap["survey"].get(key_s, 0.0)
        served = max(served, served_now)
        # The survey's counter sums every subscriber of ztf.raw; what each of lasair's
        # mirrors received is its own "copied" figure below.
        lines.append(f"  replay -> survey ztf.raw {RATE}/s; served to all subscribers"
                     f" {served_now:.0f} ({per_s('survey', key_s).strip()}/s)")
        lines.append(f"  {'HOP':<37} {'ALERTS/s':>8} {'COPIED':>7} {'LAG(s)':>6}  STATE")
        for label, gw, name in HOPS:
            key_c = ("alertmesh_mirror_alerts_copied", name)
            c = snap[gw].get(key_c, 0.0)
            lag = snap[gw].get(("alertmesh_mirror_lag_seconds", name), 0.0)
            state, err = st[gw].get(name, st[gw].get("?", ("-", "")))
            copied[name] = max(copied[name], c)
            lines.append(f"  {label:<37} {per_s(gw, key_c):>8} {c:7.0f} {lag:6.2f}  {state[:12]}")
            if err:
                lines.append(f"    {name}: {err}"[:WIDTH])
        key_a = ("alertmesh_archive_rows_total", "ztf-archive")
        rows = snap["lasair"].get(key_a, 0.0)
        archived = max(archived, rows)
        lag = snap["lasair"].get(("alertmesh_archive_lag", "ztf-archive"), 0.0)
        lines.append(f"  {'lasair ztf.alerts -> PostgreSQL':<37} {per_s('lasair', key_a):>8}"
                     f" {rows:7.0f} {lag:5.0f}a  archive")
        if tty and shown:
            # Redraw the summary in place: up over the previous one, clear to the end.
            sys.stdout.write(f"\033[{shown}F\033[J")
        print("\n".join(lines), flush=True)
        shown = len(lines)
        prev, prev_t = snap, now
        if seconds and now - started >= seconds:
            break
    ok = served > 0 and all(v > 0 for v in copied.values()) and archived > 0
    # Short lines, each whole on an 80-column terminal; the first one says the verdict.
    print(f"demo: {'every hop copied alerts' if ok else 'NOT every hop copied alerts'}",
          flush=True)
    print(f"demo:   survey served {served:.0f} (all subscribers of ztf.raw)", flush=True)
    for n, v in copied.items():
        print(f"demo:   {n} copied {v:.0f}", flush=True)
    print(f"demo:   lasair archived {archived:.0f} (query ztf.history)", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
