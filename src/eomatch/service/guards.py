"""Request bodies checked before stac-fastapi sees them, so bad input is a 400, never a 500.

stac-fastapi-pgstac 7.2 answers some malformed bodies with a 500 (a JSON array to
``POST /search``, a missing body on PUT/POST/PATCH) and pgSTAC accepts geometries it cannot
serve back (see :mod:`eomatch.core.validation`). This ASGI middleware buffers the body of
POST/PUT/PATCH requests, refuses those cases with a JSON 400 (415 for a body that is not
declared as JSON, which FastAPI would hand to the models as bytes) and replays it otherwise.
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from eomatch.core.validation import document_problem, written_documents

MAX_BODY = 64 * 1024 * 1024


def _bad(description: str) -> JSONResponse:
    return JSONResponse({"code": "BadRequest", "description": description}, 400)


class BodyGuard:
    """Refuse write/search bodies of the wrong shape with 400."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Buffer, check, replay."""
        method = str(scope.get("method", "")).upper() if scope["type"] == "http" else ""
        if method not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > MAX_BODY:
                await _bad("request body too large")(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        ctype = _content_type(scope)
        if body.strip() and ctype and not (ctype.endswith("/json") or ctype.endswith("+json")):
            await JSONResponse(
                {"code": "UnsupportedMediaType", "description": f"send JSON, not {ctype}"}, 415
            )(scope, receive, send)
            return
        problem = _problem(method, route_path(scope).rstrip("/") or "/", body)
        if problem is not None:
            await _bad(problem)(scope, receive, send)
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


def _content_type(scope: Scope) -> str:
    for key, value in scope.get("headers", []):
        if key == b"content-type":
            return bytes(value).decode("latin-1").split(";")[0].strip().lower()
    return ""


def route_path(scope: Scope) -> str:
    """The request path without the proxy prefix (``--root-path``), as the routes see it."""
    path = str(scope.get("path", ""))
    root = str(scope.get("root_path", "") or "")
    if root and path.startswith(root):
        path = path[len(root) :]
    return "/" + path.lstrip("/")


def _problem(method: str, path: str, body: bytes) -> str | None:
    if not body.strip():
        if path == "/search":
            return None  # an empty search is a search for everything
        return "this request needs a JSON body"
    try:
        doc: Any = orjson.loads(body)
    except orjson.JSONDecodeError:
        return "the body is not valid JSON"
    if method == "PATCH":
        if not isinstance(doc, dict | list):
            return "a PATCH body must be a JSON object (merge patch) or array (JSON patch)"
    elif not isinstance(doc, dict):
        return "the body must be a JSON object"
    for written in written_documents(doc):
        problem = document_problem(written)
        if problem:
            return problem
    return None
