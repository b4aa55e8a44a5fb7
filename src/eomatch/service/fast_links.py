"""The links stac-fastapi-pgstac puts on every item of an answer, computed cheaply.

stac-fastapi-pgstac builds each item's links with an ``ItemLinks`` object that lists its
``link_*`` methods with ``dir()``, recomputes the request's base URL for every href and joins
each href with :func:`urllib.parse.urljoin`: ~47 ms per 1000 items, a third of the Python
work of serving a page. :class:`FastItemLinks` gives the same links in the same order (a
subclass, so any change to the parent's ``link_*`` methods still applies; the internals it
relies on are listed in :mod:`eomatch.io.thirdparty`) with the base URL
computed once per request, the ``link_*`` names listed once per class, and a join that is a
plain concatenation whenever :func:`urllib.parse.urljoin` would give exactly that (a simple
relative path under a base URL it leaves alone), and :func:`urllib.parse.urljoin` otherwise.

The same subclasses carry the external API's link policy (:class:`PublicLinksMixin`): the
parent resolves every stored link href against the API's base URL, so a stored
``/mnt/data/x.json`` or ``relative/x.nc`` came out as ``http://gateway/mnt/data/x.json``,
an http(s) URL the public view let through. In the external API a stored link survives only
if its href is http(s) already or one of the API's own routes as ingest writes them
(``collections/{c}`` or ``collections/{c}/items/{i}``); every other is dropped, not resolved.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any
from urllib.parse import urljoin

from stac_fastapi.pgstac import core
from stac_fastapi.pgstac.models.links import CollectionLinks, ItemLinks

from eomatch.core.publish import is_public
from eomatch.io.thirdparty import install_module_global

_BASE_KEY = "eomatch.links_base"
_SHARED_KEY = "eomatch.links_shared"
_STOCK_LINKS = ("link_collection", "link_parent", "link_root", "link_self")
"""ItemLinks' own ``link_*`` methods, in the order ``dir()`` lists them."""
_ITEM_LINKS_HELPERS = (*_STOCK_LINKS, "collection_link")
_OWN_HELPERS = ("resolve", "base_url")
"""What the links made once per collection are made with: a subclass that overrides any of
these may make them differ per item, and gets the generic path."""
_PLAIN = re.compile(r"[A-Za-z0-9_~!$&'()*+,=@%-][A-Za-z0-9._~!$&'()*+,=@%/-]*")
"""A relative path that cannot hold a scheme, a query, a fragment or ``;`` params."""


def _plain(url: str) -> bool:
    """``url`` joins onto a directory-like base URL by concatenation: no dot or empty segments."""
    if _PLAIN.fullmatch(url) is None or "//" in url:
        return False
    return not any(seg in (".", "..") for seg in url.split("/")) if "." in url else True


@lru_cache(maxsize=64)
def _concat_safe(base: str) -> bool:
    """``urljoin(base, p) == base + p`` for plain paths ``p`` (a base ending in ``/`` that
    :func:`urljoin` leaves untouched: no query, fragment, dot or empty segments)."""
    probe = "a/b.c/d"
    return base.endswith("/") and urljoin(base, probe) == base + probe


def join(base: str, url: str) -> str:
    """Exactly :func:`urllib.parse.urljoin`, without its parsing on the common path."""
    if _concat_safe(base) and _plain(url):
        return base + url
    return urljoin(base, url)


_API_REF = re.compile(r"collections/[^/?#\\]+(?:/items/[^/?#\\]+)?")
"""A stored link to one of the API's own resources, as ingest writes item-to-item links."""


def servable_link(href: Any) -> bool:
    """A stored link href the external API may show: http(s), or an API route of its own."""
    if is_public(href):
        return True
    if not isinstance(href, str) or _API_REF.fullmatch(href) is None:
        return False
    return not any(seg in (".", "..") for seg in href.split("/"))


class PublicLinksMixin:
    """In the external API, stored links that are not http(s) or API routes are dropped."""

    request: Any

    async def get_links(self, extra_links: list[dict[str, Any]] | None = None) -> Any:
        """The parent's links; in the external API without stored path-like links."""
        if extra_links and getattr(self.request.app.state, "eomatch_mode", "") == "external":
            extra_links = [
                lk for lk in extra_links if isinstance(lk, dict) and servable_link(lk.get("href"))
            ]
        return await super().get_links(extra_links=extra_links)  # type: ignore[misc]


class PublicCollectionLinks(PublicLinksMixin, CollectionLinks):  # type: ignore[misc]
    """Collection links with the external link policy."""


class FastItemLinks(PublicLinksMixin, ItemLinks):  # type: ignore[misc]
    """:class:`ItemLinks` with the per-request work done once per request."""

    _link_names: tuple[str, ...] | None = None
    _stock_links: bool = False

    @property
    def base_url(self) -> str:
        """The request's base URL (cached in the ASGI scope: one request, one base)."""
        scope = self.request.scope
        base = scope.get(_BASE_KEY)
        if base is None:
            base = scope[_BASE_KEY] = str(super().base_url)
        return str(base)

    def resolve(self, url: Any) -> str:
        """``urljoin(base_url, url)``."""
        return join(self.base_url, str(url))

    def create_links(self) -> list[dict[str, Any]]:
        """The parent's links, its ``link_*`` methods found once per class, not per item.

        With :class:`ItemLinks`' own methods and this class's ``resolve``/``base_url`` (checked
        once per class), the three that depend only on the request and the collection
        (``collection``, ``parent``, ``root``) are made once per collection and request and
        copied into each item; ``self`` is made per item.
        """
        cls = type(self)
        names = cls.__dict__.get("_link_names")
        if names is None:
            names = tuple(
                n for n in dir(cls) if n.startswith("link_") and callable(getattr(cls, n))
            )
            cls._link_names = names
            cls._stock_links = (
                names == _STOCK_LINKS
                and all(getattr(cls, n) is getattr(ItemLinks, n) for n in _ITEM_LINKS_HELPERS)
                and all(getattr(cls, n) is getattr(FastItemLinks, n) for n in _OWN_HELPERS)
            )
        if cls.__dict__.get("_stock_links"):
            return self._stock()
        links: list[dict[str, Any]] = []
        for name in names:
            link = getattr(self, name)()
            if link is not None:
                if isinstance(link, list):
                    links.extend(link)
                else:
                    links.append(link)
        return links

    def _stock(self) -> list[dict[str, Any]]:
        scope = self.request.scope
        memo: dict[str, tuple[dict[str, Any], ...]] | None = scope.get(_SHARED_KEY)
        if memo is None:
            memo = scope[_SHARED_KEY] = {}
        shared = memo.get(self.collection_id)
        if shared is None:
            shared = memo[self.collection_id] = (
                self.link_collection(),
                self.link_parent(),
                self.link_root(),
            )
        return [dict(shared[0]), dict(shared[1]), dict(shared[2]), self.link_self()]


def install() -> None:
    """Make stac-fastapi-pgstac's answers use :class:`FastItemLinks` and
    :class:`PublicCollectionLinks` (idempotent)."""
    install_module_global(core, "ItemLinks", ItemLinks, FastItemLinks)
    install_module_global(core, "CollectionLinks", CollectionLinks, PublicCollectionLinks)
