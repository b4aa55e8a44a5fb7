"""Maps of crossover events: where they happen and how the two ground tracks meet.

Drawn on a plate carrée (longitude/latitude) map with the Natural Earth 1:50m land polygons
that ship in the ``orbitx`` wheel (read with pyshp; no cartopy, so nothing is downloaded).
Matplotlib is imported lazily and used through its object API with the Agg canvas, so plotting
never touches pyplot's global state or needs a display.
"""

from __future__ import annotations

import io
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from eomatch.config.models import EomatchConfig
from eomatch.core.crossovers import Crossover
from eomatch.core.propagation import TleOrbit
from eomatch.core.satellites import UnknownSatelliteError
from eomatch.core.vocabulary import BBox
from eomatch.errors import EomatchError
from eomatch.io.atomic import atomic_write_bytes
from eomatch.io.tle_store import shipped_tle_dir
from eomatch.wiring import build_registry, build_store

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.path import Path as MplPath

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

TIMES = "\N{MULTIPLICATION SIGN}"
LAND_COLOR = "#e4dcc6"
"""Fill of land polygons (tests sample it)."""
OCEAN_COLOR = "#d6e6f2"
"""Background of the map (tests sample it)."""
COASTLINE_COLOR = "#9c927a"
PAIR_COLORS = (
    "#d62728",
    "#1f77b4",
    "#2ca02c",
    "#9467bd",
    "#ff7f0e",
    "#8c564b",
    "#e377c2",
    "#17becf",
    "#bcbd22",
    "#7f7f7f",
)
TRACK_STEP_S = 10
"""Ground-track sampling; at ~7 km/s this draws a vertex every ~70 km."""
DPI = 150
FIG_WIDTH_IN = 11.0
LABEL_EVENTS_MAX = 25
"""Regional maps with at most this many events label each closest approach with its time."""


def land_shapefile() -> Path:
    """The Natural Earth 1:50m land shapefile shipped beside the TLE archive."""
    return shipped_tle_dir().parent / "land_mask" / "ne_50m_land.shp"


@lru_cache(maxsize=1)
def _land_path() -> MplPath:
    """Every land ring as one compound path (holes wind the other way, so they stay open)."""
    import shapefile
    from matplotlib.path import Path as MplPath

    shp = land_shapefile()
    if not shp.is_file():
        raise EomatchError(f"land polygons not found at {shp}; reinstall eomatch")
    verts: list[FloatArray] = []
    codes: list[npt.NDArray[np.uint8]] = []
    try:
        with shapefile.Reader(str(shp)) as reader:
            for shape in reader.iterShapes():
                pts = np.asarray(shape.points, dtype=np.float64)
                bounds = [*list(shape.parts), len(pts)]
                for a, b in itertools.pairwise(bounds):
                    ring = pts[a:b]
                    if len(ring) < 3:
                        continue
                    c = np.full(len(ring), MplPath.LINETO, dtype=np.uint8)
                    c[0] = MplPath.MOVETO
                    c[-1] = MplPath.CLOSEPOLY
                    verts.append(ring)
                    codes.append(c)
    except (OSError, shapefile.ShapefileException) as exc:
        raise EomatchError(f"cannot read land polygons {shp}: {exc}") from exc
    return MplPath(np.concatenate(verts), np.concatenate(codes))


def break_antimeridian(lon: FloatArray, lat: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Split a track where it wraps from +180° to -180° so no line crosses the whole map.

    The track is extended to the map edge on both sides at the interpolated latitude, with a NaN
    gap between (matplotlib breaks lines at NaN).
    """
    lon = np.asarray(lon, dtype=np.float64)
    lat = np.asarray(lat, dtype=np.float64)
    jumps = np.flatnonzero(np.abs(np.diff(lon)) > 180.0) + 1
    if len(jumps) == 0:
        return lon, lat
    lon1, lon2 = lon[jumps - 1], lon[jumps]
    lat1, lat2 = lat[jumps - 1], lat[jumps]
    edge = np.where(lon1 > 0, 180.0, -180.0)
    lon2_unwrapped = lon2 + 2.0 * edge
    frac = (edge - lon1) / (lon2_unwrapped - lon1)
    lat_edge = lat1 + frac * (lat2 - lat1)
    idx = np.repeat(jumps, 3)
    new_lon = np.stack([edge, np.full_like(edge, np.nan), -edge], axis=1).ravel()
    new_lat = np.stack([lat_edge, np.full_like(lat_edge, np.nan), lat_edge], axis=1).ravel()
    return np.insert(lon, idx, new_lon), np.insert(lat, idx, new_lat)


@dataclass(frozen=True)
class Extent:
    """Map limits in degrees."""

    west: float
    east: float
    south: float
    north: float

    @property
    def is_world(self) -> bool:
        """Whether the map shows the whole globe."""
        return self.east - self.west >= 359.0


WORLD = Extent(-180.0, 180.0, -90.0, 90.0)


def map_extent(lats: FloatArray, lons: FloatArray) -> Extent:
    """The events' extent with a margin when they are regional, else the whole world.

    Regional means the points fit in 150° of longitude and 75° of latitude (without wrapping
    the antimeridian). Small extents are widened to at least 20° by 12° around their centre, and
    the aspect ratio is kept between 1:1 and 3:1 so the map stays readable.
    """
    ok = np.isfinite(lats) & np.isfinite(lons)
    if not ok.any():
        return WORLD
    lats, lons = lats[ok], lons[ok]
    w, e = float(lons.min()), float(lons.max())
    s, n = float(lats.min()), float(lats.max())
    if e - w > 150.0 or n - s > 75.0:
        return WORLD
    margin_x = max(4.0, 0.12 * (e - w))
    margin_y = max(3.0, 0.12 * (n - s))
    w, e, s, n = w - margin_x, e + margin_x, s - margin_y, n + margin_y
    width, height = max(e - w, 20.0), max(n - s, 12.0)
    width = max(width, height)  # no taller than wide
    height = max(height, width / 3.0)  # no wider than 3:1
    cx, cy = (w + e) / 2.0, (s + n) / 2.0
    w, e = cx - width / 2.0, cx + width / 2.0
    s, n = cy - height / 2.0, cy + height / 2.0
    # Slide (not shrink) the box back inside the globe.
    if w < -180.0:
        w, e = -180.0, min(180.0, e + (-180.0 - w))
    if e > 180.0:
        w, e = max(-180.0, w - (e - 180.0)), 180.0
    if s < -90.0:
        s, n = -90.0, min(90.0, n + (-90.0 - s))
    if n > 90.0:
        s, n = max(-90.0, s - (n - 90.0)), 90.0
    if e - w >= 300.0:
        return WORLD
    return Extent(w, e, s, n)


def _deg_label(value: float, pos_suffix: str, neg_suffix: str) -> str:
    v = round(value, 6)
    text = f"{abs(v):g}°"
    if v > 0:
        return text + pos_suffix
    if v < 0:
        return text + neg_suffix
    return text


def _style_axes(ax: Axes, extent: Extent) -> None:
    from matplotlib.ticker import FuncFormatter, MaxNLocator, MultipleLocator

    ax.set_xlim(extent.west, extent.east)
    ax.set_ylim(extent.south, extent.north)
    ax.set_aspect("equal")
    ax.set_facecolor(OCEAN_COLOR)
    if extent.is_world:
        ax.xaxis.set_major_locator(MultipleLocator(30))
        ax.yaxis.set_major_locator(MultipleLocator(30))
    else:
        steps = [1, 2, 2.5, 5, 10]
        ax.xaxis.set_major_locator(MaxNLocator(nbins=10, steps=steps))
        ax.yaxis.set_major_locator(MaxNLocator(nbins=8, steps=steps))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _p: _deg_label(v, "E", "W")))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _p: _deg_label(v, "N", "S")))
    ax.set_xlabel("longitude")
    ax.set_ylabel("latitude")
    ax.grid(True, color="white", linewidth=0.6, alpha=0.9, zorder=1.5)
    ax.tick_params(labelsize=9)


def _fmt_time(value: datetime) -> str:
    return value.strftime("%Y-%m-%d %H:%M")


def _default_title(events: Sequence[Crossover], pairs: Sequence[tuple[str, str]]) -> str:
    if not events:
        return "Crossovers: no events"
    names = ", ".join(f"{a} {TIMES} {b}" for a, b in pairs)
    first = min(e.time_a for e in events)
    last = max(e.time_a for e in events)
    return f"{names} crossovers, {_fmt_time(first)} to {_fmt_time(last)} UTC ({len(events)} events)"


def _tracks(
    events: Sequence[Crossover],
    orbits: dict[str, TleOrbit],
    offsets: IntArray,
) -> tuple[list[FloatArray], list[FloatArray], list[FloatArray], list[FloatArray]]:
    """Per event: lon/lat of A around ``time_a`` and of B around ``time_b`` (one SGP4 batch per
    satellite, so hundreds of events cost a few propagation calls)."""
    wanted: dict[str, list[tuple[int, int, int]]] = {}  # sat -> (event, role, centre)
    for i, ev in enumerate(events):
        wanted.setdefault(ev.platform_a, []).append((i, 0, int(ev.time_a.timestamp())))
        wanted.setdefault(ev.platform_b, []).append((i, 1, int(ev.time_b.timestamp())))
    n = len(offsets)
    out_lon: dict[tuple[int, int], FloatArray] = {}
    out_lat: dict[tuple[int, int], FloatArray] = {}
    for name, items in wanted.items():
        centres = np.array([c for _i, _r, c in items], dtype=np.int64)
        times = (centres[:, None] + offsets[None, :]).ravel()
        track = orbits[name].track(times)
        lon = track.lon.reshape(len(items), n)
        lat = track.lat.reshape(len(items), n)
        for k, (i, role, _c) in enumerate(items):
            out_lon[(i, role)] = lon[k]
            out_lat[(i, role)] = lat[k]
    m = len(events)
    return (
        [out_lon[(i, 0)] for i in range(m)],
        [out_lat[(i, 0)] for i in range(m)],
        [out_lon[(i, 1)] for i in range(m)],
        [out_lat[(i, 1)] for i in range(m)],
    )


def _joined(lons: list[FloatArray], lats: list[FloatArray]) -> tuple[FloatArray, FloatArray]:
    """Several tracks as one NaN-separated polyline (one artist, fast to draw)."""
    xs: list[FloatArray] = []
    ys: list[FloatArray] = []
    gap = np.array([np.nan])
    for lon, lat in zip(lons, lats, strict=True):
        x, y = break_antimeridian(lon, lat)
        xs += [x, gap]
        ys += [y, gap]
    if not xs:
        return np.empty(0), np.empty(0)
    return np.concatenate(xs), np.concatenate(ys)


def _label_events(ax: Axes, events: Sequence[Crossover], extent: Extent) -> None:
    """Label closest approaches with their time, merging labels of nearby points.

    Points closer than a label's height share one label (times stacked); each label goes to the
    first side of its point where it overlaps no marker and no earlier label.
    """
    ax.apply_aspect()  # fixes the axes box, so data -> pixel transforms are final
    to_px = ax.transData.transform
    inside = [
        e
        for e in sorted(events, key=lambda e: e.time_a)
        if extent.west <= e.lon_a <= extent.east and extent.south <= e.lat_a <= extent.north
    ]
    px = ax.figure.dpi / 72.0  # pixels per point
    groups: list[tuple[npt.NDArray[np.float64], list[Crossover]]] = []
    for e in inside:
        xy = to_px((e.lon_a, e.lat_a))
        for centre, members in groups:
            if np.hypot(*(xy - centre)) < 12 * px:
                members.append(e)
                break
        else:
            groups.append((xy, [e]))
    Box = tuple[float, float, float, float]
    r = 4.0 * px  # markers are obstacles too
    placed: list[Box] = [
        (x - r, y - r, x + r, y + r)
        for e in inside
        for x, y in to_px(np.array([[e.lon_a, e.lat_a], [e.lon_b, e.lat_b]]))
    ]
    sides = ((6, 3, "left", "bottom"), (6, -3, "left", "top"),
             (-6, 3, "right", "bottom"), (-6, -3, "right", "top"))  # fmt: skip

    def box_at(centre: FloatArray, side: tuple[int, int, str, str], w: float, h: float) -> Box:
        dx, dy, ha, va = side
        x0 = float(centre[0]) + dx * px - (w if ha == "right" else 0.0)
        y0 = float(centre[1]) + dy * px - (h if va == "top" else 0.0)
        return (x0, y0, x0 + w, y0 + h)

    def free(box: Box) -> bool:
        return not any(
            box[0] < b[2] and b[0] < box[2] and box[1] < b[3] and b[1] < box[3] for b in placed
        )

    for centre, members in groups:
        stamps = [m.time_a.strftime("%m-%d %H:%M") for m in members]
        lines = [
            f"{t} ({TIMES}{n})" if (n := stamps.count(t)) > 1 else t for t in dict.fromkeys(stamps)
        ]
        w = 4.3 * px * max(len(t) for t in lines)
        h = 8.5 * px * len(lines)
        side = next((sd for sd in sides if free(box_at(centre, sd, w, h))), sides[0])
        placed.append(box_at(centre, side, w, h))
        dx, dy, ha, va = side
        ax.annotate(
            "\n".join(lines),
            (members[0].lon_a, members[0].lat_a),
            xytext=(dx, dy),
            textcoords="offset points",
            ha=ha,
            va=va,
            fontsize=7,
            color="#222222",
            zorder=3.5,  # above tracks, below markers
            annotation_clip=True,
            bbox={"facecolor": "white", "alpha": 0.6, "edgecolor": "none", "pad": 0.8},
        )


def _orbits(
    names: set[str], config: EomatchConfig | None, tle_dirs: Sequence[Path]
) -> dict[str, TleOrbit]:
    registry = build_registry(config)
    store = build_store(config, tle_dirs)
    orbits: dict[str, TleOrbit] = {}
    for name in sorted(names):
        try:
            sat = registry.get(name)
        except UnknownSatelliteError as exc:
            raise EomatchError(str(exc.args[0])) from exc
        orbits[name] = TleOrbit(sat.short_name, store.archive(sat))
    return orbits


def plot_crossovers(
    events: Sequence[Crossover],
    path: Path,
    *,
    config: EomatchConfig | None = None,
    tle_dirs: Sequence[Path] = (),
    minutes: float = 6.0,
    title: str | None = None,
    bbox: BBox | None = None,
) -> None:
    """Draw the events' closest approaches and ground tracks on a map and write a PNG.

    Tracks are propagated with the same TLE sources a search uses (registry and store from
    ``config`` and ``tle_dirs``), so the map shows what the search saw.

    Args:
        events: crossover events (any number of pairs; colours distinguish the pairs).
        path: the PNG to write (atomically; parent directories are created).
        config: configuration with user satellites and TLE directories.
        tle_dirs: extra directories of TLE files.
        minutes: draw each ground track this long before and after the closest approach.
        title: the map title; by default it names the pairs, time span and event count.
        bbox: the search's (west, south, east, north) box, outlined on the map (and, unless
            it crosses the antimeridian, kept in view).

    Raises:
        EomatchError: bad ``minutes`` or ``path``, a satellite without TLEs, unreadable land data.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.patches import PathPatch, Rectangle
    from matplotlib.transforms import offset_copy

    path = Path(path)
    if not (math.isfinite(minutes) and 0 <= minutes <= 120):
        raise EomatchError(f"track length must be within 0..120 minutes, got {minutes}")
    if path.is_dir():
        raise EomatchError(f"{path} is a directory")

    pairs = sorted({(e.platform_a, e.platform_b) for e in events})
    color = {p: PAIR_COLORS[i % len(PAIR_COLORS)] for i, p in enumerate(pairs)}
    lat_pts = np.array([v for e in events for v in (e.lat_a, e.lat_b)], dtype=np.float64)
    lon_pts = np.array([v for e in events for v in (e.lon_a, e.lon_b)], dtype=np.float64)
    boxes: list[BBox] = []
    if bbox is not None:
        w, so, ea, no = (float(v) for v in bbox)
        boxes = [(w, so, ea, no)] if w <= ea else [(w, so, 180.0, no), (-180.0, so, ea, no)]
        if w <= ea and events:
            lat_pts = np.concatenate([lat_pts, [so, no]])
            lon_pts = np.concatenate([lon_pts, [w, ea]])
    extent = map_extent(lat_pts, lon_pts)

    half = round(minutes * 60.0)
    offsets = np.unique(
        np.concatenate([np.arange(-half, half, TRACK_STEP_S, dtype=np.int64), [half]])
    )
    if events and half > 0:
        orbits = _orbits({n for p in pairs for n in p}, config, tle_dirs)
        lon_a, lat_a, lon_b, lat_b = _tracks(events, orbits, offsets)
    else:
        lon_a, lat_a, lon_b, lat_b = [], [], [], []

    aspect = (extent.north - extent.south) / (extent.east - extent.west)
    fig = Figure(figsize=(FIG_WIDTH_IN, FIG_WIDTH_IN * aspect), dpi=DPI)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    _style_axes(ax, extent)
    land = PathPatch(
        _land_path(),
        facecolor=LAND_COLOR,
        edgecolor=COASTLINE_COLOR,
        linewidth=0.35,
        zorder=1,
    )
    ax.add_patch(land)

    handles: list[Any] = []
    for w, so, ea, no in boxes:
        ax.add_patch(
            Rectangle(
                (w, so),
                ea - w,
                no - so,
                fill=False,
                edgecolor="#333333",
                linewidth=1.0,
                linestyle=(0, (6, 3)),
                zorder=2,
            )
        )
    for pair in pairs:
        idx = [i for i, e in enumerate(events) if (e.platform_a, e.platform_b) == pair]
        c = color[pair]
        if lon_a:
            x, y = _joined([lon_a[i] for i in idx], [lat_a[i] for i in idx])
            ax.plot(x, y, color=c, linewidth=1.0, alpha=0.75, solid_capstyle="butt", zorder=3)
            x, y = _joined([lon_b[i] for i in idx], [lat_b[i] for i in idx])
            ax.plot(x, y, color=c, linewidth=1.0, alpha=0.75, linestyle=(0, (4, 2)), zorder=3)
        sel = [events[i] for i in idx]
        ax.scatter(
            [e.lon_a for e in sel],
            [e.lat_a for e in sel],
            s=30,
            marker="o",
            facecolor=c,
            edgecolor="black",
            linewidth=0.6,
            zorder=5,
        )
        ax.scatter(
            [e.lon_b for e in sel],
            [e.lat_b for e in sel],
            s=34,
            marker="^",
            facecolor="white",
            edgecolor=c,
            linewidth=1.1,
            zorder=4,
        )
        handles.append(
            Line2D(
                [],
                [],
                color=c,
                linewidth=3,
                label=f"{pair[0]} {TIMES} {pair[1]}: {len(idx)} events",
            )
        )

    if events:
        one = len(pairs) == 1
        a_name, b_name = (pairs[0][0], pairs[0][1]) if one else ("A", "B")
        grey = "#444444"
        handles += [
            Line2D(
                [],
                [],
                color=grey,
                marker="o",
                linestyle="none",
                markeredgecolor="black",
                label=f"{a_name} at closest approach",
            ),
            Line2D(
                [],
                [],
                color="white",
                marker="^",
                linestyle="none",
                markeredgecolor=grey,
                label=f"{b_name} at closest approach",
            ),
        ]
        if half > 0:
            handles += [
                Line2D([], [], color=grey, linewidth=1.0, label=f"{a_name} track ±{minutes:g} min"),
                Line2D(
                    [],
                    [],
                    color=grey,
                    linewidth=1.0,
                    linestyle=(0, (4, 2)),
                    label=f"{b_name} track ±{minutes:g} min",
                ),
            ]
        if boxes:
            handles.append(
                Line2D(
                    [],
                    [],
                    color="#333333",
                    linewidth=1.0,
                    linestyle=(0, (6, 3)),
                    label="search box",
                )
            )
        if not extent.is_world and len(events) <= LABEL_EVENTS_MAX:
            _label_events(ax, events, extent)
            handles.append(
                Line2D(
                    [],
                    [],
                    linestyle="none",
                    label=f"labels: {a_name} time at closest approach (MM-DD hh:mm UTC)",
                )
            )
        ax.legend(
            handles=handles,
            loc="upper center",
            bbox_to_anchor=(0.5, 0.0),
            bbox_transform=offset_copy(ax.transAxes, fig=fig, y=-34, units="points"),
            ncol=min(3, len(handles)),
            fontsize=8.5,
            frameon=False,
        )
    else:
        ax.text(
            0.5,
            0.5,
            "no crossover events",
            transform=ax.transAxes,
            ha="center",
            va="center",
            fontsize=14,
            bbox={"facecolor": "white", "edgecolor": "#888888", "boxstyle": "round,pad=0.5"},
            zorder=6,
        )
    ax.set_title(title if title is not None else _default_title(events, pairs), fontsize=11)

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight", pad_inches=0.15)
    atomic_write_bytes(path, buf.getvalue())
