"""A small, real OpenSearch (Geo/Time/EO) server over HTTP for tests, shaped like CDSE's resto.

``/describe.xml`` is an OpenSearch description with two result templates (GeoJSON
``search.json`` and Atom ``search.atom``), as the Copernicus Data Space catalogue publishes
them: ``maxRecords={count?}``, ``index={startIndex?}``, ``page={startPage?}``,
``box={geo:box?}``, ``startDate={time:start?}``, ``completionDate={time:end?}``,
``sortParam``/``sortOrder`` in the resto namespace. The time prefix is declared as ``dt``
(not ``time``) so a client must resolve prefixes through the document's namespaces.

Products are Sentinel-2 L2A entries with CDSE's properties (``productType`` S2MSI2A,
``platform`` S2A/S2B, ``cloudCover``, ``tileId``, ``orbitNumber``, ``services.download``,
``thumbnail``), answered in time order. GeoJSON pages carry a ``next`` link in
``properties.links`` (unless ``next_links`` is off); Atom pages have none, so a client pages
by ``startIndex``. Every request is recorded; the next N requests can fail with a status.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlencode, urlparse
from xml.sax.saxutils import escape, quoteattr

from stac_api_server import _Server

T0 = datetime(2022, 5, 1, 10, 10, 31, tzinfo=UTC)
RESTO_NS = "http://mapshup.info/-/resto/2.0/"


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def s2_product(i: int, when: datetime, lon: float, lat: float, cloud: float) -> dict[str, Any]:
    """A CDSE Sentinel-2 L2A product (the fields a resto GeoJSON feature has)."""
    sat = "S2A" if i % 2 == 0 else "S2B"
    tile = f"33T{'UVWXYZ'[i % 6]}N"
    title = (
        f"{sat}_MSIL2A_{when:%Y%m%dT%H%M%S}_N0400_R{22 + i % 100:03d}_T{tile}_"
        f"{when + timedelta(hours=2):%Y%m%dT%H%M%S}.SAFE"
    )
    uid = f"{i:08x}-5b2e-4c1a-9f0e-{i:012x}"
    return {
        "id": uid,
        "title": title,
        "start": when,
        "end": when + timedelta(seconds=10),
        "lon": lon,
        "lat": lat,
        "properties": {
            "collection": "SENTINEL-2",
            "status": "ONLINE",
            "parentIdentifier": "urn:ogc:def:EOP:ESA::SENTINEL-2:",
            "title": title,
            "productIdentifier": f"/eodata/Sentinel-2/MSI/L2A/{when:%Y/%m/%d}/{title}",
            "startDate": _iso(when),
            "completionDate": _iso(when + timedelta(seconds=10)),
            "productType": "S2MSI2A",
            "processingLevel": "S2MSI2A",
            "platform": sat,
            "instrument": "MSI",
            "sensorMode": "INS-NOBS",
            "orbitNumber": 35000 + i,
            "relativeOrbitNumber": 22 + i % 100,
            "cloudCover": cloud,
            "tileId": tile,
            "published": _iso(when + timedelta(hours=3)),
            "updated": _iso(when + timedelta(hours=3)),
            "thumbnail": f"https://datahub.example.test/thumbs/{uid}.jpg",
            "services": {
                "download": {
                    "url": f"https://zipper.example.test/odata/v1/Products({uid})/$value",
                    "mimeType": "application/octet-stream",
                    "size": 1_100_000_000 + i,
                }
            },
        },
    }


def default_products(n: int = 12, start: datetime = T0) -> list[dict[str, Any]]:
    """``n`` products a day apart over 10-15 E, 45-47 N; cloud cover 5, 15, 25, ... wrapping."""
    return [
        s2_product(i, start + timedelta(days=i), 10 + i % 5, 45 + i % 3, float(5 + (i * 10) % 90))
        for i in range(n)
    ]


@dataclass
class OpenSearchServer:
    """State: products, requests seen, faults, paging behaviour."""

    products: list[dict[str, Any]] = field(default_factory=default_products)
    url: str = ""
    seen: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    """(path, query) of every request."""
    next_links: bool = True
    by_page: bool = False
    max_count: int = 2000
    """The most entries a page holds, whatever ``maxRecords`` asks (resto caps it)."""
    """The templates offer ``startPage`` only (no ``startIndex``): clients page by number."""
    fail_count: int = 0
    fail_status: int = 503
    retry_after: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def fail_next(self, count: int, status: int = 503, retry_after: str | None = None) -> None:
        with self.lock:
            self.fail_count, self.fail_status, self.retry_after = count, status, retry_after

    def searches(self) -> list[dict[str, str]]:
        """Query parameters of every search request."""
        return [q for p, q in self.seen if p.startswith("/search")]

    def describe(self) -> bytes:
        index = "" if self.by_page else "&index={startIndex?}"
        params = (
            f"maxRecords={{count?}}{index}&page={{startPage?}}&box={{geo:box?}}"
            "&startDate={dt:start?}&completionDate={dt:end?}&productType={eo:productType?}"
            "&cloudCover={eo:cloudCover?}&sortParam={resto:sortParam?}"
            "&sortOrder={resto:sortOrder?}&lang={language?}"
        )
        return f"""<?xml version="1.0" encoding="UTF-8"?>
<OpenSearchDescription xmlns="http://a9.com/-/spec/opensearch/1.1/"
    xmlns:geo="http://a9.com/-/opensearch/extensions/geo/1.0/"
    xmlns:dt="http://a9.com/-/opensearch/extensions/time/1.0/"
    xmlns:eo="http://a9.com/-/opensearch/extensions/eo/1.0/"
    xmlns:parameters="http://a9.com/-/spec/opensearch/extensions/parameters/1.0/"
    xmlns:resto="{RESTO_NS}">
  <ShortName>Sentinel2</ShortName>
  <Description>Sentinel-2 products (test server shaped like CDSE resto)</Description>
  <Tags>Sentinel-2 S2 MSI</Tags>
  <Url type="application/json" rel="results" indexOffset="1" pageOffset="1"
       template={quoteattr(self.url + "/search.json?" + params)}>
    <parameters:Parameter name="startDate" value="{{dt:start}}"/>
  </Url>
  <Url type="application/atom+xml" rel="results" indexOffset="1" pageOffset="1"
       template={quoteattr(self.url + "/search.atom?" + params)}/>
  <Url type="application/opensearchdescription+xml" rel="self"
       template={quoteattr(self.url + "/describe.xml")}/>
</OpenSearchDescription>
""".encode()

    def hits(self, q: dict[str, str]) -> list[dict[str, Any]]:
        lo = _time(q.get("startDate"))
        hi = _time(q.get("completionDate"))
        box = [float(v) for v in q["box"].split(",")] if q.get("box") else None
        out = []
        for p in self.products:
            if lo is not None and p["end"] < lo:
                continue
            if hi is not None and p["start"] > hi:
                continue
            if box is not None and not (
                box[0] <= p["lon"] + 1
                and p["lon"] <= box[2]
                and box[1] <= p["lat"] + 1
                and p["lat"] <= box[3]
            ):
                continue
            if q.get("productType") and p["properties"]["productType"] != q["productType"]:
                continue
            out.append(p)
        out.sort(key=lambda p: (p["start"], p["id"]), reverse=q.get("sortOrder") == "descending")
        return out

    def window(self, q: dict[str, str]) -> tuple[list[dict[str, Any]], int, int, int]:
        hits = self.hits(q)
        count = max(1, min(int(q.get("maxRecords") or 20), self.max_count))
        start = int(q["index"]) - 1 if q.get("index") else (int(q.get("page") or 1) - 1) * count
        return hits[start : start + count], start, count, len(hits)

    def geojson(self, q: dict[str, str]) -> dict[str, Any]:
        page, start, count, total = self.window(q)
        links = [{"rel": "self", "href": f"{self.url}/search.json?{urlencode(q)}"}]
        if self.next_links and start + count < total:
            nxt = {**q, "index": str(start + count + 1)}
            nxt.pop("page", None)
            links.append({"rel": "next", "href": f"{self.url}/search.json?{urlencode(nxt)}"})
        feats = []
        for p in page:
            lon, lat = p["lon"], p["lat"]
            feats.append(
                {
                    "type": "Feature",
                    "id": p["id"],
                    "geometry": {
                        "type": "Polygon",
                        "coordinates": [
                            [
                                [lon, lat],
                                [lon + 1, lat],
                                [lon + 1, lat + 1],
                                [lon, lat + 1],
                                [lon, lat],
                            ]
                        ],
                    },
                    "properties": {
                        **p["properties"],
                        "links": [
                            {
                                "rel": "self",
                                "type": "application/json",
                                "href": f"{self.url}/collections/Sentinel2/{p['id']}.json",
                            }
                        ],
                    },
                }
            )
        return {
            "type": "FeatureCollection",
            "properties": {
                "id": "test-search",
                "totalResults": total,
                "exactCount": True,
                "startIndex": start + 1,
                "itemsPerPage": count,
                "links": links,
            },
            "features": feats,
        }

    def atom(self, q: dict[str, str]) -> bytes:
        page, start, count, total = self.window(q)
        entries = []
        for p in page:
            props = p["properties"]
            lon, lat = p["lon"], p["lat"]
            ring = f"{lat} {lon} {lat} {lon + 1} {lat + 1} {lon + 1} {lat + 1} {lon} {lat} {lon}"
            entries.append(
                f"""  <entry>
    <id>{self.url}/collections/Sentinel2/{p["id"]}</id>
    <title>{escape(p["title"])}</title>
    <published>{props["published"]}</published>
    <updated>{props["updated"]}</updated>
    <dc:identifier>{p["id"]}</dc:identifier>
    <dc:date>{props["startDate"]}/{props["completionDate"]}</dc:date>
    <georss:polygon>{ring}</georss:polygon>
    <eo:cloudCover>{props["cloudCover"]}</eo:cloudCover>
    <eo:platform>{props["platform"]}</eo:platform>
    <eo:productType>{props["productType"]}</eo:productType>
    <eo:orbitNumber>{props["orbitNumber"]}</eo:orbitNumber>
    <resto:tileId>{props["tileId"]}</resto:tileId>
    <link rel="enclosure" type="application/octet-stream" title="Download"
          href={quoteattr(props["services"]["download"]["url"])}/>
    <link rel="icon" type="image/jpeg" href={quoteattr(props["thumbnail"])}/>
    <link rel="alternate" type="application/json"
          href="{self.url}/collections/Sentinel2/{p["id"]}.json"/>
  </entry>"""
            )
        return f"""<?xml version="1.0" encoding="UTF-8"?>
<feed xmlns="http://www.w3.org/2005/Atom"
      xmlns:os="http://a9.com/-/spec/opensearch/1.1/"
      xmlns:dc="http://purl.org/dc/elements/1.1/"
      xmlns:georss="http://www.georss.org/georss"
      xmlns:eo="http://a9.com/-/opensearch/extensions/eo/1.0/"
      xmlns:resto="{RESTO_NS}">
  <id>{self.url}/search.atom</id>
  <title>Sentinel2 search</title>
  <updated>{_iso(T0)}</updated>
  <os:totalResults>{total}</os:totalResults>
  <os:startIndex>{start + 1}</os:startIndex>
  <os:itemsPerPage>{count}</os:itemsPerPage>
{chr(10).join(entries)}
</feed>
""".encode()


def _time(text: str | None) -> datetime | None:
    if not text:
        return None
    t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return t if t.tzinfo else t.replace(tzinfo=UTC)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        state: OpenSearchServer = self.server.state
        parsed = urlparse(self.path)
        q = {k: v[-1] for k, v in parse_qs(parsed.query).items()}
        with state.lock:
            state.seen.append((parsed.path, q))
            fail = state.fail_count > 0
            if fail:
                state.fail_count -= 1
        if fail:
            headers = {"Retry-After": state.retry_after} if state.retry_after else {}
            self._send(state.fail_status, b"busy", "text/plain", headers)
        elif parsed.path == "/describe.xml":
            self._send(200, state.describe(), "application/opensearchdescription+xml")
        elif parsed.path == "/search.json":
            self._send(200, json.dumps(state.geojson(q)).encode(), "application/geo+json")
        elif parsed.path == "/search.atom":
            self._send(200, state.atom(q), "application/atom+xml")
        else:
            self._send(404, b'{"ErrorMessage": "not found"}', "application/json")

    def _send(
        self, status: int, body: bytes, ctype: str, headers: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)


@contextlib.contextmanager
def serve(state: OpenSearchServer | None = None) -> Iterator[OpenSearchServer]:
    """Run the server in a thread for the block; yields its state (``.url``)."""
    state = state if state is not None else OpenSearchServer()
    server = _Server(state, _Handler)
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
