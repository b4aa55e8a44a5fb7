"""The one place where an item becomes registered: in pgSTAC, and so in every records backend.

Modes: ``register`` (new items only: an existing one is a conflict), ``replace`` (insert or
overwrite) and ``deregister`` (remove). Each call is one database transaction through
:class:`~eomatch.io.pgstac_store.PgstacStore`, which validates the documents and describes the
transaction for the history.

The consistency rule: the records that CSW and OGC API - Records serve
(:mod:`eomatch.io.records_schema`) are views over ``pgstac.items``, so an item and its record
are one row. Whatever registers an item — this module, ``eomatch ingest``, the internal API's
transactions, a job, a harvester, psql — its record appears and disappears in the same
transaction, in every snapshot; a crash or ``kill -9`` cannot leave one without the other,
and nothing needs re-running to catch up. Writers that reach pgSTAC another way
(``eomatch ingest``'s bulk loader, the STAC API) keep that guarantee; this class is the
typed entry point for new writers (harvesters).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from eomatch.core.validation import stac_document_problem
from eomatch.errors import ConflictError, InputError
from eomatch.io.history_schema import WriteNote
from eomatch.io.pg_errors import translated
from eomatch.io.pgstac_store import PgstacStore
from eomatch.io.records_schema import RECORDS_VIEW, record_identifier

__all__ = ["Mode", "Registrar", "Registration"]

Mode = Literal["register", "replace", "deregister"]


@dataclass(frozen=True)
class Registration:
    """What one call changed."""

    mode: Mode
    items: int
    """Items registered, replaced or removed."""


class Registrar:
    """Registers, replaces or deregisters items, each call one transaction."""

    def __init__(self, store: PgstacStore, note: WriteNote | None = None) -> None:
        self.store = store if note is None else store.noted(note)

    def register(self, items: Sequence[Mapping[str, Any]]) -> Registration:
        """Add new items; any that already exists stops the call, nothing written."""
        return self._write(items, "register")

    def replace(self, items: Sequence[Mapping[str, Any]]) -> Registration:
        """Add or overwrite items."""
        return self._write(items, "replace")

    def deregister(self, keys: Iterable[tuple[str, str]]) -> Registration:
        """Remove items by ``(collection, id)``; a missing one is not an error."""
        pairs = list(dict.fromkeys(keys))
        if not pairs:
            return Registration("deregister", 0)
        with (
            self.store.connect() as conn,
            translated("deregister failed, nothing changed"),
            conn.transaction(),
        ):
            self.store.describe(conn)
            gone = 0
            with conn.cursor() as cur:
                for collection, item_id in pairs:
                    cur.execute(
                        "DELETE FROM pgstac.items WHERE collection = %s AND id = %s",
                        (collection, item_id),
                    )
                    gone += cur.rowcount
        return Registration("deregister", gone)

    def _write(self, items: Sequence[Mapping[str, Any]], mode: Mode) -> Registration:
        docs = [dict(i) for i in items]
        for doc in docs:
            problem = stac_document_problem(doc, "Feature")
            if problem:
                raise InputError(f"item {doc.get('id')!r:.200}: {problem}; nothing registered")
        keys = [(str(d.get("collection")), str(d.get("id"))) for d in docs]
        if len(set(keys)) != len(keys):
            raise InputError("the same item twice in one registration; nothing registered")
        if mode == "register" and docs:
            taken = self.registered(keys)
            if taken:
                c, i = sorted(taken)[0]
                raise ConflictError(
                    f"item {i!r:.200} is already registered in {c!r:.200} "
                    f"({len(taken)} of {len(keys)}); use replace; nothing registered"
                )
        if docs:
            self.store.upsert_items(docs)
        return Registration(mode, len(docs))

    def registered(self, keys: Iterable[tuple[str, str]]) -> set[tuple[str, str]]:
        """Which of ``(collection, id)`` are registered."""
        pairs = list(keys)
        if not pairs:
            return set()
        with self.store.connect() as conn:
            rows = conn.execute(
                "SELECT collection, id FROM pgstac.items "
                "WHERE (collection, id) IN (SELECT * FROM unnest(%s::text[], %s::text[]))",
                ([c for c, _ in pairs], [i for _, i in pairs]),
            ).fetchall()
        return {(str(r[0]), str(r[1])) for r in rows}

    def records(self, keys: Iterable[tuple[str, str]]) -> set[tuple[str, str]]:
        """Which of ``(collection, id)`` have a record (by the rule above: the same set)."""
        wanted = {record_identifier(c, i): (c, i) for c, i in keys}
        if not wanted:
            return set()
        with self.store.connect() as conn:
            rows = conn.execute(
                f"SELECT identifier FROM {RECORDS_VIEW} WHERE identifier = ANY(%s)",
                (list(wanted),),
            ).fetchall()
        return {wanted[str(r[0])] for r in rows}
