"""Synthetic events and an offline STAC 1.1 validator for the catalogue tests."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
from pystac.validation.local_validator import get_local_schema_cache
from referencing import Registry, Resource
from shapely.geometry import MultiPolygon, box

from eomatch.core import stac_items as si
from eomatch.core.matchups import event_matchup_id
from eomatch.core.products import (
    Matchup,
    MatchupEvent,
    Product,
    SensorKey,
    event_id,
    pair_id,
)


def _schema_file() -> str:
    """The shipped extension schema's file name (moving to ``core.vocabulary``, issue 11 §6)."""
    name = getattr(si, "EXTENSION_SCHEMA_FILE", None)
    if name is None:
        from eomatch.core import vocabulary  # type: ignore[attr-defined,unused-ignore]

        name = vocabulary.EXTENSION_SCHEMA_FILE
    return str(name)


S2 = SensorKey("S2_MSI_L1C", "Sentinel-2A")
L9 = SensorKey("LANDSAT_C2L1", "Landsat-9")
S3 = SensorKey("S3_EFR", "Sentinel-3A")
T0 = datetime(2022, 5, 21, 8, 35, tzinfo=UTC)


def make_event(
    lon: float = 10.0,
    lat: float = 45.0,
    when: datetime = T0,
    sensors: tuple[SensorKey, SensorKey] = (L9, S2),
    n_matchups: int = 2,
    dt_s: float = 300.0,
    size: float = 2.0,
    antimeridian: bool = False,
) -> MatchupEvent:
    """One event with ``n_matchups`` matchups of one product per sensor each."""
    a, b = sorted(sensors)
    pair = pair_id([a, b])
    eid = event_id(pair, when, lat, lon)
    matchups = []
    for k in range(n_matchups):
        prods = []
        for j, sensor in enumerate((a, b)):
            start = when + timedelta(seconds=k * 30 + j * dt_s)
            if antimeridian:
                geom: Any = MultiPolygon(
                    [box(179.0, lat + k * 0.1, 180.0, lat + 1), box(-180.0, lat, -179.0, lat + 1)]
                )
            else:
                geom = box(lon + k * 0.1 + j * 0.2, lat, lon + size + k * 0.1, lat + size)
            prods.append(
                Product(
                    id=f"{sensor.platform}_{start:%Y%m%dT%H%M%S}_{lon:+.2f}_{lat:+.2f}_{k}",
                    sensor=sensor,
                    start=start,
                    end=start + timedelta(seconds=20),
                    geometry=geom,
                    assets={"data": {"href": f"https://example.test/{sensor.platform}/{k}.zip"}},
                    properties={"eo:cloud_cover": 12.5},
                )
            )
        geom_mu = prods[0].geometry.intersection(prods[1].geometry)
        if antimeridian:
            geom_mu = prods[0].geometry
        matchups.append(
            Matchup(
                id=event_matchup_id(pair, eid, prods),
                products=tuple(sorted(prods, key=lambda p: p.sensor)),
                geometry=geom_mu,
                area_km2=1000.0 + k,
                time_diff_abs_s=dt_s,
                event_id=eid,
            )
        )
    return MatchupEvent(
        id=eid,
        sensors=(a, b),
        start=when,
        end=when + timedelta(seconds=dt_s + 60 * n_matchups),
        geometry=(
            MultiPolygon([box(178.0, lat, 180.0, lat + 2), box(-180.0, lat, -178.0, lat + 2)])
            if antimeridian
            else box(lon - 1, lat - 1, lon + size + 1, lat + size + 1)
        ),
        properties={"closest_approach": when, "distance_km": 12.0},
        matchups=tuple(matchups),
    )


def _registry() -> Registry[Any]:
    resources_: list[tuple[str, Resource[Any]]] = [
        (uri, Resource.from_contents(schema)) for uri, schema in get_local_schema_cache().items()
    ]
    ext = json.loads(resources.files("eomatch.schemas").joinpath(_schema_file()).read_text())
    resources_.append((si.EXTENSION_URI, Resource.from_contents(ext)))
    return Registry().with_resources(resources_)


_REGISTRY = _registry()
_CORE = {
    "Feature": "https://schemas.stacspec.org/v1.1.0/item-spec/json-schema/item.json",
    "Collection": "https://schemas.stacspec.org/v1.1.0/collection-spec/json-schema/collection.json",
    "Catalog": "https://schemas.stacspec.org/v1.1.0/catalog-spec/json-schema/catalog.json",
}


def validate_stac(data: dict[str, Any]) -> None:
    """Validate against the STAC 1.1.0 core schemas pystac ships, plus declared extensions."""
    for uri in [_CORE[data["type"]], *data.get("stac_extensions", [])]:
        schema = _REGISTRY.contents(uri)
        cls = jsonschema.validators.validator_for(schema)
        cls(schema, registry=_REGISTRY).validate(data)


def validate_tree(root: Path) -> int:
    """Validate every JSON file (day catalogs too); links resolve, no self links, day catalogs."""
    n = 0
    for path in root.rglob("*.json"):
        if path.name.startswith(".") or "data" in path.relative_to(root).parts[:1]:
            continue
        data = json.loads(path.read_text())
        validate_stac(data)
        for link in data.get("links", []):
            assert link["rel"] != "self", path
            assert not link["href"].startswith("/"), path
            assert (path.parent / link["href"]).resolve().is_file(), (path, link)
        n += 1
    check_day_catalogs(root)
    return n


def _item_files(day: Path) -> set[str]:
    return {
        p.stem
        for p in day.glob("*.json")
        if not p.name.startswith(".") and p.name != si.DAY_CATALOG
    }


def check_down_links(root: Path) -> None:
    """Every ``child``/``item`` link resolves (holds even right after a kill)."""
    for path in root.rglob("*.json"):
        if path.name.startswith(".") or "data" in path.relative_to(root).parts[:1]:
            continue
        for link in json.loads(path.read_text()).get("links", []):
            if link["rel"] in ("child", "item"):
                assert (path.parent / link["href"]).resolve().is_file(), (path, link)


def check_day_catalogs(root: Path) -> int:
    """Day catalogs list exactly the item files of their folder; collections link each day.

    Returns the number of day catalogs.
    """
    n = 0
    catalog = json.loads((root / "catalog.json").read_text())
    for link in catalog["links"]:
        if link["rel"] != "child":
            continue
        coll_file = root / link["href"]
        coll = json.loads(coll_file.read_text())
        child_hrefs = [x["href"] for x in coll["links"] if x["rel"] == "child"]
        assert child_hrefs == sorted(child_hrefs), coll_file
        days = {
            str(d.relative_to(coll_file.parent))
            for d in coll_file.parent.glob("*/*/*")
            if d.is_dir() and _item_files(d)
        }
        assert {h.removeprefix("./").removesuffix("/catalog.json") for h in child_hrefs} == days
        for d in coll_file.parent.glob("*/*/*"):
            ids = _item_files(d)
            day_file = d / si.DAY_CATALOG
            if not ids:
                assert not day_file.exists(), day_file
                continue
            day = json.loads(day_file.read_text())
            assert day["id"] == f"{coll['id']}-{d.relative_to(coll_file.parent)!s}".replace(
                "/", "-"
            )
            parent = [x for x in day["links"] if x["rel"] == "parent"]
            assert [x["href"] for x in parent] == ["../../../collection.json"]
            items = [x for x in day["links"] if x["rel"] == "item"]
            assert [x["href"] for x in items] == [f"./{i}.json" for i in sorted(ids)], day_file
            assert {x["type"] for x in items} == {"application/geo+json"}
            for i in ids:
                links = json.loads((d / f"{i}.json").read_text())["links"]
                assert [x["href"] for x in links if x["rel"] == "parent"] == ["./catalog.json"]
                assert [x["href"] for x in links if x["rel"] == "collection"] == [
                    "../../../collection.json"
                ]
            n += 1
    return n


def item_files(root: Path) -> dict[str, Path]:
    """Item id -> file, for every item file on disk."""
    out: dict[str, Path] = {}
    for coll in root.iterdir():
        if coll.is_dir() and not coll.name.startswith(".") and coll.name != "data":
            for d in coll.glob("*/*/*"):
                out.update({i: d / f"{i}.json" for i in _item_files(d)})
    return out


def pystac_item_ids(root: Path) -> list[str]:
    """Ids of the items pystac finds crawling the catalogue from its root (sorted)."""
    import pystac

    cat = pystac.Catalog.from_file(str(root / "catalog.json"))
    return sorted(item.id for item in cat.get_items(recursive=True))


def link_graph(root: Path) -> dict[str, set[tuple[str, str]]]:
    """The catalogue's item links as read from the files, by direction.

    Keys: ``event->matchup`` (event ``related`` links), ``matchup->event`` (matchup ``related``
    links, checked against its ``matchup:event_id``), ``matchup->product`` (``derived_from``).
    Every link must resolve to an item file (asserted here).
    """
    files = item_files(root)
    by_rel = {str(p.relative_to(root)): i for i, p in files.items()}
    out: dict[str, set[tuple[str, str]]] = {
        "event->matchup": set(),
        "matchup->event": set(),
        "matchup->product": set(),
    }
    for item_id, path in files.items():
        item = json.loads(path.read_text())
        rel = str(path.relative_to(root))
        kind = si.collection_kind(item["collection"])
        for link in item["links"]:
            if link["rel"] not in ("related", "derived_from"):
                continue
            target = by_rel.get(si.resolve_href(rel, link["href"]))
            assert target is not None, (rel, link)
            if kind == "event":
                assert link.get("matchup:role") == "matchup", (rel, link)
                out["event->matchup"].add((item_id, target))
            elif link["rel"] == "related":
                assert item["properties"]["matchup:event_id"] == target, (rel, link)
                out["matchup->event"].add((item_id, target))
            else:
                out["matchup->product"].add((item_id, target))
        if kind == "matchup":
            assert [e for m, e in out["matchup->event"] if m == item_id], f"{rel}: no event"
    return out


def check_link_symmetry(root: Path) -> dict[str, set[tuple[str, str]]]:
    """Every event→matchup link has its matchup→event reverse and vice versa; a matchup
    links exactly one event; returns the graph (see :func:`link_graph`)."""
    g = link_graph(root)
    forward = g["event->matchup"]
    backward = {(e, m) for m, e in g["matchup->event"]}
    assert forward == backward, forward ^ backward
    owners: dict[str, set[str]] = {}
    for m, e in g["matchup->event"]:
        owners.setdefault(m, set()).add(e)
    assert all(len(v) == 1 for v in owners.values()), owners
    return g
