"""``eomatch find`` killed at random moments: the catalogue still opens and validates, and a
re-run completes the work with exactly the result of an uninterrupted run."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from catalogue_helpers import validate_tree
from eomatch.io.catalogue import MatchupCatalogue

CONFIG = (
    "sensors:\n"
    "  - {platform: S2A, collection: S2_MSI_L1C}\n"
    "  - {platform: LS9, collection: LANDSAT_C2L1}\n"
    "start_time: 2022-05-06T00:00:00Z\nend_time: 2022-05-07T00:00:00Z\n"
    "bbox: [-60, 30, 60, 75]\n"
)


def _find(cfg: Path, root: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "eomatch", "find", "--config", str(cfg), "--path", str(root)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _snapshot(root: Path) -> dict[str, object]:
    out: dict[str, object] = {}
    for p in sorted(root.rglob("*.json")):
        if p.name.startswith("."):
            continue
        out[str(p.relative_to(root))] = json.loads(p.read_text())
    return out


@pytest.mark.slow
def test_kill_during_find_then_rerun_completes(tmp_path):
    cfg = tmp_path / "run.yaml"
    cfg.write_text(CONFIG)
    reference = tmp_path / "reference"
    assert _find(cfg, reference).wait(timeout=300) == 0
    expected = _snapshot(reference)
    assert len(expected) > 20

    rng = random.Random(7)
    started = time.monotonic()
    assert _find(cfg, tmp_path / "timing").wait(timeout=300) == 0
    full = time.monotonic() - started
    for attempt in range(3):
        root = tmp_path / f"killed-{attempt}"
        proc = _find(cfg, root)
        time.sleep(rng.uniform(0.3, 0.95) * full)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        if (root / "catalog.json").exists():
            MatchupCatalogue.open(root).close()  # opens (rebuilding its index if needed)
            validate_tree(root)
        assert _find(cfg, root).wait(timeout=300) == 0
        assert _snapshot(root) == expected
        assert validate_tree(root) == len(expected)
