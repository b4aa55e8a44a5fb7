"""STAC Browser, built from the pinned npm package, served by the real gateway, seen by Chromium.

The external upstream is the local test STAC API (tests/stac_api_server.py) extended with the
item routes STAC Browser uses and a matchup collection whose item links its products
(``derived_from``) and its event (``related``), as eomatch's matchup items do.
"""

from __future__ import annotations

import copy
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from browser_helpers import chromium_binary, render_dom, screenshot
from eomatch.service.browser import (
    BrowserBuildError,
    browser_dist,
    render_runtime_config,
    write_runtime_config,
)
from eomatch.service.gateway import Gateway
from eomatch.service.stack import free_port
from gateway_helpers import echo_upstream, world_readable_tmpdir
from stac_api_server import S2_COLLECTION, StacApiServer, serve

MATCHUPS = "matchups-s2a-vs-landsat9"
EVENTS = "events-s2a-vs-landsat9"
MATCHUP_TITLE = "Sentinel-2A vs Landsat-9 matchups"
EVENT_TITLE = "Sentinel-2A vs Landsat-9 crossover events"
MATCHUP_ID = "mu-S2A-LS9-20220503T101500"
EVENT_ID = "ev-S2A-LS9-20220503T101200"
TITLES = {MATCHUPS: MATCHUP_TITLE, EVENTS: EVENT_TITLE}


@dataclass
class MatchupApi(StacApiServer):
    """The test STAC API plus item routes, collection titles and a matchup with its links."""

    def __post_init__(self) -> None:
        s2 = [i for i in self.items if i["collection"] == S2_COLLECTION][:2]
        self.products = [i["id"] for i in s2]
        geometry = copy.deepcopy(s2[0]["geometry"])
        base: dict[str, Any] = {
            "type": "Feature",
            "stac_version": "1.0.0",
            "geometry": geometry,
            "bbox": [10.0, 45.0, 11.0, 46.0],
            "assets": {},
        }
        self.items.append(
            {
                **base,
                "id": EVENT_ID,
                "collection": EVENTS,
                "properties": {"datetime": "2022-05-03T10:12:00Z", "eomatch:kind": "event"},
                "links": [],
            }
        )
        self.items.append(
            {
                **base,
                "id": MATCHUP_ID,
                "collection": MATCHUPS,
                "properties": {
                    "datetime": "2022-05-03T10:15:00Z",
                    "matchup:platforms": ["Sentinel-2A", "Landsat-9"],
                    "matchup:time_diff_abs": 420.0,
                    "eomatch:kind": "matchup",
                },
                "links": [],  # filled per request (they carry the public URL)
            }
        )

    def _item_links(self, item: dict[str, Any]) -> list[dict[str, Any]]:
        cid = item["collection"]
        links = [
            {"rel": "self", "href": f"{self.url}/collections/{cid}/items/{item['id']}"},
            {"rel": "collection", "href": f"{self.url}/collections/{cid}"},
            {"rel": "parent", "href": f"{self.url}/collections/{cid}"},
            {"rel": "root", "href": f"{self.url}/"},
        ]
        if item["id"] == MATCHUP_ID:
            links += [
                {
                    "rel": "derived_from",
                    "href": f"{self.url}/collections/{S2_COLLECTION}/items/{pid}",
                    "type": "application/geo+json",
                    "title": pid,
                }
                for pid in self.products
            ]
            links.append(
                {
                    "rel": "related",
                    "href": f"{self.url}/collections/{EVENTS}/items/{EVENT_ID}",
                    "type": "application/geo+json",
                    "title": f"event {EVENT_ID}",
                }
            )
        return links

    def _public(self, item: dict[str, Any]) -> dict[str, Any]:
        out = copy.deepcopy(item)
        out["links"] = self._item_links(item)
        return out

    def collection(self, cid: str) -> dict[str, Any]:
        doc = super().collection(cid)
        if cid in TITLES:
            doc["title"] = TITLES[cid]
        return doc

    def route(self, method: str, path: str, params: dict[str, Any]) -> tuple[int, Any]:
        parts = path.strip("/").split("/")
        if len(parts) in (3, 4) and parts[0] == "collections" and parts[2] == "items":
            members = [i for i in self.items if i["collection"] == parts[1]]
            if len(parts) == 4:
                for item in members:
                    if item["id"] == parts[3]:
                        return 200, self._public(item)
                return 404, {"code": "NotFoundError", "description": f"{parts[3]} not found"}
            return 200, {
                "type": "FeatureCollection",
                "features": [self._public(i) for i in members[: int(params.get("limit") or 10)]],
                "links": [{"rel": "root", "href": f"{self.url}/"}],
            }
        return super().route(method, path, params)


@dataclass
class Site:
    url: str
    api: MatchupApi
    dist: Path


@pytest.fixture(scope="module")
def site() -> Iterator[Site]:
    if shutil.which("nginx") is None and shutil.which("nginx", path="/usr/sbin:/sbin") is None:
        pytest.skip("nginx not installed")
    if chromium_binary() is None:
        pytest.skip("chromium not installed")
    try:
        dist = browser_dist()  # cached; builds on a cold cache (about 1-2 min)
    except BrowserBuildError as exc:
        if "npm is unavailable" in str(exc):
            pytest.skip(str(exc))
        raise
    port = free_port()
    public = f"http://127.0.0.1:{port}/external"
    api = MatchupApi()
    with (
        serve(api),
        echo_upstream("internal") as internal,
        world_readable_tmpdir("eomatch-browser-") as base,
    ):
        upstream = api.url.removeprefix("http://")
        api.url = public  # the API's links carry its public URL, as behind the real gateway
        write_runtime_config(base / "runtime", f"{public}/")
        (base / "runtime").chmod(0o755)
        gateway = Gateway(base / "run")
        gateway.write_config(
            listen_host="127.0.0.1",
            listen_port=port,
            internal_upstream=internal.address,
            external_upstream=upstream,
            browser_dir=dist,
            runtime_config_dir=base / "runtime",
        )
        gateway.start()
        try:
            yield Site(f"http://127.0.0.1:{port}", api, dist)
        finally:
            gateway.stop()


def test_runtime_config_is_plain_data() -> None:
    text = render_runtime_config("http://h:1/external/", "t</script>")
    assert text.startswith("window.STAC_BROWSER_CONFIG = {")
    assert '"catalogUrl": "http://h:1/external/"' in text
    assert "</script>" not in text
    assert "catalogUrl" not in render_runtime_config(None)
    with pytest.raises(ValueError, match="ending in '/'"):
        render_runtime_config("http://h:1/external")
    with pytest.raises(ValueError, match="http"):
        render_runtime_config("javascript:alert(1)/")


@pytest.mark.slow
def test_dist_has_no_catalogue_url_baked_in(site: Site) -> None:
    """One build serves any host: the URL comes from the runtime config.js."""
    index = (site.dist / "index.html").read_text()
    assert '<script defer="defer" src="/config.js"></script>' in index
    assert not list(site.dist.rglob("*.map"))  # built without source maps
    assert (site.dist / "config.js").read_text().strip() == "window.STAC_BROWSER_CONFIG = {};"
    scripts = "".join(js.read_text(errors="replace") for js in site.dist.rglob("*.js"))
    assert "/external/" in scripts  # the default: <page origin>/external/
    assert "://127.0.0.1:" not in scripts
    assert "://localhost:" not in scripts
    r = httpx.get(f"{site.url}/config.js")
    assert f'"catalogUrl": "{site.url}/external/"' in r.text
    assert httpx.get(f"{site.url}/external/").json()["links"][0]["href"] == f"{site.url}/external/"


@pytest.mark.slow
def test_browser_lists_the_collections(site: Site) -> None:
    dom = render_dom(f"{site.url}/")
    assert "eomatch test STAC API" in dom  # the catalogue's own title
    for title in (MATCHUP_TITLE, EVENT_TITLE, S2_COLLECTION):
        assert title in dom, title
    assert "STAC Browser" in dom


@pytest.mark.slow
def test_matchup_item_shows_footprint_products_and_event(site: Site, tmp_path: Path) -> None:
    # A history-mode deep link: the browser's path mirrors the API path below catalogUrl.
    url = f"{site.url}/collections/{MATCHUPS}/items/{MATCHUP_ID}"
    dom = render_dom(url)
    assert MATCHUP_ID in dom
    assert "ol-viewport" in dom  # the OpenLayers map with the footprint
    for product in site.api.products:  # derived_from links, by title
        assert product in dom, product
    assert f"event {EVENT_ID}" in dom  # the related event
    png = screenshot(url, tmp_path / "matchup.png")
    if os.environ.get("EOMATCH_KEEP_SCREENSHOT"):
        shutil.copy(png, os.environ["EOMATCH_KEEP_SCREENSHOT"])
    assert png.stat().st_size > 10_000
