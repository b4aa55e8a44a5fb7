"""Harvest speed against the raw fetch of the same pages, same run (issue 14 §4).

10 000 items from a local STAC API (tests/stac_api_server.py: Sentinel-2 L2A and Landsat C2
L2 shaped items, POST paging with next-link bodies) and 10 000 products from a local OpenSearch
server (tests/opensearch_server.py: CDSE/resto-shaped GeoJSON, and Atom), each harvested with
a CQL2 filter (``eo:cloud_cover < 60``) and one post-processor, into a throwaway database.

Printed per source, items/s over the items the source returned:

* raw fetch: the same page requests, answers read and counted, nothing else;
* dry run: fetch + map to STAC + filter + post-process + validate, nothing written;
* harvest: all of it, registered page by page (registrar, one transaction a page), with
  the high-water mark stored after each page.

Both servers are single-process stdlib HTTP servers in this process: their cost is in every
row, so the differences between rows are what harvesting adds.

Run: ``uv run python benchmarks/harvest.py [--items 10000] [--page-size 500]``
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
for _p in (HERE, HERE.parent / "tests"):
    sys.path.insert(0, str(_p))


class TagPostprocessor:
    """The benchmark's post-processor: tags each item (a typical enrichment)."""

    def postprocess(self, item: dict[str, Any]) -> dict[str, Any] | None:
        item["properties"]["eomatch:harvested_by"] = "benchmark"
        return item


def stac_items(n: int) -> list[dict[str, Any]]:
    """``n`` items, 3 Sentinel-2 L2A for each Landsat C2 L2, 10 minutes apart."""
    from test_harvest import T0, landsat_l2, s2_l2a

    out = []
    for i in range(n):
        when = T0 + timedelta(minutes=10 * i)
        cloud = float((i * 7) % 100)
        out.append(s2_l2a(i, when, cloud) if i % 4 else landsat_l2(i % 50, when, cloud))
        out[-1]["id"] = f"{out[-1]['id']}_{i:05d}"  # unique: the builders reuse tile/path names
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--page-size", type=int, default=500)
    parser.add_argument("--dir", type=Path, default=HERE.parent / "out", help="work directory")
    args = parser.parse_args()
    import psycopg

    from eomatch.config.harvest import HarvesterConfig
    from eomatch.io.http import HttpLimits
    from eomatch.io.pg_cluster import LocalCluster
    from eomatch.io.pgstac_store import PgstacStore
    from eomatch.workflows.harvest import fetch_raw, run_harvest
    from opensearch_server import OpenSearchServer, default_products
    from opensearch_server import serve as serve_opensearch
    from service_fixtures import _new_db, free_port
    from stac_api_server import StacApiServer
    from stac_api_server import serve as serve_stac

    sys.modules.setdefault("harvest_bench", sys.modules[__name__])
    limits = HttpLimits(timeout_s=60)
    args.dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="bench-harvest-", dir=args.dir))
    work.chmod(0o711)
    cluster = LocalCluster(work / "db")
    try:
        cluster.init(port=free_port())
        admin = cluster.connection().with_db("postgres").conninfo()
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute("ALTER DATABASE eomatch WITH is_template true")
        common = {
            "filter": '"eo:cloud_cover" < 60',
            "postprocess": ["harvest_bench.TagPostprocessor"],
        }
        rows: list[tuple[str, str, int, int, float]] = []

        def measure(label: str, h: HarvesterConfig) -> None:
            t = time.perf_counter()
            pages, n = fetch_raw(h, limits=limits)
            rows.append((label, "raw fetch", n, n, time.perf_counter() - t))
            t = time.perf_counter()
            dry = run_harvest(h, None, dry_run=True, limits=limits)
            rows.append(
                (label, "dry run", dry.counts.seen, dry.counts.written, time.perf_counter() - t)
            )
            db = _new_db(cluster)
            store = PgstacStore(db.role("eomatch_ingest"))
            t = time.perf_counter()
            real = run_harvest(h, store, limits=limits)
            rows.append(
                (label, "harvest", real.counts.seen, real.counts.written, time.perf_counter() - t)
            )
            stored = int(db.query("SELECT count(*) FROM pgstac.items")[0][0])  # type: ignore[call-overload]
            assert stored == real.counts.written, (stored, real.counts.to_json())
            assert pages == real.counts.pages, (pages, real.counts.pages)

        with serve_stac(StacApiServer(items=stac_items(args.items))) as api:
            h = HarvesterConfig.model_validate(
                {
                    "name": "bench-stac",
                    "resource": {"url": api.url, "type": "stac-api", "page_size": args.page_size},
                    "target": {"collection": "bench-stac"},
                    **common,
                }
            )
            measure("STAC API", h)
        products = default_products(args.items)
        for kind, mapping in (
            (
                "application/json",
                {"eo:cloud_cover": "cloudCover", "platform": "platform", "s2:mgrs_tile": "tileId"},
            ),
            (
                "application/atom+xml",
                {
                    "eo:cloud_cover": "eo:cloudCover",
                    "platform": "eo:platform",
                    "s2:mgrs_tile": "resto:tileId",
                },
            ),
        ):
            with serve_opensearch(OpenSearchServer(products=products)) as srv:
                h = HarvesterConfig.model_validate(
                    {
                        "name": "bench-os",
                        "resource": {
                            "url": f"{srv.url}/describe.xml",
                            "type": "opensearch",
                            "page_size": args.page_size,
                            "format_config": {"type": kind, "property_mapping": mapping},
                        },
                        "target": {"collection": "bench-opensearch"},
                        **common,
                    }
                )
                measure("OpenSearch " + ("GeoJSON" if "json" in kind else "Atom"), h)
        print(
            f"== harvest of {args.items} items, {args.page_size} a page, CQL2 filter + 1 "
            "post-processor"
        )
        print(
            f"{'source':<20}{'what':<11}{'seen':>7}{'kept':>7}{'seconds':>9}{'items/s':>10}"
            f"{'vs raw':>8}"
        )
        raw_s: dict[str, float] = {}
        for label, what, seen, kept, secs in rows:
            if what == "raw fetch":
                raw_s[label] = secs
            ratio = secs / raw_s[label]
            print(
                f"{label:<20}{what:<11}{seen:>7}{kept:>7}{secs:>9.2f}{seen / secs:>10,.0f}"
                f"{ratio:>7.2f}x"
            )
    finally:
        if cluster.initialised:
            cluster.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
