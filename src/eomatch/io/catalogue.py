"""The matchup catalogue on disk: a self-contained STAC catalogue plus a SQLite side index.

Layout (see ``core/stac_items.py``)::

    {root}/catalog.json                       child -> every collection
    {root}/{collection}/collection.json       child -> each day catalog of the collection
    {root}/{collection}/YYYY/MM/DD/catalog.json   day catalog: item -> each item of that day
    {root}/{collection}/YYYY/MM/DD/{item-id}.json item: parent -> its day catalog
    {root}/data/...                       downloaded products and other local assets
    {root}/.eomatch.lock                  fcntl lock serialising writers
    {root}/.eomatch-index.sqlite          side index (a cache, rebuilt from the files)

The catalogue is crawlable by static STAC tools (pystac ``get_items(recursive=True)``, STAC
Browser): catalog -> collections -> day catalogs -> items. Collections do not list items
themselves: that would make each added event rewrite an O(catalogue) file. An add rewrites only
the catalogs of the days it touches (O(items of one day)) and a collection only when one of its
days appears or empties (or its extent changes).

Crash safety: every file is replaced atomically (temp file + ``os.replace``). A writer first
commits ``dirty=1`` in the index, then writes item files (products, matchups, then the event
that links to them), then the day catalogs of the days it touched, then collections (new
``child`` links, extents) and ``catalog.json``, and finally records everything in the index with
``dirty=0`` in one transaction. Removals run the other way round: day catalogs, collections and
``catalog.json`` first stop linking to what goes, then collections, day catalogs and items are
deleted. So a downward link (``child``, ``item``) never points at a missing file; a kill may
leave an upward link (an item's ``parent`` day catalog, a new collection) not yet written. The
next ``open`` sees the dirty flag (or day directories whose mtime changed) and rebuilds from the
files: index, day catalogs, collections' ``child`` links and extents, catalog links.

Batch mode (:meth:`MatchupCatalogue.batch`) writes day catalogs, collections and
``catalog.json`` once, at the end of the batch; new events go through the bulk writer
(:mod:`eomatch.io.catalogue_bulk`: items built here, files created in order by one helper
process, index rows recorded in bulk). A new event is written complete before its matchups and
products, so a kill can leave an event linking (``related``) to matchups not written yet; the
next ``open`` drops those links and a re-run adds the matchups back. No ``child``/``item``
link ever dangles.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from eomatch.core import stac_items as si
from eomatch.core.products import Matchup, MatchupEvent, Product
from eomatch.core.satellites import SatelliteRegistry
from eomatch.errors import EomatchError
from eomatch.io import catalogue_files as files
from eomatch.io import catalogue_reads as reads
from eomatch.io.atomic import sync_files
from eomatch.io.catalogue_assets import CatalogueAssets
from eomatch.io.catalogue_assets import media_type_for as media_type_for
from eomatch.io.catalogue_files import DATA_DIR as DATA_DIR
from eomatch.io.catalogue_files import LOCK_NAME as LOCK_NAME
from eomatch.io.catalogue_files import MAX_FILE_BYTES as MAX_FILE_BYTES
from eomatch.io.catalogue_files import read_file
from eomatch.io.catalogue_index import (
    INDEX_NAME,
    CatalogueIndex,
    IndexRow,
    index_entry,
)
from eomatch.io.catalogue_layout import CatalogueLayout, read_catalog
from eomatch.io.catalogue_repair import CatalogueRepair
from eomatch.io.catalogue_session import WriteSession
from eomatch.io.catalogue_writes import AddResult as AddResult
from eomatch.io.catalogue_writes import CatalogueWrites
from eomatch.io.catalogue_writes import ImportStatus as ImportStatus
from eomatch.timeparse import TimeLike

log = logging.getLogger(__name__)

DEFAULT_DESCRIPTION = "Satellite-to-satellite matchups found by eomatch."


class MatchupCatalogue:
    """Events → matchups → products stored as a static STAC catalogue, with a side index."""

    registry: SatelliteRegistry | None = None
    """Satellites whose names ``get_events(platforms=...)`` accepts (None: the built-in ones)."""

    def __init__(self, root: Path, skip_invalid: bool = False) -> None:
        self.root = root
        self.skip_invalid = skip_invalid
        self._catalog: dict[str, Any] = self._read_catalog()
        self._idx = CatalogueIndex(root / INDEX_NAME)
        self._lock_fd: int | None = None
        self._depth = 0
        self._batching = False
        self._failed = False
        self._s = WriteSession()  # replaced by a fresh one at each session start and rebuild
        self._assets = CatalogueAssets(self)
        self._repair = CatalogueRepair(self)
        self._layout = CatalogueLayout(self)
        self._writes = CatalogueWrites(self, self._layout)

    @property
    def _index(self) -> CatalogueIndex:
        """The side index: with what the bulk writer wrote recorded, and rebuilt from the files
        after a failed write (whose index transaction was rolled back)."""
        bulk = self._writes.bulk
        if bulk is not None and bulk.busy:
            bulk.flush()
        if self._failed and self._depth == 0:
            self._failed = False
            self.rebuild_index()
        return self._idx

    # --- lifecycle --------------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        path: str | os.PathLike[str],
        id: str = "matchup-catalogue",
        description: str = DEFAULT_DESCRIPTION,
    ) -> MatchupCatalogue:
        """Create an empty catalogue at ``path`` (or open it if one is already there)."""
        root = Path(path)
        if root.name == "catalog.json":
            root = root.parent
        if not (root / "catalog.json").exists():
            root.mkdir(parents=True, exist_ok=True)
            files.write_json_file(root / "catalog.json", si.catalog_dict(id, description, []), True)
        return cls.open(root)

    @classmethod
    def open(cls, path: str | os.PathLike[str], skip_invalid: bool = False) -> MatchupCatalogue:
        """Open a catalogue from its root directory or its ``catalog.json``.

        The side index is checked (dirty flag, day-directory mtimes) and rebuilt from the files
        if stale; with ``skip_invalid`` unreadable item files are logged and skipped instead of
        raising :class:`EomatchError`.
        """
        root = Path(path)
        if root.name == "catalog.json" or root.is_file():
            root = root.parent
        if not (root / "catalog.json").is_file():
            raise EomatchError(f"{root / 'catalog.json'}: no matchup catalogue here")
        try:
            cat = cls(root, skip_invalid=skip_invalid)
        except (sqlite3.Error, PermissionError) as exc:
            raise _read_only(root, exc) from exc
        try:
            if not cat._index_fresh():
                with cat.lock():
                    if not cat._index_fresh():  # another process may have rebuilt it meanwhile
                        cat.rebuild_index()
        except (sqlite3.Error, PermissionError) as exc:
            cat.close()
            raise _read_only(root, exc) from exc
        except BaseException:
            cat.close()
            raise
        return cat

    def close(self) -> None:
        """Release the lock (if held) and close the index."""
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
        self._idx.close()

    def __enter__(self) -> MatchupCatalogue:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def id(self) -> str:
        """Catalog id."""
        return str(self._catalog["id"])

    @property
    def data_root(self) -> Path:
        """Directory for downloaded products and other files the catalogue owns."""
        return self.root / DATA_DIR

    # --- locking and write sessions ---------------------------------------------------------

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the catalogue's writer lock (reentrant); other writers wait."""
        if self._lock_fd is None:
            self._lock_fd = os.open(self.root / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o666)
        if self._depth == 0:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
            if self._depth == 0:
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def batch(self, workers: int = 0) -> contextlib.AbstractContextManager[None]:
        """Defer collection, catalog and index writes (and fsyncs) to the end of the block.

        For bulk loads; see :meth:`eomatch.io.catalogue_writes.CatalogueWrites.batch`.
        """
        return self._writes.batch(workers)

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        with self.lock():
            outermost = self._depth == 1 and not self._index.in_transaction
            if outermost:
                self._start_session()
            try:
                yield
            except BaseException:
                if outermost:
                    self._writes.drain(quiet=True)
                    self._index.rollback()
                    self._failed = True
                raise
            if outermost:
                self._finish_session()

    def _start_session(self) -> None:
        self._catalog = self._read_catalog()
        self._s = WriteSession()
        self._failed = False
        # Full freshness check (day-directory scan) on open only; here the dirty flag suffices
        # since every writer of ours records what it wrote: keeps one add O(1).
        if not self._index.is_usable():
            try:
                self._rebuild()
            except BaseException:
                self._index.rollback()
                raise
        self._index.mark_dirty()
        self._index.begin()

    def _finish_session(self) -> None:
        self._writes.drain()
        self._flush()
        if self._batching:  # a batch writes its files without an fsync each: one sync for all
            sync_files(self.root)
        dirs: dict[str, int] = {}
        gone: list[str] = []
        for rel in self._s.touched_dirs:
            try:
                dirs[rel] = os.stat(self.root / rel).st_mtime_ns
            except FileNotFoundError:
                gone.append(rel)
        self._index.set_dirs(dirs)
        self._index.forget_dirs(gone)
        self._index.commit(clean=True)

    # --- index freshness and rebuild --------------------------------------------------------

    def _index_fresh(self) -> bool:
        return self._repair.index_fresh()

    def rebuild_index(self) -> None:
        """Rebuild the side index from the item files and repair collections and catalog."""
        with self.lock():
            self._writes.drain()  # queued batch writes first: the rebuild reads the files
            self._index.rollback()
            self._catalog = self._read_catalog()
            self._s = WriteSession()
            self._rebuild()

    def _rebuild(self) -> None:
        self._repair.rebuild()

    def _load_item(self, rel: str) -> dict[str, Any] | None:
        self._writes.wait_for(rel)
        path = self.root / rel
        try:
            item: dict[str, Any] = orjson.loads(read_file(path))
            problem = si.item_problem(item)  # every reader relies on the shapes it checks
            if problem:
                raise ValueError(problem)
            if f"{item['id']}.json" != path.name:
                raise ValueError(f"id {item['id']!r:.80} does not match the file name")
            if item["collection"] != rel.split("/", 1)[0]:
                raise ValueError(f"collection {item['collection']!r:.80} does not match its folder")
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            msg = f"{path}: invalid catalogue item: {exc}"
            if self.skip_invalid:
                log.warning("%s (skipped)", msg)
                return None
            raise EomatchError(msg) from exc
        return item

    def _index_item(
        self,
        item: Mapping[str, Any],
        rel: str,
        times: tuple[datetime, datetime] | None = None,
    ) -> None:
        self._index.add_entries([index_entry(item, rel, times)])

    # --- files ------------------------------------------------------------------------------

    def _read_catalog(self) -> dict[str, Any]:
        return read_catalog(self.root)

    def _children(self) -> list[str]:
        return self._layout.children()

    def _write_item(self, rel: str, item: Mapping[str, Any]) -> None:
        self._writes.write_item(rel, item)

    def _read_day_catalog(self, day: str) -> dict[str, Any] | None:
        return self._layout.read_day_catalog(day)

    def _write_day_catalog(
        self, day: str, ids: Iterable[str], old: Mapping[str, Any] | None
    ) -> None:
        self._layout.write_day_catalog(day, ids, old)

    def _flush(self) -> None:
        self._layout.flush()

    def _read_item(self, rel: str) -> dict[str, Any]:
        item = self._load_item(rel)
        if item is None:
            raise EomatchError(f"{self.root / rel}: invalid catalogue item (skipped)")
        return item

    def _collection(self, coll: str) -> dict[str, Any] | None:
        return self._layout.collection(coll)

    def _extend(self, coll: str, bbox: Sequence[float], start: datetime, end: datetime) -> None:
        self._layout.extend(coll, bbox, start, end)

    def _recompute_extent(self, coll: str) -> None:
        self._layout.recompute_extent(coll)

    def _flush_collections(self) -> None:
        self._layout.flush_collections()

    # --- adding, importing, removing (eomatch.io.catalogue_writes) -------------------------

    def add_event(self, event: MatchupEvent) -> AddResult:
        """Add an event with its matchups and their products; items already present are kept.

        See :meth:`eomatch.io.catalogue_writes.CatalogueWrites.add_event`.
        """
        return self._writes.add_event(event)

    def import_items(
        self,
        items: Iterable[Mapping[str, Any]],
        collections: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> dict[str, ImportStatus]:
        """Merge STAC items from elsewhere (pulled from a STAC API) into the catalogue.

        See :meth:`eomatch.io.catalogue_writes.CatalogueWrites.import_items`.
        """
        return self._writes.import_items(items, collections)

    def remove_event(self, event_id: str) -> None:
        """Remove an event, its matchups no other event uses and products no matchup uses.

        See :meth:`eomatch.io.catalogue_writes.CatalogueWrites.remove_event`.
        """
        self._writes.remove_event(event_id)

    # --- queries ----------------------------------------------------------------------------

    def check_for_merge(self, start: datetime, end: datetime) -> None:
        """Read what merging new events of ``[start, end]`` reads back: the collections and
        the event items overlapping that time (one at a time).

        For writers that must fail before their first write, not midway.

        Raises:
            EomatchError: a corrupt or unreadable file (one line naming it).
        """
        for coll in self._children():
            self._collection(coll)
        for rel in self._index.event_paths_overlapping(start.timestamp(), end.timestamp()):
            self._read_item(rel)

    def get_events(
        self,
        collections: Sequence[str] | None = None,
        platforms: Sequence[str] | None = None,
        start_time: TimeLike | None = None,
        stop_time: TimeLike | None = None,
        bbox: Sequence[float] | None = None,
        products_downloaded: bool | None = None,
        filter: str | None = None,
    ) -> list[MatchupEvent]:
        """Events with their matchups and products, filtered.

        Args:
            collections: keep events of that combination: every listed product collection is
                involved (``["S2_MSI_L1C", "S3_EFR"]``: S2-vs-S3 events).
            platforms: keep events involving any of these platforms, by any name the
                satellite registry knows (``S2A``, ``Sentinel-2A``); an unknown name raises
                :class:`~eomatch.errors.UnknownSatelliteError`.
            start_time: drop events ending before this (naive means UTC).
            stop_time: drop events starting after this.
            bbox: ``[west, south, east, north]`` the event's bbox must intersect (west > east
                crosses the antimeridian).
            products_downloaded: True keeps events whose products all have a local ``data``
                asset; False keeps events with at least one product not downloaded.
            filter: CQL2 text over **matchup** item properties; an event is kept if any of its
                matchups matches, and only the matching matchups are returned with it.
        """
        f = reads.EventFilter(
            collections, platforms, start_time, stop_time, bbox, products_downloaded, filter
        )
        return reads.get_events(
            self._index, self._read_item, f, self.skip_invalid, self.registry, self.root
        )

    def get_matchup(self, matchup_id: str) -> Matchup:
        """One matchup by id, with its products; ``.return_matchup_dataset()`` reads its data.

        Raises:
            NotFoundError: no matchup of that id.
        """
        return reads.get_matchup(self._index, self._read_item, matchup_id, self.root)

    def product_item(self, product_id: str) -> dict[str, Any]:
        """The product's STAC item dict."""
        return self._read_item(self._row(product_id, "product").path)

    def products(self, ids: Iterable[str]) -> list[Product]:
        """Products by id (unknown ids raise :class:`EomatchError`)."""
        return [si.item_to_product(self.product_item(i)) for i in ids]

    def item_path(self, item_id: str) -> Path:
        """Absolute path of any item file."""
        return self.root / self._row(item_id, None).path

    def item_files(self) -> list[tuple[str, str, str]]:
        """``(collection, item id, path relative to the root)`` of every item, from the index."""
        return self._index.item_files()

    def collection_files(self) -> dict[str, str]:
        """Collection id → ``{id}/collection.json`` for every collection the root lists."""
        return {c: f"{c}/collection.json" for c in self._children()}

    def item_paths(self, ids: Iterable[str]) -> dict[str, str]:
        """Catalogue-relative file of each of ``ids`` present in the catalogue (from the index)."""
        return {i: r.path for i, r in self._index.get_many(ids).items()}

    def counts(self) -> dict[str, int]:
        """Number of events, matchups and products in the index."""
        return {k: self._index.count(k) for k in ("event", "matchup", "product")}

    def _row(self, item_id: str, kind: str | None) -> IndexRow:
        row = self._index.get(item_id)
        if row is None or (kind is not None and row.kind != kind):
            raise EomatchError(f"no {kind or 'item'} '{item_id}' in the catalogue {self.root}")
        return row

    # --- assets (one implementation: eomatch.io.catalogue_assets) ---------------------------

    def local_file(self, item_id: str, href: str) -> Path | None:
        """The local file an asset href of ``item_id`` points to; None for remote URLs.

        Relative hrefs are resolved against the item's own file (from the index, no read).
        """
        return self._assets.local_path(self._row(item_id, None).path, href)

    def asset_href(self, item_id: str, target: str | os.PathLike[str]) -> str:
        """The href an asset of ``item_id`` gets for ``target``: relative inside the root.

        Public so callers can decide on a different form (e.g. ``file://``) for outside files.
        """
        return self._assets.href(self._row(item_id, None).path, target)

    def update_item_assets(
        self,
        item_id: str,
        edit: Callable[[dict[str, Any]], bool],
        stac_extensions: Sequence[str] = (),
    ) -> dict[str, Any]:
        """Edit any item's assets under the writer lock (see ``CatalogueAssets.update_item``)."""
        return self._assets.update_item(item_id, edit, stac_extensions)

    def add_matchup_asset(
        self,
        matchup: Matchup | str,
        key: str | None = None,
        href: str | os.PathLike[str] | None = None,
        media_type: str | None = None,
        title: str | None = None,
        roles: Sequence[str] | None = None,
        *,
        asset_key: str | None = None,
        asset: Any = None,
    ) -> dict[str, Any]:
        """Attach a file or URL to a matchup item.

        ``key, href`` or ``asset_key=, asset=pystac.Asset(...)``; a path inside the catalogue
        root is stored relative. Returns the document as written.
        """
        return self._assets.add(
            "matchup", matchup, key, href, media_type, title, roles, asset_key, asset, False
        )

    def remove_matchup_asset(
        self,
        matchup: Matchup | str,
        key: str | None = None,
        delete_file: bool = False,
        *,
        asset_key: str | None = None,
    ) -> dict[str, Any]:
        """Detach an asset from a matchup item.

        ``delete_file`` also deletes its file, only if inside ``{root}/data``.
        """
        return self._assets.remove("matchup", matchup, key, delete_file, asset_key, False)

    def add_matchup_collection_asset(
        self,
        matchup: Matchup | str,
        key: str | None = None,
        href: str | os.PathLike[str] | None = None,
        media_type: str | None = None,
        title: str | None = None,
        roles: Sequence[str] | None = None,
        *,
        asset_key: str | None = None,
        asset: Any = None,
    ) -> dict[str, Any]:
        """Attach a file or URL to the collection of a matchup (or a collection id).

        ``key, href`` or ``asset_key=, asset=pystac.Asset(...)``; a path inside the catalogue
        root is stored relative. Returns the document as written.
        """
        return self._assets.add(
            "matchup", matchup, key, href, media_type, title, roles, asset_key, asset, True
        )

    def remove_matchup_collection_asset(
        self,
        matchup: Matchup | str,
        key: str | None = None,
        delete_file: bool = False,
        *,
        asset_key: str | None = None,
    ) -> dict[str, Any]:
        """Detach an asset from the collection of a matchup (or a collection id).

        ``delete_file`` also deletes its file, only if inside ``{root}/data``.
        """
        return self._assets.remove("matchup", matchup, key, delete_file, asset_key, True)

    def add_event_asset(
        self,
        event: MatchupEvent | str,
        key: str | None = None,
        href: str | os.PathLike[str] | None = None,
        media_type: str | None = None,
        title: str | None = None,
        roles: Sequence[str] | None = None,
        *,
        asset_key: str | None = None,
        asset: Any = None,
    ) -> dict[str, Any]:
        """Attach a file or URL to an event item.

        ``key, href`` or ``asset_key=, asset=pystac.Asset(...)``; a path inside the catalogue
        root is stored relative. Returns the document as written.
        """
        return self._assets.add(
            "event", event, key, href, media_type, title, roles, asset_key, asset, False
        )

    def remove_event_asset(
        self,
        event: MatchupEvent | str,
        key: str | None = None,
        delete_file: bool = False,
        *,
        asset_key: str | None = None,
    ) -> dict[str, Any]:
        """Detach an asset from an event item.

        ``delete_file`` also deletes its file, only if inside ``{root}/data``.
        """
        return self._assets.remove("event", event, key, delete_file, asset_key, False)

    def add_event_collection_asset(
        self,
        event: MatchupEvent | str,
        key: str | None = None,
        href: str | os.PathLike[str] | None = None,
        media_type: str | None = None,
        title: str | None = None,
        roles: Sequence[str] | None = None,
        *,
        asset_key: str | None = None,
        asset: Any = None,
    ) -> dict[str, Any]:
        """Attach a file or URL to the events collection of an event (or a collection id).

        ``key, href`` or ``asset_key=, asset=pystac.Asset(...)``; a path inside the catalogue
        root is stored relative. Returns the document as written.
        """
        return self._assets.add(
            "event", event, key, href, media_type, title, roles, asset_key, asset, True
        )

    def remove_event_collection_asset(
        self,
        event: MatchupEvent | str,
        key: str | None = None,
        delete_file: bool = False,
        *,
        asset_key: str | None = None,
    ) -> dict[str, Any]:
        """Detach an asset from the events collection of an event (or a collection id).

        ``delete_file`` also deletes its file, only if inside ``{root}/data``.
        """
        return self._assets.remove("event", event, key, delete_file, asset_key, True)

    def add_product_asset(
        self,
        product: Product | str,
        key: str | None = None,
        href: str | os.PathLike[str] | None = None,
        media_type: str | None = None,
        title: str | None = None,
        roles: Sequence[str] | None = None,
        *,
        asset_key: str | None = None,
        asset: Any = None,
    ) -> dict[str, Any]:
        """Attach a file or URL to a product item.

        ``key, href`` or ``asset_key=, asset=pystac.Asset(...)``; a path inside the catalogue
        root is stored relative. Returns the document as written.
        """
        return self._assets.add(
            "product", product, key, href, media_type, title, roles, asset_key, asset, False
        )

    def remove_product_asset(
        self,
        product: Product | str,
        key: str | None = None,
        delete_file: bool = False,
        *,
        asset_key: str | None = None,
    ) -> dict[str, Any]:
        """Detach an asset from a product item.

        ``delete_file`` also deletes its file, only if inside ``{root}/data``.
        """
        return self._assets.remove("product", product, key, delete_file, asset_key, False)

    def add_product_collection_asset(
        self,
        product: Product | str,
        key: str | None = None,
        href: str | os.PathLike[str] | None = None,
        media_type: str | None = None,
        title: str | None = None,
        roles: Sequence[str] | None = None,
        *,
        asset_key: str | None = None,
        asset: Any = None,
    ) -> dict[str, Any]:
        """Attach a file or URL to the collection of a product (or a collection id).

        ``key, href`` or ``asset_key=, asset=pystac.Asset(...)``; a path inside the catalogue
        root is stored relative. Returns the document as written.
        """
        return self._assets.add(
            "product", product, key, href, media_type, title, roles, asset_key, asset, True
        )

    def remove_product_collection_asset(
        self,
        product: Product | str,
        key: str | None = None,
        delete_file: bool = False,
        *,
        asset_key: str | None = None,
    ) -> dict[str, Any]:
        """Detach an asset from the collection of a product (or a collection id).

        ``delete_file`` also deletes its file, only if inside ``{root}/data``.
        """
        return self._assets.remove("product", product, key, delete_file, asset_key, True)

    def set_product_data(
        self, product_id: str, local_path: str | os.PathLike[str] | None
    ) -> dict[str, Any]:
        """Register (or with None unregister) a downloaded file as the product's ``data`` asset.

        The provider href it replaces is kept in ``eomatch:source_href`` and restored when the
        file is unregistered, so the product can be downloaded again. Files are not deleted.
        """
        return self._assets.set_product_data(product_id, local_path)


def _read_only(root: Path, exc: BaseException) -> EomatchError:
    """One line for a catalogue whose index cannot be opened or brought up to date."""
    return EomatchError(
        f"{root}: cannot open the catalogue for reading and indexing ({exc}); it must be "
        "writable by this user (its side index and lock live in it)"
    )
