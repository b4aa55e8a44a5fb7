"""Every write of the internal API stores only what can be served back (issue #10 §2, §8).

JSON-Patch bodies (a list) skipped the input guard and ``PATCH /collections/{id}`` checked
nothing: one keyed PATCH stored a collection whose links had no ``rel``, and ``/collections``
answered 500 for everyone. Now the document as it would be stored passes
:func:`eomatch.core.validation.stac_document_problem` on every path (POST, PUT, PATCH in both
formats, bulk), and a write to a collection that does not exist is a 404, not a 500.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from eomatch.core.validation import stac_document_problem
from service_fixtures import http, seeded_api_pair

COLL = "writes"
ITEM = "plain-item"
T0 = "2022-05-06T12:00:00Z"
RING = [[-5.0, 45.0], [-4.0, 45.0], [-4.0, 46.0], [-5.0, 46.0], [-5.0, 45.0]]


def collection(coll_id: str = COLL) -> dict[str, Any]:
    return {
        "type": "Collection",
        "stac_version": "1.1.0",
        "id": coll_id,
        "description": "writes",
        "license": "other",
        "extent": {
            "spatial": {"bbox": [[-10.0, 40.0, 0.0, 50.0]]},
            "temporal": {"interval": [[T0, None]]},
        },
        "links": [],
        "assets": {"thumb": {"href": "https://example.org/t.png"}},
    }


def item(item_id: str = ITEM, coll: str = COLL) -> dict[str, Any]:
    return {
        "type": "Feature",
        "stac_version": "1.1.0",
        "id": item_id,
        "collection": coll,
        "geometry": {"type": "Polygon", "coordinates": [RING]},
        "bbox": [-5.0, 45.0, -4.0, 46.0],
        "properties": {"datetime": T0},
        "links": [{"rel": "via", "href": "https://example.org/src"}],
        "assets": {"data": {"href": "https://example.org/x.nc"}},
    }


# -- the shared check ------------------------------------------------------------------------------


def test_valid_documents_pass() -> None:
    assert stac_document_problem(item()) is None
    assert stac_document_problem(collection()) is None
    open_ended = collection()
    open_ended["extent"]["temporal"]["interval"] = [[None, None]]
    assert stac_document_problem(open_ended) is None
    ranged = item()
    ranged["properties"] = {"datetime": None, "start_datetime": T0, "end_datetime": T0}
    assert stac_document_problem(ranged) is None


BROKEN_ITEMS = [
    ("links", {"a": 1}, "links"),
    ("links", [{"rel": "x"}], "href"),
    ("links", [{"href": "https://x"}], "rel"),
    ("links", ["https://x"], "link objects"),
    ("assets", [1], "assets"),
    ("assets", {"a": {"title": "no href"}}, "href"),
    ("assets", {"a": {"href": "https://x", "alternate": {"b": 3}}}, "alternate"),
    ("properties", None, "properties"),
    ("properties", {"title": "no datetime"}, "datetime"),
    ("properties", {"datetime": 5}, "datetime"),
    ("bbox", "x", "bbox"),
    ("bbox", [0, 0, 1], "bbox"),
    ("geometry", {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1]]]}, "closed"),
    ("geometry", {"type": "LineString", "coordinates": [[0, 0]]}, "2 positions"),
    ("type", "Collection", "type"),
    ("id", "", "id"),
    ("stac_extensions", "x", "stac_extensions"),
]


@pytest.mark.parametrize(("member", "value", "said"), BROKEN_ITEMS)
def test_unservable_items_are_named(member: str, value: Any, said: str) -> None:
    doc = item()
    doc[member] = value
    problem = stac_document_problem(doc, "Feature")
    assert said in str(problem), problem


@pytest.mark.parametrize(
    ("path", "value", "said"),
    [
        (("extent",), None, "extent"),
        (("extent", "spatial"), 1, "spatial"),
        (("extent", "spatial", "bbox"), [[0, 0]], "bbox"),
        (("extent", "temporal", "interval"), [["a"]], "interval"),
        (("links",), [{"rel": "x"}], "href"),
        (("description",), 3, "description"),
    ],
)
def test_unservable_collections_are_named(path: tuple[str, ...], value: Any, said: str) -> None:
    doc = collection()
    target = doc
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    problem = stac_document_problem(doc, "Collection")
    assert said in str(problem), problem


def test_deep_nesting_is_refused_iteratively() -> None:
    doc = item()
    deep: Any = "leaf"
    for _ in range(5000):  # deeper than Python's recursion limit
        deep = {"x": deep}
    doc["properties"]["deep"] = deep
    assert "deeper" in str(stac_document_problem(doc))


# -- the internal API (in this process: what it answers, not how a server runs it) -----------------


@pytest.fixture(scope="module")
def stack(pg_cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    with seeded_api_pair(pg_cluster, "writer", collection(), item()) as stack:
        yield stack


def _reads_ok(stack: dict[str, Any]) -> None:
    """The whole catalogue still serves: collections, the collection, items, searches."""
    for api in (stack["internal"], stack["external"]):
        for path in (
            "/collections",
            f"/collections/{COLL}",
            f"/collections/{COLL}/items",
            f"/collections/{COLL}/items/{ITEM}",
            "/search",
            f"/search?collections={COLL}",
        ):
            r = http.get(api.url + path, timeout=30)
            assert r.status_code == 200, (api.url, path, r.status_code, r.text[:300])
        r = http.post(api.url + "/search", json={"collections": [COLL]}, timeout=30)
        assert r.status_code == 200, r.text[:300]


def _patch(stack: dict[str, Any], path: str, body: Any) -> httpx.Response:
    ctype = "application/json-patch+json" if isinstance(body, list) else "application/json"
    return http.patch(
        stack["internal"].url + path,
        content=json.dumps(body),
        headers={**stack["auth"], "Content-Type": ctype},
        timeout=30,
    )


BAD_PATCHES = [
    # JSON Patch (RFC 6902) on the collection: each of the first three stored and poisoned
    (f"/collections/{COLL}", [{"op": "replace", "path": "/links", "value": {"a": 1}}]),
    (f"/collections/{COLL}", [{"op": "add", "path": "/links/-", "value": {"href": "x"}}]),
    (f"/collections/{COLL}", [{"op": "add", "path": "/links/-", "value": {"rel": "x"}}]),
    (f"/collections/{COLL}", [{"op": "remove", "path": "/extent"}]),
    (f"/collections/{COLL}", [{"op": "remove", "path": "/type"}]),
    (f"/collections/{COLL}", [{"op": "replace", "path": "/id", "value": "other"}]),
    (f"/collections/{COLL}", [{"op": "replace", "path": "/assets", "value": {"a": 1}}]),
    # merge patches on the collection
    (f"/collections/{COLL}", {"links": {"a": 1}}),
    (f"/collections/{COLL}", {"extent": {"spatial": {"bbox": "x"}}}),
    (f"/collections/{COLL}", {"extent": None}),
    # the item, both formats
    (f"/collections/{COLL}/items/{ITEM}", [{"op": "replace", "path": "/links", "value": {}}]),
    (f"/collections/{COLL}/items/{ITEM}", [{"op": "add", "path": "/links/-", "value": "s"}]),
    (f"/collections/{COLL}/items/{ITEM}", [{"op": "remove", "path": "/properties"}]),
    (f"/collections/{COLL}/items/{ITEM}", [{"op": "remove", "path": "/properties/datetime"}]),
    (f"/collections/{COLL}/items/{ITEM}", [{"op": "remove", "path": "/geometry"}]),
    (f"/collections/{COLL}/items/{ITEM}", [{"op": "replace", "path": "/assets", "value": [1]}]),
    (f"/collections/{COLL}/items/{ITEM}", [{"op": "replace", "path": "/bbox", "value": "x"}]),
    (f"/collections/{COLL}/items/{ITEM}", [{"op": "remove", "path": "/type"}]),
    (f"/collections/{COLL}/items/{ITEM}", {"links": [{"rel": "x"}]}),
    (f"/collections/{COLL}/items/{ITEM}", {"properties": {"datetime": None}}),
    (f"/collections/{COLL}/items/{ITEM}", {"properties": None}),
    (
        f"/collections/{COLL}/items/{ITEM}",
        {"geometry": {"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [2, 2]]]}},
    ),
]


@pytest.mark.parametrize(("path", "patch"), BAD_PATCHES)
def test_a_patch_that_would_break_reads_is_refused(stack, path: str, patch: Any) -> None:
    db = stack["db"]
    before = db.snapshot()
    r = _patch(stack, path, patch)
    assert 400 <= r.status_code < 500, (path, patch, r.status_code, r.text[:300])
    assert r.json().get("description") or r.json().get("detail"), r.text
    assert db.snapshot() == before
    _reads_ok(stack)


def test_good_patches_still_work(stack) -> None:
    url = f"/collections/{COLL}"
    r = _patch(stack, url, {"title": "Writes"})
    assert r.status_code == 200, r.text
    got = http.get(stack["internal"].url + url).json()
    # a merge patch changes only what it names (stac-fastapi-pgstac's dump of its partial
    # model set every other member to null, which deletes in a merge patch)
    assert got["title"] == "Writes"
    assert got["extent"] == collection()["extent"]
    ops = [
        {"op": "add", "path": "/properties/note", "value": "a"},
        {"op": "copy", "from": "/properties/note", "path": "/properties/copy"},
        {"op": "move", "from": "/properties/copy", "path": "/properties/moved"},
    ]
    r = _patch(stack, f"{url}/items/{ITEM}", ops)
    assert r.status_code == 200, r.text
    props = http.get(f"{stack['internal'].url}{url}/items/{ITEM}").json()["properties"]
    assert props["note"] == "a"
    assert props["moved"] == "a"
    assert "copy" not in props
    r = _patch(stack, f"{url}/items/{ITEM}", {"properties": {"note": None}})
    assert r.status_code == 200, r.text
    props = http.get(f"{stack['internal'].url}{url}/items/{ITEM}").json()["properties"]
    assert "note" not in props
    assert props["datetime"]
    _reads_ok(stack)


def test_writes_to_a_missing_collection_are_404(stack) -> None:
    db, url, auth = stack["db"], stack["internal"].url, stack["auth"]
    before = db.snapshot()
    cases = [
        ("POST", "/collections/nope/items", item("n1", "nope")),
        ("POST", "/collections/nope/items", {"type": "FeatureCollection", "features": [item()]}),
        ("PUT", "/collections/nope/items/n1", item("n1", "nope")),
        ("PATCH", "/collections/nope/items/n1", {"properties": {"x": 1}}),
        ("PATCH", "/collections/nope", {"title": "x"}),
        ("POST", "/collections/nope/bulk_items", {"items": {"n1": item("n1", "nope")}}),
    ]
    for method, path, body in cases:
        r = http.request(method, url + path, json=body, headers=auth, timeout=30)
        assert r.status_code == 404, (method, path, r.status_code, r.text[:300])
    assert db.snapshot() == before


def test_every_write_route_checks_the_stored_document(stack) -> None:
    db, url, auth = stack["db"], stack["internal"].url, stack["auth"]
    bad_item = item("bad")
    bad_item["links"] = [{"rel": "via"}]
    bad_coll = collection("bad-coll")
    bad_coll["links"] = [{"href": "https://x"}]
    before = db.snapshot()
    cases = [
        ("POST", f"/collections/{COLL}/items", bad_item),
        (
            "POST",
            f"/collections/{COLL}/items",
            {"type": "FeatureCollection", "features": [bad_item]},
        ),
        ("PUT", f"/collections/{COLL}/items/bad", bad_item),
        ("POST", "/collections", bad_coll),
        ("PUT", f"/collections/{COLL}", {**bad_coll, "id": COLL}),
    ]
    for method, path, body in cases:
        r = http.request(method, url + path, json=body, headers=auth, timeout=30)
        assert 400 <= r.status_code < 500, (method, path, r.status_code, r.text[:300])
    r = http.post(
        f"{url}/collections/{COLL}/bulk_items",
        json={"items": {"bad": bad_item}},
        headers=auth,
        timeout=30,
    )
    assert r.status_code < 500, r.text
    assert r.json().get("success", 0) == 0, r.text
    assert db.snapshot() == before
    _reads_ok(stack)
    ok = copy.deepcopy(item("good-bulk"))
    r = http.post(
        f"{url}/collections/{COLL}/bulk_items",
        json={"method": "upsert", "items": {"good-bulk": ok}},
        headers=auth,
        timeout=30,
    )
    assert r.status_code < 300, r.text
    assert r.json()["success"] == 1, r.text


def test_read_connections_go_back_without_a_reset_and_write_ones_with_it(stack) -> None:
    """asyncpg's reset (``... RESET ALL``) is one more round trip per request; reads leave no
    session state, so the read pools skip it, while the write pool, whose connections carry
    ``eomatch.actor``/``message`` for the history, keeps it. What each idle API connection
    ran last tells which: a read statement, or the reset."""
    _patch(stack, f"/collections/{COLL}/items/{ITEM}", {"properties": {"reset": "probe"}})
    for api in (stack["internal"], stack["external"]):
        r = http.post(api.url + "/search", json={"collections": [COLL]}, timeout=30)
        assert r.status_code == 200, r.text[:300]
    last = [
        str(q)
        for (q,) in stack["db"].query(
            "SELECT query FROM pg_stat_activity WHERE datname = current_database() "
            "AND application_name = 'pgstac' AND state = 'idle'"
        )
    ]
    resets = [q for q in last if "RESET ALL" in q]
    reads = [q for q in last if "search(" in q or "pg_current_snapshot" in q]
    assert resets, last  # the write pool's connection
    assert len(reads) >= 2, last  # the internal and the external read pools'
