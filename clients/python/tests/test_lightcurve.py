"""Light curves from real alerts: ZTF through a real gateway, LSST from Fink's real LSSTCam
alerts, each checked against the files read directly with fastavro."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import fastavro
import matplotlib
import pytest

from alertmesh import Gateway, InvalidArgument, plot_lightcurve
from alertmesh.lightcurve import alert_points, points, to_frame
from harness import REPO, TOPIC

matplotlib.use("Agg")

RUBIN = REPO / "alert" / "tests" / "fixtures" / "fink" / "rubin_v9_0"


def _read(path: Path) -> dict[str, Any]:
    (record,) = fastavro.reader(io.BytesIO(path.read_bytes()))
    assert isinstance(record, dict)
    return record


def _ztf_epochs(record: dict[str, Any]) -> dict[tuple[float, int], dict[str, Any]]:
    return {(p["jd"], p["fid"]): p for p in [record["candidate"], *(record["prv_candidates"] or [])]}


def test_ztf_alerts_give_detections_and_upper_limits_once(expected: dict[int, dict[str, Any]]) -> None:
    record = max(expected.values(), key=lambda r: len(r["prv_candidates"] or []))
    epochs = _ztf_epochs(record)
    assert len(epochs) >= 3, "the fixture with the longest history"
    # The same alert twice (a replayed feed) gives the same points as once.
    once = points([(record, "am://a/t/0/1")])
    twice = points([(record, "am://a/t/0/1"), (record, "am://a/t/0/7")])
    assert [(p.mjd, p.band, p.kind) for p in once] == [(p.mjd, p.band, p.kind) for p in twice]
    assert len(once) == len(epochs)
    assert [p.mjd for p in once] == sorted(p.mjd for p in once)
    assert {p.ref for p in twice} == {"am://a/t/0/7"}, "the alert read last wins"
    (det,) = [p for p in once if p.kind == "detection"]
    cand = record["candidate"]
    assert det.id == cand["candid"] and det.mag == cand["magpsf"] and det.mag_err == cand["sigmapsf"]
    assert det.mjd == pytest.approx(cand["jd"] - 2400000.5) and det.band == "gr"[cand["fid"] - 1]
    limits = [p for p in once if p.kind == "upper_limit"]
    assert len(limits) == len(epochs) - 1
    assert all(p.mag is None and p.id is None and p.limit_mag is not None for p in limits)


def test_lsst_alerts_give_sources_and_forced_photometry_once() -> None:
    files = sorted(RUBIN.glob("*.avro"))
    record = max((_read(f) for f in files), key=lambda r: len(r["prvDiaForcedSources"] or []))
    forced = record["prvDiaForcedSources"] or []
    src = record["diaSource"]
    got = points([(record, None), (record, None)])
    assert len(got) == len(alert_points(record)) == 1 + len(forced) + len(record["prvDiaSources"] or [])
    (det,) = [p for p in got if p.id == src["diaSourceId"]]
    assert det.kind == "detection" and det.band == src["band"] and det.mjd == src["midpointMjdTai"]
    assert det.flux == src["psfFlux"] and det.flux_err == src["psfFluxErr"]
    assert det.mag == pytest.approx(31.4 - 2.5 * __import__("math").log10(src["psfFlux"]))
    # A detection and forced photometry of the same visit: the detection is kept.
    same_visit = {**src, "diaSourceId": 1}
    dup = {**record, "diaSource": same_visit, "prvDiaSources": None,
           "prvDiaForcedSources": [{**src, "diaForcedSourceId": 2}]}
    (only,) = points([(dup, None)])
    assert only.kind == "detection" and only.id == 1
    frame = to_frame(got, "LSST:dia:1")
    assert frame["id"].dtype == "Int64" and frame.attrs["key"] == "LSST:dia:1"
    ax = plot_lightcurve(frame)
    assert ax.get_ylabel() == "PSF flux (nJy)"


def test_lightcurve_through_the_gateway_matches_the_files(gw: Gateway, expected: dict[int, dict[str, Any]]) -> None:
    record = max(expected.values(), key=lambda r: len(r["prv_candidates"] or []))
    key = f"ZTF:{record['objectId']}"
    lc = gw.lightcurve(key, topic=TOPIC)
    epochs = _ztf_epochs(record)
    assert len(lc) == len(epochs)
    assert list(lc.columns) == ["mjd", "band", "kind", "mag", "mag_err", "limit_mag", "flux", "flux_err", "id", "ref"]
    assert lc.attrs["key"] == key
    assert sorted(lc["mjd"]) == pytest.approx(sorted(jd - 2400000.5 for jd, _ in epochs))
    det = lc[lc["kind"] == "detection"]
    assert list(det["id"]) == [record["candid"]]
    # The gateway writes Avro floats (32 bits) in their shortest form.
    assert list(det["mag"]) == pytest.approx([record["candidate"]["magpsf"]], rel=1e-6)
    assert lc["ref"].str.startswith("am://lasair/ztf.alerts/").all()
    # The object id alone is prefixed with the topic's namespace.
    assert gw.lightcurve(record["objectId"], topic=TOPIC).equals(lc)
    ax = plot_lightcurve(lc)
    assert ax.get_ylabel() == "PSF magnitude (AB)" and ax.get_title() == key
    assert gw.lightcurve("ZTF:ZTF00nothing", topic=TOPIC).empty
    with pytest.raises(ValueError, match="not exposed"):
        gw.lightcurve("ZTF00nothing", topic="no.such.topic")
    with pytest.raises(InvalidArgument):
        gw.lightcurve(key, topic=TOPIC, where="candidate.magpsf >")
