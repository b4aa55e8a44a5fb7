"""Geometry checks that keep unservable documents out of pgSTAC."""

from __future__ import annotations

import pytest

from eomatch.core.validation import (
    document_problem,
    geometry_problem,
    href_problem,
    written_documents,
)

POINT = {"type": "Point", "coordinates": [1.0, 2.0]}
SQUARE = {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 1], [0, 0]]]}


@pytest.mark.parametrize(
    "geometry",
    [
        None,
        POINT,
        SQUARE,
        {"type": "MultiPolygon", "coordinates": [SQUARE["coordinates"]]},
        {"type": "GeometryCollection", "geometries": [POINT, SQUARE]},
        {"type": "LineString", "coordinates": [[0, 0, 10], [1, 1, 12]]},
    ],
)
def test_servable_geometries_pass(geometry) -> None:
    assert geometry_problem(geometry) is None


@pytest.mark.parametrize(
    ("geometry", "words"),
    [
        ({"type": "GeometryCollection", "geometries": [{"type": "GeometryCollection",
          "geometries": []}]}, "inside a GeometryCollection"),
        ({"type": "Circle", "coordinates": [0, 0]}, "unknown geometry type"),
        ({"type": "Point", "coordinates": [0]}, "not positions"),
        ({"type": "Point", "coordinates": [0, float("nan")]}, "not positions"),
        ({"type": "Polygon", "coordinates": [[0, 0], [1, 1]]}, "not positions"),
        ({"type": "Point", "coordinates": [True, 1]}, "not positions"),
        ({"type": "GeometryCollection"}, "without a geometries list"),
        ([1, 2], "not a GeoJSON object"),
    ],
)  # fmt: skip
def test_unservable_geometries_are_named(geometry, words) -> None:
    problem = geometry_problem(geometry)
    assert problem is not None
    assert words in problem


def test_written_documents_of_every_write_shape() -> None:
    feature = {"type": "Feature", "geometry": POINT}
    square = {"type": "Feature", "geometry": SQUARE}
    assert written_documents(feature) == [feature]
    assert written_documents({"type": "FeatureCollection", "features": [square, 1]}) == [square]
    assert written_documents({"items": {"a": feature, "b": "x"}}) == [feature]
    assert written_documents({"properties": {}}) == [{"properties": {}}]
    assert written_documents([POINT]) == []


def test_hrefs_that_urlsplit_refuses_are_named() -> None:
    doc = {
        "links": [{"rel": "alternate", "href": "https://ok.test/x"}],
        "assets": {"a": {"href": "file:///x", "alternate": {"s3": {"href": "http://["}}}},
    }
    problem = href_problem(doc)
    assert problem is not None
    assert "'http://['" in problem
    assert href_problem({"links": [{"href": 3}]}) == "href 3 is not a string"
    assert href_problem({"links": [{"href": "../x.json"}], "assets": {}}) is None
    assert document_problem({"geometry": {"type": "Point", "coordinates": [0]}}) is not None
