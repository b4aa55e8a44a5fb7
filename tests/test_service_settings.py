"""Settings per concern (issue #11 §5): every ``EOMATCH_*`` variable is read by one settings
class, a bad value is one line naming it (never a traceback), ``create_app(settings)`` reads
nothing else from the environment, and docs/service.md documents every variable."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from eomatch.config.settings import (
    ApiSettings,
    BrowserSettings,
    Settings,
    read_settings,
)
from eomatch.errors import BrowserBuildError, ConfigError
from eomatch.io.pg_conn import DbSettings

ROOT = Path(__file__).resolve().parents[1]

BAD = [
    ("EOMATCH_API_POOL_SIZE", "ten", ApiSettings),
    ("EOMATCH_API_POOL_SIZE", "0", ApiSettings),
    ("EOMATCH_API_POOL_SIZE", "1e9", ApiSettings),
    ("EOMATCH_API_MODE", "both", ApiSettings),
    ("EOMATCH_DB_WAIT", "-1", ApiSettings),
    ("EOMATCH_DB_WAIT", "soon", ApiSettings),
    ("EOMATCH_PUBLIC_URL", "https://catalogue.example.org/stac/", ApiSettings),
    ("PGPORT", "fivefourthreetwo", DbSettings),
    ("EOMATCH_TLE_DIRS", "not json", Settings),
]


@pytest.mark.parametrize(("var", "value", "cls"), BAD)
def test_a_bad_value_is_one_line_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, var: str, value: str, cls: type
) -> None:
    monkeypatch.setenv(var, value)
    with pytest.raises(ConfigError) as err:
        read_settings(cls)
    text = str(err.value)
    assert text.startswith(var), text
    assert "\n" not in text, text


def test_good_values_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    for var, value in {
        "EOMATCH_API_MODE": "external",
        "EOMATCH_API_POOL_SIZE": "3",
        "EOMATCH_API_DB_USER": "someone",
        "EOMATCH_PUBLIC_URL": " https://Catalogue.example.org:8443 ",
        "EOMATCH_DB_WAIT": "2.5",
    }.items():
        monkeypatch.setenv(var, value)
    got = read_settings(ApiSettings)
    assert (got.api_mode, got.api_pool_size, got.api_db_user, got.db_wait) == (
        "external",
        3,
        "someone",
        2.5,
    )
    assert got.origin == ("https", "catalogue.example.org:8443")
    monkeypatch.setenv("EOMATCH_BROWSER_DIST", "")
    monkeypatch.setenv("EOMATCH_CATALOG_URL", "https://c.example.org/external/")
    browser = read_settings(BrowserSettings)
    assert browser.browser_dist is None
    assert browser.catalog_url == "https://c.example.org/external/"


def test_create_app_takes_its_settings_and_reads_no_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from eomatch.service.app import create_app

    monkeypatch.setenv("EOMATCH_API_MODE", "internal")
    monkeypatch.setenv("EOMATCH_PUBLIC_URL", "ftp://not-a-public-url")
    monkeypatch.setenv("EOMATCH_API_POOL_SIZE", "ten")
    settings = ApiSettings(
        api_mode="external", api_pool_size=3, api_db_user=None, public_url="", db_wait=1
    )
    app = create_app(settings, db=DbSettings(host="127.0.0.1", port=1))
    assert app.state.eomatch_mode == "external"
    with pytest.raises(ConfigError, match="EOMATCH_PUBLIC_URL"):
        create_app()
    monkeypatch.delenv("EOMATCH_PUBLIC_URL")
    with pytest.raises(ConfigError, match=r"^EOMATCH_API_POOL_SIZE='ten'"):
        create_app()


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("EOMATCH_API_POOL_SIZE", "ten"),
        ("EOMATCH_API_MODE", "both"),
        ("EOMATCH_DB_WAIT", "-5"),
        ("PGPORT", "x"),
    ],
)
def test_a_bad_value_stops_the_uvicorn_factory_with_one_line(var: str, value: str) -> None:
    """What the stack, compose and systemd run: ``uvicorn eomatch.service.serving:create_app``."""
    from eomatch.service.stack import api_command, free_port

    env = {k: v for k, v in os.environ.items() if not k.startswith(("EOMATCH_", "PG"))}
    env[var] = value
    proc = subprocess.run(
        api_command(free_port()), env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode != 0
    out = (proc.stdout + proc.stderr).strip()
    assert "Traceback" not in out, out
    # the last line says it all (stac-fastapi may warn about its own defaults before)
    assert out.splitlines()[-1].startswith(f"eomatch API: {var}="), out
    assert sum(var in line for line in out.splitlines()) == 1, out


def test_a_browser_dist_without_index_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from eomatch.service.browser import browser_dist, main

    monkeypatch.setenv("EOMATCH_BROWSER_DIST", str(tmp_path))
    with pytest.raises(BrowserBuildError, match="EOMATCH_BROWSER_DIST"):
        browser_dist()
    (tmp_path / "index.html").write_text("<html></html>")
    assert browser_dist() == tmp_path
    # the install command's default catalogue URL comes from EOMATCH_CATALOG_URL
    monkeypatch.setenv("EOMATCH_CATALOG_URL", "https://c.example.org/external/")
    dest = tmp_path / "published"
    assert main(["install", str(dest)]) == 0
    assert "https://c.example.org/external/" in (dest / "runtime" / "config.js").read_text()


def _documented() -> set[str]:
    return set(re.findall(r"`(EOMATCH_[A-Z0-9_]+)`", (ROOT / "docs" / "service.md").read_text()))


def test_every_settings_field_is_documented() -> None:
    documented = _documented()
    for cls in (Settings, ApiSettings, BrowserSettings):
        for field in cls.model_fields:
            assert f"EOMATCH_{field.upper()}" in documented, (cls.__name__, field)


def test_every_variable_the_code_names_is_documented() -> None:
    """Any ``EOMATCH_*`` name in the sources (settings, CLI help, role passwords, ...)."""
    named: set[str] = set()
    for path in (ROOT / "src" / "eomatch").rglob("*.py"):
        named |= set(re.findall(r"\bEOMATCH_[A-Z][A-Z0-9_]*[A-Z0-9]\b", path.read_text()))
    named -= {"EOMATCH_PREFIX"}  # a constant (core.vocabulary), not a variable
    assert named - _documented() == set(), sorted(named - _documented())


def test_the_uvicorn_factory_is_importable_by_its_name() -> None:
    from eomatch.service.serving import APP_FACTORY

    module, _, name = APP_FACTORY.partition(":")
    code = f"import {module} as m; assert callable(m.{name})"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_the_uvicorn_factory_settles_the_garbage_collector_of_its_process() -> None:
    """The API process freezes its start-up objects out of the cyclic collector and raises
    its thresholds (measured: ~25-35 % of the API's CPU on searches at 1M items); an app
    made with ``eomatch.service.app.create_app`` (tests, embedding) leaves the caller's
    collector alone."""
    from eomatch.gc_tuning import GC_THRESHOLDS
    from eomatch.service.serving import APP_FACTORY

    module, _, name = APP_FACTORY.partition(":")
    code = (
        "import gc, json\n"
        "import eomatch.service.app as a\n"
        "before = (gc.get_threshold(), gc.get_freeze_count())\n"
        "a.create_app()\n"
        "embedded = (gc.get_threshold(), gc.get_freeze_count())\n"
        f"import {module} as m; m.{name}()\n"
        "print(json.dumps([before, embedded, (gc.get_threshold(), gc.get_freeze_count())]))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EOMATCH_", "PG"))}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    before, embedded, served = json.loads(out.stdout.strip().splitlines()[-1])
    assert before == embedded
    assert before[0] == [700, 10, 10]
    assert before[1] == 0
    assert served[0] == list(GC_THRESHOLDS)
    assert served[1] > 10_000  # the modules, models and routes made at start-up
