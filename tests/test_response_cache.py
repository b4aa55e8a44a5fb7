"""Read answers kept per database snapshot (``eomatch.service.response_cache``, issue #16 §1).

Against a real database and both APIs in process: a repeated read is served from the cache and
is the same answer; any commit — through the internal API, through ``eomatch ingest``'s store,
or plain SQL behind eomatch's back — makes the next read a fresh one that shows it; the external
API keeps only its public view; refused, failed and unkeyed requests are never kept; bounds
(entry size, total size, lifetime) hold.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest

from eomatch.io.pgstac_store import PgstacStore
from eomatch.service.response_cache import ResponseCache, _Entry, cacheable_path
from service_fixtures import InProcessApi, http, seeded_api_pair, while_snapshot_stands

COLL = "cached"
T0 = "2022-05-06T12:00:00Z"
RING = [[-5.0, 45.0], [-4.0, 45.0], [-4.0, 46.0], [-5.0, 46.0], [-5.0, 45.0]]
CACHE = "x-eomatch-cache"


def collection() -> dict[str, Any]:
    return {
        "type": "Collection",
        "stac_version": "1.1.0",
        "id": COLL,
        "description": "cache",
        "license": "other",
        "extent": {
            "spatial": {"bbox": [[-10.0, 40.0, 0.0, 50.0]]},
            "temporal": {"interval": [[T0, None]]},
        },
        "links": [],
    }


def item(item_id: str, note: str = "") -> dict[str, Any]:
    return {
        "type": "Feature",
        "stac_version": "1.1.0",
        "id": item_id,
        "collection": COLL,
        "geometry": {"type": "Polygon", "coordinates": [RING]},
        "bbox": [-5.0, 45.0, -4.0, 46.0],
        "properties": {"datetime": T0, "note": note},
        "links": [],
        "assets": {
            "data": {"href": "https://example.org/x.nc"},
            "local": {"href": "/srv/private/x.nc"},
        },
    }


@pytest.fixture(scope="module")
def stack(pg_cluster: Any) -> Iterator[dict[str, Any]]:
    with seeded_api_pair(pg_cluster, "cache", collection(), item("a")) as s:
        yield s


def _twice(db: Any, request: Callable[[int], Any]) -> tuple[Any, Any]:
    """``request(attempt)`` twice while the database snapshot stands still."""
    return while_snapshot_stands(db, lambda n: (request(n), request(n)))


def _ids(r: Any) -> list[str]:
    assert r.status_code == 200, r.text
    return sorted(f["id"] for f in r.json()["features"])


def test_repeat_is_a_hit_with_the_same_answer(stack: dict[str, Any]) -> None:
    url = f"{stack['internal'].url}/search?collections={COLL}&limit="
    first, again = _twice(stack["db"], lambda n: http.get(f"{url}{5 + n}"))
    assert first.headers[CACHE] == "miss"
    assert again.headers[CACHE] == "hit"
    assert again.content == first.content
    assert again.headers["content-type"] == first.headers["content-type"]
    assert again.headers.get("content-encoding") == first.headers.get("content-encoding")
    # another query string is another answer
    other = http.get(f"{stack['internal'].url}/search?collections={COLL}&limit=4")
    assert other.headers[CACHE] == "miss"


def test_post_search_is_keyed_by_its_body(stack: dict[str, Any]) -> None:
    url = f"{stack['internal'].url}/search"
    body = {"collections": [COLL], "limit": 3}
    first, hit = _twice(stack["db"], lambda n: http.post(url, json={**body, "limit": 3 + n}))
    assert first.headers[CACHE] == "miss"
    assert hit.headers[CACHE] == "hit"
    assert _ids(hit) == ["a"]
    assert http.post(url, json={**body, "ids": ["nope"]}).headers[CACHE] == "miss"
    assert _ids(http.post(url, json={**body, "ids": ["nope"]})) == []


def test_every_door_of_a_write_makes_the_next_read_fresh(stack: dict[str, Any]) -> None:
    internal, auth, db = stack["internal"], stack["auth"], stack["db"]
    url = f"{internal.url}/search?collections={COLL}&limit=50"
    assert _twice(db, lambda n: http.get(url))[1].headers[CACHE] == "hit"
    # 1. the internal API's transactions
    r = http.post(f"{internal.url}/collections/{COLL}/items", json=item("b"), headers=auth)
    assert r.status_code in (200, 201), r.text
    fresh = http.get(url)
    assert fresh.headers[CACHE] == "miss"
    assert "b" in _ids(fresh)
    # 2. the store eomatch ingest and jobs write through
    PgstacStore(db.role("eomatch_ingest")).upsert_items([item("c")])
    fresh = http.get(url)
    assert fresh.headers[CACHE] == "miss"
    assert "c" in _ids(fresh)
    # 3. any commit at all, even one behind eomatch's back
    with psycopg.connect(db.role().conninfo(), autocommit=True) as conn:
        conn.execute("DELETE FROM pgstac.items WHERE id = 'b'")
    fresh = http.get(url)
    assert fresh.headers[CACHE] == "miss"
    assert "b" not in _ids(fresh)
    assert _twice(db, lambda n: http.get(url))[1].headers[CACHE] == "hit"


def test_external_keeps_only_the_public_view(stack: dict[str, Any]) -> None:
    url = f"{stack['external'].url}/collections/{COLL}/items/a?attempt="
    first, again = _twice(stack["db"], lambda n: http.get(f"{url}{n}"))
    assert (first.headers[CACHE], again.headers[CACHE]) == ("miss", "hit")
    for r in (first, again):
        assert r.status_code == 200
        assert "/srv/private" not in r.text
        assert "local" not in r.json()["assets"]


def test_refusals_errors_and_other_routes_are_not_kept(stack: dict[str, Any]) -> None:
    internal = stack["internal"]
    bad = f"{internal.url}/search?bbox=1,2,3"
    for _ in range(2):
        r = http.get(bad)
        assert r.status_code == 400
        assert r.headers.get(CACHE) == "miss"
    missing = f"{internal.url}/collections/{COLL}/items/nope"
    for _ in range(2):
        r = http.get(missing)
        assert r.status_code == 404
        assert r.headers.get(CACHE) == "miss"
    for path in ("/_mgmt/ping", "/history"):
        r = http.get(f"{internal.url}{path}")
        assert CACHE not in r.headers, path
    # a write is never served from the cache, however often it repeats
    r = http.post(f"{internal.url}/collections/{COLL}/items", json=item("a"))
    assert r.status_code == 401
    assert CACHE not in r.headers


def test_origin_headers_are_part_of_the_key(stack: dict[str, Any]) -> None:
    url = f"{stack['internal'].url}/collections/{COLL}"
    one = http.get(url, headers={"X-Forwarded-Host": "one.example.org"})
    two = http.get(url, headers={"X-Forwarded-Host": "two.example.org"})
    assert two.headers[CACHE] == "miss"
    assert "one.example.org" in one.text
    assert "two.example.org" in two.text
    assert "one.example.org" not in two.text


def test_lifetime_and_off_switch(stack: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EOMATCH_API_CACHE_TTL", "0.3")
    url = f"http://internal/search?collections={COLL}&limit="
    with InProcessApi(stack["db"], "internal") as api:
        first, again = _twice(stack["db"], lambda n: api.get(f"{url}{7 + n}"))
        assert (first.headers[CACHE], again.headers[CACHE]) == ("miss", "hit")
        url = str(first.request.url)
        time.sleep(0.5)
        assert api.get(url).headers[CACHE] == "miss"
    monkeypatch.setenv("EOMATCH_API_CACHE_MB", "0")
    with InProcessApi(stack["db"], "internal") as api:
        for _ in range(2):
            r = api.get(url)
            assert r.status_code == 200
            assert CACHE not in r.headers


def _entry(size: int) -> _Entry:
    return _Entry(200, ((b"content-type", b"application/json"),), b"x" * size, time.monotonic())


def test_lru_bounds_in_bytes() -> None:
    cache = ResponseCache(max_bytes=80_000, ttl=60)
    assert not cache.put(b"big", _entry(10_001))  # over an eighth: not kept
    for k in range(10):
        assert cache.put(bytes([k]), _entry(9_000))
        assert cache.size <= cache.max_bytes
    assert len(cache) == 8
    assert cache.get(bytes([0])) is None
    assert cache.get(bytes([1])) is None
    assert cache.get(bytes([2])) is not None  # now the most recent
    cache.put(b"new", _entry(9_000))
    assert cache.get(bytes([2])) is not None
    assert cache.get(bytes([3])) is None


@pytest.mark.parametrize(
    ("path", "kept"),
    [
        ("/search", True),
        ("/collections", True),
        ("/collections/x/items/y", True),
        ("/queryables", True),
        ("/", True),
        ("/history", False),
        ("/jobs", False),
        ("/_mgmt/health", False),
        ("/keys", False),
        ("/searchx", False),
    ],
)
def test_cacheable_paths(path: str, kept: bool) -> None:
    assert cacheable_path(path) is kept


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("EOMATCH_API_CACHE_MB", "-1"),
        ("EOMATCH_API_CACHE_MB", "abc"),
        ("EOMATCH_API_CACHE_MB", "nan"),
        ("EOMATCH_API_CACHE_MB", "1e9"),
        ("EOMATCH_API_CACHE_TTL", "0"),
        ("EOMATCH_API_CACHE_TTL", "-5"),
        ("EOMATCH_API_CACHE_TTL", "inf"),
    ],
)
def test_bad_settings_are_one_line_naming_the_variable(
    name: str, value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from eomatch.config.settings import ApiSettings, read_settings
    from eomatch.errors import ConfigError

    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=f"^{name}=") as err:
        read_settings(ApiSettings)
    assert "\n" not in str(err.value)


def test_answers_are_compressed_cheaply_and_once(stack: dict[str, Any]) -> None:
    """br at a low quality for clients that take it (eomatch's own, browsers), gzip at a
    middle level for the others, never both (each compressor leaves the other's answer alone);
    the answer decodes to the uncompressed one. Cached and fresh answers alike. (The levels:
    ``test_thirdparty_pins.py::test_our_middleware_sits_inside_compression``.)"""
    for mode in ("internal", "external"):
        api = stack[mode]
        url = f"{api.url}/search?collections={COLL}&limit=7"
        plain = http.get(url, headers={"Accept-Encoding": "identity"})
        assert plain.status_code == 200
        assert "content-encoding" not in plain.headers
        assert len(plain.content) > 1000
        for accept, coding in (("br", "br"), ("gzip", "gzip"), ("gzip, deflate, br", "br")):
            for _ in range(2):  # a miss, then a hit
                r = http.get(url, headers={"Accept-Encoding": accept})
                assert r.headers.get("content-encoding") == coding, (mode, accept, r.headers)
                assert r.json() == plain.json()
