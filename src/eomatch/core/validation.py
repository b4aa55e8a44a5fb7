"""Checks on incoming STAC documents that pgSTAC itself would let through (pure).

PostGIS stores a GeometryCollection nested in another one, but ``ST_AsGeoJSON`` then refuses
it, so one accepted write would turn every read including the item into an error; the same
goes for a link href that ``urlsplit`` refuses. Such documents are refused at the door (API
writes, ingest) with a message naming the problem.

:func:`stac_document_problem` is the one check every write path runs on the document it is
about to store (after applying a patch, for PATCH): what the readers (stac-fastapi-pgstac,
pgSTAC, orjson, the external view) need to serve it back, not a full STAC validation.
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


def _rings_problem(kind: str, coords: list[Any]) -> str | None:
    """PostGIS refuses (with an internal error) lines of one point and open or short rings."""
    lines: list[Any] = []
    if kind == "LineString":
        lines = [coords]
    elif kind == "MultiLineString":
        lines = coords
    for line in lines:
        if len(line) < 2:
            return f"a {kind} needs at least 2 positions"
    rings: list[Any] = []
    if kind == "Polygon":
        rings = coords
    elif kind == "MultiPolygon":
        rings = [ring for polygon in coords for ring in polygon]
    for ring in rings:
        if len(ring) < 4 or ring[0][:2] != ring[-1][:2]:
            return f"{kind} rings must be closed and have at least 4 positions"
    return None


def vertex_count(geometry: Any, stop_after: int | None = None) -> int:
    """Positions in a GeoJSON geometry (0 for anything that is not one); iterative.

    With ``stop_after``, counting stops as soon as the count exceeds it.
    """
    count = 0
    limit = stop_after if stop_after is not None else math.inf
    stack = [geometry.get("coordinates")] if isinstance(geometry, dict) else []
    if isinstance(geometry, dict) and isinstance(geometry.get("geometries"), list):
        stack += [g.get("coordinates") for g in geometry["geometries"] if isinstance(g, dict)]
    while stack:
        node = stack.pop()
        if type(node) is list:
            if node and type(node[0]) in _NUMBERS:
                count += 1
                if count > limit:
                    break
            else:
                stack.extend(node)
    return count


def geometry_problem(geometry: Any, nested: bool = False, strict: bool = False) -> str | None:
    """Why a GeoJSON geometry cannot be stored and served back (None: it can; null is fine).

    ``strict`` adds the rules PostGIS enforces on input (closed rings, lines of two points or
    more), which the API checks on what it is about to store or search with.
    """
    if geometry is None and not nested:
        return None
    if not isinstance(geometry, dict):
        return "geometry is not a GeoJSON object"
    kind = geometry.get("type")
    if not isinstance(kind, str) or kind not in GEOMETRY_TYPES:  # a list is unhashable
        return f"unknown geometry type {kind!r}"
    if kind == "GeometryCollection":
        if nested:
            return "a GeometryCollection inside a GeometryCollection cannot be served as GeoJSON"
        parts = geometry.get("geometries")
        if not isinstance(parts, list):
            return "GeometryCollection without a geometries list"
        for part in parts:
            problem = geometry_problem(part, nested=True, strict=strict)
            if problem:
                return problem
        return None
    if not _positions_ok(geometry.get("coordinates"), _DEPTH[str(kind)]):
        return f"{kind} coordinates are not positions of finite numbers"
    return _rings_problem(str(kind), geometry["coordinates"]) if strict else None


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


def _hrefs(doc: dict[str, Any]) -> list[Any]:
    # any shape may arrive here (a merge patch is checked before it is applied): links that
    # are not a list have no hrefs to check; the document's own validation refuses them
    links = doc.get("links")
    out = [lk.get("href") for lk in links if isinstance(lk, dict)] if type(links) is list else []
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


MAX_JSON_DEPTH = 48
"""Deepest nesting of objects/arrays in a stored document (a MultiPolygon item is ~8)."""
MAX_ID_LENGTH = 1024


def json_depth_exceeds(doc: Any, limit: int) -> bool:
    """True if objects/arrays nest deeper than ``limit`` (iterative: no recursion limit)."""
    stack: list[tuple[Any, int]] = [(doc, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        if type(node) is dict:
            stack.extend((v, depth + 1) for v in node.values() if type(v) in (dict, list))
        elif type(node) is list:
            stack.extend((v, depth + 1) for v in node if type(v) in (dict, list))
    return False


def _link_problem(links: Any, where: str) -> str | None:
    if not isinstance(links, list):
        return f"{where}links must be a list of link objects"
    for link in links:
        if not isinstance(link, dict):
            return f"{where}links must be a list of link objects, not {type(link).__name__}"
        if not isinstance(link.get("rel"), str) or not link["rel"]:
            return f"{where}a link needs a non-empty string rel"
        if not isinstance(link.get("href"), str):
            return f"{where}a link needs a string href"
    return None


def _asset_problem(assets: Any) -> str | None:
    if not isinstance(assets, dict):
        return "assets must be an object of asset objects"
    for key, asset in assets.items():
        if not isinstance(asset, dict):
            return f"asset {key!r} is not an object"
        if not isinstance(asset.get("href"), str):
            return f"asset {key!r} needs a string href"
        alternates = asset.get("alternate")
        if alternates is not None:
            problem = _asset_problem(alternates)
            if problem:
                return f"alternate of asset {key!r}: {problem}"
    return None


def _numbers(values: Any, sizes: tuple[int, ...]) -> bool:
    return (
        type(values) is list
        and len(values) in sizes
        and set(map(type, values)) <= _NUMBERS
        and all(map(math.isfinite, values))
    )


def _item_problem(doc: dict[str, Any]) -> str | None:
    props = doc.get("properties")
    if not isinstance(props, dict):
        return "an item needs a properties object"
    when = props.get("datetime")
    if when is None:
        if not (
            isinstance(props.get("start_datetime"), str)
            and isinstance(props.get("end_datetime"), str)
        ):
            return "an item needs properties.datetime or start_datetime and end_datetime"
    elif not isinstance(when, str):
        return "properties.datetime must be a string or null"
    if "geometry" not in doc:
        return "an item needs a geometry member"
    problem = geometry_problem(doc["geometry"], strict=True)
    if problem:
        return f"invalid geometry: {problem}"
    if "bbox" in doc and doc["bbox"] is not None and not _numbers(doc["bbox"], (4, 6)):
        return "bbox must be 4 or 6 finite numbers"
    if "collection" in doc and not isinstance(doc["collection"], str):
        return "collection must be a string"
    return None


def _collection_problem(doc: dict[str, Any]) -> str | None:
    if not isinstance(doc.get("description", ""), str):
        return "description must be a string"
    extent = doc.get("extent")
    if not isinstance(extent, dict):
        return "a collection needs an extent object"
    spatial, temporal = extent.get("spatial"), extent.get("temporal")
    if not isinstance(spatial, dict) or not isinstance(spatial.get("bbox"), list):
        return "extent.spatial.bbox must be a list of bounding boxes"
    if not all(_numbers(b, (4, 6)) for b in spatial["bbox"]) or not spatial["bbox"]:
        return "extent.spatial.bbox must hold bounding boxes of 4 or 6 finite numbers"
    if not isinstance(temporal, dict) or not isinstance(temporal.get("interval"), list):
        return "extent.temporal.interval must be a list of intervals"
    for interval in temporal["interval"]:
        if (
            type(interval) is not list
            or len(interval) != 2
            or not all(t is None or isinstance(t, str) for t in interval)
        ):
            return "extent.temporal.interval must hold [start, end] pairs of strings or null"
    return None


def stac_document_problem(doc: Any, kind: str | None = None) -> str | None:
    """Why a STAC item or collection cannot be stored and served back (None: it can).

    The one check of every write path (API POST/PUT/PATCH/bulk, ingest, ``--push``), run on
    the document as it would be stored: readers iterate links expecting ``rel``/``href``,
    pgSTAC needs the datetime and extent members, orjson cannot read nesting beyond 1024, and
    a document whose ``type`` is missing vanishes from the API while still stored. ``kind``
    (``"Feature"`` or ``"Collection"``) is what the route expects; None takes the document's.
    """
    if not isinstance(doc, dict):
        return "a STAC document must be a JSON object"
    expected = kind or doc.get("type")
    if expected not in ("Feature", "Collection"):
        return f"type must be Feature or Collection, not {doc.get('type')!r}"
    if doc.get("type") != expected:
        return f"type must be {expected}, not {doc.get('type')!r}"
    ident = doc.get("id")
    if not isinstance(ident, str) or not ident or len(ident) > MAX_ID_LENGTH:
        return f"id must be a non-empty string of at most {MAX_ID_LENGTH} characters"
    if json_depth_exceeds(doc, MAX_JSON_DEPTH):
        return f"the document nests deeper than {MAX_JSON_DEPTH} levels"
    exts = doc.get("stac_extensions", [])
    if not isinstance(exts, list) or not all(isinstance(e, str) for e in exts):
        return "stac_extensions must be a list of strings"
    problem = _link_problem(doc.get("links", []), "")
    if problem is None and "assets" in doc and doc["assets"] is not None:
        problem = _asset_problem(doc["assets"])
    if problem is None:
        problem = _item_problem(doc) if expected == "Feature" else _collection_problem(doc)
    return problem or document_problem(doc)


def document_problem(doc: dict[str, Any]) -> str | None:
    """Geometry or href problems of one written document (None: it can be stored and served)."""
    if "geometry" in doc:
        problem = geometry_problem(doc["geometry"])
        if problem:
            return f"invalid geometry: {problem}"
    return href_problem(doc)
