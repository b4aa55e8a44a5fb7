"""Bounded memory of the crossover search (issue 10 §10): chunks, batches, threshold caps.

The window is searched in time chunks (each satellite sampled per chunk, padded by T) and the
engine cuts its candidate pairs into batches. None of this may change a result: chunk edges
neither lose nor repeat events, whatever the chunk length, and the batch budgets change only
memory. The results compared here are those of the one-chunk, one-batch search, which
tests/test_crossovers_reference.py checks against the brute-force reference.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

import eomatch.core.crossovers as core
import eomatch.workflows.crossovers as wc
from eomatch import find_crossovers
from eomatch.core.crossovers import EventBuilder, MatchedSeconds, event_slices

TANDEM = datetime(2022, 3, 15, 1, 0, tzinfo=UTC)
"""Jason-3 and Sentinel-6 in tandem: every second is matched, runs are as long as the window."""

CASES = [
    pytest.param(["S2A", "LS9"], "2022-05-01", "2022-05-03", {}, id="S2A-LS9-2d"),
    pytest.param(
        ["S2A", "S3A", "LS9"], "2022-05-01", "2022-05-01T12:00:00",
        {"max_distance_km": 300.0, "max_time_diff_s": 3600}, id="3sats-D300-T3600",
    ),
    pytest.param(
        ["J3", "S6"], TANDEM, TANDEM + timedelta(hours=3),
        {"max_distance_km": 50.0, "max_time_diff_s": 600, "max_event_duration_s": 700},
        id="tandem-split-runs",
    ),
    pytest.param(
        ["CS2", "J3"], "2022-08-01", "2022-08-01T12:00:00",
        {"max_distance_km": 100.0, "max_time_diff_s": 20000}, id="CS2-J3-T20000-kdtree",
    ),
]  # fmt: skip


def _key(sats, start, end, kw):
    return repr((sats, start, end, sorted(kw.items())))


def _records(events):
    return [e.as_record() for e in events]


@pytest.fixture(scope="module")
def whole():
    """Each case searched as one chunk with budgets large enough for one batch."""
    out = {}
    for p in CASES:
        sats, start, end, kw = p.values
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(wc, "chunk_seconds", lambda *_args: 10**7)
            out[_key(sats, start, end, kw)] = _records(find_crossovers(sats, start, end, **kw))
        assert out[_key(sats, start, end, kw)], (
            p.id
        )  # a case must not degenerate into comparing empty lists
    return out


@pytest.mark.parametrize("chunk_s", [61, 997, 3600])
@pytest.mark.parametrize(("sats", "start", "end", "kw"), CASES)
def test_chunk_edges_neither_lose_nor_repeat_events(
    whole, monkeypatch, chunk_s, sats, start, end, kw
):
    monkeypatch.setattr(wc, "CHUNK_S", chunk_s)
    monkeypatch.setattr(wc, "MIN_CHUNK_S", 1)
    got = _records(find_crossovers(sats, start, end, workers=2, **kw))
    assert got == whole[_key(sats, start, end, kw)]


@pytest.mark.parametrize(("sats", "start", "end", "kw"), CASES)
def test_tiny_batch_budgets_change_nothing(whole, monkeypatch, sats, start, end, kw):
    # Forces the coarse stage into blocks of a few cells and every refinement into batches of
    # a few pairs, so one second of A meets its partners in different batches.
    monkeypatch.setattr(core, "COARSE_PAIR_BUDGET", 700)
    monkeypatch.setattr(core, "PAIR_BUDGET", 50)
    assert _records(find_crossovers(sats, start, end, **kw)) == whole[_key(sats, start, end, kw)]


def _ms(t_a, t_b, dot):
    return MatchedSeconds(
        np.array(t_a, np.int64), np.array(t_b, np.int64), np.array(dot, np.float64)
    )


def test_best_of_keeps_the_closest_then_earliest_partner():
    parts = [
        _ms([10, 11], [100, 101], [0.5, 0.9]),
        _ms([10, 12], [99, 102], [0.7, 0.1]),
        _ms([11], [98], [0.9]),
    ]
    best = MatchedSeconds.best_of(parts)
    assert best.t_a.tolist() == [10, 11, 12]
    assert best.t_b.tolist() == [99, 98, 102]
    assert best.dot.tolist() == [0.7, 0.9, 0.1]


@pytest.mark.parametrize("cut", [1, 5, 9, 10, 13])
def test_event_builder_fed_in_pieces_equals_one_pass(monkeypatch, cut):
    # one run 0..45 (gaps < 60 s) cut every 15 s from its first second, then a second run
    t = [0, 3, 7, 12, 15, 16, 30, 31, 44, 45, 200, 205, 210]
    want = event_slices(np.array(t, np.int64), 60, 15)
    got = []

    def collect(a, b, matched, params, ranges=None):
        got.extend((int(matched.t_a[i]), int(matched.t_a[j - 1])) for i, j, _ in ranges)
        return []

    monkeypatch.setattr(core, "build_events", collect)
    builder = EventBuilder(None, None, core.CrossoverParams(max_event_duration_s=15))
    builder.feed(_ms(t[:cut], t[:cut], [1.0] * cut))
    builder.feed(_ms([], [], []))
    builder.feed(_ms(t[cut:], t[cut:], [1.0] * (len(t) - cut)))
    builder.finish()
    assert got == [(t[i], t[j - 1]) for i, j in want]
    assert len(want) == 5  # 0-12, 15-16, 30-44, 45, 200-210


def _peak_mb(code: str) -> float:
    """Peak traced Python/NumPy allocation (MB) of ``code`` in a child with a 3 GB limit."""
    prog = textwrap.dedent(
        f"""
        import json, tracemalloc
        from eomatch import find_crossovers
        tracemalloc.start()
        n = len({code})
        print(json.dumps([n, tracemalloc.get_traced_memory()[1] / 2**20]))
        """
    )

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (3 * 2**30, 3 * 2**30))

    proc = subprocess.run(
        [sys.executable, "-c", prog], capture_output=True, text=True, timeout=600, preexec_fn=limit
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    n, peak = json.loads(proc.stdout.strip().splitlines()[-1])
    assert n > 0
    return float(peak)


@pytest.mark.slow
def test_peak_memory_does_not_grow_with_the_window():
    # Before the chunked sampling the whole window was sampled at once: measured here, 176 MB
    # for 20 days and 323 MB for 200 days (+147 MB); chunked, 160 and 212 MB (+52 MB, the
    # events and element sets themselves).
    short = _peak_mb('find_crossovers(["S2A", "LS9"], "2022-05-01", "2022-05-21")')
    long = _peak_mb('find_crossovers(["S2A", "LS9"], "2022-05-01", "2022-11-17")')
    assert long - short < 90, (short, long)


@pytest.mark.slow
def test_largest_thresholds_run_in_bounded_memory():
    # D and T at their caps: every second is a candidate. Before the batching, 930 MB for these
    # 20 minutes (and > 6 GB for one day at T = 1 day); batched, 114 MB.
    peak = _peak_mb(
        'find_crossovers(["S2A", "LS9"], "2022-05-01T00:00", "2022-05-01T00:20", '
        "max_distance_km=5000, max_time_diff_s=259200)"
    )
    assert peak < 400, peak
