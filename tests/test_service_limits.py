"""Every request's cost is bounded before the API does the work (issue #10 §1).

The pure checks of :mod:`eomatch.service.limits` first, then the real thing: both APIs as
uvicorn processes, the pathological shapes sent by GET and POST, each answered 400 fast, and
the API process's resident memory (``VmRSS``) measured before and after. Before the bounds, a
100-level ``NOT`` nesting took cql2's validation to 1.8 GB; the figures of this module's run
are printed (``-s``) and quoted in the changelog.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from eomatch.service import limits
from eomatch.service.limits import (
    MAX_BOOLEAN_TERMS,
    MAX_FILTER_DEPTH,
    MAX_FUNCTION_DEPTH,
    MAX_IDS,
    MAX_VERTICES,
    json_filter_problem,
    text_filter_problem,
)

# -- the shapes ----------------------------------------------------------------------------------


def nested_text(kind: str, n: int) -> str:
    """A cql2-text filter nesting ``kind`` n levels deep."""
    if kind == "not":
        return "NOT (" * n + "a = 1" + ")" * n
    if kind == "bare-not":
        return "NOT " * n + "a = 1"
    if kind == "and":
        return "(" * n + "a = 1" + " AND b = 2)" * n
    if kind == "or":
        return "(" * n + "a = 1" + " OR b = 2)" * n
    if kind == "function":
        return "f(" * n + "1" + ")" * n + " = 1"
    if kind == "array":
        return "A_CONTAINS(a, " + "(" * n + "1" + ")" * n + ")"
    raise ValueError(kind)


def nested_json(kind: str, n: int) -> dict[str, Any]:
    """A cql2-json filter nesting ``kind`` n levels deep."""
    leaf: Any = {"op": "=", "args": [{"property": "a"}, 1]}
    for _ in range(n):
        if kind == "not":
            leaf = {"op": "not", "args": [leaf]}
        elif kind in ("and", "or"):
            leaf = {"op": kind, "args": [leaf, {"op": "=", "args": [{"property": "b"}, 2]}]}
        elif kind == "function":
            leaf = {"op": "f", "args": [leaf]}
        elif kind == "array":
            leaf = [leaf]
    if kind == "array":
        return {"op": "a_contains", "args": [{"property": "a"}, leaf]}
    return leaf


def chain_text(op: str, n: int) -> str:
    return f" {op} ".join(f"a = {i}" for i in range(n + 1))


def square_ring(n: int) -> list[list[float]]:
    """A closed ring of n+1 positions (valid, so only its size is wrong)."""
    ring = [[i * 1e-4, 0.0] for i in range(n - 2)] + [[0.5, 1.0]]
    return [*ring, ring[0]]


KINDS = ["not", "bare-not", "and", "or", "function", "array"]


# -- pure checks ---------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_text_depth_is_bounded_for_every_operator(kind: str) -> None:
    assert text_filter_problem(nested_text(kind, 1)) is None
    deep = nested_text(kind, MAX_FILTER_DEPTH + 1)
    problem = text_filter_problem(deep)
    assert "deeper" in str(problem), (kind, problem)


@pytest.mark.parametrize("kind", ["not", "and", "or", "function", "array"])
def test_json_depth_is_bounded_for_every_operator(kind: str) -> None:
    assert json_filter_problem(nested_json(kind, 1)) is None
    problem = json_filter_problem(nested_json(kind, MAX_FILTER_DEPTH + 1))
    assert "deeper" in str(problem), (kind, problem)


def test_function_nesting_has_its_own_lower_bound() -> None:
    assert text_filter_problem(nested_text("function", MAX_FUNCTION_DEPTH)) is None
    assert "function" in str(text_filter_problem(nested_text("function", MAX_FUNCTION_DEPTH + 1)))
    assert "function" in str(json_filter_problem(nested_json("function", MAX_FUNCTION_DEPTH + 1)))


def test_real_filters_pass() -> None:
    good = [
        "NOT (a = 1 AND (b = 2 OR NOT (c = 3)))",
        "CASEI(name) = CASEI('x') AND NOT x IS NULL",
        "S_INTERSECTS(geometry, MULTIPOLYGON(((0 0, 1 0, 1 1, 0 0)),((5 5, 6 5, 6 6, 5 5))))",
        "S_INTERSECTS(geometry, POINT Z (1 2 3))",
        "T_INTERSECTS(datetime, INTERVAL('2020-01-01T00:00:00Z', '2021-01-01T00:00:00Z'))",
        "eo:cloud_cover < 10 AND platform IN ('sentinel-2a', 'sentinel-2b')",
        chain_text("AND", MAX_BOOLEAN_TERMS),
        # parentheses and keywords inside strings are not structure
        "name = 'NOT (NOT (NOT (((((((((((f(g(h(i(j(' AND x = 'a''b'",
        " AND ".join(["NOT NOT a = 1"] * 20),
    ]
    for text in good:
        assert text_filter_problem(text) is None, text


def test_chains_and_lengths_are_bounded() -> None:
    for op in ("AND", "OR"):
        problem = text_filter_problem(chain_text(op, MAX_BOOLEAN_TERMS + 1))
        assert problem is not None
        assert "AND/OR" in problem
    flat = {"op": "or", "args": [nested_json("not", 0)] * (MAX_BOOLEAN_TERMS + 2)}
    assert "AND/OR" in str(json_filter_problem(flat))
    assert "longer" in str(text_filter_problem("a = '" + "x" * limits.MAX_FILTER_LENGTH + "'"))


def test_geometries_in_filters_must_be_readable_and_small() -> None:
    open_ring = {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1]]]}
    flt = {"op": "s_intersects", "args": [{"property": "geometry"}, open_ring]}
    assert "closed" in str(json_filter_problem(flt))
    big = {"type": "Polygon", "coordinates": [square_ring(MAX_VERTICES + 10)]}
    flt = {"op": "s_intersects", "args": [{"property": "geometry"}, big]}
    assert "vertices" in str(json_filter_problem(flt))
    assert "bbox" in str(json_filter_problem({"op": "s_intersects", "args": [{"bbox": [1]}]}))
    assert "vertices" in str(limits.geometry_param_problem(big))


def test_query_and_body_limits() -> None:
    ids = ",".join(f"i{k}" for k in range(MAX_IDS + 1))
    assert "ids" in str(limits.query_problem(f"ids={ids}".encode())[0])
    assert limits.query_problem(b"ids=a,b&limit=10")[0] is None
    assert "query string" in str(limits.query_problem(b"x" * (limits.MAX_QUERY_STRING + 1))[0])
    assert limits.body_limit("POST", "/search") < limits.body_limit("POST", "/collections/c/items")
    assert limits.body_limit("POST", "/collections/c/bulk_items") == limits.BULK_BODY
    assert limits.search_body_problem({"ids": ["x"] * (MAX_IDS + 1)}) is not None
    assert limits.search_body_problem({"collections": ["x"] * 5, "ids": ["y"]}) is None


# -- the real API processes ----------------------------------------------------------------------


def rss_mb(pid: int) -> float:
    """Resident memory of a process (VmRSS), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@pytest.fixture(scope="module")
def apis(pg_cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Any]]:
    from eomatch.io.pgstac_store import PgstacStore
    from eomatch.workflows.ingest import ingest_catalogue
    from service_fixtures import _new_db, api_pair, make_catalogue

    db = _new_db(pg_cluster)
    root = make_catalogue(tmp_path_factory.mktemp("cat") / "cat", n_events=1)
    ingest_catalogue(root, PgstacStore(db.role("eomatch_ingest")))
    with api_pair(db, tmp_path_factory.mktemp("logs")) as pair:
        yield pair


def pathological_requests() -> list[tuple[str, str, dict[str, Any]]]:
    """(method, path, httpx kwargs) of every shape that must be refused."""
    deep = MAX_FILTER_DEPTH * 12  # 96 levels: ~1 GB of cql2 validation before the bounds
    out: list[tuple[str, str, dict[str, Any]]] = []
    for kind in KINDS:
        text = nested_text(kind, deep)
        out.append(("GET", f"/search?filter={quote(text)}", {}))
        out.append(("GET", f"/collections?filter={quote(text)}", {}))
        out.append(("POST", "/search", {"json": {"filter": text, "filter-lang": "cql2-text"}}))
    for kind in ["not", "and", "or", "function", "array"]:
        doc = nested_json(kind, deep)
        out.append(("POST", "/search", {"json": {"filter": doc}}))
        out.append(("GET", f"/search?filter-lang=cql2-json&filter={quote(json.dumps(doc))}", {}))
    for op in ("AND", "OR"):
        out.append(("GET", f"/search?filter={quote(chain_text(op, 500))}", {}))
        chain = {"op": op.lower(), "args": [nested_json("not", 0)] * 2000}
        out.append(("POST", "/search", {"json": {"filter": chain}}))
    many = [f"id-{k}" for k in range(20 * MAX_IDS)]
    out.append(("POST", "/search", {"json": {"ids": many}}))
    out.append(("POST", "/search", {"json": {"collections": many}}))
    out.append(("GET", "/search?ids=" + ",".join(many[: 2 * MAX_IDS]), {}))
    big = {"type": "Polygon", "coordinates": [square_ring(20 * MAX_VERTICES)]}
    out.append(("POST", "/search", {"json": {"intersects": big}}))
    flt = {"op": "s_intersects", "args": [{"property": "geometry"}, big]}
    out.append(("POST", "/search", {"json": {"filter": flt}}))
    # by GET, a geometry of ~1000 vertices already exceeds the query string's bound
    small = {"type": "Polygon", "coordinates": [square_ring(1000)]}
    out.append(("GET", "/search?intersects=" + quote(json.dumps(small)), {}))
    out.append(("POST", "/search", {"json": {"sortby": [{"field": "a"}] * 100}}))
    return out


@pytest.mark.slow
def test_pathological_requests_are_refused_fast_with_bounded_memory(apis) -> None:
    internal, external = apis
    shapes = pathological_requests()
    report = []
    for api in (external, internal):
        pid = api.proc.pid
        # warm up: the first search loads cql2's schema, the first answer its caches
        for _ in range(3):
            assert httpx.get(api.url + "/search?filter=a%20%3D%201", timeout=30).status_code == 200
        before = rss_mb(pid)
        worst, slowest = 0.0, ""
        for method, path, kwargs in shapes:
            t0 = time.monotonic()
            r = httpx.request(method, api.url + path, timeout=30, **kwargs)
            took = time.monotonic() - t0
            assert r.status_code == 400, (method, path[:80], r.status_code, r.text[:300])
            assert r.json()["description"], r.text
            assert took < 2.0, (method, path[:80], took)
            if took > worst:
                worst, slowest = took, f"{method} {path[:40]}"
        after = rss_mb(pid)
        report.append((api.url, len(shapes), before, after, worst, slowest))
        assert after - before < 50, (before, after)
        assert httpx.get(api.url + "/collections", timeout=30).status_code == 200
    for url, n, before, after, worst, slowest in report:
        print(f"{url}: {n} refused, VmRSS {before:.0f} -> {after:.0f} MB, slowest {worst:.3f} s")
        print(f"  (slowest: {slowest})")


def _declared_only(port: int, method: str, path: str, length: int) -> bytes:
    """Send headers declaring a body of ``length`` bytes, and none of it: the answer."""
    head = (
        f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {length}\r\nConnection: close\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head.encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return data


@pytest.mark.slow
def test_bodies_over_the_route_limit_are_refused_before_they_are_read(apis) -> None:
    internal, external = apis
    for api, method, path, limit in [
        (external, "POST", "/search", limits.SEARCH_BODY),
        (internal, "POST", "/search", limits.SEARCH_BODY),
        (internal, "PUT", "/collections/c/items/i", limits.DOCUMENT_BODY),
        (internal, "POST", "/collections/c/bulk_items", limits.BULK_BODY),
    ]:
        t0 = time.monotonic()
        answer = _declared_only(api.port, method, path, limit + 1)
        assert time.monotonic() - t0 < 2
        status = answer.split(b"\r\n", 1)[0]
        if api is internal and path != "/search":
            assert b" 401 " in status, answer[:300]  # no key: refused even earlier
        else:
            assert b" 400 " in status, answer[:300]
            assert b"larger than" in answer, answer[-300:]


@pytest.mark.slow
def test_the_costliest_accepted_filters_stay_bounded(apis) -> None:
    """Just inside the bounds the filters are parsed and run: memory stays flat."""
    _internal, external = apis
    pid = external.proc.pid
    before = rss_mb(pid)
    accepted = [
        "NOT " * (MAX_FILTER_DEPTH - 1) + "a = 1",
        nested_text("function", MAX_FUNCTION_DEPTH),
        nested_text("function", MAX_FUNCTION_DEPTH) + " AND " + "NOT " * 5 + "a = 1",
        chain_text("OR", MAX_BOOLEAN_TERMS),
    ]
    for text in accepted:
        assert text_filter_problem(text) is None
        r = httpx.get(f"{external.url}/search", params={"filter": text}, timeout=30)
        assert r.status_code < 500, (text, r.status_code, r.text[:300])
        r = httpx.post(
            f"{external.url}/search",
            json={"filter": json.loads(_to_json(text))},
            timeout=30,
        )
        assert r.status_code < 500, (text, r.status_code, r.text[:300])
    grown = rss_mb(pid) - before
    print(f"costliest accepted filters: VmRSS +{grown:.0f} MB")
    assert grown < 50


def _to_json(text: str) -> str:
    from cql2 import Expr

    return json.dumps(Expr(text).to_json())
