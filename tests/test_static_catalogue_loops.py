"""A static catalogue that links back to itself or to an ancestor is read once, not for ever.

Found in the review of API catalogue jobs (issue #13): a ``child`` link to the catalogue's own
file made the walk recurse until Python's RecursionError, which the worker reported as a crash.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from eomatch.errors import InputError
from eomatch.io.static_catalogue import MAX_DEPTH, read_static_catalogue


def _catalog(cid: str, links: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "type": "Catalog",
        "stac_version": "1.1.0",
        "id": cid,
        "description": cid,
        "links": links,
    }


def _collection(cid: str, links: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        **_catalog(cid, links),
        "type": "Collection",
        "license": "other",
        "extent": {
            "spatial": {"bbox": [[-10.0, 40.0, 0.0, 50.0]]},
            "temporal": {"interval": [["2022-05-06T12:00:00Z", None]]},
        },
    }


def _item(iid: str, coll: str) -> dict[str, Any]:
    return {
        "type": "Feature",
        "stac_version": "1.1.0",
        "id": iid,
        "collection": coll,
        "geometry": {"type": "Point", "coordinates": [-5.0, 45.0]},
        "bbox": [-5.0, 45.0, -5.0, 45.0],
        "properties": {"datetime": "2022-05-06T12:00:00Z"},
        "links": [],
        "assets": {},
    }


def _write(path: Path, doc: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))


def test_child_link_to_itself(tmp_path: Path) -> None:
    _write(
        tmp_path / "catalog.json",
        _catalog("root", [{"rel": "child", "href": "./catalog.json"},
                          {"rel": "child", "href": "./c/collection.json"}]),
    )  # fmt: skip
    _write(
        tmp_path / "c" / "collection.json", _collection("c", [{"rel": "item", "href": "./a.json"}])
    )
    _write(tmp_path / "c" / "a.json", _item("a", "c"))
    out = read_static_catalogue(str(tmp_path))
    assert [c["id"] for c in out.collections] == ["c"]
    assert [i["id"] for i in out.items] == ["a"]


def test_loop_through_a_descendant(tmp_path: Path) -> None:
    _write(
        tmp_path / "catalog.json",
        _catalog("root", [{"rel": "child", "href": "./sub/catalog.json"}]),
    )
    _write(
        tmp_path / "sub" / "catalog.json",
        _catalog("sub", [{"rel": "child", "href": "../catalog.json"},
                         {"rel": "child", "href": "./c/collection.json"}]),
    )  # fmt: skip
    _write(
        tmp_path / "sub" / "c" / "collection.json",
        _collection("c", [{"rel": "item", "href": "./a.json"},
                          {"rel": "child", "href": "../../catalog.json"}]),
    )  # fmt: skip
    _write(tmp_path / "sub" / "c" / "a.json", _item("a", "c"))
    out = read_static_catalogue(str(tmp_path))
    assert [i["id"] for i in out.items] == ["a"]


def test_nesting_is_bounded(tmp_path: Path) -> None:
    depth = MAX_DEPTH + 3
    for k in range(depth):
        here = tmp_path.joinpath(*["d"] * k)
        links = [{"rel": "child", "href": "./d/catalog.json"}] if k < depth - 1 else []
        _write(here / "catalog.json", _catalog(f"c{k}", links))
    with pytest.raises(InputError, match="nested over"):
        read_static_catalogue(str(tmp_path))
