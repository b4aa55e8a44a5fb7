"""STAC Browser on the real stack: pgSTAC → external API → gateway → Chromium.

What ``eomatch serve`` runs (the :class:`Stack`), on an ingested catalogue: the home page lists
the matchup collections, and a matchup item's page draws its footprint on the map and shows
the links to its products (``derived_from``) and its event (``related``).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, unquote

import httpx
import pytest

from browser_helpers import chromium_binary, render_dom
from eomatch.io.catalogue import MatchupCatalogue
from eomatch.io.db_target import DbTarget
from eomatch.io.pgstac_store import PgstacStore
from eomatch.service.stack import Stack
from eomatch.workflows.ingest import ingest_catalogue
from service_fixtures import ServiceDb, free_port, make_catalogue

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("browser")]


@pytest.fixture
def served(
    service_db: ServiceDb, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[str, MatchupCatalogue]]:
    if chromium_binary() is None:
        pytest.fail("chromium is not installed (scripts/test.sh installs it)")
    root = make_catalogue(tmp_path / "cat", n_events=2)
    ingest_catalogue(root, PgstacStore(service_db.role("eomatch_ingest")))
    monkeypatch.setenv("PGPASSFILE", str(service_db.cluster.passfile))
    run_dir = Path(tempfile.mkdtemp(prefix="eomatch-serve-", dir="/tmp"))
    run_dir.chmod(0o755)
    target = DbTarget("127.0.0.1", service_db.cluster.port, service_db.dbname, None, None)
    stack = Stack(target=target, run_dir=run_dir, port=free_port())
    stack.start()
    cat = MatchupCatalogue.open(root)
    try:
        yield stack.base_url.rstrip("/"), cat
    finally:
        cat.close()
        stack.stop()
        shutil.rmtree(run_dir, ignore_errors=True)


def test_browser_lists_collections_and_shows_a_matchup(served) -> None:
    base, cat = served
    files = cat.item_files()
    matchups = sorted({c for c, _, _ in files if "-vs-" in c and not c.startswith("matchup-")})
    events = sorted({c for c, _, _ in files if c.startswith("matchup-events-")})
    assert matchups
    assert events
    home = render_dom(base + "/")
    assert "eomatch matchup catalogue" in home
    for coll in matchups + events:
        assert coll in home, coll
    coll, item_id, _ = next(f for f in files if f[0] == matchups[0])
    # the API sees the same links the page will show
    item = httpx.get(f"{base}/external/collections/{coll}/items/{quote(item_id)}").json()
    products = [lk["href"] for lk in item["links"] if lk["rel"] == "derived_from"]
    assert len(products) == 2
    page = render_dom(f"{base}/collections/{quote(coll)}/items/{quote(item_id)}")
    assert item_id in page
    assert "ol-viewport" in page  # the OpenLayers map with the footprint
    for href in products:
        product_id = unquote(href.rsplit("/", 1)[1])
        assert product_id in page or href.rsplit("/", 1)[1] in page, href
    assert "Related" in page or "related" in page
