"""The API's fast paths give exactly what stac-fastapi-pgstac's own code gives.

:mod:`eomatch.service.fast_links` replaces the per-item link building and
:class:`eomatch.service.app.ItemsClient` the JSON encoding of item answers; both must be
invisible to clients (the end-to-end checks are in test_service_api.py and
test_stac_api_validator.py).
"""

from __future__ import annotations

import asyncio
import json
import random
import string
from typing import Any
from urllib.parse import urljoin

import orjson
import pytest
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from stac_fastapi.pgstac import core
from stac_fastapi.pgstac.models.links import ItemLinks
from starlette.requests import Request

from eomatch.config.settings import ApiSettings
from eomatch.service import fast_links
from eomatch.service.app import GeoJSONResponse, create_app
from eomatch.service.fast_links import FastItemLinks, join

BASES = [
    "http://127.0.0.1:8000/",
    "https://h.example.org/api/",
    "http://h/a/../",
    "http://h//x/",
    "http://h/./",
    "http://h/a",
    "http://h/a?q=1",
    "http://h/#f",
    "http://h",
    "x-custom://h/",
    "",
]
HREFS = [
    "collections/a/items/b",
    "collections/S2_MSI_L1C/items/Sentinel-2A_004999_1",
    "collections/a.b/items/c..d",
    "collections/a/items/..",
    "collections/./x",
    "a//b",
    "a/",
    "../x",
    "./x",
    "/x",
    "?q=1",
    "#f",
    "a:b",
    "c/d:e",
    "a;b",
    "x/.",
    "x/..",
    "...",
    "%2e%2e/x",
    " a",
    "a\tb",
    "é/ü",
    "https://other.example.org/x/../y",
    "file:///mnt/x.json",
    "",
]


@pytest.mark.parametrize("base", BASES)
def test_join_is_urljoin(base: str) -> None:
    rng = random.Random(base)
    alphabet = string.ascii_letters + string.digits + "._~!$&'()*+,=@%/-:;?#[] \\é"
    hrefs = HREFS + ["".join(rng.choices(alphabet, k=rng.randint(0, 14))) for _ in range(3000)]
    hrefs += ["".join(rng.choices("ab./%-", k=rng.randint(0, 10))) for _ in range(3000)]
    for href in hrefs:
        assert _outcome(join, base, href) == _outcome(urljoin, base, href), (base, href)


def _outcome(fn: Any, base: str, href: str) -> str:
    try:
        return str(fn(base, href))
    except ValueError as exc:  # urljoin refuses some hrefs ("//[x"): so must join
        return f"ValueError: {exc}"


class _State:
    router_prefix = ""


class _App:
    state = _State()


def _request(method: str, root_path: str = "", prefix: str = "") -> Request:
    app = _App()
    app.state = _State()
    app.state.router_prefix = prefix
    body = b'{"collections": ["c"], "limit": 10}'

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    scope = {
        "type": "http",
        "method": method,
        "path": f"{root_path}/search",
        "root_path": root_path,
        "query_string": b"limit=10" if method == "GET" else b"",
        "headers": [(b"host", b"api.example.org:8080")],
        "server": ("api.example.org", 8080),
        "scheme": "https",
        "app": app,
    }
    return Request(scope, receive)


def _features() -> list[dict[str, Any]]:
    out = []
    for k, (cid, iid) in enumerate(
        [
            ("S2_MSI_L1C", "Sentinel-2A_004999_1"),
            ("matchup-events-A-vs-B", "A-vs-B_20220118T235129_-43.17_-007.31"),
            ("odd coll", "id with spaces/and?query#frag"),
            ("c", ".."),
            ("S2_MSI_L1C", "Sentinel-2A_004999_2"),  # a collection again: its links made once
        ]
    ):
        out.append(
            {
                "id": iid,
                "collection": cid,
                "links": [
                    {"rel": "derived_from", "href": f"collections/P/items/p{k}", "type": "x"},
                    {"rel": "related", "href": "../elsewhere/./x.json", "matchup:role": "event"},
                    {"rel": "alternate", "href": "https://data.example.org/a.nc"},
                    {"rel": "self", "href": "dropped"},
                    {"rel": "license", "href": "file:///mnt/shared/x"},
                ],
            }
        )
    return out


@pytest.mark.parametrize(
    ("method", "root_path", "prefix"),
    [("POST", "", ""), ("GET", "", ""), ("POST", "/api", ""), ("GET", "", "/stac")],
)
def test_fast_item_links_equal_item_links(method: str, root_path: str, prefix: str) -> None:
    async def links(cls: type[ItemLinks]) -> list[list[dict[str, Any]]]:
        request = _request(method, root_path, prefix)
        return [
            await cls(collection_id=f["collection"], item_id=f["id"], request=request).get_links(
                extra_links=f["links"]
            )
            for f in _features()
        ]

    slow, fast = asyncio.run(links(ItemLinks)), asyncio.run(links(FastItemLinks))
    assert fast == slow
    assert [lk["rel"] for lk in fast[0]][:4] == ["collection", "parent", "root", "self"]
    # links made once per collection are copied: no two items share a link object
    assert not {id(lk) for lk in fast[0]} & {id(lk) for lk in fast[-1]}
    assert FastItemLinks.__dict__["_stock_links"] is True


class _ByParent(FastItemLinks):  # type: ignore[misc]
    def link_parent(self) -> dict[str, Any]:
        return {"rel": "parent", "href": self.resolve(f"p/{self.item_id}")}


class _ByCollectionLink(FastItemLinks):  # type: ignore[misc]
    def collection_link(self, rel: str = "collection") -> dict[str, Any]:
        return {"rel": rel, "href": self.resolve(f"p/{self.item_id}")}


@pytest.mark.parametrize("cls", [_ByParent, _ByCollectionLink])
def test_fast_item_links_follow_an_overridden_link_method(cls: type[FastItemLinks]) -> None:
    """A subclass (or a stac-fastapi-pgstac that changed a ``link_*`` method or the helper they
    use) is not served the links made once per collection: each item's come from its own."""

    async def links() -> list[list[dict[str, Any]]]:
        request = _request("GET")
        return [
            await cls(collection_id="c", item_id=i, request=request).get_links() for i in ("a", "b")
        ]

    got = asyncio.run(links())
    assert [lk["href"] for lks in got for lk in lks if lk["rel"] == "parent"] == [
        "https://api.example.org:8080/p/a",
        "https://api.example.org:8080/p/b",
    ]
    assert cls.__dict__["_stock_links"] is False


def test_the_app_installs_the_fast_links() -> None:
    create_app(ApiSettings(api_mode="external"))
    assert core.ItemLinks is FastItemLinks
    fast_links.install()  # idempotent
    assert core.ItemLinks is FastItemLinks


def test_geojson_response_is_the_same_json() -> None:
    doc = {
        "type": "FeatureCollection",
        "features": [{"id": "é", "properties": {"x": 1.5e-7, "n": None, "b": True}}],
        "links": [],
    }
    response = GeoJSONResponse(doc)
    assert response.media_type == "application/geo+json"
    assert json.loads(response.body) == doc
    assert orjson.loads(response.body) == doc


def test_geojson_response_encodes_what_orjson_refuses_as_before() -> None:
    # a search body's extra members come back in the next link: a 500 in the fuzz test once
    extra = {"x": -19409273918053042811305984, "é": "\U0001d4b3"}
    doc = {"links": [{"rel": "next", "body": extra}]}
    body = GeoJSONResponse(doc).body
    assert json.loads(body) == doc
    assert body == JSONResponse(jsonable_encoder(doc)).body
