"""The real service stack for tests: a throwaway PostgreSQL/PostGIS cluster with pgSTAC, fresh
databases cloned from a migrated template, and the two STAC APIs as real uvicorn processes.

One cluster per pytest worker (``eomatch db init`` code path, ~4 s), a new database per test
module or test (``CREATE DATABASE ... TEMPLATE``, well under a second), API processes per use.
Import the fixtures in a test module with ``from service_fixtures import *``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import psycopg
import pytest
from psycopg import sql

from eomatch.io.catalogue import MatchupCatalogue
from eomatch.io.pg_cluster import LocalCluster, pg_bindir
from eomatch.io.pg_conn import ConnectionInfo
from eomatch.service.stack import api_command, free_port

__all__ = [
    "ApiProcess",
    "ServiceDb",
    "all_hrefs",
    "api_pair",
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
