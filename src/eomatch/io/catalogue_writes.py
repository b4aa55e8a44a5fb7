"""Writes of a matchup catalogue: events with their matchups and products added, imported, removed.

Items are written here in the catalogue's crash-safe order (see ``eomatch.io.catalogue``'s
module docstring); what links down to them (day catalogs, collections, ``catalog.json``) is
flushed by :mod:`eomatch.io.catalogue_layout` at the end of the write session. In
:meth:`CatalogueWrites.batch`, new events go through the bulk writer
(:mod:`eomatch.io.catalogue_bulk`) and other item writes optionally through writer threads.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import orjson

from eomatch.core import stac_items as si
from eomatch.core.products import Matchup, MatchupEvent, Product
from eomatch.errors import EomatchError
from eomatch.io import catalogue_files as files
from eomatch.io.catalogue_bulk import BulkRecord, BulkWriter
from eomatch.io.catalogue_files import read_file
from eomatch.io.catalogue_import import ITEM_RELS, foreign_items, merge_foreign
from eomatch.io.catalogue_index import IndexEntry, IndexRow, index_entry
from eomatch.io.catalogue_layout import CatalogueLayout
from eomatch.io.catalogue_session import CatalogueCore
from eomatch.io.safe_paths import within_root

log = logging.getLogger("eomatch.io.catalogue")


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


class CatalogueWrites:
    """Item writes of the catalogue it belongs to, and the state of its batch writers."""

    def __init__(self, cat: CatalogueCore, layout: CatalogueLayout) -> None:
        self.cat = cat
        self.layout = layout
        # batch writer threads: item path -> its last queued write (see _queue_write)
        self.pool: ThreadPoolExecutor | None = None
        self.pending: dict[str, Future[None]] = {}
        self.queue: deque[tuple[str, Future[None]]] = deque()
        self.write_error: BaseException | None = None
        self.bulk: BulkWriter | None = None  # new events of a batch, see _bulk_add

    def wait_for(self, rel: str) -> None:
        """Wait for a queued write of the item file ``rel`` (before reading it)."""
        pending = self.pending.get(rel)
        if pending is not None:
            pending.result()
        if self.bulk is not None and self.bulk.queued(rel):
            self.bulk.sync()

    def _item_paths(self, ids: Iterable[str]) -> dict[str, str]:
        return {i: r.path for i, r in self.cat._index.get_many(ids).items()}

    @contextlib.contextmanager
    def batch(self, workers: int = 0) -> Iterator[None]:
        """Defer collection, catalog and index writes (and fsyncs) to the end of the block.

        For bulk loads. New events go through the bulk writer (see the module docstring and
        :mod:`eomatch.io.catalogue_bulk`); other item writes (events gaining matchups, imports)
        are queued to its helper process too, or written by ``workers`` threads instead
        (measured slower on local disks: they fight the caller for the GIL). A kill inside the
        block leaves complete item files and a dirty index, which the next ``open`` rebuilds
        from the files; re-running the batch completes it. Files are written without an fsync
        each; at the end, one sync of the file system (:func:`~eomatch.io.atomic.sync_files`)
        makes all of them durable before the index records the batch as done, so a power cut
        cannot leave a clean index over missing files.
        """
        outer = self.cat._batching
        try:
            with self.cat._writing():
                # still batching while the session ends (day catalogs, collections, catalog
                # written without an fsync each; one file system sync before the index commit)
                self.cat._batching = True
                with self._batch_writers(workers):
                    yield
        finally:
            self.cat._batching = outer

    @contextlib.contextmanager
    def _batch_writers(self, workers: int) -> Iterator[None]:
        """The writer threads and the bulk writer of a batch, flushed at its end."""
        own_pool = self.pool is None and workers > 0
        if own_pool:
            self.pool = ThreadPoolExecutor(workers, thread_name_prefix="eomatch-write")
        own_bulk = self.bulk is None
        if own_bulk:
            self.bulk = BulkWriter(
                str(self.cat.root),
                self.record_bulk,
                self.drain_threads,
                keep_fds=[] if self.cat._lock_fd is None else [self.cat._lock_fd],
            )
        try:
            yield
        except BaseException:
            if own_pool:
                self.drain(quiet=True)
            raise
        else:
            if own_bulk:
                assert self.bulk is not None
                self.bulk.flush()
            if own_pool:
                self.drain()
        finally:
            if own_bulk:
                assert self.bulk is not None
                self.bulk.close()
                self.bulk = None
            if own_pool:
                assert self.pool is not None
                self.pool.shutdown(wait=True)
                self.pool = None

    def drain_threads(self) -> None:
        """Drain the writer threads if any write is queued (the bulk writer's hook)."""
        if self.queue:
            self.drain()

    def record_bulk(self, result: BulkRecord) -> None:
        """Record what the bulk writer wrote: index rows, extents, day folders."""
        self.cat._idx.add_rows(result.rows, result.event_matchups, result.matchup_products)
        for coll, (bbox, lo, hi) in result.extents.items():
            self.layout.extend(coll, bbox, lo, hi)
        changes = self.cat._s.day_changes
        for row in result.rows:
            day = si.day_of(row.path)
            if day not in changes:
                changes[day] = {}
                self.cat._s.touched_dirs.add(day)
            changes[day][row.id] = True

    def write_item(self, rel: str, item: Mapping[str, Any], parallel: bool = False) -> None:
        """Write an item file (queued to the threads in a batch with workers, else to the bulk
        writer's helper process; ``parallel``: see :meth:`BulkWriter.write_file`); note its
        day."""
        day = si.day_of(rel)
        if rel.endswith(f"/{si.DAY_CATALOG}"):
            raise EomatchError(f"item id '{item['id']}' is reserved for the day catalogs")
        to_helper = self.pool is None and self.bulk is not None and self.cat._batching
        if day not in self.cat._s.made_dirs:
            # a planted symlink must not lead writes out (§3); a folder new in this session has
            # no day catalog to read back at its end
            if not _check_folder(self.cat.root, day, self.cat._s.real_dirs):
                self.cat._s.new_days.add(day)
            if not to_helper:  # the helper process makes the folders it writes in
                os.makedirs(os.path.join(self.cat.root, day), exist_ok=True)
            self.cat._s.made_dirs.add(day)
        if self.pool is not None and self.cat._batching:
            self._queue_write(rel, item)
        elif to_helper:
            assert self.bulk is not None
            self.bulk.write_file(rel, item, parallel)
        else:
            files.write_json_file(
                os.path.join(self.cat.root, rel), item, durable=not self.cat._batching, compact=True
            )
        self.cat._s.touched_dirs.add(day)
        self.cat._s.day_changes.setdefault(day, {})[str(item["id"])] = True

    _MAX_QUEUED = 512
    """Queued item writes before the caller waits for the oldest (bounds memory)."""

    def _queue_write(self, rel: str, item: Mapping[str, Any]) -> None:
        """Hand an item file to the writer threads, after the files it depends on.

        Its dependencies are the queued writes of the item files it links to (``derived_from``,
        ``related``) and of its own path; each is queued before it, so a thread waiting on one
        never waits on a write no thread has started (FIFO pool): no deadlock. A failed write
        fails every write depending on it, and the next call raises its error.
        """
        assert self.pool is not None
        if self.write_error is not None:
            raise self.write_error
        deps = [self.pending[rel]] if rel in self.pending else []
        for link in item.get("links", ()):
            if link.get("rel") in ("derived_from", "related"):
                dep = self.pending.get(si.resolve_href(rel, str(link["href"])))
                if dep is not None:
                    deps.append(dep)
        path = os.path.join(self.cat.root, rel)

        def write() -> None:
            for dep in deps:
                dep.result()
            files.write_json_file(path, item, durable=False, compact=True)

        fut = self.pool.submit(write)
        fut.add_done_callback(self._note_error)
        self.pending[rel] = fut
        self.queue.append((rel, fut))
        while len(self.queue) > self._MAX_QUEUED:
            self._retire(*self.queue.popleft())

    def _note_error(self, fut: Future[None]) -> None:
        exc = fut.exception()
        if exc is not None and self.write_error is None:
            self.write_error = exc

    def _retire(self, rel: str, fut: Future[None]) -> None:
        try:
            fut.result()
        finally:
            if self.pending.get(rel) is fut:
                del self.pending[rel]

    def drain(self, quiet: bool = False) -> None:
        """Wait for every queued item write; raise the first error unless ``quiet``."""
        error = None
        while self.queue:
            try:
                self._retire(*self.queue.popleft())
            except BaseException as exc:
                error = error or exc
        self.pending.clear()
        error = error or self.write_error
        self.write_error = None
        if error is not None and not quiet:
            raise error

    # --- adding -----------------------------------------------------------------------------

    def add_event(self, event: MatchupEvent) -> AddResult:
        """Add an event with its matchups and their products; items already present are kept.

        Re-adding the same event changes nothing; a new matchup of a known event is added and
        linked from the event item. A matchup belongs to exactly one event (its
        ``matchup:event_id`` is set to ``event``): one already in the catalogue under another
        event is refused, so an event never lists a matchup that links elsewhere (issue 11 §7).
        """
        event = _own_matchups(event)
        if self.bulk is not None:
            fast = self._bulk_add(event, self.bulk)
            if fast is not None:
                return fast
        res = AddResult()
        with self.cat._writing():
            seen: set[str] = set()
            rel = si.event_path(event)
            row = self.cat._index.get(event.id)
            old: dict[str, Any] = {}
            if row is not None:  # the event file's links are the truth, not the index
                old = self.cat._read_item(row.path)
            known = {Path(p).stem for p in si.related_paths(old, "matchup", rel)}
            self._check_matchup_owners(event)
            if row is None and event.matchups:
                # The event goes first, linking only to itself, so that a kill never leaves a
                # matchup whose event link dangles; it is rewritten below with its matchups.
                self.put(si.event_to_item(replace(event, matchups=())), rel, event.start, event.end)
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
                    if self.cat._index.get(product.id) is not None:
                        res.products_existing += 1
                        continue
                    self.put(
                        si.product_to_item(product),
                        si.product_path(product),
                        product.start,
                        product.end,
                    )
                    res.products_new += 1
                if mu.id in seen:
                    continue
                seen.add(mu.id)
                if self.cat._index.get(mu.id) is not None:
                    res.matchups_existing += 1
                else:
                    self.put(si.matchup_to_item(mu, event), si.matchup_path(mu), mu.start, mu.end)
                    res.matchups_new += 1
            if row is None:
                self.put(si.event_to_item(event), rel, event.start, event.end)
            elif any(m.id not in known for m in event.matchups):
                item = si.event_to_item(
                    event, si.related_paths(old, "matchup", row.path), old.get("assets")
                )
                self.put(item, row.path, event.start, event.end)
        return res

    def _bulk_add(self, event: MatchupEvent, bulk: BulkWriter) -> AddResult | None:
        """Write a new event through the bulk writer; None for one already in the catalogue."""
        if self.write_error is not None:
            raise self.write_error
        order: dict[str, Product | Matchup] = {}
        for mu in event.matchups:
            for p in mu.products:
                order.setdefault(p.id, p)
            order.setdefault(mu.id, mu)
        if bulk.pending(event.id) or any(bulk.pending(m.id) for m in event.matchups):
            return None
        known = self.cat._idx.present([event.id, *order])
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
            owners = [e for e in self.cat._index.events_of_matchup(mu.id) if e != event.id]
            if owners:
                raise EomatchError(
                    f"matchup '{mu.id}' already belongs to event '{owners[0]}', not to "
                    f"'{event.id}': a matchup belongs to one event (its id includes the event's)"
                )

    def put(
        self,
        item: dict[str, Any],
        rel: str,
        start: datetime,
        end: datetime,
        parallel: bool = False,
    ) -> None:
        """Write an item, index it and grow its collection's extent."""
        self.write_item(rel, item, parallel)
        self.cat._index_item(item, rel, (start, end))
        self.layout.extend(item["collection"], item["bbox"], start, end)

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
        Files are written in the catalogue's crash-safe order (events, then products, then
        matchups), so a kill leaves a catalogue that opens and validates (an event's links to
        matchups not written yet are dropped on open) and a repeated import completes it.

        Returns:
            Item id → ``new``, ``updated`` or ``unchanged``.

        Raises:
            EomatchError: an item that is not a valid STAC item or whose id or collection
                cannot be a file name.
        """
        collections = collections or {}
        incoming: dict[str, tuple[dict[str, Any], str, tuple[datetime, datetime]]] = {}
        for item, rel, times in foreign_items(list(items)):
            incoming[item["id"]] = (item, rel, times)
        if not incoming:
            return {}
        batch_rels = {rel for _, rel, _ in incoming.values()}
        statuses: dict[str, ImportStatus] = {}
        with self.cat._writing():
            rows = self.cat._index.get_many(incoming)
            targets: list[str] = []
            for item, rel, _ in incoming.values():
                for link in item["links"]:
                    if link.get("rel") in ITEM_RELS and not si.is_url(str(link.get("href", ""))):
                        targets.append(si.item_id_of(si.resolve_href(rel, str(link["href"]))))
            present = self._item_paths(t for t in set(targets) if t not in incoming)
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
                else:  # foreign_item's own copy, without structural links: no second copy
                    item["links"] = si.structural_links(rel, item["collection"]) + item["links"]
                    final = item
                if old is not None and row is not None and row.path == rel and final == old:
                    statuses[iid] = "unchanged"
                    continue
                statuses[iid] = "new" if row is None else "updated"
                plans.append((iid, final, rel, times, row))
            new_colls = {
                final["collection"]: (final["bbox"], times) for _, final, _, times, _ in plans
            }
            for coll, (bbox, times) in sorted(new_colls.items()):
                if self.layout.collection(coll) is None:
                    self._new_foreign_collection(coll, collections.get(coll), bbox, times)
            # events complete first, then products, then the matchups linking to both: a kill
            # leaves at worst an event linking to matchups not written yet, which the next
            # open drops (as for new events of the bulk writer), never a dangling matchup
            # (files of one kind may be created in parallel, one kind after the other)
            order = {"event": 0, "product": 1, "matchup": 2}
            plans.sort(key=lambda p: (order[si.collection_kind(p[1]["collection"])], p[2]))
            kind = None
            entries: list[IndexEntry] = []  # recorded together (one row a statement was ~10 %)
            for iid, final, rel, times, row in plans:
                if si.collection_kind(final["collection"]) != kind:
                    kind = si.collection_kind(final["collection"])
                    self.barrier()
                if row is not None and row.path != rel:
                    # in order: a queued event's relation to it goes with its old row
                    self.cat._index.add_entries(entries)
                    entries = []
                    self.delete(row)  # its time moved it to another day folder
                elif row is not None and row.kind == "matchup":
                    self.cat._index.forget_products_of(iid)
                self.write_item(rel, final, parallel=True)  # what put() does, indexed in bulk
                entries.append(index_entry(final, rel, times))
                self.layout.extend(final["collection"], final["bbox"], *times)
            self.cat._index.add_entries(entries)
            self.barrier()
        return statuses

    def barrier(self) -> None:
        """Item files queued to the helper so far are written before any queued later."""
        if self.bulk is not None:
            self.bulk.barrier()

    def _index_has(self, rel: str) -> bool:
        row = self.cat._index.get(si.item_id_of(rel))
        return row is not None and row.path == rel

    def _read_raw(self, rel: str) -> dict[str, Any] | None:
        """An item file as JSON, without validation (for comparison); None if unreadable."""
        self.wait_for(rel)
        try:
            data = orjson.loads(read_file(self.cat.root / rel))
        except (OSError, ValueError) as exc:
            log.warning(
                "%s: unreadable (%s), replaced by the incoming item", self.cat.root / rel, exc
            )
            return None
        problem = merge_source_problem(data)
        if problem:
            log.warning(
                "%s: invalid (%s), replaced by the incoming item", self.cat.root / rel, problem
            )
            return None
        item: dict[str, Any] = data
        return item

    def _index_present(self, rels: Iterable[str]) -> list[str]:
        wanted = {si.item_id_of(r): r for r in rels}
        return [r.path for i, r in self.cat._index.get_many(wanted).items() if r.path == wanted[i]]

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
        within_root(self.cat.root, si.collection_path(coll))  # no write through a planted link
        data = si.collection_dict(coll, bbox, times)
        ours = list(data["stac_extensions"])
        for key, value in (remote or {}).items():
            if key not in ("type", "id", "links", "extent", "stac_version"):
                data[key] = value
        data["stac_extensions"] = list(data["stac_extensions"]) + [
            e for e in ours if e not in data["stac_extensions"]
        ]
        self.cat._s.dropped_collections.discard(coll)
        self.cat._s.collections[coll] = data
        self.cat._s.extents.pop(coll, None)
        self.cat._s.changed_collections.add(coll)
        (self.cat.root / coll).mkdir(parents=True, exist_ok=True)
        files.write_json_file(
            self.cat.root / si.collection_path(coll), data, not self.cat._batching
        )

    def remove_event(self, event_id: str) -> None:
        """Remove an event, its matchups no other event uses and products no matchup uses.

        Day catalogs, collections and ``catalog.json`` are updated first (emptied days lose their
        day catalog and ``child`` link, emptied collections go), then the item files are deleted,
        the event last: a kill half-way leaves the event, whose links to deleted items the next
        open drops, and removing it again finishes the work. Extents are recomputed from the
        index; downloaded data files are left on disk.
        """
        with self.cat._writing():
            row = self.cat._index.get(event_id)
            if row is None:
                raise EomatchError(f"no event '{event_id}' in {self.cat.root}")
            mus = self.cat._index.matchups_of([event_id])[event_id]
            prods = self.cat._index.products_of(mus)
            self.delete(row)
            touched = {row.collection}
            for mid in mus:
                if self.cat._index.events_of_matchup(mid):
                    continue
                mrow = self.cat._index.get(mid)
                if mrow is not None:
                    self.delete(mrow)
                    touched.add(mrow.collection)
                for pid in prods[mid]:
                    if self.cat._index.matchups_of_product(pid):
                        continue
                    prow = self.cat._index.get(pid)
                    if prow is not None:
                        self.delete(prow)
                        touched.add(prow.collection)
            for coll in sorted(touched):
                self.layout.recompute_extent(coll)

    def delete(self, row: IndexRow) -> None:
        """Unindex an item; its file goes at the flush, after its day catalog stops listing it."""
        day = si.day_of(row.path)
        self.cat._s.removed_items.append(row.path)
        self.cat._s.touched_dirs.add(day)
        self.cat._s.day_changes.setdefault(day, {})[row.id] = False
        self.cat._index.delete_item(row.id)


def _check_folder(root: Path, rel: str, real: set[str]) -> bool:
    """Refuse a folder ``rel`` of the catalogue reached through a symlink leading out of it;
    return whether it exists.

    What :func:`~eomatch.io.safe_paths.within_root` checks, for the common case at the cost
    of one ``lstat`` per part of ``rel`` (a realpath of the root and of the folder was ~5 % of
    a pull's CPU, one a new day folder): parts that are real folders, or do not exist yet,
    cannot lead out; a symlink on the way is resolved by ``within_root``. ``real``: the
    session's folders found real already (as its day folders are checked once a session);
    a pull meets ~1 new day folder a matchup, and lstat'ing its collection, year and month
    again each time was ~10 % of the pull's main thread, contending with the helper process
    creating files there.
    """
    path = str(root)
    sub = ""
    for part in rel.split("/"):
        path = os.path.join(path, part)
        sub = f"{sub}/{part}" if sub else part
        if sub in real:
            continue
        try:
            mode = os.lstat(path).st_mode
        except (FileNotFoundError, NotADirectoryError):
            return False  # nor does anything under it
        if stat.S_ISLNK(mode) or part in ("", ".", ".."):
            within_root(root, rel)
            return True
        if stat.S_ISDIR(mode):
            real.add(sub)
    return True


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


def merge_source_problem(data: Any) -> str | None:
    """Why a local item file cannot be merged with an incoming item (None: it can).

    Merging reads only its ``assets``, ``links`` and ``stac_extensions``; the rest of it is
    either equal to the incoming item (validated on arrival) or replaced by it, so the full
    :func:`~eomatch.core.stac_items.item_problem` (a third of an unchanged re-pull, most of it
    building shapely geometries) is not needed here.
    """
    if not isinstance(data, dict):
        return "not a JSON object"
    extensions = data.get("stac_extensions")
    if extensions is not None and not (
        type(extensions) is list and all(type(e) is str for e in extensions)
    ):
        return "stac_extensions is not a list of strings"
    return si.links_problem(data.get("links")) or si.assets_problem(data.get("assets"))
