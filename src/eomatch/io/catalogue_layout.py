"""The layout of a matchup catalogue: ``catalog.json``, collections and day catalogs.

Items are written by :mod:`eomatch.io.catalogue_writes`; what links down to them is kept here:
the catalogs of the days a write session touched, the collections (``child`` links to their
days, extents) and ``catalog.json`` (``child`` links to the collections). They are flushed once,
at the end of a session, in the order that never leaves a downward link dangling (see
``eomatch.io.catalogue``'s module docstring).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from eomatch.core import stac_items as si
from eomatch.errors import EomatchError
from eomatch.io import catalogue_files as files
from eomatch.io.atomic import json_bytes, write_files
from eomatch.io.catalogue_files import read_file, scandir
from eomatch.io.catalogue_session import CatalogueCore

log = logging.getLogger("eomatch.io.catalogue")


def read_catalog(root: Path) -> dict[str, Any]:
    """``catalog.json`` of ``root``, checked (one-line error if it is not a STAC catalog)."""
    path = root / "catalog.json"
    try:
        data = orjson.loads(read_file(path))
    except FileNotFoundError as exc:
        raise EomatchError(f"{path}: no matchup catalogue here") from exc
    except (OSError, ValueError) as exc:
        raise EomatchError(f"{path}: unreadable catalog: {exc}") from exc
    if not isinstance(data, dict) or data.get("type") != "Catalog" or "id" not in data:
        raise EomatchError(f"{path}: not a STAC catalog")
    problem = si.links_problem(data.get("links"))
    if problem:
        raise EomatchError(f"{path}: not a valid STAC catalog: {problem}")
    return data


class CatalogueLayout:
    """Day catalogs, collections and ``catalog.json`` of the catalogue it belongs to."""

    def __init__(self, cat: CatalogueCore) -> None:
        self.cat = cat

    def children(self) -> list[str]:
        """Collections ``catalog.json`` links to; a child href that names no folder of the root
        (absolute, ``..``, hidden) is not one: it is never read, and a rebuild drops it."""
        names = [
            str(link["href"]).removeprefix("./").split("/")[0]
            for link in self.cat._catalog.get("links") or []
            if link.get("rel") == "child"
        ]
        return [n for n in names if n and not n.startswith(".") and "\\" not in n]

    def read_day_catalog(self, day: str) -> dict[str, Any] | None:
        """The day catalog dict; None if missing, or if unreadable (it is then regenerated)."""
        path = self.cat.root / si.day_catalog_path(day)
        try:
            data = orjson.loads(read_file(path))
            if not isinstance(data, dict) or data.get("type") != "Catalog":
                raise ValueError("not a STAC catalog")
            problem = si.links_problem(data.get("links"))
            if problem:
                raise ValueError(problem)
            return data
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            log.warning("%s: unreadable day catalog (%s), regenerating it", path, exc)
            return None

    def listed_items(self, day: str) -> set[str]:
        """Ids of the indexed items whose file is in the day folder (for a lost day catalog)."""
        names = [
            e.name.removesuffix(".json")
            for e in scandir(self.cat.root / day)
            if e.name.endswith(".json") and not e.name.startswith(".") and e.name != si.DAY_CATALOG
        ]
        rows = self.cat._index.get_many(names)
        return {i for i, r in rows.items() if si.day_of(r.path) == day}

    def write_day_catalog(
        self, day: str, ids: Iterable[str], old: Mapping[str, Any] | None
    ) -> None:
        """Write the catalog of a day folder listing ``ids``, unless it is unchanged.

        Compact JSON like the items: it is rewritten on every add to its day, and the C
        encoder only handles compact output.
        """
        new = si.day_catalog_dict(day, ids)
        if new != old:
            path = self.cat.root / si.day_catalog_path(day)
            files.write_json_file(path, new, not self.cat._batching, compact=True)

    def flush_days(self) -> list[str]:
        """Rewrite the catalogs of the days changed in this session; update ``child`` links.

        Returns the days left without items, whose catalogs are deleted by :meth:`flush` once
        their collections no longer link to them.
        """
        emptied: list[str] = []
        writes: list[tuple[str, bytes]] = []  # written together, in parallel, before collections
        # collection -> its day catalogs (None: no such collection), edited as days change
        days_of: dict[str, set[str] | None] = {}
        toggled: set[str] = set()
        for day in sorted(self.cat._s.day_changes):
            changes = self.cat._s.day_changes[day]
            new_day = day in self.cat._s.new_days
            old = None if new_day else self.read_day_catalog(day)
            if old is not None:
                ids = si.day_catalog_items(old)
            elif not new_day and (self.cat.root / si.day_catalog_path(day)).exists():
                ids = self.listed_items(day)  # unreadable: list the folder instead
            else:
                ids = set()  # new day (a lost catalog means a dirty index, rebuilt on open)
            ids |= {i for i, added in changes.items() if added}
            ids -= {i for i, added in changes.items() if not added}
            if ids:
                new = si.day_catalog_dict(day, ids)
                if new != old:
                    path = self.cat.root / si.day_catalog_path(day)
                    writes.append((str(path), json_bytes(new)))
            elif not new_day and (self.cat.root / si.day_catalog_path(day)).exists():
                emptied.append(day)
            coll, date_part = day.split("/", 1)
            if coll not in days_of:
                data = self.collection(coll)
                days_of[coll] = None if data is None else si.collection_days(data)
            days = days_of[coll]
            if days is not None and bool(ids) != (date_part in days):
                days ^= {date_part}
                toggled.add(coll)
        for coll in sorted(toggled):  # once a collection: each lists all its days
            data = self.collection(coll)
            assert data is not None
            si.set_collection_days(data, days_of[coll] or ())
            self.cat._s.changed_collections.add(coll)
        write_files(writes, durable=not self.cat._batching)
        self.cat._s.day_changes.clear()
        return emptied

    def flush(self) -> None:
        """Write day catalogs, collections and ``catalog.json``, then delete what was removed.

        Files are deleted only once nothing links down to them: dropped collections (no longer
        in ``catalog.json``), then emptied day catalogs (no longer ``child`` of a collection),
        then removed items (no longer ``item`` of a day catalog).
        """
        emptied = self.flush_days()
        self.flush_collections()
        for coll in sorted(self.cat._s.dropped_collections):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.cat.root / si.collection_path(coll))
        self.cat._s.dropped_collections.clear()
        for day in emptied:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.cat.root / si.day_catalog_path(day))
        for rel in reversed(self.cat._s.removed_items):  # products, their matchup, ..., the event
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.cat.root / rel)
        self.cat._s.removed_items.clear()
        for day in emptied:  # drop empty YYYY/MM/DD folders (and empty months and years)
            self.cat._s.made_dirs.discard(day)
            folder = self.cat.root / day
            for _ in range(3):
                try:
                    folder.rmdir()
                except OSError:
                    break
                folder = folder.parent

    def collection(self, coll: str) -> dict[str, Any] | None:
        """A collection as edited in this session (read once); None if it does not exist."""
        if coll in self.cat._s.dropped_collections:
            return None
        if coll not in self.cat._s.collections:
            path = self.cat.root / si.collection_path(coll)
            try:
                data = orjson.loads(read_file(path))
            except FileNotFoundError:
                return None
            except (OSError, ValueError) as exc:
                raise EomatchError(f"{path}: unreadable collection: {exc}") from exc
            problem = si.collection_problem(data)
            if problem:
                raise EomatchError(f"{path}: not a valid STAC collection: {problem}")
            self.cat._s.collections[coll] = data
        return self.cat._s.collections[coll]

    def extend(self, coll: str, bbox: Sequence[float], start: datetime, end: datetime) -> None:
        """Grow a collection's extent to cover an added item (made if new)."""
        data = self.collection(coll)
        if data is None:
            self.cat._s.dropped_collections.discard(coll)
            self.cat._s.collections[coll] = si.collection_dict(coll, bbox, (start, end))
            self.cat._s.changed_collections.add(coll)
            return
        if coll not in self.cat._s.extents:
            self.cat._s.extents[coll] = si.collection_extent(data)
        old_bbox, (lo, hi) = self.cat._s.extents[coll]
        new_bbox = si.bbox_union(old_bbox, bbox)
        new_lo, new_hi = min(lo, start), max(hi, end)
        if new_bbox != old_bbox or (new_lo, new_hi) != (lo, hi):
            self.cat._s.extents[coll] = (new_bbox, (new_lo, new_hi))
            data["extent"]["spatial"]["bbox"][0] = new_bbox
            data["extent"]["temporal"]["interval"][0] = [
                si.format_bound(new_lo),
                si.format_bound(new_hi),
            ]
            self.cat._s.changed_collections.add(coll)

    def recompute_extent(self, coll: str) -> None:
        """Extent of a collection from the index after removals; empty ones are dropped."""
        self.cat._s.extents.pop(coll, None)
        ext = self.cat._index.collection_extent(coll)
        data = self.collection(coll)
        if ext is None:
            if data is not None and not data.get("assets"):
                self.cat._s.dropped_collections.add(coll)  # deleted by flush, after catalog.json
                self.cat._s.collections.pop(coll, None)
                self.cat._s.changed_collections.discard(coll)
                self.cat._s.catalog_changed = True
            return
        (w, s, e, n), lo, hi, crossing = ext
        bbox = [-180.0, s, 180.0, n] if crossing else [w, s, e, n]
        interval = (datetime.fromtimestamp(lo, UTC), datetime.fromtimestamp(hi, UTC))
        if data is None:
            self.cat._s.collections[coll] = si.collection_dict(coll, bbox, interval)
            self.cat._s.changed_collections.add(coll)
            return
        if si.collection_extent(data) != (bbox, interval):
            data["extent"]["spatial"]["bbox"] = [bbox]
            data["extent"]["temporal"]["interval"] = [
                [si.format_datetime(interval[0]), si.format_datetime(interval[1])]
            ]
            self.cat._s.changed_collections.add(coll)

    def flush_collections(self) -> None:
        """Write the changed collections, then ``catalog.json`` if its children changed."""
        for coll in sorted(self.cat._s.changed_collections):
            files.write_json_file(
                self.cat.root / si.collection_path(coll),
                self.cat._s.collections[coll],
                not self.cat._batching,
            )
        self.cat._s.changed_collections.clear()
        existing = set(self.children())
        present = {
            c
            for c in existing | set(self.cat._s.collections)
            if c not in self.cat._s.dropped_collections
            and (self.cat.root / si.collection_path(c)).is_file()
        }
        if present != existing or self.cat._s.catalog_changed:
            extra = {
                k: v
                for k, v in self.cat._catalog.items()
                if k not in ("type", "stac_version", "id", "description", "links")
            }
            self.cat._catalog = si.catalog_dict(
                self.cat._catalog["id"], self.cat._catalog.get("description", ""), present, extra
            )
            files.write_json_file(
                self.cat.root / "catalog.json", self.cat._catalog, not self.cat._batching
            )
        self.cat._s.catalog_changed = False
