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


# --- issue 10 §8: valid STAC we did not write, invalid STAC, and no half-written repair ---------


def _snapshot(root):
    """Every catalogue file except the index (a cache) and the lock."""
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in root.rglob("*")
        if p.is_file() and not p.name.startswith(".eomatch")
    }


def _cli(argv, capsys):
    from eomatch.cli.main import main

    code = main(argv)
    captured = capsys.readouterr()
    assert "internal error" not in captured.err
    assert "Traceback" not in captured.err
    return code, captured.err


def _edit(path, change):
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc))


@pytest.mark.parametrize(
    "interval",
    [[["2020-01-01T00:00:00Z", None]], [[None, None]], [[None, "2030-01-01T00:00:00Z"]]],
)
@pytest.mark.parametrize("rebuild", [False, True])
def test_open_ended_collection_intervals_are_read(cat, capsys, interval, rebuild):
    ev = make_event()
    cat.add_event(ev)
    root = cat.root
    cat.close()
    for coll in root.glob("*/collection.json"):
        _edit(coll, lambda d: d["extent"]["temporal"].update(interval=interval))
    if rebuild:
        (root / INDEX_NAME).unlink()
    with MatchupCatalogue.open(root) as again:
        assert [e.id for e in again.get_events()] == [ev.id]
        if not rebuild:  # adding keeps the open end open (rebuild: extents are recomputed)
            again.add_event(make_event(lon=20.0, when=T0 + timedelta(days=400)))
    if not rebuild:
        coll = root / si.collection_path(si.matchup_collection(ev.matchups[0]))
        got = json.loads(coll.read_text())["extent"]["temporal"]["interval"][0]
        assert [b is None for b in got] == [b is None for b in interval[0]]
        validate_tree(root)
    item = next(iter(item_files(root)))
    assert _cli(["assets", "list", "--catalogue", str(root), "--item", item], capsys)[0] == 0
    assert _cli(["remove", "--path", str(root), "--keep-files"], capsys)[0] == 0


def test_3d_bboxes_are_read_as_their_2d_footprint(cat):
    ev = make_event(lon=10.0, lat=45.0, size=2.0)
    cat.add_event(ev)
    root = cat.root
    cat.close()
    for path in item_files(root).values():
        _edit(path, lambda d: d.update(bbox=[*d["bbox"][:2], -5.0, *d["bbox"][2:], 5.0]))
    for coll in root.glob("*/collection.json"):
        _edit(coll, lambda d: d["extent"]["spatial"].update(bbox=[[9.0, 44.0, 0, 13.0, 48.0, 9]]))
    (root / INDEX_NAME).unlink()
    with MatchupCatalogue.open(root) as again:
        assert [e.id for e in again.get_events(bbox=[11.0, 46.0, 11.5, 46.5])] == [ev.id]
        assert again.get_events(bbox=[-5.5, 46.0, -4.5, 46.5]) == []


BAD_ASSETS = [
    [{"href": "x.nc"}],
    "data",
    {"data": "x.nc"},
    {"data": None},
    {"data": {"title": "no href"}},
    {"data": {"href": 5}},
    {"data": {"href": "x.nc", "alternate": [{"href": "y"}]}},
    {"data": {"href": "x.nc", "alternate": {"s3": {"nohref": 1}}}},
]


@pytest.mark.parametrize("assets", BAD_ASSETS)
@pytest.mark.parametrize("rebuild", [False, True])
def test_assets_in_unexpected_shapes_are_one_line_or_skipped(cat, capsys, assets, rebuild):
    cat.add_event(make_event())
    root = cat.root
    cat.close()
    files = item_files(root)
    product = next(i for i in files if i.startswith(S2.platform))
    _edit(files[product], lambda d: d.update(assets=assets))
    if rebuild:
        (root / INDEX_NAME).unlink()
    before = _snapshot(root)
    # assets list reads only the versions it knows (other shapes are not its own): 0 or 2
    code, err = _cli(["assets", "list", "--catalogue", str(root), "--item", product], capsys)
    assert code == 0 or (code == 2 and err.count("\n") == 1)
    assert _snapshot(root) == before
    code, err = _cli(["remove", "--path", str(root), "--keep-files"], capsys)
    assert code == 2
    assert err.count("\n") == 1
    assert product in err
    assert "asset" in err
    assert _snapshot(root) == before
    code, err = _cli(["remove", "--path", str(root), "--keep-files", "--skip-invalid"], capsys)
    assert code == 0
    # null assets are no assets: valid enough to read
    _edit(files[product], lambda d: d.update(assets=None))
    (root / INDEX_NAME).unlink()  # (a skipped file is indexed once its folder changes)
    code, _ = _cli(["assets", "list", "--catalogue", str(root), "--item", product], capsys)
    assert code == 0


def test_a_failed_open_writes_nothing_and_skipping_keeps_files_listed(tmp_path, capsys):
    """The rebuild reads every file before it repairs any: one bad item, nothing written."""
    root = tmp_path / "cat"
    with MatchupCatalogue.create(root) as c:
        for k in range(3):
            c.add_event(make_event(lon=3.0 * k, when=T0 + timedelta(days=k)))
    files = item_files(root)
    first, last = sorted(files, key=lambda i: str(files[i]))[0], sorted(files)[-1]
    # repairs waiting: an item without its structural links, a stale day catalog, a temp file
    _edit(files[first], lambda d: d.update(links=[x for x in d["links"] if x["rel"] != "parent"]))
    day_catalog = files[first].parent / "catalog.json"
    day_catalog.write_text(json.dumps(si.day_catalog_dict(si.day_of(
        files[first].relative_to(root).as_posix()), [])))  # fmt: skip
    (files[first].parent / ".x.json.tmp").write_text("{")
    bad = next(i for i in files if files[i].parent != files[first].parent)
    _edit(files[bad], lambda d: d.pop("geometry"))
    (root / INDEX_NAME).unlink()
    before = _snapshot(root)
    with pytest.raises(EomatchError, match="invalid catalogue item"):
        MatchupCatalogue.open(root)
    assert _snapshot(root) == before
    code, err = _cli(["remove", "--path", str(root), "--keep-files"], capsys)
    assert code == 2
    assert bad in err
    assert _snapshot(root) == before
    assert last  # (the catalogue has several days)
    with MatchupCatalogue.open(root, skip_invalid=True) as again:
        assert bad not in again.item_paths([bad])
    after = _snapshot(root)
    assert after != before  # the repairs ran
    assert not (files[first].parent / ".x.json.tmp").exists()
    bad_day = files[bad].parent / "catalog.json"
    assert bad in si.day_catalog_items(json.loads(bad_day.read_text()))
    assert first in si.day_catalog_items(json.loads(day_catalog.read_text()))
