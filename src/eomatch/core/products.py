"""Products, events and matchups: the three levels of the catalogue's data model.

Identity rules (deterministic across runs and versions):

* pair id: ``{col1}-{plat1}-vs-{col2}-{plat2}`` over the sensors sorted by (collection, platform)
* events collection: ``matchup-events-{pair id}``; matchup collection: the pair id
* event id: ``{pair id}_{closest approach time of A %Y%m%dT%H%M%S}_{lat}_{lon}``
  (location included so crossovers at the same second in different places stay distinct)
* matchup id: ``{pair id}_{first product start %Y%m%dT%H%M%S}_{sha256(event id|sorted ids)[:10]}``
  (:func:`eomatch.core.matchups.event_matchup_id`: a matchup belongs to one event; the
  event-free :func:`matchup_id` is the previous generation's v0.2 rule)
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from shapely.geometry.base import BaseGeometry

from eomatch.core.vocabulary import ROLE_EVENT, ROLE_FIELD
from eomatch.errors import InputError

if TYPE_CHECKING:
    from eomatch.core.collocation import DatasetOptions

EVENTS_PREFIX = "matchup-events-"
PAIR_SEPARATOR = "-vs-"
"""Between the sensors of a matchup collection's id (:func:`pair_id`)."""


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
    return PAIR_SEPARATOR.join(s.label() for s in sorted(set(sensors)))


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

    @property
    def collection(self) -> str:
        """Product collection id."""
        return self.sensor.collection

    @property
    def platform(self) -> str:
        """Platform (the registry's name, e.g. ``Sentinel-2A``)."""
        return self.sensor.platform

    @property
    def start_time(self) -> datetime:
        """Acquisition start (the previous generation's name for :attr:`start`)."""
        return self.start

    @property
    def stop_time(self) -> datetime:
        """Acquisition end (the previous generation's name for :attr:`end`)."""
        return self.end

    def to_stac_item(self) -> dict[str, Any]:
        """The product's STAC item, as the catalogue writes it."""
        from eomatch.core import stac_items

        return stac_items.product_to_item(self)

    def __repr__(self) -> str:
        return (
            f"Product(id={self.id!r}, collection={self.collection!r}, "
            f"platform={self.platform!r}, start_time={_t(self.start)}, "
            f"stop_time={_t(self.end)}{', predicted' if self.predicted else ''})"
        )

    def __str__(self) -> str:
        return (
            f"product {self.id} ({self.sensor.label()}, {_t(self.start)} to {_t(self.end)}"
            f"{', predicted' if self.predicted else ''})"
        )


class MatchupDataSource(Protocol):
    """Where a matchup's product data is read from: set on the matchups a catalogue returns.

    The pure core cannot read files; the catalogue that built a :class:`Matchup` knows where its
    products' assets are and hands this to the matchup (``Matchup.source``).
    """

    def matchup_dataset(self, matchup: Matchup, options: DatasetOptions) -> Any:
        """The matchup's collocated data as an ``xarray.DataTree``."""
        ...


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
    properties: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    """Item properties read back from a catalogue (``matchup:*``, enrichments); empty when new."""
    assets: dict[str, dict[str, Any]] = field(default_factory=dict, compare=False, hash=False)
    """STAC asset dicts of the matchup item (analysis results...); empty when new."""
    source: MatchupDataSource | None = field(default=None, compare=False, hash=False, repr=False)
    """Where the products' data is (set by the catalogue that read the matchup); None when new."""

    @property
    def start(self) -> datetime:
        """Earliest product start."""
        return min(p.start for p in self.products)

    def return_matchup_dataset(
        self,
        margin_m: float = 0.0,
        grid: str = "native",
        target: str | None = None,
        resampling: str = "auto",
        assets: Sequence[str] | None = None,
    ) -> Any:
        """The products' pixels in the collocation region, as an ``xarray.DataTree``.

        One node per sensor (``/{collection}-{platform}``), read where the products are
        (catalogue ``data/``, a shared drive, remote COGs by range requests), never copied.
        Needs ``pip install 'eomatch[data]'``; see docs/matchup-datasets.md.

        Args:
            margin_m: metres added around the collocation region.
            grid: ``"native"`` (each product's own pixels) or ``"common"`` (all resampled
                onto one grid, pixel by pixel comparable).
            target: the sensor whose grid is common (label, collection or platform);
                default the coarser one.
            resampling: ``"auto"`` (average when downsampling, nearest at the same pixel size,
                bilinear when upsampling), ``"nearest"``, ``"bilinear"``, ``"cubic"``,
                ``"average"``.
            assets: asset keys to read (default: every data asset the reader knows).

        Raises:
            InputError: the matchup was not read from a catalogue, a product cannot be read
                (one line naming it), or an option is out of range.
        """
        from eomatch.core.collocation import DatasetOptions, GridMode, Resampling

        try:
            options = DatasetOptions(
                margin_m=float(margin_m),
                grid=GridMode(grid),
                target=target,
                resampling=Resampling(resampling),
                assets=None if assets is None else tuple(assets),
            )
        except ValueError as exc:
            raise InputError(str(exc)) from None
        if self.source is None:
            raise InputError(
                f"matchup {self.id} was not read from a catalogue: open one "
                "(MatchupCatalogue.open) and take the matchup from get_events() or get_matchup()"
            )
        return self.source.matchup_dataset(self, options)

    @property
    def end(self) -> datetime:
        """Latest product end."""
        return max(p.end for p in self.products)

    @property
    def start_time(self) -> datetime:
        """Earliest product start (the previous generation's name)."""
        return self.start

    @property
    def stop_time(self) -> datetime:
        """Latest product end (the previous generation's name)."""
        return self.end

    @property
    def collections(self) -> tuple[str, ...]:
        """Product collections, in product order (sorted by sensor)."""
        return tuple(p.sensor.collection for p in self.products)

    @property
    def platforms(self) -> tuple[str, ...]:
        """Platforms, in product order (sorted by sensor)."""
        return tuple(p.sensor.platform for p in self.products)

    @property
    def time_diff_abs(self) -> float:
        """max(start) - min(start) over the products, in seconds."""
        return self.time_diff_abs_s

    @property
    def collocation_region(self) -> BaseGeometry:
        """Where all footprints overlap (lon/lat)."""
        return self.geometry

    def to_stac_item(self, event: MatchupEvent | None = None) -> dict[str, Any]:
        """The matchup's STAC item, with its :attr:`properties` and :attr:`assets`.

        The ``related`` link to the event is a relative path that needs the event (its
        collection and day); without ``event`` the item has ``matchup:event_id`` but no such link.
        """
        from eomatch.core import stac_items

        stand_in = event or MatchupEvent(
            id=self.event_id,
            sensors=tuple(p.sensor for p in self.products),
            start=self.start,
            end=self.end,
            geometry=self.geometry,
        )
        item = stac_items.matchup_to_item(self, stand_in, self.assets)
        item["properties"] = {**self.properties, **item["properties"]}
        if event is None:
            item["links"] = [
                link
                for link in item["links"]
                if not (link["rel"] == "related" and link.get(ROLE_FIELD) == ROLE_EVENT)
            ]
        return item

    def __repr__(self) -> str:
        return (
            f"Matchup(id={self.id!r}, collections={self.collections}, "
            f"platforms={self.platforms}, start_time={_t(self.start)}, "
            f"stop_time={_t(self.end)}, time_diff_abs={self.time_diff_abs_s:g}, "
            f"area_km2={self.area_km2:.1f}, products={[p.id for p in self.products]})"
        )

    def __str__(self) -> str:
        return (
            f"matchup {self.id}: {' x '.join(p.sensor.label() for p in self.products)}, "
            f"{_t(self.start)} to {_t(self.end)}, time difference {self.time_diff_abs_s:g} s, "
            f"{self.area_km2:.1f} km2 shared"
        )


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
    assets: dict[str, dict[str, Any]] = field(default_factory=dict, compare=False, hash=False)
    """STAC asset dicts of the event item (thumbnails...); empty when new."""

    @property
    def matchup_set(self) -> tuple[Matchup, ...]:
        """The event's matchups (the previous generation's name for them)."""
        return self.matchups

    @property
    def start_time(self) -> datetime:
        """Event start (the previous generation's name for :attr:`start`)."""
        return self.start

    @property
    def stop_time(self) -> datetime:
        """Event end (the previous generation's name for :attr:`end`)."""
        return self.end

    @property
    def collections(self) -> tuple[str, ...]:
        """Product collections of the sensors, in sensor order."""
        return tuple(s.collection for s in self.sensors)

    @property
    def platforms(self) -> tuple[str, ...]:
        """Platforms of the sensors, in sensor order."""
        return tuple(s.platform for s in self.sensors)

    def to_stac_item(self) -> dict[str, Any]:
        """The event's STAC item (``related`` to its matchups), with its :attr:`assets`."""
        from eomatch.core import stac_items

        return stac_items.event_to_item(self, assets=self.assets)

    def __repr__(self) -> str:
        return (
            f"MatchupEvent(id={self.id!r}, collections={self.collections}, "
            f"platforms={self.platforms}, start_time={_t(self.start)}, "
            f"stop_time={_t(self.end)}, matchups={len(self.matchups)})"
        )

    def __str__(self) -> str:
        return (
            f"event {self.id}: {' x '.join(s.label() for s in self.sensors)}, "
            f"{_t(self.start)} to {_t(self.end)}, {len(self.matchups)} matchup(s)"
        )


def _t(when: datetime) -> str:
    """A time for printing: ISO 8601 in UTC to the second."""
    return f"{when.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ}"


def matchup_id(pair: str, products: Sequence[Product]) -> str:
    """Deterministic id from the pair, the first product start and the sorted product ids."""
    first = min(p.start for p in products)
    digest = hashlib.sha256("|".join(sorted(p.id for p in products)).encode()).hexdigest()[:10]
    return f"{pair}_{first.astimezone(UTC):%Y%m%dT%H%M%S}_{digest}"


def event_id(pair: str, time: datetime, lat: float, lon: float) -> str:
    """Deterministic event id: pair, closest-approach time and place (0.01 degree)."""
    return f"{pair}_{time.astimezone(UTC):%Y%m%dT%H%M%S}_{lat:+06.2f}_{lon:+07.2f}"
