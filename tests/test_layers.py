"""The layers stay cheap to import: the pure core, ``import eomatch`` and ``eomatch --help``.

Each case imports in a fresh interpreter (this one has loaded everything already) and reads
its ``sys.modules``. The import direction itself is checked by ``lint-imports``
(docs/design/layers.md).
"""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys

import pytest

import eomatch.core
from eomatch.cli.main import COMMANDS, build_parser

HEAVY = ("pydantic", "pydantic_settings", "cql2", "httpx", "psycopg", "pystac_client", "rich")
"""Libraries of the outer layers (settings, HTTP, database, terminal)."""


def loaded_after(code: str) -> set[str]:
    """The module names loaded by a fresh interpreter running ``code``."""
    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120
    )
    return set(json.loads(out.stdout.splitlines()[-1]))


def outer(modules: set[str], *prefixes: str) -> list[str]:
    return sorted(m for m in modules if m.split(".")[0] in HEAVY or m.startswith(tuple(prefixes)))


def test_the_pure_geodesy_module_loads_no_outer_layer():
    modules = loaded_after("import eomatch.core.geodesy")
    assert "eomatch.core.geodesy" in modules
    assert outer(modules, "eomatch.io", "eomatch.config", "eomatch.workflows") == []
    assert {m for m in modules if m.startswith("eomatch")} == {
        "eomatch",
        "eomatch._version",
        "eomatch.core",
        "eomatch.core.geodesy",
    }


@pytest.mark.parametrize(
    "name", sorted(m.name for m in pkgutil.iter_modules(eomatch.core.__path__))
)
def test_every_core_module_stays_below_config_and_io(name):
    modules = loaded_after(f"import eomatch.core.{name}")
    assert f"eomatch.core.{name}" in modules
    bad = outer(modules, "eomatch.io", "eomatch.config", "eomatch.workflows", "eomatch.context")
    assert bad == []


def test_import_eomatch_loads_a_public_name_only_when_used():
    modules = loaded_after("import eomatch")
    assert {m for m in modules if m.startswith("eomatch")} == {"eomatch", "eomatch._version"}
    modules = loaded_after("import eomatch\neomatch.SatelliteRegistry")
    assert "eomatch.core.satellites" in modules
    assert outer(modules, "eomatch.io", "eomatch.workflows") == []


def test_the_context_does_not_load_the_use_cases():
    modules = loaded_after("import eomatch.context")
    assert "eomatch.wiring" in modules
    assert [m for m in modules if m.startswith("eomatch.workflows")] == []


def subcommand_modules(modules: set[str]) -> set[str]:
    names = {f"eomatch.cli.{module}" for _, module, _ in COMMANDS}
    return names & modules


def test_top_level_help_imports_no_subcommand():
    code = (
        "from eomatch.cli.main import main\n"
        "import contextlib, io\n"
        "with contextlib.redirect_stdout(io.StringIO()) as out:\n"
        "    assert main(['--help']) == 0\n"
        "assert 'satellites' in out.getvalue()"
    )
    modules = loaded_after(code)
    assert subcommand_modules(modules) == set()
    assert outer(modules, "eomatch.io", "eomatch.config", "eomatch.core") == []
    assert "numpy" not in modules


def test_a_subcommand_imports_its_own_module_only():
    code = (
        "from eomatch.cli.main import main\n"
        "import contextlib, io\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    assert main(['satellites', '--help']) == 0"
    )
    modules = loaded_after(code)
    assert subcommand_modules(modules) == {"eomatch.cli.satellites"}
    assert [m for m in modules if m.startswith("eomatch.service")] == []


def test_commands_that_find_nothing_load_no_scipy():
    """scipy (~0.5 s of start-up) is the crossover finder's alone: reading the configuration,
    which names the finder's limits, used to load it for every command (``eomatch query
    --help`` 1.47 -> 0.92 s)."""
    code = (
        "from eomatch.cli.main import main\n"
        "import contextlib, io\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    assert main(['query', '--help']) == 0\n"
        "import eomatch.config.models, eomatch.core.crossovers"
    )
    modules = loaded_after(code)
    assert "eomatch.config.models" in modules
    assert [m for m in modules if m.split(".")[0] == "scipy"] == []


def choices(parser):
    (sub,) = (a for a in parser._actions if a.dest == "command")
    return sub


def test_the_light_command_list_matches_what_the_modules_register():
    sub = choices(build_parser())
    registered = [(a.dest, a.help) for a in sub._choices_actions]
    assert registered == [(command, text) for command, _, text in COMMANDS]


@pytest.mark.parametrize("only", ["", *sorted({module for _, module, _ in COMMANDS})])
def test_the_lazy_parser_shows_the_same_help(only):
    assert build_parser(only=only).format_help() == build_parser().format_help()


@pytest.mark.parametrize(("command", "module"), [(c, m) for c, m, _ in COMMANDS])
def test_the_module_listed_registers_the_command(command, module):
    full = choices(build_parser()).choices[command]
    lazy = choices(build_parser(only=module)).choices[command]
    assert lazy.format_help() == full.format_help()
    assert "usage: eomatch " + command in lazy.format_help()


def test_console_scripts_run_the_same_main(monkeypatch, capsys):
    from eomatch.cli import main as cli_main

    monkeypatch.setattr(sys, "argv", ["eomatch-remove", "--help"])
    with pytest.raises(SystemExit) as exc:
        cli_main.remove_script()
    assert exc.value.code == 0
    assert capsys.readouterr().out.startswith("usage: eomatch remove")
    monkeypatch.setattr(sys, "argv", ["eomatch-remove", "--no-such-option"])
    with pytest.raises(SystemExit) as exc:
        cli_main.remove_script()
    assert exc.value.code == 2
    assert capsys.readouterr().err == "eomatch: error: unrecognized arguments: --no-such-option\n"
