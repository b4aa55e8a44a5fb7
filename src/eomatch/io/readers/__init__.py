"""Product readers: one small interface, chosen by the product's assets and collection.

A reader takes the assets of one product and the collocation region and returns the product's
pixels inside it (:class:`Piece`: one per grid, since a Sentinel-2 product has 10, 20 and 60 m
bands). Readers read where the data is — a local file, a ``file://`` href on a shared drive,
an ``http(s)`` COG through GDAL's ``/vsicurl/`` range requests, members of a SAFE zip through
``/vsizip/`` — and never copy a product.

=================  ======================================================  ===============
reader             assets it takes                                         library
=================  ======================================================  ===============
``sentinel-2``     collections ``S2_*``: JP2 or GeoTIFF band assets, or     rasterio (GDAL,
                   a ``.SAFE`` folder / SAFE ``.zip`` (its band files)      JP2OpenJPEG)
``landsat``        collections ``LANDSAT_*``: Collection-2 band GeoTIFFs    rasterio
``geotiff``        any other product: GeoTIFF / COG assets                 rasterio
``netcdf``         NetCDF assets (regular 1-D or curvilinear 2-D lon/lat)  xarray, netCDF4
=================  ======================================================  ===============

:func:`reader_for` picks the first reader that takes some of the assets; a product none takes
raises :class:`~eomatch.errors.UnreadableProductError` (one line naming the product, its asset
types, and what is readable).
"""

from __future__ import annotations

from eomatch.extras import require_extra

require_extra("data", "matchup datasets", ("xarray", "rioxarray", "rasterio", "netCDF4"))

from collections.abc import Sequence  # noqa: E402

from eomatch.core.products import Product  # noqa: E402
from eomatch.errors import UnreadableProductError  # noqa: E402
from eomatch.io.readers.base import AssetRef, Piece, ProductReader  # noqa: E402
from eomatch.io.readers.netcdf import NetCDFReader  # noqa: E402
from eomatch.io.readers.raster import RasterReader  # noqa: E402

__all__ = ["READERS", "AssetRef", "Piece", "ProductReader", "reader_for"]

READERS: tuple[ProductReader, ...] = (
    RasterReader("sentinel-2", ("S2_",)),
    RasterReader("landsat", ("LANDSAT_",)),
    NetCDFReader(),
    RasterReader("geotiff", ()),
)
"""In the order they are asked; the first that takes some of a product's assets reads it."""

READABLE = "GeoTIFF/COG, JP2 band files, a Sentinel-2 SAFE folder or zip, NetCDF"
"""What the readers read, for error messages."""


def reader_for(
    product: Product, assets: Sequence[AssetRef]
) -> tuple[ProductReader, list[AssetRef]]:
    """The reader for ``product`` and the assets it will read.

    Raises:
        UnreadableProductError: predicted product, no assets, or no reader takes any asset.
    """
    if product.predicted:
        raise UnreadableProductError(
            f"product {product.id} is predicted from the orbit: it has no data to read"
        )
    if not assets:
        raise UnreadableProductError(f"product {product.id} has no data asset to read")
    for reader in READERS:
        chosen = reader.select(product, assets)
        if chosen:
            return reader, chosen
    kinds = ", ".join(f"{a.key}: {a.media_type or a.href.rsplit('/', 1)[-1][:60]}" for a in assets)
    raise UnreadableProductError(
        f"product {product.id} ({product.collection}): no reader for its assets ({kinds}); "
        f"eomatch reads {READABLE}"
    )
