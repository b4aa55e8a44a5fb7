"""Grid maths of a matchup dataset: where the collocation region falls on a product's pixels.

Pure (no file or network access): the readers in :mod:`eomatch.io.readers` give a raster's
:class:`Grid` (CRS, affine transform, size); this module says which pixel window covers the
collocation region (plus a margin in metres), which pixels lie inside the region, which grid
is the coarser one of a matchup and how to resample onto it.

Conventions (rasterio's, so the readers pass their numbers straight through):

* ``transform`` is the affine ``(a, b, c, d, e, f)``: ``x = a·col + b·row + c``,
  ``y = d·col + e·row + f`` for the pixel *corner*; pixel centres are at ``col + 0.5``.
  Only axis-aligned grids (``b = d = 0``) are accepted.
* A pixel belongs to the window if its area meets the region's bounding box (``floor``/``ceil``
  of the fractional pixel positions); ``in_collocation_region`` holds the pixels whose *centre*
  lies in the region itself (without the margin).
* The margin is applied on the ground: the region is buffered by ``margin_m`` metres in a local
  azimuthal equidistant projection centred on it, then carried into the grid's CRS.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import shapely
from pyproj import CRS, Transformer
from shapely.geometry.base import BaseGeometry

from eomatch.errors import InvalidValueError

MAX_MARGIN_M = 100_000.0
"""Largest margin around the collocation region (bounds what one request reads)."""
MAX_WINDOW_PIXELS = 250_000_000
"""Most pixels read from one asset (all its bands): about 500 MB of uint16, a whole
Sentinel-2 10 m band is 120 M. A region that needs more is refused before reading."""
DENSIFY_DEG = 0.01
"""Longest lon/lat edge of the region before projecting it (~1 km: curved edges stay exact)."""
_EPS = 1e-6
"""Fraction of a pixel treated as rounding noise when a region edge falls on a pixel edge."""
_M_PER_DEG_LAT = 110_574.0
_M_PER_DEG_LON_EQUATOR = 111_320.0


class GridMode(enum.StrEnum):
    """Keep each product on its own pixels, or put every product on one common grid."""

    NATIVE = "native"
    COMMON = "common"


class Resampling(enum.StrEnum):
    """How a product is resampled onto the common grid (``auto``: see :func:`resampling_for`)."""

    AUTO = "auto"
    NEAREST = "nearest"
    BILINEAR = "bilinear"
    CUBIC = "cubic"
    AVERAGE = "average"


@dataclass(frozen=True)
class DatasetOptions:
    """What :meth:`Matchup.return_matchup_dataset` builds.

    Attributes:
        margin_m: metres added around the collocation region (0 to :data:`MAX_MARGIN_M`).
        grid: ``native`` keeps every product's own pixels; ``common`` resamples all of them
            onto one grid so they can be compared pixel by pixel.
        target: with ``grid="common"``, the sensor whose grid is used (its label
            ``{collection}-{platform}``, its collection or its platform); default the coarser.
        resampling: ``auto`` averages when a product is downsampled and interpolates
            bilinearly otherwise; or one method for all.
        assets: asset keys to read (default: every data asset the product's reader knows).
    """

    margin_m: float = 0.0
    grid: GridMode = GridMode.NATIVE
    target: str | None = None
    resampling: Resampling = Resampling.AUTO
    assets: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if not math.isfinite(self.margin_m) or not 0.0 <= self.margin_m <= MAX_MARGIN_M:
            raise InvalidValueError(
                f"margin must be 0 to {MAX_MARGIN_M:g} m, not {self.margin_m!r}"
            )
        object.__setattr__(self, "grid", GridMode(self.grid))
        object.__setattr__(self, "resampling", Resampling(self.resampling))
        if self.target is not None and self.grid is not GridMode.COMMON:
            raise InvalidValueError("a target grid needs grid='common'")
        if self.assets is not None:
            object.__setattr__(self, "assets", tuple(self.assets))


@dataclass(frozen=True)
class PixelWindow:
    """Rows and columns of a raster: ``[row_off, row_off + height)``, ``[col_off, ...)``."""

    row_off: int
    col_off: int
    height: int
    width: int


@dataclass(frozen=True)
class Grid:
    """An axis-aligned raster grid: CRS (WKT or ``EPSG:n``), affine transform, size."""

    crs: str
    transform: tuple[float, float, float, float, float, float]
    width: int
    height: int

    def __post_init__(self) -> None:
        a, b, _c, d, e, _f = self.transform
        if b != 0.0 or d != 0.0 or a == 0.0 or e == 0.0:
            raise InvalidValueError(
                f"only axis-aligned grids are supported (transform {self.transform})"
            )

    @property
    def res(self) -> tuple[float, float]:
        """Pixel width and height in CRS units (positive)."""
        return abs(self.transform[0]), abs(self.transform[4])

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """``(minx, miny, maxx, maxy)`` of the whole grid."""
        a, _b, c, _d, e, f = self.transform
        xs = (c, c + a * self.width)
        ys = (f, f + e * self.height)
        return min(xs), min(ys), max(xs), max(ys)

    def window(self, bounds: Sequence[float]) -> PixelWindow | None:
        """The pixels whose area meets ``bounds`` (clipped to the grid); None if none do."""
        a, _b, c, _d, e, f = self.transform
        minx, miny, maxx, maxy = (float(v) for v in bounds)
        cols = sorted(((minx - c) / a, (maxx - c) / a))
        rows = sorted(((miny - f) / e, (maxy - f) / e))
        col0 = max(math.floor(cols[0] + _EPS), 0)
        col1 = min(math.ceil(cols[1] - _EPS), self.width)
        row0 = max(math.floor(rows[0] + _EPS), 0)
        row1 = min(math.ceil(rows[1] - _EPS), self.height)
        if col1 <= col0 or row1 <= row0:
            return None
        return PixelWindow(row0, col0, row1 - row0, col1 - col0)

    def subgrid(self, win: PixelWindow) -> Grid:
        """The grid of a window of this one."""
        a, b, c, d, e, f = self.transform
        return Grid(
            self.crs,
            (a, b, c + win.col_off * a, d, e, f + win.row_off * e),
            win.width,
            win.height,
        )

    def centres(self) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """x of each column's and y of each row's pixel centre."""
        a, _b, c, _d, e, f = self.transform
        x = c + (np.arange(self.width, dtype=np.float64) + 0.5) * a
        y = f + (np.arange(self.height, dtype=np.float64) + 0.5) * e
        return x, y


def check_window_size(win: PixelWindow, bands: int) -> None:
    """Refuse a read of more than :data:`MAX_WINDOW_PIXELS` (the caller names the asset)."""
    pixels = win.width * win.height * max(bands, 1)
    if pixels > MAX_WINDOW_PIXELS:
        raise InvalidValueError(
            f"the region needs {pixels:,} pixels ({win.height} x {win.width} x {bands} "
            f"band(s)), more than the {MAX_WINDOW_PIXELS:,} read at once; use a smaller margin "
            "or fewer assets"
        )


def is_geographic(crs: str) -> bool:
    """Whether ``crs`` has degrees for coordinates."""
    return bool(_crs(crs).is_geographic)


def _crs(crs: str) -> CRS:
    try:
        return CRS.from_user_input(crs)
    except Exception as exc:  # pyproj raises CRSError, a plain Exception subclass
        raise InvalidValueError(
            f"not a coordinate reference system: {crs[:80]!r} ({exc})"
        ) from None


def _transform(geom: BaseGeometry, src: CRS | str, dst: CRS | str) -> BaseGeometry:
    tr = Transformer.from_crs(src, dst, always_xy=True)

    def apply(coords: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        x, y = tr.transform(coords[:, 0], coords[:, 1])
        return np.column_stack([x, y])

    return shapely.transform(geom, apply)


def region_in_crs(region: BaseGeometry, crs: str, margin_m: float = 0.0) -> BaseGeometry:
    """The collocation region (lon/lat), grown by ``margin_m`` metres, in ``crs``.

    Edges are densified to :data:`DENSIFY_DEG` first, so straight lon/lat edges that become
    curves in a projected CRS are followed closely.
    """
    if region.is_empty:
        raise InvalidValueError("the collocation region is empty")
    geom = shapely.segmentize(region, DENSIFY_DEG)
    if margin_m > 0.0:
        centre = region.centroid
        local = CRS.from_proj4(
            f"+proj=aeqd +lat_0={centre.y} +lon_0={centre.x} +datum=WGS84 +units=m"
        )
        grown = _transform(geom, "EPSG:4326", local).buffer(margin_m, quad_segs=16)
        return _transform(grown, local, _crs(crs))
    return _transform(geom, "EPSG:4326", _crs(crs))


def region_mask(grid: Grid, region: BaseGeometry) -> npt.NDArray[np.bool_]:
    """``(height, width)``: True where a pixel centre lies in ``region`` (in the grid's CRS)."""
    x, y = grid.centres()
    xx, yy = np.meshgrid(x, y)
    shapely.prepare(region)
    return np.asarray(shapely.contains_xy(region, xx, yy), dtype=bool)


def pixel_size_m(grid: Grid, lat: float) -> float:
    """The side of a square pixel of the same ground area, in metres (degrees converted at
    latitude ``lat``)."""
    crs = _crs(grid.crs)
    w, h = grid.res
    if crs.is_geographic:
        w *= _M_PER_DEG_LON_EQUATOR * max(math.cos(math.radians(lat)), 1e-6)
        h *= _M_PER_DEG_LAT
    else:
        factor = float(crs.axis_info[0].unit_conversion_factor) if crs.axis_info else 1.0
        w, h = w * factor, h * factor
    return math.sqrt(w * h)


def coarsest(grids: Mapping[str, Grid], lat: float) -> str:
    """The key of the grid with the largest pixels (the first of equals)."""
    if not grids:
        raise InvalidValueError("no grid to choose from")
    return max(grids, key=lambda k: (pixel_size_m(grids[k], lat), -list(grids).index(k)))


def resampling_for(src: Grid, dst: Grid, lat: float, requested: Resampling) -> Resampling:
    """The method that puts ``src`` onto ``dst``.

    ``auto``: ``average`` when ``src`` pixels are smaller than ``dst`` pixels (downsampling:
    every source pixel under a target pixel counts, as in aggregation to a coarser sensor),
    ``nearest`` for the same pixel size (a re-gridding, not a change of scale), ``bilinear``
    when ``src`` is coarser (upsampling: a smooth field, no blocks).
    """
    if requested is not Resampling.AUTO:
        return requested
    s, d = pixel_size_m(src, lat), pixel_size_m(dst, lat)
    if math.isclose(s, d, rel_tol=0.01):
        return Resampling.NEAREST
    return Resampling.AVERAGE if s < d else Resampling.BILINEAR
