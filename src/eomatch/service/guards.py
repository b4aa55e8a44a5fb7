"""Requests checked before stac-fastapi sees them, so bad input is a 400, never a 500.

Every request's query string is measured against :mod:`eomatch.service.limits` first (a
filter's depth, the number of ids, ...). stac-fastapi-pgstac 7.2 answers some malformed
bodies with a 500 (a JSON array to ``POST /search``, a missing body on PUT/POST/PATCH) and
pgSTAC accepts geometries it cannot serve back (see :mod:`eomatch.core.validation`). This
ASGI middleware reads the body of POST/PUT/PATCH requests up to the route's limit (refusing
a declared ``Content-Length`` above it before reading anything), refuses those cases with a
JSON 400 (415 for a body that is not declared as JSON, which FastAPI would hand to the
models as bytes) and replays it otherwise. A search filter that passes the bounds is also
checked for shape (:func:`eomatch.service.limits.filter_semantics_problem`: ``POST`` filters
were not checked at all and reached pgSTAC, whose errors were 500s) and its spatial literals
as PostGIS will read them.
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from eomatch.core.validation import (
    MAX_JSON_DEPTH,
    document_problem,
    json_depth_exceeds,
    written_documents,
)
from eomatch.service import limits

MAX_BODY_DEPTH = MAX_JSON_DEPTH + 4  # a bulk body wraps its items in two levels


def _bad(description: str) -> JSONResponse:
    return JSONResponse({"code": "BadRequest", "description": description}, 400)


class BodyGuard:
    """Refuse write/search bodies of the wrong shape with 400."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Measure the query; buffer, check and replay the body."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        problem, params = limits.query_problem(bytes(scope.get("query_string", b"")))
        if problem is None:
            problem = _query_filter_problem(params)
        if problem is not None:
            await _bad(problem)(scope, receive, send)
            return
        method = str(scope.get("method", "")).upper()
        if method not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        path = route_path(scope).rstrip("/") or "/"
        limit = limits.body_limit(method, path)
        declared = _header(scope, b"content-length")
        if declared.isdigit() and int(declared) > limit:
            await _bad(f"the request body is larger than {limit} bytes")(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await _bad(f"the request body is larger than {limit} bytes")(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        ctype = _header(scope, b"content-type").split(";")[0].strip().lower()
        if body.strip() and ctype and not (ctype.endswith("/json") or ctype.endswith("+json")):
            await JSONResponse(
                {"code": "UnsupportedMediaType", "description": f"send JSON, not {ctype}"}, 415
            )(scope, receive, send)
            return
        problem = _problem(method, path, body)
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


def _header(scope: Scope, name: bytes) -> str:
    for key, value in scope.get("headers", []):
        if key == name:
            return bytes(value).decode("latin-1").strip()
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
        if path.startswith("/jobs/") and path.endswith(("/cancel", "/retry")):
            return None  # actions on a job (issue 13) take no body
        return "this request needs a JSON body"
    try:
        doc: Any = orjson.loads(body)
    except orjson.JSONDecodeError:
        return "the body is not valid JSON"
    if method == "POST" and path == "/search":
        return _search_problem(doc)  # its own bounds, cheapest first
    if json_depth_exceeds(doc, MAX_BODY_DEPTH):
        return f"the body nests deeper than {MAX_BODY_DEPTH} levels"
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


def _search_problem(doc: Any) -> str | None:
    if not isinstance(doc, dict):
        return "the body must be a JSON object"
    problem = limits.search_body_problem(doc)
    if problem is None and isinstance(doc.get("filter"), dict):
        problem = limits.filter_semantics_problem(doc["filter"])
        problem = problem and f"invalid filter: {problem}"
    return problem


def _query_filter_problem(params: dict[str, list[str]]) -> str | None:
    """A GET filter already within the bounds: parsed and checked as the API will run it."""
    filters = params.get("filter", [])
    if not filters:
        return None
    langs = params.get("filter-lang", [])
    try:
        limits.parse_filter(filters[-1], langs[-1] if langs else None)
    except ValueError as exc:
        return f"invalid filter: {exc}"
    return None
