"""Adversarial checks of the API answer cache (``eomatch.service.response_cache``).

The memory bound and keyed reads failed before their fixes; the chunked body and the
encodings/CORS/HEAD checks held and stay as guards.
"""

from __future__ import annotations

import os
import time
import tracemalloc
from collections.abc import AsyncIterator, Iterator
from typing import Any

import orjson
import pytest

from eomatch.service.response_cache import ResponseCache, _Entry
from service_fixtures import http, seeded_api_pair, while_snapshot_stands

HEADERS = ((b"content-type", b"application/geo+json"), (b"vary", b"Accept-Encoding"))


@pytest.mark.parametrize("body_size", [0, 200, 2000])
def test_a_flood_of_small_answers_stays_within_the_bound(body_size: int) -> None:
    """Each entry's own objects count: 200-byte answers held 3.2x the bound before."""
    cache = ResponseCache(max_bytes=2 * 1024 * 1024, ttl=60)
    tracemalloc.start()
    try:
        base, _ = tracemalloc.get_traced_memory()
        for _ in range(30_000):
            headers = tuple((bytes(k), bytes(v)) for k, v in HEADERS)  # fresh, as on a miss
            entry = _Entry(200, headers, os.urandom(body_size), time.monotonic())
            cache.put(os.urandom(32), entry)
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert cache.size <= cache.max_bytes
    assert held - base <= 1.1 * cache.max_bytes, (len(cache), held - base)


COLL = "review"
T0 = "2022-05-06T12:00:00Z"
CACHE = "x-eomatch-cache"


def _collection() -> dict[str, Any]:
    return {
        "type": "Collection",
        "stac_version": "1.1.0",
        "id": COLL,
        "description": "cache review",
        "license": "other",
        "extent": {
            "spatial": {"bbox": [[-10.0, 40.0, 0.0, 50.0]]},
            "temporal": {"interval": [[T0, None]]},
        },
        "links": [],
    }


def _item(item_id: str) -> dict[str, Any]:
    ring = [[-5.0, 45.0], [-4.0, 45.0], [-4.0, 46.0], [-5.0, 46.0], [-5.0, 45.0]]
    return {
        "type": "Feature",
        "stac_version": "1.1.0",
        "id": item_id,
        "collection": COLL,
        "geometry": {"type": "Polygon", "coordinates": [ring]},
        "bbox": [-5.0, 45.0, -4.0, 46.0],
        "properties": {"datetime": T0},
        "links": [],
        "assets": {"data": {"href": "https://example.org/x.nc"}},
    }


@pytest.fixture(scope="module")
def stack(pg_cluster: Any) -> Iterator[dict[str, Any]]:
    with seeded_api_pair(pg_cluster, "review", _collection(), _item("a")) as s:
        yield s


def test_reads_that_present_a_key_are_hits(stack: dict[str, Any]) -> None:
    """A keyed read wrote ``last_used_at`` on every request: a commit, so a new snapshot each
    time, and no keyed client (``eomatch query`` with a key) ever hit, nor anyone meanwhile."""
    url = f"{stack['internal'].url}/search?collections={COLL}&limit="
    auth = stack["auth"]

    def run(n: int) -> tuple[Any, Any, Any]:
        return (
            http.get(f"{url}{9 + n}", headers=auth),
            http.get(f"{url}{9 + n}", headers=auth),
            http.get(f"{url}{9 + n}"),
        )

    # the first keyed read of a minute records the key's use (a commit): asked again then
    first, again, unkeyed = while_snapshot_stands(stack["db"], run)
    assert first.status_code == 200, first.text
    assert again.headers[CACHE] == "hit"
    assert unkeyed.headers[CACHE] == "hit"


def test_chunked_post_search_body_is_replayed_whole(stack: dict[str, Any]) -> None:
    url = f"{stack['internal'].url}/search"
    head = {"Content-Type": "application/json"}

    def run(n: int) -> tuple[Any, Any, bytes]:
        body = orjson.dumps({"collections": [COLL], "limit": 2 + n, "ids": ["a"]})

        async def chunks() -> AsyncIterator[bytes]:  # sent chunked, in 7-byte pieces
            for i in range(0, len(body), 7):
                yield body[i : i + 7]

        first = http.post(url, content=chunks(), headers=head)
        return first, http.post(url, content=body, headers=head), body

    first, again, body = while_snapshot_stands(stack["db"], run)
    assert first.status_code == 200, first.text
    assert [f["id"] for f in first.json()["features"]] == ["a"]
    assert again.headers[CACHE] == "hit"
    assert again.content == first.content
    other = http.post(url, content=body.replace(b'"a"', b'"z"'), headers=head)
    assert other.headers[CACHE] == "miss"
    assert other.json()["features"] == []


def test_hits_across_encodings_and_a_head_are_whole(stack: dict[str, Any]) -> None:
    """A kept answer is the uncompressed one: each client gets its own encoding, one length."""
    url = f"{stack['external'].url}/collections/{COLL}/items?limit="
    origin = {"Origin": "https://viewer.example.org"}

    def run(n: int) -> tuple[Any, Any, Any]:
        return (
            http.get(f"{url}{3 + n}", headers={"Accept-Encoding": "br", **origin}),
            http.get(f"{url}{3 + n}", headers={"Accept-Encoding": "identity"}),
            http.get(f"{url}{3 + n}", headers={"Accept-Encoding": "br", **origin}),
        )

    raw, plain, again = while_snapshot_stands(stack["db"], run)
    url = str(raw.request.url)
    assert (raw.headers[CACHE], plain.headers[CACHE], again.headers[CACHE]) == (
        "miss",
        "hit",
        "hit",
    )
    assert plain.headers.get("content-encoding") is None
    for r in (raw, plain, again):
        assert r.status_code == 200
        assert r.json() == raw.json()
        assert len(r.headers.get_list("content-length")) == 1
        assert len(r.headers.get_list("content-type")) == 1
    for r in (raw, again):  # CORS answers outside the cache, to each request's Origin
        assert r.headers["access-control-allow-origin"] == "*"
        assert r.headers["content-encoding"] == "br"
    assert int(plain.headers["content-length"]) == len(plain.content)
    head = http.request("HEAD", url)
    assert head.content == b""
    assert CACHE not in head.headers or head.headers[CACHE] != "hit"
