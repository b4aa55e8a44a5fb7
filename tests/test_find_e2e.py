"""The find → catalogue → explore → download → remove loop, end to end on real files.

Products come from a real local STAC API (tests/stac_api_server.py) whose items are shaped
like provider items and placed where Sentinel-2A and Landsat-9 really crossed; their ``data``
files are served by a second local HTTP server. Nothing touches the internet.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from shapely.geometry import mapping

from eomatch.cli.main import main
from eomatch.core.collections import builtin_collections
from eomatch.core.predict import predict_products
from eomatch.core.products import SensorKey
from eomatch.core.propagation import TleOrbit
from eomatch.io.catalogue import MatchupCatalogue
from eomatch.wiring import build_registry, build_store
from eomatch.workflows.crossovers import find_crossovers
from stac_api_server import StacApiServer, serve

START = datetime(2022, 5, 6, 12, 0, tzinfo=UTC)
END = datetime(2022, 5, 6, 13, 30, tzinfo=UTC)
BBOX = (-40.0, 40.0, 0.0, 70.0)
PROVIDER = {"S2_MSI_L1C": "sentinel-2-l1c", "LANDSAT_C2L1": "landsat-c2-l1"}
PLATFORM = {"Sentinel-2A": "sentinel-2a", "Landsat-9": "LANDSAT_9"}


@contextlib.contextmanager
def file_server(root: Path) -> Iterator[str]:
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a, **k: None  # type: ignore[method-assign]
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def provider_items(files: Path, base_url: str) -> list[dict]:
    """Provider-shaped items at the real footprints of the scenes around real crossovers."""
    reg = build_registry()
    store = build_store()
    crossings = find_crossovers(["S2A", "LS9"], START, END, bbox=BBOX)
    assert crossings, "the window must contain S2A x LS9 crossovers"
    table = builtin_collections()
    items: list[dict] = []
    for short, coll in (("S2A", "S2_MSI_L1C"), ("LS9", "LANDSAT_C2L1")):
        sat = reg.get(short)
        orbit = TleOrbit(short, store.archive(sat))
        key = SensorKey(coll, sat.name)
        seen: set[str] = set()
        for c in crossings:
            lo = c.start_a - timedelta(minutes=40)
            hi = c.end_a + timedelta(minutes=40)
            for p in predict_products(orbit, key, table[coll], lo, hi):
                if p.id in seen or not p.geometry.intersects(_box()):
                    continue
                seen.add(p.id)
                pid = p.id.replace("_PRED", "").replace("Sentinel-2A", "S2A")
                payload = f"{pid} payload\n".encode() * 200
                (files / f"{pid}.zip").write_bytes(payload)
                digest = "1220" + hashlib.sha256(payload).hexdigest()
                items.append(
                    {
                        "type": "Feature",
                        "stac_version": "1.0.0",
                        "id": pid,
                        "collection": PROVIDER[coll],
                        "geometry": mapping(p.geometry),
                        "bbox": list(p.geometry.bounds),
                        "properties": {
                            "datetime": p.start.strftime("%Y-%m-%dT%H:%M:%SZ"),
                            "start_datetime": p.start.strftime("%Y-%m-%dT%H:%M:%SZ"),
                            "end_datetime": p.end.strftime("%Y-%m-%dT%H:%M:%SZ"),
                            "platform": PLATFORM[sat.name],
                            "eo:cloud_cover": 10.0,
                        },
                        "links": [],
                        "assets": {
                            "data": {
                                "href": f"{base_url}/{pid}.zip",
                                "type": "application/zip",
                                "roles": ["data"],
                                "file:checksum": digest,
                                "file:size": len(payload),
                            }
                        },
                    }
                )
    return items


def _box():
    from shapely.geometry import box

    return box(*BBOX)


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[tuple[str, Path]]:
    files = tmp_path_factory.mktemp("provider-files")
    with file_server(files) as base_url:
        items = provider_items(files, base_url)
        with serve(StacApiServer(items=items)) as api:
            yield api.url, files


def write_config(tmp_path: Path, api_url: str) -> Path:
    cfg = tmp_path / "run.yaml"
    cfg.write_text(
        "sensors:\n"
        "  - {platform: S2A, collection: S2_MSI_L1C, source: stac}\n"
        "  - {platform: landsat-9, collection: LANDSAT_C2L1, source: stac}\n"
        f"start_time: {START:%Y-%m-%dT%H:%M:%SZ}\n"
        f"end_time: {END:%Y-%m-%dT%H:%M:%SZ}\n"
        f"bbox: {list(BBOX)}\n"
        "min_collocation_area_km2: 10\n"
        "stac_sources:\n"
        "  local:\n"
        f"    url: {api_url}\n"
        "    page_size: 7\n"
        "    collections: {S2_MSI_L1C: sentinel-2-l1c, LANDSAT_C2L1: landsat-c2-l1}\n"
        "matchup_catalogue: {path: cat, id: e2e}\n"
    )
    return cfg


def test_find_download_remove_loop(stack, tmp_path, capsys):
    api_url, _files = stack
    cfg = write_config(tmp_path, api_url)
    root = tmp_path / "cat"

    assert main(["find", "--config", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert "new in the catalogue" in out
    cat = MatchupCatalogue.open(root)
    events = cat.get_events()
    assert events
    products = {p.id: p for e in events for m in e.matchups for p in m.products}
    assert products
    assert not any(p.predicted for p in products.values())
    assert all(p.assets["data"]["href"].startswith("http://127.0.0.1") for p in products.values())
    assert cat.get_events(products_downloaded=True) == []
    cat.close()

    # re-running duplicates nothing
    assert main(["find", "--config", str(cfg)]) == 0
    assert "new in the catalogue: 0 event(s), 0 matchup(s), 0 product(s)" in " ".join(
        capsys.readouterr().out.split()
    )

    assert main(["download", "--path", str(root)]) == 0
    capsys.readouterr()
    data = sorted((root / "data").rglob("*.zip"))
    assert len(data) == len(products)
    for f in data:
        assert f.read_bytes().startswith(f.stem.encode())
    cat = MatchupCatalogue.open(root)
    downloaded = cat.get_events(products_downloaded=True)
    assert len(downloaded) == len(events)
    item = cat.product_item(next(iter(products)))
    href = item["assets"]["data"]["href"]
    assert not href.startswith("http")
    assert (cat.item_path(item["id"]).parent / href).resolve().is_file()
    cat.close()

    # a second download fetches nothing new
    assert main(["download", "--path", str(root)]) == 0
    assert "present" in capsys.readouterr().out

    assert main(["remove", "--path", str(root), "--keep-files"]) == 0
    assert len(sorted((root / "data").rglob("*.zip"))) == len(products)
    cat = MatchupCatalogue.open(root)
    assert cat.get_events(products_downloaded=True) == []
    item = cat.product_item(next(iter(products)))
    assert item["assets"]["data"]["href"].startswith("http://127.0.0.1")
    cat.close()
    capsys.readouterr()

    # download again (files are on disk: registered without fetching), then remove for real
    assert main(["download", "--path", str(root)]) == 0
    assert main(["remove", "--path", str(root)]) == 0
    assert sorted((root / "data").rglob("*.zip")) == []


def test_predicted_products_cannot_be_downloaded(tmp_path, capsys):
    cfg = tmp_path / "p.yaml"
    cfg.write_text(
        "sensors:\n"
        "  - {platform: S2A, collection: S2_MSI_L1C}\n"
        "  - {platform: LS9, collection: LANDSAT_C2L1}\n"
        "start_time: 2022-05-06T12:00:00Z\nend_time: 2022-05-06T13:30:00Z\n"
        f"bbox: {list(BBOX)}\n"
        "matchup_catalogue: {path: cat}\n"
    )
    assert main(["find", "--config", str(cfg)]) == 0
    capsys.readouterr()
    assert main(["download", "--path", str(tmp_path / "cat")]) == 2
    err = capsys.readouterr().err
    assert "predicted from the orbit" in err
    assert len(err.strip().splitlines()) == 1


def test_remove_never_deletes_outside_the_data_root(stack, tmp_path, capsys):
    api_url, _ = stack
    cfg = write_config(tmp_path, api_url)
    root = tmp_path / "cat"
    assert main(["find", "--config", str(cfg)]) == 0
    cat = MatchupCatalogue.open(root)
    pid = next(p.id for e in cat.get_events() for m in e.matchups for p in m.products)
    outside = tmp_path / "shared-drive" / "product.zip"
    outside.parent.mkdir()
    outside.write_bytes(b"precious")
    cat.set_product_data(pid, outside)
    cat.close()
    capsys.readouterr()
    assert main(["remove", "--path", str(root)]) == 0
    assert outside.read_bytes() == b"precious"
    assert "outside the catalogue's data folder" in capsys.readouterr().err


def test_find_writes_a_catalogue_that_pystac_crawls(stack, tmp_path):
    """No self links, links resolve; pystac crawls catalog -> collections -> days -> items."""
    import pystac

    api_url, _ = stack
    cfg = write_config(tmp_path, api_url)
    assert main(["find", "--config", str(cfg)]) == 0
    root = tmp_path / "cat"
    files = [
        p
        for p in root.rglob("*.json")
        if p.name != "collection.json" and json.loads(p.read_text())["type"] == "Feature"
    ]
    assert files
    for path in files:
        raw = json.loads(path.read_text())
        assert not any(link["rel"] == "self" for link in raw["links"])
        item = pystac.Item.from_dict(raw)
        for link in raw["links"]:
            if not link["href"].startswith("http"):
                assert (path.parent / link["href"]).resolve().is_file(), (path, link)
        assert item.id == path.stem
    crawled = list(pystac.Catalog.from_file(str(root / "catalog.json")).get_items(recursive=True))
    assert sorted(i.id for i in crawled) == sorted(p.stem for p in files)
    assert len({i.id for i in crawled}) == len(crawled)
    kinds = {i.properties["eomatch:kind"] for i in crawled}
    assert kinds == {"event", "matchup", "product"}
