"""Repair of a matchup catalogue: its side index rebuilt from the files, links made whole.

Run on ``open`` when the index is stale (dirty flag left by a killed writer, or day folders
whose mtime changed behind its back) and by ``rebuild_index``. Every file is read and checked
before the first repair is written (see :meth:`CatalogueRepair.rebuild`).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Mapping

from eomatch.core import stac_items as si
from eomatch.io.catalogue_files import DATA_DIR, subdirs, write_json_file
from eomatch.io.catalogue_index import IndexEntry, index_entry
from eomatch.io.catalogue_session import CatalogueCore

log = logging.getLogger("eomatch.io.catalogue")


class CatalogueRepair:
    """Index freshness check, rebuild and link repair of the catalogue it belongs to."""

    def __init__(self, cat: CatalogueCore) -> None:
        self.cat = cat

    def scan_dirs(self) -> dict[str, int]:
        """Every ``{collection}/YYYY/MM/DD`` folder and its mtime (ns)."""
        out: dict[str, int] = {}
        for coll in subdirs(self.cat.root):
            if coll.name.startswith(".") or coll.name == DATA_DIR:
                continue
            for year in subdirs(coll):
                for month in subdirs(year):
                    for day in subdirs(month):
                        rel = f"{coll.name}/{year.name}/{month.name}/{day.name}"
                        out[rel] = day.stat().st_mtime_ns
        return out

    def index_fresh(self) -> bool:
        """Index clean, of this schema, and its day-folder mtimes those on disk."""
        return self.cat._index.is_usable() and self.scan_dirs() == self.cat._index.dirs()

    def rebuild(self) -> None:
        """Rebuild the index, then repair the files.

        Every file is read and checked before the first one is written, so a catalogue with a
        bad file (an error, not ``skip_invalid``) is left byte-identical. Skipped files stay
        listed by their day catalogs: a reader never unlinks what it could not read.
        """
        log.info("rebuilding the catalogue index of %s from its files", self.cat.root)
        self.cat._index.mark_dirty()
        self.cat._index.begin()
        self.cat._index.clear()
        dirs = self.scan_dirs()
        days: dict[str, set[str]] = {}
        entries: list[IndexEntry] = []
        emptied: list[str] = []
        stale: list[str] = []  # temp files left by a killed writer
        relink: list[str] = []  # items written before day catalogs existed
        day_lists: list[tuple[str, list[str]]] = []  # day catalogs to (re)write
        for rel in sorted(dirs):
            day = self.cat.root / rel
            ids: list[str] = []
            skipped: list[str] = []
            for entry in sorted(os.scandir(day), key=lambda e: e.name):
                if entry.name.startswith("."):
                    if entry.name.endswith(".tmp"):
                        stale.append(entry.path)
                    continue
                if not entry.name.endswith(".json") or entry.name == si.DAY_CATALOG:
                    continue
                item_rel = f"{rel}/{entry.name}"
                item = self.cat._load_item(item_rel)
                if item is None:
                    skipped.append(entry.name.removesuffix(".json"))
                    continue
                if si.with_structural_links(item, item_rel)["links"] != item.get("links"):
                    relink.append(item_rel)
                entries.append(index_entry(item, item_rel))
                ids.append(item["id"])
            old = self.cat._read_day_catalog(rel)
            if skipped and old is not None:
                ids += sorted(si.day_catalog_items(old) & set(skipped))
            if ids:
                days.setdefault(rel.split("/", 1)[0], set()).add(rel.split("/", 1)[1])
                if si.day_catalog_dict(rel, ids) != old:
                    day_lists.append((rel, ids))
            elif (day / si.DAY_CATALOG).exists():
                emptied.append(rel)
            if len(entries) >= 10_000:
                self.cat._index.add_entries(entries)
                entries.clear()
        self.cat._index.add_entries(entries)
        self.repair_collections(days)  # reads (and checks) every collection
        # -- everything read: now the repairs
        for path in stale:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        for item_rel in relink:
            item = self.cat._read_item(item_rel)
            fixed = si.with_structural_links(item, item_rel)
            write_json_file(self.cat.root / item_rel, fixed, durable=True, compact=True)
        for rel, ids in day_lists:
            self.cat._write_day_catalog(rel, ids, None)
        self.repair_relations()
        self.cat._flush_collections()
        for rel in emptied:  # stale day catalogs, deleted once no collection links to them
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.cat.root / si.day_catalog_path(rel))
        for rel in dirs:
            dirs[rel] = os.stat(self.cat.root / rel).st_mtime_ns
        self.cat._index.set_dirs(dirs)
        self.cat._index.commit(clean=True)

    def repair_relations(self) -> set[str]:
        """Drop ``related``/``derived_from`` links to items that are gone; return the day folders.

        Such links are left by a remove killed half-way (or by hand-deleted files); re-running
        the remove then finishes the work.
        """
        ids = self.cat._index.with_dangling_relations()
        touched: set[str] = set()
        for row in self.cat._index.get_many(ids).values():
            item = self.cat._load_item(row.path)
            if item is None:
                continue
            links = [
                link
                for link in item.get("links") or []
                if link.get("rel") not in ("related", "derived_from")
                or (self.cat.root / si.resolve_href(row.path, str(link["href"]))).is_file()
            ]
            if len(links) == len(item.get("links") or []):
                continue
            log.warning("%s: dropping links to items that are gone", self.cat.root / row.path)
            item["links"] = links
            write_json_file(self.cat.root / row.path, item, durable=True, compact=True)
            self.cat._index.delete_item(row.id)
            self.cat._index_item(item, row.path)
            touched.add(si.day_of(row.path))
        return touched

    def repair_collections(self, days: Mapping[str, set[str]]) -> None:
        """Extents and ``child`` day links of every collection from the index; catalog links."""
        present = self.cat._index.collections()
        children = {c for c in self.cat._children()}
        for coll in sorted(present):
            self.cat._recompute_extent(coll)
            self.set_days(coll, days.get(coll, set()))
            if coll not in children:
                self.cat._s.catalog_changed = True
        for coll in children - set(present):
            if not (self.cat.root / si.collection_path(coll)).is_file():
                self.cat._s.catalog_changed = True  # dangling child link: drop it
            else:
                self.set_days(coll, set())  # kept for its assets, no items left

    def set_days(self, coll: str, days: set[str]) -> None:
        """Make the collection link exactly ``days`` (``YYYY/MM/DD``)."""
        data = self.cat._collection(coll)
        if data is not None and si.collection_days(data) != days:
            si.set_collection_days(data, days)
            self.cat._s.changed_collections.add(coll)
