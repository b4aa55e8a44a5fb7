"""CLI behaviour of the catalogue commands on a real (predicted) catalogue."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from eomatch.cli.main import main

RUN = (
    "sensors:\n"
    "  - {platform: S2A, collection: S2_MSI_L1C}\n"
    "  - {platform: LS9, collection: LANDSAT_C2L1}\n"
    "start_time: 2022-05-06T12:00:00Z\nend_time: 2022-05-06T13:30:00Z\n"
    "bbox: [-40, 40, 0, 70]\n"
)


@pytest.fixture(scope="module")
def predicted_catalogue(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("pred")
    cfg = tmp / "run.yaml"
    cfg.write_text(RUN + "matchup_catalogue: {path: cat}\n")
    assert main(["find", "--config", str(cfg)]) == 0
    return tmp / "cat"


def _copy(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


def test_corrupt_item_named_and_skippable(predicted_catalogue, tmp_path, capsys):
    root = _copy(predicted_catalogue, tmp_path / "cat")
    victim = next((root / "S2_MSI_L1C").rglob("*_PRED.json"))
    victim.write_text('{"type": "Feature", "id": ')  # truncated by hand
    os.utime(victim.parent, None)
    capsys.readouterr()
    assert main(["remove", "--path", str(root)]) == 2
    err = capsys.readouterr().err
    assert victim.name in err
    assert len(err.strip().splitlines()) == 1
    assert main(["remove", "--path", str(root), "--skip-invalid"]) == 0


def test_catalogue_has_events_and_relative_catalog_links(predicted_catalogue):
    items = sorted(p for p in predicted_catalogue.rglob("*.json"))
    assert any("matchup-events-" in str(p) for p in items)
    catalog = json.loads((predicted_catalogue / "catalog.json").read_text())
    assert catalog["type"] == "Catalog"
    assert all(link["href"].startswith("./") for link in catalog["links"])


def test_find_rejects_incomplete_config(tmp_path, capsys):
    cfg = tmp_path / "run.yaml"
    cfg.write_text("sensors:\n  - {platform: S2A, collection: S2_MSI_L1C}\n")
    assert main(["find", "--config", str(cfg), "--path", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err
    assert "not ready for find" in err
    assert not (tmp_path / "c").exists()


def test_find_rejects_bad_plot_name(tmp_path, capsys):
    assert main(["find", "--plot", str(tmp_path / "map.jpg")]) == 2
    assert "--plot must name a .png" in capsys.readouterr().err


def test_download_missing_catalogue(tmp_path, capsys):
    assert main(["download", "--path", str(tmp_path / "nothing")]) == 2
    assert "no matchup catalogue here" in capsys.readouterr().err


def test_find_plot_draws_matchup_footprints(tmp_path, capsys):
    from PIL import Image

    cfg = tmp_path / "run.yaml"
    cfg.write_text(RUN)
    png = tmp_path / "m.png"
    assert (
        main(["find", "--config", str(cfg), "--path", str(tmp_path / "c"), "--plot", str(png)]) == 0
    )
    assert f"map: {png}" in " ".join(capsys.readouterr().out.split())
    with Image.open(png) as img:
        assert img.width > 1000
    # collocation regions are filled with translucent purple over land/ocean; none without them
    assert _purple_share(png) > 0.001
    from eomatch.viz.footprints import plot_matchups

    plot_matchups([], tmp_path / "empty.png")
    assert _purple_share(tmp_path / "empty.png") == 0


def _purple_share(png: Path) -> float:
    from PIL import Image

    with Image.open(png) as img:
        px = np.asarray(img.convert("RGB")).reshape(-1, 3).astype(int)
    return float(((px[:, 0] > px[:, 1] + 25) & (px[:, 2] > px[:, 1] + 25)).mean())


def test_plot_matchups_without_matchups(tmp_path):
    from eomatch.viz.footprints import plot_matchups

    plot_matchups([], tmp_path / "empty.png")
    assert (tmp_path / "empty.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_unreachable_stac_source_one_line_and_nothing_written(tmp_path, capsys):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = tmp_path / "run.yaml"
    cfg.write_text(
        RUN.replace("collection: S2_MSI_L1C}", "collection: S2_MSI_L1C, source: stac}").replace(
            "collection: LANDSAT_C2L1}", "collection: LANDSAT_C2L1, source: stac}"
        )
        + f"stac_sources:\n  es: {{url: 'http://127.0.0.1:{port}/', max_retries: 1}}\n"
        + "matchup_catalogue: {path: cat}\n"
    )
    assert main(["find", "--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert f"STAC API http://127.0.0.1:{port}/ is unreachable" in err
    assert len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "cat").exists()


def test_stac_collection_mapping_defaults_to_our_id():
    from eomatch.config.models import RunConfig
    from eomatch.wiring import build_registry
    from eomatch.workflows.find import _sources

    cfg = RunConfig.model_validate(
        {
            "sensors": [
                {"platform": "S2A", "collection": "S2_MSI_L1C", "source": "stac"},
                {"platform": "LS9", "collection": "LANDSAT_C2L1", "source": "stac"},
            ],
            "stac_sources": {
                "es": {"url": "http://x.test/", "collections": {"LANDSAT_C2L1": "landsat-c2-l1"}}
            },
        }
    )
    sensors = cfg.resolve_sensors(build_registry(cfg))
    sources = _sources(sensors)
    by_collection = {k.collection: (k, src) for k, src in sources.items()}
    s2_key, s2 = by_collection["S2_MSI_L1C"]
    ls_key, ls = by_collection["LANDSAT_C2L1"]
    assert s2 is ls  # one client per configured source
    assert s2.provider_collection(s2_key) == "S2_MSI_L1C"
    assert ls.provider_collection(ls_key) == "landsat-c2-l1"


def test_get_events_accepts_the_documented_time_forms(predicted_catalogue):
    """Regression: docs/catalogue.md passes ISO text; it once raised AttributeError."""
    from datetime import UTC, date, datetime

    from eomatch.errors import EomatchError
    from eomatch.io.catalogue import MatchupCatalogue

    with MatchupCatalogue.open(predicted_catalogue) as cat:
        everything = cat.get_events()
        assert everything
        first = min(e.start for e in everything)
        forms = [first.strftime("%Y-%m-%dT%H:%M:%SZ"), first, first.replace(tzinfo=None)]
        ids = [[e.id for e in cat.get_events(start_time=f)] for f in forms]
        assert ids[0] == ids[1] == ids[2] == [e.id for e in everything]
        assert cat.get_events(start_time=date(2022, 5, 7)) == []
        assert cat.get_events(stop_time=datetime(2022, 5, 5, tzinfo=UTC)) == []
        with pytest.raises(EomatchError, match="not an ISO 8601"):
            cat.get_events(start_time="tomorrow")
