"""The built-in ``netcdf-cf`` processor: NetCDF files following the CF conventions, such as the
comparison (analysis) files researchers register, described as STAC items.

Where and when come from the CF coordinates: latitude/longitude variables (``standard_name``,
``units`` of degrees north/east, or the usual names) give the bbox and footprint (the grid's
convex hull for curvilinear grids); the time coordinate, else the ACDD
``time_coverage_start``/``_end`` attributes, gives ``start_datetime``/``end_datetime``. The
variables are listed with the datacube extension (``cube:variables``, ``cube:dimensions``).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from eomatch.extras import require_extra
from eomatch.io.processors.geotiff import item_id_from

__all__ = ["NetcdfCfProcessor"]

DATACUBE = "https://stac-extensions.github.io/datacube/v2.2.0/schema.json"
_SUFFIXES = (".nc", ".nc4", ".netcdf", ".cdf")
_MAGIC = (b"CDF\x01", b"CDF\x02", b"CDF\x05", b"\x89HDF")
_LAT_NAMES = ("lat", "latitude", "nav_lat", "y_lat")
_LON_NAMES = ("lon", "longitude", "nav_lon", "x_lon")


def _is_axis(name: str, attrs: dict[str, Any], axis: str) -> bool:
    standard = "latitude" if axis == "lat" else "longitude"
    units = str(attrs.get("units", "")).lower().replace("_", "")
    if attrs.get("standard_name") == standard:
        return True
    if units.startswith("degreesnorth" if axis == "lat" else "degreeseast") or units in (
        ("degreen", "degreesn") if axis == "lat" else ("degreee", "degreese")
    ):
        return True
    return name.lower() in (_LAT_NAMES if axis == "lat" else _LON_NAMES)


def _iso(value: Any) -> str:
    text = np.datetime_as_string(np.datetime64(value, "s"), unit="s")
    return f"{text}Z"


class NetcdfCfProcessor:
    """NetCDF/CF analysis results: bbox, footprint and time from CF coordinates, variables."""

    name = "netcdf-cf"
    collection: str | None = None

    def matches(self, path: Path) -> bool:
        """A NetCDF suffix and a NetCDF-3 or HDF5 (NetCDF-4) signature."""
        if path.suffix.lower() not in _SUFFIXES or not path.is_file():
            return False
        with path.open("rb") as fh:
            return fh.read(4) in _MAGIC

    def items(self, path: Path) -> Iterable[dict[str, Any]]:
        """One item for the file."""
        require_extra("data", "the netcdf-cf processor", ("xarray", "netCDF4"))
        import xarray as xr

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with xr.open_dataset(path, engine="netcdf4") as ds:
                yield self._item(path, ds)

    def _item(self, path: Path, ds: Any) -> dict[str, Any]:
        names = {str(n): ds[n] for n in ds.variables}
        lat = next((v for n, v in names.items() if _is_axis(n, dict(v.attrs), "lat")), None)
        lon = next((v for n, v in names.items() if _is_axis(n, dict(v.attrs), "lon")), None)
        if lat is None or lon is None:
            raise ValueError("no CF latitude/longitude coordinates (standard_name or units)")
        geometry, bbox = _footprint(np.asarray(lat.values), np.asarray(lon.values))
        props: dict[str, Any] = {}
        start, end = _time_range(ds, names)
        props["start_datetime"], props["end_datetime"] = start, end
        props["datetime"] = start if start == end else None
        for key, member in (("title", "title"), ("summary", "description")):  # ACDD -> STAC
            if key in ds.attrs:
                props[member] = str(ds.attrs[key])
        props["cube:dimensions"] = _dimensions(ds, lat, lon, start, end, bbox)
        props["cube:variables"] = {
            str(n): {
                "dimensions": [str(d) for d in v.dims],
                "type": "data",
                **({"unit": str(v.attrs["units"])} if "units" in v.attrs else {}),
                **({"description": str(v.attrs["long_name"])} if "long_name" in v.attrs else {}),
            }
            for n, v in ds.data_vars.items()
        }
        return {
            "type": "Feature",
            "stac_version": "1.0.0",
            "stac_extensions": [DATACUBE],
            "id": item_id_from(path),
            "geometry": geometry,
            "bbox": bbox,
            "properties": props,
            "links": [],
            "assets": {
                "data": {
                    "href": path.resolve().as_uri(),
                    "type": "application/x-netcdf",
                    "roles": ["data"],
                    "title": path.name,
                }
            },
        }


def _footprint(lat: Any, lon: Any) -> tuple[dict[str, Any], list[float]]:
    import shapely

    lat = np.where(np.isfinite(lat), lat, np.nan)
    lon = np.where(np.isfinite(lon), lon, np.nan)
    lon = np.where(lon > 180.0, lon - 360.0, lon)
    if np.all(np.isnan(lat)) or np.all(np.isnan(lon)):
        raise ValueError("the latitude/longitude coordinates hold no finite value")
    west, east = float(np.nanmin(lon)), float(np.nanmax(lon))
    south, north = float(np.nanmin(lat)), float(np.nanmax(lat))
    if not (-90.0 <= south <= north <= 90.0 and -180.0 <= west <= east <= 180.0):
        raise ValueError(f"coordinates out of range: lat {south}..{north}, lon {west}..{east}")
    if lat.ndim == 2 and lon.shape == lat.shape:  # curvilinear: the grid's convex hull
        step = max(1, max(lat.shape) // 200)
        pts = np.column_stack([lon[::step, ::step].ravel(), lat[::step, ::step].ravel()])
        pts = pts[np.isfinite(pts).all(axis=1)]
        hull = shapely.MultiPoint(pts).convex_hull
        if hull.geom_type == "Polygon":
            return shapely.geometry.mapping(hull), [west, south, east, north]
    if west == east or south == north:
        geom: dict[str, Any] = {"type": "Point", "coordinates": [west, south]}
        if west != east or south != north:
            geom = {"type": "LineString", "coordinates": [[west, south], [east, north]]}
        return geom, [west, south, east, north]
    ring = [[west, south], [east, south], [east, north], [west, north], [west, south]]
    return {"type": "Polygon", "coordinates": [ring]}, [west, south, east, north]


def _time_range(ds: Any, names: dict[str, Any]) -> tuple[str, str]:
    for n, v in names.items():
        attrs = dict(v.attrs)
        is_time = (
            attrs.get("standard_name") == "time" or attrs.get("axis") == "T" or n.lower() == "time"
        )
        if is_time and np.issubdtype(v.dtype, np.datetime64):
            values = np.asarray(v.values).ravel()
            values = values[~np.isnat(values)]
            if values.size:
                return _iso(values.min()), _iso(values.max())
    start = ds.attrs.get("time_coverage_start")
    end = ds.attrs.get("time_coverage_end") or start
    if start:
        return _iso(np.datetime64(str(start).rstrip("Z"))), _iso(
            np.datetime64(str(end).rstrip("Z"))
        )
    raise ValueError("no CF time coordinate and no time_coverage_start attribute")


def _dimensions(
    ds: Any, lat: Any, lon: Any, start: str, end: str, bbox: list[float]
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for dim in (str(d) for d in ds.dims):
        if dim in lon.dims and lon.ndim == 1:
            out[dim] = {"type": "spatial", "axis": "x", "extent": [bbox[0], bbox[2]]}
        elif dim in lat.dims and lat.ndim == 1:
            out[dim] = {"type": "spatial", "axis": "y", "extent": [bbox[1], bbox[3]]}
        elif dim in ds.coords and np.issubdtype(ds[dim].dtype, np.datetime64):
            out[dim] = {"type": "temporal", "extent": [start, end]}
        else:
            out[dim] = {"type": "other", "size": int(ds.sizes[dim])}
    return out
