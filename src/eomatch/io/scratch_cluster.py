"""A throwaway PostgreSQL cluster: ``initdb`` in a temporary folder, started on a free port,
removed on exit. ``eomatch backup verify`` restores a backup into one, so a check never
touches the server the backup came from.

Like :class:`~eomatch.io.pg_cluster.LocalCluster` it listens on 127.0.0.1 only with no Unix
socket, and runs as the ``postgres`` system user when we are root (initdb refuses root). It is
built for speed, not safety (no fsync, trust authentication on loopback): nothing in it
outlives the check.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from eomatch.errors import ClusterError
from eomatch.io.pg_cluster import SUPERUSER, pg_bindir
from eomatch.io.pg_conn import ConnectionInfo

__all__ = ["scratch_cluster"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _as_server_user(args: list[str]) -> list[str]:
    return ["runuser", "-u", SUPERUSER, "--", *args] if os.geteuid() == 0 else args


def _run(args: list[str]) -> None:
    proc = subprocess.run(_as_server_user(args), capture_output=True, text=True)
    if proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().splitlines()
        raise ClusterError(
            f"throwaway cluster: {Path(args[0]).name} failed: {detail[-1] if detail else '?'}"
        )


@contextlib.contextmanager
def scratch_cluster(parent: Path | None = None) -> Iterator[ConnectionInfo]:
    """Yield a superuser connection to database ``postgres`` of a fresh cluster; stop and
    delete it afterwards, whatever happened."""
    bindir = pg_bindir()
    root = Path(tempfile.mkdtemp(prefix="eomatch-scratch-", dir=parent))
    root.chmod(0o711)
    pgdata = root / "data"
    pgdata.mkdir(mode=0o700)
    if os.geteuid() == 0:
        pw = pwd.getpwnam(SUPERUSER)
        os.chown(pgdata, pw.pw_uid, pw.pw_gid)
        os.chown(root, pw.pw_uid, pw.pw_gid)
    port = _free_port()
    started = False
    try:
        _run(
            [
                str(bindir / "initdb"),
                "-D",
                str(pgdata),
                "-U",
                SUPERUSER,
                "--auth=trust",
                "--no-sync",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
            ]
        )
        options = (
            f"-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories='' "
            "-c fsync=off -c full_page_writes=off -c synchronous_commit=off "
            "-c max_wal_size=2GB -c maintenance_work_mem=256MB"
        )
        _run(
            [
                str(bindir / "pg_ctl"),
                "-D",
                str(pgdata),
                "-l",
                str(root / "postgres.log"),
                "-o",
                options,
                "-w",
                "-t",
                "60",
                "start",
            ]
        )
        started = True
        yield ConnectionInfo(host="127.0.0.1", port=port, dbname="postgres", user=SUPERUSER)
    finally:
        if started:
            with contextlib.suppress(ClusterError):
                _run([str(bindir / "pg_ctl"), "-D", str(pgdata), "-m", "immediate", "-w", "stop"])
        shutil.rmtree(root, ignore_errors=True)
