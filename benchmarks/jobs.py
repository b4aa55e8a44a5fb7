"""The job queue (issue 13 §5): 200 small rasters through 2 workers vs serially, and the latency
of ``POST /api/jobs`` under 10 concurrent clients.

Everything runs against a throwaway cluster (``eomatch db init`` code path) in ``--dir``:

* ``--n`` GeoTIFFs of 512x512x3 (uint8, random: poor compression, like real data) are made;
* **serial reference**: the ``raster`` kind's own code (``ingest_raster``: COG with overviews,
  object store, STAC item, upsert) on ``--n`` files, one after the other, in this process;
* **queue**: ``--n`` other files submitted at once as ``raster`` jobs (``submit_job``, with
  the checks and pooled connections of ``POST /jobs``, no HTTP), run by ``--workers``
  ``eomatch worker`` processes (concurrency 1 each); wall time from the first submit to the
  last job ended (the database's clock), worker start-up excluded (they are registered and
  have run one warm-up job each before the submits);
* **API**: a real internal API (uvicorn, 1 process) and ``--clients`` threads each posting
  ``--posts`` ``raster`` jobs (key check, params validation, collection check, one
  transaction); p50/p95/max latency. No worker runs meanwhile.

Run: ``uv run python benchmarks/jobs.py [--n 200] [--dir /tmp]``
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def _imports() -> None:
    for path in (HERE, HERE.parent / "tests"):
        if str(path) not in sys.path:
            sys.path.insert(0, str(path))


def make_rasters(folder: Path, n: int, prefix: str) -> list[Path]:
    import numpy as np
    import rasterio
    from rasterio.transform import from_origin

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(42)
    out = []
    for i in range(n):
        path = folder / f"{prefix}{i:04d}.tif"
        data = rng.integers(0, 255, size=(3, 512, 512), dtype=np.uint8)
        with rasterio.open(
            path, "w", driver="GTiff", width=512, height=512, count=3, dtype="uint8",
            crs="EPSG:4326", transform=from_origin(-10 + i * 0.01, 50, 0.001, 0.001),
        ) as dst:  # fmt: skip
            dst.write(data)
        out.append(path)
    return out


def collection(cid: str) -> dict[str, Any]:
    return {
        "type": "Collection",
        "stac_version": "1.1.0",
        "id": cid,
        "description": "benchmark rasters",
        "license": "CC-BY-4.0",
        "extent": {
            "spatial": {"bbox": [[-180, -90, 180, 90]]},
            "temporal": {"interval": [[None, None]]},
        },
        "links": [],
    }


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--posts", type=int, default=30, help="POSTs per client")
    parser.add_argument("--dir", type=Path, default=Path("/tmp"))
    args = parser.parse_args()
    _imports()
    import httpx
    import psycopg

    from eomatch.io.job_queue import JobQueue
    from eomatch.io.object_store import LocalFolderStore
    from eomatch.io.pg_cluster import LocalCluster
    from eomatch.io.pgstac_store import PgstacStore
    from eomatch.service.job_routes import _PooledStore as PooledStore
    from eomatch.service.stack import api_command, free_port
    from eomatch.workflows.jobs.raster_kind import RasterParams, ingest_raster
    from eomatch.workflows.jobs.worker import submit_job

    work = Path(tempfile.mkdtemp(prefix="eomatch-bench-jobs-", dir=args.dir))
    work.chmod(0o711)
    cluster = LocalCluster(work / "db")
    procs: list[subprocess.Popen[bytes]] = []
    try:
        t = time.perf_counter()
        cluster.init(port=free_port())
        print(f"cluster ready in {time.perf_counter() - t:.1f} s", flush=True)
        admin = cluster.connection()
        with psycopg.connect(admin.conninfo(), autocommit=True) as conn:
            conn.execute("SET search_path TO pgstac, public")
            for cid in ("serial", "queued"):
                conn.execute("SELECT create_collection(%s::jsonb)", (_json(collection(cid)),))
        t = time.perf_counter()
        serial_files = make_rasters(work / "in", args.n, "s")
        queued_files = make_rasters(work / "in", args.n, "q")
        print(f"{2 * args.n} rasters 512x512x3 written in {time.perf_counter() - t:.1f} s")
        objects_dir = work / "objects"
        objects_dir.mkdir()
        objects_dir.chmod(0o777)
        env = {
            **os.environ,
            "PGHOST": "127.0.0.1",
            "PGPORT": str(cluster.port),
            "PGDATABASE": cluster.dbname,
            "PGPASSFILE": str(cluster.passfile),
            "EOMATCH_STORAGE_DIR": str(objects_dir),
            "EOMATCH_JOBS_POLL": "1",
        }
        env.pop("PGUSER", None)
        env.pop("PGPASSWORD", None)
        os.environ["EOMATCH_STORAGE_DIR"] = str(objects_dir)
        ingest = cluster.connection("eomatch_ingest")

        # -- serial reference, in this process -------------------------------------------
        store = PgstacStore(ingest)
        objects = LocalFolderStore(objects_dir)
        t = time.perf_counter()
        for path in serial_files:
            params = RasterParams(
                collection="serial", source=str(path), datetime="2024-05-01T00:00:00Z"
            )
            ingest_raster(params, store, objects)
        serial = time.perf_counter() - t
        print(
            f"serial (one process, ingest_raster): {args.n} rasters in {serial:.1f} s = "
            f"{args.n / serial:.2f} items/s",
            flush=True,
        )

        # -- the queue, 2 workers ----------------------------------------------------------
        logs = work / "logs"
        logs.mkdir()
        for w in range(args.workers):
            with (logs / f"worker-{w}.log").open("wb") as fh:
                procs.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "eomatch", "worker"],
                        env=env,
                        stdout=fh,
                        stderr=subprocess.STDOUT,
                    )
                )
        queue = JobQueue.pooled(ingest, size=2)  # as the API submits: pooled connections
        pooled_store = PooledStore(ingest, queue)
        # start-up is not part of the figure: wait until every worker is registered, then run
        # one warm-up job each (a kind's first run imports GDAL's Python side)
        while True:
            with psycopg.connect(admin.conninfo()) as conn:
                row = conn.execute("SELECT count(*) FROM procrastinate_workers").fetchone()
            if row and row[0] >= args.workers:
                break
            time.sleep(0.2)
        warm = make_rasters(work / "warm", args.workers, "w")
        warm_ids = [
            submit_job(
                queue,
                pooled_store,
                "raster",
                {"collection": "serial", "source": str(p), "datetime": "2024-05-01T00:00:00Z"},
                "bench",
            )
            for p in warm
        ]
        while any(queue.get(i).status in ("queued", "running") for i in warm_ids):
            time.sleep(0.2)
        t = time.perf_counter()
        ids = [
            submit_job(
                queue,
                pooled_store,
                "raster",
                {"collection": "queued", "source": str(p), "datetime": "2024-05-01T00:00:00Z"},
                "bench",
            )
            for p in queued_files
        ]
        submitted = time.perf_counter() - t
        while True:
            ended = sum(queue.list(status=s, limit=1)[1] for s in ("succeeded", "failed"))
            if ended >= len(ids) + len(warm_ids):
                break
            time.sleep(0.2)
        wall = time.perf_counter() - t
        failed = queue.list(status="failed", limit=1)[1]  # warm-ups included
        with psycopg.connect(admin.conninfo()) as conn:  # the database's clock, no polling lag
            row = conn.execute(
                "SELECT extract(epoch FROM max(finished_at) - min(created_at)) FROM eomatch.jobs "
                "WHERE id = ANY(%s)",
                (ids,),
            ).fetchone()
        db_wall = float(row[0]) if row and row[0] is not None else wall
        print(
            f"queue ({args.workers} workers x 1): {args.n} raster jobs submitted in "
            f"{submitted:.2f} s; first submit to last job ended {db_wall:.1f} s = "
            f"{args.n / db_wall:.2f} items/s ({failed} failed), x{serial / db_wall:.2f} the "
            f"serial run (seen by polling after {wall:.1f} s)",
            flush=True,
        )
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            p.wait(60)
        procs.clear()

        # -- POST /api/jobs latency, 10 clients ----------------------------------------------
        key = PgstacStore(admin).create_key("bench")
        port = free_port()
        api_env = {
            **env,
            "EOMATCH_API_MODE": "internal",
            "EOMATCH_DB_WAIT": "20",
            "EOMATCH_JOBS_INPUT_DIR": str(work / "in"),  # the folder API jobs may read
        }
        with (logs / "api.log").open("wb") as fh:
            procs.append(
                subprocess.Popen(
                    api_command(port), env=api_env, stdout=fh, stderr=subprocess.STDOUT
                )
            )
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(url + "/_mgmt/ping", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError((logs / "api.log").read_text()[-2000:])
            time.sleep(0.2)
        latencies: list[float] = []
        errors: list[str] = []
        lock = threading.Lock()
        body = {
            "kind": "raster",
            "params": {
                "collection": "queued",
                "source": str(queued_files[0]),
                "datetime": "2024-05-01T00:00:00Z",
            },
        }

        def client() -> None:
            with httpx.Client(headers={"Authorization": f"Bearer {key}"}, timeout=30) as c:
                c.post(url + "/jobs", json=body)  # warm the connection
                for _ in range(args.posts):
                    s = time.perf_counter()
                    r = c.post(url + "/jobs", json=body)
                    took = time.perf_counter() - s
                    with lock:
                        latencies.append(took)
                        if r.status_code != 202:
                            errors.append(r.text[:200])

        threads = [threading.Thread(target=client) for _ in range(args.clients)]
        t = time.perf_counter()
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        total = time.perf_counter() - t
        print(
            f"POST /jobs, {args.clients} concurrent clients x {args.posts}: "
            f"p50 {statistics.median(latencies) * 1000:.1f} ms, "
            f"p95 {percentile(latencies, 0.95) * 1000:.1f} ms, "
            f"max {max(latencies) * 1000:.1f} ms, {len(latencies) / total:.0f} req/s, "
            f"{len(errors)} errors",
            flush=True,
        )
        if errors:
            print("first error:", errors[0])
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(10)
        try:
            cluster.stop()
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return 0


def _json(doc: Any) -> str:
    import json

    return json.dumps(doc)


if __name__ == "__main__":
    raise SystemExit(main())
