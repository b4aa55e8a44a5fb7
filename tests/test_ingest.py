"""``eomatch ingest`` into a real pgSTAC: counts, idempotence, incremental, prune, hrefs, faults."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from eomatch.cli.main import main
from eomatch.errors import EomatchError
from eomatch.io.catalogue import MatchupCatalogue
from eomatch.io.pgstac_store import DatabaseError, PgstacStore
from eomatch.workflows.ingest import ingest_catalogue
from service_fixtures import ServiceDb, make_catalogue


def _store(db: ServiceDb) -> PgstacStore:
    return PgstacStore(db.role("eomatch_ingest"))


def _files(root: Path) -> list[tuple[str, str, str]]:
    cat = MatchupCatalogue.open(root)
    try:
        return cat.item_files()
    finally:
        cat.close()


def test_ingest_loads_everything_then_nothing(tmp_path: Path, service_db: ServiceDb) -> None:
    root = make_catalogue(tmp_path / "cat", n_events=3)
    files = _files(root)
    first = ingest_catalogue(root, _store(service_db))
    assert (first.inserted, first.updated, first.unchanged) == (len(files), 0, 0)
    assert service_db.item_count() == len(files)
    colls = {c for c, _, _ in files}
    assert {r[0] for r in service_db.query("SELECT id FROM pgstac.collections")} == colls
    again = ingest_catalogue(root, _store(service_db))
    assert (again.inserted, again.updated, again.unchanged) == (0, 0, len(files))
    assert service_db.item_count() == len(files)


def test_changed_item_is_updated_and_links_become_api_paths(
    tmp_path: Path, service_db: ServiceDb
) -> None:
    root = make_catalogue(tmp_path / "cat", n_events=2)
    store = _store(service_db)
    ingest_catalogue(root, store)
    coll, item_id, rel = next(f for f in _files(root) if "matchup-events" not in f[0])
    path = root / rel
    doc = json.loads(path.read_text())
    doc["properties"]["eomatch:note"] = "edited"
    path.write_text(json.dumps(doc))
    report = ingest_catalogue(root, store)
    assert (report.updated, report.inserted) == (1, 0)
    stored = store.get_item(coll, item_id)
    assert stored is not None
    assert stored["properties"]["eomatch:note"] == "edited"
    # touching a file without changing it costs a read, not a load
    os.utime(path)
    report = ingest_catalogue(root, store)
    assert report.updated == 0


def test_links_and_assets_are_rewritten(tmp_path: Path, service_db: ServiceDb) -> None:
    root = make_catalogue(tmp_path / "cat", n_events=1)
    store = _store(service_db)
    local = root / "data" / "analysis.nc"
    local.parent.mkdir()
    local.write_bytes(b"x")
    coll, item_id, rel = next(f for f in _files(root) if "matchup-events" not in f[0])
    doc = json.loads((root / rel).read_text())
    doc["assets"]["local"] = {"href": os.path.relpath(local, (root / rel).parent)}
    doc["assets"]["abs"] = {"href": "/shared/drive/file.nc"}
    (root / rel).write_text(json.dumps(doc))
    ingest_catalogue(root, store)
    stored = store.get_item(coll, item_id)
    assert stored is not None
    assert stored["assets"]["local"]["href"] == local.resolve().as_uri()
    assert stored["assets"]["abs"]["href"] == "file:///shared/drive/file.nc"
    hrefs = [lk["href"] for lk in stored["links"]]
    assert hrefs
    assert all(h.startswith("collections/") for h in hrefs)
    assert not {lk["rel"] for lk in stored["links"]} & {"parent", "root", "self"}
    # with a published base, relative files become URLs under it
    ingest_catalogue(root, store, assets_base_url="https://data.example.org/cat/")
    stored = store.get_item(coll, item_id)
    assert stored is not None
    assert stored["assets"]["local"]["href"] == "https://data.example.org/cat/data/analysis.nc"


def test_prune_removes_rows_of_deleted_items(tmp_path: Path, service_db: ServiceDb) -> None:
    root = make_catalogue(tmp_path / "cat", n_events=3)
    store = _store(service_db)
    ingest_catalogue(root, store)
    before = service_db.item_count()
    cat = MatchupCatalogue.open(root)
    try:
        event_id = cat.get_events()[0].id
        cat.remove_event(event_id)
    finally:
        cat.close()
    now = len(_files(root))
    kept = ingest_catalogue(root, store)
    assert kept.pruned == 0
    assert service_db.item_count() == before
    pruned = ingest_catalogue(root, store, prune=True)
    assert pruned.pruned == before - now
    assert service_db.item_count() == now


def test_cli_ingest_end_to_end(
    tmp_path: Path, service_db: ServiceDb, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    root = make_catalogue(tmp_path / "cat", n_events=2)
    for k, v in service_db.env().items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("PGUSER", "eomatch_ingest")
    assert main(["ingest", "--catalogue", str(root)]) == 0
    out = capsys.readouterr().out
    assert "inserted" in out
    assert f"{len(_files(root))} inserted" in out.replace("\n", " ")
    assert main(["ingest", "--catalogue", str(root), "--batch-size", "0"]) == 2
    assert main(["ingest", "--catalogue", str(tmp_path / "nowhere")]) == 2
    assert "no matchup catalogue" in capsys.readouterr().err


def test_wrong_password_is_one_line_and_writes_nothing(
    tmp_path: Path, service_db: ServiceDb, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    root = make_catalogue(tmp_path / "cat", n_events=1)
    for k, v in service_db.env().items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("PGUSER", "eomatch_ingest")
    monkeypatch.setenv("PGPASSWORD", "wrong")
    assert main(["ingest", "--catalogue", str(root)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert "password authentication failed" in err
    assert service_db.item_count() == 0


def test_invalid_item_is_named_and_nothing_is_loaded(tmp_path: Path, service_db: ServiceDb) -> None:
    root = make_catalogue(tmp_path / "cat", n_events=2)
    bad_rel = _files(root)[-1][2]
    doc = json.loads((root / bad_rel).read_text())
    doc["properties"]["datetime"] = "not a time"
    (root / bad_rel).write_text(json.dumps(doc))
    with pytest.raises(EomatchError, match=r"not a valid STAC item: datetime 'not a time' is"):
        ingest_catalogue(root, _store(service_db), batch_size=1000)
    assert service_db.item_count() == 0
    report = ingest_catalogue(root, _store(service_db), skip_invalid=True)
    assert len(report.skipped) == 1
    assert service_db.item_count() == len(_files(root)) - 1


@pytest.mark.xdist_group("pg-restart")
def test_database_stopped_mid_ingest_then_rerun_completes(
    tmp_path: Path, service_db: ServiceDb
) -> None:
    root = make_catalogue(tmp_path / "cat", n_events=4)
    files = _files(root)
    store = _store(service_db)
    calls: list[int] = []

    def stop_after_first_batch(done: int, total: int) -> None:
        calls.append(done)
        if len(calls) == 1:
            service_db.cluster.stop()

    try:
        with pytest.raises(DatabaseError, match=r"rolled back|cannot connect|terminat|closed"):
            ingest_catalogue(root, store, batch_size=5, progress=stop_after_first_batch)
    finally:
        service_db.cluster.start()
    loaded = service_db.item_count()
    assert loaded == 5  # exactly the committed first batch: nothing half-loaded
    state = service_db.query("SELECT count(*) FROM eomatch.ingest_state WHERE id <> ''")[0][0]
    assert state == loaded
    report = ingest_catalogue(root, store, batch_size=5)
    assert service_db.item_count() == len(files)
    assert report.inserted == len(files) - loaded
    assert report.unchanged == loaded


def test_big_ingests_read_in_a_second_process_with_the_same_result(
    tmp_path: Path, service_db: ServiceDb, monkeypatch: pytest.MonkeyPatch
) -> None:
    import eomatch.workflows.ingest as ingest_module

    root = make_catalogue(tmp_path / "cat", n_events=3)
    monkeypatch.setattr(ingest_module, "PROCESS_THRESHOLD", 1)
    store = _store(service_db)
    report = ingest_catalogue(root, store, batch_size=4)
    assert report.inserted == len(_files(root))
    coll, item_id, rel = _files(root)[0]
    stored = store.get_item(coll, item_id)
    assert stored is not None
    assert stored["id"] == item_id
    # errors raised in the worker arrive as the same one-line error
    doc = json.loads((root / rel).read_text())
    doc["geometry"] = {"type": "Point", "coordinates": ["x", 1]}
    (root / rel).write_text(json.dumps(doc))
    with pytest.raises(EomatchError, match=r"not a valid STAC item: .*Point coordinates"):
        ingest_catalogue(root, store, batch_size=4)


# --- issue 10 §2: ingest stores nothing the API would refuse -----------------------------------

NESTED_COLLECTION = {
    "type": "GeometryCollection",
    "geometries": [{"type": "GeometryCollection", "geometries": []}],
}


def _snapshot_files(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in root.rglob("*")
        if p.is_file() and not p.name.startswith(".eomatch")
    }


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (lambda d: d.update(geometry=NESTED_COLLECTION), "GeometryCollection"),
        (lambda d: d["links"].append({"rel": "via", "href": "http://[x"}), "http://[x"),
        (lambda d: d["assets"].update(bad={"href": "http://[x/a.nc"}), "http://[x"),
        (lambda d: d.update(links={"rel": "via"}), "links"),
        (lambda d: d["assets"].update(a={"href": "https://x/a", "alternate": {"b": {}}}), "href"),
        (lambda d: d.update(id="x" * 2000), "id"),
    ],
)
def test_cli_ingest_refuses_what_the_api_would_and_stores_nothing_of_its_batch(
    tmp_path: Path,
    service_db: ServiceDb,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    change: Any,
    words: str,
) -> None:
    root = make_catalogue(tmp_path / "cat", n_events=2)
    _, item_id, rel = next(f for f in _files(root) if "matchup-events" not in f[0])
    doc = json.loads((root / rel).read_text())
    change(doc)
    (root / rel).write_text(json.dumps(doc))
    for k, v in service_db.env().items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("PGUSER", "eomatch_ingest")
    before = _snapshot_files(root)
    assert main(["ingest", "--catalogue", str(root)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert item_id in err
    assert words in err
    assert service_db.item_count() == 0
    assert _snapshot_files(root) == before
    # skipping it loads the others, and every stored item reads back through pgSTAC
    assert main(["ingest", "--catalogue", str(root), "--skip-invalid"]) == 0
    assert service_db.item_count() == len(_files(root)) - 1
    store = _store(service_db)
    for c, i, _ in _files(root):
        if i != item_id:
            assert store.get_item(c, i) is not None


def test_ingest_refuses_an_unservable_collection_before_loading_anything(
    tmp_path: Path, service_db: ServiceDb
) -> None:
    root = make_catalogue(tmp_path / "cat", n_events=1)
    coll_file = next(root.glob("*/collection.json"))
    doc = json.loads(coll_file.read_text())
    doc["links"].append({"rel": "license", "href": "http://[x"})
    coll_file.write_text(json.dumps(doc))
    with pytest.raises(EomatchError, match=r"collection\.json: not a valid STAC collection"):
        ingest_catalogue(root, _store(service_db))
    assert service_db.query("SELECT count(*) FROM pgstac.collections") == [(0,)]
    assert service_db.item_count() == 0


def test_assets_base_url_that_no_href_could_be_built_on_is_refused(
    tmp_path: Path, service_db: ServiceDb
) -> None:
    root = make_catalogue(tmp_path / "cat", n_events=1)
    with pytest.raises(EomatchError, match="--assets-base-url must be a URL"):
        ingest_catalogue(root, _store(service_db), assets_base_url="http://[x/")
    assert service_db.query("SELECT count(*) FROM pgstac.collections") == [(0,)]


def test_a_child_link_out_of_the_catalogue_is_never_read(
    tmp_path: Path, service_db: ServiceDb
) -> None:
    root = make_catalogue(tmp_path / "cat", n_events=1)
    planted = json.loads(next(root.glob("*/collection.json")).read_text())
    (tmp_path / "collection.json").write_text(json.dumps({**planted, "id": "planted"}))
    catalog = json.loads((root / "catalog.json").read_text())
    catalog["links"] += [
        {"rel": "child", "href": "../collection.json"},
        {"rel": "child", "href": "/collection.json"},
    ]
    (root / "catalog.json").write_text(json.dumps(catalog))
    ingest_catalogue(root, _store(service_db))
    ids = {r[0] for r in service_db.query("SELECT id FROM pgstac.collections")}
    assert "planted" not in ids
    assert ids == {c for c, _, _ in _files(root)}
