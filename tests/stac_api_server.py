"""A small, real STAC API over HTTP for tests: enough of core + item-search for a STAC client.

Runs a stdlib ``ThreadingHTTPServer`` on 127.0.0.1 (free port) in a thread. Loaded with items
shaped like real provider items (Element 84 earth-search Sentinel-2 L1C, USGS Landsat C2L1,
Sentinel-3 OLCI EFR with an antimeridian-split MultiPolygon). Faults can be injected to test
retries: fail the next N requests with a status, answer invalid JSON, answer slowly.
"""

from __future__ import annotations

import contextlib
import copy
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlparse

import cql2
from shapely.geometry import box, shape

STAC_VERSION = "1.0.0"
CONFORMS_TO = [
    "https://api.stacspec.org/v1.0.0/core",
    "https://api.stacspec.org/v1.0.0/item-search",
    "https://api.stacspec.org/v1.0.0/ogcapi-features",
    "https://api.stacspec.org/v1.0.0/collections",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson",
]
S2_COLLECTION = "sentinel-2-l1c"
LANDSAT_COLLECTION = "landsat-c2-l1"
S3_COLLECTION = "sentinel-3-olci-1-efr"
DATA_HOST = "https://data.example.test"

# -- provider-shaped items ------------------------------------------------------------------


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _square(lon: float, lat: float, size: float = 1.0) -> dict[str, Any]:
    return {
        "type": "Polygon",
        "coordinates": [
            [
                [lon, lat],
                [lon + size, lat],
                [lon + size, lat + size],
                [lon, lat + size],
                [lon, lat],
            ]
        ],
    }


def _bbox(geometry: dict[str, Any]) -> list[float]:
    return [float(v) for v in shape(geometry).bounds]


def sentinel2_item(
    platform: str, tile: str, when: datetime, lon: float, lat: float
) -> dict[str, Any]:
    """An earth-search v1 ``sentinel-2-l1c`` item (trimmed, same shape)."""
    short = "S2A" if platform.endswith("a") else "S2B"
    item_id = f"{short}_{tile}_{when:%Y%m%d}_0_L1C"
    geom = _square(lon, lat)
    base = f"{DATA_HOST}/sentinel-s2-l1c/tiles/{tile[:2]}/{tile[2]}/{tile[3:]}/{when:%Y/%-m/%-d}/0"
    return {
        "type": "Feature",
        "stac_version": STAC_VERSION,
        "stac_extensions": [
            "https://stac-extensions.github.io/eo/v1.1.0/schema.json",
            "https://stac-extensions.github.io/projection/v1.1.0/schema.json",
            "https://stac-extensions.github.io/view/v1.0.0/schema.json",
            "https://stac-extensions.github.io/file/v2.1.0/schema.json",
        ],
        "id": item_id,
        "collection": S2_COLLECTION,
        "geometry": geom,
        "bbox": _bbox(geom),
        "properties": {
            "datetime": _iso(when),
            "created": _iso(when + timedelta(hours=5)),
            "platform": platform,
            "constellation": "sentinel-2",
            "instruments": ["msi"],
            "eo:cloud_cover": 12.5,
            "proj:epsg": 32633,
            "mgrs:utm_zone": int(tile[:2]),
            "mgrs:latitude_band": tile[2],
            "mgrs:grid_square": tile[3:],
            "view:sun_azimuth": 160.2,
            "view:sun_elevation": 55.1,
            "s2:product_uri": f"{short}_MSIL1C_{when:%Y%m%dT%H%M%S}_N0400_R022_T{tile}.SAFE",
            "s2:processing_baseline": "04.00",
            "s2:degraded_msi_data_percentage": 0,
        },
        "links": [
            {"rel": "self", "href": f"{DATA_HOST}/collections/{S2_COLLECTION}/items/{item_id}"},
            {"rel": "collection", "href": f"{DATA_HOST}/collections/{S2_COLLECTION}"},
        ],
        "assets": {
            "blue": {
                "href": f"{base}/B02.jp2",
                "type": "image/jp2",
                "title": "Blue (band 2)",
                "roles": ["data"],
                "eo:bands": [{"name": "B02", "common_name": "blue"}],
                "raster:bands": [{"nodata": 0, "data_type": "uint16"}],
            },
            "thumbnail": {
                "href": f"{base}/preview.jpg",
                "type": "image/jpeg",
                "roles": ["thumbnail"],
            },
            "granule_metadata": {
                "href": f"{base}/metadata.xml",
                "type": "application/xml",
                "roles": ["metadata"],
                "file:checksum": "1220" + "ab" * 32,
                "file:size": 512_301,
            },
        },
    }


def landsat_item(
    platform: str, path: int, row: int, when: datetime, lon: float, lat: float
) -> dict[str, Any]:
    """A USGS ``landsat-c2-l1`` item (trimmed, same shape)."""
    sensor = "LC09" if platform.endswith("9") else "LC08"
    item_id = f"{sensor}_L1TP_{path:03d}{row:03d}_{when:%Y%m%d}_{when:%Y%m%d}_02_T1"
    geom = _square(lon, lat, 1.8)
    base = (
        f"{DATA_HOST}/collection02/level-1/standard/oli-tirs/{when:%Y}/{path:03d}/{row:03d}"
        f"/{item_id}"
    )
    return {
        "type": "Feature",
        "stac_version": STAC_VERSION,
        "stac_extensions": [
            "https://landsat.usgs.gov/stac/landsat-extension/v1.1.1/schema.json",
            "https://stac-extensions.github.io/view/v1.0.0/schema.json",
            "https://stac-extensions.github.io/projection/v1.0.0/schema.json",
            "https://stac-extensions.github.io/eo/v1.0.0/schema.json",
        ],
        "id": item_id,
        "collection": LANDSAT_COLLECTION,
        "description": "Landsat Collection 2 Level-1 Product",
        "geometry": geom,
        "bbox": _bbox(geom),
        "properties": {
            "datetime": _iso(when),
            "eo:cloud_cover": 3.1,
            "view:sun_azimuth": 148.4,
            "view:sun_elevation": 58.9,
            "platform": platform,
            "instruments": ["OLI", "TIRS"],
            "view:off_nadir": 0,
            "landsat:cloud_cover_land": 2.9,
            "landsat:wrs_type": "2",
            "landsat:wrs_path": f"{path:03d}",
            "landsat:wrs_row": f"{row:03d}",
            "landsat:scene_id": f"{sensor}{path:03d}{row:03d}{when:%Y%j}LGN00",
            "landsat:collection_category": "T1",
            "landsat:collection_number": "02",
            "landsat:correction": "L1TP",
            "accuracy:geometric_rmse": 5.2,
            "proj:epsg": 32633,
            "proj:shape": [7811, 7681],
        },
        "links": [
            {
                "rel": "self",
                "href": f"{DATA_HOST}/collections/{LANDSAT_COLLECTION}/items/{item_id}",
            },
        ],
        "assets": {
            "red": {
                "title": "Red Band (B4)",
                "href": f"{base}/{item_id}_B4.TIF",
                "type": "image/vnd.stac.geotiff; cloud-optimized=true",
                "roles": ["data"],
                "eo:bands": [{"name": "B4", "common_name": "red"}],
            },
            "MTL.json": {
                "title": "Product Metadata File (json)",
                "href": f"{base}/{item_id}_MTL.json",
                "type": "application/json",
                "roles": ["metadata"],
            },
        },
    }


def sentinel3_item(platform: str, when: datetime, geometry: dict[str, Any]) -> dict[str, Any]:
    """A Sentinel-3 OLCI Level-1 EFR item; ``datetime`` null, interval in start/end."""
    short = "S3A" if platform.endswith("a") else "S3B"
    end = when + timedelta(minutes=3)
    item_id = (
        f"{short}_OL_1_EFR____{when:%Y%m%dT%H%M%S}_{end:%Y%m%dT%H%M%S}"
        "_0180_085_186_1800_PS1_O_NR_003"
    )
    return {
        "type": "Feature",
        "stac_version": STAC_VERSION,
        "stac_extensions": ["https://stac-extensions.github.io/file/v2.1.0/schema.json"],
        "id": item_id,
        "collection": S3_COLLECTION,
        "geometry": geometry,
        "bbox": _bbox(geometry),
        "properties": {
            "datetime": None,
            "start_datetime": _iso(when),
            "end_datetime": _iso(end),
            "platform": platform,
            "constellation": "sentinel-3",
            "instruments": ["OLCI"],
            "s3:product_type": "OL_1_EFR___",
            "sat:orbit_state": "descending",
            "sat:absolute_orbit": 33000,
        },
        "links": [],
        "assets": {
            "data": {
                "href": f"{DATA_HOST}/s3/{item_id}.SEN3.zip",
                "type": "application/zip",
                "roles": ["data"],
                "file:checksum": "d50110" + "cd" * 16,
                "file:size": 700_000_000,
            },
        },
    }


ANTIMERIDIAN_FOOTPRINT: dict[str, Any] = {
    "type": "MultiPolygon",
    "coordinates": [
        [[[170.0, 60.0], [180.0, 60.0], [180.0, 70.0], [170.0, 70.0], [170.0, 60.0]]],
        [[[-180.0, 60.0], [-172.0, 60.0], [-172.0, 70.0], [-180.0, 70.0], [-180.0, 60.0]]],
    ],
}

T0 = datetime(2022, 5, 1, 10, 0, tzinfo=UTC)


def default_items() -> list[dict[str, Any]]:
    """The standard test collections' content.

    * ``sentinel-2-l1c``: 12 S2A + 6 S2B items over 10-15 E, 45-48 N on May 1-12 2022, plus
      3 S2A items far away (Australia) and 2 S2A items in June.
    * ``landsat-c2-l1``: 4 LANDSAT_9 + 2 LANDSAT_8 items over Europe in May 2022.
    * ``sentinel-3-olci-1-efr``: 2 sentinel-3a items on a MultiPolygon across the antimeridian,
      1 sentinel-3b item there, 1 sentinel-3a item over Europe.
    """
    items: list[dict[str, Any]] = []
    for i in range(12):
        items.append(
            sentinel2_item(
                "sentinel-2a",
                f"33T{'UVWXYZ'[i % 6]}N",
                T0 + timedelta(days=i),
                10 + i % 5,
                45 + i % 3,
            )
        )
    for i in range(6):
        items.append(
            sentinel2_item(
                "sentinel-2b", f"32T{'NPQRST'[i]}M", T0 + timedelta(days=i, hours=1), 10 + i % 5, 46
            )
        )
    for i in range(3):
        items.append(
            sentinel2_item("sentinel-2a", f"55H{'BCD'[i]}A", T0 + timedelta(days=i), 140 + i, -30)
        )
    for i in range(2):
        items.append(
            sentinel2_item("sentinel-2a", f"33TU{'AB'[i]}", T0 + timedelta(days=35 + i), 11, 46)
        )
    for i in range(4):
        items.append(
            landsat_item(
                "LANDSAT_9", 192, 26 + i, T0 + timedelta(days=2 * i, minutes=5), 11 + i, 46
            )
        )
    for i in range(2):
        items.append(landsat_item("LANDSAT_8", 193, 27 + i, T0 + timedelta(days=2 * i + 1), 12, 46))
    for i in range(2):
        items.append(
            sentinel3_item("sentinel-3a", T0 + timedelta(days=i, hours=12), ANTIMERIDIAN_FOOTPRINT)
        )
    items.append(sentinel3_item("sentinel-3b", T0 + timedelta(hours=13), ANTIMERIDIAN_FOOTPRINT))
    items.append(sentinel3_item("sentinel-3a", T0 + timedelta(days=3), _square(10, 45, 10)))
    return items


# -- the server -----------------------------------------------------------------------------


@dataclass
class StacApiServer:
    """The server's state: its items, the requests it saw and the faults to inject."""

    items: list[dict[str, Any]] = field(default_factory=default_items)
    url: str = ""
    requests: list[tuple[str, str]] = field(default_factory=list)
    """(method, path) of every request, in arrival order."""
    authorization: list[str | None] = field(default_factory=list)
    """The Authorization header of every request."""
    search_bodies: list[dict[str, Any]] = field(default_factory=list)
    """Parsed parameters of every /search request."""
    fail_count: int = 0
    """The next ``fail_count`` matching requests answer ``fail_status``."""
    fail_status: int = 503
    fail_retry_after: str | None = None
    """``Retry-After`` sent with injected faults (a 429 asking to wait)."""
    fault_path: str = ""
    """Only paths starting with this are affected by faults ("" = every path)."""
    invalid_json: bool = False
    delay_s: float = 0.0
    search_methods: tuple[str, ...] = ("GET", "POST")
    extensions: tuple[str, ...] = ()
    """Conformance classes added to the core ones (e.g. the filter and sort extensions, which
    this server then implements: CQL2-JSON ``filter`` through the cql2 library, ``sortby``)."""
    """Methods ``/search`` accepts (and the landing page lists); others answer 405."""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def fail_next(
        self, count: int, status: int = 503, path: str = "", retry_after: str | None = None
    ) -> None:
        """Answer the next ``count`` requests (under ``path``) with HTTP ``status`` (and
        ``Retry-After: retry_after`` if given)."""
        with self.lock:
            self.fail_count, self.fail_status, self.fault_path = count, status, path
            self.fail_retry_after = retry_after

    def search_requests(self) -> int:
        """How many /search requests arrived (pages fetched, retries included)."""
        return sum(1 for _, p in self.requests if p == "/search")

    # -- the API ----------------------------------------------------------------------------

    def collections(self) -> list[str]:
        return sorted({str(i["collection"]) for i in self.items})

    def landing(self) -> dict[str, Any]:
        links = [
            {"rel": "self", "href": f"{self.url}/", "type": "application/json"},
            {"rel": "root", "href": f"{self.url}/", "type": "application/json"},
            {"rel": "conformance", "href": f"{self.url}/conformance", "type": "application/json"},
            {"rel": "data", "href": f"{self.url}/collections", "type": "application/json"},
            *(
                {
                    "rel": "search",
                    "href": f"{self.url}/search",
                    "type": "application/geo+json",
                    "method": m,
                }
                for m in self.search_methods
            ),
        ]
        links += [
            {"rel": "child", "href": f"{self.url}/collections/{c}", "type": "application/json"}
            for c in self.collections()
        ]
        return {
            "type": "Catalog",
            "stac_version": STAC_VERSION,
            "id": "test-stac-api",
            "title": "eomatch test STAC API",
            "description": "Local STAC API for eomatch tests",
            "conformsTo": CONFORMS_TO + list(self.extensions),
            "links": links,
        }

    def collection(self, cid: str) -> dict[str, Any]:
        return {
            "type": "Collection",
            "stac_version": STAC_VERSION,
            "id": cid,
            "description": f"{cid} (test)",
            "license": "proprietary",
            "extent": {
                "spatial": {"bbox": [[-180.0, -90.0, 180.0, 90.0]]},
                "temporal": {"interval": [["2015-06-27T00:00:00Z", None]]},
            },
            "links": [
                {"rel": "self", "href": f"{self.url}/collections/{cid}"},
                {"rel": "root", "href": f"{self.url}/"},
                {"rel": "parent", "href": f"{self.url}/"},
                {"rel": "items", "href": f"{self.url}/collections/{cid}/items"},
            ],
        }

    def search(self, params: dict[str, Any], method: str) -> dict[str, Any]:
        collections = params.get("collections")
        if isinstance(collections, str):
            collections = collections.split(",")
        bbox = params.get("bbox")
        if isinstance(bbox, str):
            bbox = [float(v) for v in bbox.split(",")]
        interval = _interval(params.get("datetime"))
        limit = max(1, min(int(params.get("limit") or 10), 1000))
        expr = None
        if params.get("filter") is not None and "filter" in " ".join(self.extensions):
            raw = params["filter"]
            expr = cql2.Expr(json.loads(raw) if isinstance(raw, str) else raw)
        offset = int(params.get("token") or 0)
        hits = []
        for item in self.items:
            if collections and item["collection"] not in collections:
                continue
            if bbox is not None and not shape(item["geometry"]).intersects(box(*bbox)):
                continue
            if interval is not None and not _overlaps(item, interval):
                continue
            if expr is not None and not _matches(expr, item):
                continue
            hits.append(item)
        hits.sort(key=lambda i: (_item_times(i)[0], i["id"]))
        sortby = params.get("sortby")
        if isinstance(sortby, list) and sortby and "sort" in " ".join(self.extensions):
            field_name = str(sortby[0]["field"]).removeprefix("properties.")
            hits.sort(
                key=lambda i: (str(i["properties"].get(field_name) or ""), i["id"]),
                reverse=sortby[0].get("direction") == "desc",
            )
        page = hits[offset : offset + limit]
        links: list[dict[str, Any]] = [{"rel": "root", "href": f"{self.url}/"}]
        if offset + limit < len(hits):
            nxt = {k: v for k, v in params.items() if k != "token"}
            nxt["token"] = str(offset + limit)
            if method == "POST":
                links.append(
                    {
                        "rel": "next",
                        "href": f"{self.url}/search",
                        "method": "POST",
                        "body": nxt,
                        "merge": False,
                    }
                )
            else:
                query = {
                    k: v if isinstance(v, str) else ",".join(map(str, v)) for k, v in nxt.items()
                }
                links.append(
                    {
                        "rel": "next",
                        "href": f"{self.url}/search?{urlencode(query)}",
                        "method": "GET",
                    }
                )
        return {
            "type": "FeatureCollection",
            "features": copy.deepcopy(page),
            "links": links,
            "numberMatched": len(hits),
            "numberReturned": len(page),
        }

    def route(self, method: str, path: str, params: dict[str, Any]) -> tuple[int, Any]:
        if path in ("", "/"):
            return 200, self.landing()
        if path == "/conformance":
            return 200, {"conformsTo": CONFORMS_TO}
        if path == "/collections":
            return 200, {
                "collections": [self.collection(c) for c in self.collections()],
                "links": [{"rel": "self", "href": f"{self.url}/collections"}],
            }
        if path.startswith("/collections/") and path.count("/") == 2:
            cid = path.rsplit("/", 1)[1]
            if cid in self.collections():
                return 200, self.collection(cid)
            return 404, {"code": "NotFoundError", "description": f"Collection {cid} not found"}
        if path == "/search":
            if method not in self.search_methods:
                return 405, {"code": "MethodNotAllowed", "description": f"{method} /search"}
            with self.lock:
                self.search_bodies.append(dict(params))
            try:
                return 200, self.search(params, method)
            except (ValueError, TypeError) as exc:
                return 400, {"code": "BadRequest", "description": str(exc)}
        return 404, {"code": "NotFoundError", "description": f"{path} not found"}

    def fault(self, path: str) -> int | None:
        """The status to fail this request with, if a fault is armed for it."""
        with self.lock:
            if self.fail_count > 0 and path.startswith(self.fault_path):
                self.fail_count -= 1
                return self.fail_status
        return None


def _matches(expr: Any, item: dict[str, Any]) -> bool:
    try:
        return bool(expr.matches(item))
    except Exception:  # a property the item lacks
        return False


def _parse_time(text: str) -> datetime | None:
    if text in ("", ".."):
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _interval(value: Any) -> tuple[datetime | None, datetime | None] | None:
    if not value:
        return None
    text = str(value)
    if "/" in text:
        a, b = text.split("/", 1)
        return _parse_time(a), _parse_time(b)
    t = _parse_time(text)
    return t, t


def _item_times(item: dict[str, Any]) -> tuple[datetime, datetime]:
    p = item["properties"]
    start = p.get("start_datetime") or p["datetime"]
    end = p.get("end_datetime") or p["datetime"]
    return _parse_time(start) or T0, _parse_time(end) or T0


def _overlaps(item: dict[str, Any], interval: tuple[datetime | None, datetime | None]) -> bool:
    start, end = _item_times(item)
    lo, hi = interval
    return (lo is None or end >= lo) and (hi is None or start <= hi)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # else keep-alive answers wait ~40 ms on delayed ACKs

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _answer(self, method: str) -> None:
        state = self.server.state
        parsed = urlparse(self.path)
        path = parsed.path.rstrip("/") or "/"
        with state.lock:
            state.requests.append((method, path))
            state.authorization.append(self.headers.get("Authorization"))
        params: dict[str, Any] = {k: v[-1] for k, v in parse_qs(parsed.query).items()}
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            body = self.rfile.read(length)
            try:
                params.update(json.loads(body))
            except ValueError:
                self._send(400, b'{"code": "BadRequest"}')
                return
        if state.delay_s:
            time.sleep(state.delay_s)
        status = state.fault(path)
        if status is not None:
            self._send(
                status,
                json.dumps({"code": "Unavailable", "description": "injected fault"}).encode(),
                {"Retry-After": state.fail_retry_after} if state.fail_retry_after else None,
            )
            return
        status, doc = state.route(method, path, params)
        if state.invalid_json and path.startswith(state.fault_path):
            self._send(200, b"<html>this is not JSON {")
            return
        self._send(status, json.dumps(doc).encode())

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self._answer("GET")

    def do_POST(self) -> None:
        self._answer("POST")


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, state: Any, handler: type[BaseHTTPRequestHandler] | None = None) -> None:
        super().__init__(("127.0.0.1", 0), handler or _Handler)
        self.state = state

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients hanging up on slow answers are expected in the timeout tests


@contextlib.contextmanager
def serve(state: StacApiServer | None = None) -> Iterator[StacApiServer]:
    """Run a STAC API in a thread for the duration of the block; yields its state (``.url``)."""
    state = state if state is not None else StacApiServer()
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


# -- a misbehaving server: every answer scripted by the test ---------------------------------


@dataclass
class Reply:
    """One scripted answer. ``body`` is sent at once, then ``trickle`` bytes one per
    ``trickle_s`` seconds, then ``endless`` chunks forever (chunked encoding) if set."""

    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    trickle: bytes = b""
    trickle_s: float = 0.0
    endless: bytes = b""


def json_reply(doc: Any, status: int = 200, **headers: str) -> Reply:
    return Reply(status, json.dumps(doc).encode(), {"Content-Type": "application/json", **headers})


@dataclass
class Seen:
    """What a scripted server received: one entry per request."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes


@dataclass
class ScriptedServer:
    """A hostile or broken server: ``script(seen) -> Reply`` decides every answer."""

    script: Any = None
    url: str = ""
    seen: list[Seen] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def headers_of(self, path: str) -> list[dict[str, str]]:
        """Headers of every request to ``path``."""
        return [s.headers for s in self.seen if s.path == path]


class _ScriptedHandler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _answer(self, method: str) -> None:
        state = self.server.state
        parsed = urlparse(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        seen = Seen(
            method,
            parsed.path,
            {k: v[-1] for k, v in parse_qs(parsed.query).items()},
            {k.lower(): v for k, v in self.headers.items()},
            body,
        )
        with state.lock:
            state.seen.append(seen)
        reply: Reply = state.script(seen)
        try:
            self.send_response(reply.status)
            for k, v in reply.headers.items():
                self.send_header(k, v)
            if reply.endless:
                self.send_header("Transfer-Encoding", "chunked")
            else:
                self.send_header("Content-Length", str(len(reply.body) + len(reply.trickle)))
            self.end_headers()
            if reply.endless:
                while True:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(reply.endless), reply.endless))
            self.wfile.write(reply.body)
            self.wfile.flush()
            for i in range(len(reply.trickle)):
                time.sleep(reply.trickle_s)
                self.wfile.write(reply.trickle[i : i + 1])
                self.wfile.flush()
        except OSError:  # the client hung up: what a bounded client does
            self.close_connection = True

    def do_GET(self) -> None:
        self._answer("GET")

    def do_POST(self) -> None:
        self._answer("POST")


@contextlib.contextmanager
def serve_scripted(script: Any) -> Iterator[ScriptedServer]:
    """Run a scripted server (``script(seen) -> Reply``); yields its state (``.url``)."""
    state = ScriptedServer(script)
    server = _Server(state, _ScriptedHandler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
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
