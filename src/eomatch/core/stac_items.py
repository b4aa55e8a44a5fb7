"""Products, events and matchups as STAC 1.1.0 dicts, and back (pure: no I/O).

The catalogue layout is fixed here so that every writer computes the same paths and the same
relative links::

    catalog.json                                  child -> each collection.json
    {collection}/collection.json                  child -> each day catalog (sorted)
    {collection}/YYYY/MM/DD/catalog.json          day catalog: item -> each item file (sorted)
    {collection}/YYYY/MM/DD/{id}.json             item: root, parent (its day catalog), collection

Days are zero-padded, from the item ``datetime`` in UTC. The day catalogs make the static
catalogue crawlable (pystac ``get_items(recursive=True)``, STAC Browser) while an added item only
rewrites the catalog of its own day. Per the STAC spec an object's ``parent`` is the object that
links to it as ``child``/``item``: an item's ``parent`` is its day catalog, its ``collection``
link the collection; a day catalog's ``parent`` is the collection. All links are relative and no
``self`` link is ever written (the catalogue stays relocatable; bug W8 of the previous
generation). Dicts are deterministic (sorted links, plain floats) so re-saving an unchanged item
gives the same bytes.
"""

from __future__ import annotations

import functools
import itertools
import math
import posixpath
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, date, datetime
from typing import Any, Literal

import numpy as np
import orjson
import shapely
from shapely.geometry import mapping, shape
from shapely.geometry.base import BaseGeometry

from eomatch.core.products import (
    EVENTS_PREFIX,
    PAIR_SEPARATOR,
    Matchup,
    MatchupEvent,
    Product,
    SensorKey,
    events_collection_id,
    pair_id,
)
from eomatch.core.validation import geometry_problem
from eomatch.core.vocabulary import (
    COLLECTIONS_PROP,
    COLLOCATION_AREA_PROP,
    EVENT_ID_PROP,
    EXTENSION_URI,
    KIND_PROP,
    PLATFORMS_PROP,
    PREDICTED_PROP,
    ROLE_EVENT,
    ROLE_FIELD,
    ROLE_MATCHUP,
    TIME_DIFF_ABS_PROP,
)
from eomatch.core.vocabulary import EXTENSION_SCHEMA_FILE as EXTENSION_SCHEMA_FILE
from eomatch.errors import InvalidValueError

STAC_VERSION = "1.1.0"
JSON_TYPE = "application/json"
GEOJSON_TYPE = "application/geo+json"
DAY_CATALOG = "catalog.json"
"""File name of the day catalog in each ``YYYY/MM/DD`` folder (so no item may have this id)."""

Kind = Literal["product", "event", "matchup"]

_STANDARD_PROPS = frozenset(
    {"datetime", "start_datetime", "end_datetime", "platform", PREDICTED_PROP, KIND_PROP}
)
_EVENT_PROPS = frozenset({COLLECTIONS_PROP, PLATFORMS_PROP})


# --- layout ---------------------------------------------------------------------------------


def collection_kind(collection_id: str) -> Kind:
    """Level of a collection, from its id (events prefix, ``-vs-`` pair, else products)."""
    if collection_id.startswith(EVENTS_PREFIX):
        return "event"
    if PAIR_SEPARATOR in collection_id:
        return "matchup"
    return "product"


def item_path(collection: str, item_id: str, when: datetime) -> str:
    """Relative path of an item in the catalogue: ``{collection}/YYYY/MM/DD/{id}.json``."""
    d = when if when.tzinfo is UTC else when.astimezone(UTC)
    return f"{collection}/{d.year:04d}/{d.month:02d}/{d.day:02d}/{item_id}.json"


def collection_path(collection: str) -> str:
    """Relative path of a collection file."""
    return f"{collection}/collection.json"


def day_of(item_file: str) -> str:
    """Day folder ``{collection}/YYYY/MM/DD`` of a catalogue-relative item path."""
    return item_file.rsplit("/", 1)[0]


def item_id_of(item_file: str) -> str:
    """Item id of a catalogue-relative item file path (its name without ``.json``)."""
    return item_file.rsplit("/", 1)[-1].removesuffix(".json")


def day_catalog_path(day: str) -> str:
    """Relative path of the catalog of a day folder ``{collection}/YYYY/MM/DD``."""
    return f"{day}/{DAY_CATALOG}"


def relative_href(from_path: str, to_path: str) -> str:
    """Href from the file at ``from_path`` to ``to_path`` (both catalogue-relative, POSIX)."""
    src_dir, _, _ = from_path.rpartition("/")
    dst_dir, _, name = to_path.rpartition("/")
    return _relative_dir(src_dir, dst_dir) + name


@functools.lru_cache(maxsize=4096)
def _relative_dir(src_dir: str, dst_dir: str) -> str:
    """Href prefix from files in ``src_dir`` to files in ``dst_dir`` (cached: few folders)."""
    src = src_dir.split("/") if src_dir else []
    dst = dst_dir.split("/") if dst_dir else []
    common = 0
    for a, b in zip(src, dst, strict=False):
        if a != b:
            break
        common += 1
    rest = "".join(f"{d}/" for d in dst[common:])
    if common == len(src):
        return "./" + rest
    return "../" * (len(src) - common) + rest


def resolve_href(from_path: str, href: str) -> str:
    """Catalogue-relative path that a relative ``href`` in the file at ``from_path`` points to."""
    href_dir, _, name = href.rpartition("/")
    if not href_dir or name in ("", ".", "..") or href[0] == "/":
        return posixpath.normpath(posixpath.join(posixpath.dirname(from_path), href))
    folder = _resolve_dir(from_path.rpartition("/")[0], href_dir)
    return f"{folder}/{name}" if folder != "." else name


@functools.lru_cache(maxsize=4096)
def _resolve_dir(src_dir: str, href_dir: str) -> str:
    return posixpath.normpath(posixpath.join(src_dir, href_dir))


_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+://")


def is_url(href: str) -> bool:
    """Whether an href is a URL (``scheme://``) rather than a path."""
    return _URL.match(href) is not None


# --- values ---------------------------------------------------------------------------------


def format_datetime(when: datetime) -> str:
    """ISO 8601 UTC with ``Z`` (microseconds only when non-zero); naive means UTC."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    d = when if when.tzinfo is UTC else when.astimezone(UTC)
    text = f"{d.year:04d}-{d.month:02d}-{d.day:02d}T{d.hour:02d}:{d.minute:02d}:{d.second:02d}"
    if d.microsecond:
        text += f".{d.microsecond:06d}"
    return text + "Z"


def parse_datetime(text: str) -> datetime:
    """Parse an RFC 3339 timestamp into an aware UTC datetime (ValueError if it is not one).

    An offset that moves the time past year 1 or 9999 is a ValueError too, not the
    OverflowError that ``astimezone`` raises.
    """
    if type(text) is str:
        return _parse_text(text)
    if not isinstance(text, str):
        raise InvalidValueError(f"time {text!r:.80} is not a string")
    return _parse_text.__wrapped__(text)


@functools.lru_cache(maxsize=1 << 14)
def _parse_text(text: str) -> datetime:
    """:func:`parse_datetime` of a string; cached: ``eomatch query`` reads each item's times
    several times (its path, its checks, its index row)."""
    d = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    if d.tzinfo is None:
        d = d.replace(tzinfo=UTC)
    try:
        return d.astimezone(UTC)
    except OverflowError:
        raise InvalidValueError(f"time {text!r:.80} is out of range in UTC") from None


OPEN_START = datetime.min.replace(tzinfo=UTC)
OPEN_END = datetime.max.replace(tzinfo=UTC)
"""Stand-ins for the open (``null``) ends of a collection's temporal interval."""


def format_bound(when: datetime) -> str | None:
    """An interval bound as STAC writes it: ``null`` for an open end, else an RFC 3339 time."""
    return None if when in (OPEN_START, OPEN_END) else format_datetime(when)


def to_json_value(value: Any) -> Any:
    """Plain JSON types (numpy scalars, tuples, datetimes, non-finite floats made safe)."""
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, datetime):
        return format_datetime(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): to_json_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = [to_json_value(v) for v in value]
        return sorted(items, key=repr) if isinstance(value, set | frozenset) else items
    item = getattr(value, "item", None)  # numpy scalar
    if callable(item):
        return to_json_value(item())
    return str(value)


def _coords(value: Any) -> Any:
    if isinstance(value, list | tuple):
        if value and isinstance(value[0], int | float):
            return [float(v) for v in value]
        return [_coords(v) for v in value]
    return value


def geometry_dict(geom: BaseGeometry) -> dict[str, Any]:
    """GeoJSON geometry with lists and plain floats (GEOS writer: full precision, fast)."""
    if geom.geom_type in ("Polygon", "MultiPolygon", "Point", "LineString") and not geom.is_empty:
        out: dict[str, Any] = orjson.loads(shapely.to_geojson(geom))
        return out
    raw = mapping(geom)
    out = {"type": raw["type"]}
    if raw["type"] == "GeometryCollection":
        out["geometries"] = [geometry_dict(g) for g in getattr(geom, "geoms", ())]
    else:
        out["coordinates"] = _coords(raw["coordinates"])
    return out


def geometry_bbox(geom: BaseGeometry) -> list[float]:
    """``[west, south, east, north]``; ``west > east`` when the parts were split at ±180°."""
    minx, miny, maxx, maxy = (float(v) for v in geom.bounds)
    parts = list(getattr(geom, "geoms", [geom]))
    if len(parts) > 1 and minx <= -180.0 + 1e-9 and maxx >= 180.0 - 1e-9:
        # Largest empty longitude gap between parts decides: if it is inside (-180, 180) the
        # footprint wraps the antimeridian and the bbox is the complement of that gap.
        spans = sorted((float(p.bounds[0]), float(p.bounds[2])) for p in parts)
        merged: list[list[float]] = []
        for lo, hi in spans:
            if merged and lo <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], hi)
            else:
                merged.append([lo, hi])
        best_gap, west, east = 0.0, minx, maxx
        for (_, hi), (lo, _) in itertools.pairwise(merged):
            if lo - hi > best_gap:
                best_gap, west, east = lo - hi, lo, hi
        if best_gap > 0.0:
            return [west, miny, east, maxy]
    return [minx, miny, maxx, maxy]


def bbox_union(a: Sequence[float] | None, b: Sequence[float]) -> list[float]:
    """Union of two bboxes; a bbox crossing the antimeridian widens the result to all longitudes."""
    if a is None:
        return [float(v) for v in b]
    south, north = min(a[1], b[1]), max(a[3], b[3])
    if a[0] > a[2] or b[0] > b[2]:
        if a[0] > a[2] and b[0] > b[2]:
            west, east = min(a[0], b[0]), max(a[2], b[2])
            if west > east:
                return [west, south, east, north]
        return [-180.0, south, 180.0, north]
    return [min(a[0], b[0]), south, max(a[2], b[2]), north]


def bbox_intersects(a: Sequence[float], b: Sequence[float]) -> bool:
    """Whether two bboxes (either may cross the antimeridian) intersect."""
    if a[1] > b[3] or b[1] > a[3]:
        return False

    def spans(box: Sequence[float]) -> list[tuple[float, float]]:
        if box[0] > box[2]:
            return [(box[0], 180.0), (-180.0, box[2])]
        return [(box[0], box[2])]

    return any(lo1 <= hi2 and lo2 <= hi1 for lo1, hi1 in spans(a) for lo2, hi2 in spans(b))


# --- items ----------------------------------------------------------------------------------


def _link(rel: str, href: str, **extra: Any) -> dict[str, Any]:
    return {"rel": rel, "href": href, "type": JSON_TYPE, **extra}


def structural_links(path: str, collection: str) -> list[dict[str, Any]]:
    """Fresh ``root``/``parent``/``collection`` links of an item file at ``path``."""
    day = day_of(path)
    if day.count("/") == 3 and day.startswith(collection + "/"):
        links = _day_links("c/2000/01/01", "c")  # every {collection}/YYYY/MM/DD: the same hrefs
    else:  # (a pull makes ~1 day folder a matchup: a cache by day was missed ~always)
        links = _day_links(day, collection)
    return [dict(link) for link in links]


@functools.lru_cache(maxsize=4096)
def _day_links(day: str, collection: str) -> tuple[dict[str, Any], ...]:
    """``root``/``parent``/``collection`` links of the items of one day folder (copied on use)."""
    path = f"{day}/x.json"
    return (
        _link("root", relative_href(path, "catalog.json")),
        _link("parent", relative_href(path, day_catalog_path(day))),
        _link("collection", relative_href(path, collection_path(collection))),
    )


def with_structural_links(item: Mapping[str, Any], path: str) -> dict[str, Any]:
    """``item`` with its ``root``/``parent``/``collection`` links as this layout writes them.

    For catalogues written before day catalogs existed (their items' ``parent`` was the
    collection); other links are kept in their order.
    """
    keep = [
        link
        for link in item.get("links") or []
        if link.get("rel") not in ("root", "parent", "collection")
    ]
    return {**item, "links": structural_links(path, str(item["collection"])) + keep}


def _item(
    *,
    item_id: str,
    collection: str,
    geom: BaseGeometry,
    start: datetime,
    end: datetime,
    properties: dict[str, Any],
    links: list[dict[str, Any]],
    assets: Mapping[str, Mapping[str, Any]],
) -> dict[str, Any]:
    path = item_path(collection, item_id, start)
    start_text = format_datetime(start)
    props: dict[str, Any] = {
        "datetime": start_text,
        "start_datetime": start_text,
        "end_datetime": format_datetime(end),
    }
    props.update(properties)
    return {
        "type": "Feature",
        "stac_version": STAC_VERSION,
        "stac_extensions": [EXTENSION_URI],
        "id": item_id,
        "geometry": geometry_dict(geom),
        "bbox": geometry_bbox(geom),
        "properties": props,
        "links": structural_links(path, collection)
        + sorted(links, key=lambda link: (link["rel"], link["href"])),
        "assets": {k: to_json_value(dict(v)) for k, v in sorted(assets.items())},
        "collection": collection,
    }


def _sensor_props(sensors: Iterable[SensorKey]) -> dict[str, Any]:
    ordered = sorted(sensors)
    return {
        COLLECTIONS_PROP: [s.collection for s in ordered],
        PLATFORMS_PROP: [s.platform for s in ordered],
    }


def product_to_item(product: Product) -> dict[str, Any]:
    """STAC item of one product (provider properties kept, ours on top)."""
    props = {k: to_json_value(v) for k, v in product.properties.items() if k not in _STANDARD_PROPS}
    props["platform"] = product.sensor.platform
    props[KIND_PROP] = "product"
    if product.predicted:
        props[PREDICTED_PROP] = True
    return _item(
        item_id=product.id,
        collection=product.sensor.collection,
        geom=product.geometry,
        start=product.start,
        end=product.end,
        properties=dict(sorted(props.items())),
        links=[],
        assets=product.assets,
    )


def matchup_collection(matchup: Matchup) -> str:
    """Collection id of a matchup: the pair id of its products' sensors."""
    return pair_id([p.sensor for p in matchup.products])


def matchup_to_item(
    matchup: Matchup, event: MatchupEvent, assets: Mapping[str, Mapping[str, Any]] | None = None
) -> dict[str, Any]:
    """STAC item of one matchup: ``derived_from`` its products, ``related`` its event."""
    collection = matchup_collection(matchup)
    path = item_path(collection, matchup.id, matchup.start)
    ordered = sorted(matchup.products, key=lambda p: (p.sensor, p.id))
    props = _sensor_props(p.sensor for p in ordered)
    props[COLLECTIONS_PROP] = [p.sensor.collection for p in ordered]
    props[PLATFORMS_PROP] = [p.sensor.platform for p in ordered]
    props[EVENT_ID_PROP] = matchup.event_id
    props[TIME_DIFF_ABS_PROP] = float(matchup.time_diff_abs_s)
    props[COLLOCATION_AREA_PROP] = float(matchup.area_km2)
    props[KIND_PROP] = "matchup"
    links = [
        _link("derived_from", relative_href(path, product_path(p)), title=p.id) for p in ordered
    ]
    links.append(
        _link(
            "related",
            relative_href(path, event_path(event)),
            title=f"crossover event {event.id}",
            **{ROLE_FIELD: ROLE_EVENT},
        )
    )
    return _item(
        item_id=matchup.id,
        collection=collection,
        geom=matchup.geometry,
        start=matchup.start,
        end=matchup.end,
        properties=props,
        links=links,
        assets=assets or {},
    )


def event_to_item(
    event: MatchupEvent,
    matchup_paths: Iterable[str] = (),
    assets: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """STAC item of one event, ``related`` to each matchup path (its own plus ``matchup_paths``)."""
    collection = events_collection_id(event.sensors)
    path = event_path(event)
    targets = {matchup_path(m) for m in event.matchups} | set(matchup_paths)
    props = {
        k: to_json_value(v)
        for k, v in event.properties.items()
        if k not in _STANDARD_PROPS and k not in _EVENT_PROPS
    }
    props.update(_sensor_props(event.sensors))
    props[KIND_PROP] = "event"
    links = [
        _link(
            "related",
            relative_href(path, t),
            title=f"matchup {t.rsplit('/', 1)[-1].removesuffix('.json')}",
            **{ROLE_FIELD: ROLE_MATCHUP},
        )
        for t in sorted(targets)
    ]
    return _item(
        item_id=event.id,
        collection=collection,
        geom=event.geometry,
        start=event.start,
        end=event.end,
        properties=dict(sorted(props.items())),
        links=links,
        assets=assets or {},
    )


def product_path(product: Product) -> str:
    """Catalogue-relative path of a product item."""
    return item_path(product.sensor.collection, product.id, product.start)


def matchup_path(matchup: Matchup) -> str:
    """Catalogue-relative path of a matchup item."""
    return item_path(matchup_collection(matchup), matchup.id, matchup.start)


def event_path(event: MatchupEvent) -> str:
    """Catalogue-relative path of an event item."""
    return item_path(events_collection_id(event.sensors), event.id, event.start)


def related_paths(item: Mapping[str, Any], role: str, item_file: str) -> list[str]:
    """Catalogue-relative paths of the ``related`` links of ``item`` with ``matchup:role``."""
    return [
        resolve_href(item_file, link["href"])
        for link in item.get("links") or []
        if link.get("rel") == "related" and link.get(ROLE_FIELD) == role
    ]


# --- catalog and collections ----------------------------------------------------------------


def catalog_dict(
    catalog_id: str,
    description: str,
    collections: Iterable[str],
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Root catalog with one sorted ``child`` link per collection."""
    links = [_link("root", "./catalog.json")]
    links += [_link("child", f"./{collection_path(c)}", title=c) for c in sorted(set(collections))]
    out: dict[str, Any] = {
        "type": "Catalog",
        "stac_version": STAC_VERSION,
        "id": catalog_id,
        "description": description,
        "links": links,
    }
    if extra:
        out.update(extra)
    return out


def day_catalog_dict(day: str, item_ids: Iterable[str]) -> dict[str, Any]:
    """Catalog of one day folder ``{collection}/YYYY/MM/DD``: one ``item`` link per item.

    Its id is ``{collection}-YYYY-MM-DD``; links: ``root``, ``parent`` (the collection) and the
    items sorted by id (``./{id}.json``, ``application/geo+json``).
    """
    collection, year, month, dom = day.split("/")
    date_text = f"{year}-{month}-{dom}"
    path = day_catalog_path(day)
    links = [
        _link("root", relative_href(path, "catalog.json")),
        _link("parent", relative_href(path, collection_path(collection)), title=collection),
    ]
    links += [
        {"rel": "item", "href": f"./{i}.json", "type": GEOJSON_TYPE} for i in sorted(set(item_ids))
    ]
    return {
        "type": "Catalog",
        "stac_version": STAC_VERSION,
        "id": f"{collection}-{date_text}",
        "title": f"{collection} {date_text}",
        "description": f"Items of the collection {collection} dated {date_text} (UTC).",
        "links": links,
    }


def day_catalog_items(data: Mapping[str, Any]) -> set[str]:
    """Item ids a day catalog links to (its ``./{id}.json`` item links)."""
    return {
        str(link["href"])[2:].removesuffix(".json")
        for link in data.get("links", [])
        if link.get("rel") == "item" and str(link["href"])[:2] == "./"
    }


def collection_days(data: Mapping[str, Any]) -> set[str]:
    """Days (``YYYY/MM/DD``) a collection dict links to as ``child`` day catalogs."""
    return {
        posixpath.dirname(str(link["href"]).removeprefix("./"))
        for link in data.get("links", [])
        if link.get("rel") == "child"
    }


def set_collection_days(data: dict[str, Any], days: Iterable[str]) -> None:
    """Replace the ``child`` links of a collection dict by its day catalogs, sorted."""
    links = [link for link in data.get("links", []) if link.get("rel") != "child"]
    links += [
        _link("child", f"./{d}/{DAY_CATALOG}", title=d.replace("/", "-")) for d in sorted(set(days))
    ]
    data["links"] = links


def _collection_description(collection_id: str) -> str:
    kind = collection_kind(collection_id)
    if kind == "event":
        return (
            f"Matchup events: {collection_id.removeprefix(EVENTS_PREFIX).replace('-vs-', ' vs ')}"
        )
    if kind == "matchup":
        return f"Matchups: {collection_id.replace('-vs-', ' vs ')}"
    return f"Products: {collection_id}"


def collection_dict(
    collection_id: str,
    bbox: Sequence[float],
    interval: tuple[datetime, datetime],
    assets: Mapping[str, Mapping[str, Any]] | None = None,
    description: str | None = None,
    days: Iterable[str] = (),
) -> dict[str, Any]:
    """A collection with real extents (the union of its items' bboxes and time ranges).

    ``days`` (``YYYY/MM/DD``) become sorted ``child`` links to the day catalogs.
    """
    path = collection_path(collection_id)
    out: dict[str, Any] = {
        "type": "Collection",
        "stac_version": STAC_VERSION,
        "stac_extensions": [EXTENSION_URI],
        "id": collection_id,
        "title": collection_id,
        "description": description or _collection_description(collection_id),
        "license": "other",
        "extent": {
            "spatial": {"bbox": [[float(v) for v in bbox]]},
            "temporal": {
                "interval": [[format_datetime(interval[0]), format_datetime(interval[1])]]
            },
        },
        "links": [
            _link("root", relative_href(path, "catalog.json")),
            _link("parent", relative_href(path, "catalog.json")),
        ],
        KIND_PROP: collection_kind(collection_id),
    }
    if assets:
        out["assets"] = {k: to_json_value(dict(v)) for k, v in sorted(assets.items())}
    set_collection_days(out, days)
    return out


def bbox_2d(bbox: Sequence[float]) -> list[float]:
    """``[west, south, east, north]`` of a 2D or 3D (six numbers) STAC bbox."""
    if len(bbox) == 6:
        return [float(bbox[0]), float(bbox[1]), float(bbox[3]), float(bbox[4])]
    return [float(v) for v in bbox]


def collection_extent(data: Mapping[str, Any]) -> tuple[list[float], tuple[datetime, datetime]]:
    """Overall bbox and time interval of a collection dict (checked by
    :func:`collection_problem`); open ends become :data:`OPEN_START`/:data:`OPEN_END`."""
    extent = data["extent"]
    lo, hi = extent["temporal"]["interval"][0]
    return bbox_2d(extent["spatial"]["bbox"][0]), (
        OPEN_START if lo is None else parse_datetime(lo),
        OPEN_END if hi is None else parse_datetime(hi),
    )


# --- checks on documents read from disk or from elsewhere -----------------------------------
# Valid STAC comes in shapes our writers never produce (3D bboxes, open intervals, assets
# without our keys); hand-edited or foreign files in shapes no STAC allows. The readers call
# these first, so a bad document is one clear error (or skipped), never a crash further on.


def _finite_numbers(value: Any, sizes: tuple[int, ...]) -> bool:
    return (
        type(value) is list
        and len(value) in sizes
        and all(type(v) in (int, float) and math.isfinite(v) for v in value)
    )


def _time_problem(value: Any, what: str) -> str | None:
    try:
        parse_datetime(value)
    except ValueError:
        return f"{what} {value!r:.80} is not an RFC 3339 time"
    return None


def links_problem(links: Any) -> str | None:
    """Why a ``links`` value is not a list of link objects with string ``rel`` and ``href``."""
    if links is None:
        return None
    if type(links) is not list:
        return "links is not a list"
    for link in links:
        if not isinstance(link, dict):
            return f"link {link!r:.80} is not an object"
        if not isinstance(link.get("href"), str) or not isinstance(link.get("rel"), str):
            return f"link {link!r:.80} has no string rel and href"
    return None


def assets_problem(assets: Any, what: str = "asset") -> str | None:
    """Why an ``assets`` value is not an object of asset objects with string hrefs."""
    if assets is None:
        return None
    if not isinstance(assets, dict):
        return "assets is not an object"
    for key, asset in assets.items():
        if not isinstance(asset, dict):
            return f"{what} {key!r:.80} is not an object"
        if not isinstance(asset.get("href"), str):
            return f"{what} {key!r:.80} has no string href"
        if "alternate" in asset:
            problem = assets_problem(asset["alternate"], "alternate")
            if problem:
                return f"{what} {key!r:.80}: {problem}"
    return None


_STRING_PROPS = ("platform", EVENT_ID_PROP)
_STRING_LIST_PROPS = (COLLECTIONS_PROP, PLATFORMS_PROP)
_NUMBER_PROPS = (COLLOCATION_AREA_PROP, TIME_DIFF_ABS_PROP)


def item_problem(item: Any) -> str | None:
    """Why ``item`` cannot be read as a catalogue item (None: every reader here can use it).

    The STAC rules the readers rely on (a Feature with string id and collection, properties,
    a time, a servable geometry with finite bounds, links and assets in their STAC shapes)
    plus the types of the properties this package interprets.
    """
    return _doc_problem(item) or _shape_problem(item)


def _doc_problem(item: Any) -> str | None:
    """:func:`item_problem` but its last step (shapely building the geometry)."""
    if not isinstance(item, dict) or item.get("type") != "Feature":
        return "not a STAC item (type is not 'Feature')"
    for key in ("id", "collection"):
        if not isinstance(item.get(key), str) or not item[key]:
            return f"'{key}' is missing or not a string"
    props = item.get("properties")
    if not isinstance(props, dict):
        return "'properties' is missing or not an object"
    if not (props.get("start_datetime") or props.get("datetime")):
        return "neither datetime nor start_datetime is set"
    try:
        item_times(item)
        if props.get("datetime") is not None:  # a range's datetime must be a time too
            parse_datetime(props["datetime"])
    except ValueError as exc:
        return f"invalid time: {exc}"
    for key in _STRING_PROPS:
        if key in props and not isinstance(props[key], str):
            return f"property {key} is not a string"
    for key in _STRING_LIST_PROPS:
        value = props.get(key)
        if key in props and not (type(value) is list and all(type(v) is str for v in value)):
            return f"property {key} is not a list of strings"
    for key in _NUMBER_PROPS:
        value = props.get(key)
        if key in props and not (isinstance(value, int | float) and math.isfinite(value)):
            return f"property {key} is not a number"
    if "geometry" not in item or item["geometry"] is None:
        return "no geometry"
    problem = geometry_problem(item["geometry"])
    if problem:
        return f"invalid geometry: {problem}"
    if item.get("bbox") is not None and not _finite_numbers(item["bbox"], (4, 6)):
        return "bbox is not 4 or 6 finite numbers"
    if "stac_extensions" in item and not (
        type(item["stac_extensions"]) is list
        and all(type(e) is str for e in item["stac_extensions"])
    ):
        return "stac_extensions is not a list of strings"
    return links_problem(item.get("links")) or assets_problem(item.get("assets"))


def _shape_problem(item: Mapping[str, Any]) -> str | None:
    """The last check of :func:`item_problem`: shapely builds the geometry, with bounds."""
    try:
        bounds = item_geometry(item).bounds
    except Exception as exc:  # shapely/GEOS refuse some shapes with their own error types
        return f"invalid geometry: {exc}"
    if not all(math.isfinite(v) for v in bounds):
        return "empty geometry"
    return None


def item_problems(items: Sequence[Any]) -> list[str | None]:
    """:func:`item_problem` of each of ``items``: the same answers, cheaper for many items.

    One shapely object built per item was most of the check's cost (``eomatch query``
    checks every item it pulls). Here the 2D polygons and multipolygons of the batch are
    built and checked for validity at once (shapely's vectorised functions); an item this
    fast path does not vouch for (another geometry type, 3D, an open or short ring, an
    invalid shape) gets the last step of :func:`item_problem` itself, so every answer and
    message is the one :func:`item_problem` gives.
    """
    out = [_doc_problem(item) for item in items]
    single: dict[int, list[Any]] = {}
    multi: dict[int, list[Any]] = {}
    slow: list[int] = []
    for i, problem in enumerate(out):
        if problem is not None:
            continue
        geometry = items[i]["geometry"]
        kind, coords = geometry.get("type"), geometry.get("coordinates")
        if kind == "Polygon" and _simple_polygon(coords):
            single[i] = coords
        elif kind == "MultiPolygon" and coords and all(_simple_polygon(p) for p in coords):
            multi[i] = coords
        else:
            slow.append(i)
    for group, kind in ((single, "Polygon"), (multi, "MultiPolygon")):
        for i, good in zip(group, _valid_shapes(list(group.values()), kind), strict=True):
            if not good:
                slow.append(i)
    for i in slow:
        out[i] = _shape_problem(items[i])
    return out


def _simple_polygon(rings: list[Any]) -> bool:
    """Rings of 2D positions (checked by geometry_problem), each closed, of 4 or more."""
    return bool(rings) and all(
        len(ring) >= 4 and ring[0] == ring[-1] and set(map(len, ring)) == {2} for ring in rings
    )


def _valid_shapes(shapes: list[Any], kind: str) -> list[bool]:
    """Whether each polygon (or multipolygon) coordinate list is a valid shape for GEOS."""
    if not shapes:
        return []
    polygons = shapes if kind == "Polygon" else [p for parts in shapes for p in parts]
    rings = [ring for polygon in polygons for ring in polygon]
    offsets = [
        np.cumsum([0, *map(len, rings)]),
        np.cumsum([0, *map(len, polygons)]),
    ]
    geometry_type = shapely.GeometryType.POLYGON
    if kind == "MultiPolygon":
        offsets.append(np.cumsum([0, *map(len, shapes)]))
        geometry_type = shapely.GeometryType.MULTIPOLYGON
    try:
        coords = np.array([p for ring in rings for p in ring], dtype=np.float64)
        built = shapely.from_ragged_array(geometry_type, coords, tuple(offsets))
        valid = shapely.is_valid(built)
    except Exception:  # vouch for none of them: each gets the per-item check
        return [False] * len(shapes)
    return [bool(v) for v in valid]


def collection_problem(data: Any) -> str | None:
    """Why ``data`` cannot be read as a collection (None: it can): the STAC shape of its
    extent (2D/3D bboxes, intervals with open ends), links and assets."""
    if not isinstance(data, dict) or data.get("type") != "Collection":
        return "not a STAC collection (type is not 'Collection')"
    if not isinstance(data.get("id"), str):
        return "'id' is missing or not a string"
    extent = data.get("extent")
    spatial = extent.get("spatial") if isinstance(extent, dict) else None
    temporal = extent.get("temporal") if isinstance(extent, dict) else None
    bboxes = spatial.get("bbox") if isinstance(spatial, dict) else None
    intervals = temporal.get("interval") if isinstance(temporal, dict) else None
    if not (type(bboxes) is list and bboxes and all(_finite_numbers(b, (4, 6)) for b in bboxes)):
        return "extent.spatial.bbox is not a list of bboxes of 4 or 6 finite numbers"
    if not (type(intervals) is list and intervals):
        return "extent.temporal.interval is not a list of intervals"
    for interval in intervals:
        if type(interval) is not list or len(interval) != 2:
            return f"interval {interval!r:.80} is not a pair of times"
        for bound in interval:
            if bound is not None:
                problem = _time_problem(bound, "interval bound")
                if problem:
                    return problem
    return links_problem(data.get("links")) or assets_problem(data.get("assets"))


# --- back to objects ------------------------------------------------------------------------


def item_times(item: Mapping[str, Any]) -> tuple[datetime, datetime]:
    """``(start, end)`` of an item (start/end_datetime, else datetime)."""
    props = item["properties"]
    start = props.get("start_datetime") or props["datetime"]
    end = props.get("end_datetime") or start
    return parse_datetime(start), parse_datetime(end)


def item_geometry(item: Mapping[str, Any]) -> BaseGeometry:
    """Shapely geometry of an item."""
    geom = shape(item["geometry"])
    return shapely.make_valid(geom) if not geom.is_valid else geom


def item_to_product(item: Mapping[str, Any]) -> Product:
    """A :class:`Product` from its item dict."""
    props = item["properties"]
    start, end = item_times(item)
    return Product(
        id=item["id"],
        sensor=SensorKey(item["collection"], props.get("platform", "")),
        start=start,
        end=end,
        geometry=item_geometry(item),
        predicted=bool(props.get(PREDICTED_PROP, False)),
        assets={k: dict(v) for k, v in (item.get("assets") or {}).items()},
        properties={k: v for k, v in props.items() if k not in _STANDARD_PROPS},
    )


def item_to_matchup(item: Mapping[str, Any], products: Sequence[Product]) -> Matchup:
    """A :class:`Matchup` from its item dict and its (already loaded) products."""
    props = item["properties"]
    return Matchup(
        id=item["id"],
        products=tuple(sorted(products, key=lambda p: (p.sensor, p.id))),
        geometry=item_geometry(item),
        area_km2=float(props.get(COLLOCATION_AREA_PROP, 0.0)),
        time_diff_abs_s=float(props.get(TIME_DIFF_ABS_PROP, 0.0)),
        event_id=str(props.get(EVENT_ID_PROP, "")),
        properties={k: v for k, v in props.items() if k not in _STANDARD_PROPS},
        assets={k: dict(v) for k, v in (item.get("assets") or {}).items()},
    )


def item_sensors(item: Mapping[str, Any]) -> tuple[SensorKey, ...]:
    """Sensors of an event or matchup item (from matchup:collections/platforms)."""
    props = item["properties"]
    return tuple(
        sorted(
            SensorKey(c, p)
            for c, p in zip(
                props.get(COLLECTIONS_PROP, []),
                props.get(PLATFORMS_PROP, []),
                strict=False,
            )
        )
    )


def item_to_event(item: Mapping[str, Any], matchups: Sequence[Matchup] = ()) -> MatchupEvent:
    """A :class:`MatchupEvent` from its item dict and its (already loaded) matchups."""
    start, end = item_times(item)
    props = item["properties"]
    return MatchupEvent(
        id=item["id"],
        sensors=item_sensors(item),
        start=start,
        end=end,
        geometry=item_geometry(item),
        properties={
            k: v for k, v in props.items() if k not in _STANDARD_PROPS and k not in _EVENT_PROPS
        },
        matchups=tuple(sorted(matchups, key=lambda m: m.id)),
        assets={k: dict(v) for k, v in (item.get("assets") or {}).items()},
    )
