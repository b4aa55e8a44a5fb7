"""The scale benchmark's paired single client (``benchmarks/service_shapes.paired_clients``).

Its comparisons of internal, external and floor are only fair when no path is favoured by the
order: each unit must go first to every path about equally often. With 24 units over 3 paths
it once sent each unit to the same path first every time (external p50 85 % of internal on
identical code).
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import service_shapes as sh


@pytest.mark.parametrize("n_units", [24, 7, 3])
def test_every_path_goes_first_for_every_unit(n_units: int) -> None:
    calls: list[tuple[int, str]] = []

    def path(name: str) -> Callable[[sh.Unit], None]:
        return lambda unit: calls.append((unit[0]["n"], name))

    runs = {name: path(name) for name in ("internal", "external", "floor")}
    units: list[sh.Unit] = [[{"n": k}] for k in range(n_units)]
    out = sh.paired_clients(runs, units, 0.2)
    first: dict[int, Counter[str]] = {k: Counter() for k in range(n_units)}
    passes = len(calls) // (3 * n_units)
    assert passes >= 9, "the run was too short to judge the order"
    for j in range(0, passes * 3 * n_units, 3):
        triple = calls[j : j + 3]
        assert len({u for u, _ in triple}) == 1  # a unit goes to every path in turn
        assert {name for _, name in triple} == set(runs)
        first[triple[0][0]][triple[0][1]] += 1
    for k, counts in first.items():
        assert set(counts) == set(runs), f"unit {k} always went first to {set(counts)}"
        assert max(counts.values()) - min(counts.values()) <= 2 + passes // 10
    assert {n: round(r["n"]) for n, r in out.items()} == {n: len(calls) // 3 for n in runs}
