"""Every number a CLI command takes is checked while parsing (issue 11 §3): a bad one is a
one-line usage error, exit 2, before the command starts a database, an API or a download.

End to end: the real ``python -m eomatch`` in a child process, with HOME and the data folder
in a temporary directory, so "nothing started" can be checked on disk (no run directory, no
cluster folder, no catalogue files) and in time (no start-up work was done).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from eomatch.cli.common import float_arg, int_arg

# (command line, the option named in the error). crossovers' numbers are checked by the core's
# CrossoverParams and query's --limit by the workflow, both before anything runs, with their
# own messages (tests/test_cli_crossovers.py, tests/test_cli_query.py).
CASES: list[tuple[list[str], str]] = [
    (["serve", "--port", "70000"], "--port"),
    (["serve", "--port", "0"], "--port"),
    (["serve", "--port", "http"], "--port"),
    (["serve", "--workers", "0"], "--workers"),
    (["serve", "--api-user=-o"], "--api-user"),
    (["serve", "--api-user", "../../x"], "--api-user"),
    (["serve", "--api-user", "a" * 40], "--api-user"),
    (["serve", "--workers", "65"], "--workers"),
    (["serve", "--internal-port", "-1"], "--internal-port"),
    (["serve", "--external-port", "65536"], "--external-port"),
    (["serve", "--db-port", "99999"], "--db-port"),
    (["db", "init", "--port", "70000"], "--port"),
    (["db", "init", "--port", "-5432"], "--port"),
    (["db", "migrate", "--db-port", "0"], "--db-port"),
    (["keys", "list", "--db-port", "1e3"], "--db-port"),
    (["ingest", "--batch-size", "0"], "--batch-size"),
    (["ingest", "--batch-size", "-1"], "--batch-size"),
    (["ingest", "--db-port", "70000"], "--db-port"),
    (["add-asset", "--db-port", "70000"], "--db-port"),
    (["download", "--concurrency", "0"], "--concurrency"),
    (["download", "--concurrency", "100000"], "--concurrency"),
    (["tle", "update", "--platforms", "S2A", "--timeout", "0"], "--timeout"),
]


def run(tmp: Path, argv: list[str]) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EOMATCH_", "PG"))}
    env |= {"HOME": str(tmp / "home"), "EOMATCH_DATA_DIR": str(tmp / "data"), "NO_COLOR": "1"}
    return subprocess.run(
        [sys.executable, "-m", "eomatch", *argv],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp,
        timeout=120,
        check=False,
    )


def extra_args(tmp: Path, command: str) -> list[str]:
    """Options that would otherwise point a command at the user's own folders."""
    return {
        "serve": ["--run-dir", str(tmp / "run")],
        "db": ["--dir", str(tmp / "cluster")],
        "ingest": ["--catalogue", str(tmp / "catalogue")],
        "download": ["--path", str(tmp / "catalogue")],
    }.get(command, [])


def check_refused(tmp: Path, stdout: str, stderr: str, option: str) -> None:
    assert stdout == ""
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert f"error: argument {option}: " in lines[0]
    assert "Traceback" not in stderr
    # nothing started, nothing written: only the folder this test made itself, still empty
    assert sorted(p.name for p in tmp.iterdir()) == ["home"]
    assert list((tmp / "home").iterdir()) == []


@pytest.mark.parametrize(("argv", "option"), CASES, ids=[" ".join(c[0]) for c in CASES])
def test_a_bad_number_is_refused_before_anything_starts(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    option: str,
) -> None:
    from eomatch.cli.main import main

    (tmp_path / "home").mkdir()
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("EOMATCH_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.chdir(tmp_path)
    assert main([*argv, *extra_args(tmp_path, argv[0])]) == 2
    out, err = capsys.readouterr()
    check_refused(tmp_path, out, err, option)


@pytest.mark.parametrize(
    ("argv", "option"),
    [(["serve", "--port", "70000"], "--port"), (["db", "init", "--port", "0"], "--port")],
)
def test_the_installed_command_refuses_at_once(
    tmp_path: Path, argv: list[str], option: str
) -> None:
    """The real process: exit 2 well before a database or an API could have started."""
    (tmp_path / "home").mkdir()
    started = time.monotonic()
    proc = run(tmp_path, [*argv, *extra_args(tmp_path, argv[0])])
    elapsed = time.monotonic() - started
    assert proc.returncode == 2, proc.stderr
    check_refused(tmp_path, proc.stdout, proc.stderr, option)
    assert elapsed < 20  # parsing only; serve starting PostgreSQL and two APIs takes longer


def test_good_numbers_parse_to_their_values() -> None:
    port = int_arg(1, 65535, "a TCP port")
    assert port("8090") == 8090
    assert port(" 1 ") == 1
    assert port("65535") == 65535
    size = float_arg(0, 5000, "a distance in km", above=True)
    assert size("0.5") == 0.5
    assert size("5000") == 5000.0
    assert float_arg(-180, 180)("-180") == -180.0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("0", "must be a TCP port (1..65535), not 0"),
        ("65536", "must be a TCP port (1..65535), not 65536"),
        ("8e3", "not a whole number: '8e3'"),
        ("", "not a whole number: ''"),
        ("9" * 5000, "not a whole number: '" + "9" * 40 + "'"),  # beyond int()'s digit limit
    ],
)
def test_int_arg_messages(text: str, message: str) -> None:
    import argparse

    with pytest.raises(argparse.ArgumentTypeError) as exc:
        int_arg(1, 65535, "a TCP port")(text)
    assert str(exc.value) == message


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--host", "0.0.0.0;evil"], "--host: '0.0.0.0;evil' is not usable in an nginx"),
        (["--run-dir", "{tmp}/run dir"], "--run-dir: '{tmp}/run dir' is not usable in an nginx"),
    ],
)
def test_serve_refuses_what_nginx_cannot_hold_before_starting(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    flags: list[str],
    message: str,
) -> None:
    """These were ValueErrors from the gateway's configuration, raised after the database and
    both APIs had started, and reported as an internal error (exit 1)."""
    from eomatch.cli.main import main

    (tmp_path / "home").mkdir()
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("EOMATCH_DATA_DIR", str(tmp_path / "data"))
    argv = ["serve", "--run-dir", str(tmp_path / "run"), *flags]
    assert main([a.replace("{tmp}", str(tmp_path)) for a in argv]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.strip() == "eomatch: error: " + message.replace("{tmp}", str(tmp_path)) + (
        " configuration"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home"]
