"""Push a local matchup catalogue into pgSTAC: incremental, idempotent, never half-loaded.

Change detection costs one ``stat`` per item: an item whose file size and mtime match what the
last ingest recorded (under the same settings fingerprint) is not even read. Files that did
change are read, rewritten for the service (:mod:`eomatch.core.publish`) and hashed; only a
different hash is loaded. Batches are loaded by pypgstac's Loader (upsert) in one transaction
each, together with the ingest state, while the next batch is read from disk on another thread.

History: each batch is one transaction of kind ``ingest`` (``push`` for ``add-asset --push``),
the deletions of ``--prune`` one more of kind ``prune``; all transactions of one command share
a run id. An unchanged re-ingest writes nothing, so it records nothing.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Collection, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

import orjson

from eomatch.core.publish import HrefRewriter, content_hash
from eomatch.core.validation import stac_document_problem
from eomatch.errors import InputError, NotFoundError
from eomatch.io.catalogue import MatchupCatalogue
from eomatch.io.history_schema import WriteNote
from eomatch.io.pgstac_store import PGSTAC_VERSION, ItemFormatter, PgstacStore
from eomatch.workflows.ingest_scan import (
    ScanContext,
    ScanResult,
    ScanWorker,
    item_problem,
    scan_chunk,
)

TRANSFORM_VERSION = "1"
DEFAULT_BATCH = 10_000
PROCESS_THRESHOLD = 20_000
"""From this many files to read on, reading runs in a second process (start-up ~0.7 s)."""
COLLECTION_ROW = ""
"""Item id under which the ingest state remembers a collection document (items have ids)."""


Progress = Callable[[int, int], None]


@dataclass
class IngestReport:
    """What an ingest did."""

    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    pruned: int = 0
    collections: int = 0
    items: int = 0
    skipped: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """One line for people."""
        text = (
            f"{self.items} item(s) in {self.collections} collection(s): "
            f"{self.inserted} inserted, {self.updated} updated, {self.unchanged} unchanged, "
            f"{self.pruned} pruned"
        )
        if self.skipped:
            text += f", {len(self.skipped)} unreadable skipped"
        return text


def source_id(root: Path) -> str:
    """Which catalogue rows came from: its absolute location."""
    return str(Path(root).resolve())


def _fingerprint(root: Path, assets_base_url: str | None) -> str:
    return content_hash(
        {
            "root": source_id(root),
            "base": assets_base_url or "",
            "pgstac": PGSTAC_VERSION,
            "transform": TRANSFORM_VERSION,
        }
    )


def _is_base_url(text: str) -> bool:
    """An http(s), file or s3 URL that ``urlsplit`` accepts (every asset href is built on it)."""
    try:
        urlsplit(text)
    except ValueError:
        return False
    return text.lower().startswith(("http://", "https://", "file://", "s3://"))


def _read_json(path: Path) -> dict[str, Any]:
    data = orjson.loads(path.read_bytes())
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    return data


def push_assets(
    catalogue: str | os.PathLike[str],
    store: PgstacStore,
    item_id: str,
    keys: Collection[str],
    assets_base_url: str | None = None,
) -> str:
    """Send some assets of one local item to the central database; "merged" or "inserted".

    The central item is updated in place: only ``keys`` change, so versions that this copy of
    the catalogue never had (a partner pulled it from the external API, which hides
    ``file://`` assets) are kept. An item the database does not have yet is ingested whole.
    The ingest state is left alone: the catalogue that owns the item still sees it unchanged.
    """
    store = _noted(store, "push")
    if store.note is not None and store.note.message is None:
        message = f"assets {', '.join(sorted(keys))} of {item_id}"
        store = store.noted(replace(store.note, message=message[:2000]))
    cat = MatchupCatalogue.open(catalogue)
    try:
        root = cat.root
        files = cat.item_files()
    finally:
        cat.close()
    by_path = {rel: (coll, iid) for coll, iid, rel in files}
    found = [(coll, rel) for coll, iid, rel in files if iid == item_id]
    if not found:
        raise NotFoundError(f"not in the catalogue: {item_id}")
    coll, rel = found[0]
    try:
        doc = _read_json(root / rel)
    except (OSError, ValueError) as exc:
        raise InputError(f"{root / rel}: unreadable item: {exc}") from None
    problem = item_problem(doc, item_id)
    if problem:
        raise InputError(f"{root / rel}: not a valid STAC item: {problem}")
    local = HrefRewriter(root, by_path.get, assets_base_url).item(doc, rel)
    central = store.get_item(coll, item_id)
    if central is None:
        ingest_catalogue(catalogue, store, assets_base_url=assets_base_url, only=[item_id])
        return "inserted"
    assets = central.get("assets")
    assets = dict(assets) if isinstance(assets, dict) else {}
    for key in keys:
        if key in (local.get("assets") or {}):
            assets[key] = local["assets"][key]
        else:
            assets.pop(key, None)
    merged = {**central, "assets": assets}
    extensions = list(central.get("stac_extensions") or [])
    for uri in local.get("stac_extensions") or []:
        if uri not in extensions:
            extensions.append(uri)
    merged["stac_extensions"] = extensions
    store.upsert_items([merged])  # checked there with the API's rules before it is stored
    return "merged"


@contextmanager
def _scanner(
    context: ScanContext, n_reads: int
) -> Iterator[Callable[[list[tuple[str, str, str]]], _HasResult]]:
    """Chunks are scanned ahead of the loading, in a second process when many files need
    reading (a re-ingest that only stats files is faster without the process start-up)."""
    if n_reads >= PROCESS_THRESHOLD and (os.cpu_count() or 1) > 1:
        worker = ScanWorker(context)
        try:
            yield worker.submit
        finally:
            worker.close()
    else:
        formatter = ItemFormatter(context.conninfo)
        try:
            with ThreadPoolExecutor(max_workers=1) as pool:
                yield lambda chunk: pool.submit(scan_chunk, chunk, context, formatter)
        finally:
            formatter.close()


class _HasResult(Protocol):
    def result(self) -> ScanResult: ...


def _noted(store: PgstacStore, kind: str) -> PgstacStore:
    """The store with its writes described as ``kind``, one run id for the whole command."""
    note = store.note.as_kind(kind) if store.note else WriteNote.cli(kind)
    return store.noted(note if note.run else replace(note, run=uuid.uuid4().hex[:12]))


def ingest_catalogue(
    catalogue: str | os.PathLike[str],
    store: PgstacStore,
    assets_base_url: str | None = None,
    prune: bool = False,
    batch_size: int = DEFAULT_BATCH,
    progress: Progress | None = None,
    skip_invalid: bool = False,
    only: Collection[str] | None = None,
) -> IngestReport:
    """Load a catalogue's collections and items into pgSTAC (upsert) and report what changed.

    ``only`` restricts the run to these item ids (``add-asset --push``); it never prunes.
    """
    if assets_base_url is not None and not _is_base_url(assets_base_url):
        raise InputError(f"--assets-base-url must be a URL, got {assets_base_url!r:.200}")
    store = _noted(store, "push" if only is not None else "ingest")
    cat = MatchupCatalogue.open(catalogue, skip_invalid=skip_invalid)
    try:
        root = cat.root
        files = cat.item_files()
        collection_files = cat.collection_files()
    finally:
        cat.close()
    by_path = {rel: (coll, item_id) for coll, item_id, rel in files}
    if only is not None:
        wanted = set(only)
        files = [f for f in files if f[1] in wanted]
        missing = wanted - {f[1] for f in files}
        if missing:
            raise NotFoundError(f"not in the catalogue: {', '.join(sorted(missing))}")
        prune = False
    rewriter = HrefRewriter(root, by_path.get, assets_base_url)
    source = source_id(root)
    fingerprint = _fingerprint(root, assets_base_url)
    old_fp, state = store.ingest_state(source)
    trust_stat = old_fp == fingerprint

    # collections are few: always read, loaded when their content changed (state id "")
    collections = []
    collection_states: list[tuple[str, str, str, int | None, int | None]] = []
    for coll, rel in sorted(collection_files.items()):
        try:
            raw = _read_json(root / rel)
        except (OSError, ValueError) as exc:
            raise InputError(f"{root / rel}: unreadable collection: {exc}") from None
        # the API's rules, on the file and on what is stored: nothing is loaded otherwise
        problem = stac_document_problem(raw, "Collection")
        doc = raw if problem else rewriter.collection(raw, rel)
        problem = problem or stac_document_problem(doc, "Collection")
        if problem:
            raise InputError(f"{root / rel}: not a valid STAC collection: {problem}")
        digest = content_hash(doc)
        known_collection = state.get((coll, COLLECTION_ROW))
        if known_collection is None or known_collection[0] != digest:
            collections.append(doc)
            collection_states.append((coll, COLLECTION_ROW, digest, None, None))

    report = IngestReport(collections=len(collection_files), items=len(files))
    deletes: list[tuple[str, str]] = []
    if prune:
        local_keys = {(coll, item_id) for coll, item_id, _ in files}
        deletes = [k for k in state if k[1] != COLLECTION_ROW and k not in local_keys]

    context = ScanContext(
        root=str(root),
        by_path=by_path,
        assets_base_url=assets_base_url,
        state=state,
        trust_stat=trust_stat,
        skip_invalid=skip_invalid,
        conninfo=store.info.conninfo("eomatch-ingest-reader"),
    )
    chunks = [files[i : i + batch_size] for i in range(0, len(files), batch_size)] or [[]]
    done = 0
    n_reads = len(files) - (sum(1 for f in files if (f[0], f[1]) in state) if trust_stat else 0)
    with store.loading() as loader:
        if collections:
            # committed first: the reader formats items against their base items
            loader.load(source, fingerprint, collections, [], collection_states, [])
        with _scanner(context, n_reads) as scan:
            pending = scan(chunks[0])
            for index in range(len(chunks)):
                work = pending.result()
                if index + 1 < len(chunks):
                    pending = scan(chunks[index + 1])
                if work.items or work.states:
                    loader.load(source, fingerprint, [], work.items, work.states)
                report.inserted += work.inserted
                report.updated += work.updated
                report.unchanged += work.unchanged
                report.skipped.extend(work.skipped)
                done += work.scanned
                if progress is not None:
                    progress(done, len(files))
        if deletes:  # a transaction of its own: a wrong --prune is one rollback away
            loader.load(source, fingerprint, [], [], [], deletes, kind="prune")
    report.pruned = len(deletes)
    return report
