"""CSW and OGC API - Records speed next to STAC item search, same items, same run (issue 14 §4).

Full scale: the 100 000-item synthetic catalogue of ``benchmarks/catalogue.py`` ingested with
``ingest_catalogue`` into a throwaway cluster; then, against one internal API process (uvicorn,
1 worker), 10 concurrent clients for ``--duration`` seconds each run:

* STAC ``GET /search`` with bbox + datetime (the queries of ``benchmarks/service.py``);
* OGC API - Records ``GET /records/collections/metadata:main/items`` with the same bbox and
  datetime (pycsw, over the ``eomatch_records.records`` view);
* CSW 2.0.2 ``POST /csw`` GetRecords with an ``ogc:Filter`` of the same BBOX and ``dc:date``
  window (brief records).

All ask for 10 results. Also printed: what the records backend costs the ingest. The view costs
nothing by construction; the alternative (a table kept in sync by row triggers in the same
transaction) is measured by ingesting the same catalogue into a fresh database with such a
trigger, against a fresh database without it.

Run: ``uv run python benchmarks/records.py [--scale 0.2] [--dir /work/bench] [--duration 10]``
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

HERE = Path(__file__).resolve().parent
ITEMS_PER_EVENT = 7  # benchmarks/catalogue.py: 1 event, 2 matchups, 4 products
SECONDS_PER_EVENT = 311  # benchmarks/catalogue.py spreads event i at T0 + i * 311 s
T0 = datetime(2022, 1, 1, tzinfo=UTC)


def _imports() -> None:
    """benchmarks/ (the catalogue generator) and tests/ (the service fixtures) on sys.path."""
    for path in (HERE, HERE.parent / "tests"):
        if str(path) not in sys.path:
            sys.path.insert(0, str(path))


@contextmanager
def timer() -> Iterator[list[float]]:
    """Seconds the block took, in the list it yields (filled on exit)."""
    out: list[float] = []
    start = time.perf_counter()
    yield out
    out.append(time.perf_counter() - start)


CSW_FILTER = """<?xml version="1.0" encoding="UTF-8"?>
<csw:GetRecords xmlns:csw="http://www.opengis.net/cat/csw/2.0.2"
  xmlns:ogc="http://www.opengis.net/ogc" xmlns:gml="http://www.opengis.net/gml"
  service="CSW" version="2.0.2" resultType="results" maxRecords="10">
 <csw:Query typeNames="csw:Record"><csw:ElementSetName>brief</csw:ElementSetName>
  <csw:Constraint version="1.1.0"><ogc:Filter><ogc:And>
   <ogc:BBOX><ogc:PropertyName>ows:BoundingBox</ogc:PropertyName>
    <gml:Envelope><gml:lowerCorner>{miny} {minx}</gml:lowerCorner>
     <gml:upperCorner>{maxy} {maxx}</gml:upperCorner></gml:Envelope></ogc:BBOX>
   <ogc:PropertyIsGreaterThanOrEqualTo><ogc:PropertyName>dc:date</ogc:PropertyName>
    <ogc:Literal>{start}</ogc:Literal></ogc:PropertyIsGreaterThanOrEqualTo>
   <ogc:PropertyIsLessThanOrEqualTo><ogc:PropertyName>dc:date</ogc:PropertyName>
    <ogc:Literal>{end}</ogc:Literal></ogc:PropertyIsLessThanOrEqualTo>
  </ogc:And></ogc:Filter></csw:Constraint></csw:Query></csw:GetRecords>"""

# the alternative design, for its ingest cost only: the view's rows copied into a table by a
# row trigger, in the writer's transaction
TABLE_SQL = """
CREATE TABLE eomatch_records.records_table AS SELECT * FROM eomatch_records.records LIMIT 0;
ALTER TABLE eomatch_records.records_table ADD PRIMARY KEY (identifier);
CREATE INDEX ON eomatch_records.records_table USING gist (wkb_geometry);
CREATE OR REPLACE FUNCTION eomatch_records.sync_item() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pgstac, public, pg_temp AS $$
BEGIN
    IF TG_OP <> 'INSERT' THEN
        DELETE FROM eomatch_records.records_table
        WHERE identifier = OLD.collection || ':' || OLD.id;
    END IF;
    IF TG_OP <> 'DELETE' THEN
        INSERT INTO eomatch_records.records_table {select}
        ON CONFLICT (identifier) DO NOTHING;
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER eomatch_records_sync AFTER INSERT OR UPDATE OR DELETE ON pgstac.items
    FOR EACH ROW EXECUTE FUNCTION eomatch_records.sync_item();
"""


def windows(span_s: float, n: int = 32) -> list[tuple[list[float], str, str]]:
    """The bbox + day windows of benchmarks/service.py (same seed)."""
    rng = random.Random(4)
    out = []
    for _ in range(n):
        lon, lat = rng.uniform(-170, 150), rng.uniform(-70, 50)
        start = T0 + timedelta(seconds=rng.uniform(0, max(span_s - 86400, 0)))
        end = start + timedelta(days=1)
        box = [round(lon, 2), round(lat, 2), round(lon + 20, 2), round(lat + 20, 2)]
        out.append((box, f"{start:%Y-%m-%dT%H:%M:%SZ}", f"{end:%Y-%m-%dT%H:%M:%SZ}"))
    return out


def requests_for(kind: str, wins: list[tuple[list[float], str, str]]) -> list[dict[str, Any]]:
    """(method, path, body) of each query of one kind."""
    out: list[dict[str, Any]] = []
    for box, start, end in wins:
        bbox = ",".join(f"{v:.2f}" for v in box)
        if kind == "STAC /search":
            params = {"bbox": bbox, "datetime": f"{start}/{end}", "limit": "10"}
            out.append({"method": "GET", "url": "/search?" + urlencode(params, quote_via=quote)})
        elif kind == "Records items":
            params = {"bbox": bbox, "datetime": f"{start}/{end}", "limit": "10"}
            path = "/records/collections/metadata:main/items?"
            out.append({"method": "GET", "url": path + urlencode(params, quote_via=quote)})
        else:
            xml = CSW_FILTER.format(
                minx=box[0], miny=box[1], maxx=box[2], maxy=box[3], start=start, end=end
            )
            out.append(
                {
                    "method": "POST",
                    "url": "/csw",
                    "content": xml.encode(),
                    "headers": {"content-type": "application/xml"},
                }
            )
    return out


def load(url: str, reqs: list[dict[str, Any]], duration: int) -> dict[str, float]:
    """10 concurrent clients rotating over ``reqs`` for ``duration`` s: latency quantiles."""
    import httpx

    async def run() -> dict[str, float]:
        latencies: list[float] = []
        bad = 0
        deadline = time.perf_counter() + duration

        async def client(k: int, http: httpx.AsyncClient) -> None:
            nonlocal bad
            i = k
            while time.perf_counter() < deadline:
                req = reqs[i % len(reqs)]
                t = time.perf_counter()
                r = await http.request(
                    req["method"],
                    url + req["url"],
                    content=req.get("content"),
                    headers=req.get("headers"),
                )
                latencies.append(time.perf_counter() - t)
                bad += r.status_code >= 300 or b"ExceptionReport" in r.content[:600]
                i += 10

        limits = httpx.Limits(max_connections=10)
        async with httpx.AsyncClient(timeout=60, limits=limits) as http:
            start = time.perf_counter()
            await asyncio.gather(*(client(k, http) for k in range(10)))
            elapsed = time.perf_counter() - start
        q = statistics.quantiles(latencies, n=100)
        return {"p50": q[49] * 1e3, "p95": q[94] * 1e3, "rps": len(latencies) / elapsed, "bad": bad}

    return asyncio.run(run())


def matched(url: str, wins: list[tuple[list[float], str, str]]) -> list[tuple[int, int, int]]:
    """numberMatched of STAC search, Records and CSW on every window (the same items?)."""
    import httpx
    from lxml import etree

    out = []
    for win in wins:
        counts = []
        for kind in ("STAC /search", "Records items", "CSW GetRecords"):
            req = requests_for(kind, [win])[0]
            if kind == "STAC /search":
                box, start, end = win
                r = httpx.post(
                    url + "/search",
                    json={"bbox": box, "datetime": f"{start}/{end}", "limit": 10000},
                    timeout=60,
                )
                counts.append(len(r.json()["features"]))
            elif kind == "Records items":
                counts.append(httpx.get(url + req["url"], timeout=60).json()["numberMatched"])
            else:
                r = httpx.post(url + req["url"], content=req["content"],
                               headers=req["headers"], timeout=60)  # fmt: skip
                res = etree.fromstring(r.content).find(
                    "{http://www.opengis.net/cat/csw/2.0.2}SearchResults"
                )
                counts.append(int(res.get("numberOfRecordsMatched")))
        out.append((counts[0], counts[1], counts[2]))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=1.0, help="1.0 = 100 000 items")
    parser.add_argument("--dir", type=Path, default=HERE.parent / "out", help="work directory")
    parser.add_argument("--duration", type=int, default=10, help="seconds per load run")
    parser.add_argument("--skip-write-cost", action="store_true", help="no table-vs-view ingest")
    args = parser.parse_args()
    _imports()
    import psycopg

    from catalogue import load as build_catalogue  # benchmarks/catalogue.py
    from eomatch.io.pg_cluster import LocalCluster
    from eomatch.io.pgstac_store import PgstacStore
    from eomatch.io.records_schema import _select
    from eomatch.workflows.ingest import ingest_catalogue
    from service_fixtures import _new_db, free_port, start_api

    n_events = max(10, math.ceil(100_000 * args.scale / ITEMS_PER_EVENT))
    args.dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="bench-records-", dir=args.dir))
    work.chmod(0o711)
    api = None
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
        with timer() as t:
            first = ingest_catalogue(root, PgstacStore(db.role("eomatch_ingest")))
        n_items = first.items
        records = int(db.query("SELECT count(*) FROM eomatch_records.records")[0][0])  # type: ignore[call-overload]
        print(f"ingest: {n_items} items in {t[0]:.1f} s; records in the view: {records}")

        if not args.skip_write_cost:
            view_times, table_times = [], []
            for with_table in (False, True, False, True):
                fresh = _new_db(cluster)
                if with_table:
                    # the view's own SELECT, on the written row instead of the items table
                    select = _select("").replace("FROM pgstac.items i", "FROM (SELECT (NEW).*) i")
                    with psycopg.connect(fresh.role().conninfo(), autocommit=True) as conn:
                        conn.execute(TABLE_SQL.replace("{select}", select))
                with timer() as t:
                    ingest_catalogue(root, PgstacStore(fresh.role("eomatch_ingest")))
                (table_times if with_table else view_times).append(t[0])
                if with_table:
                    copied = fresh.query("SELECT count(*) FROM eomatch_records.records_table")
                    assert copied[0][0] == n_items, copied
            t_view, t_table = min(view_times), min(table_times)
            print()
            print("== what the records backend costs the ingest (best of two each)")
            print(f"{'view (this design)':<34}{t_view:8.2f} s {n_items / t_view:10,.0f} items/s")
            print(
                f"{'trigger-maintained table':<34}{t_table:8.2f} s "
                f"{n_items / t_table:10,.0f} items/s  ({100 * (t_table / t_view - 1):+.1f} %)"
            )

        logs = work / "logs"
        logs.mkdir()
        api = start_api(db, "internal", logs)
        wins = windows(n_events * SECONDS_PER_EVENT)
        kinds = {
            k: requests_for(k, wins) for k in ("STAC /search", "Records items", "CSW GetRecords")
        }
        print()
        rows = matched(api.url, wins)
        totals = [sum(r[k] for r in rows) for k in range(3)]
        print(f"== matched over the {len(rows)} windows (STAC, Records, CSW): {tuple(totals)};")
        print(f"   windows with any match: {sum(1 for r in rows if r[0])}; where Records or CSW")
        print(f"   differ from STAC: {sum(1 for r in rows if len(set(r)) > 1)} (Records and STAC")
        print("   intersect in time; CSW's filter asks dc:date, the start, inside the window)")
        for reqs in kinds.values():  # warm up
            load(api.url, reqs, 2)
        results: dict[str, list[dict[str, float]]] = {}
        for _round in range(2):
            for kind, reqs in kinds.items():
                results.setdefault(kind, []).append(load(api.url, reqs, args.duration))
        print()
        print(f"== bbox + time search at {n_items} items, 10 concurrent clients, {args.duration} s")
        print("   a run, median of 2 rounds, internal API (1 uvicorn worker), milliseconds")
        print(f"{'query':<18}{'req/s':>8}{'p50':>9}{'p95':>9}{'bad':>6}")
        for kind, runs in results.items():
            m = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
            print(f"{kind:<18}{m['rps']:8.1f}{m['p50']:9.1f}{m['p95']:9.1f}{int(m['bad']):6d}")
    finally:
        if api is not None:
            api.stop()
        if cluster.initialised:
            cluster.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
