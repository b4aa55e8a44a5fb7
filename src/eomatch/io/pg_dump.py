"""``pg_dump`` and ``pg_restore``, run as child processes with the libpq environment.

Why these and not pgBackRest (docs/deployment.md, "Backups"): they work against any server
reachable through ``PG*`` (a managed database gives no file-system access, which pgBackRest
needs), restore into a new database beside the current one and across major versions, and
a dump is one file that any object store can keep. Point-in-time views come from the
catalogue history instead (``eomatch export --at``, ``eomatch rollback --to``).

The binaries are the newest installed ones (``pg_bindir``), so they are never older than a
server of that major version. Passwords reach them through the environment (``PGPASSWORD``
from the connection's pgpass entry), never the command line.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import tempfile
from pathlib import Path

from eomatch.errors import DumpFailed as DumpFailed
from eomatch.errors import EomatchError
from eomatch.io.pg_cluster import pg_bindir
from eomatch.io.pg_conn import ConnectionInfo

__all__ = [
    "RESTORE_SEARCH_PATH",
    "DumpFailed",
    "dump_custom",
    "list_contents",
    "restore_custom",
    "tool",
    "tool_version",
]


def tool(name: str) -> Path:
    """The path of ``pg_dump``/``pg_restore``/``psql`` from the newest PostgreSQL installed."""
    path = pg_bindir() / name
    if not path.exists():
        raise EomatchError(f"{name} not found in {path.parent}: install postgresql-client")
    return path


def tool_version(name: str) -> str:
    """``pg_dump (PostgreSQL) 15.18`` -> ``15.18``."""
    out = subprocess.run([str(tool(name)), "--version"], capture_output=True, text=True).stdout
    found = re.search(r"(\d+(?:\.\d+)*)", out)
    return found.group(1) if found else out.strip()


def _env(conn: ConnectionInfo) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.update(conn.env())
    if conn.passfile is not None:
        env["PGPASSFILE"] = str(conn.passfile)
    env["PGCONNECT_TIMEOUT"] = "10"
    env["PGAPPNAME"] = "eomatch-backup"
    return env


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    # pg_restore ends with a summary ("warning: errors ignored on restore: 1"); the cause is
    # the first "error:" line
    for ln in lines:
        if "error:" in ln.lower():
            return ln[:400]
    return lines[-1][:400] if lines else "no output"


def _run(args: list[str], conn: ConnectionInfo, what: str) -> None:
    proc = subprocess.run(args, env=_env(conn), capture_output=True, text=True)
    if proc.returncode != 0:
        raise DumpFailed(f"{what} failed: {_last_line(proc.stderr or proc.stdout)}")


def dump_custom(conn: ConnectionInfo, path: Path, snapshot: str | None = None) -> None:
    """Dump ``conn``'s database to ``path`` in the custom format (one compressed file).

    Args:
        conn: the database, as a role that can read all of it.
        path: the file to write (created or truncated).
        snapshot: an exported snapshot (``pg_export_snapshot()``) to dump exactly that state.
    """
    args = [str(tool("pg_dump")), "--format=custom", f"--file={path}", "--no-password"]
    if snapshot:
        args.append(f"--snapshot={snapshot}")
    args.append(conn.dbname)
    _run(args, conn, "pg_dump")


RESTORE_SEARCH_PATH = "pgstac, public"
"""The search path a restore runs with, instead of pg_dump's empty one.

pgSTAC's generated columns call its SQL functions (``pgstac.collection_geom``), whose bodies
name PostGIS functions unqualified (``st_makeenvelope``) and so need ``public`` on the path;
under the empty path pg_restore sets, creating and filling ``pgstac.collections`` fails
("function st_makeenvelope(...) does not exist"). Every name in a dump is schema-qualified, so
a non-empty path changes nothing else."""

_EMPTY_PATH = "SELECT pg_catalog.set_config('search_path', '', false);"


def restore_custom(conn: ConnectionInfo, path: Path) -> None:
    """Restore a custom-format dump into ``conn``'s (empty) database in one transaction.

    ``pg_restore`` writes the SQL script, psql runs it (``ON_ERROR_STOP``, one transaction: a
    failed restore leaves an empty database); in between, the empty search path of the script
    becomes :data:`RESTORE_SEARCH_PATH` (only outside ``COPY`` data). Owners and privileges
    are restored too, so the roles the dump names must exist.
    """
    env = _env(conn)
    with tempfile.TemporaryFile() as restore_err, tempfile.TemporaryFile() as psql_err:
        producer = subprocess.Popen(
            [str(tool("pg_restore")), "--file=-", str(path)],
            stdout=subprocess.PIPE,
            stderr=restore_err,
            env=env,
        )
        consumer = subprocess.Popen(
            [
                str(tool("psql")),
                "--no-psqlrc",
                "--quiet",
                "--no-password",
                "--single-transaction",
                "--set=ON_ERROR_STOP=1",
                f"--dbname={conn.dbname}",
                "--file=-",
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=psql_err,
            env=env,
        )
        assert producer.stdout is not None
        assert consumer.stdin is not None
        replacement = (
            f"SELECT pg_catalog.set_config('search_path', '{RESTORE_SEARCH_PATH}', false);\n"
        )
        in_copy = False
        try:
            for line in producer.stdout:
                if in_copy:
                    in_copy = line != b"\\.\n"
                elif line.startswith(b"COPY ") and line.rstrip().endswith(b"FROM stdin;"):
                    in_copy = True
                elif line.rstrip(b"\n").decode("utf-8", "replace") == _EMPTY_PATH:
                    line = replacement.encode()
                consumer.stdin.write(line)
            consumer.stdin.close()
        except BrokenPipeError:  # psql stopped at an error: its message says which
            pass
        finally:
            producer.stdout.close()
            if producer.poll() is None and consumer.poll() is not None:
                producer.kill()
            restore_rc = producer.wait()
            with contextlib.suppress(BrokenPipeError):
                consumer.stdin.close()
            psql_rc = consumer.wait()
        if psql_rc != 0:
            psql_err.seek(0)
            raise DumpFailed(
                f"restore failed: {_last_line(psql_err.read().decode('utf-8', 'replace'))}"
            )
        if restore_rc != 0:
            restore_err.seek(0)
            raise DumpFailed(
                f"pg_restore failed: {_last_line(restore_err.read().decode('utf-8', 'replace'))}"
            )


def list_contents(path: Path) -> int:
    """The number of entries in a dump's table of contents (reads the file; DumpFailed if it is
    not a dump)."""
    proc = subprocess.run(
        [str(tool("pg_restore")), "--list", str(path)], capture_output=True, text=True
    )
    if proc.returncode != 0:
        raise DumpFailed(f"not a readable dump: {_last_line(proc.stderr)}")
    return sum(1 for ln in proc.stdout.splitlines() if ln and not ln.startswith(";"))
