"""Harvesting into the real database: the CLI end to end, incremental runs, resume after a
failure and after ``kill -9``, dry runs, the history, the job kind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from eomatch.cli.main import main
from eomatch.config.harvest import HarvesterConfig
from eomatch.core.harvest import HarvestCounts
from eomatch.errors import EomatchError
from eomatch.io.harvest_state import HarvestStateStore
from eomatch.io.pgstac_store import PgstacStore
from eomatch.io.registrar import Registrar
from eomatch.workflows.harvest import run_harvest
from eomatch.workflows.jobs import JobContext, get_kind
from opensearch_server import OpenSearchServer, default_products
from opensearch_server import serve as serve_opensearch
from service_fixtures import ServiceDb
from stac_api_server import StacApiServer
from stac_api_server import serve as serve_stac
from test_harvest import FAST, T0, landsat_l2, mixed_items, s2_l2a


@pytest.fixture
def cli_env(service_db: ServiceDb, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> ServiceDb:
    """The CLI pointed at ``service_db`` as the ingest role; no user configuration file."""
    for k, v in service_db.env().items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("PGUSER", "eomatch_ingest")
    monkeypatch.delenv("PGPASSWORD", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    return service_db


def store(db: ServiceDb) -> PgstacStore:
    return PgstacStore(db.role("eomatch_ingest"))


def write_config(path: Path, *harvesters: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump({"harvesters": list(harvesters)}))
    return path


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    code = main([*argv, "--format", "json"])
    out = capsys.readouterr()
    assert code == 0, out.err
    return json.loads(out.out)


def s2_harvester(url: str, **kw: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "name": "s2",
        "resource": {"url": url, "type": "stac-api", "page_size": 4},
        "query": {"collection": "sentinel-2-l2a"},
        "filter": '"eo:cloud_cover" < 50',
        "postprocess": ["test_harvest.KeepLowTiles"],
        "target": {"collection": "s2-l2a-harvested"},
    }
    doc.update(kw)
    return doc


def test_cli_run_all_status_list_history(
    cli_env: ServiceDb, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = cli_env
    with serve_stac(StacApiServer(items=mixed_items())) as api:
        cfg = write_config(
            tmp_path / "h.yaml",
            s2_harvester(api.url),
            {
                "name": "landsat",
                "resource": {"url": api.url, "type": "stac-api"},
                "query": {"collection": "landsat-c2l2-sr", "bbox": [10, 45, 20, 50]},
                "target": {"collection": "landsat-c2l2-sr"},
            },
        )
        out = cli(capsys, "harvest", "run", "--all", "--config", str(cfg))
    runs = {r["harvester"]: r for r in out["runs"]}
    assert out["failed"] == []
    assert runs["s2"]["counts"] == {
        "pages": 5,
        "seen": 20,
        "filtered": 10,
        "dropped": 1,
        "invalid": 0,
        "written": 9,
    }
    assert runs["s2"]["created_collection"] is True
    assert runs["landsat"]["counts"]["written"] == 4
    rows = db.query("SELECT collection, count(*) FROM pgstac.items GROUP BY 1 ORDER BY 1")
    assert rows == [("landsat-c2l2-sr", 4), ("s2-l2a-harvested", 9)]
    item = store(db).get_item("s2-l2a-harvested", s2_l2a(0, T0)["id"])
    assert item is not None
    p = item["properties"]
    assert p["eomatch:harvest_tag"] == "checked"
    assert (p["s2:mgrs_tile"], p["proj:epsg"], p["eo:cloud_cover"]) == ("33TUN", 32633, 0.0)
    assert {
        "rel": "via",
        "href": s2_l2a(0, T0)["links"][0]["href"],
        "type": "application/geo+json",
    } in item["links"]
    ls = store(db).get_item("landsat-c2l2-sr", landsat_l2(1, T0 + timedelta(days=1, hours=2))["id"])
    assert ls is not None
    assert ls["properties"]["landsat:wrs_path"] == "192"
    # the history: every transaction described as the harvester's
    txs = db.query(
        "SELECT actor, kind, count(*) FROM eomatch.transactions GROUP BY 1, 2 ORDER BY 1"
    )
    # (the target collection's creation, then each page with items)
    assert txs == [("harvest:landsat", "harvest", 2), ("harvest:s2", "harvest", 4)]
    keys = {(str(c), str(i)) for c, i in db.query("SELECT collection, id FROM pgstac.items")}
    assert Registrar(store(db)).records(keys) == keys  # registered: in the records views too
    status = cli(capsys, "harvest", "status", "s2", "--config", str(cfg))
    assert status["status"] == "ok"
    assert status["mark"].startswith("2022-05-20T10:00:00")
    assert status["total_written"] == 9
    listed = cli(capsys, "harvest", "list", "--state", "--config", str(cfg))
    assert [(r["name"], r["state"]["status"]) for r in listed] == [("s2", "ok"), ("landsat", "ok")]
    assert main(["harvest", "status", "nope", "--config", str(cfg)]) != 0
    assert "no harvester named 'nope' (known: s2, landsat)" in capsys.readouterr().err
    assert main(["harvest", "reset", "s2", "--config", str(cfg)]) == 0
    assert "high-water mark forgotten" in capsys.readouterr().out
    assert cli(capsys, "harvest", "status", "s2", "--config", str(cfg))["status"] == "never"


def test_incremental_second_run_asks_only_for_newer(
    cli_env: ServiceDb, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = cli_env
    server = StacApiServer(items=mixed_items(8))
    with serve_stac(server) as api:
        cfg = write_config(tmp_path / "h.yaml", s2_harvester(api.url, filter=None, postprocess=[]))
        first = cli(capsys, "harvest", "run", "s2", "--config", str(cfg))["runs"][0]
        assert first["counts"]["seen"] == 8
        mark = first["mark_after"]
        server.items += [s2_l2a(100 + i, T0 + timedelta(days=30 + i)) for i in range(3)]
        n = len(server.search_bodies)
        second = cli(capsys, "harvest", "run", "s2", "--config", str(cfg))["runs"][0]
        asked = server.search_bodies[n:]
    assert mark.startswith("2022-05-08T10:00:00")
    assert len(asked) == 1
    assert asked[0]["datetime"].startswith("2022-05-08T10:00:00.000000Z/")  # from the mark on
    assert second["counts"]["seen"] == 4  # the item at the mark again, and the 3 new ones
    assert second["mark_after"].startswith("2022-06-02T10:00:00")
    assert db.query("SELECT count(*) FROM pgstac.items") == [(11,)]
    assert db.query("SELECT count(DISTINCT id) FROM pgstac.items") == [(11,)]


def test_failed_run_resumes_from_last_page_without_duplicates(cli_env: ServiceDb) -> None:
    db = cli_env
    server = StacApiServer(items=mixed_items(20))
    with serve_stac(server) as api:
        h = HarvesterConfig.model_validate(
            s2_harvester(
                api.url,
                filter=None,
                postprocess=[],
                resource={"url": api.url, "type": "stac-api", "page_size": 4, "max_retries": 1},
            )
        )

        def break_after_two_pages(counts: HarvestCounts) -> None:
            if counts.pages == 2:
                server.fail_next(100, 503, "/search")

        with pytest.raises(EomatchError, match="HTTP 503"):
            run_harvest(h, store(db), limits=FAST, progress=break_after_two_pages)
        state = HarvestStateStore(store(db)).get("s2")
        assert state.status == "failed"
        assert "HTTP 503" in (state.error or "")
        assert state.mark == T0 + timedelta(days=7)  # the last item of page 2
        assert db.query("SELECT count(*) FROM pgstac.items") == [(8,)]
        server.fail_next(0)
        n = len(server.search_bodies)
        report = run_harvest(h, store(db), limits=FAST)
        assert server.search_bodies[n]["datetime"].startswith("2022-05-08T10:00:00")
    assert report.counts.seen == 13  # item 7 again, then 8..19
    assert db.query("SELECT count(*), count(DISTINCT id) FROM pgstac.items") == [(20, 20)]
    assert HarvestStateStore(store(db)).get("s2").status == "ok"


def test_killed_run_resumes(cli_env: ServiceDb, tmp_path: Path) -> None:
    """``kill -9`` of ``eomatch harvest run`` mid-way: the pages committed stay, the mark
    covers only them, a re-run completes with every item exactly once."""
    db = cli_env
    server = StacApiServer(items=mixed_items(24), delay_s=0.15)
    with serve_stac(server) as api:
        cfg = write_config(tmp_path / "h.yaml", s2_harvester(api.url, filter=None, postprocess=[]))
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent)}
        proc = subprocess.Popen(
            [sys.executable, "-m", "eomatch", "harvest", "run", "s2", "--config", str(cfg)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                done = db.query("SELECT count(*) FROM pgstac.items")[0][0]
                if isinstance(done, int) and done >= 8:
                    break
                time.sleep(0.05)
            os.kill(proc.pid, signal.SIGKILL)
        finally:
            proc.wait(timeout=10)
        stored = db.query("SELECT count(*) FROM pgstac.items")[0][0]
        assert isinstance(stored, int)
        assert 8 <= stored < 24
        state = HarvestStateStore(store(db)).get("s2")
        assert state.status == "running"  # never finished
        newest = db.query(
            "SELECT max(datetime) FROM pgstac.items WHERE collection = 's2-l2a-harvested'"
        )[0][0]
        assert state.mark is not None
        assert state.mark <= newest  # type: ignore[operator]
        server.delay_s = 0
        assert main(["harvest", "run", "s2", "--config", str(cfg)]) == 0
    assert db.query("SELECT count(*), count(DISTINCT id) FROM pgstac.items") == [(24, 24)]


def test_database_without_the_state_table_gets_a_hint(
    cli_env: ServiceDb, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = cli_env
    with psycopg.connect(db.role().conninfo(), autocommit=True) as conn:
        conn.execute("DROP TABLE eomatch.harvest_state")
    cfg = write_config(tmp_path / "h.yaml", s2_harvester("http://127.0.0.1:9"))
    assert main(["harvest", "status", "s2", "--config", str(cfg)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("eomatch: error: the database has no eomatch.harvest_state table")
    assert "eomatch db migrate" in err
    assert len(err.splitlines()) == 1


def test_dry_run_writes_nothing(
    cli_env: ServiceDb, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = cli_env
    before = db.snapshot()
    with serve_stac(StacApiServer(items=mixed_items(6))) as api:
        cfg = write_config(tmp_path / "h.yaml", s2_harvester(api.url))
        out = cli(capsys, "harvest", "run", "s2", "--dry-run", "--config", str(cfg))
    assert out["runs"][0]["dry_run"] is True
    assert out["runs"][0]["counts"]["written"] == 5  # cloud 0..25 all < 50; tile ZN (i=5) dropped
    assert db.snapshot() == before
    assert db.query("SELECT count(*) FROM eomatch.harvest_state") == [(0,)]
    assert db.query("SELECT count(*) FROM eomatch.transactions") == [(0,)]


def test_opensearch_cli_into_database_and_job_kind(
    cli_env: ServiceDb, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = cli_env
    with serve_opensearch(OpenSearchServer(products=default_products(9))) as srv:
        h = {
            "name": "cdse-s2",
            "resource": {
                "url": f"{srv.url}/describe.xml",
                "type": "opensearch",
                "page_size": 4,
                "format_config": {
                    "type": "application/atom+xml",
                    "property_mapping": {
                        "eo:cloud_cover": "eo:cloudCover",
                        "platform": "eo:platform",
                        "s2:mgrs_tile": "resto:tileId",
                    },
                },
            },
            "query": {"time": {"begin": "2022-05-01"}},
            "target": {"collection": "cdse-s2-l2a"},
        }
        cfg = write_config(tmp_path / "h.yaml", h)
        out = cli(capsys, "harvest", "run", "cdse-s2", "--config", str(cfg))
        assert out["runs"][0]["counts"]["written"] == 9
        assert [s["index"] for s in srv.searches()] == ["1", "5", "9"]
        item = store(db).get_item("cdse-s2-l2a", "00000003-5b2e-4c1a-9f0e-000000000003")
        assert item is not None
        assert item["properties"]["eo:cloud_cover"] == 35
        assert item["properties"]["s2:mgrs_tile"] == "33TXN"
        assert item["assets"]["data"]["roles"] == ["data"]
        # the same harvester as a job (the kind the worker and schedules run)
        srv.products += default_products(12)[9:]
        kind = get_kind("harvest")
        params = kind.params_model.model_validate({"harvester": "cdse-s2", "config": str(cfg)})
        assert kind.precheck is not None
        kind.precheck(params, store(db))
        result = kind.run(params, JobContext(job_id=7, store=store(db)))
        assert result.info["counts"]["seen"] == 4  # the item at the mark, and 3 new ones
        bad = kind.params_model.model_validate({"harvester": "nope", "config": str(cfg)})
        with pytest.raises(EomatchError, match="no harvester named 'nope'"):
            kind.precheck(bad, store(db))
    assert db.query("SELECT count(*) FROM pgstac.items") == [(12,)]
    assert db.query(
        "SELECT DISTINCT actor, run FROM eomatch.transactions WHERE run LIKE 'job:%'"
    ) == [("harvest:cdse-s2", "job:7:1")]


def test_scheduled_harvest_runs_on_the_worker(service_db: ServiceDb, tmp_path: Path) -> None:
    """``schedules:`` with kind ``harvest``: a real ``eomatch worker`` fires it and the items
    arrive, written as the harvester."""
    from test_jobs import queue, worker

    db = service_db
    with serve_stac(StacApiServer(items=mixed_items(6))) as api:
        config = tmp_path / "config.yaml"
        doc = {
            "harvesters": [s2_harvester(api.url, filter=None, postprocess=[])],
            "schedules": [
                {
                    "name": "s2-often",
                    "cron": "* * * * * */2",
                    "kind": "harvest",
                    "params": {"harvester": "s2", "config": str(config)},
                }
            ],
        }
        config.write_text(yaml.safe_dump(doc))
        log = tmp_path / "worker.log"
        with worker(db, log, "--config", str(config)):
            deadline = time.monotonic() + 40
            while time.monotonic() < deadline:
                jobs, _ = queue(db).list(submitter="schedule:s2-often", status="succeeded")
                if jobs:
                    break
                time.sleep(0.2)
            else:
                raise AssertionError(log.read_text()[-3000:])
    assert jobs[0].kind == "harvest"
    assert db.query("SELECT count(*) FROM pgstac.items WHERE collection = 's2-l2a-harvested'") == [
        (6,)
    ]
    actors = db.query("SELECT DISTINCT actor FROM eomatch.transactions")
    assert actors == [("harvest:s2",)]


FILTER_SORT = (
    "https://api.stacspec.org/v1.0.0-rc.2/item-search#filter",
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/filter",
    "https://api.stacspec.org/v1.0.0/item-search#sort",
)


def with_updated(items: list[dict[str, Any]], hours: int = 5) -> list[dict[str, Any]]:
    for i in items:
        t = i["properties"]["datetime"].replace("Z", "+00:00")
        upd = datetime.fromisoformat(t) + timedelta(hours=hours)
        i["properties"]["updated"] = upd.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return items


def test_updated_mark_picks_up_reprocessed_items(cli_env: ServiceDb) -> None:
    """``time.property: updated``: the window and the mark follow ``updated`` (a CQL2 filter
    and sortby on an API with the filter and sort extensions), so items reprocessed in place
    (same datetime, newer ``updated``) are harvested again."""
    db = cli_env
    server = StacApiServer(items=with_updated(mixed_items(6)), extensions=FILTER_SORT)
    with serve_stac(server) as api:
        query = {"collection": "sentinel-2-l2a", "time": {"property": "updated"}}
        h = HarvesterConfig.model_validate(
            s2_harvester(api.url, filter=None, postprocess=[], query=query)
        )
        first = run_harvest(h, store(db), limits=FAST)
        assert first.counts.written == 6
        assert first.mark_after == T0 + timedelta(days=5, hours=5)
        for i in (1, 3):  # reprocessed: same id and datetime, new content and updated
            p = server.items[i]["properties"]
            p["s2:processing_baseline"] = "05.10"
            p["updated"] = "2022-06-01T00:00:00.000000Z"
        n = len(server.search_bodies)
        second = run_harvest(h, store(db), limits=FAST)
        body = server.search_bodies[n]
    assert "datetime" not in body
    assert body["filter"] == {
        "op": ">=",
        "args": [{"property": "updated"}, {"timestamp": "2022-05-06T15:00:00.000000Z"}],
    }
    assert body["sortby"] == [{"field": "properties.updated", "direction": "asc"}]
    assert second.counts.seen == 3  # the item at the mark, and the two reprocessed ones
    got = store(db).get_item("s2-l2a-harvested", server.items[1]["id"])
    assert got is not None
    assert got["properties"]["s2:processing_baseline"] == "05.10"
    assert db.query("SELECT count(*) FROM pgstac.items") == [(6,)]
