"""Events from crossovers and matchups from products: overlap, time, ids, order, speed."""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime, timedelta
from functools import cache

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from shapely.geometry import MultiPolygon, Polygon, box

from eomatch.core.collections import builtin_collections
from eomatch.core.crossovers import Crossover
from eomatch.core.geometry import bbox, geodesic_area_km2
from eomatch.core.matchups import event_from_crossover, find_matchups, with_matchups
from eomatch.core.predict import predict_products
from eomatch.core.products import MatchupEvent, Product, SensorKey, pair_id
from eomatch.core.propagation import TleOrbit
from eomatch.wiring import build_registry, build_store
from eomatch.workflows.crossovers import find_crossovers

S2 = SensorKey("S2_MSI_L1C", "Sentinel-2A")
LS9 = SensorKey("LANDSAT_C2L1", "Landsat-9")
S3 = SensorKey("S3_EFR", "Sentinel-3A")
KEYS = {"S2A": S2, "LS9": LS9}
COLLECTIONS = {"S2A": "S2_MSI_L1C", "LS9": "LANDSAT_C2L1"}
T0 = datetime(2022, 5, 1, 12, 0, tzinfo=UTC)
T_MAX = 1800


@cache
def orbit(name: str) -> TleOrbit:
    sat = build_registry().resolve([name])[0]
    return TleOrbit(name, build_store().archive(sat))


@cache
def crossovers() -> tuple[Crossover, ...]:
    return tuple(find_crossovers(["S2A", "LS9"], "2022-05-01", "2022-05-02"))


def real_event(c: Crossover) -> tuple[MatchupEvent, dict[SensorKey, list[Product]]]:
    cols = builtin_collections()
    a, b = c.platform_a, c.platform_b
    ia, ib = cols[COLLECTIONS[a]], cols[COLLECTIONS[b]]
    ev = event_from_crossover(
        c, (KEYS[a], KEYS[b]), orbit(a), orbit(b), ia.swath_km, ib.swath_km, T_MAX
    )
    start_b = datetime.fromisoformat(str(ev.properties["eomatch:start_b"]))
    end_b = datetime.fromisoformat(str(ev.properties["eomatch:end_b"]))
    one = timedelta(seconds=1)
    products = {
        KEYS[a]: predict_products(orbit(a), KEYS[a], ia, c.start_a, c.end_a + one),
        KEYS[b]: predict_products(orbit(b), KEYS[b], ib, start_b, end_b + one),
    }
    return ev, products


def product(pid: str, sensor: SensorKey, geom, start_s: float = 0.0, dur_s: float = 30.0):
    start = T0 + timedelta(seconds=start_s)
    return Product(pid, sensor, start, start + timedelta(seconds=dur_s), geom)


def event(*sensors: SensorKey) -> MatchupEvent:
    ordered = tuple(sorted(sensors))
    return MatchupEvent(
        f"{pair_id(ordered)}_test", ordered, T0, T0 + timedelta(hours=1), box(-180, -90, 180, 90)
    )


# --- events from real crossovers -------------------------------------------------------------


def test_event_from_real_crossover():
    c = crossovers()[0]
    ev, _ = real_event(c)
    assert ev.sensors == (LS9, S2)
    assert ev.id.startswith("LANDSAT_C2L1-Landsat-9-vs-S2_MSI_L1C-Sentinel-2A_20220501T")
    assert ev.start <= c.start_a <= c.end_a <= ev.end
    assert ev.start <= c.time_b <= ev.end
    assert ev.geometry.is_valid
    assert geodesic_area_km2(ev.geometry) > 0
    assert ev.properties["matchup:collections"] == ["LANDSAT_C2L1", "S2_MSI_L1C"]
    assert ev.properties["matchup:platforms"] == ["Landsat-9", "Sentinel-2A"]
    assert ev.properties["eomatch:distance_km"] == round(c.distance_km, 6)
    assert ev.properties["eomatch:time_a"] == c.as_record()["time_a"]
    assert ev.matchups == ()
    # Same crossover, sensors given the other way round: same event.
    swapped = event_from_crossover(
        c, (KEYS[c.platform_a], KEYS[c.platform_b]), orbit(c.platform_a), orbit(c.platform_b),
        185.0, 290.0, T_MAX,
    )  # fmt: skip
    assert swapped.id == ev.id


def test_real_crossovers_give_matchups_inside_both_footprints():
    total = 0
    for c in crossovers():
        ev, products = real_event(c)
        assert all(products.values())
        matchups, warnings = find_matchups(ev, products, T_MAX)
        assert warnings == []
        assert matchups, ev.id
        total += len(matchups)
        for m in matchups:
            assert m.event_id == ev.id
            assert [p.sensor for p in m.products] == [LS9, S2]
            assert m.area_km2 > 0
            assert m.geometry.is_valid
            assert m.time_diff_abs_s <= T_MAX
            assert m.id.startswith(pair_id(ev.sensors) + "_")
            for p in m.products:
                outside = m.geometry.difference(p.geometry)
                assert outside.area <= 1e-9 * max(m.geometry.area, 1e-12)
            bbox(m.geometry)  # well-formed
        assert len({m.id for m in matchups}) == len(matchups)
        attached = with_matchups(ev, reversed(matchups))
        assert [m.id for m in attached.matchups] == sorted(m.id for m in matchups)
    assert total > len(crossovers())


def test_real_matchups_are_stable_and_order_independent():
    c = crossovers()[6]  # the one at the antimeridian
    ev, products = real_event(c)
    assert ev.geometry.geom_type == "MultiPolygon"
    first, _ = find_matchups(ev, products, T_MAX)
    ev2, products2 = real_event(c)
    shuffled = {k: list(reversed(v)) for k, v in reversed(list(products2.items()))}
    second, _ = find_matchups(ev2, shuffled, T_MAX)
    assert ev2.id == ev.id
    assert [m.id for m in first] == [m.id for m in second]
    assert [m.geometry.wkb for m in first] == [m.geometry.wkb for m in second]


# --- rules on synthetic footprints -----------------------------------------------------------


def test_touching_squares_are_no_matchup():
    ev = event(S2, LS9)
    products = {
        S2: [product("a", S2, box(0, 0, 1, 1))],
        LS9: [product("b", LS9, box(1, 0, 2, 1)), product("c", LS9, box(1, 1, 2, 2))],
    }
    matchups, warnings = find_matchups(ev, products, 600)
    assert matchups == []
    assert warnings == []


def test_overlap_gives_intersection_geometry_and_area():
    ev = event(S2, LS9)
    products = {
        S2: [product("a", S2, box(0, 0, 1, 1))],
        LS9: [product("b", LS9, box(0.5, 0, 2, 1))],
    }
    (m,), _ = find_matchups(ev, products, 600)
    assert m.geometry.equals(box(0.5, 0, 1, 1))
    assert m.area_km2 == pytest.approx(geodesic_area_km2(box(0.5, 0, 1, 1)))
    assert m.products[0].sensor == LS9


def test_minimum_area():
    ev = event(S2, LS9)
    products = {
        S2: [product("a", S2, box(0, 0, 1, 1))],
        LS9: [product("b", LS9, box(0.5, 0, 2, 1))],
    }
    assert len(find_matchups(ev, products, 600, min_area_km2=6000.0)[0]) == 1
    assert find_matchups(ev, products, 600, min_area_km2=7000.0)[0] == []


def test_time_threshold_is_on_start_times():
    ev = event(S2, LS9)
    sq = box(0, 0, 1, 1)
    products = {
        S2: [product("a", S2, sq, 0.0)],
        LS9: [
            product("b", LS9, sq, 600.0),
            product("c", LS9, sq, 600.5),
            product("d", LS9, sq, -600.0),
        ],
    }
    matchups, _ = find_matchups(ev, products, 600)
    assert sorted(m.products[0].id for m in matchups) == ["b", "d"]
    assert {m.time_diff_abs_s for m in matchups} == {600.0}
    assert find_matchups(ev, products, 599.9)[0] == []


def test_three_sensors_pairwise_but_not_together_are_skipped_with_a_warning():
    ev = event(S2, LS9, S3)
    # Three strips overlapping pairwise around a triangle, with no common point.
    a = box(0, 0, 2, 1)
    b = box(1.5, 0, 2.5, 3)
    c = Polygon([(0, 0.5), (0.5, 0.5), (0.5, 2), (2, 2), (2, 3), (0, 3)])  # an L
    assert a.intersects(b)
    assert b.intersection(c).area > 0
    assert a.intersection(c).area > 0
    assert a.intersection(b).intersection(c).area == 0
    products = {S2: [product("a", S2, a)], LS9: [product("b", LS9, b)], S3: [product("c", S3, c)]}
    matchups, warnings = find_matchups(ev, products, 600)
    assert matchups == []
    assert len(warnings) == 1
    assert "not all together" in warnings[0]
    # Adding a product that does overlap both others together gives one matchup.
    products[S3].append(product("d", S3, box(1.6, 0.2, 1.8, 0.8)))
    matchups, warnings = find_matchups(ev, products, 600)
    assert [tuple(p.id for p in m.products) for m in matchups] == [("b", "a", "d")]
    assert len(warnings) == 1


def test_missing_sensor_or_bad_footprint():
    ev = event(S2, LS9)
    assert find_matchups(ev, {S2: [product("a", S2, box(0, 0, 1, 1))]}, 600) == ([], [])
    from shapely.geometry import LineString

    products = {
        S2: [product("a", S2, box(0, 0, 1, 1)), product("x", S2, LineString([(0, 0), (1, 1)]))],
        LS9: [product("b", LS9, box(0, 0, 1, 1))],
    }
    matchups, warnings = find_matchups(ev, products, 600)
    assert len(matchups) == 1
    assert any("x" in w and "polygonal" in w for w in warnings)


def test_antimeridian_products():
    ev = event(S2, LS9)
    a = MultiPolygon([box(179, 0, 180, 1), box(-180, 0, -179, 1)])
    b = box(-180, 0.5, -178, 2)
    (m,), _ = find_matchups(ev, {S2: [product("a", S2, a)], LS9: [product("b", LS9, b)]}, 60)
    assert m.geometry.equals(box(-180, 0.5, -179, 1))
    c = box(178, 0.5, 180, 2)
    products = {S2: [product("a", S2, a)], LS9: [product("b", LS9, b), product("c", LS9, c)]}
    assert len(find_matchups(ev, products, 60)[0]) == 2


def grid_products(sensor: SensorKey, offset: float, n: int, prefix: str) -> list[Product]:
    return [
        product(f"{prefix}{i}", sensor, box(i + offset, 0, i + offset + 1.2, 1), start_s=10 * i)
        for i in range(n)
    ]


@settings(max_examples=15, deadline=None)
@given(st.randoms(use_true_random=False))
def test_output_does_not_depend_on_product_order(rnd: random.Random):
    ev = event(S2, LS9, S3)
    base = {
        S2: grid_products(S2, 0.0, 6, "a"),
        LS9: grid_products(LS9, 0.3, 6, "b"),
        S3: grid_products(S3, 0.6, 5, "c") + grid_products(S3, 0.6, 2, "c"),  # duplicates too
    }
    expected = find_matchups(ev, base, 25)
    shuffled = {}
    keys = list(base)
    rnd.shuffle(keys)
    for k in keys:
        items = list(base[k])
        rnd.shuffle(items)
        shuffled[k] = items
    got = find_matchups(ev, shuffled, 25)
    assert [m.id for m in got[0]] == [m.id for m in expected[0]]
    assert [m.geometry.wkb for m in got[0]] == [m.geometry.wkb for m in expected[0]]
    assert got[1] == expected[1]
    assert expected[0]


def test_thousand_events_are_fast():
    ev = event(S2, LS9)
    sets = []
    for k in range(1000):
        lon = -170 + (k % 340)
        sets.append(
            {
                S2: [product(f"a{k}_{i}", S2, box(lon, i, lon + 1.5, i + 1.0), 40 * i)
                     for i in range(5)],
                LS9: [product(f"b{k}_{i}", LS9, box(lon + 0.5, i + 0.5, lon + 1.0, i + 1.5),
                              25 * i) for i in range(5)],
            }
        )  # fmt: skip
    t = time.perf_counter()
    found = sum(len(find_matchups(ev, s, 600)[0]) for s in sets)
    elapsed = time.perf_counter() - t
    assert found == 1000 * 9
    assert elapsed < 3.0, f"{elapsed:.2f} s for 1000 events"
