"""Great-circle geometry on the mean-Earth sphere used by the crossover definition."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:  # annotation only: importing the geodesy loads nothing else of eomatch
    from eomatch.core.vocabulary import BBox

EARTH_RADIUS_KM = 6371.0088
"""IUGG mean Earth radius; the crossover definition measures distances on this sphere."""

FloatArray = npt.NDArray[np.float64]


def haversine_km(
    lat1: FloatArray | float,
    lon1: FloatArray | float,
    lat2: FloatArray | float,
    lon2: FloatArray | float,
) -> FloatArray:
    """Great-circle distance in km between points given in degrees."""
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dphi = p2 - p1
    dlmb = np.radians(np.asarray(lon2) - np.asarray(lon1))
    h = np.sin(dphi / 2.0) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dlmb / 2.0) ** 2
    return np.asarray(2.0 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.clip(h, 0.0, 1.0))))


def cos_of_distance(distance_km: float) -> float:
    """Cosine of the central angle for a great-circle distance; clamps beyond half the globe."""
    angle = min(distance_km / EARTH_RADIUS_KM, np.pi)
    return float(np.cos(angle))


def chord_km(distance_km: float) -> float:
    """Straight-line (chord) length for a great-circle distance on the sphere."""
    angle = min(distance_km / EARTH_RADIUS_KM, np.pi)
    return float(2.0 * EARTH_RADIUS_KM * np.sin(angle / 2.0))


def midpoint(
    lat1: FloatArray, lon1: FloatArray, lat2: FloatArray, lon2: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """Great-circle midpoints (degrees)."""
    p1, l1, p2, l2 = (np.radians(np.asarray(v, dtype=np.float64)) for v in (lat1, lon1, lat2, lon2))
    v = np.stack(
        [
            np.cos(p1) * np.cos(l1) + np.cos(p2) * np.cos(l2),
            np.cos(p1) * np.sin(l1) + np.cos(p2) * np.sin(l2),
            np.sin(p1) + np.sin(p2),
        ]
    )
    lat = np.degrees(np.arctan2(v[2], np.hypot(v[0], v[1])))
    lon = np.degrees(np.arctan2(v[1], v[0]))
    return lat, lon


def in_bbox(lat: FloatArray, lon: FloatArray, bbox: BBox) -> npt.NDArray[np.bool_]:
    """Points inside ``(west, south, east, north)``; ``west > east`` crosses the antimeridian."""
    w, s, e, n = bbox
    lat_ok = (lat >= s) & (lat <= n)
    lon_ok = (lon >= w) & (lon <= e) if w <= e else (lon >= w) | (lon <= e)
    return np.asarray(lat_ok & lon_ok)
