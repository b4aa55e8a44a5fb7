"""Pull speed of ``eomatch query`` (figures, no asserts).

Serves N synthetic matchups (default 10 000: 5 000 events with 2 matchups of 2 products each,
so 35 000 items) from the test STAC API in ``tests/matchup_api_server.py`` (real HTTP on
127.0.0.1, the service's item form) and pulls them into a fresh catalogue, then pulls again
(everything unchanged). Target (issue #5): 10 000 matchups with their events and products
in under 15 s. ``--synth`` serves the first N matchups (in time order) of the realistic 1M-item
catalogue of ``catalogue_synth`` instead (78 pairs, ~90 collections; what issue #16's
``benchmarks/service.py --items 1000000 --query-matchups N`` pulls from pgSTAC), so the client's
share of that figure shows without PostgreSQL (searches answered newest first across
collections, as pgSTAC does). ``--pgstac`` pulls from the real local stack instead: the same
synthetic catalogue is written to disk, ingested into a throwaway PostgreSQL/pgSTAC cluster
and served by the internal and external APIs (stac-fastapi-pgstac, uvicorn), and both are
pulled.
``--api-url`` pulls from an already running service, after loading nothing.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "tests")]

from catalogue import synthetic_event  # noqa: E402
from eomatch.core import stac_items as si  # noqa: E402
from eomatch.workflows.query import query_catalogue  # noqa: E402
from matchup_api_server import MatchupApi, serve, stored_item  # noqa: E402


def api_documents(matchups: int, root: Path) -> tuple[list[dict], list[dict]]:
    """Collections and items (stored form) of ``matchups // 2`` synthetic events."""
    items: dict[str, dict] = {}
    colls: dict[str, dict] = {}
    for i in range(max(1, matchups // 2)):
        event = synthetic_event(i)
        docs = [(si.event_path(event), si.event_to_item(event))]
        for mu in event.matchups:
            docs.append((si.matchup_path(mu), si.matchup_to_item(mu, event)))
            docs += [(si.product_path(p), si.product_to_item(p)) for p in mu.products]
        for rel, item in docs:
            items[item["id"]] = stored_item(rel, item, root)
            coll = item["collection"]
            if coll not in colls:
                colls[coll] = si.collection_dict(coll, item["bbox"], si.item_times(item))
    for c in colls.values():
        c["links"] = []
    return list(colls.values()), list(items.values())


def synth_documents(matchups: int, catalogue_items: int) -> tuple[list[dict], list[dict]]:
    """Collections and stored items of the first events of a ``catalogue_items`` synthetic
    catalogue (catalogue_synth) holding at least ``matchups`` matchups."""
    from catalogue_synth import collections, event_documents, synthetic_events
    from eomatch.core.publish import HrefRewriter

    items: list[dict] = []
    n = 0
    for event in synthetic_events(catalogue_items):
        if n >= matchups:
            break
        n += len(event.matchups)
        docs = event_documents(event)
        where = {rel: (item["collection"], item["id"]) for rel, item in docs}
        rewriter = HrefRewriter(Path("/nonexistent"), where.get)
        items += [rewriter.item(item, rel) for rel, item in docs]
    return collections(), items


class TimeOrderedApi(MatchupApi):
    """The test API answering searches newest first across collections, as pgSTAC does (the
    test server pages collection by collection): a page then spans a few days of every
    collection, which is what the catalogue writer sees from the real service."""

    def _hits(self, params: dict) -> list[dict]:
        hits = super()._hits(params)
        if params.get("ids"):
            return hits
        key = json.dumps({k: v for k, v in params.items() if k != "token"}, sort_keys=True)
        with self.lock:
            done = self.__dict__.setdefault("_newest_first", {})
            if key not in done:
                done[key] = sorted(
                    hits, key=lambda i: (i["properties"].get("datetime") or "", i["id"]),
                    reverse=True,
                )  # fmt: skip
            return done[key]


def serve_forever(matchups: int, work: Path, synth: int = 0) -> None:
    """Child process: build and serve the documents; print the URL; stop when stdin closes."""
    if synth:
        colls, items = synth_documents(matchups, synth)
    else:
        colls, items = api_documents(matchups, work)
    state = TimeOrderedApi() if synth else MatchupApi()
    state.load(colls, items)
    with serve(state) as api:
        print(api.url, len(items), flush=True)
        sys.stdin.read()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--matchups", type=int, default=10_000)
    parser.add_argument("--limit", type=int, default=1000, help="matchups per page")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--api-url", default=None, help="pull from this API (nothing loaded)")
    parser.add_argument("--dir", type=Path, default=None, help="work here (default: a temp dir)")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "--synth",
        type=int,
        nargs="?",
        const=1_000_000,
        default=0,
        help="serve the first --matchups matchups of this big a catalogue_synth catalogue",
    )
    parser.add_argument("--pgstac", action="store_true", help="pull from the real local stack")
    parser.add_argument("--api-workers", type=int, default=1, help="uvicorn workers (--pgstac)")
    args = parser.parse_args()
    if args.pgstac:
        pgstac_bench(args)
        return
    work = args.dir or Path(tempfile.mkdtemp(prefix="eomatch-query-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    if args.serve:
        serve_forever(args.matchups, work, args.synth)
        return
    out = work / "pulled"
    shutil.rmtree(out, ignore_errors=True)
    server = None
    try:
        url = args.api_url
        if url is None:
            # the API runs in its own process, as the real service does: its JSON encoding
            # must not compete with the client for this interpreter's GIL
            t = time.perf_counter()
            server = subprocess.Popen(
                [sys.executable, __file__, "--serve", "--matchups", str(args.matchups),
                 "--dir", str(work), "--synth", str(args.synth)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )  # fmt: skip
            assert server.stdout is not None
            url, count = server.stdout.readline().split()
            print(f"serving {count} API items at {url} (built in {time.perf_counter() - t:.1f} s)")
        for label in ("fresh pull", "pull again (unchanged)"):
            s = query_catalogue(url, out, limit=args.limit, workers=args.workers)
            print(
                f"{label}: {s.seconds:.1f} s, {s.requests} requests; matchups "
                f"{s.matchups.new} new / {s.matchups.unchanged} unchanged, events "
                f"{s.events.total}, products {s.products.total}"
                f" ({s.matchups.total / max(s.seconds, 1e-9):.0f} matchups/s)"
            )
        print("target: 10 000 matchups with their events and products in < 15 s")
    finally:
        if server is not None:
            assert server.stdin is not None
            server.stdin.close()
            server.wait(timeout=30)
        if args.dir is None:
            shutil.rmtree(work, ignore_errors=True)


def pgstac_bench(args: argparse.Namespace) -> None:
    """Catalogue on disk → ingest → internal and external APIs → pull each, twice."""
    import psycopg

    from catalogue import file_system, fs_floor
    from catalogue import load as build_catalogue
    from eomatch.io.pg_cluster import LocalCluster
    from eomatch.io.pgstac_store import PgstacStore
    from eomatch.workflows.ingest import ingest_catalogue
    from service_fixtures import _new_db, free_port, start_api

    base = args.dir or HERE.parent / "out"
    base.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="bench-query-", dir=base))
    work.chmod(0o711)  # the postgres user must reach the cluster inside
    cluster = LocalCluster(work / "db")
    apis = []
    try:
        t_gen = build_catalogue(work / "catalogue", max(1, args.matchups // 2))
        cluster.init(port=free_port())
        admin = cluster.connection().with_db("postgres").conninfo()
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute("ALTER DATABASE eomatch WITH is_template true")
        db = _new_db(cluster)
        t = time.perf_counter()
        report = ingest_catalogue(work / "catalogue", PgstacStore(db.role("eomatch_ingest")))
        print(
            f"catalogue generated in {t_gen:.1f} s; ingested {report.items} items in "
            f"{time.perf_counter() - t:.1f} s (not counted)"
        )
        (work / "logs").mkdir()
        for mode in ("internal", "external"):
            apis.append(start_api(db, mode, work / "logs", workers=args.api_workers))
        for api in apis:
            out = work / f"pulled-{api.log.name.split('-')[1]}"
            for label in ("fresh pull", "pull again (unchanged)"):
                s = query_catalogue(api.url, out, limit=args.limit, workers=args.workers)
                print(
                    f"{api.log.name.split('-')[1]} API, {label}: {s.seconds:.1f} s, "
                    f"{s.requests} requests; matchups {s.matchups.new} new / "
                    f"{s.matchups.unchanged} unchanged, events {s.events.total}, products "
                    f"{s.products.total} ({s.matchups.total / max(s.seconds, 1e-9):.0f} matchups/s)"
                )
            t_floor, n_files = fs_floor(out, work / f"floor-{api.log.name.split('-')[1]}")
            print(
                f"  file system alone ({file_system(work)}), the same {n_files:,} files:"
                f" {t_floor:.1f} s (same run; in the fresh pull's time)"
            )
        print("target: 10 000 matchups with their events and products in < 15 s")
    finally:
        for api in apis:
            api.stop()
        cluster.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
