"""Real-shaped product data for the matchup-dataset tests: COGs, JP2s, NetCDFs with known values
and georeferencing, a catalogue holding them, and an HTTP server that honours Range requests."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import rasterio.shutil
import shapely
from affine import Affine
from pyproj import Transformer
from shapely.geometry import box
from shapely.geometry.base import BaseGeometry

from eomatch.core.matchups import event_matchup_id
from eomatch.core.products import Matchup, MatchupEvent, Product, SensorKey, event_id, pair_id
from eomatch.io.catalogue import MatchupCatalogue

S2 = SensorKey("S2_MSI_L2A", "Sentinel-2A")
L9 = SensorKey("LANDSAT_C2L2", "Landsat-9")
T0 = datetime(2022, 5, 21, 10, 30, tzinfo=UTC)
UTM = "EPSG:32632"
X0, Y0 = 500_000.0, 5_000_000.0
"""Upper-left corner of every UTM test raster."""
COG = "image/tiff; application=geotiff; profile=cloud-optimized"


def write_raster(
    path: Path,
    data: np.ndarray,
    crs: str,
    transform: Affine,
    nodata: float | None = None,
    cog: bool = True,
    blocksize: int = 256,
    compress: str = "NONE",
    driver: str = "GTiff",
) -> Path:
    """A (multi-band) raster; a COG (tiled, with overviews) unless ``cog`` is false."""
    bands = data[np.newaxis] if data.ndim == 2 else data
    profile: dict[str, Any] = {
        "driver": "GTiff",
        "width": bands.shape[2],
        "height": bands.shape[1],
        "count": bands.shape[0],
        "dtype": bands.dtype,
        "crs": crs,
        "transform": transform,
        "nodata": nodata,
    }
    plain = path.with_name(path.name + ".plain.tif") if (cog or driver != "GTiff") else path
    with rasterio.open(plain, "w", **profile) as dst:
        dst.write(bands)
    if driver == "JP2OpenJPEG":
        rasterio.shutil.copy(plain, path, driver=driver, QUALITY="100", REVERSIBLE="YES")
        plain.unlink()
    elif cog:
        rasterio.shutil.copy(
            plain,
            path,
            driver="COG",
            BLOCKSIZE=str(blocksize),
            COMPRESS=compress,
            OVERVIEWS="AUTO",
        )
        plain.unlink()
    return path


def index_band(height: int, width: int) -> np.ndarray:
    """``row * 10000 + col``: every pixel says where it is."""
    rows, cols = np.mgrid[0:height, 0:width]
    return (rows * 10000 + cols).astype(np.int32)


def easting_band(transform: Affine, height: int, width: int) -> np.ndarray:
    """The x of each pixel centre: a linear ramp in x."""
    x = transform.c + (np.arange(width) + 0.5) * transform.a
    return np.broadcast_to(x, (height, width)).astype(np.float64).copy()


def utm_box_in_lonlat(minx: float, miny: float, maxx: float, maxy: float) -> BaseGeometry:
    """A UTM rectangle as the lon/lat polygon a catalogue holds (edges densified to 10 m)."""
    tr = Transformer.from_crs(UTM, "EPSG:4326", always_xy=True)
    ring = shapely.segmentize(box(minx, miny, maxx, maxy), 10.0)

    def apply(c: np.ndarray) -> np.ndarray:
        return np.column_stack(tr.transform(c[:, 0], c[:, 1]))

    return shapely.transform(ring, apply)


def asset(href: str | Path, media_type: str = COG, **extra: Any) -> dict[str, Any]:
    return {"href": str(href), "type": media_type, "roles": ["data"], **extra}


@dataclass
class Spec:
    """One product of a test matchup."""

    sensor: SensorKey
    assets: dict[str, dict[str, Any]]
    footprint: BaseGeometry | None = None
    predicted: bool = False
    properties: dict[str, Any] = field(default_factory=lambda: {"eo:cloud_cover": 3.5})


def catalogue_with(
    root: Path, specs: Sequence[Spec], region: BaseGeometry, when: datetime = T0
) -> tuple[MatchupCatalogue, str]:
    """A catalogue with one event and one matchup of ``specs`` whose collocation region is
    ``region``; returns it (open) and the matchup id."""
    products = []
    for i, spec in enumerate(specs):
        start = when + timedelta(seconds=120 * i)
        products.append(
            Product(
                id=f"{spec.sensor.platform}_{start:%Y%m%dT%H%M%S}_test",
                sensor=spec.sensor,
                start=start,
                end=start + timedelta(seconds=20),
                geometry=spec.footprint or region.buffer(0.05),
                predicted=spec.predicted,
                assets=spec.assets,
                properties=spec.properties,
            )
        )
    sensors = tuple(sorted(p.sensor for p in products))
    pair = pair_id(sensors)
    centre = region.centroid
    eid = event_id(pair, when, centre.y, centre.x)
    mu = Matchup(
        id=event_matchup_id(pair, eid, products),
        products=tuple(sorted(products, key=lambda p: p.sensor)),
        geometry=region,
        area_km2=123.0,
        time_diff_abs_s=120.0 * (len(specs) - 1),
        event_id=eid,
    )
    event = MatchupEvent(
        id=eid,
        sensors=sensors,
        start=when,
        end=when + timedelta(minutes=10),
        geometry=region.buffer(0.2),
        properties={"distance_km": 12.5, "closest_approach": when.isoformat()},
        matchups=(mu,),
    )
    cat = MatchupCatalogue.create(root)
    cat.add_event(event)
    return cat, mu.id


# --- an HTTP file server with Range support ---------------------------------------------------


@dataclass
class RangeServer:
    """Serves files from ``root``; counts the bytes it sent and the requests."""

    root: Path
    sent: int = 0
    requests: list[str | None] = field(default_factory=list)
    url: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _file(self) -> Path | None:
        path = (self.server.state.root / self.path.lstrip("/").split("?", 1)[0]).resolve()
        if not path.is_relative_to(self.server.state.root.resolve()) or not path.is_file():
            return None
        return path

    def do_HEAD(self) -> None:
        path = self._file()
        if path is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(path.stat().st_size))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()

    def do_GET(self) -> None:
        path = self._file()
        state = self.server.state
        rng = self.headers.get("Range")
        with state.lock:
            state.requests.append(rng)
        if path is None:
            self.send_error(404)
            return
        size = path.stat().st_size
        start, end, status = 0, size - 1, 200
        if rng and rng.startswith("bytes="):
            a, _, b = rng[6:].split(",")[0].partition("-")
            start, end, status = int(a), min(int(b) if b else size - 1, size - 1), 206
        with path.open("rb") as fh:  # only the bytes asked for are read and sent
            fh.seek(start)
            body = fh.read(end - start + 1)
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes")
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.end_headers()
        self.wfile.write(body)
        with state.lock:
            state.sent += len(body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, state: RangeServer) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.state = state


@contextmanager
def serve(root: Path) -> Iterator[RangeServer]:
    """A :class:`RangeServer` on a free loopback port, stopped on exit."""
    state = RangeServer(root)
    srv = _Server(state)
    state.url = f"http://127.0.0.1:{srv.server_address[1]}"
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        srv.shutdown()
        srv.server_close()
        thread.join(5)


def values(ds: Any, name: str) -> np.ndarray:
    return np.asarray(ds[name].values)


def as_mapping(obj: Any) -> Mapping[str, Any]:
    return dict(obj)
