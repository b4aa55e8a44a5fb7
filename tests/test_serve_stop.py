"""Ctrl-C ends ``eomatch serve`` within one grace period however many children hang.

Regression: the stack waited up to 10 s for each child in turn, so an API pair plus a job
worker slow to stop on a loaded machine kept ``serve`` alive past 30 s after Ctrl-C (seen in a
clean-clone CI run). Now they share one deadline, then the stragglers are killed and named.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from eomatch.io.db_target import DbTarget
from eomatch.service import stack as stack_module
from eomatch.service.stack import ApiChild, Stack

STUBBORN = (
    "import signal, sys, time\n"
    "signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
    "print('ready', flush=True)\n"
    "time.sleep(120)\n"
)
POLITE = (  # SIGINT's default explicitly: a child of a background job inherits it ignored
    "import signal, time\n"
    "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
    "print('ready', flush=True)\n"
    "time.sleep(120)\n"
)


def _child(mode: str, code: str, log: Path) -> ApiChild:
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    assert proc.stdout.readline() == b"ready\n"  # its signal handler is in place
    proc.stdout.close()
    return ApiChild(mode, 0, proc, log)


def test_stubborn_children_share_one_deadline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(stack_module, "STOP_GRACE_S", 4.0)
    messages: list[str] = []
    stack = Stack(
        target=DbTarget("127.0.0.1", 5432, "eomatch", None, None),
        run_dir=tmp_path,
        report=messages.append,
    )
    log = tmp_path / "child.log"
    children = [
        _child("internal", STUBBORN, log),
        _child("external", STUBBORN, log),
        _child("worker", STUBBORN, log),
        _child("polite", POLITE, log),
    ]
    stack.apis = list(children)
    t0 = time.monotonic()
    stack.stop()
    took = time.monotonic() - t0
    assert took < 4.0 + 4, f"stop took {took:.1f} s"  # one grace period, not one per child
    assert all(c.proc.returncode is not None for c in children)
    assert children[3].proc.returncode != -9  # stopped by Ctrl-C, not killed
    killed = [m for m in messages if "did not stop" in m]
    assert len(killed) == 3
    assert any("worker process" in m for m in killed)
    assert stack.apis == []


WAITER = """
import sys
from pathlib import Path
from eomatch.io.db_target import DbTarget
from eomatch.service.stack import Stack
stack = Stack(target=DbTarget("127.0.0.1", 5432, "eomatch", None, None), run_dir=Path(sys.argv[1]))
print("waiting", flush=True)
print(stack.wait(), flush=True)
"""


def test_sigint_stops_serve_even_when_inherited_ignored(tmp_path: Path) -> None:
    """A shell script's background job inherits SIGINT ignored, and Python then raises no
    KeyboardInterrupt: serve's supervision loop must still take SIGINT as Ctrl-C (the
    clean-clone CI runs started that way saw serve ignore it)."""
    import signal

    proc = subprocess.Popen(
        [sys.executable, "-c", WAITER, str(tmp_path)],
        stdout=subprocess.PIPE,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == b"waiting\n"
        time.sleep(0.3)  # inside wait(): its handlers are in place
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=10)
        assert out.strip() == b"stopped"
        assert proc.returncode == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=5)  # reaps it and closes its pipe
