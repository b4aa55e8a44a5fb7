"""How far each harvester got: its high-water mark and its last run, in ``eomatch.harvest_state``.

The mark is the newest item time of the pages already registered (see
:class:`eomatch.core.harvest.MarkTracker`); it is stored right *after* each page's items are
committed, so a run killed between the two re-fetches that one page next time (upserts by id:
no duplicates) and never skips one. The table is installed with the rest of the eomatch schema
(:meth:`PgstacStore.install`); ``eomatch_ingest`` may read and write it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import psycopg
from psycopg.types.json import Jsonb

from eomatch.errors import DatabaseError

__all__ = ["HARVEST_GRANTS_SQL", "HARVEST_SQL", "HarvestState", "HarvestStateStore"]

HARVEST_SQL = """
CREATE TABLE IF NOT EXISTS eomatch.harvest_state (
    harvester text PRIMARY KEY,
    mark timestamptz,
    run text,
    started_at timestamptz,
    finished_at timestamptz,
    status text NOT NULL DEFAULT 'never' CHECK (status IN ('never', 'running', 'ok', 'failed')),
    error text,
    counts jsonb NOT NULL DEFAULT '{}'::jsonb,
    total_written bigint NOT NULL DEFAULT 0
);
"""

HARVEST_GRANTS_SQL = """
GRANT SELECT, INSERT, UPDATE, DELETE ON eomatch.harvest_state TO eomatch_ingest, eomatch_api;
"""


@dataclass(frozen=True)
class HarvestState:
    """One harvester's row."""

    harvester: str
    mark: datetime | None = None
    run: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    status: str = "never"
    error: str | None = None
    counts: dict[str, Any] | None = None
    total_written: int = 0

    def to_json(self) -> dict[str, Any]:
        """For ``--format json``."""

        def iso(t: datetime | None) -> str | None:
            return t.isoformat() if t else None

        return {
            "harvester": self.harvester,
            "mark": iso(self.mark),
            "run": self.run,
            "started_at": iso(self.started_at),
            "finished_at": iso(self.finished_at),
            "status": self.status,
            "error": self.error,
            "counts": self.counts or {},
            "total_written": self.total_written,
        }


_COLUMNS = "harvester, mark, run, started_at, finished_at, status, error, counts, total_written"


class Connects(Protocol):
    """What the state needs of :class:`~eomatch.io.pgstac_store.PgstacStore` (which installs
    the table, so this module cannot import it)."""

    def connect(self, autocommit: bool = False) -> AbstractContextManager[psycopg.Connection[Any]]:
        """A connection (errors as one-line :class:`~eomatch.errors.DatabaseError`)."""
        ...


class HarvestStateStore:
    """Reads and writes ``eomatch.harvest_state`` (each call its own short transaction)."""

    def __init__(self, store: Connects) -> None:
        self.store = store

    @contextmanager
    def _connect(self) -> Iterator[psycopg.Connection[Any]]:
        """A connection; a database set up before harvesting existed gets a hint, not SQL."""
        with self.store.connect() as conn:
            try:
                yield conn
            except psycopg.errors.UndefinedTable:  # inside: the store would word it as SQL
                raise DatabaseError(
                    "the database has no eomatch.harvest_state table (set up before harvesting "
                    "existed): run `eomatch db migrate` (or `eomatch db init` for a local cluster)"
                ) from None

    def get(self, harvester: str) -> HarvestState:
        """The row of ``harvester`` (a ``never`` state when it has not run)."""
        with self._connect() as conn:
            row = conn.execute(
                f"SELECT {_COLUMNS} FROM eomatch.harvest_state WHERE harvester = %s",
                (harvester,),
            ).fetchone()
        return HarvestState(*row) if row else HarvestState(harvester)

    def all(self) -> dict[str, HarvestState]:
        """Every stored row by harvester."""
        with self._connect() as conn:
            rows = conn.execute(f"SELECT {_COLUMNS} FROM eomatch.harvest_state").fetchall()
        return {r[0]: HarvestState(*r) for r in rows}

    def start(self, harvester: str, run: str) -> None:
        """A run begins (the mark is kept)."""
        with self._connect() as conn:
            conn.execute(
                "INSERT INTO eomatch.harvest_state AS h (harvester, run, started_at, status) "
                "VALUES (%s, %s, now(), 'running') ON CONFLICT (harvester) DO UPDATE SET "
                "run = EXCLUDED.run, started_at = now(), finished_at = NULL, "
                "status = 'running', error = NULL, counts = '{}'::jsonb",
                (harvester, run),
            )
            conn.commit()

    def page_done(
        self, harvester: str, mark: datetime | None, counts: dict[str, int], written: int
    ) -> None:
        """A page is registered: store the run's counts and (if given) the advanced mark."""
        with self._connect() as conn:
            conn.execute(
                "UPDATE eomatch.harvest_state SET mark = coalesce(%s, mark), counts = %s, "
                "total_written = total_written + %s WHERE harvester = %s",
                (mark, Jsonb(counts), written, harvester),
            )
            conn.commit()

    def finish(
        self,
        harvester: str,
        mark: datetime | None,
        counts: dict[str, int],
        error: str | None = None,
    ) -> None:
        """The run ended (``error``: it failed; the mark stays at the last completed page)."""
        with self._connect() as conn:
            conn.execute(
                "UPDATE eomatch.harvest_state SET mark = coalesce(%s, mark), counts = %s, "
                "finished_at = now(), status = %s, error = %s WHERE harvester = %s",
                (mark, Jsonb(counts), "failed" if error else "ok", error, harvester),
            )
            conn.commit()

    def reset(self, harvester: str) -> bool:
        """Forget the mark and runs of ``harvester`` (the next run harvests everything)."""
        with self._connect() as conn:
            cur = conn.execute(
                "DELETE FROM eomatch.harvest_state WHERE harvester = %s", (harvester,)
            )
            conn.commit()
            return cur.rowcount > 0
