"""Rasters, NetCDF files, collections and static catalogues for the job-kind tests."""

from __future__ import annotations

import contextlib
import functools
import http.server
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from eomatch.io.history_schema import WriteNote
from eomatch.io.pgstac_store import PgstacStore
from service_fixtures import ServiceDb

__all__ = [
    "collection_doc",
    "job_store",
    "make_geotiff",
    "make_jp2",
    "make_netcdf",
    "make_static_catalogue",
    "serve_folder",
]


def collection_doc(cid: str) -> dict[str, Any]:
    return {
        "type": "Collection",
        "stac_version": "1.0.0",
        "id": cid,
        "description": f"test collection {cid}",
        "license": "CC-BY-4.0",
        "extent": {
            "spatial": {"bbox": [[-180.0, -90.0, 180.0, 90.0]]},
            "temporal": {"interval": [["2020-01-01T00:00:00Z", None]]},
        },
        "links": [],
    }


def job_store(db: ServiceDb, job_id: int = 1, *collections: str) -> PgstacStore:
    """The ingest role's store noted as job ``job_id`` would be; ``collections`` created."""
    store = PgstacStore(db.role("eomatch_ingest"), WriteNote(f"job:{job_id}", "job"))
    if collections:
        store.noted(WriteNote("test:setup", "setup")).upsert_items(
            [], [collection_doc(c) for c in collections]
        )
    return store


def make_geotiff(
    path: Path,
    size: int = 512,
    bands: int = 3,
    *,
    when: datetime | None = datetime(2024, 5, 1, 10, 30, tzinfo=UTC),
    seed: int = 0,
) -> Path:
    """A UTM 31N GeoTIFF of random bytes (not tiled, no overviews: not a COG yet)."""
    import rasterio
    from rasterio.transform import from_origin

    rng = np.random.default_rng(seed)
    data = rng.integers(0, 255, (bands, size, size), dtype=np.uint8)
    tags = {"TIFFTAG_DATETIME": when.strftime("%Y:%m:%d %H:%M:%S")} if when else {}
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=size,
        height=size,
        count=bands,
        dtype="uint8",
        crs="EPSG:32631",
        transform=from_origin(500_000, 5_000_000, 10, 10),
    ) as dst:
        dst.write(data)
        dst.update_tags(**tags)
    return path


def make_jp2(path: Path, size: int = 128) -> Path:
    """A georeferenced single-band JPEG2000 (UTM 31N), as Sentinel-2 bands come."""
    import rasterio
    from rasterio.transform import from_origin

    data = np.arange(size * size, dtype=np.uint16).reshape(1, size, size)
    with rasterio.open(
        path,
        "w",
        driver="JP2OpenJPEG",
        width=size,
        height=size,
        count=1,
        dtype="uint16",
        crs="EPSG:32631",
        transform=from_origin(500_000, 5_000_000, 10, 10),
    ) as dst:
        dst.write(data)
    return path


def make_netcdf(path: Path, *, variables: tuple[str, ...] = ("sst_diff",)) -> Path:
    """A CF NetCDF analysis result: lat/lon/time coordinates, a few variables."""
    import xarray as xr

    lat = np.linspace(40.0, 41.0, 20)
    lon = np.linspace(2.0, 3.5, 30)
    time = np.array(["2024-05-01T10:00:00", "2024-05-02T10:00:00"], dtype="datetime64[ns]")
    data_vars = {
        name: (
            ("time", "lat", "lon"),
            np.random.default_rng(1).random((2, 20, 30)).astype("float32"),
            {"units": "K", "long_name": f"{name} long name"},
        )
        for name in variables
    }
    ds = xr.Dataset(
        data_vars,
        coords={
            "time": ("time", time),
            "lat": ("lat", lat, {"standard_name": "latitude", "units": "degrees_north"}),
            "lon": ("lon", lon, {"standard_name": "longitude", "units": "degrees_east"}),
        },
        attrs={"Conventions": "CF-1.8", "title": "SST comparison"},
    )
    ds.to_netcdf(path)
    return path


def make_static_catalogue(root: Path, n_items: int = 3) -> Path:
    """A pystac catalogue (not eomatch's layout) with one collection, relative hrefs and a
    relative asset href per item; returns the catalogue.json path."""
    import pystac

    catalog = pystac.Catalog("static-root", "a static catalogue")
    coll = pystac.Collection(
        "static-coll",
        "a collection from elsewhere",
        pystac.Extent(
            pystac.SpatialExtent([[0.0, 40.0, 5.0, 45.0]]),
            pystac.TemporalExtent([[datetime(2024, 1, 1, tzinfo=UTC), None]]),
        ),
        license="CC-BY-4.0",
    )
    catalog.add_child(coll)
    for n in range(n_items):
        item = pystac.Item(
            f"static-item-{n}",
            {"type": "Point", "coordinates": [1.0 + n, 42.0]},
            [1.0 + n, 42.0, 1.0 + n, 42.0],
            datetime(2024, 1, 2 + n, tzinfo=UTC),
            {},
        )
        item.add_asset("data", pystac.Asset(f"./data-{n}.tif", media_type="image/tiff"))
        coll.add_item(item)
    catalog.normalize_hrefs(str(root))
    catalog.save(pystac.CatalogType.SELF_CONTAINED)
    return root / "catalog.json"


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def serve_folder(
    root: Path,
    handler_class: type[http.server.SimpleHTTPRequestHandler] | None = None,
    host: str = "127.0.0.1",
) -> Iterator[str]:
    """``root`` over HTTP on ``host`` (a static file server, or ``handler_class``: a
    :class:`~http.server.SimpleHTTPRequestHandler` of the test's); yields the base URL."""
    handler = functools.partial(handler_class or _Quiet, directory=str(root))
    server = http.server.ThreadingHTTPServer((host, 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
