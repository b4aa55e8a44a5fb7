"""``find_and_catalogue``: crossovers → events → products → matchups → the catalogue on disk."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
from shapely import box, unary_union
from shapely.geometry.base import BaseGeometry

from eomatch.config.models import ResolvedSensor, RunConfig
from eomatch.context import EOMatchContext
from eomatch.core.crossovers import Crossover
from eomatch.core.geodesy import midpoint
from eomatch.core.geometry import bbox as geometry_bbox
from eomatch.core.matchups import event_from_crossover, find_matchups, with_matchups
from eomatch.core.predict import predict_products
from eomatch.core.products import MatchupEvent, Product, SensorKey
from eomatch.core.propagation import TleOrbit
from eomatch.core.vocabulary import BBox
from eomatch.errors import ConfigError, InputError
from eomatch.io.catalogue import MatchupCatalogue
from eomatch.io.stac_source import ProductSource, StacApiSource
from eomatch.wiring import build_registry, build_store
from eomatch.workflows.crossovers import find_crossovers

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]
"""(stage, done, total) callback."""


@dataclass
class FindSummary:
    """What a run found and what it changed in the catalogue."""

    catalogue: Path
    crossovers: int = 0
    events: int = 0
    """Events with at least one matchup (the ones catalogued)."""
    matchups: int = 0
    products: int = 0
    new_events: int = 0
    new_matchups: int = 0
    new_products: int = 0
    warnings: list[str] = field(default_factory=list)
    crossover_records: list[Crossover] = field(default_factory=list, repr=False)


def _sources(sensors: list[ResolvedSensor]) -> dict[SensorKey, ProductSource | None]:
    """The product source of each sensor; None means predicted from the orbit."""
    out: dict[SensorKey, ProductSource | None] = {}
    cache: dict[str, StacApiSource] = {}
    for s in sensors:
        if s.source == "predicted":
            out[s.key] = None
            continue
        if s.stac is None or s.stac_source is None:
            raise ConfigError(f"sensor {s.key.label()}: source 'stac' needs a stac_source")
        if s.stac_source not in cache:
            ours = {x.key.collection for x in sensors if x.stac_source == s.stac_source}
            cache[s.stac_source] = StacApiSource(
                s.stac.url,
                collections={c: s.stac.provider_collection(c) for c in sorted(ours)},
                headers=s.stac.headers(s.stac_source),
                page_size=s.stac.page_size,
                max_retries=s.stac.max_retries,
            )
        out[s.key] = cache[s.stac_source]
    return out


def find_and_catalogue(
    context: EOMatchContext | RunConfig,
    path: str | Path | None = None,
    *,
    progress: Progress | None = None,
) -> FindSummary:
    """Run the finder for a configuration and merge the results into the catalogue at ``path``.

    Re-running merges: items already present are left as they are, new ones are added.

    Raises:
        EomatchError: incomplete configuration, no TLE coverage, unreachable product source.
    """
    cfg = context.config if isinstance(context, EOMatchContext) else context
    problems = cfg.run_problems(path_given=path is not None)
    if problems:
        raise ConfigError("the configuration is not ready for find: " + "; ".join(problems))
    root = Path(path) if path is not None else cfg.matchup_catalogue.path
    if root is None:
        raise ConfigError("no catalogue path: give --path or set matchup_catalogue.path")
    root = Path(root)
    if root.name == "catalog.json":
        root = root.parent
    registry = build_registry(cfg)
    sensors = cfg.resolve_sensors(registry)
    if len({s.satellite.short_name for s in sensors}) != len(sensors):
        raise ConfigError("each sensor must be on a different platform (crossovers need two)")
    start, end = cfg.window()
    check_catalogue_target(root, start, end)
    kwargs = cfg.crossover_kwargs()
    t_max = int(kwargs["max_time_diff_s"])
    store = build_store(cfg)
    orbits = {s.key: TleOrbit(s.satellite.short_name, store.archive(s.satellite)) for s in sensors}
    by_short = {s.satellite.short_name: s for s in sensors}
    sources = _sources(sensors)
    summary = FindSummary(catalogue=root)

    def tick(stage: str, done: int, total: int) -> None:
        if progress is not None:
            progress(stage, done, total)

    crossovers = find_crossovers(
        [s.satellite.short_name for s in sensors],
        start,
        end,
        config=cfg,
        progress=lambda d, t: tick("crossovers", d, t),
        **kwargs,
    )
    crossovers = [c for c in crossovers if cfg.in_region(*_mid(c))]
    summary.crossovers = len(crossovers)
    summary.crossover_records = crossovers

    keys = tuple(sorted(s.key for s in sensors))
    region = region_geometry(cfg.region_bboxes())
    seen_products: set[str] = set()
    with contextlib.ExitStack() as stack:
        cat: MatchupCatalogue | None = None

        def catalogue() -> MatchupCatalogue:
            # Created on the first result, so a run that fails early leaves nothing behind.
            nonlocal cat
            if cat is None:
                cat = stack.enter_context(
                    MatchupCatalogue.create(
                        root,
                        id=cfg.matchup_catalogue.id,
                        description=cfg.matchup_catalogue.description,
                    )
                )
                stack.enter_context(cat.batch())
            return cat

        for n, c in enumerate(crossovers, 1):
            sa, sb = by_short[c.platform_a], by_short[c.platform_b]
            event = event_from_crossover(
                c,
                (sa.key, sb.key),
                orbits[sa.key],
                orbits[sb.key],
                sa.collection.swath_km,
                sb.collection.swath_km,
                t_max,
            )
            if len(keys) > 2:
                event = _widen(event, keys)
            products = _products(event, sensors, sources, orbits, t_max)
            matchups, warnings = find_matchups(event, products, t_max, cfg.min_collocation_area_km2)
            if region is not None:
                matchups = [m for m in matchups if m.geometry.intersects(region)]
            summary.warnings.extend(warnings)
            tick("matchups", n, len(crossovers))
            if not matchups:
                continue
            result = catalogue().add_event(with_matchups(event, matchups))
            summary.events += 1
            summary.matchups += len(matchups)
            used = {p.id for m in matchups for p in m.products}
            summary.products += len(used - seen_products)
            seen_products |= used
            summary.new_events += result.events_new
            summary.new_matchups += result.matchups_new
            summary.new_products += result.products_new
        catalogue()  # an empty run still leaves a (valid, empty) catalogue to open
    return summary


MERGE_MARGIN = timedelta(days=2)
"""Events of a run lie within its window widened by T and an event's length (both < 2 days)."""


def check_catalogue_target(root: Path, start: datetime, end: datetime) -> None:
    """Refuse a catalogue that cannot take this run's results, before anything runs.

    The existing catalogue is opened (a stale index is rebuilt from every file) and what
    merging reads back is read now (collections, events of the window), so a corrupt file
    stops the run before its first write rather than midway.

    Raises:
        EomatchError: the path is a file, the folder (or its nearest existing parent) is not
            writable, or a file that merging reads is corrupt.
    """
    if root.exists() and not root.is_dir():
        raise InputError(f"catalogue path {root} is a file, not a folder")
    probe = root
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise InputError(f"catalogue path {root}: {probe} is a file, not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise InputError(f"catalogue path {root}: {probe} is not writable")
    if (root / "catalog.json").exists():
        with MatchupCatalogue.open(root) as cat:
            cat.check_for_merge(start - MERGE_MARGIN, end + MERGE_MARGIN)


def region_geometry(boxes: list[BBox]) -> BaseGeometry | None:
    """The configured region as one geometry (boxes crossing 180° split in two); None = globe.

    An event is found by its closest approach; its matchups are kept where their collocation
    region touches this geometry, so a long under-flight run does not spill far outside it.
    """
    if not boxes:
        return None
    parts = []
    for w, s, e, n in boxes:
        if w <= e:
            parts.append(box(w, s, e, n))
        else:
            parts.extend([box(w, s, 180.0, n), box(-180.0, s, e, n)])
    return unary_union(parts)


def _mid(c: Crossover) -> tuple[float, float]:
    """(lon, lat) of the closest approach's midpoint, where the crossover filters apply."""
    lat, lon = midpoint(
        np.array([c.lat_a]), np.array([c.lon_a]), np.array([c.lat_b]), np.array([c.lon_b])
    )
    return float(lon[0]), float(lat[0])


def _widen(event: MatchupEvent, keys: tuple[SensorKey, ...]) -> MatchupEvent:
    """An event of a pair crossover, searched for every configured sensor (3+ sensors)."""
    return replace(event, sensors=keys)


def _products(
    event: MatchupEvent,
    sensors: list[ResolvedSensor],
    sources: dict[SensorKey, ProductSource | None],
    orbits: dict[SensorKey, TleOrbit],
    t_max: int,
) -> dict[SensorKey, list[Product]]:
    """Products of each sensor near the event: predicted from the orbit or from a STAC API."""
    lo = event.start - timedelta(seconds=t_max)
    hi = event.end + timedelta(seconds=t_max)
    out: dict[SensorKey, list[Product]] = {}
    for s in sensors:
        source = sources[s.key]
        if source is None:
            found = predict_products(orbits[s.key], s.key, s.collection, lo, hi)
        else:
            found = source.search(s.key, geometry_bbox(event.geometry), lo, hi)
        out[s.key] = [p for p in found if p.geometry.intersects(event.geometry)]
    return out


__all__ = ["FindSummary", "find_and_catalogue"]
