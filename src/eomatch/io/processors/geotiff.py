"""The built-in ``geotiff`` processor: a GeoTIFF (or COG) described with rio-stac."""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from eomatch.extras import require_extra

__all__ = ["GeoTiffProcessor"]

_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")  # TIFF and BigTIFF, both byte orders


def item_id_from(path: Path) -> str:
    """A safe item id from a file name (``S2 scene.tif`` → ``S2_scene``)."""
    stem = path.name.split(".", 1)[0]
    return re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._-")[:200] or "item"


class GeoTiffProcessor:
    """GeoTIFF/COG files: footprint, projection and bands (rio-stac), file size and checksum."""

    name = "geotiff"
    collection: str | None = None

    def matches(self, path: Path) -> bool:
        """A ``.tif``/``.tiff`` file starting with a TIFF signature."""
        if path.suffix.lower() not in (".tif", ".tiff") or not path.is_file():
            return False
        with path.open("rb") as fh:
            return fh.read(4) in _MAGIC

    def items(self, path: Path) -> Iterable[dict[str, Any]]:
        """One item; its datetime is the TIFFTAG_DATETIME, else the file's modification time."""
        require_extra("data", "the geotiff processor", ("rasterio", "rio_stac"))
        from eomatch.io.cog import COG_MEDIA_TYPE, file_datetime, raster_item

        when = file_datetime(path) or datetime.fromtimestamp(path.stat().st_mtime, UTC)
        doc = raster_item(
            path,
            item_id=item_id_from(path),
            collection=None,
            asset="data",
            href=path.resolve().as_uri(),
            when=when,
        )
        doc["assets"]["data"]["type"] = COG_MEDIA_TYPE if _is_cog(path) else "image/tiff"
        yield doc


def _is_cog(path: Path) -> bool:
    from rio_cogeo.cogeo import cog_validate

    valid, _errors, _warnings = cog_validate(str(path), quiet=True)
    return bool(valid)
