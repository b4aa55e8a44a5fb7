"""Antimeridian-safe footprints in lon/lat: swaths, intersections, areas and bounding boxes.

Conventions (shared by predicted and provider footprints):

* Geometries are shapely (Multi)Polygons in WGS84 lon/lat with longitudes in [-180, 180].
  A footprint that crosses the antimeridian is a MultiPolygon split at ±180 (never one polygon
  spanning 350° of longitude), so planar shapely operations stay meaningful.
* Swath edges are computed on the mean-Earth sphere of :mod:`eomatch.core.geodesy` (great-circle
  destination in vector form, which has no bearing singularity at the poles); vertices are then
  joined by straight lon/lat segments, which is accurate for the ~35 km vertex spacing used.
* A swath whose outline winds around a pole (net longitude change of ±360° along the ring) is
  closed through that pole: the ring is extended along the pole's latitude (±90) and the result
  is split into [-180, 180] like any other footprint; it then reaches latitude ±90 across all
  longitudes. Nothing ever leaves latitude [-90, 90].
* Overlap means positive area: a shared edge or corner (a LineString / Point intersection) is no
  overlap (the previous generation accepted touching footprints, W10).
* Areas are geodesic on the WGS84 ellipsoid (pyproj), in km².
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence

import numpy as np
import numpy.typing as npt
import shapely
from pyproj import Geod
from shapely import affinity
from shapely.geometry import MultiPolygon, Polygon, box
from shapely.geometry.base import BaseGeometry
from shapely.geometry.polygon import orient

from eomatch.core.geodesy import EARTH_RADIUS_KM
from eomatch.core.propagation import unit_vectors
from eomatch.core.vocabulary import BBox
from eomatch.errors import InvalidValueError

FloatArray = npt.NDArray[np.float64]

_GEOD = Geod(ellps="WGS84")
MIN_AREA_KM2 = 1e-6
"""Intersections smaller than this (1 m²) are rounding slivers of touching edges, not overlap."""

GRID_DEG = 1e-9
"""Snapping grid (~0.1 mm) for parts shifted by 360°, so the two sides of a seam meet exactly."""

MAX_EDGE_DLON_DEG = 0.5
"""Longest longitude step of a footprint edge (denser near the poles)."""
DENSIFY_DEG = 0.5
"""Longest lon/lat edge handed to the geodesic area computation."""

EMPTY = Polygon()


def _track_vectors(lat: npt.ArrayLike, lon: npt.ArrayLike, half_width_km: float) -> FloatArray:
    """Finite, distinct consecutive track points as unit vectors (checked)."""
    lat_a = np.asarray(lat, dtype=np.float64)
    lon_a = np.asarray(lon, dtype=np.float64)
    if not half_width_km > 0 or not math.isfinite(half_width_km):
        raise InvalidValueError(
            f"swath half width must be a positive number of km, got {half_width_km}"
        )
    ok = np.isfinite(lat_a) & np.isfinite(lon_a)
    p = unit_vectors(lat_a[ok], lon_a[ok])
    if len(p) >= 2:
        keep = np.concatenate(([True], np.linalg.norm(np.diff(p, axis=0), axis=1) > 1e-12))
        p = p[keep]
    if len(p) < 2:
        raise InvalidValueError("a swath needs at least two distinct finite track points")
    return p


def swath_edges(
    lat: npt.ArrayLike, lon: npt.ArrayLike, half_width_km: float
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    """Left and right swath edge points ``(lat_left, lon_left, lat_right, lon_right)``.

    Each track point is moved ``half_width_km`` along the great circle perpendicular to the
    local direction of flight (left = port side). Non-finite and repeated points are dropped.
    """
    p = _track_vectors(lat, lon, half_width_km)
    left, right = _edges(p, half_width_km / EARTH_RADIUS_KM)
    lat_l, lon_l = _to_latlon(left)
    lat_r, lon_r = _to_latlon(right)
    return lat_l, lon_l, lat_r, lon_r


def swath_polygon(
    lat: npt.ArrayLike, lon: npt.ArrayLike, half_width_km: float
) -> Polygon | MultiPolygon:
    """Footprint of a swath centred on a sub-satellite track, split at the antimeridian.

    The outline is the left edge (:func:`swath_edges`) forward and the right edge backward.
    Meant for scene- or event-length tracks (well under half an orbit): a track that overlaps
    itself would give a self-intersecting outline, which is only repaired, not reinterpreted.

    Args:
        lat: sub-satellite latitudes (degrees), in flight order; at least two finite points.
        lon: sub-satellite longitudes (degrees), any range.
        half_width_km: half the across-track swath width; must be positive.

    Returns:
        A valid Polygon, or a MultiPolygon when the footprint crosses the antimeridian.

    Raises:
        ValueError: fewer than two distinct points or a non-positive half width.
    """
    p = _track_vectors(lat, lon, half_width_km)
    left, right = _edges(p, half_width_km / EARTH_RADIUS_KM)
    ring = _densify(np.concatenate([left, right[::-1]]))
    return _ring_to_geometry(ring)


def _densify(ring: FloatArray) -> FloatArray:
    """Insert great-circle points wherever a ring edge spans more than MAX_EDGE_DLON_DEG.

    Straight lon/lat segments stand in for great-circle edges only where longitude changes
    little per edge; near the poles it changes fast, so edges are subdivided there.
    """
    nxt = np.roll(ring, -1, axis=0)
    _, lon = _to_latlon(ring)
    dlon = np.abs((np.diff(np.append(lon, lon[0])) + 180.0) % 360.0 - 180.0)
    pieces = np.maximum(1, np.ceil(dlon / MAX_EDGE_DLON_DEG).astype(np.int64))
    if (pieces == 1).all():
        return ring
    seg = np.repeat(np.arange(len(ring)), pieces)
    frac = (np.arange(len(seg)) - np.repeat(np.cumsum(pieces) - pieces, pieces)) / np.repeat(
        pieces, pieces
    )
    pts = ring[seg] * (1.0 - frac)[:, None] + nxt[seg] * frac[:, None]
    return np.asarray(pts / np.linalg.norm(pts, axis=1, keepdims=True))


def _edges(p: FloatArray, angle: float) -> tuple[FloatArray, FloatArray]:
    """Left and right edge points (unit vectors) at central ``angle`` from each track point."""
    ahead = np.empty_like(p)
    ahead[1:-1] = p[2:] - p[:-2]
    ahead[0] = p[1] - p[0]
    ahead[-1] = p[-1] - p[-2]
    # Tangent of the track: the chord direction projected on the local tangent plane.
    tangent = ahead - np.einsum("ij,ij->i", ahead, p)[:, None] * p
    tangent /= np.linalg.norm(tangent, axis=1, keepdims=True)
    normal = np.cross(p, tangent)  # points to the left of the direction of flight
    c, s = math.cos(angle), math.sin(angle)
    return c * p + s * normal, c * p - s * normal


def _to_latlon(v: FloatArray) -> tuple[FloatArray, FloatArray]:
    lat = np.degrees(np.arctan2(v[:, 2], np.hypot(v[:, 0], v[:, 1])))
    lon = np.degrees(np.arctan2(v[:, 1], v[:, 0]))
    return lat, lon


def _ring_to_geometry(ring: FloatArray) -> Polygon | MultiPolygon:
    """Closed outline (unit vectors, not repeated at the end) to a split lon/lat geometry."""
    lat, lon = _to_latlon(ring)
    closed = np.unwrap(np.radians(np.append(lon, lon[0])))
    ulon = np.degrees(closed)
    winding = ulon[-1] - ulon[0]
    coords = np.column_stack([ulon[:-1], lat])
    if abs(winding) > 180.0:
        # The outline goes once around a pole: close it through the pole it encloses.
        pole = 90.0 if float(np.mean(lat)) >= 0 else -90.0
        coords = np.vstack([coords, [[ulon[-1], lat[0]], [ulon[-1], pole], [ulon[0], pole]]])
    poly = Polygon(coords)
    return split_antimeridian(poly)


def split_antimeridian(geom: BaseGeometry) -> Polygon | MultiPolygon:
    """Cut a geometry with unwrapped longitudes into parts shifted back into [-180, 180]."""
    geom = polygonal(geom)
    if geom.is_empty:
        return EMPTY
    minx, _, maxx, _ = geom.bounds
    if minx >= -180.0 and maxx <= 180.0:
        return _finish(geom)
    parts: list[BaseGeometry] = []
    for k in range(math.floor((minx + 180.0) / 360.0), math.floor((maxx + 180.0) / 360.0) + 1):
        window = box(k * 360.0 - 180.0, -90.0, k * 360.0 + 180.0, 90.0)
        part = polygonal(shapely.intersection(geom, window))
        if not part.is_empty:
            parts.append(affinity.translate(part, xoff=-k * 360.0))
    return _finish(shapely.union_all(parts, grid_size=GRID_DEG)) if parts else EMPTY


def polygonal(geom: BaseGeometry) -> Polygon | MultiPolygon:
    """The polygonal part of a geometry, made valid; lines and points (touching) are dropped."""
    if geom.is_empty:
        return EMPTY
    if not geom.is_valid:
        geom = shapely.make_valid(geom)
    if isinstance(geom, Polygon | MultiPolygon):
        return geom
    polys: list[Polygon] = []
    for g in shapely.get_parts(geom):
        if isinstance(g, Polygon):
            polys.append(g)
        elif isinstance(g, MultiPolygon):
            polys.extend(g.geoms)
        elif g.geom_type == "GeometryCollection":
            sub = polygonal(g)
            polys.extend(sub.geoms if isinstance(sub, MultiPolygon) else [sub])
    polys = [q for q in polys if not q.is_empty]
    if not polys:
        return EMPTY
    return polys[0] if len(polys) == 1 else MultiPolygon(polys)


def _finish(geom: BaseGeometry) -> Polygon | MultiPolygon:
    """Valid, polygonal, clipped to the globe, counter-clockwise exterior rings."""
    g = polygonal(geom)
    if g.is_empty:
        return EMPTY
    minx, miny, maxx, maxy = g.bounds
    if minx < -180.0 or maxx > 180.0 or miny < -90.0 or maxy > 90.0:
        g = polygonal(shapely.intersection(g, box(-180.0, -90.0, 180.0, 90.0)))
    if isinstance(g, MultiPolygon):
        return MultiPolygon([orient(q, 1.0) for q in g.geoms])
    return orient(g, 1.0) if not g.is_empty else EMPTY


def geodesic_area_km2(geom: BaseGeometry) -> float:
    """Area on the WGS84 ellipsoid in km² (0 for empty or non-polygonal geometries)."""
    g = polygonal(geom)
    if g.is_empty:
        return 0.0
    # Footprint edges are straight in lon/lat (as shapely treats them); densifying makes the
    # geodesic edges follow them, so long parallels and pole caps are measured correctly.
    g = shapely.segmentize(g, DENSIFY_DEG)
    total = 0.0
    for poly in g.geoms if isinstance(g, MultiPolygon) else [g]:
        total += _ring_area(poly.exterior)
        for hole in poly.interiors:
            total -= _ring_area(hole)
    return abs(total) / 1e6


def _ring_area(ring: BaseGeometry) -> float:
    xy = shapely.get_coordinates(ring)
    area, _ = _GEOD.polygon_area_perimeter(xy[:, 0], xy[:, 1])
    return abs(float(area))


def intersection_with_area(geoms: Iterable[BaseGeometry]) -> tuple[Polygon | MultiPolygon, float]:
    """Common area of all geometries and its geodesic size in km².

    Empty (with area 0) when they only touch, do not meet, or share less than MIN_AREA_KM2.
    """
    result: BaseGeometry | None = None
    for g in geoms:
        g = polygonal(g)
        result = g if result is None else polygonal(shapely.intersection(result, g))
        if result.is_empty:
            return EMPTY, 0.0
    if result is None:
        return EMPTY, 0.0
    out = _finish(result)
    area = geodesic_area_km2(out) if not out.is_empty else 0.0
    if area < MIN_AREA_KM2:
        return EMPTY, 0.0
    return out, area


def intersection(geoms: Iterable[BaseGeometry]) -> Polygon | MultiPolygon:
    """Common area of all geometries; empty when they only touch or do not meet at all."""
    return intersection_with_area(geoms)[0]


def union(geoms: Sequence[BaseGeometry]) -> Polygon | MultiPolygon:
    """Union of polygonal geometries, valid and split at the antimeridian."""
    parts = [polygonal(g) for g in geoms]
    parts = [g for g in parts if not g.is_empty]
    return _finish(shapely.union_all(parts)) if parts else EMPTY


def bbox(geom: BaseGeometry) -> BBox:
    """``(west, south, east, north)`` with ``west > east`` when the geometry crosses 180°.

    The STAC / GeoJSON convention: the box is the smallest longitude interval, on the circle,
    that covers every part. A geometry reaching all longitudes (a pole cap) gets -180..180.

    Raises:
        ValueError: for an empty geometry (it has no box).
    """
    if geom.is_empty:
        raise InvalidValueError("an empty geometry has no bounding box")
    parts = list(geom.geoms) if isinstance(geom, MultiPolygon) else [geom]
    bounds = np.array([q.bounds for q in parts], dtype=np.float64)
    south, north = float(bounds[:, 1].min()), float(bounds[:, 3].max())
    intervals = sorted((float(b[0]), float(b[2])) for b in bounds)
    merged: list[list[float]] = []
    for lo, hi in intervals:
        if merged and lo <= merged[-1][1] + GRID_DEG:
            merged[-1][1] = max(merged[-1][1], hi)
        else:
            merged.append([lo, hi])
    # The largest longitude gap (on the circle) is what the box leaves out.
    wrap_gap = merged[0][0] + 360.0 - merged[-1][1]
    best_gap, west, east = wrap_gap, merged[0][0], merged[-1][1]
    for left, right in itertools.pairwise(merged):
        gap = right[0] - left[1]
        if gap > best_gap:
            best_gap, west, east = gap, right[0], left[1]
    if best_gap <= GRID_DEG:
        return (-180.0, south, 180.0, north)
    return (west, south, east, north)
