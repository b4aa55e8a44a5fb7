"""Bounds on what one request may ask the API to do, checked before any of the work (pure).

A GET search whose CQL2 filter nested ``NOT`` 100 times made cql2's validation take 1.8 GB
(its JSON-schema check grows by ~10 MB a ``NOT`` and ~20 MB a nested function call), and
pgSTAC's recursive SQL translation has no bound either. Every request is therefore measured
first, cheaply and linearly, and refused with a reason when it is too big:

* the query string and the body (a limit per route: a search needs far less than a bulk
  write), before they are read in full;
* a filter: its length, and its nesting depth (groups, ``NOT``, function calls, arrays) and
  number of ``AND``/``OR`` terms, counted on cql2-text by a scan of its tokens (strings
  skipped) before any parser sees it, and on cql2-json by an iterative walk;
* the number of ``ids``, ``collections``, ``sortby`` and ``fields`` entries, and the
  vertices of a search geometry (``intersects`` or a spatial literal in a filter), which must
  also be a geometry PostGIS accepts.

The figures are generous for real searches (eomatch's own client sends 1000 ids per search)
and documented in docs/service.md.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl

import orjson
from cql2 import Expr

from eomatch.core.validation import (
    GEOMETRY_TYPES,
    geometry_problem,
    json_depth_exceeds,
    vertex_count,
)

KiB = 1024
MiB = 1024 * KiB

MAX_QUERY_STRING = 16 * KiB
MAX_FILTER_LENGTH = 16 * KiB
MAX_FILTER_DEPTH = 8
MAX_FUNCTION_DEPTH = 3
MAX_BOOLEAN_TERMS = 100
MAX_IDS = 1000
MAX_COLLECTIONS = 1000
MAX_SORTBY = 16
MAX_FIELDS = 256
MAX_VERTICES = 10_000
MAX_GEOMETRY_BYTES = 64 * MAX_VERTICES  # a position in JSON takes well under 64 bytes
MAX_SEARCH_JSON_DEPTH = 32

SEARCH_BODY = 2 * MiB
DOCUMENT_BODY = 16 * MiB
BULK_BODY = 64 * MiB
OTHER_BODY = 1 * MiB

BOOLEAN_OPS = frozenset({"and", "or"})
# cql2-json operators that are not function calls (their nesting costs as much as any node)
OPERATORS = frozenset(
    {"and", "or", "not", "=", "<>", "<", "<=", ">", ">=", "like", "between", "in", "isnull"}
    | {"+", "-", "*", "/", "%", "^", "div"}
)
_WKT = frozenset(
    {
        "POINT",
        "LINESTRING",
        "POLYGON",
        "MULTIPOINT",
        "MULTILINESTRING",
        "MULTIPOLYGON",
        "GEOMETRYCOLLECTION",
        "BBOX",
        "ENVELOPE",
    }
)
_WKT_SUFFIX = frozenset({"Z", "M", "ZM"})
_KEYWORDS = frozenset(
    {"AND", "OR", "NOT", "IN", "LIKE", "BETWEEN", "IS", "NULL", "TRUE", "FALSE", "DIV"}
)
_TOKEN = re.compile(
    r"""'(?:[^']|'')*'"""  # a string literal ('' escapes a quote)
    r'''|"(?:[^"]|"")*"'''  # a quoted identifier
    r"|[A-Za-z_][A-Za-z0-9_.:]*"  # a word: keyword, identifier, function name
    r"|[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"  # a number
    r"|\S"  # any other single character
)
_NUMBER_START = frozenset("0123456789+-.")


def text_filter_problem(text: str) -> str | None:
    """Why a cql2-text filter is too costly to parse (None: it is within the bounds).

    One pass over its tokens: group and array parentheses and ``NOT`` add nesting, a
    parenthesis after a name opens a function call, a parenthesis after a WKT keyword opens
    a geometry literal (whose parentheses and numbers are counted as vertices instead).
    """
    if len(text) > MAX_FILTER_LENGTH:
        return f"the filter is longer than {MAX_FILTER_LENGTH} characters"
    levels: list[tuple[str, int]] = []  # (kind, NOTs at that level) of every open parenthesis
    depth = functions = nots = terms = numbers = 0
    geometry_depth = 0  # open parentheses inside a geometry literal
    previous = ""
    wkt = False  # the last words were a WKT keyword (and a Z/M suffix): "(" opens a geometry
    for match in _TOKEN.finditer(text):
        token = match.group()
        upper = token.upper()
        if geometry_depth:
            if token == "(":
                geometry_depth += 1
                if geometry_depth > 5:
                    return "a geometry literal in the filter nests too deeply"
            elif token == ")":
                geometry_depth -= 1
            elif token[0] in _NUMBER_START:
                numbers += 1
                if numbers > 3 * MAX_VERTICES:
                    return f"the filter's geometries have more than {MAX_VERTICES} vertices"
            previous = upper
            continue
        if token == "(" and wkt:
            geometry_depth, wkt, previous = 1, False, upper
            continue
        wkt = upper in _WKT or (wkt and upper in _WKT_SUFFIX)
        if token == "(":
            is_call = bool(previous) and (previous[0].isalpha() or previous[0] in '_"')
            kind = "call" if is_call and previous not in _KEYWORDS else "group"
            levels.append((kind, 0))
            depth += 1
            functions += kind == "call"
            if functions > MAX_FUNCTION_DEPTH:
                return f"the filter nests function calls deeper than {MAX_FUNCTION_DEPTH}"
        elif token == ")":
            if levels:
                kind, level_nots = levels.pop()
                depth -= 1 + level_nots
                functions -= kind == "call"
        elif upper == "NOT":
            depth += 1
            if levels:
                kind, level_nots = levels[-1]
                levels[-1] = (kind, level_nots + 1)
            else:
                nots += 1
        elif upper in ("AND", "OR"):
            # NOT binds tighter than AND/OR: the NOTs before it do not nest what follows
            if levels:
                kind, level_nots = levels[-1]
                levels[-1] = (kind, 0)
            else:
                level_nots, nots = nots, 0
            depth -= level_nots
            terms += 1
            if terms > MAX_BOOLEAN_TERMS:
                return f"the filter has more than {MAX_BOOLEAN_TERMS} AND/OR terms"
        if depth > MAX_FILTER_DEPTH:
            return f"the filter nests deeper than {MAX_FILTER_DEPTH} levels"
        previous = upper
    return None


def json_filter_problem(doc: Any) -> str | None:
    """Why a cql2-json filter is too costly or cannot be run (None: within the bounds).

    An iterative walk: operator objects and array literals add nesting, operators other
    than the logical/comparison/arithmetic ones count as function calls, and every
    GeoJSON or ``bbox`` literal must be one PostGIS accepts, within the vertex limit.
    """
    if json_depth_exceeds(doc, MAX_SEARCH_JSON_DEPTH):
        return f"the filter nests deeper than {MAX_SEARCH_JSON_DEPTH} JSON levels"
    # (node, expression depth, function depth)
    stack: list[tuple[Any, int, int]] = [(doc, 0, 0)]
    terms = vertices = 0
    while stack:
        node, depth, functions = stack.pop()
        if isinstance(node, list):
            depth += 1
            children: list[Any] = node
        elif isinstance(node, dict):
            if node.get("type") in GEOMETRY_TYPES:
                vertices += vertex_count(node, MAX_VERTICES)
                if vertices > MAX_VERTICES:
                    return f"the filter's geometries have more than {MAX_VERTICES} vertices"
                problem = geometry_problem(node, strict=True)
                if problem:
                    return f"invalid geometry in the filter: {problem}"
                continue
            if "bbox" in node and not _bbox_ok(node["bbox"]):
                return "a bbox in the filter must be 4 or 6 finite numbers"
            op = node.get("op")
            if isinstance(op, str):
                depth += 1
                if op.lower() not in OPERATORS:
                    functions += 1
                if op.lower() in BOOLEAN_OPS and isinstance(node.get("args"), list):
                    terms += max(0, len(node["args"]) - 1)
            elif isinstance(node.get("function"), dict):
                depth += 1
                functions += 1
            args = node.get("args")
            children = [v for k, v in node.items() if k != "args"]
            if isinstance(args, list):
                stack.extend((a, depth, functions) for a in args)
        else:
            continue
        if depth > MAX_FILTER_DEPTH:
            return f"the filter nests deeper than {MAX_FILTER_DEPTH} levels"
        if functions > MAX_FUNCTION_DEPTH:
            return f"the filter nests function calls deeper than {MAX_FUNCTION_DEPTH}"
        if terms > MAX_BOOLEAN_TERMS:
            return f"the filter has more than {MAX_BOOLEAN_TERMS} AND/OR terms"
        stack.extend((c, depth, functions) for c in children if isinstance(c, dict | list))
    return None


LOGICAL = {"and": (2, None), "or": (2, None), "not": (1, 1)}
ARITY: dict[str, tuple[int, int | None]] = {
    **LOGICAL,
    **{op: (2, 2) for op in ("=", "<>", "<", ">", "<=", ">=", "like", "in")},
    "between": (3, 3),
    "isnull": (1, 1),
    **{op: (2, 2) for op in ("+", "-", "*", "/", "%", "^", "div")},
    **{op: (1, 1) for op in ("casei", "accenti")},
    **{
        f"s_{name}": (2, 2)
        for name in (
            "intersects",
            "equals",
            "disjoint",
            "touches",
            "within",
            "overlaps",
            "crosses",
            "contains",
        )
    },
    **{
        f"t_{name}": (2, 2)
        for name in (
            "after",
            "before",
            "contains",
            "disjoint",
            "during",
            "equals",
            "finishedby",
            "finishes",
            "intersects",
            "meets",
            "metby",
            "overlappedby",
            "overlaps",
            "startedby",
            "starts",
        )
    },
    **{f"a_{name}": (2, 2) for name in ("equals", "contains", "containedby", "overlaps")},
}
NOT_BOOLEAN = frozenset({"+", "-", "*", "/", "%", "^", "div", "casei", "accenti"})


def _boolean_problem(node: Any, where: str) -> str | None:
    if isinstance(node, bool):
        return None
    op = node.get("op") if isinstance(node, dict) else None
    if not isinstance(op, str) or op.lower() in NOT_BOOLEAN:
        return f"{where} must be a boolean expression (a comparison, AND/OR/NOT, a predicate)"
    return None


def filter_semantics_problem(doc: Any) -> str | None:
    """What cql2's JSON-schema check caught, checked linearly (None: runnable as far as we know).

    cql2's ``validate()`` costs exponential time on some invalid filters (a 70-character
    ``IN`` list of ``IS NULL`` tests took 10-19 s) and its memory grows ~10 MB a nesting
    level, so the API checks the shape itself: a boolean expression at the top and under
    AND/OR/NOT, the arity of every standard operator, ``IN`` with a list, property names as
    strings. What pgSTAC still refuses (types, unknown functions) is a 400 from its error.
    Call after :func:`json_filter_problem` (which bounds the depth).
    """
    problem = _boolean_problem(doc, "the filter")
    if problem:
        return problem
    stack: list[Any] = [doc]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(node)
            continue
        if not isinstance(node, dict):
            continue
        if "property" in node and not isinstance(node["property"], str):
            return "a property name must be a string"
        op = node.get("op")
        if op is None:
            continue  # a literal object (timestamp, interval, geometry, bbox)
        if not isinstance(op, str):
            return "an operator name must be a string"
        args = node.get("args")
        if not isinstance(args, list):
            return f"the arguments of {op!r} must be a list"
        name = op.lower()
        low, high = ARITY.get(name, (0, None))
        if len(args) < low or (high is not None and len(args) > high):
            wanted = str(low) if low == high else f"at least {low}"
            return f"{op!r} takes {wanted} argument(s), not {len(args)}"
        if name in LOGICAL:
            for arg in args:
                problem = _boolean_problem(arg, f"an argument of {op!r}")
                if problem:
                    return problem
        if name == "in" and not isinstance(args[1], list):
            return "the second argument of 'in' must be a list"
        stack.extend(args)
    return None


def parse_filter(text: str, lang: str | None) -> Any:
    """A GET ``filter`` as cql2-json; ValueError (one line) if it cannot be parsed or run.

    cql2-text is parsed by cql2 (cheap: the bounds were checked first) but not put through
    its ``validate()``; see :func:`filter_semantics_problem`.
    """
    problem = text_filter_problem(text) if lang in (None, "cql2-text") else None
    if problem:
        raise ValueError(problem)
    try:
        doc = Expr(text).to_json() if lang in (None, "cql2-text") else orjson.loads(text)
    except Exception as exc:  # cql2 raises bare Exceptions; orjson JSONDecodeError
        raise ValueError((str(exc).splitlines() or ["cannot be parsed"])[0][:300]) from None
    problem = json_filter_problem(doc) or filter_semantics_problem(doc)
    if problem:
        raise ValueError(problem)
    return doc


def _bbox_ok(bbox: Any) -> bool:
    return (
        isinstance(bbox, list)
        and len(bbox) in (4, 6)
        and all(type(v) in (int, float) for v in bbox)
    )


def geometry_param_problem(geometry: Any, name: str = "intersects") -> str | None:
    """Why a search geometry cannot be used (None: it can)."""
    if not isinstance(geometry, dict):
        return f"{name} must be a GeoJSON geometry object"
    if vertex_count(geometry, MAX_VERTICES) > MAX_VERTICES:
        return f"the {name} geometry has more than {MAX_VERTICES} vertices"
    problem = geometry_problem(geometry, strict=True)
    if problem:
        return f"invalid {name} geometry: {problem}"
    return None


def _count_problem(name: str, count: int, limit: int) -> str | None:
    return f"at most {limit} {name} per request, not {count}" if count > limit else None


def search_body_problem(body: Any) -> str | None:
    """Why a ``POST /search`` body is too costly (None: within the bounds).

    The cheapest checks first (list lengths, encoded sizes), so a huge body is refused
    before anything walks it.
    """
    if not isinstance(body, dict):
        return None  # the shape errors are the caller's (and stac-fastapi's) to report
    for name, limit in (("ids", MAX_IDS), ("collections", MAX_COLLECTIONS)):
        value = body.get(name)
        if isinstance(value, list):
            problem = _count_problem(name, len(value), limit)
            if problem:
                return problem
    sortby = body.get("sortby")
    if isinstance(sortby, list) and len(sortby) > MAX_SORTBY:
        return _count_problem("sortby fields", len(sortby), MAX_SORTBY)
    fields = body.get("fields")
    if isinstance(fields, dict):
        listed = sum(len(v) for v in fields.values() if isinstance(v, list))
        problem = _count_problem("fields", listed, MAX_FIELDS)
        if problem:
            return problem
    flt = body.get("filter")
    too_long = flt is not None and len(_json_size_hint(flt)) > MAX_FILTER_LENGTH
    if too_long and not isinstance(flt, str):
        return f"the filter is longer than {MAX_FILTER_LENGTH} characters"
    geometry = body.get("intersects")
    if geometry is not None and len(_json_size_hint(geometry)) > MAX_GEOMETRY_BYTES:
        return f"the intersects geometry is larger than {MAX_GEOMETRY_BYTES} bytes"
    if json_depth_exceeds(body, MAX_SEARCH_JSON_DEPTH + 4):
        return f"the search nests deeper than {MAX_SEARCH_JSON_DEPTH} JSON levels"
    if geometry is not None:
        problem = geometry_param_problem(geometry)
        if problem:
            return problem
    if isinstance(flt, str):
        return text_filter_problem(flt)
    if flt is not None:
        return json_filter_problem(flt)
    return None


def _json_size_hint(doc: Any) -> bytes:
    try:
        return orjson.dumps(doc)
    except TypeError:
        return b""


def query_problem(query_string: bytes) -> tuple[str | None, dict[str, list[str]]]:
    """Why a query string is too costly (None: within the bounds), and its parameters."""
    if len(query_string) > MAX_QUERY_STRING:
        return f"the query string is longer than {MAX_QUERY_STRING} bytes", {}
    params: dict[str, list[str]] = {}
    for key, value in parse_qsl(query_string.decode("latin-1"), keep_blank_values=True):
        params.setdefault(key, []).append(value)
    for name, limit in (("ids", MAX_IDS), ("collections", MAX_COLLECTIONS)):
        count = sum(len(v.split(",")) for v in params.get(name, []))
        problem = _count_problem(name, count, limit)
        if problem:
            return problem, params
    sortby = sum(len(v.split(",")) for v in params.get("sortby", []))
    if sortby > MAX_SORTBY:
        return _count_problem("sortby fields", sortby, MAX_SORTBY), params
    fields = sum(len(v.split(",")) for v in params.get("fields", []))
    if fields > MAX_FIELDS:
        return _count_problem("fields", fields, MAX_FIELDS), params
    langs = params.get("filter-lang", [])
    for value in params.get("filter", []):
        if langs and langs[-1] == "cql2-json":
            problem = _json_text_problem(value, json_filter_problem)
        else:
            problem = text_filter_problem(value)
        if problem:
            return problem, params
    for value in params.get("intersects", []):
        problem = _json_text_problem(value, geometry_param_problem)
        if problem:
            return problem, params
    for name in ("query", "sortby", "fields", "bbox", "datetime", "q", "token"):
        for value in params.get(name, []):
            if len(value) > MAX_FILTER_LENGTH:
                return f"the {name} parameter is longer than {MAX_FILTER_LENGTH}", params
    return None, params


def _json_text_problem(text: str, check: Any) -> str | None:
    if len(text) > MAX_FILTER_LENGTH:
        return f"a JSON parameter is longer than {MAX_FILTER_LENGTH} characters"
    try:
        doc = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None  # stac-fastapi reports it (400)
    result: str | None = check(doc)
    return result


def body_limit(method: str, path: str) -> int:
    """The largest body a route accepts: a search needs far less than a bulk write."""
    parts = [p for p in path.split("/") if p]
    if method == "POST" and parts == ["search"]:
        return SEARCH_BODY
    if parts[:1] != ["collections"]:
        return OTHER_BODY
    if parts[-1:] == ["bulk_items"] or (method == "POST" and parts[2:] == ["items"]):
        return BULK_BODY
    return DOCUMENT_BODY
