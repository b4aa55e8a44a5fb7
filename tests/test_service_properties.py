"""Property tests against the real running APIs (uvicorn processes on a real pgSTAC).

(a) Whatever hrefs an internal writer stores anywhere in a collection or an item — assets,
    alternates (nested too), links, and objects with an ``href`` at any depth of properties,
    summaries, providers or extra members; file://, absolute and relative paths, s3://, ftp://,
    data:, javascript:, protocol-relative, mixed-case HTTP://, odd unicode, non-strings — no
    response of the external API in any shape (item, items, search GET and POST, collection,
    collections, landing page, queryables) contains an href that is not http(s), and no
    stored path comes back dressed as a URL of the API itself (every href on the API's own
    origin is one of its routes). The oracles are plain regexes, not the filter's own
    predicates.
(b) A write attempt without a live key (random method, transaction route or odd path, random
    Authorization header including a revoked key and near-misses of the live one) never
    changes the database and always gets 401/404/405/400: never 2xx, never 5xx. These
    requests go over a raw socket so odd paths (``..``, ``//``) reach the server unnormalised.
"""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Iterator
from itertools import count
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from service_fixtures import all_hrefs, http, start_api

PUBLIC = re.compile(r"^https?://", re.IGNORECASE | re.ASCII)
# what the external API may link to on its own origin: its routes, nothing a writer chose
API_ROUTE = re.compile(
    r"(|conformance|queryables|search|api|api\.html|collections"
    r"|collections/[^/?#]+(/items(/[^/?#]+)?|/queryables)?)(\?.*)?"
)
COLL = "prop-hrefs"
TARGET = "target"
T0 = "2022-05-06T12:00:00Z"

ODD_HREFS = [
    "file:///etc/passwd",
    "FILE:///data/x.nc",
    "file:relative.nc",
    "/abs/path/product.nc",
    "relative/path.nc",
    "./here.nc",
    "../up/there.nc",
    "s3://bucket/key.nc",
    "gs://bucket/key.nc",
    "ftp://ftp.example.org/x.nc",
    "data:text/plain;base64,SGVsbG8=",
    "javascript:alert(1)",
    "JaVaScRiPt:alert(1)",
    "mailto:ops@example.org",
    "//cdn.example.org/protocol-relative.nc",
    "\\\\server\\share\\x.nc",
    "C:\\data\\x.nc",
    "c:/data/x.nc",
    " http://leading-space.example.org/x",
    "http:/one-slash",
    "https:no-slash",
    "\u2028http://line-separator.example.org/",
    "\uff48\uff54\uff54\uff50://fullwidth.example.org/",  # fullwidth "http"
    "",
    "HTTP://UPPER.EXAMPLE.ORG/X.NC",
    "hTtPs://mixed.example.org/x.nc",
    "http://example.org/a.nc",
    "https://例え.jp/ü.nc",
]
PREFIXES = ["", "http://", "https://", "HTTP://", "Https://", "file://", "s3://", "/", "./"]
PREFIXES += ["../", "data:", "javascript:", "ftp://", "~/"]
# no surrogates (not JSON-encodable) and no NUL (PostgreSQL cannot store it in jsonb; the API
# answers 400, checked in test_openapi_fuzz.py)
text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
    max_size=24,
)
hrefs = st.one_of(
    st.sampled_from(ODD_HREFS),
    st.builds(lambda p, rest: p + rest, st.sampled_from(PREFIXES), text),
)
rels = st.sampled_from(["alternate", "derived_from", "related", "via", "license", "preview"])
asset_keys = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_:-0123456789", min_size=1, max_size=12)


@st.composite
def assets(draw: st.DrawFn) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in draw(st.lists(asset_keys, max_size=4, unique=True)):
        asset: dict[str, Any] = {"href": draw(hrefs), "roles": ["data"]}
        if draw(st.booleans()):
            alt = draw(st.lists(asset_keys, min_size=1, max_size=2, unique=True))
            asset["alternate"] = {k: {"href": draw(hrefs)} for k in alt}
        out[key] = asset
    return out


links = st.lists(st.builds(lambda rel, href: {"rel": rel, "href": href}, rels, hrefs), max_size=4)

# objects carrying an href anywhere in a document: nested in properties, summaries, extra
# members, assets and links themselves; the href may not even be a string
member_keys = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=8).map(
    lambda k: "x:" + k
)
scalars = st.one_of(st.none(), st.booleans(), st.integers(-10, 10), text)
odd_hrefs = st.one_of(hrefs, hrefs, st.integers(), st.none(), st.lists(hrefs, max_size=2))
href_objects = st.builds(
    lambda h, extra: {**extra, "href": h},
    odd_hrefs,
    st.dictionaries(st.sampled_from(["rel", "title", "type"]), text, max_size=2),
)
anywhere = st.recursive(
    st.one_of(scalars, href_objects),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(member_keys, inner, max_size=3)
    ),
    max_leaves=8,
)
extras = st.dictionaries(member_keys, anywhere, max_size=3)


@st.composite
def nested_assets(draw: st.DrawFn) -> dict[str, Any]:
    """Assets with extra members holding hrefs, and alternates of alternates."""
    out = draw(assets())
    for asset in out.values():
        asset.update(draw(extras))
        for alt in (asset.get("alternate") or {}).values():
            alt.update(draw(extras))
            if draw(st.booleans()):
                alt["alternate"] = {"deeper": {"href": draw(hrefs), **draw(extras)}}
    return out


rich_links = st.lists(
    st.builds(lambda rel, href, extra: {**extra, "rel": rel, "href": href}, rels, hrefs, extras),
    max_size=4,
)


def _collection(extra_assets: dict[str, Any], extra_links: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "type": "Collection",
        "stac_version": "1.1.0",
        "id": COLL,
        "description": "hrefs of every kind",
        "license": "other",
        "extent": {
            "spatial": {"bbox": [[-10.0, 40.0, 0.0, 50.0]]},
            "temporal": {"interval": [[T0, None]]},
        },
        "links": extra_links,
        "assets": extra_assets,
    }


def _item(
    item_id: str, item_assets: dict[str, Any], item_links: list[dict[str, Any]]
) -> dict[str, Any]:
    ring = [[-5.0, 45.0], [-4.0, 45.0], [-4.0, 46.0], [-5.0, 46.0], [-5.0, 45.0]]
    return {
        "type": "Feature",
        "stac_version": "1.1.0",
        "id": item_id,
        "collection": COLL,
        "geometry": {"type": "Polygon", "coordinates": [ring]},
        "bbox": [-5.0, 45.0, -4.0, 46.0],
        "properties": {"datetime": T0},
        "links": item_links,
        "assets": item_assets,
    }


@pytest.fixture(scope="module")
def stack(pg_cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    from eomatch.io.pgstac_store import PgstacStore
    from eomatch.workflows.ingest import ingest_catalogue
    from service_fixtures import _new_db, api_pair_in_process, make_catalogue

    db = _new_db(pg_cluster)
    root = make_catalogue(tmp_path_factory.mktemp("cat") / "cat", n_events=1)
    ingest_catalogue(root, PgstacStore(db.role("eomatch_ingest")))
    store = PgstacStore(db.role())
    key = store.create_key("writer")
    revoked = store.create_key("gone")
    store.revoke_key("gone")
    # (a) asks what the APIs answer: in this process; (b) sends raw request lines, which only a
    # real server parses as a client's would be: a uvicorn process
    with api_pair_in_process(db) as (internal, external):
        r = http.post(
            f"{internal.url}/collections",
            json=_collection({}, []),
            headers={"Authorization": f"Bearer {key}"},
            timeout=30,
        )
        assert r.status_code in (200, 201), r.text
        r = http.post(
            f"{internal.url}/collections/{COLL}/items",
            json=_item(TARGET, {}, []),
            headers={"Authorization": f"Bearer {key}"},
            timeout=30,
        )
        assert r.status_code in (200, 201), r.text
        real = start_api(db, "internal", tmp_path_factory.mktemp("logs"))
        try:
            yield {
                "db": db,
                "internal": internal,
                "external": external,
                "real_internal": real,
                "key": key,
                "revoked": revoked,
                "ids": count(),
            }
        finally:
            real.stop()


def _assert_external_shows_only_urls(ext: str, item_id: str) -> None:
    """Every external answer that can hold the stored hrefs holds only http(s) URLs, and none
    of a stored path dressed as a URL of the API's own origin."""
    shapes: list[tuple[str, str, Any]] = [
        ("GET", f"/collections/{COLL}/items/{quote(item_id)}", None),
        ("GET", f"/collections/{COLL}/items?limit=100", None),
        ("GET", f"/search?collections={COLL}&limit=100", None),
        ("GET", f"/search?ids={quote(item_id)}", None),
        ("POST", "/search", {"collections": [COLL], "limit": 100}),
        ("GET", f"/collections/{COLL}", None),
        ("GET", "/collections", None),
        ("GET", "/collections?q=hrefs", None),
        ("GET", "/", None),
        ("GET", "/queryables", None),
        ("GET", f"/collections/{COLL}/queryables", None),
    ]
    for method, path, body in shapes:
        got = http.request(method, ext + path, json=body, timeout=30)
        assert got.status_code in (200, 404), (method, path, got.status_code, got.text[:300])
        found = all_hrefs(got.json())
        leaked = [h for h in found if not PUBLIC.match(h)]
        assert leaked == [], (method, path, leaked)
        # a stored path is not turned into a URL of the API's own origin either
        dressed = [
            h
            for h in found
            if h.startswith(ext + "/") and not API_ROUTE.fullmatch(h[len(ext) + 1 :])
        ]
        assert dressed == [], (method, path, dressed)


# -- (a) the external API never shows a non-http(s) href --------------------------------------


@pytest.mark.slow
@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    coll_assets=nested_assets(),
    coll_links=rich_links,
    item_assets=nested_assets(),
    item_links=rich_links,
    coll_extra=extras,
    item_extra=extras,
    item_props=extras,
)
def test_external_never_shows_a_non_http_href(
    stack, coll_assets, coll_links, item_assets, item_links, coll_extra, item_extra, item_props
) -> None:
    internal, external = stack["internal"], stack["external"]
    auth = {"Authorization": f"Bearer {stack['key']}"}
    item_id = f"item-{next(stack['ids'])}"
    coll = {**coll_extra, **_collection(coll_assets, coll_links)}
    coll["summaries"] = {"x:anything": [item_props]} if item_props else {}
    coll["providers"] = [{"name": "p", **coll_extra}]
    r = http.put(f"{internal.url}/collections/{COLL}", json=coll, headers=auth, timeout=30)
    assert r.status_code < 500, r.text
    stored = r.status_code < 300
    doc = {**item_extra, **_item(item_id, item_assets, item_links)}
    doc["properties"].update(item_props)
    r = http.post(
        f"{internal.url}/collections/{COLL}/items",
        json=doc,
        headers=auth,
        timeout=30,
    )
    assert r.status_code < 500, r.text
    if r.status_code < 300:
        stored = True
        # the internal API keeps the hrefs as written: the filter below has work to do
        inner = http.get(f"{internal.url}/collections/{COLL}/items/{item_id}", timeout=30)
        assert {k: a["href"] for k, a in inner.json()["assets"].items()} == {
            k: a["href"] for k, a in item_assets.items()
        }
    # a refused write stores nothing that could leak: not a case
    assume(stored)

    _assert_external_shows_only_urls(external.url, item_id)


# -- (b) write attempts without a live key change nothing ----------------------------------------

WRITE_METHODS = ["POST", "PUT", "PATCH", "DELETE"]
# the routes where a live key would succeed (with the body _valid_body gives)
ROUTES = [
    ("POST", "/collections"),
    ("PUT", f"/collections/{COLL}"),
    ("PATCH", f"/collections/{COLL}"),
    ("DELETE", f"/collections/{COLL}"),
    ("POST", f"/collections/{COLL}/items"),
    ("PUT", f"/collections/{COLL}/items/{TARGET}"),
    ("PATCH", f"/collections/{COLL}/items/{TARGET}"),
    ("DELETE", f"/collections/{COLL}/items/{TARGET}"),
    ("POST", f"/collections/{COLL}/bulk_items"),
]
ODD_PATHS = [
    "/collections/no-such/items/x",
    "/search",
    "/search/",
    "/SEARCH",
    "//search",
    "/search/../collections",
    "//collections",
    "//collections//" + COLL,
    f"/collections/{COLL}/items/../../collections",
    f"/collections/{COLL}/items/./{TARGET}",
    "/collections/x/items/../../collections",
    "/%2e%2e/collections",
    "/collections/%2F",
    f"/collections/{COLL}/items/{TARGET}/",
    f"/collections/{COLL}/items?x=1",
    "/conformance",
    "/",
]
odd_requests = st.tuples(st.sampled_from(WRITE_METHODS), st.sampled_from(ODD_PATHS))
header_text = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=0, max_size=40
)


@st.composite
def authorizations(draw: st.DrawFn, live: str, revoked: str) -> tuple[str, str] | None:
    """A header (name, value) that carries no live key, or None for no header."""
    choice = draw(
        st.sampled_from(
            [
                "none",
                "revoked",
                "revoked-lower",
                "random",
                "bearer-random",
                "empty-bearer",
                "live-truncated",
                "live-extended",
                "live-other-scheme",
                "live-no-scheme",
                "live-other-header",
                "live-in-query",
            ]
        )
    )
    if choice == "none":
        return None
    value = {
        "revoked": f"Bearer {revoked}",
        "revoked-lower": f"bearer {revoked}",
        "random": draw(header_text),
        "bearer-random": "Bearer " + draw(header_text),
        "empty-bearer": draw(st.sampled_from(["Bearer", "Bearer ", "Bearer\t", ""])),
        "live-truncated": f"Bearer {live[:-1]}",
        "live-extended": f"Bearer {live}x",
        "live-other-scheme": draw(st.sampled_from(["Basic ", "Token ", "Bearer: ", "Bearer="]))
        + live,
        "live-no-scheme": live,
        "live-other-header": live,
        "live-in-query": "",
    }[choice]
    if choice == "live-other-header":
        return (draw(st.sampled_from(["X-Api-Key", "Api-Key", "X-Authorization"])), value)
    if choice == "live-in-query":
        return ("X-Query-Key", live)
    return ("Authorization", value)


def _raw_request(port: int, method: str, path: str, headers: dict[str, str], body: bytes) -> int:
    """One HTTP/1.1 request with the path exactly as given; the status code."""
    head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n"
    head += f"Content-Length: {len(body)}\r\n"
    for name, value in headers.items():
        head += f"{name}: {value}\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(head.encode("latin-1") + b"\r\n" + body)
        data = b""
        while b"\r\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    status_line = data.split(b"\r\n", 1)[0].decode("latin-1")
    assert status_line.startswith("HTTP/1.1 "), (method, path, data[:200])
    return int(status_line.split()[1])


JUNK_BODIES = [b"", b"{}", b"null", b"not json", b"[]"]


def _valid_body(method: str, path: str) -> bytes:
    """The body a real writer would send to this route (so a live key would succeed)."""
    if method == "PATCH":
        doc: Any = {"properties": {"patched": True}} if "/items/" in path else {"title": "x"}
    elif path.endswith("bulk_items"):
        doc = {"method": "upsert", "items": {"intruder": _item("intruder", {}, [])}}
    elif "/items" in path:
        doc = _item(TARGET if method == "PUT" else "intruder", {}, [])
    elif method == "POST":
        doc = {**_collection({}, []), "id": "intruder"}
    else:
        doc = _collection({}, [])
    return json.dumps(doc).encode()


@pytest.mark.slow
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_write_attempts_without_a_live_key_change_nothing(stack, data: st.DataObject) -> None:
    db, internal = stack["db"], stack["real_internal"]
    method, path = data.draw(
        st.one_of(st.sampled_from(ROUTES), st.sampled_from(ROUTES), odd_requests), label="request"
    )
    if method == "POST" and path in ("/search", "//search"):
        method = "PUT"  # POST /search is a read
    auth = data.draw(authorizations(stack["key"], stack["revoked"]), label="auth")
    if data.draw(st.integers(0, 3), label="junk body") == 0:
        body = data.draw(st.sampled_from(JUNK_BODIES), label="body")
    else:
        body = _valid_body(method, path)
    if auth is not None and auth[0] == "X-Query-Key":
        path += ("&" if "?" in path else "?") + f"api_key={auth[1]}"
        auth = None
    headers = {"Content-Type": "application/json"}
    if auth is not None:
        headers[auth[0]] = auth[1]
    before = db.snapshot()
    status = _raw_request(internal.port, method, path, headers, body)
    assert status in (400, 401, 404, 405), (method, path, headers, status)
    assert db.snapshot() == before


@pytest.mark.parametrize(
    "href", ["http://#frag", "http:///mnt/data/x.json", "http://", "https://?q"]
)
def test_an_http_href_without_a_host_is_not_dressed_as_an_api_url(stack, href: str) -> None:
    """Regression (found by the property test above with a new seed): ``http://#x`` passed as
    public (it starts with ``http://``) and was resolved against the API's URL like every link:
    ``http://external/#x``; ``http:///mnt/data/x.json`` came out as ``http://external/mnt/...``.
    An http(s) href needs a host now; one without is dropped like any other path."""
    internal, external = stack["internal"], stack["external"]
    auth = {"Authorization": f"Bearer {stack['key']}"}
    links = [{"rel": "alternate", "href": href}]
    assets = {"data": {"href": href}}
    item_id = f"hostless-{next(stack['ids'])}"
    r = http.put(
        f"{internal.url}/collections/{COLL}",
        json=_collection(assets, links),
        headers=auth,
        timeout=30,
    )
    assert r.status_code < 300, r.text
    r = http.post(
        f"{internal.url}/collections/{COLL}/items",
        json=_item(item_id, assets, links),
        headers=auth,
        timeout=30,
    )
    assert r.status_code < 300, r.text
    _assert_external_shows_only_urls(external.url, item_id)
    got = http.get(f"{external.url}/collections/{COLL}/items/{item_id}", timeout=30).json()
    assert "data" not in got["assets"]
    assert all(lk["rel"] != "alternate" for lk in got["links"]), got["links"]
