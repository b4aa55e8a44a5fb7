"""``pip install eomatch`` without extras: the finder works, the rest names its extra.

One venv per session (per xdist worker group), built OFFLINE from the lock file and the uv cache
that ``uv sync`` filled, with the project installed as a wheel (not editable) and none of the
extras or the dev group. ``orbitx`` (the wheel that ships the TLE archive) declares cartopy and
matplotlib as dependencies, so a real ``pip install eomatch`` still brings matplotlib and pyshp;
the fixture removes them so that the venv holds only what eomatch itself requires, which is what
proves ``find`` does not need them and ``--plot`` names its extra.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar, cast

import pytest

from eomatch.errors import EomatchError, MissingExtraError
from eomatch.extras import EXTRAS, require_extra

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "s2a-landsat9-europe.yaml"
WINDOW = ["--start", "2022-05-01", "--end", "2022-05-02"]
OPTIONAL = (
    *("psycopg", "pypgstac", "stac_fastapi", "fastapi", "uvicorn", "asyncpg", "matplotlib"),
    *("rasterio", "rioxarray", "zarr"),
)

F = TypeVar("F", bound=Callable[..., Any])
PLOT_DISTS = ("matplotlib", "pyshp")

BASE_MODULES = (
    "eomatch.find_and_catalogue",
    "eomatch.mu_stac",
    "eomatch.add_asset",
    "eomatch.manage_products",
    *(f"eomatch.cli.{m}" for m in ("assets", "config", "crossovers", "find", "products", "query")),
    *(f"eomatch.cli.{m}" for m in ("satellites", "tle")),
)
NOT_ITEMS = ("collection.json", "catalog.json")


# One worker builds the venv for all of them; ~35 s in all (the example's find: 10-18 s).
def bare(test: F) -> F:
    """A test in the bare venv: all on one xdist worker (one venv), and slow."""
    return cast(F, pytest.mark.slow(pytest.mark.xdist_group("bare-venv")(test)))


def _uv() -> str | None:
    """uv as ``uv run`` exports it, else on PATH, else the project's bootstrap copy."""
    for candidate in (os.environ.get("UV"), shutil.which("uv"), str(ROOT / ".tools/bin/uv")):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def _clean_env(home: Path) -> dict[str, str]:
    """No user configuration or database settings leak into the commands under test."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("EOMATCH_", "PG", "VIRTUAL_ENV", "UV_PROJECT", "PYTHON"))
    }
    env.update(
        HOME=str(home),
        XDG_CONFIG_HOME=str(home / "config"),
        XDG_CACHE_HOME=str(home / "cache"),
        XDG_DATA_HOME=str(home / "data"),
        NO_COLOR="1",
        COLUMNS="10000",  # rich would wrap long paths at 80
    )
    return env


class BareVenv:
    """The venv, and how to run its ``eomatch`` and ``python`` away from the source tree."""

    def __init__(self, root: Path, home: Path) -> None:
        self.root, self.home = root, home
        self.env = _clean_env(home)

    def run(self, *argv: str | Path, exe: str = "eomatch") -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.root / "bin" / exe), *map(str, argv)],
            capture_output=True,
            text=True,
            env=self.env,
            cwd=self.home,  # not the checkout: the installed wheel is what runs
            timeout=300,
        )


@pytest.fixture(scope="session")
def bare_venv(tmp_path_factory: pytest.TempPathFactory) -> BareVenv:
    uv = _uv()
    if uv is None:
        pytest.skip("uv not found (UV, PATH, .tools/bin/uv): cannot build a venv offline")
    base = tmp_path_factory.mktemp("bare")
    home = base / "home"
    home.mkdir()
    venv = BareVenv(base / "venv", home)
    # uv keeps the caller's HOME/XDG_CACHE_HOME: its cache is where `uv sync` left the wheels.
    uv_env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
    uv_env.update(UV_OFFLINE="1", UV_PYTHON_DOWNLOADS="never")
    sync = subprocess.run(
        [
            uv,
            "sync",
            "--project",
            str(ROOT),
            "--frozen",  # the lock's versions: exactly what the cache holds
            "--offline",
            "--no-dev",  # no dev group, so none of the extras it pulls in
            "--no-editable",  # the built wheel, as pip would install it
            "--python",
            sys.executable,
            "--quiet",
        ],
        capture_output=True,
        text=True,
        env={**uv_env, "UV_PROJECT_ENVIRONMENT": str(venv.root)},
        timeout=600,
    )
    assert sync.returncode == 0, f"offline install of the bare package failed:\n{sync.stderr}"
    drop = subprocess.run(
        [uv, "pip", "uninstall", "--python", str(venv.root / "bin" / "python"), *PLOT_DISTS],
        capture_output=True,
        text=True,
        env=uv_env,
        timeout=120,
    )
    assert drop.returncode == 0, drop.stderr
    return venv


@bare
def test_bare_venv_has_no_extras_and_runs_the_installed_wheel(bare_venv: BareVenv) -> None:
    probe = (
        "import importlib.util as u, eomatch; "
        # the seed documents' Python API and every base command's module import without extras
        f"import {', '.join(BASE_MODULES)}; "
        f"print(eomatch.__file__); print([m for m in {OPTIONAL!r} if u.find_spec(m)])"
    )
    proc = bare_venv.run("-c", probe, exe="python")
    assert proc.returncode == 0, proc.stderr
    where, present = proc.stdout.splitlines()
    assert str(bare_venv.root) in where  # the wheel in the venv, not the source tree
    assert present == "[]"


@bare
def test_bare_find_runs_the_example(bare_venv: BareVenv, tmp_path: Path) -> None:
    out = tmp_path / "catalogue"
    proc = bare_venv.run("find", "--config", EXAMPLE, "--path", out)
    assert proc.returncode == 0, proc.stderr
    assert f"catalogue: {out / 'catalog.json'}" in proc.stdout
    new = re.search(r"new in the catalogue: (\d+) event\(s\), (\d+) matchup\(s\)", proc.stdout)
    assert new, proc.stdout
    collections = [p for p in out.glob("*-vs-*") if not p.name.startswith("matchup-events-")]
    items = [p for c in collections for p in c.rglob("*.json") if p.name not in NOT_ITEMS]
    assert len(items) == int(new[2]) > 0  # every matchup the summary counts is on disk


@bare
@pytest.mark.parametrize(
    ("argv", "extra"),
    [
        (["serve"], "service"),
        (["db", "status"], "service"),
        (["keys", "list"], "service"),
        (["ingest", "CATALOGUE"], "service"),
        (["find", "--config", EXAMPLE, "--path", "CATALOGUE", "--plot", "map.png"], "plot"),
        (["crossovers", "--platforms", "S2A,LS9", *WINDOW, "--plot", "m.png"], "plot"),
        (["dataset", "MU", "--catalogue", "CATALOGUE", "--output", "mu.nc"], "data"),
    ],
    ids=["serve", "db-status", "keys-list", "ingest", "find-plot", "crossovers-plot", "dataset"],
)
def test_missing_extra_is_one_line_with_exit_2(
    bare_venv: BareVenv, tmp_path: Path, argv: list[str | Path], extra: str
) -> None:
    catalogue = tmp_path / "catalogue"
    argv = [str(catalogue) if a == "CATALOGUE" else a for a in argv]
    proc = bare_venv.run(*argv)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    command = " ".join(str(a) for a in argv[:1])
    assert lines[0].startswith(f"eomatch: error: eomatch {command}"), lines[0]
    assert f"needs the {extra} extra: pip install 'eomatch[{extra}]'" in lines[0]
    assert not catalogue.exists()  # checked before any work, nothing written
    assert not list(bare_venv.home.glob("*.png"))


@bare
def test_python_import_behind_an_extra_names_it(bare_venv: BareVenv) -> None:
    for module, extra in (("eomatch.service.app", "service"), ("eomatch.viz.maps", "plot")):
        proc = bare_venv.run("-c", f"import {module}", exe="python")
        assert proc.returncode == 1
        last = proc.stderr.strip().splitlines()[-1]
        assert last.startswith("eomatch.errors.MissingExtraError: "), last
        assert f"pip install 'eomatch[{extra}]'" in last


# In-process checks of the helper (no venv needed).


def test_require_extra_raises_an_import_error_that_the_cli_reports(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(EXTRAS, "demo", ("json", "eomatch_no_such_module"))
    with pytest.raises(MissingExtraError) as info:
        require_extra("demo", "the demo")
    exc = info.value
    assert isinstance(exc, ImportError)
    assert isinstance(exc, EomatchError)
    assert str(exc) == (
        "the demo needs the demo extra: pip install 'eomatch[demo]' "
        "(eomatch_no_such_module is not installed)"
    )
    assert str(exc.for_feature("eomatch demo")).startswith("eomatch demo needs the demo extra")
    require_extra("demo", "the demo", modules=("json",))  # only the subset asked for
    monkeypatch.setitem(sys.modules, "json", None)  # an import blocked on purpose counts too
    with pytest.raises(MissingExtraError, match="json is not installed"):
        require_extra("demo", "the demo", modules=("json",))


def test_extras_table_matches_pyproject() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    optional = project["optional-dependencies"]
    assert set(optional) == {*EXTRAS, "all"}
    assert optional["all"] == [f"eomatch[{','.join(EXTRAS)}]"]
    base = " ".join(project["dependencies"]).lower()
    for extra, requirements in optional.items():
        for requirement in requirements:
            if extra != "all":
                name = requirement.split("[")[0].split("=")[0].split(">")[0].lower()
                assert name not in base, f"{name} is in the base dependencies and in [{extra}]"
