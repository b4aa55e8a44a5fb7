"""The query shapes of issue #16 §1, as search bodies, GET paths and pgSTAC ``search()`` calls.

Each shape is a list of *units*; a unit is one or more searches sent one after the other (the
link walk of ``eomatch query`` is a page of matchups, then their events and products by id,
up to 250 ids of several collections a search), so a unit's latency is what a client waits
for it. Units are drawn (seeded) from what the database holds, so every search finds items:

* ``bbox+datetime``: a 20 x 20 degree box and a one-day window, all collections;
* ``cql2 time_diff``: one matchup collection, ``"matchup:time_diff_abs" < T`` (T 30-900 s);
* ``cql2 area``: one matchup collection, ``"matchup:collocation_area_km2" > A``;
* ``ids``: 20 ids of one collection (as ``eomatch query`` asks for linked items);
* ``sortby datetime``: all collections, ``datetime=start/..``, ``sortby=+datetime``;
* ``link walk``: 100 matchups of one collection in a 30-day window, then their events and
  products with ``collections`` + ``ids``, built by ``eomatch query``'s own
  :func:`eomatch.workflows.query.linked_searches` (so the benchmark times the requests the
  client makes: two a unit here, the events' limited to the time the matchups span; until
  2026-12-06 one per linked collection, three or four).

Measured three ways in one run: one client sending units back to back, each to every path in
turn (p50/p95 of a unit), ten clients (wrk; units/s), and the same searches as pgSTAC's own
``search()`` SQL over psycopg with ten threads (the floor: no HTTP, no Python hydration, no
JSON re-encoding).
"""

from __future__ import annotations

import json
import random
import statistics
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote, urlencode

from eomatch.workflows.query import linked_searches

Body = dict[str, Any]
Unit = list[Body]

SHAPES = (
    "bbox+datetime",
    "cql2 time_diff",
    "cql2 area",
    "ids",
    "sortby datetime",
    "link walk",
)


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def cql2_text(f: dict[str, Any]) -> str:
    """The cql2-text of the simple comparisons used here."""
    prop, value = f["args"]
    return f'"{prop["property"]}" {f["op"]} {value}'


def get_path(body: Body) -> str:
    """The GET /search path asking what ``body`` (a POST /search body) asks."""
    params: dict[str, str] = {}
    if "collections" in body:
        params["collections"] = ",".join(body["collections"])
    if "ids" in body:
        params["ids"] = ",".join(body["ids"])
    if "bbox" in body:
        params["bbox"] = ",".join(f"{v:g}" for v in body["bbox"])
    if "datetime" in body:
        params["datetime"] = body["datetime"]
    if "filter" in body:
        params["filter-lang"] = "cql2-text"
        params["filter"] = cql2_text(body["filter"])
    if "sortby" in body:
        params["sortby"] = ",".join(
            ("+" if s["direction"] == "asc" else "-") + s["field"] for s in body["sortby"]
        )
    params["limit"] = str(body.get("limit", 10))
    return "/search?" + urlencode(params, quote_via=quote)


def build_units(conn: Any, n: int = 24, seed: int = 4) -> dict[str, list[Unit]]:
    """``n`` units of every shape, from samples of the items in the database (psycopg conn)."""
    rng = random.Random(seed)
    lo, hi = conn.execute("SELECT min(datetime), max(datetime) FROM pgstac.items").fetchone()
    colls = [r[0] for r in conn.execute("SELECT id FROM pgstac.collections ORDER BY id")]
    matchup_colls = [c for c in colls if "-vs-" in c and not c.startswith("matchup-events-")]
    # the busiest matchup collections: cal/val users query the pairs that have data
    counts = dict(
        conn.execute(
            "SELECT collection, count(*) FROM pgstac.items WHERE collection = ANY(%s) GROUP BY 1",
            (matchup_colls,),
        ).fetchall()
    )
    busy = sorted(matchup_colls, key=lambda c: -counts.get(c, 0))[:20]
    span = (hi - lo).total_seconds()
    out: dict[str, list[Unit]] = {s: [] for s in SHAPES}
    for _ in range(n):
        lon, lat = rng.uniform(-170, 150), rng.uniform(-70, 50)
        start = lo + timedelta(seconds=rng.uniform(0, span - 86400))
        out["bbox+datetime"].append(
            [
                {
                    "bbox": [round(lon, 2), round(lat, 2), round(lon + 20, 2), round(lat + 20, 2)],
                    "datetime": f"{_iso(start)}/{_iso(start + timedelta(days=1))}",
                    "limit": 10,
                }
            ]
        )
        coll = rng.choice(busy)
        out["cql2 time_diff"].append(
            [
                {
                    "collections": [coll],
                    "filter": {
                        "op": "<",
                        "args": [
                            {"property": "matchup:time_diff_abs"},
                            rng.choice([30, 120, 300, 900]),
                        ],
                    },
                    "limit": 10,
                }
            ]
        )
        out["cql2 area"].append(
            [
                {
                    "collections": [rng.choice(busy)],
                    "filter": {
                        "op": ">",
                        "args": [
                            {"property": "matchup:collocation_area_km2"},
                            rng.choice([10, 1000, 10000, 50000]),
                        ],
                    },
                    "limit": 10,
                }
            ]
        )
        out["sortby datetime"].append(
            [
                {
                    "datetime": f"{_iso(start)}/..",
                    "sortby": [{"field": "datetime", "direction": "asc"}],
                    "limit": 10,
                }
            ]
        )
    # ids: 20 of one collection, sampled
    for _ in range(n):
        coll = rng.choice(colls)
        ids = [
            r[0]
            for r in conn.execute(
                "SELECT id FROM pgstac.items WHERE collection = %s ORDER BY md5(id || %s) LIMIT 20",
                (coll, str(rng.random())),
            )
        ]
        out["ids"].append([{"collections": [coll], "ids": ids, "limit": 20}])
    # the link walk: a page of matchups, then what they link to, as eomatch query asks
    for _ in range(n):
        coll = rng.choice(busy)
        start = lo + timedelta(seconds=rng.uniform(0, span - 30 * 86400))
        window = f"{_iso(start)}/{_iso(start + timedelta(days=30))}"
        page: Body = {"collections": [coll], "datetime": window, "limit": 100}
        rows = conn.execute(
            "SELECT content->'links', datetime, end_datetime FROM pgstac.items "
            "WHERE collection = %s AND datetime <= %s AND end_datetime >= %s "
            "ORDER BY datetime DESC, id DESC LIMIT 100",
            (coll, start + timedelta(days=30), start),
        ).fetchall()
        wanted: dict[str, set[str]] = {}
        for links, _, _ in rows:
            for link in links or []:
                parts = str(link.get("href", "")).split("/")
                if link.get("rel") in ("related", "derived_from") and len(parts) == 4:
                    wanted.setdefault(parts[1], set()).add(parts[3])
        spans = [(t0, t1) for _, t0, t1 in rows]
        spanned = (
            f"{_iso(min(t for t, _ in spans))}/{_iso(max(t for _, t in spans))}" if rows else None
        )
        unit = [page, *linked_searches(wanted, window=spanned)]
        out["link walk"].append(unit)
    return out


def quantiles(ms: list[float]) -> tuple[float, float]:
    """(p50, p95) in milliseconds."""
    if len(ms) < 2:
        return (ms[0], ms[0]) if ms else (float("nan"), float("nan"))
    q = statistics.quantiles(ms, n=100, method="inclusive")
    return q[49], q[94]


def single_client(
    run_unit: Callable[[Unit], None], units: list[Unit], seconds: float
) -> dict[str, float]:
    """One client sending units back to back for ``seconds`` (at least each unit once)."""
    return paired_clients({"": run_unit}, units, seconds)[""]


def paired_clients(
    runs: dict[str, Callable[[Unit], None]], units: list[Unit], seconds: float
) -> dict[str, dict[str, float]]:
    """One client sending each unit to every path in turn, the order rotating unit by unit and
    pass by pass, for ``seconds`` per path (at least each unit once). The paths are timed at
    the same moments, so a machine whose speed drifts within seconds (shared cores) moves them
    all alike; runs of several seconds, one path after the other, compared moments instead."""
    names = list(runs)
    ms: dict[str, list[float]] = {n: [] for n in names}
    deadline = time.perf_counter() + seconds * len(names)
    i = 0
    while time.perf_counter() < deadline or i < len(units):
        unit = units[i % len(units)]
        # the order shifts on every pass over the units: with i % len(names) alone, a unit
        # count divisible by the path count sent each unit to the same path first every time
        # (one search's cold run was always one path's: 85 % external vs internal, same code)
        k = (i + i // len(units)) % len(names)
        for name in names[k:] + names[:k]:
            t = time.perf_counter()
            runs[name](unit)
            ms[name].append((time.perf_counter() - t) * 1e3)
        i += 1
    out = {}
    for name, values in ms.items():
        p50, p95 = quantiles(values)
        out[name] = {"p50": p50, "p95": p95, "n": len(values)}
    return out


def http_unit(client: Any) -> Callable[[Unit], None]:
    """Send a unit's searches as GET /search with an httpx client; fail on a non-200."""

    def run(unit: Unit) -> None:
        for body in unit:
            r = client.get(get_path(body))
            if r.status_code != 200:
                raise RuntimeError(f"{r.status_code}: {r.text[:300]}")

    return run


def floor_body(body: Body) -> str:
    """The JSON the API hands pgSTAC's ``search()`` for ``body`` (filter in cql2-json)."""
    out = dict(body)
    if "filter" in out:
        out["filter-lang"] = "cql2-json"
    out["conf"] = {"nohydrate": True}
    return json.dumps(out)


def sql_unit(conn: Any) -> Callable[[Unit], None]:
    """Run a unit's searches as ``SELECT pgstac.search(...)`` on a psycopg connection."""

    def run(unit: Unit) -> None:
        for body in unit:
            conn.execute("SELECT pgstac.search(%s::jsonb)::text", (floor_body(body),)).fetchone()

    return run


def sql_throughput(
    connect: Callable[[], Any], units: list[Unit], seconds: float, clients: int = 10
) -> dict[str, float]:
    """Units/s with ``clients`` threads, each on its own connection, for ``seconds``."""
    done = [0] * clients
    errors: list[BaseException] = []
    conns = [connect() for _ in range(clients)]
    start = time.perf_counter()
    deadline = start + seconds

    def work(k: int) -> None:
        run = sql_unit(conns[k])
        i = k
        try:
            while time.perf_counter() < deadline:
                run(units[i % len(units)])
                done[k] += 1
                i += clients
        except BaseException as exc:  # reported by the caller
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    for c in conns:
        c.close()
    if errors:
        raise errors[0]
    return {"rps": sum(done) / elapsed}
