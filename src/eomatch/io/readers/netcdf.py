"""NetCDF products through xarray: only the rows and columns of the region are read.

Two layouts: a regular grid with 1-D coordinates (``lon``/``lat`` or projected ``x``/``y``
with a CF ``grid_mapping``), which becomes a :class:`~eomatch.core.collocation.Grid` and can go
on a common grid; and a curvilinear swath with 2-D ``longitude``/``latitude`` variables (e.g.
Sentinel-3 geo-coordinates merged in), kept on its own pixels. Remote NetCDF (``http``) is not
read by range requests; download it first (``eomatch download``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import rioxarray  # noqa: F401  (registers the .rio accessor)
import shapely
import xarray as xr
from shapely.geometry.base import BaseGeometry

from eomatch.core.collocation import Grid, check_window_size, region_in_crs, region_mask
from eomatch.core.products import Product
from eomatch.errors import InvalidValueError, UnreadableProductError
from eomatch.io.readers.base import AssetRef, Piece, one_line

_SUFFIXES = (".nc", ".nc4", ".netcdf", ".cdf")
_MEDIA = ("application/netcdf", "application/x-netcdf", "application/x-netcdf4")
_LON = ("lon", "longitude", "nav_lon")
_LAT = ("lat", "latitude", "nav_lat")
_KEEP_ENCODING = ("dtype", "scale_factor", "add_offset", "_FillValue", "units", "calendar")


class NetCDFReader:
    """NetCDF assets: regular 1-D or curvilinear 2-D coordinates."""

    name = "netcdf"

    def select(self, product: Product, assets: Sequence[AssetRef]) -> list[AssetRef]:
        """Assets with a NetCDF media type or file extension."""
        return [
            a for a in assets if a.suffix in _SUFFIXES or a.media_type.lower().startswith(_MEDIA)
        ]

    def read(
        self,
        product: Product,
        assets: Sequence[AssetRef],
        region: BaseGeometry,
        margin_m: float,
    ) -> list[Piece]:
        """One piece per asset (each file has its own grid)."""
        pieces = []
        for asset in assets:
            where = f"product {product.id}: asset {asset.key} ({asset.href})"
            if asset.remote:
                raise UnreadableProductError(
                    f"{where}: remote NetCDF is not read in place; download it first "
                    "(eomatch download)"
                )
            try:
                with xr.open_dataset(asset.location, engine="netcdf4", decode_coords="all") as ds:
                    piece = _window(ds, region, margin_m, where)
                    piece.dataset = piece.dataset.load()
            except (UnreadableProductError, InvalidValueError) as exc:
                raise UnreadableProductError(
                    str(exc) if where in str(exc) else f"{where}: {exc}"
                ) from None
            except (OSError, ValueError, KeyError, RuntimeError) as exc:
                raise UnreadableProductError(f"{where}: cannot read it: {one_line(exc)}") from None
            piece.sources.append(asset.href)
            pieces.append(piece)
        return pieces


def _coord(ds: xr.Dataset, names: tuple[str, ...], standard: str, axis: str) -> str | None:
    for name, var in ds.variables.items():
        if var.attrs.get("standard_name") == standard or str(name).lower() in names:
            return str(name)
    for name, var in ds.coords.items():
        if var.attrs.get("axis") == axis:
            return str(name)
    return None


def _window(ds: xr.Dataset, region: BaseGeometry, margin_m: float, where: str) -> Piece:
    lon = _coord(ds, _LON, "longitude", "X")
    lat = _coord(ds, _LAT, "latitude", "Y")
    crs = ds.rio.crs
    if crs is not None and not crs.is_geographic:
        x, y = (
            _coord(ds, ("x",), "projection_x_coordinate", "X"),
            _coord(ds, ("y",), "projection_y_coordinate", "Y"),
        )
        if x is None or y is None or ds[x].ndim != 1 or ds[y].ndim != 1:
            raise UnreadableProductError(f"{where}: projected grid without 1-D x/y coordinates")
        return _regular(ds, x, y, crs.to_wkt(), region, margin_m, where)
    if lon is None or lat is None:
        raise UnreadableProductError(f"{where}: no longitude/latitude coordinates found")
    if ds[lon].ndim == 1 and ds[lat].ndim == 1:
        return _regular(ds, lon, lat, "EPSG:4326", region, margin_m, where)
    if ds[lon].ndim == 2 and ds[lon].dims == ds[lat].dims:
        return _curvilinear(ds, lon, lat, region, margin_m, where)
    raise UnreadableProductError(f"{where}: longitude/latitude are neither 1-D nor 2-D grids")


def _spatial(ds: xr.Dataset, dims: tuple[str, ...]) -> xr.Dataset:
    """The data variables over both spatial dims, with the encoding a new file can take."""
    keep = [n for n, v in ds.data_vars.items() if set(dims) <= set(v.dims)]
    out = ds[keep]
    for var in out.variables.values():
        var.encoding = {k: v for k, v in var.encoding.items() if k in _KEEP_ENCODING}
    return out


def _regular(
    ds: xr.Dataset, xn: str, yn: str, crs: str, region: BaseGeometry, margin_m: float, where: str
) -> Piece:
    x = np.asarray(ds[xn].values, dtype=np.float64)
    y = np.asarray(ds[yn].values, dtype=np.float64)
    if x.size < 2 or y.size < 2:
        raise UnreadableProductError(f"{where}: a grid needs at least 2 x 2 pixels")
    dx, dy = float(x[1] - x[0]), float(y[1] - y[0])
    if not (
        np.allclose(np.diff(x), dx, rtol=1e-5, atol=0)
        and np.allclose(np.diff(y), dy, rtol=1e-5, atol=0)
    ):
        raise UnreadableProductError(f"{where}: irregular 1-D coordinates are not supported")
    full = Grid(crs, (dx, 0.0, x[0] - dx / 2, 0.0, dy, y[0] - dy / 2), x.size, y.size)
    win = full.window(region_in_crs(region, crs, margin_m).bounds)
    if win is None:
        raise UnreadableProductError(f"{where}: no pixel of the grid meets the collocation region")
    xdim, ydim = str(ds[xn].dims[0]), str(ds[yn].dims[0])
    check_window_size(win, len(_spatial(ds, (xdim, ydim)).data_vars))
    sub = _spatial(ds, (xdim, ydim)).isel(
        {
            xdim: slice(win.col_off, win.col_off + win.width),
            ydim: slice(win.row_off, win.row_off + win.height),
        }
    )
    sub = sub.rename({xdim: "x", ydim: "y"}) if (xdim, ydim) != ("x", "y") else sub
    grid = full.subgrid(win)
    sub = sub.rio.set_spatial_dims(x_dim="x", y_dim="y").rio.write_crs(crs)
    return Piece(sub, grid, region_mask(grid, region_in_crs(region, crs)), [])


def _curvilinear(
    ds: xr.Dataset, lon: str, lat: str, region: BaseGeometry, margin_m: float, where: str
) -> Piece:
    lons = np.asarray(ds[lon].values, dtype=np.float64)
    lats = np.asarray(ds[lat].values, dtype=np.float64)
    minx, miny, maxx, maxy = region_in_crs(region, "EPSG:4326", margin_m).bounds
    inside = (lons >= minx) & (lons <= maxx) & (lats >= miny) & (lats <= maxy)
    rows, cols = np.flatnonzero(inside.any(axis=1)), np.flatnonzero(inside.any(axis=0))
    if rows.size == 0:
        raise UnreadableProductError(f"{where}: no pixel of the swath meets the collocation region")
    ydim, xdim = (str(d) for d in ds[lon].dims)
    rs, cs = slice(int(rows[0]), int(rows[-1]) + 1), slice(int(cols[0]), int(cols[-1]) + 1)
    sub = _spatial(ds, (ydim, xdim)).isel({ydim: rs, xdim: cs})
    sub = sub.assign_coords(
        {lon: ds[lon].isel({ydim: rs, xdim: cs}), lat: ds[lat].isel({ydim: rs, xdim: cs})}
    )
    sub = sub.rename({xdim: "x", ydim: "y"}) if (xdim, ydim) != ("x", "y") else sub
    shapely.prepare(region)
    mask: npt.NDArray[np.bool_] = np.asarray(
        shapely.contains_xy(region, lons[rs, cs], lats[rs, cs]), dtype=bool
    )
    return Piece(sub, None, mask, [])
