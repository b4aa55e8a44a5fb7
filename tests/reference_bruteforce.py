"""A brute-force reference for the crossover definition, independent of eomatch's internals.

Nothing here imports eomatch. The TLE files are located through the ``orbitx`` distribution's
metadata, parsed by hand, propagated with skyfield (not eomatch's own SGP4 + GMST code), and
every second of A is compared with *every* second of B within ``±T`` (no coarse search).

Definition implemented (see the crossover engine's docstring):

* ``pA(t)``, ``pB(t)``: geodetic WGS84 sub-satellite points, each instant propagated with the
  element set whose epoch is nearest to it (exact ties: the later set);
* distance: haversine on a sphere of radius 6371.0088 km, (lat, lon) taken as spherical;
* only integer Unix seconds; ``tA`` in ``[start, end)`` is matched when some ``tB`` with
  ``|tA - tB| <= T`` has ``d <= D``; its partner is the ``tB`` minimising ``d`` (earliest on ties);
* matched seconds less than 60 s apart form a run; a run with ``last - first`` above the maximum
  event duration is cut by ``(t - first) // max_event_duration_s``;
* each event is reported at its closest approach; ``start_a``/``end_a`` are its first/last
  matched seconds; pairs are ordered by short name.

skyfield rotates TEME to Earth-fixed with GMST82 of true UT1 (the engine takes UT1 = UTC), so
longitudes differ from the engine's by up to a few tens of metres; both points of a pair are
rotated alike, so distances agree to metres. Pass ``ut1_equals_utc=True`` to :func:`timescale`
to adopt the engine's convention exactly.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from importlib import metadata
from pathlib import Path

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from skyfield.api import EarthSatellite, load, wgs84
from skyfield.nutationlib import iau2000b_radians

EARTH_RADIUS_KM = 6371.0088
MERGE_GAP_S = 60
TT_MINUS_UTC_SINCE_2017 = 32.184 + 37.0
"""TT - UTC from 2017-01-01 on; a timescale with this fixed ΔT has UT1 = UTC."""

# Our own table (deliberately not eomatch's registry): short name -> (file, NORAD number).
TLE_FILES: dict[str, tuple[str, int]] = {
    "S2A": ("TLEset_S2A.txt", 40697),
    "S2B": ("TLEset_S2B.txt", 42063),
    "LS8": ("TLEset_LS8.txt", 39084),
    "LS9": ("TLEset_LS9.txt", 49260),
    "S3A": ("TLEset_S3A.txt", 41335),
    "S3B": ("TLEset_S3B.txt", 43437),
    "J2": ("TLEset_J2.txt", 33105),
    "J3": ("TLEset_J3.txt", 41240),
    "CS2": ("TLEset_CS2.txt", 36508),
    "SARAL": ("TLEset_SA.txt", 39086),
    "S6": ("TLEset_S6.txt", 46984),
    "N20": ("TLEset_N20.txt", 43013),
    "ISS": ("TLEset_EMIT.txt", 25544),
}


def tle_dir() -> Path:
    """Directory of the TLE archive shipped as data in the ``orbitx`` wheel."""
    return Path(str(metadata.distribution("orbitx").locate_file("orbitx/data/tle")))


# --------------------------------------------------------------------------------------------
# TLE parsing and nearest-epoch selection
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tle:
    line1: str
    line2: str
    epoch: float
    """Unix seconds."""


def checksum_ok(line: str) -> bool:
    """Modulo-10 checksum of a TLE line: digits count as themselves, '-' as 1."""
    if len(line) != 69 or not line[68].isdigit():
        return False
    total = sum(int(c) if c.isdigit() else (1 if c == "-" else 0) for c in line[:68])
    return total % 10 == int(line[68])


def tle_epoch_unix(line1: str) -> float:
    """Epoch field (YYDDD.DDDDDDDD, UTC) as Unix seconds."""
    yy = int(line1[18:20])
    year = 2000 + yy if yy < 57 else 1900 + yy
    day_of_year = float(line1[20:32])
    jan1 = datetime(year, 1, 1, tzinfo=UTC).timestamp()
    return jan1 + (day_of_year - 1.0) * 86400.0


def read_tles(path: Path, norad: int) -> list[Tle]:
    """Valid element sets of ``norad`` in a 2- or 3-line file, sorted by epoch.

    Element sets with a bad line length or checksum are skipped. When several sets share an
    epoch, the one appearing last in the file is kept.
    """
    lines = [ln.rstrip() for ln in path.read_text(encoding="ascii", errors="replace").splitlines()]
    by_epoch: dict[float, Tle] = {}
    for l1, l2 in itertools.pairwise(lines):
        if not (l1.startswith("1 ") and l2.startswith("2 ")):
            continue
        if not (checksum_ok(l1) and checksum_ok(l2)):
            continue
        if not (int(l1[2:7]) == norad and int(l2[2:7]) == norad):
            continue
        tle = Tle(l1, l2, tle_epoch_unix(l1))
        by_epoch[tle.epoch] = tle
    return [by_epoch[e] for e in sorted(by_epoch)]


def nearest_epoch_index(epochs: np.ndarray, times: np.ndarray) -> np.ndarray:
    """For each time, the index of the nearest epoch (exact ties go to the later epoch)."""
    times = np.asarray(times, dtype=np.float64)
    after = np.clip(np.searchsorted(epochs, times, side="left"), 0, len(epochs) - 1)
    before = np.clip(after - 1, 0, len(epochs) - 1)
    take_after = np.abs(epochs[after] - times) <= np.abs(times - epochs[before])
    return np.where(take_after, after, before)


# --------------------------------------------------------------------------------------------
# Propagation with skyfield
# --------------------------------------------------------------------------------------------


def timescale(ut1_equals_utc: bool = False):
    """skyfield timescale from its built-in tables (offline).

    With ``ut1_equals_utc`` ΔT is fixed so that UT1 = UTC (valid from 2017 on), which is the
    engine's convention.
    """
    if ut1_equals_utc:
        return load.timescale(delta_t=TT_MINUS_UTC_SINCE_2017)
    return load.timescale(builtin=True)


def skyfield_times(ts, unix_seconds: np.ndarray, full_nutation: bool = False):
    """skyfield ``Time`` for integer Unix seconds.

    The seconds are split into day + second of day so that skyfield's UTC calendar applies the
    leap seconds of the date itself (``ts.utc(1970, 1, 1, 0, 0, unix)`` would not).

    Unless ``full_nutation``, the 77-term IAU 2000B nutation replaces the full IAU 2000A series
    (skyfield's own almanac does the same). For a satellite's sub-point this changes nothing:
    ``sat.at(t)`` rotates TEME to GCRS through the nutation matrix and ``wgs84.subpoint_of``
    rotates back through the same matrix, so nutation cancels (the net TEME -> ITRS rotation is
    GMST82 of UT1); the full series would only cost ~20x the time.
    """
    days, sod = np.divmod(np.asarray(unix_seconds, dtype=np.int64), 86400)
    t = ts.utc(1970, 1, 1 + days, 0, 0, sod.astype(np.float64))
    if not full_nutation:
        t._nutation_angles_radians = iau2000b_radians(t)
    return t


class RefSatellite:
    """One satellite's element sets, propagated with skyfield."""

    def __init__(self, short_name: str, ts) -> None:
        file_name, norad = TLE_FILES[short_name]
        self.name = short_name
        self.ts = ts
        self.tles = read_tles(tle_dir() / file_name, norad)
        self.epochs = np.array([t.epoch for t in self.tles])
        self._sats: dict[int, EarthSatellite] = {}

    def earth_satellite(self, index: int) -> EarthSatellite:
        if index not in self._sats:
            tle = self.tles[index]
            self._sats[index] = EarthSatellite(tle.line1, tle.line2, self.name, self.ts)
        return self._sats[index]

    def subpoints(
        self, times: np.ndarray, full_nutation: bool = False
    ) -> tuple[np.ndarray, np.ndarray]:
        """Geodetic latitude and longitude (degrees) at integer Unix ``times``."""
        times = np.asarray(times, dtype=np.int64)
        lat = np.full(len(times), np.nan)
        lon = np.full(len(times), np.nan)
        which = nearest_epoch_index(self.epochs, times)
        for index in np.unique(which):
            sel = np.flatnonzero(which == index)
            sat = self.earth_satellite(int(index))
            geo = wgs84.subpoint_of(sat.at(skyfield_times(self.ts, times[sel], full_nutation)))
            lat[sel] = geo.latitude.degrees
            lon[sel] = geo.longitude.degrees
        return lat, lon


@cache
def satellite(short_name: str, ut1_equals_utc: bool = False) -> RefSatellite:
    """Cached :class:`RefSatellite` (parsing a file takes a moment)."""
    return RefSatellite(short_name, timescale(ut1_equals_utc))


def haversine_km(lat1, lon1, lat2, lon2):
    """Great-circle distance (km) on the 6371.0088 km sphere; inputs in degrees."""
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dp = p2 - p1
    dl = np.radians(np.asarray(lon2) - np.asarray(lon1))
    a = np.sin(dp / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dl / 2) ** 2
    return 2.0 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))


# --------------------------------------------------------------------------------------------
# Brute-force matching
# --------------------------------------------------------------------------------------------


@dataclass
class Matched:
    """Matched seconds of A (sorted) with their best partner second of B and the distance."""

    t_a: np.ndarray
    t_b: np.ndarray
    dist: np.ndarray
    lat_a: np.ndarray
    lon_a: np.ndarray
    lat_b: np.ndarray
    lon_b: np.ndarray


def matched_seconds(
    a: RefSatellite, b: RefSatellite, start: int, end: int, d_max: float, t_max: int
) -> Matched:
    """Every matched second of A in ``[start, end)``, by exhaustive comparison.

    A is sampled every second of ``[start, end)``; B every second of ``[start - T, end - 1 + T]``.
    Row ``i`` of the sliding window over B's samples is then exactly B at ``tA_i - T .. tA_i + T``.
    Before evaluating haversine we drop pairs whose latitude difference alone exceeds ``D``
    (the great-circle distance is never less than ``R * |dlat|``), which is exact, not heuristic.
    """
    t_a = np.arange(start, end, dtype=np.int64)
    t_b = np.arange(start - t_max, end + t_max, dtype=np.int64)
    lat_a, lon_a = a.subpoints(t_a)
    lat_b, lon_b = b.subpoints(t_b)
    width = 2 * t_max + 1
    win_lat = sliding_window_view(lat_b, width)  # (len(t_a), width), a view
    lat_tol = math.degrees(d_max / EARTH_RADIUS_KM) * (1 + 1e-9) + 1e-9

    out_i: list[np.ndarray] = []
    out_j: list[np.ndarray] = []
    out_d: list[np.ndarray] = []
    block = max(1, 4_000_000 // width)
    for i0 in range(0, len(t_a), block):
        i1 = min(i0 + block, len(t_a))
        close_lat = np.abs(win_lat[i0:i1] - lat_a[i0:i1, None]) <= lat_tol
        rows, cols = np.nonzero(close_lat)
        ia = i0 + rows
        jb = ia + cols  # index into t_b: t_b[ia + col] = t_a[ia] - T + col
        d = haversine_km(lat_a[ia], lon_a[ia], lat_b[jb], lon_b[jb])
        ok = d <= d_max
        ia, jb, d = ia[ok], jb[ok], d[ok]
        if len(ia) == 0:
            continue
        # Best partner per second of A: smallest distance, then earliest tB.
        order = np.lexsort((jb, d, ia))
        ia, jb, d = ia[order], jb[order], d[order]
        first = np.concatenate(([True], ia[1:] != ia[:-1]))
        out_i.append(ia[first])
        out_j.append(jb[first])
        out_d.append(d[first])

    ia = np.concatenate(out_i) if out_i else np.empty(0, np.int64)
    jb = np.concatenate(out_j) if out_j else np.empty(0, np.int64)
    d = np.concatenate(out_d) if out_d else np.empty(0)
    return Matched(t_a[ia], t_b[jb], d, lat_a[ia], lon_a[ia], lat_b[jb], lon_b[jb])


def group_events(t_a: list[int], max_event_duration_s: int) -> list[list[int]]:
    """Indices of sorted matched seconds, grouped into events (plain Python on purpose)."""
    runs: list[list[int]] = []
    for i, t in enumerate(t_a):
        if runs and t - t_a[runs[-1][-1]] < MERGE_GAP_S:
            runs[-1].append(i)
        else:
            runs.append([i])
    events: list[list[int]] = []
    for run in runs:
        first = t_a[run[0]]
        if t_a[run[-1]] - first <= max_event_duration_s:
            events.append(run)
            continue
        pieces: dict[int, list[int]] = {}
        for i in run:
            pieces.setdefault((t_a[i] - first) // max_event_duration_s, []).append(i)
        events.extend(pieces[k] for k in sorted(pieces))
    return events


def _utc(ts: int) -> datetime:
    return datetime.fromtimestamp(int(ts), UTC)


def to_unix(value: str | datetime) -> int:
    """ISO date/time text or datetime (naive = UTC) to whole Unix seconds."""
    dt = datetime.fromisoformat(value) if isinstance(value, str) else value
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return math.floor(dt.timestamp())


@dataclass
class Reference:
    """Events of one pair plus everything needed to re-check other results."""

    platform_a: str
    platform_b: str
    start: int
    end: int
    d_max: float
    t_max: int
    matched: Matched
    events: list[dict]
    a: RefSatellite
    b: RefSatellite

    def distance(self, t_a: int, t_b: int) -> float:
        """Reference distance (km) between A at ``t_a`` and B at ``t_b``."""
        la, oa = self.a.subpoints(np.array([t_a]))
        lb, ob = self.b.subpoints(np.array([t_b]))
        return float(haversine_km(la, oa, lb, ob)[0])

    def is_matched(self, t_a: int) -> bool:
        """Whether second ``t_a`` of A is matched."""
        i = np.searchsorted(self.matched.t_a, t_a)
        return bool(i < len(self.matched.t_a) and self.matched.t_a[i] == t_a)


def reference_crossovers(
    sat_1: str,
    sat_2: str,
    start: str | datetime,
    end: str | datetime,
    max_distance_km: float = 100.0,
    max_time_diff_s: int = 1800,
    max_event_duration_s: int = 900,
    ut1_equals_utc: bool = False,
) -> Reference:
    """Brute-force crossover events of one pair over ``[start, end)``."""
    name_a, name_b = sorted((sat_1, sat_2))
    a = satellite(name_a, ut1_equals_utc)
    b = satellite(name_b, ut1_equals_utc)
    lo, hi = to_unix(start), to_unix(end)
    m = matched_seconds(a, b, lo, hi, float(max_distance_km), int(max_time_diff_s))
    t_list = [int(t) for t in m.t_a]
    events: list[dict] = []
    for idx in group_events(t_list, max_event_duration_s):
        best = min(idx, key=lambda i: (m.dist[i], i))
        events.append(
            {
                "platform_a": name_a,
                "platform_b": name_b,
                "time_a": _utc(m.t_a[best]),
                "time_b": _utc(m.t_b[best]),
                "dt_s": int(m.t_b[best] - m.t_a[best]),
                "distance_km": float(m.dist[best]),
                "lat_a": float(m.lat_a[best]),
                "lon_a": float(m.lon_a[best]),
                "lat_b": float(m.lat_b[best]),
                "lon_b": float(m.lon_b[best]),
                "start_a": _utc(m.t_a[idx[0]]),
                "end_a": _utc(m.t_a[idx[-1]]),
            }
        )
    return Reference(
        name_a,
        name_b,
        lo,
        hi,
        float(max_distance_km),
        int(max_time_diff_s),
        m,
        events,
        a,
        b,
    )
