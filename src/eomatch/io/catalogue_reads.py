"""Reading a matchup catalogue: which events a filter selects, and the events as objects.

Selection runs on the side index (:mod:`eomatch.io.catalogue_index`) only; item files are read
for the events kept, each product once. Filters, as the previous generation defined them:

* ``collections``: events of that combination: *every* listed collection is involved
  (``["S2_MSI_L1C", "S3_EFR"]`` means S2-vs-S3 events; one collection means any event with it).
* ``platforms``: events involving *any* listed platform; each name may be any alias the
  satellite registry knows (``S2A``, ``Sentinel-2A``, ``sentinel-2a``); a name neither the
  registry nor the catalogue knows is an error, not an empty result.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cql2

from eomatch.core import stac_items as si
from eomatch.core import vocabulary as v
from eomatch.core.products import Matchup, MatchupEvent, Product
from eomatch.core.satellites import SatelliteRegistry
from eomatch.errors import EomatchError, NotFoundError, UnknownSatelliteError
from eomatch.io.catalogue_index import CatalogueIndex, IndexRow
from eomatch.io.matchup_source import CatalogueMatchupSource
from eomatch.timeparse import TimeLike, parse_time

log = logging.getLogger(__name__)

ReadItem = Callable[[str], dict[str, Any]]
"""Reads (and checks) the item file at a catalogue-relative path."""


@dataclass(frozen=True)
class EventFilter:
    """The filters of :meth:`MatchupCatalogue.get_events` (see its docstring)."""

    collections: Sequence[str] | None = None
    platforms: Sequence[str] | None = None
    start_time: TimeLike | None = None
    stop_time: TimeLike | None = None
    bbox: Sequence[float] | None = None
    products_downloaded: bool | None = None
    filter: str | None = None


def _epoch(when: TimeLike | None) -> float | None:
    """Unix seconds; accepts what every command accepts (ISO text, date, datetime; naive = UTC)."""
    return None if when is None else parse_time(when, "time").timestamp()


def _cql2(text: str | None) -> cql2.Expr | None:
    if text is None:
        return None
    try:
        return cql2.Expr(text)
    except Exception as exc:  # cql2 raises several classes for bad text
        raise EomatchError(f"invalid CQL2 filter {text!r}: {exc}") from exc


def platform_names(
    names: Sequence[str], stored: set[str], registry: SatelliteRegistry | None
) -> set[str]:
    """Casefolded names that select each of ``names``: all aliases of its satellite.

    ``stored`` are the platform names the catalogue holds; one of those is accepted as it is
    (a satellite of a configuration the registry was not built from).

    Raises:
        UnknownSatelliteError: a name neither the registry nor the catalogue knows (one line).
    """
    registry = registry or SatelliteRegistry()
    folded = {s.casefold() for s in stored}
    out: set[str] = set()
    for name in names:
        try:
            out |= {n.casefold() for n in registry.get(name).names()}
        except UnknownSatelliteError:
            if name.strip().casefold() not in folded:
                known = ", ".join(sorted({*(s.short_name for s in registry), *stored}))
                raise UnknownSatelliteError(f"unknown platform {name!r}; known: {known}") from None
            out.add(name.strip().casefold())
    return out


def event_collections(
    index: CatalogueIndex,
    collections: Sequence[str] | None,
    platforms: Sequence[str] | None,
    registry: SatelliteRegistry | None,
) -> list[str] | None:
    """Events collections whose sensors pass the collection and platform filters (None: all)."""
    if collections is None and platforms is None:
        return None
    props = index.event_collection_props()
    wanted_platforms = None
    if platforms is not None:
        stored = {p for x in props.values() for p in x.get(v.PLATFORMS_PROP) or []}
        wanted_platforms = platform_names(platforms, stored, registry)
    out = []
    for coll, x in props.items():
        involved = set(x.get(v.COLLECTIONS_PROP) or [])
        if collections is not None and not set(collections) <= involved:
            continue
        if wanted_platforms is not None and not wanted_platforms & {
            p.casefold() for p in x.get(v.PLATFORMS_PROP) or []
        }:
            continue
        out.append(coll)
    return out


def get_events(
    index: CatalogueIndex,
    read_item: ReadItem,
    f: EventFilter,
    skip_invalid: bool = False,
    registry: SatelliteRegistry | None = None,
    root: Path | None = None,
) -> list[MatchupEvent]:
    """Events with their matchups and products that pass ``f``, ordered by start and id.

    With ``root`` (the catalogue's), each matchup gets its data source (where its product
    files are: ``Matchup.return_matchup_dataset``)."""
    expr = _cql2(f.filter)
    lat = None if f.bbox is None else (float(f.bbox[1]), float(f.bbox[3]))
    rows = [
        r
        for r in index.select_events(
            event_collections(index, f.collections, f.platforms, registry),
            _epoch(f.start_time),
            _epoch(f.stop_time),
            lat,
        )
        if f.bbox is None or si.bbox_intersects(r.bbox, f.bbox)
    ]
    mu_ids = index.matchups_of([r.id for r in rows])
    mu_rows = index.get_many(m for ids in mu_ids.values() for m in ids)
    keep = {
        mid
        for mid, mr in mu_rows.items()
        if expr is None
        or expr.matches({"type": "Feature", "id": mid, "properties": mr.props or {}})
    }
    mu_ids = {e: [m for m in ids if m in keep] for e, ids in mu_ids.items()}
    if expr is not None:  # an event is kept if one of its matchups matches
        rows = [r for r in rows if mu_ids[r.id]]
    prod_ids = index.products_of([m for r in rows for m in mu_ids[r.id]])
    prod_rows = index.get_many(p for ids in prod_ids.values() for p in ids)
    if f.products_downloaded is not None:
        rows = [
            r
            for r in rows
            if all(
                prod_rows[p].downloaded for m in mu_ids[r.id] for p in prod_ids[m] if p in prod_rows
            )
            == f.products_downloaded
        ]
    return _assemble(rows, mu_ids, mu_rows, prod_ids, prod_rows, read_item, skip_invalid, root)


def get_matchup(
    index: CatalogueIndex, read_item: ReadItem, matchup_id: str, root: Path | None = None
) -> Matchup:
    """One matchup by id, with its products (and its data source with ``root``).

    Raises:
        NotFoundError: no matchup of that id in the catalogue.
    """
    row = index.get(matchup_id)
    if row is None or row.kind != "matchup":
        raise NotFoundError(f"no matchup {matchup_id!r} in the catalogue")
    prod_ids = index.products_of([matchup_id])
    prod_rows = index.get_many(p for ids in prod_ids.values() for p in ids)
    products = [
        si.item_to_product(read_item(prod_rows[p].path))
        for p in prod_ids.get(matchup_id, [])
        if p in prod_rows
    ]
    mu = si.item_to_matchup(read_item(row.path), products)
    if root is None:
        return mu
    event = index.get(mu.event_id)
    paths = {p: r.path for p, r in prod_rows.items()}
    if event is not None:
        paths[event.id] = event.path
    return dataclasses.replace(mu, source=CatalogueMatchupSource(root, paths, mu.event_id))


def _assemble(
    rows: Sequence[IndexRow],
    mu_ids: Mapping[str, list[str]],
    mu_rows: Mapping[str, IndexRow],
    prod_ids: Mapping[str, list[str]],
    prod_rows: Mapping[str, IndexRow],
    read_item: ReadItem,
    skip_invalid: bool,
    root: Path | None = None,
) -> list[MatchupEvent]:
    """Events built from their item files (each product read once)."""
    products: dict[str, Product] = {}
    events: list[MatchupEvent] = []
    for r in rows:
        try:
            matchups = []
            for mid in mu_ids[r.id]:
                prods = []
                for pid in prod_ids[mid]:
                    if pid not in products and pid in prod_rows:
                        products[pid] = si.item_to_product(read_item(prod_rows[pid].path))
                    if pid in products:
                        prods.append(products[pid])
                mu = si.item_to_matchup(read_item(mu_rows[mid].path), prods)
                if root is not None:
                    paths = {p.id: prod_rows[p.id].path for p in prods}
                    paths[r.id] = r.path
                    mu = dataclasses.replace(mu, source=CatalogueMatchupSource(root, paths, r.id))
                matchups.append(mu)
            events.append(si.item_to_event(read_item(r.path), matchups))
        except EomatchError:
            if not skip_invalid:
                raise
            log.warning("event %s skipped: one of its items is invalid", r.id)
    return events
