"""Products, events and matchups: the three levels of the catalogue's data model.

Identity rules (deterministic across runs and versions):

* pair id: ``{col1}-{plat1}-vs-{col2}-{plat2}`` over the sensors sorted by (collection, platform)
* events collection: ``matchup-events-{pair id}``; matchup collection: the pair id
* event id: ``{pair id}_{closest approach time of A %Y%m%dT%H%M%S}_{lat}_{lon}``
  (location included so crossovers at the same second in different places stay distinct)
* matchup id: ``{pair id}_{first product start %Y%m%dT%H%M%S}_{sha256(sorted ids)[:10]}``
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from shapely.geometry.base import BaseGeometry

EVENTS_PREFIX = "matchup-events-"


@dataclass(frozen=True, order=True)
class SensorKey:
    """One side of a matchup: a product collection from one platform."""

    collection: str
    platform: str
    """Platform as written in the catalogue: the registry's ``name`` (``Sentinel-2A``)."""

    def label(self) -> str:
        """``{collection}-{platform}``."""
        return f"{self.collection}-{self.platform}"


def pair_id(sensors: Iterable[SensorKey]) -> str:
    """Collection id of a sensor combination (sorted by collection, then platform)."""
    return _pair_id(tuple(sensors))


@functools.lru_cache(maxsize=1024)
def _pair_id(sensors: tuple[SensorKey, ...]) -> str:
    return "-vs-".join(s.label() for s in sorted(set(sensors)))


def events_collection_id(sensors: Sequence[SensorKey]) -> str:
    """Collection id of the events of a sensor combination."""
    return EVENTS_PREFIX + pair_id(sensors)


@dataclass(frozen=True)
class Product:
    """One acquisition (real, from a provider, or predicted from the orbit)."""

    id: str
    sensor: SensorKey
    start: datetime
    end: datetime
    geometry: BaseGeometry
    """Footprint in lon/lat (WGS84); may be a MultiPolygon split at the antimeridian."""
    predicted: bool = False
    assets: dict[str, dict[str, Any]] = field(default_factory=dict, compare=False, hash=False)
    """STAC asset dicts as the provider gave them (``data`` etc.)."""
    properties: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    """Extra provider properties kept on the product item (cloud cover...)."""


@dataclass(frozen=True)
class Matchup:
    """Products of different sensors that overlap in space and in time."""

    id: str
    products: tuple[Product, ...]
    """Sorted by sensor (collection, platform)."""
    geometry: BaseGeometry
    """Collocation region: the intersection of all footprints."""
    area_km2: float
    time_diff_abs_s: float
    """max(start) - min(start) over the products."""
    event_id: str

    @property
    def start(self) -> datetime:
        """Earliest product start."""
        return min(p.start for p in self.products)

    @property
    def end(self) -> datetime:
        """Latest product end."""
        return max(p.end for p in self.products)


@dataclass(frozen=True)
class MatchupEvent:
    """A crossover of two sensors, with the matchups found for it."""

    id: str
    sensors: tuple[SensorKey, ...]
    """Sorted by (collection, platform)."""
    start: datetime
    end: datetime
    geometry: BaseGeometry
    """Region the event covers (products searched here)."""
    properties: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    """Crossover record fields (closest approach etc.)."""
    matchups: tuple[Matchup, ...] = ()

    @property
    def matchup_set(self) -> tuple[Matchup, ...]:
        """The event's matchups (the previous generation's name for them)."""
        return self.matchups


def matchup_id(pair: str, products: Sequence[Product]) -> str:
    """Deterministic id from the pair, the first product start and the sorted product ids."""
    first = min(p.start for p in products)
    digest = hashlib.sha256("|".join(sorted(p.id for p in products)).encode()).hexdigest()[:10]
    return f"{pair}_{first.astimezone(UTC):%Y%m%dT%H%M%S}_{digest}"


def event_id(pair: str, time: datetime, lat: float, lon: float) -> str:
    """Deterministic event id: pair, closest-approach time and place (0.01 degree)."""
    return f"{pair}_{time.astimezone(UTC):%Y%m%dT%H%M%S}_{lat:+06.2f}_{lon:+07.2f}"
