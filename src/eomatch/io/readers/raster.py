"""Rasters GDAL opens (GeoTIFF/COG, JP2): windowed reads through rasterio.

Only the window covering the region is read: for a tiled COG that is the tiles under it, and
for a remote one GDAL fetches just those byte ranges over HTTP (``/vsicurl/``, options in
:data:`GDAL_OPTIONS`). Sentinel-2 products may also be a ``.SAFE`` folder or a SAFE ``.zip``
(a download's ``data`` asset): their band files (``IMG_DATA/*_B04.jp2``, at the finest
resolution present) are read in place, members of a zip through ``/vsizip/``.
"""

from __future__ import annotations

import os
import re
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import rasterio.windows
import rioxarray  # noqa: F401  (registers the .rio accessor)
import xarray as xr
from affine import Affine
from rasterio.errors import RasterioError
from shapely.geometry.base import BaseGeometry

from eomatch.core.collocation import (
    Grid,
    PixelWindow,
    check_window_size,
    region_in_crs,
    region_mask,
)
from eomatch.core.products import Product
from eomatch.errors import InvalidValueError, UnreadableProductError
from eomatch.io.readers.base import AssetRef, Piece, one_line

GDAL_OPTIONS: dict[str, str] = {
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",  # no listing of the remote folder on open
    "GDAL_HTTP_MERGE_CONSECUTIVE_RANGES": "YES",  # one request for adjacent tiles
    "GDAL_HTTP_MULTIPLEX": "YES",
    "GDAL_HTTP_MAX_RETRY": "3",
    "GDAL_HTTP_RETRY_DELAY": "0.5",
    "VSI_CACHE": "TRUE",
}
"""GDAL settings for every read (remote COGs: few, merged range requests)."""

_SUFFIXES = (".tif", ".tiff", ".jp2")
_MEDIA = ("image/tiff", "image/jp2", "application/x-geotiff", "image/geotiff")
_NOT_DATA = {"thumbnail", "overview", "visual", "metadata", "index"}
_SAFE_BAND = re.compile(r"_(B(?:0[1-9]|1[0-2]|8A))(?:_(\d+)m)?\.jp2$")

REFLECTANCE = {
    "S2_MSI_L1C": "toa_bidirectional_reflectance",
    "S2_MSI_L2A": "surface_bidirectional_reflectance",
    "LANDSAT_C2L1": "toa_bidirectional_reflectance",
    "LANDSAT_C2L2": "surface_bidirectional_reflectance",
}
"""CF standard name of a collection's reflective bands, given only when the asset's
``raster:bands`` scale (and offset) turn the stored numbers into that quantity."""
THERMAL = {
    "LANDSAT_C2L1": "toa_brightness_temperature",
    "LANDSAT_C2L2": "surface_temperature",
}
"""CF standard name of thermal bands (centre wavelength above 3 µm), on the same condition."""


class RasterReader:
    """GeoTIFF/COG and JP2 band assets (one asset per band or a multi-band file).

    Args:
        name: the reader's name (``sentinel-2``, ``landsat``, ``geotiff``).
        collections: collection prefixes it is for (empty: any).
    """

    def __init__(self, name: str, collections: tuple[str, ...]) -> None:
        self.name = name
        self.collections = collections

    def select(self, product: Product, assets: Sequence[AssetRef]) -> list[AssetRef]:
        """Raster data assets (not thumbnails, overviews or the RGB ``visual``); a SAFE folder
        or zip becomes its band files (``sentinel-2`` only)."""
        if self.collections and not product.collection.startswith(self.collections):
            return []
        chosen = []
        for a in assets:
            if _NOT_DATA & set(a.roles):
                continue
            if self.name == "sentinel-2" and _is_safe(a):
                chosen.extend(safe_bands(a))
            elif a.suffix in _SUFFIXES or a.media_type.lower().startswith(_MEDIA):
                chosen.append(a)
        keys = {a.key for a in chosen}  # Earth Search lists each band twice: red, red-jp2
        return [a for a in chosen if not (a.key.endswith("-jp2") and a.key[:-4] in keys)]

    def read(
        self,
        product: Product,
        assets: Sequence[AssetRef],
        region: BaseGeometry,
        margin_m: float,
    ) -> list[Piece]:
        """One :class:`Piece` per distinct grid among the assets (bands of one resolution
        share one)."""
        groups: dict[Grid, tuple[dict[str, xr.DataArray], list[str], BaseGeometry]] = {}
        with rasterio.Env(**GDAL_OPTIONS):
            for asset in assets:
                grid, arrays, core_region = self._read_asset(product, asset, region, margin_m)
                variables, sources, _ = groups.setdefault(grid, ({}, [], core_region))
                variables.update(arrays)
                sources.append(asset.href)
        pieces = []
        for grid, (variables, sources, core_region) in groups.items():
            x, y = grid.centres()
            ds = xr.Dataset(variables, coords={"y": ("y", y), "x": ("x", x)})
            ds = ds.rio.write_crs(grid.crs).rio.write_transform(_affine(grid))
            ds = ds.rio.write_coordinate_system()
            pieces.append(Piece(ds, grid, region_mask(grid, core_region), sources))
        return pieces

    def _read_asset(
        self, product: Product, asset: AssetRef, region: BaseGeometry, margin_m: float
    ) -> tuple[Grid, dict[str, xr.DataArray], BaseGeometry]:
        where = f"product {product.id}: asset {asset.key} ({asset.href})"
        try:
            with rasterio.open(asset.location) as src:
                if src.crs is None:
                    raise UnreadableProductError(f"{where}: the raster has no CRS")
                full = Grid(src.crs.to_wkt(), tuple(src.transform)[:6], src.width, src.height)
                win = full.window(region_in_crs(region, full.crs, margin_m).bounds)
                if win is None:
                    raise UnreadableProductError(
                        f"{where}: no pixel of the raster meets the collocation region"
                    )
                check_window_size(win, src.count)
                data = src.read(window=_rio_window(win))
                meta = _band_meta(src, asset)
        except InvalidValueError as exc:
            raise UnreadableProductError(f"{where}: {exc}") from None
        except (RasterioError, OSError) as exc:
            hint = ""
            if asset.suffix == ".jp2" and "JP2OpenJPEG" not in rasterio.Env().drivers():
                hint = " (this GDAL has no JP2 driver: install a rasterio wheel with JP2OpenJPEG)"
            raise UnreadableProductError(
                f"{where}: cannot read it: {one_line(exc)}{hint}"
            ) from None
        arrays: dict[str, xr.DataArray] = {}
        for i, band in enumerate(data):
            name = asset.key if len(data) == 1 else f"{asset.key}_{i + 1}"
            attrs = _cf_attrs(product.collection, meta[i])
            arrays[name] = xr.DataArray(band, dims=("y", "x"), attrs=attrs)
        return full.subgrid(win), arrays, region_in_crs(region, full.crs)


def _affine(grid: Grid) -> Affine:
    return Affine(*grid.transform)


def _rio_window(win: PixelWindow) -> rasterio.windows.Window:
    return rasterio.windows.Window(win.col_off, win.row_off, win.width, win.height)


def _band_meta(src: Any, asset: AssetRef) -> list[dict[str, Any]]:
    """Per band: nodata, scale, offset, unit, names and wavelength (file first, then STAC)."""
    stac_raster = _list(asset.fields.get("raster:bands"))
    stac_eo = _list(asset.fields.get("eo:bands")) or _list(asset.fields.get("bands"))
    out = []
    for i in range(src.count):
        rb = stac_raster[i] if i < len(stac_raster) else {}
        eo = stac_eo[i] if i < len(stac_eo) else {}
        scale = src.scales[i] if src.scales[i] != 1.0 else rb.get("scale")
        offset = src.offsets[i] if src.offsets[i] != 0.0 else rb.get("offset")
        out.append(
            {
                "nodata": src.nodatavals[i] if src.nodatavals[i] is not None else rb.get("nodata"),
                "scale": scale,
                "offset": offset,
                "unit": src.units[i] or rb.get("unit"),
                "name": eo.get("name") or src.descriptions[i] or asset.key,
                "common_name": eo.get("common_name") or eo.get("eo:common_name"),
                "wavelength_um": eo.get("center_wavelength") or eo.get("eo:center_wavelength"),
            }
        )
    return out


def _list(value: Any) -> list[Mapping[str, Any]]:
    if not isinstance(value, list):
        return []
    return [v if isinstance(v, Mapping) else {} for v in value]


def _cf_attrs(collection: str, meta: Mapping[str, Any]) -> dict[str, Any]:
    """CF attributes of one band: values as stored, ``scale_factor``/``add_offset`` when known
    (CF readers decode them), ``standard_name`` only when the decoded value is that quantity."""
    attrs: dict[str, Any] = {"long_name": str(meta["name"])}
    if meta["common_name"]:
        attrs["band_common_name"] = str(meta["common_name"])
    wavelength = meta["wavelength_um"]
    if isinstance(wavelength, int | float):
        attrs["center_wavelength_um"] = float(wavelength)
    scaled = meta["scale"] is not None
    if scaled:
        attrs["scale_factor"] = float(meta["scale"])
        if meta["offset"] is not None:
            attrs["add_offset"] = float(meta["offset"])
        table = THERMAL if isinstance(wavelength, int | float) and wavelength > 3.0 else REFLECTANCE
        for prefix, standard in table.items():
            if collection.startswith(prefix):
                attrs["standard_name"] = standard
    unit = meta["unit"]
    if unit:
        attrs["units"] = str(unit)
    elif attrs.get("standard_name") == "surface_temperature" or (
        attrs.get("standard_name") == "toa_brightness_temperature"
    ):
        attrs["units"] = "K"
    else:
        attrs["units"] = "1"
    if meta["nodata"] is not None and np.isfinite(meta["nodata"]):
        attrs["_FillValue"] = meta["nodata"]
    return attrs


# --- Sentinel-2 SAFE -----------------------------------------------------------------------


def _is_safe(asset: AssetRef) -> bool:
    if asset.remote:
        return False
    path = asset.location.rstrip("/")
    return path.endswith(".SAFE") or (path.lower().endswith(".zip") and zipfile.is_zipfile(path))


def safe_bands(asset: AssetRef) -> list[AssetRef]:
    """The band files of a SAFE folder or zip, one per band at its finest resolution."""
    path = asset.location.rstrip("/")
    if path.lower().endswith(".zip"):
        with zipfile.ZipFile(path) as z:
            members = [f"/vsizip/{path}/{n}" for n in z.namelist()]
    else:
        members = [os.path.join(d, f) for d, _, files in os.walk(path) for f in files]
    best: dict[str, tuple[int, str]] = {}
    for m in members:
        if "IMG_DATA" not in m:
            continue
        hit = _SAFE_BAND.search(m)
        if hit:
            res = int(hit.group(2) or 0)
            if hit.group(1) not in best or res < best[hit.group(1)][0]:
                best[hit.group(1)] = (res, m)
    return [
        AssetRef(
            key=band,
            href=f"{asset.href}#{Path(m).name}",
            location=m,
            media_type="image/jp2",
            roles=("data",),
        )
        for band, (_, m) in sorted(best.items())
    ]
