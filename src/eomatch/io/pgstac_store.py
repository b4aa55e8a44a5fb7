"""The central database behind one small interface: pgSTAC (through pypgstac) plus our own schema.

The pgSTAC schema is installed and upgraded only by pypgstac's migrations at the pinned version
(the pypgstac version *is* the schema version). Our tables live in the ``eomatch`` schema:
API keys (hashed) and the ingest state that makes re-ingest incremental. Three login roles keep
privileges small: ``eomatch_ingest`` (loads items), ``eomatch_api`` (the internal API: reads,
transactions, checks keys) and ``eomatch_reader`` (the external API: read only).
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from eomatch.extras import _installed, require_extra

# Before the third-party imports: without the service extra, one line instead of a traceback.
require_extra("service", "the central database", ("psycopg", "pypgstac"))

import psycopg
from psycopg import sql
from pypgstac.db import PgstacDB
from pypgstac.load import Loader, Methods
from pypgstac.migrate import Migrate
from pypgstac.version import __version__ as PGSTAC_VERSION

from eomatch.core.validation import stac_document_problem
from eomatch.errors import DatabaseError as DatabaseError
from eomatch.errors import InputError, NotFoundError
from eomatch.io.footprint_index import FOOTPRINT_SQL
from eomatch.io.harvest_state import HARVEST_GRANTS_SQL, HARVEST_SQL
from eomatch.io.history_schema import HISTORY_GRANTS_SQL, HISTORY_SQL, WriteNote, describe_sql
from eomatch.io.pg_conn import ConnectionInfo
from eomatch.io.pg_errors import database_error, translated
from eomatch.io.pg_errors import one_line as one_line
from eomatch.io.pgstac_tuning import install_tuning
from eomatch.io.records_schema import RECORDS_GRANTS_SQL, RECORDS_SQL
from eomatch.io.thirdparty import BBOX_2D_SQL, edit_pgstac_functions, load_by_partition

__all__ = ["PGSTAC_VERSION", "ApiKey", "DatabaseError", "IngestRow", "PgstacStore"]

IngestRow = tuple[str, int | None, int | None]
"""(content hash, file mtime ns, file size) of an item at the last ingest."""

KEY_PREFIX = "eomk_"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")


SCHEMA_SQL = """
CREATE SCHEMA IF NOT EXISTS eomatch;
CREATE TABLE IF NOT EXISTS eomatch.api_keys (
    name text PRIMARY KEY,
    key_hash bytea NOT NULL UNIQUE,
    key_prefix text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz,
    last_used_at timestamptz
);
CREATE TABLE IF NOT EXISTS eomatch.ingest_state (
    collection text NOT NULL,
    id text NOT NULL,
    source text NOT NULL,
    content_hash text NOT NULL,
    file_mtime_ns bigint,
    file_size bigint,
    ingested_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (collection, id)
);
CREATE INDEX IF NOT EXISTS ingest_state_source ON eomatch.ingest_state (source);
CREATE TABLE IF NOT EXISTS eomatch.ingest_sources (
    source text PRIMARY KEY,
    fingerprint text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
"""


@dataclass(frozen=True)
class ApiKey:
    """An API key as listed (the secret itself is never stored)."""

    name: str
    prefix: str
    created_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None


def hash_key(token: str) -> bytes:
    """SHA-256 of an API key: keys are 256-bit random, so a fast hash is enough."""
    return hashlib.sha256(token.encode("utf-8")).digest()


class PgstacStore:
    """pgSTAC plus the eomatch schema, reached as one role."""

    def __init__(self, info: ConnectionInfo, note: WriteNote | None = None) -> None:
        self.info = info
        self.note = note
        """What the history records for this store's writes (None: ``db:<role>``, ``sql``)."""

    def noted(self, note: WriteNote) -> PgstacStore:
        """The same database, its writes described by ``note`` in the history."""
        return PgstacStore(self.info, note)

    def describe(self, conn: psycopg.Connection[Any], kind: str | None = None) -> None:
        """Describe the open transaction of ``conn`` for the history (see history_schema)."""
        if self.note is not None:
            note = self.note if kind is None else self.note.as_kind(kind)
            conn.execute(describe_sql(), note.params())

    # -- connections ---------------------------------------------------------------------------

    @contextmanager
    def connect(self, autocommit: bool = False) -> Iterator[psycopg.Connection[Any]]:
        """A connection with pgSTAC on the search path; errors become one-line messages.

        A psycopg error the block lets through becomes a :class:`DatabaseError` here, so
        every query of this class reports one line, not a traceback.
        """
        with translated(f"cannot connect to the database {self.info.describe()}"):
            conn = psycopg.connect(self.info.conninfo(), autocommit=autocommit)
        try:
            with translated(f"database {self.info.describe()}"):
                conn.execute("SET search_path TO pgstac, public")
                if not autocommit:
                    conn.commit()
                yield conn
        finally:
            conn.close()

    @staticmethod
    def create_database(admin: ConnectionInfo, dbname: str) -> bool:
        """Create a database if it is missing (needs CREATEDB); False if it existed."""
        with (
            translated(f"cannot create database {dbname}"),
            psycopg.connect(admin.conninfo(), autocommit=True) as conn,
        ):
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (dbname,)
            ).fetchone()
            if exists:
                return False
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
            return True

    # -- schema --------------------------------------------------------------------------------

    def schema_version(self) -> str | None:
        """The installed pgSTAC version, or None before ``install``."""
        with self.connect() as conn:
            try:
                row = conn.execute(
                    "SELECT version FROM pgstac.migrations ORDER BY datetime DESC, version DESC "
                    "LIMIT 1"
                ).fetchone()
            except psycopg.errors.UndefinedTable:
                return None
            return str(row[0]) if row else None

    def install(self, role_passwords: Mapping[str, str] | None = None) -> str:
        """Migrate pgSTAC to the pinned version, then our schema, roles and fixes (idempotent).

        Needs a role that may create extensions (postgis, btree_gist, unaccent) and roles.
        """
        with self.connect(autocommit=True) as conn, translated("database set-up failed"):
            conn.execute("CREATE EXTENSION IF NOT EXISTS postgis SCHEMA public")
            version = Migrate(PgstacDB(connection=conn)).run_migration(PGSTAC_VERSION)
            conn.autocommit = False
            # The migration leaves the session as pgstac_admin, who owns pgSTAC's functions.
            with conn.transaction():
                conn.execute("SET LOCAL ROLE pgstac_admin")
                conn.execute(BBOX_2D_SQL)
            with conn.transaction():
                conn.execute("RESET ROLE")
                conn.execute(SCHEMA_SQL)
                self._roles(conn, role_passwords or {})
                if _installed("procrastinate"):  # the job queue (issue 13): the jobs extra
                    from eomatch.io.job_queue import install_queue

                    install_queue(conn, ("eomatch_ingest", "eomatch_api"))
                conn.execute(HISTORY_SQL)
                conn.execute(HISTORY_GRANTS_SQL)
                conn.execute(FOOTPRINT_SQL)  # searches over every collection: one table
                conn.execute(RECORDS_SQL)
                conn.execute(RECORDS_GRANTS_SQL)
                install_tuning(conn)  # queryables with property indexes, API role settings
                conn.execute(HARVEST_SQL)
                conn.execute(HARVEST_GRANTS_SQL)
            # last and apart: an edit refused (a pgSTAC it was not checked against) leaves
            # everything above in place
            with conn.transaction():
                conn.execute("SET LOCAL ROLE pgstac_admin")
                edit_pgstac_functions(conn)  # thirdparty.PGSTAC_EDITS: paging, chunking
            conn.commit()
            return version

    @staticmethod
    def _roles(conn: psycopg.Connection[Any], passwords: Mapping[str, str]) -> None:
        grants = {
            "eomatch_ingest": ["pgstac_ingest"],
            "eomatch_api": ["pgstac_ingest"],
            "eomatch_reader": ["pgstac_read"],
        }
        dbname = conn.info.dbname
        for role, parents in grants.items():
            exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
            ident = sql.Identifier(role)
            if not exists:
                conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(ident))
            if role in passwords:
                conn.execute(
                    sql.SQL("ALTER ROLE {} WITH LOGIN PASSWORD {}").format(
                        ident, sql.Literal(passwords[role])
                    )
                )
            for parent in parents:
                conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(parent), ident))
            conn.execute(
                sql.SQL("ALTER ROLE {} IN DATABASE {} SET search_path TO pgstac, public").format(
                    ident, sql.Identifier(dbname)
                )
            )
            conn.execute(
                sql.SQL("GRANT CONNECT, TEMPORARY ON DATABASE {} TO {}").format(
                    sql.Identifier(dbname), ident
                )
            )
        # the external API's role reads only, at the database level: read-only transactions,
        # and pgSTAC's readonly mode so a search is not cached in pgstac.searches (a row per
        # distinct anonymous search grew the database without bound)
        conn.execute("ALTER ROLE eomatch_reader SET default_transaction_read_only = on")
        conn.execute("ALTER ROLE eomatch_reader SET pgstac.readonly = 'true'")
        conn.execute("GRANT USAGE ON SCHEMA eomatch TO eomatch_ingest, eomatch_api")
        conn.execute(
            "GRANT SELECT, INSERT, UPDATE, DELETE ON eomatch.ingest_state, eomatch.ingest_sources "
            "TO eomatch_ingest"
        )
        conn.execute("GRANT SELECT, UPDATE (last_used_at) ON eomatch.api_keys TO eomatch_api")

    # -- API keys ------------------------------------------------------------------------------

    def create_key(self, name: str) -> str:
        """A new key for ``name``; the secret is returned once and stored only as a hash."""
        if not _NAME_RE.match(name):
            raise InputError(
                f"invalid key name {name!r}: use letters, digits, '.', '_', '@', '-' (max 64)"
            )
        token = KEY_PREFIX + secrets.token_urlsafe(32)
        taken = f"an API key named {name!r} already exists (revoked keys keep their name)"
        with self.connect() as conn, translated("cannot create API key", conflict=taken):
            conn.execute(
                "INSERT INTO eomatch.api_keys (name, key_hash, key_prefix) VALUES (%s, %s, %s)",
                (name, hash_key(token), token[: len(KEY_PREFIX) + 4]),
            )
            conn.commit()
        return token

    def list_keys(self) -> list[ApiKey]:
        """All keys, oldest first."""
        with self.connect() as conn:
            rows = conn.execute(
                "SELECT name, key_prefix, created_at, revoked_at, last_used_at "
                "FROM eomatch.api_keys ORDER BY created_at, name"
            ).fetchall()
        return [ApiKey(*row) for row in rows]

    def revoke_key(self, name: str) -> bool:
        """Revoke a key at once; False if it was already revoked."""
        with self.connect() as conn:
            row = conn.execute(
                "SELECT revoked_at FROM eomatch.api_keys WHERE name = %s", (name,)
            ).fetchone()
            if row is None:
                raise NotFoundError(f"no API key named {name!r}")
            if row[0] is not None:
                return False
            conn.execute("UPDATE eomatch.api_keys SET revoked_at = now() WHERE name = %s", (name,))
            conn.commit()
        return True

    # -- ingest --------------------------------------------------------------------------------

    def ingest_state(self, source: str) -> tuple[str | None, dict[tuple[str, str], IngestRow]]:
        # plain tuples: 100 000 rows must cost milliseconds, the whole re-ingest is ~1 s
        """The fingerprint and per-item rows last ingested from ``source``."""
        with self.connect() as conn:
            fp = conn.execute(
                "SELECT fingerprint FROM eomatch.ingest_sources WHERE source = %s", (source,)
            ).fetchone()
            cur = conn.execute(
                "SELECT collection, id, content_hash, file_mtime_ns, file_size "
                "FROM eomatch.ingest_state WHERE source = %s",
                (source,),
            )
            rows = {(r[0], r[1]): (r[2], r[3], r[4]) for r in cur.fetchall()}
        return (str(fp[0]) if fp else None), rows

    @contextmanager
    def loading(self) -> Iterator[BatchLoader]:
        """One connection for a whole ingest; each ``load`` call is its own transaction."""
        with self.connect() as conn:
            batch = BatchLoader(conn, self)
            try:
                batch.loader.check_version()
            except Exception as exc:  # pypgstac raises bare Exception on a version mismatch
                raise DatabaseError(f"{self.info.describe()}: {one_line(exc)}") from None
            finally:
                conn.rollback()  # end the implicit transaction: each load commits on its own
            yield batch

    def item_count(self, collection: str | None = None) -> int:
        """Rows in pgSTAC's items table (optionally of one collection)."""
        with self.connect() as conn:
            if collection is None:
                row = conn.execute("SELECT count(*) FROM pgstac.items").fetchone()
            else:
                row = conn.execute(
                    "SELECT count(*) FROM pgstac.items WHERE collection = %s", (collection,)
                ).fetchone()
        return int(row[0]) if row else 0

    def upsert_items(
        self,
        items: Sequence[Mapping[str, Any]],
        collections: Sequence[Mapping[str, Any]] = (),
    ) -> None:
        """Upsert whole items in one transaction (their collections must exist, or be among
        ``collections``, upserted first in the same transaction).

        Each is checked with the API's rules first: one that could not be served back stops
        the whole call before anything is written (issue 10 §2).
        """
        for doc in collections:
            problem = stac_document_problem(dict(doc), "Collection")
            if problem:
                raise InputError(f"collection {doc.get('id')!r:.200}: {problem}; nothing stored")
        for item in items:
            problem = stac_document_problem(dict(item), "Feature")
            if problem:
                raise InputError(f"item {item.get('id')!r:.200}: {problem}; nothing stored")
        with self.connect() as conn:
            loader = Loader(db=PgstacDB(connection=conn))
            with translated("upsert failed, nothing changed"), conn.transaction():
                self.describe(conn)
                if collections:
                    loader.load_collections(iter([dict(c) for c in collections]), Methods.upsert)
                if items:
                    loader.load_items(iter([dict(i) for i in items]), Methods.upsert)

    def collection_exists(self, collection: str) -> bool:
        """Whether pgSTAC has a collection called ``collection``."""
        with self.connect() as conn:
            row = conn.execute(
                "SELECT 1 FROM pgstac.collections WHERE id = %s", (collection,)
            ).fetchone()
        return row is not None

    def get_item(self, collection: str, item_id: str) -> dict[str, Any] | None:
        """One hydrated item as pgSTAC returns it."""
        # a row stored before writes were checked may fail to hydrate
        with self.connect() as conn, translated(f"cannot read item {item_id!r:.200}"):
            row = conn.execute(
                "SELECT content_hydrate(i, c.base_item) FROM pgstac.items i "
                "JOIN pgstac.collections c ON c.id = i.collection "
                "WHERE i.collection = %s AND i.id = %s",
                (collection, item_id),
            ).fetchone()
        return dict(row[0]) if row else None


class BatchLoader:
    """Loads batches through pypgstac's Loader, each batch with its ingest state, atomically."""

    def _load_formatted(self, rows: list[dict[str, Any]]) -> None:
        load_by_partition(self.loader, rows, Methods.upsert)

    def _save_states(
        self, source: str, states: Sequence[tuple[str, str, str, int | None, int | None]]
    ) -> None:
        # COPY into a scratch table, then one upsert: a row-by-row INSERT costs ~60 us an item
        with self.conn.cursor() as cur:
            cur.execute(
                "CREATE TEMP TABLE IF NOT EXISTS ingest_state_in "
                "(collection text, id text, content_hash text, file_mtime_ns bigint, "
                "file_size bigint) ON COMMIT DELETE ROWS"
            )
            with cur.copy(
                "COPY ingest_state_in (collection, id, content_hash, file_mtime_ns, file_size) "
                "FROM STDIN"
            ) as copy:
                for row in states:
                    copy.write_row(row)
            cur.execute(
                "INSERT INTO eomatch.ingest_state AS s "
                "(collection, id, source, content_hash, file_mtime_ns, file_size) "
                "SELECT collection, id, %s, content_hash, file_mtime_ns, file_size "
                "FROM ingest_state_in ON CONFLICT (collection, id) DO UPDATE "
                "SET source = EXCLUDED.source, content_hash = EXCLUDED.content_hash, "
                "file_mtime_ns = EXCLUDED.file_mtime_ns, file_size = EXCLUDED.file_size, "
                "ingested_at = now()",
                (source,),
            )

    def __init__(self, conn: psycopg.Connection[Any], store: PgstacStore) -> None:
        self.conn = conn
        self.store = store
        self.loader = Loader(db=PgstacDB(connection=conn))

    def load(
        self,
        source: str,
        fingerprint: str,
        collections: Sequence[Mapping[str, Any]],
        items: Sequence[dict[str, Any]],
        states: Sequence[tuple[str, str, str, int | None, int | None]],
        deletes: Iterable[tuple[str, str]] = (),
        kind: str | None = None,
    ) -> None:
        """Upsert collections and items, delete pruned rows, record state: all or nothing.

        One database transaction, so one transaction in the history, described by the store's
        note (``kind`` overrides its kind: an ingest's prune).

        ``items`` are rows already formatted by :class:`ItemFormatter` (the reading side does
        that work, possibly in another process); this side groups them by partition and hands
        them to pypgstac's ``Loader.load_partition``, as ``Loader.load_items`` does.
        """
        conn = self.conn
        for doc in collections:  # items are checked by the reader, before formatting
            problem = stac_document_problem(dict(doc), "Collection")
            if problem:
                raise InputError(f"collection {doc.get('id')!r:.200}: {problem}; nothing stored")
        try:
            with conn.transaction():
                self.store.describe(conn, kind)
                if collections:
                    self.loader.load_collections(iter(list(collections)), Methods.upsert)
                if items:
                    self._load_formatted(list(items))
                gone = list(deletes)
                if gone:
                    with conn.cursor() as cur:
                        cur.executemany(
                            "DELETE FROM pgstac.items WHERE collection = %s AND id = %s", gone
                        )
                        cur.executemany(
                            "DELETE FROM eomatch.ingest_state WHERE collection = %s AND id = %s",
                            gone,
                        )
                if states:
                    self._save_states(source, states)
                conn.execute(
                    "INSERT INTO eomatch.ingest_sources (source, fingerprint) VALUES (%s, %s) "
                    "ON CONFLICT (source) DO UPDATE SET fingerprint = EXCLUDED.fingerprint, "
                    "updated_at = now()",
                    (source, fingerprint),
                )
        except psycopg.Error as exc:
            raise database_error(exc, "ingest failed, this batch was rolled back") from None
        except Exception as exc:  # pypgstac raises bare Exception for missing collections etc.
            if isinstance(exc, DatabaseError):
                raise
            raise DatabaseError(
                f"ingest failed, this batch was rolled back: {one_line(exc)}"
            ) from None
        # pypgstac caches collection rows per Loader; a later batch may have changed them.
        self.loader.collection_json.cache_clear()


class ItemFormatter:
    """pypgstac's item formatting (dehydration against the collection's base item, EWKB
    geometry, partition name) on a connection of its own, so it can run beside the loading."""

    def __init__(self, conninfo: str) -> None:
        with translated("cannot connect to the database"):
            self.conn = psycopg.connect(conninfo, autocommit=True)
        self.conn.execute("SET search_path TO pgstac, public")
        self.loader = Loader(db=PgstacDB(connection=self.conn))

    def format(self, item: dict[str, Any]) -> dict[str, Any]:
        """The table row of one item; ``ValueError`` with pypgstac's reason if it refuses."""
        try:
            row: dict[str, Any] = self.loader.format_item(item)
        except psycopg.Error as exc:
            raise database_error(exc, "cannot format items") from None
        except Exception as exc:  # pypgstac raises bare Exception on invalid items
            raise ValueError(one_line(exc)) from None
        return row

    def close(self) -> None:
        """Close the connection."""
        self.conn.close()
