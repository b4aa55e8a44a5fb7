"""Export at a past point (issue #12 closing figures): 100 000 items, ~10 % changed since.

Full scale: the synthetic 100 000-item catalogue of ``benchmarks/service.py`` (the events of
``benchmarks/catalogue.py``, 7 items each) ingested into a throwaway cluster; then ~10 % of the
items are changed through one upsert (pgSTAC's ``upsert_items``, as an API bulk write would),
so the point "just after the ingest" differs from now by 10 000 documents kept in the history.
``--scale 0.1`` runs a tenth. Building the catalogue, the ingest and the upsert are not timed.

Figures (each in the same run, on the same database):

* ``export --at`` the ingest's last transaction (the past point: 90 % of the items read from
  the current rows, 10 % from the history), seconds and items/s;
* ``export`` of the current state (the reference: same writer, no history read); the two
  alternate, best of two each;
* the raw read of the same snapshot alone (``HistoryStore.documents_at``, no files written),
  which is what ``eomatch query`` would have to fetch as well: the floor of the database side;
* ``export --at ... --format geoparquet`` (stac-geoparquet), if the extra is installed.

Run: ``uv run python benchmarks/history_export.py [--scale 0.1] [--dir /work/bench]``
"""

from __future__ import annotations

import argparse
import math
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ITEMS_PER_EVENT = 7
HERE = Path(__file__).resolve().parent


def _imports() -> None:
    """benchmarks/ (the catalogue generator) and tests/ (the service fixtures) on sys.path."""
    for path in (HERE, HERE.parent / "tests"):
        if str(path) not in sys.path:
            sys.path.insert(0, str(path))


def change_tenth(store: Any, fraction: float) -> int:
    """Change ``fraction`` of the items (a property and an asset) in one upsert transaction."""
    import orjson

    from eomatch.io.history_schema import describe_sql

    with store.connect(autocommit=True) as conn:
        rows = conn.execute(
            "SELECT content_hydrate(i) FROM pgstac.items i WHERE abs(hashtext(i.id)) %% 1000 < %s",
            (round(fraction * 1000),),
        ).fetchall()
        docs = []
        for (doc,) in rows:
            doc["properties"]["eomatch:reviewed"] = True
            doc["assets"]["review"] = {"href": "https://example.org/review.json"}
            docs.append(doc)
        with conn.transaction():
            conn.execute(describe_sql(), ("bench", "job", "review 10 %", None))
            for i in range(0, len(docs), 5000):
                conn.execute(
                    "SELECT pgstac.upsert_items(%s::jsonb)",
                    (orjson.dumps(docs[i : i + 5000]).decode(),),
                )
    return len(docs)


def timed(label: str, n: int, fn: Any, ref: float | None = None) -> float:
    start = time.perf_counter()
    fn()
    t = time.perf_counter() - start
    extra = f"  ({t / ref:.2f}x the reference)" if ref else ""
    print(f"{label:<44}{t:8.2f} s {n / t:10,.0f} items/s{extra}", flush=True)
    return t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=1.0, help="1.0 = 100 000 items")
    parser.add_argument(
        "--dir", type=Path, default=HERE.parent / "out", help="work directory (on /work)"
    )
    parser.add_argument("--changed", type=float, default=0.1, help="fraction changed after")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args()
    _imports()
    import psycopg

    from catalogue import load as build_catalogue  # benchmarks/catalogue.py
    from eomatch.extras import _installed
    from eomatch.io.history_store import HistoryStore
    from eomatch.io.pg_cluster import LocalCluster
    from eomatch.io.pgstac_store import PgstacStore
    from eomatch.workflows.export import export_catalogue
    from eomatch.workflows.ingest import ingest_catalogue
    from service_fixtures import _new_db, free_port

    n_events = max(10, math.ceil(100_000 * args.scale / ITEMS_PER_EVENT))
    args.dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="bench-export-", dir=args.dir))
    work.chmod(0o711)  # the postgres user must reach the cluster directory inside
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
        report = ingest_catalogue(root, store)
        past = str(db.query("SELECT max(id) FROM eomatch.transactions")[0][0])
        changed = change_tenth(PgstacStore(db.role("eomatch_api")), args.changed)
        n = report.items
        n_hist = db.query("SELECT count(*) FROM eomatch.changes")[0][0]
        print(
            f"ingested {n} items (transactions up to {past}); then changed {changed} items in "
            f"one upsert ({n_hist} change rows in the history)"
        )
        history = HistoryStore(store)
        point = history.point(past)
        print()
        t_read = timed(
            "raw read of the snapshot at --at (no files)",
            n,
            lambda: sum(1 for _ in history.documents_at(point)),
        )
        # the two exports alternate, best of two each: the first export of a run was measured
        # 30-40 % slower whichever it was (a cold page cache, other jobs on the machine)
        runs: dict[str, list[float]] = {"now": [], "past": []}
        for rnd in range(2):
            for name in ("now", "past") if rnd == 0 else ("past", "now"):
                out = work / f"{name}-{rnd}"
                start = time.perf_counter()
                export_catalogue(store, out, at=past if name == "past" else None)
                runs[name].append(time.perf_counter() - start)
                shutil.rmtree(out, ignore_errors=True)
        t_now, t_past = min(runs["now"]), min(runs["past"])
        print(f"{'export, current state (reference)':<44}{t_now:8.2f} s {n / t_now:10,.0f} items/s")
        print(
            f"{f'export --at {past} (past point)':<44}{t_past:8.2f} s {n / t_past:10,.0f} items/s"
            f"  ({t_past / t_now:.2f}x the reference)"
        )
        print(f"{'  of which the database read (floor)':<44}{t_read:8.2f} s")
        if _installed("stac_geoparquet"):
            timed(
                f"export --at {past} --format geoparquet",
                n,
                lambda: export_catalogue(store, work / "gp", at=past, format="geoparquet"),
                ref=t_now,
            )
        print(f"\nper item, past point: {1e6 * t_past / n:.0f} us")
    finally:
        cluster.stop()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
