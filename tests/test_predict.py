"""Predicted products: absolute scene grid, deterministic ids, footprints from the swath."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from functools import cache

import numpy as np
import pytest
from pyproj import Geod

from eomatch.core.collections import CollectionInfo, builtin_collections
from eomatch.core.geometry import geodesic_area_km2, swath_edges
from eomatch.core.predict import predict_products, predicted_product_id, scene_index_range
from eomatch.core.products import SensorKey
from eomatch.core.propagation import TleOrbit
from eomatch.wiring import build_registry, build_store

START = datetime(2022, 5, 1, 10, 0, 7, tzinfo=UTC)
S2 = SensorKey("S2_MSI_L1C", "Sentinel-2A")
LS9 = SensorKey("LANDSAT_C2L1", "Landsat-9")
GEOD = Geod(ellps="WGS84")


@cache
def orbit(name: str) -> TleOrbit:
    sat = build_registry().resolve([name])[0]
    return TleOrbit(name, build_store().archive(sat))


def info(collection: str) -> CollectionInfo:
    return builtin_collections()[collection]


def test_scene_grid_is_absolute():
    prods = predict_products(
        orbit("S2A"), S2, info("S2_MSI_L1C"), START, START + timedelta(seconds=300)
    )
    assert prods
    for p in prods:
        assert p.start.timestamp() % 40 == 0
        assert p.end - p.start == timedelta(seconds=40)
    starts = [p.start for p in prods]
    assert starts == sorted(starts)
    assert all(b.start == a.end for a, b in itertools.pairwise(prods))


def test_every_scene_overlapping_the_window_and_no_other():
    end = START + timedelta(seconds=95)
    prods = predict_products(orbit("LS9"), LS9, info("LANDSAT_C2L1"), START, end)
    assert all(p.start < end and p.end > START for p in prods)
    assert prods[0].start <= START < prods[0].end
    assert prods[-1].start < end <= prods[-1].end
    # 10:00:07 .. 10:01:42 with 25 s scenes on the grid: 10:00:00, :25, :50, 10:01:15, :40
    assert len(prods) == 5


def test_scene_index_range():
    t = datetime.fromtimestamp(4000, UTC)
    assert list(scene_index_range(t, t + timedelta(seconds=40), 40)) == [100]
    assert list(scene_index_range(t, t + timedelta(seconds=41), 40)) == [100, 101]
    assert list(scene_index_range(t - timedelta(seconds=1), t + timedelta(seconds=1), 40)) == [
        99,
        100,
    ]
    assert list(scene_index_range(t, t, 40)) == []


def test_same_scene_from_two_overlapping_windows_is_identical():
    o, i = orbit("S2A"), info("S2_MSI_L1C")
    first = predict_products(o, S2, i, START, START + timedelta(seconds=200))
    second = predict_products(
        o, S2, i, START + timedelta(seconds=77), START + timedelta(seconds=400)
    )
    shared = {p.id for p in first} & {p.id for p in second}
    assert len(shared) >= 3
    by_id = {p.id: p for p in second}
    for p in first:
        if p.id in shared:
            q = by_id[p.id]
            assert (p.start, p.end) == (q.start, q.end)
            assert p.geometry.equals_exact(q.geometry, tolerance=0.0)
    again = predict_products(o, S2, i, START, START + timedelta(seconds=200))
    assert [p.id for p in again] == [p.id for p in first]


def test_ids_and_properties():
    p = predict_products(
        orbit("S2A"), S2, info("S2_MSI_L1C"), START, START + timedelta(seconds=1),
        constellation="Sentinel-2",
    )[0]  # fmt: skip
    assert p.id == "S2_MSI_L1C_Sentinel-2A_20220501T100000_PRED"
    assert p.predicted is True
    assert p.sensor == S2
    assert p.properties == {
        "eomatch:predicted": True,
        "platform": "Sentinel-2A",
        "instruments": ["MSI"],
        "constellation": "Sentinel-2",
    }
    assert (
        predicted_product_id(SensorKey("X", "My Sat 1"), p.start) == "X_MySat1_20220501T100000_PRED"
    )


@pytest.mark.parametrize(
    ("name", "sensor", "collection"),
    [("S2A", S2, "S2_MSI_L1C"), ("LS9", LS9, "LANDSAT_C2L1"), ("S3A", None, "S3_EFR")],
)
def test_footprints_have_the_swath_width_and_sane_areas(name, sensor, collection):
    i = info(collection)
    sensor = sensor or SensorKey(collection, name)
    prods = predict_products(orbit(name), sensor, i, START, START + timedelta(seconds=6000))
    assert len(prods) >= 6000 // i.scene_s
    for p in prods:
        assert p.geometry.is_valid
        minx, miny, maxx, maxy = p.geometry.bounds
        assert -180 <= minx <= maxx <= 180
        assert -90 <= miny <= maxy <= 90
        t = np.arange(p.start.timestamp(), p.end.timestamp() + 1, 5)
        track = orbit(name).track(t)
        lat_l, lon_l, lat_r, lon_r = swath_edges(track.lat, track.lon, i.swath_km / 2)
        _, _, across = GEOD.inv(lon_l, lat_l, lon_r, lat_r)
        np.testing.assert_allclose(across / 1000, i.swath_km, rtol=0.01)
        _, _, along = GEOD.inv(track.lon[:-1], track.lat[:-1], track.lon[1:], track.lat[1:])
        expected = i.swath_km * along.sum() / 1000
        assert geodesic_area_km2(p.geometry) == pytest.approx(expected, rel=0.03)


def test_nadir_only_collection_is_rejected():
    altimeter = CollectionInfo("ALT_L2", "Poseidon-4", 0.0, 10, ("S6",))
    with pytest.raises(ValueError, match="no swath"):
        predict_products(orbit("S2A"), S2, altimeter, START, START + timedelta(seconds=60))


def test_bad_step_and_empty_window():
    o, i = orbit("S2A"), info("S2_MSI_L1C")
    with pytest.raises(ValueError, match="step"):
        predict_products(o, S2, i, START, START + timedelta(seconds=60), step_s=0)
    assert predict_products(o, S2, i, START, START) == []


def test_scene_length_not_a_multiple_of_the_step():
    i = info("VIIRS_SDR")  # 86 s granules, 5 s step
    prods = predict_products(
        orbit("N20"), SensorKey(i.id, "NOAA-20"), i, START, START + timedelta(seconds=300)
    )
    assert all(p.end - p.start == timedelta(seconds=86) for p in prods)
    assert all(p.geometry.is_valid for p in prods)
