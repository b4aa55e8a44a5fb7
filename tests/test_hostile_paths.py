"""No file is written outside the catalogue, whatever a provider or matchup API sends (§3, §9).

Hostile servers are real local STAC APIs (tests/stac_api_server.py, tests/matchup_api_server.py)
serving items whose every field that reaches a path aims outside: ids and collections with
``../``, absolute paths, ``/``, NUL, 10 000 characters, ``..``; link and asset hrefs that are
paths; asset keys with ``../``; platforms that are traversals; and symlinks already planted in
the catalogue that point outside. Each test snapshots the files outside the catalogue before and
after, and checks that every link written stays inside its root.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from shapely.geometry import Polygon

from eomatch.cli.main import main
from eomatch.core import stac_items as si
from eomatch.core.products import Product, SensorKey
from eomatch.errors import EomatchError, UnsafePathError
from eomatch.io.catalogue import MatchupCatalogue
from eomatch.io.safe_paths import (
    MAX_COMPONENT_BYTES,
    check_component,
    sanitise_component,
    within_root,
)
from eomatch.io.stac_source import MAX_FOOTPRINT_VERTICES, REFUSE_FOOTPRINT_VERTICES, count_vertices
from eomatch.workflows.products import download_products, product_destination, remove_products
from eomatch.workflows.query import query_catalogue
from matchup_api_server import (
    MatchupApi,
    SourceCatalogue,
    add_hostile_items,
    serve,
    source_catalogue,
)
from matchup_api_server import validate_catalogue as validate_tree
from stac_api_server import StacApiServer
from stac_api_server import serve as serve_provider
from test_find_e2e import file_server, provider_items, write_config

HOSTILE_NAMES = ["..", ".", "a/b", "nul\x00id", "x" * 10_000, ".hidden", "", "back\\slash"]


def snapshot(root: Path, *skip: Path) -> set[str]:
    """Every file and link under ``root`` except inside ``skip`` folders."""
    out = set()
    for p in root.rglob("*"):
        if any(p == s or s in p.parents for s in skip):
            continue
        out.add(p.relative_to(root).as_posix())
    return out


def links_stay_inside(root: Path) -> int:
    """Assert every relative link and asset href of every JSON file resolves inside ``root``."""
    n = 0
    base = root.resolve()
    for path in root.rglob("*.json"):
        if path.name.startswith(".") or (root / "data") in path.parents:
            continue
        doc = json.loads(path.read_text())
        hrefs = [x["href"] for x in doc.get("links", [])]
        hrefs += [a["href"] for a in (doc.get("assets") or {}).values()]
        for href in hrefs:
            if si.is_url(href):
                continue
            assert not href.startswith("/"), (path, href)
            assert (path.parent / href).resolve().is_relative_to(base), (path, href)
            n += 1
    return n


# --- the helper -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", [*HOSTILE_NAMES, None, 7, "é" * 101])
def test_check_component_refuses_what_cannot_be_one_file_name(name: Any) -> None:
    with pytest.raises(UnsafePathError) as info:
        check_component("item id", name)
    assert "\n" not in str(info.value)
    assert len(str(info.value)) < 200


def test_check_component_accepts_real_ids() -> None:
    for name in ["S2A_MSIL1C_20220506T120000_N0400", "LC09_L1TP_192026_20220506_02_T1", "a" * 200]:
        assert check_component("id", name) == name


@pytest.mark.parametrize("name", [*HOSTILE_NAMES, "../../etc/passwd", "/etc/passwd", "ok"])
def test_sanitise_component_is_always_one_safe_name(name: str) -> None:
    clean = sanitise_component(name)
    assert check_component("x", clean) == clean
    assert clean not in (".", "..")
    assert len(clean.encode()) <= MAX_COMPONENT_BYTES
    assert sanitise_component(name) == clean  # stable
    if name == "ok":
        assert clean == "ok"


def test_sanitised_names_do_not_collide() -> None:
    names = ["a/b", "a_b", "a\\b", "a:b", "a b"]
    assert len({sanitise_component(n) for n in names}) == len(names)


def test_within_root_follows_symlinks(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "d").mkdir(parents=True)
    outside.mkdir()
    assert within_root(root, "d/new/file") == (root / "d/new/file").resolve()
    (root / "link").symlink_to(outside)
    for bad in ["../x", "/etc/passwd", "link/x", "d/../../x", str(outside / "x")]:
        with pytest.raises(UnsafePathError, match="outside"):
            within_root(root, bad)


# --- download destinations ---------------------------------------------------------------------


def _product(**kw: Any) -> Product:
    fields: dict[str, Any] = {
        "id": "P1",
        "sensor": SensorKey("S2_MSI_L1C", "Sentinel-2A"),
        "start": datetime(2022, 5, 6, 12, tzinfo=UTC),
        "end": datetime(2022, 5, 6, 12, 1, tzinfo=UTC),
        "geometry": Polygon([(0, 0), (1, 0), (1, 1)]),
        "predicted": False,
    }
    fields.update(kw)
    return Product(**fields)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("id", "../../../../outside/pwned"),
        ("id", "/etc/passwd"),
        ("id", "x" * 10_000),
        ("id", ".."),
        ("id", "nul\x00id"),
        ("platform", "../../../../outside"),
        ("platform", "/abs"),
        ("platform", ".."),
        ("collection", "../../.."),
        ("collection", "a/b/../../../.."),
        ("href", "https://h/x/..%2F..%2F..%2Foutside.zip"),
        ("href", "https://h/x/evil.zip%00.sh"),
        ("href", "https://h/x/" + "y" * 300 + ".tiff"),
    ],
)
def test_every_item_field_of_a_download_destination_is_sanitised(
    tmp_path: Path, field: str, value: str
) -> None:
    cat = MatchupCatalogue.create(tmp_path / "cat")
    try:
        href = value if field == "href" else "https://h/P1.zip"
        if field == "id":
            product = _product(id=value)
        elif field == "platform":
            product = _product(sensor=SensorKey("S2_MSI_L1C", value))
        elif field == "collection":
            product = _product(sensor=SensorKey(value, "Sentinel-2A"))
        else:
            product = _product()
        dest = product_destination(cat, product, href)
        data = cat.data_root.resolve()
        assert dest.resolve().is_relative_to(data)
        rel = dest.relative_to(cat.data_root).parts
        assert len(rel) == 6  # platform / collection / YYYY / MM / DD / file
        for part in rel:
            assert check_component("part", part) == part
    finally:
        cat.close()


# --- find: a hostile provider STAC API ----------------------------------------------------------


def _dense_ring(geom: dict[str, Any], n: int) -> dict[str, Any]:
    """The same footprint with ``n`` vertices on its outline (a circle through its bbox)."""
    xs = [p[0] for p in geom["coordinates"][0]]
    ys = [p[1] for p in geom["coordinates"][0]]
    cx, cy = (min(xs) + max(xs)) / 2, (min(ys) + max(ys)) / 2
    r = (max(xs) - min(xs)) / 2
    ring = [
        [cx + r * math.cos(2 * math.pi * i / n), cy + r * math.sin(2 * math.pi * i / n)]
        for i in range(n)
    ]
    return {"type": "Polygon", "coordinates": [[*ring, ring[0]]]}


def test_find_with_a_hostile_provider_writes_only_inside_the_catalogue(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    files = tmp_path / "files"
    files.mkdir()
    with file_server(files) as base_url:
        items = provider_items(files, base_url)
        first = {c: next(i for i in items if i["collection"] == c) for c in ("sentinel-2-l1c",)}
        template = first["sentinel-2-l1c"]
        up = "../" * 12 + outside.as_posix().lstrip("/")
        hostile_ids = [f"{up}/pwned", (outside / "abs").as_posix(), *HOSTILE_NAMES, "catalog"]
        for iid in hostile_ids:
            items.append({**copy.deepcopy(template), "id": iid})
        for platform in [f"{up}/plat", "/abs", ".."]:
            bad = copy.deepcopy(template)
            bad["id"] = f"platform-{len(items)}"
            bad["properties"]["platform"] = platform
            items.append(bad)
        # a real item made hostile in its asset hrefs and keys
        template["assets"]["data"]["href"] = (outside / "secret").as_uri()
        template["assets"]["../../../../key"] = {"href": f"{up}/rel", "roles": ["data"]}
        template["assets"]["abs"] = {"href": (outside / "secret").as_posix()}
        # footprints: one to simplify, one to refuse unparsed
        dense = next(i for i in items if i["collection"] == "landsat-c2-l1")
        dense["geometry"] = _dense_ring(dense["geometry"], 3 * MAX_FOOTPRINT_VERTICES)
        before = snapshot(tmp_path, tmp_path / "cat")
        with serve_provider(StacApiServer(items=items)) as provider:
            cfg = write_config(tmp_path, provider.url)
            assert main(["find", "--config", str(cfg)]) == 0
            root = tmp_path / "cat"
            assert snapshot(tmp_path, root) == before | {"run.yaml"}
            assert list(outside.iterdir()) == []
            with MatchupCatalogue.open(root) as cat:
                ids = {i for _, i, _ in cat.item_files()}
                assert not ids & set(hostile_ids)
                assert not any(i.startswith("platform-") for i in ids)
                pid = template["id"]
                assert pid in ids
                assert set(cat.product_item(pid)["assets"]) == set()  # only path hrefs: dropped
                stored = cat.product_item(dense["id"])
                assert len(stored["geometry"]["coordinates"][0]) <= MAX_FOOTPRINT_VERTICES
                assert Polygon(stored["geometry"]["coordinates"][0]).is_valid
            assert links_stay_inside(root) > 0
            assert validate_tree(root) > 0
            capsys.readouterr()
            assert main(["download", "--path", str(root)]) == 0
    assert snapshot(tmp_path, root) == before | {"run.yaml"}
    assert list(outside.iterdir()) == []


def test_count_vertices_stops_past_the_refusal_limit() -> None:
    ring = [[0.0, 0.0]] * (REFUSE_FOOTPRINT_VERTICES + 10)
    geom = {"type": "Polygon", "coordinates": [ring]}
    assert count_vertices(geom, REFUSE_FOOTPRINT_VERTICES) == REFUSE_FOOTPRINT_VERTICES + 1
    multi = {"type": "MultiPolygon", "coordinates": [[ring[:3]], [ring[:4]]]}
    assert count_vertices(multi, 100) == 7
    coll = {"type": "GeometryCollection", "geometries": [multi, {"coordinates": [1.0, 2.0]}]}
    assert count_vertices(coll, 100) == 8


def test_a_footprint_above_the_refusal_limit_skips_the_item(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from eomatch.io.stac_source import StacApiSource
    from stac_api_server import sentinel2_item
    from test_stac_source import COLLECTIONS, EUROPE, MAY, S2A

    ok = sentinel2_item("sentinel-2a", "33TUN", datetime(2022, 5, 3, 10), 10, 45)
    bad = sentinel2_item("sentinel-2a", "33TVN", datetime(2022, 5, 4, 10), 10, 45)
    ring = bad["geometry"]["coordinates"][0]
    bad["geometry"]["coordinates"][0] = (
        ring[:1] * (REFUSE_FOOTPRINT_VERTICES + 1 - len(ring)) + ring
    )
    with serve_provider(StacApiServer(items=[ok, bad])) as api:
        products = StacApiSource(api.url, COLLECTIONS).search(S2A, EUROPE, *MAY)
    assert [p.id for p in products] == [ok["id"]]
    assert f"more than {REFUSE_FOOTPRINT_VERTICES} vertices" in caplog.text


# --- query: a hostile matchup API ---------------------------------------------------------------


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SourceCatalogue]:
    with source_catalogue(tmp_path_factory.mktemp("source")) as src:
        yield src


def _http_product(source: SourceCatalogue) -> str:
    with MatchupCatalogue.open(source.root) as cat:
        return next(
            p.id
            for e in cat.get_events()
            for m in e.matchups
            for p in m.products
            if p.id not in source.downloaded
        )


@pytest.fixture
def hostile(source: SourceCatalogue, tmp_path: Path) -> Iterator[tuple[MatchupApi, Path, str]]:
    outside = tmp_path / "outside"
    outside.mkdir()
    pid = _http_product(source)
    with serve(MatchupApi()) as api:
        api.load_catalogue(source.root)
        add_hostile_items(api, outside, pid)
        yield api, outside, pid


def test_query_from_a_hostile_api_writes_only_inside_the_catalogue(
    hostile: tuple[MatchupApi, Path, str], tmp_path: Path
) -> None:
    api, outside, pid = hostile
    before = snapshot(tmp_path)
    out = tmp_path / "pulled"
    summary = query_catalogue(api.url, out, max_retries=0)
    assert snapshot(tmp_path, out) == before
    assert list(outside.iterdir()) == []
    refused = [w for w in summary.warnings if "refused" in w]
    assert len(refused) >= 10  # 6 bad products, 5 bad matchups (+ repeats)
    assert all("\n" not in w and len(w) < 400 for w in summary.warnings)
    assert summary.matchups.new > 0
    with MatchupCatalogue.open(out) as cat:
        item = cat.product_item(pid)
        ids = {i for _, i, _ in cat.item_files()}
    assert not any("hostile" in i or "pwned" in i for i in ids)
    local_rels = {x["rel"] for x in item["links"] if not si.is_url(x["href"])}
    assert local_rels <= {"related", "derived_from", "root", "parent", "collection"}
    assert not {"alternate", "license", "describedby"} & {x["rel"] for x in item["links"]}
    assert [x["href"] for x in item["links"] if x["rel"] == "via"] == [
        "https://provider.example/ok"
    ]
    assert "evil" not in item["assets"]
    assert "abs" not in item["assets"]
    assert item["assets"]["../../../key"]["href"] == "https://provider.example/k"
    assert links_stay_inside(out) > 0
    assert validate_tree(out) > 0


def test_download_of_hostile_fields_stays_in_the_data_folder(
    hostile: tuple[MatchupApi, Path, str], tmp_path: Path
) -> None:
    api, outside, pid = hostile
    out = tmp_path / "pulled"
    query_catalogue(api.url, out, max_retries=0)
    before = snapshot(tmp_path, out)
    with MatchupCatalogue.open(out) as cat:
        report = download_products(cat)
        assert not report.failed, report.failed
        path = cat.local_file(pid, cat.product_item(pid)["assets"]["data"]["href"])
    assert path is not None
    assert path.resolve().is_relative_to((out / "data").resolve())
    platform_dir = path.relative_to(out / "data").parts[0]
    assert "outside" in platform_dir  # the traversal, flattened into one sanitised name
    assert check_component("platform", platform_dir) == platform_dir
    assert snapshot(tmp_path, out) == before
    assert list(outside.iterdir()) == []


def test_symlinks_planted_in_the_catalogue_are_not_written_through(
    hostile: tuple[MatchupApi, Path, str], tmp_path: Path
) -> None:
    api, outside, pid = hostile
    out = tmp_path / "pulled"
    query_catalogue(api.url, out, max_retries=0)
    with MatchupCatalogue.open(out) as cat:
        product = cat.products([pid])[0]
        href = product.assets["data"]["href"]
        dest = product_destination(cat, product, href)
        # the product's platform folder is a link out of the catalogue
        top = cat.data_root / dest.relative_to(cat.data_root).parts[0]
        top.parent.mkdir(parents=True, exist_ok=True)
        top.symlink_to(outside, target_is_directory=True)
        report = download_products(cat)
        failed = {r.job.product_id: r.reason for r in report.failed}
        assert set(failed) == {pid}
        assert "resolves outside" in failed[pid]
        assert "\n" not in failed[pid]
        assert list(outside.iterdir()) == []
        # a .part file planted as a link to a file outside
        top.unlink()
        dest.parent.mkdir(parents=True)
        victim = outside / "victim"
        victim.write_bytes(b"keep me")
        Path(str(dest) + ".part").symlink_to(victim)
        report = download_products(cat)
        assert [r.job.product_id for r in report.failed] == [pid]
        assert victim.read_bytes() == b"keep me"
        # the destination itself planted as a link
        Path(str(dest) + ".part").unlink()
        dest.symlink_to(victim)
        report = download_products(cat)
        assert [r.job.product_id for r in report.failed] == [pid]
        assert victim.read_bytes() == b"keep me"
        assert sorted(p.name for p in outside.iterdir()) == ["victim"]


# --- §10: download, remove, download again: still verified -------------------------------------


def test_remove_keeps_the_provider_checksum_so_a_redownload_is_verified(
    source: SourceCatalogue, tmp_path: Path
) -> None:
    out = tmp_path / "pulled"
    pid = _http_product(source)
    with serve(MatchupApi(external=True)) as api:
        api.load_catalogue(source.root)
        query_catalogue(api.url, out)
    with MatchupCatalogue.open(out) as cat:
        provider = dict(cat.product_item(pid)["assets"]["data"])
        assert provider["file:checksum"].startswith("1220")
        assert provider["file:size"] > 0
        report = download_products(cat)
        assert not report.failed
        local = cat.product_item(pid)["assets"]["data"]
        assert local["file:checksum"] == provider["file:checksum"]
        assert local["file:size"] == provider["file:size"]
        remove_products(cat)
        restored = cat.product_item(pid)["assets"]["data"]
        assert restored["href"] == provider["href"]
        assert restored["file:checksum"] == provider["file:checksum"]
        assert restored["file:size"] == provider["file:size"]
        # the server now sends other bytes of the same size: the re-download must notice
        name = Path(provider["href"]).name
        original = (source.files / name).read_bytes()
        try:
            (source.files / name).write_bytes(original[::-1])
            report = download_products(cat)
        finally:
            (source.files / name).write_bytes(original)
        reasons = {r.job.product_id: r.reason for r in report.failed}
        assert "checksum mismatch" in reasons[pid]
        assert cat.product_item(pid)["assets"]["data"]["href"] == provider["href"]


def test_nonsense_file_size_fails_that_product_only(
    source: SourceCatalogue, tmp_path: Path
) -> None:
    out = tmp_path / "pulled"
    pid = _http_product(source)
    with serve(MatchupApi(external=True)) as api:
        api.load_catalogue(source.root)
        with api.lock:
            coll = next(c for c, v in api.items.items() if pid in v)
            item = copy.deepcopy(api.items[coll][pid])
        item["assets"]["data"]["file:size"] = "a lot"
        api.load([], [item])
        query_catalogue(api.url, out)
    with MatchupCatalogue.open(out) as cat:
        report = download_products(cat)
    reasons = {r.job.product_id: r.reason for r in report.failed}
    assert list(reasons) == [pid]
    assert "invalid file:size" in reasons[pid]
    assert report.downloaded


def test_import_refuses_ids_too_long_for_a_file_name(tmp_path: Path) -> None:
    with MatchupCatalogue.create(tmp_path / "cat") as cat:
        item = {
            "type": "Feature",
            "id": "p" * 10_000,
            "collection": "S2_MSI_L1C",
            "geometry": {"type": "Point", "coordinates": [0, 0]},
            "properties": {"datetime": "2022-05-06T12:00:00Z"},
            "links": [],
            "assets": {},
        }
        with pytest.raises(EomatchError, match="cannot be a file name") as info:
            cat.import_items([item])
    assert len(str(info.value)) < 300


def test_query_into_a_catalogue_with_a_planted_symlink_writes_nothing_outside(
    source: SourceCatalogue, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    out = tmp_path / "pulled"
    with serve(MatchupApi(external=True)) as api:
        api.load_catalogue(source.root)
        MatchupCatalogue.create(out).close()
        colls = sorted({c for c in api.items if si.collection_kind(c) == "event"})
        (out / colls[0]).symlink_to(outside, target_is_directory=True)
        with pytest.raises(UnsafePathError, match="resolves outside") as info:
            query_catalogue(api.url, out, max_retries=0)
    assert "\n" not in str(info.value)
    assert list(outside.iterdir()) == []


def test_footprints_that_cannot_be_simplified_enough_are_refused() -> None:
    from shapely.geometry import MultiPolygon, box

    from eomatch.io.stac_source import bounded_footprint

    circle = Polygon(
        _dense_ring({"coordinates": [[[0, 0], [1, 0], [1, 1], [0, 1]]]}, 5000)["coordinates"][0]
    )
    simple = bounded_footprint(circle)
    assert 4 <= len(simple.exterior.coords) <= MAX_FOOTPRINT_VERTICES
    assert simple.symmetric_difference(circle).area < 0.001 * circle.area
    assert bounded_footprint(box(0, 0, 1, 1)).equals(box(0, 0, 1, 1))
    specks = MultiPolygon([box(i, 0, i + 0.5, 0.5) for i in range(MAX_FOOTPRINT_VERTICES)])
    with pytest.raises(ValueError, match="do not simplify"):
        bounded_footprint(specks)
