"""Checks on incoming STAC documents that pgSTAC itself would let through (pure).

PostGIS stores a GeometryCollection nested in another one, but ``ST_AsGeoJSON`` then refuses
it, so one accepted write would turn every read including the item into an error; the same
goes for a link href that ``urlsplit`` refuses. Such documents are refused at the door (API
writes, ingest) with a message naming the problem.
"""

from __future__ import annotations

import math
from typing import Any
from urllib.parse import urlsplit

GEOMETRY_TYPES = frozenset(
    {
        "Point",
        "MultiPoint",
        "LineString",
        "MultiLineString",
        "Polygon",
        "MultiPolygon",
        "GeometryCollection",
    }
)
_DEPTH = {
    "Point": 0,
    "MultiPoint": 1,
    "LineString": 1,
    "MultiLineString": 2,
    "Polygon": 2,
    "MultiPolygon": 3,
}


_NUMBERS = frozenset({int, float})  # exact types: bool is not a coordinate


def _positions_ok(coords: Any, depth: int) -> bool:
    # map/set/all run in C: this check costs ~4 us a 60-vertex polygon, not ~20
    if type(coords) is not list:
        return False
    if depth == 0:
        return (
            2 <= len(coords) <= 4
            and set(map(type, coords)) <= _NUMBERS
            and all(map(math.isfinite, coords))
        )
    if depth == 1:
        return all(
            type(p) is list
            and 2 <= len(p) <= 4
            and set(map(type, p)) <= _NUMBERS
            and all(map(math.isfinite, p))
            for p in coords
        )
    return all(_positions_ok(c, depth - 1) for c in coords)


def geometry_problem(geometry: Any, nested: bool = False) -> str | None:
    """Why a GeoJSON geometry cannot be stored and served back (None: it can; null is fine)."""
    if geometry is None and not nested:
        return None
    if not isinstance(geometry, dict):
        return "geometry is not a GeoJSON object"
    kind = geometry.get("type")
    if kind not in GEOMETRY_TYPES:
        return f"unknown geometry type {kind!r}"
    if kind == "GeometryCollection":
        if nested:
            return "a GeometryCollection inside a GeometryCollection cannot be served as GeoJSON"
        parts = geometry.get("geometries")
        if not isinstance(parts, list):
            return "GeometryCollection without a geometries list"
        for part in parts:
            problem = geometry_problem(part, nested=True)
            if problem:
                return problem
        return None
    if not _positions_ok(geometry.get("coordinates"), _DEPTH[str(kind)]):
        return f"{kind} coordinates are not positions of finite numbers"
    return None


def written_documents(body: Any) -> list[dict[str, Any]]:
    """The STAC documents a write body carries: itself, a FeatureCollection's features, or
    bulk ``items``."""
    if not isinstance(body, dict):
        return []
    if body.get("type") == "FeatureCollection" and isinstance(body.get("features"), list):
        return [f for f in body["features"] if isinstance(f, dict)]
    if isinstance(body.get("items"), dict):
        return [i for i in body["items"].values() if isinstance(i, dict)]
    return [body]


def item_geometries(body: Any) -> list[Any]:
    """The geometries a write body carries: a Feature, a FeatureCollection, bulk ``items``."""
    return [d["geometry"] for d in written_documents(body) if "geometry" in d]


def _hrefs(doc: dict[str, Any]) -> list[Any]:
    out = [lk.get("href") for lk in doc.get("links") or [] if isinstance(lk, dict)]
    assets = doc.get("assets")
    for asset in assets.values() if isinstance(assets, dict) else []:
        if isinstance(asset, dict):
            out.append(asset.get("href"))
            alternates = asset.get("alternate")
            if isinstance(alternates, dict):
                out += [a.get("href") for a in alternates.values() if isinstance(a, dict)]
    return out


def href_problem(doc: dict[str, Any]) -> str | None:
    """Why a link or asset href would break serving the document (None: none would).

    stac-fastapi resolves every link href with ``urljoin`` on each read; one that ``urlsplit``
    refuses (``http://[x``) made every read of the document, and the write itself, a 500.
    """
    for href in _hrefs(doc):
        if not isinstance(href, str):
            return f"href {href!r} is not a string"
        try:
            urlsplit(href)
        except ValueError as exc:
            return f"href {href!r} is not a URL ({exc})"
    return None


def document_problem(doc: dict[str, Any]) -> str | None:
    """Geometry or href problems of one written document (None: it can be stored and served)."""
    if "geometry" in doc:
        problem = geometry_problem(doc["geometry"])
        if problem:
            return f"invalid geometry: {problem}"
    return href_problem(doc)
