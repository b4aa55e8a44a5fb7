"""From crossovers to events, and from an event's products to matchups.

A *matchup* is one product per sensor of the event such that all footprints overlap *together*
with positive geodesic area (at least the configured minimum; shared edges are no overlap) and
the product start times differ by at most ``T`` (``max(start) - min(start)``). Its geometry is the
collocation region (the intersection of the footprints).

Everything here is deterministic and independent of input order: products are de-duplicated by
id and sorted, combinations are enumerated over sensors sorted by (collection, platform), and the
result is sorted by matchup id.

A matchup belongs to exactly one event (issue 11 §7): two crossovers close in time can share a
product combination, and each of them gets its own matchup, whose id includes the event id
(:func:`event_matchup_id`). So every link is one-to-one and symmetric: the event lists the
matchup (``related``), the matchup names the event (``related`` and ``matchup:event_id``).
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta

import numpy as np
import shapely
from shapely import STRtree
from shapely.geometry.base import BaseGeometry

from eomatch.core.crossovers import Crossover, Orbit, iso
from eomatch.core.geometry import intersection_with_area, polygonal, swath_polygon, union
from eomatch.core.products import (
    Matchup,
    MatchupEvent,
    Product,
    SensorKey,
    event_id,
    pair_id,
)
from eomatch.core.vocabulary import (
    COLLECTIONS_PROP,
    END_B_PROP,
    PLATFORMS_PROP,
    START_B_PROP,
    crossover_prop,
)

EVENT_STEP_S = 5
"""Track sampling step for event swaths."""
MIN_EVENT_SWATH_KM = 10.0
"""Width given to nadir-only sensors (swath 0) so the event region is still an area."""


def event_matchup_id(pair: str, event: str, products: Sequence[Product]) -> str:
    """Deterministic id of the matchup of ``products`` within ``event``.

    ``{pair}_{first product start %Y%m%dT%H%M%S}_{sha256(event id|sorted product ids)[:10]}``:
    the same products matched in two events are two matchups, each linking its one event.
    """
    first = min(p.start for p in products)
    key = "|".join([event, *sorted(p.id for p in products)])
    digest = hashlib.sha256(key.encode()).hexdigest()[:10]
    return f"{pair}_{first.astimezone(UTC):%Y%m%dT%H%M%S}_{digest}"


def _run_times(t0: datetime, t1: datetime) -> np.ndarray[tuple[int], np.dtype[np.int64]]:
    """Whole-second instants covering ``[t0, t1]`` every EVENT_STEP_S, padded by 1 s each side.

    The padding gives single-second runs a direction of flight.
    """
    lo = int(t0.timestamp()) - 1
    hi = int(t1.timestamp()) + 1
    times = np.arange(lo, hi, EVENT_STEP_S, dtype=np.int64)
    return np.append(times, np.int64(hi))


def _run_swath(orbit: Orbit, t0: datetime, t1: datetime, swath_km: float) -> BaseGeometry:
    track = orbit.track(_run_times(t0, t1))
    ok = np.isfinite(track.lat) & np.isfinite(track.lon)
    if ok.sum() < 2:
        return shapely.Polygon()
    return swath_polygon(track.lat[ok], track.lon[ok], max(swath_km, MIN_EVENT_SWATH_KM) / 2.0)


def event_from_crossover(
    c: Crossover,
    sensors: tuple[SensorKey, SensorKey],
    orbit_a: Orbit,
    orbit_b: Orbit,
    swath_a_km: float,
    swath_b_km: float,
    max_time_diff_s: float,
) -> MatchupEvent:
    """The matchup event of one crossover.

    Time span: A flies its run ``[start_a, end_a]``; B flies the same run shifted by ``dt_s``,
    kept within ``T`` of A's run (every partner second of B is). The event spans both.

    Geometry: the union of both sensors' swaths over their runs, i.e. the region either sensor
    images while the satellites are matched; products are searched there. Nadir-only sensors
    count as MIN_EVENT_SWATH_KM wide.

    Args:
        c: the crossover record (A, B as in the record).
        sensors: the sensors of A and of B, in that order.
        orbit_a: A's orbit.
        orbit_b: B's orbit.
        swath_a_km: A's full swath width.
        swath_b_km: B's full swath width.
        max_time_diff_s: T of the crossover search.

    Returns:
        An event without matchups, sensors sorted by (collection, platform); properties are the
        crossover record under ``eomatch:`` keys plus B's run (``eomatch:start_b``/``end_b``),
        ``matchup:collections`` and ``matchup:platforms``.
    """
    sensor_a, sensor_b = sensors
    ordered = tuple(sorted({sensor_a, sensor_b}))
    pair = pair_id(ordered)
    shift = timedelta(seconds=c.dt_s)
    slack = timedelta(seconds=float(max_time_diff_s))
    start_b = max(c.start_a + shift, c.start_a - slack)
    end_b = min(c.end_a + shift, c.end_a + slack)
    if end_b < start_b:  # only when dt_s exceeds T, which the crossover search excludes
        start_b = end_b = c.time_b
    geometry = union(
        [
            _run_swath(orbit_a, c.start_a, c.end_a, swath_a_km),
            _run_swath(orbit_b, start_b, end_b, swath_b_km),
        ]
    )
    properties: dict[str, object] = {crossover_prop(k): v for k, v in c.as_record().items()}
    properties[START_B_PROP] = iso(start_b)
    properties[END_B_PROP] = iso(end_b)
    properties[COLLECTIONS_PROP] = [s.collection for s in ordered]
    properties[PLATFORMS_PROP] = [s.platform for s in ordered]
    return MatchupEvent(
        id=event_id(pair, c.time_a, c.lat_a, c.lon_a),
        sensors=ordered,
        start=min(c.start_a, start_b),
        end=max(c.end_a, end_b),
        geometry=geometry,
        properties=properties,
    )


def with_matchups(event: MatchupEvent, matchups: Iterable[Matchup]) -> MatchupEvent:
    """A copy of ``event`` carrying ``matchups`` (sorted by id, duplicates dropped)."""
    unique = {m.id: m for m in matchups}
    return dataclasses.replace(event, matchups=tuple(unique[k] for k in sorted(unique)))


@dataclasses.dataclass
class _SensorProducts:
    """One sensor's candidate products, with their prepared footprints and a spatial index."""

    products: list[Product]
    geoms: list[BaseGeometry]
    starts: np.ndarray[tuple[int], np.dtype[np.float64]]
    tree: STRtree


def _prepare(products: Iterable[Product], label: str, warnings: list[str]) -> _SensorProducts:
    unique: dict[str, Product] = {}
    for p in products:
        unique.setdefault(p.id, p)
    kept: list[Product] = []
    geoms: list[BaseGeometry] = []
    for pid in sorted(unique):
        p = unique[pid]
        g = polygonal(p.geometry)
        if g.is_empty:
            warnings.append(f"{label}: product {pid} has no polygonal footprint; skipped")
            continue
        kept.append(p)
        geoms.append(g)
    for geom in geoms:
        shapely.prepare(geom)
    starts = np.array([p.start.timestamp() for p in kept], dtype=np.float64)
    return _SensorProducts(kept, geoms, starts, STRtree(geoms))


class _PairCache:
    """Positive-area overlap of two products (by sensor index and product index), memoised."""

    def __init__(self, sides: Sequence[_SensorProducts], min_area_km2: float) -> None:
        self.sides = sides
        self.min_area = min_area_km2
        self.cache: dict[tuple[int, int, int, int], tuple[BaseGeometry, float]] = {}

    def get(self, i: int, a: int, j: int, b: int) -> tuple[BaseGeometry, float]:
        """Intersection of the two footprints and its geodesic area (0 when only touching)."""
        key = (i, a, j, b)
        hit = self.cache.get(key)
        if hit is None:
            hit = intersection_with_area([self.sides[i].geoms[a], self.sides[j].geoms[b]])
            self.cache[key] = hit
        return hit

    def overlaps(self, i: int, a: int, j: int, b: int) -> bool:
        """Whether the two footprints share at least the minimum (and a positive) area."""
        g, area = self.get(i, a, j, b)
        return not g.is_empty and area >= self.min_area


def find_matchups(
    event: MatchupEvent,
    products: Mapping[SensorKey, Sequence[Product]],
    max_time_diff_s: float,
    min_area_km2: float = 0.0,
) -> tuple[list[Matchup], list[str]]:
    """Every valid combination of one product per sensor of ``event``.

    Candidates are pre-filtered with an STR-tree per sensor (bounding boxes) and the time
    threshold, so only plausible pairs get an exact intersection.

    Args:
        event: the event (its ``sensors`` define the combination order).
        products: candidate products per sensor; other sensors are ignored.
        max_time_diff_s: T, the largest ``max(start) - min(start)``.
        min_area_km2: smallest collocation area; overlap must be positive in any case.

    Returns:
        Matchups sorted by id, and warnings (combinations that overlap pairwise but not all
        together, unusable footprints). Never raises for bad combinations.
    """
    warnings: list[str] = []
    sensors = tuple(sorted(set(event.sensors)))
    if len(sensors) < 2:
        return [], [f"{event.id}: a matchup needs at least two sensors, got {len(sensors)}"]
    sides = [_prepare(products.get(s, ()), f"{event.id} {s.label()}", warnings) for s in sensors]
    if any(not side.products for side in sides):
        return [], warnings
    pair = pair_id(sensors)
    cache = _PairCache(sides, min_area_km2)
    tdiff = float(max_time_diff_s)
    # Spatial candidates of sensor j (> i) for each product of sensor i, from the STR-trees.
    near: dict[tuple[int, int], list[set[int]]] = {}
    for i in range(len(sides)):
        for j in range(i + 1, len(sides)):
            src, dst = sides[j].tree.query(sides[i].geoms, predicate="intersects")
            sets: list[set[int]] = [set() for _ in sides[i].products]
            for a, b in zip(src.tolist(), dst.tolist(), strict=True):
                if abs(sides[i].starts[a] - sides[j].starts[b]) <= tdiff:
                    sets[a].add(b)
            near[(i, j)] = sets

    matchups: list[Matchup] = []
    n = len(sides)

    def extend(chosen: list[int]) -> None:
        i = len(chosen)
        if i == n:
            _combine(chosen)
            return
        if i == 0:
            candidates: Iterable[int] = range(len(sides[0].products))
        else:
            common = set(near[(0, i)][chosen[0]])
            for h in range(1, i):
                common &= near[(h, i)][chosen[h]]
            candidates = sorted(common)
        for b in candidates:
            start_b = sides[i].starts[b]
            if any(abs(sides[h].starts[a] - start_b) > tdiff for h, a in enumerate(chosen)):
                continue
            if all(cache.overlaps(h, a, i, b) for h, a in enumerate(chosen)):
                extend([*chosen, b])

    def _combine(chosen: list[int]) -> None:
        prods = tuple(sides[h].products[a] for h, a in enumerate(chosen))
        if n == 2:
            geom, area = cache.get(0, chosen[0], 1, chosen[1])
        else:
            geom, area = intersection_with_area(sides[h].geoms[a] for h, a in enumerate(chosen))
        if geom.is_empty or area < min_area_km2:
            ids = ", ".join(p.id for p in prods)
            warnings.append(
                f"{event.id}: products {ids} overlap pairwise but not all together "
                f"(common area {area:.3f} km² < {min_area_km2} km²); skipped"
            )
            return
        starts = [p.start.timestamp() for p in prods]
        matchups.append(
            Matchup(
                id=event_matchup_id(pair, event.id, prods),
                products=prods,
                geometry=geom,
                area_km2=area,
                time_diff_abs_s=float(max(starts) - min(starts)),
                event_id=event.id,
            )
        )

    extend([])
    matchups.sort(key=lambda m: m.id)
    return matchups, warnings
