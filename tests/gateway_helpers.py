"""Real processes for the gateway tests: echo upstreams (stdlib HTTP servers) and free ports.

An echo upstream answers every request with JSON describing what it received (method, path
with query, the forwarding headers), so a test can see exactly what nginx passed on.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ECHOED_HEADERS = (
    "host",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-port",
    "x-forwarded-proto",
    "x-real-ip",
    "forwarded",
    "authorization",
)


DB_DOWN_TEXT = "[Errno 111] Connect call failed ('10.1.2.3', 55432)"


class _EchoHandler(BaseHTTPRequestHandler):
    server: _EchoServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        doc: dict[str, Any] = {
            "upstream": self.server.name,
            "method": self.command,
            "path": self.path,
            "body_bytes": len(body),
            "headers": {h: self.headers.get(h) for h in ECHOED_HEADERS},
        }
        if "pad=1" in self.path:  # a big, compressible answer (gzip check)
            doc["pad"] = ["matchup"] * 5000
        status = 200
        if "down=1" in self.path:  # what stac-fastapi's health check says with the DB down
            status = 503
            doc = {"status": "DOWN", "pgstac": {"message": DB_DOWN_TEXT}}
        data = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _answer


class _EchoServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, name: str) -> None:
        super().__init__(("127.0.0.1", 0), _EchoHandler)
        self.name = name


@dataclass
class Echo:
    name: str
    address: str  # host:port


@contextlib.contextmanager
def echo_upstream(name: str) -> Iterator[Echo]:
    server = _EchoServer(name)
    host, port = server.server_address[:2]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    try:
        yield Echo(name, f"{host!s}:{port}")
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@contextlib.contextmanager
def world_readable_tmpdir(prefix: str) -> Iterator[Path]:
    """A temp dir nginx's unprivileged user can traverse (pytest's tmp_path is root-only)."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def processes_mentioning(text: str) -> list[int]:
    """Pids of live processes whose command line contains ``text``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            if text in cmdline and state != "Z":
                found.append(int(entry.name))
    return found


def children_of(pid: int, wait_s: float = 5.0) -> list[int]:
    """Pids of the live direct children of ``pid`` (nginx's workers).

    Waits up to ``wait_s`` for the first one: nginx's master listens (so the gateway counts
    as started) a moment before it forks its workers; CI once looked in between.
    """
    deadline = time.monotonic() + wait_s
    while True:
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            with contextlib.suppress(OSError):
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                if int(fields[1]) == pid and fields[0] != "Z":
                    found.append(int(entry.name))
        if found or time.monotonic() >= deadline:
            return found
        time.sleep(0.02)


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def flaky_app() -> Any:
    """A stand-in API for uvicorn (``--factory``), wrapped like the real one.

    ``/boom`` answers a complete 500 and then raises, a moment later, as Starlette's error
    middleware does after its 500 (uvicorn then drops the connection, which nginx may
    already have reused); anything else answers 200 with the path, after 0.3 s if the query
    has ``slow=1`` (so it is still in flight when that connection is dropped).
    ``EOMATCH_TEST_UNWRAPPED=1`` serves it without the production wrapper.
    """
    import asyncio

    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from eomatch.service.serving import keep_connection_after_errors

    async def ok(request: Request) -> JSONResponse:
        await request.body()
        if request.query_params.get("slow") == "1":
            await asyncio.sleep(0.3)
        return JSONResponse({"path": request.url.path, "method": request.method})

    methods = ["GET", "POST", "PUT", "DELETE"]
    routes = Starlette(routes=[Route("/{rest:path}", ok, methods=methods)])

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] != "/boom":
            await routes(scope, receive, send)
            return
        body = b"Internal Server Error"
        headers = [(b"content-type", b"text/plain"), (b"content-length", b"%d" % len(body))]
        await send({"type": "http.response.start", "status": 500, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        await asyncio.sleep(0.1)  # logging a long traceback takes a while too
        raise RuntimeError("boom")

    if os.environ.get("EOMATCH_TEST_UNWRAPPED") == "1":
        return app
    return keep_connection_after_errors(app)
