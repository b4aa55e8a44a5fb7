"""The crossover engine against an exhaustive, independently written reference.

The reference (tests/reference_bruteforce.py) parses the TLE files itself, propagates with
skyfield and compares every second of A with every second of B within ``±T``. Each case is
computed once per module (module-scoped, parametrised fixture).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

import reference_bruteforce as rb
from eomatch import Crossover, find_crossovers

TIME_TOL_S = 5
DIST_TOL_KM = 0.5
EDGE_TOL_S = 2
THRESHOLD_TOL_KM = 0.05
POSITION_TOL_KM = 0.1
"""Engine vs skyfield sub-points: UT1 = UTC in the engine, |UT1 - UTC| < 0.11 s in 2022."""


@dataclass(frozen=True)
class Case:
    sat_1: str
    sat_2: str
    start: str
    end: str
    max_distance_km: float
    max_time_diff_s: int
    max_event_duration_s: int = 900
    min_events: int = 1
    """Sanity floor so a case cannot silently degenerate into comparing two empty lists."""
    expect_split: bool = False
    """The case has runs longer than ``max_event_duration_s`` (split into several events)."""
    expect_events: int | None = None
    """Exact number of events, where the case is built to sit on a boundary of the definition."""
    boundary_gaps: tuple[int, ...] = ()
    """Gaps (s) between consecutive matched seconds that the case must contain."""


CASES = [
    pytest.param(
        Case("S2A", "LS9", "2022-05-01", "2022-05-02", 100, 1800, min_events=20),
        id="S2A-LS9-1day-D100-T1800",
        marks=pytest.mark.slow,
    ),
    pytest.param(
        Case("S3A", "S2B", "2022-07-20T00:00:00", "2022-07-20T08:00:00", 300, 600, min_events=5),
        id="S3A-S2B-8h-D300-T600",
    ),
    pytest.param(
        # Non-sun-synchronous pair (CryoSat-2 92 deg, Jason-3 66 deg inclination).
        Case("CS2", "J3", "2022-08-01T00:00:00", "2022-08-01T12:00:00", 100, 1800, min_events=3),
        id="CS2-J3-12h-D100-T1800",
    ),
    pytest.param(
        # Arguments given in non-canonical order: the pair must still come out as (LS8, N20).
        Case("N20", "LS8", "2022-08-03", "2022-08-04", 50, 900, min_events=2),
        id="N20-LS8-1day-D50-T900",
        marks=pytest.mark.slow,
    ),
    pytest.param(
        Case("SARAL", "S3A", "2022-04-03T00:00:00", "2022-04-03T12:00:00", 100, 1800, 300),
        id="SARAL-S3A-12h-D100-T1800",
    ),
    pytest.param(
        # Jason-3 and Sentinel-6 flew in tandem (~30 s apart on one track) until April 2022:
        # every second is matched, so the whole window is one run that must be cut every 250 s.
        Case(
            "J3",
            "S6",
            "2022-03-15T00:00:00",
            "2022-03-15T03:00:00",
            50,
            600,
            250,
            min_events=40,
            expect_split=True,
        ),
        id="J3-S6-tandem-3h-split250",
    ),
    pytest.param(
        # Long runs (up to ~15 min) cut by a short maximum duration, with gaps between runs.
        Case(
            "S3A",
            "S2B",
            "2022-07-20T00:00:00",
            "2022-07-20T04:00:00",
            300,
            600,
            120,
            min_events=10,
            expect_split=True,
        ),
        id="S3A-S2B-4h-split120",
    ),
    pytest.param(
        # Matched seconds with gaps of exactly 58, 59, 60 and 61 s: runs merge across gaps
        # < 60 s and break at gaps >= 60 s.
        Case(
            "S2A",
            "LS8",
            "2022-05-01T20:00:00",
            "2022-05-02T03:30:00",
            20,
            3600,
            min_events=10,
            boundary_gaps=(58, 59, 60, 61),
        ),
        id="LS8-S2A-7.5h-D20-T3600-merge-gap-edges",
    ),
    pytest.param(
        # Tandem, matched every second: last - first = 300 = max duration, so no split ...
        Case(
            "J3", "S6", "2022-03-15T01:00:00", "2022-03-15T01:05:01", 50, 600, 300, expect_events=1
        ),
        id="J3-S6-tandem-301s-no-split-at-equal-duration",
    ),
    pytest.param(
        # ... and one second more (last - first = 301 > 300) gives a 300 s piece and a 1 s one.
        Case(
            "J3",
            "S6",
            "2022-03-15T01:00:00",
            "2022-03-15T01:05:02",
            50,
            600,
            300,
            expect_events=2,
            expect_split=True,
        ),
        id="J3-S6-tandem-302s-split-one-second-over",
    ),
]


@dataclass
class Result:
    case: Case
    ref: rb.Reference
    engine: list[Crossover]


@pytest.fixture(scope="module", params=CASES)
def result(request: pytest.FixtureRequest) -> Result:
    case: Case = request.param
    ref = rb.reference_crossovers(
        case.sat_1,
        case.sat_2,
        case.start,
        case.end,
        case.max_distance_km,
        case.max_time_diff_s,
        case.max_event_duration_s,
    )
    engine = find_crossovers(
        [case.sat_1, case.sat_2],
        case.start,
        case.end,
        max_distance_km=case.max_distance_km,
        max_time_diff_s=case.max_time_diff_s,
        max_event_duration_s=case.max_event_duration_s,
    )
    return Result(case, ref, engine)


def _describe(ev: Crossover | dict) -> str:
    get = ev.get if isinstance(ev, dict) else lambda k: getattr(ev, k)
    return (
        f"time_a={get('time_a'):%Y-%m-%dT%H:%M:%S} time_b={get('time_b'):%H:%M:%S} "
        f"d={get('distance_km'):.3f} km run=[{get('start_a'):%H:%M:%S}, {get('end_a'):%H:%M:%S}]"
    )


def _close(ref_ev: dict, eng: Crossover) -> bool:
    def secs(a, b) -> float:
        return abs((a - b).total_seconds())

    return (
        secs(eng.time_a, ref_ev["time_a"]) <= TIME_TOL_S
        and abs(eng.distance_km - ref_ev["distance_km"]) <= DIST_TOL_KM
        and secs(eng.start_a, ref_ev["start_a"]) <= EDGE_TOL_S
        and secs(eng.end_a, ref_ev["end_a"]) <= EDGE_TOL_S
    )


def test_case_is_not_degenerate(result: Result) -> None:
    case, ref = result.case, result.ref
    assert len(ref.events) >= case.min_events
    if case.expect_events is not None:
        assert len(ref.events) == case.expect_events
    gaps = set(np.diff(ref.matched.t_a).tolist())
    assert set(case.boundary_gaps) <= gaps
    if case.expect_split:
        durations = [(e["end_a"] - e["start_a"]).total_seconds() for e in ref.events]
        assert any(d == case.max_event_duration_s - 1 for d in durations), durations
        # Split pieces are adjacent: the next piece starts 1 s after the previous one ends.
        assert any(
            (nxt["start_a"] - prev["end_a"]).total_seconds() == 1
            for prev, nxt in zip(ref.events, ref.events[1:], strict=False)
        )


def test_event_counts_equal(result: Result) -> None:
    ref_lines = "\n".join("  ref " + _describe(e) for e in result.ref.events)
    eng_lines = "\n".join("  eng " + _describe(e) for e in result.engine)
    assert len(result.engine) == len(result.ref.events), f"\n{ref_lines}\n{eng_lines}"


def test_every_reference_event_is_found(result: Result) -> None:
    unmatched = list(result.engine)
    missing = []
    for ref_ev in result.ref.events:
        hit = next((e for e in unmatched if _close(ref_ev, e)), None)
        if hit is None:
            missing.append(ref_ev)
        else:
            unmatched.remove(hit)  # one-to-one
    detail = "\n".join("  missing " + _describe(e) for e in missing)
    detail += "\n" + "\n".join("  engine-only " + _describe(e) for e in unmatched)
    assert not missing, detail
    assert not unmatched, detail


def test_engine_events_respect_thresholds(result: Result) -> None:
    ref, case = result.ref, result.case
    for ev in result.engine:
        ta, tb = int(ev.time_a.timestamp()), int(ev.time_b.timestamp())
        assert ev.dt_s == tb - ta
        assert abs(ev.dt_s) <= case.max_time_diff_s, _describe(ev)
        assert ref.start <= ta < ref.end
        assert ref.start - case.max_time_diff_s <= tb <= ref.end - 1 + case.max_time_diff_s
        assert ev.start_a <= ev.time_a <= ev.end_a
        assert ref.start <= int(ev.start_a.timestamp()) <= int(ev.end_a.timestamp()) < ref.end
        duration = (ev.end_a - ev.start_a).total_seconds()
        assert duration <= case.max_event_duration_s
        d_ref = ref.distance(ta, tb)
        assert d_ref <= case.max_distance_km + THRESHOLD_TOL_KM, (_describe(ev), d_ref)
        assert ev.distance_km <= case.max_distance_km + 1e-9
        assert abs(ev.distance_km - d_ref) <= THRESHOLD_TOL_KM, (_describe(ev), d_ref)


def test_engine_events_are_canonical_and_sorted(result: Result) -> None:
    name_a, name_b = sorted((result.case.sat_1, result.case.sat_2))
    assert all(e.platform_a == name_a and e.platform_b == name_b for e in result.engine)
    times = [e.time_a for e in result.engine]
    assert times == sorted(times)
    # Events of one pair never overlap.
    for prev, nxt in zip(result.engine, result.engine[1:], strict=False):
        assert nxt.start_a > prev.end_a


def test_engine_positions_match_reference(result: Result) -> None:
    ref = result.ref
    for ev in result.engine:
        ta, tb = int(ev.time_a.timestamp()), int(ev.time_b.timestamp())
        lat_a, lon_a = ref.a.subpoints(np.array([ta]))
        lat_b, lon_b = ref.b.subpoints(np.array([tb]))
        da = float(rb.haversine_km(ev.lat_a, ev.lon_a, lat_a, lon_a)[0])
        db = float(rb.haversine_km(ev.lat_b, ev.lon_b, lat_b, lon_b)[0])
        assert da <= POSITION_TOL_KM, (_describe(ev), da)
        assert db <= POSITION_TOL_KM, (_describe(ev), db)
        assert -180.0 <= ev.lon_a < 180.0
        assert -180.0 <= ev.lon_b < 180.0


def test_closest_approach_is_minimal_over_its_event(result: Result) -> None:
    """The reported pair is (to reference precision) the closest among the event's seconds."""
    m = result.ref.matched
    for ev in result.engine:
        lo, hi = ev.start_a.timestamp(), ev.end_a.timestamp()
        inside = (m.t_a >= lo) & (m.t_a <= hi)
        assert inside.any(), _describe(ev)
        assert ev.distance_km <= float(m.dist[inside].min()) + THRESHOLD_TOL_KM, _describe(ev)


def test_start_and_end_are_matched_seconds(result: Result) -> None:
    m = result.ref.matched
    for ev in result.engine:
        for edge in (ev.start_a, ev.end_a):
            t = int(edge.timestamp())
            near = np.abs(m.t_a - t) <= EDGE_TOL_S
            assert near.any(), (_describe(ev), edge)
