"""End-to-end tests of ``eomatch config init | validate | show``."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from eomatch.cli.main import main
from eomatch.config.models import RunConfig
from eomatch.io.config_files import load_config, template_text


def run(argv, capsys):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def user_dir(tmp_path, monkeypatch):
    d = tmp_path / "home" / "eomatch"
    monkeypatch.setenv("EOMATCH_CONFIG_DIR", str(d))
    return d


RUN = """
sensors:
  - {platform: S2A, collection: S2_MSI_L1C}
  - {platform: landsat-9, collection: LANDSAT_C2L1}
start_time: 2022-05-01
end_time: 2022-06-01T00:00:00Z
bbox: [-10, 35, 30, 60]
matchup_catalogue: {path: catalogue}
"""


def test_init_writes_template_to_user_config(user_dir, capsys):
    code, out, err = run(["config", "init"], capsys)
    assert code == 0, err
    target = user_dir / "config.yaml"
    assert out.strip() == f"wrote {target}"
    assert target.read_text() == template_text()
    assert target.stat().st_mode & 0o044 == 0o044
    assert sorted(p.name for p in user_dir.iterdir()) == ["config.yaml"]  # no temp files left
    # the written file is picked up as the user layer and validates
    assert load_config(None, target).model_dump() == RunConfig().model_dump()


def test_init_refuses_to_overwrite_without_force(tmp_path, user_dir, capsys):
    target = tmp_path / "sub" / "mine.yaml"
    assert run(["config", "init", "--path", str(target)], capsys)[0] == 0
    target.write_text("# my edits\n")
    code, out, err = run(["config", "init", "--path", str(target)], capsys)
    assert code == 2
    assert out == ""
    assert err.strip() == f"eomatch: error: {target} already exists (use --force to overwrite)"
    assert target.read_text() == "# my edits\n"
    code, _, _ = run(["config", "init", "--path", str(target), "--force"], capsys)
    assert code == 0
    assert target.read_text() == template_text()
    code, _, err = run(["config", "init", "--path", str(tmp_path)], capsys)
    assert code == 2
    assert "is a directory" in err


def test_validate_ok_with_summary(tmp_path, user_dir, capsys):
    cfg = tmp_path / "run.yaml"
    cfg.write_text(RUN)
    code, out, err = run(["config", "validate", str(cfg)], capsys)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == f"{cfg}: OK"
    assert (
        "  sensors: S2_MSI_L1C/Sentinel-2A (predicted), LANDSAT_C2L1/Landsat-9 (predicted)" in lines
    )
    assert "  window: 2022-05-01T00:00:00Z to 2022-06-01T00:00:00Z" in lines
    assert "  region: bbox [-10.0, 35.0, 30.0, 60.0]" in lines
    assert f"  catalogue: {tmp_path / 'catalogue'} (id matchup-catalogue)" in lines
    assert not any("not ready" in ln for ln in lines)


def test_validate_template_and_layers(tmp_path, user_dir, capsys):
    assert run(["config", "init"], capsys)[0] == 0
    tpl = tmp_path / "t.yaml"
    tpl.write_text(template_text())
    code, out, _ = run(["config", "validate", str(tpl)], capsys)
    assert code == 0
    assert out.startswith(f"{tpl}: OK\n")
    assert f"layers: {user_dir / 'config.yaml'} < {tpl}" in out
    assert "sensors: none" in out
    assert "window: not set" in out
    assert "the whole globe" in out
    assert "not ready for `eomatch find`: sensors: give at least two" in out


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "crossovers: {max_distance_km: -1}",
            "crossovers.max_distance_km: Input should be greater",
        ),
        ("sensors: [{platform: S2X, collection: S2_MSI_L1C}]", "sensors.0.platform: unknown sat"),
        (
            "sensors: [{platform: S2A, collection: NOPE}]",
            "sensors.0.collection: unknown collection",
        ),
        ("min_lat: 5\nmax_lat: 0", "max_lat: 0.0 is not above min_lat 5.0"),
        ("bbox: [0, 0, 1, 1]\nmin_lon: 0", "min_lon: cannot be combined with bbox"),
        ("platforms: S2A\ncollections: S2_MSI_L1C, S2_MSI_L2A", "collections: 2 collection(s)"),
        ("bogus: 1", "bogus: Extra inputs are not permitted"),
        ("sensors: [", "invalid YAML"),
    ],
)
def test_validate_errors_are_one_line(tmp_path, user_dir, capsys, text, message):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(text)
    code, out, err = run(["config", "validate", str(cfg)], capsys)
    assert code == 2
    assert out == ""
    assert len(err.strip().splitlines()) == 1
    assert err.startswith(f"eomatch: error: {cfg}")
    assert message in err


def test_validate_missing_file(tmp_path, user_dir, capsys):
    code, _, err = run(["config", "validate", str(tmp_path / "nope.yaml")], capsys)
    assert code == 2
    assert "config file not found" in err


def test_show_merges_layers(tmp_path, user_dir, capsys):
    user_dir.mkdir(parents=True)
    (user_dir / "config.yaml").write_text(
        "crossovers: {max_distance_km: 10}\nmatchup_catalogue: {description: mine}\n"
    )
    cfg = tmp_path / "run.yaml"
    cfg.write_text(RUN + "crossovers: {max_time_diff_s: 60}\nspace_diff_threshold: 20\n")
    for argv in (
        ["config", "show", "--config", str(cfg)],
        ["--config", str(cfg), "config", "show"],
    ):
        code, out, err = run(argv, capsys)
        assert code == 0, err
        data = yaml.safe_load(out)
        assert data["crossovers"]["max_distance_km"] == 20  # run file's legacy key wins
        assert data["crossovers"]["max_time_diff_s"] == 60
        assert data["crossovers"]["max_event_duration_s"] == 900
        assert data["matchup_catalogue"] == {
            "path": str(tmp_path / "catalogue"),
            "id": "matchup-catalogue",
            "description": "mine",
        }
        assert data["start_time"] == "2022-05-01T00:00:00Z"
        assert data["bbox"] == [-10.0, 35.0, 30.0, 60.0]
        # the printed YAML is itself a valid run file with the same content
        again = tmp_path / "again.yaml"
        again.write_text(out)
        assert (
            load_config(again, None).model_dump()
            == load_config(cfg, user_dir / "config.yaml").model_dump()
        )
    code, out, _ = run(["config", "show"], capsys)
    assert code == 0
    assert yaml.safe_load(out)["crossovers"]["max_distance_km"] == 10


def test_help_and_usage_errors(capsys):
    code, out, _ = run(["config", "--help"], capsys)
    assert code == 0
    assert "init" in out
    assert "validate" in out
    assert "show" in out
    code, _, err = run(["config"], capsys)
    assert code == 2
    assert "required" in err
    code, _, err = run(["config", "validate"], capsys)
    assert code == 2
    assert "FILE" in err
    proc = subprocess.run(
        [sys.executable, "-m", "eomatch", "config", "init", "--help"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0
    assert "--force" in proc.stdout
