"""Rollback speed (issue #12): undoing a 10 000-item transaction, next to writing it.

A throwaway PostgreSQL/PostGIS cluster (``eomatch db init`` code path) is created in ``--dir``
and removed at the end. In one fresh database, with the history triggers on:

1. the reference: 10 000 new items upserted in ONE transaction through pypgstac's loader
   (``PgstacStore.upsert_items``, what ingest uses), then the same items changed (a property
   and an asset each) in a second transaction;
2. ``rollback`` of the update transaction (10 000 documents back to their first state,
   conflicts checked, one new transaction), through :func:`eomatch.workflows.history.rollback`;
3. ``rollback --to`` the point before the insert (10 000 deletions), through
   :func:`~eomatch.workflows.history.rollback_to`; and the dry run of (2) before it ran.

Each figure is the time and items/s, with the rollback as a multiple of its reference.

Run: ``uv run python benchmarks/history.py [--items 10000] [--dir /work/bench]``
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def items(n: int, version: int) -> list[dict[str, Any]]:
    """``n`` items of collection ``bench`` (about 1 kB each), ``version`` changing content."""
    out = []
    for k in range(n):
        lon, lat = -170 + (k % 340), -60 + (k // 340) % 120
        doc: dict[str, Any] = {
            "type": "Feature",
            "stac_version": "1.1.0",
            "id": f"item-{k:06d}",
            "collection": "bench",
            "geometry": {
                "type": "Polygon",
                "coordinates": [[[lon, lat], [lon + 1, lat], [lon + 1, lat + 1], [lon, lat]]],
            },
            "bbox": [lon, lat, lon + 1, lat + 1],
            "properties": {
                "datetime": f"2022-05-{1 + k % 28:02d}T12:00:00Z",
                "platform": "sentinel-2a",
                "eo:cloud_cover": k % 100,
                "version": version,
            },
            "assets": {
                "data": {"href": f"https://example.org/{k}/data.nc", "roles": ["data"]},
                "thumbnail": {"href": f"https://example.org/{k}/thumb.png"},
            },
            "links": [],
        }
        if version > 1:
            doc["assets"]["analysis"] = {"href": f"https://example.org/{k}/v{version}.nc"}
        out.append(doc)
    return out


def collection() -> dict[str, Any]:
    return {
        "type": "Collection",
        "stac_version": "1.1.0",
        "id": "bench",
        "description": "history benchmark",
        "license": "CC-BY-4.0",
        "links": [],
        "extent": {
            "spatial": {"bbox": [[-180, -90, 180, 90]]},
            "temporal": {"interval": [["2022-01-01T00:00:00Z", None]]},
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=10_000, help="items in the transaction")
    parser.add_argument(
        "--dir", type=Path, default=HERE.parent / "out", help="work directory (on /work)"
    )
    args = parser.parse_args()
    sys.path.insert(0, str(HERE.parent / "tests"))
    import orjson
    import psycopg

    from eomatch.io.history_schema import WriteNote
    from eomatch.io.pg_cluster import LocalCluster
    from eomatch.io.pgstac_store import PgstacStore
    from eomatch.workflows import history
    from service_fixtures import _new_db, free_port

    n = args.items
    args.dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="bench-history-", dir=args.dir))
    work.chmod(0o711)  # the postgres user must reach the cluster directory inside
    cluster = LocalCluster(work / "db")
    try:
        cluster.init(port=free_port())
        admin = cluster.connection().with_db("postgres").conninfo()
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute("ALTER DATABASE eomatch WITH is_template true")
        db = _new_db(cluster)
        note = WriteNote("bench", "job")
        store = PgstacStore(db.role("eomatch_ingest"), note)
        with psycopg.connect(db.role("eomatch_ingest").conninfo()) as conn:
            conn.execute(
                "SELECT pgstac.create_collection(%s::jsonb)", (orjson.dumps(collection()).decode(),)
            )
        first, second = items(n, 1), items(n, 2)

        def last_tx() -> int:
            return int(db.query("SELECT max(id) FROM eomatch.transactions")[0][0])  # type: ignore[call-overload]

        tx_collection = last_tx()

        t0 = time.perf_counter()
        store.upsert_items(first)
        t_insert = time.perf_counter() - t0
        t0 = time.perf_counter()
        store.upsert_items(second)
        t_update = time.perf_counter() - t0
        tx_update = last_tx()

        t0 = time.perf_counter()
        dry = history.rollback(store, tx_update, dry_run=True)
        t_dry = time.perf_counter() - t0
        assert dry.tx is None
        assert dry.plan.counts()["update"] == n, dry.plan.counts()

        t0 = time.perf_counter()
        res = history.rollback(store, tx_update, note=note.as_kind("rollback"))
        t_rollback = time.perf_counter() - t0
        assert res.tx is not None
        assert res.plan.counts()["update"] == n

        t0 = time.perf_counter()
        res = history.rollback_to(store, tx_collection, note=note)
        t_to = time.perf_counter() - t0
        assert res.plan.counts()["delete"] == n, res.plan.counts()
        assert store.item_count() == 0

        def row(what: str, seconds: float, ref: float | None = None) -> None:
            ratio = f"  {seconds / ref:5.2f} x the reference" if ref else ""
            print(f"{what:<44}{seconds:8.2f} s {n / seconds:10,.0f} items/s{ratio}")

        print(f"history benchmark: {n} items in one transaction (pgSTAC, history on)")
        row("reference: upsert of new items", t_insert)
        row("reference: upsert of changed items", t_update)
        row("rollback TX of the update, dry run", t_dry, t_update)
        row("rollback TX of the update", t_rollback, t_update)
        row("rollback --to before the insert (deletes)", t_to, t_insert)
    finally:
        if cluster.initialised:
            cluster.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
