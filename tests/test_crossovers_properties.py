"""Properties of ``find_crossovers`` that follow from the crossover definition alone."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import event, example, given, settings
from hypothesis import strategies as st

from eomatch import Crossover, find_crossovers
from eomatch.core.crossovers import MAX_EVENT_DURATION_S

# Satellites whose shipped TLE archives cover March..September 2022 densely.
SATELLITES = ("S2A", "S2B", "LS8", "LS9", "S3A", "S3B", "N20", "J3", "CS2", "SARAL", "S6")
FIRST_START = datetime(2022, 3, 1, tzinfo=UTC)
LAST_START = datetime(2022, 9, 25, tzinfo=UTC)
MERGE_GAP_S = 60

pairs = st.lists(st.sampled_from(SATELLITES), min_size=2, max_size=2, unique=True).map(tuple)
starts = st.integers(0, int((LAST_START - FIRST_START).total_seconds())).map(
    lambda s: FIRST_START + timedelta(seconds=s)
)
# Generous thresholds so that most examples have events (with D = 20 km, T = 60 s most windows
# of a few hours have none and the properties would hold vacuously). Hypothesis starts from and
# shrinks towards the first element of sampled_from, so the eventful values come first.
hours = st.sampled_from([4, 6, 2, 1]).map(lambda h: timedelta(hours=h))
distances = st.sampled_from([1000.0, 2000.0, 500.0, 200.0, 50.0])
time_diffs = st.sampled_from([1800, 3600, 600, 60])
durations = st.sampled_from([60, 300, 900])

SETTINGS = settings(max_examples=10, deadline=None, print_blob=True)
TANDEM = datetime(2022, 3, 15, 1, 0, tzinfo=UTC)
"""Jason-3 and Sentinel-6 in tandem: every second is matched, runs are as long as the window."""


def _run(pair, start, end, **kw) -> list[Crossover]:
    return find_crossovers(list(pair), start, end, **kw)


def _close(a: Crossover, b: Crossover) -> bool:
    """Same event; distances may differ in the last bits (different propagation batches)."""
    return replace(a, distance_km=0.0) == replace(b, distance_km=0.0) and (
        abs(a.distance_km - b.distance_km) <= 1e-6
    )


@SETTINGS
@given(pair=pairs, start=starts, span=hours, d=distances, t=time_diffs, m=durations)
@example(pair=("S6", "J3"), start=TANDEM, span=timedelta(hours=2), d=50.0, t=600, m=300)
def test_platform_order_does_not_matter(pair, start, span, d, t, m) -> None:
    kw = {"max_distance_km": d, "max_time_diff_s": t, "max_event_duration_s": m}
    forward = _run(pair, start, start + span, **kw)
    backward = _run(pair[::-1], start, start + span, **kw)
    event(f"events: {min(len(forward), 3)}{'+' if len(forward) >= 3 else ''}")
    assert forward == backward
    a, b = sorted(pair)
    assert all(e.platform_a == a and e.platform_b == b for e in forward)


@SETTINGS
@given(
    pair=pairs,
    start=starts,
    span=hours,
    ds=st.lists(distances, min_size=2, max_size=2).map(sorted),
    ts=st.lists(time_diffs, min_size=2, max_size=2).map(sorted),
    m=durations,
)
@example(
    pair=("S3A", "S2B"),
    start=datetime(2022, 7, 20, tzinfo=UTC),
    span=timedelta(hours=3),
    ds=[100.0, 300.0],
    ts=[60, 600],
    m=300,
)
def test_raising_thresholds_never_loses_an_event(pair, start, span, ds, ts, m) -> None:
    # Every matched second at (D1, T1) is matched at (D2, T2) >= (D1, T1), and every matched
    # second belongs to exactly one event's [start_a, end_a]; so each low-threshold closest
    # approach lies inside some high-threshold event, whatever the duration splitting does.
    window = (pair, start, start + span)
    low = _run(*window, max_distance_km=ds[0], max_time_diff_s=ts[0], max_event_duration_s=m)
    high = _run(*window, max_distance_km=ds[1], max_time_diff_s=ts[1], max_event_duration_s=m)
    event(f"low-threshold events: {min(len(low), 3)}{'+' if len(low) >= 3 else ''}")
    for ev in low:
        containing = [h for h in high if h.start_a <= ev.time_a <= h.end_a]
        assert len(containing) == 1, (ev, high)
        assert containing[0].distance_km <= ev.distance_km + 1e-6


def _merge(first: Crossover, second: Crossover) -> Crossover:
    """One run cut by the window boundary, put back together."""
    best = first if first.distance_km <= second.distance_km else second
    return replace(best, start_a=first.start_a, end_a=second.end_a)


@SETTINGS
@given(
    pair=pairs,
    start=starts,
    span=hours,
    cut_fraction=st.floats(0.05, 0.95),
    d=distances,
    t=time_diffs,
)
@example(pair=("J3", "S6"), start=TANDEM, span=timedelta(hours=1), cut_fraction=0.5, d=50.0, t=600)
@example(
    pair=("S2B", "S3A"),
    start=datetime(2022, 7, 20, tzinfo=UTC),
    span=timedelta(hours=2),
    cut_fraction=0.2,
    d=300.0,
    t=600,
)
def test_splitting_the_window_changes_nothing(pair, start, span, cut_fraction, d, t) -> None:
    # Whether a second of A is matched, and its best partner, depend only on that second (B may
    # be looked at up to T outside the window), so the matched seconds of [s, e) are those of
    # [s, c) plus those of [c, e). Only the grouping can differ: a run crossing the cut is
    # reported as two events, which we merge back when the gap between them is < 60 s.
    # max_event_duration_s (its largest value, a day) is effectively infinite here because
    # duration splitting counts from each run's first second, and a run cut by the window
    # boundary starts at a different second in the second half, so split pieces would
    # legitimately differ.
    kw = {"max_distance_km": d, "max_time_diff_s": t, "max_event_duration_s": MAX_EVENT_DURATION_S}
    end = start + span
    cut = start + timedelta(seconds=round(span.total_seconds() * cut_fraction))
    whole = _run(pair, start, end, **kw)
    left = _run(pair, start, cut, **kw)
    right = _run(pair, cut, end, **kw)
    assert all(e.end_a < cut for e in left)
    assert all(e.start_a >= cut for e in right)
    if left and right and (right[0].start_a - left[-1].end_a).total_seconds() < MERGE_GAP_S:
        joined = [*left[:-1], _merge(left[-1], right[0]), *right[1:]]
        event("a run crosses the cut")
    else:
        joined = [*left, *right]
    event(f"events: {min(len(whole), 3)}{'+' if len(whole) >= 3 else ''}")
    assert len(joined) == len(whole), (whole, left, right)
    for got, want in zip(joined, whole, strict=True):
        assert _close(got, want), (got, want)


@pytest.mark.parametrize("cut_s", [1, 59, 60, 61, 1800])
def test_tandem_run_cut_anywhere_is_merged_back(cut_s: int) -> None:
    """Deterministic companion of the property above on a run that is matched every second."""
    kw = {
        "max_distance_km": 50.0,
        "max_time_diff_s": 600,
        "max_event_duration_s": MAX_EVENT_DURATION_S,
    }
    start, end = TANDEM, TANDEM + timedelta(hours=1)
    cut = start + timedelta(seconds=cut_s)
    whole = _run(("J3", "S6"), start, end, **kw)
    left = _run(("J3", "S6"), start, cut, **kw)
    right = _run(("J3", "S6"), cut, end, **kw)
    assert len(whole) == len(left) == len(right) == 1
    assert whole[0].start_a == start
    assert whole[0].end_a == end - timedelta(seconds=1)
    assert _close(_merge(left[0], right[0]), whole[0])


@pytest.mark.parametrize(
    "step",
    [
        1,
        10,
        60,
        120,
        600,
        7,  # regression: prime steps > 5 once crashed step_chain()
        13,
    ],
)
def test_coarse_step_does_not_change_the_result(step: int) -> None:
    """``coarse_step_s`` is documented to affect speed only, never the events."""
    kw = {"max_distance_km": 300.0, "max_time_diff_s": 1800, "max_event_duration_s": 300}
    window = (
        ("S2B", "S3A"),
        datetime(2022, 7, 20, tzinfo=UTC),
        datetime(2022, 7, 20, 6, tzinfo=UTC),
    )
    default = _run(*window, **kw)
    other = _run(*window, coarse_step_s=step, **kw)
    assert len(default) >= 5
    assert len(other) == len(default)
    assert all(_close(a, b) for a, b in zip(other, default, strict=True))
