"""A raster job end to end over HTTP: ``POST /jobs`` to the internal API, a real ``eomatch
worker`` process, then the COG opened with rasterio and the item found in both APIs (the
external one showing only the http(s) href)."""

from __future__ import annotations

from pathlib import Path

import pytest

from eomatch.io.pgstac_store import PgstacStore
from job_kind_helpers import job_store, make_geotiff
from service_fixtures import *  # noqa: F403
from service_fixtures import ServiceDb, all_hrefs, api_pair_in_process, http
from test_jobs import ended, wait_for, worker

PUBLIC = "https://catalogue.example.org/data/"


def test_raster_job_over_http_lands_in_both_apis(
    service_db: ServiceDb, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import rasterio

    db = service_db
    job_store(db, 0, "rasters")
    key = PgstacStore(db.role()).create_key("carol")
    auth = {"Authorization": f"Bearer {key}"}
    src = make_geotiff(tmp_path / "scene_http.tif")
    objects = tmp_path / "objects"
    log = tmp_path / "worker.log"
    storage = {
        "EOMATCH_STORAGE_DIR": str(objects),
        "EOMATCH_STORAGE_PUBLIC_URL": PUBLIC,
        "EOMATCH_JOBS_INPUT_DIR": str(tmp_path),  # what API jobs may read
    }
    monkeypatch.setenv("EOMATCH_JOBS_INPUT_DIR", str(tmp_path))  # the in-process API's
    with worker(db, log, **storage), api_pair_in_process(db) as (internal, external):
        bad = {"kind": "raster", "params": {"collection": "nope", "source": str(src)}}
        refused = http.post(f"{internal.url}/jobs", json=bad, headers=auth)
        assert refused.status_code == 404, refused.text
        body = {"kind": "raster", "params": {"collection": "rasters", "source": str(src)}}
        r = http.post(f"{internal.url}/jobs", json=body, headers=auth)
        assert r.status_code == 202, r.text
        job = wait_for(db, r.json()["id"], ended, timeout=60, log=log)
        assert job.status == "succeeded", job.to_json()
        assert [s["name"] for s in job.to_json()["stages"]][-5:] == [
            "fetch",
            "cog",
            "store",
            "item",
            "insert",
        ]

        inside = http.get(f"{internal.url}/collections/rasters/items/scene_http").json()
        asset = inside["assets"]["data"]
        assert asset["href"] == PUBLIC + "rasters/scene_http/data.tif"
        cog = Path(asset["alternate"]["file"]["href"].removeprefix("file://"))
        assert cog == objects.resolve() / "rasters" / "scene_http" / "data.tif"
        with rasterio.open(cog) as ds:
            assert (ds.count, ds.width, ds.height) == (3, 512, 512)
            assert ds.overviews(1)

        outside = http.get(f"{external.url}/collections/rasters/items/scene_http")
        assert outside.status_code == 200, outside.text
        assert outside.json()["assets"]["data"]["href"] == asset["href"]
        assert all(h.startswith("http") for h in all_hrefs(outside.json()))
        assert not outside.json()["assets"]["data"].get("alternate")  # file:// dropped
