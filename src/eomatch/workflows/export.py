"""``eomatch export``: the central catalogue as it is, or as it was at a point of its history.

The documents come from :meth:`eomatch.io.history_store.HistoryStore.documents_at` (one
database snapshot) and are written by the same machinery ``eomatch query`` uses for API items:
:func:`eomatch.workflows.query.local_form` makes links between items relative, and
:meth:`MatchupCatalogue.import_items` writes the layout of docs/catalogue.md (day catalogs,
collections, ``catalog.json``, side index). Asset hrefs are kept as the database holds them
(http(s) or ``file://`` URLs set at ingest): the export is a catalogue of the central database,
not of files.

How (and why in this order):

1. the point is resolved and the output checked before anything is written (an unknown
   transaction, a time before the history began, a non-empty folder that is not an earlier
   export: one line, nothing written);
2. the snapshot is streamed once into NDJSON spool files beside the output, one per collection,
   while the map item id -> catalogue path is built (so every link can be made relative up
   front, whatever order the items come in);
3. the catalogue is written from the spool by kind: events (their links to matchups not yet
   there are left out), products, matchups (linking to both), then the events again, complete;
   with ``geoparquet`` each collection's spool becomes one stac-geoparquet file instead;
4. everything is written into a temporary folder beside the output and renamed into place at
   the end, so a failure (or a kill) never leaves a half-written output folder.

Items the on-disk layout cannot hold are left out with a warning each (an id or collection that
cannot be a file name, an item id present in two collections, an item without a time): the
database may hold them, a folder of files cannot. Collections without items at that point are
left out too: the on-disk catalogue has no empty collections.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Literal

import orjson

from eomatch._version import __version__
from eomatch.core import stac_items as si
from eomatch.errors import ConflictError, InputError, NotFoundError
from eomatch.extras import require_extra
from eomatch.io.catalogue import MatchupCatalogue
from eomatch.io.history_store import HistoryFilter, HistoryStore, Point
from eomatch.io.pgstac_store import PgstacStore
from eomatch.workflows.query import _local_collection, local_form, unsafe_item

__all__ = ["FORMATS", "MARKER", "ExportSummary", "export_catalogue"]

Format = Literal["catalogue", "geoparquet"]
FORMATS: tuple[Format, ...] = ("catalogue", "geoparquet")
MARKER = ".eomatch-export.json"
"""The file that marks a folder as an export (``--overwrite`` replaces only such folders)."""
CHUNK = 2000
"""Items per :meth:`MatchupCatalogue.import_items` call (bounds memory, not speed)."""
_NOW = Point(commit_seq=2**62, at=None, tx=None)
"""A point after every transaction: the catalogue as it is (nothing changed after it)."""
_MAX_TX = 2**63 - 1

Progress = Callable[[str, int, int], None]
"""(stage, done, total) callback; total is 0 while unknown."""


@dataclass
class ExportSummary:
    """What an export wrote."""

    output: Path
    format: str
    at: str | None
    """The point asked for (None: as it is now)."""
    tx: int | None = None
    """The newest transaction included (None: no history yet)."""
    committed_at: datetime | None = None
    collections: int = 0
    items: int = 0
    skipped: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def lines(self) -> list[str]:
        """The human summary printed by ``eomatch export``."""
        when = "as it is now" if self.at is None else f"as it was at {self.at}"
        last = (
            f"transaction {self.tx}, committed {self.committed_at.isoformat(timespec='seconds')}"
            if self.tx is not None and self.committed_at is not None
            else "no transaction recorded"
        )
        out = [
            f"exported {self.items} item(s) in {self.collections} collection(s), {when} "
            f"(newest change included: {last})",
            f"{self.format}: {self.output}",
        ]
        if self.skipped:
            out.append(f"left out {len(self.skipped)} document(s) the layout cannot hold")
        return out

    def marker(self) -> dict[str, Any]:
        """The content of :data:`MARKER`."""
        return {
            "eomatch_export": 1,
            "format": self.format,
            "at": self.at,
            "tx": self.tx,
            "committed_at": self.committed_at.isoformat() if self.committed_at else None,
            "exported_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "collections": self.collections,
            "items": self.items,
            "skipped": len(self.skipped),
            "eomatch_version": __version__,
        }


def export_catalogue(
    store: PgstacStore,
    output: str | Path,
    *,
    at: str | None = None,
    collections: Sequence[str] | None = None,
    format: Format = "catalogue",
    overwrite: bool = False,
    catalogue_id: str = "matchup-catalogue",
    progress: Progress | None = None,
) -> ExportSummary:
    """Write the catalogue of ``store`` as it was at ``at`` (now if None) into ``output``.

    Args:
        store: the central database (a role that may read the history, e.g. eomatch_ingest).
        output: folder to create; an existing one must be empty, or an earlier export with
            ``overwrite``.
        at: a transaction id (the catalogue just after it committed) or an ISO 8601 time (the
            catalogue with every transaction committed by then).
        collections: only these collections (each must exist at that point).
        format: ``catalogue`` (STAC on disk, docs/catalogue.md) or ``geoparquet`` (one
            stac-geoparquet file per collection, ``{collection}.parquet``, the collection in its
            metadata).
        overwrite: replace an earlier export in ``output``.
        catalogue_id: id of the root catalog.
        progress: ``(stage, done, total)`` callback.

    Raises:
        InputError: a bad point or output folder (before anything is written).
        NotFoundError: an unknown transaction or collection (before anything is written).
        ConflictError: ``output`` holds an earlier export and ``overwrite`` is not set.
        MissingExtraError: ``geoparquet`` without the geoparquet extra.
    """
    started = time.perf_counter()
    if format not in FORMATS:
        raise InputError(f"unknown export format {format!r}: use one of {', '.join(FORMATS)}")
    if format == "geoparquet":
        require_extra("geoparquet", "eomatch export --format geoparquet")
    root = Path(output).absolute()
    _check_output(root, overwrite)
    history = HistoryStore(store)
    point = _point(history, at)
    summary = ExportSummary(output=root, format=format, at=at)
    if point.tx is not None:
        summary.tx, summary.committed_at = point.tx, point.at
    else:  # the newest transaction committed by then (or now)
        found = history.transactions(HistoryFilter(limit=1, until=point.at))
        if found:
            summary.tx, summary.committed_at = found[0].id, found[0].committed_at
    tick = progress or (lambda stage, done, total: None)

    token = secrets.token_hex(4)
    work = root.parent / f".{root.name}.export-{token}"
    spool_dir = root.parent / f".{root.name}.export-{token}.spool"
    try:
        root.parent.mkdir(parents=True, exist_ok=True)
        spool_dir.mkdir()
        spool = _spool(history, point, collections, spool_dir, summary, tick)
        summary.collections = len(spool.files)
        summary.skipped += [
            f"collection {c}: no items at that point (the on-disk catalogue and stac-geoparquet "
            "hold collections of items)"
            for c in sorted(spool.collections)
            if c not in spool.files
        ]
        summary.items = spool.items
        if format == "catalogue":
            _write_catalogue(work, spool, catalogue_id, summary, tick)
        else:
            _write_geoparquet(work, spool, tick)
        (work / MARKER).write_bytes(orjson.dumps(summary.marker(), option=orjson.OPT_INDENT_2))
        _move_into_place(work, root)
    finally:
        shutil.rmtree(spool_dir, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
    summary.seconds = time.perf_counter() - started
    return summary


# --- checks before anything is written ----------------------------------------------------------


def _check_output(root: Path, overwrite: bool) -> None:
    if root.exists() and not root.is_dir():
        raise InputError(f"{root} is a file: give a folder to export into")
    if not root.is_dir() or not any(root.iterdir()):
        return
    if not (root / MARKER).is_file():
        raise InputError(
            f"{root} is not empty and holds no earlier export: choose a new or empty folder "
            "(nothing was written)"
        )
    if not overwrite:
        raise ConflictError(
            f"{root} holds an earlier export: give --overwrite to replace it (nothing was written)"
        )


def _point(history: HistoryStore, at: str | None) -> Point:
    if at is None:
        return _NOW
    text = at.strip()
    if not text:
        raise InputError("--at is empty: give a transaction id or an ISO 8601 time")
    if text.isdigit() and (len(text) > 19 or int(text) > _MAX_TX):
        raise NotFoundError(f"no transaction {text[:40]} in the history (see `eomatch history`)")
    return history.point(text)


# --- spooling the snapshot ----------------------------------------------------------------------


@dataclass
class _Spool:
    folder: Path
    collections: dict[str, dict[str, Any]] = field(default_factory=dict)
    files: dict[str, Path] = field(default_factory=dict)
    """Collection -> its NDJSON file of items."""
    counts: dict[str, int] = field(default_factory=dict)
    paths: dict[str, str] = field(default_factory=dict)
    """Item id -> its catalogue-relative file."""
    owner: dict[str, str] = field(default_factory=dict)
    """Item id -> its collection."""
    items: int = 0

    def lines(self, collection: str) -> Iterator[dict[str, Any]]:
        path = self.files.get(collection)
        if path is None:
            return
        with path.open("rb") as fh:
            for line in fh:
                yield orjson.loads(line)


def _spool(
    history: HistoryStore,
    point: Point,
    collections: Sequence[str] | None,
    folder: Path,
    summary: ExportSummary,
    tick: Progress,
) -> _Spool:
    """Stream the snapshot into one NDJSON file per collection; check every item on the way."""
    spool = _Spool(folder)
    handles: dict[str, IO[bytes]] = {}
    wanted = sorted(set(collections)) if collections else None
    tick("reading", 0, 0)
    try:
        for state in history.documents_at(point, wanted):
            doc = state.doc
            if doc is None:
                continue
            if state.kind == "collection":
                spool.collections[state.collection] = doc
                continue
            problem = _item_problem(doc, state.collection, spool)
            if problem is not None:
                summary.skipped.append(problem)
                continue
            fh = handles.get(state.collection)
            if fh is None:
                path = folder / f"{len(handles)}.ndjson"
                fh = handles[state.collection] = path.open("wb")
                spool.files[state.collection] = path
            fh.write(orjson.dumps(doc) + b"\n")
            spool.counts[state.collection] = spool.counts.get(state.collection, 0) + 1
            spool.items += 1
            if spool.items % CHUNK == 0:
                tick("reading", spool.items, 0)
    finally:
        for fh in handles.values():
            fh.close()
    missing = [c for c in wanted or [] if c not in spool.collections]
    if missing:
        raise NotFoundError(
            f"no collection {', '.join(missing)} in the catalogue at that point "
            f"(collections then: {', '.join(sorted(spool.collections)) or 'none'})"
        )
    tick("reading", spool.items, spool.items)
    return spool


def _item_problem(doc: dict[str, Any], collection: str, spool: _Spool) -> str | None:
    """Why an item cannot be exported (None: it can; its path is recorded)."""
    item_id = doc.get("id")
    problem = unsafe_item(doc)
    if problem is None:
        problem = si.item_problem(doc)
    if problem is None and item_id in spool.owner:
        problem = (
            f"item id {item_id!r:.80} is in collections {spool.owner[str(item_id)]} and "
            f"{collection}: the on-disk catalogue holds one item per id (kept the first)"
        )
    if problem is None:
        try:
            rel = si.item_path(collection, str(item_id), si.item_times(doc)[0])
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            problem = f"no usable time: {exc}"
        else:
            spool.paths[str(item_id)] = rel
            spool.owner[str(item_id)] = collection
            return None
    return f"{collection}/{item_id!r:.80}: {problem}"


# --- writing -----------------------------------------------------------------------------------


def _write_catalogue(
    work: Path, spool: _Spool, catalogue_id: str, summary: ExportSummary, tick: Progress
) -> None:
    """The spool as a catalogue in ``work``, through ``import_items`` (see the module doc)."""
    by_kind: dict[str, list[str]] = {"event": [], "product": [], "matchup": []}
    for coll in sorted(spool.files):
        by_kind[si.collection_kind(coll)].append(coll)
    events = sum(spool.counts[c] for c in by_kind["event"])
    total = spool.items + events
    done = 0
    point = "now" if summary.at is None else f"at {summary.at}"
    cat = MatchupCatalogue.create(
        work, id=catalogue_id, description=f"The central matchup catalogue {point}."
    )
    try:
        with cat.batch(workers=0):
            for kind in ("event", "product", "matchup", "event"):
                for coll in by_kind[kind]:
                    docs = {coll: _local_collection(spool.collections[coll])}
                    chunk: list[dict[str, Any]] = []
                    for item in spool.lines(coll):
                        chunk.append(local_form(item, spool.paths[item["id"]], spool.paths))
                        if len(chunk) >= CHUNK:
                            cat.import_items(chunk, docs)
                            done += len(chunk)
                            tick("writing", done, total)
                            chunk = []
                    if chunk:
                        cat.import_items(chunk, docs)
                        done += len(chunk)
                        tick("writing", done, total)
    finally:
        cat.close()


def _write_geoparquet(work: Path, spool: _Spool, tick: Progress) -> None:
    """One stac-geoparquet file per collection (the collection in the file's metadata)."""
    from stac_geoparquet.arrow import parse_stac_ndjson_to_parquet

    work.mkdir()
    done = 0
    for coll in sorted(spool.files):
        parse_stac_ndjson_to_parquet(
            spool.files[coll],
            work / f"{coll}.parquet",
            collections={coll: spool.collections[coll]},
        )
        done += spool.counts[coll]
        tick("writing", done, spool.items)


def _move_into_place(work: Path, root: Path) -> None:
    """Rename the finished export to ``root``; an earlier export there is replaced."""
    if root.is_dir() and any(root.iterdir()):
        old = root.parent / f".{root.name}.replaced-{secrets.token_hex(4)}"
        os.rename(root, old)
        try:
            os.rename(work, root)
        except BaseException:
            os.rename(old, root)
            raise
        shutil.rmtree(old, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            root.rmdir()  # an empty folder given as output
        os.rename(work, root)
