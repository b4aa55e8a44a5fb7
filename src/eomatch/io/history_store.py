"""Reading the catalogue history, and writing a set of document states as one new transaction.

The model (see :mod:`eomatch.io.history_schema`): each change row keeps the state of one
document *before* its transaction; the state after it is the ``before`` of the document's next
change, or the current row. So the catalogue at a point P (a commit sequence number) is: for
every document changed after P, the ``before`` of its first change after P (absent for an
insert); every other document as it is now.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
import psycopg
from psycopg.rows import tuple_row
from pypgstac.db import PgstacDB
from pypgstac.hydration import hydrate
from pypgstac.load import Loader, Methods

from eomatch.core.validation import stac_document_problem
from eomatch.errors import ConflictError, InputError, NotFoundError
from eomatch.io.history_schema import describe_sql
from eomatch.io.pg_errors import translated
from eomatch.io.pgstac_store import PgstacStore
from eomatch.timeparse import parse_time

__all__ = [
    "Change",
    "DocState",
    "HistoryFilter",
    "HistoryStore",
    "Point",
    "Transaction",
    "Writer",
]

DocKey = tuple[str, str, str]
"""(kind, collection, id): kind is ``item`` or ``collection``; a collection's id is ''."""


@dataclass(frozen=True)
class Transaction:
    """One recorded transaction."""

    id: int
    committed_at: datetime
    commit_seq: int
    actor: str
    kind: str
    message: str | None
    run: str | None
    db_user: str
    inserted: int = 0
    updated: int = 0
    deleted: int = 0


@dataclass(frozen=True)
class Change:
    """One document's change in a transaction, with its state before and after."""

    kind: str
    collection: str
    id: str
    op: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    later: int | None
    """The id of the next transaction that changed this document, if any."""


@dataclass(frozen=True)
class DocState:
    """A document at some point: ``doc`` None means it did not exist then."""

    kind: str
    collection: str
    id: str
    doc: dict[str, Any] | None


@dataclass(frozen=True)
class Point:
    """A point in the history: everything committed up to and including ``commit_seq``."""

    commit_seq: int
    at: datetime | None
    tx: int | None


@dataclass(frozen=True)
class HistoryFilter:
    """What ``eomatch history`` lists."""

    collection: str | None = None
    item: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    actor: str | None = None
    kind: str | None = None
    limit: int = 50


_TX_COLUMNS = (
    "t.id, t.committed_at, t.commit_seq, t.actor, t.kind, t.message, t.run, t.db_user, "
    "count(*) FILTER (WHERE c.op = 'insert'), count(*) FILTER (WHERE c.op = 'update'), "
    "count(*) FILTER (WHERE c.op = 'delete')"
)


class HistoryStore:
    """The history tables of one database, through one role."""

    def __init__(self, store: PgstacStore) -> None:
        self.store = store

    # -- transactions --------------------------------------------------------------------------

    def transactions(self, f: HistoryFilter) -> list[Transaction]:
        """Committed transactions, newest first."""
        where = ["t.commit_seq IS NOT NULL"]
        params: list[Any] = []
        if f.collection is not None or f.item is not None:
            sub = ["c2.tx = t.id"]
            if f.collection is not None:
                sub.append("c2.collection = %s")
                params.append(f.collection)
            if f.item is not None:
                sub.append("c2.kind = 'item' AND c2.id = %s")
                params.append(f.item)
            where.append(f"EXISTS (SELECT 1 FROM eomatch.changes c2 WHERE {' AND '.join(sub)})")
        for clause, value in (
            ("t.committed_at >= %s", f.since),
            ("t.committed_at <= %s", f.until),
            ("t.actor = %s", f.actor),
            ("t.kind = %s", f.kind),
        ):
            if value is not None:
                where.append(clause)
                params.append(value)
        params.append(max(1, min(f.limit, 10_000)))
        query = (
            f"SELECT {_TX_COLUMNS} FROM eomatch.transactions t "
            "LEFT JOIN eomatch.changes c ON c.tx = t.id "
            f"WHERE {' AND '.join(where)} GROUP BY t.id ORDER BY t.commit_seq DESC LIMIT %s"
        )
        with self.store.connect() as conn, translated("cannot read the history"):
            rows = conn.execute(query, params).fetchall()
        return [Transaction(*row) for row in rows]

    def transaction(self, tx: int) -> Transaction:
        """One committed transaction; :class:`NotFoundError` if there is none."""
        with self.store.connect() as conn, translated("cannot read the history"):
            row = conn.execute(
                f"SELECT {_TX_COLUMNS} FROM eomatch.transactions t "
                "LEFT JOIN eomatch.changes c ON c.tx = t.id "
                "WHERE t.id = %s AND t.commit_seq IS NOT NULL GROUP BY t.id",
                (tx,),
            ).fetchone()
        if row is None:
            raise NotFoundError(f"no transaction {tx} in the history (see `eomatch history`)")
        return Transaction(*row)

    def changes(self, tx: int, limit: int | None = None) -> list[Change]:
        """What ``tx`` changed, each document with its state before and after ``tx``."""
        self.transaction(tx)
        query = """
            SELECT c.kind, c.collection, c.id, c.op, c.before_stored, c.before_hydrated,
                   nxt.before_stored, nxt.before_hydrated, nxt.tx, nxt.found,
                   CASE WHEN c.kind = 'item' THEN (
                       SELECT content_nonhydrated(i) FROM pgstac.items i
                       WHERE i.collection = c.collection AND i.id = c.id)
                   ELSE (SELECT content FROM pgstac.collections WHERE id = c.collection) END
            FROM eomatch.changes c
            LEFT JOIN LATERAL (
                SELECT n.before_stored, n.before_hydrated, n.tx, true AS found
                FROM eomatch.changes n
                JOIN eomatch.transactions nt ON nt.id = n.tx AND nt.commit_seq IS NOT NULL
                WHERE n.kind = c.kind AND n.collection = c.collection AND n.id = c.id
                  AND n.seq > c.seq
                ORDER BY n.seq LIMIT 1
            ) nxt ON true
            WHERE c.tx = %s
            ORDER BY c.kind, c.collection, c.id
        """
        params: list[Any] = [tx]
        if limit is not None:
            query += " LIMIT %s"
            params.append(limit)
        with self.store.connect() as conn, translated(f"cannot read transaction {tx}"):
            rows = conn.execute(query, params).fetchall()
            bases = _bases(conn)
        out = []
        for kind, coll, doc_id, op, b, b_done, nb, nb_done, next_tx, found, current in rows:
            base = bases.get(coll, {})
            before = _stored(b, b_done, base)
            if kind == "item" and current is not None and not found:
                current = _hydrated(current, base)
            after = _stored(nb, nb_done, base) if found else current
            out.append(Change(kind, coll, doc_id, op, before, after, next_tx))
        return out

    # -- points --------------------------------------------------------------------------------

    def last_seq(self) -> int:
        """The commit sequence number of the newest transaction (0: none yet)."""
        with self.store.connect() as conn, translated("cannot read the history"):
            row = conn.execute(
                "SELECT coalesce(max(commit_seq), 0) FROM eomatch.transactions"
            ).fetchone()
        return int(row[0]) if row else 0

    def point_of_tx(self, tx: int) -> Point:
        """Just after ``tx`` committed."""
        t = self.transaction(tx)
        return Point(t.commit_seq, t.committed_at, t.id)

    def point_at(self, when: datetime) -> Point:
        """Everything committed by ``when``; refused before the history began (or was purged)."""
        with self.store.connect() as conn, translated("cannot read the history"):
            began, purged = conn.execute(
                "SELECT began_at, purged_before FROM eomatch.history_meta"
            ).fetchone() or (None, None)
            start = max(x for x in (began, purged) if x is not None) if began else None
            if start is not None and when < start:
                raise InputError(
                    f"{when.isoformat()} is before the history begins "
                    f"({start.isoformat(timespec='seconds')}): no state to return to"
                )
            row = conn.execute(
                "SELECT coalesce(max(commit_seq), 0) FROM eomatch.transactions "
                "WHERE committed_at <= %s",
                (when,),
            ).fetchone()
        return Point(int(row[0]) if row else 0, when, None)

    def point(self, text: str) -> Point:
        """A transaction id (digits) or an ISO time."""
        if text.strip().isdigit():
            return self.point_of_tx(int(text))
        return self.point_at(parse_time(text, "a transaction id or time"))

    # -- states --------------------------------------------------------------------------------

    def changed_since(
        self,
        point: Point,
        collections: Sequence[str] | None = None,
        conn: psycopg.Connection[Any] | None = None,
    ) -> Iterator[DocState]:
        """Every document changed after ``point``, in its state at ``point`` (read on ``conn``
        when given: the caller's snapshot)."""
        query = """
            SELECT DISTINCT ON (c.kind, c.collection, c.id)
                c.kind, c.collection, c.id, c.before_stored, c.before_hydrated
            FROM eomatch.changes c JOIN eomatch.transactions t ON t.id = c.tx
            WHERE t.commit_seq > %s {filter}
            ORDER BY c.kind, c.collection, c.id, c.seq
        """
        params: list[Any] = [point.commit_seq]
        filt = ""
        if collections is not None:
            filt = "AND c.collection = ANY(%s)"
            params.append(list(collections))
        with contextlib.ExitStack() as stack:
            if conn is None:
                conn = stack.enter_context(self.store.connect())
            stack.enter_context(translated("cannot read the history"))
            cur = stack.enter_context(conn.cursor(name="changed_since", row_factory=tuple_row))
            cur.itersize = 2000
            cur.execute(query.format(filter=filt), params)
            for kind, coll, doc_id, before, hydrated in cur:
                yield DocState(kind, coll, doc_id, _stored(before, hydrated, {}))

    def documents_at(
        self, point: Point, collections: Sequence[str] | None = None
    ) -> Iterator[DocState]:
        """The whole catalogue (or some collections) as it was at ``point``: collections first,
        then items; documents that did not exist then are left out.

        All reads share one snapshot (a read-only repeatable-read transaction): a transaction
        committing meanwhile is seen in full or not at all, never by one read and not another.
        """
        with self.store.connect() as conn:
            conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            conn.read_only = True
            changed: dict[DocKey, DocState] = {
                (s.kind, s.collection, s.id): s
                for s in self.changed_since(point, collections, conn)
            }
            yield from _states_now(conn, "collection", changed, collections)
            yield from _states_now(conn, "item", changed, collections)
        for state in changed.values():
            if state.doc is not None and state.kind == "collection":
                yield state
        for state in changed.values():
            if state.doc is not None and state.kind == "item":
                yield state

    def current(self, keys: Sequence[DocKey]) -> dict[DocKey, dict[str, Any] | None]:
        """The current state of each document of ``keys`` (None: absent)."""
        out: dict[DocKey, dict[str, Any] | None] = dict.fromkeys(keys)
        colls = sorted({c for k, c, _ in keys if k == "collection"})
        items = [(c, i) for k, c, i in keys if k == "item"]
        with self.store.connect() as conn, translated("cannot read the catalogue"):
            bases = _bases(conn) if items else {}
            for coll, doc in conn.execute(
                "SELECT id, content FROM pgstac.collections WHERE id = ANY(%s)", (colls,)
            ):
                out[("collection", coll, "")] = doc
            for i in range(0, len(items), 5000):
                chunk = items[i : i + 5000]
                for coll, doc_id, doc in conn.execute(
                    "SELECT i.collection, i.id, content_nonhydrated(i) FROM pgstac.items i "
                    "JOIN unnest(%s::text[], %s::text[]) AS d(collection, id) "
                    "ON i.collection = d.collection AND i.id = d.id",
                    ([c for c, _ in chunk], [d for _, d in chunk]),
                ):
                    out[("item", coll, doc_id)] = _hydrated(doc, bases.get(coll, {}))
        return out

    def purge(self, before: datetime, actor: str) -> tuple[int, int]:
        """Delete the transactions committed before ``before`` and their changes, log the purge
        in ``eomatch.history_purges`` and move ``history_meta.purged_before``: one database
        transaction. Needs the admin role. Returns (transactions, changes) deleted."""
        with (
            self.store.connect() as conn,
            translated("cannot purge the history, nothing removed"),
            conn.transaction(),
        ):
            row = conn.execute("SELECT now() FROM eomatch.history_meta FOR UPDATE").fetchone()
            if row is not None and before > row[0]:
                raise InputError(
                    f"--before {before.isoformat(timespec='seconds')} is in the future: "
                    "history can only be purged up to now"
                )
            old = conn.execute(
                "CREATE TEMP TABLE purged ON COMMIT DROP AS SELECT id FROM eomatch.transactions "
                "WHERE commit_seq IS NOT NULL AND committed_at < %s",
                (before,),
            ).rowcount
            changes = conn.execute(
                "DELETE FROM eomatch.change_log c USING purged p WHERE c.tx = p.id"
            ).rowcount
            conn.execute("DELETE FROM eomatch.transactions t USING purged p WHERE t.id = p.id")
            conn.execute(
                "INSERT INTO eomatch.history_purges (before, transactions, changes, actor) "
                "VALUES (%s, %s, %s, %s)",
                (before, old, changes, actor),
            )
            conn.execute(
                "UPDATE eomatch.history_meta "
                "SET purged_before = greatest(purged_before, %s::timestamptz)",
                (before,),
            )
        return old, changes


def _states_now(
    conn: psycopg.Connection[Any],
    kind: str,
    changed: dict[DocKey, DocState],
    collections: Sequence[str] | None,
) -> Iterator[DocState]:
    """Current documents of one kind that did not change after the point.

    Items are hydrated here, as the API does (``use_api_hydrate``): pgSTAC's plpgsql
    ``content_hydrate`` took ~0.6 ms an item, 5x the non-hydrated read plus pypgstac's hydrate,
    which gives the same documents.
    """
    bases: dict[str, dict[str, Any]] = {}
    if kind == "collection":
        query = "SELECT id, '', content FROM pgstac.collections"
        where = " WHERE id = ANY(%s)"
    else:
        query = "SELECT i.collection, i.id, content_nonhydrated(i) FROM pgstac.items i"
        where = " WHERE i.collection = ANY(%s)"
        with translated("cannot read the catalogue"):
            rows = conn.execute("SELECT id, base_item FROM pgstac.collections").fetchall()
        bases = {coll: base or {} for coll, base in rows}
    params: list[Any] = []
    if collections is not None:
        query += where
        params.append(list(collections))
    with (
        translated("cannot read the catalogue"),
        conn.cursor(name=f"now_{kind}", row_factory=tuple_row) as cur,
    ):
        cur.itersize = 2000
        cur.execute(query, params)
        for coll, doc_id, doc in cur:
            if (kind, coll, doc_id) not in changed:
                if kind == "item":
                    doc = _hydrated(doc, bases.get(coll, {}))
                yield DocState(kind, coll, doc_id, doc)


def _stored(
    doc: dict[str, Any] | None, hydrated: bool | None, base: dict[str, Any]
) -> dict[str, Any] | None:
    """A ``before_stored`` state as its document: a row kept as pgSTAC stored it is hydrated
    here against the base item it is tagged with (``base`` only if it has none)."""
    return doc if doc is None or hydrated else _hydrated(doc, base)


def _bases(conn: psycopg.Connection[Any]) -> dict[str, dict[str, Any]]:
    """Each collection's base item, for :func:`_hydrated`."""
    rows = conn.execute("SELECT id, base_item FROM pgstac.collections").fetchall()
    return {coll: base or {} for coll, base in rows}


def _hydrated(doc: dict[str, Any], base: dict[str, Any]) -> dict[str, Any]:
    """A non-hydrated item merged with its collection's base item (pgSTAC's own rules)."""
    own = doc.pop("pgstac:base_item", None)  # pgSTAC >= 0.10 returns each item's own
    merged = {k: v for k, v in (own if isinstance(own, dict) else base).items() if v is not None}
    out: dict[str, Any] = hydrate(merged, doc, strip_unmatched_markers=True)
    return out


def _check_unchanged(conn: psycopg.Connection[Any], states: Sequence[DocState], seq: int) -> None:
    """Refuse when a transaction committed after ``seq`` changed any of these documents."""
    row = conn.execute(
        "SELECT c.kind, c.collection, c.id, c.tx FROM eomatch.changes c "
        "JOIN unnest(%s::text[], %s::text[], %s::text[]) AS d(kind, collection, id) "
        "ON c.kind = d.kind AND c.collection = d.collection AND c.id = d.id "
        "JOIN eomatch.transactions t ON t.id = c.tx AND t.commit_seq > %s LIMIT 1",
        (
            [s.kind for s in states],
            [s.collection for s in states],
            [s.id for s in states],
            seq,
        ),
    ).fetchone()
    if row is not None:
        kind, coll, doc_id, tx = row
        what = f"collection {coll}" if kind == "collection" else f"item {coll}/{doc_id}"
        raise ConflictError(
            f"{what} was changed by transaction {tx} while this was being prepared; "
            "nothing changed, run it again"
        )


class Writer:
    """Sets documents to given states as ONE recorded transaction, through pgSTAC's functions.

    Used by rollbacks: collections are created before their items and deleted after them.
    """

    BATCH = 2000

    def __init__(self, store: PgstacStore) -> None:
        self.store = store

    def apply(
        self,
        states: Sequence[DocState],
        *,
        actor: str,
        kind: str,
        message: str | None = None,
        run: str | None = None,
        unchanged_after: int | None = None,
    ) -> int | None:
        """Write ``states`` (doc None = delete); the new transaction's id, or None if nothing
        changed.

        Every document is checked with the rules of every other write first (a past state
        stored before those rules existed could break reads): one that fails stops the whole
        write before anything changes. With ``unchanged_after`` (a commit sequence number: when
        the states were planned), a document that another transaction changed since then stops
        it too (:class:`ConflictError`), inside the writing transaction.
        """
        for state in states:
            if state.doc is not None:
                problem = stac_document_problem(
                    state.doc, "Collection" if state.kind == "collection" else "Feature"
                )
                if problem:
                    where = state.collection + (f"/{state.id}" if state.id else "")
                    raise InputError(
                        f"{state.kind} {where!r:.200} cannot be restored: {problem}; "
                        "nothing changed"
                    )
        coll_put = [s for s in states if s.kind == "collection" and s.doc is not None]
        coll_del = [s for s in states if s.kind == "collection" and s.doc is None]
        item_put = [s for s in states if s.kind == "item" and s.doc is not None]
        item_del = [s for s in states if s.kind == "item" and s.doc is None]
        failed = "the change was rolled back, nothing changed"
        with self.store.connect() as conn, translated(failed), conn.transaction():
            conn.execute(describe_sql(), (actor, kind, message, run))
            if unchanged_after is not None:
                _check_unchanged(conn, states, unchanged_after)
            for s in coll_put:
                conn.execute(
                    "INSERT INTO pgstac.collections (content) VALUES (%s::jsonb) "
                    "ON CONFLICT (id) DO UPDATE SET content = EXCLUDED.content "
                    "WHERE collections.content IS DISTINCT FROM EXCLUDED.content",
                    (orjson.dumps(s.doc).decode(),),
                )
            for i in range(0, len(item_del), self.BATCH):
                chunk = item_del[i : i + self.BATCH]
                conn.execute(
                    "DELETE FROM pgstac.items i USING unnest(%s::text[], %s::text[]) "
                    "AS d(collection, id) WHERE i.collection = d.collection AND i.id = d.id",
                    ([s.collection for s in chunk], [s.id for s in chunk]),
                )
            if item_put:  # pypgstac's loader (COPY per partition); pgstac.upsert_items: 10x slower
                docs = (dict(s.doc or {}, collection=s.collection) for s in item_put)
                Loader(db=PgstacDB(connection=conn)).load_items(docs, Methods.upsert)
            for s in coll_del:
                conn.execute("DELETE FROM pgstac.collections WHERE id = %s", (s.collection,))
            row = conn.execute(
                "SELECT split_part(current_setting('eomatch.history_tx', true), ':', 2)"
            ).fetchone()
        tx = row[0] if row else ""
        return int(tx) if tx else None
