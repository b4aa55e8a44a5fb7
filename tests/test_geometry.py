"""Footprint geometry: swath widths, antimeridian splitting, poles, overlap and boxes."""

from __future__ import annotations

from functools import cache

import numpy as np
import pytest
from pyproj import Geod
from shapely.geometry import MultiPolygon, Point, Polygon, box

from eomatch.core.geodesy import EARTH_RADIUS_KM, haversine_km
from eomatch.core.geometry import (
    EMPTY,
    bbox,
    geodesic_area_km2,
    intersection,
    polygonal,
    swath_edges,
    swath_polygon,
    union,
)
from eomatch.core.propagation import TleOrbit
from eomatch.wiring import build_registry, build_store

GEOD = Geod(ellps="WGS84")
T0 = 1651363200  # 2022-05-01T00:00:00Z


@cache
def orbit(name: str) -> TleOrbit:
    sat = build_registry().resolve([name])[0]
    return TleOrbit(name, build_store().archive(sat))


def meridian_track(lon: float, lat0: float, lat1: float, n: int = 21):
    return np.linspace(lat0, lat1, n), np.full(n, lon)


def band_area_km2(length_km: float, half_width_km: float) -> float:
    """Area of a band of half width w along a great-circle arc on the sphere."""
    return 2.0 * length_km * EARTH_RADIUS_KM * np.sin(half_width_km / EARTH_RADIUS_KM)


def assert_in_globe(g) -> None:
    minx, miny, maxx, maxy = g.bounds
    assert -180.0 <= minx <= maxx <= 180.0
    assert -90.0 <= miny <= maxy <= 90.0


@pytest.mark.parametrize("half", [5.0, 37.5, 92.5, 145.0, 635.0, 1520.0])
def test_edges_are_a_swath_apart_on_real_tracks(half):
    times = np.arange(T0, T0 + 6000, 20)  # more than one orbit: all latitudes, both directions
    track = orbit("S2A").track(times)
    lat_l, lon_l, lat_r, lon_r = swath_edges(track.lat, track.lon, half)
    across = haversine_km(lat_l, lon_l, lat_r, lon_r)
    np.testing.assert_allclose(across, 2 * half, rtol=0.01)
    _, _, geodesic = GEOD.inv(lon_l, lat_l, lon_r, lat_r)
    np.testing.assert_allclose(geodesic / 1000.0, 2 * half, rtol=0.01)
    # Each edge point is half a swath from its track point and perpendicular to the track.
    np.testing.assert_allclose(haversine_km(track.lat, track.lon, lat_l, lon_l), half, rtol=1e-6)
    np.testing.assert_allclose(haversine_km(track.lat, track.lon, lat_r, lon_r), half, rtol=1e-6)


def test_left_is_port_side():
    lat, lon = meridian_track(0.0, -1.0, 1.0)  # flying north: left is west
    _, lon_l, _, lon_r = swath_edges(lat, lon, 100.0)
    assert (lon_l < 0).all()
    assert (lon_r > 0).all()


def test_equatorial_swath_area_and_validity():
    lat, lon = meridian_track(10.0, -1.0, 1.0)
    g = swath_polygon(lat, lon, 145.0)
    assert isinstance(g, Polygon)
    assert g.is_valid
    assert g.exterior.is_ccw
    length = float(haversine_km(-1.0, 10.0, 1.0, 10.0))
    assert geodesic_area_km2(g) == pytest.approx(band_area_km2(length, 145.0), rel=0.01)


def test_antimeridian_swath_is_split_with_the_same_area():
    lat, lon = meridian_track(179.5, -1.0, 1.0)
    g = swath_polygon(lat, lon, 145.0)
    assert isinstance(g, MultiPolygon)
    assert g.is_valid
    assert len(g.geoms) == 2
    assert_in_globe(g)
    ref = swath_polygon(lat, np.zeros_like(lon), 145.0)
    assert geodesic_area_km2(g) == pytest.approx(geodesic_area_km2(ref), rel=1e-3)
    w, _, e, _ = bbox(g)
    assert w > e
    assert w == pytest.approx(179.5 - 1.3042, abs=1e-3)
    assert e == pytest.approx(-180 + 0.8042, abs=1e-3)


def test_track_with_longitudes_beyond_180_is_normalised():
    lat, _ = meridian_track(0.0, -1.0, 1.0)
    g = swath_polygon(lat, np.full(len(lat), 179.5 + 360.0), 145.0)
    assert_in_globe(g)
    w, _, e, _ = bbox(g)
    assert w > e  # the bbox wraps across 180°


def test_real_track_across_the_antimeridian():
    # Find a stretch of S2A's track that crosses 180° and build the scene there.
    times = np.arange(T0, T0 + 86400, 5)
    track = orbit("S2A").track(times)
    jump = np.flatnonzero(np.abs(np.diff(track.lon)) > 180)
    i = int(jump[len(jump) // 2])
    sl = slice(i - 4, i + 5)
    g = swath_polygon(track.lat[sl], track.lon[sl], 145.0)
    assert isinstance(g, MultiPolygon)
    assert g.is_valid
    assert_in_globe(g)
    length = float(np.sum(haversine_km(track.lat[sl][:-1], track.lon[sl][:-1],
                                       track.lat[sl][1:], track.lon[sl][1:])))  # fmt: skip
    assert geodesic_area_km2(g) == pytest.approx(band_area_km2(length, 145.0), rel=0.02)


def test_track_over_the_pole_encloses_it():
    lat = np.r_[np.linspace(85.0, 90.0, 6)[:-1], 90.0, np.linspace(90.0, 85.0, 6)[1:]]
    lon = np.r_[np.zeros(5), 0.0, np.full(5, 180.0)]
    g = swath_polygon(lat, lon, 145.0)
    assert g.is_valid
    assert_in_globe(g)
    assert g.bounds[3] == 90.0
    assert bbox(g)[0] == -180.0
    assert bbox(g)[2] == 180.0
    length = 10.0 * 111.2  # ten degrees of meridian (sphere, approximately)
    assert geodesic_area_km2(g) == pytest.approx(band_area_km2(length, 145.0), rel=0.02)
    # Points on both sides of the pole and near it are inside; far points are not.
    assert g.intersects(Point(0.0, 89.9))
    assert g.intersects(Point(90.0, 89.5))  # beside the pole, within the swath
    assert not g.intersects(Point(90.0, 86.0))


@pytest.mark.parametrize("name", ["S2A", "N20"])
def test_wide_swath_near_the_turning_latitude(name):
    # VIIRS-wide swath (3040 km) at ~81°: the pole lies inside the footprint.
    times = np.arange(T0, T0 + 6000, 5)
    track = orbit(name).track(times)
    i = int(np.argmax(track.lat))
    sl = slice(i - 40, i + 41)
    g = swath_polygon(track.lat[sl], track.lon[sl], 1520.0)
    assert g.is_valid
    assert_in_globe(g)
    assert g.bounds[3] == 90.0  # closed through the north pole
    length = float(np.sum(haversine_km(track.lat[sl][:-1], track.lon[sl][:-1],
                                       track.lat[sl][1:], track.lon[sl][1:])))  # fmt: skip
    assert geodesic_area_km2(g) == pytest.approx(band_area_km2(length, 1520.0), rel=0.02)


def test_narrow_swath_near_the_pole_keeps_its_area():
    times = np.arange(T0, T0 + 6000, 5)
    track = orbit("S2A").track(times)
    i = int(np.argmax(track.lat))
    sl = slice(i - 4, i + 5)
    g = swath_polygon(track.lat[sl], track.lon[sl], 145.0)
    assert g.is_valid
    length = float(np.sum(haversine_km(track.lat[sl][:-1], track.lon[sl][:-1],
                                       track.lat[sl][1:], track.lon[sl][1:])))  # fmt: skip
    assert geodesic_area_km2(g) == pytest.approx(band_area_km2(length, 145.0), rel=0.02)


def test_swath_rejects_bad_input():
    with pytest.raises(ValueError, match="half width"):
        swath_polygon([0, 1], [0, 0], 0.0)
    with pytest.raises(ValueError, match="two distinct"):
        swath_polygon([0, 0], [0, 0], 10.0)
    with pytest.raises(ValueError, match="two distinct"):
        swath_polygon([0, np.nan], [0, 0], 10.0)


def test_touching_squares_do_not_intersect():
    a, b = box(0, 0, 1, 1), box(1, 0, 2, 1)
    assert intersection([a, b]).is_empty
    assert intersection([a, box(1, 1, 2, 2)]).is_empty  # corner only
    assert intersection([a, box(5, 5, 6, 6)]).is_empty


def test_overlapping_squares_intersect():
    g = intersection([box(0, 0, 1, 1), box(0.5, 0, 2, 1)])
    assert isinstance(g, Polygon)
    assert geodesic_area_km2(g) == pytest.approx(12308.5 / 2, rel=0.01)


def test_intersection_across_the_antimeridian():
    a = MultiPolygon([box(179, 0, 180, 1), box(-180, 0, -179, 1)])
    b = MultiPolygon([box(179.5, 0.5, 180, 2), box(-180, 0.5, -179.5, 2)])
    g = intersection([a, b])
    assert isinstance(g, MultiPolygon)
    assert geodesic_area_km2(g) == pytest.approx(geodesic_area_km2(box(0, 0.5, 1, 1)), rel=1e-6)
    assert bbox(g) == pytest.approx((179.5, 0.5, -179.5, 1.0))


def test_intersection_repairs_invalid_input():
    bowtie = Polygon([(0, 0), (1, 1), (1, 0), (0, 1), (0, 0)])
    assert not bowtie.is_valid
    g = intersection([bowtie, box(-1, -1, 2, 2)])
    assert g.is_valid
    assert g.area == pytest.approx(0.5)


def test_polygonal_drops_lines_and_points():
    from shapely.geometry import GeometryCollection, LineString

    mixed = GeometryCollection([box(0, 0, 1, 1), LineString([(2, 2), (3, 3)]), Point(5, 5)])
    assert polygonal(mixed).equals(box(0, 0, 1, 1))
    assert polygonal(LineString([(0, 0), (1, 1)])).is_empty


def test_union_of_split_parts():
    g = union([box(170, 0, 180, 1), box(-180, 0, -170, 1), box(175, 0.5, 180, 2)])
    assert g.is_valid
    w, _, e, _ = bbox(g)
    assert w > e


def test_geodesic_area():
    assert geodesic_area_km2(box(0, 0, 1, 1)) == pytest.approx(12308.5, rel=1e-3)
    cap = 2 * np.pi * 6371.0**2 * (1 - np.sin(np.radians(80)))
    assert geodesic_area_km2(box(-180, 80, 180, 90)) == pytest.approx(cap, rel=0.02)
    assert geodesic_area_km2(EMPTY) == 0.0
    assert geodesic_area_km2(Point(0, 0)) == 0.0


def test_bbox():
    assert bbox(box(10, 20, 30, 40)) == (10, 20, 30, 40)
    assert bbox(MultiPolygon([box(170, 0, 180, 1), box(-180, -1, -175, 0.5)])) == (
        170,
        -1,
        -175,
        1,
    )
    # Parts far apart on the same side: the smaller interval wins (here not wrapping).
    assert bbox(MultiPolygon([box(-170, 0, -160, 1), box(150, 0, 160, 1)])) == (150, 0, -160, 1)
    assert bbox(MultiPolygon([box(-100, 0, -90, 1), box(80, 0, 90, 1)])) == (-100, 0, 90, 1)
    with pytest.raises(ValueError, match="empty"):
        bbox(EMPTY)
