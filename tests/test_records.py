"""CSW and OGC API - Records over the central database, through clients nobody here wrote.

Items go in through ``eomatch ingest`` (a real catalogue with http and file:// assets) and the
internal STAC API; the records are read back by OWSLib (its CSW and Records clients) from real
uvicorn processes, and by plain HTTP for the conformance classes each endpoint declares.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from lxml import etree
from owslib import fes, fes2
from owslib.csw import CatalogueServiceWeb
from owslib.ogcapi.records import Records

from eomatch.cli.main import main
from eomatch.io.pgstac_store import PgstacStore
from service_fixtures import *  # noqa: F403
from service_fixtures import _new_db, all_hrefs, api_pair, make_catalogue

pytestmark = pytest.mark.xdist_group("records")

ITEMS = "collections/metadata:main/items"
PUBLIC = re.compile(r"^https?://", re.IGNORECASE | re.ASCII)


@pytest.fixture(scope="module")
def served(pg_cluster: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A catalogue ingested through the CLI, both APIs as real processes."""
    tmp = tmp_path_factory.mktemp("records")
    db = _new_db(pg_cluster)
    root = make_catalogue(tmp / "cat", n_events=2)
    mp = pytest.MonkeyPatch()
    for k, v in db.env().items():
        mp.setenv(k, v)
    mp.setenv("PGUSER", "eomatch_ingest")
    try:
        assert main(["ingest", "--catalogue", str(root)]) == 0
    finally:
        mp.undo()
    key = PgstacStore(db.role()).create_key("records-test")
    with api_pair(db, tmp) as (internal, external):
        _add_mixed_links_item(internal.url, key)
        yield {"db": db, "internal": internal.url, "external": external.url, "key": key}


# the hrefs of tests/test_service_public_view.py: public, internal and look-alikes
HREFS = [
    "https://example.org/a",
    "HTTP://EXAMPLE.ORG/B",
    "file:///etc/passwd",
    "/abs/path",
    "relative/x.nc",
    "s3://bucket/k",
    " http://leading.space",
    "http\u017f://long-s.example.org",
    "\uff48ttp://fullwidth.example.org",
]


def _add_mixed_links_item(base: str, key: str) -> None:
    """One item (through the internal API) with an asset for every kind of href."""
    page = httpx.get(f"{base}/search", params={"limit": 1}).json()["features"][0]
    item = {**page, "id": "mixed-links", "links": []}
    item["assets"] = {f"a{n}": {"href": h, "type": "application/x-netcdf"}
                      for n, h in enumerate(HREFS)}  # fmt: skip
    r = httpx.post(f"{base}/collections/{page['collection']}/items", json=item,
                   headers={"Authorization": f"Bearer {key}"})  # fmt: skip
    assert r.status_code in (200, 201), r.text


def _stac_ids(base: str, **params: Any) -> set[str]:
    r = httpx.post(f"{base}/search", json={"limit": 1000, **params})
    assert r.status_code == 200, r.text
    return {f"{f['collection']}:{f['id']}" for f in r.json()["features"]}


@pytest.mark.parametrize("version", ["2.0.2", "3.0.0"])
def test_csw_through_owslib(served: dict[str, Any], version: str) -> None:
    base = served["internal"]
    csw = CatalogueServiceWeb(f"{base}/csw", version=version)
    ops = {op.name for op in csw.operations}
    assert {"GetCapabilities", "GetRecords", "GetRecordById"} <= ops
    assert not {"Transaction", "Harvest"} & ops  # CSW-T is off
    every = _stac_ids(base)
    search = csw.getrecords2 if version == "2.0.2" else csw.getrecords  # OWSLib's names
    f = fes if version == "2.0.2" else fes2
    search(maxrecords=100, esn="full")
    assert set(csw.records) == every
    assert csw.results["matches"] == len(every)
    # bbox: the same items as STAC item search
    box = [-11.0, 44.0, -8.5, 48.0]
    if version == "2.0.2":
        search(constraints=[f.BBox([box[1], box[0], box[3], box[2]])], maxrecords=100)
        in_box = set(csw.records)
    else:  # OWSLib's fes2 BBox writes a GML 3.1 envelope that CSW 3 schemas refuse: KVP
        r = httpx.get(f"{base}/csw", params={"service": "CSW", "version": "3.0.0",
                      "request": "GetRecords", "typenames": "csw:Record",
                      "elementsetname": "brief", "maxrecords": "100",
                      "bbox": ",".join(map(str, box))})  # fmt: skip
        ids = etree.fromstring(r.content).iter("{http://purl.org/dc/elements/1.1/}identifier")
        in_box = {e.text for e in ids}
    assert in_box == _stac_ids(base, bbox=box) != set()
    # full text and time (dc:date is the item's datetime)
    search(constraints=[f.PropertyIsLike("csw:AnyText", "%Landsat%")], maxrecords=100)
    landsat = set(csw.records)
    if version == "2.0.2":  # docs/records.md's example: a nested list is an AND
        both = [
            [f.BBox([box[1], box[0], box[3], box[2]]), f.PropertyIsLike("csw:AnyText", "%Landsat%")]
        ]
        search(constraints=both, maxrecords=100)
        assert set(csw.records) == in_box & landsat
    assert landsat
    assert all(i.startswith("LANDSAT") or "Landsat" in i for i in landsat)
    search(
        constraints=[f.PropertyIsGreaterThanOrEqualTo("dc:date", "2022-05-07T00:00:00Z")],
        maxrecords=100,
    )
    assert set(csw.records) == _stac_ids(base, datetime="2022-05-07T00:00:00Z/..")
    one = sorted(every)[0]
    r = httpx.get(f"{base}/csw", params={"service": "CSW", "version": version,
                  "request": "GetRecordById", "id": one, "elementsetname": "full"})  # fmt: skip
    ids = etree.fromstring(r.content).iter("{http://purl.org/dc/elements/1.1/}identifier")
    assert [e.text for e in ids] == [one]


def test_csw_iso_19139_and_opensearch(served: dict[str, Any]) -> None:
    base = served["internal"]
    one = sorted(_stac_ids(base))[0]
    csw = CatalogueServiceWeb(f"{base}/csw", version="2.0.2")
    csw.getrecordbyid(id=[one], outputschema="http://www.isotc211.org/2005/gmd")
    md = csw.records[one]
    assert md.identifier == one
    assert md.identification[0].title
    bbox = md.identification[0].bbox
    assert bbox is not None
    assert float(bbox.minx) < float(bbox.maxx)
    # OpenSearch: description document, then a search with geo and time parameters
    opensearch = {"mode": "opensearch", "service": "CSW", "version": "3.0.0"}
    r = httpx.get(f"{base}/csw", params={**opensearch, "request": "GetCapabilities"})
    assert r.status_code == 200
    desc = etree.fromstring(r.content)
    ns = {"os": "http://a9.com/-/spec/opensearch/1.1/"}
    templates = [u.get("template") for u in desc.findall("os:Url", ns)]
    assert any("{geo:box?}" in t and "{time:start?}" in t for t in templates), templates
    r = httpx.get(f"{base}/csw", params={"mode": "opensearch", "service": "CSW",
                                          "version": "3.0.0", "request": "GetRecords",
                                          "typenames": "csw:Record",
                                          "bbox": "-11,44,-8.5,48", "outputformat":
                                          "application/atom+xml"})  # fmt: skip
    assert r.status_code == 200, r.text
    entries = etree.fromstring(r.content).findall("{http://www.w3.org/2005/Atom}entry")
    assert len(entries) == len(_stac_ids(base, bbox=[-11, 44, -8.5, 48]))


def test_records_through_owslib_and_conformance(served: dict[str, Any]) -> None:
    base = served["internal"]
    api = Records(f"{base}/records")
    declared = set(api.conformance()["conformsTo"])
    every = _stac_ids(base)
    # Records core, Features core, JSON: landing, collections, items, one item
    assert httpx.get(f"{base}/records").json()["links"]
    assert "metadata:main" in {c["id"] for c in api.collections()["collections"]}
    page = api.collection_items("metadata:main", limit=1000)
    assert {f["id"] for f in page["features"]} == every
    one = sorted(every)[0]
    assert api.collection_item("metadata:main", one)["id"] == one
    # bbox, datetime (intersects, as STAC), q, limit/offset: the same items as STAC search
    box = [-11.0, 44.0, -8.5, 48.0]
    when = "2022-05-06T11:00:00Z/2022-05-06T12:10:00Z"
    got = api.collection_items("metadata:main", bbox=box, datetime_=when, limit=1000)
    assert {f["id"] for f in got["features"]} == _stac_ids(base, bbox=box, datetime=when)
    q = api.collection_items("metadata:main", q="Landsat", limit=1000)
    assert q["numberMatched"] > 0
    assert q["numberMatched"] < len(every)
    first = api.collection_items("metadata:main", limit=3, offset=0, sortby="identifier")
    second = api.collection_items("metadata:main", limit=3, offset=3, sortby="identifier")
    assert not {f["id"] for f in first["features"]} & {f["id"] for f in second["features"]}
    assert first["numberReturned"] == 3
    # each declared class we claim, exercised at least minimally; transactions are off
    assert not [c for c in declared if "create-replace-delete" in c]
    post = httpx.post(f"{base}/records/{ITEMS}", json={"type": "Feature"})
    assert post.status_code == 405
    if (
        "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/queryables-query-parameters"
        in declared
    ):
        coll = one.split(":", 1)[0]
        by_param = api.collection_items("metadata:main", parentidentifier=coll, limit=1000)
        assert {f["id"] for f in by_param["features"]} == _stac_ids(base, collections=[coll])
        two = sorted(every)[:2]
        by_ids = api.collection_items("metadata:main", ids=",".join(two), limit=1000)
        assert sorted(f["id"] for f in by_ids["features"]) == two
    if "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/queryables" in declared:
        assert "properties" in api.collection_queryables("metadata:main")
    if "http://www.opengis.net/spec/cql2/1.0/conf/cql2-text" in declared:
        f = api.collection_items("metadata:main", filter="title LIKE '%Landsat%'", limit=1000)
        assert 0 < f["numberMatched"] < len(every)
        doc = "title LIKE '%Landsat-9%' AND platform = 'Landsat-9'"  # docs/records.md
        assert api.collection_items("metadata:main", filter=doc, limit=1000)["numberMatched"] > 0
    if "http://www.opengis.net/spec/ogcapi-records-1/1.0/conf/html" in declared:
        html = httpx.get(f"{base}/records/{ITEMS}", params={"f": "html"})
        assert html.status_code == 200
        assert "text/html" in html.headers["content-type"]
    assert httpx.get(f"{base}/records/openapi").status_code == 200


def test_external_view_shows_only_http_links(served: dict[str, Any]) -> None:
    internal, external = served["internal"], served["external"]
    inside = httpx.get(f"{internal}/records/{ITEMS}", params={"limit": 1000}).json()
    assert set(HREFS) <= set(all_hrefs(inside))  # the internal side shows every link
    outside = httpx.get(f"{external}/records/{ITEMS}", params={"limit": 1000}).json()
    assert {f["id"] for f in outside["features"]} == {f["id"] for f in inside["features"]}
    assert all(PUBLIC.match(h) for h in all_hrefs(outside)), all_hrefs(outside)
    # the same rule as the STAC API's public view: every public href survives, nothing else
    assert {h for h in HREFS if PUBLIC.match(h)} <= set(all_hrefs(outside))
    csw_in = httpx.get(f"{internal}/csw", params={"service": "CSW", "version": "2.0.2",
                       "request": "GetRecords", "typenames": "csw:Record",
                       "elementsetname": "full", "resulttype": "results",
                       "maxrecords": "1000"}).text  # fmt: skip
    assert "file:///etc/passwd" in csw_in
    assert "s3://bucket/k" in csw_in
    for schema in ("http://www.opengis.net/cat/csw/2.0.2", "http://www.isotc211.org/2005/gmd"):
        csw_out = httpx.get(f"{external}/csw", params={"service": "CSW", "version": "2.0.2",
                            "request": "GetRecords", "typenames": "csw:Record",
                            "elementsetname": "full", "resulttype": "results",
                            "maxrecords": "1000", "outputschema": schema}).text  # fmt: skip
        assert "https://example.org/a" in csw_out
        assert "HTTP://EXAMPLE.ORG/B" in csw_out
        for hidden in HREFS[2:]:
            assert hidden.strip() not in csw_out, (schema, hidden)


@pytest.mark.parametrize(
    "params",
    [
        {"limit": "x"},
        {"limit": "0"},
        {"offset": "-1"},
        {"bbox": "1,2,3"},
        {"bbox": "a,b,c,d"},
        {"bbox": "0,95,1,96"},
        {"datetime": "yesterday"},
        {"datetime": "2022-01-01/2022-02-01/2022-03-01"},
        {"filter": "title = "},
        {"sortby": "nosuchfield"},
        {"nosuchproperty": "x"},
        {"bad name": "x"},
        {"title": "x", "filter-lang": "cql2-json", "filter": "{}"},
    ],
)
def test_bad_parameters_are_4xx(served: dict[str, Any], params: dict[str, str]) -> None:
    for side in ("internal", "external"):
        r = httpx.get(f"{served[side]}/records/{ITEMS}", params=params)
        assert 400 <= r.status_code < 500, (params, r.status_code, r.text[:300])


def test_bad_csw_requests_are_not_5xx(served: dict[str, Any]) -> None:
    base = served["external"]
    for params in (
        {"service": "CSW", "version": "2.0.2", "request": "Nope"},
        {"service": "CSW", "version": "2.0.2", "request": "GetRecords", "typenames": "x:y"},
        {"service": "CSW", "version": "2.0.2", "request": "GetRecords",
         "constraintlanguage": "CQL_TEXT", "constraint": "bbox(", "typenames": "csw:Record"},
        {"service": "CSW", "version": "3.0.0", "request": "GetRecordById"},
    ):  # fmt: skip
        r = httpx.get(f"{base}/csw", params=params)
        assert r.status_code < 500, (params, r.text[:300])
        assert b"ExceptionReport" in r.content
    one = sorted(_stac_ids(base))[0]
    raw = httpx.get(f"{base}/csw", params={"service": "CSW", "version": "2.0.2",
                    "request": "GetRepositoryItem", "id": one})  # fmt: skip
    assert raw.status_code == 200, raw.text[:300]
    assert (
        etree.fromstring(raw.content).findtext("{http://purl.org/dc/elements/1.1/}identifier")
        == one
    )
    r = httpx.post(f"{base}/csw", content=b"<not xml", headers={"content-type": "text/xml"})
    assert r.status_code < 500
    r = httpx.post(f"{base}/csw", content=b"<x/>" * 300_000, headers={"content-type": "text/xml"})
    assert r.status_code == 413


def test_api_writes_appear_and_disappear_as_records(served: dict[str, Any]) -> None:
    internal, external = served["internal"], served["external"]
    auth = {"Authorization": f"Bearer {served['key']}"}
    page = httpx.get(f"{internal}/search", params={"limit": 1}).json()["features"][0]
    coll = page["collection"]
    item = {**page, "id": "records-api-write", "links": []}
    item["properties"] = {**item["properties"], "title": "written through the API"}
    item["assets"] = {"data": {"href": "https://example.org/w.nc"},
                      "local": {"href": "file:///srv/w.nc"}}  # fmt: skip
    r = httpx.post(f"{internal}/collections/{coll}/items", json=item, headers=auth)
    assert r.status_code in (200, 201), r.text
    rid = f"{coll}:records-api-write"
    for base in (internal, external):
        got = httpx.get(f"{base}/records/{ITEMS}/{rid}")
        assert got.status_code == 200
        assert got.json()["properties"]["title"] == item["properties"]["title"]
        csw = CatalogueServiceWeb(f"{base}/csw", version="2.0.2")
        csw.getrecordbyid(id=[rid])
        assert list(csw.records) == [rid]
    hrefs = all_hrefs(httpx.get(f"{external}/records/{ITEMS}/{rid}").json())
    assert "https://example.org/w.nc" in hrefs
    assert "file:///srv/w.nc" not in hrefs
    r = httpx.delete(f"{internal}/collections/{coll}/items/records-api-write", headers=auth)
    assert r.status_code in (200, 204), r.text
    for base in (internal, external):
        assert httpx.get(f"{base}/records/{ITEMS}/{rid}").status_code == 404


def test_sqlalchemy_url_reaches_the_same_database(served: dict[str, Any]) -> None:
    """pycsw's connection URL: quoting, IPv6 brackets, a Unix socket directory."""
    from sqlalchemy import create_engine, text

    from eomatch.io.pg_conn import ConnectionInfo
    from eomatch.service.records import sqlalchemy_url

    info = served["db"].role("eomatch_reader")
    engine = create_engine(sqlalchemy_url(info))
    with engine.connect() as conn:
        assert conn.execute(text("SELECT current_user")).scalar() == "eomatch_reader"
    engine.dispose()
    odd = ConnectionInfo("::1", 5433, "a/b c", "us@r", "p:w/d")
    assert sqlalchemy_url(odd) == "postgresql+psycopg2://us%40r:p%3Aw%2Fd@[::1]:5433/a%2Fb%20c"
    sock = ConnectionInfo("/run/postgresql", 5432, "eomatch", "eomatch_reader")
    assert sqlalchemy_url(sock).endswith("@/eomatch?host=%2Frun%2Fpostgresql&port=5432")
