"""``eomatch serve``: the whole stack on one machine — database, both APIs, gateway, browser.

Start order is database → APIs (waited for) → browser runtime config → gateway; stop order is
the reverse, and the database is stopped only if this stack started it. While it runs, the
stack supervises its children: an API or the gateway that dies is restarted with exponential
backoff while the others keep serving, a child that keeps crashing is reported, and only
Ctrl-C/SIGTERM stops everything. What runs is recorded in ``<run_dir>/serve.json`` so that
``eomatch serve --status`` (another process) can report it.

Started by root, the APIs run as an unprivileged system user (``eomatch``, created if missing)
that gets only its own database role's password (a one-line pgpass file of its own), never
the superuser's; nginx runs as ``nobody`` (see :class:`Gateway`).
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from eomatch.errors import EomatchError
from eomatch.io.atomic import atomic_write_text
from eomatch.io.data_store import data_root
from eomatch.io.db_target import DbTarget
from eomatch.io.pg_conn import pgpass_line
from eomatch.io.pg_replica import LocalReplica
from eomatch.io.processes import pid_alive
from eomatch.service.browser import browser_dist, write_runtime_config
from eomatch.service.gateway import DEFAULT_API_ALLOW, Gateway, GatewayError, parse_public_url
from eomatch.service.serving import APP_FACTORY, KEEPALIVE_S

STATE = "serve.json"
API_USER = "eomatch"
"""The system user the APIs run as when ``serve`` is started by root."""
STOP_GRACE_S = 10.0
"""Seconds the children get, together, to stop after Ctrl-C before they are killed."""
PLACEHOLDER = """<!doctype html><meta charset="utf-8"><title>eomatch</title>
<h1>eomatch</h1><p>STAC Browser was not built (run scripts/build-browser.sh).
The APIs: <a href="/external/">external</a>, <a href="/api/">internal</a>.</p>
"""


def free_port(host: str = "127.0.0.1") -> int:
    """A port nobody listens on right now."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _boot_code(site_dirs: Sequence[str], paths: Sequence[str], then: str) -> str:
    """Python that makes this environment's packages importable, then runs ``then``.

    They go before the interpreter's own site packages (after the standard library): a system
    interpreter's dist-packages (an older attrs, say) must not shadow this environment's."""
    return (
        "import site, sys\n"
        "before = list(sys.path)\n"
        f"for d in {list(site_dirs)!r}:\n    site.addsitedir(d)\n"
        f"for d in {list(paths)!r}:\n    d in sys.path or sys.path.append(d)\n"
        "new = [p for p in sys.path if p not in before]\n"
        "i = next((k for k, p in enumerate(before) if 'packages' in p), len(before))\n"
        "sys.path[:] = before[:i] + new + before[i:]\n"
        f"{then}\n"
    )


_UVICORN_MAIN = "sys.argv[0] = 'uvicorn'\nfrom uvicorn.main import main\nmain()"


def api_command(
    port: int,
    root_path: str = "",
    workers: int = 1,
    python: str | None = None,
    app: str = APP_FACTORY,
    site_dirs: Sequence[str] | None = None,
    paths: Sequence[str] = (),
) -> list[str]:
    """uvicorn serving the API of ``EOMATCH_API_MODE`` on 127.0.0.1.

    Args:
        python: An interpreter other than this one (same version) that reaches this
            environment's packages only through ``site_dirs`` and ``paths`` (dropped root).
        app: The app factory (tests serve stand-ins with the same options).
        site_dirs: Site directories for ``python`` (default: this environment's).
        paths: Further import paths for ``python`` (what ``.pth`` files add, such as ``src``).
    """
    args = [app, "--factory", "--host", "127.0.0.1", "--port", str(port)]
    # longer than nginx's upstream keepalive_timeout: nginx closes idle connections first
    args += ["--log-level", "warning", "--timeout-keep-alive", str(KEEPALIVE_S)]
    if workers > 1:
        args += ["--workers", str(workers)]
    args += ["--proxy-headers", "--forwarded-allow-ips", "127.0.0.1"]
    if root_path:
        args += ["--root-path", root_path]
    if python is None:
        return [sys.executable, "-m", "uvicorn", *args]
    sites = _site_dirs() if site_dirs is None else site_dirs
    return [python, "-I", "-c", _boot_code(sites, paths, _UVICORN_MAIN), *args]


def _site_dirs() -> list[str]:
    import site

    return [d for d in site.getsitepackages() if Path(d).is_dir()]


def _pth_paths(site_dirs: Sequence[str]) -> list[str]:
    """The folders ``.pth`` files in ``site_dirs`` add to the import path (an editable src)."""
    found: list[str] = []
    for folder in site_dirs:
        for pth in sorted(Path(folder).glob("*.pth")):
            with contextlib.suppress(OSError, UnicodeDecodeError):
                for line in pth.read_text(encoding="utf-8").splitlines():
                    line = line.strip()
                    if not line or line.startswith(("#", "import ", "import\t")):
                        continue
                    path = os.path.normpath(os.path.join(folder, line))
                    if Path(path).is_dir() and path not in found:
                        found.append(path)
    return found


@dataclass(frozen=True)
class Backoff:
    """How a crashed child is restarted: ``initial_s * factor**(n-1)`` after its n-th crash."""

    initial_s: float = 1.0
    factor: float = 2.0
    max_s: float = 60.0
    stable_s: float = 60.0
    """Up this long after a restart: the next crash starts again at ``initial_s``."""
    window_s: float = 60.0
    report_after: int = 5
    """This many crashes within ``window_s``: reported as crashing repeatedly."""

    def delay(self, consecutive: int) -> float:
        """Seconds to wait before the restart that follows the ``consecutive``-th crash."""
        return float(min(self.max_s, self.initial_s * self.factor ** max(0, consecutive - 1)))


@dataclass
class Supervision:
    """Crash history of one child."""

    name: str
    started_at: float = field(default_factory=time.monotonic)
    crashes: list[float] = field(default_factory=list)
    """Monotonic times of the crashes within the window."""
    consecutive: int = 0
    restarts: int = 0
    delays: list[float] = field(default_factory=list)
    """Every backoff delay used so far (in order)."""
    restart_at: float | None = None
    last_exit: str | None = None
    failing: bool = False
    starting: bool = False
    """Restarted and running, but not answering yet (an API takes seconds to start)."""
    probe_at: float = 0.0
    """When a starting child is asked again whether it answers."""

    def state(self) -> str:
        """``up``, ``starting`` (restarted, not answering yet), ``restarting`` (waiting out its
        backoff) or ``crashing`` (repeatedly)."""
        if self.failing:
            return "crashing"
        if self.restart_at is not None:
            return "restarting"
        return "starting" if self.starting else "up"


@dataclass
class ApiChild:
    """One uvicorn process (replaced by a new one on restart)."""

    mode: str
    port: int
    proc: subprocess.Popen[bytes]
    log: Path
    prefix: str = ""
    sup: Supervision = field(default_factory=lambda: Supervision("API"))

    def alive(self) -> bool:
        """Still running."""
        return self.proc.poll() is None


@dataclass(frozen=True)
class Identity:
    """Who the APIs run as (root only), with which interpreter and import paths.

    With ``mounts``, the APIs start as root in a private mount namespace, bind-mount each
    source folder onto its mount point (a folder the user can reach), then drop to the user:
    how a checkout inside a root-only folder (``/root``, a ``mktemp -d`` clone) is served
    without changing its permissions.
    """

    user: str
    uid: int
    gid: int
    python: str
    site_dirs: tuple[str, ...]
    paths: tuple[str, ...] = ()
    mounts: tuple[tuple[str, str], ...] = ()

    def command(self, cmd: list[str]) -> tuple[list[str], dict[str, Any]]:
        """``cmd`` run as this user: the command to start and the extra ``Popen`` options."""
        if not self.mounts:
            return cmd, {"user": self.uid, "group": self.gid, "extra_groups": []}
        tools = {t: shutil.which(t, path=_SBIN) for t in ("unshare", "mount", "setpriv")}
        if None in tools.values():
            raise EomatchError("unshare, mount and setpriv (util-linux) are needed")
        binds = " && ".join(
            f'{shlex.quote(str(tools["mount"]))} --bind "${2 * i + 1}" "${2 * i + 2}"'
            for i in range(len(self.mounts))
        )
        drop = (
            f"exec {shlex.quote(str(tools['setpriv']))} --reuid={self.uid} --regid={self.gid} "
            '--clear-groups -- "$@"'
        )
        script = f"{binds} && shift {2 * len(self.mounts)} && {drop}"
        args = [arg for pair in self.mounts for arg in pair]
        unshare = [str(tools["unshare"]), "--mount", "--propagation", "private", "--"]
        return [*unshare, "/bin/sh", "-c", script, "eomatch-api", *args, *cmd], {}


_SBIN = "/usr/bin:/bin:/usr/sbin:/sbin"


def ensure_system_user(name: str) -> pwd.struct_passwd:
    """The system user ``name``, created (no home, no login shell) if missing.

    Raises:
        EomatchError: It does not exist and cannot be created.
    """
    with contextlib.suppress(KeyError):
        return pwd.getpwnam(name)
    useradd = shutil.which("useradd", path="/usr/sbin:/sbin:/usr/bin:/bin")
    if useradd is not None:
        options = ["--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent"]
        subprocess.run(
            [useradd, *options, "--shell", "/usr/sbin/nologin", name],
            capture_output=True,
            check=False,
        )
    try:
        return pwd.getpwnam(name)
    except KeyError:
        raise EomatchError(
            f"no system user {name!r} for the APIs and useradd could not create it: "
            "create it, or choose another with --api-user"
        ) from None


def _as_user(entry: pwd.struct_passwd, cmd: list[str], timeout_s: float = 30) -> bool:
    """Whether ``cmd`` succeeds as ``entry`` (the same way the APIs are started)."""
    try:
        return (
            subprocess.run(
                cmd,
                user=entry.pw_uid,
                group=entry.pw_gid,
                extra_groups=[],
                cwd="/",
                env={"PATH": "/usr/bin:/bin"},
                capture_output=True,
                timeout=timeout_s,
                check=False,
            ).returncode
            == 0
        )
    except (OSError, subprocess.SubprocessError):
        return False


def _python_candidates() -> list[str]:
    """This interpreter, then system interpreters of the same version (same binary modules)."""
    found = [sys.executable]
    name = f"python{sys.version_info.major}.{sys.version_info.minor}"
    for folder in ("/usr/local/bin", "/usr/bin"):
        path = shutil.which(name, path=folder)
        if path and path not in found:
            found.append(path)
    return found


def _runs(identity: Identity, code: str) -> bool:
    """Whether ``code`` runs as the identity with its interpreter and import paths."""
    cmd = [identity.python, "-I", "-c", _boot_code(identity.site_dirs, identity.paths, code)]
    try:
        full, extra = identity.command(cmd)
        result = subprocess.run(
            full,
            cwd="/",
            env={"PATH": _SBIN},
            capture_output=True,
            timeout=60,
            check=False,
            **extra,
        )
    except (OSError, subprocess.SubprocessError, EomatchError):
        return False
    return result.returncode == 0


def api_identity(
    user: str, mount_root: Path, *, force_mounts: bool = False
) -> tuple[Identity | None, str]:
    """Who the APIs can run as: ``user`` with an interpreter it can use, or why not.

    In order: this interpreter, or a system one of the same version, loading this
    environment's packages from their folders; else, when those folders lie below one only
    root may enter, the same with the folders bind-mounted under ``mount_root`` (see
    :class:`Identity`).
    """
    entry = ensure_system_user(user)
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    # the interpreter's own files must be readable too: exec through a folder the user may
    # not enter can succeed (setpriv keeps the capability until exec) and Python then falls
    # back to another installation's standard library
    check = (
        f"assert '%d.%d' % sys.version_info[:2] == {version!r}\n"
        "import os\nassert os.access(os.path.realpath(sys.executable), os.R_OK)"
    )
    probe = f"{check}\nimport uvicorn, eomatch.service.serving"
    sites, paths = _site_dirs(), _pth_paths(_site_dirs())
    candidates = _python_candidates()
    if not force_mounts:
        for python in candidates:
            identity = Identity(user, entry.pw_uid, entry.pw_gid, python, tuple(sites))
            if _runs(identity, probe):
                return identity, ""
    sources = [*sites, *paths]
    points = [str(mount_root / str(i)) for i in range(len(sources))]
    for point in points:
        Path(point).mkdir(parents=True, exist_ok=True)
        Path(point).chmod(0o755)
    mount_root.chmod(0o755)
    for python in candidates:
        identity = Identity(
            user,
            entry.pw_uid,
            entry.pw_gid,
            python=python,
            site_dirs=tuple(points[: len(sites)]),
            paths=tuple(points[len(sites) :]),
            mounts=tuple(zip(sources, points, strict=True)),
        )
        if _runs(identity, probe):
            return identity, ""
    return None, (
        f"user {user!r} cannot run Python {version} with this environment's packages "
        f"({sys.executable}, {', '.join(sites)}), not even bind-mounted: make them readable "
        "by it or install eomatch outside a private folder"
    )


@dataclass
class Stack:
    """The running pieces and how to reach them."""

    target: DbTarget
    run_dir: Path
    host: str = "127.0.0.1"
    port: int = 8090
    public_url: str | None = None
    """``scheme://host[:port]`` people use; default ``http://<host>:<port>``."""
    internal_port: int = 0
    external_port: int = 0
    build_browser: bool = True
    workers: int = 1
    """uvicorn worker processes per API (stac-fastapi's per-item work is CPU-bound)."""
    instances: int = 1
    """Supervised uvicorn processes per API, each on its own port, behind one nginx upstream
    (a dead one is left out by nginx and restarted here, see :mod:`eomatch.service.gateway`)."""
    api_allow: Sequence[str] = DEFAULT_API_ALLOW
    """Client networks allowed on ``/api/``."""
    api_user: str | None = API_USER
    """Run the APIs as this user when started by root (``None``: as root)."""
    force_api_mounts: bool = False
    """Serve the environment to the APIs' user through bind mounts even if it could read it."""
    job_worker: bool = False
    """Also run one supervised ``eomatch worker`` (the job queue, issue 13) as eomatch_ingest."""
    backoff: Backoff = field(default_factory=Backoff)
    poll_s: float = 0.2
    report: Callable[[str], None] = field(
        default=lambda msg: print(msg, file=sys.stderr, flush=True)
    )
    """Where supervision events are told (the console)."""
    apis: list[ApiChild] = field(default_factory=list)
    gateway: Gateway | None = None
    gateway_sup: Supervision = field(default_factory=lambda: Supervision("gateway"))
    started_db: bool = False
    read_hosts: str = ""
    """``EOMATCH_DB_READ_HOSTS`` for the APIs; a local cluster's replica when it has one."""
    read_pooling: str = "session"
    """``EOMATCH_DB_READ_POOLING`` for the APIs (``transaction`` behind pgbouncer)."""
    started_replica: bool = False
    identity: Identity | None = None
    identity_note: str = ""

    def __post_init__(self) -> None:
        if self.public_url is None:
            wildcard = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}
            host = wildcard.get(self.host, self.host)
            host = f"[{host}]" if ":" in host else host
            self.public_url = f"http://{host}:{self.port}"
        self.public_url = self.public_url.rstrip("/")
        try:
            parse_public_url(self.public_url)
        except ValueError as exc:
            raise EomatchError(f"--public-url: {exc}") from None

    @property
    def base_url(self) -> str:
        """Public URL of the gateway, with a trailing slash."""
        return f"{self.public_url}/"

    def urls(self) -> dict[str, str]:
        """What people and programs use."""
        return {
            "browser": self.base_url,
            "external API": self.base_url + "external/",
            "internal API": self.base_url + "api/",
        }

    def local_urls(self) -> dict[str, str]:
        """Where this machine reaches each part directly (for ``serve --status``)."""
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        host = "[::1]" if host == "::" else (f"[{host}]" if ":" in host else host)
        out = {"browser": f"http://{host}:{self.port}/"}
        for api in self.apis:
            if api.mode != "worker":
                out[api.sup.name] = f"http://127.0.0.1:{api.port}/"
        return out

    # -- start -----------------------------------------------------------------------------

    def start(self) -> None:
        """Bring everything up; on any failure, take down what was started."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> None:
        if os.geteuid() == 0 and self.api_user and self.api_user != "root":
            self.identity, self.identity_note = api_identity(
                self.api_user, self.run_dir / "mnt", force_mounts=self.force_api_mounts
            )
            if self.identity is None:
                self.report(f"eomatch serve: warning: the APIs run as root: {self.identity_note}")
        cluster = self.target.cluster
        if cluster is not None:
            self.started_db = cluster.start()
            replica = LocalReplica(cluster)
            if replica.initialised and not self.read_hosts:
                # reads to the replica (through its pooler if it has one), writes to the primary
                self.started_replica = replica.start()
                host, port, pooled = replica.read_endpoint()
                self.read_hosts = f"{host}:{port}"
                self.read_pooling = "transaction" if pooled else "session"
        logs = self.run_dir / "logs"
        logs.mkdir(exist_ok=True)
        for mode, role, prefix, first in (
            ("internal", "eomatch_api", "/api", self.internal_port),
            ("external", "eomatch_reader", "/external", self.external_port),
        ):
            self._write_pgpass(mode, role)
            for n in range(self.instances):
                # one instance keeps the names it always had; several are numbered from 1
                tag = f"-{n + 1}" if self.instances > 1 else ""
                log = logs / f"api-{mode}{tag}.log"
                port = first + n if first else free_port()
                child = ApiChild(mode, port, self._spawn(mode, port, prefix, log), log, prefix)
                child.sup = Supervision(f"{mode} API{tag.replace('-', ' ')}")
                self.apis.append(child)
        if self.job_worker:  # supervised like the APIs; no port, nothing to wait for
            self._write_pgpass("worker", _role("worker"))
            log = logs / "worker.log"
            child = ApiChild("worker", 0, self._spawn("worker", 0, "", log), log, "")
            child.sup = Supervision("job worker")
            self.apis.append(child)
        for api in self.apis:
            self._wait(api)
        www = self.run_dir / "www"
        try:
            dist = browser_dist(build=self.build_browser)
        except EomatchError as exc:
            self.report(f"eomatch serve: STAC Browser unavailable ({exc}); serving a placeholder")
            dist = self.run_dir / "placeholder"
            dist.mkdir(exist_ok=True)
            (dist / "index.html").write_text(PLACEHOLDER, encoding="utf-8")
            dist.chmod(0o755)
            (dist / "index.html").chmod(0o644)
        write_runtime_config(www, self.base_url + "external/")
        www.chmod(0o755)
        gateway = Gateway(self.run_dir / "gateway")
        gateway.write_config(
            listen_host=self.host,
            listen_port=self.port,
            internal_upstream=[f"127.0.0.1:{a.port}" for a in self.apis if a.mode == "internal"],
            external_upstream=[f"127.0.0.1:{a.port}" for a in self.apis if a.mode == "external"],
            browser_dir=dist,
            runtime_config_dir=www,
            public_url=self.public_url,
            api_allow=self.api_allow,
            data_dir=data_root(),  # the object store's local folder, as /data/ (None: S3)
        )
        self.gateway = gateway
        gateway.start()
        self.gateway_sup = Supervision("gateway")
        self._write_state()

    def _secrets_dir(self) -> Path:
        """Per-role credentials, owned by the APIs' user (mode 0700)."""
        folder = self.run_dir / "secrets"
        folder.mkdir(mode=0o700, exist_ok=True)
        if self.identity is not None:
            os.chown(folder, self.identity.uid, self.identity.gid)
        folder.chmod(0o700)
        return folder

    def _pgpass(self, mode: str) -> Path:
        return self.run_dir / "secrets" / f"pgpass-{mode}"

    def _write_pgpass(self, mode: str, role: str) -> None:
        """A pgpass file with this API's role's password only (never the superuser's)."""
        info = self.target.role(role)
        path = self._pgpass(mode)
        folder = self._secrets_dir()
        password = info.resolved_password()
        if password is None:
            path.unlink(missing_ok=True)
            return
        tmp = folder / f".{path.name}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(pgpass_line(info.host, info.port, info.dbname, info.user, password) + "\n")
        os.chmod(tmp, 0o600)
        if self.identity is not None:
            os.chown(tmp, self.identity.uid, self.identity.gid)
        tmp.replace(path)
        if self.identity is not None and not _as_user(
            pwd.getpwuid(self.identity.uid), ["test", "-r", str(path)]
        ):
            raise EomatchError(
                f"the API user {self.identity.user!r} cannot reach {self.run_dir}: choose a "
                "--run-dir whose parent folders it may enter (chmod o+x)"
            )

    def _spawn(self, mode: str, port: int, prefix: str, log: Path) -> subprocess.Popen[bytes]:
        info = self.target.role(_role(mode))
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env.update(
            {
                "EOMATCH_API_MODE": mode,
                "EOMATCH_PUBLIC_URL": str(self.public_url),
                "PGHOST": info.host,
                "PGPORT": str(info.port),
                "PGDATABASE": info.dbname,
                "PGUSER": info.user,
            }
        )
        if self.read_hosts:
            env["EOMATCH_DB_READ_HOSTS"] = self.read_hosts
            env["EOMATCH_DB_READ_POOLING"] = self.read_pooling
        if self._pgpass(mode).exists():
            env["PGPASSFILE"] = str(self._pgpass(mode))
        identity = self.identity
        extra: dict[str, Any] = {}
        if mode == "worker":
            # the object store folder the gateway serves as /data/, whatever the worker's HOME
            objects = data_root()
            if objects is not None:
                objects.mkdir(parents=True, exist_ok=True)
                if identity is not None:
                    os.chown(objects, identity.uid, identity.gid)
                env["EOMATCH_STORAGE_DIR"] = str(objects)
            then = "sys.argv[0] = 'eomatch'\nfrom eomatch.cli.main import run\nrun()"
            if identity is None:
                cmd = [sys.executable, "-m", "eomatch", "worker"]
            else:
                env["HOME"] = "/nonexistent"
                boot = _boot_code(identity.site_dirs or _site_dirs(), identity.paths, then)
                cmd, extra = identity.command([identity.python, "-I", "-c", boot, "worker"])
                extra.update(umask=0o077, cwd="/")
        elif identity is None:
            cmd = api_command(port, prefix, self.workers)
        else:
            env["HOME"] = "/nonexistent"
            cmd, extra = identity.command(
                api_command(
                    port,
                    prefix,
                    self.workers,
                    identity.python,
                    site_dirs=identity.site_dirs,
                    paths=identity.paths,
                )
            )
            extra.update(umask=0o077, cwd="/")
        with log.open("ab") as fh:
            return subprocess.Popen(
                cmd,
                env=env,
                stdout=fh,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C in a terminal reaches us, not the APIs
                **extra,
            )

    @staticmethod
    def _wait(api: ApiChild, timeout_s: float = 60.0) -> None:
        if api.mode == "worker":
            return
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not api.alive():
                tail = api.log.read_text(errors="replace").strip().splitlines()[-1:]
                raise EomatchError(
                    f"the {api.mode} API exited: {tail[0] if tail else 'see ' + str(api.log)}"
                )
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://127.0.0.1:{api.port}/_mgmt/ping", timeout=1).is_success:
                    return
            time.sleep(0.2)
        raise EomatchError(f"the {api.mode} API did not answer within {timeout_s:.0f} s")

    def _children(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for api in self.apis:
            out[api.sup.name] = {
                "pid": api.proc.pid,
                "port": api.port,
                "log": str(api.log),
                **_sup_state(api.sup),
            }
        if self.gateway is not None:
            out["gateway"] = {
                "pid": self.gateway.status().pid,
                "port": self.port,
                "log": str(self.gateway.log_dir / "error.log"),
                **_sup_state(self.gateway_sup),
            }
        return out

    def _write_state(self) -> None:
        state = {
            "pid": os.getpid(),
            "urls": self.urls(),
            # the first instance of each API (what one instance always recorded)
            "apis": {
                a.mode: {"pid": a.proc.pid, "port": a.port}
                for a in reversed(self.apis)
                if a.mode != "worker"
            },
            "instances": self.instances,
            "gateway": {"port": self.port, "run_dir": str(self.gateway.run_dir)}
            if self.gateway
            else None,
            "local": self.local_urls(),
            "children": self._children(),
            "api_user": self.identity.user if self.identity else _whoami(),
            "api_allow": list(self.api_allow),
            "database": self.target.describe(),
            "read_hosts": self.read_hosts or None,
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        atomic_write_text(self.run_dir / STATE, json.dumps(state, indent=2) + "\n")

    # -- supervise -------------------------------------------------------------------------

    def wait(self, stop: threading.Event | None = None) -> str:
        """Supervise until Ctrl-C/SIGTERM (or ``stop`` is set); returns ``"stopped"``.

        A child that dies is restarted after a backoff delay; the others keep serving.
        """
        stop = stop or threading.Event()
        handle = threading.current_thread() is threading.main_thread()
        previous: dict[signal.Signals, Any] = {}
        if handle:
            # SIGINT too, explicitly: a process started in the background by a shell script
            # inherits SIGINT ignored, and Python then raises no KeyboardInterrupt for it
            for sig in (signal.SIGTERM, signal.SIGINT):
                previous[sig] = signal.signal(sig, lambda signum, frame: stop.set())
        try:
            while not stop.is_set():
                self.supervise_once()
                stop.wait(self.poll_s)
        except KeyboardInterrupt:
            pass
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return "stopped"

    def supervise_once(self) -> None:
        """Check every child once: note crashes, restart those whose backoff has passed."""
        now = time.monotonic()
        for api in self.apis:
            sup = api.sup
            if sup.restart_at is None:
                if not api.alive():
                    self._crashed(sup, now, _exit_text(api.proc.returncode), api.log)
                elif sup.starting:
                    self._probe(api, now)
                else:
                    self._settle(sup, now)
            elif now >= sup.restart_at:
                try:
                    self._write_pgpass(api.mode, _role(api.mode))
                    api.proc = self._spawn(api.mode, api.port, api.prefix, api.log)
                except (OSError, EomatchError) as exc:
                    self._crashed(sup, now, f"could not start: {exc}", api.log)
                    continue
                sup.starting = api.mode != "worker"  # a worker has no port to ask
                sup.probe_at = now
                self._restarted(sup, now, f"pid {api.proc.pid}")
        gateway, sup = self.gateway, self.gateway_sup
        if gateway is None:
            return
        if sup.restart_at is None:
            if gateway.status().running:
                self._settle(sup, now)
            else:
                self._crashed(sup, now, "nginx is not running", gateway.log_dir / "error.log")
        elif now >= sup.restart_at:
            try:
                gateway.stop()  # reaps the dead master, ends workers it left holding the port
                pid = gateway.start()
            except (OSError, GatewayError) as exc:
                self._crashed(sup, now, f"could not start: {exc}", gateway.log_dir / "error.log")
                return
            self._restarted(sup, now, f"pid {pid}")

    def _probe(self, api: ApiChild, now: float) -> None:
        """A restarted API is ``up`` once it answers (not when its process exists): what
        ``--status`` says and what nginx will find when it tries the instance again."""
        sup = api.sup
        if now < sup.probe_at:
            return
        sup.probe_at = now + 0.5
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"http://127.0.0.1:{api.port}/_mgmt/ping", timeout=0.5).is_success:
                sup.starting = False
                self.report(f"eomatch serve: the {sup.name} answers again (pid {api.proc.pid})")
                self._write_state()

    def _settle(self, sup: Supervision, now: float) -> None:
        if sup.consecutive and now - sup.started_at >= self.backoff.stable_s:
            sup.consecutive = 0
            sup.failing = False
            self._write_state()

    def _crashed(self, sup: Supervision, now: float, why: str, log: Path) -> None:
        window = self.backoff.window_s
        sup.crashes = [t for t in sup.crashes if now - t <= window] + [now]
        sup.consecutive += 1
        delay = self.backoff.delay(sup.consecutive)
        sup.delays.append(delay)
        sup.restart_at = now + delay
        sup.last_exit = why
        if len(sup.crashes) >= self.backoff.report_after:
            sup.failing = True
            self.report(
                f"eomatch serve: the {sup.name} keeps crashing: {len(sup.crashes)} times within "
                f"{window:g} s (last: {why}); next restart in {delay:g} s. See {log}"
            )
        else:
            self.report(f"eomatch serve: the {sup.name} stopped ({why}); restarting in {delay:g} s")
        self._write_state()

    def _restarted(self, sup: Supervision, now: float, what: str) -> None:
        sup.restart_at = None
        sup.started_at = now
        sup.restarts += 1
        self.report(f"eomatch serve: restarted the {sup.name} ({what})")
        self._write_state()

    # -- stop ------------------------------------------------------------------------------

    def stop(self) -> None:
        """Reverse order; safe to call twice."""
        if self.gateway is not None:
            with contextlib.suppress(Exception):
                self.gateway.stop(timeout_s=STOP_GRACE_S / 2)  # open requests get that long
            self.gateway = None
        for api in reversed(self.apis):
            if api.alive():
                api.proc.send_signal(signal.SIGINT)
        # one deadline for all: Ctrl-C ends serve in ~STOP_GRACE_S however many children
        deadline = time.monotonic() + STOP_GRACE_S
        for api in self.apis:
            try:
                api.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.report(
                    f"eomatch serve: the {api.mode} process (pid {api.proc.pid}) did not stop "
                    f"within {STOP_GRACE_S:g} s of Ctrl-C: killed (see {api.log})"
                )
                api.proc.kill()
                api.proc.wait(5)
        self.apis = []
        if self.started_replica and self.target.cluster is not None:
            with contextlib.suppress(Exception):
                LocalReplica(self.target.cluster).stop()
            self.started_replica = False
        if self.started_db and self.target.cluster is not None:
            with contextlib.suppress(Exception):
                self.target.cluster.stop()
            self.started_db = False
        shutil.rmtree(self.run_dir / "secrets", ignore_errors=True)
        (self.run_dir / STATE).unlink(missing_ok=True)


def _role(mode: str) -> str:
    return {"internal": "eomatch_api", "worker": "eomatch_ingest"}.get(mode, "eomatch_reader")


def _whoami() -> str:
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return str(os.geteuid())


def _exit_text(code: int | None) -> str:
    if code is None:
        return "exited"
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
        return f"killed by signal {-code}"
    return f"exit code {code}"


def _sup_state(sup: Supervision) -> dict[str, Any]:
    return {
        "state": sup.state(),
        "restarts": sup.restarts,
        "crashes_in_window": len(sup.crashes),
        "last_exit": sup.last_exit,
    }


def read_status(run_dir: Path) -> dict[str, Any] | None:
    """What a running ``eomatch serve`` recorded, with liveness checked now (None: not running)."""
    try:
        state = json.loads((run_dir / STATE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(state, dict) or not pid_alive(int(state.get("pid", 0))):
        return None
    checks: dict[str, str] = {}
    # the parts as this machine reaches them: the public URL may be a proxy in front, and
    # /api/ through the gateway may be refused to loopback by the allow-list
    urls: Mapping[str, str] = state.get("local") or state.get("urls", {})
    for name, url in urls.items():
        try:
            r = httpx.get(url + ("_mgmt/health" if "API" in name else ""), timeout=3)
            checks[name] = "up" if r.is_success else f"HTTP {r.status_code}"
        except httpx.HTTPError as exc:
            checks[name] = f"down ({type(exc).__name__})"
    state["checks"] = checks
    children = state.get("children", {})
    state["problems"] = [
        f"{name}: {info.get('state')} ({info.get('crashes_in_window')} crashes within the "
        f"window; last: {info.get('last_exit')})"
        for name, info in (children.items() if isinstance(children, dict) else [])
        if isinstance(info, dict) and info.get("state") != "up"
    ]
    return state
