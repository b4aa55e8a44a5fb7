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
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

import numpy as np
import numpy.typing as npt

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
from eomatch.core.vocabulary import BBox
from eomatch.errors import InvalidValueError

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]

MERGE_GAP_S = 60
SPEED_MARGIN = 1.05
"""Safety factor on the measured ground speed used to pad the coarse search."""
MAX_BLOCK_ELEMENTS = 4_000_000
"""Cap on fine comparisons held in memory at once (bounds peak memory)."""
COARSE_PAIR_BUDGET = 4_000_000
"""Most coarse candidate pairs produced at once: the window's coarse cells of A are taken in
blocks sized so that even if every B cell within ``T`` were a candidate, a block yields no more."""
PAIR_BUDGET = 1_000_000
"""Most candidate cell pairs a refinement step produces at once (its input is cut to fit)."""

MAX_DISTANCE_KM = 5000.0
"""Largest D accepted. The widest LEO imager swaths (VIIRS 3040 km, MODIS 2330 km) overlap up to
~3000 km between sub-satellite points; beyond 5000 km no two footprints can meet, and the
cost of the search grows with D squared."""
MAX_TIME_DIFF_S = 3 * 86400
"""Largest T accepted (3 days): longer than any cal/val matchup tolerance (minutes to hours for
the atmosphere, days only for stable desert sites); beyond it every second of a LEO pair is
matched and the search cost grows linearly with T for nothing."""
MAX_EVENT_DURATION_S = 86400
"""Largest event length accepted (1 day); it also bounds what the event builder holds between
chunks (see :class:`EventBuilder`)."""
MAX_COARSE_STEP_S = 600
"""Largest coarse step accepted (the step changes speed only; large ones are only slower)."""


class Orbit(Protocol):
    """Something that can say where a satellite's sub-satellite point is."""

    @property
    def name(self) -> str:
        """Short name used in records."""
        ...

    def track(self, times: npt.ArrayLike) -> Track:
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
    bbox: BBox | None = None
    """(west, south, east, north) the closest approach must lie in; west > east wraps."""
    daylight_only: bool = False
    """Keep events whose closest approach has the Sun above the horizon."""
    max_lat_abs: float | None = None
    """Drop events whose closest approach lies poleward of this latitude."""

    def __post_init__(self) -> None:
        if not 0 < self.max_distance_km <= MAX_DISTANCE_KM:  # also refuses NaN
            raise InvalidValueError(
                f"max distance must be a number of km in (0, {MAX_DISTANCE_KM:g}], "
                f"got {self.max_distance_km}"
            )
        if not 0 <= self.max_time_diff_s <= MAX_TIME_DIFF_S:
            raise InvalidValueError(
                f"max time difference must be within 0..{MAX_TIME_DIFF_S} s (3 days), "
                f"got {self.max_time_diff_s}"
            )
        if not 1 <= self.max_event_duration_s <= MAX_EVENT_DURATION_S:
            raise InvalidValueError(
                f"max event duration must be within 1..{MAX_EVENT_DURATION_S} s, "
                f"got {self.max_event_duration_s}"
            )
        if not 1 <= self.merge_gap_s <= MAX_EVENT_DURATION_S:
            raise InvalidValueError(
                f"merge gap must be within 1..{MAX_EVENT_DURATION_S} s, got {self.merge_gap_s}"
            )
        if not 1 <= self.coarse_step_s <= MAX_COARSE_STEP_S:
            raise InvalidValueError(
                f"coarse step must be within 1..{MAX_COARSE_STEP_S} s, got {self.coarse_step_s}"
            )
        if self.max_lat_abs is not None and not 0 <= self.max_lat_abs <= 90:
            raise InvalidValueError(f"max |latitude| must be within 0..90, got {self.max_lat_abs}")
        if self.bbox is not None:
            w, s, e, n = self.bbox
            if not (-180 <= w <= 180 and -180 <= e <= 180 and -90 <= s <= n <= 90):
                raise InvalidValueError(
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

    def __len__(self) -> int:
        return len(self.t_a)

    @classmethod
    def best_of(cls, parts: list[MatchedSeconds]) -> MatchedSeconds:
        """Parts that may share seconds of A, reduced to the closest partner of each second.

        The same rule as the 1 s level: the largest cosine, then the earliest B second on ties.
        """
        if len(parts) == 1:
            return parts[0]
        m = cls.concat(parts)
        if len(m) == 0:
            return m
        order = np.lexsort((m.t_b, -m.dot, m.t_a))
        t_a = m.t_a[order]
        first = np.concatenate(([True], t_a[1:] != t_a[:-1]))
        keep = order[first]
        return cls(m.t_a[keep], m.t_b[keep], m.dot[keep])

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


def step_chain(coarse_step_s: int) -> tuple[int, ...]:
    """Nested refinement steps from the coarse step down to 1 s.

    Each level divides the previous one, by at most 6 where a divisor allows it; a prime step
    goes straight to 1 s.
    """
    chain = [coarse_step_s]
    h = coarse_step_s
    while h > 1:
        small = [d for d in range(1, h) if h % d == 0 and h // d <= 6]
        h = min(small) if small else max(d for d in range(1, h) if h % d == 0)
        chain.append(h)
    return tuple(chain)


INTERPOLATION_TOLERANCE_KM = 0.001
"""Interpolated positions must match SGP4 to 1 m in a self-check, or SGP4 is used throughout."""


@dataclass
class SampledOrbit:
    """An orbit sampled every ``step`` seconds, answering positions at any instant in range.

    Positions between samples come from 4-point Lagrange interpolation of the unit vectors of
    samples that share one element set (measured error ~4 cm at 30 s for LEO). Where the
    stencil spans a change of element set, or the self-check fails, SGP4 is evaluated directly,
    so the nearest-epoch rule holds exactly.
    """

    orbit: Orbit
    step: int
    k0: int
    points: FloatArray
    """(n, 3) unit vectors at ``(k0 + i) * step``; NaN where propagation failed."""
    element_index: npt.NDArray[np.intp]
    """Element set used by each sample (``-1`` if unknown: never interpolate)."""
    interpolate: bool = True

    @classmethod
    def build(cls, orbit: Orbit, step: int, t_lo: int, t_hi: int) -> SampledOrbit:
        """Sample ``orbit`` so that every instant in ``[t_lo, t_hi]`` can be answered."""
        k_lo = t_lo // step - 2
        k_hi = -(-t_hi // step) + 3
        times = np.arange(k_lo, k_hi + 1, dtype=np.int64) * step
        pts = orbit.track(times).unit_vectors()
        archive = getattr(orbit, "archive", None)
        idx = (
            archive.nearest(times)
            if archive is not None
            else np.full(len(times), -1, dtype=np.intp)
        )
        sampled = cls(orbit, step, k_lo, pts, idx, interpolate=archive is not None)
        sampled.interpolate = sampled.interpolate and sampled._self_check()
        return sampled

    def _self_check(self) -> bool:
        n = len(self.points)
        if n < 8:
            return False
        probe = np.linspace(self.k0 + 1.5, self.k0 + n - 2.5, num=min(64, n)) * self.step
        probe = np.floor(probe) + 0.5
        k = np.floor(probe / self.step - self.k0).astype(np.intp)
        probe = probe[self.element_index[k - 1] == self.element_index[k + 2]]
        exact = self.orbit.track(probe).unit_vectors()
        approx = self._lagrange(probe)
        err = np.linalg.norm(exact - approx, axis=1) * EARTH_RADIUS_KM
        err = err[np.isfinite(err)]
        return bool(len(err) == 0 or err.max() <= INTERPOLATION_TOLERANCE_KM)

    def _lagrange(self, t: FloatArray) -> FloatArray:
        x = t / self.step - self.k0
        k = np.floor(x).astype(np.intp)
        s = (x - k)[:, None]
        p = self.points
        w0 = -s * (s - 1) * (s - 2) / 6
        w1 = (s + 1) * (s - 1) * (s - 2) / 2
        w2 = -(s + 1) * s * (s - 2) / 2
        w3 = (s + 1) * s * (s - 1) / 6
        u = w0 * p[k - 1] + w1 * p[k] + w2 * p[k + 1] + w3 * p[k + 2]
        return np.asarray(u / np.linalg.norm(u, axis=1, keepdims=True))

    def at(self, t: FloatArray) -> FloatArray:
        """(m, 3) unit vectors at Unix-second instants ``t`` (which must lie in range)."""
        t = np.asarray(t, dtype=np.float64)
        if not self.interpolate or len(t) == 0:
            return self.orbit.track(t).unit_vectors()
        u = self._lagrange(t)
        k = np.floor(t / self.step - self.k0).astype(np.intp)
        exact = (self.element_index[k - 1] != self.element_index[k + 2]) | ~np.isfinite(u[:, 0])
        if exact.any():
            u[exact] = self.orbit.track(t[exact]).unit_vectors()
        return u

    def max_speed_km_s(self) -> float:
        """Largest ground speed between consecutive samples, km/s."""
        p = self.points
        dots = np.einsum("ij,ij->i", p[1:], p[:-1])
        ang = np.arccos(np.clip(dots[np.isfinite(dots)], -1.0, 1.0))
        if len(ang) == 0:
            return 8.0
        return float(ang.max()) * EARTH_RADIUS_KM / self.step


@dataclass(frozen=True)
class _Level:
    """Acceptance test for cell pairs at one step: proven bounds for any instants inside."""

    step: int
    cos_reach: float
    max_dt: float

    @classmethod
    def at(cls, step: int, params: CrossoverParams, speed_sum: float) -> _Level:
        slack = (step - 1) / 2.0
        pad = speed_sum * slack * SPEED_MARGIN + (0.5 if step > 1 else 0.0)
        return cls(
            step, cos_of_distance(params.max_distance_km + pad), params.max_time_diff_s + 2 * slack
        )


def _cells_in(lo: IntArray, step: int, bounds: tuple[int, int]) -> npt.NDArray[np.bool_]:
    return np.asarray((lo <= bounds[1]) & (lo + step - 1 >= bounds[0]))


def _children(
    parents: IntArray, parent_step: int, step: int, bounds: tuple[int, int]
) -> tuple[IntArray, IntArray, npt.NDArray[np.bool_]]:
    """Child cells of the distinct parents: (child starts, parent → first child, in bounds).

    Parents at one level are disjoint equal cells, so the children of the sorted distinct
    parents are already sorted and distinct; child ``j`` of parent ``p`` is ``first[p] + j``.
    """
    uniq, inverse = np.unique(parents, return_inverse=True)
    r = parent_step // step
    starts = (uniq[:, None] + np.arange(r, dtype=np.int64) * step).ravel()
    return starts, inverse.astype(np.int64) * r, _cells_in(starts, step, bounds)


def _block(
    a: SampledOrbit,
    b: SampledOrbit,
    la: IntArray,
    lb: IntArray,
    parent: int,
    step: int,
    bounds_a: tuple[int, int],
    bounds_b: tuple[int, int],
) -> tuple[IntArray, FloatArray, IntArray, FloatArray, IntArray, IntArray]:
    """Children of each candidate pair, with positions; yields what both refine steps need."""
    ca, first_a, in_a = _children(la, parent, step, bounds_a)
    cb, first_b, in_b = _children(lb, parent, step, bounds_b)
    half = (step - 1) / 2.0
    pa = np.full((len(ca), 3), np.nan)
    pb = np.full((len(cb), 3), np.nan)
    pa[in_a] = a.at((ca[in_a] + half).astype(np.float64))
    pb[in_b] = b.at((cb[in_b] + half).astype(np.float64))
    return ca, pa, cb, pb, first_a, first_b


def _refine(
    a: SampledOrbit,
    b: SampledOrbit,
    la: IntArray,
    lb: IntArray,
    parent: int,
    level: _Level,
    bounds_a: tuple[int, int],
    bounds_b: tuple[int, int],
) -> tuple[IntArray, IntArray]:
    """Split candidate cell pairs (given by start instants) into the child pairs that pass."""
    h = level.step
    r = parent // h
    ca, pa, cb, pb, first_a, first_b = _block(a, b, la, lb, parent, h, bounds_a, bounds_b)
    sub = np.arange(r, dtype=np.int64)
    out_a: list[IntArray] = []
    out_b: list[IntArray] = []
    chunk = max(1, MAX_BLOCK_ELEMENTS // (r * r))
    for s in range(0, len(la), chunk):
        ia = first_a[s : s + chunk, None] + sub
        ib = first_b[s : s + chunk, None] + sub
        dots = np.matmul(pa[ia], pb[ib].transpose(0, 2, 1))
        dt = np.abs(ca[ia][:, :, None] - cb[ib][:, None, :])
        keep = (dots >= level.cos_reach) & (dt <= level.max_dt)
        n_idx, ra, rb = np.nonzero(keep)
        out_a.append(ca[ia[n_idx, ra]])
        out_b.append(cb[ib[n_idx, rb]])
    return np.concatenate(out_a), np.concatenate(out_b)


def _finest(
    a: SampledOrbit,
    b: SampledOrbit,
    la: IntArray,
    lb: IntArray,
    parent: int,
    params: CrossoverParams,
    bounds_a: tuple[int, int],
    bounds_b: tuple[int, int],
) -> MatchedSeconds:
    """The 1 s level: exact test, reduced to the closest partner of each second of A."""
    r = parent
    ca, pa, cb, pb, first_a, first_b = _block(a, b, la, lb, parent, 1, bounds_a, bounds_b)
    cos_d = cos_of_distance(params.max_distance_km)
    t_max = params.max_time_diff_s
    sub = np.arange(r, dtype=np.int64)
    rows_l: list[IntArray] = []
    dots_l: list[FloatArray] = []
    tb_l: list[IntArray] = []
    chunk = max(1, MAX_BLOCK_ELEMENTS // (r * r))
    for s in range(0, len(la), chunk):
        ia = first_a[s : s + chunk, None] + sub
        ib = first_b[s : s + chunk, None] + sub
        dots = np.matmul(pa[ia], pb[ib].transpose(0, 2, 1))
        reject = dots < cos_d  # NaN (failed propagation) compares False: reject it too
        reject |= np.isnan(dots)
        # Only blocks straddling |dt| = T need the per-second time test.
        edge = np.flatnonzero(np.abs(la[s : s + chunk] - lb[s : s + chunk]) > t_max - (r - 1))
        if len(edge):
            dt = ca[ia[edge]][:, :, None] - cb[ib[edge]][:, None, :]
            reject[edge] |= np.abs(dt) > t_max
        np.putmask(dots, reject, -2.0)
        j = dots.argmax(axis=2)
        d = np.take_along_axis(dots, j[:, :, None], axis=2)[:, :, 0]
        hit = d > -2.0
        rows_l.append(ia[hit])
        dots_l.append(d[hit])
        tb_l.append(cb[np.take_along_axis(ib, j, axis=1)[hit]])
    rows = np.concatenate(rows_l)
    if len(rows) == 0:
        return MatchedSeconds.empty()
    d = np.concatenate(dots_l)
    tb = np.concatenate(tb_l)
    best = np.full(len(ca), -2.0)
    np.maximum.at(best, rows, d)
    # The closest partner of each second; the earliest one on exact ties (deterministic).
    partner = np.full(len(ca), np.iinfo(np.int64).max, dtype=np.int64)
    win = d == best[rows]
    np.minimum.at(partner, rows[win], tb[win])
    idx = np.flatnonzero(best > -2.0)
    return MatchedSeconds(ca[idx], partner[idx], best[idx])


BANDED_MAX_OFFSETS = 600
"""Up to this many time offsets the coarse stage scans the band directly; beyond, a k-d tree."""


def _coarse_pairs(
    ka: IntArray,
    pa: FloatArray,
    kb: IntArray,
    pb: FloatArray,
    h: int,
    cos_reach: float,
    chord: float,
    max_dt: int,
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]:
    """Index pairs of coarse samples within ``max_dt`` in time and the reach in distance.

    Both grids are the same absolute grid, so time offsets are whole cells: a band of
    ``2m + 1`` offsets is scanned directly. For a wide band (large T), a 4-D k-d tree over
    (x, y, z, c*t) finds a superset, filtered to the same exact condition.
    """
    m = max_dt // h
    if 2 * m + 1 <= BANDED_MAX_OFFSETS:
        shift = int(ka[0] - kb[0])
        out_a: list[npt.NDArray[np.intp]] = []
        out_b: list[npt.NDArray[np.intp]] = []
        for o in range(-m, m + 1):
            lo = max(0, -(shift + o))
            hi = min(len(ka), len(kb) - (shift + o))
            if hi <= lo:
                continue
            dots = np.einsum("ij,ij->i", pa[lo:hi], pb[lo + shift + o : hi + shift + o])
            i = np.flatnonzero(dots >= cos_reach) + lo
            out_a.append(i)
            out_b.append(i + shift + o)
        if not out_a:
            return np.empty(0, np.intp), np.empty(0, np.intp)
        return np.concatenate(out_a), np.concatenate(out_b)
    ok_a = np.flatnonzero(np.isfinite(pa[:, 0]))
    ok_b = np.flatnonzero(np.isfinite(pb[:, 0]))
    if len(ok_a) == 0 or len(ok_b) == 0:
        return np.empty(0, np.intp), np.empty(0, np.intp)
    c = chord / max(max_dt, 1)
    t0 = ka[0] * h
    xa = np.column_stack([pa[ok_a] * EARTH_RADIUS_KM, (ka[ok_a] * h - t0) * c])
    xb = np.column_stack([pb[ok_b] * EARTH_RADIUS_KM, (kb[ok_b] * h - t0) * c])
    # imported here: scipy.spatial is ~0.5 s of start-up that every command reading the
    # configuration (which names this module's limits) paid, the finder alone needs it
    from scipy.spatial import cKDTree

    pairs = cKDTree(xa).sparse_distance_matrix(
        cKDTree(xb), math.sqrt(2.0) * chord * 1.000001, output_type="ndarray"
    )
    ia = ok_a[pairs["i"]]
    ib = ok_b[pairs["j"]]
    keep = (np.abs(ka[ia] - kb[ib]) * h <= max_dt) & (
        np.einsum("ij,ij->i", pa[ia], pb[ib]) >= cos_reach
    )
    return ia[keep], ib[keep]


def matched_seconds(
    a: Orbit | SampledOrbit,
    b: Orbit | SampledOrbit,
    start: int,
    end: int,
    params: CrossoverParams,
) -> MatchedSeconds:
    """All matched seconds of A in ``[start, end)`` with their closest B partner.

    ``a``/``b`` may be :class:`SampledOrbit` objects built once and shared across pairs and
    chunks; they must use ``params.coarse_step_s`` and cover the window (B padded by T).
    """
    if end <= start:
        return MatchedSeconds.empty()
    chain = step_chain(params.coarse_step_s)
    h = chain[0]
    t_max = int(params.max_time_diff_s)
    bounds_a = (start, end - 1)
    bounds_b = (start - t_max, end - 1 + t_max)
    sa = a if isinstance(a, SampledOrbit) else SampledOrbit.build(a, h, *bounds_a)
    sb = b if isinstance(b, SampledOrbit) else SampledOrbit.build(b, h, *bounds_b)
    if sa.step != h or sb.step != h:
        raise InvalidValueError("sampled orbits must use the coarse step of the parameters")
    speed_sum = sa.max_speed_km_s() + sb.max_speed_km_s()

    # Coarse cells: [k*h - h//2, k*h - h//2 + h), represented by the sample at k*h.
    def cells(bounds: tuple[int, int], orbit: SampledOrbit) -> tuple[IntArray, FloatArray]:
        k = np.arange((bounds[0] + h // 2) // h, (bounds[1] + h // 2) // h + 1, dtype=np.int64)
        return k, orbit.points[k - orbit.k0]

    ka, pa = cells(bounds_a, sa)
    kb, pb = cells(bounds_b, sb)
    slack = h // 2  # largest offset of an instant from its cell's sample
    reach = params.max_distance_km + speed_sum * slack * SPEED_MARGIN + 0.5
    max_dt = t_max + 2 * slack
    cos_reach, chord = cos_of_distance(reach), chord_km(reach)
    if h == 1:  # the coarse cells are already seconds: one exact 1x1 "refinement"
        chain = (1, 1)
    # Blocks of A's coarse cells, each yielding at most COARSE_PAIR_BUDGET candidate pairs even
    # if every B cell within max_dt were one (the k-d tree's superset reaches sqrt(2) max_dt).
    m = max_dt // h
    block = max(1, COARSE_PAIR_BUDGET // (3 * m + 2))
    parts: list[MatchedSeconds] = []
    for s in range(0, len(ka), block):
        sub_a = slice(s, min(s + block, len(ka)))
        b_lo = max(0, int(ka[sub_a.start] - kb[0]) - 2 * m - 1)
        b_hi = min(len(kb), int(ka[sub_a.stop - 1] - kb[0]) + 2 * m + 2)
        if b_hi <= b_lo:
            continue
        ia, ib = _coarse_pairs(
            ka[sub_a], pa[sub_a], kb[b_lo:b_hi], pb[b_lo:b_hi], h, cos_reach, chord, max_dt
        )
        if len(ia) == 0:
            continue
        la = ka[sub_a][ia] * h - h // 2  # cell start instants
        lb = kb[b_lo:b_hi][ib] * h - h // 2
        found = _descend(sa, sb, la, lb, chain, 0, params, speed_sum, bounds_a, bounds_b)
        if found:
            parts.append(MatchedSeconds.best_of(found))
    return MatchedSeconds.concat(parts)  # blocks are disjoint and ordered in t_a


def _descend(
    a: SampledOrbit,
    b: SampledOrbit,
    la: IntArray,
    lb: IntArray,
    chain: tuple[int, ...],
    level: int,
    params: CrossoverParams,
    speed_sum: float,
    bounds_a: tuple[int, int],
    bounds_b: tuple[int, int],
) -> list[MatchedSeconds]:
    """Refine candidate pairs at ``chain[level]`` down to matched seconds, depth first.

    Each refinement multiplies the pairs by up to ``r**2``, so its input is cut into batches
    whose output fits :data:`PAIR_BUDGET`; parts are reduced as they accumulate, keeping memory
    bounded whatever the thresholds (a batch's result is the same as the whole's).
    """
    parent = chain[level]
    last = level == len(chain) - 2
    r = parent // chain[level + 1]
    # the 1 s level holds r seconds per side and pair; a refinement r**2 child pairs
    batch = max(1, PAIR_BUDGET // (r if last else r * r))
    out: list[MatchedSeconds] = []
    held = 0
    for s in range(0, len(la), batch):
        sa, sb = la[s : s + batch], lb[s : s + batch]
        if last:
            found = [_finest(a, b, sa, sb, parent, params, bounds_a, bounds_b)]
        else:
            step = _Level.at(chain[level + 1], params, speed_sum)
            ca, cb = _refine(a, b, sa, sb, parent, step, bounds_a, bounds_b)
            if len(ca) == 0:
                continue
            found = _descend(a, b, ca, cb, chain, level + 1, params, speed_sum, bounds_a, bounds_b)
        for part in found:
            if len(part):
                out.append(part)
                held += len(part)
        if held > PAIR_BUDGET and len(out) > 1:
            out = [MatchedSeconds.best_of(out)]
            held = len(out[0])
    return out


def event_slices(t_a: IntArray, merge_gap_s: int, max_duration_s: int) -> list[tuple[int, int]]:
    """Index ranges ``[i, j)`` of ``t_a`` (sorted) forming events."""
    return [(i, j) for i, j, _ in _slices(t_a, merge_gap_s, max_duration_s, None)]


def _slices(
    t_a: IntArray, merge_gap_s: int, max_duration_s: int, origin: int | None
) -> list[tuple[int, int, int]]:
    """Event ranges ``[i, j)`` with the first second of the run each belongs to.

    A run longer than ``max_duration_s`` is cut at whole multiples of it from the run's first
    second; ``origin`` gives that second for the first run when it began in an earlier chunk.
    """
    if len(t_a) == 0:
        return []
    breaks = np.flatnonzero(np.diff(t_a) >= merge_gap_s) + 1
    starts = np.concatenate(([0], breaks))
    stops = np.concatenate((breaks, [len(t_a)]))
    out: list[tuple[int, int, int]] = []
    for i, j in zip(starts.tolist(), stops.tolist(), strict=True):
        first = int(t_a[i]) if origin is None or i > 0 else origin
        if int(t_a[j - 1]) - first <= max_duration_s:
            out.append((i, j, first))
            continue
        piece = (t_a[i:j] - first) // max_duration_s
        cuts = np.flatnonzero(np.diff(piece)) + 1 + i
        edges = [i, *cuts.tolist(), j]
        out.extend((x, y, first) for x, y in itertools.pairwise(edges))
    return out


class EventBuilder:
    """Events of one pair from matched seconds fed chunk by chunk, in time order.

    Only the last event range can still grow (the next chunk may continue its run), so it is
    held back with its run's first second; the rest become events at once. What is held is at
    most one event (:data:`MAX_EVENT_DURATION_S`), so memory does not grow with the window, and
    the events equal those of the whole window at once (chunk edges neither lose nor repeat).
    """

    def __init__(self, a: Orbit, b: Orbit, params: CrossoverParams) -> None:
        self.a, self.b, self.params = a, b, params
        self.events: list[Crossover] = []
        self._held = MatchedSeconds.empty()
        self._origin: int | None = None

    def feed(self, part: MatchedSeconds) -> None:
        """Add the matched seconds of the next chunk (later than everything fed so far)."""
        m = MatchedSeconds.concat([self._held, part]) if len(self._held) else part
        slices = _slices(
            m.t_a, self.params.merge_gap_s, self.params.max_event_duration_s, self._origin
        )
        if not slices:
            return
        i, _, origin = slices[-1]
        self.events.extend(build_events(self.a, self.b, m, self.params, slices[:-1]))
        self._held = MatchedSeconds(m.t_a[i:].copy(), m.t_b[i:].copy(), m.dot[i:].copy())
        self._origin = origin

    def finish(self) -> list[Crossover]:
        """Every event, the held one included."""
        if len(self._held):
            origin = int(self._held.t_a[0]) if self._origin is None else self._origin
            slices = [(0, len(self._held), origin)]
            self.events.extend(build_events(self.a, self.b, self._held, self.params, slices))
            self._held = MatchedSeconds.empty()
        return self.events


def build_events(
    a: Orbit,
    b: Orbit,
    matched: MatchedSeconds,
    params: CrossoverParams,
    ranges: list[tuple[int, int, int]] | None = None,
) -> list[Crossover]:
    """Turn matched seconds into reported, filtered events (``ranges``: see :func:`_slices`)."""
    if ranges is None:
        ranges = _slices(matched.t_a, params.merge_gap_s, params.max_event_duration_s, None)
    slices = [(i, j) for i, j, _ in ranges]
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


def window_chunks(start: int, end: int, chunk_s: int) -> list[tuple[int, int]]:
    """Consecutive sub-windows of at most ``chunk_s`` seconds covering ``[start, end)``.

    Matched seconds depend only on the instant of A, so chunks can be searched independently
    (in parallel) and joined before events are formed.
    """
    edges = [*range(start, end, chunk_s), end]
    return list(itertools.pairwise(edges))
