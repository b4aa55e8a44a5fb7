"""A synthetic but realistic matchup catalogue of any size (issue #16 §1).

13 satellites (the registry's: 5 imagers' product collections, 5 altimeters, VIIRS, EMIT), all
78 pairs, 10 years. Each event pairs 1-2 scenes of one satellite with 1-2 of the other (every
overlapping pair is a matchup), so the items come in the proportions ``eomatch find`` writes:
per event 1 event item, 2.25 matchups and 3 products on average (6.25 items). Events are
spread over the 10 years in time order (as finds append them), 60 % of them in the polar bands
where sun-synchronous orbits cross on every revolution, the rest between 60 S and 60 N.
Matchup properties follow what :mod:`eomatch.core.matchups` computes: ``matchup:time_diff_abs``
uniform in the pair's time window (900, 1800 or 3600 s) and ``matchup:collocation_area_km2``
the area of the overlap of two scene footprints (imagers: scene sized, thousands of km²;
altimeters: a nadir strip, tens of km²).

Two outputs, the same events: :func:`write_catalogue` writes an on-disk catalogue (what
``eomatch ingest`` reads) and :func:`stored_items` yields the items exactly as ingest hands
them to pypgstac (links between items as ``collections/{c}/items/{id}``), for loading a large
catalogue without a million files on disk.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import combinations
from pathlib import Path
from typing import Any

from shapely.geometry import box

from eomatch.core import stac_items as si
from eomatch.core.products import (
    Matchup,
    MatchupEvent,
    Product,
    SensorKey,
    event_id,
    matchup_id,
    pair_id,
)
from eomatch.core.publish import HrefRewriter

T0 = datetime(2016, 1, 1, tzinfo=UTC)
YEARS = 10
SPAN_S = YEARS * 365.25 * 86400
ITEMS_PER_EVENT = 6.25
"""Mean items per event: 1 event + E[na * nb] = 2.25 matchups + E[na + nb] = 3 products."""


@dataclass(frozen=True)
class Sat:
    """A satellite as the synthetic products see it."""

    sensor: SensorKey
    swath_km: float
    """Scene width across track (altimeters: the nadir footprint)."""
    scene_s: float
    """Scene duration along track."""
    imager: bool


SATELLITES: tuple[Sat, ...] = (
    Sat(SensorKey("S2_MSI_L1C", "Sentinel-2A"), 290.0, 40.0, True),
    Sat(SensorKey("S2_MSI_L1C", "Sentinel-2B"), 290.0, 40.0, True),
    Sat(SensorKey("LANDSAT_C2L1", "Landsat-8"), 185.0, 25.0, True),
    Sat(SensorKey("LANDSAT_C2L1", "Landsat-9"), 185.0, 25.0, True),
    Sat(SensorKey("S3_EFR", "Sentinel-3A"), 1270.0, 180.0, True),
    Sat(SensorKey("S3_EFR", "Sentinel-3B"), 1270.0, 180.0, True),
    Sat(SensorKey("VIIRS_SDR", "NOAA-20"), 3040.0, 86.0, True),
    Sat(SensorKey("EMIT_L1B_RAD", "ISS"), 75.0, 11.0, True),
    Sat(SensorKey("JASON_GDR", "Jason-2"), 10.0, 60.0, False),
    Sat(SensorKey("JASON_GDR", "Jason-3"), 10.0, 60.0, False),
    Sat(SensorKey("CRYOSAT_L2", "CryoSat-2"), 10.0, 60.0, False),
    Sat(SensorKey("SARAL_GDR", "SARAL"), 10.0, 60.0, False),
    Sat(SensorKey("S6_P4_L2", "Sentinel-6A"), 10.0, 60.0, False),
)


def pairs_of(sats: tuple[Sat, ...]) -> tuple[tuple[Sat, Sat], ...]:
    """Every pair of ``sats`` (13 satellites: 78 pairs), each in sensor order."""
    return tuple((a, b) if a.sensor <= b.sensor else (b, a) for a, b in combinations(sats, 2))


PAIRS = pairs_of(SATELLITES)
WINDOWS_S = (900.0, 1800.0, 3600.0)


def _scene(
    sat: Sat, pid: str, start: datetime, lon: float, lat: float, rng: random.Random
) -> Product:
    """One scene centred near (lon, lat): swath wide, as long as its duration flies (7 km/s)."""
    half_h = min(sat.scene_s * 7.0 / 111.0 / 2, 10.0)
    half_w = min(sat.swath_km / 111.0 / 2 / max(math.cos(math.radians(lat)), 0.2), 20.0)
    lo, la = lon + rng.uniform(-0.2, 0.2), lat + rng.uniform(-0.2, 0.2)
    props: dict[str, Any] = {}
    if sat.imager:
        props["eo:cloud_cover"] = round(rng.betavariate(0.7, 1.3) * 100, 1)
    return Product(
        id=pid,
        sensor=sat.sensor,
        start=start,
        end=start + timedelta(seconds=sat.scene_s),
        geometry=box(
            max(lo - half_w, -180.0),
            max(la - half_h, -90.0),
            min(lo + half_w, 180.0),
            min(la + half_h, 90.0),
        ),
        assets={"data": {"href": f"https://data.example.test/{sat.sensor.collection}/{pid}.nc"}},
        properties=props,
    )


def _area_km2(g: Any) -> float:
    w, s, e, n = g.bounds
    return abs((e - w) * 111.32 * math.cos(math.radians((s + n) / 2)) * (n - s) * 110.57)


def n_events_for(n_items: int) -> int:
    """Events that make about ``n_items`` items."""
    return max(1, round(n_items / ITEMS_PER_EVENT))


def synthetic_events(
    n_items: int,
    seed: int = 16,
    part: tuple[int, int] = (0, 1),
    sats: tuple[Sat, ...] = SATELLITES,
) -> Iterator[MatchupEvent]:
    """Events totalling about ``n_items`` items, in time order over :data:`YEARS` years.

    ``part`` ``(k, parts)``: only events ``i`` with ``i % parts == k`` (each event has its own
    seeded generator, so parts made in parallel together are the whole catalogue); ``sats``:
    a smaller constellation (fewer collections: the tests' catalogue)."""
    pairs = pairs_of(sats)
    n_events = n_events_for(n_items)
    step = SPAN_S / n_events
    for i in range(part[0], n_events, part[1]):
        rng = random.Random(seed * 100_000_007 + i)
        a, b = pairs[rng.randrange(len(pairs))]
        pid = pair_id([a.sensor, b.sensor])
        window = WINDOWS_S[(a.imager + b.imager) % 3]
        when = T0 + timedelta(seconds=i * step + rng.uniform(0, step))
        if rng.random() < 0.6:
            lat = rng.choice((-1, 1)) * rng.uniform(60.0, 81.0)
        else:
            lat = rng.uniform(-60.0, 60.0)
        lon = rng.uniform(-175.0, 175.0)
        na, nb = 1 + (rng.random() < 0.5), 1 + (rng.random() < 0.5)
        prods_a = [
            _scene(a, f"{a.sensor.platform}_{i:07d}_a{k}", when + timedelta(seconds=k * a.scene_s),
                   lon, lat, rng)
            for k in range(na)
        ]  # fmt: skip
        diff = rng.uniform(0.0, window)
        prods_b = [
            _scene(b, f"{b.sensor.platform}_{i:07d}_b{k}",
                   when + timedelta(seconds=diff + k * b.scene_s), lon, lat, rng)
            for k in range(nb)
        ]  # fmt: skip
        eid = event_id(pid, when, lat, lon)
        mus = []
        for pa in prods_a:
            for pb in prods_b:
                overlap = pa.geometry.intersection(pb.geometry)
                if overlap.is_empty:
                    overlap = box(lon - 0.01, lat - 0.01, lon + 0.01, lat + 0.01)
                mus.append(
                    Matchup(
                        id=matchup_id(pid, [pa, pb]),
                        products=(pa, pb),
                        geometry=overlap.envelope,
                        area_km2=round(_area_km2(overlap), 1),
                        time_diff_abs_s=round(abs((pb.start - pa.start).total_seconds()), 1),
                        event_id=eid,
                    )
                )
        prods = prods_a + prods_b
        w = min(p.geometry.bounds[0] for p in prods)
        s = min(p.geometry.bounds[1] for p in prods)
        e = max(p.geometry.bounds[2] for p in prods)
        n = max(p.geometry.bounds[3] for p in prods)
        yield MatchupEvent(
            id=eid,
            sensors=(a.sensor, b.sensor),
            start=min(p.start for p in prods),
            end=max(p.end for p in prods),
            geometry=box(w, s, e, n),
            properties={"distance_km": round(rng.uniform(0.0, 100.0), 2)},
            matchups=tuple(mus),
        )


def event_documents(event: MatchupEvent) -> list[tuple[str, dict[str, Any]]]:
    """(catalogue-relative path, on-disk item) of an event, its matchups and its products."""
    docs = [(si.event_path(event), si.event_to_item(event))]
    seen: set[str] = set()
    for mu in event.matchups:
        docs.append((si.matchup_path(mu), si.matchup_to_item(mu, event)))
        for p in mu.products:
            if p.id not in seen:
                seen.add(p.id)
                docs.append((si.product_path(p), si.product_to_item(p)))
    return docs


def stored_items(
    n_items: int,
    seed: int = 16,
    part: tuple[int, int] = (0, 1),
    sats: tuple[Sat, ...] = SATELLITES,
) -> Iterator[dict[str, Any]]:
    """The items of :func:`synthetic_events` as ``eomatch ingest`` stores them in pgSTAC."""
    for event in synthetic_events(n_items, seed, part, sats):
        docs = event_documents(event)
        where = {rel: (item["collection"], item["id"]) for rel, item in docs}
        rewriter = HrefRewriter(Path("/nonexistent"), where.get)
        for rel, item in docs:
            yield rewriter.item(item, rel)


def write_ndjson(path: Path, n_items: int, seed: int = 16, part: tuple[int, int] = (0, 1)) -> int:
    """Write the stored items of one part to an ndjson file; the number written."""
    import orjson

    n = 0
    with path.open("wb") as fh:
        for item in stored_items(n_items, seed, part):
            fh.write(orjson.dumps(item) + b"\n")
            n += 1
    return n


def collections(sats: tuple[Sat, ...] = SATELLITES) -> list[dict[str, Any]]:
    """Every collection the synthetic items use (pgSTAC needs them before the items)."""
    extent = ([-180.0, -90.0, 180.0, 90.0], (T0, T0 + timedelta(seconds=SPAN_S)))
    ids = {s.sensor.collection for s in sats}
    for a, b in pairs_of(sats):
        pid = pair_id([a.sensor, b.sensor])
        ids |= {pid, "matchup-events-" + pid}
    out = []
    for cid in sorted(ids):
        doc = si.collection_dict(cid, extent[0], extent[1])
        doc["links"] = []
        out.append(doc)
    return out


def write_catalogue(root: Path, n_items: int, seed: int = 16) -> tuple[float, int]:
    """Write the catalogue of about ``n_items`` items; (seconds, events) — events made first."""
    from eomatch.io.catalogue import MatchupCatalogue

    events = list(synthetic_events(n_items, seed))
    t = time.perf_counter()
    with MatchupCatalogue.create(root) as cat, cat.batch():
        for e in events:
            cat.add_event(e)
    return time.perf_counter() - t, len(events)
