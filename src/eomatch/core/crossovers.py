"""The crossover engine.

Definition (docs/crossovers.md): a second ``tA`` of satellite A in ``[start, end)`` is *matched*
when some second ``tB`` of satellite B has ``|tA - tB| <= T`` and the great-circle distance between
their sub-satellite points is ``<= D``. Runs of matched seconds closer than ``merge_gap_s`` form one
event; runs longer than ``max_event_duration_s`` are cut into consecutive events.

Search: both orbits are sampled on a coarse grid aligned to absolute multiples of the step ``h``.
Every 1 s instant lies within ``h/2`` of a coarse sample, so a matched pair of instants has coarse
samples within ``T + h`` in time and ``D + (vA + vB) h / 2`` in distance (v: the largest ground
speed). One k-d tree radius query over (x, y, z, c·t) finds every such coarse pair; only their
cells are then propagated at 1 s and compared exhaustively. Nothing shorter than ``h`` is missed
because the padding is a proven bound, not a heuristic.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

import numpy as np
import numpy.typing as npt
from scipy.spatial import cKDTree

from eomatch.core.geodesy import (
    EARTH_RADIUS_KM,
    chord_km,
    cos_of_distance,
    haversine_km,
    in_bbox,
    midpoint,
)
from eomatch.core.propagation import Track
from eomatch.core.sun import solar_elevation_deg

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]

MERGE_GAP_S = 60
SPEED_MARGIN = 1.05
"""Safety factor on the measured ground speed used to pad the coarse search."""
MAX_BLOCK_ELEMENTS = 4_000_000
"""Cap on fine comparisons held in memory at once (bounds peak memory)."""


class Orbit(Protocol):
    """Something that can say where a satellite's sub-satellite point is."""

    name: str

    def track(self, times: IntArray) -> Track:
        """Sub-satellite points at Unix-second ``times``."""
        ...


@dataclass(frozen=True)
class CrossoverParams:
    """Thresholds and filters of a crossover search."""

    max_distance_km: float = 100.0
    """D: largest sub-satellite point distance."""
    max_time_diff_s: int = 1800
    """T: largest time difference between the two satellites."""
    max_event_duration_s: int = 900
    """Runs longer than this are split into consecutive events."""
    merge_gap_s: int = MERGE_GAP_S
    """Matched instants closer than this belong to one run."""
    coarse_step_s: int = 30
    """Coarse grid step; affects speed only, never the result."""
    bbox: tuple[float, float, float, float] | None = None
    """(west, south, east, north) the closest approach must lie in; west > east wraps."""
    daylight_only: bool = False
    """Keep events whose closest approach has the Sun above the horizon."""
    max_lat_abs: float | None = None
    """Drop events whose closest approach lies poleward of this latitude."""

    def __post_init__(self) -> None:
        if not self.max_distance_km > 0 or not math.isfinite(self.max_distance_km):
            raise ValueError(
                f"max distance must be a positive number of km, got {self.max_distance_km}"
            )
        if self.max_time_diff_s < 0:
            raise ValueError(f"max time difference must be >= 0 s, got {self.max_time_diff_s}")
        if self.max_event_duration_s < 1:
            raise ValueError(f"max event duration must be >= 1 s, got {self.max_event_duration_s}")
        if self.merge_gap_s < 1:
            raise ValueError(f"merge gap must be >= 1 s, got {self.merge_gap_s}")
        if self.coarse_step_s < 1:
            raise ValueError(f"coarse step must be >= 1 s, got {self.coarse_step_s}")
        if self.max_lat_abs is not None and not 0 <= self.max_lat_abs <= 90:
            raise ValueError(f"max |latitude| must be within 0..90, got {self.max_lat_abs}")
        if self.bbox is not None:
            w, s, e, n = self.bbox
            if not (-180 <= w <= 180 and -180 <= e <= 180 and -90 <= s <= n <= 90):
                raise ValueError(
                    f"bbox must be west south east north with -180..180 / -90..90 and "
                    f"south <= north, got {list(self.bbox)}"
                )


@dataclass(frozen=True)
class Crossover:
    """One crossover event, reported at its closest approach."""

    platform_a: str
    platform_b: str
    time_a: datetime
    time_b: datetime
    dt_s: int
    """time_b - time_a in seconds."""
    distance_km: float
    lat_a: float
    lon_a: float
    lat_b: float
    lon_b: float
    start_a: datetime
    """First matched instant of A in this event."""
    end_a: datetime
    """Last matched instant of A in this event."""

    FIELDS = (
        "platform_a", "platform_b", "time_a", "time_b", "dt_s", "distance_km",
        "lat_a", "lon_a", "lat_b", "lon_b", "start_a", "end_a",
    )  # fmt: skip

    def as_record(self) -> dict[str, str | int | float]:
        """Plain values in field order; times as ISO 8601 UTC at 1 s."""
        out: dict[str, str | int | float] = {}
        for name in self.FIELDS:
            value = getattr(self, name)
            if isinstance(value, datetime):
                out[name] = iso(value)
            elif isinstance(value, float):
                out[name] = round(value, 6)
            else:
                out[name] = value
        return out


def iso(value: datetime) -> str:
    """ISO 8601 UTC with a ``Z`` and whole seconds."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _dt(ts: int) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


@dataclass
class MatchedSeconds:
    """Every matched second of A with its best partner second of B (sorted by ``t_a``)."""

    t_a: IntArray
    t_b: IntArray
    dot: FloatArray
    """Cosine of the central angle between the two points (larger is closer)."""

    @classmethod
    def empty(cls) -> MatchedSeconds:
        """No matched seconds."""
        return cls(np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0))

    @classmethod
    def concat(cls, parts: list[MatchedSeconds]) -> MatchedSeconds:
        """Join parts from consecutive, non-overlapping windows."""
        if not parts:
            return cls.empty()
        return cls(
            np.concatenate([p.t_a for p in parts]),
            np.concatenate([p.t_b for p in parts]),
            np.concatenate([p.dot for p in parts]),
        )


@dataclass
class CoarseTrack:
    """An orbit sampled on the absolute grid ``k * step`` for ``k`` in ``[k0, k0 + n)``."""

    step: int
    k0: int
    points: FloatArray
    """(n, 3) unit vectors; NaN where propagation failed."""

    @property
    def times(self) -> IntArray:
        """Unix seconds of the samples."""
        return (np.arange(self.k0, self.k0 + len(self.points), dtype=np.int64)) * self.step

    def slice(self, k_lo: int, k_hi: int) -> tuple[IntArray, FloatArray]:
        """Samples with ``k_lo <= k <= k_hi`` (which must be held)."""
        a, b = k_lo - self.k0, k_hi - self.k0 + 1
        if a < 0 or b > len(self.points):
            raise IndexError("coarse track does not cover the requested range")
        return np.arange(k_lo, k_hi + 1, dtype=np.int64) * self.step, self.points[a:b]

    def max_speed_km_s(self) -> float:
        """Largest ground speed between consecutive samples, km/s."""
        p = self.points
        if len(p) < 2:
            return 8.0
        dots = np.einsum("ij,ij->i", p[1:], p[:-1])
        ang = np.arccos(np.clip(dots[np.isfinite(dots)], -1.0, 1.0))
        if len(ang) == 0:
            return 8.0
        return float(ang.max()) * EARTH_RADIUS_KM / self.step


def coarse_track(orbit: Orbit, step: int, t_lo: int, t_hi: int) -> CoarseTrack:
    """Sample ``orbit`` on the grid cells covering instants ``t_lo..t_hi`` (inclusive)."""
    k_lo = (t_lo + step // 2) // step
    k_hi = (t_hi + step // 2) // step
    times = np.arange(k_lo, k_hi + 1, dtype=np.int64) * step
    return CoarseTrack(step=step, k0=k_lo, points=orbit.track(times).unit_vectors())


@dataclass
class _Cells:
    """Fine (1 s) samples of a set of coarse cells."""

    times: IntArray  # (n_cells, h)
    points: FloatArray  # (n_cells, h, 3)
    valid: npt.NDArray[np.bool_]  # (n_cells, h)


def _fine_cells(orbit: Orbit, centres: IntArray, step: int, t_lo: int, t_hi: int) -> _Cells:
    offs = np.arange(step, dtype=np.int64) - step // 2
    times = centres[:, None] + offs[None, :]
    flat = times.ravel()
    track = orbit.track(flat)
    pts = track.unit_vectors().reshape(len(centres), step, 3)
    valid = (times >= t_lo) & (times <= t_hi) & np.isfinite(pts[..., 0])
    return _Cells(times=times, points=pts, valid=valid)


def matched_seconds(
    a: Orbit,
    b: Orbit,
    start: int,
    end: int,
    params: CrossoverParams,
    coarse_a: CoarseTrack | None = None,
    coarse_b: CoarseTrack | None = None,
) -> MatchedSeconds:
    """All matched seconds of A in ``[start, end)`` with their closest B partner.

    ``coarse_a``/``coarse_b`` may be precomputed (shared across pairs); they must use
    ``params.coarse_step_s`` and cover the window (B: padded by T on both sides).
    """
    if end <= start:
        return MatchedSeconds.empty()
    h = params.coarse_step_s
    t_max = int(params.max_time_diff_s)
    a_lo, a_hi = start, end - 1
    b_lo, b_hi = start - t_max, end - 1 + t_max
    if coarse_a is None:
        coarse_a = coarse_track(a, h, a_lo, a_hi)
    if coarse_b is None:
        coarse_b = coarse_track(b, h, b_lo, b_hi)
    ta, pa = coarse_a.slice((a_lo + h // 2) // h, (a_hi + h // 2) // h)
    tb, pb = coarse_b.slice((b_lo + h // 2) // h, (b_hi + h // 2) // h)

    pad = (coarse_a.max_speed_km_s() + coarse_b.max_speed_km_s()) * h / 2.0 * SPEED_MARGIN + 0.5
    reach = params.max_distance_km + pad
    chord = chord_km(reach)
    c = chord / (t_max + h)
    ok_a = np.isfinite(pa[:, 0])
    ok_b = np.isfinite(pb[:, 0])
    ia_map = np.flatnonzero(ok_a)
    ib_map = np.flatnonzero(ok_b)
    if len(ia_map) == 0 or len(ib_map) == 0:
        return MatchedSeconds.empty()
    xa = np.column_stack([pa[ok_a] * EARTH_RADIUS_KM, (ta[ok_a] - start) * c])
    xb = np.column_stack([pb[ok_b] * EARTH_RADIUS_KM, (tb[ok_b] - start) * c])
    tree_a = cKDTree(xa)
    tree_b = cKDTree(xb)
    pairs = tree_a.sparse_distance_matrix(
        tree_b, math.sqrt(2.0) * chord * 1.000001, output_type="ndarray"
    )
    ia = ia_map[pairs["i"]]
    ib = ib_map[pairs["j"]]
    keep = (np.abs(ta[ia] - tb[ib]) <= t_max + h) & (
        np.einsum("ij,ij->i", pa[ia], pb[ib]) >= cos_of_distance(reach)
    )
    ia, ib = ia[keep], ib[keep]
    if len(ia) == 0:
        return MatchedSeconds.empty()

    ua, inv_a = np.unique(ia, return_inverse=True)
    ub, inv_b = np.unique(ib, return_inverse=True)
    cells_a = _fine_cells(a, ta[ua], h, a_lo, a_hi)
    cells_b = _fine_cells(b, tb[ub], h, b_lo, b_hi)
    cos_d = cos_of_distance(params.max_distance_km)

    out_ta: list[IntArray] = []
    out_tb: list[IntArray] = []
    out_dot: list[FloatArray] = []
    chunk = max(1, MAX_BLOCK_ELEMENTS // (h * h))
    for s in range(0, len(ia), chunk):
        ka = inv_a[s : s + chunk]
        kb = inv_b[s : s + chunk]
        dots = np.matmul(cells_a.points[ka], cells_b.points[kb].transpose(0, 2, 1))
        dtime = cells_a.times[ka][:, :, None] - cells_b.times[kb][:, None, :]
        ok = (
            (dots >= cos_d)
            & (np.abs(dtime) <= t_max)
            & cells_a.valid[ka][:, :, None]
            & cells_b.valid[kb][:, None, :]
        )
        dots = np.where(ok, dots, -2.0)
        best = dots.argmax(axis=2)
        best_dot = np.take_along_axis(dots, best[:, :, None], axis=2)[:, :, 0]
        hit = best_dot > -2.0
        if not hit.any():
            continue
        rows, cols = np.nonzero(hit)
        out_ta.append(cells_a.times[ka][rows, cols])
        out_tb.append(cells_b.times[kb][rows, best[rows, cols]])
        out_dot.append(best_dot[rows, cols])
    if not out_ta:
        return MatchedSeconds.empty()
    t_a = np.concatenate(out_ta)
    t_b = np.concatenate(out_tb)
    dot = np.concatenate(out_dot)
    # One row per second of A: the closest partner (earliest t_b on exact ties).
    order = np.lexsort((t_b, -dot, t_a))
    t_a, t_b, dot = t_a[order], t_b[order], dot[order]
    first = np.concatenate(([True], t_a[1:] != t_a[:-1]))
    return MatchedSeconds(t_a[first], t_b[first], dot[first])


def event_slices(t_a: IntArray, merge_gap_s: int, max_duration_s: int) -> list[tuple[int, int]]:
    """Index ranges ``[i, j)`` of ``t_a`` (sorted) forming events."""
    if len(t_a) == 0:
        return []
    breaks = np.flatnonzero(np.diff(t_a) >= merge_gap_s) + 1
    starts = np.concatenate(([0], breaks))
    stops = np.concatenate((breaks, [len(t_a)]))
    out: list[tuple[int, int]] = []
    for i, j in zip(starts.tolist(), stops.tolist(), strict=True):
        first = int(t_a[i])
        if int(t_a[j - 1]) - first <= max_duration_s:
            out.append((i, j))
            continue
        piece = (t_a[i:j] - first) // max_duration_s
        cuts = np.flatnonzero(np.diff(piece)) + 1 + i
        edges = [i, *cuts.tolist(), j]
        out.extend(itertools.pairwise(edges))
    return out


def build_events(
    a: Orbit, b: Orbit, matched: MatchedSeconds, params: CrossoverParams
) -> list[Crossover]:
    """Turn matched seconds into reported, filtered events."""
    slices = event_slices(matched.t_a, params.merge_gap_s, params.max_event_duration_s)
    if not slices:
        return []
    best = np.array([i + int(np.argmax(matched.dot[i:j])) for i, j in slices], dtype=np.intp)
    tca = matched.t_a[best]
    tcb = matched.t_b[best]
    pa = a.track(tca)
    pb = b.track(tcb)
    dist = haversine_km(pa.lat, pa.lon, pb.lat, pb.lon)
    keep = np.isfinite(dist)
    mlat, mlon = midpoint(pa.lat, pa.lon, pb.lat, pb.lon)
    if params.bbox is not None:
        keep &= in_bbox(mlat, mlon, params.bbox)
    if params.max_lat_abs is not None:
        keep &= np.abs(mlat) <= params.max_lat_abs
    if params.daylight_only:
        mid_t = (tca + tcb).astype(np.float64) / 2.0
        keep &= solar_elevation_deg(mid_t, mlat, mlon) > 0.0
    out: list[Crossover] = []
    for n, (i, j) in enumerate(slices):
        if not keep[n]:
            continue
        out.append(
            Crossover(
                platform_a=a.name,
                platform_b=b.name,
                time_a=_dt(int(tca[n])),
                time_b=_dt(int(tcb[n])),
                dt_s=int(tcb[n] - tca[n]),
                distance_km=float(dist[n]),
                lat_a=float(pa.lat[n]),
                lon_a=float(pa.lon[n]),
                lat_b=float(pb.lat[n]),
                lon_b=float(pb.lon[n]),
                start_a=_dt(int(matched.t_a[i])),
                end_a=_dt(int(matched.t_a[j - 1])),
            )
        )
    return out


ProgressFn = Callable[[int], None]


@dataclass
class PairSearch:
    """Search one ordered pair over a window, in chunks (bounded memory, visible progress)."""

    a: Orbit
    b: Orbit
    params: CrossoverParams = field(default_factory=CrossoverParams)
    chunk_s: int = 30 * 86400

    def chunks(self, start: int, end: int) -> list[tuple[int, int]]:
        """Consecutive sub-windows of at most ``chunk_s``."""
        edges = [*list(range(start, end, self.chunk_s)), end]
        return list(itertools.pairwise(edges))

    def run(
        self,
        start: int,
        end: int,
        coarse_a: CoarseTrack | None = None,
        coarse_b: CoarseTrack | None = None,
        progress: ProgressFn | None = None,
    ) -> list[Crossover]:
        """Events of this pair in ``[start, end)`` (Unix seconds)."""
        parts = []
        for lo, hi in self.chunks(start, end):
            parts.append(matched_seconds(self.a, self.b, lo, hi, self.params, coarse_a, coarse_b))
            if progress is not None:
                progress(hi - lo)
        return build_events(self.a, self.b, MatchedSeconds.concat(parts), self.params)
