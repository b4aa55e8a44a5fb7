"""Crossover engine benchmark (issue #2). Prints figures; asserts nothing.

Scenarios, each in its own process so that peak memory is per scenario:
  year     S2A x LS9, 2022-01-01 .. 2023-01-01, D=100 km, T=1800 s   (target < 10 s)
  all78    every pair of the 13 registry satellites, 30 days from 2022-05-01 (target < 60 s)
  brute    S2A x LS9 on 2022-05-01 (1 day): engine vs the brute-force reference of the tests,
           both measured in this run
The previous generation's engine (orbitx 0.2.0) cannot run here (it needs Orekit from conda);
its measured figure on this machine class is 74-79 s per simulated day for S2A x LS9
(shared/notes/performance-facts.md), so the year ratio uses 76.5 s/day x 365.

Usage: uv run python benchmarks/crossovers.py [year all78 brute]
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PREVIOUS_S_PER_DAY = 76.5
ALL13 = ["S2A", "S2B", "LS8", "LS9", "S3A", "S3B", "J2", "J3", "CS2", "SARAL", "S6", "N20", "ISS"]


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def scenario(name: str) -> dict[str, float | int | str]:
    from eomatch import find_crossovers

    if name == "year":
        t = time.perf_counter()
        ev = find_crossovers(["S2A", "LS9"], "2022-01-01", "2023-01-01")
        wall = time.perf_counter() - t
        return {"wall_s": wall, "events": len(ev), "peak_mb": _peak_mb()}
    if name == "all78":
        t = time.perf_counter()
        ev = find_crossovers(ALL13, "2022-05-01", "2022-05-31")
        wall = time.perf_counter() - t
        pairs = len({(e.platform_a, e.platform_b) for e in ev})
        return {
            "wall_s": wall,
            "events": len(ev),
            "pairs_with_events": pairs,
            "peak_mb": _peak_mb(),
        }
    if name == "brute":
        sys.path.insert(0, str(ROOT / "tests"))
        import reference_bruteforce as ref

        t = time.perf_counter()
        ev = find_crossovers(["S2A", "LS9"], "2022-05-01", "2022-05-02")
        engine = time.perf_counter() - t
        t = time.perf_counter()
        rev = ref.reference_crossovers("LS9", "S2A", "2022-05-01", "2022-05-02", 100.0, 1800).events
        brute = time.perf_counter() - t
        return {"engine_s": engine, "brute_s": brute, "events": len(ev), "brute_events": len(rev)}
    raise SystemExit(f"unknown scenario {name}")


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "--scenario":
        print(json.dumps(scenario(argv[1])))
        return 0
    names = argv or ["year", "all78", "brute"]
    for name in names:
        proc = subprocess.run(
            [sys.executable, __file__, "--scenario", name], capture_output=True, text=True
        )
        if proc.returncode != 0:
            print(f"{name}: failed\n{proc.stderr}")
            continue
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        if name == "year":
            prev = PREVIOUS_S_PER_DAY * 365
            print(
                f"year  S2A x LS9 365 d: {r['wall_s']:.2f} s (target < 10 s), "
                f"{r['events']} events, "
                f"peak {r['peak_mb']:.0f} MB; previous engine ~{prev / 3600:.1f} h "
                f"-> speed-up x{prev / r['wall_s']:.0f}"
            )
        elif name == "all78":
            print(
                f"all78 13 satellites x 30 d: {r['wall_s']:.2f} s (target < 60 s), "
                f"{r['events']} events in {r['pairs_with_events']} pairs, "
                f"peak {r['peak_mb']:.0f} MB (target < 2048 MB)"
            )
        elif name == "brute":
            print(
                f"brute S2A x LS9 1 d: engine {r['engine_s']:.3f} s vs brute-force reference "
                f"{r['brute_s']:.1f} s -> speed-up x{r['brute_s'] / r['engine_s']:.0f} "
                f"({r['events']} vs {r['brute_events']} events)"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
