"""Read answers kept per database snapshot: a repeated search costs one snapshot lookup.

A catalogue is read far more often than it is written (STAC Browser pages, dashboards, the same
``eomatch query`` run by several researchers, crawlers of the external API). A search across
all collections costs pgSTAC two plannings over every items partition (~50 ms at a million
items on two cores, docs/service.md "Scale"); its answer cannot change until the database does.

What the database holds is named exactly by its MVCC snapshot (``pg_current_snapshot()``: the
oldest running transaction, the next one, and those in flight): while no transaction that
writes commits, every new snapshot is the same and every read sees the same rows; any commit,
through whichever door, gives a new one. So an answer is kept under the snapshot read just
*before* the request runs (the request then sees that state or a newer one), and served again
only to requests reading the very same snapshot. No invalidation messages, nothing to forget.

Bounds: only 200 JSON answers of the read routes (``/``, ``/conformance``, ``/queryables``,
``/collections...``, ``/search``; ``POST /search`` keyed by its body), at most
``EOMATCH_API_CACHE_MB`` in all (least recently used dropped first; an answer bigger than an
eighth of it is not kept) and ``EOMATCH_API_CACHE_TTL`` seconds each. The lifetime matters
only with read replicas (``EOMATCH_DB_READ_HOSTS``): the snapshot and the search may then be
read on two servers, one behind the other, and the lifetime bounds how long such an answer
can lag. Answers say ``X-Eomatch-Cache: hit`` or ``miss``. It sits inside the key check and
the body guard (a request is refused or admitted exactly as before) and, on the external API,
outside the public view (what is kept is already public).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from eomatch.service.guards import route_path

__all__ = ["CACHE_HEADER", "ResponseCache", "ResponseCacheMiddleware", "cacheable_path"]

log = logging.getLogger(__name__)

CACHE_HEADER = b"x-eomatch-cache"
_SNAPSHOT_SQL = "SELECT pg_current_snapshot()::text"
_MAX_POST_BODY = 256 * 1024
"""A ``POST /search`` body bigger than this is answered but not kept (the key is made from
the whole body, so at most this much is read ahead; the body guard bounds it anyway)."""
_KEY_HEADERS = frozenset(
    {b"host", b"forwarded", b"x-forwarded-host", b"x-forwarded-proto", b"x-forwarded-port",
     b"x-forwarded-prefix", b"accept", b"content-type"}
)  # fmt: skip
"""Request headers an answer may depend on (its links' origin, its media type)."""
_DROP = frozenset({b"date", b"server", b"content-length", CACHE_HEADER})
_ENTRY_OVERHEAD = 400
"""Bytes an entry costs beyond its body, key and header bytes (the LRU's link, the entry and
its header tuples; measured ~330 on CPython 3.11): without it a flood of small answers held
three times the bound."""
_HEADER_OVERHEAD = 2 * 33 + 56
"""A header's two ``bytes`` objects and its tuple, beyond their contents."""


def cacheable_path(path: str) -> bool:
    """The read routes whose answers depend only on the request and the catalogue."""
    return path in (
        "/",
        "/conformance",
        "/queryables",
        "/search",
        "/collections",
    ) or path.startswith("/collections/")


@dataclass(frozen=True, slots=True)
class _Entry:
    status: int
    headers: tuple[tuple[bytes, bytes], ...]
    body: bytes
    stored_at: float

    def cost(self, key: bytes) -> int:
        """What keeping it under ``key`` holds in memory, roughly but never much less."""
        heads = sum(len(k) + len(v) + _HEADER_OVERHEAD for k, v in self.headers)
        return len(self.body) + len(key) + heads + _ENTRY_OVERHEAD


class ResponseCache:
    """An LRU of answers bounded in bytes, each kept at most ``ttl`` seconds."""

    def __init__(self, max_bytes: int, ttl: float) -> None:
        self.max_bytes = max_bytes
        self.max_entry = max_bytes // 8
        self.ttl = ttl
        self.size = 0
        self._entries: OrderedDict[bytes, _Entry] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: bytes) -> _Entry | None:
        """The answer kept under ``key`` (now the most recently used), or None."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        if time.monotonic() - entry.stored_at > self.ttl:
            self._drop(key)
            return None
        self._entries.move_to_end(key)
        return entry

    def put(self, key: bytes, entry: _Entry) -> bool:
        """Keep ``entry`` unless it is too big; drop the least recently used to make room."""
        cost = entry.cost(key)
        if cost > self.max_entry:
            return False
        if key in self._entries:
            self._drop(key)
        while self._entries and self.size + cost > self.max_bytes:
            self._drop(next(iter(self._entries)))
        self._entries[key] = entry
        self.size += cost
        return True

    def _drop(self, key: bytes) -> None:
        entry = self._entries.pop(key)
        self.size -= entry.cost(key)


class ResponseCacheMiddleware:
    """Serves a kept answer when the request and the database snapshot are the same."""

    def __init__(self, app: ASGIApp, max_mb: float, ttl: float) -> None:
        self.app = app
        self.cache = ResponseCache(int(max_mb * 1024 * 1024), ttl)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Look up, else run the request and keep a 200 JSON answer."""
        if scope["type"] != "http" or self.cache.max_bytes <= 0:
            await self.app(scope, receive, send)
            return
        method = scope["method"]
        path = route_path(scope)
        body = b""
        if method == "POST" and path == "/search":
            body, complete = await _read_body(receive)
            receive = _replay(body, receive, complete)
            if not complete:
                await self.app(scope, receive, send)
                return
        elif method != "GET" or not cacheable_path(path):
            await self.app(scope, receive, send)
            return
        snapshot = await _snapshot(scope)
        if snapshot is None:  # the database is away: the app answers that itself
            await self.app(scope, receive, send)
            return
        key = _key(scope, snapshot, body)
        entry = self.cache.get(key)
        if entry is not None:
            await _send_entry(entry, send)
            return
        await self._run_and_keep(scope, receive, send, key)

    async def _run_and_keep(self, scope: Scope, receive: Receive, send: Send, key: bytes) -> None:
        start: Message | None = None
        chunks: list[bytes] = []
        size = 0
        keep = True

        async def capture(message: Message) -> None:
            nonlocal start, keep, size
            if message["type"] == "http.response.start":
                headers = [(k.lower(), v) for k, v in message.get("headers", [])]
                named = dict(headers)
                keep = (
                    message["status"] == 200
                    and b"json" in named.get(b"content-type", b"")
                    and b"content-encoding" not in named
                    and b"set-cookie" not in named
                )
                start = {**message, "headers": [*headers, (CACHE_HEADER, b"miss")]}
                await send(start)
                return
            if message["type"] == "http.response.body" and keep:
                chunks.append(message.get("body", b""))
                size += len(chunks[-1])
                if size > self.cache.max_entry:
                    keep = False
                    chunks.clear()
                elif not message.get("more_body", False) and start is not None:
                    kept = tuple((k, v) for k, v in start["headers"] if k not in _DROP)
                    entry = _Entry(start["status"], kept, b"".join(chunks), time.monotonic())
                    self.cache.put(key, entry)
            await send(message)

        await self.app(scope, receive, capture)


async def _read_body(receive: Receive) -> tuple[bytes, bool]:
    """The request body if it fits :data:`_MAX_POST_BODY` (``complete``), else what was read."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks), False
        chunk = message.get("body", b"")
        chunks.append(chunk)
        size += len(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks), True
        if size > _MAX_POST_BODY:
            return b"".join(chunks), False


def _replay(body: bytes, receive: Receive, complete: bool) -> Receive:
    """A ``receive`` that hands the app what was read, then the rest of the stream."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": not complete}
        return await receive()

    return replay


async def _snapshot(scope: Scope) -> str | None:
    pool: Any = getattr(scope["app"].state, "readpool", None)
    if pool is None:
        return None
    try:
        async with pool.acquire() as conn:
            value: str = await conn.fetchval(_SNAPSHOT_SQL)
            return value
    except Exception as exc:  # any failure only means: not cached this time
        log.debug("response cache bypassed: %s", exc)
        return None


def _key(scope: Scope, snapshot: str, body: bytes) -> bytes:
    digest = hashlib.blake2b(digest_size=32)
    parts: list[bytes] = [
        snapshot.encode(),
        scope["method"].encode(),
        str(scope.get("scheme", "")).encode(),
        str(scope.get("root_path", "")).encode(),
        repr(scope.get("server")).encode(),
        scope.get("raw_path") or scope["path"].encode(),
        scope.get("query_string", b""),
    ]
    parts += sorted(
        k.lower() + b":" + v for k, v in scope.get("headers", []) if k.lower() in _KEY_HEADERS
    )
    for part in parts:
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    digest.update(body)
    return digest.digest()


async def _send_entry(entry: _Entry, send: Send) -> None:
    headers = [
        *entry.headers,
        (b"content-length", str(len(entry.body)).encode()),
        (CACHE_HEADER, b"hit"),
    ]
    await send({"type": "http.response.start", "status": entry.status, "headers": headers})
    await send({"type": "http.response.body", "body": entry.body, "more_body": False})
