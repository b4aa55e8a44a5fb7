from __future__ import annotations

import json

import pytest
from shapely.geometry import MultiPolygon, box

from catalogue_helpers import T0, make_event, validate_stac
from eomatch.core import stac_items as si


def test_item_paths_zero_padded_and_links_relative():
    ev = make_event()
    mu = ev.matchups[0]
    item = si.matchup_to_item(mu, ev)
    path = si.matchup_path(mu)
    assert path.startswith(f"{si.matchup_collection(mu)}/2022/05/21/")
    rels = [link["rel"] for link in item["links"]]
    assert "self" not in rels
    assert rels.count("derived_from") == 2
    related = [link for link in item["links"] if link["rel"] == "related"]
    assert related[0]["matchup:role"] == "event"
    assert si.resolve_href(path, related[0]["href"]) == si.event_path(ev)
    assert item["properties"]["matchup:time_diff_abs"] == 300.0
    assert item["properties"]["datetime"] == "2022-05-21T08:35:00Z"
    assert item["properties"]["start_datetime"] == item["properties"]["datetime"]
    validate_stac(item)
    assert json.loads(json.dumps(item)) == item


def test_event_and_product_items_validate_and_round_trip():
    ev = make_event()
    item = si.event_to_item(ev)
    validate_stac(item)
    assert item["properties"]["matchup:collections"] == ["LANDSAT_C2L1", "S2_MSI_L1C"]
    assert item["properties"]["matchup:platforms"] == ["Landsat-9", "Sentinel-2A"]
    roles = [link.get("matchup:role") for link in item["links"] if link["rel"] == "related"]
    assert roles == ["matchup", "matchup"]
    back = si.item_to_event(item)
    assert back.id == ev.id
    assert back.sensors == ev.sensors
    assert back.start == ev.start
    p = ev.matchups[0].products[0]
    pitem = si.product_to_item(p)
    validate_stac(pitem)
    assert si.item_to_product(pitem) == p
    mu = si.item_to_matchup(si.matchup_to_item(ev.matchups[0], ev), ev.matchups[0].products)
    assert mu.time_diff_abs_s == 300.0
    assert mu.event_id == ev.id


def test_deterministic_bytes():
    a = json.dumps(si.event_to_item(make_event()))
    b = json.dumps(si.event_to_item(make_event()))
    assert a == b


def test_antimeridian_bbox_and_union():
    geom = MultiPolygon([box(170, 0, 180, 5), box(-180, 0, -175, 5)])
    assert si.geometry_bbox(geom) == [170.0, 0.0, -175.0, 5.0]
    assert si.geometry_bbox(box(0, 0, 1, 1)) == [0.0, 0.0, 1.0, 1.0]
    assert si.bbox_intersects([170, 0, -175, 5], [-178, 1, -177, 2])
    assert not si.bbox_intersects([170, 0, -175, 5], [0, 1, 10, 2])
    assert si.bbox_intersects([0, 0, 10, 10], [175, 0, 5, 5])
    assert si.bbox_union([0, 0, 1, 1], [2, -1, 3, 0.5]) == [0.0, -1.0, 3.0, 1.0]
    assert si.bbox_union([0, 0, 1, 1], [170, 0, -175, 5])[0::2] == [-180.0, 180.0]


def test_predicted_flag_and_datetime_format():
    ev = make_event()
    p = ev.matchups[0].products[0]
    from dataclasses import replace

    item = si.product_to_item(replace(p, predicted=True))
    assert item["properties"]["eomatch:predicted"] is True
    validate_stac(item)
    assert si.format_datetime(T0) == "2022-05-21T08:35:00Z"
    assert si.parse_datetime("2022-05-21T08:35:00Z") == T0


def test_collection_dict_validates():
    c = si.collection_dict("S2_MSI_L1C", [0, 0, 1, 1], (T0, T0))
    validate_stac(c)
    validate_stac(si.catalog_dict("x", "d", ["S2_MSI_L1C"]))


def test_day_catalog_and_collection_children():
    ev = make_event()
    mu = ev.matchups[0]
    path = si.matchup_path(mu)
    day = si.day_of(path)
    assert day == f"{si.matchup_collection(mu)}/2022/05/21"
    cat = si.day_catalog_dict(day, ["b", "a", "b"])
    validate_stac(cat)
    assert cat["id"] == f"{si.matchup_collection(mu)}-2022-05-21"
    assert [x["href"] for x in cat["links"] if x["rel"] == "item"] == ["./a.json", "./b.json"]
    assert si.day_catalog_items(cat) == {"a", "b"}
    coll = si.collection_dict("S2_MSI_L1C", [0, 0, 1, 1], (T0, T0), days=["2022/05/22"])
    si.set_collection_days(coll, si.collection_days(coll) | {"2022/05/21"})
    validate_stac(coll)
    assert [x["href"] for x in coll["links"] if x["rel"] == "child"] == [
        "./2022/05/21/catalog.json",
        "./2022/05/22/catalog.json",
    ]
    assert si.collection_days(coll) == {"2022/05/21", "2022/05/22"}
    item = si.matchup_to_item(mu, ev)
    parent = next(x for x in item["links"] if x["rel"] == "parent")
    assert si.resolve_href(path, parent["href"]) == si.day_catalog_path(day)
    old = dict(
        item,
        links=[
            dict(x, href="../../../collection.json") if x["rel"] == "parent" else x
            for x in item["links"]
        ],
    )
    assert si.with_structural_links(old, path) == item


@pytest.mark.parametrize(
    ("path", "collection"),
    [
        ("S2_MSI_L1C/2022/05/22/a.json", "S2_MSI_L1C"),  # the layout's own depth: shared hrefs
        ("S2_MSI_L1C/2022/05/a.json", "S2_MSI_L1C"),  # other depths: computed for the folder
        ("x/S2_MSI_L1C/2022/05/22/a.json", "S2_MSI_L1C"),
        ("other/2022/05/22/a.json", "S2_MSI_L1C"),
    ],
)
def test_structural_links_resolve_to_the_catalogue_files(path, collection):
    """The hrefs shared by every {collection}/YYYY/MM/DD folder are those of each folder."""
    links = {x["rel"]: x["href"] for x in si.structural_links(path, collection)}
    assert si.resolve_href(path, links["root"]) == "catalog.json"
    assert si.resolve_href(path, links["parent"]) == si.day_catalog_path(si.day_of(path))
    assert si.resolve_href(path, links["collection"]) == si.collection_path(collection)
    fresh = si.structural_links(path, collection)
    fresh[0]["href"] = "changed"  # copies: an edit of one item's links reaches no other
    assert si.structural_links(path, collection)[0]["href"] != "changed"
