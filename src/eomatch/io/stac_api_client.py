"""The one STAC API client: JSON over :mod:`eomatch.io.http`, bounded paging, clear errors.

Used by ``eomatch query`` (matchup APIs) and by the ``stac`` product source (provider APIs);
every failure becomes an :class:`EomatchError` with one line that names the URL and the reason
(unreachable, refused key, unknown collection, not JSON, a limit exceeded). Paging follows
``next`` links (GET or POST, ``body``/``merge``) but at most ``max_pages`` pages and
``max_items`` items, refuses a ``next`` link it already followed (a loop), and a whole paged
search must finish within ``max_seconds``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Mapping
from dataclasses import replace
from typing import Any
from urllib.parse import urljoin

import httpx
import orjson

from eomatch.errors import EomatchError, InputError, NetworkError, RemoteLimitError
from eomatch.io.http import Answer, Deadline, HttpLimits, HttpSession, TransportFailure

log = logging.getLogger(__name__)

API_KEY_ENV = "EOMATCH_API_KEY"


class StacApi:
    """A small STAC API client: JSON over one keep-alive session, retries, bounds, clear errors.

    Args:
        url: the API root (landing page).
        api_key: sent as ``Authorization: Bearer {api_key}`` when given (to the API's origin
            only).
        timeout: seconds to connect and allowed between received bytes.
        max_retries: retries after a connection error, a timeout or a transient answer
            (the one policy of :func:`~eomatch.io.http.call_with_retries`).
        backoff: the n-th retry waits ``backoff * 2**(n-1)`` seconds (or what ``Retry-After``
            asks, capped); default ``limits.backoff_s`` (0.5 s).
        credentials: further secret headers, sent to the API's origin only.
        limits: every other bound (see :class:`~eomatch.io.http.HttpLimits`); ``timeout``,
            ``max_retries`` and ``backoff`` (when given) override its fields.
        transport: an httpx transport (tests).
    """

    def __init__(
        self,
        url: str,
        api_key: str | None = None,
        *,
        timeout: float = 60.0,
        max_retries: int = 3,
        backoff: float | None = None,
        credentials: Mapping[str, str] | None = None,
        limits: HttpLimits | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if not re.match(r"^https?://[^/]", url):
            raise InputError(f"--api-url must be an http(s) URL, got {url!r}")
        self.root = url.rstrip("/")
        base = limits or HttpLimits()
        self.limits = replace(
            base,
            timeout_s=timeout,
            max_retries=max_retries,
            backoff_s=base.backoff_s if backoff is None else backoff,
        )
        self.max_retries = max_retries
        secrets = dict(credentials or {})
        if api_key:
            secrets["Authorization"] = f"Bearer {api_key}"
        self._has_key = bool(api_key)
        self.session = HttpSession(
            self.root + "/",
            credentials=secrets,
            headers={"Accept": "application/geo+json, application/json"},
            limits=self.limits,
            transport=transport,
            max_connections=32,
        )

    @property
    def requests(self) -> int:
        """HTTP requests sent so far (attempts and redirect hops included)."""
        return self.session.requests

    def close(self) -> None:
        """Close the connections."""
        self.session.close()

    def __enter__(self) -> StacApi:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def url(self, href: str) -> str:
        """An absolute URL for an href relative to the API root."""
        return urljoin(self.root + "/", href)

    def deadline(self, what: str) -> Deadline:
        """The time allowed for one operation (``max_seconds``)."""
        return Deadline(self.limits.max_seconds, what)

    def get(
        self,
        href: str,
        params: Mapping[str, Any] | None = None,
        deadline: Deadline | None = None,
    ) -> Any:
        """GET JSON."""
        url = self.url(href)
        return self._request("GET", url, deadline or self.deadline(url), params=params)

    def post(self, href: str, body: Mapping[str, Any], deadline: Deadline | None = None) -> Any:
        """POST JSON, answer JSON."""
        url = self.url(href)
        return self._request("POST", url, deadline or self.deadline(url), json=dict(body))

    def _request(
        self, method: str, url: str, deadline: Deadline, what: str | None = None, **kw: Any
    ) -> Any:
        what = what or f"{method} {url}"
        try:
            answer = self.session.request(method, url, deadline=deadline, **kw)
        except TransportFailure as exc:
            raise self._transport_error(exc, what) from None
        except RemoteLimitError as exc:
            raise self._limit_error(exc, what) from None
        if answer.status >= 400:
            raise self._status_error(answer, url, what)
        try:
            return answer.json()
        except ValueError:
            raise self._json_error(url, what) from None

    # -- how failures are worded (the product source words them its own way) ----------------

    def _transport_error(self, exc: TransportFailure, what: str) -> EomatchError:
        return EomatchError(f"cannot reach the API at {self.root}: {exc.reason}")

    def _limit_error(self, exc: RemoteLimitError, what: str) -> EomatchError:
        return exc

    def _json_error(self, url: str, what: str) -> EomatchError:
        return EomatchError(f"{url}: the answer is not JSON (is {self.root} a STAC API?)")

    def _shape_error(self, url: str, what: str, problem: str) -> EomatchError:
        return EomatchError(f"{url}: {problem}")

    def _status_error(self, answer: Answer, url: str, what: str) -> EomatchError:
        code = answer.status
        if code == 401:
            if self._has_key:
                return EomatchError(
                    f"{self.root}: HTTP 401: the API refused the key (--api-key/{API_KEY_ENV})"
                )
            return EomatchError(
                f"{self.root}: HTTP 401: this API needs a key (--api-key or {API_KEY_ENV})"
            )
        if code == 403:
            return EomatchError(f"{self.root}: HTTP 403: the key is not allowed to read this API")
        detail = _detail(answer)
        text = f"{url}: HTTP {code} {answer.reason}".rstrip()
        return EomatchError(f"{text}: {detail}" if detail else text)

    def collections(self) -> dict[str, dict[str, Any]]:
        """Every collection of the API (``/collections``, following ``next`` links)."""
        out: dict[str, dict[str, Any]] = {}
        what = f"listing the collections of {self.root}"
        deadline = self.deadline(what)
        doc = self.get("collections", {"limit": 1000}, deadline)
        pager = _Pager(self.limits, what)
        while True:
            if not isinstance(doc, dict) or not isinstance(doc.get("collections"), list):
                raise NetworkError(f"{self.url('collections')}: not a STAC collections list")
            pager.page(len(doc["collections"]))
            for coll in doc["collections"]:
                if isinstance(coll, dict) and isinstance(coll.get("id"), str):
                    out[coll["id"]] = coll
            nxt = _next_link(doc)
            if nxt is None or not doc["collections"]:
                return out
            pager.follow(nxt, None)
            doc = self._follow(nxt, None, deadline, what)

    def search(
        self,
        body: Mapping[str, Any],
        *,
        href: str = "search",
        method: str = "POST",
        what: str | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Pages of a ``/search``, following ``next`` links (GET or POST), within the limits.

        Raises:
            RemoteLimitError: more than ``max_pages`` pages or ``max_items`` items, a ``next``
                link that repeats, or longer than ``max_seconds`` in all.
        """
        url = self.url(href)
        what = what or f"search at {url}"
        deadline = self.deadline(what)
        if method.upper() == "GET":
            page = self._request("GET", url, deadline, what, params=_query_params(body))
        else:
            page = self._request("POST", url, deadline, what, json=dict(body))
        current: Mapping[str, Any] = body
        pager = _Pager(self.limits, what)
        while True:
            if not isinstance(page, dict) or not isinstance(page.get("features"), list):
                raise self._shape_error(url, what, "not a STAC ItemCollection (no 'features' list)")
            try:
                pager.page(len(page["features"]))
            except RemoteLimitError as exc:
                raise self._limit_error(exc, what) from None
            yield page
            nxt = _next_link(page)
            if nxt is None or not page["features"]:
                return
            if isinstance(nxt.get("body"), dict) and nxt.get("merge"):
                current = {**current, **nxt["body"]}
            elif isinstance(nxt.get("body"), dict):
                current = nxt["body"]
            try:
                pager.follow(nxt, current)
            except RemoteLimitError as exc:
                raise self._limit_error(exc, what) from None
            page = self._follow(nxt, current, deadline, what)

    def _follow(
        self,
        link: Mapping[str, Any],
        body: Mapping[str, Any] | None,
        deadline: Deadline,
        what: str | None = None,
    ) -> Any:
        href = self.url(str(link["href"]))
        if str(link.get("method", "GET")).upper() == "POST":
            payload = dict(body or link.get("body") or {})
            return self._request("POST", href, deadline, what, json=payload)
        return self._request("GET", href, deadline, what)


class _Pager:
    """Counts pages and items of one paged listing and refuses loops and excess."""

    def __init__(self, limits: HttpLimits, what: str) -> None:
        self.limits = limits
        self.what = what
        self.pages = 0
        self.items = 0
        self.followed: set[bytes] = set()

    def page(self, items: int) -> None:
        self.pages += 1
        self.items += items
        if self.pages > self.limits.max_pages:
            raise RemoteLimitError(
                f"{self.what}: more than {self.limits.max_pages} pages (limit max_pages); "
                "narrow the search or raise the limit"
            )
        if self.items > self.limits.max_items:
            raise RemoteLimitError(
                f"{self.what}: more than {self.limits.max_items} items (limit max_items); "
                "narrow the search or raise the limit"
            )

    def follow(self, link: Mapping[str, Any], body: Mapping[str, Any] | None) -> None:
        key = orjson.dumps(
            [str(link.get("href")), str(link.get("method", "GET")).upper(), body],
            option=orjson.OPT_SORT_KEYS,
            default=str,
        )
        if key in self.followed:
            raise RemoteLimitError(
                f"{self.what}: the server's 'next' link repeats an earlier page (paging loop)"
            )
        self.followed.add(key)


def _detail(answer: Answer) -> str:
    """The ``description``/``detail`` of a JSON error answer, on one short line."""
    try:
        doc = orjson.loads(answer.content)
    except ValueError:
        return ""
    detail = str(doc.get("description") or doc.get("detail") or "") if isinstance(doc, dict) else ""
    detail = " ".join(detail.split())
    return detail if len(detail) <= 200 else detail[:197] + "..."


def _query_params(body: Mapping[str, Any]) -> dict[str, str]:
    out = {}
    for key, value in body.items():
        if isinstance(value, list | tuple):
            out[key] = ",".join(str(v) for v in value)
        elif isinstance(value, dict):
            out[key] = orjson.dumps(value).decode()
        else:
            out[key] = str(value)
    return out


def _next_link(doc: Mapping[str, Any]) -> dict[str, Any] | None:
    links = doc.get("links")
    for link in links if isinstance(links, list) else []:
        href = link.get("href") if isinstance(link, dict) else None
        if isinstance(link, dict) and link.get("rel") == "next" and isinstance(href, str) and href:
            return link
    return None


__all__ = ["API_KEY_ENV", "StacApi"]
