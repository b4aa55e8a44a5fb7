"""The ``stac`` product source against a real local STAC API (tests/stac_api_server.py)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from shapely.geometry import MultiPolygon, box

from eomatch.core.products import Product, SensorKey
from eomatch.errors import EomatchError
from eomatch.io.stac_api_client import StacApi
from eomatch.io.stac_source import ProductSource, StacApiSource, split_antimeridian_bbox
from stac_api_server import (
    LANDSAT_COLLECTION,
    S2_COLLECTION,
    S3_COLLECTION,
    StacApiServer,
    serve,
)

COLLECTIONS = {
    "S2_MSI_L1C": S2_COLLECTION,
    "LANDSAT_C2L1": LANDSAT_COLLECTION,
    "S3_OL_1_EFR": S3_COLLECTION,
}
S2A = SensorKey("S2_MSI_L1C", "Sentinel-2A")
S2B = SensorKey("S2_MSI_L1C", "Sentinel-2B")
LS9 = SensorKey("LANDSAT_C2L1", "Landsat-9")
S3A = SensorKey("S3_OL_1_EFR", "Sentinel-3A")
EUROPE = (0.0, 40.0, 20.0, 50.0)
MAY = (datetime(2022, 5, 1, tzinfo=UTC), datetime(2022, 5, 31, 23, 59, tzinfo=UTC))


@pytest.fixture
def api() -> Iterator[StacApiServer]:
    with serve() as state:
        yield state


def source(api: StacApiServer, **kw: object) -> StacApiSource:
    kw.setdefault("backoff_factor", 0.01)
    return StacApiSource(api.url, COLLECTIONS, **kw)  # type: ignore[arg-type]


def ids(products: list[Product]) -> list[str]:
    return [p.id for p in products]


def test_is_a_product_source(api: StacApiServer) -> None:
    assert isinstance(source(api), ProductSource)


def test_paging_collects_every_page(api: StacApiServer) -> None:
    products = source(api, page_size=4).search(S2A, EUROPE, *MAY)
    # 12 S2A + 6 S2B items match the query: 5 pages of 4 items
    assert len(products) == 12
    assert len(set(ids(products))) == 12
    assert api.search_requests() == 5
    assert all(body["limit"] == 4 for body in api.search_bodies)


def test_one_page_when_page_size_is_large(api: StacApiServer) -> None:
    assert len(source(api, page_size=100).search(S2A, EUROPE, *MAY)) == 12
    assert api.search_requests() == 1


def test_platform_mapping_drops_other_satellites(api: StacApiServer) -> None:
    src = source(api, page_size=7)
    s2a, s2b = src.search(S2A, EUROPE, *MAY), src.search(S2B, EUROPE, *MAY)
    assert len(s2a) == 12
    assert all(p.id.startswith("S2A_") for p in s2a)
    assert len(s2b) == 6
    assert all(p.id.startswith("S2B_") for p in s2b)
    assert {p.sensor for p in s2b} == {S2B}
    landsat = src.search(LS9, EUROPE, *MAY)  # provider says LANDSAT_9, registry Landsat-9
    assert len(landsat) == 4
    assert all(p.id.startswith("LC09_") and p.sensor.platform == "Landsat-9" for p in landsat)


def test_sensor_platform_alias_is_resolved(api: StacApiServer) -> None:
    alias = SensorKey("S2_MSI_L1C", "S2A")
    assert len(source(api).search(alias, EUROPE, *MAY)) == 12


def test_bbox_filtering(api: StacApiServer) -> None:
    src = source(api)
    assert src.search(S2A, (100.0, -40.0, 150.0, -20.0), *MAY) == src.search(
        S2A, (139.5, -31.0, 142.5, -28.0), *MAY
    )
    australia = src.search(S2A, (139.5, -31.0, 142.5, -28.0), *MAY)
    assert len(australia) == 3
    small = (10.2, 45.2, 10.4, 45.4)
    hits = src.search(S2A, small, *MAY)
    assert hits
    assert all(p.geometry.intersects(box(*small)) for p in hits)
    assert src.search(S2A, (-60.0, 0.0, -50.0, 10.0), *MAY) == []


def test_datetime_filtering(api: StacApiServer) -> None:
    src = source(api)
    june = src.search(
        S2A, EUROPE, datetime(2022, 6, 1, tzinfo=UTC), datetime(2022, 6, 30, tzinfo=UTC)
    )
    assert len(june) == 2
    first_days = src.search(
        S2A, EUROPE, datetime(2022, 5, 1, tzinfo=UTC), datetime(2022, 5, 3, 23, tzinfo=UTC)
    )
    assert len(first_days) == 3
    assert all(
        datetime(2022, 5, 1, tzinfo=UTC) <= p.start < datetime(2022, 5, 4, tzinfo=UTC)
        for p in first_days
    )


def test_product_fields(api: StacApiServer) -> None:
    p = source(api).search(S2A, EUROPE, *MAY)[0]
    assert p.id == "S2A_33TUN_20220501_0_L1C"
    assert p.start == p.end == datetime(2022, 5, 1, 10, tzinfo=UTC)
    assert p.start.tzinfo is not None
    assert not p.predicted
    assert p.geometry.equals(box(10, 45, 11, 46))
    assert set(p.assets) == {"blue", "thumbnail", "granule_metadata"}
    assert p.assets["blue"] == {
        "href": "https://data.example.test/sentinel-s2-l1c/tiles/33/T/UN/2022/5/1/0/B02.jp2",
        "type": "image/jp2",
        "title": "Blue (band 2)",
        "roles": ["data"],
    }
    meta = p.assets["granule_metadata"]
    assert meta["file:checksum"].startswith("1220")
    assert meta["file:size"] == 512_301
    assert p.properties == {
        "eo:cloud_cover": 12.5,
        "proj:epsg": 32633,
        "view:sun_azimuth": 160.2,
        "view:sun_elevation": 55.1,
    }


def test_start_end_from_interval_properties(api: StacApiServer) -> None:
    products = source(api).search(S3A, EUROPE, *MAY)
    assert len(products) == 1
    (p,) = products
    assert p.start == datetime(2022, 5, 4, 10, tzinfo=UTC)
    assert (p.end - p.start).total_seconds() == 180


def test_antimeridian_search_and_multipolygon_footprints(api: StacApiServer) -> None:
    assert split_antimeridian_bbox((175.0, 60.0, -175.0, 65.0)) == [
        (175.0, 60.0, 180.0, 65.0),
        (-180.0, 60.0, -175.0, 65.0),
    ]
    src = source(api, page_size=1)
    products = src.search(S3A, (175.0, 60.0, -175.0, 65.0), *MAY)
    # both halves of the query hit both S3A items: merged without duplicates; S3B dropped
    assert len(products) == 2
    assert len(set(ids(products))) == 2
    assert all(p.id.startswith("S3A_") for p in products)
    for p in products:
        assert isinstance(p.geometry, MultiPolygon)
        assert len(p.geometry.geoms) == 2
        assert p.geometry.bounds == (-180.0, 60.0, 180.0, 70.0)
        assert p.assets["data"]["file:checksum"].startswith("d50110")
    # only the western half of the footprint is in this (non-crossing) bbox
    west = src.search(S3A, (-175.0, 60.0, -173.0, 65.0), *MAY)
    assert ids(west) == ids(products)


def test_retries_after_transient_failures(api: StacApiServer) -> None:
    src = source(api, page_size=5, max_retries=3)
    expected = ids(src.search(S2A, EUROPE, *MAY))
    before = api.search_requests()
    api.fail_next(3, 503, path="/search")
    assert ids(src.search(S2A, EUROPE, *MAY)) == expected
    assert api.search_requests() - before == 4 + 3  # 4 pages + 3 retried failures
    api.fail_next(2, 429, path="/search")
    assert ids(src.search(S2A, EUROPE, *MAY)) == expected


def test_retries_while_opening(api: StacApiServer) -> None:
    api.fail_next(2, 502)
    assert len(source(api, max_retries=2).search(S2A, EUROPE, *MAY)) == 12


def test_persistent_http_errors_name_the_url(api: StacApiServer) -> None:
    src = source(api, max_retries=2)
    src.client()
    api.fail_next(100, 503, path="/search")
    with pytest.raises(EomatchError, match=r"failed with HTTP 503 after 2 retries") as info:
        src.search(S2A, EUROPE, *MAY)
    assert api.url in str(info.value)
    assert api.search_requests() == 3


def test_unreachable_api() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    src = StacApiSource(url, COLLECTIONS, max_retries=1, backoff_factor=0.01)
    with pytest.raises(EomatchError, match="unreachable") as info:
        src.search(S2A, EUROPE, *MAY)
    assert url in str(info.value)


def test_invalid_json(api: StacApiServer) -> None:
    src = source(api)
    src.client()
    api.invalid_json, api.fault_path = True, "/search"
    with pytest.raises(EomatchError, match="not valid JSON") as info:
        src.search(S2A, EUROPE, *MAY)
    assert api.url in str(info.value)


def test_invalid_json_landing_page(api: StacApiServer) -> None:
    api.invalid_json = True
    with pytest.raises(EomatchError, match=r"open: the answer is not valid JSON"):
        source(api).search(S2A, EUROPE, *MAY)


def test_slow_answers_time_out_clearly(api: StacApiServer) -> None:
    src = source(api, timeout=0.2, max_retries=1)
    src.client()
    api.delay_s = 0.5
    with pytest.raises(EomatchError, match=r"did not answer in time .*ReadTimeout") as info:
        src.search(S2A, EUROPE, *MAY)
    assert api.url in str(info.value)


def test_unknown_collection_mapping(api: StacApiServer) -> None:
    with pytest.raises(EomatchError, match=r"no provider collection configured for .*'OLCI'"):
        source(api).search(SensorKey("OLCI", "Sentinel-3A"), EUROPE, *MAY)
    assert api.requests == []  # found out before any request


def test_unknown_collection_on_server(api: StacApiServer) -> None:
    src = StacApiSource(api.url, {"X": "no-such-collection"})
    assert src.search(SensorKey("X", "Sentinel-2A"), EUROPE, *MAY) == []


def test_headers_are_sent(api: StacApiServer) -> None:
    source(api, headers={"Authorization": "Bearer secret"}).search(S2A, EUROPE, *MAY)
    assert api.authorization
    assert set(api.authorization) == {"Bearer secret"}


def test_server_pages_with_get_too(api: StacApiServer) -> None:
    body = {
        "collections": [S2_COLLECTION],
        "bbox": list(EUROPE),
        "datetime": "2022-05-01T00:00:00Z/2022-05-31T23:59:00Z",
        "limit": 5,
    }
    with StacApi(api.url) as client:
        pages = list(client.search(body, method="GET"))
    assert sum(len(p["features"]) for p in pages) == 18
    assert [m for m, p in api.requests if p == "/search"] == ["GET"] * 4


def test_a_get_only_api_is_searched_with_get(api: StacApiServer) -> None:
    api.search_methods = ("GET",)
    assert len(source(api, page_size=5).search(S2A, EUROPE, *MAY)) == 12
    assert {m for m, p in api.requests if p == "/search"} == {"GET"}


def test_error_messages_are_one_line(api: StacApiServer) -> None:
    src = source(api, max_retries=0)
    src.client()
    api.fail_next(1, 500, path="/search")
    with pytest.raises(EomatchError) as info:
        src.search(S2A, EUROPE, *MAY)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"STAC API {api.url}: search of collection 'sentinel-2-l1c' failed")
    assert "HTTP 500 (no retries)" in message
