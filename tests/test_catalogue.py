from __future__ import annotations

import json
from datetime import timedelta

import pytest

from catalogue_helpers import (
    L9,
    S2,
    S3,
    T0,
    check_day_catalogs,
    item_files,
    make_event,
    pystac_item_ids,
    validate_tree,
)
from eomatch.core import stac_items as si
from eomatch.errors import EomatchError
from eomatch.io import catalogue_bulk
from eomatch.io.catalogue import MatchupCatalogue
from eomatch.io.catalogue_index import INDEX_NAME


@pytest.fixture
def cat(tmp_path):
    c = MatchupCatalogue.create(tmp_path / "cat", id="test-cat", description="tests")
    yield c
    c.close()


def test_layout_links_and_validation(cat):
    ev = make_event()
    res = cat.add_event(ev)
    assert (res.events_new, res.matchups_new, res.products_new) == (1, 2, 4)
    root = cat.root
    pair = "LANDSAT_C2L1-Landsat-9-vs-S2_MSI_L1C-Sentinel-2A"
    assert (root / pair / "collection.json").is_file()
    assert (root / f"matchup-events-{pair}" / "2022/05/21" / f"{ev.id}.json").is_file()
    for mu in ev.matchups:
        assert (root / pair / "2022/05/21" / f"{mu.id}.json").is_file()
        for p in mu.products:
            assert (root / p.sensor.collection / "2022/05/21" / f"{p.id}.json").is_file()
    # catalog + 4 collections + 1 event + 2 matchups + 4 products + 4 day catalogs
    assert validate_tree(root) == 1 + 4 + 1 + 2 + 4 + 4
    day = json.loads((root / pair / "2022/05/21/catalog.json").read_text())
    assert day["type"] == "Catalog"
    assert day["id"] == f"{pair}-2022-05-21"
    assert day["links"][:2] == [
        {"rel": "root", "href": "../../../../catalog.json", "type": "application/json"},
        {
            "rel": "parent",
            "href": "../../../collection.json",
            "type": "application/json",
            "title": pair,
        },
    ]
    assert day["links"][2:] == [
        {"rel": "item", "href": f"./{i}.json", "type": "application/geo+json"}
        for i in sorted(m.id for m in ev.matchups)
    ]
    coll = json.loads((root / pair / "collection.json").read_text())
    assert [x["href"] for x in coll["links"] if x["rel"] == "child"] == [
        "./2022/05/21/catalog.json"
    ]
    item = json.loads((root / pair / "2022/05/21" / f"{ev.matchups[0].id}.json").read_text())
    structural = {x["rel"]: x["href"] for x in item["links"][:3]}
    assert structural == {
        "root": "../../../../catalog.json",
        "parent": "./catalog.json",
        "collection": "../../../collection.json",
    }
    links = json.loads((root / "catalog.json").read_text())["links"]
    children = [x["title"] for x in links if x["rel"] == "child"]
    assert children == sorted(children)
    assert len(set(children)) == len(children)


def test_readd_is_noop_and_new_matchup_updates_event(cat):
    ev = make_event(n_matchups=1)
    cat.add_event(ev)
    before = {p: p.read_bytes() for p in cat.root.rglob("*.json")}
    res = cat.add_event(ev)
    assert (res.events_new, res.events_existing, res.matchups_existing) == (0, 1, 1)
    assert {p: p.read_bytes() for p in cat.root.rglob("*.json")} == before
    ev2 = make_event(n_matchups=2)
    res = cat.add_event(ev2)
    assert (res.matchups_new, res.matchups_existing, res.events_existing) == (1, 1, 1)
    item = json.loads(cat.item_path(ev.id).read_text())
    assert len([x for x in item["links"] if x["rel"] == "related"]) == 2
    [got] = cat.get_events()
    assert len(got.matchups) == 2
    validate_tree(cat.root)


def test_extents_follow_adds_and_removes(cat):
    a = make_event(lon=0.0, lat=10.0)
    b = make_event(lon=40.0, lat=-30.0, when=T0 + timedelta(days=40))
    cat.add_event(a)
    cat.add_event(b)
    coll = json.loads(
        (cat.root / si.events_collection_id(a.sensors) / "collection.json").read_text()
    )
    assert coll["extent"]["spatial"]["bbox"][0] == [-1.0, -31.0, 43.0, 13.0]
    assert coll["extent"]["temporal"]["interval"][0][0] == "2022-05-21T08:35:00Z"
    cat.remove_event(b.id)
    coll = json.loads(
        (cat.root / si.events_collection_id(a.sensors) / "collection.json").read_text()
    )
    assert coll["extent"]["spatial"]["bbox"][0] == [-1.0, 9.0, 3.0, 13.0]
    assert coll["extent"]["temporal"]["interval"][0][1] == si.format_datetime(a.end)
    assert cat.counts() == {"event": 1, "matchup": 2, "product": 4}
    validate_tree(cat.root)


def test_get_events_filters(cat):
    e1 = make_event(lon=0.0, lat=10.0, dt_s=300)
    e2 = make_event(lon=50.0, lat=40.0, when=T0 + timedelta(days=2), dt_s=900)
    e3 = make_event(lon=179.0, lat=0.0, when=T0 + timedelta(days=4), antimeridian=True)
    e4 = make_event(lon=5.0, lat=5.0, sensors=(S2, S3), when=T0 + timedelta(days=1))
    with cat.batch():
        for e in (e1, e2, e3, e4):
            cat.add_event(e)

    def ids(**kw):
        return sorted(e.id for e in cat.get_events(**kw))

    assert len(ids()) == 4
    assert ids(collections=["S3_EFR"]) == [e4.id]
    assert ids(collections=["LANDSAT_C2L1"]) == sorted([e1.id, e2.id, e3.id])
    assert ids(platforms=["Sentinel-3A", "Landsat-9"]) == sorted([e1.id, e2.id, e3.id, e4.id])
    assert ids(start_time=T0 + timedelta(days=1.5)) == sorted([e2.id, e3.id])
    assert ids(stop_time=(T0 + timedelta(days=1)).replace(tzinfo=None)) == sorted([e1.id, e4.id])
    assert ids(bbox=[-5, 5, 5, 15]) == sorted([e1.id, e4.id])
    assert ids(bbox=[170, -5, -170, 5]) == [e3.id]
    assert ids(bbox=[-179.5, -5, -179, 5]) == [e3.id]
    assert ids(filter='"matchup:time_diff_abs" < 600') == sorted([e1.id, e3.id, e4.id])
    assert ids(filter='"matchup:time_diff_abs" < 600', collections=["S3_EFR"]) == [e4.id]
    assert ids(products_downloaded=True) == []
    assert len(ids(products_downloaded=False)) == 4
    [ev] = cat.get_events(
        filter='"matchup:collocation_area_km2" < 1000.5',
        bbox=[-5, 5, 5, 15],
        collections=["LANDSAT_C2L1"],
    )
    assert len(ev.matchups) == 1
    assert len(ev.matchups[0].products) == 2
    assert ev.matchups[0].products[0].sensor == L9
    with pytest.raises(EomatchError, match="CQL2"):
        cat.get_events(filter="this is not cql2 ((")


def test_products_downloaded_and_set_product_data(cat):
    ev = make_event(n_matchups=1)
    cat.add_event(ev)
    pids = [p.id for p in ev.matchups[0].products]
    (cat.data_root / "p").mkdir(parents=True)
    for pid in pids[:1]:
        f = cat.data_root / "p" / f"{pid}.zip"
        f.write_bytes(b"x")
        cat.set_product_data(pid, f)
    assert cat.get_events(products_downloaded=True) == []
    assert len(cat.get_events(products_downloaded=False)) == 1
    f = cat.data_root / "p" / f"{pids[1]}.zip"
    f.write_bytes(b"x")
    item = cat.set_product_data(pids[1], f)
    assert item["assets"]["data"]["href"].startswith("../../../../data/p/")
    assert item["assets"]["data"]["eomatch:source_href"].startswith("https://")
    assert len(cat.get_events(products_downloaded=True)) == 1
    item = cat.set_product_data(pids[1], None)
    assert item["assets"]["data"]["href"].startswith("https://")
    assert cat.get_events(products_downloaded=True) == []
    validate_tree(cat.root)


def test_assets_add_remove_and_delete_guard(cat, tmp_path):
    ev = make_event(n_matchups=1)
    cat.add_event(ev)
    mu = ev.matchups[0]
    inside = cat.data_root / "results" / "stats.csv"
    inside.parent.mkdir(parents=True)
    inside.write_text("a,b\n")
    outside = tmp_path / "elsewhere.nc"
    outside.write_text("keep me")
    item = cat.add_matchup_asset(mu, "statistics", inside, roles=["data"])
    assert item["assets"]["statistics"]["type"] == "text/csv"
    assert not item["assets"]["statistics"]["href"].startswith("/")
    item = cat.add_event_asset(ev, "external", outside)
    assert item["assets"]["external"]["href"] == str(outside)
    assert item["assets"]["external"]["type"] == "application/x-netcdf"
    cat.add_matchup_collection_asset(mu, "report", inside, title="report")
    validate_tree(cat.root)
    with pytest.raises(EomatchError, match="refusing to delete"):
        cat.remove_event_asset(ev, "external", delete_file=True)
    assert outside.exists()
    assert "external" in json.loads(cat.item_path(ev.id).read_text())["assets"]
    cat.remove_event_asset(ev, "external")
    assert outside.exists()
    cat.remove_matchup_collection_asset(mu, "report")
    cat.remove_matchup_asset(mu, "statistics", delete_file=True)
    assert not inside.exists()
    with pytest.raises(EomatchError, match="no asset"):
        cat.remove_matchup_asset(mu.id, "statistics")
    cat.add_product_asset(mu.products[0], "quicklook", "https://example.test/ql.jpg")
    cat.remove_product_asset(mu.products[0].id, "quicklook")
    validate_tree(cat.root)


def test_open_forms_and_errors(cat, tmp_path):
    cat.add_event(make_event())
    a = MatchupCatalogue.open(cat.root / "catalog.json")
    assert a.id == "test-cat"
    assert a.counts()["event"] == 1
    a.close()
    with pytest.raises(EomatchError, match=r"catalog\.json"):
        MatchupCatalogue.open(tmp_path / "nothing")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "catalog.json").write_text("{not json")
    with pytest.raises(EomatchError, match=r"bad/catalog\.json"):
        MatchupCatalogue.open(tmp_path / "bad")


def _events_over_days():
    return [
        make_event(lon=0.0, lat=10.0),
        make_event(lon=20.0, lat=30.0, when=T0 + timedelta(hours=3)),  # same day
        make_event(lon=40.0, lat=-30.0, when=T0 + timedelta(days=1, hours=2)),
        make_event(lon=5.0, lat=5.0, sensors=(S2, S3), when=T0 + timedelta(days=3)),
        make_event(lon=179.0, lat=0.0, when=T0 + timedelta(days=9), antimeridian=True),
    ]


def test_pystac_crawls_every_item(cat):
    import pystac

    events = _events_over_days()
    with cat.batch():
        for e in events[:3]:
            cat.add_event(e)
    for e in events[3:]:
        cat.add_event(e)
    on_disk = item_files(cat.root)
    kinds = {}
    for e in events:
        kinds[e.id] = "event"
        for m in e.matchups:
            kinds[m.id] = "matchup"
            kinds.update({p.id: "product" for p in m.products})
    assert sorted(on_disk) == sorted(kinds)
    assert pystac_item_ids(cat.root) == sorted(kinds)
    assert validate_tree(cat.root) > 0
    # walk(): catalog -> collections -> day catalogs -> items
    root = pystac.Catalog.from_file(str(cat.root / "catalog.json"))
    walked: list[str] = []
    day_ids = set()
    for node, _children, items in root.walk():
        if node is not root and not isinstance(node, pystac.Collection):
            day_ids.add(node.id)
        walked += [i.id for i in items]
    assert sorted(walked) == sorted(kinds)
    assert len(day_ids) == check_day_catalogs(cat.root)
    item = next(root.get_items(events[2].id, recursive=True))
    parent = item.get_parent()
    assert parent is not None
    assert parent.id == f"{item.collection_id}-2022-05-22"
    collection = item.get_collection()
    assert collection is not None
    assert collection.id == item.collection_id


def test_add_to_a_known_day_rewrites_only_its_day_catalogs(cat):
    a = make_event(lon=0.0, lat=10.0)
    b = make_event(lon=40.0, lat=-30.0, when=T0 + timedelta(days=2))
    cat.add_event(a)
    cat.add_event(b)
    before = {p: p.read_bytes() for p in cat.root.rglob("*.json")}
    c = make_event(lon=10.0, lat=0.0, when=T0 + timedelta(hours=2))  # inside a..b extents
    cat.add_event(c)
    after = {p: p.read_bytes() for p in cat.root.rglob("*.json")}
    changed = {p.relative_to(cat.root).as_posix() for p in after if after[p] != before.get(p)}
    items = {
        f.relative_to(cat.root).as_posix()
        for i, f in item_files(cat.root).items()
        if i in {c.id, *(m.id for m in c.matchups), *(p.id for m in c.matchups for p in m.products)}
    }
    days = {f"{si.day_of(x)}/catalog.json" for x in items}
    assert changed == items | days  # no collection, no catalog.json, no other day
    validate_tree(cat.root)
    assert pystac_item_ids(cat.root) == sorted(item_files(cat.root))


def test_remove_keeps_day_catalogs_consistent(cat):
    events = _events_over_days()
    for e in events:
        cat.add_event(e)
    cat.remove_event(events[1].id)  # its day keeps events[0]
    validate_tree(cat.root)
    assert pystac_item_ids(cat.root) == sorted(item_files(cat.root))
    assert events[1].id not in item_files(cat.root)
    cat.remove_event(events[2].id)  # the only event of 2022-05-22: day catalogs and folders go
    validate_tree(cat.root)
    assert not list(cat.root.glob("*/2022/05/22"))
    coll = json.loads(
        (cat.root / si.events_collection_id(events[2].sensors) / "collection.json").read_text()
    )
    assert "./2022/05/22/catalog.json" not in [x["href"] for x in coll["links"]]
    cat.remove_event(events[3].id)  # the only S3 event: its collections go
    assert not (cat.root / "S3_EFR").exists() or not list((cat.root / "S3_EFR").rglob("*.json"))
    validate_tree(cat.root)
    assert pystac_item_ids(cat.root) == sorted(item_files(cat.root))
    with MatchupCatalogue.open(cat.root) as again:  # index still fresh: no rebuild needed
        assert again._index_fresh()


def test_rebuild_regenerates_day_catalogs_and_child_links(cat):
    events = _events_over_days()
    with cat.batch():
        for e in events:
            cat.add_event(e)
    expected = {p: p.read_bytes() for p in cat.root.rglob("*.json")}
    pair = "LANDSAT_C2L1-Landsat-9-vs-S2_MSI_L1C-Sentinel-2A"
    (cat.root / pair / "2022/05/21/catalog.json").unlink()
    (cat.root / "S2_MSI_L1C/2022/05/22/catalog.json").write_text("{broken")
    coll = cat.root / "LANDSAT_C2L1" / "collection.json"
    data = json.loads(coll.read_text())
    data["links"] = [x for x in data["links"] if x["rel"] != "child"]
    coll.write_text(json.dumps(data))
    stale = cat.root / "LANDSAT_C2L1/2030/01/01"
    stale.mkdir(parents=True)
    (stale / "catalog.json").write_text(
        json.dumps(si.day_catalog_dict("LANDSAT_C2L1/2030/01/01", ["gone"]))
    )
    cat.rebuild_index()
    assert not (stale / "catalog.json").exists()
    stale.rmdir()
    (stale.parent).rmdir()
    (stale.parent.parent).rmdir()
    assert {p: p.read_bytes() for p in cat.root.rglob("*.json")} == expected
    validate_tree(cat.root)


def test_old_layout_is_migrated_on_open(cat):
    """A catalogue written before day catalogs (schema 1) is upgraded by the next open."""
    events = _events_over_days()
    for e in events:
        cat.add_event(e)
    expected = {p: p.read_bytes() for p in cat.root.rglob("*.json")}
    cat.close()
    for day_catalog in cat.root.glob("*/*/*/*/catalog.json"):
        day_catalog.unlink()
    for coll in cat.root.glob("*/collection.json"):
        data = json.loads(coll.read_text())
        data["links"] = [x for x in data["links"] if x["rel"] != "child"]
        coll.write_text(json.dumps(data, indent=2) + "\n")
    for f in item_files(cat.root).values():
        item = json.loads(f.read_text())
        for link in item["links"]:
            if link["rel"] == "parent":
                link["href"] = "../../../collection.json"
        f.write_text(json.dumps(item, separators=(",", ":")) + "\n")
    import sqlite3

    db = sqlite3.connect(cat.root / INDEX_NAME)
    db.execute("UPDATE meta SET value='1' WHERE key='schema'")
    db.commit()
    db.close()
    with MatchupCatalogue.open(cat.root) as again:
        assert again.counts()["event"] == len(events)
    assert {p: p.read_bytes() for p in cat.root.rglob("*.json")} == expected
    validate_tree(cat.root)


def test_item_id_catalog_is_reserved(cat):
    ev = make_event(n_matchups=1)
    mu = ev.matchups[0]
    from dataclasses import replace

    bad = replace(ev, matchups=(replace(mu, id="catalog"),))
    with pytest.raises(EomatchError, match="reserved"):
        cat.add_event(bad)


def test_unreadable_day_catalog_is_regenerated_on_the_next_add(cat):
    a = make_event(lon=0.0, lat=10.0)
    cat.add_event(a)
    day = cat.item_path(a.id).parent / "catalog.json"
    with day.open("r+") as fh:  # in place: the folder's mtime does not change
        fh.write("garbage!")
    with MatchupCatalogue.open(cat.root) as again:
        again.add_event(make_event(lon=5.0, lat=10.0, when=T0 + timedelta(hours=1)))
    validate_tree(cat.root)
    assert pystac_item_ids(cat.root) == sorted(item_files(cat.root))


def _tree_bytes(root) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*.json"))
        if not p.name.startswith(".")
    }


@pytest.mark.parametrize("process_after", [10_000, 0, 1], ids=["caller", "helper", "switch"])
def test_batch_writes_the_same_files_as_serial_adds_and_reads_see_them(
    tmp_path, monkeypatch, process_after
):
    """New events in a batch go through the bulk writer (index rows buffered): reads inside
    the batch see them, counts say new vs already present, and the files are byte-identical
    to one-by-one adds."""
    from dataclasses import replace

    first = make_event(lon=0.0, when=T0)
    shared = first.matchups[0].products[0]  # a product of `first`, reused by `second`
    second = make_event(lon=1.0, when=T0 + timedelta(minutes=1), n_matchups=1)
    mu = second.matchups[0]
    mu = replace(mu, products=tuple(sorted((shared, mu.products[1]), key=lambda p: p.sensor)))
    second = replace(second, matchups=(mu,))
    grown = make_event(lon=0.0, when=T0, n_matchups=3)  # `first` again, one more matchup
    events = [first, second, grown, make_event(lon=20.0, when=T0 + timedelta(days=1))]
    # files written by this process, by the helper process, or first here and then there
    monkeypatch.setattr(catalogue_bulk.BulkWriter, "PROCESS_AFTER", process_after)

    serial = MatchupCatalogue.create(tmp_path / "serial", id="c", description="d")
    with serial:
        expected_results = [serial.add_event(e) for e in events]
    bulk = MatchupCatalogue.create(tmp_path / "bulk", id="c", description="d")
    with bulk, bulk.batch():
        results = [bulk.add_event(events[0]), bulk.add_event(events[1])]
        assert (results[1].products_existing, results[1].products_new) == (1, 1)
        assert bulk.counts() == {"event": 2, "matchup": 3, "product": 5}
        assert {e.id for e in bulk.get_events()} == {first.id, second.id}
        results += [bulk.add_event(e) for e in events[2:]]
        assert bulk.add_event(events[3]).events_existing == 1
    assert results == expected_results
    assert _tree_bytes(tmp_path / "bulk") == _tree_bytes(tmp_path / "serial")
    validate_tree(tmp_path / "bulk")
    with MatchupCatalogue.open(tmp_path / "bulk") as cat:
        assert cat.counts() == {"event": 3, "matchup": 6, "product": 11}


def test_item_id_catalog_is_reserved_in_a_batch(cat):
    ev = make_event(n_matchups=1)
    from dataclasses import replace

    bad = replace(ev, matchups=(replace(ev.matchups[0], id="catalog"),))

    def add_both() -> None:
        with cat.batch():
            cat.add_event(make_event(lon=30.0))
            cat.add_event(bad)

    with pytest.raises(EomatchError, match="reserved"):
        add_both()
    assert cat.counts() == {"event": 1, "matchup": 2, "product": 4}  # rebuilt from the files


def test_batch_helper_process_failure_is_one_clear_error(tmp_path, monkeypatch):
    """The helper process cannot create a file: one EomatchError naming the catalogue and the
    reason; the files written before stay valid and the index is rebuilt from them."""
    monkeypatch.setattr(catalogue_bulk.BulkWriter, "PROCESS_AFTER", 1)
    root = tmp_path / "cat"
    cat = MatchupCatalogue.create(root)
    blocker = root / "matchup-events-LANDSAT_C2L1-Landsat-9-vs-S2_MSI_L1C-Sentinel-2A" / "2022"
    blocker.parent.mkdir(parents=True)
    blocker.write_text("not a folder")  # the second event's day folder cannot be made

    def add() -> None:
        with cat.batch():
            cat.add_event(make_event(lon=0.0, when=T0 - timedelta(days=400)))
            cat.add_event(make_event(lon=5.0, when=T0))

    with pytest.raises(EomatchError, match=r"writing the catalogue's files failed: .*2022"):
        add()
    blocker.unlink()
    assert cat.counts()["event"] == 1
    cat.close()
    validate_tree(root)
