"""The internal and external STAC APIs on a real pgSTAC, served in this process.

What the APIs answer does not depend on the server that runs them, so they run in-process
(``api_pair_in_process``); the database-down behaviour of real uvicorn processes is tested in
test_service_exposure.py, the gateway in test_gateway.py.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from eomatch.core.publish import is_public
from eomatch.io.pgstac_store import PgstacStore
from eomatch.workflows.ingest import ingest_catalogue
from service_fixtures import (
    InProcessApi,
    ServiceDb,
    all_hrefs,
    api_pair_in_process,
    http,
    make_catalogue,
)


@pytest.fixture(scope="module")
def stack(
    pg_cluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ServiceDb, InProcessApi, InProcessApi, Path]]:
    from service_fixtures import _new_db

    db = _new_db(pg_cluster)
    root = make_catalogue(tmp_path_factory.mktemp("cat") / "cat", n_events=3)
    # one local analysis file and one published one on a matchup
    cat_items = sorted((root).glob("*-vs-*/20*/*/*/*.json"))
    matchup = next(p for p in cat_items if "matchup-events" not in str(p))
    doc = json.loads(matchup.read_text())
    (root / "data").mkdir(exist_ok=True)
    (root / "data" / "cmp.nc").write_bytes(b"nc")
    doc["assets"]["comparison:local"] = {
        "href": os.path.relpath(root / "data" / "cmp.nc", matchup.parent)
    }
    doc["assets"]["comparison:abs"] = {"href": "/mnt/shared/cmp.nc"}
    doc["assets"]["comparison:web"] = {"href": "https://data.example.org/cmp.nc"}
    doc["links"].append({"rel": "alternate", "href": "/mnt/shared/elsewhere.json"})
    matchup.write_text(json.dumps(doc))
    ingest_catalogue(root, PgstacStore(db.role("eomatch_ingest")))
    with api_pair_in_process(db) as (internal, external):
        yield db, internal, external, matchup


def _key(db: ServiceDb, name: str) -> str:
    return PgstacStore(db.role()).create_key(name)


def _post_item(api_url: str, coll: str, item: dict, key: str) -> httpx.Response:
    return http.post(
        f"{api_url}/collections/{coll}/items",
        json=item,
        headers={"Authorization": f"Bearer {key}"},
    )


def test_internal_shows_local_assets_external_does_not(stack) -> None:
    _db, internal, external, matchup = stack
    doc = json.loads(matchup.read_text())
    coll, item_id = doc["collection"], doc["id"]
    inner = http.get(f"{internal.url}/collections/{coll}/items/{item_id}").json()
    assert inner["assets"]["comparison:local"]["href"].startswith("file:///")
    assert inner["assets"]["comparison:abs"]["href"] == "file:///mnt/shared/cmp.nc"
    outer = http.get(f"{external.url}/collections/{coll}/items/{item_id}").json()
    assert "comparison:local" not in outer["assets"]
    assert "comparison:abs" not in outer["assets"]
    assert outer["assets"]["comparison:web"]["href"] == "https://data.example.org/cmp.nc"
    assert all(is_public(h) for h in all_hrefs(outer))
    # derived_from / related links resolve to the API's own item URLs
    rels = {lk["rel"] for lk in outer["links"]}
    assert {"derived_from", "related", "self", "root"} <= rels
    product = next(lk["href"] for lk in outer["links"] if lk["rel"] == "derived_from")
    assert product.startswith(external.url + "/collections/")
    assert http.get(product).status_code == 200


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/collections", None),
        ("GET", "/search?limit=100", None),
        ("POST", "/search", {"limit": 100}),
        ("GET", "/collections/{coll}", None),
        ("GET", "/collections/{coll}/items?limit=100", None),
    ],
)
def test_every_external_shape_is_public(stack, method: str, path: str, body) -> None:
    _db, _internal, external, matchup = stack
    coll = json.loads(matchup.read_text())["collection"]
    url = external.url + path.format(coll=coll)
    r = http.request(method, url, json=body)
    assert r.status_code == 200
    hrefs = all_hrefs(r.json())
    assert hrefs
    assert all(is_public(h) for h in hrefs), [h for h in hrefs if not is_public(h)]


def test_external_has_no_write_routes(stack) -> None:
    db, _internal, external, matchup = stack
    before = db.snapshot()
    coll = json.loads(matchup.read_text())["collection"]
    key = _key(db, "ext-writer")
    auth = {"Authorization": f"Bearer {key}"}
    for method, path in [
        ("POST", "/collections"),
        ("POST", f"/collections/{coll}/items"),
        ("PUT", f"/collections/{coll}"),
        ("DELETE", f"/collections/{coll}"),
        ("PATCH", f"/collections/{coll}/items/x"),
        ("DELETE", f"/collections/{coll}/items/x"),
        ("POST", f"/collections/{coll}/bulk_items"),
    ]:
        r = http.request(method, external.url + path, json={}, headers=auth)
        assert r.status_code in (404, 405), (method, path, r.status_code)
    PgstacStore(db.role()).revoke_key("ext-writer")
    after = [row for row in db.snapshot() if row[1] != "ext-writer"]
    assert after == [row for row in before if row[1] != "ext-writer"]


def _new_item(db_item: dict, new_id: str) -> dict:
    item = json.loads(json.dumps(db_item))
    item["id"] = new_id
    item["links"] = []
    return item


def test_writes_need_a_live_key_effective_without_restart(stack) -> None:
    db, internal, _external, matchup = stack
    doc = json.loads(matchup.read_text())
    coll = doc["collection"]
    base = http.get(f"{internal.url}/collections/{coll}/items/{doc['id']}").json()
    url = f"{internal.url}/collections/{coll}/items"
    before = db.snapshot()
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic abc"}):
        r = http.post(url, json=_new_item(base, "denied"), headers=headers)
        assert r.status_code == 401
        assert r.json()["code"] == "Unauthorized"
        assert r.headers["www-authenticate"].startswith("Bearer")
    assert db.snapshot() == before
    key = _key(db, "pipeline")  # created while the API runs
    auth = {"Authorization": f"Bearer {key}"}
    r = http.post(url, json=_new_item(base, "allowed-1"), headers=auth)
    assert r.status_code in (200, 201), r.text
    assert http.get(f"{url}/allowed-1").status_code == 200
    listed = {k.name: k for k in PgstacStore(db.role()).list_keys()}
    assert listed["pipeline"].last_used_at is not None
    # search by POST stays a read: no key needed
    assert http.post(f"{internal.url}/search", json={"ids": ["allowed-1"]}).status_code == 200
    PgstacStore(db.role()).revoke_key("pipeline")
    r = http.delete(f"{url}/allowed-1", headers=auth)
    assert r.status_code == 401
    assert http.get(f"{url}/allowed-1").status_code == 200


def test_links_follow_the_proxy_prefix(stack) -> None:
    _db, _internal, external, _matchup = stack
    headers = {
        "X-Forwarded-Proto": "https",
        "X-Forwarded-Host": "stac.example.org",
        "X-Forwarded-Port": "443",
    }
    # no --root-path here; the root path comes from the ASGI scope
    r = http.get(f"{external.url}/search?limit=1", headers=headers)
    links = {lk["rel"]: lk["href"] for lk in r.json()["links"]}
    assert links["root"].startswith("https://stac.example.org/")
    assert links["next"].startswith("https://stac.example.org/search?")


def test_bad_bboxes_are_400_not_500(stack) -> None:
    _db, internal, external, _matchup = stack
    for api in (internal, external):
        assert http.get(f"{api.url}/search?bbox=1,2,3").status_code == 400
        r = http.get(f"{api.url}/search?bbox=-20,30,0,40,60,1000")
        assert r.status_code == 200
        assert r.json()["features"]
        assert http.post(f"{api.url}/search", json={"bbox": [1, 2, 3]}).status_code == 400


def test_bad_requests_found_by_fuzzing_are_4xx_not_500(stack) -> None:
    """Regressions: each of these was a 500 from stac-fastapi/pgSTAC before the guards."""
    db, internal, external, matchup = stack
    doc = json.loads(matchup.read_text())
    coll, item_id = doc["collection"], doc["id"]
    key = _key(db, "fuzz-regressions")
    auth = {"Authorization": f"Bearer {key}"}
    item_url = f"{internal.url}/collections/{coll}/items/{item_id}"
    cases = [
        (external, "POST", "/search", {"content": b"[null, null]"}, 400),
        (external, "POST", "/search", {"json": {"query": {}}}, 400),
        (
            external,
            "POST",
            "/search",
            {"content": b'{"limit": 1}', "headers": {"Content-Type": "text/plain"}},
            415,
        ),
        (external, "GET", "/search?token=abc", {}, 400),
        (external, "GET", "/collections?q=!", {}, 400),
        (external, "GET", "/collections?sortby=%00%C3%81", {}, 400),
        (internal, "PUT", f"/collections/{coll}", {"headers": auth}, 400),
        (internal, "POST", f"/collections/{coll}/items", {"headers": auth}, 400),
        (internal, "PATCH", f"/collections/{coll}/items/{item_id}", {"headers": auth}, 400),
        (
            internal,
            "PATCH",
            f"/collections/{coll}",
            {
                "content": b'[{"op": "remove", "path": "/properties/nothing"}]',
                "headers": {**auth, "Content-Type": "application/json-patch+json"},
            },
            400,
        ),
    ]
    before = db.snapshot()
    for api, method, path, kwargs, expected in cases:
        r = http.request(method, api.url + path, timeout=30, **kwargs)
        assert r.status_code == expected, (method, path, r.status_code, r.text[:200])
    assert http.get(item_url).status_code == 200
    assert [row for row in db.snapshot() if row[1] != "fuzz-regressions"] == [
        row for row in before if row[1] != "fuzz-regressions"
    ]


def test_an_href_urljoin_cannot_parse_is_refused_before_it_is_written(stack) -> None:
    """Regression (hypothesis): a link "http://[" was stored, then the API answered 500."""
    db, internal, _external, matchup = stack
    doc = json.loads(matchup.read_text())
    coll = doc["collection"]
    key = _key(db, "href-writer")
    base = http.get(f"{internal.url}/collections/{coll}/items/{doc['id']}").json()
    item = {**base, "id": "bad-href", "links": [{"rel": "alternate", "href": "http://["}]}
    before = db.item_count()
    r = _post_item(internal.url, coll, item, key)
    assert r.status_code == 400
    assert "is not a URL" in r.json()["description"]
    assert db.item_count() == before


def test_nested_geometry_collection_is_refused(stack) -> None:
    db, internal, _external, matchup = stack
    coll = json.loads(matchup.read_text())["collection"]
    key = _key(db, "geometry-writer")
    item = {
        "type": "Feature",
        "stac_version": "1.1.0",
        "id": "nested",
        "collection": coll,
        "geometry": {
            "type": "GeometryCollection",
            "geometries": [{"type": "GeometryCollection", "geometries": []}],
        },
        "bbox": [0, 0, 0, 0],
        "properties": {"datetime": "2022-05-06T12:00:00Z"},
        "links": [],
        "assets": {},
    }
    r = _post_item(internal.url, coll, item, key)
    assert r.status_code == 400
    assert "GeometryCollection inside a GeometryCollection" in r.json()["description"]
