"""One app factory, two configurations of stac-fastapi-pgstac: the internal and the external API.

* ``internal``: the full STAC API with transactions and bulk items; every write (anything but
  GET/HEAD/OPTIONS and ``POST /search``) needs ``Authorization: Bearer <key>``, checked against
  the hashed keys in ``eomatch.api_keys`` on each request, so a new or revoked key takes effect
  without a restart. Connects as ``eomatch_api``.
* ``external``: read only (no transaction routes exist), connects as the read-only role, and
  every JSON response passes through :func:`eomatch.core.publish.public_view`, which keeps only
  http(s) hrefs.

Both answer 503 with a JSON body (not a stack trace) while the database is unreachable, and
recover by themselves when it is back.

Run: ``uvicorn eomatch.service.app:create_app --factory --root-path /api`` with
``EOMATCH_API_MODE=internal|external`` and the libpq ``PG*`` variables (or a pgpass file).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Literal

import asyncpg
import jsonpatch
import jsonpointer
import orjson
from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from stac_fastapi.pgstac.app import instantiate_api
from stac_fastapi.pgstac.config import PostgresSettings, Settings
from stac_fastapi.pgstac.core import CoreCrudClient
from stac_fastapi.pgstac.db import close_db_connection, connect_to_db
from stac_fastapi.pgstac.models.extensions import Extensions
from starlette.middleware import Middleware
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from eomatch._version import __version__
from eomatch.core.publish import public_view
from eomatch.io.pg_conn import ConnectionInfo, DbSettings
from eomatch.io.pgstac_store import hash_key
from eomatch.service import fast_links
from eomatch.service.guards import BodyGuard, route_path

log = logging.getLogger(__name__)

Mode = Literal["internal", "external"]
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
DEFAULT_ROLES: dict[str, str] = {"internal": "eomatch_api", "external": "eomatch_reader"}
TITLES = {
    "internal": "eomatch matchup catalogue (internal)",
    "external": "eomatch matchup catalogue",
}
DESCRIPTIONS = {
    "internal": "Matchups, events and products; read/write (writes need a key).",
    "external": "Satellite matchups for calibration and validation: events, matchups, products.",
}
BAD_INPUT = (
    jsonpatch.JsonPatchException,
    jsonpointer.JsonPointerException,
    asyncpg.exceptions.RaiseError,
    asyncpg.exceptions.DataError,
    asyncpg.exceptions.PostgresSyntaxError,
    orjson.JSONDecodeError,
)
DB_DOWN = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.exceptions.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.InterfaceError,
    asyncpg.exceptions.InsufficientResourcesError,
)


def _json(status: int, code: str, description: str, **headers: str) -> JSONResponse:
    return JSONResponse({"code": code, "description": description}, status, headers=headers)


def _unavailable() -> JSONResponse:
    return _json(
        503, "ServiceUnavailable", "the catalogue database is unavailable", **{"Retry-After": "5"}
    )


class ApiKeyMiddleware:
    """Every write needs a live API key (checked in the database on each request).

    Reads need none, but a read that presents a bearer key is refused if the key is not live.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass reads; check the key of writes before the app sees them."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method = str(scope.get("method", "GET")).upper()
        token = _bearer(scope)
        is_read = method in READ_METHODS or (method == "POST" and route_path(scope) == "/search")
        if is_read and (token is None or method == "OPTIONS"):
            await self.app(scope, receive, send)
            return
        # writes need a key; a read that presents one must present a live one (a wrong key is
        # a misconfigured client, better told than silently served)
        if token is None:
            await _json(
                401,
                "Unauthorized",
                "this request needs Authorization: Bearer <API key>",
                **{"WWW-Authenticate": "Bearer"},
            )(scope, receive, send)
            return
        try:
            name = await _check_key(scope["app"], token)
        except DB_DOWN:
            await _unavailable()(scope, receive, send)
            return
        if name is None:
            await _json(
                401,
                "Unauthorized",
                "unknown or revoked API key",
                **{"WWW-Authenticate": 'Bearer error="invalid_token"'},
            )(scope, receive, send)
            return
        scope.setdefault("state", {})["api_key"] = name
        await self.app(scope, receive, send)


def _bearer(scope: Scope) -> str | None:
    for key, value in scope.get("headers", []):
        if key == b"authorization":
            text = bytes(value).decode("latin-1").strip()
            scheme, _, token = text.partition(" ")
            token = token.strip()
            if scheme.lower() == "bearer" and token:
                return str(token)
            return None
    return None


async def _check_key(app: Any, token: str) -> str | None:
    pool = getattr(app.state, "readpool", None)
    if pool is None:
        raise ConnectionError("no database pool")
    digest = hash_key(token)
    async with pool.acquire() as conn:
        row = await conn.fetchrow(
            "SELECT name, key_hash FROM eomatch.api_keys "
            "WHERE key_hash = $1 AND revoked_at IS NULL",
            digest,
        )
        if row is None or not hmac.compare_digest(bytes(row["key_hash"]), digest):
            return None
        await conn.execute(
            "UPDATE eomatch.api_keys SET last_used_at = now() WHERE name = $1", row["name"]
        )
        name: str = row["name"]
        return name


class PublicViewMiddleware:
    """Rewrites every JSON response of the external API to its public view."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Buffer JSON bodies, filter them, fix the length; pass anything else through."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start: Message | None = None
        chunks: list[bytes] = []
        passthrough = False

        async def capture(message: Message) -> None:
            nonlocal start, passthrough
            if message["type"] == "http.response.start":
                headers = dict(message.get("headers", []))
                ctype = headers.get(b"content-type", b"").decode("latin-1")
                encoded = b"content-encoding" in headers
                if "json" not in ctype or encoded:
                    passthrough = True
                    await send(message)
                    return
                start = message
                return
            if passthrough or message["type"] != "http.response.body":
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            body = b"".join(chunks)
            try:
                body = orjson.dumps(public_view(orjson.loads(body))) if body else body
            except orjson.JSONDecodeError:
                # Not JSON after all: nothing public can hide in it as an href, but be strict.
                body = orjson.dumps({"code": "BadGateway", "description": "invalid response"})
            assert start is not None
            out = [(k, v) for k, v in start.get("headers", []) if k != b"content-length"]
            out.append((b"content-length", str(len(body)).encode()))
            await send({**start, "headers": out})
            await send({"type": "http.response.body", "body": body, "more_body": False})

        await self.app(scope, receive, capture)


class GeoJSONResponse(JSONResponse):
    """GeoJSON encoded by orjson, from plain JSON data (what pgSTAC answers)."""

    media_type = "application/geo+json"

    def render(self, content: Any) -> bytes:
        """orjson (an order of magnitude faster); FastAPI's own way for what orjson refuses.

        orjson refuses integers beyond 64 bits, which a search body may hold and its ``next``
        link echoes back: those answers are encoded as before, not turned into a 500.
        """
        try:
            return orjson.dumps(content)
        except orjson.JSONEncodeError:
            return super().render(jsonable_encoder(content))


def _geojson(content: Any) -> Any:
    return content if isinstance(content, Response) else GeoJSONResponse(content)


class ItemsClient(CoreCrudClient):  # type: ignore[misc]
    """stac-fastapi-pgstac's client whose item answers skip FastAPI's generic serialisation.

    A dict returned by an endpoint goes through ``jsonable_encoder`` (a recursive walk in
    Python) and ``json.dumps``: for a page of 1000 items (2.3 MB) that is ~140 ms, more than
    pgSTAC takes to find them. What pgSTAC answers is plain JSON already, so the item routes
    (search, item collections, items) return it encoded by orjson, same JSON and media type.
    """

    async def post_search(self, *args: Any, **kwargs: Any) -> Any:
        """``POST /search``."""
        return _geojson(await super().post_search(*args, **kwargs))

    async def get_search(self, *args: Any, **kwargs: Any) -> Any:
        """``GET /search``."""
        return _geojson(await super().get_search(*args, **kwargs))

    async def item_collection(self, *args: Any, **kwargs: Any) -> Any:
        """``GET /collections/{id}/items``."""
        return _geojson(await super().item_collection(*args, **kwargs))

    async def get_item(self, *args: Any, **kwargs: Any) -> Any:
        """``GET /collections/{id}/items/{item_id}``."""
        return _geojson(await super().get_item(*args, **kwargs))


def _postgres_settings(mode: Mode) -> PostgresSettings:
    env = DbSettings()
    user = os.environ.get("EOMATCH_API_DB_USER") or env.user or DEFAULT_ROLES[mode]
    info = ConnectionInfo(
        host=env.host or "127.0.0.1",
        port=env.port or 5432,
        dbname=env.database or "eomatch",
        user=user,
        password=env.password,
        passfile=env.passfile,
    )
    password = info.resolved_password() or ""
    pool_max = int(os.environ.get("EOMATCH_API_POOL_SIZE", "10"))
    return PostgresSettings(
        pguser=info.user,
        pgpassword=password,
        pghost=info.host,
        pgport=info.port,
        pgdatabase=info.dbname,
        db_min_conn_size=1,
        db_max_conn_size=pool_max,
    )


def create_app(mode: Mode | None = None) -> FastAPI:
    """The internal or external STAC API (``EOMATCH_API_MODE`` when ``mode`` is None)."""
    chosen = mode or os.environ.get("EOMATCH_API_MODE", "internal")
    if chosen not in ("internal", "external"):
        raise ValueError(f"EOMATCH_API_MODE must be internal or external, not {chosen!r}")
    the_mode: Mode = "internal" if chosen == "internal" else "external"
    internal = the_mode == "internal"
    settings = Settings(
        stac_fastapi_title=TITLES[the_mode],
        stac_fastapi_description=DESCRIPTIONS[the_mode],
        stac_fastapi_landing_id=f"eomatch-{the_mode}",
        stac_fastapi_version=__version__,
        enable_transactions_extensions=internal,
        # hydrate items against their collection's base item in Python, not in plpgsql:
        # measured 2-3x faster per page here (1000 matchups: 0.57 -> 0.28 s)
        use_api_hydrate=True,
        enabled_extensions=[
            "query",
            "sort",
            "fields",
            "filter",
            "pagination",
            "collection_search",
            "free_text",
        ],
        cors_methods=(
            ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"] if internal else ["GET", "POST"]
        ),
        cors_headers=["Content-Type", "Authorization"] if internal else ["Content-Type"],
    )
    postgres = _postgres_settings(the_mode)
    fast_links.install()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await _connect_with_retry(app, postgres, internal)
        yield
        await close_db_connection(app)

    api = instantiate_api(
        client=ItemsClient,
        settings=settings,
        extensions=Extensions(settings=settings),
        lifespan=lifespan,
    )
    app = api.app
    # the client's landing-page fields default to import-time environment values
    api.client.landing_page_id = f"eomatch-{the_mode}"
    api.client.title = TITLES[the_mode]
    api.client.description = DESCRIPTIONS[the_mode]
    for exc in DB_DOWN:
        app.add_exception_handler(exc, _db_down_handler)
    for exc in BAD_INPUT:
        app.add_exception_handler(exc, _bad_input_handler)
    names = [getattr(m.cls, "__name__", "") for m in app.user_middleware]
    inner = names.index("BrotliMiddleware") if "BrotliMiddleware" in names else len(names)
    # after the key check (a keyless write is a 401 whatever its body), before stac-fastapi
    app.user_middleware.insert(inner, Middleware(BodyGuard))
    if internal:
        app.user_middleware.insert(inner, Middleware(ApiKeyMiddleware))
    else:
        # innermost: it must see the JSON before compression does
        app.user_middleware.append(Middleware(PublicViewMiddleware))
    app.state.eomatch_mode = the_mode
    result: FastAPI = app
    return result


async def _db_down_handler(request: Request, exc: Exception) -> JSONResponse:
    log.warning("database unavailable: %s", exc)
    return _unavailable()


async def _bad_input_handler(request: Request, exc: Exception) -> JSONResponse:
    # pgSTAC RAISEs on bad search input (paging token, query with filter, ...), PostgreSQL
    # data exceptions (class 22, e.g. a NUL in a sortby), a free-text ``q`` that is not a
    # valid tsquery (``/collections?q=!``) and a bad JSON query parameter (orjson) are all
    # the client's fault, not a 500
    return _json(400, "BadRequest", (str(exc).splitlines() or ["invalid request"])[0])


async def _connect_with_retry(app: FastAPI, postgres: PostgresSettings, write: bool) -> None:
    """Wait for the database at start-up (``EOMATCH_DB_WAIT`` seconds) instead of crashing."""
    deadline = asyncio.get_running_loop().time() + float(os.environ.get("EOMATCH_DB_WAIT", "30"))
    while True:
        try:
            await connect_to_db(app, postgres_settings=postgres, add_write_connection_pool=write)
            return
        except DB_DOWN:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.5)
