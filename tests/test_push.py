"""``add-asset --push``: a new analysis version reaches the central database at once."""

from __future__ import annotations

from pathlib import Path

import pytest

from eomatch.cli.main import main
from eomatch.errors import EomatchError
from eomatch.io.catalogue import MatchupCatalogue
from eomatch.io.pgstac_store import PgstacStore
from eomatch.workflows.assets import register_analysis
from eomatch.workflows.ingest import ingest_catalogue
from service_fixtures import ServiceDb, make_catalogue


def _matchup(root: Path) -> tuple[str, str]:
    cat = MatchupCatalogue.open(root)
    try:
        coll, item_id, _ = next(f for f in cat.item_files() if "matchup-events" not in f[0])
        return coll, item_id
    finally:
        cat.close()


def test_push_upserts_only_the_changed_item(tmp_path: Path, service_db: ServiceDb) -> None:
    root = make_catalogue(tmp_path / "cat", n_events=2)
    store = PgstacStore(service_db.role("eomatch_ingest"))
    ingest_catalogue(root, store)
    coll, item_id = _matchup(root)
    result_file = tmp_path / "shared" / "cmp.nc"
    result_file.parent.mkdir()
    result_file.write_bytes(b"netcdf")
    res = register_analysis(root, coll, item_id, result_file, date="2026-11-01", push=store)
    assert res.pushed
    stored = store.get_item(coll, item_id)
    assert stored is not None
    assert stored["assets"]["comparison:2026-11-01"]["href"] == result_file.resolve().as_uri()
    assert stored["assets"]["comparison:latest"]["href"] == result_file.resolve().as_uri()
    # a second version: both stay, latest moves
    second = tmp_path / "shared" / "cmp2.nc"
    second.write_bytes(b"netcdf v2")
    register_analysis(root, coll, item_id, second, date="2026-11-20", push=store)
    stored = store.get_item(coll, item_id)
    assert stored is not None
    assert {"comparison:2026-11-01", "comparison:2026-11-20"} <= set(stored["assets"])
    assert stored["assets"]["comparison:latest"]["href"] == second.resolve().as_uri()
    # the owner's next ingest re-sends its (edited) item file: the same versions
    report = ingest_catalogue(root, store)
    assert report.inserted == 0
    again = store.get_item(coll, item_id)
    assert again is not None
    assert again["assets"] == stored["assets"]


def test_cli_push_and_unreachable_database(
    tmp_path: Path, service_db: ServiceDb, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    root = make_catalogue(tmp_path / "cat", n_events=1)
    coll, item_id = _matchup(root)
    f = tmp_path / "r.csv"
    f.write_text("a,b\n1,2\n")
    for k, v in service_db.env().items():
        monkeypatch.setenv(k, v)
    base = ["add-asset", "--catalogue", str(root), "--collection-id", coll, "--item-id", item_id]
    assert main([*base, "--file", str(f), "--push"]) == 0
    assert "pushed" in capsys.readouterr().out
    assert service_db.query("SELECT count(*) FROM pgstac.items WHERE id = %s", item_id) == [(1,)]
    monkeypatch.setenv("PGPORT", "1")
    g = tmp_path / "r2.csv"
    g.write_text("a,b\n3,4\n")
    assert main([*base, "--file", str(g), "--date", "2020-01-01", "--push"]) == 2
    err = capsys.readouterr().err
    assert "registered locally, but the push to the database failed" in err
    assert err.strip().count("\n") == 0


def test_push_of_unknown_item_fails_before_writing(tmp_path: Path, service_db: ServiceDb) -> None:
    root = make_catalogue(tmp_path / "cat", n_events=1)
    coll, _ = _matchup(root)
    f = tmp_path / "r.csv"
    f.write_text("x")
    store = PgstacStore(service_db.role("eomatch_ingest"))
    with pytest.raises(EomatchError, match="no item"):
        register_analysis(root, coll, "nope", f, push=store)
    assert service_db.item_count() == 0


# --- issue 10 §2: --push stores nothing the API would refuse ------------------------------------


def test_cli_push_of_an_item_the_api_would_refuse_stores_nothing(
    tmp_path: Path, service_db: ServiceDb, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    import json

    root = make_catalogue(tmp_path / "cat", n_events=1)
    coll, item_id = _matchup(root)
    with MatchupCatalogue.open(root) as cat:
        path = cat.item_path(item_id)
    doc = json.loads(path.read_text())
    doc["links"].append({"rel": "via", "href": "http://[x"})  # urlsplit refuses it
    path.write_text(json.dumps(doc))
    f = tmp_path / "r.csv"
    f.write_text("a,b\n1,2\n")
    for k, v in service_db.env().items():
        monkeypatch.setenv(k, v)
    base = ["add-asset", "--catalogue", str(root), "--collection-id", coll, "--item-id", item_id]
    assert main([*base, "--file", str(f), "--push"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert "push to the database failed" in err
    assert item_id in err
    assert "http://[x" in err
    assert service_db.item_count() == 0


def test_upsert_refuses_the_whole_batch_when_one_item_cannot_be_served(
    tmp_path: Path, service_db: ServiceDb
) -> None:
    """The write path of --push (an item merged with the central copy) checks what it stores."""
    root = make_catalogue(tmp_path / "cat", n_events=1)
    store = PgstacStore(service_db.role("eomatch_ingest"))
    ingest_catalogue(root, store)
    coll, item_id = _matchup(root)
    good = store.get_item(coll, item_id)
    assert good is not None
    before = service_db.snapshot()
    changed = {**good, "properties": {**good["properties"], "eomatch:note": "new"}}
    bad = {
        **good,
        "id": "other",
        "geometry": {"type": "GeometryCollection", "geometries": [{"type": "GeometryCollection"}]},
    }
    with pytest.raises(EomatchError, match=r"item 'other'.*GeometryCollection.*nothing stored"):
        store.upsert_items([changed, bad])
    assert service_db.snapshot() == before


def test_push_onto_a_central_row_that_cannot_be_read_is_one_line(
    tmp_path: Path, service_db: ServiceDb, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """A row stored before writes were checked (planted here) fails the push cleanly."""
    root = make_catalogue(tmp_path / "cat", n_events=1)
    store = PgstacStore(service_db.role("eomatch_ingest"))
    ingest_catalogue(root, store)
    coll, item_id = _matchup(root)
    service_db.query(
        "UPDATE pgstac.items SET geometry = ST_GeomFromText("
        "'GEOMETRYCOLLECTION(GEOMETRYCOLLECTION(POINT(1 1)))', 4326) WHERE id = %s "
        "RETURNING id",
        item_id,
    )
    before = service_db.snapshot()
    f = tmp_path / "r.csv"
    f.write_text("a\n")
    for k, v in service_db.env().items():
        monkeypatch.setenv(k, v)
    base = ["add-asset", "--catalogue", str(root), "--collection-id", coll, "--item-id", item_id]
    assert main([*base, "--file", str(f), "--push"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert f"cannot read item '{item_id}'" in err
    assert service_db.snapshot() == before
