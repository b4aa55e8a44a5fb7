"""What every reader shares: the asset it is handed, the piece it returns, its interface."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import xarray as xr
from shapely.geometry.base import BaseGeometry

from eomatch.core.collocation import Grid
from eomatch.core.products import Product

MASK_VAR = "in_collocation_region"
"""The variable that flags, per pixel, whether its centre lies in the collocation region."""


@dataclass(frozen=True)
class AssetRef:
    """One asset of a product, with where to open it.

    Attributes:
        key: the asset key in the item (``B04``, ``red``, ``data``).
        href: the href as the item gives it.
        location: what GDAL or netCDF opens: a local path, an ``http(s)`` URL, a ``/vsizip/``
            path to a member of an archive.
        media_type: the asset's ``type`` (may be empty).
        roles: the asset's ``roles``.
        fields: the whole asset dict (``raster:bands``, ``eo:bands``...).
    """

    key: str
    href: str
    location: str
    media_type: str = ""
    roles: tuple[str, ...] = ()
    fields: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def remote(self) -> bool:
        """Whether the data is read over the network."""
        return self.location.startswith(("http://", "https://", "/vsicurl/", "s3://", "/vsis3/"))

    @property
    def suffix(self) -> str:
        """The file extension of the location, lower case (``.tif``), ignoring a URL query."""
        name = self.location.split("?", 1)[0].rsplit("/", 1)[-1]
        return "." + name.rsplit(".", 1)[-1].lower() if "." in name else ""


@dataclass
class Piece:
    """The pixels of one product on one grid, inside the region (plus margin).

    Attributes:
        dataset: the variables (dims ``y``, ``x``), with coordinates and CF attributes; CRS and
            transform written by rioxarray when ``grid`` is set.
        grid: the window's grid; None for a curvilinear product (2-D lon/lat), which cannot be
            put on a common grid.
        mask: True where a pixel centre lies in the collocation region (no margin).
        sources: the hrefs read.
    """

    dataset: xr.Dataset
    grid: Grid | None
    mask: npt.NDArray[np.bool_]
    sources: list[str]


class ProductReader(Protocol):
    """Reads one kind of product: picks its assets, then reads their pixels in a region."""

    name: str
    """Short name, recorded in the dataset (``reader`` attribute) and in messages."""

    def select(self, product: Product, assets: Sequence[AssetRef]) -> list[AssetRef]:
        """The assets of ``product`` this reader reads (empty: not a product for it)."""
        ...

    def read(
        self,
        product: Product,
        assets: Sequence[AssetRef],
        region: BaseGeometry,
        margin_m: float,
    ) -> list[Piece]:
        """The pixels of ``assets`` covering ``region`` (lon/lat) grown by ``margin_m``.

        Raises:
            UnreadableProductError: an asset cannot be opened or read, or no pixel of the
                product meets the region (one line naming the product and the asset).
        """
        ...


def attr_value(value: Any) -> str | int | float:
    """A STAC property as a netCDF/Zarr attribute: numbers and text as they are, times as ISO
    8601, booleans as ``"true"``/``"false"``, anything else as JSON text."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | str):
        return value
    if isinstance(value, datetime):
        return value.isoformat()
    return json.dumps(value, default=str, sort_keys=True)


def one_line(exc: BaseException) -> str:
    """An exception's message on one line (GDAL messages may span several)."""
    return " ".join(str(exc).split()) or type(exc).__name__
