"""A real STAC API over HTTP serving a matchup catalogue the way the central service does.

What the service (stac-fastapi-pgstac over pgSTAC, fed by ``eomatch ingest``) serves, per the
ingest contract, reproduced here on a stdlib ``ThreadingHTTPServer`` (127.0.0.1, free port):

* collection and item ids unchanged; collections without their ``child`` (day catalog) links;
* links between catalogue items stored as ``collections/{cid}/items/{id}`` and answered
  absolute (``{api}/collections/{cid}/items/{id}``), keeping ``rel``, ``type``, ``title`` and
  extra fields (``matchup:role``); the API adds ``self``/``parent``/``collection``/``root``;
* assets: http(s) hrefs as they were, local files as ``file:///abs/path``; the **external**
  mode removes every asset and link that is not http(s) from every answer.

Endpoints: landing page, ``/conformance``, ``/collections`` (paged with ``limit``/``offset``),
``/collections/{id}`` (404 if unknown), ``/collections/{id}/items/{item}``, ``/search`` GET and
POST (``collections``, ``ids``, ``bbox``, ``datetime``, ``filter`` in CQL2 text or JSON,
``limit`` capped at ``max_limit``, ``token`` paging through ``next`` links). Bearer-key auth
(401/403), an outage after N requests and invalid JSON can be switched on.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlencode, urlparse

import cql2
from shapely.geometry import box, shape

from eomatch.core import stac_items as si

CONFORMS_TO = [
    "https://api.stacspec.org/v1.0.0/core",
    "https://api.stacspec.org/v1.0.0/collections",
    "https://api.stacspec.org/v1.0.0/ogcapi-features",
    "https://api.stacspec.org/v1.0.0/item-search",
    "https://api.stacspec.org/v1.0.0-rc.2/item-search#filter",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson",
    "http://www.opengis.net/spec/cql2/1.0/conf/cql2-text",
    "http://www.opengis.net/spec/cql2/1.0/conf/cql2-json",
]
STRUCTURAL = frozenset({"self", "root", "parent", "collection", "child", "item", "items"})


# -- the ingest side: catalogue documents in the form the service stores them ---------------


def _is_public(href: Any) -> bool:
    return isinstance(href, str) and href.lower().startswith(("http://", "https://"))


def _has_scheme(href: str) -> bool:
    return len(urlparse(href).scheme) > 1


def stored_item(rel: str, item: dict[str, Any], root: Path) -> dict[str, Any]:
    """An on-disk item (at catalogue-relative ``rel``) as the service stores it."""
    out = dict(item)
    links = []
    for link in item.get("links", []):
        if link.get("rel") in STRUCTURAL:
            continue
        href = str(link["href"])
        if not _has_scheme(href):
            target = si.resolve_href(rel, href)
            cid, name = target.split("/", 1)[0], Path(target).stem
            href = f"collections/{quote(cid, safe='')}/items/{quote(name, safe='')}"
        links.append({**link, "href": href})
    out["links"] = links
    assets = {}
    for key, asset in (item.get("assets") or {}).items():
        href = str(asset["href"])
        if not _has_scheme(href):
            path = Path(href) if href.startswith("/") else (root / rel).parent / href
            href = Path(str(path.resolve())).as_uri()
        assets[key] = {**asset, "href": href}
    out["assets"] = assets
    return out


def stored_collection(collection: dict[str, Any]) -> dict[str, Any]:
    """A collection as the service stores it: no structural (day catalog) links."""
    out = dict(collection)
    out["links"] = [x for x in collection.get("links", []) if x.get("rel") not in STRUCTURAL]
    return out


def read_catalogue(root: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``(collections, items)`` of an on-disk catalogue in the service's stored form."""
    root = Path(root)
    catalog = json.loads((root / "catalog.json").read_text())
    collections, items = [], []
    for link in catalog["links"]:
        if link["rel"] != "child":
            continue
        coll_file = (root / link["href"]).resolve()
        collections.append(stored_collection(json.loads(coll_file.read_text())))
        for path in sorted(coll_file.parent.glob("*/*/*/*.json")):
            if path.name == si.DAY_CATALOG or path.name.startswith("."):
                continue
            rel = path.relative_to(root.resolve()).as_posix()
            items.append(stored_item(rel, json.loads(path.read_text()), root.resolve()))
    return collections, items


# -- the server -----------------------------------------------------------------------------


def _times(item: dict[str, Any]) -> tuple[datetime, datetime]:
    return si.item_times(item)


def _parse_instant(text: str) -> datetime | None:
    return None if text in ("", "..") else si.parse_datetime(text)


@dataclass
class MatchupApi:
    """The server's state: documents, the requests it saw, auth and faults."""

    external: bool = False
    """External mode: only http(s) assets and links in answers."""
    api_key: str | None = None
    """When set, requests need ``Authorization: Bearer {api_key}`` (else 401)."""
    forbidden_key: str | None = None
    """A key that is recognised but not allowed (403)."""
    max_limit: int = 10_000
    """Largest page size answered (larger ``limit`` values are capped, like stac-fastapi)."""
    collections_page: int = 10
    """Default page size of ``/collections``."""
    url: str = ""
    collections: dict[str, dict[str, Any]] = field(default_factory=dict)
    items: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    """collection → item id → stored item."""
    requests: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    """(method, path, parameters) of every request."""
    fail_after: int | None = None
    """Answer ``fail_status`` to every request after this many (an outage)."""
    fail_count: int = 0
    """The next ``fail_count`` requests answer ``fail_status`` (transient trouble)."""
    fail_status: int = 503
    invalid_json: bool = False
    verbatim_links: bool = False
    """Hostile mode: link hrefs other than item links are sent as stored (paths too)."""
    lock: threading.Lock = field(default_factory=threading.Lock)
    _sorted: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    _shapes: dict[str, Any] = field(default_factory=dict)
    _results: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    # -- loading ----------------------------------------------------------------------------

    def load(self, collections: Iterable[dict[str, Any]], items: Iterable[dict[str, Any]]) -> None:
        """Upsert collections and items (stored form), like an ingest."""
        with self.lock:
            for c in collections:
                self.collections[c["id"]] = c
            for i in items:
                self.items.setdefault(i["collection"], {})[i["id"]] = i
                self._shapes.pop(i["id"], None)
            self._sorted.clear()
            self._results.clear()

    def load_catalogue(self, root: Path) -> None:
        """Ingest an on-disk catalogue."""
        self.load(*read_catalogue(root))

    def search_requests(self) -> list[dict[str, Any]]:
        """Parameters of every /search request."""
        return [p for m, path, p in self.requests if path == "/search"]

    # -- answers ----------------------------------------------------------------------------

    def _public(self, doc: dict[str, Any]) -> dict[str, Any]:
        if not self.external:
            return doc
        out = dict(doc)
        if "assets" in out:
            out["assets"] = {k: a for k, a in out["assets"].items() if _is_public(a.get("href"))}
        out["links"] = [x for x in out.get("links", []) if _is_public(x.get("href"))]
        return out

    def _abs(self, href: str) -> str:
        if _has_scheme(href) or (self.verbatim_links and not href.startswith("collections/")):
            return href
        return f"{self.url}/{href}"

    def item_out(self, item: dict[str, Any]) -> dict[str, Any]:
        cid, iid = item["collection"], item["id"]
        links = [{**x, "href": self._abs(str(x["href"]))} for x in item.get("links", [])]
        links += [
            {"rel": "self", "href": f"{self.url}/collections/{cid}/items/{iid}"},
            {"rel": "parent", "href": f"{self.url}/collections/{cid}"},
            {"rel": "collection", "href": f"{self.url}/collections/{cid}"},
            {"rel": "root", "href": f"{self.url}/"},
        ]
        return self._public({**item, "links": links})

    def collection_out(self, coll: dict[str, Any]) -> dict[str, Any]:
        cid = coll["id"]
        links = [{**x, "href": self._abs(str(x["href"]))} for x in coll.get("links", [])]
        links += [
            {"rel": "self", "href": f"{self.url}/collections/{cid}"},
            {"rel": "items", "href": f"{self.url}/collections/{cid}/items"},
            {"rel": "root", "href": f"{self.url}/"},
        ]
        return self._public({**coll, "links": links})

    def landing(self) -> dict[str, Any]:
        return {
            "type": "Catalog",
            "stac_version": "1.0.0",
            "id": "eomatch-test-api",
            "description": "Matchup service (test)",
            "conformsTo": CONFORMS_TO,
            "links": [
                {"rel": "self", "href": f"{self.url}/"},
                {"rel": "root", "href": f"{self.url}/"},
                {"rel": "data", "href": f"{self.url}/collections"},
                {"rel": "conformance", "href": f"{self.url}/conformance"},
                {"rel": "search", "href": f"{self.url}/search", "method": "GET"},
                {"rel": "search", "href": f"{self.url}/search", "method": "POST"},
            ],
        }

    def _ordered(self, cid: str) -> list[dict[str, Any]]:
        if cid not in self._sorted:
            self._sorted[cid] = sorted(
                self.items.get(cid, {}).values(), key=lambda i: (_times(i)[0], i["id"])
            )
        return self._sorted[cid]

    def _shape(self, item: dict[str, Any]) -> Any:
        geom = self._shapes.get(item["id"])
        if geom is None:
            geom = self._shapes[item["id"]] = shape(item["geometry"])
        return geom

    def _hits(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        key = json.dumps({k: v for k, v in params.items() if k != "token"}, sort_keys=True)
        with self.lock:
            if key in self._results:
                return self._results[key]
        colls = params.get("collections")
        if isinstance(colls, str):
            colls = colls.split(",")
        ids = params.get("ids")
        if isinstance(ids, str):
            ids = ids.split(",")
        bbox = params.get("bbox")
        if isinstance(bbox, str):
            bbox = [float(v) for v in bbox.split(",")]
        interval = None
        if params.get("datetime"):
            text = str(params["datetime"])
            a, _, b = text.partition("/") if "/" in text else (text, "", text)
            interval = (_parse_instant(a), _parse_instant(b))
        expr = None
        if params.get("filter"):
            f = params["filter"]
            expr = cql2.Expr(f if isinstance(f, dict | str) else str(f))
        hits = []
        for cid in colls or sorted(self.items):
            if ids:
                pool = [self.items.get(cid, {}).get(i) for i in ids]
                candidates = sorted(
                    (i for i in pool if i is not None), key=lambda i: (_times(i)[0], i["id"])
                )
            else:
                candidates = self._ordered(cid)
            for item in candidates:
                if bbox is not None:
                    b = item["bbox"]
                    if b[0] <= b[2] and (
                        b[0] > bbox[2] or b[2] < bbox[0] or b[1] > bbox[3] or b[3] < bbox[1]
                    ):
                        continue
                    if not self._shape(item).intersects(box(*bbox)):
                        continue
                if interval is not None:
                    start, end = _times(item)
                    lo, hi = interval
                    if (lo is not None and end < lo) or (hi is not None and start > hi):
                        continue
                if expr is not None and not expr.matches(item):
                    continue
                hits.append(item)
        with self.lock:
            self._results[key] = hits
        return hits

    def search(self, params: dict[str, Any], method: str) -> dict[str, Any]:
        limit = min(int(params.get("limit") or 10), self.max_limit)
        token = str(params.get("token") or "next:0")
        offset = int(token.split(":", 1)[1])
        hits = self._hits(params)
        page = hits[offset : offset + limit]
        links: list[dict[str, Any]] = [{"rel": "root", "href": f"{self.url}/"}]
        if offset + limit < len(hits):
            nxt = {**params, "token": f"next:{offset + limit}"}
            if method == "POST":
                links.append(
                    {"rel": "next", "href": f"{self.url}/search", "method": "POST", "body": nxt}
                )
            else:
                query = {
                    k: v if isinstance(v, str) else ",".join(map(str, v)) for k, v in nxt.items()
                }
                links.append({"rel": "next", "href": f"{self.url}/search?{urlencode(query)}"})
        return {
            "type": "FeatureCollection",
            "features": [self.item_out(i) for i in page],
            "links": links,
            "numberMatched": len(hits),
            "numberReturned": len(page),
        }

    def route(self, method: str, path: str, params: dict[str, Any]) -> tuple[int, Any]:
        parts = [unquote(p) for p in path.strip("/").split("/")] if path != "/" else []
        if not parts:
            return 200, self.landing()
        if parts == ["conformance"]:
            return 200, {"conformsTo": CONFORMS_TO}
        if parts == ["collections"]:
            limit = int(params.get("limit") or self.collections_page)
            offset = int(params.get("offset") or 0)
            ids = sorted(self.collections)
            page = ids[offset : offset + limit]
            links = [{"rel": "self", "href": f"{self.url}/collections"}]
            if offset + limit < len(ids):
                links.append(
                    {
                        "rel": "next",
                        "href": f"{self.url}/collections?limit={limit}&offset={offset + limit}",
                    }
                )
            return 200, {
                "collections": [self.collection_out(self.collections[c]) for c in page],
                "links": links,
                "numberMatched": len(ids),
                "numberReturned": len(page),
            }
        if parts[0] == "collections" and len(parts) == 2:
            coll = self.collections.get(parts[1])
            if coll is None:
                return 404, {"code": "NotFoundError", "description": f"{parts[1]} not found"}
            return 200, self.collection_out(coll)
        if parts[0] == "collections" and len(parts) == 4 and parts[2] == "items":
            item = self.items.get(parts[1], {}).get(parts[3])
            if item is None:
                return 404, {"code": "NotFoundError", "description": f"{parts[3]} not found"}
            return 200, self.item_out(item)
        if parts == ["search"]:
            try:
                return 200, self.search(params, method)
            except (ValueError, TypeError) as exc:
                return 400, {"code": "BadRequest", "description": str(exc)}
        return 404, {"code": "NotFoundError", "description": f"{path} not found"}


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _answer(self, method: str) -> None:
        state = self.server.state
        parsed = urlparse(self.path)
        path = parsed.path.rstrip("/") or "/"
        params: dict[str, Any] = {k: v[-1] for k, v in parse_qs(parsed.query).items()}
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            try:
                params.update(json.loads(self.rfile.read(length)))
            except ValueError:
                self._send(400, {"code": "BadRequest", "description": "body is not JSON"})
                return
        with state.lock:
            state.requests.append((method, path, params))
            count = len(state.requests)
        auth = self.headers.get("Authorization")
        if state.forbidden_key is not None and auth == f"Bearer {state.forbidden_key}":
            self._send(403, {"code": "Forbidden", "description": "not allowed"})
            return
        if state.api_key is not None and auth != f"Bearer {state.api_key}":
            self._send(401, {"code": "Unauthorized", "description": "invalid API key"})
            return
        with state.lock:
            failing = state.fail_count > 0 or (
                state.fail_after is not None and count > state.fail_after
            )
            state.fail_count = max(0, state.fail_count - 1)
        if failing:
            self._send(state.fail_status, {"code": "Unavailable", "description": "outage"})
            return
        if state.invalid_json:
            self._send_raw(200, b"<html>this is not JSON {")
            return
        status, doc = state.route(method, path, params)
        self._send(status, doc)

    def _send(self, status: int, doc: Any) -> None:
        self._send_raw(status, json.dumps(doc).encode())

    def _send_raw(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self._answer("GET")

    def do_POST(self) -> None:
        self._answer("POST")


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, state: MatchupApi) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.state = state

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass


@contextlib.contextmanager
def serve(state: MatchupApi | None = None) -> Iterator[MatchupApi]:
    """Run the API in a thread for the duration of the block; yields its state (``.url``)."""
    state = state if state is not None else MatchupApi()
    server = _Server(state)
    host, port = server.server_address[:2]
    state.url = f"http://{host!s}:{port}"
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


# -- a source catalogue as ``eomatch find`` writes it -----------------------------------------


@dataclass
class SourceCatalogue:
    """A catalogue made by a real ``eomatch find`` (products from a local provider STAC API).

    Its products' ``data`` files are served over HTTP at ``data_url`` (from ``files``) while
    the context is open; a few products are "downloaded" into the catalogue (relative local
    ``data``), and one matchup carries an analysis asset (a file inside the catalogue).
    """

    root: Path
    files: Path
    data_url: str
    downloaded: list[str]
    """Products with a local ``data`` file in the catalogue."""
    analysed: str
    """The matchup with the analysis asset ``comparison:2024-03-01``."""


@contextlib.contextmanager
def source_catalogue(tmp: Path) -> Iterator[SourceCatalogue]:
    """Build the source catalogue under ``tmp`` (needs TLEs only: offline)."""
    import shutil

    from eomatch.cli.main import main
    from eomatch.io.catalogue import MatchupCatalogue
    from eomatch.workflows.assets import register_analysis
    from stac_api_server import StacApiServer
    from stac_api_server import serve as serve_provider
    from test_find_e2e import file_server, provider_items, write_config

    files = tmp / "provider-files"
    files.mkdir()
    with file_server(files) as data_url:
        items = provider_items(files, data_url)
        with serve_provider(StacApiServer(items=items)) as provider:
            cfg = write_config(tmp, provider.url)
            if main(["find", "--config", str(cfg)]) != 0:
                raise RuntimeError("eomatch find failed")
        root = tmp / "cat"
        with MatchupCatalogue.open(root) as cat:
            products = sorted(
                {p.id: p for e in cat.get_events() for m in e.matchups for p in m.products}.items()
            )
            downloaded = []
            for pid, product in products[:3]:
                name = Path(urlparse(product.assets["data"]["href"]).path).name
                dest = cat.data_root / "shared" / name
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(files / name, dest)
                cat.set_product_data(pid, dest)
                downloaded.append(pid)
            matchup = cat.get_events()[0].matchups[0]
        result = tmp / "cat" / "analysis" / "cmp.nc"
        result.parent.mkdir()
        result.write_bytes(b"CDF\x01 analysis")
        coll = si.matchup_collection(matchup)
        register_analysis(root, coll, matchup.id, result, date="2024-03-01")
        yield SourceCatalogue(root, files, data_url, downloaded, matchup.id)


def validate_catalogue(root: Path) -> int:
    """``catalogue_helpers.validate_tree``, but extensions without a shipped schema are skipped.

    (Analysis assets declare the STAC file extension, whose schema pystac does not ship.)
    Also checks that links resolve, there are no ``self`` links and the day catalogs are right.
    """
    import jsonschema
    import referencing.exceptions

    from catalogue_helpers import _CORE, _REGISTRY, check_day_catalogs

    n = 0
    for path in Path(root).rglob("*.json"):
        if path.name.startswith(".") or "data" in path.relative_to(root).parts[:1]:
            continue
        data = json.loads(path.read_text())
        for uri in [_CORE[data["type"]], *data.get("stac_extensions", [])]:
            try:
                schema = _REGISTRY.contents(uri)
            except referencing.exceptions.NoSuchResource:
                continue
            cls = jsonschema.validators.validator_for(schema)
            cls(schema, registry=_REGISTRY).validate(data)
        for link in data.get("links", []):
            assert link["rel"] != "self", path
            if not link["href"].startswith(("http://", "https://")):
                assert not link["href"].startswith("/"), path
                assert (path.parent / link["href"]).resolve().is_file(), (path, link)
        n += 1
    check_day_catalogs(Path(root))
    return n


# -- a hostile matchup API: items whose fields try to reach paths outside the catalogue ----------


def _item_link(coll: str, iid: str) -> str:
    return f"collections/{quote(coll, safe='')}/items/{quote(iid, safe='')}"


def add_hostile_items(api: MatchupApi, outside: Path, product_id: str) -> dict[str, list[str]]:
    """Add items whose ids, collections, links, asset hrefs and platform aim at ``outside``.

    ``product_id`` (a product with an http ``data`` asset) is made hostile in place: links and
    asset hrefs that are paths (relative with ``..``, absolute), an asset key with ``../`` and a
    platform property that is a traversal. New matchups (copies of one linking to that product)
    link to products whose id or collection cannot be a file name, and matchups with such ids
    are added too. Returns the hostile ids by kind (``products``, ``matchups``).
    """
    up = "../" * 12 + outside.as_posix().lstrip("/")
    api.verbatim_links = True
    with api.lock:
        products = {c: v for c, v in api.items.items() if si.collection_kind(c) == "product"}
        coll = next(c for c, v in products.items() if product_id in v)
        prod = api.items[coll][product_id]
        matchup = next(
            m
            for c, v in api.items.items()
            if si.collection_kind(c) == "matchup"
            for m in v.values()
            if any(x["href"] == _item_link(coll, product_id) for x in m["links"])
        )
    prod = {
        **prod,
        "properties": {**prod["properties"], "platform": f"{up}/platform"},
        "links": [
            *prod["links"],
            {"rel": "alternate", "href": f"{up}/link-target"},
            {"rel": "license", "href": (outside / "license").as_posix()},
            {"rel": "describedby", "href": (outside / "described").as_uri()},
            {"rel": "via", "href": "https://provider.example/ok"},
        ],
        "assets": {
            **prod["assets"],
            "evil": {"href": f"{up}/asset", "roles": ["metadata"]},
            "abs": {"href": (outside / "abs-asset").as_posix()},
            "../../../key": {"href": "https://provider.example/k"},
        },
    }
    bad_products = [
        (coll, f"{up}/pwned-product"),
        (coll, (outside / "abs-product").as_posix()),
        (coll, "nul\x00id"),
        (coll, "p" * 10_000),
        (coll, ".."),
        (f"../../{outside.name}", "collection-escape"),
    ]
    new: list[dict[str, Any]] = [prod]
    for c, iid in bad_products:
        new.append({**api.items[coll][product_id], "id": iid, "collection": c})
    hostile_matchups = []
    for n, (c, iid) in enumerate(bad_products):
        links = [
            x if x["href"] != _item_link(coll, product_id) else {**x, "href": _item_link(c, iid)}
            for x in matchup["links"]
        ]
        hostile_matchups.append(f"{matchup['id']}-hostile{n}")
        new.append({**matchup, "id": hostile_matchups[-1], "links": links})
    bad_ids = [f"{up}/pwned-matchup", "m" * 10_000, "a\x00b", "catalog", ".hidden"]
    new += [{**matchup, "id": iid} for iid in bad_ids]
    api.load([], new)
    return {"products": [i for _, i in bad_products], "matchups": hostile_matchups + bad_ids}
