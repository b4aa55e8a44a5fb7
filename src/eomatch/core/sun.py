"""Solar elevation, accurate to about 0.01 degrees (NOAA low-precision almanac)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


def solar_elevation_deg(unix_s: FloatArray, lat_deg: FloatArray, lon_deg: FloatArray) -> FloatArray:
    """Geometric elevation of the Sun's centre above the horizon, degrees (no refraction)."""
    d = (np.asarray(unix_s, dtype=np.float64) - 946728000.0) / 86400.0  # days since J2000.0
    g = np.radians(np.mod(357.529 + 0.98560028 * d, 360.0))
    q = np.mod(280.459 + 0.98564736 * d, 360.0)
    ecl_lon = np.radians(q + 1.915 * np.sin(g) + 0.020 * np.sin(2 * g))
    eps = np.radians(23.439 - 0.00000036 * d)
    ra = np.arctan2(np.cos(eps) * np.sin(ecl_lon), np.cos(ecl_lon))
    dec = np.arcsin(np.sin(eps) * np.sin(ecl_lon))
    gmst_h = np.mod(18.697374558 + 24.06570982441908 * d, 24.0)
    ha = np.radians(gmst_h * 15.0 + np.asarray(lon_deg)) - ra
    lat = np.radians(lat_deg)
    sin_el = np.sin(lat) * np.sin(dec) + np.cos(lat) * np.cos(dec) * np.cos(ha)
    return np.asarray(np.degrees(np.arcsin(np.clip(sin_el, -1.0, 1.0))))
