"""The console scripts settle the garbage collector of their own process, not of a caller."""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys

from eomatch.gc_tuning import GC_THRESHOLDS

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
    assert ran[0] == list(GC_THRESHOLDS)
    assert ran[1] > 10_000  # the modules the command loaded


_QUERY = """
import atexit, gc, json, sys
import eomatch.cli.query as q
from eomatch.cli import main as m
real, during = q.query_catalogue, []
def spy(*args, **kwargs):  # the real pull, noting the collector's state while it runs
    during.append(gc.isenabled())
    return real(*args, **kwargs)
q.query_catalogue = spy
assert m.main(sys.argv[1:]) == 0  # embedded: the caller's collector stays as it is
atexit.register(lambda: print("GC " + json.dumps([during, gc.isenabled()])))
sys.argv = ["eomatch", *sys.argv[1:]]
m.run()
"""


def test_the_console_script_pauses_its_collector_for_a_pull_only(tmp_path) -> None:
    """``eomatch query`` run as a console script disables the cyclic collector while it pulls
    (20 000 matchups: client CPU 11.8 -> 8.8 s) and enables it again after; the same command
    called in-process does not touch it."""
    from matchup_api_server import MatchupApi, serve, source_catalogue

    env = {k: v for k, v in os.environ.items() if not k.startswith("EOMATCH_")}
    env["EOMATCH_CONFIG_DIR"] = str(tmp_path / "cfg")
    (tmp_path / "source").mkdir()
    with source_catalogue(tmp_path / "source") as src, serve(MatchupApi()) as api:
        api.load_catalogue(src.root)
        args = ["query", "--api-url", api.url, "--output", str(tmp_path / "pulled")]
        out = subprocess.run(
            [sys.executable, "-c", _QUERY, *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert out.returncode == 0, out.stderr
    line = next(x for x in out.stdout.splitlines() if x.startswith("GC "))
    assert json.loads(line[3:]) == [[True, False], True]


def test_pauses_nest_and_restore_what_was_there() -> None:
    from eomatch.gc_tuning import collector_paused

    assert gc.isenabled()
    with collector_paused():
        with collector_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()
    gc.disable()
    try:
        with collector_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()  # it was off before: stays off
    finally:
        gc.enable()
