"""The one HTTP layer for talking to servers eomatch does not control.

Provider STAC APIs, matchup APIs, GP (TLE) endpoints and download servers are untrusted: a
compromised or broken one may redirect anywhere, loop, answer forever, trickle one byte a
second, send a compression bomb or ask to be retried in an hour. Everything here is bounded:

* credentials (``Authorization``, ``headers_env`` of a source) go only to the configured
  origin (scheme, host, port): never on a redirect or ``next`` link to another origin;
  per-host credentials (:class:`HostCredentials`, downloads) go only to their own host, chosen
  again at every redirect hop, and a 401 may renew them once (an expired token);
* redirects are followed by hand, at most :attr:`HttpLimits.max_redirects`, loops refused;
* bodies are read while streaming, decompressed by us (gzip/deflate only) with a cap on the
  *decompressed* bytes, so a bomb is stopped after ``max_response_bytes``;
* every operation may carry a :class:`Deadline` (total time of a search, say), checked between
  received chunks and before each retry wait;
* one retry policy for every caller (:func:`call_with_retries`, on tenacity): transport
  errors and the answers in :data:`RETRY_STATUSES` are retried at most
  :attr:`HttpLimits.max_retries` times with exponential backoff, or after the server's
  ``Retry-After`` capped at :attr:`HttpLimits.max_retry_after_s`, never past a deadline.

Provider and matchup STAC APIs (:mod:`eomatch.io.stac_api_client`), GP endpoints
(:mod:`eomatch.io.celestrak`) and downloads (:mod:`eomatch.io.downloads`) all go through
:class:`HttpSession` and this policy. Tests inject an ``httpx`` transport or use local servers;
nothing here patches globals.
"""

from __future__ import annotations

import contextlib
import email.utils
import logging
import math
import threading
import time
import zlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar
from urllib.parse import urljoin, urlsplit

import brotli
import httpx
import orjson
import tenacity

from eomatch._version import __version__
from eomatch.errors import ConfigError, InputError, NetworkError, RemoteLimitError
from eomatch.errors import Retryable as Retryable
from eomatch.errors import TransportFailure as TransportFailure

log = logging.getLogger(__name__)
_T = TypeVar("_T")

RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
"""HTTP answers worth another attempt: timeouts, rate limiting, transient server trouble. The
one set for every caller; other answers (404, 401, ...) are final."""
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
USER_AGENT = f"eomatch/{__version__}"


@dataclass(frozen=True)
class HttpLimits:
    """Bounds on what one remote server may cost us (all documented in docs/catalogue.md).

    Attributes:
        timeout_s: seconds to connect, and allowed between two received bytes.
        max_response_bytes: largest (decompressed) body of one JSON/text answer.
        max_seconds: total time of one operation (a search with all its pages and retries).
        max_retries: further attempts after a transport error or a transient status.
        backoff_s: wait before the first retry; doubled for each further one.
        max_retry_after_s: longest ``Retry-After`` wait honoured (longer ones are capped).
        max_redirects: redirects followed per request.
        max_pages: pages of one paged search (``next`` links followed).
        max_items: items of one paged search.
    """

    timeout_s: float = 60.0
    max_response_bytes: int = 64 * 1024 * 1024
    max_seconds: float = 1800.0
    max_retries: int = 3
    backoff_s: float = 0.5
    max_retry_after_s: float = 60.0
    max_redirects: int = 5
    max_pages: int = 10_000
    max_items: int = 1_000_000

    def __post_init__(self) -> None:
        for name in ("timeout_s", "max_seconds", "max_retry_after_s"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and value > 0 and math.isfinite(value)):
                raise ConfigError(f"HTTP limit {name} must be a positive number, got {value!r}")
        for name in ("max_response_bytes", "max_pages", "max_items"):
            if getattr(self, name) < 1:
                raise ConfigError(f"HTTP limit {name} must be at least 1")
        if self.max_retries < 0 or self.max_redirects < 0 or self.backoff_s < 0:
            raise ConfigError("HTTP limits max_retries, max_redirects, backoff_s must be >= 0")


Origin = tuple[str, str, int]


def origin(url: str) -> Origin:
    """``(scheme, host, port)`` of a URL, with the scheme's default port filled in."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:
        port = None
    if port is None:
        port = {"http": 80, "https": 443}.get(scheme, 0)
    return scheme, (parts.hostname or "").lower(), port


class Deadline:
    """The end of the time allowed for one operation (monotonic clock)."""

    def __init__(self, seconds: float, what: str) -> None:
        self.seconds = seconds
        self.what = what
        self.end = time.monotonic() + seconds

    def remaining(self) -> float:
        """Seconds left (negative once passed)."""
        return self.end - time.monotonic()

    def check(self) -> None:
        """Raise :class:`RemoteLimitError` once the time is up."""
        if self.remaining() <= 0:
            raise RemoteLimitError(
                f"{self.what} took longer than the {self.seconds:g} s allowed (limit "
                "max_seconds); the server is too slow or never finishes"
            )

    def sleep(self, seconds: float) -> None:
        """Wait ``seconds``, or fail at once (after waiting out the rest) if that outlasts us."""
        if seconds >= self.remaining():
            time.sleep(max(0.0, self.remaining()))
            self.check()
        time.sleep(seconds)


RETRIED_ERRORS: tuple[type[Exception], ...] = (httpx.TransportError, httpx.DecodingError, Retryable)
"""What :func:`call_with_retries` tries again: no answer (refused, reset, timed out, dropped
mid-body) or a :class:`Retryable` outcome."""


@dataclass
class Answer:
    """A complete, bounded HTTP answer."""

    status: int
    reason: str
    headers: httpx.Headers
    url: str
    content: bytes

    @property
    def text(self) -> str:
        """The body as text (UTF-8 unless the server says otherwise; bad bytes replaced)."""
        charset = "utf-8"
        ctype = self.headers.get("Content-Type", "")
        for part in ctype.split(";")[1:]:
            key, _, value = part.strip().partition("=")
            if key.lower() == "charset" and value:
                charset = value.strip('"')
        try:
            return self.content.decode(charset, errors="replace")
        except LookupError:
            return self.content.decode("utf-8", errors="replace")

    def json(self) -> Any:
        """The body parsed as JSON.

        Raises:
            ValueError: not JSON.
        """
        return orjson.loads(self.content)


class HostCredentials(Protocol):
    """Secret headers chosen per request URL (:class:`eomatch.io.credentials.CredentialStore`)."""

    def headers_for(self, url: str, start: str) -> dict[str, str]:
        """Headers for a hop to ``url`` of a request that started at ``start``."""
        ...

    def refused(self, url: str, sent: Mapping[str, str]) -> bool:
        """``url`` answered 401 to ``sent``: True when renewed headers deserve one more try."""
        ...


def redact(url: str) -> str:
    """``url`` without user info, query and fragment (signed URLs carry secrets there)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    query = "?…" if parts.query else ""
    return f"{parts.scheme}://{host}{parts.path}{query}"


def _one_line(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text.splitlines()[0]}"[:300]


class _Decoder:
    """Content-Encoding decoding with a hard cap on the bytes it produces."""

    def __init__(self, encoding: str, limit: int, url: str) -> None:
        codings = [c.strip().lower() for c in encoding.split(",") if c.strip()]
        codings = [c for c in codings if c != "identity"]
        if len(codings) > 1:
            raise RemoteLimitError(f"{url}: stacked Content-Encoding {encoding!r} refused")
        self.coding = codings[0] if codings else ""
        if self.coding in ("gzip", "x-gzip"):
            self._obj: Any = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif self.coding == "deflate":
            self._obj = zlib.decompressobj()
        elif self.coding == "br":
            self._obj = brotli.Decompressor()
        elif self.coding:
            raise RemoteLimitError(f"{url}: unsupported Content-Encoding {encoding!r}")
        self.limit = limit
        self.url = url
        self.total = 0
        self._first = True

    def _count(self, data: bytes) -> bytes:
        self.total += len(data)
        if self.total > self.limit:
            raise RemoteLimitError(
                f"{self.url}: the answer is larger than {self.limit} bytes"
                f"{' (decompressed)' if self.coding else ''} (limit max_response_bytes)"
            )
        return data

    def feed(self, data: bytes) -> bytes:
        return b"".join(self.steps(data))

    def steps(self, data: bytes) -> Iterator[bytes]:
        """What ``data`` decodes to, in steps of ~1 MB, at most ~2 MB (a bomb is never whole in
        memory: each step is counted against the cap as it is made)."""
        if not self.coding:
            yield self._count(data)
        elif self.coding == "br":
            yield from self._brotli_steps(data)
        else:
            yield from self._zlib_steps(data)

    def _zlib_steps(self, data: bytes) -> Iterator[bytes]:
        buf = data
        while buf:
            room = max(1, min(self.limit - self.total + 1, 1 << 20))
            try:
                chunk = self._obj.decompress(buf, room)
            except zlib.error as exc:
                if self.coding == "deflate" and self._first:  # raw deflate, no zlib header
                    self._obj = zlib.decompressobj(-zlib.MAX_WBITS)
                    self._first = False
                    continue
                raise NetworkError(f"{self.url}: corrupt {self.coding} body ({exc})") from None
            self._first = False
            yield self._count(chunk)
            buf = self._obj.unconsumed_tail
            if self._obj.eof and self._obj.unused_data:  # another gzip member follows
                buf = self._obj.unused_data
                self._obj = zlib.decompressobj(16 + zlib.MAX_WBITS)
            elif not chunk and not buf:
                break

    def _brotli_steps(self, data: bytes) -> Iterator[bytes]:
        """Brotli output in bounded steps (``output_buffer_limit``): a bomb stops at the cap."""
        buf = data
        while True:
            room = max(1, min(self.limit - self.total + 1, 1 << 20))
            try:
                chunk = self._obj.process(buf, output_buffer_limit=room)
            except brotli.error as exc:
                raise NetworkError(f"{self.url}: corrupt br body ({exc})") from None
            yield self._count(chunk)
            buf = b""  # what was not consumed is held by the decompressor
            # a full buffer may leave output behind; so may a decompressor refusing input
            # (an empty step means nothing is left: never loop on a finished stream)
            if not chunk or (len(chunk) < room and self._obj.can_accept_more_data()):
                return

    def flush(self) -> bytes:
        if self.coding == "br":
            tail = self.feed(b"")
            if not self._obj.is_finished():
                raise NetworkError(f"{self.url}: truncated br body")
            return tail
        return self._count(self._obj.flush()) if self.coding else b""


def decoded_chunks(response: httpx.Response, limit: int) -> Iterator[bytes]:
    """The body of a streamed response, Content-Encoding decoded in steps of at most ~2 MB,
    with :class:`~eomatch.errors.RemoteLimitError` past ``limit`` decoded bytes. httpx's
    own decoding (``iter_bytes``) has no cap: one chunk of a br bomb becomes gigabytes."""
    decoder = _Decoder(response.headers.get("Content-Encoding", ""), limit, str(response.url))
    for raw in response.iter_raw():
        yield from (step for step in decoder.steps(raw) if step)
    tail = decoder.flush()
    if tail:
        yield tail


@contextlib.contextmanager
def open_following(
    client: httpx.Client,
    method: str,
    url: str,
    *,
    json: Any = None,
    data: Mapping[str, str] | None = None,
    params: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
    credentials: Mapping[str, str] | None = None,
    credential_origin: Origin | None = None,
    auth: HostCredentials | None = None,
    max_redirects: int = 5,
    timeout: Callable[[], httpx.Timeout] | None = None,
    deadline: Deadline | None = None,
    on_send: Callable[[], None] | None = None,
) -> Iterator[httpx.Response]:
    """A streamed request on a client that does not follow redirects; they are followed here.

    ``credentials`` are added only to hops whose origin is ``credential_origin`` (default: the
    origin of ``url``), so a redirect to another host, port or scheme never carries them.
    ``auth`` adds each hop's own per-host headers; a 401 to them is asked about once
    (:meth:`HostCredentials.refused`) and the hop repeated with renewed ones. Cookies the
    servers set stay in the client's jar and go back to their own hosts on later hops.
    303 (and 301/302 after a POST) continue as GET without a body, as browsers do.

    Raises:
        RemoteLimitError: more than ``max_redirects`` redirects, a redirect loop, or a
            redirect to a scheme other than http(s).
    """
    home = credential_origin or origin(url)
    seen: set[tuple[str, str, str]] = set()
    body, form = json, data
    first = url
    for hop in range(max_redirects + 1):
        renewed = False
        while True:
            if deadline is not None:
                deadline.check()
            hop_headers = dict(headers or {})
            if credentials and origin(url) == home:
                hop_headers.update(credentials)
            secret = auth.headers_for(url, first) if auth is not None else {}
            hop_headers.update(secret)
            request = client.build_request(
                method,
                url,
                json=body,
                data=form,
                params=params if hop == 0 else None,
                headers=hop_headers,
                timeout=timeout() if timeout is not None else httpx.USE_CLIENT_DEFAULT,
            )
            # a return to a URL with new cookies is a login dance (EarthData), not a loop
            key = (method, str(request.url), request.headers.get("Cookie", ""))
            if key in seen and not renewed:
                raise RemoteLimitError(f"{redact(first)}: redirect loop at {redact(url)}")
            seen.add(key)
            if on_send is not None:
                on_send()
            response = client.send(request, stream=True)
            if (
                response.status_code == 401
                and secret
                and not renewed
                and auth is not None
                and auth.refused(url, secret)
            ):
                response.close()
                renewed = True
                log.info(
                    "%s refused the credentials; trying once more with renewed ones", redact(url)
                )
                continue
            break
        location = response.headers.get("Location")
        if response.status_code not in REDIRECT_STATUSES or not location:
            try:
                yield response
            finally:
                response.close()
            return
        response.close()
        nxt = urljoin(str(request.url), location)
        if urlsplit(nxt).scheme.lower() not in ("http", "https"):
            raise RemoteLimitError(f"{first}: redirect to a non-http(s) URL refused")
        if response.status_code == 303 or (response.status_code in (301, 302) and method == "POST"):
            method, body, form = "GET", None, None
        log.debug("%s redirects to %s", redact(str(request.url)), redact(nxt))
        url = nxt
    raise RemoteLimitError(f"{first}: more than {max_redirects} redirects (limit max_redirects)")


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds a ``Retry-After`` header asks for (delta seconds or an HTTP date), or None."""
    if not value:
        return None
    text = value.strip()
    if text.isascii() and text.isdigit():  # not "²": str.isdigit is wider than float()
        return float(text)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


class _WaitRetryAfter(tenacity.wait.wait_base):
    """Exponential backoff, or what the server's ``Retry-After`` asks (capped)."""

    def __init__(self, limits: HttpLimits) -> None:
        self.backoff = tenacity.wait_exponential(multiplier=limits.backoff_s, exp_base=2)
        self.cap = limits.max_retry_after_s

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        outcome = retry_state.outcome
        failure = outcome.exception() if outcome is not None else None
        asked = retry_after_seconds(failure.retry_after) if isinstance(failure, Retryable) else None
        if asked is not None:
            return min(asked, self.cap)
        return float(self.backoff(retry_state))


def _reason(exc: BaseException | None) -> str:
    if isinstance(exc, Retryable):
        return exc.reason
    return _one_line(exc) if exc is not None else "failed"


def call_with_retries(
    attempt: Callable[[bool], _T],
    limits: HttpLimits,
    *,
    what: str,
    deadline: Deadline | None = None,
) -> _T:
    """The retry policy of every remote call: ``attempt(last)`` until it succeeds or gives up.

    ``attempt`` is called at most ``limits.max_retries + 1`` times; ``last`` tells it this is
    the final try (so it can return a transient answer instead of raising). It asks for
    another try by raising one of :data:`RETRIED_ERRORS`; the n-th retry waits
    ``limits.backoff_s * 2**(n-1)`` s, or the :class:`Retryable`'s ``Retry-After`` capped at
    ``limits.max_retry_after_s``. Anything else it raises ends the call at once.

    Raises:
        RemoteLimitError: ``deadline`` passed, or a wait would outlast it.
        Exception: the last attempt's failure, as raised (a :data:`RETRIED_ERRORS` member).
    """
    attempts = limits.max_retries + 1
    count = 0

    def once() -> _T:
        nonlocal count
        count += 1
        try:
            return attempt(count == attempts)
        except (httpx.TransportError, httpx.DecodingError):
            if deadline is not None:  # a timeout cut short by the deadline is the deadline's
                deadline.check()
            raise

    def note(state: tenacity.RetryCallState) -> None:
        failure = state.outcome.exception() if state.outcome is not None else None
        wait = state.next_action.sleep if state.next_action is not None else 0.0
        log.info("%s: %s; retrying in %.1f s", what, _reason(failure), wait)

    retrying = tenacity.Retrying(
        stop=tenacity.stop_after_attempt(attempts),
        wait=_WaitRetryAfter(limits),
        retry=tenacity.retry_if_exception_type(RETRIED_ERRORS),
        sleep=deadline.sleep if deadline is not None else time.sleep,
        before_sleep=note,
        reraise=True,
    )
    return retrying(once)


class HttpSession:
    """One keep-alive client with bounded requests; credentials for one origin only.

    Args:
        base_url: the configured URL; its origin is the only one credentials are sent to.
            ``None`` (downloads, one session for many servers): the origin of each request's
            own URL, never that of a redirect target.
        credentials: secret headers (``Authorization``, API keys) for that origin only.
        auth: per-host credentials (downloads), chosen again at every redirect hop.
        headers: other headers, sent everywhere (``Accept``).
        limits: the bounds; see :class:`HttpLimits`.
        transport: an ``httpx`` transport (tests); the network by default.
        max_connections: connection pool size (concurrent requests).
    """

    def __init__(
        self,
        base_url: str | None,
        *,
        credentials: Mapping[str, str] | None = None,
        auth: HostCredentials | None = None,
        headers: Mapping[str, str] | None = None,
        limits: HttpLimits | None = None,
        transport: httpx.BaseTransport | None = None,
        max_connections: int = 16,
    ) -> None:
        self.base_url = base_url
        self.origin = origin(base_url) if base_url is not None else None
        self.credentials = dict(credentials or {})
        self.auth = auth
        self.limits = limits or HttpLimits()
        self.requests = 0
        """Requests sent (every attempt and redirect hop)."""
        self._count_lock = threading.Lock()  # sessions are shared by worker threads
        # br first: a STAC API (eomatch's, stac-fastapi's) compresses it for a quarter of the
        # CPU of its gzip, and it decodes faster (docs/service.md, "Compression")
        base_headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "br, gzip, deflate"}
        base_headers.update(headers or {})
        self._client = httpx.Client(
            headers=base_headers,
            timeout=httpx.Timeout(self.limits.timeout_s),
            follow_redirects=False,
            transport=transport,
            limits=httpx.Limits(
                max_connections=max_connections, max_keepalive_connections=max_connections
            ),
        )

    def close(self) -> None:
        """Close the connections."""
        self._client.close()

    def __enter__(self) -> HttpSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- one request, redirects followed by hand -------------------------------------------

    def _timeout(self, deadline: Deadline | None) -> httpx.Timeout:
        t = self.limits.timeout_s
        if deadline is not None:
            t = max(0.001, min(t, deadline.remaining()))
        return httpx.Timeout(t)

    @contextlib.contextmanager
    def open(
        self,
        method: str,
        url: str,
        *,
        json: Any = None,
        data: Mapping[str, str] | None = None,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        deadline: Deadline | None = None,
    ) -> Iterator[httpx.Response]:
        """One streamed request (no retries), redirects followed by hand within the limits.

        Credentials go only to hops on the configured origin. The response body is not read.

        Raises:
            RemoteLimitError: too many redirects, a redirect loop, or a redirect to a scheme
                other than http(s).
            httpx.HTTPError: transport problems (the caller decides on retries).
        """

        def count() -> None:
            with self._count_lock:
                self.requests += 1

        with open_following(
            self._client,
            method,
            url,
            json=json,
            data=data,
            params=params,
            headers=headers,
            credentials=self.credentials,
            credential_origin=self.origin,
            auth=self.auth,
            max_redirects=self.limits.max_redirects,
            timeout=lambda: self._timeout(deadline),
            deadline=deadline,
            on_send=count,
        ) as response:
            yield response

    def _read(self, response: httpx.Response, deadline: Deadline | None) -> bytes:
        url = str(response.request.url)
        limit = self.limits.max_response_bytes
        length = response.headers.get("Content-Length", "")
        if (
            length.isdigit()
            and not response.headers.get("Content-Encoding")
            and int(length) > limit
        ):
            raise RemoteLimitError(
                f"{url}: the answer is larger than {limit} bytes (limit max_response_bytes)"
            )
        decoder = _Decoder(response.headers.get("Content-Encoding", ""), limit, url)
        parts: list[bytes] = []
        if response.is_stream_consumed:  # an in-memory response (injected transport)
            return decoder.feed(response.content) + decoder.flush()
        for chunk in response.iter_raw():  # as received: no chunker holding bytes back
            parts.append(decoder.feed(chunk))
            if deadline is not None:
                deadline.check()
        parts.append(decoder.flush())
        return b"".join(parts)

    # -- complete answers, with retries ------------------------------------------------------

    def request(
        self,
        method: str,
        url: str,
        *,
        json: Any = None,
        data: Mapping[str, str] | None = None,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        deadline: Deadline | None = None,
    ) -> Answer:
        """A complete answer (body read within the limits), retried by :func:`call_with_retries`.

        The last answer is returned even when its status is an error (also after the retries
        for a transient one ran out): the caller words the message.

        Raises:
            TransportFailure: no answer after every attempt.
            RemoteLimitError: a bound was exceeded (not retried).
        """

        def attempt(last: bool) -> Answer:
            with self.open(
                method,
                url,
                json=json,
                data=data,
                params=params,
                headers=headers,
                deadline=deadline,
            ) as resp:
                if resp.status_code in RETRY_STATUSES and not last:  # body not read
                    raise Retryable(
                        f"HTTP {resp.status_code} {resp.reason_phrase}".rstrip(),
                        resp.headers.get("Retry-After"),
                    )
                content = self._read(resp, deadline)
                return Answer(
                    resp.status_code,
                    resp.reason_phrase,
                    resp.headers,
                    str(resp.request.url),
                    content,
                )

        try:
            return call_with_retries(attempt, self.limits, what=url, deadline=deadline)
        except (httpx.TransportError, httpx.DecodingError) as exc:
            raise TransportFailure(
                url,
                _one_line(exc),
                self.limits.max_retries + 1,
                timed_out=isinstance(exc, httpx.TimeoutException),
            ) from None
        except httpx.InvalidURL as exc:
            raise InputError(f"invalid URL {url!r}: {exc}") from None


__all__ = [
    "RETRIED_ERRORS",
    "RETRY_STATUSES",
    "Answer",
    "Deadline",
    "HttpLimits",
    "HostCredentials",
    "HttpSession",
    "Retryable",
    "TransportFailure",
    "USER_AGENT",
    "call_with_retries",
    "decoded_chunks",
    "open_following",
    "origin",
    "redact",
    "retry_after_seconds",
]
