"""Central service speed (issues #4 §7 and #16 §1): ingest, size on disk, search speed.

The catalogue is the synthetic one of ``benchmarks/catalogue_synth.py`` (13 satellites, 78
pairs, 10 years; events, matchups and products in the proportions ``eomatch find`` writes),
``--items`` of it (default 100 000; issue #16 runs ``--items 1000000``). A throwaway
PostgreSQL/PostGIS cluster (``eomatch db init`` code path, pgstac_tuning included) is created
in ``--dir`` and removed at the end. Generating the catalogue is timed separately and is not
part of any figure.

Ingest (``--load disk``, the default up to 200 000 items): the catalogue is written to disk
and loaded by ``eomatch ingest`` end to end (``ingest_catalogue``: scan, read, rewrite hrefs,
hash, load), target >= 10 000 items/s; next to it pypgstac's own ``Loader.load_items`` on the
same transformed items into a fresh database; the unchanged re-ingest (target <= 10 % of the
first); the cost of the history (ingest with its triggers off and on, alternated, best of
two); an update of a tenth of the items with history on and off. ``--load memory`` (the
default above 200 000 items: a million item files is minutes of file creation that measure
the disk, not the service) generates the stored items in two processes and loads them with
pypgstac's Loader (upsert, history triggers on): the ingest figure is then the Loader's.

Then: the items partitions' size on disk (table + indexes), and for each query shape of
``benchmarks/service_shapes.py`` (bbox+datetime, collection + CQL2 on
``matchup:time_diff_abs`` / ``matchup:collocation_area_km2``, ids, sortby datetime, the
matchup -> event -> products link walk of ``eomatch query``) the single-client p50/p95 and the
10-client throughput (wrk ``-t2 -c10`` with a Lua script rotating over precomputed GET
/search paths; an asyncio httpx load generator if wrk is missing or ``--load-generator
httpx``) of the internal and the external API, next to pgSTAC's own ``search()`` SQL on the
same searches in the same run (the floor). Other jobs share this machine's CPUs and its
speed drifts within seconds, so the paths share moments: the single client sends each unit to
internal, external and floor in turn, the 10-client runs are cut into ~3 s slices taking
turns, and the tables show medians over ``--rounds``.
Last, the before/after of each change of ``eomatch.io.pgstac_tuning`` on the floor (same
data, same run), and with ``--query-matchups N`` an ``eomatch query`` of N matchups with their
events and products from the internal API (the console script, as a user runs it;
``--query-dir /dev/shm`` keeps the disk's file creation out of that figure).

Run: ``uv run python benchmarks/service.py [--items 1000000] [--dir /work/bench] [--duration 10]
[--query-matchups 100000]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from service_shapes import SHAPES, get_path  # benchmarks/, next to this file

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


def _reused_db(text: str) -> tuple[Path, str]:
    """``CLUSTER_DIR:DBNAME``: a kept cluster folder (with its ``cluster.json``) and a name."""
    where, _, name = text.rpartition(":")
    if not where or not name or not (Path(where) / "cluster.json").is_file():
        raise argparse.ArgumentTypeError(
            f"{text!r}: want CLUSTER_DIR:DBNAME, a --keep run's cluster folder and database"
        )
    return Path(where), name


def _folder(text: str) -> Path:
    """An existing folder (checked before a long run, not at its end)."""
    if not Path(text).is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} is not an existing folder")
    return Path(text)


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=None, help="catalogue size (100 000)")
    parser.add_argument("--scale", type=float, default=None, help="1.0 = 100 000 items (old name)")
    parser.add_argument(
        "--load",
        choices=["auto", "disk", "memory"],
        default="auto",
        help="disk: write the catalogue and run `eomatch ingest`; memory: generate the stored "
        "items and load them with pypgstac's Loader (auto: disk up to 200 000 items)",
    )
    parser.add_argument(
        "--dir", type=Path, default=HERE.parent / "out", help="work directory (on /work)"
    )
    parser.add_argument(
        "--duration", type=int, default=10, help="seconds per path of a 10-client run (~3 s slices)"
    )
    parser.add_argument(
        "--single", type=float, default=4.0, help="seconds per path of a 1-client run"
    )
    parser.add_argument("--rounds", type=int, default=2, help="alternating measurement rounds")
    parser.add_argument("--load-generator", choices=["auto", "wrk", "httpx"], default="auto")
    parser.add_argument("--shapes", default=",".join(SHAPES), help="comma-separated shapes")
    parser.add_argument(
        "--query-matchups",
        type=int,
        default=0,
        help="also time `eomatch query` of this many matchups from the internal API",
    )
    parser.add_argument(
        "--query-dir",
        type=_folder,
        default=None,
        help="where `eomatch query` writes its catalogue (default: the work directory; "
        "/dev/shm takes the disk's file creation out of the figure)",
    )
    parser.add_argument(
        "--workers", type=int, default=1, help="uvicorn workers of each API (serve's default: 1)"
    )
    parser.add_argument("--reuse-ndjson", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument(
        "--reuse-db",
        type=_reused_db,
        default=None,
        metavar="CLUSTER_DIR:DBNAME",
        help="measure the searches on a database an earlier --keep run loaded (no load, no "
        "ingest figures; the cluster is started if stopped and left as found)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("--ingest-only", action="store_true", help="stop after the ingest figures")
    args = parser.parse_args()
    if args.items is None:
        args.items = round(100_000 * (args.scale if args.scale is not None else 1.0))
    if args.load == "auto":
        args.load = "disk" if args.items <= 200_000 else "memory"
    return args


def disk_ingest(cluster: Any, work: Path, n_items: int, root: Path) -> Any:
    """The catalogue written to disk and ingested by ``eomatch ingest`` (history figures too)."""
    import psycopg

    from catalogue_synth import write_catalogue
    from eomatch.io.pgstac_store import PgstacStore
    from eomatch.workflows.ingest import ingest_catalogue
    from service_fixtures import _new_db

    t_gen, n_events = write_catalogue(root, n_items)
    print(f"catalogue: {n_events} events written to disk in {t_gen:.1f} s (not counted)")
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
    # and what the footprint index costs (eomatch.io.footprint_index): history on, its
    # trigger off
    times: dict[str, list[float]] = {"bare": [], "history": [t_ingest], "no footprints": []}
    for mode in ("bare", "no footprints", "history", "bare", "no footprints"):
        fresh = _new_db(cluster)
        with psycopg.connect(fresh.role().conninfo(), autocommit=True) as conn:
            if mode == "bare":
                conn.execute("ALTER TABLE pgstac.items DISABLE TRIGGER eomatch_history")
                conn.execute("ALTER TABLE pgstac.collections DISABLE TRIGGER z_eomatch_history")
            if mode == "no footprints":
                conn.execute("ALTER TABLE pgstac.items DISABLE TRIGGER eomatch_item_footprint")
        with timer() as t:
            ingest_catalogue(root, PgstacStore(fresh.role("eomatch_ingest")))
        times[mode].append(t[0])
        if mode == "bare":
            bare_db = fresh
    t_bare, t_history, t_nofp = (min(times[k]) for k in ("bare", "history", "no footprints"))
    # updates keep each old row: a tenth of the items changed, upserted with history on
    # (the ingested database) and off (a history-off one above), same rows, same loader
    n_after = int(db.query("SELECT count(*) FROM eomatch.changes")[0][0])  # type: ignore[call-overload]
    t_upd = update_tenth(db, root, history=True)
    t_upd_bare = update_tenth(bare_db, root, history=False)

    print()
    print(f"== ingest: {n_items} items in {first.collections} collections")
    print(f"   first ingest : {first.summary()}")
    print(f"   re-ingest    : {again.summary()}")
    rate, ref_rate = n_items / t_ingest, n_ref / t_ref
    print(f"{'ingest end to end':<28}{t_ingest:8.2f} s {rate:10,.0f} items/s  (target >= 10,000)")
    print(f"{'pypgstac Loader alone':<28}{t_ref:8.2f} s {ref_rate:10,.0f} items/s  (reference)")
    print(f"{'  ingest / pypgstac speed':<28}{rate / ref_rate:8.2f}")
    print(
        f"{'ingest, history off':<28}{t_bare:8.2f} s {n_items / t_bare:10,.0f} items/s  "
        "(best of two: the reference for the history cost; footprints on)"
    )
    print(
        f"{'ingest, history on':<28}{t_history:8.2f} s {n_items / t_history:10,.0f} items/s  "
        "(best of two)"
    )
    print(
        f"{'  history cost':<28}{100 * (t_history / t_bare - 1):8.1f} %  (target <= 20 %; "
        f"{n_changes} changes recorded)"
    )
    print(
        f"{'ingest, footprints off':<28}{t_nofp:8.2f} s {n_items / t_nofp:10,.0f} items/s  "
        "(best of two; history on)"
    )
    print(f"{'  footprint index cost':<28}{100 * (t_history / t_nofp - 1):8.1f} %")
    pct = 100 * t_again / t_ingest
    print(f"{'re-ingest, unchanged':<28}{t_again:8.2f} s {pct:9.1f} % of first (target <= 10 %)")
    print(f"{'  history rows it added':<28}{n_after - n_changes:8d}    (target 0)")
    n_upd = n_items // 10
    print(
        f"{'update a tenth, history on':<28}{t_upd:8.2f} s {n_upd / t_upd:10,.0f} items/s  "
        f"(off: {t_upd_bare:.2f} s, {100 * (t_upd / t_upd_bare - 1):+.1f} %)"
    )
    return db


def memory_load(
    cluster: Any, work: Path, n_items: int, parts: int = 2, reuse: Path | None = None
) -> Any:
    """The stored items generated in ``parts`` processes (ndjson files, not counted) and
    loaded by pypgstac's Loader (upsert; history triggers on, as at ingest).

    The Loader groups each chunk by partition and loads every group in its own round of
    ``check_partition`` + COPY + upsert: with ~165 partitions its default chunk of 10 000
    items is ~60 items a round (measured: ~320 items/s at 1M); chunks of 100 000 items.
    ``reuse``: a folder holding ``items-*.ndjson`` made by an earlier run (not removed)."""
    from concurrent.futures import ProcessPoolExecutor

    from pypgstac.db import PgstacDB
    from pypgstac.load import Loader, Methods

    from catalogue_synth import collections, write_ndjson
    from service_fixtures import _new_db

    if reuse is not None:
        files = sorted(reuse.glob("items-*.ndjson"))
        made = sum(sum(1 for _ in f.open("rb")) for f in files)
        print(f"catalogue: {made} stored items from {reuse} (made by an earlier run)")
    else:
        files = [work / f"items-{k}.ndjson" for k in range(parts)]
        with timer() as t, ProcessPoolExecutor(parts) as pool:
            made = sum(
                pool.map(write_ndjson, files, [n_items] * parts, [16] * parts,
                         [(k, parts) for k in range(parts)])
            )  # fmt: skip
        print(f"catalogue: {made} stored items generated in memory in {t[0]:.1f} s (not counted)")
    db = _new_db(cluster)
    with PgstacDB(dsn=db.role("eomatch_ingest").conninfo()) as pg, timer() as t:
        loader = Loader(db=pg)
        loader.load_collections(iter(collections()), Methods.upsert)
        for f in files:
            loader.load_items(str(f), Methods.upsert, chunksize=100_000)
    for f in files if reuse is None else []:
        f.unlink()
    print()
    print(f"== ingest: {made} items (memory load: pypgstac Loader, not `eomatch ingest`)")
    print(f"{'Loader, history on':<28}{t[0]:8.2f} s {made / t[0]:10,.0f} items/s")
    return db


def disk_size(db: Any) -> None:
    """Rows, table and index bytes of the items partitions, and of the footprint index."""
    rows = db.query(
        "SELECT count(*), sum(pg_relation_size(relid)), sum(pg_indexes_size(relid)), "
        "sum(pg_total_relation_size(relid)) FROM pg_partition_tree('pgstac.items') WHERE isleaf"
    )[0]
    parts, table, index, total = (int(v or 0) for v in rows)  # type: ignore[call-overload]
    n = db.item_count()
    mb = 1024 * 1024
    print(
        f"{'on disk (items partitions)':<28}{total / mb:8.0f} MB: table {table / mb:.0f} MB + "
        f"indexes {index / mb:.0f} MB in {parts} partitions ({total / max(n, 1):.0f} B/item)"
    )
    fp = db.query(
        "SELECT pg_relation_size('eomatch.item_footprints'), "
        "pg_indexes_size('eomatch.item_footprints')"
    )[0]
    fp_table, fp_index = (int(v or 0) for v in fp)  # type: ignore[call-overload]
    print(
        f"{'on disk (footprint index)':<28}{(fp_table + fp_index) / mb:8.0f} MB: table "
        f"{fp_table / mb:.0f} MB + indexes {fp_index / mb:.0f} MB "
        f"({(fp_table + fp_index) / max(n, 1):.0f} B/item; eomatch.io.footprint_index)"
    )


def wrk_units(url: str, units: list[Any], duration: int, work: Path, gen: str) -> dict[str, float]:
    """10 clients over the units' GET paths (wrk or httpx): units/s and request latencies."""
    paths = [get_path(b) for u in units for b in u]
    per_unit = len(paths) / len(units)
    res = run_wrk(url, paths, duration, work) if gen == "wrk" else run_httpx(url, paths, duration)
    return {**res, "ups": res["rps"] / per_unit}


def measure(args: argparse.Namespace, db: Any, work: Path, apis: list[Any]) -> Any:
    """Every shape: 1 client and 10 clients on both APIs, and pgSTAC's search() as the floor."""
    import httpx
    import psycopg

    import service_shapes as sh

    generator = args.load_generator
    if generator == "auto":
        generator = "wrk" if shutil.which("wrk") else "httpx"
    shapes = [s for s in args.shapes.split(",") if s]
    with timer() as t, psycopg.connect(db.role().conninfo(), autocommit=True) as conn:
        conn.execute("ANALYZE pgstac.items")
    print(f"{'ANALYZE items':<28}{t[0]:8.2f} s  (what autovacuum does after a bulk load)")
    with psycopg.connect(db.role().conninfo(), autocommit=True) as conn:
        units = sh.build_units(conn)

    def reader() -> Any:
        conn = psycopg.connect(db.role("eomatch_reader").conninfo(), autocommit=True)
        conn.execute("SET search_path TO pgstac, public")
        return conn

    internal, external = apis
    clients = {a.url: httpx.Client(base_url=a.url, timeout=60) for a in apis}
    floor_conn = reader()
    for shape in shapes:  # warm up: every unit once through each path
        for u in units[shape]:
            for api in apis:
                sh.http_unit(clients[api.url])(u)
            sh.sql_unit(floor_conn)(u)
    res: dict[tuple[str, str, str], list[float]] = {}

    def put(shape: str, who: str, what: str, value: float) -> None:
        res.setdefault((shape, who, what), []).append(value)

    # 10 clients: each path's run cut into slices of ~3 s, the paths taking turns, so they
    # share the machine's moments as the paired single client does
    slices = max(1, args.duration // 3)
    slice_s = max(1, round(args.duration / slices))
    for rnd in range(args.rounds):
        for shape in shapes:
            us = units[shape]
            order = [("internal", internal), ("external", external), ("floor", None)]
            runs = {
                who: sh.sql_unit(floor_conn) if api is None else sh.http_unit(clients[api.url])
                for who, api in order
            }
            for who, one in sh.paired_clients(runs, us, args.single).items():
                put(shape, who, "p50", one["p50"])
                put(shape, who, "p95", one["p95"])
            many_of: dict[str, list[dict[str, float]]] = {who: [] for who, _ in order}
            for k in range(slices):
                first = (rnd + k) % len(order)  # each path first in turn
                turn = order[first:] + order[:first]
                for who, api in turn:
                    if api is None:
                        many_of[who].append(sh.sql_throughput(reader, us, slice_s))
                    else:
                        many_of[who].append(wrk_units(api.url, us, slice_s, work, generator))
            for who, api in order:
                got = many_of[who]
                put(shape, who, "ups", statistics.mean(m.get("ups", m["rps"]) for m in got))
                if api is not None:
                    put(shape, who, "bad", sum(m["bad"] for m in got))
                    put(shape, who, "p95@10", statistics.median(m["p95"] for m in got))
    floor_conn.close()
    for c in clients.values():
        c.close()

    def med(shape: str, who: str, what: str) -> float:
        return statistics.median(res.get((shape, who, what), [float("nan")]))

    how = "wrk -t2 -c10" if generator == "wrk" else "asyncio httpx, 10 clients"
    print()
    print(f"== query shapes: 1 client ({args.single:g} s a path, each unit sent to every path")
    print(f"   in turn) and 10 clients ({how}, {slices} x {slice_s} s a path, the paths taking")
    print(f"   turns); median of {args.rounds} rounds; ms and units/s")
    print(
        "   floor = pgSTAC's search() SQL on the same searches (psycopg; 10 threads for 10 clients)"
    )
    print(
        f"{'shape':<17}{'api':<10}{'p50':>8}{'p95':>8}{'units/s':>9}{'% floor':>9}"
        f"{'p95@10':>8}{'bad':>5}"
    )
    for shape in shapes:
        floor = med(shape, "floor", "ups")
        for who in ("internal", "external", "floor"):
            ups = med(shape, who, "ups")
            extra = ""
            if who != "floor":
                extra = f"{100 * ups / floor:8.0f}%{med(shape, who, 'p95@10'):8.1f}"
                extra += f"{int(med(shape, who, 'bad')):5d}"
            print(
                f"{shape:<17}{who:<10}{med(shape, who, 'p50'):8.1f}{med(shape, who, 'p95'):8.1f}"
                f"{ups:9.1f}{extra}"
            )
    print("targets: p50 < 25 ms, p95 < 60 ms (1 client); units/s >= 70 % of the floor; external")
    print("within 10 % of internal. A unit is one search, except the link walk (a page of 100")
    print("matchups, then their events and products by id as eomatch query asks: 2 searches).")
    for shape in shapes:
        ratio = 100 * med(shape, "external", "p50") / med(shape, "internal", "p50")
        tput = 100 * med(shape, "external", "ups") / med(shape, "internal", "ups")
        print(f"external vs internal, {shape:<16}: p50 {ratio:6.1f} %, units/s {tput:6.1f} %")
    floor_before_after(db, units, shapes, args, reader)
    return units


def measure_cache(
    args: argparse.Namespace, units: dict[str, Any], cached: Any, plain: Any, work: Path
) -> None:
    """The internal API with its answer cache (the default) next to it without (the table
    above): the first pass over the units (every answer new to the cache: what the snapshot
    lookup adds), then the same units again (every answer kept: 1 client and 10 clients)."""
    import httpx

    import service_shapes as sh

    generator = args.load_generator
    if generator == "auto":
        generator = "wrk" if shutil.which("wrk") else "httpx"
    shapes = [s for s in args.shapes.split(",") if s]
    print()
    print("== the answer cache (internal API, EOMATCH_API_CACHE_MB=64, the default): 1 client")
    print("   first pass = each unit once, new to the cache, next to the same units on the API")
    print("   without it (alternated); repeat = the same units again (kept answers); ms, units/s")
    print(
        f"{'shape':<17}{'first p50':>10}{'no cache':>10}{'repeat p50':>11}{'p95':>8}"
        f"{'units/s@10':>11}{'hits':>7}"
    )
    with (
        httpx.Client(base_url=cached.url, timeout=60) as c,
        httpx.Client(base_url=plain.url, timeout=60) as p,
    ):
        for shape in shapes:
            us = units[shape]
            first: list[float] = []
            bare: list[float] = []
            for u in us:
                for client, out in (
                    ((p, bare), (c, first)) if len(first) % 2 else ((c, first), (p, bare))
                ):
                    t = time.perf_counter()
                    sh.http_unit(client)(u)
                    out.append((time.perf_counter() - t) * 1e3)
            one = sh.single_client(sh.http_unit(c), us, args.single)
            hits = sum(
                c.get(sh.get_path(body)).headers.get("x-eomatch-cache") == "hit"
                for u in us
                for body in u
            )
            total = sum(len(u) for u in us)
            many = wrk_units(cached.url, us, args.duration, work, generator)
            print(
                f"{shape:<17}{statistics.median(first):10.1f}{statistics.median(bare):10.1f}"
                f"{one['p50']:11.1f}{one['p95']:8.1f}{many.get('ups', many['rps']):11.1f}"
                f"{100 * hits / total:6.0f}%"
            )


def floor_before_after(
    db: Any, units: dict[str, Any], shapes: list[str], args: argparse.Namespace, reader: Any
) -> None:
    """pgSTAC's search() with and without each change of pgstac_tuning, same data, same run:
    the API roles' settings (PostgreSQL's defaults back for the session), then the property
    indexes (the two queryables deleted, which drops their indexes: last, as it is final)."""
    import service_shapes as sh
    from eomatch.io.pgstac_tuning import INDEXED_QUERYABLES

    def floor_p(conn: Any, shape: str) -> tuple[float, float]:
        one = sh.single_client(sh.sql_unit(conn), units[shape], args.single)
        return one["p50"], one["p95"]

    print()
    print("== before/after of each change, pgSTAC search() floor, 1 client, p50/p95 ms")
    print("   (alternated, median of the rounds)")
    tuned, plain = reader(), reader()
    plain.execute("SET max_parallel_workers_per_gather = 2")
    plain.execute("SET jit = on")
    got: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for rnd in range(args.rounds):
        for shape in shapes:
            pair = [("after", tuned), ("before", plain)]
            for name, conn in pair if rnd % 2 == 0 else pair[::-1]:
                got.setdefault((shape, name), []).append(floor_p(conn, shape))
    for shape in shapes:
        b = got[(shape, "before")]
        a = got[(shape, "after")]
        print(
            f"no parallel workers, no JIT  {shape:<16} before "
            f"{statistics.median(x[0] for x in b):7.1f} / {statistics.median(x[1] for x in b):7.1f}"
            f"   after {statistics.median(x[0] for x in a):7.1f} / "
            f"{statistics.median(x[1] for x in a):7.1f}"
        )
    cql2 = [s for s in shapes if s.startswith("cql2")]
    if args.reuse_db:
        print("property indexes: not dropped on a reused database (a run that loads drops them)")
        cql2 = []
    after = {s: floor_p(tuned, s) for s in cql2}
    with timer() as t:
        for q in INDEXED_QUERYABLES if cql2 else ():
            db.query("SELECT pgstac.delete_queryable(%s)", q.name)
    before = {s: floor_p(tuned, s) for s in cql2}
    for s in cql2:
        print(
            f"property indexes (queryables) {s:<15} before {before[s][0]:7.1f} / "
            f"{before[s][1]:7.1f}   after {after[s][0]:7.1f} / {after[s][1]:7.1f}"
        )
    if cql2:
        print(f"   (dropping the indexes took {t[0]:.1f} s)")
    tuned.close()
    plain.close()


def time_query(db: Any, api: Any, work: Path, matchups: int, where: Path | None = None) -> None:
    """``eomatch query`` of about ``matchups`` matchups (a time window holding that many), run
    as a user runs it: the console script in a process of its own (its garbage collector
    settled as the script does, its interpreter start included)."""
    rows = db.query(
        "SELECT min(datetime), max(datetime) FROM (SELECT datetime FROM pgstac.items "
        "WHERE collection LIKE '%%-vs-%%' AND collection NOT LIKE 'matchup-events-%%' "
        "ORDER BY datetime LIMIT %s) t",
        matchups,
    )
    lo, hi = rows[0]
    out = Path(tempfile.mkdtemp(prefix="pulled-", dir=where or work))
    script = Path(sys.executable).parent / "eomatch"
    argv = [str(script), "query", "--api-url", api.url, "--output", str(out), "--limit", "1000"]
    argv += ["--start-time", lo.isoformat(), "--end-time", hi.isoformat()]
    env = {k: v for k, v in os.environ.items() if not k.startswith("EOMATCH_")}
    env["EOMATCH_CONFIG_DIR"] = str(work / "query-config")
    started = time.perf_counter()
    try:
        run = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
        seconds = time.perf_counter() - started
    finally:  # up to ~280 000 files, maybe in /dev/shm: never left behind
        shutil.rmtree(out, ignore_errors=True)
    if run.returncode != 0:
        raise SystemExit(f"eomatch query failed: {run.stderr.strip()[-500:]}")
    counts = re.search(r"(\d+) matchup\(s\) of (\d+) event\(s\) with (\d+) product", run.stdout)
    if counts is None:
        raise SystemExit(f"eomatch query printed no summary: {run.stdout[-500:]}")
    n_mu, n_ev, n_pr = (int(x) for x in counts.groups())
    print()
    print(
        f"== eomatch query: {n_mu} matchups, {n_ev} events, {n_pr} products in {seconds:.1f} s "
        f"({n_mu / seconds:,.0f} matchups/s; the console script, catalogue in {out.parent}), "
        "target < 60 s for 100 000"
    )


def main() -> None:
    args = _parse()
    _imports()
    import psycopg

    from eomatch.io.pg_cluster import LocalCluster
    from service_fixtures import ServiceDb, free_port, start_api

    args.dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="bench-service-", dir=args.dir))
    work.chmod(0o711)  # the postgres user must reach the cluster directory inside
    apis: list[Any] = []
    stop_cluster = True
    if args.reuse_db:
        where, dbname = args.reuse_db
        cluster = LocalCluster(where)
        stop_cluster = not _running(cluster)
        if stop_cluster:
            cluster.start()
    else:
        cluster = LocalCluster(work / "db")
    try:
        if args.reuse_db:
            db = ServiceDb(cluster, dbname)
            print(f"catalogue: {db.item_count()} items of {dbname} in {where} (an earlier run's)")
        else:
            cluster.init(port=free_port())
            admin = cluster.connection().with_db("postgres").conninfo()
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute("ALTER DATABASE eomatch WITH is_template true")
            if args.load == "disk":
                db = disk_ingest(cluster, work, args.items, work / "catalogue")
            else:
                db = memory_load(cluster, work, args.items, reuse=args.reuse_ndjson)
        disk_size(db)
        if args.ingest_only:
            return
        logs = work / "logs"
        logs.mkdir()
        print(f"APIs: {args.workers} uvicorn worker(s) each")
        # the main table measures every search run: the answer cache off (EOMATCH_API_CACHE_MB=0)
        os.environ["EOMATCH_API_CACHE_MB"] = "0"
        apis.append(start_api(db, "internal", logs, workers=args.workers))
        apis.append(start_api(db, "external", logs, workers=args.workers))
        del os.environ["EOMATCH_API_CACHE_MB"]
        units = measure(args, db, work, apis)
        apis.append(start_api(db, "internal", logs, workers=args.workers))
        measure_cache(args, units, apis[2], apis[0], work)
        if args.query_matchups:
            time_query(db, apis[0], work, args.query_matchups, args.query_dir)
    finally:
        for api in apis:
            api.stop()
        if cluster.initialised and stop_cluster:
            cluster.stop()
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def _running(cluster: Any) -> bool:
    """The cluster answers already (a kept cluster someone else started)."""
    import psycopg

    try:
        with psycopg.connect(
            cluster.connection().with_db("postgres").conninfo(), connect_timeout=2
        ):
            return True
    except Exception:
        return False


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
