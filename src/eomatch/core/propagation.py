"""Vectorised SGP4 propagation to geodetic sub-satellite points.

Each instant uses the element set whose epoch is nearest (see :meth:`ElementArchive.nearest`);
instants sharing an element set are propagated in one ``sgp4_array`` call. TEME is rotated to
Earth-fixed with the IAU-82 Greenwich mean sidereal time, taking UT1 = UTC (|UT1-UTC| < 0.9 s,
at most ~0.4 km of longitude) and ignoring polar motion (metres).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from eomatch.core.tle import ElementArchive

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

UNIX_EPOCH_JD = 2440587.5
WGS84_A = 6378.137
WGS84_F = 1.0 / 298.257223563
WGS84_E2 = WGS84_F * (2.0 - WGS84_F)


@dataclass(frozen=True)
class Track:
    """Sub-satellite points at a set of instants (NaN where SGP4 failed)."""

    times: npt.NDArray[np.int64] | npt.NDArray[np.float64]
    """Unix seconds (UTC)."""
    lat: FloatArray
    """Geodetic latitude, degrees."""
    lon: FloatArray
    """Longitude, degrees in [-180, 180)."""

    def unit_vectors(self) -> FloatArray:
        """Points on the unit sphere for (lat, lon) taken as spherical coordinates."""
        return unit_vectors(self.lat, self.lon)


def unit_vectors(lat_deg: FloatArray, lon_deg: FloatArray) -> FloatArray:
    """(n, 3) unit vectors for latitudes/longitudes in degrees."""
    lat = np.radians(lat_deg)
    lon = np.radians(lon_deg)
    c = np.cos(lat)
    return np.stack([c * np.cos(lon), c * np.sin(lon), np.sin(lat)], axis=-1)


def gmst_rad(unix_s: FloatArray) -> FloatArray:
    """Greenwich mean sidereal time (IAU-82), radians, for UT1 ≈ UTC Unix seconds."""
    days = (unix_s - 946728000.0) / 86400.0  # since J2000.0 (2000-01-01 12:00 UT1)
    t = days / 36525.0
    secs = (
        67310.54841
        + (876600.0 * 3600.0 + 8640184.812866) * t
        + 0.093104 * t * t
        - 6.2e-6 * t * t * t
    )
    return np.mod(secs, 86400.0) * (2.0 * np.pi / 86400.0)


def ecef_to_geodetic(x: FloatArray, y: FloatArray, z: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Geodetic latitude and longitude (degrees) on WGS84 for Earth-fixed km coordinates."""
    lon = np.arctan2(y, x)
    p = np.hypot(x, y)
    # Bowring's iteration converges to sub-millimetre in three steps for LEO altitudes.
    lat = np.arctan2(z, p * (1.0 - WGS84_E2))
    for _ in range(3):
        s = np.sin(lat)
        n = WGS84_A / np.sqrt(1.0 - WGS84_E2 * s * s)
        lat = np.arctan2(z + WGS84_E2 * n * s, p)
    lon_deg = np.degrees(lon)
    lon_deg = np.where(lon_deg >= 180.0, lon_deg - 360.0, lon_deg)
    return np.degrees(lat), lon_deg


def teme_positions(archive: ElementArchive, times: npt.ArrayLike) -> FloatArray:
    """TEME positions (km) at Unix-second ``times``; NaN rows where SGP4 reports an error."""
    times = np.asarray(times)
    out = np.full((len(times), 3), np.nan)
    if len(times) == 0:
        return out
    idx = archive.nearest(times)
    whole_days = np.floor_divide(times, 86400)
    jd = UNIX_EPOCH_JD + whole_days.astype(np.float64)
    fr = (times - whole_days * 86400).astype(np.float64) / 86400.0
    order = np.argsort(idx, kind="stable")
    sorted_idx = idx[order]
    bounds = np.flatnonzero(np.diff(sorted_idx)) + 1
    starts = np.concatenate(([0], bounds))
    ends = np.concatenate((bounds, [len(order)]))
    for s, e in zip(starts.tolist(), ends.tolist(), strict=True):
        sel = order[s:e]
        rec = archive.satrec(int(sorted_idx[s]))
        err, r, _v = rec.sgp4_array(jd[sel], fr[sel])
        r = np.asarray(r)
        bad = np.asarray(err) != 0
        if bad.any():
            r[bad] = np.nan
        out[sel] = r
    return out


def propagate(archive: ElementArchive, times: npt.ArrayLike) -> Track:
    """Geodetic sub-satellite points at Unix-second ``times`` (integers or fractions)."""
    times = np.asarray(times)
    r = teme_positions(archive, times)
    g = gmst_rad(times.astype(np.float64))
    cg, sg = np.cos(g), np.sin(g)
    x = cg * r[:, 0] + sg * r[:, 1]
    y = -sg * r[:, 0] + cg * r[:, 1]
    lat, lon = ecef_to_geodetic(x, y, r[:, 2])
    return Track(times=times, lat=lat, lon=lon)


@dataclass(frozen=True)
class TleOrbit:
    """An :class:`~eomatch.core.crossovers.Orbit` backed by an element-set archive."""

    name: str
    archive: ElementArchive

    def track(self, times: npt.ArrayLike) -> Track:
        """Sub-satellite points at Unix-second ``times``."""
        return propagate(self.archive, times)
