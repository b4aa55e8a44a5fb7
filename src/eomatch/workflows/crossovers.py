"""``find_crossovers``: platforms and a window in, crossover records out."""

from __future__ import annotations

import itertools
import math
import os
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from eomatch.config.models import EomatchConfig
from eomatch.config.settings import Settings
from eomatch.core.crossovers import (
    Crossover,
    CrossoverParams,
    EventBuilder,
    MatchedSeconds,
    SampledOrbit,
    matched_seconds,
    window_chunks,
)
from eomatch.core.propagation import TleOrbit
from eomatch.core.satellites import Satellite, UnknownSatelliteError
from eomatch.core.tle import CoverageError
from eomatch.core.vocabulary import BBox
from eomatch.errors import EomatchError
from eomatch.timeparse import TimeLike, parse_time
from eomatch.wiring import build_registry, build_store


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
"""Work unit: every pair over (at most) ten days (bounded memory, parallel tasks, progress)."""
MIN_CHUNK_S = 3600
SAMPLES_PER_CHUNK = 2_000_000
"""Most coarse samples per satellite and chunk, the padding by T included (48 MB each)."""


def chunk_seconds(params: CrossoverParams, span_s: int = CHUNK_S, workers: int = 1) -> int:
    """Chunk length: :data:`CHUNK_S`, shorter if the samples would pass their budget, or to
    give every worker two chunks of a short window (a chunk searches all pairs).

    The engine bounds its own working memory inside a chunk; this bounds the orbit samples
    (every pair of a chunk shares the samples of its satellites).
    """
    room = SAMPLES_PER_CHUNK * params.coarse_step_s - 2 * params.max_time_diff_s
    balanced = -(-span_s // (2 * workers))
    return max(MIN_CHUNK_S, min(CHUNK_S, room, balanced))


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
    names = [s.short_name for s in sats]
    h = params.coarse_step_s

    def search(c_lo: int, c_hi: int) -> dict[tuple[str, str], MatchedSeconds]:
        # Each satellite sampled once per chunk (padded by T) serves both of its roles in
        # every pair; memory is the chunk's, not the window's.
        sampled = {
            n: SampledOrbit.build(orbits[n], h, c_lo - t_max, c_hi - 1 + t_max) for n in names
        }
        return {
            (a.short_name, b.short_name): matched_seconds(
                sampled[a.short_name], sampled[b.short_name], c_lo, c_hi, params
            )
            for a, b in pairs
        }

    builders = {
        (a.short_name, b.short_name): EventBuilder(
            orbits[a.short_name], orbits[b.short_name], params
        )
        for a, b in pairs
    }
    n_workers = max(1, workers or default_workers())
    span = window.end - window.start
    chunks = window_chunks(window.start, window.end, chunk_seconds(params, span, n_workers))
    total = (window.end - window.start) * len(pairs)
    with ThreadPoolExecutor(max_workers=n_workers) as pool:
        # Chunks are consumed in order (events are built as they come); at most a few are in
        # flight, so memory stays that of a few chunks whatever the window's length.
        queue: deque[tuple[int, int, Future[dict[tuple[str, str], MatchedSeconds]]]] = deque()
        todo = iter(chunks)
        done = 0
        while True:
            while len(queue) < 2 * n_workers:
                nxt = next(todo, None)
                if nxt is None:
                    break
                queue.append((nxt[0], nxt[1], pool.submit(search, *nxt)))
            if not queue:
                break
            c_lo, c_hi, fut = queue.popleft()
            try:
                found = fut.result()
            except BaseException:
                for _, _, f in queue:
                    f.cancel()
                raise
            for key, part in found.items():
                builders[key].feed(part)
            done += (c_hi - c_lo) * len(pairs)
            if progress is not None:
                progress(done, total)

    events: list[Crossover] = []
    for builder in builders.values():
        events.extend(builder.finish())
    events.sort(key=lambda e: (e.time_a, e.platform_a, e.platform_b))
    return events
