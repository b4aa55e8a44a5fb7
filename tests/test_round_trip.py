"""The researcher round trip on the real stack, through the command line (issue #5 §3).

find → ingest → ``eomatch query`` the external API into folder A → ``eomatch download`` the
products (served by a local HTTP server) → ``eomatch add-asset --push`` an analysis on a
matchup of A → ``eomatch query`` the internal API into folder B: B holds both versions,
``latest`` points at the newest, and the external API does not show the local file.
Then the bad inputs: each gives one clear line, a non-zero exit and writes nothing.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from eomatch.cli.main import main
from eomatch.io.catalogue import MatchupCatalogue
from matchup_api_server import SourceCatalogue, source_catalogue
from service_fixtures import ApiProcess, ServiceDb, api_pair

pytestmark = pytest.mark.slow


@pytest.fixture
def stack(
    tmp_path: Path, service_db: ServiceDb, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[SourceCatalogue, ApiProcess, ApiProcess]]:
    for k, v in service_db.env().items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("EOMATCH_API_KEY", raising=False)
    (tmp_path / "source").mkdir()
    with source_catalogue(tmp_path / "source") as source:
        monkeypatch.setenv("PGUSER", "eomatch_ingest")
        assert main(["ingest", "--catalogue", str(source.root)]) == 0
        with api_pair(service_db, tmp_path) as (internal, external):
            yield source, internal, external


def _item(root: Path, item_id: str) -> dict:
    with MatchupCatalogue.open(root) as cat:
        return json.loads(cat.item_path(item_id).read_text())


def _tree(root: Path) -> dict[str, int]:
    return {
        p.relative_to(root).as_posix(): p.stat().st_mtime_ns
        for p in root.rglob("*")
        if p.is_file() and not p.name.startswith(".eomatch")
    }


def test_researcher_round_trip(stack, tmp_path: Path, capsys) -> None:
    source, internal, external = stack
    a, b = tmp_path / "A", tmp_path / "B"
    assert main(["query", "--api-url", external.url, "--output", str(a)]) == 0
    assert "new" in capsys.readouterr().out
    # only http(s) assets came out of the external API; the old analysis (a local file) did not
    pulled = _item(a, source.analysed)
    assert "comparison:2024-03-01" not in pulled["assets"]
    # products whose data lives only on the shared drive have no public data asset: skipped
    assert main(["download", "--path", str(a)]) == 0
    capsys.readouterr()
    with MatchupCatalogue.open(a) as cat:
        events = cat.get_events()
        products = {p.id for e in events for m in e.matchups for p in m.products}
        assert products
        for pid in products - set(source.downloaded):
            data = cat.product_item(pid)["assets"]["data"]["href"]
            assert not data.startswith("http"), pid  # downloaded into A
        collection = next(c for c, i, _ in cat.item_files() if i == source.analysed)
    result = a / "results" / "cmp-v2.nc"
    result.parent.mkdir()
    result.write_bytes(b"CDF\x01 second analysis")
    args = ["add-asset", "--catalogue", str(a), "--collection-id", collection]
    args += ["--item-id", source.analysed, "--file", str(result), "--date", "2026-11-21"]
    assert main([*args, "--push"]) == 0
    assert "pushed" in capsys.readouterr().out
    assert main(["query", "--api-url", internal.url, "--output", str(b)]) == 0
    capsys.readouterr()
    got = _item(b, source.analysed)["assets"]
    assert {"comparison:2024-03-01", "comparison:2026-11-21", "comparison:latest"} <= set(got)
    assert got["comparison:latest"]["href"] == got["comparison:2026-11-21"]["href"]
    assert got["comparison:2026-11-21"]["href"] == result.resolve().as_uri()
    assert main(["assets", "list", "--catalogue", str(b), "--item", source.analysed]) == 0
    listing = capsys.readouterr().out.splitlines()
    assert listing[0].startswith("2026-11-21")
    assert "(latest)" in listing[0]
    outside = httpx.get(f"{external.url}/collections/{collection}/items/{source.analysed}").json()
    assert not any(k.startswith("comparison:") for k in outside["assets"])


def test_bad_input_is_one_line_and_writes_nothing(stack, tmp_path: Path, capsys) -> None:
    source, internal, _external = stack
    a = tmp_path / "A"
    assert main(["query", "--api-url", internal.url, "--output", str(a)]) == 0
    capsys.readouterr()
    with MatchupCatalogue.open(a) as cat:
        collection = next(c for c, i, _ in cat.item_files() if i == source.analysed)
    f = tmp_path / "r.csv"
    f.write_text("a,b\n")
    before = _tree(a)
    cases = [
        ["add-asset", "--catalogue", str(a), "--collection-id", "nope", "--item-id",
         source.analysed, "--file", str(f), "--push"],
        ["add-asset", "--catalogue", str(a), "--collection-id", collection, "--item-id",
         "nope", "--file", str(f), "--push"],
        ["add-asset", "--catalogue", str(a), "--collection-id", collection, "--item-id",
         source.analysed, "--file", str(tmp_path / "missing.nc"), "--push"],
        ["query", "--api-url", "http://127.0.0.1:1/", "--output", str(a)],
        ["query", "--api-url", internal.url, "--output", str(a), "--collections", "nope"],
        ["query", "--api-url", internal.url, "--output", str(a), "--api-key", "wrong"],
    ]  # fmt: skip
    for argv in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert err.startswith("eomatch: error:"), (argv, err)
        assert "\n" not in err, (argv, err)
    assert _tree(a) == before
    # a wrong key on the internal API's writes: 401, nothing changes
    coll_url = f"{internal.url}/collections/{collection}/items/{source.analysed}"
    item = httpx.get(coll_url).json()
    r = httpx.put(coll_url, json=item, headers={"Authorization": "Bearer wrong"})
    assert r.status_code == 401
    assert "unknown or revoked API key" in r.json()["description"]
