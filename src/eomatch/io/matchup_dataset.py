"""A matchup's collocated data as an ``xarray.DataTree``: one node per sensor.

::

    /                                  matchup and event properties, Conventions, history
    ├── LANDSAT_C2L2-Landsat-9         the product's pixels in the region (+ margin)
    └── S2_MSI_L2A-Sentinel-2A         one node, or one child per grid (10m, 20m, 60m)
        ├── 10m                          when its bands have several resolutions (native)
        └── 20m

Each node holds the product's bands (dims ``y``, ``x``, values as stored, CF attributes),
``in_collocation_region`` (1 where the pixel centre lies in the region, 0 in the margin), the
coordinates (``x``/``y`` with CRS through rioxarray's ``spatial_ref`` grid mapping), a scalar
``time`` (the acquisition start) and the product's identity and properties as attributes.

With ``grid="common"`` every product is resampled onto one grid: the target sensor's window
(by default the coarser sensor), with :func:`eomatch.core.collocation.resampling_for`'s method
(GDAL warp through rioxarray). Values become float64 with NaN where there is no data, so that
averages ignore nodata; every node then has the very same ``x``, ``y`` and ``spatial_ref``.
"""

from __future__ import annotations

from eomatch.extras import require_extra

require_extra("data", "matchup datasets", ("xarray", "rioxarray", "rasterio"))

import os  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402
from collections.abc import Callable, Sequence  # noqa: E402
from datetime import UTC, datetime  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import rasterio.enums  # noqa: E402
import rioxarray  # noqa: E402, F401
import shapely  # noqa: E402
import xarray as xr  # noqa: E402
from affine import Affine  # noqa: E402
from shapely.geometry.base import BaseGeometry  # noqa: E402

from eomatch._version import __version__  # noqa: E402
from eomatch.core.collocation import (  # noqa: E402
    DatasetOptions,
    Grid,
    GridMode,
    coarsest,
    pixel_size_m,
    region_in_crs,
    region_mask,
    resampling_for,
)
from eomatch.core.products import Matchup, Product  # noqa: E402
from eomatch.errors import EomatchError, InputError, UnreadableProductError  # noqa: E402
from eomatch.io.readers import reader_for  # noqa: E402
from eomatch.io.readers.base import MASK_VAR, AssetRef, Piece, attr_value  # noqa: E402

AssetsOf = Callable[[Product], list[AssetRef]]
"""The assets of a product, hrefs resolved (from the catalogue that holds it)."""

CONVENTIONS = "CF-1.10"


def build_matchup_dataset(
    matchup: Matchup,
    assets_of: AssetsOf,
    event_properties: dict[str, Any],
    options: DatasetOptions,
) -> xr.DataTree:
    """Read every product of ``matchup`` in its collocation region and assemble the tree.

    Raises:
        UnreadableProductError: a product cannot be read (one line naming it).
        InputError: ``target`` names no sensor of the matchup; a curvilinear product asked on
            a common grid.
    """
    region = matchup.geometry
    lat = float(region.centroid.y)
    products = sorted(matchup.products, key=lambda p: p.sensor)
    read: list[tuple[Product, str, list[Piece]]] = []
    for product in products:
        assets = assets_of(product)
        if options.assets is not None:
            assets = [a for a in assets if a.key in options.assets]
        chosen_reader, chosen = reader_for(product, assets)
        pieces = chosen_reader.read(product, chosen, region, options.margin_m)
        pieces.sort(key=lambda p: 0.0 if p.grid is None else pixel_size_m(p.grid, lat))
        read.append((product, chosen_reader.name, pieces))
    nodes: dict[str, xr.Dataset] = {}
    if options.grid is GridMode.COMMON:
        target = _target_grid(read, options.target, lat)
        core = region_in_crs(region, target.crs)
        mask = region_mask(target, core)
        for product, reader, pieces in read:
            method = ""
            merged = []
            for piece in pieces:
                ds, used = _onto(piece, target, lat, options)
                merged.append(ds)
                method = used if not method or method == used else "mixed"
            ds = xr.merge(merged, compat="no_conflicts", combine_attrs="override", join="exact")
            ds = _finish(ds, mask, product, reader, [s for p in pieces for s in p.sources])
            ds.attrs["resampling"] = method
            ds.attrs["native_pixel_size_m"] = [
                round(pixel_size_m(p.grid, lat), 3) for p in pieces if p.grid is not None
            ]
            nodes[product.sensor.label()] = ds
    else:
        for product, reader, pieces in read:
            label = product.sensor.label()
            sources = [s for p in pieces for s in p.sources]
            if len(pieces) == 1:
                nodes[label] = _finish(pieces[0].dataset, pieces[0].mask, product, reader, sources)
                continue
            nodes[label] = xr.Dataset(attrs=_product_attrs(product, reader, sources))
            for i, piece in enumerate(pieces):
                name = f"{round(pixel_size_m(piece.grid, lat))}m" if piece.grid else f"grid{i}"
                nodes[f"{label}/{name}"] = _finish(
                    piece.dataset, piece.mask, product, reader, piece.sources
                )
    root = xr.Dataset(attrs=_root_attrs(matchup, event_properties, options))
    return xr.DataTree.from_dict({"/": root, **nodes})


def _target_grid(
    read: Sequence[tuple[Product, str, list[Piece]]], target: str | None, lat: float
) -> Grid:
    """The common grid: each sensor counts with its finest grid (its nominal resolution: 10 m
    for Sentinel-2, not its 60 m atmospheric bands); of those, ``target``'s or the coarsest."""
    grids: dict[str, Grid] = {}
    for product, _, pieces in read:
        for piece in pieces:
            if piece.grid is None:
                raise InputError(
                    f"product {product.id} is on a curvilinear (2-D lon/lat) grid: it cannot be "
                    "resampled onto a common grid; use the native grids"
                )
        own = [p.grid for p in pieces if p.grid is not None]
        grids[product.sensor.label()] = min(own, key=lambda g: pixel_size_m(g, lat))
    if target is not None:
        wanted = target.casefold()
        grids = {
            p.sensor.label(): grids[p.sensor.label()]
            for p, _, _ in read
            if wanted
            in (p.sensor.label().casefold(), p.collection.casefold(), p.platform.casefold())
        }
        if not grids:
            labels = ", ".join(p.sensor.label() for p, _, _ in read)
            raise InputError(f"target grid {target!r} is no sensor of this matchup ({labels})")
    return grids[coarsest(grids, lat)]


def _onto(
    piece: Piece, target: Grid, lat: float, options: DatasetOptions
) -> tuple[xr.Dataset, str]:
    """The piece resampled onto ``target``: float64, NaN where no data."""
    assert piece.grid is not None
    method = resampling_for(piece.grid, target, lat, options.resampling)
    ds = piece.dataset
    out = {}
    for name, var in ds.data_vars.items():
        attrs = dict(var.attrs)
        fill = attrs.pop("_FillValue", None)
        values = var.astype(np.float64)
        if fill is not None:
            values = values.where(var != fill)
        out[name] = values.assign_attrs(attrs)
    floats = xr.Dataset(out, coords=ds.coords, attrs=ds.attrs)
    for name in floats.data_vars:
        floats[name] = floats[name].rio.write_nodata(np.nan, encoded=False)
    if piece.grid == target:
        return floats, "none"
    warped = floats.rio.reproject(
        target.crs,
        shape=(target.height, target.width),
        transform=Affine(*target.transform),
        resampling=rasterio.enums.Resampling[method.value],
        nodata=np.nan,
    )
    x, y = target.centres()  # the very same coordinates on every node
    warped = warped.assign_coords(x=("x", x), y=("y", y))
    return warped.rio.write_coordinate_system(), method.value


def _finish(
    ds: xr.Dataset,
    mask: np.ndarray[Any, np.dtype[np.bool_]],
    product: Product,
    reader: str,
    sources: list[str],
) -> xr.Dataset:
    """Mask variable, acquisition time, CF coordinate attributes, product attributes."""
    ds = ds.copy()
    ds[MASK_VAR] = xr.DataArray(
        mask.astype(np.uint8),
        dims=("y", "x"),
        attrs={
            "long_name": "pixel centre inside the collocation region",
            "flag_values": np.array([0, 1], dtype=np.uint8),
            "flag_meanings": "outside inside",
            "units": "1",
        },
    )
    start = np.datetime64(product.start.astimezone(UTC).replace(tzinfo=None), "ns")
    ds = ds.assign_coords(
        time=((), start, {"standard_name": "time", "long_name": "acquisition start"})
    )
    ds["time"].encoding.update(
        units="seconds since 1970-01-01 00:00:00", calendar="proleptic_gregorian"
    )
    if "spatial_ref" in ds.coords:
        for name in ds.data_vars:
            ds[name].attrs.pop("grid_mapping", None)
            ds[name].encoding["grid_mapping"] = "spatial_ref"
    ds.attrs = {**ds.attrs, **_product_attrs(product, reader, sources)}
    return ds


def _product_attrs(product: Product, reader: str, sources: list[str]) -> dict[str, Any]:
    attrs: dict[str, Any] = {
        "product_id": product.id,
        "collection": product.collection,
        "platform": product.platform,
        "start_datetime": product.start.astimezone(UTC).isoformat(),
        "end_datetime": product.end.astimezone(UTC).isoformat(),
        "reader": reader,
        "source": attr_value(sources),
    }
    for key, value in sorted(product.properties.items()):
        if value is not None and key not in attrs:
            attrs[key] = attr_value(value)
    return attrs


def _root_attrs(matchup: Matchup, event: dict[str, Any], options: DatasetOptions) -> dict[str, Any]:
    now = datetime.now(UTC).replace(microsecond=0).isoformat()
    attrs: dict[str, Any] = {
        "Conventions": CONVENTIONS,
        "title": f"eomatch matchup {matchup.id}",
        "source": f"eomatch {__version__}",
        "history": (
            f"{now} eomatch return_matchup_dataset(margin_m={options.margin_m:g}, "
            f"grid={options.grid.value}, target={options.target}, "
            f"resampling={options.resampling.value})"
        ),
        "matchup_id": matchup.id,
        "event_id": matchup.event_id,
        "collocation_region_wkt": _wkt(matchup.geometry),
        "collocation_area_km2": float(matchup.area_km2),
        "time_diff_abs_s": float(matchup.time_diff_abs_s),
        "margin_m": float(options.margin_m),
        "grid": options.grid.value,
        "product_ids": attr_value([p.id for p in matchup.products]),
    }
    for key, value in sorted(matchup.properties.items()):
        if value is not None and key not in attrs:
            attrs[key] = attr_value(value)
    for key, value in sorted(event.items()):
        if value is not None:
            attrs[f"event:{key}"] = attr_value(value)
    return attrs


def _wkt(geom: BaseGeometry) -> str:
    return str(shapely.to_wkt(geom, rounding_precision=7))


OUTPUT_FORMATS = {".nc": "netcdf", ".zarr": "zarr"}
"""Output file suffix -> format."""


def write_tree(tree: xr.DataTree, path: Path, overwrite: bool = False) -> Path:
    """Write ``tree`` to ``path`` (``.nc``: NetCDF-4 with one group per node; ``.zarr``: a Zarr
    store), atomically: a reader never sees half a file, and a failure leaves nothing.

    Raises:
        InputError: an unknown suffix, or ``path`` exists and ``overwrite`` is false.
    """
    fmt = OUTPUT_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise InputError(f"{path}: the output must end in .nc or .zarr")
    if path.exists() and not overwrite:
        raise InputError(f"{path} exists (overwrite it with --overwrite)")
    if fmt == "zarr":
        require_extra("data", "writing Zarr", ("zarr",))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    except OSError as exc:
        raise EomatchError(f"{path}: cannot write it: {exc}") from None
    out = tmp / path.name
    try:
        if fmt == "netcdf":
            tree.to_netcdf(out, engine="netcdf4")
        else:
            tree.to_zarr(out, zarr_format=2, consolidated=True)  # readable by GDAL and zarr 2
        if path.exists():  # only with overwrite
            shutil.rmtree(path) if path.is_dir() else path.unlink()
        os.rename(out, path)
    except OSError as exc:
        raise EomatchError(f"{path}: cannot write it: {exc}") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path


__all__ = ["OUTPUT_FORMATS", "UnreadableProductError", "build_matchup_dataset", "write_tree"]
