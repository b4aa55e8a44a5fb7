"""``query_catalogue``: pulling matchups from a real local STAC API into a catalogue on disk.

The source catalogue is made by a real ``eomatch find`` (tests/matchup_api_server.py), served
the way the central service serves it (internal: ``file://`` assets; external: http(s) only),
and pulled back with real HTTP and real files.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from shapely.geometry import box, shape

from catalogue_helpers import item_files, pystac_item_ids
from eomatch.core import stac_items as si
from eomatch.errors import EomatchError
from eomatch.io import atomic, catalogue_bulk, catalogue_files
from eomatch.io.catalogue import MatchupCatalogue
from eomatch.io.catalogue_index import asset_is_local
from eomatch.io.http import HttpLimits
from eomatch.workflows import query as query_module
from eomatch.workflows.products import download_products
from eomatch.workflows.query import (
    IDS_PER_REQUEST,
    item_ref,
    linked_searches,
    page_window,
    query_catalogue,
    select_collections,
)
from matchup_api_server import (
    MatchupApi,
    SourceCatalogue,
    read_catalogue,
    serve,
    source_catalogue,
)
from matchup_api_server import (
    validate_catalogue as validate_tree,
)

PAIR = "LANDSAT_C2L1-Landsat-9-vs-S2_MSI_L1C-Sentinel-2A"


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Iterator[SourceCatalogue]:
    with source_catalogue(tmp_path_factory.mktemp("source")) as src:
        yield src


@pytest.fixture
def internal(source) -> Iterator[MatchupApi]:
    with serve(MatchupApi()) as api:
        api.load_catalogue(source.root)
        yield api


@pytest.fixture
def external(source) -> Iterator[MatchupApi]:
    with serve(MatchupApi(external=True)) as api:
        api.load_catalogue(source.root)
        yield api


def _items(root: Path) -> dict[str, dict]:
    return {i: json.loads(p.read_text()) for i, p in item_files(root).items()}


def _kinds(root: Path) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {"event": set(), "matchup": set(), "product": set()}
    for iid, item in _items(root).items():
        out[si.collection_kind(item["collection"])].add(iid)
    return out


def _mtimes(root: Path) -> dict[str, int]:
    return {
        p.relative_to(root).as_posix(): p.stat().st_mtime_ns
        for p in root.rglob("*.json")
        if not p.name.startswith(".")
    }


# --- the pulled catalogue ------------------------------------------------------------------------


def test_internal_pull_reproduces_the_catalogue_file_for_file(source, internal, tmp_path):
    out = tmp_path / "pulled"
    summary = query_catalogue(internal.url, out, limit=7)
    src = _kinds(source.root)
    assert summary.matchups.new == len(src["matchup"]) > 10
    assert summary.events.new == len(src["event"])
    assert summary.products.new == len(src["product"])
    assert summary.skipped == 0
    # every item, collection and day catalog has the same content as the original, except
    # that local asset files are now file:// URLs on the "shared drive" (the source folder)
    originals = {
        p.relative_to(source.root).as_posix(): p
        for p in source.root.rglob("*.json")
        if not p.name.startswith(".") and p.parts[len(source.root.parts)] not in ("data",)
    }
    pulled = {
        p.relative_to(out).as_posix(): p for p in out.rglob("*.json") if not p.name.startswith(".")
    }
    assert set(pulled) == set(originals)
    for rel, path in originals.items():
        if rel == "catalog.json":
            continue
        mine, theirs = json.loads(pulled[rel].read_text()), json.loads(path.read_text())
        for key, asset in (theirs.get("assets") or {}).items():
            href = asset["href"]
            if not href.startswith("http"):
                local = (path.parent / href).resolve()
                assert mine["assets"][key]["href"] == local.as_uri()
                asset["href"] = local.as_uri()
        assert mine == theirs, rel
    assert validate_tree(out) > 0
    assert pystac_item_ids(out) == sorted(_items(out))


def test_pulled_catalogue_works_with_open_and_get_events(source, internal, tmp_path):
    out = tmp_path / "pulled"
    query_catalogue(internal.url, out)
    with MatchupCatalogue.open(source.root) as a, MatchupCatalogue.open(out) as b:
        assert b.counts() == a.counts()
        for kw in (
            {},
            {"collections": ["S2_MSI_L1C"]},
            {"platforms": ["Landsat-9"]},
            {"filter": '"matchup:time_diff_abs" < 1215'},
            {"bbox": [-30, 40, -10, 60]},
        ):
            ea, eb = a.get_events(**kw), b.get_events(**kw)
            assert [e.id for e in eb] == [e.id for e in ea]
            assert [[m.id for m in e.matchups] for e in eb] == [
                [m.id for m in e.matchups] for e in ea
            ]
        # file:// data on the shared drive counts as local: those products are "downloaded"
        downloaded = {
            p.id
            for e in b.get_events()
            for m in e.matchups
            for p in m.products
            if asset_is_local(p.assets.get("data"))
        }
        assert downloaded == set(source.downloaded)


def test_fetches_linked_items_in_bulk(source, internal, tmp_path):
    query_catalogue(internal.url, tmp_path / "pulled", limit=5)
    kinds = _kinds(source.root)
    gets = [p for m, p, _ in internal.requests if "/items/" in p]
    assert gets == []  # never one GET per item
    searches = internal.search_requests()
    by_ids = [s for s in searches if "ids" in s]
    fetched = [i for s in by_ids for i in s["ids"]]
    assert len(fetched) == len(set(fetched))  # each linked item once per run
    assert set(fetched) == kinds["event"] | kinds["product"]
    matchup_pages = [s for s in searches if "ids" not in s]
    assert len(matchup_pages) == -(-len(kinds["matchup"]) // 5)
    assert len(searches) < len(kinds["product"])  # requests per page, not per item


def test_linked_searches():
    """Up to IDS_PER_REQUEST ids of several collections a body; a page's events in bodies of
    their own, with its interval, once ids x collections of events reach EVENT_WINDOW_MIN."""
    products = {"P1": {f"p{i}" for i in range(200)}, "P2": {f"q{i}" for i in range(100)}}
    many = {f"matchup-events-{c}": {f"e{c}-{i}" for i in range(10)} for c in range(50)}
    window = "2020-01-01T00:00:00Z/2020-01-02T00:00:00Z"
    bodies = linked_searches({**products, **many}, window=window)
    assert [len(b["ids"]) for b in bodies] == [250, 50, 250, 250]
    assert [b.get("datetime") for b in bodies] == [None, None, window, window]
    assert {i for b in bodies for i in b["ids"]} == set().union(*products.values(), *many.values())
    for b in bodies:
        assert b["limit"] == len(b["ids"])
        assert b["collections"] == sorted(b["collections"])
    # no interval, or one pair's events (one collection): mixed with the products
    for wanted, w in (
        ({**products, **many}, None),
        ({**products, "matchup-events-x": {"e"}}, window),
    ):
        plain = linked_searches(wanted, window=w)
        assert all("datetime" not in b for b in plain)
        assert len(plain) == -(-sum(map(len, wanted.values())) // IDS_PER_REQUEST)


def test_events_are_asked_for_within_their_matchups_time_and_again_without(
    source, tmp_path, monkeypatch
):
    """Events are asked for with the interval their page's matchups span (a server tests
    every id against every listed collection; the interval narrows that to a few). An event
    the interval misses (an API whose events do not span their matchups) is asked for again
    without it: nothing is left out. (The small catalogue is below EVENT_WINDOW_MIN.)"""
    monkeypatch.setattr(query_module, "EVENT_WINDOW_MIN", 0)
    collections, items = read_catalogue(source.root)
    events = [it for it in items if si.collection_kind(it["collection"]) == "event"]
    moved = events[0]
    props = moved["properties"]
    for key in ("datetime", "start_datetime", "end_datetime"):
        if props.get(key):
            props[key] = si.format_datetime(si.parse_datetime(props[key]) + timedelta(days=400))
    with serve(MatchupApi()) as api:
        api.load(collections, items)
        summary = query_catalogue(api.url, tmp_path / "pulled", limit=4)
        searches = api.search_requests()
    kinds = _kinds(source.root)
    assert summary.matchups.new == len(kinds["matchup"])
    assert summary.skipped == 0
    assert _kinds(tmp_path / "pulled") == kinds
    by_ids = [s for s in searches if "ids" in s]
    windowed = [s for s in by_ids if "datetime" in s]
    assert windowed
    assert all(c.startswith("matchup-events-") for s in windowed for c in s["collections"])
    products = [s for s in by_ids if not s["collections"][0].startswith("matchup-events-")]
    assert products
    assert all("datetime" not in s for s in products)
    # the moved event: once within its page's interval (missed), then without one
    asked = [s for s in by_ids if moved["id"] in s["ids"]]
    assert ["datetime" in s for s in asked] == [True, False]
    assert asked[1]["ids"] == [moved["id"]]


def test_page_window():
    """The interval a page's matchups span; None without readable times, or when an API's
    matchups end before they start (a reversed interval is a 400 from a STAC API)."""

    def mu(start: str, end: str) -> dict:
        return {"properties": {"datetime": start, "start_datetime": start, "end_datetime": end}}

    a, b, c = "2020-01-01T00:00:00Z", "2020-01-02T00:00:00.5Z", "2020-01-03T00:00:00Z"
    assert page_window([mu(b, c), mu(a, b)]) == f"{a}/{c}"
    assert page_window([mu(a, b)]) == "2020-01-01T00:00:00Z/2020-01-02T00:00:00.500000Z"
    assert page_window([]) is None
    assert page_window([{"properties": {}}]) is None
    assert page_window([mu(c, a)]) is None


def test_any_page_size_the_server_allows(source, tmp_path):
    with serve(MatchupApi(max_limit=3, collections_page=2)) as api:
        api.load_catalogue(source.root)
        summary = query_catalogue(api.url, tmp_path / "pulled", limit=1000)
        assert summary.matchups.new == len(_kinds(source.root)["matchup"])
        assert all(s["limit"] for s in api.search_requests())
    assert _kinds(tmp_path / "pulled") == _kinds(source.root)


def test_rerun_is_incremental(source, internal, tmp_path):
    out = tmp_path / "pulled"
    first = query_catalogue(internal.url, out)
    before = _mtimes(out)
    again = query_catalogue(internal.url, out)
    assert (again.matchups.new, again.matchups.updated) == (0, 0)
    assert again.matchups.unchanged == first.matchups.new
    assert again.events.unchanged == first.events.new
    assert again.products.unchanged == first.products.new
    assert _mtimes(out) == before  # unchanged items are not rewritten

    # one matchup changes on the server: exactly that one is rewritten
    coll = internal.items[PAIR]
    mid = sorted(coll)[0]
    changed = json.loads(json.dumps(coll[mid]))
    changed["properties"]["quality:flag"] = "reviewed"
    internal.load([], [changed])
    third = query_catalogue(internal.url, out)
    assert (third.matchups.new, third.matchups.updated) == (0, 1)
    assert third.events.updated == third.products.updated == 0
    after = _mtimes(out)
    moved = {rel for rel in after if after[rel] != before.get(rel)}
    path = MatchupCatalogue.open(out).item_path(mid).relative_to(out).as_posix()
    assert moved == {path}
    assert json.loads((out / path).read_text())["properties"]["quality:flag"] == "reviewed"
    assert validate_tree(out) > 0


def test_narrow_then_wide_pull_adds_without_duplicates(source, internal, tmp_path):
    out = tmp_path / "pulled"
    narrow = query_catalogue(internal.url, out, filter='"matchup:time_diff_abs" < 1215')
    assert 0 < narrow.matchups.new < len(_kinds(source.root)["matchup"])
    with MatchupCatalogue.open(out) as cat:
        event = cat.get_events()[0]
        assert len(event.matchups) == narrow.matchups.new  # the event links only what is here
    assert validate_tree(out) > 0
    wide = query_catalogue(internal.url, out)
    assert wide.matchups.unchanged == narrow.matchups.new
    assert wide.matchups.new == len(_kinds(source.root)["matchup"]) - narrow.matchups.new
    assert wide.events.updated == 1  # it now links to every matchup
    assert _kinds(out) == _kinds(source.root)
    assert validate_tree(out) > 0


# --- filters -------------------------------------------------------------------------------------


def _expected(source: SourceCatalogue, **kw) -> set[str]:
    """Matchups of the source that a pull with these filters should bring."""
    out = set()
    for iid, item in _items(source.root).items():
        if si.collection_kind(item["collection"]) != "matchup":
            continue
        start, end = si.item_times(item)
        if "start" in kw and end < kw["start"]:
            continue
        if "end" in kw and start > kw["end"]:
            continue
        if "bbox" in kw and not shape(item["geometry"]).intersects(box(*kw["bbox"])):
            continue
        out.add(iid)
    return out


def test_time_and_bbox_filters(source, internal, tmp_path):
    items = _items(source.root)
    times = sorted(si.item_times(i)[0] for i in items.values() if "-vs-" in i["collection"])
    lo, hi = times[len(times) // 4], times[len(times) // 2]
    out = tmp_path / "time"
    s = query_catalogue(internal.url, out, start_time=lo, end_time=hi)
    assert _kinds(out)["matchup"] == _expected(source, start=lo, end=hi)
    assert 0 < s.matchups.new < len(times)
    bbox = (-30.0, 40.0, -20.0, 70.0)
    out = tmp_path / "bbox"
    query_catalogue(internal.url, out, bbox=bbox)
    want = _expected(source, bbox=bbox)
    assert _kinds(out)["matchup"] == want
    assert 0 < len(want) < len(times)
    assert validate_tree(out) > 0


def test_antimeridian_bbox_searches_both_sides(source, internal, tmp_path):
    query_catalogue(internal.url, tmp_path / "pulled", bbox=(170.0, 40.0, -20.0, 70.0))
    boxes = [s["bbox"] for s in internal.search_requests() if "bbox" in s]
    assert boxes == [[170.0, 40.0, 180.0, 70.0], [-180.0, 40.0, -20.0, 70.0]]
    assert _kinds(tmp_path / "pulled")["matchup"] == _expected(source, bbox=(-180, 40, -20, 70))


def test_collections_platforms_and_cql2_mean_what_get_events_means(source, internal, tmp_path):
    with MatchupCatalogue.open(source.root) as cat:
        for n, kw in enumerate(
            (
                {"collections": ["S2_MSI_L1C"]},
                {"collections": [PAIR]},
                {"platforms": ["LS9"]},  # any alias
                {"filter": '"matchup:collocation_area_km2" > 20000'},
            )
        ):
            out = tmp_path / f"q{n}"
            query_catalogue(internal.url, out, **kw)
            local = {
                k: (["Landsat-9"] if v == ["LS9"] else v)
                for k, v in kw.items()
                if k != "collections" or v != [PAIR]
            }
            want = {m.id for e in cat.get_events(**local) for m in e.matchups}
            assert _kinds(out)["matchup"] == want, kw
    searched = internal.search_requests()
    assert any(s.get("filter-lang") == "cql2-json" for s in searched)


def test_select_collections():
    available = [
        PAIR,
        f"matchup-events-{PAIR}",
        "S2_MSI_L1C",
        "LANDSAT_C2L1",
        "S3_EFR-Sentinel-3A-vs-S2_MSI_L1C-Sentinel-2B",
    ]
    assert select_collections(available, None, None)[0] == [
        PAIR,
        "S3_EFR-Sentinel-3A-vs-S2_MSI_L1C-Sentinel-2B",
    ]
    assert select_collections(available, ["S3_EFR"], None)[0] == [
        "S3_EFR-Sentinel-3A-vs-S2_MSI_L1C-Sentinel-2B"
    ]
    assert select_collections(available, None, ["S2A"])[0] == [PAIR]
    with pytest.raises(EomatchError, match="unknown collection 'VIIRS_SDR'"):
        select_collections(available, ["VIIRS_SDR"], None)
    with pytest.raises(EomatchError, match="unknown platform"):
        select_collections(available, None, ["Sentinel-2C"])


def test_item_ref():
    assert item_ref("http://h/api/v1/collections/A%2FB/items/x%20y") == ("A/B", "x y")
    assert item_ref("collections/c/items/i") == ("c", "i")
    assert item_ref("http://h/collections/c") is None


# --- external and internal assets ----------------------------------------------------------------


def test_external_pull_holds_only_http_assets_and_download_fetches_them(source, external, tmp_path):
    out = tmp_path / "pulled"
    query_catalogue(external.url, out)
    hrefs = [a["href"] for item in _items(out).values() for a in item["assets"].values()]
    assert hrefs
    assert all(h.startswith("http://") for h in hrefs)
    matchup = _items(out)[source.analysed]
    assert not any(k.startswith("comparison") for k in matchup["assets"])
    with MatchupCatalogue.open(out) as cat:
        report = download_products(cat)
        assert not report.failed
        # products downloaded into the source have no public data asset: nothing to fetch
        assert len(report.results) == len(_kinds(source.root)["product"]) - len(source.downloaded)
    files = sorted((out / "data").rglob("*.zip"))
    assert files
    for f in files:
        assert f.read_bytes() == (source.files / f.name).read_bytes()
    assert validate_tree(out) > 0


def test_internal_file_assets_are_used_in_place(source, internal, tmp_path):
    out = tmp_path / "pulled"
    query_catalogue(internal.url, out)
    items = _items(out)
    for pid in source.downloaded:
        href = items[pid]["assets"]["data"]["href"]
        assert href.startswith("file://")
        assert Path(href.removeprefix("file://")).is_file()
    analysis = items[source.analysed]["assets"]["comparison:2024-03-01"]["href"]
    assert analysis == (source.root / "analysis" / "cmp.nc").resolve().as_uri()
    with MatchupCatalogue.open(out) as cat:
        report = download_products(cat)
        # reported present where they are (file:// on the source's drive), never fetched
        in_place = {
            r.job.product_id: r for r in report.results if r.job.product_id in source.downloaded
        }
        assert set(in_place) == set(source.downloaded)
        for r in in_place.values():
            assert r.status == "present"
            assert r.path is not None
            assert r.path.is_relative_to(source.root)
    copied = {f.stem for f in (out / "data").rglob("*") if f.is_file()}
    assert copied.isdisjoint(source.downloaded)


def test_local_changes_survive_a_new_pull(source, external, tmp_path):
    out = tmp_path / "pulled"
    first = query_catalogue(external.url, out)
    with MatchupCatalogue.open(out) as cat:
        assert not download_products(cat).failed
        mine = tmp_path / "mine.csv"
        mine.write_text("a,b\n1,2\n")
        from eomatch.workflows.assets import register_analysis

        register_analysis(out, PAIR, source.analysed, mine, date="2024-05-01")
    before = _items(out)
    downloaded = {
        i
        for i, it in before.items()
        if "data" in it["assets"] and not it["assets"]["data"]["href"].startswith("http")
    }
    assert downloaded
    again = query_catalogue(external.url, out)
    assert again.matchups.new == again.matchups.updated == 0
    assert again.products.updated == 0
    assert again.matchups.unchanged == first.matchups.new
    after = _items(out)
    assert after == before
    assert "comparison:2024-05-01" in after[source.analysed]["assets"]
    with MatchupCatalogue.open(out) as cat:
        assert all(
            cat.local_file(i, after[i]["assets"]["data"]["href"]).is_file() for i in downloaded
        )


def test_remote_change_merges_with_local_assets(source, internal, tmp_path):
    out = tmp_path / "pulled"
    query_catalogue(internal.url, out)
    mine = tmp_path / "local.json"
    mine.write_text("{}")
    with MatchupCatalogue.open(out) as cat:
        cat.add_matchup_asset(source.analysed, "notes", mine)
    coll = internal.items[PAIR]
    changed = json.loads(json.dumps(coll[source.analysed]))
    changed["properties"]["quality:flag"] = "reviewed"
    changed["assets"]["quicklook"] = {"href": "https://example.test/q.png", "type": "image/png"}
    internal.load([], [changed])
    s = query_catalogue(internal.url, out)
    assert s.matchups.updated == 1
    item = _items(out)[source.analysed]
    assert item["properties"]["quality:flag"] == "reviewed"
    assert {"notes", "quicklook", "comparison:2024-03-01", "comparison:latest"} <= set(
        item["assets"]
    )


# --- interruptions -------------------------------------------------------------------------------


def test_outage_mid_pull_leaves_a_valid_catalogue_and_resumes(source, tmp_path):
    out = tmp_path / "pulled"
    total = len(_kinds(source.root)["matchup"])
    with serve(MatchupApi(fail_after=8)) as api:
        api.load_catalogue(source.root)
        with pytest.raises(EomatchError, match="run the same query again to resume"):
            query_catalogue(api.url, out, limit=4, max_retries=0)
        assert validate_tree(out) > 0
        with MatchupCatalogue.open(out) as cat:
            partial = cat.counts()["matchup"]
        assert 0 < partial < total
        api.fail_after = None
        s = query_catalogue(api.url, out, limit=4)
    assert s.matchups.unchanged == partial
    assert s.matchups.new == total - partial
    assert _kinds(out) == _kinds(source.root)
    assert validate_tree(out) > 0


def test_crash_while_writing_leaves_a_valid_catalogue_and_resumes(
    source, internal, tmp_path, monkeypatch
):
    out = tmp_path / "pulled"
    calls = {"n": 0}

    def crash_at_60(write):
        def crashing(*args, **kwargs):
            calls["n"] += 1
            if calls["n"] == 60:
                raise KeyboardInterrupt  # the process is stopped mid-write
            return write(*args, **kwargs)

        return crashing

    # every way a file is written: items through the helper process, day catalogs in
    # parallel, collections and catalog.json directly
    writers = [
        (catalogue_files, "write_json_file"),
        (atomic, "write_file_atomic"),
        (catalogue_bulk.WriterProcess, "write"),
    ]
    real = [getattr(module, name) for module, name in writers]
    for (module, name), write in zip(writers, real, strict=True):
        monkeypatch.setattr(module, name, crash_at_60(write))
    with pytest.raises(KeyboardInterrupt):
        query_catalogue(internal.url, out, limit=10, workers=0)
    for (module, name), write in zip(writers, real, strict=True):
        monkeypatch.setattr(module, name, write)
    with MatchupCatalogue.open(out) as cat:  # rebuilt from the files
        assert cat.get_events() is not None
    assert validate_tree(out) > 0
    query_catalogue(internal.url, out)
    assert _kinds(out) == _kinds(source.root)
    assert validate_tree(out) > 0


# --- bad input -----------------------------------------------------------------------------------


def _closed_port_url() -> str:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


@pytest.mark.parametrize(
    ("setup", "kwargs", "message"),
    [
        ("down", {}, "cannot reach the API"),
        ("key", {}, "HTTP 401: this API needs a key"),
        ("key", {"api_key": "wrong"}, "HTTP 401: the API refused the key"),
        ("key", {"api_key": "banned"}, "HTTP 403"),
        ("ok", {"collections": ["NOPE"]}, "unknown collection 'NOPE'"),
        ("json", {}, "not JSON"),
        ("ok", {"filter": "matchup:time_diff_abs <<< 3"}, "invalid CQL2 filter"),
        ("ok", {"bbox": (10, 50, 20)}, "four numbers"),
        ("ok", {"start_time": "2022-05-07", "end_time": "2022-05-01"}, "is before start"),
        ("ok", {"start_time": "yesterday"}, "not an ISO 8601"),
    ],
)
def test_bad_input_fails_cleanly_and_writes_nothing(source, tmp_path, setup, kwargs, message):
    out = tmp_path / "pulled"
    state = MatchupApi(
        api_key="s3cret" if setup == "key" else None,
        forbidden_key="banned",
        invalid_json=setup == "json",
    )
    with serve(state) as api:
        api.load_catalogue(source.root)
        url = _closed_port_url() if setup == "down" else api.url
        with pytest.raises(EomatchError, match=message) as info:
            query_catalogue(url, out, max_retries=0, **kwargs)
    assert "\n" not in str(info.value)
    assert not out.exists()


def test_api_key_is_sent_as_bearer(source, tmp_path):
    with serve(MatchupApi(api_key="s3cret")) as api:
        api.load_catalogue(source.root)
        s = query_catalogue(api.url, tmp_path / "pulled", api_key="s3cret")
    assert s.matchups.new > 0


def test_transient_errors_are_retried(source, tmp_path):
    with serve(MatchupApi()) as api:
        api.load_catalogue(source.root)
        api.fail_count = 2  # the first two requests answer 503
        fast = HttpLimits(backoff_s=0.01)  # limits reach the one retry policy
        s = query_catalogue(api.url, tmp_path / "pulled", max_retries=3, limits=fast)
        landing = [path for _, path, _ in api.requests[:4]]
        assert landing[:3] == [landing[0]] * 3  # the landing page asked for 3 times
        assert landing[3] != landing[0]
    assert s.matchups.new == len(_kinds(source.root)["matchup"])


def test_empty_result_still_leaves_a_valid_catalogue(source, internal, tmp_path):
    out = tmp_path / "pulled"
    s = query_catalogue(internal.url, out, start_time="2030-01-01")
    assert s.matchups.total == 0
    assert validate_tree(out) >= 1
    assert MatchupCatalogue.open(out).counts() == {"event": 0, "matchup": 0, "product": 0}


# --- against the real service (pgSTAC + both stac-fastapi APIs) --------------------------------


def test_end_to_end_with_the_real_service(source, service_db, tmp_path):
    """find → ingest → query internal and external → download, on the real stack."""
    from eomatch.io.pgstac_store import PgstacStore
    from eomatch.workflows.ingest import ingest_catalogue
    from service_fixtures import api_pair

    ingest_catalogue(source.root, PgstacStore(service_db.role("eomatch_ingest")))
    src = _kinds(source.root)
    with api_pair(service_db, tmp_path) as (internal, external):
        a = query_catalogue(internal.url, tmp_path / "int", limit=10)
        b = query_catalogue(external.url, tmp_path / "ext", limit=10)
        again = query_catalogue(internal.url, tmp_path / "int", limit=10)
    for out, s in ((tmp_path / "int", a), (tmp_path / "ext", b)):
        assert (s.matchups.new, s.events.new, s.products.new) == (
            len(src["matchup"]),
            len(src["event"]),
            len(src["product"]),
        )
        assert _kinds(out) == src
        assert validate_tree(out) > 0
        with MatchupCatalogue.open(out) as cat, MatchupCatalogue.open(source.root) as orig:
            assert [[m.id for m in e.matchups] for e in cat.get_events()] == [
                [m.id for m in e.matchups] for e in orig.get_events()
            ]
    assert again.matchups.unchanged == len(src["matchup"])
    assert again.matchups.new + again.matchups.updated + again.products.updated == 0
    internal_items = _items(tmp_path / "int")
    for pid in source.downloaded:
        href = internal_items[pid]["assets"]["data"]["href"]
        assert href.startswith("file://")
        assert Path(href.removeprefix("file://")).is_file()
    assert "comparison:latest" in internal_items[source.analysed]["assets"]
    ext_items = _items(tmp_path / "ext")
    hrefs = [a["href"] for it in ext_items.values() for a in it["assets"].values()]
    assert hrefs
    assert all(h.startswith("http") for h in hrefs)
    with MatchupCatalogue.open(tmp_path / "ext") as cat:
        report = download_products(cat)
    assert not report.failed
    assert len(report.downloaded) == len(src["product"]) - len(source.downloaded)
