"""A streaming read replica of the local cluster: PostgreSQL's own physical replication.

``<cluster root>/replica`` holds a hot standby made by ``pg_basebackup -R`` from the running
primary (as the ``eomatch_replicator`` role, REPLICATION only, password in the cluster's
pgpass), listening on its own port on 127.0.0.1. It has the primary's roles, passwords and
data, replays its WAL within milliseconds, and refuses writes. ``eomatch db start|stop``
start and stop it with the primary; ``eomatch serve`` sends the APIs' reads to it
(``EOMATCH_DB_READ_HOSTS``), writes to the primary.

No replication slot is used: a replica stopped for long enough that the primary recycled the
WAL it needs (``wal_keep_size``, set to 256 MB here) must be made again (remove the folder,
``eomatch db replica init``), but a forgotten replica never fills the primary's disk.
"""

from __future__ import annotations

import dataclasses
import json
import os
import secrets
import shutil
import subprocess
from dataclasses import dataclass
from typing import Any

from eomatch.errors import ClusterError
from eomatch.io.atomic import atomic_write_text
from eomatch.io.pg_cluster import SUPERUSER, LocalCluster, server_options
from eomatch.io.pg_conn import pgpass_line
from eomatch.io.pg_pooler import LocalPooler
from eomatch.io.processes import pid_alive

REPLICATOR = "eomatch_replicator"
"""The role the replica streams WAL as (LOGIN REPLICATION, nothing else)."""
STATE_FILE = "replica.json"
WAL_KEEP = "256MB"


@dataclass(frozen=True)
class ReplicaStatus:
    """What ``eomatch db replica status`` prints."""

    initialised: bool
    running: bool
    port: int | None
    pid: int | None
    in_recovery: bool | None = None
    """The server replays WAL (a standby), from ``pg_is_in_recovery()``."""
    streaming: bool = False
    """The primary lists it in ``pg_stat_replication`` with state ``streaming``."""
    lag_bytes: int | None = None
    """WAL the primary wrote that the replica has not replayed yet."""
    replay_lag_s: float | None = None
    """``pg_stat_replication.replay_lag`` (null once it caught up and nothing is written)."""
    replay_lsn: str | None = None
    """``pg_last_wal_replay_lsn()`` on the replica."""
    pooler_port: int | None = None
    """pgbouncer in front of it (None: none configured)."""
    pooler_running: bool = False


class LocalReplica:
    """A hot standby of a :class:`LocalCluster` in ``<root>/replica``."""

    def __init__(self, cluster: LocalCluster) -> None:
        self.cluster = cluster
        self.root = cluster.root / "replica"
        self.pgdata = self.root / "data"
        self.logdir = self.root / "log"
        self.state_file = self.root / STATE_FILE

    @property
    def initialised(self) -> bool:
        """True once ``init`` completed (the state file is written last)."""
        return self.state_file.exists()

    @property
    def port(self) -> int:
        """The replica's TCP port."""
        try:
            state: dict[str, Any] = json.loads(self.state_file.read_text(encoding="utf-8"))
            return int(state["port"])
        except (OSError, ValueError, KeyError, TypeError):
            raise ClusterError(
                f"no replica in {self.root}: run `eomatch db replica init` first"
            ) from None

    @property
    def pooler(self) -> LocalPooler:
        """pgbouncer in front of this replica (configured by ``init(pooler_port=...)``)."""
        return LocalPooler(self.cluster, self.port)

    def read_endpoint(self) -> tuple[str, int, bool]:
        """Where the APIs read: ``(host, port, through a transaction pooler)``."""
        pooler = self.pooler.status()
        if pooler.configured and pooler.port is not None:
            return "127.0.0.1", pooler.port, True
        return "127.0.0.1", self.port, False

    def init(self, port: int | None = None, pooler_port: int | None = None) -> bool:
        """Make the replica from the running primary and start it; False if it existed.

        With ``pooler_port``, pgbouncer is configured in front of it on that port (reads go
        through it, see :mod:`eomatch.io.pg_pooler`) and started with it.

        Raises:
            ClusterError: The primary is not running, the port is taken, or a step failed
                (the half-made folder is removed).
        """
        if self.initialised:
            return False
        cluster = self.cluster
        if not cluster.initialised:
            raise ClusterError(f"no local cluster in {cluster.root}: run `eomatch db init` first")
        if not cluster.status().running:
            raise ClusterError("the primary is not running: `eomatch db start` first")
        port = port or cluster.port + 1
        if self.root.exists():
            shutil.rmtree(self.root)
        password = self._replicator_password()
        self.root.mkdir(mode=0o700)
        cluster._hand_over(self.root)
        try:
            self.logdir.mkdir()
            cluster._hand_over(self.logdir)
            self._basebackup(password)
            with (self.pgdata / "postgresql.auto.conf").open("a", encoding="utf-8") as fh:
                # a standby takes no writes: pgSTAC must not try to (its search cache),
                # whatever the session says (a pooler does not forward session settings)
                fh.write(
                    f"port = {port}\nhot_standby = on\nhot_standby_feedback = on\n"
                    "pgstac.readonly = 'true'\n"
                )
            state = {"port": port, "primary_port": cluster.port, "version": 1}
            self.start(port)
            if pooler_port:
                LocalPooler(cluster, port).configure(pooler_port)
                LocalPooler(cluster, port).start()
            atomic_write_text(self.state_file, json.dumps(state, indent=2) + "\n")
        except BaseException:
            if pooler_port:
                LocalPooler(cluster, port).stop()
            self._stop_dir()
            shutil.rmtree(self.root, ignore_errors=True)
            raise
        return True

    def _replicator_password(self) -> str:
        """Create (or re-password) the replication role; keep its password in the pgpass."""
        import psycopg
        from psycopg import sql

        password = secrets.token_urlsafe(24)
        admin = self.cluster.connection()
        with psycopg.connect(admin.conninfo(), autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [REPLICATOR])
            verb = "ALTER" if exists.fetchone() else "CREATE"
            conn.execute(
                sql.SQL("{} ROLE {} LOGIN REPLICATION PASSWORD {}").format(
                    sql.SQL(verb), sql.Identifier(REPLICATOR), sql.Literal(password)
                )
            )
            conn.execute(f"ALTER SYSTEM SET wal_keep_size = '{WAL_KEEP}'")
            conn.execute("SELECT pg_reload_conf()")
        passfile = self.cluster.passfile
        lines = [
            line
            for line in passfile.read_text(encoding="utf-8").splitlines()
            if line.split(":")[3:4] != [REPLICATOR]
        ]
        lines.append(pgpass_line("127.0.0.1", self.cluster.port, "*", REPLICATOR, password))
        atomic_write_text(passfile, "\n".join(lines) + "\n")
        passfile.chmod(0o600)
        return password

    def _basebackup(self, password: str) -> None:
        bindir = self.cluster._bindir()
        cmd = [
            str(bindir / "pg_basebackup"),
            "-h",
            "127.0.0.1",
            "-p",
            str(self.cluster.port),
            "-U",
            REPLICATOR,
            "-D",
            str(self.pgdata),
            "-R",  # standby.signal + primary_conninfo
            "-X",
            "stream",
            "-c",
            "fast",
            "--no-password",
        ]
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", SUPERUSER, "--", *cmd]
        env = {**os.environ, "PGPASSWORD": password, "PGAPPNAME": "eomatch_replica"}
        env.pop("PGPASSFILE", None)
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
        if proc.returncode != 0:
            detail = (proc.stderr or proc.stdout).strip().splitlines()
            raise ClusterError(f"pg_basebackup failed: {detail[-1] if detail else '?'}")
        conf = self.pgdata / "postgresql.auto.conf"
        text = conf.read_text(encoding="utf-8")
        # the standby names itself in pg_stat_replication (status reads it there)
        conf.write_text(
            text.replace(
                "primary_conninfo = '", "primary_conninfo = 'application_name=eomatch_replica "
            ),
            encoding="utf-8",
        )

    def start(self, port: int | None = None) -> bool:
        """Start the replica (and its pooler) if it is not running; False if it already was."""
        if self._pid() is not None:
            if self.initialised and self.pooler.status().configured:
                self.pooler.start()
            return False
        port = port or self.port
        self.cluster._run(
            [
                str(self.cluster._bindir() / "pg_ctl"),
                "-D",
                str(self.pgdata),
                "-l",
                str(self.logdir / "postgres.log"),
                "-o",
                server_options(port),
                "-w",
                "-t",
                "60",
                "start",
            ]
        )
        if self.initialised and self.pooler.status().configured:
            self.pooler.start()
        return True

    def stop(self, keep_pooler: bool = False) -> bool:
        """Stop the replica (fast shutdown) and its pooler unless ``keep_pooler``; False if
        the replica was not running."""
        if not self.initialised or self._pid() is None:
            return False
        if not keep_pooler:
            self.pooler.stop()
        self._stop_dir()
        return True

    def _stop_dir(self) -> None:
        if self._pid() is None:
            return
        self.cluster._run(
            [
                str(self.cluster._bindir() / "pg_ctl"),
                "-D",
                str(self.pgdata),
                "-m",
                "fast",
                "-w",
                "stop",
            ],
            check=False,
        )

    def _pid(self) -> int | None:
        try:
            pid = int((self.pgdata / "postmaster.pid").read_text().splitlines()[0])
        except (OSError, ValueError, IndexError):
            return None
        return pid if pid_alive(pid) else None

    def status(self) -> ReplicaStatus:
        """Whether it runs, and its lag as the primary (``pg_stat_replication``) and the
        replica (``pg_last_wal_replay_lsn``) see it."""
        if not self.initialised:
            return ReplicaStatus(False, False, None, None)
        pid, port = self._pid(), self.port
        if pid is None:
            return ReplicaStatus(True, False, port, None)
        import psycopg

        info = self.cluster.connection()
        # the same superuser and password: the replica is a copy of the primary
        replica = dataclasses.replace(info, port=port, password=info.resolved_password())
        in_recovery = replay_lsn = None
        try:
            with psycopg.connect(replica.conninfo(), connect_timeout=3) as conn:
                row = conn.execute(
                    "SELECT pg_is_in_recovery(), pg_last_wal_replay_lsn()::text"
                ).fetchone()
                if row is not None:
                    in_recovery, replay_lsn = bool(row[0]), row[1]
        except psycopg.Error:
            pass
        streaming, lag, lag_s = False, None, None
        if self.cluster.status().running:
            with psycopg.connect(info.conninfo(), connect_timeout=3) as conn:
                row = conn.execute(
                    "SELECT state, pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::bigint, "
                    "extract(epoch FROM replay_lag)::float8 FROM pg_stat_replication "
                    "WHERE application_name = 'eomatch_replica' ORDER BY backend_start DESC LIMIT 1"
                ).fetchone()
            if row is not None:
                streaming, lag, lag_s = row[0] == "streaming", row[1], row[2]
        pooler = self.pooler.status()
        return ReplicaStatus(
            True,
            True,
            port,
            pid,
            in_recovery,
            streaming,
            lag,
            lag_s,
            replay_lsn,
            pooler.port,
            pooler.running,
        )
