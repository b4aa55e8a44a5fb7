"""Harvest sources against local servers (no database): STAC API, static STAC, OpenSearch.

Everything runs through :func:`run_harvest` with ``dry_run`` (the source side: query, paging,
retries, mapping, filter, post-processing), or the real CLI for configuration errors.
"""

from __future__ import annotations

import contextlib
import functools
import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from eomatch.cli.main import main
from eomatch.config.harvest import FormatConfig, HarvesterConfig
from eomatch.config.models import RunConfig
from eomatch.core.validation import stac_document_problem
from eomatch.errors import ConfigError, EomatchError, NetworkError
from eomatch.io.http import HttpLimits
from eomatch.io.opensearch import NS, OpenSearchClient, fill_template
from eomatch.workflows.harvest import load_postprocessors, run_harvest
from opensearch_server import OpenSearchServer, default_products
from opensearch_server import serve as serve_opensearch
from stac_api_server import StacApiServer, landsat_item, sentinel2_item
from stac_api_server import serve as serve_stac

FAST = HttpLimits(backoff_s=0.05, timeout_s=10)
T0 = datetime(2022, 5, 1, 10, 0, tzinfo=UTC)


# -- provider-shaped items (as earth-search / Planetary Computer / USGS publish them) ---------


def s2_l2a(i: int, when: datetime, cloud: float = 12.5) -> dict[str, Any]:
    """A Sentinel-2 L2A item: earth-search v1 shape with Planetary Computer's s2:mgrs_tile."""
    tile = f"33T{'UVWXYZ'[i % 6]}N"
    item = sentinel2_item(
        "sentinel-2a" if i % 2 == 0 else "sentinel-2b", tile, when, 10 + i % 5, 45
    )
    item["id"] = item["id"].replace("_L1C", "_L2A")
    item["collection"] = "sentinel-2-l2a"
    p = item["properties"]
    p.update(
        {
            "eo:cloud_cover": cloud,
            "s2:mgrs_tile": tile,
            "s2:product_type": "S2MSI2A",
            "s2:processing_baseline": "05.09",
            "s2:nodata_pixel_percentage": 0.4,
            "s2:snow_ice_percentage": 0.0,
            "s2:water_percentage": 3.2,
            "s2:vegetation_percentage": 51.7,
            "proj:epsg": 32600 + int(tile[:2]),
        }
    )
    p["s2:product_uri"] = p["s2:product_uri"].replace("MSIL1C", "MSIL2A")
    return item


def landsat_l2(i: int, when: datetime, cloud: float = 3.1) -> dict[str, Any]:
    """A Landsat Collection 2 Level-2 item (USGS landsat-c2l2-sr shape)."""
    item = landsat_item(
        "LANDSAT_9" if i % 2 == 0 else "LANDSAT_8", 192, 26 + i, when, 11 + i % 4, 46
    )
    item["id"] = item["id"].replace("L1TP", "L2SP") + "_SR"
    item["collection"] = "landsat-c2l2-sr"
    p = item["properties"]
    p.update({"eo:cloud_cover": cloud, "landsat:correction": "L2SP", "proj:epsg": 32632})
    return item


def mixed_items(n: int = 20) -> list[dict[str, Any]]:
    """``n`` S2 L2A items a day apart (cloud 0..95), plus 4 Landsat C2 L2 items."""
    items = [s2_l2a(i, T0 + timedelta(days=i), cloud=float((i * 5) % 100)) for i in range(n)]
    items += [landsat_l2(i, T0 + timedelta(days=i, hours=2)) for i in range(4)]
    return items


def harvester(**kw: Any) -> HarvesterConfig:
    doc: dict[str, Any] = {"name": "h", "target": {"collection": "harvested"}}
    doc.update(kw)
    return HarvesterConfig.model_validate(doc)


class KeepLowTiles:
    """A post-processor: drops tiles ending in Z, tags the rest."""

    def postprocess(self, item: dict[str, Any]) -> dict[str, Any] | None:
        if str(item["properties"].get("s2:mgrs_tile", "")).endswith("ZN"):
            return None
        item["properties"]["eomatch:harvest_tag"] = "checked"
        return item


class NotAPostprocessor:
    pass


# -- STAC API ---------------------------------------------------------------------------------


def test_stac_api_pages_filter_postprocess_and_provider_shape() -> None:
    with serve_stac(StacApiServer(items=mixed_items())) as api:
        h = harvester(
            resource={"url": api.url, "type": "stac-api", "page_size": 4},
            query={"collection": "sentinel-2-l2a", "time": {"begin": "2022-05-01"}},
            filter={"op": "<", "args": [{"property": "eo:cloud_cover"}, 50]},
            postprocess=["test_harvest.KeepLowTiles"],
        )
        report = run_harvest(h, None, dry_run=True, limits=FAST)
        bodies = api.search_bodies
    c = report.counts
    assert (c.seen, c.pages) == (20, 5)  # 20 S2 items, 4 a page; Landsat never asked for
    assert c.filtered == 10  # cloud 50..95
    assert c.dropped == 1  # tile ...ZN (i % 6 == 5) among cloud < 50 (i < 10): i = 5
    assert c.written == 9
    assert c.invalid == 0
    assert all(b["collections"] == ["sentinel-2-l2a"] for b in bodies)
    assert bodies[0]["datetime"].startswith("2022-05-01T00:00:00")
    assert [b.get("token") for b in bodies] == [None, "4", "8", "12", "16"]  # POST next bodies
    assert report.mark_after == T0 + timedelta(days=19)


def test_stac_api_429_retry_after_and_503_are_retried() -> None:
    with serve_stac(StacApiServer(items=mixed_items(6))) as api:
        h = harvester(resource={"url": api.url, "type": "stac-api", "page_size": 2})
        api.fail_next(1, 429, "/search", retry_after="1")
        t = time.monotonic()
        report = run_harvest(h, None, dry_run=True, limits=FAST)
        waited = time.monotonic() - t
        assert report.counts.seen == 10
        assert waited >= 0.95  # the server's Retry-After, not the 0.05 s backoff
        api.fail_next(1, 503, "/search")
        before = len(api.requests)
        assert run_harvest(h, None, dry_run=True, limits=FAST).counts.seen == 10
        assert api.requests[before:].count(("POST", "/search")) == 5 + 1  # one retried
        api.fail_next(10, 503, "/search")
        with pytest.raises(Exception, match="HTTP 503"):
            run_harvest(
                h.model_copy(update={"resource": h.resource.model_copy(update={"max_retries": 1})}),
                None,
                dry_run=True,
                limits=FAST,
            )


# -- static STAC ------------------------------------------------------------------------------


def write_static(root: Path, items: list[dict[str, Any]]) -> Path:
    """A self-contained static catalogue: catalog -> one collection per id -> items."""
    root.mkdir(parents=True, exist_ok=True)
    cols = sorted({i["collection"] for i in items})
    (root / "catalog.json").write_text(
        json.dumps(
            {
                "type": "Catalog",
                "stac_version": "1.0.0",
                "id": "static",
                "description": "test",
                "links": [{"rel": "child", "href": f"./{c}/collection.json"} for c in cols],
            }
        )
    )
    for c in cols:
        (root / c).mkdir(exist_ok=True)
        mine = [i for i in items if i["collection"] == c]
        (root / c / "collection.json").write_text(
            json.dumps(
                {
                    "type": "Collection",
                    "stac_version": "1.0.0",
                    "id": c,
                    "description": c,
                    "license": "proprietary",
                    "extent": {
                        "spatial": {"bbox": [[-180, -90, 180, 90]]},
                        "temporal": {"interval": [[None, None]]},
                    },
                    "links": [
                        {"rel": "root", "href": "../catalog.json"},
                        *({"rel": "item", "href": f"./{i['id']}.json"} for i in mine),
                    ],
                }
            )
        )
        for i in mine:
            doc = {
                **i,
                "links": [
                    {"rel": "root", "href": "../catalog.json"},
                    {"rel": "collection", "href": "./collection.json"},
                    {"rel": "parent", "href": "./collection.json"},
                ],
            }
            (root / c / f"{i['id']}.json").write_text(json.dumps(doc))
    return root / "catalog.json"


@contextlib.contextmanager
def serve_folder(root: Path) -> Iterator[str]:
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a, **k: None  # type: ignore[attr-defined]
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_static_catalogue_folder_and_http(tmp_path: Path) -> None:
    cat = write_static(tmp_path / "cat", mixed_items(10))
    h = harvester(
        resource={"url": str(cat), "type": "stac-static", "page_size": 3},
        query={
            "collection": "sentinel-2-l2a",
            "time": {"begin": "2022-05-03", "end": "2022-05-08"},
            "bbox": "9.5,44,12.5,47",
        },
    )
    local = run_harvest(h, None, dry_run=True)
    # days 2..6 (May 3..7) in time; of those lon 10 + i % 5 <= 12.5: i = 2, 5, 6
    assert local.counts.seen == 3
    assert local.counts.pages == 1
    with serve_folder(tmp_path / "cat") as url:
        over_http = h.model_copy(
            update={"resource": h.resource.model_copy(update={"url": f"{url}/catalog.json"})}
        )
        remote = run_harvest(over_http, None, dry_run=True)
    assert remote.counts.to_json() == local.counts.to_json()
    assert remote.mark_after == local.mark_after == T0 + timedelta(days=6)


# -- OpenSearch -------------------------------------------------------------------------------


def test_opensearch_description_template_and_prefixes() -> None:
    with serve_opensearch() as srv, OpenSearchClient(f"{srv.url}/describe.xml") as client:
        d = client.description()
        json_t = d.template()
        atom_t = d.template("application/atom+xml")
    assert json_t.type == "application/json"
    assert atom_t.type == "application/atom+xml"
    assert (NS["time"], "start") in json_t.parameters()  # declared as dt: in the document
    url = fill_template(
        json_t, {(NS["time"], "start"): "2022-05-01T00:00:00Z", (NS["os"], "count"): 5}
    )
    assert "startDate=2022-05-01T00:00:00Z" in url
    assert "maxRecords=5" in url
    assert "box=" not in url
    assert "{" not in url


@pytest.mark.parametrize("kind", ["application/json", "application/atom+xml"])
def test_opensearch_geojson_and_atom_to_stac(kind: str) -> None:
    mapping = (
        {
            "eo:cloud_cover": "cloudCover",
            "s2:mgrs_tile": "tileId",
            "platform": "platform",
            "sat:absolute_orbit": "orbitNumber",
            "s2:product_type": "productType",
        }
        if kind == "application/json"
        else {
            "eo:cloud_cover": "eo:cloudCover",
            "s2:mgrs_tile": "resto:tileId",
            "platform": "eo:platform",
            "sat:absolute_orbit": "eo:orbitNumber",
            "s2:product_type": "eo:productType",
        }
    )
    with serve_opensearch(OpenSearchServer(products=default_products(12))) as srv:
        h = harvester(
            resource={
                "url": f"{srv.url}/describe.xml",
                "type": "OpenSearch",
                "page_size": 5,
                "format_config": {"type": kind, "property_mapping": mapping},
            },
            query={"time": {"begin": "2022-05-03T00:00:00Z"}, "bbox": [9, 44, 16, 49]},
            filter='"eo:cloud_cover" < 60',
        )
        items: list[dict[str, Any]] = []

        class Grab:
            def postprocess(self, item: dict[str, Any]) -> dict[str, Any]:
                items.append(item)
                return item

        import test_harvest

        test_harvest.Grab = Grab  # type: ignore[attr-defined]
        h = h.model_copy(update={"postprocess": ["test_harvest.Grab"]})
        report = run_harvest(h, None, dry_run=True, limits=FAST)
        searches = srv.searches()
    # products 2..11 (May 3..12); cloud 5 + (10 i) % 90 < 60: i = 2..5 (25..55), 9..11 (5..25)
    assert report.counts.seen == 10
    assert report.counts.pages == 2
    assert report.counts.written == 7
    assert [s.get("index") for s in searches] == ["1", "6"]
    assert all(s["startDate"].startswith("2022-05-03T00:00:00") for s in searches)
    assert searches[0]["sortOrder"] == "ascending"
    assert searches[0]["box"] == "9,44,16,49"
    one = items[0]
    assert stac_document_problem(one, "Feature") is None
    p = one["properties"]
    assert p["eo:cloud_cover"] == 25.0
    assert p["s2:mgrs_tile"] == "33TWN"
    assert p["platform"] == "S2A"
    assert p["sat:absolute_orbit"] == 35002
    assert p["s2:product_type"] == "S2MSI2A"
    assert p["start_datetime"] < p["end_datetime"]
    assert p["datetime"] == p["start_datetime"]
    assert one["geometry"]["type"] == "Polygon"
    assert one["bbox"] == [12.0, 47.0, 13.0, 48.0]
    assert one["assets"]["data"]["href"].startswith("https://zipper.example.test/odata/")
    assert one["assets"]["thumbnail"]["roles"] == ["thumbnail"]
    assert one["collection"] == "harvested"
    assert one["id"] == "00000002-5b2e-4c1a-9f0e-000000000002"


def test_opensearch_by_start_index_without_next_links_and_503() -> None:
    with serve_opensearch(OpenSearchServer(products=default_products(7), next_links=False)) as srv:
        h = harvester(
            resource={"url": f"{srv.url}/describe.xml", "type": "opensearch", "page_size": 3}
        )
        srv.fail_next(1, 503)  # the description document itself
        report = run_harvest(h, None, dry_run=True, limits=FAST)
        assert report.counts.seen == 7
        assert [s["index"] for s in srv.searches()] == ["1", "4", "7"]
        srv.fail_next(5, 500)
        with pytest.raises(NetworkError, match="HTTP 500"):
            run_harvest(
                h.model_copy(update={"resource": h.resource.model_copy(update={"max_retries": 1})}),
                None,
                dry_run=True,
                limits=FAST,
            )


def test_opensearch_refuses_hostile_xml() -> None:
    bomb = (
        b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
        b'<!ENTITY lol2 "&lol;&lol;&lol;&lol;">]>'
        b'<OpenSearchDescription xmlns="http://a9.com/-/spec/opensearch/1.1/">&lol2;'
        b"</OpenSearchDescription>"
    )
    from eomatch.io.opensearch import parse_description

    with pytest.raises(NetworkError, match="not readable XML"):
        parse_description(bomb, "http://x/describe.xml")


# -- configuration ----------------------------------------------------------------------------


def test_postprocessor_errors_are_one_line() -> None:
    base = {"resource": {"url": "http://x", "type": "stac-api"}}
    with pytest.raises(ConfigError, match=r"postprocess\.0: cannot import no\.such\.Thing"):
        load_postprocessors(harvester(**base, postprocess=["no.such.Thing"]))
    with pytest.raises(ConfigError, match="has no postprocess"):
        load_postprocessors(harvester(**base, postprocess=["test_harvest.NotAPostprocessor"]))
    got = load_postprocessors(
        harvester(**base, postprocess=[{"type": "test_harvest.KeepLowTiles"}])
    )
    assert type(got[0]).__name__ == "KeepLowTiles"


BAD = [
    ({"resource": {"url": "http://x", "type": "wfs"}}, "harvesters.0.resource.type"),
    ({"resource": {"url": "file.json", "type": "stac-api"}}, "needs an http(s) URL"),
    ({"filter": "cloud <<< 3"}, "harvesters.0.filter: not a valid CQL2"),
    ({"postprocess": ["notdotted"]}, "harvesters.0.postprocess: not a dotted"),
    ({"query": {"bbox": "1,2,3"}}, "harvesters.0.query.bbox"),
    ({"query": {"time": {"begin": "2022-05-02", "end": "2022-05-01"}}}, "end: is not after"),
    ({"target": {"collection": "a b"}}, "harvesters.0.target.collection"),
    ({"queue": "elsewhere"}, "harvesters.0.queue"),
    ({"extra_key": 1}, "harvesters.0.extra_key"),
]


@pytest.mark.parametrize(("change", "message"), BAD)
def test_bad_harvester_config_is_one_line(
    change: dict[str, Any],
    message: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    doc: dict[str, Any] = {
        "name": "h",
        "resource": {"url": "http://x", "type": "stac-api"},
        "target": {"collection": "c"},
    }
    doc.update(change)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"harvesters": [doc]}))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    assert main(["harvest", "list", "--config", str(cfg)]) != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert message in err, err
    with pytest.raises(ValidationError):
        RunConfig.model_validate({"harvesters": [doc]})


def test_reference_shaped_config_loads_and_duplicates_refused() -> None:
    """The EOEPCA example (type OpenSearch, time.property sensed, bbox as text, filter {},
    postprocess as {type: ...}, queue: register) reads as is, with target added."""
    ref = yaml.safe_load(
        """
harvesters:
  - name: Creodias-Opensearch
    resource:
      url: https://finder.creodias.eu/resto/api/collections/Sentinel2/describe.xml
      type: OpenSearch
      format_config:
        type: 'application/json'
        property_mapping:
          start_datetime: 'startDate'
          end_datetime: 'completionDate'
          productIdentifier: 'productIdentifier'
    query:
      time:
        property: sensed
        begin: 2019-09-10T00:00:00Z
        end: 2019-09-11T00:00:00Z
      collection: null
      bbox: 14.9,47.7,16.4,48.7
    filter: {}
    postprocess:
      - type: harvester_eoepca.postprocess.CREODIASOpenSearchSentinel2Postprocessor
    queue: register
    target: {collection: S2L1C}
"""
    )
    cfg = RunConfig.model_validate(ref)
    h = cfg.harvesters[0]
    assert h.resource.type == "opensearch"
    assert h.filter is None
    assert h.query.bbox == (14.9, 47.7, 16.4, 48.7)
    assert h.postprocess == [
        "harvester_eoepca.postprocess.CREODIASOpenSearchSentinel2Postprocessor"
    ]
    with pytest.raises(ValidationError, match="duplicate harvester name"):
        RunConfig.model_validate({"harvesters": [ref["harvesters"][0]] * 2})


def test_headers_env_sends_the_secret_to_the_source_only(monkeypatch: pytest.MonkeyPatch) -> None:
    with serve_stac(StacApiServer(items=mixed_items(3))) as api:
        h = harvester(
            resource={
                "url": api.url,
                "type": "stac-api",
                "headers_env": {"Authorization": "R3_HARVEST_TOKEN"},
            }
        )
        monkeypatch.delenv("R3_HARVEST_TOKEN", raising=False)
        with pytest.raises(ConfigError, match=r"R3_HARVEST_TOKEN \(header Authorization\) is not"):
            run_harvest(h, None, dry_run=True, limits=FAST)
        assert api.requests == []
        monkeypatch.setenv("R3_HARVEST_TOKEN", "Bearer s3cret")
        assert run_harvest(h, None, dry_run=True, limits=FAST).counts.seen == 7
        assert set(api.authorization) == {"Bearer s3cret"}
    with pytest.raises(ValidationError, match="give the name of an environment variable"):
        harvester(
            resource={"url": "http://x", "type": "stac-api", "headers_env": {"A": "Bearer x"}}
        )


def test_cli_dry_run_without_a_database(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A dry run needs no database: it says so and covers the configured window."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    for var in ("PGHOST", "PGPORT", "PGDATABASE", "PGUSER"):
        monkeypatch.delenv(var, raising=False)
    with serve_stac(StacApiServer(items=mixed_items(5))) as api:
        doc = {
            "name": "s2",
            "resource": {"url": api.url, "type": "stac-api"},
            "query": {"collection": "sentinel-2-l2a"},
            "target": {"collection": "c"},
        }
        cfg = tmp_path / "h.yaml"
        cfg.write_text(yaml.safe_dump({"harvesters": [doc]}))
        argv = ["harvest", "run", "s2", "--dry-run", "--config", str(cfg), "--format", "json"]
        code = main([*argv, "--dir", str(tmp_path / "no-db")])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "note: no high-water marks" in out.err
    run = json.loads(out.out)["runs"][0]
    assert run["dry_run"] is True
    assert run["counts"]["written"] == 5


def test_opensearch_by_start_page() -> None:
    state = OpenSearchServer(products=default_products(7), next_links=False, by_page=True)
    with serve_opensearch(state) as srv:
        h = harvester(
            resource={
                "url": f"{srv.url}/describe.xml",
                "type": "opensearch",
                "page_size": 3,
                "format_config": {"type": "application/atom+xml"},
            }
        )
        report = run_harvest(h, None, dry_run=True, limits=FAST)
        searches = srv.searches()
    assert report.counts.seen == 7
    assert [(s.get("page"), s.get("index")) for s in searches] == [
        ("1", None),
        ("2", None),
        ("3", None),
    ]


def test_opensearch_server_capping_the_count_is_paged_by_total() -> None:
    """A server that answers fewer entries than asked (resto caps maxRecords) but says how
    many there are: paging goes on by startIndex until totalResults."""
    state = OpenSearchServer(products=default_products(7), next_links=False, max_count=2)
    with serve_opensearch(state) as srv:
        h = harvester(
            resource={"url": f"{srv.url}/describe.xml", "type": "opensearch", "page_size": 5}
        )
        report = run_harvest(h, None, dry_run=True, limits=FAST)
        assert [s["index"] for s in srv.searches()] == ["1", "3", "5", "7"]
    assert report.counts.seen == 7


def test_invalid_items_are_skipped_and_reported() -> None:
    items = mixed_items(4)
    items[1]["assets"]["broken"] = {"title": "an asset without href"}
    items[2]["geometry"] = {"type": "Polygon", "coordinates": [[[0, 0], [1, 1]]]}
    with serve_stac(StacApiServer(items=items)) as api:
        h = harvester(resource={"url": api.url, "type": "stac-api"})
        report = run_harvest(h, None, dry_run=True, limits=FAST)
    assert report.counts.invalid == 2
    assert report.counts.written == report.counts.seen - 2
    assert [line.split(":")[0] for line in report.invalid] == [items[1]["id"], items[2]["id"]]


def test_mark_tracker_advances_only_in_order() -> None:
    from eomatch.core.harvest import MarkTracker

    t = [T0 + timedelta(hours=h) for h in range(10)]
    ordered = MarkTracker(None)
    assert ordered.page([t[1], t[0], t[2]]) == t[2]  # order within a page does not matter
    assert ordered.page([t[2], t[4]]) == t[4]  # the boundary time again: still in order
    assert ordered.page([]) is None
    unordered = MarkTracker(t[0])
    assert unordered.page([t[5], t[6]]) == t[6]
    assert unordered.page([t[3], t[9]]) is None  # older than an earlier page: sort ignored
    assert unordered.page([t[8]]) is None  # and no advancing for the rest of the run
    assert unordered.mark == t[6]
    assert unordered.finish() == t[9]  # a complete run covered everything up to its newest


def test_updated_window_applied_locally_without_the_filter_extension() -> None:
    items = mixed_items(6)
    for i, item in enumerate(items):
        item["properties"]["updated"] = f"2022-06-{10 + i:02d}T00:00:00Z"
    with serve_stac(StacApiServer(items=items)) as api:
        h = harvester(
            resource={"url": api.url, "type": "stac-api"},
            query={"time": {"property": "updated", "begin": "2022-06-12", "end": "2022-06-14"}},
        )
        report = run_harvest(h, None, dry_run=True, limits=FAST)
        body = api.search_bodies[0]
    assert "filter" not in body
    assert "datetime" not in body
    assert report.counts.seen == 3  # updated June 12, 13, 14 (the rest dropped here)
    assert report.mark_after == datetime(2022, 6, 14, tzinfo=UTC)
    with pytest.raises(ValidationError, match="updated needs a STAC source"):
        harvester(
            resource={"url": "http://x/d.xml", "type": "opensearch"},
            query={"time": {"property": "updated"}},
        )


def test_opensearch_malformed_answers_are_one_line_or_skipped() -> None:
    from stac_api_server import Reply, serve_scripted

    osdd = (
        '<OpenSearchDescription xmlns="http://a9.com/-/spec/opensearch/1.1/">'
        '<Url type="application/atom+xml" indexOffset="x" template="{base}/a?n={{count?}}"/>'
        '<Url type="application/json" template="{base}/j?n={{count?}}"/>'
        "</OpenSearchDescription>"
    )
    feed = (
        '<feed xmlns="http://www.w3.org/2005/Atom" xmlns:georss="http://www.georss.org/georss"'
        ' xmlns:dc="http://purl.org/dc/elements/1.1/">'
        "<entry><title>a</title><dc:date>2022-05-01T00:00:00Z</dc:date>"
        "<georss:polygon>45 nine 46 10</georss:polygon></entry>"
        "<entry><title>b</title><dc:date>2022-05-02T00:00:00Z</dc:date>"
        "<georss:polygon>45 10 45 11 46 11 45 10</georss:polygon></entry></feed>"
    )

    def script(seen: Any) -> Reply:
        base = f"http://127.0.0.1:{srv_port[0]}"
        if seen.path == "/d.xml":
            return Reply(200, osdd.format(base=base).encode(), {"Content-Type": "text/xml"})
        if seen.path == "/a":
            return Reply(200, feed.encode(), {"Content-Type": "application/atom+xml"})
        return Reply(200, b'{"type": "FeatureCollection", "features": "x"}', {})

    srv_port = [0]
    with serve_scripted(script) as srv:
        srv_port[0] = int(srv.url.rsplit(":", 1)[1])
        atom = harvester(
            resource={
                "url": f"{srv.url}/d.xml",
                "type": "opensearch",
                "format_config": {"type": "application/atom+xml"},
            }
        )
        report = run_harvest(atom, None, dry_run=True, limits=FAST)
        assert report.counts.seen == 2  # the unreadable footprint does not stop the page
        assert report.counts.written + report.counts.invalid == 2
        geojson = atom.model_copy(
            update={"resource": atom.resource.model_copy(update={"format_config": FormatConfig()})}
        )
        with pytest.raises(NetworkError, match="not a GeoJSON FeatureCollection"):
            run_harvest(geojson, None, dry_run=True, limits=FAST)


class RaisesOnSecond:
    """A broken post-processor: fails on the second item."""

    def __init__(self) -> None:
        self.n = 0

    def postprocess(self, item: dict[str, Any]) -> dict[str, Any] | None:
        self.n += 1
        if self.n == 2:
            raise KeyError("s2:tile")
        return item


class ReturnsAList:
    def postprocess(self, item: dict[str, Any]) -> Any:
        return [item]


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("test_harvest.RaisesOnSecond", r"post-processor RaisesOnSecond failed on item .*KeyError"),
        ("test_harvest.ReturnsAList", r"ReturnsAList returned a list for item"),
    ],
)
def test_broken_postprocessor_is_one_line(path: str, message: str) -> None:
    with serve_stac(StacApiServer(items=mixed_items(3))) as api:
        h = harvester(resource={"url": api.url, "type": "stac-api"}, postprocess=[path])
        with pytest.raises(EomatchError, match=message):
            run_harvest(h, None, dry_run=True, limits=FAST)
