#!/usr/bin/env python3
"""fink's science filters in the demo mesh (started by run.sh once the mesh is up).

Three filters written with ``alertmesh.run_filter``, each with its own durable cursor on
fink's gateway, publishing derived records to fink's publishable topics (fink.toml):

- ``fink.lcfit``: a light-curve fit per band over ``candidate`` + ``prv_candidates`` of
  each ZTF alert fink mirrors: peak magnitude, rise and decline rates (ordinary
  least-squares slope of magnitude against time, mag/day, before and after the peak), and
  the number of detections.
- ``fink.xmatch``: a cross-match of the alert's position with the real Gaia DR3 stars in
  ``catalog/gaia-dr3-bright.csv`` (G <= 10, see catalog/README.md): the nearest star
  within ``RADIUS_ARCSEC``, named in the record's ``used`` as
  ``catalog:gaia-dr3/<source_id>``, or no match.
- ``fink.class``: a classification of each alert from its two derived records, by the
  rule of :func:`classify`; derived from the light-curve fit, the cross-match and the
  alert itself.

Usage: fink_filters.py GATEWAY_URL (fink's). Runs until SIGTERM or SIGINT. Each filter is
restarted after an error (e.g. while a gateway is still starting); killed at any moment
and started again, the runners neither lose nor duplicate a derived record.
"""

from __future__ import annotations

import csv
import faulthandler
import math
import os
import signal
import sys
import threading
import time
from typing import Any

from alertmesh import Activity, Alert, Derived, Gateway, run_filter

HERE = os.path.dirname(os.path.abspath(__file__))
CATALOG = os.path.join(HERE, "catalog", "gaia-dr3-bright.csv")
CATALOG_NAME = "gaia-dr3"
SOURCE = "ztf.alerts"
LCFIT, XMATCH, CLASS = "fink.lcfit", "fink.xmatch", "fink.class"
BANDS = {1: "g", 2: "r", 3: "i"}

#: Within this distance of a G <= 10 star, halos, ghosts and diffraction spikes make
#: spurious detections likely (ZTF's own ``neargaiabright`` looks 90" around G < 14 stars).
RADIUS_ARCSEC = 300.0
#: |rate| below this (mag/day) is no trend.
TREND = 0.05

LCFIT_ACTIVITY = Activity("fink-lc-linear-fit", "1.0.0", {"method": "ordinary least squares",
                                                          "min_points": 2, "units": "mag/day"})
XMATCH_ACTIVITY = Activity("fink-gaia-xmatch", "1.0.0", {"catalog": CATALOG_NAME, "max_g": 10,
                                                         "radius_arcsec": RADIUS_ARCSEC})
CLASS_ACTIVITY = Activity("fink-demo-classifier", "1.0.0", {"trend_mag_per_day": TREND,
                                                            "radius_arcsec": RADIUS_ARCSEC})


# --- the light-curve fit -------------------------------------------------------------------

def slope(points: list[tuple[float, float]]) -> float | None:
    """The least-squares slope of y against x, None for fewer than two distinct x."""
    if len(points) < 2:
        return None
    mx = sum(x for x, _ in points) / len(points)
    my = sum(y for _, y in points) / len(points)
    sxx = sum((x - mx) ** 2 for x, _ in points)
    if sxx == 0:
        return None
    return sum((x - mx) * (y - my) for x, y in points) / sxx


def detections(record: dict[str, Any]) -> list[dict[str, Any]]:
    """The alert's detections (``candidate`` and the ``prv_candidates`` with a magnitude),
    one per (time, band), oldest first; upper limits have no ``magpsf`` and are left out."""
    seen: dict[tuple[float, int], dict[str, Any]] = {}
    for c in [*(record.get("prv_candidates") or []), record["candidate"]]:
        if c.get("magpsf") is not None and c.get("jd") is not None and c.get("fid") in BANDS:
            seen[(c["jd"], c["fid"])] = c
    return [seen[k] for k in sorted(seen)]


def fit_lightcurve(record: dict[str, Any]) -> dict[str, Any]:
    """Per band: detections, peak magnitude and time, and the rise (up to the peak) and
    decline (from the peak) rates in mag/day where two points or more define them.

    With a non-detection before the first detection (an upper limit ``diffmaglim`` that the
    first detection is brighter than), ``rise_rate_bound`` is the slope from that limit to
    the first detection: the source brightened at least this fast (a bound, not a fit)."""
    bands: dict[str, Any] = {}
    dets = detections(record)
    limits = [c for c in (record.get("prv_candidates") or [])
              if c.get("magpsf") is None and c.get("diffmaglim") is not None and c.get("jd") is not None]
    for fid, name in BANDS.items():
        pts = [(c["jd"], float(c["magpsf"])) for c in dets if c["fid"] == fid]
        if not pts:
            continue
        peak_jd, peak_mag = min(pts, key=lambda p: p[1])
        b: dict[str, Any] = {"n": len(pts), "peak_mag": round(peak_mag, 4), "peak_jd": peak_jd}
        rise = slope([p for p in pts if p[0] <= peak_jd])
        decline = slope([p for p in pts if p[0] >= peak_jd])
        if rise is not None:
            b["rise_rate"] = round(rise, 5)
        if decline is not None:
            b["decline_rate"] = round(decline, 5)
        first_jd, first_mag = pts[0]
        before = [c for c in limits if c.get("fid") == fid and c["jd"] < first_jd]
        if before:
            last = max(before, key=lambda c: c["jd"])
            if first_mag < last["diffmaglim"]:
                b["rise_rate_bound"] = round((first_mag - last["diffmaglim"]) / (first_jd - last["jd"]), 5)
                b["last_nondetection_jd"] = last["jd"]
        bands[name] = b
    return {"objectId": record["objectId"], "candid": record["candid"], "bands": bands}


# --- the cross-match -------------------------------------------------------------------------

def load_catalog(path: str = CATALOG) -> list[tuple[str, float, float, float]]:
    """(source_id, ra, dec, G) of every catalog row."""
    with open(path, newline="") as f:
        return [(r["source_id"], float(r["ra"]), float(r["dec"]), float(r["phot_g_mean_mag"]))
                for r in csv.DictReader(f)]


def separation_arcsec(ra1: float, dec1: float, ra2: float, dec2: float) -> float:
    """The angle between two positions (degrees in), by the haversine formula."""
    ra1, dec1, ra2, dec2 = map(math.radians, (ra1, dec1, ra2, dec2))
    h = math.sin((dec2 - dec1) / 2) ** 2 + math.cos(dec1) * math.cos(dec2) * math.sin((ra2 - ra1) / 2) ** 2
    return math.degrees(2 * math.asin(min(1.0, math.sqrt(h)))) * 3600


def crossmatch(ra: float, dec: float, catalog: list[tuple[str, float, float, float]],
               radius_arcsec: float = RADIUS_ARCSEC) -> tuple[dict[str, Any] | None, str | None]:
    """The nearest catalog row within the radius as (match, catalog ref), or (None, None)."""
    best = min(((separation_arcsec(ra, dec, r[1], r[2]), r) for r in catalog),
               key=lambda t: t[0], default=None)
    if best is None or best[0] > radius_arcsec:
        return None, None
    sep, row = best
    match = {"source_id": row[0], "sep_arcsec": round(sep, 3), "phot_g_mean_mag": row[3]}
    return match, f"catalog:{CATALOG_NAME}/{row[0]}"


# --- the classification ------------------------------------------------------------------------

def classify(fit: dict[str, Any], xmatch: dict[str, Any]) -> dict[str, Any]:
    """Rule fink-demo-classifier 1.0.0, first that applies:

    1. ``near-bright-star``: the cross-match found a G <= 10 star within the radius (the
       detection may be an artefact of the star);
    2. ``rising``: a band brightens faster than ``TREND`` mag/day up to its peak (fitted
       rate, or the bound from its last non-detection);
    3. ``fading``: a band fades faster than ``TREND`` mag/day from its peak;
    4. ``flat``: two or more detections in a band, no such trend;
    5. ``insufficient-data``: no band has two detections (nor a rise bound).
    """
    bands = fit["bands"].values()
    if xmatch.get("matched"):
        cls, why = "near-bright-star", f"G={xmatch['match']['phot_g_mean_mag']:.2f} star at {xmatch['match']['sep_arcsec']:.1f} arcsec"
    elif any(min(b.get("rise_rate", 0.0), b.get("rise_rate_bound", 0.0)) <= -TREND for b in bands):
        cls, why = "rising", "brightening faster than %.2f mag/day" % TREND
    elif any(b.get("decline_rate", 0.0) >= TREND for b in bands):
        cls, why = "fading", "fading faster than %.2f mag/day" % TREND
    elif any(b["n"] >= 2 for b in bands):
        cls, why = "flat", "no trend faster than %.2f mag/day" % TREND
    else:
        cls, why = "insufficient-data", "fewer than two detections in every band, no rise bound"
    return {"objectId": fit["objectId"], "candid": fit["candid"], "class": cls, "reason": why}


# --- the runners ---------------------------------------------------------------------------------

def header(alert: Alert, name: str) -> str:
    for k, v in alert.headers:
        if k == name and v is not None:
            return v.decode()
    return ""


class Index:
    """The records of a derived topic by the first ref they were derived from, read on
    demand up to the topic's end (each partition from where the last read stopped)."""

    def __init__(self, gw: Gateway, topic: str) -> None:
        self.gw, self.topic = gw, topic
        self.by_source: dict[str, Alert] = {}
        self.next: dict[int, int] = {}

    def refresh(self) -> None:
        parts = next(t.partitions for t in self.gw.topics() if t.name == self.topic)
        start = {p: self.next.get(p, 0) for p in range(parts)}
        sub = self.gw.subscribe(self.topic, start=start, end="now")
        with sub:
            for a in sub:
                src = header(a, "am-derived-from").split(",")[0]
                self.by_source[src] = a
        self.next.update(sub.positions)

    def take(self, source_ref: str, wait_s: float) -> Alert:
        """The record derived from ``source_ref``, waiting for it, and forgotten then (each
        is asked for once, which keeps the index small in a demo that runs for hours)."""
        deadline = time.monotonic() + wait_s
        while source_ref not in self.by_source:
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {self.topic} record derived from {source_ref} after {wait_s:.0f} s")
            self.refresh()
            if source_ref not in self.by_source:
                time.sleep(0.5)
        return self.by_source.pop(source_ref)


def lcfit_filter(alert: Alert) -> dict[str, Any]:
    return fit_lightcurve(alert.record)


def xmatch_filter(catalog: list[tuple[str, float, float, float]]):  # type: ignore[no-untyped-def]
    def run(alert: Alert) -> Derived:
        c = alert.record["candidate"]
        match, ref = crossmatch(c["ra"], c["dec"], catalog)
        record = {"objectId": alert.record["objectId"], "candid": alert.record["candid"],
                  "catalog": CATALOG_NAME, "radius_arcsec": RADIUS_ARCSEC, "matched": match is not None}
        if match is not None:
            record["match"] = match
        return Derived(record, used=[ref] if ref else [])
    return run


def class_filter(gw: Gateway):  # type: ignore[no-untyped-def]
    xmatches = Index(gw, XMATCH)

    def run(fit: Alert) -> Derived:
        # ``fit`` is a fink.lcfit record; its first source is the alert it was fitted on.
        alert_ref = header(fit, "am-derived-from").split(",")[0]
        xm = xmatches.take(alert_ref, wait_s=60)
        return Derived(classify(fit.record, xm.record), derived_from=[fit, xm, alert_ref])
    return run


def forever(name: str, stop: threading.Event, body) -> None:  # type: ignore[no-untyped-def]
    while not stop.is_set():
        try:
            body()
        except Exception as e:  # noqa: BLE001 - reported, then the filter starts again
            print(f"{name}: {type(e).__name__}: {e}; restarting in 2 s", file=sys.stderr, flush=True)
            stop.wait(2)


def logged(name: str, fn):  # type: ignore[no-untyped-def]
    """``fn``, saying in the log when it sees its first alert and every 1000th."""
    seen = 0

    def run(alert: Alert) -> Any:
        nonlocal seen
        seen += 1
        if seen == 1 or seen % 1000 == 0:
            print(f"{name}: alert {seen} {alert.ref}", flush=True)
        return fn(alert)
    return run


def main() -> int:
    url = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:29053"
    catalog = load_catalog()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    faulthandler.register(signal.SIGUSR1)  # kill -USR1 <pid>: every thread's stack to the log

    # Each filter (and each start of it) has its own connection to the gateway.
    def lcfit() -> None:
        gw = Gateway(url)
        run_filter(logged("lcfit", lcfit_filter), (gw, SOURCE), (gw, LCFIT),
                   cursor="fink-lcfit-v1", activity=LCFIT_ACTIVITY)

    def xmatch() -> None:
        gw = Gateway(url)
        run_filter(logged("xmatch", xmatch_filter(catalog)), (gw, SOURCE), (gw, XMATCH),
                   cursor="fink-xmatch-v1", activity=XMATCH_ACTIVITY)

    def classification() -> None:
        gw = Gateway(url)
        run_filter(logged("class", class_filter(Gateway(url))), (gw, LCFIT), (gw, CLASS),
                   cursor="fink-class-v1", activity=CLASS_ACTIVITY)

    jobs = {"lcfit": lcfit, "xmatch": xmatch, "class": classification}
    threads = [threading.Thread(target=forever, args=(n, stop, j), name=n, daemon=True) for n, j in jobs.items()]
    for t in threads:
        t.start()
    print(f"fink filters running on {url}: {', '.join(jobs)}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
