"""Central service speed (issue #4 §7): ingest, re-ingest, search latency (figures, no asserts).

Full scale: a 100 000-item catalogue (the synthetic events of ``benchmarks/catalogue.py``,
7 items each: 1 event, 2 matchups, 4 products); ``--scale 0.1`` runs a tenth. Generating the
catalogue is timed separately and is not part of any figure. A throwaway PostgreSQL/PostGIS
cluster (``eomatch db init`` code path) is created in ``--dir`` and removed at the end.

Figures and targets:

* ingest end to end (``ingest_catalogue``: scan, read, rewrite hrefs, hash, load), items/s,
  target >= 10 000/s; next to it pypgstac's own ``Loader.load_items`` (upsert) loading the same,
  already transformed items (an ndjson file written beforehand) into a fresh database in the same
  run, and the ratio of the two speeds;
* re-ingest of the unchanged catalogue as % of the first ingest's time, target <= 10 %;
* p50/p95/p99 of a bbox + datetime search and of a CQL2 property search
  (``"matchup:time_diff_abs" < N`` on the matchup collection), GET /search, against the internal
  and the external API, 10 concurrent clients (wrk ``-t2 -c10`` with a Lua script rotating over
  precomputed queries; an asyncio httpx load generator if wrk is missing or
  ``--load-generator httpx``); external p95 as % of internal p95, target within 10 %.
  Internal and external runs alternate (``--rounds``) and the table shows the median over rounds,
  because other jobs share this machine's CPUs.

Run: ``uv run python benchmarks/service.py [--scale 0.1] [--dir /work/bench] [--duration 10]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

ITEMS_PER_EVENT = 7
SECONDS_PER_EVENT = 311  # benchmarks/catalogue.py spreads event i at T0 + i * 311 s
T0 = datetime(2022, 1, 1, tzinfo=UTC)
HERE = Path(__file__).resolve().parent

LUA = """
local paths = {%s}
local n = 0
request = function()
  n = n + 1
  return wrk.format("GET", paths[(n %% #paths) + 1])
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "RESULT {\\"p50\\": %%d, \\"p95\\": %%d, \\"p99\\": %%d, \\"requests\\": %%d, " ..
    "\\"errors\\": %%d, \\"non2xx\\": %%d, \\"duration_us\\": %%d}\\n",
    latency:percentile(50), latency:percentile(95), latency:percentile(99),
    summary.requests, e.connect + e.read + e.write + e.timeout, e.status, summary.duration))
end
"""


def _imports() -> None:
    """benchmarks/ (the catalogue generator) and tests/ (the service fixtures) on sys.path."""
    for path in (HERE, HERE.parent / "tests"):
        if str(path) not in sys.path:
            sys.path.insert(0, str(path))


@contextmanager
def timer() -> Iterator[list[float]]:
    out: list[float] = []
    start = time.perf_counter()
    yield out
    out.append(time.perf_counter() - start)


def transformed(root: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Collections and items exactly as ``ingest_catalogue`` hands them to pypgstac."""
    import orjson

    from eomatch.core.publish import HrefRewriter
    from eomatch.io.catalogue import MatchupCatalogue

    cat = MatchupCatalogue.open(root)
    try:
        croot, files, coll_files = cat.root, cat.item_files(), cat.collection_files()
    finally:
        cat.close()
    by_path = {rel: (coll, item_id) for coll, item_id, rel in files}
    rewriter = HrefRewriter(croot, by_path.get)
    collections = [
        rewriter.collection(orjson.loads((croot / rel).read_bytes()), rel)
        for _coll, rel in sorted(coll_files.items())
    ]
    items = []
    for coll, _item_id, rel in files:
        doc = orjson.loads((croot / rel).read_bytes())
        doc["collection"] = coll
        items.append(rewriter.item(doc, rel))
    return collections, items


def update_tenth(db: Any, root: Path, history: bool) -> float:
    """Seconds to upsert a tenth of the catalogue's items with one property changed."""
    from pypgstac.db import PgstacDB
    from pypgstac.load import Loader, Methods

    _collections, items = transformed(root)
    changed = items[::10]
    for item in changed:
        item["properties"]["bench:changed"] = True
    with PgstacDB(dsn=db.role("eomatch_ingest").conninfo()) as pg, timer() as t:
        Loader(db=pg).load_items(iter(changed), Methods.upsert)
    recorded = int(db.query("SELECT count(*) FROM eomatch.change_log WHERE op = 'update'")[0][0])  # type: ignore[call-overload]
    assert recorded == (len(changed) if history else 0), recorded
    return t[0]


def pypgstac_reference(db: Any, work: Path, root: Path) -> tuple[int, float]:
    """pypgstac's Loader alone on the transformed items, into a fresh database: (n, seconds)."""
    import orjson
    from pypgstac.db import PgstacDB
    from pypgstac.load import Loader, Methods

    collections, items = transformed(root)
    ndjson = work / "items.ndjson"
    with ndjson.open("wb") as fh:
        for item in items:
            fh.write(orjson.dumps(item) + b"\n")
    with PgstacDB(dsn=db.role("eomatch_ingest").conninfo()) as pg:
        loader = Loader(db=pg)
        loader.load_collections(iter(collections), Methods.upsert)
        with timer() as t:
            loader.load_items(str(ndjson), Methods.upsert)
    return len(items), t[0]


def search_paths(kind: str, collection: str, span_s: float, n: int = 32) -> list[str]:
    """Precomputed GET /search paths (seeded) for one query kind."""
    rng = random.Random(4)
    out = []
    for _ in range(n):
        if kind == "bbox+datetime":
            lon, lat = rng.uniform(-170, 150), rng.uniform(-70, 50)
            start = T0 + timedelta(seconds=rng.uniform(0, max(span_s - 86400, 0)))
            end = start + timedelta(days=1)
            params = {
                "bbox": f"{lon:.2f},{lat:.2f},{lon + 20:.2f},{lat + 20:.2f}",
                "datetime": f"{start:%Y-%m-%dT%H:%M:%SZ}/{end:%Y-%m-%dT%H:%M:%SZ}",
                "limit": "10",
            }
        else:
            params = {
                "collections": collection,
                "filter-lang": "cql2-text",
                "filter": f'"matchup:time_diff_abs" < {rng.choice([300, 400, 500, 600])}',
                "limit": "10",
            }
        out.append("/search?" + urlencode(params, quote_via=quote))
    return out


def run_wrk(url: str, paths: list[str], duration: int, work: Path) -> dict[str, float]:
    script = work / "rotate.lua"
    script.write_text(LUA % ", ".join(json.dumps(p) for p in paths))
    proc = subprocess.run(
        ["wrk", "-t2", "-c10", f"-d{duration}s", "--timeout", "30s", "-s", str(script), url],
        capture_output=True,
        text=True,
        check=True,
    )
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))
    raw = json.loads(line[len("RESULT ") :])
    return {
        "p50": raw["p50"] / 1e3,
        "p95": raw["p95"] / 1e3,
        "p99": raw["p99"] / 1e3,
        "rps": raw["requests"] / (raw["duration_us"] / 1e6),
        "bad": raw["errors"] + raw["non2xx"],
    }


def run_httpx(url: str, paths: list[str], duration: int) -> dict[str, float]:
    import httpx

    async def main() -> dict[str, float]:
        latencies: list[float] = []
        bad = 0
        deadline = time.perf_counter() + duration

        async def client(k: int, http: httpx.AsyncClient) -> None:
            nonlocal bad
            i = k
            while time.perf_counter() < deadline:
                t = time.perf_counter()
                r = await http.get(url + paths[i % len(paths)])
                latencies.append(time.perf_counter() - t)
                bad += r.status_code >= 300
                i += 10

        limits = httpx.Limits(max_connections=10)
        async with httpx.AsyncClient(timeout=30, limits=limits) as http:
            start = time.perf_counter()
            await asyncio.gather(*(client(k, http) for k in range(10)))
            elapsed = time.perf_counter() - start
        q = statistics.quantiles(latencies, n=100)
        return {
            "p50": q[49] * 1e3,
            "p95": q[94] * 1e3,
            "p99": q[98] * 1e3,
            "rps": len(latencies) / elapsed,
            "bad": bad,
        }

    return asyncio.run(main())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=1.0, help="1.0 = 100 000 items")
    parser.add_argument(
        "--dir", type=Path, default=HERE.parent / "out", help="work directory (on /work)"
    )
    parser.add_argument("--duration", type=int, default=10, help="seconds per load run")
    parser.add_argument("--rounds", type=int, default=2, help="alternating int/ext rounds")
    parser.add_argument("--load-generator", choices=["auto", "wrk", "httpx"], default="auto")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("--ingest-only", action="store_true", help="stop after the ingest figures")
    args = parser.parse_args()
    _imports()
    import httpx
    import psycopg

    from catalogue import load as build_catalogue  # benchmarks/catalogue.py
    from eomatch.io.pg_cluster import LocalCluster
    from eomatch.io.pgstac_store import PgstacStore
    from eomatch.workflows.ingest import ingest_catalogue
    from service_fixtures import _new_db, free_port, start_api

    generator = args.load_generator
    if generator == "auto":
        generator = "wrk" if shutil.which("wrk") else "httpx"
    n_events = max(10, math.ceil(100_000 * args.scale / ITEMS_PER_EVENT))
    args.dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="bench-service-", dir=args.dir))
    work.chmod(0o711)  # the postgres user must reach the cluster directory inside
    apis: list[Any] = []
    cluster = LocalCluster(work / "db")
    try:
        root = work / "catalogue"
        t_gen = build_catalogue(root, n_events)
        print(f"catalogue: {n_events} events, generated in {t_gen:.1f} s (not counted)")

        cluster.init(port=free_port())
        admin = cluster.connection().with_db("postgres").conninfo()
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute("ALTER DATABASE eomatch WITH is_template true")
        db = _new_db(cluster)

        store = PgstacStore(db.role("eomatch_ingest"))
        with timer() as t:
            first = ingest_catalogue(root, store)
        t_ingest = t[0]
        n_items = first.items
        n_changes = int(db.query("SELECT count(*) FROM eomatch.changes")[0][0])  # type: ignore[call-overload]
        with timer() as t:
            again = ingest_catalogue(root, store)
        t_again = t[0]
        n_ref, t_ref = pypgstac_reference(_new_db(cluster), work, root)
        # what history costs: the same ingest into fresh databases with the history triggers
        # off and on, alternated (the first ingest above read the files cold), best of each
        bare_times, history_times = [], [t_ingest]
        for history in (False, True, False):
            fresh = _new_db(cluster)
            if not history:
                with psycopg.connect(fresh.role().conninfo(), autocommit=True) as conn:
                    conn.execute("ALTER TABLE pgstac.items DISABLE TRIGGER eomatch_history")
                    conn.execute("ALTER TABLE pgstac.collections DISABLE TRIGGER z_eomatch_history")
            with timer() as t:
                ingest_catalogue(root, PgstacStore(fresh.role("eomatch_ingest")))
            (history_times if history else bare_times).append(t[0])
        t_bare, t_history = min(bare_times), min(history_times)
        # updates keep each old row: a tenth of the items changed, upserted with history on
        # (the ingested database) and off (the last fresh one), same rows, same loader
        n_after = int(db.query("SELECT count(*) FROM eomatch.changes")[0][0])  # type: ignore[call-overload]
        t_upd = update_tenth(db, root, history=True)
        t_upd_bare = update_tenth(fresh, root, history=False)

        print()
        print(f"== ingest: {n_items} items in {first.collections} collections")
        print(f"   first ingest : {first.summary()}")
        print(f"   re-ingest    : {again.summary()}")
        rate, ref_rate = n_items / t_ingest, n_ref / t_ref
        print(
            f"{'ingest end to end':<28}{t_ingest:8.2f} s {rate:10,.0f} items/s  (target >= 10,000)"
        )
        print(f"{'pypgstac Loader alone':<28}{t_ref:8.2f} s {ref_rate:10,.0f} items/s  (reference)")
        print(f"{'  ingest / pypgstac speed':<28}{rate / ref_rate:8.2f}")
        print(
            f"{'ingest, history off':<28}{t_bare:8.2f} s {n_items / t_bare:10,.0f} items/s  "
            "(best of two: the reference for the history cost)"
        )
        print(
            f"{'ingest, history on':<28}{t_history:8.2f} s {n_items / t_history:10,.0f} items/s  "
            "(best of two)"
        )
        print(
            f"{'  history cost':<28}{100 * (t_history / t_bare - 1):8.1f} %  (target <= 20 %; "
            f"{n_changes} changes recorded)"
        )
        pct = 100 * t_again / t_ingest
        print(
            f"{'re-ingest, unchanged':<28}{t_again:8.2f} s {pct:9.1f} % of first (target <= 10 %)"
        )
        print(f"{'  history rows it added':<28}{n_after - n_changes:8d}    (target 0)")
        n_upd = n_items // 10
        print(
            f"{'update a tenth, history on':<28}{t_upd:8.2f} s {n_upd / t_upd:10,.0f} items/s  "
            f"(off: {t_upd_bare:.2f} s, {100 * (t_upd / t_upd_bare - 1):+.1f} %)"
        )
        if args.ingest_only:
            return

        logs = work / "logs"
        logs.mkdir()
        internal = start_api(db, "internal", logs)
        apis.append(internal)
        external = start_api(db, "external", logs)
        apis.append(external)
        colls = httpx.get(f"{internal.url}/collections", timeout=30).json()["collections"]
        matchups = next(c["id"] for c in colls if "-vs-" in c["id"] and "events" not in c["id"])
        span = n_events * SECONDS_PER_EVENT
        kinds = {k: search_paths(k, matchups, span) for k in ("bbox+datetime", "cql2 property")}
        for paths in kinds.values():  # warm both APIs and the pgSTAC search cache
            for api in (internal, external):
                for p in paths:
                    httpx.get(api.url + p, timeout=30).raise_for_status()

        results: dict[tuple[str, str], list[dict[str, float]]] = {}
        for rnd in range(args.rounds):
            order = [("internal", internal), ("external", external)]
            for kind, paths in kinds.items():
                for name, api in order if rnd % 2 == 0 else order[::-1]:
                    if generator == "wrk":
                        res = run_wrk(api.url, paths, args.duration, work)
                    else:
                        res = run_httpx(api.url, paths, args.duration)
                    results.setdefault((kind, name), []).append(res)

        how = "wrk -t2 -c10" if generator == "wrk" else "asyncio httpx, 10 clients"
        print()
        print(f"== GET /search latency, 10 concurrent clients ({how}, {args.duration} s a run,")
        print(f"   median of {args.rounds} alternating rounds), milliseconds")
        print(f"{'query':<16}{'api':<10}{'req/s':>8}{'p50':>9}{'p95':>9}{'p99':>9}{'bad':>6}")
        med: dict[tuple[str, str], dict[str, float]] = {}
        for (kind, name), runs in results.items():
            med[(kind, name)] = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
            m = med[(kind, name)]
            print(
                f"{kind:<16}{name:<10}{m['rps']:8.1f}{m['p50']:9.1f}{m['p95']:9.1f}"
                f"{m['p99']:9.1f}{int(m['bad']):6d}"
            )
        for kind in kinds:
            ratio = 100 * med[(kind, "external")]["p95"] / med[(kind, "internal")]["p95"]
            print(
                f"external p95 as % of internal p95, {kind:<14}: {ratio:6.1f} %  (target <= 110 %)"
            )
    finally:
        for api in apis:
            api.stop()
        if cluster.initialised:
            cluster.stop()
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
