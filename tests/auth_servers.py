"""Local HTTP servers that behave like providers' download and login servers (tests only).

:class:`Site` serves routes (functions of the request) and records every request with its
headers, so a test asserts on what each server *received*: which Authorization header, which
cookie, which Range. Two sites on the loopback interface count as two hosts when one is
addressed as ``127.0.0.1`` and the other as ``localhost`` (cookies and credentials are per host
name, ports aside).
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import itertools
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson


@dataclass
class Seen:
    """One request as the server received it."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    """Lower-case names."""
    form: dict[str, str]
    status: int = 0


Route = Callable[["Handler", Seen], None]


class Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _handle(self) -> None:
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        form = {k: v[0] for k, v in parse_qs(raw.decode()).items()} if raw else {}
        seen = Seen(
            self.command,
            parts.path,
            parse_qs(parts.query),
            {k.lower(): v for k, v in self.headers.items()},
            form,
        )
        site = self.server.site
        with site.lock:
            site.seen.append(seen)
        route = site.routes.get(parts.path)
        if route is None:
            self.answer(seen, 404, b"no such file")
            return
        route(self, seen)

    do_GET = _handle
    do_POST = _handle
    do_HEAD = _handle

    def answer(
        self, seen: Seen, status: int, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> None:
        seen.status = status
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def json(self, seen: Seen, status: int, doc: dict[str, Any]) -> None:
        self.answer(seen, status, orjson.dumps(doc), {"Content-Type": "application/json"})

    def redirect(self, seen: Seen, location: str, headers: dict[str, str] | None = None) -> None:
        self.answer(seen, 302, b"", {"Location": location, **(headers or {})})

    def file(self, seen: Seen, data: bytes, drop_after: int | None = None) -> None:
        """The file, honouring ``Range: bytes=N-``; ``drop_after`` hangs up after N bytes."""
        rng = seen.headers.get("range", "")
        start = int(rng[6:].split("-")[0]) if rng.startswith("bytes=") else 0
        status = 206 if start else 200
        seen.status = status
        self.send_response(status)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        if drop_after is not None:
            self.wfile.write(body[:drop_after])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, site: Site) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.site = site

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass


@dataclass
class Site:
    """A server with routes; ``host`` is the name its URL uses (127.0.0.1 or localhost)."""

    host: str = "127.0.0.1"
    routes: dict[str, Route] = field(default_factory=dict)
    seen: list[Seen] = field(default_factory=list)
    url: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def requests(self, path: str) -> list[Seen]:
        with self.lock:
            return [s for s in self.seen if s.path == path]


@contextlib.contextmanager
def serve(site: Site) -> Iterator[Site]:
    server = _Server(site)
    site.url = f"http://{site.host}:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    try:
        yield site
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def basic_of(seen: Seen) -> tuple[str, str] | None:
    """The user and password of a request's basic Authorization header."""
    value = seen.headers.get("authorization", "")
    if not value.startswith("Basic "):
        return None
    user, _, password = base64.b64decode(value[6:]).decode().partition(":")
    return user, password


@dataclass
class TokenIssuer:
    """An OAuth2 token endpoint like Keycloak's (CDSE): password and refresh-token grants.

    Tokens are ``access-N`` / ``refresh-N``; ``valid`` holds the access tokens the data server
    accepts (a test revokes one to play an expiry the client could not foresee).
    """

    username: str = "alice"
    password: str = "pa55-w0rd-secret"
    client_id: str = "cdse-public"
    expires_in: float = 600
    prefix: str = ""
    """Put in front of every token (tests search for them in files and logs)."""
    valid: set[str] = field(default_factory=set)
    refresh_tokens: set[str] = field(default_factory=set)
    grants: list[str] = field(default_factory=list)
    _counter: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def route(self, h: Handler, seen: Seen) -> None:
        form = seen.form
        if seen.method != "POST" or form.get("client_id") != self.client_id:
            h.json(seen, 400, {"error": "invalid_client"})
            return
        grant = form.get("grant_type", "")
        if grant == "password":
            ok = (form.get("username"), form.get("password")) == (self.username, self.password)
        elif grant == "refresh_token":
            ok = form.get("refresh_token") in self.refresh_tokens
        else:
            ok = False
        if not ok:
            h.json(
                seen, 401, {"error": "invalid_grant", "error_description": "Invalid credentials"}
            )
            return
        n = next(self._counter)
        self.grants.append(grant)
        access, refresh = f"{self.prefix}access-{n}", f"{self.prefix}refresh-{n}"
        self.valid.add(access)
        self.refresh_tokens.add(refresh)
        h.json(
            seen,
            200,
            {
                "access_token": access,
                "expires_in": self.expires_in,
                "refresh_token": refresh,
                "refresh_expires_in": 3600,
                "token_type": "Bearer",
            },
        )

    def bearer_ok(self, seen: Seen) -> bool:
        value = seen.headers.get("authorization", "")
        return value.startswith("Bearer ") and value[7:] in self.valid


def s3_gate(endpoint: str, requester_pays: set[str]) -> Site:
    """A gateway in front of an S3 server (moto) that enforces requester-pays like AWS: a
    request to one of those buckets without ``x-amz-request-payer: requester`` is refused
    with 403 AccessDenied. Every other request is passed through; all are recorded."""
    target = urlsplit(endpoint)

    class Gate(dict[str, Route]):
        def get(self, key: str, default: Any = None) -> Route:  # every path is routed
            return forward

    def forward(h: Handler, seen: Seen) -> None:
        bucket = seen.path.lstrip("/").split("/", 1)[0]
        if bucket in requester_pays and seen.headers.get("x-amz-request-payer") != "requester":
            body = (
                b"<?xml version='1.0' encoding='UTF-8'?><Error><Code>AccessDenied</Code>"
                b"<Message>Access Denied</Message></Error>"
            )
            h.answer(seen, 403, body, {"Content-Type": "application/xml"})
            return
        conn = http.client.HTTPConnection(target.hostname or "", target.port, timeout=10)
        try:
            headers = {k: v for k, v in h.headers.items() if k.lower() != "host"}
            conn.request(seen.method, h.path, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            seen.status = resp.status
            h.send_response(resp.status)
            for k, v in resp.getheaders():
                if k.lower() not in ("content-length", "transfer-encoding", "connection"):
                    h.send_header(k, v)
            head = seen.method == "HEAD"  # a HEAD answer's length is the object's
            h.send_header(
                "Content-Length", resp.getheader("Content-Length", "0") if head else str(len(data))
            )
            h.end_headers()
            if not head:
                h.wfile.write(data)
        finally:
            conn.close()

    return Site(routes=Gate())
