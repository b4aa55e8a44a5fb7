"""A small STAC API client for pulling items: one keep-alive connection, retries, clear errors.

Used by ``eomatch query``; every failure becomes an :class:`EomatchError` with one line that
names the URL and the reason (unreachable, refused key, unknown collection, not JSON).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any
from urllib.parse import urljoin

import httpx
import orjson

from eomatch.errors import EomatchError

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
API_KEY_ENV = "EOMATCH_API_KEY"


class StacApi:
    """A small STAC API client: JSON over one keep-alive ``httpx.Client``, retries, clear errors.

    Args:
        url: the API root (landing page).
        api_key: sent as ``Authorization: Bearer {api_key}`` when given.
        timeout: seconds to connect and to wait for an answer.
        max_retries: retries after a connection error, timeout, 429 or 5xx answer.
        backoff: the n-th retry waits ``backoff * 2**(n-1)`` seconds.
    """

    def __init__(
        self,
        url: str,
        api_key: str | None = None,
        *,
        timeout: float = 60.0,
        max_retries: int = 3,
        backoff: float = 0.5,
    ) -> None:
        if not re.match(r"^https?://[^/]", url):
            raise EomatchError(f"--api-url must be an http(s) URL, got {url!r}")
        self.root = url.rstrip("/")
        self.max_retries = max_retries
        self.backoff = backoff
        self.requests = 0
        headers = {"Accept": "application/geo+json, application/json"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self._has_key = bool(api_key)
        self._client = httpx.Client(
            headers=headers,
            timeout=httpx.Timeout(timeout),
            follow_redirects=True,
            limits=httpx.Limits(max_connections=32, max_keepalive_connections=16),
        )

    def close(self) -> None:
        """Close the connections."""
        self._client.close()

    def __enter__(self) -> StacApi:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def url(self, href: str) -> str:
        """An absolute URL for an href relative to the API root."""
        return urljoin(self.root + "/", href)

    def get(self, href: str, params: Mapping[str, Any] | None = None) -> Any:
        """GET JSON."""
        return self._request("GET", self.url(href), params=params)

    def post(self, href: str, body: Mapping[str, Any]) -> Any:
        """POST JSON, answer JSON."""
        return self._request("POST", self.url(href), json=body)

    def _request(self, method: str, url: str, **kw: Any) -> Any:
        attempt = 0
        while True:
            self.requests += 1
            try:
                resp = self._client.request(method, url, **kw)
            except httpx.TransportError as exc:
                if attempt < self.max_retries:
                    attempt = self._wait(attempt, f"{url}: {exc}")
                    continue
                raise EomatchError(f"cannot reach the API at {self.root}: {_reason(exc)}") from None
            if resp.status_code in RETRY_STATUSES and attempt < self.max_retries:
                attempt = self._wait(attempt, f"{url}: HTTP {resp.status_code}")
                continue
            if resp.status_code >= 400:
                raise EomatchError(self._status_message(resp, url))
            try:
                return orjson.loads(resp.content)  # several times faster than json
            except ValueError:
                raise EomatchError(
                    f"{url}: the answer is not JSON (is {self.root} a STAC API?)"
                ) from None

    def _wait(self, attempt: int, what: str) -> int:
        delay = self.backoff * 2**attempt
        log.info("%s; retrying in %.1f s", what, delay)
        time.sleep(delay)
        return attempt + 1

    def _status_message(self, resp: httpx.Response, url: str) -> str:
        code = resp.status_code
        if code == 401:
            if self._has_key:
                return f"{self.root}: HTTP 401: the API refused the key (--api-key/{API_KEY_ENV})"
            return f"{self.root}: HTTP 401: this API needs a key (--api-key or {API_KEY_ENV})"
        if code == 403:
            return f"{self.root}: HTTP 403: the key is not allowed to read this API"
        detail = ""
        try:
            doc = resp.json()
            if isinstance(doc, dict):
                detail = str(doc.get("description") or doc.get("detail") or "")
        except ValueError:
            pass
        text = f"{url}: HTTP {code} {resp.reason_phrase}".rstrip()
        return f"{text}: {detail}" if detail else text

    def collections(self) -> dict[str, dict[str, Any]]:
        """Every collection of the API (``/collections``, following ``next`` links)."""
        out: dict[str, dict[str, Any]] = {}
        doc = self.get("collections", {"limit": 1000})
        seen: set[str] = set()
        while True:
            if not isinstance(doc, dict) or not isinstance(doc.get("collections"), list):
                raise EomatchError(f"{self.url('collections')}: not a STAC collections list")
            for coll in doc["collections"]:
                if isinstance(coll, dict) and isinstance(coll.get("id"), str):
                    out[coll["id"]] = coll
            nxt = _next_link(doc)
            if nxt is None or nxt.get("href") in seen or not doc["collections"]:
                return out
            seen.add(str(nxt["href"]))
            doc = self._follow(nxt, None)

    def search(self, body: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
        """Pages of a POST ``/search``, following ``next`` links (GET or POST)."""
        page = self.post("search", body)
        current: Mapping[str, Any] = body
        while True:
            if not isinstance(page, dict) or not isinstance(page.get("features"), list):
                raise EomatchError(f"{self.url('search')}: not a STAC ItemCollection")
            yield page
            nxt = _next_link(page)
            if nxt is None or not page["features"]:
                return
            if nxt.get("body") is not None and nxt.get("merge"):
                current = {**current, **nxt["body"]}
            elif nxt.get("body") is not None:
                current = nxt["body"]
            page = self._follow(nxt, current)

    def _follow(self, link: Mapping[str, Any], body: Mapping[str, Any] | None) -> Any:
        href = self.url(str(link["href"]))
        if str(link.get("method", "GET")).upper() == "POST":
            return self._request("POST", href, json=dict(body or link.get("body") or {}))
        return self._request("GET", href)

    def items_by_id(self, collection: str, ids: Sequence[str]) -> list[dict[str, Any]]:
        """Items of one collection by id, in one request (paged if the server insists)."""
        out: list[dict[str, Any]] = []
        body = {"collections": [collection], "ids": list(ids), "limit": len(ids)}
        for page in self.search(body):
            out.extend(f for f in page["features"] if isinstance(f, dict))
        return out


def _reason(exc: Exception) -> str:
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0]


def _next_link(doc: Mapping[str, Any]) -> dict[str, Any] | None:
    for link in doc.get("links") or []:
        if isinstance(link, dict) and link.get("rel") == "next" and link.get("href"):
            return link
    return None
