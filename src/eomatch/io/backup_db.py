"""The database side of backups: a consistent dump with its facts, a restore into a new
database, the checks, and the switch by renaming databases.

Consistency: one ``REPEATABLE READ`` transaction exports its snapshot
(``pg_export_snapshot()``), ``pg_dump --snapshot`` dumps exactly that state, and the facts
of the manifest (counts, sample hashes) are read in the same transaction, so they describe
the dump and not the database a moment later.

Safety of a restore: the backup goes into a new database ``<db>_restore_<stamp>`` and is
checked there; only then are the two renamed, in one transaction (``<db>`` ->
``<db>_replaced_<stamp>``, ``<db>_restore_<stamp>`` -> ``<db>``). A kill at any point leaves
``<db>`` serving; at worst a ``_restore_`` database remains, which the next restore removes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from eomatch.extras import require_extra

require_extra("service", "backups of the central database", ("psycopg",))

import psycopg  # noqa: E402
from psycopg import sql  # noqa: E402

from eomatch.errors import ConflictError, DatabaseError  # noqa: E402
from eomatch.io.backup_repo import DbFacts, Manifest  # noqa: E402
from eomatch.io.pg_conn import ConnectionInfo  # noqa: E402
from eomatch.io.pg_dump import dump_custom, restore_custom  # noqa: E402
from eomatch.io.pg_errors import one_line  # noqa: E402

__all__ = [
    "SAMPLE_SIZE",
    "SnapshotInfo",
    "compare_facts",
    "create_database",
    "drop_database",
    "dump_snapshot",
    "read_facts",
    "restore_database",
    "restore_lock",
    "switch_databases",
]

SAMPLE_SIZE = 200
"""Items whose content hash a manifest records (chosen by the md5 of their key: the same
items on every run over the same catalogue, spread over all collections)."""

RESTORE_LOCK = 0x454F4D42  # "EOMB": one restore at a time per server


def _connect(conn: ConnectionInfo, autocommit: bool = True) -> psycopg.Connection[Any]:
    try:
        return psycopg.connect(conn.conninfo("eomatch-backup"), autocommit=autocommit)
    except psycopg.Error as exc:
        raise DatabaseError(f"cannot connect to {conn.describe()}: {one_line(exc)}") from None


def _scalar(c: psycopg.Connection[Any], query: str, *args: Any) -> Any:
    row = c.execute(query, args or None).fetchone()
    return row[0] if row else None


def read_facts(c: psycopg.Connection[Any], sample_keys: list[str] | None = None) -> DbFacts:
    """The facts of the database ``c`` is connected to (in its current transaction).

    Args:
        c: a connection.
        sample_keys: ``collection/item`` keys to hash (a check: the manifest's); None picks
            the deterministic sample.
    """
    has_pgstac = _scalar(c, "SELECT to_regclass('pgstac.items') IS NOT NULL")
    if not has_pgstac:
        raise DatabaseError("the database has no pgSTAC schema (pgstac.items)")
    version = _scalar(
        c, "SELECT version FROM pgstac.migrations ORDER BY datetime DESC, version DESC LIMIT 1"
    )
    items = int(_scalar(c, "SELECT count(*) FROM pgstac.items"))
    collections = int(_scalar(c, "SELECT count(*) FROM pgstac.collections"))
    history = None
    if _scalar(c, "SELECT to_regclass('eomatch.transactions') IS NOT NULL"):
        history = int(_scalar(c, "SELECT count(*) FROM eomatch.transactions"))
    keys = 0
    if _scalar(c, "SELECT to_regclass('eomatch.api_keys') IS NOT NULL"):
        keys = int(_scalar(c, "SELECT count(*) FROM eomatch.api_keys"))
    collections_md5 = str(
        _scalar(
            c,
            "SELECT md5(coalesce(string_agg(id || ':' || md5(content::text), ',' ORDER BY id), ''))"
            " FROM pgstac.collections",
        )
    )
    if sample_keys is None:
        rows = c.execute(
            "SELECT collection || '/' || id, md5(content::text) FROM pgstac.items "
            "ORDER BY md5(collection || '/' || id), collection, id LIMIT %s",
            (SAMPLE_SIZE,),
        ).fetchall()
    else:
        rows = c.execute(
            "SELECT collection || '/' || id, md5(content::text) FROM pgstac.items "
            "WHERE collection || '/' || id = ANY(%s)",
            (sample_keys,),
        ).fetchall()
    return DbFacts(
        pgstac_version=str(version) if version is not None else None,
        items=items,
        collections=collections,
        history_transactions=history,
        api_keys=keys,
        collections_md5=collections_md5,
        sample={str(k): str(v) for k, v in rows},
    )


def compare_facts(expected: DbFacts, found: DbFacts) -> list[str]:
    """What differs, one line each (empty: the restored database matches its manifest)."""
    problems = []
    for field in (
        "pgstac_version",
        "items",
        "collections",
        "history_transactions",
        "api_keys",
        "collections_md5",
    ):
        want, got = getattr(expected, field), getattr(found, field)
        if want != got:
            problems.append(f"{field}: expected {want}, found {got}")
    missing = [k for k in expected.sample if k not in found.sample]
    changed = [k for k, v in expected.sample.items() if k in found.sample and found.sample[k] != v]
    if missing:
        problems.append(f"{len(missing)} sampled item(s) missing, e.g. {missing[0]}")
    if changed:
        problems.append(f"{len(changed)} sampled item(s) with other content, e.g. {changed[0]}")
    return problems


@dataclass(frozen=True)
class SnapshotInfo:
    """What :func:`dump_snapshot` read beside the dump."""

    started_at: datetime
    finished_at: datetime
    server_version: str
    facts: DbFacts
    roles: list[str]
    database_grants: list[tuple[str, str]]
    role_settings: list[tuple[str | None, list[str]]]


def dump_snapshot(conn: ConnectionInfo, path: Path) -> SnapshotInfo:
    """Dump ``conn``'s database to ``path`` from one exported snapshot; the facts and the
    database-level settings are read in that snapshot's transaction."""
    with _connect(conn, autocommit=False) as c:
        try:
            c.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            snapshot = str(_scalar(c, "SELECT pg_export_snapshot()"))
            started = datetime.now(UTC)
            server_version = str(_scalar(c, "SHOW server_version")).split()[0]
            facts = read_facts(c)
            roles = [
                str(r[0])
                for r in c.execute(
                    "SELECT rolname FROM pg_roles WHERE rolname !~ '^pg_' ORDER BY rolname"
                )
            ]
            grants = [
                (str(r[0]), str(r[1]))
                for r in c.execute(
                    "SELECT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE a.grantee::regrole::text "
                    "END, a.privilege_type FROM pg_database d, aclexplode(d.datacl) a "
                    "WHERE d.datname = current_database() ORDER BY 1, 2"
                )
            ]
            settings = [
                (None if r[0] is None else str(r[0]), [str(s) for s in r[1]])
                for r in c.execute(
                    "SELECT CASE WHEN s.setrole = 0 THEN NULL ELSE s.setrole::regrole::text END,"
                    " s.setconfig FROM pg_db_role_setting s JOIN pg_database d "
                    "ON d.oid = s.setdatabase WHERE d.datname = current_database() ORDER BY 1"
                )
            ]
            dump_custom(conn, path, snapshot=snapshot)
            finished = datetime.now(UTC)
        except psycopg.Error as exc:
            raise DatabaseError(f"backup of {conn.describe()}: {one_line(exc)}") from None
        finally:
            c.rollback()
    return SnapshotInfo(started, finished, server_version, facts, roles, grants, settings)


def _ident_role(name: str) -> sql.Composable:
    return sql.SQL("PUBLIC") if name == "PUBLIC" else sql.Identifier(name)


def create_database(admin: ConnectionInfo, name: str, roles: list[str] | None = None) -> None:
    """``CREATE DATABASE name`` (from template0); with ``roles``, create those missing as
    NOLOGIN first (a throwaway cluster has none of the dump's roles)."""
    with _connect(admin.with_db("postgres")) as c:
        try:
            for role in roles or []:
                if not _scalar(c, "SELECT 1 FROM pg_roles WHERE rolname = %s", role):
                    c.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(role)))
            c.execute(
                sql.SQL("CREATE DATABASE {} TEMPLATE template0 ENCODING 'UTF8'").format(
                    sql.Identifier(name)
                )
            )
        except psycopg.Error as exc:
            raise DatabaseError(f"cannot create database {name}: {one_line(exc)}") from None


def drop_database(admin: ConnectionInfo, name: str) -> None:
    """``DROP DATABASE IF EXISTS name WITH (FORCE)``."""
    with _connect(admin.with_db("postgres")) as c:
        try:
            c.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
        except psycopg.Error as exc:
            raise DatabaseError(f"cannot drop database {name}: {one_line(exc)}") from None


def databases_like(admin: ConnectionInfo, prefix: str) -> list[str]:
    """Databases whose name starts with ``prefix``."""
    with _connect(admin.with_db("postgres")) as c:
        rows = c.execute(
            "SELECT datname FROM pg_database WHERE left(datname, length(%s)) = %s ORDER BY 1",
            (prefix, prefix),
        ).fetchall()
    return [str(r[0]) for r in rows]


def restore_database(admin: ConnectionInfo, name: str, dump: Path, manifest: Manifest) -> DbFacts:
    """Restore ``dump`` into the new, empty database ``name``, re-apply the database-level
    grants and settings the manifest recorded, and return the restored database's facts."""
    target = admin.with_db(name)
    restore_custom(target, dump)
    with _connect(admin.with_db("postgres")) as c:
        existing = {str(r[0]) for r in c.execute("SELECT rolname FROM pg_roles")}
        try:
            for role, privilege in manifest.database_grants:
                if role == "PUBLIC" or role in existing:
                    c.execute(
                        sql.SQL("GRANT {} ON DATABASE {} TO {}").format(
                            sql.SQL(privilege), sql.Identifier(name), _ident_role(role)
                        )
                    )
            for setting_role, settings in manifest.role_settings:
                if setting_role is not None and setting_role not in existing:
                    continue
                for setting in settings:
                    key, _, value = setting.partition("=")
                    head = (
                        sql.SQL("ALTER DATABASE {}").format(sql.Identifier(name))
                        if setting_role is None
                        else sql.SQL("ALTER ROLE {} IN DATABASE {}").format(
                            sql.Identifier(setting_role), sql.Identifier(name)
                        )
                    )
                    # the value as pg_db_role_setting shows it is valid SET syntax
                    c.execute(
                        sql.SQL("{} SET {} = {}").format(
                            head,
                            sql.Identifier(key),
                            sql.SQL(value),
                        )
                    )
        except psycopg.Error as exc:
            raise DatabaseError(f"settings of restored database {name}: {one_line(exc)}") from None
    with _connect(target, autocommit=False) as c:
        try:
            return read_facts(c, sorted(manifest.facts.sample))
        finally:
            c.rollback()


def restore_lock(admin: ConnectionInfo) -> psycopg.Connection[Any]:
    """A session holding the server-wide restore lock (ConflictError if another restore runs);
    close it to release."""
    c = _connect(admin.with_db("postgres"))
    if not _scalar(c, "SELECT pg_try_advisory_lock(%s)", RESTORE_LOCK):
        c.close()
        raise ConflictError(f"another restore is running on {admin.host}:{admin.port}")
    return c


def switch_databases(
    admin: ConnectionInfo,
    current: str,
    restored: str,
    replaced: str,
    attempts: int = 10,
    on_retry: Callable[[str], None] | None = None,
) -> None:
    """Rename ``current`` -> ``replaced`` and ``restored`` -> ``current`` in one transaction,
    after ending the other sessions on ``current`` (clients reconnect to the new one)."""
    last = ""
    others = "SELECT pid FROM pg_stat_activity WHERE datname = ANY(%s) AND pid <> pg_backend_pid()"
    with _connect(admin.with_db("postgres")) as c:
        exists = _scalar(c, "SELECT 1 FROM pg_database WHERE datname = %s", current)
        for attempt in range(attempts):
            try:
                c.execute(
                    f"SELECT pg_terminate_backend(pid) FROM ({others}) AS s",
                    ([current, restored],),
                )
                for _ in range(50):  # terminated backends take a moment to go
                    if not c.execute(others, ([current, restored],)).fetchone():
                        break
                    time.sleep(0.05)
                with c.transaction():
                    if exists:
                        c.execute(
                            sql.SQL("ALTER DATABASE {} RENAME TO {}").format(
                                sql.Identifier(current), sql.Identifier(replaced)
                            )
                        )
                    c.execute(
                        sql.SQL("ALTER DATABASE {} RENAME TO {}").format(
                            sql.Identifier(restored), sql.Identifier(current)
                        )
                    )
                return
            except psycopg.errors.ObjectInUse as exc:  # a client reconnected in between
                last = one_line(exc)
                if on_retry:
                    on_retry(last)
                time.sleep(0.2 * (attempt + 1))
            except psycopg.Error as exc:
                raise DatabaseError(f"cannot switch databases: {one_line(exc)}") from None
    raise DatabaseError(f"cannot switch databases after {attempts} attempts: {last}")
