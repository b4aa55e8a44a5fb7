"""SQLite side index of a matchup catalogue: queries without parsing every item file.

The JSON files are the truth; this index (``{root}/.eomatch-index.sqlite``) is a cache that can
always be rebuilt from them. It holds one row per item (kind, collection, relative path, time
range, bbox, the properties of matchups for CQL2 filters, the product ``downloaded`` flag), the
event → matchup → product relations, and the modification time of every ``YYYY/MM/DD``
directory so that ``open`` detects files added, removed or replaced behind its back in
O(number of day directories), not O(number of items). A ``dirty`` flag is set before a writer
touches any file and cleared in the transaction that records what it wrote: an index left dirty
by a killed writer is rebuilt on the next open.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple

import orjson

from eomatch.core import stac_items as si
from eomatch.core.vocabulary import (
    COLLECTIONS_PROP,
    EVENT_ID_PROP,
    PLATFORMS_PROP,
    ROLE_MATCHUP,
    BBox,
)

INDEX_NAME = ".eomatch-index.sqlite"
SCHEMA_VERSION = "2"
"""Bumped when the catalogue layout changes: an older index is rebuilt, which also migrates
the files (version 2: day catalogs, items' ``parent`` is their day catalog)."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS items(
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    collection TEXT NOT NULL,
    path TEXT NOT NULL,
    start REAL NOT NULL,
    end REAL NOT NULL,
    west REAL NOT NULL, south REAL NOT NULL, east REAL NOT NULL, north REAL NOT NULL,
    props TEXT,
    downloaded INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS items_kind_start ON items(kind, start);
CREATE INDEX IF NOT EXISTS items_collection ON items(collection, start);
CREATE TABLE IF NOT EXISTS event_matchups(
    event_id TEXT NOT NULL, matchup_id TEXT NOT NULL, PRIMARY KEY(event_id, matchup_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS event_matchups_matchup ON event_matchups(matchup_id);
CREATE TABLE IF NOT EXISTS matchup_products(
    matchup_id TEXT NOT NULL, product_id TEXT NOT NULL, PRIMARY KEY(matchup_id, product_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS matchup_products_product ON matchup_products(product_id);
CREATE TABLE IF NOT EXISTS dirs(path TEXT PRIMARY KEY, mtime_ns INTEGER NOT NULL) WITHOUT ROWID;
"""


@dataclass(frozen=True)
class IndexRow:
    """One item as the index knows it."""

    id: str
    kind: str
    collection: str
    path: str
    start: float
    end: float
    bbox: BBox
    props: dict[str, Any] | None
    downloaded: bool


class ItemRow(NamedTuple):
    """One ``items`` row as written, fields in column order (a tuple for ``executemany``)."""

    id: str
    kind: str
    collection: str
    path: str
    start: float
    end: float
    west: float
    south: float
    east: float
    north: float
    props: str | None
    """JSON text of the properties kept for filters (events, matchups), or None."""
    downloaded: int


@dataclass(frozen=True)
class IndexEntry:
    """What the index records of one item file: its row and its relations."""

    row: ItemRow
    event_matchups: list[tuple[str, str]]
    matchup_products: list[tuple[str, str]]


def asset_is_local(asset: Mapping[str, Any] | None) -> bool:
    """A path, or a ``file://`` URL (data on a shared drive, used in place): not to fetch."""
    if not asset:
        return False
    href = str(asset.get("href", ""))
    return not si.is_url(href) or href[:7].lower() == "file://"


def index_entry(
    item: Mapping[str, Any], rel: str, times: tuple[datetime, datetime] | None = None
) -> IndexEntry:
    """Index row and relations of the item stored at ``rel`` (pure: the bulk writers use it)."""
    kind = si.collection_kind(item["collection"])
    start, end = times or si.item_times(item)
    bbox = si.bbox_2d(item.get("bbox") or si.geometry_bbox(si.item_geometry(item)))
    props = item["properties"]
    stored: dict[str, Any] | None = None
    downloaded = False
    em: list[tuple[str, str]] = []
    mp: list[tuple[str, str]] = []
    if kind == "matchup":
        stored = props  # serialised below, not kept
        mp = [
            (item["id"], si.item_id_of(si.resolve_href(rel, link["href"])))
            for link in item.get("links") or []
            if link["rel"] == "derived_from"
        ]
        if props.get(EVENT_ID_PROP):
            em.append((props[EVENT_ID_PROP], item["id"]))
    elif kind == "event":
        stored = {k: props.get(k) for k in (COLLECTIONS_PROP, PLATFORMS_PROP)}
        em = [
            (item["id"], si.item_id_of(path)) for path in si.related_paths(item, ROLE_MATCHUP, rel)
        ]
    else:
        downloaded = asset_is_local((item.get("assets") or {}).get("data"))
    row = ItemRow(
        id=item["id"],
        kind=kind,
        collection=item["collection"],
        path=rel,
        start=start.timestamp(),
        end=end.timestamp(),
        west=float(bbox[0]),
        south=float(bbox[1]),
        east=float(bbox[2]),
        north=float(bbox[3]),
        props=None if stored is None else orjson.dumps(stored).decode(),
        downloaded=int(downloaded),
    )
    return IndexEntry(row, em, mp)


class CatalogueIndex:
    """Thin wrapper over the SQLite file; the catalogue decides when to write."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.db = sqlite3.connect(path, isolation_level=None, timeout=60.0)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(_SCHEMA)
        self._in_tx = False

    def close(self) -> None:
        """Close the connection."""
        self.db.close()

    @property
    def in_transaction(self) -> bool:
        """Whether a write transaction (:meth:`begin`) is open."""
        return self._in_tx

    # --- meta -------------------------------------------------------------------------------

    def meta(self, key: str) -> str | None:
        """A meta value."""
        row = self.db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        """Set a meta value (inside the current transaction if any)."""
        self.db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, value))

    def is_usable(self) -> bool:
        """Index built by this schema version and not left dirty by a killed writer."""
        return self.meta("schema") == SCHEMA_VERSION and self.meta("dirty") == "0"

    def mark_dirty(self) -> None:
        """Commit ``dirty=1`` before any file is touched."""
        self.db.execute("BEGIN IMMEDIATE")
        self.set_meta("dirty", "1")
        self.db.execute("COMMIT")

    def begin(self) -> None:
        """Start the transaction that will record the written files."""
        if not self._in_tx:
            self.db.execute("BEGIN IMMEDIATE")
            self._in_tx = True

    def commit(self, clean: bool = True) -> None:
        """Commit, clearing the dirty flag when everything written is recorded."""
        if not self._in_tx:
            self.begin()
        if clean:
            self.set_meta("schema", SCHEMA_VERSION)
            self.set_meta("dirty", "0")
        self.db.execute("COMMIT")
        self._in_tx = False

    def rollback(self) -> None:
        """Drop the current transaction."""
        if self._in_tx:
            self.db.execute("ROLLBACK")
            self._in_tx = False

    def clear(self) -> None:
        """Empty every table (inside the current transaction)."""
        for table in ("items", "event_matchups", "matchup_products", "dirs"):
            self.db.execute(f"DELETE FROM {table}")

    # --- writes -----------------------------------------------------------------------------

    def add_entries(self, entries: Iterable[IndexEntry]) -> None:
        """Record many items (rows replaced, relations added)."""
        entries = list(entries)
        self.add_rows(
            [e.row for e in entries],
            [x for e in entries for x in e.event_matchups],
            [x for e in entries for x in e.matchup_products],
        )

    def add_rows(
        self,
        rows: Sequence[ItemRow],
        event_matchups: Sequence[tuple[str, str]],
        matchup_products: Sequence[tuple[str, str]],
    ) -> None:
        """Record item rows (replaced) and relations (added)."""
        self.db.executemany("INSERT OR REPLACE INTO items VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", rows)
        self.db.executemany("INSERT OR IGNORE INTO event_matchups VALUES (?, ?)", event_matchups)
        self.db.executemany(
            "INSERT OR IGNORE INTO matchup_products VALUES (?, ?)", matchup_products
        )

    def delete_item(self, item_id: str) -> None:
        """Forget one item and its relations."""
        self.db.execute("DELETE FROM items WHERE id=?", (item_id,))
        self.db.execute(
            "DELETE FROM event_matchups WHERE event_id=? OR matchup_id=?", (item_id, item_id)
        )
        self.db.execute(
            "DELETE FROM matchup_products WHERE matchup_id=? OR product_id=?", (item_id, item_id)
        )

    def forget_products_of(self, matchup_id: str) -> None:
        """Drop a matchup's product relations (before it is re-recorded with new ones)."""
        self.db.execute("DELETE FROM matchup_products WHERE matchup_id=?", (matchup_id,))

    def set_dirs(self, dirs: dict[str, int]) -> None:
        """Record the modification times of day directories."""
        self.db.executemany("INSERT OR REPLACE INTO dirs VALUES (?, ?)", dirs.items())

    def forget_dirs(self, paths: Iterable[str]) -> None:
        """Drop directories that no longer exist."""
        self.db.executemany("DELETE FROM dirs WHERE path=?", ((p,) for p in paths))

    # --- reads ------------------------------------------------------------------------------

    def dirs(self) -> dict[str, int]:
        """Recorded day directories and their modification times."""
        return {str(p): int(m) for p, m in self.db.execute("SELECT path, mtime_ns FROM dirs")}

    def _row(self, r: Sequence[Any]) -> IndexRow:
        raw = ItemRow(*r)
        return IndexRow(
            id=raw.id,
            kind=raw.kind,
            collection=raw.collection,
            path=raw.path,
            start=raw.start,
            end=raw.end,
            bbox=(raw.west, raw.south, raw.east, raw.north),
            props=None if raw.props is None else json.loads(raw.props),
            downloaded=bool(raw.downloaded),
        )

    def item_files(self) -> list[tuple[str, str, str]]:
        """``(collection, id, path)`` of every item, by path."""
        rows = self.db.execute("SELECT collection, id, path FROM items ORDER BY path")
        return [(str(c), str(i), str(p)) for c, i, p in rows]

    def event_paths_overlapping(self, start: float, end: float) -> list[str]:
        """Files of the events whose time range overlaps ``[start, end]`` (Unix seconds)."""
        rows = self.db.execute(
            "SELECT path FROM items WHERE kind='event' AND end >= ? AND start <= ?", (start, end)
        )
        return [str(r[0]) for r in rows]

    def event_collection_props(self) -> dict[str, dict[str, Any]]:
        """Events collection → the sensor properties of (any) one of its events."""
        out: dict[str, dict[str, Any]] = {}
        for coll, kind in self.collections().items():
            if kind != "event":
                continue
            row = self.db.execute(
                "SELECT props FROM items WHERE collection=? LIMIT 1", (coll,)
            ).fetchone()
            out[coll] = json.loads(row[0]) if row and row[0] else {}
        return out

    def with_dangling_relations(self) -> list[str]:
        """Items related to an item that is not indexed (left by an interrupted remove)."""
        missing = "NOT IN (SELECT id FROM items)"
        ids = {
            str(r[0])
            for sql in (
                f"SELECT DISTINCT event_id FROM event_matchups WHERE matchup_id {missing}",
                f"SELECT DISTINCT matchup_id FROM event_matchups WHERE event_id {missing}",
                f"SELECT DISTINCT matchup_id FROM matchup_products WHERE product_id {missing}",
            )
            for r in self.db.execute(sql)
        }
        return sorted(ids)

    def has(self, item_id: str) -> bool:
        """Whether the item is indexed (cheaper than :meth:`get`)."""
        return self.db.execute("SELECT 1 FROM items WHERE id=?", (item_id,)).fetchone() is not None

    def present(self, ids: Sequence[str]) -> set[str]:
        """The ids of ``ids`` that are indexed (one query for up to 500)."""
        out: set[str] = set()
        for chunk in _chunks(list(ids), 500):
            marks = ",".join("?" * len(chunk))
            out.update(
                r[0] for r in self.db.execute(f"SELECT id FROM items WHERE id IN ({marks})", chunk)
            )
        return out

    def get(self, item_id: str) -> IndexRow | None:
        """One item by id."""
        r = self.db.execute("SELECT * FROM items WHERE id=?", (item_id,)).fetchone()
        return None if r is None else self._row(r)

    def get_many(self, ids: Iterable[str]) -> dict[str, IndexRow]:
        """Items by id (missing ids are absent from the result)."""
        out: dict[str, IndexRow] = {}
        id_list = list(dict.fromkeys(ids))
        for chunk in _chunks(id_list, 500):
            marks = ",".join("?" * len(chunk))
            for r in self.db.execute(f"SELECT * FROM items WHERE id IN ({marks})", chunk):
                row = self._row(r)
                out[row.id] = row
        return out

    def collections(self) -> dict[str, str]:
        """Collection id → kind, for every collection holding items."""
        # skip-scan over the collection index: O(collections x log items), not a table scan
        sql = """
            WITH RECURSIVE c(x) AS (
                SELECT min(collection) FROM items
                UNION ALL
                SELECT (SELECT min(collection) FROM items WHERE collection > x)
                FROM c WHERE x IS NOT NULL
            )
            SELECT x, (SELECT kind FROM items WHERE collection = x LIMIT 1)
            FROM c WHERE x IS NOT NULL
        """
        return {str(c): str(k) for c, k in self.db.execute(sql)}

    def collection_extent(self, collection: str) -> tuple[BBox, float, float, bool] | None:
        """(min west, min south, max east, max north), start, end, any-crossing; None if empty."""
        r = self.db.execute(
            "SELECT min(west), min(south), max(east), max(north), min(start), max(end),"
            " max(west > east), count(*) FROM items WHERE collection=?",
            (collection,),
        ).fetchone()
        if r is None or r[7] == 0:
            return None
        return (r[0], r[1], r[2], r[3]), r[4], r[5], bool(r[6])

    def matchups_of(self, event_ids: Sequence[str]) -> dict[str, list[str]]:
        """Event id → its matchup ids."""
        out: dict[str, list[str]] = {e: [] for e in event_ids}
        for chunk in _chunks(list(event_ids), 500):
            marks = ",".join("?" * len(chunk))
            sql = f"SELECT event_id, matchup_id FROM event_matchups WHERE event_id IN ({marks})"
            for e, m in self.db.execute(sql, chunk):
                out[e].append(m)
        return out

    def products_of(self, matchup_ids: Sequence[str]) -> dict[str, list[str]]:
        """Matchup id → its product ids."""
        out: dict[str, list[str]] = {m: [] for m in matchup_ids}
        for chunk in _chunks(list(matchup_ids), 500):
            marks = ",".join("?" * len(chunk))
            sql = (
                f"SELECT matchup_id, product_id FROM matchup_products WHERE matchup_id IN ({marks})"
            )
            for m, p in self.db.execute(sql, chunk):
                out[m].append(p)
        return out

    def events_of_matchup(self, matchup_id: str) -> list[str]:
        """Events a matchup belongs to."""
        rows = self.db.execute(
            "SELECT event_id FROM event_matchups WHERE matchup_id=?", (matchup_id,)
        )
        return [str(r[0]) for r in rows]

    def matchups_of_product(self, product_id: str) -> list[str]:
        """Matchups a product takes part in."""
        rows = self.db.execute(
            "SELECT matchup_id FROM matchup_products WHERE product_id=?", (product_id,)
        )
        return [str(r[0]) for r in rows]

    def select_events(
        self,
        collections: Sequence[str] | None,
        start: float | None,
        stop: float | None,
        lat_range: tuple[float, float] | None,
    ) -> Iterator[IndexRow]:
        """Event rows by events collection, time overlap and latitude band (lon done by caller)."""
        sql = "SELECT * FROM items WHERE kind='event'"
        args: list[Any] = []
        if collections is not None:
            if not collections:
                return
            sql += f" AND collection IN ({','.join('?' * len(collections))})"
            args += list(collections)
        if start is not None:
            sql += " AND end >= ?"
            args.append(start)
        if stop is not None:
            sql += " AND start <= ?"
            args.append(stop)
        if lat_range is not None:
            sql += " AND north >= ? AND south <= ?"
            args += [lat_range[0], lat_range[1]]
        sql += " ORDER BY start, id"
        for r in self.db.execute(sql, args):
            yield self._row(r)

    def count(self, kind: str | None = None) -> int:
        """Number of items (of one kind)."""
        if kind is None:
            return int(self.db.execute("SELECT count(*) FROM items").fetchone()[0])
        sql = "SELECT count(*) FROM items WHERE kind=?"
        return int(self.db.execute(sql, (kind,)).fetchone()[0])


def _chunks(values: list[str], size: int) -> Iterator[list[str]]:
    for i in range(0, len(values), size):
        yield values[i : i + size]
