"""Versioned analysis assets (``eomatch add-asset``, ``assets list``) on a real catalogue."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from datetime import UTC, date, datetime
from pathlib import Path
from urllib.parse import urlparse

import pytest

from eomatch.cli.main import main
from eomatch.core import stac_items as si
from eomatch.errors import EomatchError
from eomatch.io.catalogue import MatchupCatalogue
from eomatch.workflows.assets import (
    FILE_EXTENSION_URI,
    file_size_and_checksum,
    list_versions,
    register_analysis,
)

RUN = (
    "sensors:\n"
    "  - {platform: S2A, collection: S2_MSI_L1C}\n"
    "  - {platform: LS9, collection: LANDSAT_C2L1}\n"
    "start_time: 2022-05-06T12:00:00Z\nend_time: 2022-05-06T13:30:00Z\n"
    "bbox: [-40, 40, 0, 70]\n"
    "matchup_catalogue: {path: cat}\n"
)


@pytest.fixture(scope="module")
def predicted(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("assets-pred")
    (tmp / "run.yaml").write_text(RUN)
    assert main(["find", "--config", str(tmp / "run.yaml")]) == 0
    return tmp / "cat"


@pytest.fixture
def cat(predicted, tmp_path) -> Path:
    """A private copy of the predicted catalogue (tests write to it)."""
    return Path(shutil.copytree(predicted, tmp_path / "cat"))


def _matchup(root: Path) -> tuple[str, str, Path]:
    """(collection id, item id, item file) of one matchup item."""
    coll = next(p for p in sorted(root.iterdir()) if "-vs-" in p.name)
    item = next(p for p in sorted(coll.rglob("*.json")) if p.name != si.DAY_CATALOG)
    return coll.name, item.stem, item


def _file(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _add(root: Path, coll: str, item: str, file: Path, *extra: str) -> int:
    return main(
        [
            "add-asset",
            "--catalogue",
            str(root),
            "--collection-id",
            coll,
            "--item-id",
            item,
            "--file",
            str(file),
            *extra,
        ]
    )


def _assets(item_file: Path) -> dict:
    return json.loads(item_file.read_text())["assets"]


def _multihash(data: bytes) -> str:
    return "1220" + hashlib.sha256(data).hexdigest()


def test_versions_on_two_dates_and_latest_is_the_newest_by_date(cat, tmp_path, capsys):
    coll, item, item_file = _matchup(cat)
    a = _file(tmp_path / "a.nc", b"first")
    b = _file(tmp_path / "b.nc", b"second")
    c = _file(tmp_path / "c.nc", b"older")
    assert _add(cat, coll, item, a, "--date", "2024-01-01") == 0
    assert _add(cat, coll, item, b, "--date", "2024-03-01") == 0
    out = capsys.readouterr().out
    assert "comparison:2024-03-01" in out
    assert "added" in out
    # an older date registered after a newer one must not move 'latest' back
    assert _add(cat, coll, item, c, "--date", "2024-02-01") == 0
    assert "still points at 2024-03-01" in capsys.readouterr().out
    assets = _assets(item_file)
    assert {"comparison:2024-01-01", "comparison:2024-02-01", "comparison:2024-03-01"} <= set(
        assets
    )
    latest = assets["comparison:latest"]
    assert latest["href"] == b.as_uri()
    assert latest["file:checksum"] == _multihash(b"second")
    assert latest["eomatch:version"] == "2024-03-01"
    assert assets["comparison:2024-01-01"]["href"] == a.as_uri()

    versions = list_versions(cat, item)
    assert [v.date for v in versions] == ["2024-03-01", "2024-02-01", "2024-01-01"]
    assert [v.latest for v in versions] == [True, False, False]

    assert main(["assets", "list", "--catalogue", str(cat), "--item", item]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split()[0] for line in lines] == ["2024-03-01", "2024-02-01", "2024-01-01"]
    assert "latest" in lines[0]
    assert b.as_uri() in lines[0]
    assert f"{len(b'second')} bytes" in lines[0]
    # the catalogue still opens and the index knows the item
    with MatchupCatalogue.open(cat) as opened:
        assert opened.item_path(item) == item_file


def test_prefixes_are_independent_and_list_filters(cat, tmp_path, capsys):
    coll, item, _ = _matchup(cat)
    f = _file(tmp_path / "r.csv", b"x,y\n")
    g = _file(tmp_path / "map.png", b"\x89PNG fake")
    register_analysis(cat, coll, item, f, date="2024-05-01")
    register_analysis(cat, coll, item, g, prefix="quicklook", date=date(2024, 6, 1))
    assert [v.key for v in list_versions(cat, item)] == [
        "quicklook:2024-06-01",
        "comparison:2024-05-01",
    ]
    assert [v.key for v in list_versions(cat, item, prefix="comparison")] == [
        "comparison:2024-05-01"
    ]
    assert main(["assets", "list", "--catalogue", str(cat), "--item", item, "--prefix", "x"]) == 0
    assert "no analysis versions" in capsys.readouterr().out


def test_default_date_is_today_utc(cat, tmp_path):
    coll, item, item_file = _matchup(cat)
    res = register_analysis(cat, coll, item, _file(tmp_path / "a.json", b"{}"))
    today = datetime.now(UTC).date().isoformat()
    assert res.key == f"comparison:{today}"
    assert f"comparison:{today}" in _assets(item_file)


def test_same_file_twice_is_a_noop(cat, tmp_path, capsys):
    coll, item, item_file = _matchup(cat)
    f = _file(tmp_path / "a.nc", b"payload")
    assert _add(cat, coll, item, f, "--date", "2024-01-01") == 0
    before = item_file.read_bytes()
    mtime = item_file.stat().st_mtime_ns
    capsys.readouterr()
    assert _add(cat, coll, item, f, "--date", "2024-01-01") == 0
    assert "unchanged" in capsys.readouterr().out
    assert item_file.read_bytes() == before
    assert item_file.stat().st_mtime_ns == mtime
    res = register_analysis(cat, coll, item, f, date="2024-01-01")
    assert res.status == "unchanged"
    assert not res.changed


def test_different_file_same_date_needs_replace(cat, tmp_path, capsys):
    coll, item, item_file = _matchup(cat)
    assert _add(cat, coll, item, _file(tmp_path / "a.nc", b"one"), "--date", "2024-01-01") == 0
    before = item_file.read_bytes()
    other = _file(tmp_path / "b.nc", b"two")
    capsys.readouterr()
    assert _add(cat, coll, item, other, "--date", "2024-01-01") == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert "--replace" in err
    assert item_file.read_bytes() == before
    with pytest.raises(EomatchError, match="different"):
        register_analysis(cat, coll, item, other, date="2024-01-01")

    assert _add(cat, coll, item, other, "--date", "2024-01-01", "--replace") == 0
    assert "replaced" in capsys.readouterr().out
    assets = _assets(item_file)
    assert assets["comparison:2024-01-01"]["file:checksum"] == _multihash(b"two")
    assert assets["comparison:latest"]["file:checksum"] == _multihash(b"two")


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing-file", "no such file"),
        ("unknown-item", "no item 'nope'"),
        ("unknown-collection", "no collection 'NOPE'"),
        ("wrong-collection", "is in collection"),
        ("bad-date", "bad date '2024-13-01'"),
        ("bad-date-format", "bad date '20240101'"),
        ("bad-prefix", "bad prefix"),
        ("directory", "is a directory"),
    ],
)
def test_bad_input_one_line_exit_2_nothing_written(cat, tmp_path, capsys, case, message):
    coll, item, item_file = _matchup(cat)
    f = _file(tmp_path / "a.nc", b"data")
    extra: list[str] = []
    if case == "missing-file":
        f = tmp_path / "missing.nc"
    elif case == "unknown-item":
        item = "nope"
    elif case == "unknown-collection":
        coll = "NOPE"
    elif case == "wrong-collection":
        coll = next(p.name for p in sorted(cat.iterdir()) if p.name.startswith("matchup-events"))
    elif case == "bad-date":
        extra = ["--date", "2024-13-01"]
    elif case == "bad-date-format":
        extra = ["--date", "20240101"]
    elif case == "bad-prefix":
        extra = ["--prefix", "a:b"]
    elif case == "directory":
        f = tmp_path / "dir"
        f.mkdir()
    before = {p: p.read_bytes() for p in cat.rglob("*.json")}
    capsys.readouterr()
    assert _add(cat, coll, item, f, *extra) == 2
    err = capsys.readouterr().err
    assert message in err
    assert len(err.strip().splitlines()) == 1
    assert {p: p.read_bytes() for p in cat.rglob("*.json")} == before
    assert item_file.read_bytes() == before[item_file]


@pytest.mark.parametrize(
    ("name", "media_type"),
    [
        ("r.nc", "application/x-netcdf"),
        ("r.tif", "image/tiff; application=geotiff"),
        ("r.TIFF", "image/tiff; application=geotiff"),
        ("r.json", "application/json"),
        ("r.geojson", "application/geo+json"),
        ("r.csv", "text/csv"),
        ("r.parquet", "application/vnd.apache.parquet"),
        ("r.png", "image/png"),
        ("r.weird", "application/octet-stream"),
        ("noext", "application/octet-stream"),
    ],
)
def test_media_type_size_and_checksum(cat, tmp_path, name, media_type):
    coll, item, item_file = _matchup(cat)
    data = f"content of {name}".encode() * 1000
    res = register_analysis(cat, coll, item, _file(tmp_path / name, data), date="2024-01-01")
    item_json = json.loads(item_file.read_text())
    asset = item_json["assets"]["comparison:2024-01-01"]
    assert asset["type"] == media_type == res.media_type
    assert asset["file:size"] == len(data)
    assert asset["file:checksum"] == _multihash(data)
    assert "analysis" in asset["roles"]
    assert FILE_EXTENSION_URI in item_json["stac_extensions"]
    assert len(item_json["stac_extensions"]) == len(set(item_json["stac_extensions"]))


def test_zarr_directory_size_and_checksum(cat, tmp_path):
    coll, item, item_file = _matchup(cat)
    store = tmp_path / "r.zarr"
    files = {".zgroup": b'{"zarr_format": 2}', "v/.zarray": b"{}", "v/0.0": b"\x00" * 100}
    for rel, data in files.items():
        _file(store / rel, data)
    res = register_analysis(cat, coll, item, store, date="2024-01-01")
    asset = _assets(item_file)["comparison:2024-01-01"]
    assert asset["type"] == "application/vnd+zarr"
    assert asset["file:size"] == sum(len(d) for d in files.values()) == res.size
    digest = hashlib.sha256()
    for rel in sorted(files):
        digest.update(f"{rel}\0{len(files[rel])}\0".encode() + files[rel])
    assert asset["file:checksum"] == "1220" + digest.hexdigest()
    # the same store again is a no-op; a changed chunk is a different version
    assert register_analysis(cat, coll, item, store, date="2024-01-01").status == "unchanged"
    (store / "v/0.0").write_bytes(b"\x01" * 100)
    with pytest.raises(EomatchError, match="different"):
        register_analysis(cat, coll, item, store, date="2024-01-01")


def test_inside_root_relative_href_survives_moving_the_catalogue(cat, tmp_path):
    coll, item, item_file = _matchup(cat)
    data = b"inside the catalogue"
    inside = _file(cat / "data" / "analysis" / "cmp.nc", data)
    register_analysis(cat, coll, item, inside, date="2024-01-01")
    href = _assets(item_file)["comparison:2024-01-01"]["href"]
    assert not href.startswith(("/", "file:"))
    assert (item_file.parent / href).resolve() == inside.resolve()

    moved = Path(shutil.move(str(cat), str(tmp_path / "elsewhere" / "moved")))
    assert not cat.exists()
    with MatchupCatalogue.open(moved) as opened:
        new_item_file = opened.item_path(item)
    assert new_item_file.is_relative_to(moved)
    target = (new_item_file.parent / _assets(new_item_file)["comparison:latest"]["href"]).resolve()
    assert target == (moved / "data" / "analysis" / "cmp.nc").resolve()
    assert target.read_bytes() == data
    # and the moved catalogue still takes new versions (same file again: no-op)
    res = register_analysis(moved, coll, item, target, date="2024-01-01")
    assert res.status == "unchanged"
    assert [v.href for v in list_versions(moved, item)] == [href]


def test_outside_root_gets_an_absolute_file_uri(cat, tmp_path):
    coll, item, item_file = _matchup(cat)
    shared = _file(tmp_path / "shared drive" / "cmp.nc", b"on the shared drive")
    res = register_analysis(cat, coll, item, shared, date="2024-01-01")
    href = _assets(item_file)["comparison:2024-01-01"]["href"]
    assert href == res.href == shared.as_uri()
    assert href.startswith("file:///")
    assert Path(urlparse(href).path.replace("%20", " ")) == shared


def test_event_and_product_items_take_assets_too(cat, tmp_path):
    events = next(p for p in sorted(cat.iterdir()) if p.name.startswith("matchup-events"))
    ev = next(p for p in sorted(events.rglob("*.json")) if p.name != si.DAY_CATALOG)
    res = register_analysis(cat, events.name, ev.stem, _file(tmp_path / "e.csv", b"a"))
    assert res.status == "added"
    assert res.key in _assets(ev)


def test_seed_names_and_script():
    import eomatch.add_asset
    import eomatch.workflows.assets as wf

    assert eomatch.add_asset.register_analysis is wf.register_analysis
    script = Path(sys.executable).parent / "eomatch-add-asset"
    assert script.exists()
    done = subprocess.run(
        [str(script), "--help"], capture_output=True, text=True, check=False, timeout=60
    )
    assert done.returncode == 0
    for flag in ("--catalogue", "--collection-id", "--item-id", "--file", "--replace", "--push"):
        assert flag in done.stdout


@pytest.mark.parametrize("target", ["/dev/zero", "fifo", "dir", "missing"])
def test_add_asset_on_a_symlink_names_its_target_and_refuses_non_files(
    cat, tmp_path, capsys, target
):
    coll, item, item_file = _matchup(cat)
    before = item_file.read_bytes()
    if target == "fifo":
        dest = tmp_path / "pipe"
        os.mkfifo(dest)
    elif target == "dir":
        dest = tmp_path / "folder"
        dest.mkdir()
    elif target == "missing":
        dest = tmp_path / "gone"
    else:
        dest = Path(target)
    link = tmp_path / "result.nc"
    link.symlink_to(dest)
    assert _add(cat, coll, item, link) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert f"{link} is a symlink to {dest}" in err
    assert item_file.read_bytes() == before


def test_add_asset_on_a_symlink_to_a_file_works(cat, tmp_path):
    coll, item, item_file = _matchup(cat)
    real = _file(tmp_path / "real.nc", b"payload")
    link = tmp_path / "link.nc"
    link.symlink_to(real)
    assert _add(cat, coll, item, link) == 0
    assets = _assets(item_file)
    assert any(a.get("file:checksum") == _multihash(b"payload") for a in assets.values())


def test_zarr_store_hashing_never_follows_links_out_of_it(tmp_path):
    outside = _file(tmp_path / "secret.bin", b"outside bytes")
    store = tmp_path / "out.zarr"
    (store / "a").mkdir(parents=True)
    (store / "a" / "0.0").write_bytes(b"chunk")
    (store / "inner").symlink_to("a/0.0")  # inside the store: hashed as a link, not followed
    size, digest = file_size_and_checksum(store)
    assert size == len(b"chunk")
    (store / "a" / "0.0").write_bytes(b"chunk")  # same content: same digest
    assert file_size_and_checksum(store) == (size, digest)
    (store / "leak").symlink_to(outside)
    with pytest.raises(EomatchError, match=r"leak is a link to .*secret.bin, outside the store"):
        file_size_and_checksum(store)
    (store / "leak").unlink()
    (store / "dirleak").symlink_to(tmp_path)
    with pytest.raises(EomatchError, match="dirleak is a link to"):
        file_size_and_checksum(store)


def test_assets_list_survives_hand_broken_asset_shapes(cat, capsys):
    _coll, item, item_file = _matchup(cat)
    data = json.loads(item_file.read_text())
    data["assets"].update(
        {
            "comparison:2022-01-01": {"href": "a.nc", "file:size": "huge", "type": 5},
            "comparison:2022-01-02": "not an object",
            "comparison:2022-01-03": {"href": "b.nc", "file:size": -3, "file:checksum": 7},
            "comparison:latest": ["odd"],
        }
    )
    item_file.write_text(json.dumps(data))
    assert main(["assets", "list", "--catalogue", str(cat), "--item", item]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    lines = out.strip().splitlines()
    assert [ln.split()[0] for ln in lines] == ["2022-01-03", "2022-01-01"]
    assert all("? bytes" in ln for ln in lines)


def test_assets_list_refuses_a_fifo_item_file(cat, capsys):
    _coll, item, item_file = _matchup(cat)
    item_file.unlink()
    os.mkfifo(item_file)
    try:
        code = main(["assets", "list", "--catalogue", str(cat), "--item", item])
    finally:
        item_file.unlink()
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1, err
    assert "not a regular file" in err
