"""How an eomatch process tunes Python's cyclic garbage collector once it has started.

eomatch's processes decode and build JSON by the page: a page of 1000 items is ~50 000 dicts
and lists that die with it. With Python's default thresholds (700, 10, 10) the cyclic
collector ran dozens of times a page and, every few pages, a full collection walked every
object of the process (its modules, models, routes). Reference counting frees those pages
anyway; the collector only has the rare cycles to find. So a process freezes what start-up
made out of the collector's scans and lets it run every 50 000 new objects (an API process)
or 200 000 (a console command: :data:`COMMAND_GC_THRESHOLDS`). Measured
(docs/service.md, "Scale"): an API's CPU per 20-id search at 1M items 2.0-2.3 -> 1.7-1.8 ms,
per link walk 7.7-7.9 -> 4.8-5.2 ms; `eomatch query` of 20 000 matchups, client CPU 13.7-14.0
-> 9.4-10.4 s (user).

Only a process's entry point calls :func:`settle_garbage_collector` (the console scripts, the
API's uvicorn factory), never a library call: an app or a command run in-process (tests,
embedding) leaves its caller's collector alone.
"""

from __future__ import annotations

import gc
import sys

__all__ = ["COMMAND_GC_THRESHOLDS", "GC_THRESHOLDS", "settle_garbage_collector"]

GC_THRESHOLDS = (50_000, 20, 20)
"""The cyclic collector's thresholds in an API process (Python's default: 700, 10, 10): a
collection of 50 000 young objects pauses a request ~15 ms."""
COMMAND_GC_THRESHOLDS = (200_000, 20, 20)
"""The thresholds in a console command, whose pauses nobody waits on. ``eomatch query`` holds
a few pages of ~60 000 objects each while it writes them: at 50 000 every object lived through
a young and a middle collection (~6 % of the pull's CPU, ~250 collections of ~17 ms a
100 000-matchup pull); at 200 000 most die first (2 collections a 25 000-matchup pull). The
pull at 1M items, alternated: 60.8-68.4 s at 50 000, 57.2-63.8 s at 200 000, four runs
each (docs/service.md)."""


def settle_garbage_collector(thresholds: tuple[int, int, int] = GC_THRESHOLDS) -> None:
    """Freeze what start-up made out of the collector's scans; collect every
    ``thresholds[0]`` new objects.

    Cyclic garbage (a traceback, say) then waits for at most that many new objects. The
    thresholds are set on Pythons before 3.14 only, whose collector they were measured with
    (3.14's incremental collector reads them differently); the freeze on every one.
    """
    gc.collect()
    gc.freeze()
    if sys.version_info < (3, 14):
        gc.set_threshold(*thresholds)
