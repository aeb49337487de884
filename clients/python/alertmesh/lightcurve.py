"""Light curves: every detection and upper limit of one object, gathered from its alerts.

An alert repeats its object's history: a ZTF alert carries ``candidate`` (this detection)
and ``prv_candidates`` (30 days of detections and non-detections), an LSST alert carries
``diaSource`` with ``prvDiaSources`` and ``prvDiaForcedSources``. A stream that replays the
same alerts repeats them again. :func:`points` keeps one point per epoch and band.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas
    from matplotlib.axes import Axes

#: Julian date of MJD 0.
_MJD0 = 2400000.5
#: ZTF filter ids.
_ZTF_BANDS = {1: "g", 2: "r", 3: "i"}
#: AB magnitude of 1 nJy, the unit of LSST fluxes.
_NJY_ZEROPOINT = 31.4
#: 2.5 / ln(10): magnitude error per unit of relative flux error.
_MAG_PER_REL_FLUX = 2.5 / math.log(10)
#: Which point of an epoch and band wins when several describe it.
_RANK = {"detection": 2, "forced": 1, "upper_limit": 0}

COLUMNS = ["mjd", "band", "kind", "mag", "mag_err", "limit_mag", "flux", "flux_err", "id", "ref"]


@dataclass
class Point:
    """One epoch of one object in one band.

    ``kind`` is ``detection`` (a source found in the difference image), ``forced`` (LSST
    forced photometry at the object's position) or ``upper_limit`` (ZTF: nothing found,
    fainter than ``limit_mag``). Magnitudes are AB PSF magnitudes; fluxes (LSST) are in nJy,
    with ``mag`` derived from positive fluxes. ``id`` is the ``candid``, ``diaSourceId`` or
    ``diaForcedSourceId`` (``None`` for a ZTF upper limit); ``ref`` is the alert it was read from.
    """

    mjd: float
    band: str
    kind: str
    mag: float | None = None
    mag_err: float | None = None
    limit_mag: float | None = None
    flux: float | None = None
    flux_err: float | None = None
    id: int | None = None
    ref: str | None = None


def _ztf(p: dict[str, Any], ref: str | None) -> Point | None:
    jd, fid = p.get("jd"), p.get("fid")
    if jd is None or fid is None:
        return None
    detected = p.get("candid") is not None and p.get("magpsf") is not None
    return Point(
        mjd=jd - _MJD0,
        band=_ZTF_BANDS.get(fid, str(fid)),
        kind="detection" if detected else "upper_limit",
        mag=p.get("magpsf") if detected else None,
        mag_err=p.get("sigmapsf") if detected else None,
        limit_mag=p.get("diffmaglim"),
        id=p.get("candid") if detected else None,
        ref=ref,
    )


def _lsst(s: dict[str, Any], kind: str, id_field: str, ref: str | None) -> Point | None:
    # Field names of LSST schema 7 and later, then of the earlier ones.
    mjd = s.get("midpointMjdTai", s.get("midPointTai"))
    band = s.get("band", s.get("filterName"))
    if mjd is None or band is None:
        return None
    flux, err = s.get("psfFlux"), s.get("psfFluxErr")
    mag = mag_err = None
    if flux is not None and flux > 0 and math.isfinite(flux):
        mag = _NJY_ZEROPOINT - 2.5 * math.log10(flux)
        mag_err = _MAG_PER_REL_FLUX * err / flux if err is not None else None
    return Point(mjd=mjd, band=band, kind=kind, mag=mag, mag_err=mag_err, flux=flux, flux_err=err,
                 id=s.get(id_field), ref=ref)


def alert_points(record: dict[str, Any], ref: str | None = None) -> list[Point]:
    """Every point one alert knows: its own and its history's (ZTF or LSST; others give none)."""
    out: list[Point | None] = []
    if isinstance(record.get("candidate"), dict):
        for p in [record["candidate"], *(record.get("prv_candidates") or [])]:
            out.append(_ztf(p, ref))
    elif isinstance(record.get("diaSource"), dict):
        for s in [record["diaSource"], *(record.get("prvDiaSources") or [])]:
            out.append(_lsst(s, "detection", "diaSourceId", ref))
        for s in record.get("prvDiaForcedSources") or []:
            out.append(_lsst(s, "forced", "diaForcedSourceId", ref))
    return [p for p in out if p is not None]


def points(alerts: Iterable[tuple[dict[str, Any], str | None]]) -> list[Point]:
    """One point per epoch and band from ``(record, ref)`` pairs of one object, by time.

    A detection wins over forced photometry, which wins over an upper limit; among equals
    the alert read last wins (a later alert may carry a revised measurement).
    """
    best: dict[tuple[float, str], Point] = {}
    for record, ref in alerts:
        for p in alert_points(record, ref):
            # Rounded to ~0.1 s: the same exposure, whichever alert reports it.
            epoch = (round(p.mjd, 6), p.band)
            kept = best.get(epoch)
            if kept is None or _RANK[p.kind] >= _RANK[kept.kind]:
                best[epoch] = p
    return sorted(best.values(), key=lambda p: (p.mjd, p.band))


def to_frame(pts: list[Point], key: str | None = None) -> pandas.DataFrame:
    """Points as a DataFrame with :data:`COLUMNS`; ``attrs["key"]`` names the object."""
    import pandas as pd

    dtypes = {"mjd": "float64", "band": "string", "kind": "string", "mag": "float64", "mag_err": "float64",
              "limit_mag": "float64", "flux": "float64", "flux_err": "float64", "id": "Int64", "ref": "string"}
    rows = [asdict(p) for p in pts]
    # Column by column: through a float column, 64-bit ids would lose their last digits.
    df = pd.DataFrame({c: pd.array([r[c] for r in rows], dtype=dtypes[c]) for c in COLUMNS})
    df.attrs["key"] = key
    return df


_COLORS = {"u": "tab:purple", "g": "tab:green", "r": "tab:red", "i": "tab:orange", "z": "tab:brown", "y": "black"}


def plot(lc: pandas.DataFrame, ax: Axes | None = None, *, flux: bool | None = None) -> Axes:
    """Draws a light curve from :meth:`Gateway.lightcurve`: one colour per band, error bars
    for detections, open markers for forced photometry, triangles for upper limits.

    Args:
        lc: the light curve.
        ax: the axes to draw on (default: a new figure).
        flux: plot flux instead of magnitude (default: when the light curve has fluxes, as
            LSST's; negative fluxes have no magnitude).
    """
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(7, 4))
    if flux is None:
        flux = bool(lc["flux"].notna().any())
    y, err = ("flux", "flux_err") if flux else ("mag", "mag_err")
    for band in sorted(set(lc["band"].dropna())):
        color = _COLORS.get(band)
        rows = lc[lc["band"] == band]
        det = rows[(rows["kind"] == "detection") & rows[y].notna()]
        forced = rows[(rows["kind"] == "forced") & rows[y].notna()]
        lim = rows[(rows["kind"] == "upper_limit") & rows["limit_mag"].notna()]
        if len(det):
            ax.errorbar(det["mjd"], det[y], yerr=det[err], fmt="o", color=color, label=f"{band} detections")
        if len(forced):
            ax.errorbar(forced["mjd"], forced[y], yerr=forced[err], fmt="o", mfc="none", color=color,
                        alpha=0.6, label=f"{band} forced")
        if len(lim) and not flux:
            ax.scatter(lim["mjd"], lim["limit_mag"], marker="v", color=color, alpha=0.4, label=f"{band} upper limits")
    if not flux:
        ax.invert_yaxis()
    ax.set_xlabel("MJD")
    ax.set_ylabel("PSF flux (nJy)" if flux else "PSF magnitude (AB)")
    if lc.attrs.get("key"):
        ax.set_title(str(lc.attrs["key"]))
    if ax.get_legend_handles_labels()[0]:
        ax.legend()
    return ax
