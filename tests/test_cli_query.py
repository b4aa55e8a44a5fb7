"""``eomatch query`` / ``eomatch-query`` on the command line, against a real local STAC API."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from eomatch.cli.main import main
from eomatch.io.catalogue import MatchupCatalogue
from matchup_api_server import MatchupApi, SourceCatalogue, serve, source_catalogue


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Iterator[SourceCatalogue]:
    with source_catalogue(tmp_path_factory.mktemp("source")) as src:
        yield src


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("EOMATCH_CONFIG_DIR", str(tmp_path / "user-config"))
    monkeypatch.delenv("EOMATCH_API_KEY", raising=False)


@pytest.fixture
def api(source) -> Iterator[MatchupApi]:
    with serve(MatchupApi()) as state:
        state.load_catalogue(source.root)
        yield state


def _counts(root: Path) -> dict[str, int]:
    with MatchupCatalogue.open(root) as cat:
        return cat.counts()


def test_query_prints_a_summary_and_rerun_says_unchanged(source, api, tmp_path, capsys):
    out = tmp_path / "pulled"
    assert main(["query", "--api-url", api.url, "--output", str(out), "--limit", "10"]) == 0
    text = capsys.readouterr().out
    n = _counts(source.root)
    assert f"{n['matchup']} matchup(s) of {n['event']} event(s) with {n['product']} product(s)" in (
        " ".join(text.split())
    )
    assert f"matchups: {n['matchup']} new, 0 updated, 0 unchanged" in text
    assert "catalog.json" in text
    assert _counts(out) == n
    assert main(["query", "--api-url", api.url, "--output", str(out)]) == 0
    text = capsys.readouterr().out
    assert f"matchups: 0 new, 0 updated, {n['matchup']} unchanged" in text
    assert f"products: 0 new, 0 updated, {n['product']} unchanged" in text


def test_filters_on_the_command_line(api, tmp_path, capsys):
    out = tmp_path / "pulled"
    args = [
        "query",
        "--api-url",
        api.url,
        "--output",
        str(out),
        "--collections",
        "S2_MSI_L1C",
        "--platforms",
        "LS9,S2A",
        "--bbox",
        "-30",
        "40",
        "-20",
        "70",
        "--start-time",
        "2022-05-06",
        "--end-time",
        "2022-05-07T00:00:00Z",
        "--filter",
        '"matchup:time_diff_abs" < 1215',
    ]
    assert main(args) == 0
    body = next(s for s in api.search_requests() if "ids" not in s)
    assert body["bbox"] == [-30.0, 40.0, -20.0, 70.0]
    assert body["datetime"] == "2022-05-06T00:00:00Z/2022-05-07T00:00:00Z"
    assert body["filter-lang"] == "cql2-json"
    with MatchupCatalogue.open(out) as cat:
        mus = [m for e in cat.get_events() for m in e.matchups]
    assert mus
    assert all(m.time_diff_abs_s < 1215 for m in mus)


def test_api_url_and_output_from_the_configuration(api, tmp_path, capsys):
    cfg = tmp_path / "q.yaml"
    cfg.write_text(
        f"query: {{api_url: '{api.url}', page_size: 4}}\nmatchup_catalogue: {{path: pulled}}\n"
    )
    assert main(["query", "--config", str(cfg)]) == 0
    assert (tmp_path / "pulled" / "catalog.json").is_file()
    assert {s["limit"] for s in api.search_requests() if "ids" not in s} == {4}


def test_api_key_from_the_environment(source, tmp_path, monkeypatch, capsys):
    with serve(MatchupApi(api_key="s3cret")) as state:
        state.load_catalogue(source.root)
        out = tmp_path / "pulled"
        assert main(["query", "--api-url", state.url, "--output", str(out)]) == 2
        assert "needs a key" in capsys.readouterr().err
        monkeypatch.setenv("EOMATCH_API_KEY", "s3cret")
        assert main(["query", "--api-url", state.url, "--output", str(out)]) == 0
        assert main(["query", "--api-url", state.url, "--output", str(out), "--api-key", "x"]) == 2
        assert "refused the key" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--collections", "VIIRS_SDR"], "unknown collection 'VIIRS_SDR'"),
        (["--platforms", "NOAA-21"], "unknown platform"),
        (["--bbox", "1", "2", "3"], "--bbox needs four numbers"),
        (["--limit", "0"], "--limit must be >= 1"),
        (["--filter", "a <<< b"], "invalid CQL2 filter"),
        (["--start-time", "soon"], "not an ISO 8601"),
    ],
)
def test_bad_input_one_line_exit_2_nothing_written(api, tmp_path, capsys, extra, message):
    out = tmp_path / "pulled"
    assert main(["query", "--api-url", api.url, "--output", str(out), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err
    assert err.startswith("eomatch: error:")
    assert len(err.splitlines()) == 1
    assert not out.exists()


def test_unreachable_unknown_and_broken_apis(source, tmp_path, capsys):
    out = tmp_path / "pulled"
    assert main(["query", "--output", str(out)]) == 2
    assert "give --api-url or set query.api_url" in capsys.readouterr().err
    assert main(["query", "--api-url", "ftp://x", "--output", str(out)]) == 2
    assert "http(s) URL" in capsys.readouterr().err
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}"
    cfg = tmp_path / "fast.yaml"
    cfg.write_text("query: {max_retries: 0, timeout_s: 5}\n")
    assert main(["query", "--config", str(cfg), "--api-url", closed, "--output", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "cannot reach the API" in err
    assert len(err.splitlines()) == 1
    with serve(MatchupApi(invalid_json=True)) as state:
        args = ["query", "--config", str(cfg), "--api-url", state.url, "--output", str(out)]
        assert main(args) == 2
        assert "not JSON" in capsys.readouterr().err
    assert not out.exists()


def test_download_and_remove_work_on_a_pulled_catalogue(source, tmp_path, capsys):
    out = tmp_path / "pulled"
    with serve(MatchupApi(external=True)) as state:
        state.load_catalogue(source.root)
        assert main(["query", "--api-url", state.url, "--output", str(out)]) == 0
    hrefs = [
        a["href"]
        for p in out.rglob("*.json")
        if not p.name.startswith(".")
        for a in json.loads(p.read_text()).get("assets", {}).values()
    ]
    assert hrefs
    assert all(h.startswith("http") for h in hrefs)
    capsys.readouterr()
    assert main(["download", "--path", str(out)]) == 0
    files = sorted((out / "data").rglob("*.zip"))
    assert files
    for f in files:
        assert f.read_bytes() == (source.files / f.name).read_bytes()
    assert main(["remove", "--path", str(out)]) == 0
    assert sorted((out / "data").rglob("*.zip")) == []


def test_remove_never_deletes_shared_drive_files(source, api, tmp_path, capsys):
    out = tmp_path / "pulled"
    assert main(["query", "--api-url", api.url, "--output", str(out)]) == 0
    shared = sorted((source.root / "data").rglob("*.zip"))
    assert shared
    before = {p: p.read_bytes() for p in shared}
    capsys.readouterr()
    assert main(["download", "--path", str(out)]) == 0
    assert main(["remove", "--path", str(out)]) == 0
    assert {p: p.read_bytes() for p in shared} == before


def test_eomatch_query_script(api, tmp_path):
    out = tmp_path / "pulled"
    script = Path(sys.executable).parent / "eomatch-query"
    run = subprocess.run(
        [str(script), "--api-url", api.url, "--output", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        env={"EOMATCH_CONFIG_DIR": str(tmp_path / "cfg"), "PATH": "/usr/bin:/bin"},
    )
    assert run.returncode == 0, run.stderr
    assert "matchups:" in run.stdout
    assert (out / "catalog.json").is_file()
    help_run = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=60)
    assert "--api-url" in help_run.stdout


def test_query_configuration_section(tmp_path, capsys):
    from eomatch.config.models import QueryConfig, RunConfig

    assert RunConfig().query == QueryConfig()
    assert QueryConfig().model_dump() == {
        "api_url": None,
        "page_size": 1000,
        "timeout_s": 60.0,
        "max_retries": 3,
    }
    assert all(f.description for f in QueryConfig.model_fields.values())
    bad = tmp_path / "bad.yaml"
    bad.write_text("query: {api_url: ftp://nope}\n")
    assert main(["query", "--config", str(bad), "--output", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert "query.api_url" in err
    assert len(err.splitlines()) == 1
