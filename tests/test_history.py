"""Catalogue history against a real pgSTAC: listing, show with diffs, rollbacks (of inserts,
updates, deletes, collection deletes, rollbacks), conflicts, ``--to``, dry runs, purge, and the
refusals that must leave the database untouched; mostly through the real ``eomatch`` CLI."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from eomatch.cli.main import main
from eomatch.core.history import diff_documents, format_diff, plan_rollback
from eomatch.errors import ConflictError, InputError, NotFoundError
from eomatch.io.catalogue import MatchupCatalogue
from eomatch.io.history_schema import describe_sql
from eomatch.io.history_store import DocState, HistoryFilter, HistoryStore, Writer
from eomatch.io.pgstac_store import PgstacStore
from eomatch.workflows import history as wf
from service_fixtures import *  # noqa: F403
from service_fixtures import ServiceDb, make_catalogue

# -- documents and writers -----------------------------------------------------------------------


def coll_doc(cid: str, title: str = "a collection") -> dict[str, Any]:
    return {
        "type": "Collection",
        "stac_version": "1.1.0",
        "id": cid,
        "title": title,
        "description": "test collection",
        "license": "CC-BY-4.0",
        "links": [],
        "extent": {
            "spatial": {"bbox": [[-180, -90, 180, 90]]},
            "temporal": {"interval": [["2022-01-01T00:00:00Z", None]]},
        },
    }


def item_doc(cid: str, iid: str, k: int = 0, **props: Any) -> dict[str, Any]:
    lon, lat = -10.0 + (k % 100) * 0.1, 40.0 + (k // 100) * 0.01
    return {
        "type": "Feature",
        "stac_version": "1.1.0",
        "id": iid,
        "collection": cid,
        "geometry": {"type": "Point", "coordinates": [lon, lat]},
        "bbox": [lon, lat, lon, lat],
        "properties": {"datetime": "2022-05-06T12:00:00Z", "n": k, **props},
        "assets": {"data": {"href": f"https://example.org/{iid}.nc", "roles": ["data"]}},
        "links": [],
    }


def write(
    db: ServiceDb,
    role: str,
    statements: list[tuple[str, Any]],
    actor: str | None = None,
    kind: str = "api",
    message: str | None = None,
) -> int:
    """Run pgSTAC SQL functions as ``role`` in one transaction; the history transaction id."""
    with psycopg.connect(db.role(role).conninfo()) as conn:
        if actor is not None:
            conn.execute(describe_sql(), (actor, kind, message, None))
        for text, arg in statements:
            conn.execute(text, (json.dumps(arg),) if arg is not None else None)
        row = conn.execute(
            "SELECT split_part(current_setting('eomatch.history_tx', true), ':', 2)"
        ).fetchone()
    assert row is not None
    assert row[0], "the write recorded no transaction"
    return int(row[0])


def create_collection(c: dict[str, Any]) -> tuple[str, Any]:
    return ("SELECT pgstac.create_collection(%s::jsonb)", c)


def upsert(items: list[dict[str, Any]]) -> tuple[str, Any]:
    return ("SELECT pgstac.upsert_items(%s::jsonb)", items)


def update(item: dict[str, Any]) -> tuple[str, Any]:
    return ("SELECT pgstac.update_item(%s::jsonb)", item)


def delete_item(cid: str, iid: str) -> tuple[str, Any]:
    return (f"SELECT pgstac.delete_item('{iid}', '{cid}')", None)


def delete_collection(cid: str) -> tuple[str, Any]:
    return (f"SELECT pgstac.delete_collection('{cid}')", None)


def state(db: ServiceDb) -> list[tuple[object, ...]]:
    """The catalogue's documents (hydrated, so equal content compares equal)."""
    with psycopg.connect(db.role("eomatch_ingest").conninfo()) as conn:
        return conn.execute(
            "SELECT 'i', collection, id, content_hydrate(i)::text FROM pgstac.items i "
            "UNION ALL SELECT 'c', id, '', content::text FROM pgstac.collections "
            "ORDER BY 1, 2, 3"
        ).fetchall()


def everything(db: ServiceDb) -> list[tuple[object, ...]]:
    """Catalogue and history: what a refused command must leave exactly as it was."""
    return [
        *state(db),
        *db.query("SELECT * FROM eomatch.transactions ORDER BY id"),
        *db.query(
            "SELECT seq, tx, kind, collection, id, op, md5(before::text) FROM eomatch.changes"
        ),
        *db.query("SELECT * FROM eomatch.history_meta"),
        *db.query("SELECT count(*) FROM eomatch.history_purges"),
    ]


def store(db: ServiceDb) -> PgstacStore:
    return PgstacStore(db.role("eomatch_ingest"))


@pytest.fixture
def cli_env(service_db: ServiceDb, monkeypatch: pytest.MonkeyPatch) -> ServiceDb:
    """The CLI pointed at ``service_db`` as the ingest role (as an operator's PG* would)."""
    for k, v in service_db.env().items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("PGUSER", "eomatch_ingest")
    monkeypatch.delenv("PGPASSWORD", raising=False)
    return service_db


def cli_json(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    capsys.readouterr()
    assert main([*argv, "--format", "json"]) == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)


def refused(capsys: pytest.CaptureFixture[str], db: ServiceDb, *argv: str) -> str:
    """Run a command that must fail: one line on stderr, exit 2, database untouched."""
    capsys.readouterr()
    before = everything(db)
    assert main(list(argv)) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("eomatch: error: "), err
    assert "\n" not in err, err
    assert everything(db) == before
    return err


@pytest.fixture
def story(cli_env: ServiceDb) -> dict[str, int]:
    """C1 with three items (ingest role), an update and a delete (API role), C2 by plain SQL."""
    db = cli_env
    c1 = [item_doc("C1", f"i{k}", k) for k in range(3)]
    t1 = write(
        db,
        "eomatch_ingest",
        [create_collection(coll_doc("C1")), upsert(c1)],
        "user:alice",
        "ingest",
        "first load",
    )
    changed = item_doc("C1", "i0", 0, quality="good")
    changed["properties"]["n"] = 7
    changed["assets"]["thumb"] = {"href": "https://example.org/t.png"}
    t2 = write(db, "eomatch_api", [update(changed)], "key:ci", "api")
    t3 = write(db, "eomatch_api", [delete_item("C1", "i1")], "key:ci", "api")
    t4 = write(
        db, "eomatch_ingest", [create_collection(coll_doc("C2")), upsert([item_doc("C2", "j0")])]
    )
    return {"t1": t1, "t2": t2, "t3": t3, "t4": t4}


# -- pure diff -------------------------------------------------------------------------------------


def test_diff_is_compact_and_names_what_changed() -> None:
    a = item_doc("C", "x", 1, gone=1)
    b = item_doc("C", "x", 2, new="v" * 100)
    b["geometry"] = {"type": "Point", "coordinates": [0, 0]}
    b["assets"]["data"]["href"] = "https://example.org/other.nc"
    del a["properties"]["datetime"]
    text = format_diff(diff_documents(a, b))
    assert "properties.n: 1 → 2" in text
    assert "-properties.gone" in text
    assert "+properties.datetime=" in text
    assert "geometry changed" in text
    assert 'assets.data.href: "https://example.org/x.nc" → "https://example.org/oth' in text
    assert "v" * 60 not in text  # long values are cut
    assert format_diff(diff_documents(a, a)) == "(no difference in content)"


def test_rollback_plan_skips_documents_already_back_and_flags_later_changes() -> None:
    @dataclass
    class Ch:
        kind: str
        collection: str
        id: str
        before: dict[str, Any] | None
        after: dict[str, Any] | None
        later: int | None = None

    a, b, c = item_doc("C", "a"), item_doc("C", "b"), item_doc("C", "c", 5)
    changes = [
        Ch("item", "C", "a", None, a),  # insert, untouched since: delete it
        Ch("item", "C", "b", b, None),  # delete, untouched since: put it back
        Ch("item", "C", "c", c, item_doc("C", "c", 6), later=9),  # changed again by tx 9
        Ch("item", "C", "d", None, item_doc("C", "d"), later=8),  # deleted since by tx 8
    ]
    plan = plan_rollback(changes, {("item", "C", "c"): item_doc("C", "c", 7)})
    assert [(r.id, r.op) for r in plan.reverts] == [
        ("a", "delete"),
        ("b", "insert"),
        ("c", "update"),
    ]
    assert plan.unchanged == 1  # d: already absent, as before the transaction
    assert [(x.key, x.later) for x in plan.conflicts] == [(("item", "C", "c"), 9)]
    assert plan.conflict_summary() == "1 document(s) changed by later transactions: item C/c (tx 9)"
    assert (
        format_diff(plan.reverts[2].diff()) == "bbox changed; geometry changed; properties.n: 7 → 5"
    )
    assert plan.counts() == {"insert": 1, "update": 1, "delete": 1}


# -- listing and show ----------------------------------------------------------------------------


def test_history_lists_newest_first_with_filters(
    story: dict[str, int], cli_env: ServiceDb, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = cli_json(capsys, "history")
    assert [r["id"] for r in rows] == [story["t4"], story["t3"], story["t2"], story["t1"]]
    first = rows[-1]
    assert (first["actor"], first["kind"], first["message"]) == (
        "user:alice",
        "ingest",
        "first load",
    )
    assert (first["inserted"], first["updated"], first["deleted"]) == (4, 0, 0)
    assert first["db_user"] == "eomatch_ingest"
    assert rows[0]["actor"] == "db:eomatch_ingest"
    assert rows[0]["kind"] == "sql"
    assert rows[1]["db_user"] == "eomatch_api"
    assert rows[1]["deleted"] == 1
    ids = lambda *a: [r["id"] for r in cli_json(capsys, "history", *a)]  # noqa: E731
    assert ids("--collection", "C2") == [story["t4"]]
    assert ids("--item", "i0") == [story["t2"], story["t1"]]
    assert ids("--actor", "key:ci") == [story["t3"], story["t2"]]
    assert ids("--kind", "ingest") == [story["t1"]]
    assert ids("--limit", "2") == [story["t4"], story["t3"]]
    t2_at = cli_json(capsys, "history", "show", str(story["t2"]))["transaction"]["committed_at"]
    assert ids("--since", t2_at) == [story["t4"], story["t3"], story["t2"]]
    assert ids("--until", t2_at) == [story["t2"], story["t1"]]
    assert ids("--since", "2100-01-01") == []
    # the table, and the Python API
    capsys.readouterr()
    assert main(["history", "--actor", "user:alice"]) == 0
    out = capsys.readouterr().out
    assert "user:alice" in out
    assert "first load" in out
    assert "+4 ~0 -0" in out
    txs = wf.list_transactions(store(cli_env), HistoryFilter(kind="api"))
    assert [t.id for t in txs] == [story["t3"], story["t2"]]


def test_show_lists_changes_with_a_diff_for_updates(
    story: dict[str, int], cli_env: ServiceDb, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    assert main(["history", "show", str(story["t2"])]) == 0
    out = capsys.readouterr().out
    assert f"transaction {story['t2']}: api by key:ci" in out
    assert "item C1/i0" in out
    assert "update" in out
    assert "properties.n: 0 → 7" in out
    assert "+properties.quality" in out
    body = cli_json(capsys, "history", "show", str(story["t2"]))
    (change,) = body["changes"]
    paths = {d["path"]: d for d in change["diff"]}
    assert paths["properties.n"]["old"] == "0"
    assert paths["properties.n"]["new"] == "7"
    assert paths["assets.thumb"]["change"] == "added"
    # a long transaction: the first N, with the count
    body = cli_json(capsys, "history", "show", str(story["t1"]), "--limit", "2")
    assert body["total"] == 4
    assert len(body["changes"]) == 2
    assert body["changes"][0] == {
        "op": "insert",
        "kind": "collection",
        "collection": "C1",
        "id": "",
    }
    assert main(["history", "show", str(story["t1"]), "--limit", "2"]) == 0
    assert "first 2 of 4 changes" in capsys.readouterr().out
    # later changes are named: i0 was updated by t2 after t1
    body = cli_json(capsys, "history", "show", str(story["t1"]))
    later = {c["id"]: c.get("later") for c in body["changes"]}
    assert later == {"": None, "i0": story["t2"], "i1": story["t3"], "i2": None}


# -- rollbacks -----------------------------------------------------------------------------------


def test_rollback_of_update_delete_and_insert_and_of_a_rollback(
    story: dict[str, int], cli_env: ServiceDb, capsys: pytest.CaptureFixture[str]
) -> None:
    db = cli_env
    ingest = store(db)
    start = state(db)
    # the delete: i1 comes back as it was
    res = cli_json(capsys, "rollback", str(story["t3"]), "--message", "oops")
    assert res["counts"] == {"insert": 1, "update": 0, "delete": 0}
    undo3 = res["transaction"]
    t = wf.show(ingest, undo3).transaction
    assert (t.kind, t.message) == ("rollback", f"rollback of TX {story['t3']}: oops")
    assert t.actor.startswith("user:")
    assert ingest.get_item("C1", "i1") == item_doc_hydrated(db, story["t1"], "i1")
    # the update: i0 back to its first state
    res = cli_json(capsys, "rollback", str(story["t2"]))
    assert res["counts"]["update"] == 1
    i0 = ingest.get_item("C1", "i0")
    assert i0 is not None
    assert i0["properties"]["n"] == 0
    assert "thumb" not in i0["assets"]
    # an insert that nothing changed later: C2 and its item go
    res = cli_json(capsys, "rollback", str(story["t4"]))
    assert res["counts"] == {"insert": 0, "update": 0, "delete": 2}
    assert db.query("SELECT id FROM pgstac.collections") == [("C1",)]
    # rolling back a rollback restores what it undid
    middle = state(db)
    res = cli_json(capsys, "rollback", str(res["transaction"]))
    assert res["counts"]["insert"] == 2
    assert ingest.get_item("C2", "j0") is not None
    res = cli_json(capsys, "rollback", str(undo3))  # i1 deleted again, as t3 did
    assert ingest.get_item("C1", "i1") is None
    assert state(db) != start
    assert middle != state(db)
    # running a completed rollback again changes nothing and records nothing
    n = db.query("SELECT count(*) FROM eomatch.transactions")
    res = cli_json(capsys, "rollback", str(story["t2"]))
    assert res["transaction"] is None
    assert res["counts"] == {"insert": 0, "update": 0, "delete": 0}
    assert res["unchanged"] == 1
    assert db.query("SELECT count(*) FROM eomatch.transactions") == n


def item_doc_hydrated(db: ServiceDb, tx: int, iid: str) -> Any:
    """The item as it was just after ``tx`` (its ``before`` in the next change, or now)."""
    rows = db.query(
        "SELECT before FROM eomatch.changes WHERE id = %s AND tx > %s ORDER BY seq LIMIT 1",
        iid,
        tx,
    )
    return rows[0][0]


def test_conflict_refused_then_forced_and_undone(
    story: dict[str, int], cli_env: ServiceDb, capsys: pytest.CaptureFixture[str]
) -> None:
    db = cli_env
    err = refused(capsys, db, "rollback", str(story["t1"]))
    # i0 was updated later; i1 was deleted later, which is where the rollback would take it
    assert f"cannot roll back transaction {story['t1']}: 1 document(s) changed by later" in err
    assert f"item C1/i0 (tx {story['t2']})" in err
    assert "i1" not in err
    assert "--force" in err
    with pytest.raises(ConflictError):
        wf.rollback(store(db), story["t1"])
    # a dry run of the forced rollback writes nothing but says what it would do
    before = everything(db)
    capsys.readouterr()
    assert main(["rollback", str(story["t1"]), "--force", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "dry run, nothing written" in out
    assert "delete" in out
    assert "item C1/i2" in out
    assert everything(db) == before
    pre = state(db)
    res = cli_json(capsys, "rollback", str(story["t1"]), "--force")
    assert res["forced"] == 1
    assert res["unchanged"] == 1  # i1 already gone (its delete in t3): nothing to do for it
    assert res["counts"] == {"insert": 0, "update": 0, "delete": 3}
    assert db.query("SELECT id FROM pgstac.collections") == [("C2",)]
    res = cli_json(capsys, "rollback", str(res["transaction"]))
    assert state(db) == pre


def test_a_write_between_planning_and_writing_stops_the_rollback(
    story: dict[str, int], cli_env: ServiceDb
) -> None:
    db = cli_env
    history = HistoryStore(store(db))
    planned_at = history.last_seq()
    states = [DocState("item", "C1", "i0", None), DocState("item", "C1", "i2", None)]
    late = write(db, "eomatch_api", [update(item_doc("C1", "i2", 2, late=True))])
    before = everything(db)
    with pytest.raises(ConflictError, match=f"item C1/i2 was changed by transaction {late}"):
        Writer(store(db)).apply(states, actor="t", kind="rollback", unchanged_after=planned_at)
    assert everything(db) == before
    now = history.last_seq()
    tx = Writer(store(db)).apply(states, actor="t", kind="rollback", unchanged_after=now)
    assert tx is not None


def test_rollback_of_a_collection_delete_brings_its_items_back(
    cli_env: ServiceDb, capsys: pytest.CaptureFixture[str]
) -> None:
    db = cli_env
    write(db, "eomatch_ingest", [create_collection(coll_doc("K"))], "job:x", "job")
    write(db, "eomatch_api", [upsert([item_doc("K", f"k{n}", n) for n in range(20)])])
    pre = state(db)
    # rolling back the collection's creation alone would take the later items with it
    first = wf.list_transactions(store(db), HistoryFilter(kind="job"))[0].id
    err = refused(capsys, db, "rollback", str(first))
    assert "would also delete 20 item(s) added to it by later transactions" in err
    tx = write(db, "eomatch_api", [delete_collection("K")], "key:admin", "api")
    assert db.item_count() == 0
    shown = wf.show(store(db), tx, limit=None)
    assert shown.total == 21
    assert {c.op for c in shown.changes} == {"delete"}
    res = cli_json(capsys, "rollback", str(tx))
    assert res["counts"] == {"insert": 21, "update": 0, "delete": 0}
    assert state(db) == pre


def test_rollback_to_a_transaction_a_time_and_one_collection(
    story: dict[str, int], cli_env: ServiceDb, capsys: pytest.CaptureFixture[str]
) -> None:
    db = cli_env
    ingest = store(db)
    # a further change in C2, then back to t1 for C1 only: C2 keeps everything
    write(db, "eomatch_api", [upsert([item_doc("C2", "j1")])])
    c2_before = [r for r in state(db) if r[1] == "C2" or (r[0] == "c" and r[1] == "C2")]
    before = everything(db)
    capsys.readouterr()
    assert main(["rollback", "--to", str(story["t1"]), "--collection", "C1", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "dry run" in out
    assert "item C1/i1" in out
    assert "+1 ~1 -0" in out
    assert everything(db) == before
    res = cli_json(capsys, "rollback", "--to", str(story["t1"]), "--collection", "C1")
    assert res["message"] == f"rollback to TX {story['t1']} (collection C1)"
    assert res["counts"] == {"insert": 1, "update": 1, "delete": 0}
    assert [r for r in state(db) if r[1] == "C2"] == c2_before
    i0 = ingest.get_item("C1", "i0")
    assert i0 is not None
    assert i0["properties"]["n"] == 0
    # the whole catalogue to a time just after t1: C2 goes
    t1_at = wf.show(ingest, story["t1"]).transaction.committed_at
    res = cli_json(capsys, "rollback", "--to", (t1_at + timedelta(microseconds=1)).isoformat())
    assert res["counts"] == {"insert": 0, "update": 0, "delete": 3}
    assert db.query("SELECT id FROM pgstac.collections") == [("C1",)]
    c1_now = state(db)
    # and back to now-before-that by TX (the previous rollback's own point)
    prev = res["transaction"]
    res = cli_json(capsys, "rollback", "--to", str(prev - 1))
    assert res["counts"]["insert"] == 3
    assert [r for r in state(db) if r[1] == "C2"] == c2_before
    assert state(db) != c1_now
    # to the same point again: nothing left to do
    res = cli_json(capsys, "rollback", "--to", str(prev - 1))
    assert res["transaction"] is None


def test_ingest_and_prune_through_the_cli_are_rolled_back(
    tmp_path: Path, cli_env: ServiceDb, capsys: pytest.CaptureFixture[str]
) -> None:
    db = cli_env
    root = make_catalogue(tmp_path / "cat", n_events=3)
    assert main(["ingest", "--catalogue", str(root), "--message", "initial"]) == 0
    loaded = state(db)
    loads = cli_json(capsys, "history", "--kind", "ingest")
    assert {t["message"] for t in loads} == {"initial"}
    assert len({t["run"] for t in loads}) == 1
    assert sum(t["inserted"] for t in loads) == len(loaded)
    first = loads[-1]
    # remove one event locally, prune it away
    cat = MatchupCatalogue.open(root)
    try:
        files = cat.item_files()
    finally:
        cat.close()
    event = next(rel for coll, _, rel in files if "matchup-events" in coll)
    shutil.rmtree((root / event).parent)
    capsys.readouterr()
    assert main(["ingest", "--catalogue", str(root), "--prune"]) == 0
    (prune,) = cli_json(capsys, "history", "--kind", "prune")
    assert prune["deleted"] >= 1
    assert db.item_count() < len([r for r in loaded if r[0] == "i"])
    gone = {c["id"] for c in cli_json(capsys, "history", "show", str(prune["id"]))["changes"]}
    res = cli_json(capsys, "rollback", str(prune["id"]))
    assert res["counts"]["insert"] == prune["deleted"]
    assert [r for r in state(db) if r[2] in gone] == [r for r in loaded if r[2] in gone]
    # the re-ingest also rewrote the links of the matchups of that event: --to undoes that too
    assert state(db) != loaded
    res = cli_json(capsys, "rollback", "--to", str(loads[0]["id"]))
    assert res["counts"]["update"] > 0
    assert state(db) == loaded
    # back to before anything existed: empty catalogue
    begin = cli_json(capsys, "history", "show", str(first["id"]))["transaction"]["committed_at"]
    t0 = datetime.fromisoformat(begin) - timedelta(microseconds=1)
    res = cli_json(capsys, "rollback", "--to", t0.isoformat())
    assert state(db) == []
    # and an unchanged re-ingest after a rollback loads again (its ingest state was dropped)
    assert main(["ingest", "--catalogue", str(root)]) == 0
    assert db.item_count() > 0


# -- purge and refusals ---------------------------------------------------------------------------


def test_purge_removes_old_history_and_logs_it(
    story: dict[str, int], cli_env: ServiceDb, capsys: pytest.CaptureFixture[str]
) -> None:
    db = cli_env
    ingest = store(db)
    t3_at = wf.show(ingest, story["t3"]).transaction.committed_at
    # refused: no --yes without a terminal, a future date, the ingest role
    refused(capsys, db, "history", "purge", "--before", t3_at.isoformat())
    future = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    err = refused(
        capsys, db, "history", "purge", "--before", future, "--yes", "--db-user", "postgres"
    )
    assert "in the future" in err
    refused(capsys, db, "history", "purge", "--before", t3_at.isoformat(), "--yes")
    catalogue = state(db)
    assert (
        main(["history", "purge", "--before", t3_at.isoformat(), "--yes", "--db-user", "postgres"])
        == 0
    )
    assert "purged 2 transaction(s) and 5 recorded change(s)" in capsys.readouterr().out
    assert state(db) == catalogue
    assert [r["id"] for r in cli_json(capsys, "history")] == [story["t4"], story["t3"]]
    (row,) = db.query("SELECT transactions, changes, actor FROM eomatch.history_purges")
    assert row[0] == 2
    assert row[1] == 5
    assert str(row[2]).startswith("user:")
    assert db.query("SELECT purged_before FROM eomatch.history_meta") == [(t3_at,)]
    # before the (purged) start of the history: refused; unknown (purged) transactions too
    err = refused(capsys, db, "rollback", "--to", (t3_at - timedelta(seconds=1)).isoformat())
    assert "before the history begins" in err
    err = refused(capsys, db, "rollback", str(story["t1"]))
    assert f"no transaction {story['t1']}" in err
    with pytest.raises(InputError):
        wf.purge(PgstacStore(db.role()), datetime.now(UTC) + timedelta(hours=1))


def test_bad_input_is_one_line_and_touches_nothing(
    story: dict[str, int], cli_env: ServiceDb, capsys: pytest.CaptureFixture[str]
) -> None:
    db = cli_env
    assert "no transaction 999" in refused(capsys, db, "rollback", "999")
    assert "no transaction 999" in refused(capsys, db, "history", "show", "999")
    assert "no transaction 999" in refused(capsys, db, "rollback", "--to", "999")
    assert "before the history begins" in refused(capsys, db, "rollback", "--to", "2001-01-01")
    assert "not an ISO 8601" in refused(capsys, db, "rollback", "--to", "yesterday")
    assert "either a transaction id" in refused(capsys, db, "rollback")
    assert "--collection goes with --to" in refused(
        capsys, db, "rollback", str(story["t2"]), "--collection", "C1"
    )
    assert "no collection 'nope'" in refused(
        capsys, db, "rollback", "--to", str(story["t1"]), "--collection", "nope"
    )
    assert main(["rollback", "abc"]) == 2  # argparse: not a transaction id
    assert main(["history", "--limit", "0"]) == 2
    with pytest.raises(NotFoundError):
        wf.show(store(db), 12345)
