"""Matchup footprints on a map: each sensor's products outlined, collocation regions filled."""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from shapely.geometry import MultiPolygon, Polygon
from shapely.geometry.base import BaseGeometry

from eomatch.core.products import MatchupEvent, SensorKey
from eomatch.core.vocabulary import BBox
from eomatch.errors import EomatchError
from eomatch.io.atomic import atomic_write_bytes
from eomatch.viz.maps import (
    COASTLINE_COLOR,
    DPI,
    FIG_WIDTH_IN,
    LAND_COLOR,
    PAIR_COLORS,
    _land_path,
    _style_axes,
    map_extent,
)

MATCHUP_COLOR = "#6a3d9a"


def _rings(geom: BaseGeometry) -> Iterable[Polygon]:
    if isinstance(geom, Polygon):
        yield geom
    elif isinstance(geom, MultiPolygon):
        yield from geom.geoms


def plot_matchups(
    events: Sequence[MatchupEvent],
    path: Path,
    *,
    title: str | None = None,
    bbox: BBox | None = None,
) -> None:
    """Draw every product footprint (one colour per sensor) and every collocation region.

    Raises:
        EomatchError: ``path`` is a directory.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch, PathPatch, Rectangle
    from matplotlib.patches import Polygon as MplPolygon

    path = Path(path)
    if path.is_dir():
        raise EomatchError(f"{path} is a directory")
    matchups = [m for e in events for m in e.matchups]
    products = {p.id: p for m in matchups for p in m.products}
    sensors: list[SensorKey] = sorted({p.sensor for p in products.values()})
    colour = {s: PAIR_COLORS[i % len(PAIR_COLORS)] for i, s in enumerate(sensors)}

    xs: list[float] = []
    ys: list[float] = []
    for m in matchups:
        for poly in _rings(m.geometry):
            x, y = poly.exterior.xy
            xs.extend(x)
            ys.extend(y)
    if bbox is not None and bbox[0] <= bbox[2]:
        xs.extend([bbox[0], bbox[2]])
        ys.extend([bbox[1], bbox[3]])
    extent = map_extent(np.array(ys, dtype=np.float64), np.array(xs, dtype=np.float64))

    aspect = (extent.north - extent.south) / (extent.east - extent.west)
    fig = Figure(figsize=(FIG_WIDTH_IN, FIG_WIDTH_IN * aspect), dpi=DPI)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    _style_axes(ax, extent)
    ax.add_patch(
        PathPatch(
            _land_path(), facecolor=LAND_COLOR, edgecolor=COASTLINE_COLOR, linewidth=0.35, zorder=1
        )
    )
    if bbox is not None:
        w, s, e, n = bbox
        for x0, x1 in [(w, e)] if w <= e else [(w, 180.0), (-180.0, e)]:
            ax.add_patch(
                Rectangle((x0, s), x1 - x0, n - s, fill=False, edgecolor="#333333",
                          linewidth=1.0, linestyle=(0, (6, 3)), zorder=2)
            )  # fmt: skip
    for p in products.values():
        for poly in _rings(p.geometry):
            ax.add_patch(
                MplPolygon(np.asarray(poly.exterior.coords), closed=True, fill=False,
                           edgecolor=colour[p.sensor], linewidth=0.7, alpha=0.8, zorder=3)
            )  # fmt: skip
    for m in matchups:
        for poly in _rings(m.geometry):
            ax.add_patch(
                MplPolygon(np.asarray(poly.exterior.coords), closed=True,
                           facecolor=MATCHUP_COLOR, edgecolor="none", alpha=0.35, zorder=4)
            )  # fmt: skip
    handles: list[Any] = [
        Line2D([], [], color=colour[s], linewidth=1.2,
               label=f"{s.label()}: {sum(p.sensor == s for p in products.values())} products")
        for s in sensors
    ]  # fmt: skip
    handles.append(
        Patch(facecolor=MATCHUP_COLOR, alpha=0.35, label=f"{len(matchups)} collocation regions")
    )
    if bbox is not None:
        handles.append(Line2D([], [], color="#333333", linestyle=(0, (6, 3)), label="region"))
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.09), ncol=2,
              frameon=False, fontsize=9)  # fmt: skip
    if not matchups:
        ax.text(0.5, 0.5, "no matchups", transform=ax.transAxes, ha="center", fontsize=14)
    ax.set_title(title or f"{len(events)} event(s), {len(matchups)} matchup(s)", fontsize=11)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    atomic_write_bytes(path, buf.getvalue())
