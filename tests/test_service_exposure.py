"""What the APIs reveal and what reads cost the database (issue #10 §5 and the API half of §6).

* Anonymous reads write nothing: pgSTAC cached every distinct search as a row of
  ``pgstac.searches``; the APIs now read in pgSTAC's ``readonly`` mode, and the external API's
  role has read-only transactions at the database level.
* ``EOMATCH_PUBLIC_URL`` fixes the origin of every link and redirect, whatever ``Host``,
  ``X-Forwarded-*`` or ``Forwarded`` headers a client sends; a bad value stops the API at
  start with one line.
* Error and health answers name no host, port, path or internal exception.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest

from eomatch.config.settings import public_origin
from eomatch.errors import EomatchError
from eomatch.service.app import create_app
from service_fixtures import ApiProcess, ServiceDb, all_hrefs, start_api

PUBLIC = "https://catalogue.example.org"
HOSTILE = {
    "Host": "evil.example.net",
    "X-Forwarded-Host": "forwarded.example.net",
    "X-Forwarded-Proto": "http",
    "X-Forwarded-Port": "8443",
    "Forwarded": "host=standard.example.net;proto=http",
}


@pytest.fixture(scope="module")
def db(pg_cluster, tmp_path_factory: pytest.TempPathFactory) -> ServiceDb:
    from eomatch.io.pgstac_store import PgstacStore
    from eomatch.workflows.ingest import ingest_catalogue
    from service_fixtures import _new_db, make_catalogue

    db = _new_db(pg_cluster)
    root = make_catalogue(tmp_path_factory.mktemp("cat") / "cat", n_events=2)
    ingest_catalogue(root, PgstacStore(db.role("eomatch_ingest")))
    return db


@pytest.fixture(scope="module")
def plain(db, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ApiProcess, ApiProcess]]:
    logs = tmp_path_factory.mktemp("logs")
    internal = start_api(db, "internal", logs)
    try:
        external = start_api(db, "external", logs)
        try:
            yield internal, external
        finally:
            external.stop()
    finally:
        internal.stop()


def _cache_rows(db: ServiceDb) -> tuple[int, int]:
    row = db.query(
        "SELECT (SELECT count(*) FROM pgstac.searches), (SELECT count(*) FROM pgstac.search_wheres)"
    )
    return int(row[0][0]), int(row[0][1])  # type: ignore[call-overload]


# -- §5 reads write nothing --------------------------------------------------------------------


def _distinct_searches(api: ApiProcess, n: int) -> None:
    for k in range(n):
        for r in (
            httpx.get(f"{api.url}/search", params={"ids": f"burst-{k}"}, timeout=30),
            httpx.get(f"{api.url}/search", params={"filter": f"x = {k}"}, timeout=30),
            httpx.post(f"{api.url}/search", json={"ids": [f"post-{k}"], "limit": k + 1}),
            httpx.get(f"{api.url}/search", params={"bbox": f"{k % 90},0,{k % 90 + 1},1"}),
        ):
            assert r.status_code == 200, r.text[:300]
        colls = httpx.get(f"{api.url}/collections", timeout=30).json()["collections"]
        r = httpx.get(f"{api.url}/collections/{colls[0]['id']}/items", params={"limit": k + 1})
        assert r.status_code == 200, r.text[:300]


def test_a_burst_of_distinct_searches_adds_no_rows(db, plain) -> None:
    internal, external = plain
    before = _cache_rows(db)
    _distinct_searches(external, 20)
    assert _cache_rows(db) == before
    _distinct_searches(internal, 8)  # internal reads too
    assert _cache_rows(db) == before
    # every read route still works in read-only transactions
    coll = httpx.get(f"{external.url}/collections", timeout=30).json()["collections"][0]["id"]
    for path in ("/", "/conformance", "/queryables", f"/collections/{coll}/queryables"):
        for api in (internal, external):
            r = httpx.get(api.url + path, timeout=30)
            assert r.status_code == 200, (path, r.status_code, r.text[:300])
    assert _cache_rows(db) == before


def test_the_reader_role_is_read_only_in_the_database(db) -> None:
    with psycopg.connect(db.role("eomatch_reader").conninfo(), autocommit=True) as conn:
        conn.execute("SELECT * FROM pgstac.search(%s::jsonb)", (json.dumps({"ids": ["z"]}),))
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            conn.execute("INSERT INTO pgstac.searches (search, metadata) VALUES ('{}', '{}')")
    assert _cache_rows(db)[0] == 0


# -- §6 the configured public origin ---------------------------------------------------------------


@pytest.fixture(scope="module")
def public_api(db, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiProcess]:
    logs = tmp_path_factory.mktemp("logs-public")
    saved = os.environ.get("EOMATCH_PUBLIC_URL")
    os.environ["EOMATCH_PUBLIC_URL"] = PUBLIC
    try:
        api = start_api(db, "external", logs, root_path="/external")
    finally:
        if saved is None:
            os.environ.pop("EOMATCH_PUBLIC_URL", None)
        else:
            os.environ["EOMATCH_PUBLIC_URL"] = saved
    try:
        yield api
    finally:
        api.stop()


def _generated_links(doc: Any) -> list[str]:
    """hrefs of the links the API makes (self, root, next, ...): those that name an origin."""
    return [h for h in all_hrefs(doc) if h.startswith("http")]


def test_links_use_the_public_url_whatever_the_client_claims(public_api, plain) -> None:
    base = public_api.url  # the gateway strips the prefix; uvicorn has --root-path
    colls = httpx.get(f"{base}/collections", timeout=30).json()["collections"]
    coll = colls[0]["id"]
    first = httpx.get(f"{base}/collections/{coll}/items?limit=1", timeout=30).json()
    item_id = first["features"][0]["id"]
    paths = [
        "/",
        "/collections",
        f"/collections/{coll}",
        f"/collections/{coll}/items?limit=1",
        f"/collections/{coll}/items/{item_id}",
        "/search?limit=1",
    ]
    for headers in ({}, HOSTILE):
        for path in paths:
            r = httpx.get(base + path, headers=headers, timeout=30)
            assert r.status_code == 200, (path, r.status_code, r.text[:200])
            hrefs = _generated_links(r.json())
            # the API's own links (self, root, ...) use the public origin and prefix; no
            # href anywhere names what the client claimed or where the API really listens
            assert any(h.startswith(PUBLIC + "/external/") for h in hrefs), (path, hrefs)
            bad = [
                h
                for h in hrefs
                if "evil" in h
                or "forwarded" in h
                or "standard.example" in h
                or "127.0.0.1" in h
                or (h.startswith(PUBLIC) and not h.startswith(PUBLIC + "/external/"))
            ]
            assert bad == [], (path, headers, bad)
        r = httpx.post(f"{base}/search", json={"limit": 1}, headers=headers, timeout=30)
        links = {lk["rel"]: lk["href"] for lk in r.json()["links"]}
        assert links["next"].startswith(PUBLIC + "/external/search")
        # a redirect (trailing slash) points at the public origin too
        r = httpx.get(f"{base}/collections/", headers=headers, timeout=30)
        assert r.status_code in (307, 308), r.status_code
        assert r.headers["location"].startswith(PUBLIC + "/external/collections"), r.headers
    # without the setting the API keeps today's behaviour (forwarded headers are honoured)
    _internal, external = plain
    r = httpx.get(f"{external.url}/search?limit=1", headers=HOSTILE, timeout=30)
    assert PUBLIC not in r.text


def test_public_origin_values() -> None:
    assert public_origin("https://catalogue.example.org") == ("https", "catalogue.example.org")
    assert public_origin("http://127.0.0.1:8090") == ("http", "127.0.0.1:8090")
    assert public_origin("http://[::1]:8090") == ("http", "[::1]:8090")
    for bad in [
        "https://catalogue.example.org/",
        "https://catalogue.example.org/stac",
        "ftp://catalogue.example.org",
        "catalogue.example.org",
        "https://user:pw@catalogue.example.org",
        "https://catalogue.example.org:99999",
        "https://catalogue.example.org?x=1",
        "https://catalogue.example.org#x",
        "https://",
        "https://bad host",
    ]:
        with pytest.raises(EomatchError, match="EOMATCH_PUBLIC_URL"):
            public_origin(bad)


def test_a_bad_public_url_stops_the_api_with_one_line(db) -> None:
    from eomatch.service.stack import api_command, free_port

    env = {**os.environ, **db.env(), "EOMATCH_API_MODE": "external"}
    env["EOMATCH_PUBLIC_URL"] = "https://catalogue.example.org/stac/"
    proc = subprocess.run(
        api_command(free_port()), env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode != 0
    out = (proc.stdout + proc.stderr).strip()
    assert "EOMATCH_PUBLIC_URL must be" in out, out
    assert "Traceback" not in out, out


# -- §6 no internals in error texts -----------------------------------------------------------


def _reveals(text: str, db: ServiceDb) -> list[str]:
    words = ["127.0.0.1", str(db.cluster.port), "Errno", "/tmp", "Traceback", "asyncpg", "File "]
    return [w for w in words if w in text]


@pytest.mark.xdist_group("pg-restart")
def test_database_down_answers_name_nothing_internal(db, plain) -> None:
    internal, external = plain
    db.cluster.stop()
    try:
        for api in (internal, external):
            for path in ("/search?limit=1", "/_mgmt/health", "/collections"):
                r = httpx.get(api.url + path, timeout=30)
                assert r.status_code == 503, (path, r.status_code, r.text)
                assert _reveals(r.text, db) == [], (path, r.text)
                if path != "/_mgmt/health":
                    assert r.json()["code"] == "ServiceUnavailable", r.text
                    assert r.headers["Retry-After"], r.headers
    finally:
        db.cluster.start()
    for api in (internal, external):
        for _ in range(3):
            r = httpx.get(f"{api.url}/_mgmt/health", timeout=30)
            if r.status_code == 200:
                break
        assert r.status_code == 200, r.text
        assert r.json()["pgstac"]["status"] == "UP"
        # (moved from test_service_api) searches recover too, without a restart
        r = httpx.get(f"{api.url}/search?limit=1", timeout=30)
        if r.status_code == 503:  # the pool's first attempt may still see the old socket
            r = httpx.get(f"{api.url}/search?limit=1", timeout=30)
        assert r.status_code == 200, r.text


def test_an_internal_error_names_nothing_internal(monkeypatch) -> None:
    monkeypatch.setenv("EOMATCH_API_MODE", "external")
    app = create_app()

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("cannot open /srv/secret/pgpass at 10.1.2.3:5432")

    async def get() -> httpx.Response:
        # no lifespan (no database needed): the route fails by itself
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            return await client.get("/boom")

    r = asyncio.run(get())
    assert r.status_code == 500
    assert r.json()["code"] == "InternalServerError"
    for word in ("/srv", "10.1.2.3", "5432", "RuntimeError", "pgpass"):
        assert word not in r.text
