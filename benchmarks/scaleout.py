"""Scale-out throughput (issue #16 §2): 1, 2 and 4 API instances, without and with the read
replica (and the replica behind pgbouncer), in one run.

A throwaway local cluster (``eomatch db init`` code path) in ``--dir`` gets ``--items``
synthetic items (one collection, 1° boxes over Europe, datetimes over 2022, a few properties).
For each variant — ``primary`` (no replica), ``replica`` (``eomatch db replica init``: both
APIs read from a streaming standby) and ``replica+pgbouncer`` (reads through pgbouncer in
transaction pooling) — and each instance count, the real ``eomatch serve`` stack
(:class:`eomatch.service.stack.Stack`: supervised uvicorns behind nginx) is started and
``--clients`` concurrent clients (wrk ``-t2``, or an asyncio httpx generator if wrk is missing)
send GET /api/search (bbox + one month, limit 10, rotating over 200 precomputed searches)
through the gateway for ``--duration`` seconds, with the APIs' answer cache off
(``EOMATCH_API_CACHE_MB=0``: what is measured is the read path, not repeats kept in memory).
``/api/`` rather than ``/external/``: the external side is rate-limited per client address (50
r/s), which a load generator on one address would hit; the internal API's reads take the same
path (the read pool, on the replica when there is one).

The replica runs on the same machine as the primary, so on a small box it adds no CPU: the
figures show whether anything serialises (a lock, one connection, one process), not the
capacity of a bigger deployment. Variants alternate over ``--rounds`` and the table shows
medians, because other jobs share the CPUs.

Run: ``uv run python benchmarks/scaleout.py [--items 20000] [--duration 10] [--rounds 2]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

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
    "RESULT {\\"p50\\": %%d, \\"p99\\": %%d, \\"requests\\": %%d, " ..
    "\\"errors\\": %%d, \\"non2xx\\": %%d, \\"duration_us\\": %%d}\\n",
    latency:percentile(50), latency:percentile(99),
    summary.requests, e.connect + e.read + e.write + e.timeout, e.status, summary.duration))
end
"""
COLLECTION = "bench-scaleout"


def items(n: int, seed: int = 16) -> list[dict[str, Any]]:
    """``n`` small STAC items over Europe in 2022 (seeded)."""
    rng = random.Random(seed)
    start = datetime(2022, 1, 1, tzinfo=UTC)
    out = []
    for i in range(n):
        x, y = rng.uniform(-10, 30), rng.uniform(35, 65)
        when = start + timedelta(seconds=rng.uniform(0, 365 * 86400))
        box = [x, y, x + 1, y + 1]
        out.append(
            {
                "type": "Feature",
                "stac_version": "1.0.0",
                "id": f"item-{i:07d}",
                "collection": COLLECTION,
                "geometry": {
                    "type": "Polygon",
                    "coordinates": [[[x, y], [x + 1, y], [x + 1, y + 1], [x, y + 1], [x, y]]],
                },
                "bbox": box,
                "properties": {
                    "datetime": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
                    "eo:cloud_cover": round(rng.uniform(0, 100), 1),
                    "platform": rng.choice(["sentinel-2a", "sentinel-2b", "landsat-9"]),
                },
                "assets": {},
                "links": [],
            }
        )
    return out


def load(cluster: Any, n: int) -> float:
    """Load the collection and ``n`` items with pypgstac's Loader; returns seconds."""
    from pypgstac.db import PgstacDB
    from pypgstac.load import Loader, Methods

    collection = {
        "type": "Collection",
        "stac_version": "1.0.0",
        "id": COLLECTION,
        "description": "scale-out benchmark",
        "license": "CC0-1.0",
        "extent": {
            "spatial": {"bbox": [[-10, 35, 31, 66]]},
            "temporal": {"interval": [["2022-01-01T00:00:00Z", "2022-12-31T23:59:59Z"]]},
        },
        "links": [],
    }
    t0 = time.perf_counter()
    with PgstacDB(dsn=cluster.connection().conninfo()) as pg:
        loader = Loader(db=pg)
        loader.load_collections(iter([collection]), Methods.upsert)
        loader.load_items(iter(items(n)), Methods.upsert)
    return time.perf_counter() - t0


def search_paths(count: int = 200, seed: int = 7) -> list[str]:
    """GET /api/search paths: a random 3° box and month, limit 10."""
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        x, y, month = rng.uniform(-10, 27), rng.uniform(35, 62), rng.randint(1, 12)
        end = f"2022-{month + 1:02d}-01T00:00:00Z" if month < 12 else "2022-12-31T23:59:59Z"
        out.append(
            f"/api/search?collections={COLLECTION}&bbox={x:.2f},{y:.2f},{x + 3:.2f},{y + 3:.2f}"
            f"&datetime=2022-{month:02d}-01T00:00:00Z/{end}&limit=10"
        )
    return out


def run_wrk(
    base: str, paths: list[str], clients: int, duration: int, work: Path
) -> dict[str, float]:
    script = work / "rotate.lua"
    script.write_text(LUA % ", ".join(json.dumps(p) for p in paths))
    cmd = ["wrk", "-t2", f"-c{clients}", f"-d{duration}s", "--timeout", "30s", "-s", str(script)]
    proc = subprocess.run([*cmd, base], capture_output=True, text=True, check=True)
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))
    raw = json.loads(line[len("RESULT ") :])
    return {
        "rps": raw["requests"] / (raw["duration_us"] / 1e6),
        "p50": raw["p50"] / 1e3,
        "p99": raw["p99"] / 1e3,
        "bad": raw["errors"] + raw["non2xx"],
    }


def run_httpx(base: str, paths: list[str], clients: int, duration: int) -> dict[str, float]:
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
                r = await http.get(base + paths[i % len(paths)])
                latencies.append(time.perf_counter() - t)
                bad += r.status_code != 200
                i += clients

        limits = httpx.Limits(max_connections=clients)
        async with httpx.AsyncClient(timeout=30, limits=limits) as http:
            start = time.perf_counter()
            await asyncio.gather(*(client(k, http) for k in range(clients)))
            elapsed = time.perf_counter() - start
        q = statistics.quantiles(latencies, n=100)
        return {"rps": len(latencies) / elapsed, "p50": q[49] * 1e3, "p99": q[98] * 1e3, "bad": bad}

    return asyncio.run(main())


def measure(cluster: Any, instances: int, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Start the stack with ``instances`` per API, load it, stop it."""
    import httpx

    from eomatch.io.db_target import DbTarget
    from eomatch.service.stack import Stack, free_port

    run_dir = Path(tempfile.mkdtemp(prefix="scaleout-run-", dir="/tmp"))
    run_dir.chmod(0o755)
    os.environ["PGPASSFILE"] = str(cluster.passfile)
    # every search run: with the answer cache (added after this benchmark) the 200 rotating
    # searches are kept after one pass and no request reaches PostgreSQL or the replica
    os.environ["EOMATCH_API_CACHE_MB"] = "0"
    target = DbTarget("127.0.0.1", cluster.port, cluster.dbname, None, cluster)
    stack = Stack(
        target=target,
        run_dir=run_dir,
        port=free_port(),
        build_browser=False,
        instances=instances,
        report=lambda msg: None,
    )
    t0 = time.perf_counter()
    stack.start()
    started = time.perf_counter() - t0
    try:
        base = stack.base_url.rstrip("/")
        paths = search_paths()
        for p in paths[:20]:  # warm every instance's pool and plan cache a little
            r = httpx.get(base + p, timeout=30)
            if r.status_code != 200:
                raise SystemExit(f"warm-up failed: HTTP {r.status_code} {r.text[:200]}")
        if shutil.which("wrk") and args.load_generator == "wrk":
            result = run_wrk(base, paths, args.clients, args.duration, work)
        else:
            result = run_httpx(base, paths, args.clients, args.duration)
        result["start_s"] = started
        result["read_hosts"] = stack.read_hosts or "primary"
        return result
    finally:
        stack.stop()
        shutil.rmtree(run_dir, ignore_errors=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--items", type=int, default=20_000)
    p.add_argument("--duration", type=int, default=10, help="seconds of load per measurement")
    p.add_argument("--clients", type=int, default=10)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--instances", default="1,2,4")
    p.add_argument("--dir", type=Path, default=None, help="scratch folder (default: /tmp)")
    p.add_argument("--load-generator", choices=("wrk", "httpx"), default="wrk")
    args = p.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from eomatch.io.pg_cluster import LocalCluster
    from eomatch.io.pg_pooler import LocalPooler
    from eomatch.io.pg_replica import LocalReplica
    from eomatch.service.stack import free_port

    counts = [int(c) for c in args.instances.split(",")]
    parent = Path(tempfile.mkdtemp(prefix="scaleout-", dir=args.dir or "/tmp"))
    parent.chmod(0o711)
    cluster = LocalCluster(parent / "db")
    replica = LocalReplica(cluster)
    work = parent / "work"
    work.mkdir()
    print(f"cpus {os.cpu_count()}, load average {os.getloadavg()[0]:.1f}, items {args.items}")
    try:
        cluster.init(port=free_port())
        print(f"loaded {args.items} items in {load(cluster, args.items):.1f} s")
        replica.init(port=free_port())
        rport = replica.port
        LocalPooler(cluster, rport).configure(free_port())
        replica.stop()

        def variant(name: str) -> None:
            """Put the cluster in the state ``name`` needs (what serve will pick up)."""
            pooler = LocalPooler(cluster, rport)
            if name == "primary":
                replica.stop()
                # serve reads from a replica whenever one is initialised: hide it
                replica.state_file.rename(replica.state_file.with_suffix(".off"))
            else:
                off = replica.state_file.with_suffix(".off")
                if off.exists():
                    off.rename(replica.state_file)
                ini_off = pooler.ini.with_suffix(".off")
                if name == "replica" and pooler.ini.exists():
                    pooler.stop()
                    pooler.ini.rename(ini_off)
                if name == "replica+pgbouncer" and ini_off.exists():
                    ini_off.rename(pooler.ini)
                replica.start()

        results: dict[tuple[str, int], list[dict[str, Any]]] = {}
        for rnd in range(args.rounds):
            for name in ("primary", "replica", "replica+pgbouncer"):
                variant(name)
                for n in counts:
                    r = measure(cluster, n, args, work)
                    results.setdefault((name, n), []).append(r)
                    print(
                        f"round {rnd + 1} {name:<18} x{n}: {r['rps']:7.1f} req/s  p50 "
                        f"{r['p50']:6.1f} ms  p99 {r['p99']:7.1f} ms  bad {r['bad']}  "
                        f"(reads on {r['read_hosts']}, start {r['start_s']:.1f} s, load "
                        f"{os.getloadavg()[0]:.1f})",
                        flush=True,
                    )
        print(f"\nmedians over {args.rounds} round(s), {args.clients} clients, GET /api/search")
        print("| reads on | instances per API | req/s | p50 ms | p99 ms | failed |")
        print("|---|---|---|---|---|---|")
        for (name, n), rs in results.items():
            med = {k: statistics.median(r[k] for r in rs) for k in ("rps", "p50", "p99")}
            bad = sum(r["bad"] for r in rs)
            print(
                f"| {name} | {n} | {med['rps']:.1f} | {med['p50']:.1f} | {med['p99']:.1f} | {bad} |"
            )
    finally:
        off = replica.state_file.with_suffix(".off")
        if off.exists():
            off.rename(replica.state_file)
        replica.stop()
        cluster.stop()
        shutil.rmtree(parent, ignore_errors=True)


if __name__ == "__main__":
    main()
