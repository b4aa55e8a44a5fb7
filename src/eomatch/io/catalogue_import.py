"""Items from elsewhere (a STAC API) made fit for the catalogue, and merged with local ones.

Used by :meth:`eomatch.io.catalogue.MatchupCatalogue.import_items` (``query``): an incoming item
is validated and copied in the catalogue's key order (:func:`foreign_item`); when the item is
already present, the local assets and links worth keeping are merged in (:func:`merge_foreign`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from eomatch.core import stac_items as si
from eomatch.core.vocabulary import ROLE_FIELD, ROLE_MATCHUP
from eomatch.errors import EomatchError
from eomatch.io.safe_paths import check_component

ITEM_RELS = ("related", "derived_from")
_STRUCTURAL_RELS = frozenset({"self", "root", "parent", "collection", "child", "item", "items"})
_BAD_NAME = re.compile(r"[/\\\x00-\x1f]")


def check_name(what: str, value: Any) -> str:
    """``value`` if it can be one file name in the catalogue (one-line error otherwise)."""
    text = value if isinstance(value, str) else ""
    if not text or text.startswith(".") or _BAD_NAME.search(text):
        raise EomatchError(f"{what} {value!r:.80} cannot be a file name in the catalogue")
    return check_component(what, text)  # also bounds the length (issue 10 §9)


Foreign = tuple[dict[str, Any], str, tuple[datetime, datetime]]
"""An incoming item as :func:`foreign_item` makes it: the copy, its path and its times."""
_UNCHECKED: Any = object()


def foreign_items(raws: Sequence[Mapping[str, Any]]) -> list[Foreign]:
    """:func:`foreign_item` of each of ``raws``, their geometries checked together
    (:func:`~eomatch.core.stac_items.item_problems`); the first bad item raises its error."""
    docs = [raw if type(raw) is dict or not isinstance(raw, Mapping) else dict(raw) for raw in raws]
    try:
        problems = si.item_problems(docs)
    except Exception:  # one by one instead: the first item in error raises, as it would
        problems = [_UNCHECKED] * len(docs)
    return [foreign_item(raw, problem) for raw, problem in zip(raws, problems, strict=True)]


def foreign_item(raw: Mapping[str, Any], checked: str | None = _UNCHECKED) -> Foreign:
    """A validated copy of an incoming item in the catalogue's key order, its path and times.

    ``checked``: what :func:`~eomatch.core.stac_items.item_problem` says of it, if known.
    """
    item_id = raw.get("id") if isinstance(raw, Mapping) else None
    try:
        if not isinstance(raw, Mapping) or raw.get("type") != "Feature":
            raise ValueError("not a STAC item (type is not 'Feature')")
        check_name("item id", item_id)
        coll = check_name("collection id", raw.get("collection"))
        if item_id in ("catalog", "collection"):
            raise ValueError("the id is reserved for catalogue files")
        if not isinstance(raw.get("properties"), Mapping):
            raise ValueError("missing 'properties'")
        # the shapes every reader of the catalogue needs
        problem = si.item_problem(dict(raw)) if checked is _UNCHECKED else checked
        if problem:
            raise ValueError(problem)
        times = si.item_times(raw)
        bbox = raw.get("bbox") or si.geometry_bbox(si.item_geometry(raw))
        if len(bbox) == 6:
            bbox = [bbox[0], bbox[1], bbox[3], bbox[4]]
    except EomatchError as exc:
        raise EomatchError(f"incoming item {item_id!r:.80}: {exc}") from None
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise EomatchError(f"incoming item {item_id!r:.80}: invalid STAC item: {exc}") from None
    # nested objects are shared with ``raw`` where they are dicts already: nothing here or in
    # import_items changes them in place (each step builds new lists and top-level dicts)
    links = [
        x if type(x) is dict else dict(x)
        for x in raw.get("links") or []
        if isinstance(x, Mapping) and x.get("rel") not in _STRUCTURAL_RELS and "href" in x
    ]
    props = raw["properties"]
    item: dict[str, Any] = {
        "type": "Feature",
        "stac_version": raw.get("stac_version", si.STAC_VERSION),
        "stac_extensions": list(raw.get("stac_extensions") or []),
        "id": item_id,
        "geometry": raw.get("geometry"),
        "bbox": [float(v) for v in bbox],
        "properties": props if type(props) is dict else dict(props),
        "links": links,
        "assets": {
            k: v if type(v) is dict else dict(v)
            for k, v in sorted((raw.get("assets") or {}).items())
        },
        "collection": coll,
    }
    for key, value in raw.items():
        if key not in item:
            item[key] = value
    return item, si.item_path(coll, str(item_id), times[0]), times


def merge_foreign(
    item: dict[str, Any], old: Mapping[str, Any], same_path: bool, has: Callable[[str], bool]
) -> dict[str, Any]:
    """The incoming ``item`` merged with the local ``old`` one (see ``import_items``)."""
    assets = dict(item["assets"])
    for key, local in (old.get("assets") or {}).items():
        theirs = assets.get(key)
        href = str(local.get("href", "")) if isinstance(local, Mapping) else ""
        if theirs is None or (local != theirs and href and not si.is_url(href)):
            assets[key] = local
    extensions = list(item["stac_extensions"])
    extensions += [e for e in old.get("stac_extensions") or [] if e not in extensions]
    links = list(item["links"])
    if same_path and si.collection_kind(str(item["collection"])) == "event":
        rel = si.item_path(str(item["collection"]), str(item["id"]), si.item_times(item)[0])
        hrefs = {str(x["href"]) for x in links}
        for link in old.get("links") or []:
            if (
                link.get("rel") == "related"
                and link.get(ROLE_FIELD) == ROLE_MATCHUP
                and str(link["href"]) not in hrefs
                and has(si.resolve_href(rel, str(link["href"])))
            ):
                links.append(dict(link))
        links.sort(key=lambda x: (str(x.get("rel")), str(x.get("href"))))
    return {
        **item,
        "stac_extensions": extensions,
        "links": links,
        "assets": dict(sorted(assets.items())),
    }
