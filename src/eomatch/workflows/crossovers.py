"""``find_crossovers``: platforms and a window in, crossover records out."""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

from eomatch.config.models import EomatchConfig
from eomatch.config.settings import Settings
from eomatch.core.crossovers import (
    Crossover,
    CrossoverParams,
    MatchedSeconds,
    SampledOrbit,
    build_events,
    matched_seconds,
    window_chunks,
)
from eomatch.core.propagation import TleOrbit
from eomatch.core.satellites import Satellite, SatelliteRegistry, UnknownSatelliteError
from eomatch.core.tle import CoverageError
from eomatch.errors import EomatchError
from eomatch.io.tle_store import TleStore
from eomatch.timeparse import TimeLike, parse_time

BBox = tuple[float, float, float, float]


def build_registry(config: EomatchConfig | None = None) -> SatelliteRegistry:
    """Built-in satellites plus those added in configuration."""
    reg = SatelliteRegistry()
    if config is not None:
        for spec in config.satellites:
            reg.add(spec.to_satellite(config.base_dir))
    return reg


def build_store(
    config: EomatchConfig | None = None,
    tle_dirs: Sequence[Path] = (),
    settings: Settings | None = None,
) -> TleStore:
    """The TLE sources for a run: archive, config and CLI directories, env dirs, update cache."""
    settings = settings or Settings()
    dirs = [*settings.tle_dirs, *(config.resolved_tle_dirs() if config else []), *tle_dirs]
    return TleStore(extra_dirs=[Path(d) for d in dirs], cache_dir=settings.tle_cache_dir)


@dataclass(frozen=True)
class Window:
    """A validated half-open UTC window in whole Unix seconds."""

    start: int
    end: int

    @classmethod
    def parse(cls, start: TimeLike, end: TimeLike) -> Window:
        """Parse and check ``start < end``."""
        s = parse_time(start, "start")
        e = parse_time(end, "end")
        if e <= s:
            raise EomatchError(
                f"the window is empty or inverted: start {s:%Y-%m-%dT%H:%M:%SZ} "
                f"is not before end {e:%Y-%m-%dT%H:%M:%SZ}"
            )
        return cls(math.floor(s.timestamp()), math.floor(e.timestamp()))


def canonical_pairs(sats: Sequence[Satellite]) -> list[tuple[Satellite, Satellite]]:
    """Every unordered pair, each ordered by short name (A < B)."""
    ordered = sorted(sats, key=lambda s: s.short_name)
    return list(itertools.combinations(ordered, 2))


CHUNK_S = 10 * 86400
"""Work unit: one pair over ten days (bounded memory, parallel tasks, progress steps)."""


def default_workers() -> int:
    """Threads to use: the CPUs this process may run on (NumPy releases the GIL)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        return os.cpu_count() or 1


def find_crossovers(
    platforms: Sequence[str],
    start: TimeLike,
    end: TimeLike,
    *,
    max_distance_km: float = 100.0,
    max_time_diff_s: int = 1800,
    bbox: BBox | None = None,
    daylight_only: bool = False,
    max_lat_abs: float | None = None,
    max_event_duration_s: int = 900,
    coarse_step_s: int = 30,
    allow_stale: bool = False,
    tle_dirs: Sequence[Path] = (),
    config: EomatchConfig | None = None,
    settings: Settings | None = None,
    progress: Callable[[int, int], None] | None = None,
    workers: int | None = None,
) -> list[Crossover]:
    """Crossover events between every pair of ``platforms`` in ``[start, end)``.

    Args:
        platforms: two or more satellite names (any registered alias).
        start: window start (ISO text, date or datetime; naive means UTC).
        end: window end, exclusive.
        max_distance_km: D, the largest sub-satellite point distance.
        max_time_diff_s: T, the largest time difference.
        bbox: (west, south, east, north) containing the closest approach.
        daylight_only: keep only events with the Sun up at the closest approach.
        max_lat_abs: drop events poleward of this latitude.
        max_event_duration_s: split runs longer than this.
        coarse_step_s: search step (speed only; the result does not depend on it).
        allow_stale: permit windows far outside the element sets' coverage.
        tle_dirs: extra directories of TLE files.
        config: configuration with user satellites and TLE directories.
        settings: environment settings (defaults read from ``EOMATCH_*``).
        progress: called with (done, total) in seconds of searched window.
        workers: threads to search with (default: the available CPUs).

    Returns:
        Events sorted by (time_a, platform_a, platform_b).

    Raises:
        EomatchError: unknown satellite, bad window or thresholds, bad TLE, no coverage.
    """
    try:
        params = CrossoverParams(
            max_distance_km=float(max_distance_km),
            max_time_diff_s=int(max_time_diff_s),
            max_event_duration_s=int(max_event_duration_s),
            coarse_step_s=int(coarse_step_s),
            bbox=tuple(bbox) if bbox is not None else None,  # type: ignore[arg-type]
            daylight_only=daylight_only,
            max_lat_abs=max_lat_abs,
        )
    except ValueError as exc:
        raise EomatchError(str(exc)) from exc
    window = Window.parse(start, end)
    registry = build_registry(config)
    try:
        sats = registry.resolve(platforms)
    except UnknownSatelliteError as exc:
        raise EomatchError(str(exc.args[0])) from exc
    if len(sats) < 2:
        raise EomatchError("give at least two different satellites")
    store = build_store(config, tle_dirs, settings)

    t_max = params.max_time_diff_s
    lo, hi = window.start - t_max, window.end - 1 + t_max
    orbits: dict[str, TleOrbit] = {}
    for sat in sats:
        archive = store.archive(sat)
        try:
            archive.check_window(lo, hi, allow_stale)
        except CoverageError as exc:
            raise EomatchError(str(exc)) from exc
        orbits[sat.short_name] = TleOrbit(sat.short_name, archive)

    pairs = canonical_pairs(sats)
    h = params.coarse_step_s
    with ThreadPoolExecutor(max_workers=max(1, workers or default_workers())) as pool:
        # Sampling each satellite once serves every pair and chunk (shared, read-only).
        names = [s.short_name for s in sats]
        sampled = dict(
            zip(
                names,
                pool.map(lambda n: SampledOrbit.build(orbits[n], h, lo, hi), names),
                strict=True,
            )
        )
        tasks = [
            (sa.short_name, sb.short_name, c_lo, c_hi)
            for sa, sb in pairs
            for c_lo, c_hi in window_chunks(window.start, window.end, CHUNK_S)
        ]
        futures = {
            pool.submit(matched_seconds, sampled[a], sampled[b], c_lo, c_hi, params): (
                a,
                b,
                c_lo,
                c_hi,
            )
            for a, b, c_lo, c_hi in tasks
        }
        parts: dict[tuple[str, str], list[tuple[int, MatchedSeconds]]] = {}
        total = (window.end - window.start) * len(pairs)
        done = 0
        for fut in as_completed(futures):
            a, b, c_lo, c_hi = futures[fut]
            parts.setdefault((a, b), []).append((c_lo, fut.result()))
            done += c_hi - c_lo
            if progress is not None:
                progress(done, total)

    events: list[Crossover] = []
    for sa, sb in pairs:
        chunks = sorted(parts.get((sa.short_name, sb.short_name), []), key=lambda p: p[0])
        matched = MatchedSeconds.concat([m for _, m in chunks])
        events.extend(build_events(orbits[sa.short_name], orbits[sb.short_name], matched, params))
    events.sort(key=lambda e: (e.time_a, e.platform_a, e.platform_b))
    return events
