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
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import orjson

from eomatch.core import stac_items as si
from eomatch.core.products import Matchup, MatchupEvent, Product
from eomatch.core.satellites import SatelliteRegistry
from eomatch.errors import EomatchError
from eomatch.io import catalogue_files as files
from eomatch.io import catalogue_reads as reads
from eomatch.io.catalogue_assets import CatalogueAssets
from eomatch.io.catalogue_assets import media_type_for as media_type_for
from eomatch.io.catalogue_bulk import BulkRecord, BulkWriter
from eomatch.io.catalogue_files import DATA_DIR as DATA_DIR
from eomatch.io.catalogue_files import LOCK_NAME as LOCK_NAME
from eomatch.io.catalogue_files import MAX_FILE_BYTES as MAX_FILE_BYTES
from eomatch.io.catalogue_files import read_file
from eomatch.io.catalogue_import import ITEM_RELS, foreign_item, merge_foreign
from eomatch.io.catalogue_index import (
    INDEX_NAME,
    CatalogueIndex,
    IndexRow,
    index_entry,
)
from eomatch.io.catalogue_layout import CatalogueLayout, read_catalog
from eomatch.io.catalogue_repair import CatalogueRepair
from eomatch.io.catalogue_session import WriteSession
from eomatch.io.safe_paths import within_root
from eomatch.timeparse import TimeLike

log = logging.getLogger(__name__)

DEFAULT_DESCRIPTION = "Satellite-to-satellite matchups found by eomatch."


@dataclass
class AddResult:
    """What an ``add_event`` call changed: new versus already-present items."""

    events_new: int = 0
    events_existing: int = 0
    matchups_new: int = 0
    matchups_existing: int = 0
    products_new: int = 0
    products_existing: int = 0

    def __iadd__(self, other: AddResult) -> AddResult:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        return self


ImportStatus = Literal["new", "updated", "unchanged"]
"""What :meth:`MatchupCatalogue.import_items` did with one item."""


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
        # batch writer threads: item path -> its last queued write (see _queue_write)
        self._pool: ThreadPoolExecutor | None = None
        self._pending: dict[str, Future[None]] = {}
        self._queue: deque[tuple[str, Future[None]]] = deque()
        self._write_error: BaseException | None = None
        self._bulk: BulkWriter | None = None  # new events of a batch, see _bulk_add
        self._assets = CatalogueAssets(self)
        self._repair = CatalogueRepair(self)
        self._layout = CatalogueLayout(self)

    @property
    def _index(self) -> CatalogueIndex:
        """The side index: with what the bulk writer wrote recorded, and rebuilt from the files
        after a failed write (whose index transaction was rolled back)."""
        if self._bulk is not None and self._bulk.busy:
            self._bulk.flush()
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

    @contextlib.contextmanager
    def batch(self, workers: int = 0) -> Iterator[None]:
        """Defer collection, catalog and index writes (and fsyncs) to the end of the block.

        For bulk loads. New events go through the bulk writer (see the module docstring and
        :mod:`eomatch.io.catalogue_bulk`); other item writes (events gaining matchups, imports)
        are written here, or by ``workers`` threads (measured slower on local disks: they
        fight the caller for the GIL; perhaps useful on network drives). A kill inside the
        block leaves complete item files and a dirty index, which the next ``open`` rebuilds
        from the files; re-running the batch completes it.
        """
        with self._writing():
            outer = self._batching
            self._batching = True
            own_pool = self._pool is None and workers > 0
            if own_pool:
                self._pool = ThreadPoolExecutor(workers, thread_name_prefix="eomatch-write")
            own_bulk = self._bulk is None
            if own_bulk:
                self._bulk = BulkWriter(
                    str(self.root),
                    self._record_bulk,
                    self._drain_threads,
                    keep_fds=[] if self._lock_fd is None else [self._lock_fd],
                )
            try:
                yield
            except BaseException:
                if own_pool:
                    self._drain(quiet=True)
                raise
            else:
                if own_bulk:
                    assert self._bulk is not None
                    self._bulk.flush()
                if own_pool:
                    self._drain()
            finally:
                if own_bulk:
                    assert self._bulk is not None
                    self._bulk.close()
                    self._bulk = None
                if own_pool:
                    assert self._pool is not None
                    self._pool.shutdown(wait=True)
                    self._pool = None
                self._batching = outer

    def _drain_threads(self) -> None:
        if self._queue:
            self._drain()

    def _record_bulk(self, result: BulkRecord) -> None:
        """Record what the bulk writer wrote: index rows, extents, day folders."""
        self._idx.add_rows(result.rows, result.event_matchups, result.matchup_products)
        for coll, (bbox, lo, hi) in result.extents.items():
            self._extend(coll, bbox, lo, hi)
        changes = self._s.day_changes
        for row in result.rows:
            day = si.day_of(row.path)
            if day not in changes:
                changes[day] = {}
                self._s.touched_dirs.add(day)
            changes[day][row.id] = True

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
                    self._drain(quiet=True)
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
        self._drain()
        self._flush()
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
            self._drain()  # queued batch writes first: the rebuild reads the files
            self._index.rollback()
            self._catalog = self._read_catalog()
            self._s = WriteSession()
            self._rebuild()

    def _rebuild(self) -> None:
        self._repair.rebuild()

    def _load_item(self, rel: str) -> dict[str, Any] | None:
        pending = self._pending.get(rel)
        if pending is not None:
            pending.result()
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
        day = si.day_of(rel)
        if rel.endswith(f"/{si.DAY_CATALOG}"):
            raise EomatchError(f"item id '{item['id']}' is reserved for the day catalogs")
        if day not in self._s.made_dirs:
            within_root(self.root, day)  # a planted symlink must not lead writes out (§3)
            os.makedirs(os.path.join(self.root, day), exist_ok=True)
            self._s.made_dirs.add(day)
        if self._pool is not None and self._batching:
            self._queue_write(rel, item)
        else:
            files.write_json_file(
                os.path.join(self.root, rel), item, durable=not self._batching, compact=True
            )
        self._s.touched_dirs.add(day)
        self._s.day_changes.setdefault(day, {})[str(item["id"])] = True

    _MAX_QUEUED = 512
    """Queued item writes before the caller waits for the oldest (bounds memory)."""

    def _queue_write(self, rel: str, item: Mapping[str, Any]) -> None:
        """Hand an item file to the writer threads, after the files it depends on.

        Its dependencies are the queued writes of the item files it links to (``derived_from``,
        ``related``) and of its own path; each is queued before it, so a thread waiting on one
        never waits on a write no thread has started (FIFO pool): no deadlock. A failed write
        fails every write depending on it, and the next call raises its error.
        """
        assert self._pool is not None
        if self._write_error is not None:
            raise self._write_error
        deps = [self._pending[rel]] if rel in self._pending else []
        for link in item.get("links", ()):
            if link.get("rel") in ("derived_from", "related"):
                dep = self._pending.get(si.resolve_href(rel, str(link["href"])))
                if dep is not None:
                    deps.append(dep)
        path = os.path.join(self.root, rel)

        def write() -> None:
            for dep in deps:
                dep.result()
            files.write_json_file(path, item, durable=False, compact=True)

        fut = self._pool.submit(write)
        fut.add_done_callback(self._note_error)
        self._pending[rel] = fut
        self._queue.append((rel, fut))
        while len(self._queue) > self._MAX_QUEUED:
            self._retire(*self._queue.popleft())

    def _note_error(self, fut: Future[None]) -> None:
        exc = fut.exception()
        if exc is not None and self._write_error is None:
            self._write_error = exc

    def _retire(self, rel: str, fut: Future[None]) -> None:
        try:
            fut.result()
        finally:
            if self._pending.get(rel) is fut:
                del self._pending[rel]

    def _drain(self, quiet: bool = False) -> None:
        """Wait for every queued item write; raise the first error unless ``quiet``."""
        error = None
        while self._queue:
            try:
                self._retire(*self._queue.popleft())
            except BaseException as exc:
                error = error or exc
        self._pending.clear()
        error = error or self._write_error
        self._write_error = None
        if error is not None and not quiet:
            raise error

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

    # --- adding -----------------------------------------------------------------------------

    def add_event(self, event: MatchupEvent) -> AddResult:
        """Add an event with its matchups and their products; items already present are kept.

        Re-adding the same event changes nothing; a new matchup of a known event is added and
        linked from the event item. A matchup belongs to exactly one event (its
        ``matchup:event_id`` is set to ``event``): one already in the catalogue under another
        event is refused, so an event never lists a matchup that links elsewhere (issue 11 §7).
        """
        event = _own_matchups(event)
        if self._bulk is not None:
            fast = self._bulk_add(event, self._bulk)
            if fast is not None:
                return fast
        res = AddResult()
        with self._writing():
            seen: set[str] = set()
            rel = si.event_path(event)
            row = self._index.get(event.id)
            old: dict[str, Any] = {}
            if row is not None:  # the event file's links are the truth, not the index
                old = self._read_item(row.path)
            known = {Path(p).stem for p in si.related_paths(old, "matchup", rel)}
            self._check_matchup_owners(event)
            if row is None and event.matchups:
                # The event goes first, linking only to itself, so that a kill never leaves a
                # matchup whose event link dangles; it is rewritten below with its matchups.
                self._put(
                    si.event_to_item(replace(event, matchups=())), rel, event.start, event.end
                )
                res.events_new += 1
            elif row is None:
                res.events_new += 1
            else:
                res.events_existing += 1
            for mu in event.matchups:
                for product in mu.products:
                    if product.id in seen:
                        continue
                    seen.add(product.id)
                    if self._index.get(product.id) is not None:
                        res.products_existing += 1
                        continue
                    self._put(
                        si.product_to_item(product),
                        si.product_path(product),
                        product.start,
                        product.end,
                    )
                    res.products_new += 1
                if mu.id in seen:
                    continue
                seen.add(mu.id)
                if self._index.get(mu.id) is not None:
                    res.matchups_existing += 1
                else:
                    self._put(si.matchup_to_item(mu, event), si.matchup_path(mu), mu.start, mu.end)
                    res.matchups_new += 1
            if row is None:
                self._put(si.event_to_item(event), rel, event.start, event.end)
            elif any(m.id not in known for m in event.matchups):
                item = si.event_to_item(
                    event, si.related_paths(old, "matchup", row.path), old.get("assets")
                )
                self._put(item, row.path, event.start, event.end)
        return res

    def _bulk_add(self, event: MatchupEvent, bulk: BulkWriter) -> AddResult | None:
        """Write a new event through the bulk writer; None for one already in the catalogue."""
        if self._write_error is not None:
            raise self._write_error
        order: dict[str, Product | Matchup] = {}
        for mu in event.matchups:
            for p in mu.products:
                order.setdefault(p.id, p)
            order.setdefault(mu.id, mu)
        if bulk.pending(event.id) or any(bulk.pending(m.id) for m in event.matchups):
            return None
        known = self._idx.present([event.id, *order])
        if event.id in known or any(m.id in known for m in event.matchups):
            return None  # the one-event-per-matchup check is done on the slow path
        res = AddResult(events_new=1)
        plan: list[Product | Matchup] = []
        reserved = si.DAY_CATALOG.removesuffix(".json")
        for x in (event, *order.values()):
            if x.id == reserved:
                raise EomatchError(f"item id '{x.id}' is reserved for the day catalogs")
        for item_id, x in order.items():
            old = item_id in known or bulk.pending(item_id)
            if isinstance(x, Matchup):
                res.matchups_existing += old
                res.matchups_new += not old
            else:
                res.products_existing += old
                res.products_new += not old
            if not old:
                plan.append(x)
        bulk.write_event(event, plan)
        return res

    def _check_matchup_owners(self, event: MatchupEvent) -> None:
        """Refuse (before any write) a matchup of ``event`` that another event owns."""
        for mu in event.matchups:
            owners = [e for e in self._index.events_of_matchup(mu.id) if e != event.id]
            if owners:
                raise EomatchError(
                    f"matchup '{mu.id}' already belongs to event '{owners[0]}', not to "
                    f"'{event.id}': a matchup belongs to one event (its id includes the event's)"
                )

    def _put(self, item: dict[str, Any], rel: str, start: datetime, end: datetime) -> None:
        self._write_item(rel, item)
        self._index_item(item, rel, (start, end))
        self._extend(item["collection"], item["bbox"], start, end)

    # --- importing items from elsewhere (a STAC API) -----------------------------------------

    def import_items(
        self,
        items: Iterable[Mapping[str, Any]],
        collections: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> dict[str, ImportStatus]:
        """Merge STAC items from elsewhere (pulled from a STAC API) into the catalogue.

        Each item is written at ``{collection}/YYYY/MM/DD/{id}.json`` (its kind follows from
        the collection id, as for every item here) with the catalogue's own ``root``/``parent``/
        ``collection`` links; ``self`` and other structural links are dropped. Its ``related``
        and ``derived_from`` links to other catalogue items must already be relative hrefs from
        its own file (``si.relative_href(si.item_path(...), target)``); those whose target is
        neither in ``items`` nor in the catalogue are dropped, so no link dangles. Links with a
        URL are kept as they are.

        An item already present is merged: the incoming item wins, except that assets only the
        local item has are kept, a local file (a downloaded product's ``data``, a registered
        analysis result; any asset whose href is a path) is kept over the incoming asset of the
        same key, and an event keeps its links to local matchups. An item whose merged form
        equals its file is left untouched.

        Collections new to the catalogue take their metadata from ``collections`` (title,
        description, license, assets, ...); links and extents are always the catalogue's own.
        Files are written in the catalogue's crash-safe order (new events first without links
        to new matchups, then products, matchups and the complete events), so a kill leaves a
        catalogue that opens and validates and a repeated import completes it.

        Returns:
            Item id → ``new``, ``updated`` or ``unchanged``.

        Raises:
            EomatchError: an item that is not a valid STAC item or whose id or collection
                cannot be a file name.
        """
        collections = collections or {}
        incoming: dict[str, tuple[dict[str, Any], str, tuple[datetime, datetime]]] = {}
        for raw in items:
            item, rel, times = foreign_item(raw)
            incoming[item["id"]] = (item, rel, times)
        if not incoming:
            return {}
        batch_rels = {rel for _, rel, _ in incoming.values()}
        statuses: dict[str, ImportStatus] = {}
        with self._writing():
            rows = self._index.get_many(incoming)
            targets: list[str] = []
            for item, rel, _ in incoming.values():
                for link in item["links"]:
                    if link.get("rel") in ITEM_RELS and not si.is_url(str(link.get("href", ""))):
                        targets.append(si.item_id_of(si.resolve_href(rel, str(link["href"]))))
            present = self.item_paths(t for t in set(targets) if t not in incoming)
            present_rels = set(present.values())

            def resolvable(rel: str, link: Mapping[str, Any]) -> bool:
                href = str(link.get("href", ""))
                if link.get("rel") not in ITEM_RELS or si.is_url(href):
                    return True
                target = si.resolve_href(rel, href)
                return target in batch_rels or target in present_rels

            plans: list[tuple[str, dict[str, Any], str, tuple[datetime, datetime], IndexRow | None]]
            plans = []
            for iid, (item, rel, times) in incoming.items():
                item["links"] = [x for x in item["links"] if resolvable(rel, x)]
                row = rows.get(iid)
                old: dict[str, Any] | None = None
                if row is not None:
                    old = self._read_raw(row.path)
                if old is not None and row is not None:
                    item = merge_foreign(item, old, row.path == rel, self._index_has)
                final = si.with_structural_links(item, rel)
                if old is not None and row is not None and row.path == rel and final == old:
                    statuses[iid] = "unchanged"
                    continue
                statuses[iid] = "new" if row is None else "updated"
                plans.append((iid, final, rel, times, row))
            new_colls = {
                final["collection"]: (final["bbox"], times) for _, final, _, times, _ in plans
            }
            for coll, (bbox, times) in sorted(new_colls.items()):
                if self._collection(coll) is None:
                    self._new_foreign_collection(coll, collections.get(coll), bbox, times)
            order = {"event": 0, "product": 1, "matchup": 2}
            plans.sort(key=lambda p: (order[si.collection_kind(p[1]["collection"])], p[2]))
            known = set(self._index_present(batch_rels)) | present_rels
            for _iid, final, rel, _times, row in plans:
                if row is None and si.collection_kind(final["collection"]) == "event":
                    # first without links to matchups not yet written (they link back to it)
                    early = [
                        x
                        for x in final["links"]
                        if not (x.get("rel") == "related" and x.get("matchup:role") == "matchup")
                        or si.resolve_href(rel, str(x["href"])) in known
                    ]
                    if len(early) != len(final["links"]):
                        self._write_item(rel, {**final, "links": early})
            for iid, final, rel, times, row in plans:
                if row is not None and row.path != rel:
                    self._delete(row)  # its time moved it to another day folder
                elif row is not None and row.kind == "matchup":
                    self._index.forget_products_of(iid)
                self._put(final, rel, *times)
        return statuses

    def _index_has(self, rel: str) -> bool:
        row = self._index.get(si.item_id_of(rel))
        return row is not None and row.path == rel

    def _read_raw(self, rel: str) -> dict[str, Any] | None:
        """An item file as JSON, without validation (for comparison); None if unreadable."""
        pending = self._pending.get(rel)
        if pending is not None:
            pending.result()
        try:
            data = orjson.loads(read_file(self.root / rel))
        except (OSError, ValueError) as exc:
            log.warning("%s: unreadable (%s), replaced by the incoming item", self.root / rel, exc)
            return None
        problem = si.item_problem(data)  # merging reads its assets and links
        if problem:
            log.warning("%s: invalid (%s), replaced by the incoming item", self.root / rel, problem)
            return None
        item: dict[str, Any] = data
        return item

    def _index_present(self, rels: Iterable[str]) -> list[str]:
        wanted = {si.item_id_of(r): r for r in rels}
        return [r.path for i, r in self._index.get_many(wanted).items() if r.path == wanted[i]]

    def _new_foreign_collection(
        self,
        coll: str,
        remote: Mapping[str, Any] | None,
        bbox: Sequence[float],
        times: tuple[datetime, datetime],
    ) -> None:
        """Write a collection new to the catalogue at once, with the remote metadata.

        Written before its items (not yet listed by ``catalog.json``: a rebuild after a kill
        links it), so the metadata survives an interrupted import.
        """
        within_root(self.root, si.collection_path(coll))  # no write through a planted link
        data = si.collection_dict(coll, bbox, times)
        ours = list(data["stac_extensions"])
        for key, value in (remote or {}).items():
            if key not in ("type", "id", "links", "extent", "stac_version"):
                data[key] = value
        data["stac_extensions"] = list(data["stac_extensions"]) + [
            e for e in ours if e not in data["stac_extensions"]
        ]
        self._s.dropped_collections.discard(coll)
        self._s.collections[coll] = data
        self._s.extents.pop(coll, None)
        self._s.changed_collections.add(coll)
        (self.root / coll).mkdir(parents=True, exist_ok=True)
        files.write_json_file(self.root / si.collection_path(coll), data, not self._batching)

    def remove_event(self, event_id: str) -> None:
        """Remove an event, its matchups no other event uses and products no matchup uses.

        Day catalogs, collections and ``catalog.json`` are updated first (emptied days lose their
        day catalog and ``child`` link, emptied collections go), then the item files are deleted,
        the event last: a kill half-way leaves the event, whose links to deleted items the next
        open drops, and removing it again finishes the work. Extents are recomputed from the
        index; downloaded data files are left on disk.
        """
        with self._writing():
            row = self._index.get(event_id)
            if row is None:
                raise EomatchError(f"no event '{event_id}' in {self.root}")
            mus = self._index.matchups_of([event_id])[event_id]
            prods = self._index.products_of(mus)
            self._delete(row)
            touched = {row.collection}
            for mid in mus:
                if self._index.events_of_matchup(mid):
                    continue
                mrow = self._index.get(mid)
                if mrow is not None:
                    self._delete(mrow)
                    touched.add(mrow.collection)
                for pid in prods[mid]:
                    if self._index.matchups_of_product(pid):
                        continue
                    prow = self._index.get(pid)
                    if prow is not None:
                        self._delete(prow)
                        touched.add(prow.collection)
            for coll in sorted(touched):
                self._recompute_extent(coll)

    def _delete(self, row: IndexRow) -> None:
        day = si.day_of(row.path)
        self._s.removed_items.append(row.path)  # deleted by _flush, after its day catalog
        self._s.touched_dirs.add(day)
        self._s.day_changes.setdefault(day, {})[row.id] = False
        self._index.delete_item(row.id)

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
        return reads.get_events(self._index, self._read_item, f, self.skip_invalid, self.registry)

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
        """Edit any item's assets under the writer lock: read, check and write as one step.

        ``edit`` gets the item's ``assets`` dict (hrefs as stored) and returns whether it
        changed it; only then is the item rewritten (atomically, re-indexed) with
        ``stac_extensions`` added. So a check-then-write ("is this version registered
        already?") cannot race another writer, and a no-op leaves the file untouched.
        """
        row = self._row(item_id, None)
        with self._writing():
            item = self._read_item(row.path)
            assets = dict(item.get("assets") or {})
            if not edit(assets):
                return item
            item["assets"] = dict(sorted(assets.items()))
            extensions = list(item.get("stac_extensions") or [])
            extensions += [e for e in stac_extensions if e not in extensions]
            if extensions:
                item["stac_extensions"] = extensions
            self._write_item(row.path, item)
            self._index_item(item, row.path)
        return item

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
        row = self._row(product_id, "product")
        with self._writing():
            item = self._read_item(row.path)
            old = item.get("assets", {}).get("data")
            if local_path is None:
                if old is None:
                    return item
                source = old.get("eomatch:source_href")
                if source:
                    asset: dict[str, Any] | None = {
                        k: v for k, v in old.items() if k not in ("eomatch:source_href",)
                    }
                    assert asset is not None
                    asset["href"] = source
                    asset["type"] = media_type_for(source) if "type" not in old else old["type"]
                    return self._assets.edit_item(row, "data", asset)
                if si.is_url(str(old["href"])):
                    return item
                return self._assets.edit_item(row, "data", None)
            asset = self._assets.new_asset(row.path, local_path, None, "data", ["data"])
            if old is not None:
                source = old.get("eomatch:source_href") or (
                    old["href"] if si.is_url(str(old["href"])) else None
                )
                if source:
                    asset["eomatch:source_href"] = source
                if old.get("type"):
                    asset["type"] = old["type"]
                # the provider's size/checksum describe this file (download verified them) and
                # must survive an unregister so that a re-download is verified again
                asset.update({k: old[k] for k in ("file:checksum", "file:size") if k in old})
            return self._assets.edit_item(row, "data", asset)


def _own_matchups(event: MatchupEvent) -> MatchupEvent:
    """``event`` with every matchup's ``event_id`` set to it (their items link back to it)."""
    if all(m.event_id == event.id for m in event.matchups):
        return event
    return replace(
        event,
        matchups=tuple(
            m if m.event_id == event.id else replace(m, event_id=event.id) for m in event.matchups
        ),
    )


def _read_only(root: Path, exc: BaseException) -> EomatchError:
    """One line for a catalogue whose index cannot be opened or brought up to date."""
    return EomatchError(
        f"{root}: cannot open the catalogue for reading and indexing ({exc}); it must be "
        "writable by this user (its side index and lock live in it)"
    )
