"""Bounded cost for every CLI input (issue 10 §10): configuration, special files, dates.

Each hostile input is run through the real command line in a child process with a hard
address-space limit (a regression must fail the test, not exhaust the machine) and must end as
one line on stderr with exit code 2, quickly, changing no file.
"""

from __future__ import annotations

import gc
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import pytest

from eomatch.errors import EomatchError
from eomatch.io.catalogue import MatchupCatalogue
from eomatch.io.config_files import MAX_YAML_NODES, parse_yaml
from eomatch.io.safe_files import read_regular_bytes, read_regular_text
from eomatch.timeparse import parse_time

LIMIT_BYTES = 1_500_000_000


def _limit() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (LIMIT_BYTES, LIMIT_BYTES))


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``root`` with its size and mtime (to prove nothing changed)."""
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and not p.is_symlink():
            st = p.stat()
            out[str(p.relative_to(root))] = (st.st_size, st.st_mtime_ns)
    return out


def cli(args: list[str], cwd: Path, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """``eomatch ARGS`` in a child with a 1.5 GB address-space limit and an empty user config."""
    env = {**os.environ, "EOMATCH_CONFIG_DIR": str(cwd / "no-user-config")}
    return subprocess.run(
        [sys.executable, "-m", "eomatch", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=_limit,
    )


def assert_one_line_refusal(proc: subprocess.CompletedProcess[str], *needles: str) -> str:
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def billion_laughs(levels: int = 10, width: int = 9) -> str:
    """A mapping bomb: under 1 kB, width**levels values once expanded."""
    lines = [f"a0: &a0 {{{', '.join(f'k{j}: x' for j in range(width))}}}"]
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} {{{', '.join(f'k{j}: *a{i - 1}' for j in range(width))}}}")
    lines.append(f"extra: *a{levels - 1}")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("cmd", [["config", "validate", "F"], ["--config", "F", "config", "show"]])
def test_yaml_bomb_is_refused_fast_with_one_line(tmp_path, cmd):
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(billion_laughs())
    assert bomb.stat().st_size < 1024
    before = snapshot(tmp_path)
    t = time.monotonic()
    proc = cli([str(bomb) if a == "F" else a for a in cmd], tmp_path)
    assert time.monotonic() - t < 30
    assert_one_line_refusal(proc, "bomb.yaml", "aliases are expanded")
    assert snapshot(tmp_path) == before


def test_yaml_bomb_as_user_config_is_refused_by_every_command(tmp_path):
    user = tmp_path / "no-user-config"
    user.mkdir()
    (user / "config.yaml").write_text(billion_laughs())
    proc = cli(
        ["crossovers", "--platforms", "S2A,LS9", "--start", "2022-05-01", "--end", "2022-05-02"],
        tmp_path,
    )
    assert_one_line_refusal(proc, "config.yaml", "aliases are expanded")


def test_yaml_limits_in_the_loader():
    # a small alias budget is fine (anchors for shared settings are legitimate)
    ok = parse_yaml("base: &b {max_retries: 2}\nstac_sources: {x: *b, y: *b}\n", "t")
    assert ok["stac_sources"]["y"] == {"max_retries": 2}
    with pytest.raises(EomatchError, match="aliases are expanded"):
        parse_yaml(billion_laughs(levels=7, width=8), "t")  # 8**7 = 2 M values
    assert MAX_YAML_NODES > (2 * 8) ** 4  # keys and values count: 65 536 values pass
    parse_yaml(billion_laughs(levels=4, width=8), "t")
    with pytest.raises(EomatchError, match="more than 100 aliases"):
        parse_yaml("a: &a 1\nb: [" + ", ".join(["*a"] * 101) + "]\n", "t")
    with pytest.raises(EomatchError, match="contains it"):
        parse_yaml("a: &a [*a]\n", "t")
    with pytest.raises(EomatchError, match=r"t:1: invalid YAML: nested deeper than 32"):
        parse_yaml("a: " + "[" * 5000 + "]" * 5000 + "\n", "t")
    parse_yaml("a: " + "[" * 30 + "]" * 30 + "\n", "t")
    with pytest.raises(EomatchError, match="invalid YAML value"):
        parse_yaml("a: " + "9" * 5000 + "\n", "t")


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (b"id: caf\xe9\n", "byte 7 is not valid UTF-8"),
        (b"a: " + b"[" * 100_000 + b"]" * 100_000 + b"\n", "nested deeper than 32"),
        (b"# padding\n" * 120_000, "more than the limit of 1 MiB"),
    ],
    ids=["latin1", "deep", "huge"],
)
def test_bad_config_bytes_end_in_one_line(tmp_path, content, needle):
    f = tmp_path / "bad.yaml"
    f.write_bytes(content)
    assert_one_line_refusal(cli(["config", "validate", str(f)], tmp_path), needle)


@pytest.mark.parametrize("special", ["fifo", "/dev/zero", "dir"])
def test_special_file_as_config_is_refused_without_hanging(tmp_path, special):
    if special == "fifo":
        target = tmp_path / "fifo.yaml"
        os.mkfifo(target)
        needle = "FIFO"
    elif special == "dir":
        target = tmp_path / "d.yaml"
        target.mkdir()
        needle = "directory"
    else:
        target = Path(special)
        needle = "character device"
    for args in (["config", "validate", str(target)], ["--config", str(target), "config", "show"]):
        proc = cli(args, tmp_path, timeout=30)
        assert_one_line_refusal(proc, str(target), needle)


def test_safe_file_readers(tmp_path):
    f = tmp_path / "f"
    f.write_bytes(b"abc")
    assert read_regular_bytes(f, "thing", 3) == b"abc"
    with pytest.raises(EomatchError, match="more than the limit of 2 bytes"):
        read_regular_bytes(f, "thing", 2)
    link = tmp_path / "zero"
    link.symlink_to("/dev/zero")
    with pytest.raises(EomatchError, match="character device"):
        read_regular_bytes(link, "thing", 10)
    fifo = tmp_path / "p"
    os.mkfifo(fifo)
    with pytest.raises(EomatchError, match="FIFO"):
        read_regular_text(fifo, "thing", 10)
    with pytest.raises(EomatchError, match="cannot read thing"):
        read_regular_text(tmp_path / "missing", "thing", 10)


@pytest.mark.parametrize("raw", [True, False])
def test_a_missing_file_leaves_no_cyclic_garbage(tmp_path, raw):
    """Regression: the OSError was raised as its own cause (``raise exc from exc``), a cycle
    holding its traceback's frames for the cyclic collector (``eomatch query`` met ~2 a new
    day folder: most of what its collector had to find)."""
    missing = tmp_path / "missing"
    gc.collect()
    gc.disable()
    try:
        for _ in range(50):
            with pytest.raises((OSError, EomatchError)) as caught:
                read_regular_bytes(missing, "thing", 10, raw_os_errors=raw)
            assert isinstance(caught.value, FileNotFoundError) == raw
            del caught
        assert gc.collect() == 0
    finally:
        gc.enable()


@pytest.mark.parametrize(
    "text", ["9999-12-31T23:00:00-05:00", "0001-01-01T00:00+05:00", "1800-01-01", "2300-01-01"]
)
def test_out_of_range_instants_are_one_line(text):
    with pytest.raises(EomatchError, match="outside the supported years 1900 to 2199"):
        parse_time(text, "start")


def test_instants_at_the_edges_still_parse():
    assert parse_time("1900-01-01T05:00+05:00").year == 1900
    assert parse_time("2199-12-31T23:59:59Z").year == 2199


@pytest.mark.parametrize(
    "args",
    [
        ["crossovers", "--platforms", "S2A,LS9", "--start", "0001-01-01T00:00+05:00", "--end",
         "2022-01-01"],
        ["crossovers", "--platforms", "S2A,LS9", "--start", "2022-01-01", "--end",
         "9999-12-31T23:00:00-05:00"],
        ["download", "--path", "cat", "--start-time", "0001-01-01T00:00+05:00"],
    ],
)  # fmt: skip
def test_out_of_range_dates_on_the_command_line(tmp_path, args):
    MatchupCatalogue.create(tmp_path / "cat").close()
    before = snapshot(tmp_path)
    assert_one_line_refusal(cli(args, tmp_path), "outside the supported years")
    assert snapshot(tmp_path) == before


def test_out_of_range_dates_in_a_config_file(tmp_path):
    f = tmp_path / "run.yaml"
    f.write_text("start_time: 9999-12-31T23:00:00-05:00\n")
    assert_one_line_refusal(
        cli(["config", "validate", str(f)], tmp_path), "start_time", "outside the supported"
    )


@pytest.mark.parametrize("special", ["fifo", "/dev/zero"])
def test_special_file_as_tle_file_is_refused_without_hanging(tmp_path, special):
    target = tmp_path / "tle.fifo" if special == "fifo" else Path(special)
    if special == "fifo":
        os.mkfifo(target)
    run = tmp_path / "sats.yaml"
    run.write_text(f"satellites:\n  - {{short_name: MYSAT, norad_id: 99999, tle_file: {target}}}\n")
    args = ["--config", str(run), "crossovers", "--platforms", "MYSAT,S2A", "--start",
            "2022-05-01", "--end", "2022-05-02"]  # fmt: skip
    proc = cli(args, tmp_path, timeout=30)
    assert_one_line_refusal(proc, f"TLE file {target}", "not a regular file")


@pytest.mark.parametrize("special", ["fifo", "/dev/zero"])
def test_special_file_inside_a_catalogue_is_refused_without_hanging(tmp_path, special):
    from catalogue_helpers import make_event

    root = tmp_path / "cat"
    with MatchupCatalogue.create(root) as cat:
        cat.add_event(make_event())
    item = sorted(root.glob("matchup-events-*/*/*/*/*.json"))[0]
    item.unlink()
    if special == "fifo":
        os.mkfifo(item)
    else:
        item.symlink_to(special)
    os.utime(item.parent)  # the index sees the day folder changed and re-reads it
    proc = cli(["download", "--path", str(root)], tmp_path, timeout=30)
    assert_one_line_refusal(proc, item.name, "not a regular file")
