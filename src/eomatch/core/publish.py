"""How catalogue documents change on their way into and out of the central service (pure).

Into pgSTAC (:func:`api_item`, :func:`api_collection`): the on-disk catalogue's relative links
mean nothing to an API, so links between items become ``collections/{c}/items/{id}`` (the API
resolves them against its own root, behind any proxy prefix), structural links (root, parent,
child, day catalogs) are dropped because the API makes its own, and local asset files become
``file://`` URLs or URLs under a published base.

Out of the external API (:func:`public_view`): only ``http(s)`` hrefs survive, on assets,
alternate assets, links and any other object anywhere in a response. Allow-listing (not deny-listing
``file://``) is the point: plain paths, relative paths and other schemes are internal too.
"""

from __future__ import annotations

import hashlib
import posixpath
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import orjson

STRUCTURAL_RELS = frozenset({"self", "root", "parent", "collection", "child", "item", "items"})

ItemLocator = Callable[[str], "tuple[str, str] | None"]
"""Maps a catalogue-relative path to ``(collection, item id)`` if it is an item file."""


def has_scheme(href: str) -> bool:
    """True for URLs (``https://``, ``file://``, ``s3://``…), False for paths."""
    scheme = urlsplit(href).scheme
    return len(scheme) > 1  # a Windows drive letter is not a scheme


_PUBLIC = re.compile(r"https?://[^/?#\\\s]", re.IGNORECASE | re.ASCII)


def is_public(href: object) -> bool:
    """True only for http(s) URLs with a host (ASCII letters only: no Unicode case folding).

    Without a host (``http://#x``, ``http:///abs/path``, ``http://``) an href is a path in
    disguise: resolved against the API's own URL, as every link is, it came out as
    ``http://<api>/abs/path``, a stored path dressed as one of the API's URLs.
    """
    return isinstance(href, str) and _PUBLIC.match(href) is not None


class HrefRewriter:
    """Rewrites hrefs of documents at catalogue-relative paths for the service."""

    def __init__(
        self, root: Path, locate_item: ItemLocator, assets_base_url: str | None = None
    ) -> None:
        self.root = Path(root).absolute()
        self.locate_item = locate_item
        self.base = assets_base_url.rstrip("/") + "/" if assets_base_url else None

    def _resolve(self, doc_rel: str, href: str) -> str | None:
        """Catalogue-relative path of a relative href, or None if it leaves the catalogue."""
        joined = posixpath.normpath(posixpath.join(posixpath.dirname(doc_rel), href))
        return None if joined.startswith("../") or joined == ".." else joined

    def file_href(self, doc_rel: str, href: str) -> str:
        """An asset href as the service stores it."""
        if has_scheme(href):
            return href
        if href.startswith("/"):
            return Path(href).as_uri()
        rel = self._resolve(doc_rel, href)
        if rel is not None and self.base is not None:
            return self.base + quote(rel)
        target = self.root / posixpath.dirname(doc_rel) / href
        return Path(posixpath.normpath(str(target))).as_uri()

    def link_href(self, doc_rel: str, href: str) -> str:
        """A link href: items become API paths, other local files like assets."""
        if has_scheme(href) or href.startswith("/"):
            return self.file_href(doc_rel, href)
        rel = self._resolve(doc_rel, href)
        if rel is not None:
            found = self.locate_item(rel)
            if found is not None:
                collection, item_id = found
                return f"collections/{quote(collection, safe='')}/items/{quote(item_id, safe='')}"
        return self.file_href(doc_rel, href)

    def _assets(self, doc_rel: str, assets: Mapping[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, asset in assets.items():
            if not isinstance(asset, Mapping):
                continue
            new = dict(asset)
            if isinstance(new.get("href"), str):
                new["href"] = self.file_href(doc_rel, new["href"])
            alternates = new.get("alternate")
            if isinstance(alternates, Mapping):
                new["alternate"] = self._assets(doc_rel, alternates)
            out[key] = new
        return out

    def _links(self, doc_rel: str, links: Any) -> list[dict[str, Any]]:
        out = []
        for link in links if isinstance(links, list) else []:
            if not isinstance(link, Mapping) or link.get("rel") in STRUCTURAL_RELS:
                continue
            href = link.get("href")
            if not isinstance(href, str):
                continue
            out.append({**link, "href": self.link_href(doc_rel, href)})
        return out

    def item(self, item: Mapping[str, Any], item_rel: str) -> dict[str, Any]:
        """An on-disk item as pgSTAC stores it."""
        out = dict(item)
        out["links"] = self._links(item_rel, item.get("links"))
        if isinstance(item.get("assets"), Mapping):
            out["assets"] = self._assets(item_rel, item["assets"])
        return out

    def collection(self, collection: Mapping[str, Any], collection_rel: str) -> dict[str, Any]:
        """An on-disk collection as pgSTAC stores it."""
        out = dict(collection)
        out["links"] = self._links(collection_rel, collection.get("links"))
        if isinstance(collection.get("assets"), Mapping):
            out["assets"] = self._assets(collection_rel, collection["assets"])
        return out


def content_hash(doc: Mapping[str, Any]) -> str:
    """A stable hash of a JSON document (key order does not matter)."""
    return hashlib.sha256(orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)).hexdigest()


# -- the external view ---------------------------------------------------------------------------


def _hides_path(value: Any) -> bool:
    """An object whose ``href`` is anything but an http(s) URL (so it must go)."""
    return type(value) is dict and "href" in value and not is_public(value["href"])


def public_view(body: Any) -> Any:
    """A response body without any object whose ``href`` is not http(s), at any depth.

    Assets, alternates (in any form), links, and any object nested in properties, summaries
    or elsewhere that carries an ``href``: the whole object is removed from its parent (a
    link to a path is not turned into anything else). The answer's own Features' geometry
    is skipped: pgSTAC builds it from the PostGIS column, so it holds only coordinates.
    Iterative (any depth) and in place: ``body`` is a freshly decoded response.
    """
    if type(body) is not dict:
        return body
    if "href" in body and not is_public(body["href"]):
        del body["href"]
    features = body.get("features")
    # only the answer's own features: a "Feature" nested in properties is walked in full
    tops = {id(body)} | ({id(f) for f in features} if type(features) is list else set())
    stack: list[Any] = [body]
    push = stack.append
    while stack:
        node = stack.pop()
        if type(node) is dict:
            skip = "geometry" if id(node) in tops and node.get("type") == "Feature" else None
            gone = []
            for key, value in node.items():
                kind = type(value)
                if kind is dict:
                    if "href" in value and not is_public(value["href"]):
                        gone.append(key)
                    elif key != skip:
                        push(value)
                elif kind is list and key != skip:
                    push(value)
            for key in gone:
                del node[key]
        else:  # a list
            if any(map(_hides_path, node)):
                node[:] = [v for v in node if not _hides_path(v)]
            for value in node:
                if type(value) is dict or type(value) is list:
                    push(value)
    return body
