"""CLI names as the seed documents use them (issue #11 §6, §8).

``eomatch download/remove --platforms`` take any registry alias (S2A, Sentinel-2A, sentinel-2a)
and refuse an unknown platform with one line (exit 2) instead of selecting nothing;
``eomatch find`` takes the window's end as ``--stop-time`` or ``--end-time``. Offline: products
are predicted from the orbit.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from eomatch.cli.main import main
from eomatch.io.catalogue import MatchupCatalogue

RUN = """\
sensors:
  - {platform: S2A, collection: S2_MSI_L1C}
  - {platform: LS9, collection: LANDSAT_C2L1}
start_time: 2022-05-06T12:00:00Z
bbox: [-40, 40, 0, 70]
"""


@pytest.fixture(autouse=True)
def _no_user_file(tmp_path, monkeypatch):
    monkeypatch.setenv("EOMATCH_CONFIG_DIR", str(tmp_path / "no-user-config"))


@pytest.fixture
def catalogue(tmp_path, capsys) -> Path:
    cfg = tmp_path / "run.yaml"
    cfg.write_text(RUN)
    root = tmp_path / "cat"
    assert main(["find", "--config", str(cfg), "--path", str(root), "--stop-time", "13:30"]) == 2
    assert "stop_time" in capsys.readouterr().err  # not a time: one line naming the key
    argv = ["find", "--config", str(cfg), "--path", str(root)]
    assert main([*argv, "--stop-time", "2022-05-06T13:30:00Z"]) == 0
    with MatchupCatalogue.open(root) as cat:
        n = len(cat.get_events())
    assert n > 0
    capsys.readouterr()
    return root


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.json"))}


def test_end_time_is_the_same_flag_as_stop_time(catalogue, tmp_path, capsys):
    other = tmp_path / "other"
    cfg = tmp_path / "run.yaml"
    argv = ["find", "--config", str(cfg), "--path", str(other)]
    assert main([*argv, "--end-time", "2022-05-06T13:30:00Z"]) == 0
    with MatchupCatalogue.open(catalogue) as a, MatchupCatalogue.open(other) as b:
        assert [e.id for e in a.get_events()] == [e.id for e in b.get_events()]


@pytest.mark.parametrize("name", ["S2A", "Sentinel-2A", "sentinel-2a", "LS9", "Landsat-9"])
def test_platform_aliases_select_the_events(catalogue, capsys, name):
    # the products are predicted: selecting any event makes download refuse them (exit 2);
    # a selection of nothing would succeed with nothing to do
    assert main(["download", "--path", str(catalogue), "--platforms", name]) == 2
    err = capsys.readouterr().err
    assert "predicted from the orbit" in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("command", [["download"], ["remove"], ["remove", "--keep-files"]])
def test_unknown_platform_is_one_line_and_changes_nothing(catalogue, capsys, command):
    before = _files(catalogue)
    assert main([*command, "--path", str(catalogue), "--platforms", "S2A,Sentinel-9Z"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "--platforms: unknown platform 'Sentinel-9Z'" in err
    assert _files(catalogue) == before
