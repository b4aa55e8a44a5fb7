"""The real service stack for tests: a throwaway PostgreSQL/PostGIS cluster with pgSTAC, fresh
databases cloned from a migrated template, and the two STAC APIs as real uvicorn processes or
in this process.

One cluster per pytest worker (``eomatch db init`` code path, ~4 s), a new database per test
module or test (``CREATE DATABASE ... TEMPLATE``, well under a second), API processes per use.
Import the fixtures in a test module with ``from service_fixtures import *``.

:func:`api_pair_in_process` serves the same apps (``create_app(settings, db=...)``, the wrapper
uvicorn loads included) through ``httpx.ASGITransport`` on an event loop of its own, lifespan
and real database included: for tests of what the API answers, where a uvicorn process adds
only start-up time. Tests of the server itself (gateway, supervision, database faults,
worker limits) keep :func:`start_api`. :data:`http` sends a request to whichever in-process
API owns the URL's origin (``http://internal``, ``http://external``), so a test reads like
one against a server.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, MutableMapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import anyio.from_thread
import httpx
import psycopg
import pytest
from psycopg import sql

from eomatch.config.settings import ApiSettings
from eomatch.io.catalogue import MatchupCatalogue
from eomatch.io.pg_cluster import LocalCluster, pg_bindir
from eomatch.io.pg_conn import ConnectionInfo, DbSettings
from eomatch.service.stack import api_command, free_port

__all__ = [
    "ApiProcess",
    "InProcessApi",
    "ServiceDb",
    "all_hrefs",
    "api_pair",
    "api_pair_in_process",
    "http",
    "free_port",
    "make_catalogue",
    "pg_cluster",
    "service_db",
    "start_api",
]


def all_hrefs(body: object) -> list[str]:
    """Every value of an ``href`` key, at any depth (a non-string one as its repr)."""
    out: list[str] = []
    if isinstance(body, dict):
        for key, value in body.items():
            if key == "href":
                out.append(value if isinstance(value, str) else repr(value))
            else:
                out.extend(all_hrefs(value))
    elif isinstance(body, list):
        for value in body:
            out.extend(all_hrefs(value))
    return out


def _have_postgis() -> bool:
    try:
        bindir = pg_bindir()
    except Exception:
        return False
    share = bindir.parent.parent.parent.parent / "share" / "postgresql" / bindir.parent.name
    return any((share / "extension").glob("postgis.control"))


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[LocalCluster]:
    """A private cluster for this worker, removed at the end."""
    if not _have_postgis():
        pytest.fail("PostgreSQL + PostGIS are not installed (scripts/test.sh installs them)")
    parent = Path(tempfile.mkdtemp(prefix="eomatch-pg-", dir="/tmp"))
    parent.chmod(0o711)
    cluster = LocalCluster(parent / "db")
    cluster.init(port=free_port())
    with psycopg.connect(cluster.connection().with_db("postgres").conninfo(), autocommit=True) as c:
        c.execute("ALTER DATABASE eomatch WITH is_template true")
    try:
        yield cluster
    finally:
        with contextlib.suppress(Exception):
            cluster.stop()
        shutil.rmtree(parent, ignore_errors=True)


@dataclass
class ServiceDb:
    """One fresh pgSTAC database on the test cluster."""

    cluster: LocalCluster
    dbname: str

    def role(self, user: str = "postgres") -> ConnectionInfo:
        return self.cluster.connection(user).with_db(self.dbname)

    def env(self) -> dict[str, str]:
        """libpq variables for child processes (password via the cluster's pgpass file)."""
        return {
            "PGHOST": "127.0.0.1",
            "PGPORT": str(self.cluster.port),
            "PGDATABASE": self.dbname,
            "PGPASSFILE": str(self.cluster.passfile),
        }

    def query(self, text: str, *args: object) -> list[tuple[object, ...]]:
        with psycopg.connect(self.role().conninfo(), autocommit=True) as conn:
            return list(conn.execute(text, args or None).fetchall())

    def item_count(self) -> int:
        return int(self.query("SELECT count(*) FROM pgstac.items")[0][0])  # type: ignore[call-overload]

    def snapshot(self) -> list[tuple[object, ...]]:
        """Everything writes could change: items, collections, keys."""
        return self.query(
            "SELECT 'i', id, md5(content::text) FROM pgstac.items "
            "UNION ALL SELECT 'c', id, md5(content::text) FROM pgstac.collections "
            "UNION ALL SELECT 'k', name, coalesce(revoked_at::text, '') FROM eomatch.api_keys "
            "ORDER BY 1, 2"
        )


def _new_db(cluster: LocalCluster) -> ServiceDb:
    name = "t_" + uuid.uuid4().hex[:12]
    with psycopg.connect(cluster.connection().with_db("postgres").conninfo(), autocommit=True) as c:
        c.execute(sql.SQL("CREATE DATABASE {} TEMPLATE eomatch").format(sql.Identifier(name)))
        for role in LocalCluster.ROLES:
            c.execute(
                sql.SQL("ALTER ROLE {} IN DATABASE {} SET search_path TO pgstac, public").format(
                    sql.Identifier(role), sql.Identifier(name)
                )
            )
    return ServiceDb(cluster, name)


@pytest.fixture
def service_db(pg_cluster: LocalCluster) -> ServiceDb:
    """A fresh, migrated database for one test."""
    return _new_db(pg_cluster)


@dataclass
class ApiProcess:
    """A real uvicorn serving one of our two APIs."""

    proc: subprocess.Popen[bytes]
    port: int
    root_path: str
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def start_api(
    db: ServiceDb, mode: str, log_dir: Path, root_path: str = "", workers: int = 1
) -> ApiProcess:
    port = free_port()
    env = {**os.environ, **db.env(), "EOMATCH_API_MODE": mode, "EOMATCH_DB_WAIT": "20"}
    env.pop("PGUSER", None)
    env.pop("PGPASSWORD", None)
    log = log_dir / f"api-{mode}-{port}.log"
    args = api_command(port, root_path, workers)
    with log.open("wb") as fh:
        proc = subprocess.Popen(args, env=env, stdout=fh, stderr=subprocess.STDOUT)
    api = ApiProcess(proc, port, root_path, log)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{mode} API exited: {log.read_text()[-2000:]}")
        try:
            if httpx.get(api.url + "/_mgmt/ping", timeout=1).status_code == 200:
                return api
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    api.stop()
    raise RuntimeError(f"{mode} API did not start: {log.read_text()[-2000:]}")


@contextlib.contextmanager
def api_pair(db: ServiceDb, log_dir: Path) -> Iterator[tuple[ApiProcess, ApiProcess]]:
    """Internal and external API on the same database."""
    internal = start_api(db, "internal", log_dir)
    try:
        external = start_api(db, "external", log_dir)
        try:
            yield internal, external
        finally:
            external.stop()
    finally:
        internal.stop()


def make_catalogue(root: Path, n_events: int = 3, start: datetime | None = None) -> Path:
    """A small real catalogue: events with matchups and products (http and local assets)."""
    from catalogue_helpers import make_event

    t0 = start or datetime(2022, 5, 6, 12, 0, tzinfo=UTC)
    cat = MatchupCatalogue.create(root)
    try:
        for k in range(n_events):
            cat.add_event(make_event(lon=-10.0 + 3 * k, lat=45.0 + k, when=t0 + timedelta(hours=k)))
    finally:
        cat.close()
    return root


class _Verbs:
    """``get``/``post``/... in terms of ``request``."""

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        raise NotImplementedError

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", url, **kwargs)

    def put(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("PUT", url, **kwargs)

    def patch(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("PATCH", url, **kwargs)

    def delete(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("DELETE", url, **kwargs)


class InProcessApi(_Verbs):
    """One of our APIs served in this process at ``http://<mode>`` (lifespan run, real database).

    The app runs on an event loop in a thread of its own (an anyio blocking portal), as under
    uvicorn; like a real server, redirects are not followed and an unhandled error is the 500
    the app answers, not an exception in the test.
    """

    def __init__(self, db: ServiceDb, mode: str, root_path: str = "") -> None:
        from eomatch.service.app import create_app
        from eomatch.service.serving import keep_connection_after_errors

        settings = ApiSettings(api_mode=mode, db_wait=20, public_url="", api_db_user=None)
        conn = DbSettings(
            host="127.0.0.1",
            port=db.cluster.port,
            database=db.dbname,
            user=None,
            password=None,
            passfile=db.cluster.passfile,
        )
        self.app = keep_connection_after_errors(create_app(settings, db=conn))
        self.mode = mode
        self.root_path = root_path
        self._stack = contextlib.ExitStack()

    @property
    def url(self) -> str:
        return f"http://{self.mode}"

    def __enter__(self) -> InProcessApi:
        portal = self._stack.enter_context(anyio.from_thread.start_blocking_portal())
        self._portal = portal
        try:
            portal.call(self._startup)
        except BaseException:
            self._stack.close()
            raise
        transport = httpx.ASGITransport(
            app=self.app,  # type: ignore[arg-type]
            raise_app_exceptions=False,
            root_path=self.root_path,
        )
        self.client = httpx.AsyncClient(transport=transport, base_url=self.url, timeout=60)
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self._portal.call(self.client.aclose)
            self._portal.call(self._shutdown)
        finally:
            self._stack.close()

    async def _startup(self) -> None:
        self._to_app: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._from_app: asyncio.Queue[MutableMapping[str, Any]] = asyncio.Queue()
        scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
        self._task = asyncio.get_running_loop().create_task(
            self.app(scope, self._to_app.get, self._from_app.put)  # type: ignore[arg-type]
        )
        await self._lifespan_step("startup")

    async def _shutdown(self) -> None:
        await self._lifespan_step("shutdown")
        await self._task

    async def _lifespan_step(self, step: str) -> None:
        await self._to_app.put({"type": f"lifespan.{step}"})
        reply = asyncio.ensure_future(self._from_app.get())
        await asyncio.wait({reply, self._task}, return_when=asyncio.FIRST_COMPLETED)
        if not reply.done():
            reply.cancel()
            self._task.result()  # raises what ended the app
            raise RuntimeError(f"{self.mode} API ended during {step}")
        message = reply.result()
        if message["type"] != f"lifespan.{step}.complete":
            raise RuntimeError(f"{self.mode} API {step}: {message.get('message', message)}")

    @property
    def base_url(self) -> str:
        return self.url

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """One request (a URL relative to :attr:`url` or absolute), sent on the app's loop."""
        return self._portal.call(functools.partial(self.client.request, method, url, **kwargs))


class _Http(_Verbs):
    """``httpx.get/post/...`` for URLs of the in-process APIs (others go to httpx)."""

    def __init__(self) -> None:
        self.apis: dict[str, InProcessApi] = {}

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        for origin, api in self.apis.items():
            if url == origin or url.startswith(origin + "/") or url.startswith(origin + "?"):
                return api.request(method, url, **kwargs)
        return httpx.request(method, url, **kwargs)


http = _Http()


@contextlib.contextmanager
def api_pair_in_process(db: ServiceDb) -> Iterator[tuple[InProcessApi, InProcessApi]]:
    """Internal and external API on the same database, in this process, reachable by
    :data:`http` at ``http://internal`` and ``http://external`` while the block runs."""
    with InProcessApi(db, "internal") as internal, InProcessApi(db, "external") as external:
        http.apis.update({internal.url: internal, external.url: external})
        try:
            yield internal, external
        finally:
            http.apis.pop(internal.url, None)
            http.apis.pop(external.url, None)


_T = TypeVar("_T")


def snapshot_of(db: ServiceDb) -> str:
    """The database's MVCC snapshot now (what the answer cache keys on)."""
    with psycopg.connect(db.role().conninfo(), autocommit=True) as conn:
        row = conn.execute("SELECT pg_current_snapshot()::text").fetchone()
    assert row is not None
    return str(row[0])


def while_snapshot_stands(db: ServiceDb, run: Callable[[int], _T], tries: int = 10) -> _T:
    """``run(attempt)`` again until the database snapshot did not move while it ran.

    The snapshot is the cluster's: a commit anywhere in it (autovacuum's ANALYZE of another
    database is one) begins a new one, and a repeated read is then rightly a miss. ``attempt``
    lets ``run`` ask under another cache key each time, so a retry starts from nothing kept.
    """
    for attempt in range(tries):
        before = snapshot_of(db)
        result = run(attempt)
        if snapshot_of(db) == before:
            return result
    pytest.fail(f"the database snapshot moved during each of {tries} tries")


@contextlib.contextmanager
def seeded_api_pair(
    pg_cluster: Any, key_name: str, collection: dict[str, Any], item: dict[str, Any]
) -> Iterator[dict[str, Any]]:
    """A fresh database with one collection and one item written through the internal API,
    and both APIs in process: yields ``db``, ``internal``, ``external`` and ``auth``."""
    from eomatch.io.pgstac_store import PgstacStore

    db = _new_db(pg_cluster)
    key = PgstacStore(db.role()).create_key(key_name)
    auth = {"Authorization": f"Bearer {key}"}
    with api_pair_in_process(db) as (internal, external):
        r = http.post(f"{internal.url}/collections", json=collection, headers=auth)
        assert r.status_code in (200, 201), r.text
        coll = collection["id"]
        r = http.post(f"{internal.url}/collections/{coll}/items", json=item, headers=auth)
        assert r.status_code in (200, 201), r.text
        yield {"db": db, "internal": internal, "external": external, "auth": auth}
