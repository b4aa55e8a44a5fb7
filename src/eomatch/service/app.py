"""One app factory, two configurations of stac-fastapi-pgstac: the internal and the external API.

* ``internal``: the full STAC API with transactions and bulk items; every write (anything but
  GET/HEAD/OPTIONS and ``POST /search``) needs ``Authorization: Bearer <key>``, checked against
  the hashed keys in ``eomatch.api_keys`` on each request, so a new or revoked key takes effect
  without a restart. Connects as ``eomatch_api``.
* ``external``: read only (no transaction routes exist), connects as the read-only role, and
  every JSON response passes through :func:`eomatch.core.publish.public_view`, which keeps only
  http(s) hrefs.

Both bound every request before doing its work (:mod:`eomatch.service.limits`), read with
pgSTAC's ``readonly`` setting (a search is not cached in ``pgstac.searches``: anonymous reads
write nothing; the external API's sessions are read-only transactions besides), answer 503
with a JSON body (not a stack trace) while the database is unreachable and recover by
themselves when it is back. No answer (errors, health) names a host, port, path or internal
exception. With ``EOMATCH_PUBLIC_URL`` (``https://host[:port]``) every link and redirect uses
that origin, whatever ``Host`` or ``Forwarded`` headers a client sends.

Run: ``uvicorn eomatch.service.serving:create_app --factory --root-path /api`` with
``EOMATCH_API_MODE=internal|external`` and the libpq ``PG*`` variables (or a pgpass file); all
settings are :class:`eomatch.config.settings.ApiSettings` (``docs/service.md`` lists them).
Tests build the app in-process with ``create_app(ApiSettings(...), db=DbSettings(...))``.
"""

from __future__ import annotations

import asyncio
import hmac
import importlib.util
import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Literal
from urllib.parse import quote, urlsplit

import asyncpg
import jsonpatch
import jsonpointer
import orjson
from brotli_asgi import BrotliMiddleware
from fastapi import FastAPI, HTTPException, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from stac_fastapi.pgstac.app import instantiate_api
from stac_fastapi.pgstac.config import PostgresSettings, ServerSettings, Settings
from stac_fastapi.pgstac.core import CoreCrudClient
from stac_fastapi.pgstac.db import close_db_connection, con_init
from starlette.middleware import Middleware
from starlette.middleware.gzip import GZipMiddleware
from starlette.responses import Response
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from eomatch._version import __version__
from eomatch.config.settings import ApiSettings, read_settings
from eomatch.core.publish import public_view
from eomatch.errors import DatabaseError, EomatchError, http_status
from eomatch.io.pg_conn import ConnectionInfo, DbSettings
from eomatch.io.pgstac_store import hash_key
from eomatch.io.thirdparty import middleware_index
from eomatch.service import fast_links, history_routes, inline_requests, limits
from eomatch.service.guards import BodyGuard, route_path
from eomatch.service.response_cache import ResponseCacheMiddleware
from eomatch.service.writes import MESSAGE_HEADER, EomatchExtensions, described_connection

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


# SQLSTATE classes raised by what a client sent (the SQL pgSTAC builds from a filter, the
# values of a document): data exceptions, integrity, syntax/access (not 42501: privileges are
# ours), plpgsql RAISE
CLIENT_SQLSTATES = ("22", "23", "42", "P0")
# PostGIS reports unreadable input geometries as internal errors (XX000) with these words
POSTGIS_INPUT = ("parse error", "geometry", "geos", "lwgeom", "invalid", "ring", "point", "geojson")
FORWARDED = frozenset(
    {b"forwarded", b"x-forwarded-host", b"x-forwarded-proto", b"x-forwarded-port", b"host"}
)


class PublicOriginMiddleware:
    """Links and redirects use the configured public origin, not what a client claims.

    Drops ``Host``, ``Forwarded`` and ``X-Forwarded-*`` headers and puts the public origin in
    their place before stac-fastapi (and its proxy-header middleware) build any URL from them.
    """

    def __init__(self, app: ASGIApp, scheme: str, netloc: str) -> None:
        self.app = app
        self.scheme = scheme
        self.netloc = netloc.encode("ascii")
        split = urlsplit(f"{scheme}://{netloc}")
        self.server = (split.hostname or "", split.port or (443 if scheme == "https" else 80))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Rewrite the origin-bearing parts of the scope."""
        if scope["type"] == "http":
            headers = [(k, v) for k, v in scope.get("headers", []) if k not in FORWARDED]
            headers.append((b"host", self.netloc))
            scope = {**scope, "headers": headers, "scheme": self.scheme, "server": self.server}
        await self.app(scope, receive, send)


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
    # the primary: a key created or revoked a moment ago counts at once (a replica may lag),
    # and last_used_at is written, at most once a minute: each write is a commit, hence a new
    # snapshot, and keyed reads would otherwise never hit the answer cache (nor anyone's
    # reads meanwhile); an UPDATE that matches no row takes no transaction id
    pool = getattr(app.state, "writepool", None) or getattr(app.state, "readpool", None)
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
            "UPDATE eomatch.api_keys SET last_used_at = now() WHERE name = $1 "
            "AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')",
            row["name"],
        )
        name: str = row["name"]
        return name


# an "href" member whose value is not a string starting with http(s)://<host>: only then must the
# body be decoded and filtered (our encoders never escape ASCII, so the key and scheme are
# literal bytes; anything unexpected matches and takes the full path)
_MAYBE_PRIVATE = re.compile(rb'"href"\s*+:\s*+(?!"[hH][tT][tT][pP][sS]?://[^/?#\\"\s])')


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
                if body and _MAYBE_PRIVATE.search(body):
                    body = orjson.dumps(public_view(orjson.loads(body)))
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

    def _clean_search_args(
        self,
        base_args: dict[str, Any],
        *args: Any,
        filter_query: str | None = None,
        filter_lang: str | None = None,
        **kwargs: Any,
    ) -> dict[str, Any]:
        """The parent's, with a GET filter parsed by :func:`limits.parse_filter` instead of
        cql2's ``validate()`` (exponential time on some invalid filters, ~10 MB a level)."""
        parsed = None
        if filter_query:
            try:
                parsed = limits.parse_filter(filter_query, filter_lang)
            except ValueError as exc:
                raise HTTPException(status_code=400, detail=f"Invalid filter: {exc}") from None
        out: dict[str, Any] = super()._clean_search_args(base_args, *args, **kwargs)
        if parsed is not None:
            out["filter"] = parsed
            out["filter_lang"] = "cql2-json"
        return out

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


class ReadPostgresSettings(PostgresSettings):  # type: ignore[misc]
    """The read pool on streaming replicas (``EOMATCH_DB_READ_HOSTS``), the primary last.

    asyncpg tries the hosts in order and keeps the first standby (``prefer-standby``): a
    replica that is down is skipped when a connection is opened, so reads fall back to the
    primary; connections already open to it fail (503) and are replaced. The replicas have the
    primary's roles and passwords (physical replication).
    """

    read_hosts: list[tuple[str, int]]
    transaction_pooled: bool = False
    """The read hosts are a transaction-mode pooler (``EOMATCH_DB_READ_POOLING``)."""

    @property
    def connection_string(self) -> str:
        """A multi-host DSN: the replicas, then the primary."""
        hosts = [*self.read_hosts, (self.pghost, self.pgport)]
        listed = ",".join(f"{f'[{h}]' if ':' in h else h}:{p}" for h, p in hosts)
        return (
            f"postgresql://{quote(self.pguser)}:{quote(self.pgpassword)}@{listed}/"
            f"{quote(self.pgdatabase)}?target_session_attrs=prefer-standby"
        )


def _postgres_settings(
    settings: ApiSettings, env: DbSettings, reads: bool = True
) -> PostgresSettings:
    """Connection settings; ``reads``: pgSTAC's read-only mode (no search cache rows), and for
    the external API read-only transactions too."""
    mode = settings.api_mode
    user = settings.api_db_user or env.user or DEFAULT_ROLES[mode]
    info = ConnectionInfo(
        host=env.host or "127.0.0.1",
        port=env.port or 5432,
        dbname=env.database or "eomatch",
        user=user,
        password=env.password,
        passfile=env.passfile,
    )
    password = info.resolved_password() or ""
    pool_max = settings.api_pool_size
    server: dict[str, str] = {"search_path": "pgstac,public", "application_name": "pgstac"}
    if reads:
        server["pgstac.readonly"] = "true"
    if mode == "external":
        server["default_transaction_read_only"] = "on"
    common: dict[str, Any] = {
        "pguser": info.user,
        "pgpassword": password,
        "pghost": info.host,
        "pgport": info.port,
        "pgdatabase": info.dbname,
        "db_min_conn_size": 1,
        "db_max_conn_size": pool_max,
        "server_settings": ServerSettings(**server),
    }
    if reads and settings.read_hosts:
        return ReadPostgresSettings(
            **common,
            read_hosts=settings.read_hosts,
            transaction_pooled=settings.db_read_pooling == "transaction",
        )
    return PostgresSettings(**common)


def create_app(settings: ApiSettings | None = None, *, db: DbSettings | None = None) -> FastAPI:
    """The internal or external STAC API, as ``settings`` and ``db`` (the libpq settings) say.

    Either left out is read from the environment (``EOMATCH_*``, ``PG*``); a bad value there
    raises a one-line :class:`~eomatch.errors.ConfigError` naming the variable.
    """
    settings = settings if settings is not None else read_settings(ApiSettings)
    db = db if db is not None else read_settings(DbSettings)
    the_mode: Mode = settings.api_mode
    internal = the_mode == "internal"
    origin = settings.origin
    stac_settings = Settings(
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
        cors_headers=(
            ["Content-Type", "Authorization", MESSAGE_HEADER] if internal else ["Content-Type"]
        ),
    )
    postgres = _postgres_settings(settings, db)
    writes = _postgres_settings(settings, db, reads=False) if internal else None
    fast_links.install()
    inline_requests.install()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await _connect_with_retry(app, postgres, writes, settings.db_wait)
        yield
        await close_db_connection(app)

    api = instantiate_api(
        client=ItemsClient,
        settings=stac_settings,
        extensions=EomatchExtensions(settings=stac_settings),
        lifespan=lifespan,
    )
    app = api.app
    # the client's landing-page fields default to import-time environment values
    api.client.landing_page_id = f"eomatch-{the_mode}"
    api.client.title = TITLES[the_mode]
    api.client.description = DESCRIPTIONS[the_mode]
    for down in DB_DOWN:
        app.add_exception_handler(down, _db_down_handler)
    for bad in BAD_INPUT:
        app.add_exception_handler(bad, _bad_input_handler)
    app.add_exception_handler(asyncpg.exceptions.PostgresError, _postgres_error_handler)
    app.add_exception_handler(EomatchError, _eomatch_error_handler)
    app.add_exception_handler(Exception, _internal_error_handler)
    _replace_health_route(app)
    if internal:  # the history holds every past state, withdrawn ones too: never public
        history_routes.register(app)
    if internal and writes is not None and importlib.util.find_spec("procrastinate"):
        from eomatch.service import job_routes  # the jobs extra: /jobs, /newitem, /status

        queue_role = ConnectionInfo(
            writes.pghost, writes.pgport, writes.pgdatabase, writes.pguser,
            writes.pgpassword or None,
        )  # fmt: skip
        job_routes.register(app, queue_role)
    inner = middleware_index(app, "BrotliMiddleware")
    # after the key check (a keyless write is a 401 whatever its body), before stac-fastapi
    app.user_middleware.insert(inner, Middleware(BodyGuard))
    if internal:
        app.user_middleware.insert(inner, Middleware(ApiKeyMiddleware))
    else:
        # innermost: it must see the JSON before compression does
        app.user_middleware.append(Middleware(PublicViewMiddleware))
    # inside the key check, the body guard and compression; outside the public view
    cache = Middleware(ResponseCacheMiddleware, settings.api_cache_mb, settings.api_cache_ttl)
    app.user_middleware.insert(middleware_index(app, "BrotliMiddleware") + 1, cache)
    if importlib.util.find_spec("pycsw") is not None:  # the records extra: /csw, /records
        from eomatch.service.records import RecordsDispatch

        reader = ConnectionInfo(
            postgres.pghost, postgres.pgport, postgres.pgdatabase, postgres.pguser,
            postgres.pgpassword or None,
        )  # fmt: skip
        wrap = None if internal else PublicViewMiddleware
        app.user_middleware.insert(0, Middleware(RecordsDispatch, reader, not internal, wrap))
    if origin is not None:
        # outermost: no other part may see the client's Host or Forwarded headers
        app.user_middleware.insert(0, Middleware(PublicOriginMiddleware, *origin))
    _cheaper_compression(app)
    app.state.eomatch_mode = the_mode
    result: FastAPI = app
    return result


BROTLI_QUALITY = 1
"""Brotli quality of the answers (brotli-asgi's default is 4). A page of 1000 matchups,
1.7 MB of JSON: quality 4 takes 9.7 ms for a ratio of 14.2, quality 1 2.3 ms for 11.3."""
GZIP_LEVEL = 4
"""gzip level for clients that do not take br (brotli-asgi's fallback, Starlette's default: 9).
The same page: level 9 takes 30 ms for a ratio of 13.4, level 4 12 ms for 11.9; at level 9 a
pull of 100 000 matchups spent half the API's CPU compressing."""


def _cheaper_compression(app: FastAPI) -> None:
    """stac-fastapi's BrotliMiddleware at :data:`BROTLI_QUALITY`, and gzip at
    :data:`GZIP_LEVEL` by Starlette's GZipMiddleware just outside it (its own fallback has no
    level). Each leaves alone an answer the other encoded."""
    at = middleware_index(app, "BrotliMiddleware")
    if at == len(app.user_middleware):
        return
    app.user_middleware[at] = Middleware(
        BrotliMiddleware, quality=BROTLI_QUALITY, gzip_fallback=False
    )
    app.user_middleware.insert(at, Middleware(GZipMiddleware, compresslevel=GZIP_LEVEL))


async def _db_down_handler(request: Request, exc: Exception) -> JSONResponse:
    log.warning("database unavailable: %s", exc)
    return _unavailable()


async def _bad_input_handler(request: Request, exc: Exception) -> JSONResponse:
    # pgSTAC RAISEs on bad search input (paging token, query with filter, ...), PostgreSQL
    # data exceptions (class 22, e.g. a NUL in a sortby), a free-text ``q`` that is not a
    # valid tsquery (``/collections?q=!``) and a bad JSON query parameter (orjson) are all
    # the client's fault, not a 500
    return _json(400, "BadRequest", (str(exc).splitlines() or ["invalid request"])[0][:500])


async def _postgres_error_handler(request: Request, exc: Exception) -> JSONResponse:
    """Errors raised by SQL that pgSTAC built from the request are the client's (400).

    A filter's type error (``'a' + 1``), a function of the wrong arity and a spatial literal
    PostGIS cannot read reached the database (cql2's schema lets them through) and were 500s.
    """
    state = str(getattr(exc, "sqlstate", "") or "")
    message = (str(exc).splitlines() or [""])[0]
    client = state[:2] in CLIENT_SQLSTATES and state != "42501"
    if state == "XX000" and any(w in message.lower() for w in POSTGIS_INPUT):
        client = True
    if client:
        return _json(400, "BadRequest", f"the request cannot be run: {message}"[:500])
    return await _internal_error_handler(request, exc)


def eomatch_error_response(exc: EomatchError) -> JSONResponse:
    """The answer for an error of the tree: its branch's status (errors.HTTP_STATUSES).

    A 4xx carries the one-line message (the client's fault, said to the client); a 5xx is
    logged and answered without it, since such messages may name hosts, ports or paths.
    """
    status = http_status(exc)
    if status >= 500:
        log.error("%s: %s", type(exc).__name__, exc)
        if isinstance(exc, DatabaseError):
            return _unavailable()
        return _json(status, "ServerError", "the API cannot answer this now; see its log")
    code = {404: "NotFound", 409: "Conflict"}.get(status, "BadRequest")
    return _json(status, code, (str(exc).splitlines() or ["invalid request"])[0][:500])


async def _eomatch_error_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, EomatchError)
    return eomatch_error_response(exc)


async def _internal_error_handler(request: Request, exc: Exception) -> JSONResponse:
    """A bug of ours: logged in full, answered without internals (no paths, hosts, types)."""
    log.error("internal error on %s %s", request.method, request.url.path, exc_info=exc)
    return _json(500, "InternalServerError", "internal error; the API log has the details")


async def _health(request: Request) -> JSONResponse:
    """``/_mgmt/health``: stac-fastapi-pgstac's answer without the database error text (it
    named the database host and port)."""
    if not hasattr(request.app.state, "get_connection"):
        return JSONResponse(
            {
                "status": "DOWN",
                "lifespan": {"status": "DOWN"},
                "pgstac": {"status": "DOWN", "message": "the catalogue database is unavailable"},
            },
            503,
        )
    try:
        async with request.app.state.get_connection(request, "r") as conn:
            version = await conn.fetchval("SELECT pgstac.get_version()")
    except Exception:
        return JSONResponse(
            {
                "status": "DOWN",
                "lifespan": {"status": "UP"},
                "pgstac": {"status": "DOWN", "message": "the catalogue database is unavailable"},
            },
            503,
        )
    return JSONResponse(
        {
            "status": "UP",
            "lifespan": {"status": "UP"},
            "pgstac": {"status": "UP", "pgstac_version": version},
        }
    )


def _replace_health_route(app: FastAPI) -> None:
    """Serve :func:`_health` at ``/_mgmt/health``: first in the routes, so it answers before
    stac-fastapi's own (FastAPI keeps included routers as opaque entries of the list)."""
    app.add_api_route("/_mgmt/health", _health, methods=["GET"], include_in_schema=False)
    routes: list[BaseRoute] = app.router.routes
    routes.insert(0, routes.pop())


async def _reads_leave_no_session_state(conn: asyncpg.Connection) -> None:
    """The read pool's reset: nothing beyond asyncpg's own rollback of an open transaction.

    asyncpg's default reset sends ``pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET
    ALL`` each time a connection goes back: one more round trip and statement per request
    (py-spy: ~5 % of the API process's samples on a 20-id search at 1M items, plus the
    statement on PostgreSQL's side). Nothing the APIs run on a read connection leaves session
    state (pgSTAC's reads set no session settings, cursors live in transactions, no LISTEN, no
    session advisory locks; only write connections set ``eomatch.*``, and their pool keeps the
    full reset), so there is nothing to clear.
    """


async def _open_pools(
    app: FastAPI, postgres: PostgresSettings, writes: PostgresSettings | None
) -> None:
    """stac-fastapi-pgstac's pools (orjson codecs, its settings) with eomatch's reset policy.

    Behind pgbouncer in transaction mode (``EOMATCH_DB_READ_POOLING=transaction``) the read
    pool uses unnamed statements only: a cached prepared statement would be on another server
    connection next time.
    """

    def pool_args(settings: PostgresSettings) -> dict[str, Any]:
        return {
            "min_size": settings.db_min_conn_size,
            "max_size": settings.db_max_conn_size,
            "max_queries": settings.db_max_queries,
            "max_inactive_connection_lifetime": settings.db_max_inactive_conn_lifetime,
            "init": con_init,
            "server_settings": settings.server_settings.model_dump(),
        }

    reads = pool_args(postgres)
    if isinstance(postgres, ReadPostgresSettings) and postgres.transaction_pooled:
        reads["statement_cache_size"] = 0
    app.state.readpool = await asyncpg.create_pool(
        postgres.connection_string, reset=_reads_leave_no_session_state, **reads
    )
    if writes is not None:
        try:
            app.state.writepool = await asyncpg.create_pool(
                writes.connection_string, **pool_args(writes)
            )
        except BaseException:
            await app.state.readpool.close()
            del app.state.readpool
            raise
    app.state.get_connection = described_connection


async def _connect_with_retry(
    app: FastAPI, postgres: PostgresSettings, writes: PostgresSettings | None, wait_s: float
) -> None:
    """Wait for the database at start-up (``EOMATCH_DB_WAIT`` seconds) instead of crashing."""
    deadline = asyncio.get_running_loop().time() + wait_s
    while True:
        try:
            await _open_pools(app, postgres, writes)
            return
        except DB_DOWN:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.5)
