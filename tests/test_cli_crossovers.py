"""End-to-end tests of ``eomatch crossovers`` and the top-level command."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from eomatch import __version__
from eomatch.cli.main import main
from eomatch.core.crossovers import Crossover
from eomatch.io.tle_store import shipped_tle_dir

WINDOW = ["--start", "2022-05-01", "--end", "2022-05-02"]


def run(argv, capsys):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_version_and_help_via_console_script():
    proc = subprocess.run(
        [sys.executable, "-m", "eomatch", "--version"], capture_output=True, text=True, check=True
    )
    assert proc.stdout.strip() == f"eomatch {__version__}"
    for sub in ([], ["crossovers"], ["satellites"], ["tle"]):
        proc = subprocess.run(
            [sys.executable, "-m", "eomatch", *sub, "--help"], capture_output=True, text=True
        )
        assert proc.returncode == 0, proc.stderr
        assert "usage: eomatch" in proc.stdout


@pytest.mark.parametrize("fmt", ["csv", "json", "geojson", "table"])
def test_formats_to_file(tmp_path, capsys, fmt):
    out = tmp_path / f"x.{fmt}"
    code, stdout, _ = run(
        ["crossovers", "--platforms", "S2A,LS9", *WINDOW, "--format", fmt, "-o", str(out)], capsys
    )
    assert code == 0
    assert stdout == ""
    text = out.read_text()
    if fmt == "csv":
        rows = list(csv.DictReader(text.splitlines()))
        assert list(rows[0]) == list(Crossover.FIELDS)
        assert len(rows) == 29
        assert {r["platform_a"] for r in rows} == {"LS9"}
        assert all(float(r["distance_km"]) <= 100 for r in rows)
        assert all(abs(int(r["dt_s"])) <= 1800 for r in rows)
        assert all(r["time_a"].endswith("Z") and len(r["time_a"]) == 20 for r in rows)
    elif fmt == "json":
        data = json.loads(text)
        assert len(data) == 29
        assert set(data[0]) == set(Crossover.FIELDS)
    elif fmt == "geojson":
        data = json.loads(text)
        assert data["type"] == "FeatureCollection"
        assert len(data["features"]) == 29
        f = data["features"][0]
        assert f["geometry"]["type"] == "MultiPoint"
        assert f["geometry"]["coordinates"][0] == [
            round(f["properties"]["lon_a"], 6),
            round(f["properties"]["lat_a"], 6),
        ]
    else:
        assert "29 crossover event(s)" in text


def test_csv_to_stdout_matches_python_api(capsys):
    from eomatch import find_crossovers

    code, out, _ = run(["crossovers", "--platforms", "LS9,S2A", *WINDOW, "--format", "csv"], capsys)
    assert code == 0
    rows = list(csv.DictReader(out.splitlines()))
    api = [e.as_record() for e in find_crossovers(["S2A", "LS9"], "2022-05-01", "2022-05-02")]
    assert [{k: str(v) for k, v in r.items()} for r in api] == rows


def test_three_platforms_compute_every_pair(capsys):
    code, out, _ = run(
        ["crossovers", "--platforms", "S2A,LS9,Sentinel-3A", *WINDOW, "--format", "json"], capsys
    )
    assert code == 0
    pairs = {(r["platform_a"], r["platform_b"]) for r in json.loads(out)}
    assert pairs == {("LS9", "S2A"), ("LS9", "S3A"), ("S2A", "S3A")}


def test_filters_keep_exactly_the_matching_subset(capsys):
    from eomatch.core.geodesy import midpoint
    from eomatch.core.sun import solar_elevation_deg

    base = ["crossovers", "--platforms", "S2A,LS9", "--start", "2022-05-01", "--end", "2022-05-04"]

    def events(*extra):
        code, out, _ = run([*base, "--format", "json", *extra], capsys)
        assert code == 0
        return json.loads(out)

    def mid(r):
        lat, lon = midpoint(
            np.array([r["lat_a"]]),
            np.array([r["lon_a"]]),
            np.array([r["lat_b"]]),
            np.array([r["lon_b"]]),
        )
        return float(lat[0]), float(lon[0])

    def key(r):
        return (r["time_a"], r["start_a"])

    everything = events()
    by_key = {key(r): r for r in everything}
    cases = {
        "polar": (["--max-lat-abs", "70"], lambda r: abs(mid(r)[0]) <= 70),
        "box": (["--bbox", "90", "60", "-90", "90"],
                lambda r: mid(r)[0] >= 60 and (mid(r)[1] >= 90 or mid(r)[1] <= -90)),
        "day": (["--daylight-only"], lambda r: solar_elevation_deg(
            np.array([(_ts(r["time_a"]) + _ts(r["time_b"])) / 2]),
            np.array([mid(r)[0]]), np.array([mid(r)[1]]))[0] > 0),
    }  # fmt: skip
    for name, (extra, predicate) in cases.items():
        kept = events(*extra)
        expected = [r for r in everything if predicate(r)]
        assert 0 < len(kept) < len(everything), name
        assert [key(r) for r in kept] == [key(r) for r in expected], name
        assert all(by_key[key(r)] == r for r in kept), name


def _ts(text: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


@pytest.mark.parametrize("lat", [-60.0, 0.0, 23.44, 45.0, 70.0])
def test_solar_elevation_at_solstice_noon_and_midnight(lat):
    from eomatch.core.sun import solar_elevation_deg

    noon = np.array([1655812800.0 + 110])  # 2022-06-21 12:01:50 UTC ~ solar noon at 0 deg E
    el = solar_elevation_deg(noon, np.array([lat]), np.array([0.0]))[0]
    assert el == pytest.approx(90 - abs(lat - 23.44), abs=0.1)
    midnight = noon - 43200
    el_night = solar_elevation_deg(midnight, np.array([lat]), np.array([0.0]))[0]
    # At midnight the Sun is below the horizon by 90 - (lat + dec) except in polar day.
    assert (
        el_night == pytest.approx(-(90 - abs(lat + 23.44)), abs=0.1)
        if lat < 66.56
        else el_night > 0
    )


BAD = [
    (["--platforms", "S2A,NOPE", *WINDOW], "unknown satellite 'NOPE'"),
    (["--platforms", "S2A", *WINDOW], "at least two"),
    (["--platforms", "S2A,LS9", "--start", "2022-05-02", "--end", "2022-05-01"], "inverted"),
    (["--platforms", "S2A,LS9", "--start", "yesterday", "--end", "2022-05-01"], "not an ISO 8601"),
    (["--platforms", "S2A,LS9", *WINDOW, "--max-distance-km", "-5"], "in (0, 5000]"),
    (["--platforms", "S2A,LS9", *WINDOW, "--max-time-diff-s", "-1"], "within 0..259200 s"),
    (["--platforms", "S2A,LS9", *WINDOW, "--max-distance-km", "20000"], "in (0, 5000]"),
    (["--platforms", "S2A,LS9", *WINDOW, "--max-distance-km", "nan"], "in (0, 5000]"),
    (["--platforms", "S2A,LS9", *WINDOW, "--max-time-diff-s", "10000000"], "(3 days)"),
    (["--platforms", "S2A,LS9", *WINDOW, "--max-event-duration-s", "10000000"], "1..86400 s"),
    (["--platforms", "S2A,LS9", *WINDOW, "--bbox", "0", "50", "10", "40"], "south <= north"),
    (["--platforms", "S2A,LS9", "--start", "2024-01-01", "--end", "2024-01-02"],
     "S2A: element sets cover"),
    (["--platforms", "S2A,LS9", *WINDOW, "--max-distance-km", "abc"], "invalid float value"),
    (["--platforms", "S2A,LS9", *WINDOW, "--format", "xml"], "invalid choice"),
]  # fmt: skip


@pytest.mark.parametrize(("args", "message"), BAD)
def test_bad_input_one_line_exit_2_nothing_written(tmp_path, capsys, args, message):
    out = tmp_path / "out.csv"
    png = tmp_path / "map.png"
    extra = ["-o", str(out), "--plot", str(png)]
    if "--format" not in args:
        extra += ["--format", "csv"]
    code = main(["crossovers", *args, *extra])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err
    assert len(err.strip().splitlines()) == 1, err
    assert not out.exists()
    assert not png.exists()
    assert list(tmp_path.iterdir()) == []


def test_malformed_tle_dir_names_file_and_line(tmp_path, capsys):
    tdir = tmp_path / "tles"
    tdir.mkdir()
    src = (shipped_tle_dir() / "TLEset_S2A.txt").read_text().splitlines()[:6]
    src[5] = src[5][:68] + str((int(src[5][68]) + 1) % 10)
    (tdir / "mine.txt").write_text("\n".join(src) + "\n")
    code, _, err = run(
        ["crossovers", "--platforms", "S2A,LS9", *WINDOW, "--tle-dir", str(tdir)], capsys
    )
    assert code == 2
    assert f"{tdir / 'mine.txt'}:6: line 2 checksum" in err


def test_stale_window_allowed_with_flag(capsys):
    args = ["crossovers", "--platforms", "S2A,LS9", "--start", "2023-06-01", "--end", "2023-06-02"]
    code, _, err = run([*args, "--format", "csv"], capsys)
    assert code == 2
    assert "reaches more than 3 days beyond" in err
    code, out, _ = run([*args, "--format", "csv", "--allow-stale"], capsys)
    assert code == 0
    assert out.startswith("platform_a,")


def test_user_satellite_from_config(tmp_path, capsys):
    # A "new" satellite: ISS element sets under another name and number (config-only, no code).
    lines = (shipped_tle_dir() / "TLEset_EMIT.txt").read_text().splitlines()
    tle = []
    for i in range(0, 3 * 400, 3):
        _name, l1, l2 = lines[i : i + 3]
        tle.append("MYSAT")
        for ln in (l1, l2):
            body = ln[:2] + "99999" + ln[7:68]
            total = sum(int(c) if c.isdigit() else (1 if c == "-" else 0) for c in body)
            tle.append(body + str(total % 10))
    (tmp_path / "mysat.tle").write_text("\n".join(tle) + "\n")
    first_epoch = lines[1][18:32]
    assert first_epoch.startswith("15")
    cfg = tmp_path / "eomatch.yaml"
    cfg.write_text(
        "satellites:\n"
        "  - short_name: MYSAT\n"
        "    norad_id: 99999\n"
        "    tle_file: mysat.tle\n"
        "    aliases: [my-satellite]\n"
        "    sensors: [{name: CAM, swath_km: 50}]\n"
    )
    args = ["crossovers", "--config", str(cfg), "--platforms", "my-satellite,ISS",
            "--start", "2015-01-02", "--end", "2015-01-03", "--format", "json",
            "--max-distance-km", "10", "--max-time-diff-s", "5"]  # fmt: skip
    code, out, err = run(args, capsys)
    assert code == 0, err
    events = json.loads(out)
    # Identical orbits: they are matched all the time, so the run is cut into 900 s events.
    assert len(events) == 96
    assert {(e["platform_a"], e["platform_b"]) for e in events} == {("ISS", "MYSAT")}
    assert all(e["distance_km"] < 1e-6 and e["dt_s"] == 0 for e in events)


@pytest.mark.parametrize(
    ("yaml_text", "message"),
    [
        ("satellites: [{short_name: X}]", "satellites.0.norad_id: Field required"),
        ("satellites: [{short_name: X, norad_id: abc}]", "satellites.0.norad_id"),
        ("unknown_key: 1", "unknown_key: Extra inputs are not permitted"),
        ("satellites: [", "invalid YAML"),
        ("- a\n- b", "top level must be a mapping"),
    ],
)
def test_bad_config_one_line(tmp_path, capsys, yaml_text, message):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml_text)
    code, _, err = run(
        ["crossovers", "--config", str(cfg), "--platforms", "S2A,LS9", *WINDOW], capsys
    )
    assert code == 2
    assert message in err
    assert str(cfg) in err
    assert len(err.strip().splitlines()) == 1


def test_satellites_command_lists_registry(capsys):
    code, out, _ = run(["satellites"], capsys)
    assert code == 0
    for name in ("S2A", "LS9", "SARAL", "ISS", "2015-06-23"):
        assert name in out


def test_global_options_before_or_after_subcommand(tmp_path, capsys):
    from eomatch.cli.main import build_parser

    parser = build_parser()
    assert parser.parse_args(["-v", "satellites"]).verbose is True
    assert parser.parse_args(["satellites", "-v"]).verbose is True
    assert parser.parse_args(["satellites"]).verbose is False
    cfg = tmp_path / "c.yaml"
    assert parser.parse_args(["--config", str(cfg), "satellites"]).config == cfg
    assert parser.parse_args(["satellites", "--config", str(cfg)]).config == cfg


def test_user_config_file_is_layered_under_config_flag(tmp_path, monkeypatch, capsys):
    cfg_dir = tmp_path / "home-config"
    cfg_dir.mkdir()
    (cfg_dir / "config.yaml").write_text(
        "satellites:\n  - {short_name: USERSAT, norad_id: 25544, aliases: [from-user-file]}\n"
    )
    monkeypatch.setenv("EOMATCH_CONFIG_DIR", str(cfg_dir))
    code, out, _ = run(["satellites"], capsys)
    assert code == 0
    assert "USERSAT" in out
    # the alias resolves (it has no TLE source of its own, which the error names)
    code, _, err = run(["crossovers", "--platforms", "from-user-file,S2A", *WINDOW], capsys)
    assert code == 2
    assert "no TLEs for USERSAT (NORAD 25544)" in err
    over = tmp_path / "run.yaml"
    over.write_text("satellites:\n  - {short_name: RUNSAT, norad_id: 25544}\n")
    code, out, _ = run(["satellites", "--config", str(over)], capsys)
    # lists are replaced by the later layer, not appended
    assert code == 0
    assert "RUNSAT" in out
    assert "USERSAT" not in out


def test_written_files_are_world_readable(tmp_path, capsys):
    out = tmp_path / "x.csv"
    code, _, _ = run(
        ["crossovers", "--platforms", "S2A,LS9", *WINDOW, "--format", "csv", "-o", str(out)], capsys
    )
    assert code == 0
    assert out.stat().st_mode & 0o044 == 0o044


@pytest.mark.parametrize(
    ("script", "words"),
    [
        ("eomatch-find", "usage: eomatch find"),
        ("eomatch-download", "usage: eomatch download"),
        ("eomatch-remove", "usage: eomatch remove"),
    ],
)
def test_seed_compatible_scripts_run_the_same_commands(script, words):
    exe = Path(sys.executable).parent / script
    assert exe.is_file(), f"{script} is not installed"
    proc = subprocess.run([str(exe), "--help"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert words in proc.stdout
    bad = subprocess.run([str(exe), "--no-such-flag"], capture_output=True, text=True)
    assert bad.returncode == 2
    assert "unrecognized arguments" in bad.stderr
