"""Push a local matchup catalogue into pgSTAC: incremental, idempotent, never half-loaded.

Change detection costs one ``stat`` per item: an item whose file size and mtime match what the
last ingest recorded (under the same settings fingerprint) is not even read. Files that did
change are read, rewritten for the service (:mod:`eomatch.core.publish`) and hashed; only a
different hash is loaded. Batches are loaded by pypgstac's Loader (upsert) in one transaction
each, together with the ingest state, while the next batch is read from disk on another thread.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from eomatch.core.publish import HrefRewriter, content_hash
from eomatch.core.validation import geometry_problem
from eomatch.errors import EomatchError
from eomatch.io.catalogue import MatchupCatalogue
from eomatch.io.pgstac_store import PGSTAC_VERSION, IngestRow, PgstacStore

TRANSFORM_VERSION = "1"
DEFAULT_BATCH = 5000

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


@dataclass
class _Work:
    items: list[dict[str, Any]] = field(default_factory=list)
    states: list[tuple[str, str, str, int | None, int | None]] = field(default_factory=list)
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    scanned: int = 0
    skipped: list[str] = field(default_factory=list)


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
    cat = MatchupCatalogue.open(catalogue)
    try:
        root = cat.root
        files = cat.item_files()
    finally:
        cat.close()
    by_path = {rel: (coll, iid) for coll, iid, rel in files}
    found = [(coll, rel) for coll, iid, rel in files if iid == item_id]
    if not found:
        raise EomatchError(f"not in the catalogue: {item_id}")
    coll, rel = found[0]
    try:
        doc = _read_json(root / rel)
    except (OSError, ValueError) as exc:
        raise EomatchError(f"{root / rel}: unreadable item: {exc}") from None
    local = HrefRewriter(root, by_path.get, assets_base_url).item(doc, rel)
    central = store.get_item(coll, item_id)
    if central is None:
        ingest_catalogue(catalogue, store, assets_base_url=assets_base_url, only=[item_id])
        return "inserted"
    assets = dict(central.get("assets") or {})
    for key in keys:
        if key in local.get("assets", {}):
            assets[key] = local["assets"][key]
        else:
            assets.pop(key, None)
    merged = {**central, "assets": assets}
    extensions = list(central.get("stac_extensions") or [])
    for uri in local.get("stac_extensions") or []:
        if uri not in extensions:
            extensions.append(uri)
    merged["stac_extensions"] = extensions
    store.upsert_items([merged])
    return "merged"


def _is_time(value: object) -> bool:
    if not isinstance(value, str):
        return False
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


def _invalid(doc: dict[str, Any], item_id: str) -> str | None:
    """Why pgSTAC would reject or mis-store this item (None: fine)."""
    if doc.get("type") != "Feature":
        return "type is not Feature"
    if doc.get("id") != item_id:
        return f"id {doc.get('id')!r} does not match the file name"
    geometry = doc.get("geometry")
    if not isinstance(geometry, dict):
        return "geometry missing"
    problem = geometry_problem(geometry)
    if problem:
        return problem
    props = doc.get("properties")
    if not isinstance(props, dict):
        return "properties missing"
    if props.get("datetime") is None:
        if not (_is_time(props.get("start_datetime")) and _is_time(props.get("end_datetime"))):
            return "datetime is null and start_datetime/end_datetime are not both set"
    elif not _is_time(props["datetime"]):
        return f"datetime {props['datetime']!r} is not an RFC 3339 time"
    return None


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
    if assets_base_url is not None and not assets_base_url.lower().startswith(
        ("http://", "https://", "file://", "s3://")
    ):
        raise EomatchError(f"--assets-base-url must be a URL, got {assets_base_url!r}")
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
            raise EomatchError(f"not in the catalogue: {', '.join(sorted(missing))}")
        prune = False
    rewriter = HrefRewriter(root, by_path.get, assets_base_url)
    source = source_id(root)
    fingerprint = _fingerprint(root, assets_base_url)
    old_fp, state = store.ingest_state(source)
    trust_stat = old_fp == fingerprint

    collections = []
    for _coll, rel in sorted(collection_files.items()):
        try:
            doc = _read_json(root / rel)
        except (OSError, ValueError) as exc:
            raise EomatchError(f"{root / rel}: unreadable collection: {exc}") from None
        collections.append(rewriter.collection(doc, rel))

    report = IngestReport(collections=len(collections), items=len(files))
    local_keys = {(coll, item_id) for coll, item_id, _ in files}
    deletes = [key for key in state if key not in local_keys] if prune else []

    def scan(chunk: Sequence[tuple[str, str, str]]) -> _Work:
        work = _Work()
        for coll, item_id, rel in chunk:
            work.scanned += 1
            path = root / rel
            try:
                st = path.stat()
            except OSError as exc:
                if skip_invalid:
                    work.skipped.append(f"{rel}: {exc}")
                    continue
                raise EomatchError(f"{path}: {exc}") from None
            known: IngestRow | None = state.get((coll, item_id))
            if (
                trust_stat
                and known is not None
                and known.mtime_ns == st.st_mtime_ns
                and known.size == st.st_size
            ):
                work.unchanged += 1
                continue
            try:
                doc = _read_json(path)
            except (OSError, ValueError) as exc:
                if skip_invalid:
                    work.skipped.append(f"{rel}: {exc}")
                    continue
                raise EomatchError(f"{path}: unreadable item: {exc}") from None
            problem = _invalid(doc, item_id)
            if problem:
                if skip_invalid:
                    work.skipped.append(f"{rel}: {problem}")
                    continue
                raise EomatchError(f"{path}: not a valid STAC item: {problem}")
            doc["collection"] = coll
            api_doc = rewriter.item(doc, rel)
            digest = content_hash(api_doc)
            work.states.append((coll, item_id, digest, st.st_mtime_ns, st.st_size))
            if known is not None and known.content_hash == digest:
                work.unchanged += 1
                continue
            work.items.append(api_doc)
            if known is None:
                work.inserted += 1
            else:
                work.updated += 1
        return work

    chunks = [files[i : i + batch_size] for i in range(0, len(files), batch_size)] or [[]]
    done = 0
    with store.loading() as loader, ThreadPoolExecutor(max_workers=1) as reader:
        pending: Future[_Work] = reader.submit(scan, chunks[0])
        for index in range(len(chunks)):
            work = pending.result()
            if index + 1 < len(chunks):
                pending = reader.submit(scan, chunks[index + 1])
            first = index == 0
            last = index == len(chunks) - 1
            loader.load(
                source,
                fingerprint,
                collections if first else [],
                work.items,
                work.states,
                deletes if last else [],
            )
            report.inserted += work.inserted
            report.updated += work.updated
            report.unchanged += work.unchanged
            report.skipped.extend(work.skipped)
            done += work.scanned
            if progress is not None:
                progress(done, len(files))
    report.pruned = len(deletes)
    return report
