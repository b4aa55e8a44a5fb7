"""The ``raster`` job kind through its run function, against a real pgSTAC, a local folder
store, moto's S3 over HTTP and a local HTTP server: COG, item, idempotence, and the failures
(corrupt raster, unreachable source, full disk) leaving nothing behind."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from eomatch.errors import (
    InputError,
    NetworkError,
    NotFoundError,
    StorageError,
    UnreadableFileError,
)
from eomatch.io.object_store import LocalFolderStore, S3ObjectStore
from eomatch.workflows.jobs import JobContext, get_kind
from eomatch.workflows.jobs.raster_kind import RasterParams, ingest_raster
from job_kind_helpers import job_store, make_geotiff, make_jp2, make_netcdf, serve_folder
from s3_server import S3Bucket, s3_bucket, s3_server
from service_fixtures import ServiceDb, pg_cluster, service_db

__all__ = ["pg_cluster", "s3_bucket", "s3_server", "service_db"]

PUBLIC = "https://catalogue.example.org/data/"


def _items(db: ServiceDb) -> list[tuple[object, ...]]:
    return db.query("SELECT collection, id FROM pgstac.items ORDER BY 1, 2")


def _job_transactions(db: ServiceDb) -> list[tuple[object, ...]]:
    return db.query("SELECT actor, kind FROM eomatch.transactions WHERE kind = 'job'")


def test_raster_job_end_to_end_local_folder(service_db: ServiceDb, tmp_path: Path) -> None:
    import rasterio
    from rio_cogeo.cogeo import cog_validate

    store = job_store(service_db, 7, "rasters")
    objects = LocalFolderStore(tmp_path / "objects", public_url=PUBLIC, file_mode=0o644)
    src = make_geotiff(tmp_path / "scene_01.tif")
    params = RasterParams(collection="rasters", source=str(src), properties={"title": "one"})

    started = time.perf_counter()
    result = ingest_raster(params, store, objects)
    elapsed = time.perf_counter() - started
    print(f"raster job, 512x512x3 uint8: {elapsed:.2f} s")

    key = "rasters/scene_01/data.tif"
    assert result.created == [("rasters", "scene_01")]
    assert result.updated == []
    cog = objects.path(key)
    assert oct(cog.stat().st_mode & 0o777) == "0o644"
    valid, errors, _ = cog_validate(str(cog), quiet=True)
    assert valid, errors
    with rasterio.open(cog) as ds:
        assert ds.count == 3
        assert ds.overviews(1)  # internal overviews
        assert ds.profile["tiled"]
        assert ds.compression is not None

    item = store.get_item("rasters", "scene_01")
    assert item is not None
    asset = item["assets"]["data"]
    assert asset["href"] == PUBLIC + key
    assert asset["alternate"]["file"]["href"] == cog.as_uri()
    assert asset["file:size"] == cog.stat().st_size
    assert asset["file:checksum"].startswith("1220")
    assert len(asset["file:checksum"]) == 68
    assert item["properties"]["proj:epsg"] == 32631
    assert "raster:bands" in asset
    assert item["properties"]["title"] == "one"
    assert item["properties"]["datetime"] == "2024-05-01T10:30:00Z"
    # footprint from the data, in WGS84: around 3 E, 45 N (UTM 31N at 500 km E, 5000 km N)
    west, south, east, north = item["bbox"]
    assert 2.9 < west < east < 3.1
    assert 45.0 < south < north < 45.2
    assert _job_transactions(service_db) == [("job:7", "job")]

    # idempotent: the same job again upserts the same item under the same key
    again = ingest_raster(params, store, objects)
    assert again.updated == [("rasters", "scene_01")]
    assert again.created == []
    assert _items(service_db) == [("rasters", "scene_01")]
    assert [o.key for o in objects.list()] == [key]


def test_raster_job_from_http_to_s3_and_netcdf(
    service_db: ServiceDb, tmp_path: Path, s3_bucket: S3Bucket
) -> None:
    store = job_store(service_db, 8, "rasters")
    objects = S3ObjectStore(s3_bucket.config(prefix="data"))
    served = tmp_path / "www"
    served.mkdir()
    make_geotiff(served / "remote.tif", size=256, bands=1)
    make_jp2(served / "T31TDJ_B04.jp2")
    with serve_folder(served) as base:
        result = ingest_raster(
            RasterParams(collection="rasters", source=f"{base}/remote.tif"), store, objects
        )
        jp2 = RasterParams(
            collection="rasters",
            source=f"{base}/T31TDJ_B04.jp2",
            datetime="2024-05-03T10:00:00Z",  # type: ignore[arg-type]
        )
        public = S3ObjectStore(
            s3_bucket.config(prefix="data", public_url="https://bucket.example.org/data/")
        )
        assert ingest_raster(jp2, store, public).created == [("rasters", "T31TDJ_B04")]
        jp2_asset = store.get_item("rasters", "T31TDJ_B04")["assets"]["data"]  # type: ignore[index]
        key = "data/rasters/T31TDJ_B04/data.tif"
        assert jp2_asset["href"] == f"https://bucket.example.org/{key}"
        assert jp2_asset["alternate"]["s3"]["href"] == f"s3://{s3_bucket.name}/{key}"
    assert result.created == [("rasters", "remote")]
    assert s3_bucket.keys() == [
        "data/rasters/T31TDJ_B04/data.tif",
        "data/rasters/remote/data.tif",
    ]
    item = store.get_item("rasters", "remote")
    assert item is not None
    assert item["assets"]["data"]["href"] == f"s3://{s3_bucket.name}/data/rasters/remote/data.tif"

    # a NetCDF variable from the bucket itself (s3:// source), into the same bucket
    nc = make_netcdf(tmp_path / "analysis.nc", variables=("sst_diff", "count"))
    s3_bucket.server.client().upload_file(str(nc), s3_bucket.name, "in/analysis.nc")
    os.environ["EOMATCH_STORAGE_S3_ENDPOINT"] = s3_bucket.server.endpoint
    os.environ["EOMATCH_STORAGE_S3_ALLOW_HTTP"] = "1"
    try:
        params = RasterParams(
            collection="rasters",
            source=f"s3://{s3_bucket.name}/in/analysis.nc",
            variable="sst_diff",
            datetime="2024-05-01T10:00:00Z",  # type: ignore[arg-type]
        )
        with pytest.raises(UnreadableFileError, match="several variables"):
            ingest_raster(params.model_copy(update={"variable": None}), store, objects)
        ingest_raster(params, store, objects)
    finally:
        del os.environ["EOMATCH_STORAGE_S3_ENDPOINT"]
        del os.environ["EOMATCH_STORAGE_S3_ALLOW_HTTP"]
    assert "data/rasters/analysis/data.tif" in set(s3_bucket.keys())


def test_corrupt_raster_fails_and_leaves_nothing(service_db: ServiceDb, tmp_path: Path) -> None:
    store = job_store(service_db, 9, "rasters")
    objects = LocalFolderStore(tmp_path / "objects")
    good = make_geotiff(tmp_path / "good.tif", size=128)
    bad = tmp_path / "broken.tif"
    bad.write_bytes(good.read_bytes()[:4000])  # truncated: the header is there, the data not
    with pytest.raises(UnreadableFileError, match=r"broken\.tif"):
        ingest_raster(RasterParams(collection="rasters", source=str(bad)), store, objects)
    junk = tmp_path / "junk.tif"
    junk.write_bytes(b"not a tiff at all" * 100)
    with pytest.raises(UnreadableFileError, match="not a readable raster"):
        ingest_raster(RasterParams(collection="rasters", source=str(junk)), store, objects)
    assert _items(service_db) == []
    assert objects.list() == []
    assert _job_transactions(service_db) == []


def test_unreachable_or_missing_source(service_db: ServiceDb, tmp_path: Path) -> None:
    store = job_store(service_db, 10, "rasters")
    objects = LocalFolderStore(tmp_path / "objects")
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    params = RasterParams(collection="rasters", source=f"http://127.0.0.1:{port}/x.tif")
    with pytest.raises(NetworkError, match=rf"127\.0\.0\.1:{port}/x\.tif"):
        ingest_raster(params, store, objects)
    served = tmp_path / "www"
    served.mkdir()
    with serve_folder(served) as base, pytest.raises(NotFoundError, match="404"):
        ingest_raster(
            RasterParams(collection="rasters", source=f"{base}/absent.tif"), store, objects
        )
    with pytest.raises(NotFoundError, match="no such file"):
        ingest_raster(
            RasterParams(collection="rasters", source=str(tmp_path / "nope.tif")), store, objects
        )
    assert _items(service_db) == []
    assert objects.list() == []


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 64 KiB tmpfs (root only): too small for a 512x512x3 COG."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("needs root to mount a tmpfs")
    path = tmp_path / "tiny"
    path.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(path)]).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def test_full_disk_fails_clearly_and_removes_the_partial_object(
    service_db: ServiceDb, tmp_path: Path, tiny_disk: Path
) -> None:
    store = job_store(service_db, 11, "rasters")
    objects = LocalFolderStore(tiny_disk)
    src = make_geotiff(tmp_path / "big.tif")
    with pytest.raises(StorageError, match="No space left on device"):
        ingest_raster(RasterParams(collection="rasters", source=str(src)), store, objects)
    assert _items(service_db) == []
    assert list(tiny_disk.rglob("*.tif*")) == []  # no object, no temporary left


def test_failed_insert_removes_the_stored_cog(service_db: ServiceDb, tmp_path: Path) -> None:
    store = job_store(service_db, 12, "rasters")
    objects = LocalFolderStore(tmp_path / "objects")
    src = make_geotiff(tmp_path / "scene.tif", size=128)
    # a property nested too deep to serve back: the item check refuses after the COG was stored
    deep: dict[str, object] = {}
    level = deep
    for _ in range(1100):
        level["a"] = {}
        level = level["a"]  # type: ignore[assignment]
    params = RasterParams(collection="rasters", source=str(src), properties={"deep": deep})
    with pytest.raises(InputError, match="nothing stored"):
        ingest_raster(params, store, objects)
    assert objects.list() == []
    assert _items(service_db) == []


def test_kind_is_registered_with_a_precheck(service_db: ServiceDb, tmp_path: Path) -> None:
    kind = get_kind("raster")
    store = job_store(service_db, 13, "rasters")
    assert kind.precheck is not None
    with pytest.raises(NotFoundError, match="no collection 'nope'"):
        kind.precheck(RasterParams(collection="nope", source="/x/y.tif"), store)
    kind.precheck(RasterParams(collection="rasters", source="/x/y.tif"), store)
    with pytest.raises(InputError, match="item id"):
        kind.precheck(RasterParams(collection="rasters", source="/x/bad name.tif"), store)
    with pytest.raises(ValueError, match="extra"):
        RasterParams.model_validate({"collection": "c", "source": "s", "colour": 1})

    objects = LocalFolderStore(tmp_path / "objects", public_url=PUBLIC)
    ctx = JobContext(job_id=13, store=store, _objects=lambda: objects)
    src = make_geotiff(tmp_path / "ctx.tif", size=64)
    result = kind.run(RasterParams(collection="rasters", source=str(src)), ctx)
    assert result.to_json()["created"] == [{"collection": "rasters", "id": "ctx"}]
    assert ctx.current_stage == "insert"
