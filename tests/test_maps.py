"""Crossover maps: real events, no events, zoom, antimeridian, speed, and the CLI ``--plot``."""

from __future__ import annotations

import csv
import dataclasses
import struct
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import matplotlib.colors as mcolors
import matplotlib.image as mimage
import numpy as np
import pytest

from eomatch.cli.main import main
from eomatch.core.crossovers import Crossover
from eomatch.errors import EomatchError
from eomatch.viz.maps import (
    LAND_COLOR,
    OCEAN_COLOR,
    PAIR_COLORS,
    WORLD,
    break_antimeridian,
    map_extent,
    plot_crossovers,
)
from eomatch.workflows.crossovers import find_crossovers

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _isolate(mp: pytest.MonkeyPatch, base: Path) -> None:
    """Searches and maps see only the shipped archive (no user cache or config)."""
    mp.setenv("EOMATCH_CACHE_DIR", str(base / "cache"))
    mp.setenv("EOMATCH_CONFIG_DIR", str(base / "config"))
    mp.delenv("EOMATCH_TLE_DIRS", raising=False)


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _isolate(monkeypatch, tmp_path)


@pytest.fixture(scope="module")
def events(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Crossover]]:
    with pytest.MonkeyPatch.context() as mp:
        _isolate(mp, tmp_path_factory.mktemp("env"))
        yield find_crossovers(["S2A", "LS9"], "2022-05-01", "2022-05-02")


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def colour_fraction(path: Path, colour: str) -> float:
    """Share of pixels exactly (within 2/255) of ``colour``."""
    rgb = mimage.imread(path)[..., :3]
    target = np.array(mcolors.to_rgb(colour))
    return float((np.abs(rgb - target).max(axis=-1) < 2 / 255).mean())


def test_map_of_real_events(events: list[Crossover], tmp_path: Path) -> None:
    assert len(events) > 10
    out = tmp_path / "map.png"
    plot_crossovers(events, out)
    width, height = png_size(out)
    assert 1200 <= width <= 2200
    assert 500 <= height <= 1200
    land, ocean = colour_fraction(out, LAND_COLOR), colour_fraction(out, OCEAN_COLOR)
    assert 0.08 < land < 0.4  # the continents are drawn ...
    assert ocean > land  # ... on an ocean-coloured world
    assert colour_fraction(out, PAIR_COLORS[0]) > 0.001  # markers of the (single) pair
    assert sorted(p.name for p in tmp_path.iterdir()) == ["map.png"]  # no temporary left over


def test_map_without_events(tmp_path: Path) -> None:
    out = tmp_path / "sub" / "empty.png"  # parent directories are created
    plot_crossovers([], out)
    width, height = png_size(out)
    assert 1.6 < width / height < 2.2  # the whole world, plate carrée
    land, ocean = colour_fraction(out, LAND_COLOR), colour_fraction(out, OCEAN_COLOR)
    assert 0.25 < land / (land + ocean) < 0.4  # Earth's land share, Antarctica stretched
    assert colour_fraction(out, PAIR_COLORS[0]) == 0.0


def test_regional_events_are_zoomed_with_the_search_box(tmp_path: Path) -> None:
    bbox = (-130.0, -10.0, -50.0, 50.0)  # the Americas
    regional = find_crossovers(["S2A", "LS9"], "2022-05-01", "2022-05-03", bbox=bbox)
    assert 2 <= len(regional) <= 25
    out = tmp_path / "americas.png"
    plot_crossovers(regional, out, bbox=bbox, minutes=3, title="the Americas")
    width, height = png_size(out)
    assert width / height < 1.6  # not the 2:1 world map
    assert colour_fraction(out, LAND_COLOR) > 0.05


def test_map_extent() -> None:
    europe = map_extent(np.array([36.0, 71.0, 54.0]), np.array([-24.0, 42.0, 10.0]))
    assert not europe.is_world
    assert europe.west < -24 < 42 < europe.east
    assert europe.south < 36 < 71 < europe.north
    assert (europe.east - europe.west) >= (europe.north - europe.south)
    spot = map_extent(np.array([10.0]), np.array([20.0]))
    assert spot.east - spot.west >= 20
    assert spot.west < 20 < spot.east
    assert map_extent(np.array([-80.0, 80.0]), np.array([0.0, 10.0])) == WORLD
    assert map_extent(np.array([0.0, 1.0]), np.array([-170.0, 170.0])) == WORLD
    assert map_extent(np.array([]), np.array([])) == WORLD
    polar = map_extent(np.array([85.0, 88.0]), np.array([0.0, 5.0]))
    assert polar.north == 90.0
    assert polar.south < 85


def test_tracks_break_at_the_antimeridian() -> None:
    lon = np.array([170.0, 175.0, 179.0, -177.0, -172.0])
    lat = np.array([0.0, 1.0, 2.0, 4.0, 5.0])
    x, y = break_antimeridian(lon, lat)
    assert len(x) == len(lon) + 3
    assert np.isnan(x[4])
    assert x[3] == 180.0
    assert x[5] == -180.0
    assert y[3] == pytest.approx(2.5)
    assert y[5] == pytest.approx(2.5)
    assert not np.any(np.abs(np.diff(x[np.isfinite(x)][:4])) > 180)
    same_x, _ = break_antimeridian(np.array([-10.0, 0.0, 10.0]), np.zeros(3))
    assert len(same_x) == 3


def test_hundreds_of_events_plot_in_seconds(events: list[Crossover], tmp_path: Path) -> None:
    many = [
        dataclasses.replace(
            e,
            time_a=e.time_a + timedelta(hours=6 * k),
            time_b=e.time_b + timedelta(hours=6 * k),
        )
        for k in range(10)
        for e in events
    ]
    assert len(many) >= 250
    t0 = time.process_time()  # CPU time: robust to a busy machine running tests in parallel
    plot_crossovers(many, tmp_path / "many.png")
    assert time.process_time() - t0 < 10.0  # about 1.5 s on a laptop
    assert png_size(tmp_path / "many.png")[0] > 1000


def test_bad_arguments(events: list[Crossover], tmp_path: Path) -> None:
    with pytest.raises(EomatchError, match="is a directory"):
        plot_crossovers(events, tmp_path)
    with pytest.raises(EomatchError, match=r"0\.\.120 minutes"):
        plot_crossovers(events, tmp_path / "x.png", minutes=-1)
    assert list(tmp_path.iterdir()) == []


def test_cli_writes_records_and_map(tmp_path: Path, events: list[Crossover]) -> None:
    png, records = tmp_path / "m.png", tmp_path / "x.csv"
    rc = main(
        [
            "crossovers",
            "--platforms",
            "S2A,LS9",
            "--start",
            "2022-05-01",
            "--end",
            "2022-05-02",
            "--plot",
            str(png),
            "--format",
            "csv",
            "-o",
            str(records),
        ]
    )
    assert rc == 0
    png_size(png)
    with records.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == len(events)
    assert colour_fraction(png, LAND_COLOR) > 0.05
