"""The file writing ``eomatch query`` relies on: the helper process's parallel frames and
barriers, parallel day-catalog writes and the one file system sync of a batch."""

from __future__ import annotations

import json

import pytest

from catalogue_helpers import item_files, pystac_item_ids
from eomatch.errors import EomatchError
from eomatch.io import atomic
from eomatch.io.catalogue_bulk import WriterProcess


def test_parallel_frames_between_barriers_end_with_the_last_write(tmp_path):
    proc = WriterProcess(str(tmp_path))
    try:
        for i in range(300):
            proc.write(f"a/{i % 7}/f{i}.json", b"first %d" % i, parallel=True)
        proc.barrier()
        for i in range(0, 300, 3):  # rewritten after the barrier: the new bytes win
            proc.write(f"a/{i % 7}/f{i}.json", b"second %d" % i, parallel=True)
        for _ in range(5):  # the same path several times in one parallel run: in order
            proc.write("a/same.json", b"x", parallel=True)
        proc.write("a/same.json", b"last", parallel=True)
        proc.write("b/plain.json", b"plain")  # a plain frame after the parallel ones
        proc.sync()
    finally:
        proc.close()
    for i in range(300):
        want = b"second %d" % i if i % 3 == 0 else b"first %d" % i
        assert (tmp_path / f"a/{i % 7}/f{i}.json").read_bytes() == want
    assert (tmp_path / "a/same.json").read_bytes() == b"last"
    assert (tmp_path / "b/plain.json").read_bytes() == b"plain"
    assert not list(tmp_path.rglob(".*.tmp"))


def test_a_failed_parallel_write_is_reported(tmp_path):
    (tmp_path / "blocked").write_text("a file where a folder should be")
    proc = WriterProcess(str(tmp_path))
    try:
        proc.write("ok/f.json", b"{}", parallel=True)
        proc.write("blocked/f.json", b"{}", parallel=True)
        with pytest.raises(EomatchError, match="writing the catalogue's files failed: blocked"):
            proc.sync()
    finally:
        proc.close()


def test_write_files_in_parallel_and_sync(tmp_path, monkeypatch):
    monkeypatch.setattr(atomic, "PARALLEL_FILES", 3)
    writes = [(str(tmp_path / f"f{i}.json"), b"%d" % i) for i in range(50)]
    atomic.write_files(writes, durable=False)
    atomic.sync_files(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"f{i}.json" for i in range(50))
    assert all((tmp_path / f"f{i}.json").read_bytes() == b"%d" % i for i in range(50))
    with pytest.raises(FileNotFoundError):
        atomic.write_files([(str(tmp_path / "no" / f"{i}"), b"") for i in range(20)], False)
    with pytest.raises(FileNotFoundError):
        atomic.sync_files(tmp_path / "missing")


# --- checks of a whole page of pulled items (issue 16 §1: shapely over the batch at once) ---


def _item(i: int, geometry: object) -> dict:
    return {
        "type": "Feature",
        "stac_version": "1.0.0",
        "id": f"P{i}",
        "collection": "S2_MSI_L1C",
        "geometry": geometry,
        "bbox": [0.0, 0.0, 1.0, 1.0],
        "properties": {"datetime": "2024-05-01T10:00:00Z"},
        "links": [],
        "assets": {},
    }


def _square(x: float) -> list:
    return [[x, 0], [x + 1, 0], [x + 1, 1], [x, 1], [x, 0]]


HOSTILE_GEOMETRIES = [
    {"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]]},  # bowtie
    {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [0, 0]]]},  # closed, 3 positions
    {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1]]]},  # open
    {"type": "Polygon", "coordinates": [[[0, 0], [0, 0], [0, 0], [0, 0]]]},  # one point
    {"type": "Polygon", "coordinates": []},
    {"type": "Polygon", "coordinates": [[]]},
    {"type": "Polygon", "coordinates": [[[0, 0], [1, 0, 5], [1, 1], [0, 0]]]},  # 2D and 3D
    {"type": "Polygon", "coordinates": [[[0, 0, 1], [1, 0, 1], [1, 1, 1], [0, 0, 1]]]},
    {"type": "Polygon", "coordinates": [_square(0), [[0, 0], [0, 0], [0, 0]]]},  # short hole
    {"type": "Polygon", "coordinates": [[[0, 0], [True, 0], [1, 1], [0, 0]]]},
    {"type": "Polygon", "coordinates": [[[0, 0], [1, float("nan")], [1, 1], [0, 0]]]},
    {"type": "MultiPolygon", "coordinates": []},
    {"type": "MultiPolygon", "coordinates": [[_square(0)], [_square(0.5)]]},  # overlapping
    {"type": "MultiPolygon", "coordinates": [[_square(0)], [_square(5)]]},
    {"type": "MultiPolygon", "coordinates": [[_square(0)], []]},
    {"type": "Point", "coordinates": [0, 0]},
    {"type": "LineString", "coordinates": [[0, 0]]},
    {"type": "GeometryCollection", "geometries": []},
    None,
    {"type": "Polygon", "coordinates": [_square(3)]},
]


def test_batch_item_checks_give_the_per_item_answers():
    from eomatch.core import stac_items as si

    good = [_item(i, {"type": "Polygon", "coordinates": [_square(i)]}) for i in range(30)]
    hostile = [_item(100 + i, g) for i, g in enumerate(HOSTILE_GEOMETRIES)]
    items = good[:10] + hostile + good[10:] + ["not an item", {"type": "Feature"}]
    want = [si.item_problem(x) for x in items]
    assert si.item_problems(items) == want
    assert sum(w is not None for w in want) >= 10  # most hostile ones are refused...
    assert want[:10] == [None] * 10  # ...the good ones are not
    assert want[10] is None  # a bowtie is made valid (item_geometry), not refused
    assert "inhomogeneous" in str(want[16])  # mixed 2D and 3D positions
    assert want[10 + len(HOSTILE_GEOMETRIES) - 1] is None


def test_an_import_names_the_first_bad_item_of_the_batch(tmp_path):
    from eomatch.core import stac_items as si
    from eomatch.io.catalogue import MatchupCatalogue

    short = {"type": "Polygon", "coordinates": [[[0, 0], [1, 0, 5], [1, 1], [0, 0]]]}
    items = [_item(i, {"type": "Polygon", "coordinates": [_square(i)]}) for i in range(20)]
    items[7]["geometry"] = short  # only shapely refuses it
    items[12]["geometry"] = {"type": "Polygon", "coordinates": [[]]}
    with MatchupCatalogue.create(tmp_path / "cat") as cat:
        with pytest.raises(EomatchError) as err:
            cat.import_items(items)
        assert str(err.value) == (
            f"incoming item 'P7': invalid STAC item: {si.item_problem(items[7])}"
        )
        assert cat.counts() == {"event": 0, "matchup": 0, "product": 0}
        items[7]["geometry"] = items[12]["geometry"] = {
            "type": "Polygon",
            "coordinates": [_square(0)],
        }
        assert set(cat.import_items(items).values()) == {"new"}
    assert len(list((tmp_path / "cat/S2_MSI_L1C").rglob("P*.json"))) == 20


def test_an_import_refuses_a_day_folder_symlinked_out_of_the_catalogue(tmp_path):
    from eomatch.errors import UnsafePathError
    from eomatch.io.catalogue import MatchupCatalogue

    outside = tmp_path / "outside"
    outside.mkdir()
    item = _item(1, {"type": "Polygon", "coordinates": [_square(0)]})
    with MatchupCatalogue.create(tmp_path / "cat") as cat:
        month = tmp_path / "cat/S2_MSI_L1C/2024/05"
        month.mkdir(parents=True)
        (month / "01").symlink_to(outside)
        with pytest.raises(UnsafePathError, match="resolves outside"):
            cat.import_items([item])
        (month / "01").unlink()
        (month / "01").symlink_to(month / "real")  # a link that stays inside is fine
        (month / "real").mkdir()
        assert cat.import_items([item]) == {"P1": "new"}
    assert not list(outside.iterdir())
    assert (month / "real/P1.json").is_file()


def test_imports_into_a_day_folder_made_by_an_earlier_session_keep_its_catalog(tmp_path):
    """A session reads back only the day catalogs of folders it did not make itself: a
    folder made by an earlier session (or batch) keeps the items its catalog listed."""
    from eomatch.core import stac_items as si
    from eomatch.io.catalogue import MatchupCatalogue

    geometry = {"type": "Polygon", "coordinates": [_square(0)]}
    root = tmp_path / "cat"
    day = "S2_MSI_L1C/2024/05/01"
    with MatchupCatalogue.create(root) as cat:
        with cat.batch():
            cat.import_items([_item(1, geometry), _item(2, geometry)])
        with cat.batch():  # the day folder exists now: its catalog is read and extended
            cat.import_items([_item(3, geometry)])
        cat.import_items([_item(4, geometry)])  # outside a batch, too
    listed = si.day_catalog_items(json.loads((root / si.day_catalog_path(day)).read_text()))
    assert listed == {"P1", "P2", "P3", "P4"}
    with MatchupCatalogue.open(root) as cat:
        assert cat.counts()["product"] == 4
    assert pystac_item_ids(root) == sorted(item_files(root))
