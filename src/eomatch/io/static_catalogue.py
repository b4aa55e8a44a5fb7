"""Any static STAC catalogue (a folder or a URL), read with pystac, as documents for pgSTAC.

Not only eomatch's matchup layout: whatever pystac reads (a ``catalog.json``, a
``collection.json``, a lone item; relative or absolute links, self-contained or published),
walked from the given root. HTTP goes through :class:`~eomatch.io.http.HttpSession` (its
limits and retries), not urllib. What comes out is what the central database stores:

* structural links (``self``, ``root``, ``parent``, ``child``, ``item``, ``collection``) are
  dropped: pgSTAC and the API make their own;
* every other href is made absolute (a local file becomes a ``file://`` URL);
* items take the collection they sit under; items under a plain catalogue take ``collection``
  (an :class:`InputError` without one);
* ``check_href``, when given, sees every href before it is read and may refuse it (a job
  submitted over HTTP: no link may lead out of its input folder or to another host).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import pystac
from pystac.stac_io import DefaultStacIO

from eomatch.errors import InputError, NetworkError, NotFoundError
from eomatch.io.http import HttpLimits, HttpSession, redact

__all__ = ["StaticCatalogue", "read_static_catalogue"]

STRUCTURAL_RELS = frozenset({"self", "root", "parent", "child", "item", "collection", "items"})


class _HttpStacIO(DefaultStacIO):
    """pystac's I/O with http(s) through our session (local files stay pystac's)."""

    def __init__(
        self, session: HttpSession, check_href: Callable[[str], None] | None = None
    ) -> None:
        super().__init__()
        self.session = session
        self.check_href = check_href
        self.refused: Exception | None = None
        """What ``check_href`` raised (pystac wraps it in a vaguer STACError)."""

    def read_text_from_href(self, href: str) -> str:
        if self.check_href is not None:
            try:
                self.check_href(href)
            except Exception as exc:
                self.refused = exc
                raise
        if urlsplit(href).scheme.lower() not in ("http", "https"):
            try:
                return super().read_text_from_href(href)
            except FileNotFoundError:
                raise NotFoundError(f"no such file: {href}") from None
        answer = self.session.request("GET", href)
        if answer.status == 404:
            raise NotFoundError(f"{redact(href)}: not found (HTTP 404)")
        if answer.status != 200:
            raise NetworkError(f"{redact(href)}: HTTP {answer.status} {answer.reason}".rstrip())
        return answer.text


@dataclass
class StaticCatalogue:
    """The documents of one static catalogue, ready to upsert."""

    collections: list[dict[str, Any]] = field(default_factory=list)
    items: list[dict[str, Any]] = field(default_factory=list)


def _absolute(href: str, base: str | None) -> str:
    if "://" in href:
        return href
    if base is not None and "://" in base and not base.startswith("file://"):
        return urljoin(base, href)
    path = Path(href)
    if not path.is_absolute() and base is not None:
        path = Path(base.removeprefix("file://")).parent / href
    return Path(path).resolve().as_uri()


def _clean(doc: dict[str, Any], base: str | None) -> dict[str, Any]:
    doc["links"] = [
        {**link, "href": _absolute(str(link["href"]), base)}
        for link in doc.get("links", [])
        if isinstance(link, dict) and link.get("rel") not in STRUCTURAL_RELS and "href" in link
    ]
    for asset in (doc.get("assets") or {}).values():
        if isinstance(asset, dict) and isinstance(asset.get("href"), str):
            asset["href"] = _absolute(asset["href"], base)
    return doc


def read_static_catalogue(
    source: str,
    *,
    collection: str | None = None,
    session: HttpSession | None = None,
    check_href: Callable[[str], None] | None = None,
) -> StaticCatalogue:
    """Every collection and item reachable from ``source`` (path or http(s) URL).

    ``check_href`` is called with each href before it is read; what it raises stops the walk.

    Raises:
        NotFoundError: ``source`` (or a linked file) does not exist.
        NetworkError: a server did not answer or refused.
        InputError: not STAC, or items outside any collection with no ``collection`` given.
    """
    own = session is None
    http = session or HttpSession(None, limits=HttpLimits(timeout_s=30.0, max_retries=2))
    if "://" not in source:
        path = Path(source).expanduser()
        if path.is_dir():
            candidates = [path / n for n in ("catalog.json", "collection.json")]
            found = [c for c in candidates if c.is_file()]
            if not found:
                raise NotFoundError(f"{path} holds no catalog.json or collection.json")
            path = found[0]
        source = str(path.resolve())
    out = StaticCatalogue()
    stac_io = _HttpStacIO(http, check_href)
    try:
        root = pystac.read_file(source, stac_io=stac_io)
        _walk(root, collection, out, set())
    except (InputError, NotFoundError, NetworkError):
        raise
    except pystac.STACError as exc:
        if stac_io.refused is not None:
            raise stac_io.refused from None
        raise InputError(f"{redact(source)}: not a STAC catalogue ({exc})") from None
    except (ValueError, KeyError, TypeError) as exc:  # malformed JSON or members
        raise InputError(
            f"{redact(source)}: unreadable STAC ({type(exc).__name__}: {exc})"
        ) from None
    finally:
        if own:
            http.close()
    return out


MAX_DEPTH = 64
"""Deepest nesting of catalogues followed (a real one is a few levels)."""


def _walk(
    node: pystac.STACObject,
    collection: str | None,
    out: StaticCatalogue,
    seen: set[str],
    depth: int = 0,
) -> None:
    """Collect ``node``'s collections and items; a catalogue reached again (a link back to
    itself or to an ancestor) is read once, and nesting is bounded."""
    base = node.get_self_href()
    if isinstance(node, pystac.Item):
        out.items.append(_item_doc(node, collection, base))
        return
    if not isinstance(node, pystac.Catalog):
        raise InputError(f"{base}: neither a catalogue, a collection nor an item")
    visit = f"href:{base}" if base else f"object:{id(node)}"
    if visit in seen:
        return
    seen.add(visit)
    if depth > MAX_DEPTH:
        raise InputError(f"{redact(base or node.id)}: catalogues nested over {MAX_DEPTH} deep")
    if isinstance(node, pystac.Collection):
        if node.id in seen:
            return
        seen.add(node.id)
        doc = node.to_dict(include_self_link=False, transform_hrefs=False)
        out.collections.append(_clean(doc, base))
        collection = node.id
    for item in node.get_items():
        out.items.append(_item_doc(item, collection, item.get_self_href()))
    for child in node.get_children():
        _walk(child, collection, out, seen, depth + 1)


def _item_doc(item: pystac.Item, collection: str | None, base: str | None) -> dict[str, Any]:
    target = collection or item.collection_id
    if not target:
        raise InputError(
            f"item {item.id!r:.100} is in no collection: give params.collection (an existing "
            "collection to put such items into)"
        )
    doc = item.to_dict(include_self_link=False, transform_hrefs=False)
    doc["collection"] = target
    return _clean(doc, base)
