"""A private PostgreSQL cluster in a data directory: the embedded default for one machine.

Nothing system-wide is touched: the cluster lives in ``<root>/data``, listens on 127.0.0.1 only
(TCP with SCRAM passwords, no Unix socket), and its role passwords are random and kept in
``<root>/pgpass`` (mode 0600), which every eomatch command uses through libpq's passfile rules.
``initdb`` refuses to run as root, so as root the server runs as the ``postgres`` system user.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import resource
import secrets
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from eomatch.errors import ClusterError as ClusterError
from eomatch.io.atomic import atomic_write_text
from eomatch.io.pg_conn import ConnectionInfo, pgpass_line
from eomatch.io.processes import pid_alive

SUPERUSER = "postgres"
DEFAULT_PORT = 55432
DEFAULT_DBNAME = "eomatch"
STATE_FILE = "cluster.json"
MAX_FILES_PER_PROCESS = 8192
"""Files a server process keeps open. A search over every collection touches each items
partition's table, indexes and TOAST: ~6 files a partition, 1 014 for the benchmark's 165.
PostgreSQL's default of 1 000 then closes and reopens every one of them on every search (the
planner's size estimates): at 1M items, planning an all-collection search took 8.7 ms, 4.7 ms
with this setting. Raise it past ~7 files a collection."""


def server_options(port: int) -> str:
    """``postgres`` options of the servers eomatch starts (``pg_ctl -o``): its address and
    :data:`MAX_FILES_PER_PROCESS`, after raising this process's soft open-files limit so the
    server inherits room for it (PostgreSQL uses no more than the limit allows)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = MAX_FILES_PER_PROCESS + 1024
    if soft != resource.RLIM_INFINITY and soft < want:
        new = want if hard == resource.RLIM_INFINITY else min(want, hard)
        if new > soft:
            resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
    return (
        f"-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories='' "
        f"-c max_files_per_process={MAX_FILES_PER_PROCESS}"
    )


def pg_bindir() -> Path:
    """The newest installed PostgreSQL server binaries (``EOMATCH_PG_BINDIR`` overrides)."""
    env = os.environ.get("EOMATCH_PG_BINDIR")
    if env:
        return Path(env)
    found = []
    for candidate in Path("/usr/lib/postgresql").glob("*/bin"):
        if (candidate / "initdb").exists():
            match = re.match(r"\d+", candidate.parent.name)
            found.append((int(match.group()) if match else 0, candidate))
    if found:
        return max(found)[1]
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).resolve().parent
    raise ClusterError(
        "PostgreSQL server binaries not found (initdb): install postgresql and postgis "
        "(Debian: postgresql-15-postgis-3) or set EOMATCH_PG_BINDIR"
    )


@dataclass(frozen=True)
class ClusterStatus:
    """What ``eomatch db status`` prints."""

    initialised: bool
    running: bool
    port: int | None
    pid: int | None
    root: Path


class LocalCluster:
    """A PostgreSQL cluster owned by eomatch in one folder."""

    ROLES = ("eomatch_ingest", "eomatch_api", "eomatch_reader")

    def __init__(self, root: Path) -> None:
        self.root = Path(root).absolute()
        self.pgdata = self.root / "data"
        self.logdir = self.root / "log"
        self.passfile = self.root / "pgpass"
        self.state_file = self.root / STATE_FILE
        self._cached_state: dict[str, object] | None = None

    # -- state -------------------------------------------------------------------------------

    @property
    def initialised(self) -> bool:
        """True once ``init`` completed (the state file is written last)."""
        return self.state_file.exists()

    def _state(self) -> dict[str, object]:
        if self._cached_state is not None:
            return self._cached_state
        try:
            data = json.loads(self.state_file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ClusterError(
                f"no eomatch database in {self.root}: run `eomatch db init` first"
            ) from None
        except (OSError, ValueError) as exc:
            raise ClusterError(f"cannot read {self.state_file}: {exc}") from None
        if not isinstance(data, dict):
            raise ClusterError(f"{self.state_file} is not a JSON object")
        self._cached_state = data
        return data

    @property
    def port(self) -> int:
        """The TCP port the cluster listens on."""
        value = self._state().get("port")
        return int(value) if isinstance(value, int | str) else DEFAULT_PORT

    @property
    def dbname(self) -> str:
        """The database holding pgSTAC."""
        return str(self._state().get("dbname", DEFAULT_DBNAME))

    def connection(self, user: str = SUPERUSER) -> ConnectionInfo:
        """How to reach the cluster as ``user`` (password from the cluster's pgpass)."""
        return ConnectionInfo(
            host="127.0.0.1", port=self.port, dbname=self.dbname, user=user, passfile=self.passfile
        )

    # -- process helpers --------------------------------------------------------------------

    @staticmethod
    def _as_root() -> bool:
        return os.geteuid() == 0

    def _run(self, args: list[str], check: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = ["runuser", "-u", SUPERUSER, "--", *args] if self._as_root() else args
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if check and proc.returncode != 0:
            detail = (proc.stderr or proc.stdout).strip().splitlines()
            raise ClusterError(f"{Path(args[0]).name} failed: {detail[-1] if detail else '?'}")
        return proc

    def _hand_over(self, path: Path) -> None:
        """Give a path to the server's user when we are root (initdb refuses root)."""
        if self._as_root():
            pw = pwd.getpwnam(SUPERUSER)
            os.chown(path, pw.pw_uid, pw.pw_gid)

    def _check_reachable(self) -> None:
        if not self._as_root():
            return
        proc = subprocess.run(
            ["runuser", "-u", SUPERUSER, "--", "test", "-w", str(self.root)],
            capture_output=True,
            check=False,
        )
        if proc.returncode != 0:
            raise ClusterError(
                f"the {SUPERUSER} system user cannot write {self.root}: "
                "make its parent folders searchable (chmod o+x) or choose another --dir"
            )

    # -- lifecycle ---------------------------------------------------------------------------

    def init(self, port: int = DEFAULT_PORT, dbname: str = DEFAULT_DBNAME) -> bool:
        """Create the cluster, start it, install pgSTAC and our roles; False if it existed."""
        if self.initialised:
            return False
        if self.pgdata.exists() and any(self.pgdata.iterdir()):
            raise ClusterError(
                f"{self.pgdata} exists but `eomatch db init` did not finish; remove {self.root}"
            )
        bindir = pg_bindir()
        self.root.mkdir(parents=True, exist_ok=True)
        self._hand_over(self.root)
        self.root.chmod(0o700)
        self._check_reachable()
        passwords = {role: secrets.token_urlsafe(24) for role in (SUPERUSER, *self.ROLES)}
        with tempfile.NamedTemporaryFile("w", dir=self.root, delete=False) as pw:
            pw.write(passwords[SUPERUSER] + "\n")
        pwfile = Path(pw.name)
        try:
            self._hand_over(pwfile)
            self.pgdata.mkdir(exist_ok=True)
            self._hand_over(self.pgdata)
            self.pgdata.chmod(0o700)
            self.logdir.mkdir(exist_ok=True)
            self._hand_over(self.logdir)
            self._run(
                [
                    str(bindir / "initdb"),
                    "-D",
                    str(self.pgdata),
                    "-U",
                    SUPERUSER,
                    f"--pwfile={pwfile}",
                    "--auth-local=trust",
                    "--auth-host=scram-sha-256",
                    "-E",
                    "UTF8",
                    "--locale=C.UTF-8",
                ]
            )
        finally:
            pwfile.unlink(missing_ok=True)
        lines = [pgpass_line("127.0.0.1", port, "*", r, p) for r, p in passwords.items()]
        atomic_write_text(self.passfile, "\n".join(lines) + "\n")
        self.passfile.chmod(0o600)
        state = {"port": port, "dbname": dbname, "bindir": str(bindir), "version": 1}
        tmp_state = self.root / (STATE_FILE + ".init")
        tmp_state.write_text(json.dumps(state, indent=2) + "\n", encoding="utf-8")
        # Connections need the port from the state; publish it only once the database exists.
        os.replace(tmp_state, self.state_file)
        self._cached_state = None
        try:
            self.start()
            from eomatch.io.pgstac_store import PgstacStore

            admin = self.connection().with_db("postgres")
            PgstacStore.create_database(admin, dbname)
            store = PgstacStore(self.connection())
            store.install(role_passwords={r: passwords[r] for r in self.ROLES})
        except Exception:
            self.state_file.unlink(missing_ok=True)
            raise
        return True

    def _bindir(self) -> Path:
        value = self._state().get("bindir")
        path = Path(str(value)) if value else pg_bindir()
        return path if (path / "pg_ctl").exists() else pg_bindir()

    def start(self) -> bool:
        """Start the server if it is not running; False if it already was."""
        if self.status().running:
            return False
        self._run(
            [
                str(self._bindir() / "pg_ctl"),
                "-D",
                str(self.pgdata),
                "-l",
                str(self.logdir / "postgres.log"),
                "-o",
                server_options(self.port),
                "-w",
                "-t",
                "60",
                "start",
            ]
        )
        return True

    def stop(self) -> bool:
        """Stop the server (fast shutdown); False if it was not running."""
        if not self.initialised or not self.status().running:
            return False
        self._run(
            [str(self._bindir() / "pg_ctl"), "-D", str(self.pgdata), "-m", "fast", "-w", "stop"]
        )
        return True

    def status(self) -> ClusterStatus:
        """Whether the cluster exists and its server runs (from ``postmaster.pid``)."""
        if not self.initialised:
            return ClusterStatus(False, False, None, None, self.root)
        pid = _postmaster_pid(self.pgdata / "postmaster.pid")
        running = pid is not None and pid_alive(pid)
        return ClusterStatus(True, running, self.port, pid if running else None, self.root)


def _postmaster_pid(path: Path) -> int | None:
    try:
        first = path.read_text(encoding="utf-8").splitlines()[0]
        return int(first.strip())
    except (OSError, ValueError, IndexError):
        return None
