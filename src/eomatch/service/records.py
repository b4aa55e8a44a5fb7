"""OGC CSW 2.0.2/3.0.0 (with OpenSearch) and OGC API - Records, served by pycsw inside our APIs.

pycsw 3 is framework-neutral: its Records ``API`` takes headers and arguments and returns
``(headers, status, body)``, its ``Csw`` takes a WSGI environ. So no second server: both are
routes of the internal and the external FastAPI apps (``/csw``, ``/records/...``), reached
through the gateway like the STAC APIs, under the same supervision, key rules and public view.
pycsw reads :data:`~eomatch.io.records_schema.RECORDS_VIEW` (the external side
:data:`~eomatch.io.records_schema.PUBLIC_VIEW`, as ``eomatch_reader``): views over pgSTAC, so a
record exists exactly when its item does. Transactions (CSW-T, Records create/update/delete)
are off: items are registered through the STAC API, ingest or harvesters (``eomatch.io.registrar``).

pycsw's objects hold one SQLAlchemy session each and are not thread-safe, and reflecting the
repository costs tens of milliseconds: each worker thread keeps its own, built on first use.
"""

from __future__ import annotations

import copy
import inspect
import io
import math
import re
import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, ClassVar
from urllib.parse import quote, urlencode

from eomatch.extras import require_extra

require_extra("records", "CSW and OGC API - Records", ("pycsw", "sqlalchemy", "psycopg2"))

import pycsw.core.log
from pycsw.core import repository as pycsw_repository
from pycsw.core.config import StaticContext
from pycsw.core.pygeofilter_evaluate import PycswFilterEvaluator
from pycsw.ogc.api.records import API
from pycsw.ogc.csw import csw2 as pycsw_csw2
from pycsw.ogc.csw import csw3 as pycsw_csw3
from pycsw.server import Csw
from pygeofilter.backends.sqlalchemy.evaluate import SQLAlchemyFilterEvaluator
from sqlalchemy import PrimaryKeyConstraint
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route, Router
from starlette.types import ASGIApp, Receive, Scope, Send

from eomatch.errors import InvalidValueError
from eomatch.io.pg_conn import ConnectionInfo
from eomatch.io.records_schema import ABSENT_COLUMNS, PUBLIC_VIEW, RECORDS_VIEW
from eomatch.service.guards import route_path

__all__ = ["RecordsDispatch", "RecordsService", "pycsw_config"]


def _evaluator_init(self: Any, field_mapping: Any = None, dbtype: str = "sqlite") -> None:
    # pycsw 3.0.0b2 predates pygeofilter 0.3's ``undefined_as_null`` argument (the rest of
    # eomatch needs pygeofilter >= 0.3): an unknown property stays an error, as before.
    SQLAlchemyFilterEvaluator.__init__(self, field_mapping, False)
    self._pycsw_dbtype = dbtype


if "undefined_as_null" in inspect.signature(SQLAlchemyFilterEvaluator.__init__).parameters:
    PycswFilterEvaluator.__init__ = _evaluator_init


class _SchemaCache:
    """lxml's ``etree`` for pycsw's CSW modules, with each XML Schema parsed once per thread.

    pycsw validates every POSTed CSW request against the CSW schemas, and parsed them anew each
    time (50 ms of a 130 ms GetRecords). A parsed schema is reused by its own thread only.
    """

    def __init__(self, etree: Any) -> None:
        self._etree = etree
        self._local = threading.local()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._etree, name)

    def XMLSchema(self, *args: Any, **kwargs: Any) -> Any:
        path = kwargs.get("file")
        if args or set(kwargs) != {"file"} or not isinstance(path, str):
            return self._etree.XMLSchema(*args, **kwargs)
        cache: dict[str, Any] = self._local.__dict__.setdefault("schemas", {})
        if path not in cache:
            cache[path] = self._etree.XMLSchema(file=path)
        return cache[path]


for _module in (pycsw_csw2, pycsw_csw3):
    _module.etree = _SchemaCache(_module.etree)

# pycsw calls logging.basicConfig (root level, stdout) on every request: the service's own
# logging set-up stays in charge.
pycsw.core.log.setup_logger = lambda _config: None


class _CoreModel(dict[str, Any]):
    """pycsw's core model, plus the primary key a view cannot declare (the ORM needs one).

    A constraint object belongs to one table, and pycsw builds a table per repository: a
    fresh one on each lookup.
    """

    def get(self, key: str, default: Any = None) -> Any:
        if key == "column_constraints":
            return (PrimaryKeyConstraint("identifier"),)
        return super().get(key, default)


MD_CORE_MODEL = _CoreModel(StaticContext().md_core_model)
"""Read by pycsw through ``repository.mappings`` (this module's name)."""

MAX_CSW_BODY = 1 << 20
"""Largest CSW POST body (an XML GetRecords is a few kB)."""

MAX_RECORDS = 1000
"""Largest page a client may ask for (``limit``, ``maxRecords``); pycsw caps to it."""


def pycsw_config(database_url: str, table: str, url: str, title: str) -> dict[str, Any]:
    """pycsw's configuration (its YAML, as a dict): read-only, no federated search."""
    return {
        "server": {
            "url": url,
            "mimetype": "application/xml; charset=UTF-8",
            "encoding": "UTF-8",
            "language": "en-US",
            "maxrecords": MAX_RECORDS,
            "pretty_print": False,
        },
        "logging": {"level": "ERROR"},
        "profiles": ["apiso"],
        "federatedcatalogues": [],
        "manager": {"transactions": False, "allowed_ips": []},
        "metadata": {
            "identification": {
                "title": title,
                "description": "Satellite overpasses, matchups and their products, as "
                "catalogued by eomatch (the same items as its STAC API)",
                "keywords": ["earth observation", "matchup", "cal/val", "STAC"],
                "keywords_type": "theme",
                "fees": "None",
                "accessconstraints": "None",
                "terms_of_service": "None",
                "url": url,
            },
            "license": {"name": "see each collection", "url": url},
            "provider": {"name": "eomatch", "url": url},
            "contact": {
                "name": "eomatch operator",
                "position": "operator",
                "address": "",
                "city": "",
                "stateorprovince": "",
                "postalcode": "",
                "country": "",
                "phone": "",
                "fax": "",
                "email": "",
                "url": url,
                "hours": "",
                "instructions": "",
                "role": "pointOfContact",
            },
            "inspire": {"enabled": False},
        },
        "repository": {
            "database": database_url,
            "table": table,
            "mappings": __name__,
            "facets": ["type", "parentidentifier"],
        },
    }


def sqlalchemy_url(info: ConnectionInfo) -> str:
    """The SQLAlchemy (psycopg2) URL of a connection, password resolved."""
    password = info.resolved_password()
    auth = quote(info.user, safe="")
    if password:
        auth += ":" + quote(password, safe="")
    db = quote(info.dbname, safe="")
    if info.host.startswith("/"):  # a Unix socket directory
        socket = quote(info.host, safe="")
        return f"postgresql+psycopg2://{auth}@/{db}?host={socket}&port={info.port}"
    host = f"[{info.host}]" if ":" in info.host else info.host
    return f"postgresql+psycopg2://{auth}@{host}:{info.port}/{db}"


# A request parameter pycsw would choke on (a 500 there) is a 400 here.
_Bad = InvalidValueError


def _check_records_args(args: Mapping[str, str]) -> None:
    """Reject what pycsw would turn into a server error, with OGC API's 400."""
    for name in ("limit", "offset"):
        if name in args:
            try:
                value = int(args[name])
            except ValueError:
                raise _Bad(f"{name} must be an integer") from None
            if value < (1 if name == "limit" else 0) or value > 10**9:
                raise _Bad(f"{name} out of range")
    if "bbox" in args:
        try:
            box = [float(v) for v in args["bbox"].split(",")]
        except ValueError:
            raise _Bad("bbox must be 4 or 6 numbers") from None
        if len(box) not in (4, 6) or not all(math.isfinite(v) for v in box):
            raise _Bad("bbox must be 4 or 6 finite numbers")
        lo, hi = box[: len(box) // 2], box[len(box) // 2 :]
        if not (-180 <= lo[0] <= 180 and -180 <= hi[0] <= 180 and -90 <= lo[1] <= hi[1] <= 90):
            raise _Bad("bbox out of range (lon -180..180, lat -90..90, south <= north)")
    for name, text in args.items():
        if "\x00" in text or len(text) > 4000:
            raise _Bad(f"{name}: invalid value")


def _instant(part: str) -> str | None:
    """An interval end as the view's time text (UTC ``...Z``), None when open."""
    if part in ("", ".."):
        return None
    try:
        when = datetime.fromisoformat(part.replace("z", "Z"))
    except ValueError:
        raise _Bad(f"datetime: not an RFC 3339 date-time: {part[:40]!r}") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _time_filter(text: str) -> str | None:
    """``datetime`` (an instant or ``start/end``) as CQL2 text on the view's time columns.

    Intersection, as STAC item search does (pycsw's own translation asks for containment, in
    a form newer pygeofilter reads as property names).
    """
    parts = text.split("/")
    if len(parts) > 2 or (len(parts) == 1 and parts[0] in ("", "..")):
        raise _Bad("datetime must be an RFC 3339 date-time or interval")
    start, end = _instant(parts[0]), _instant(parts[-1])
    terms = []
    if end is not None:
        terms.append(f"time_begin <= '{end}'")
    if start is not None:
        terms.append(f"time_end >= '{start}'")
    return " AND ".join(terms) or None


_PYCSW_ARGS = frozenset(
    {"distributed", "f", "facets", "filter", "filter-lang", "limit", "sortby", "offset",
     "anytext", "bbox", "keywords", "q"}
)  # fmt: skip
"""Parameters pycsw handles itself; the rest it writes into CQL in a form pygeofilter >= 0.3
reads as property names (``k = "v"``), so they are translated here."""

_PROPERTY = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _records_args(args: dict[str, str]) -> dict[str, str]:
    """The arguments pycsw gets: ``datetime``, ``ids``, ``collections`` and property
    parameters (OGC API - Features part 3) moved into the CQL2 text ``filter``."""
    out: dict[str, str] = {}
    terms: list[str] = []
    for name, value in args.items():
        if name in _PYCSW_ARGS:
            out[name] = value
        elif name == "lang":
            continue  # one language
        elif name == "datetime":
            when = _time_filter(value)
            if when:
                terms.append(when)
        elif name in ("ids", "collections"):
            column = "identifier" if name == "ids" else "parentidentifier"
            values = ", ".join(_literal(v) for v in value.split(",") if v)
            if values:
                terms.append(f"{column} IN ({values})")
        elif _PROPERTY.fullmatch(name):
            terms.append(f"{name} = {_literal(value)}")
        else:
            raise _Bad(f"unknown parameter {name[:64]!r}")
    if terms:
        if out.get("filter-lang", "cql2-text") != "cql2-text":
            raise _Bad("query parameters combine with a cql2-text filter only")
        joined = " AND ".join(terms)
        out["filter"] = f"({out['filter']}) AND {joined}" if out.get("filter") else joined
    return out


def _absent_as_none(repository: Any) -> None:
    """pycsw's columns the view leaves out read as None on its records."""
    for name in ABSENT_COLUMNS:
        if not hasattr(repository.dataset, name):
            setattr(repository.dataset, name, None)


def _no_collections(filters: Any = None, limit: int = 10) -> list[Any]:
    return []


class _Repositories:
    """pycsw's custom-repository hook: a reflected repository per thread and CSW version."""

    local = threading.local()
    database: ClassVar[dict[str, tuple[str, str]]] = {}  # per service: key -> (url, table)

    def __new__(cls, context: Any, repo_filter: Any = None) -> Any:
        service = context.server.environ["eomatch.records"]
        context.server.orm = "sqlalchemy"  # pycsw assumes Django behind a custom repository
        key = (service, "csw" if context.model is context.models.get("csw") else "csw30")
        cache: dict[tuple[str, str], Any] = getattr(cls.local, "repos", None) or {}
        cls.local.repos = cache
        repo = cache.get(key)
        if repo is None:
            url, table = cls.database[service]
            repo = pycsw_repository.Repository(url, context, table=table, repo_filter=repo_filter)
            _absent_as_none(repo)
            cache[key] = repo
        return repo


class RecordsService:
    """CSW and OGC API - Records for one side (internal or public) of the service."""

    def __init__(self, info: ConnectionInfo, public: bool) -> None:
        self.public = public
        self.table = PUBLIC_VIEW if public else RECORDS_VIEW
        self.database_url = sqlalchemy_url(info)
        self.title = "eomatch catalogue" + (" (public)" if public else " (internal)")
        self.key = f"{id(self)}"
        _Repositories.database[self.key] = (self.database_url, self.table)
        self._local = threading.local()

    def config(self, url: str) -> dict[str, Any]:
        """pycsw's configuration for answers whose links start at ``url``."""
        return pycsw_config(self.database_url, self.table, url, self.title)

    # -- OGC API - Records ---------------------------------------------------------------------

    def _api(self, url: str) -> API:
        api: API | None = getattr(self._local, "api", None)
        if api is None:
            api = API(self.config(url))
            _absent_as_none(api.repository)
            # Records' bbox parameter becomes BBOX(geometry, ...): name the geometry column
            mappings = api.repository.query_mappings
            mappings.setdefault("geometry", mappings["bbox"])
            # pycsw looks for "virtual collections" (records that are parents of others) on
            # every items request: two scans of every record. Items are the only records
            # here, never parents: there are none.
            api.repository.query_collections = _no_collections
            self._local.api = api
        api.config["server"]["url"] = url  # per thread, so per request
        return api

    def records_app(self) -> Router:
        """The ``/records`` sub-application (mount it at ``/records``)."""

        def endpoint(method: str, *names: str) -> Callable[[Request], Any]:
            async def handle(request: Request) -> Response:
                return await self._records(request, method, names)

            return handle

        return Router(
            routes=[
                Route("/", endpoint("landing_page")),
                Route("/conformance", endpoint("conformance")),
                Route("/openapi", endpoint("openapi")),
                Route("/collections", endpoint("collections")),
                Route("/collections/{collection}", endpoint("collection", "collection")),
                Route(
                    "/collections/{collection}/queryables",
                    endpoint("queryables", "collection"),
                ),
                Route("/collections/{collection}/items", endpoint("items", "collection")),
                Route(
                    "/collections/{collection}/items/{item:path}",
                    endpoint("item", "collection", "item"),
                ),
            ]
        )

    async def landing(self, request: Request) -> Response:
        """``/records`` itself: the landing page (no redirect to ``/records/``)."""
        return await self._records(request, "landing_page", ())

    async def _records(self, request: Request, method: str, names: tuple[str, ...]) -> Response:
        args = dict(request.query_params)
        try:
            _check_records_args(args)
            args = _records_args(args)
        except _Bad as exc:
            return _json_error(400, "InvalidParameterValue", str(exc))
        url = request.scope.get("eomatch.records_base") or str(request.base_url).rstrip("/")
        headers = dict(request.headers)
        params = [request.path_params[n] for n in names]

        def call() -> tuple[Any, int, Any]:
            api = self._api(url)
            if method == "items":
                result = api.items(headers, None, args, *params)
            else:
                result = getattr(api, method)(headers, args, *params)
            return result  # type: ignore[no-any-return]

        out_headers, status, content = await run_in_threadpool(call)
        if method == "conformance" and int(status) == 200:
            content = _without_transactions(content)
        body = content.encode("utf-8") if isinstance(content, str) else bytes(content or b"")
        kept = {
            str(k): str(v)
            for k, v in (out_headers or {}).items()
            if str(k).lower() not in ("content-length", "transfer-encoding")
        }
        return Response(body, status_code=int(status), headers=kept)

    # -- CSW -----------------------------------------------------------------------------------

    async def csw(self, request: Request) -> Response:
        """One CSW (or, with ``mode=opensearch``, OpenSearch) request."""
        body = b""
        if request.method == "POST":
            async for chunk in request.stream():
                body += chunk
                if len(body) > MAX_CSW_BODY:
                    return Response(
                        f"the request body is larger than {MAX_CSW_BODY} bytes",
                        status_code=413,
                        media_type="text/plain",
                    )
        url = str(request.url.replace(query="")).rstrip("/")
        query = request.url.query
        environ = {
            "REQUEST_METHOD": request.method,
            "QUERY_STRING": query,
            "CONTENT_LENGTH": str(len(body)),
            "CONTENT_TYPE": request.headers.get("content-type", ""),
            "HTTP_HOST": request.url.netloc,
            "SERVER_NAME": request.url.hostname or "localhost",
            "SERVER_PORT": str(request.url.port or (443 if request.url.scheme == "https" else 80)),
            "SCRIPT_NAME": "",
            "PATH_INFO": request.url.path,
            "wsgi.url_scheme": request.url.scheme,
            "wsgi.input": io.BytesIO(body),
            "eomatch.records": self.key,
        }
        if "mode=opensearch" in query.lower():
            environ["PYCSW_IS_OPENSEARCH"] = ""  # pycsw reads mode=opensearch from the query

        def call() -> tuple[str, str, bytes]:
            config = self.config(url)
            config["repository"]["source"] = f"{__name__}._Repositories"
            server = Csw(copy.deepcopy(config), environ, version=_csw_version(query, body))
            status, contents = server.dispatch_wsgi()
            data = contents if isinstance(contents, bytes) else str(contents).encode("utf-8")
            return str(status), str(server.contenttype), data

        status, ctype, data = await run_in_threadpool(call)
        return Response(data, status_code=int(status.split()[0]), media_type=ctype)


def _without_transactions(content: Any) -> Any:
    """The conformance document without the transaction class: transactions are off here."""
    import orjson

    try:
        doc = orjson.loads(content)
    except orjson.JSONDecodeError:
        return content  # the HTML rendering
    doc["conformsTo"] = [c for c in doc.get("conformsTo", []) if "create-replace-delete" not in c]
    return orjson.dumps(doc).decode()


class RecordsDispatch:
    """Sends ``/csw`` and ``/records/...`` to pycsw, anything else on to the STAC API.

    Outermost in the API's middleware (after the public-origin rewrite), because the STAC
    API's body guard accepts JSON only and CSW is XML over POST; every CSW and Records
    request is a read (transactions are off), so no API key is involved. ``wrap`` is applied
    to the records side: the external API's public view, so JSON records show only http(s)
    links, as STAC items do (the SQL view already drops the rest, for the XML too).
    """

    def __init__(
        self,
        app: ASGIApp,
        info: ConnectionInfo,
        public: bool,
        wrap: Callable[[ASGIApp], ASGIApp] | None = None,
    ) -> None:
        self.app = app
        service = RecordsService(info, public)
        inner: ASGIApp = Starlette(
            routes=[
                Route("/csw", service.csw, methods=["GET", "POST"]),
                Route("/records", service.landing),
                Mount("/records", app=service.records_app()),
            ]
        )
        self.records = wrap(inner) if wrap is not None else inner

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Dispatch on the path below the proxy prefix."""
        if scope["type"] == "http":
            path = route_path(scope)
            if path == "/csw" or path == "/records" or path.startswith("/records/"):
                # absolute links start at the records root, below any proxy prefix
                root = str(scope.get("root_path") or "").rstrip("/")
                host = dict(scope.get("headers", [])).get(b"host", b"localhost").decode("latin-1")
                base = f"{scope.get('scheme', 'http')}://{host}{root}/records"
                scope = {**scope, "eomatch.records_base": base}
                await self.records(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _csw_version(query: str, body: bytes) -> str:
    """The CSW version a request asks for (pycsw's own dispatch needs it up front)."""
    text = (query + " " + body[:2000].decode("utf-8", "replace")).lower()
    if "2.0.2" in text and "3.0.0" not in text:
        return "2.0.2"
    return "3.0.0"


def _json_error(status: int, code: str, description: str) -> Response:
    import orjson

    return Response(
        orjson.dumps({"code": code, "description": description}),
        status_code=status,
        media_type="application/json",
    )


def records_links(base: str) -> dict[str, str]:
    """Where the endpoints of a side are, for the docs and the landing page."""
    return {
        "csw": f"{base}/csw?{urlencode({'service': 'CSW', 'request': 'GetCapabilities'})}",
        "records": f"{base}/records",
    }
